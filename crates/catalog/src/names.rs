//! Validated identifiers. Construction checks the rules once, so the rest of the code can take
//! a `ServiceName` and know it is DNS-safe.
//!
//! Each is an `Arc<str>` inside: identifiers are cloned into events, snapshots and indexes all
//! the time, and a refcount bump is cheaper than a string copy.

use crate::validate::{ValidationError, limits};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

identifier!(
    /// A service name: DNS-safe (letters, digits, inner dashes, at most 63 bytes) because it
    /// becomes a DNS label (`<name>.service.consul`) and a gateway route.
    ServiceName
);
identifier!(
    /// The ID of one service instance, unique on this agent. Defaults to the service name.
    InstanceId
);
identifier!(
    /// The ID of one health check, unique on this agent (`service:<instance>` by default).
    CheckId
);

impl ServiceName {
    /// Validates `name` as a DNS label. `field` names the request field in the error.
    pub fn new(name: &str, field: &str) -> Result<Self, ValidationError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() {
            return Err(ValidationError::new(field, "service name is required"));
        }
        if bytes.len() > limits::SERVICE_NAME_MAX {
            return Err(ValidationError::new(
                field,
                format!(
                    "service name is {} bytes; at most {} are allowed (it must fit a DNS label)",
                    bytes.len(),
                    limits::SERVICE_NAME_MAX
                ),
            ));
        }
        let dns_safe = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes[0] != b'-'
            && bytes[bytes.len() - 1] != b'-';
        if !dns_safe {
            return Err(ValidationError::new(
                field,
                format!(
                    "service name {name:?} is not DNS-safe: use letters, digits and dashes, \
                     not starting or ending with a dash"
                ),
            ));
        }
        Ok(Self(Arc::from(name)))
    }
}

/// Rules shared by instance and check IDs: they appear raw in URL paths and logs.
fn validate_id(id: &str, field: &str, what: &str) -> Result<(), ValidationError> {
    if id.is_empty() {
        return Err(ValidationError::new(
            field,
            format!("{what} must not be empty"),
        ));
    }
    if id.len() > limits::ID_MAX {
        return Err(ValidationError::new(
            field,
            format!(
                "{what} is {} bytes; at most {} are allowed",
                id.len(),
                limits::ID_MAX
            ),
        ));
    }
    if id
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '/')
    {
        return Err(ValidationError::new(
            field,
            format!("{what} {id:?} must not contain whitespace, control characters or '/'"),
        ));
    }
    Ok(())
}

impl InstanceId {
    /// Validates an instance ID: non-empty, at most 128 bytes, no whitespace, control
    /// characters or `/` (it travels as the last segment of a URL path).
    pub fn new(id: &str, field: &str) -> Result<Self, ValidationError> {
        validate_id(id, field, "service ID")?;
        Ok(Self(Arc::from(id)))
    }
}

impl CheckId {
    /// Validates a check ID with the same rules as an instance ID.
    pub fn new(id: &str, field: &str) -> Result<Self, ValidationError> {
        validate_id(id, field, "check ID")?;
        Ok(Self(Arc::from(id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_must_be_dns_labels() {
        assert!(ServiceName::new("worker-service", "Name").is_ok());
        assert!(ServiceName::new("w1", "Name").is_ok());
        for bad in [
            "",
            "-lead",
            "trail-",
            "has space",
            "under_score",
            "dot.ted",
            &"a".repeat(64),
        ] {
            let err = ServiceName::new(bad, "Name").expect_err(bad);
            assert_eq!(err.field, "Name");
        }
    }

    #[test]
    fn ids_allow_colons_but_not_slashes() {
        assert!(CheckId::new("service:web-1:2", "CheckID").is_ok());
        assert!(InstanceId::new("a/b", "ID").is_err());
        assert!(InstanceId::new("a b", "ID").is_err());
        assert!(InstanceId::new(&"x".repeat(129), "ID").is_err());
    }
}
