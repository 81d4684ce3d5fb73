//! The changes a catalog accepts. Every write — API, config file, health result, reaper — is
//! one of these, so there is exactly one path by which the catalog changes.

use crate::check::CheckDefinition;
use crate::instance::Instance;
use crate::names::{CheckId, InstanceId};
use crate::status::Status;
use serde::{Deserialize, Serialize};

/// Register (upsert by ID) one instance with its checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The instance; its `create_index`/`modify_index` are ignored and set by the catalog.
    pub instance: Instance,
    /// Checks to attach. Each check's `service_id` is forced to the instance's ID.
    pub checks: Vec<CheckDefinition>,
    /// Remove the instance's existing checks that `checks` does not name
    /// (Consul's `?replace-existing-checks`); otherwise they are kept.
    pub replace_existing_checks: bool,
}

/// One change to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add or replace an instance and its checks.
    Register(Box<Registration>),
    /// Remove an instance and every check attached to it.
    Deregister(InstanceId),
    /// Add or replace one check (attached to an instance, or node-level). Its ID is required.
    RegisterCheck(Box<CheckDefinition>),
    /// Remove one check.
    DeregisterCheck(CheckId),
    /// Record a new status for a check. A status equal to the current one changes nothing and
    /// is not written: the live output of every run is kept outside the catalog.
    SetCheckStatus {
        /// The check.
        id: CheckId,
        /// Its new status.
        status: Status,
        /// Output explaining the status (truncated to 4 KiB).
        output: String,
    },
}
