//! The background task behind a [`crate::Service`]: blocking queries on
//! `GET /v1/health/service/{name}` for as long as a handle is alive, publishing each new set.
//!
//! No polling: each query parks at the agent until the service's index passes the last one
//! seen (or `wait` ends), so a change arrives within one round trip of the agent learning it.
//! On failure the last good set stays published, [`Freshness`] turns stale, and the loop backs
//! off (jittered, 100 ms doubling to 5 s) so a restarted agent is picked up within seconds.
//! The task ends when the last handle is dropped (the watch channel closes).

use crate::agent::AgentHttp;
use crate::blocking::{Backoff, IndexCursor, Progress, request_timeout, unchanged_pause};
use crate::endpoint::{self, Endpoint, WarningPolicy};
use crate::endpoints::Endpoints;
use crate::error::ClientError;
use crate::freshness::{Clock, Freshness};
use crate::model;
use reqwest::Method;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, sleep};

/// First back-off delay after a failed query: the agent is usually local, so retry soon.
pub const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Longest back-off delay: a restarted agent is noticed within this long.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Least time between the starts of two queries whose answers left the set unchanged, so a
/// service whose index moves many times a second (check outputs) is not re-read each time.
pub const MIN_QUERY_GAP: Duration = Duration::from_millis(200);

/// What one watch loop needs.
pub(crate) struct Watch {
    pub http: AgentHttp,
    pub service: String,
    pub tags: Vec<String>,
    pub warnings: WarningPolicy,
    pub wait: Duration,
    pub clock: Clock,
    pub sender: watch::Sender<Arc<Endpoints>>,
    pub freshness: Arc<Mutex<Freshness>>,
}

impl Watch {
    /// Runs until every receiver of `sender` is gone.
    pub async fn run(self) {
        let mut cursor = IndexCursor::default();
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);
        // When each endpoint joined the set, for slow start, by key: `None` for the members of
        // the first answer (they were serving already and are not ramped).
        let mut healthy_since = HashMap::new();
        loop {
            let started = Instant::now();
            let answer = tokio::select! {
                answer = self.query(cursor.request_index()) => answer,
                () = self.sender.closed() => return,
            };
            let pause = match answer {
                Ok((index, list)) => {
                    backoff.reset();
                    self.set_freshness(|_| Freshness::Fresh);
                    match cursor.advance(index) {
                        Progress::Unchanged => unchanged_pause(started.elapsed()),
                        Progress::Changed | Progress::WentBackwards => {
                            if self.publish(list, index, &mut healthy_since) {
                                Duration::ZERO
                            } else {
                                // The index moved for something this client does not see (a
                                // check's output): do not re-read the list at that rate.
                                MIN_QUERY_GAP.saturating_sub(started.elapsed())
                            }
                        }
                    }
                }
                Err(error) => {
                    // The agent may come back with a lower index (a new store); an old index
                    // would then park the next query until its wait ends. Ask at once instead.
                    cursor = IndexCursor::default();
                    let loaded = self.sender.borrow().is_loaded();
                    let delay = backoff.next_delay();
                    if backoff.failures() == 1 {
                        tracing::warn!(
                            service = %self.service, %error,
                            "cannot read the service from the agent; keeping the last endpoint set and retrying"
                        );
                    } else {
                        tracing::debug!(service = %self.service, %error, ?delay, "retrying");
                    }
                    self.set_freshness(|old| old.after_failure(loaded, error));
                    delay
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    () = sleep(pause) => {}
                    () = self.sender.closed() => return,
                }
            }
        }
    }

    /// One blocking query: the answer's index and the endpoints that may take traffic.
    async fn query(&self, index: u64) -> Result<(u64, Vec<Endpoint>), ClientError> {
        let what = format!("GET /v1/health/service/{}", self.service);
        let index_text = index.to_string();
        let wait_text = format!("{}ms", self.wait.as_millis());
        let mut query = vec![("wait", wait_text.as_str())];
        if index > 0 {
            query.push(("index", index_text.as_str()));
        }
        query.extend(self.tags.iter().map(|t| ("tag", t.as_str())));
        let url = self
            .http
            .url(&["v1", "health", "service", &self.service], &query)?;
        let reply = self
            .http
            .send(Method::GET, url, None, request_timeout(self.wait))
            .await?
            .success(&what)?;
        let malformed = |reason: String| ClientError::Malformed {
            what: what.clone(),
            reason,
        };
        let index = reply
            .index
            .ok_or_else(|| malformed("no X-Consul-Index header".to_owned()))?;
        let entries = model::decode_health(&reply.body).map_err(|e| malformed(e.0))?;
        let list = entries
            .into_iter()
            .filter_map(|entry| match entry {
                Ok(entry) => endpoint::from_health_entry(entry, self.warnings),
                Err(reason) => {
                    tracing::debug!(service = %self.service, %reason, "entry left out");
                    None
                }
            })
            .collect();
        Ok((index, list))
    }

    /// Publishes `list` at `index`, unless it is the same list as before (an index can move
    /// for a change that does not touch what this client sees, e.g. a check's output).
    /// Returns whether it published.
    fn publish(
        &self,
        list: Vec<Endpoint>,
        index: u64,
        healthy_since: &mut HashMap<String, Option<wayfinder_balance::Nanos>>,
    ) -> bool {
        let now = self.clock.now();
        let first = !self.sender.borrow().is_loaded();
        let keys: Vec<String> = list.iter().map(Endpoint::key).collect();
        healthy_since.retain(|key, _| keys.contains(key));
        for key in keys {
            healthy_since
                .entry(key)
                .or_insert_with(|| (!first).then_some(now));
        }
        let published = self.sender.send_if_modified(|current| {
            let same = current.is_loaded()
                && current.len() == list.len()
                && current.iter().zip(&list).all(|(a, b)| **a == *b);
            if same {
                return false;
            }
            *current = Arc::new(current.next(list, index, |e| {
                healthy_since.get(&e.key()).copied().flatten()
            }));
            true
        });
        if published {
            tracing::debug!(service = %self.service, index, "endpoint set updated");
        }
        published
    }

    fn set_freshness(&self, next: impl FnOnce(&Freshness) -> Freshness) {
        let mut freshness = self
            .freshness
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let was_stale = freshness.stale_for().is_some();
        *freshness = next(&freshness);
        if was_stale && freshness.is_fresh() {
            tracing::info!(service = %self.service, "the agent answers again; the endpoint set is current");
        }
    }
}
