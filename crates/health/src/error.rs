//! Errors the scheduler returns to its callers (the TTL API, in practice).

use wayfinder_catalog::CheckId;

/// Why a scheduler call was refused. The messages are Consul's, so the API can send them as the
/// response body unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthError {
    /// No runner has this ID: the check is not registered (or not yet reconciled with
    /// [`Scheduler::update`](crate::Scheduler::update)). The API answers 404.
    #[error("Unknown check ID {0:?}. Ensure that the check ID is passed, not the check name.")]
    UnknownCheck(CheckId),
    /// The check exists but probes on its own; only TTL checks take heartbeats. The API answers
    /// 500, as Consul does.
    #[error("CheckID {0:?} does not have associated TTL")]
    NotTtl(CheckId),
}
