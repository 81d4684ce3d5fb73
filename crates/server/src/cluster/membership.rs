//! The two membership tasks: one holds this agent's lease and record in etcd, the other
//! follows every member's record and publishes the live set.
//!
//! Both outlive etcd trouble by retrying, because etcd-client does neither for us (reference
//! §4): a call sent to a dead member fails with `Unavailable` (the next one may pick a live
//! member, so it is retried with backoff), and a stream opened on a dead member's connection
//! ends (so it is opened again). The lease TTL (`--cluster-lease-ttl`, 5 s) is what bounds a
//! takeover, and must stay above the time a renewal may take through a member's death: a
//! renewal is tried every third of the TTL, and every 200 ms after a failure, each attempt
//! bounded by the store's 2 s request timeout.

use super::MemberSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wayfinder_client::blocking::Backoff;
use wayfinder_store::{EtcdStore, LeaseState, MemberChange, MemberRecord};

/// The first pause after a failed etcd call; doubled after each further failure (with jitter,
/// [`Backoff`], so agents that lost etcd together do not retry together).
const RETRY_MIN: Duration = Duration::from_millis(200);
/// The longest pause between attempts.
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long shutdown waits for etcd to revoke the lease before leaving it to expire.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(2);
/// No lease held (etcd lease IDs are positive).
const NO_LEASE: i64 = 0;

/// The running membership tasks, stopped by [`MembershipTasks::shutdown`].
pub struct MembershipTasks {
    store: EtcdStore,
    stop: CancellationToken,
    lease: Arc<AtomicI64>,
    tasks: Vec<JoinHandle<()>>,
}

impl MembershipTasks {
    /// Starts holding `local`'s record under a lease of `ttl`, and following every record into
    /// `members`; `changed` runs after each change of the published set.
    pub fn spawn(
        store: EtcdStore,
        local: MemberRecord,
        ttl: Duration,
        members: watch::Sender<Arc<MemberSet>>,
        changed: impl Fn(&MemberSet) + Send + Sync + 'static,
    ) -> Self {
        let stop = CancellationToken::new();
        let lease = Arc::new(AtomicI64::new(NO_LEASE));
        let holder = LeaseHolder {
            store: store.clone(),
            record: local,
            ttl,
            lease: Arc::clone(&lease),
            stop: stop.clone(),
        };
        let follower = MemberFollower {
            store: store.clone(),
            members,
            changed: Box::new(changed),
            stop: stop.clone(),
        };
        let tasks = vec![tokio::spawn(holder.run()), tokio::spawn(follower.run())];
        Self {
            store,
            stop,
            lease,
            tasks,
        }
    }

    /// Stops both tasks and revokes the lease, so the other agents take this one's checks over
    /// at once instead of after the TTL.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let lease = self.lease.load(Ordering::Acquire);
        if lease != NO_LEASE {
            match tokio::time::timeout(REVOKE_TIMEOUT, self.store.revoke_lease(lease)).await {
                Ok(Ok(())) => tracing::info!("left the cluster (lease revoked)"),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "lease not revoked; it expires after its TTL")
                }
                Err(_) => tracing::warn!("lease revoke timed out; it expires after its TTL"),
            }
        }
    }
}

/// Sleeps `pause` unless stopped first; `false` when stopped.
async fn pause(stop: &CancellationToken, pause: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(pause) => true,
    }
}

/// Keeps this agent's record in etcd for as long as the agent runs.
struct LeaseHolder {
    store: EtcdStore,
    record: MemberRecord,
    ttl: Duration,
    /// The lease in use, for the revoke at shutdown.
    lease: Arc<AtomicI64>,
    stop: CancellationToken,
}

impl LeaseHolder {
    async fn run(self) {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        while !self.stop.is_cancelled() {
            match self.join().await {
                Ok(lease) => {
                    backoff.reset();
                    self.lease.store(lease, Ordering::Release);
                    tracing::info!(
                        member = %self.record.id, lease, ttl = ?self.ttl,
                        "joined the cluster"
                    );
                    self.renew(lease).await;
                    self.lease.store(NO_LEASE, Ordering::Release);
                }
                Err(error) => {
                    let retry_in = backoff.next_delay();
                    tracing::warn!(%error, ?retry_in, "cannot join the cluster yet");
                    if !pause(&self.stop, retry_in).await {
                        return;
                    }
                }
            }
        }
    }

    /// Grants a lease and writes the record under it. A lease whose put failed is left to
    /// expire on its own.
    async fn join(&self) -> Result<i64, wayfinder_store::StoreError> {
        let lease = self.store.grant_lease(self.ttl).await?;
        self.store.put_member(lease, &self.record).await?;
        Ok(lease)
    }

    /// Renews `lease` every third of the TTL until stopped, or until the lease is lost: etcd
    /// says it expired, or no renewal succeeded for a whole TTL (then etcd has dropped it, or
    /// is about to). Then the caller joins again with a new lease.
    async fn renew(&self, lease: i64) {
        let mut renewed = Instant::now();
        loop {
            if !pause(&self.stop, self.ttl / 3).await {
                return;
            }
            loop {
                match self.store.keep_alive(lease).await {
                    Ok(LeaseState::Alive) => {
                        renewed = Instant::now();
                        break;
                    }
                    Ok(LeaseState::Expired) => {
                        tracing::warn!(lease, "the cluster lease expired; joining again");
                        return;
                    }
                    Err(error) if renewed.elapsed() < self.ttl => {
                        tracing::debug!(%error, lease, "lease renewal failed; retrying");
                        if !pause(&self.stop, RETRY_MIN).await {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            %error, lease,
                            "lease not renewed within its TTL; joining again with a new one"
                        );
                        return;
                    }
                }
            }
        }
    }
}

/// Follows every member record and publishes the live set.
struct MemberFollower {
    store: EtcdStore,
    members: watch::Sender<Arc<MemberSet>>,
    changed: Box<dyn Fn(&MemberSet) + Send + Sync>,
    stop: CancellationToken,
}

impl MemberFollower {
    /// Reads the set, then follows its watch; reads it again whenever the watch ends.
    async fn run(self) {
        let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
        while !self.stop.is_cancelled() {
            let retry_in = tokio::select! {
                () = self.stop.cancelled() => return,
                result = self.follow_once() => match result {
                    Ok(()) => {
                        backoff.reset();
                        RETRY_MIN
                    }
                    Err(error) => {
                        tracing::debug!(%error, "member watch failed; reading the set again");
                        backoff.next_delay()
                    }
                },
            };
            if !pause(&self.stop, retry_in).await {
                return;
            }
        }
    }

    /// One read of the whole set and a watch from just after it, until the watch ends.
    async fn follow_once(&self) -> Result<(), wayfinder_store::StoreError> {
        let (revision, records) = self.store.members().await?;
        let mut set: MemberSet = records.into_iter().map(|r| (r.id.clone(), r)).collect();
        self.publish(&set);
        let mut changes = self.store.watch_members(revision + 1).await?;
        while let Some(batch) = changes.next().await? {
            for change in batch {
                match change {
                    MemberChange::Joined(record) => {
                        set.insert(record.id.clone(), record);
                    }
                    MemberChange::Left(id) => {
                        set.remove(&id);
                    }
                }
            }
            self.publish(&set);
        }
        Ok(())
    }

    fn publish(&self, set: &MemberSet) {
        if **self.members.borrow() == *set {
            return;
        }
        tracing::info!(
            members = set.len(),
            ids = ?set.keys().collect::<Vec<_>>(),
            "cluster members changed"
        );
        self.members.send_replace(Arc::new(set.clone()));
        (self.changed)(set);
    }
}
