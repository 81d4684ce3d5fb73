//! Health checks as the catalog records them: what to probe, how often, and the last status.
//!
//! Running checks is `wayfinder-health`'s job; this module only holds their definitions and
//! validates them, so that a check that cannot run is refused at registration, not discovered
//! at 3 a.m.

use crate::names::{CheckId, InstanceId};
use crate::status::Status;
use crate::validate::{ValidationError, count, limits, text};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most bytes of check output kept (Consul's default `OutputMaxSize`, 4 KiB).
pub const MAX_OUTPUT_BYTES: usize = 4096;

/// Cuts `output` to at most [`MAX_OUTPUT_BYTES`] on a character boundary.
pub fn truncate_output(output: &mut String) {
    if output.len() > MAX_OUTPUT_BYTES {
        let mut end = MAX_OUTPUT_BYTES;
        while !output.is_char_boundary(end) {
            end -= 1;
        }
        output.truncate(end);
    }
}

/// What a check probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// An HTTP request: 2xx passing, 429 warning, anything else or a timeout critical.
    Http {
        /// `http://` or `https://` URL.
        url: String,
        /// Request method, `GET` by default.
        method: String,
        /// Extra request headers; a name may repeat.
        headers: BTreeMap<String, Vec<String>>,
        /// Request body, usually empty.
        body: String,
        /// Accept any TLS certificate (self-signed health endpoints).
        tls_skip_verify: bool,
        /// SNI name to send instead of the URL's host.
        tls_server_name: String,
    },
    /// A TCP connect to `host:port`: connected is passing, anything else critical.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// A program run without a shell: exit 0 passing, 1 warning, anything else critical.
    Exec {
        /// Program and arguments.
        args: Vec<String>,
    },
    /// A heartbeat the service itself sends; silence for longer than `ttl` is critical.
    Ttl {
        /// How long a pass/warn/fail stays valid.
        ttl: Duration,
    },
    /// The gRPC health protocol (`grpc.health.v1.Health/Check`): `SERVING` is passing.
    Grpc {
        /// `host:port`, optionally followed by `/service-name`.
        target: String,
        /// Speak TLS to the target.
        use_tls: bool,
    },
    /// A check run by someone else (an upstream Consul this agent mirrors): its status is
    /// copied in through the write path and it is never run here.
    Mirrored {
        /// The upstream's `Type` (`http`, `ttl`, ...), shown as is.
        type_name: String,
    },
}

impl CheckKind {
    /// Consul's `Type` spelling: `http`, `tcp`, `script`, `ttl`, `grpc` (or a mirrored
    /// check's upstream type).
    pub fn type_name(&self) -> &str {
        match self {
            CheckKind::Http { .. } => "http",
            CheckKind::Tcp { .. } => "tcp",
            CheckKind::Exec { .. } => "script",
            CheckKind::Ttl { .. } => "ttl",
            CheckKind::Grpc { .. } => "grpc",
            CheckKind::Mirrored { type_name } => type_name,
        }
    }

    /// Whether this agent runs the check on a schedule (TTL and mirrored checks are not run:
    /// their status comes from outside).
    pub fn is_scheduled(&self) -> bool {
        !matches!(self, CheckKind::Ttl { .. } | CheckKind::Mirrored { .. })
    }

    /// Consul's default timeout for this kind: 30 s for scripts, 10 s for probes.
    pub fn default_timeout(&self) -> Duration {
        match self {
            CheckKind::Exec { .. } => Duration::from_secs(30),
            _ => Duration::from_secs(10),
        }
    }

