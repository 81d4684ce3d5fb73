//! Input rules and the error that names the offending field.
//!
//! Every limit is a named constant in [`limits`] so that the API, config loader and tests quote
//! the same numbers. Field names are Consul's request spelling (`Check.Interval`, `Meta`) so an
//! error points at what the user actually wrote.

use std::fmt;

/// The limits the catalog enforces on what users send.
pub mod limits {
    /// Longest service name, in bytes: one DNS label.
    pub const SERVICE_NAME_MAX: usize = 63;
    /// Longest instance or check ID, in bytes.
    pub const ID_MAX: usize = 128;
    /// Most tags on one instance.
    pub const TAGS_MAX: usize = 64;
    /// Longest tag, in bytes.
    pub const TAG_MAX: usize = 255;
    /// Most meta pairs on one instance (Consul's limit).
    pub const META_PAIRS_MAX: usize = 64;
    /// Longest meta key, in bytes (Consul's limit).
    pub const META_KEY_MAX: usize = 128;
    /// Longest meta value, in bytes (Consul's limit).
    pub const META_VALUE_MAX: usize = 512;
    /// Longest address (a hostname is at most 253 bytes; leave room for IPv6 zones).
    pub const ADDRESS_MAX: usize = 255;
    /// Longest check name or notes, in bytes.
    pub const TEXT_MAX: usize = 1024;
    /// Most checks attached to one instance.
    pub const CHECKS_PER_INSTANCE_MAX: usize = 32;
    /// Most arguments of an exec check.
    pub const ARGS_MAX: usize = 64;
    /// Longest single exec argument, URL, header value or HTTP check body, in bytes.
    pub const ARG_MAX: usize = 4096;
}

/// A request field that breaks a rule. `field` uses Consul's spelling (`Check.Interval`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// The field, as the user would write it in a request body.
    pub field: String,
    /// What is wrong and, where it helps, what to send instead.
    pub reason: String,
}

impl ValidationError {
    /// An error for `field` with a human-readable `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error with `prefix.` put in front of the field (`Checks[1]` + `Interval`).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = match (prefix.is_empty(), self.field.is_empty()) {
            (true, _) => self.field,
            (false, true) => prefix.to_owned(),
            (false, false) => format!("{prefix}.{}", self.field),
        };
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Checks that `field` holds at most `max` items (`n` of them, called `what` in the message).
pub(crate) fn count(field: &str, n: usize, what: &str, max: usize) -> Result<(), ValidationError> {
    if n > max {
        return Err(ValidationError::new(
            field,
            format!("{n} {what}; at most {max} are allowed"),
        ));
    }
    Ok(())
}

/// Checks a free-text field's length and that it holds no control characters but tab/newline.
pub(crate) fn text(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    if value.len() > max {
        return Err(ValidationError::new(
            field,
            format!("is {} bytes; at most {max} are allowed", value.len()),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}
