//! Cluster membership in etcd: which agents share the catalog right now.
//!
//! Each agent writes one record, `{prefix}/members/{id}`, attached to a lease of its own, and
//! keeps that lease alive; when the agent dies (or loses etcd for longer than the lease's TTL)
//! etcd deletes the record, and every other agent's watch on `{prefix}/members/` hears of it.
//! So the live member set needs no failure detector of ours: etcd's lease expiry is it.
//!
//! What this module does not do: decide what to do with the set (check ownership is the
//! agent's), or retry. Every call here is one request; the agent's membership task owns the
//! loops that retry a dead member's `Unavailable` and re-create streams that died with their
//! connection (reference §4: etcd-client neither drops a dead member nor revives a stream).

use crate::{EtcdStore, StoreError};
use etcd_client::{EventType, GetOptions, PutOptions, WatchOptions, WatchStream};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The etcd lease that holds an agent's member record.
pub type LeaseId = i64;

/// One agent of the cluster, as it announces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Unique per agent process (a restarted agent is a new member; its old record expires).
    pub id: String,
    /// The agent's node name.
    pub name: String,
    /// Where the agent's HTTP API answers (`host:port`): other agents forward TTL heartbeats
    /// for checks this agent runs there.
    pub address: String,
    /// The agent's datacenter.
    pub datacenter: String,
}

/// What a keep-alive found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// The lease was renewed for its full TTL.
    Alive,
    /// The lease is gone (it expired while the agent could not reach etcd): its record was
    /// deleted, and the agent must grant a new lease and write its record again.
    Expired,
}

/// A change to the member set, in etcd's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberChange {
    /// A member wrote (or rewrote) its record.
    Joined(MemberRecord),
    /// A member's record was deleted: its lease expired or was revoked. Holds the member ID.
    Left(String),
}

impl EtcdStore {
    /// Grants a lease that lives `ttl` (whole seconds, at least one) unless kept alive.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let seconds = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let response = self
            .client
            .clone()
            .lease_grant(seconds, None)
            .await
            .map_err(|e| self.error("lease grant", e))?;
        Ok(response.id())
    }

    /// Renews `lease` once. A fresh keep-alive stream per call: a stream is tied to the
    /// connection it was opened on and dies with that etcd member, and one round trip every
    /// third of a TTL costs nothing next to handling a dead stream.
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseState, StoreError> {
        match self.client.clone().lease_keep_alive(lease).await {
            Ok(_) => Ok(LeaseState::Alive),
            // etcd-client's word for a keep-alive answered with TTL 0: the lease is gone.
            Err(etcd_client::Error::LeaseKeepAliveError(reason))
                if reason.contains("not found") =>
            {
                Ok(LeaseState::Expired)
            }
            Err(error) => Err(self.error("lease keep-alive", error)),
        }
    }

    /// Revokes `lease`, deleting its record at once (a clean shutdown: the other agents take
    /// over this agent's checks without waiting for the TTL).
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.client
            .clone()
            .lease_revoke(lease)
            .await
            .map_err(|e| self.error("lease revoke", e))?;
        Ok(())
    }

    /// Writes this agent's record, attached to `lease`.
    pub async fn put_member(
        &self,
        lease: LeaseId,
        record: &MemberRecord,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record).map_err(|source| StoreError::Encode {
            what: "member",
            key: record.id.clone(),
            source,
        })?;
        self.client
            .clone()
            .put(
                self.key("members", &record.id),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .map_err(|e| self.error("member put", e))?;
        Ok(())
    }

    /// Reads every live member record, and the revision of the read: watch from the next one
    /// with [`EtcdStore::watch_members`] to miss nothing. A record that does not parse is
    /// skipped with a warning (it is not ours to delete).
    pub async fn members(&self) -> Result<(u64, Vec<MemberRecord>), StoreError> {
        let response = self
            .client
            .clone()
            .get(self.members_prefix(), Some(GetOptions::new().with_prefix()))
            .await
            .map_err(|e| self.error("member list", e))?;
        let revision = response.header().map_or(0, |h| h.revision());
        let records = response
            .kvs()
            .iter()
            .filter_map(|kv| parse_record(kv.key(), kv.value()))
            .collect();
        Ok((u64::try_from(revision).unwrap_or(0), records))
    }

    /// Watches the member records from revision `from` on.
    pub async fn watch_members(&self, from: u64) -> Result<MemberChanges, StoreError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(i64::try_from(from).unwrap_or(i64::MAX));
        let stream = self
            .client
            .clone()
            .watch(self.members_prefix(), Some(options))
            .await
            .map_err(|e| self.error("member watch", e))?;
        Ok(MemberChanges {
            stream,
            prefix: self.members_prefix(),
            store: self.clone(),
        })
    }

    fn members_prefix(&self) -> String {
        format!("{}/members/", self.settings().prefix)
    }
}

/// The ordered stream of member changes from one revision on.
pub struct MemberChanges {
    stream: WatchStream,
    prefix: String,
    store: EtcdStore,
}

impl MemberChanges {
    /// The next changes; `None` when the stream ended (its etcd member died, or history was
    /// compacted past the start): read the set again and watch anew.
    pub async fn next(&mut self) -> Result<Option<Vec<MemberChange>>, StoreError> {
        loop {
            let Some(response) = self
                .stream
                .message()
                .await
                .map_err(|e| self.store.error("member watch", e))?
            else {
                return Ok(None);
            };
            if response.canceled() || response.compact_revision() > 0 {
                return Ok(None);
            }
            let changes: Vec<MemberChange> = response
                .events()
                .iter()
                .filter_map(|event| {
                    let kv = event.kv()?;
                    match event.event_type() {
                        EventType::Put => {
                            parse_record(kv.key(), kv.value()).map(MemberChange::Joined)
                        }
                        EventType::Delete => std::str::from_utf8(kv.key())
                            .ok()?
                            .strip_prefix(&self.prefix)
                            .map(|id| MemberChange::Left(id.to_owned())),
                    }
                })
                .collect();
            if !changes.is_empty() {
                return Ok(Some(changes));
            }
        }
    }
}

fn parse_record(key: &[u8], value: &[u8]) -> Option<MemberRecord> {
    match serde_json::from_slice(value) {
        Ok(record) => Some(record),
        Err(error) => {
            tracing::warn!(
                key = %String::from_utf8_lossy(key),
                %error,
                "member record does not parse; ignoring it"
            );
            None
        }
    }
}