    fn validate(&self) -> Result<(), ValidationError> {
        match self {
            CheckKind::Http {
                url,
                method,
                headers,
                body,
                ..
            } => {
                text("HTTP", url, limits::ARG_MAX)?;
                let rest = url
                    .strip_prefix("http://")
                    .or_else(|| url.strip_prefix("https://"))
                    .ok_or_else(|| {
                        ValidationError::new(
                            "HTTP",
                            format!("{url:?} must start with http:// or https://"),
                        )
                    })?;
                if rest.is_empty() || rest.starts_with('/') {
                    return Err(ValidationError::new("HTTP", format!("{url:?} has no host")));
                }
                if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
                    return Err(ValidationError::new(
                        "Method",
                        format!("{method:?} is not an HTTP method; use e.g. GET or HEAD"),
                    ));
                }
                for (name, values) in headers {
                    let valid_name = !name.is_empty()
                        && name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                    if !valid_name {
                        return Err(ValidationError::new(
                            "Header",
                            format!("{name:?} is not a valid header name"),
                        ));
                    }
                    for value in values {
                        if value.len() > limits::ARG_MAX
                            || value.bytes().any(|b| b.is_ascii_control() && b != b'\t')
                        {
                            return Err(ValidationError::new(
                                format!("Header.{name}"),
                                "values must be at most 4096 bytes with no control characters",
                            ));
                        }
                    }
                }
                text("Body", body, limits::ARG_MAX)
            }
            CheckKind::Tcp { address } => validate_host_port("TCP", address),
            CheckKind::Grpc { target, .. } => {
                let host_port = target.split_once('/').map_or(target.as_str(), |(hp, _)| hp);
                validate_host_port("GRPC", host_port)
            }
            CheckKind::Exec { args } => {
                if args.is_empty() || args[0].is_empty() {
                    return Err(ValidationError::new("Args", "must name a program to run"));
                }
                count("Args", args.len(), "arguments", limits::ARGS_MAX)?;
                for (i, arg) in args.iter().enumerate() {
                    if arg.len() > limits::ARG_MAX || arg.contains('\0') {
                        return Err(ValidationError::new(
                            format!("Args[{i}]"),
                            "must be at most 4096 bytes with no NUL byte",
                        ));
                    }
                }
                Ok(())
            }
            CheckKind::Ttl { ttl } => {
                if ttl.is_zero() {
                    return Err(ValidationError::new("TTL", "must be > 0 for TTL checks"));
                }
                Ok(())
            }
            CheckKind::Mirrored { type_name } => text("Type", type_name, limits::TAG_MAX),
        }
    }
}

fn validate_host_port(field: &str, value: &str) -> Result<(), ValidationError> {
    let bad = || ValidationError::new(field, format!("{value:?} must be host:port"));
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.len() > limits::ADDRESS_MAX || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

/// When a check runs and how its results turn into a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckPolicy {
    /// Time between runs; zero for TTL checks, which do not run.
    pub interval: Duration,
    /// How long one run may take before it counts as critical.
    pub timeout: Duration,
    /// Consecutive passing results needed before the status becomes passing.
    pub success_before_passing: u32,
    /// Consecutive failing results tolerated as warning before the status becomes warning.
    pub failures_before_warning: u32,
    /// Consecutive failing results needed before the status becomes critical.
    pub failures_before_critical: u32,
    /// Deregister the instance after the check has been critical this long
    /// (measured from the moment it turned critical; no minimum).
    pub deregister_critical_after: Option<Duration>,
}

impl CheckPolicy {
    /// A check run every `interval` (zero for TTL and mirrored checks, which are not run) that
    /// may take up to `timeout`, with Consul's defaults for the rest: no thresholds
    /// (`SuccessBeforePassing`, `FailuresBeforeWarning` and `FailuresBeforeCritical` 0, so each
    /// result sets the status at once) and no automatic deregistration.
    ///
    /// Set the fields that differ with struct update syntax:
    /// `CheckPolicy { failures_before_critical: 3, ..CheckPolicy::new(interval, timeout) }`.
    pub const fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            interval,
            timeout,
            success_before_passing: 0,
            failures_before_warning: 0,
            failures_before_critical: 0,
            deregister_critical_after: None,
        }
    }
}

/// A check as a user defines it, before the catalog fills in its defaults (ID, name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckDefinition {
    /// Explicit ID; `None` takes Consul's default `service:<instance>[:n]`.
    pub id: Option<CheckId>,
    /// Display name; empty takes `Service '<name>' check`.
    pub name: String,
    /// Free text shown with the check.
    pub notes: String,
    /// The instance this check belongs to; `None` for a node-level check, which counts
    /// against every instance on the agent.
    pub service_id: Option<InstanceId>,
    /// Status the check starts in; Consul's default is critical.
    pub initial_status: Option<Status>,
    /// What to probe.
    pub kind: CheckKind,
    /// When to probe and how results become a status.
    pub policy: CheckPolicy,
}

