//! Cluster membership (issue 7): which agents share the etcd catalog right now, and which of
//! them runs each health check.
//!
//! Each agent holds an etcd lease and a record under it ([`membership`]); the live members are
//! the records etcd holds, so an agent that dies (or is cut off from etcd) drops out when its
//! lease expires, within `--cluster-lease-ttl`. Every agent owns the checks that rendezvous
//! hashing over the live member IDs gives it ([`rendezvous`]); the health scheduler runs only
//! those, and when the set changes every agent re-evaluates, so a dead agent's checks move to
//! the survivors. Check results go through the one write path (etcd), so every agent serves
//! every result. A TTL heartbeat sent to any agent reaches the check's owner ([`forward`]).
//!
//! Not here: the catalog's replication (that is [`crate::write_path`]'s follower) and any
//! consensus of our own: etcd's leases and watch are the only source of truth.

pub mod forward;
pub mod membership;
pub mod rendezvous;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use wayfinder_catalog::{CheckId, Status};
use wayfinder_health::Ownership;
use wayfinder_store::MemberRecord;

pub use forward::{FORWARDED_HEADER, ForwardError, Forwarder};
pub use membership::MembershipTasks;

/// How long a member's lease lives without renewal: the bound on how long a dead agent's
/// checks go unrun before the survivors take them over.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// The shortest lease TTL accepted: a renewal attempt may take the store's 2 s request timeout
/// when it hits a dead etcd member, and the lease must outlive one such attempt and a retry.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(3);

/// The live members by ID.
pub type MemberSet = BTreeMap<String, MemberRecord>;

/// This agent's view of the cluster: itself, the live members, and who owns which check.
#[derive(Debug)]
pub struct Cluster {
    local: MemberRecord,
    members: watch::Receiver<Arc<MemberSet>>,
    forwarder: Forwarder,
}

impl Cluster {
    /// A view that starts empty (this agent owns nothing until the first read of the set,
    /// which includes its own record) and follows `members`.
    pub fn new(
        local: MemberRecord,
        members: watch::Receiver<Arc<MemberSet>>,
    ) -> Result<Self, ForwardError> {
        Ok(Self {
            local,
            members,
            forwarder: Forwarder::new()?,
        })
    }

    /// A fresh member ID: unique per agent process, so a restarted agent never mistakes the
    /// old record (still leased for up to a TTL) for its own.
    pub fn new_member_id() -> String {
        format!("{:016x}", fastrand::u64(..))
    }

    /// This agent's record.
    pub fn local(&self) -> &MemberRecord {
        &self.local
    }

    /// The live members, as last read from etcd.
    pub fn members(&self) -> Arc<MemberSet> {
        Arc::clone(&self.members.borrow())
    }

    /// The live member that runs `check`, if any member is live.
    pub fn owner_of(&self, check: &str) -> Option<MemberRecord> {
        let members = self.members.borrow();
        rendezvous::owner(check, members.keys().map(String::as_str))
            .and_then(|id| members.get(id))
            .cloned()
    }

    /// The predicate the health scheduler runs checks by: "this agent owns it".
    pub fn ownership(&self) -> Ownership {
        let members = self.members.clone();
        let local = self.local.id.clone();
        Arc::new(move |check: &CheckId| {
            let members = members.borrow();
            rendezvous::owner(check.as_str(), members.keys().map(String::as_str))
                == Some(local.as_str())
        })
    }

    /// Hands a TTL heartbeat to `owner` (see [`forward`]).
    pub async fn forward_heartbeat(
        &self,
        owner: &MemberRecord,
        check: &str,
        status: Status,
        output: &str,
        token: Option<&str>,
    ) -> Result<(), ForwardError> {
        self.forwarder
            .heartbeat(owner, check, status, output, token)
            .await
    }
}
