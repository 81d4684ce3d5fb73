//! What runners hand to the agent ([`Report`]) and what they keep for readers ([`Observation`]).

use std::time::{Duration, SystemTime};
use wayfinder_catalog::{CheckId, InstanceId, Status};

/// What the scheduler asks the write path to do.
///
/// Reports are requests, not facts: the agent applies them as catalog commands
/// (`SetCheckStatus`, `Deregister`), and the catalog's answer comes back through
/// [`Scheduler::update`](crate::Scheduler::update). A report may be overtaken while it waits in
/// the channel (a TTL heartbeat arrived, the check was re-registered); the agent can drop such
/// reports by asking [`Scheduler::is_current`](crate::Scheduler::is_current) just before the
/// write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The check's derived status differs from the catalog's: write it.
    Status {
        /// The check.
        check: CheckId,
        /// Its new status.
        status: Status,
        /// Output of the run that produced it (at most 4 KiB).
        output: String,
    },
    /// The instance has been critical for its check's `deregister_critical_after`: remove it.
    DeregisterCritical {
        /// The instance to deregister.
        instance: InstanceId,
        /// The check that has been critical for too long (for the log line).
        check: CheckId,
    },
}

/// The last result of a check run, kept in memory and written to the catalog only when the
/// status changes (writing every run's output would cost one durable write per run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The status this one run produced, before thresholds (a failure still inside
    /// `failures_before_critical` shows as critical here while the catalog says passing).
    pub status: Status,
    /// The run's output (at most 4 KiB), or a TTL heartbeat's note.
    pub output: String,
    /// How long the run took (zero for heartbeats).
    pub latency: Duration,
    /// When the run finished (wall clock, for display).
    pub at: SystemTime,
}