impl CheckDefinition {
    /// Checks the definition: kind-specific fields, and interval/TTL rules as Consul states them.
    pub fn validate(&self) -> Result<(), ValidationError> {
        text("Name", &self.name, limits::TEXT_MAX)?;
        text("Notes", &self.notes, limits::TEXT_MAX)?;
        self.kind.validate()?;
        let is_ttl = matches!(self.kind, CheckKind::Ttl { .. });
        if is_ttl && !self.policy.interval.is_zero() {
            return Err(ValidationError::new(
                "Interval",
                "Interval and TTL cannot both be specified",
            ));
        }
        // Mirrored checks are not run here either: like TTL checks they need no interval.
        if self.kind.is_scheduled() {
            if self.policy.interval.is_zero() {
                return Err(ValidationError::new(
                    "Interval",
                    "must be > 0 for script, HTTP, TCP and gRPC checks",
                ));
            }
            if self.policy.timeout.is_zero() {
                return Err(ValidationError::new("Timeout", "must be > 0"));
            }
        }
        if self.policy.failures_before_warning > self.policy.failures_before_critical {
            return Err(ValidationError::new(
                "FailuresBeforeWarning",
                "must not exceed FailuresBeforeCritical",
            ));
        }
        if self
            .policy
            .deregister_critical_after
            .is_some_and(|d| d.is_zero())
        {
            return Err(ValidationError::new(
                "DeregisterCriticalServiceAfter",
                "must be > 0 when set",
            ));
        }
        Ok(())
    }
}

/// A registered check with its current status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Unique on this agent.
    pub id: CheckId,
    /// Display name.
    pub name: String,
    /// Free text shown with the check.
    pub notes: String,
    /// Owning instance, or `None` for a node-level check.
    pub service_id: Option<InstanceId>,
    /// Current status, changed only through the write path.
    pub status: Status,
    /// Output recorded with the last status change (the live output of every run is kept by
    /// the health scheduler, in memory, because writing it would cost a write per run).
    pub output: String,
    /// What to probe.
    pub kind: CheckKind,
    /// When to probe and how results become a status.
    pub policy: CheckPolicy,
    /// Index at which the check was first registered.
    pub create_index: u64,
    /// Index of the last change to the check (definition or status).
    pub modify_index: u64,
}

impl Check {
    /// The definition this check was registered with, with its resolved ID and name, so that a
    /// re-registration can be compared against it.
    pub fn definition(&self) -> CheckDefinition {
        CheckDefinition {
            id: Some(self.id.clone()),
            name: self.name.clone(),
            notes: self.notes.clone(),
            service_id: self.service_id.clone(),
            initial_status: None,
            kind: self.kind.clone(),
            policy: self.policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(url: &str) -> CheckDefinition {
        CheckDefinition {
            id: None,
            name: String::new(),
            notes: String::new(),
            service_id: None,
            initial_status: None,
            kind: CheckKind::Http {
                url: url.into(),
                method: "GET".into(),
                headers: BTreeMap::new(),
                body: String::new(),
                tls_skip_verify: false,
                tls_server_name: String::new(),
            },
            policy: CheckPolicy::new(Duration::from_secs(10), Duration::from_secs(1)),
        }
    }

    #[test]
    fn http_checks_need_a_scheme_and_host() {
        assert!(http("http://127.0.0.1:8080/health").validate().is_ok());
        assert_eq!(
            http("ftp://x").validate().expect_err("scheme").field,
            "HTTP"
        );
        assert_eq!(
            http("http:///path").validate().expect_err("host").field,
            "HTTP"
        );
    }

    #[test]
    fn interval_is_required_except_for_ttl() {
        let mut def = http("http://x:1/");
        def.policy.interval = Duration::ZERO;
        assert_eq!(def.validate().expect_err("interval").field, "Interval");
        def.kind = CheckKind::Ttl {
            ttl: Duration::from_secs(5),
        };
        assert!(def.validate().is_ok());
        def.policy.interval = Duration::from_secs(1);
        assert_eq!(def.validate().expect_err("both").field, "Interval");
    }

    #[test]
    fn mirrored_checks_need_no_interval() {
        let mut def = http("http://x:1/");
        def.kind = CheckKind::Mirrored {
            type_name: "http".into(),
        };
        def.policy.interval = Duration::ZERO;
        def.policy.timeout = Duration::ZERO;
        assert!(def.validate().is_ok());
    }

    #[test]
    fn output_is_cut_on_a_char_boundary() {
        let mut s = "é".repeat(3000);
        truncate_output(&mut s);
        assert!(s.len() <= MAX_OUTPUT_BYTES);
        assert!(s.len() >= MAX_OUTPUT_BYTES - 1);
    }
}
