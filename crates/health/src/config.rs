//! Scheduler settings and their defaults, in one place.

use std::time::Duration;

/// Exec checks allowed to run at once, agent-wide (processes beyond it wait for a slot).
///
/// Forking is the most expensive probe by far; an unbounded burst of them (thousands of script
/// checks registered together) would starve the agent itself on a small machine.
pub const DEFAULT_MAX_CONCURRENT_EXEC: usize = 32;

/// `User-Agent` sent by HTTP and gRPC checks unless the check sets its own
/// (Consul sends `Consul Health Check`).
pub const DEFAULT_USER_AGENT: &str = "Wayfinder Health Check";

/// Upper bound of the random delay before a check's first run (1 s).
///
/// The first run is staggered so that thousands of checks registered together do not fire
/// together, but kept short so that a newly registered instance turns healthy quickly.
pub const DEFAULT_FIRST_RUN_MAX_DELAY: Duration = Duration::from_secs(1);

/// How the [`Scheduler`](crate::Scheduler) runs checks. `Default` works on one machine with
/// nothing configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most exec checks running at once; at least 1 is used.
    /// Default [`DEFAULT_MAX_CONCURRENT_EXEC`].
    pub max_concurrent_exec: usize,
    /// `User-Agent` for HTTP and gRPC checks that do not set one.
    /// Default [`DEFAULT_USER_AGENT`].
    pub user_agent: String,
    /// Upper bound of the random delay before each check's first run (the delay is also never
    /// more than the check's interval). Default [`DEFAULT_FIRST_RUN_MAX_DELAY`].
    pub first_run_max_delay: Duration,
    /// Extra CA certificates (DER) trusted by HTTPS and gRPC-over-TLS checks, on top of the
    /// system's roots: for health endpoints served with a private CA. Default none.
    pub ca_certificates: Vec<Vec<u8>>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_concurrent_exec: DEFAULT_MAX_CONCURRENT_EXEC,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            first_run_max_delay: DEFAULT_FIRST_RUN_MAX_DELAY,
            ca_certificates: Vec::new(),
        }
    }
}
