//! What happened, for the consumers of the catalog (watch streams, gateway, DNS, caches).

use crate::names::{InstanceId, ServiceName};
use crate::status::Status;

/// A change to one instance, at the index that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Catalog index of the write that caused the event.
    pub index: u64,
    /// Service the instance belongs (or belonged) to.
    pub service: ServiceName,
    /// The instance.
    pub instance: InstanceId,
    /// What changed.
    pub kind: EventKind,
}

/// The kinds of change consumers react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The instance appeared, or its definition changed.
    Registered,
    /// The instance is gone.
    Deregistered,
    /// The instance's aggregate health moved.
    HealthChanged {
        /// Health before the write.
        from: Status,
        /// Health after the write.
        to: Status,
    },
}
