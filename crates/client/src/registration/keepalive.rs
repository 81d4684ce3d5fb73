//! The background task of a registration ([`Keepalive`]): it heartbeats a TTL check, or
//! resyncs with the agent, and registers the instance again when the agent lost it. Also the
//! state a handle, its task and the SIGTERM listener share ([`Shared`]), and the two agent
//! requests everyone uses: [`put_registration`] and [`deregister`].
//!
//! It does not decide when to stop: the handle and the SIGTERM listener do, through
//! [`Shared::finish`].

use super::{CheckSpec, CheckStatus, OnSigterm, REQUEST_TIMEOUT, Registration};
use crate::agent::AgentHttp;
use crate::blocking::Backoff;
use crate::error::ClientError;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::sleep;

/// Shortest time between two rounds of the background task (heartbeat or resync), whatever the
/// TTL or resync interval: a smaller one would only load the agent.
const MIN_ROUND_INTERVAL: Duration = Duration::from_millis(100);
/// First retry delay after a failed round: the agent is usually local, so retry soon.
const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay: a restarted agent gets the registration back within this long.
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Registration {
    /// Time between two rounds of the background task while all is well.
    fn round_interval(&self) -> Duration {
        let interval = match &self.check {
            Some(CheckSpec::Ttl { ttl }) => *ttl / 3,
            Some(CheckSpec::Http { .. }) | None => self.resync_interval,
        };
        interval.max(MIN_ROUND_INTERVAL)
    }

    /// Whether the task heartbeats (TTL check) rather than resyncs.
    fn heartbeats(&self) -> bool {
        matches!(self.check, Some(CheckSpec::Ttl { .. }))
    }
}

/// What the TTL heartbeat reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Report {
    pub(super) status: CheckStatus,
    pub(super) note: String,
}

/// What a handle, its task and the SIGTERM listener share about one registration.
pub(super) struct Shared {
    /// The agent's base URL: the SIGTERM listener and drop build their own client from it.
    pub(super) agent: String,
    /// The instance ID.
    pub(super) id: String,
    /// What SIGTERM does to this registration.
    pub(super) on_sigterm: OnSigterm,
    /// Set by whoever takes the deregistration on (drop, `deregister`, SIGTERM), so it
    /// happens once and the task stops re-registering.
    finished: AtomicBool,
    /// Aborts the background task.
    pub(super) task: OnceLock<AbortHandle>,
    /// Flipped to true once SIGTERM has been handled, for
    /// [`Registered::terminated`](super::Registered::terminated).
    pub(super) terminated: watch::Sender<bool>,
}

impl Shared {
    /// The shared state of a new registration of instance `id` with the agent at `agent`.
    pub(super) fn new(agent: &str, id: &str, on_sigterm: OnSigterm) -> Arc<Shared> {
        Arc::new(Shared {
            agent: agent.to_owned(),
            id: id.to_owned(),
            on_sigterm,
            finished: AtomicBool::new(false),
            task: OnceLock::new(),
            terminated: watch::Sender::new(false),
        })
    }

    /// Takes the deregistration on: stops the task and returns true, unless someone already
    /// took it (then false, and the caller has nothing to do).
    pub(super) fn finish(&self) -> bool {
        if self.finished.swap(true, Ordering::AcqRel) {
            return false;
        }
        if let Some(task) = self.task.get() {
            task.abort();
        }
        true
    }

    /// Whether someone took the deregistration on.
    pub(super) fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }
}

/// How one round of the background task went.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The agent has the instance.
    Kept,
    /// The agent had lost the instance and has it again.
    Reregistered,
    /// The registration was finished meanwhile: stop.
    Stopped,
}

/// The background task of one registration: heartbeat or resync, and register again when the
/// agent lost the instance.
pub(super) struct Keepalive {
    /// The agent's API.
    pub(super) http: AgentHttp,
    /// What to register again when the agent lost the instance.
    pub(super) registration: Registration,
    /// The instance ID.
    pub(super) id: String,
    /// The check's ID, `None` without a check.
    pub(super) check_id: Option<String>,
    /// What the handle last reported, for the TTL heartbeat.
    pub(super) reports: watch::Receiver<Report>,
    /// Shared with the handle and the SIGTERM listener.
    pub(super) shared: Arc<Shared>,
}

impl Keepalive {
    /// Runs until the registration is finished (the handle aborts it) or the handle is gone.
    pub(super) async fn run(mut self) {
        let interval = self.registration.round_interval();
        let mut backoff = Backoff::new(RETRY_BASE, RETRY_MAX);
        let mut delay = interval;
        loop {
            tokio::select! {
                () = sleep(delay) => {}
                // A new report goes out at once; a closed channel means the handle is gone.
                changed = self.reports.changed() => if changed.is_err() { return },
            }
            if self.shared.is_finished() {
                return;
            }
            let outcome = self.round().await;
            let recovered = backoff.failures() > 0;
            delay = match outcome {
                Ok(Outcome::Stopped) => return,
                Ok(outcome) => {
                    if outcome == Outcome::Reregistered {
                        tracing::info!(
                            service = %self.registration.name, id = %self.id,
                            "the agent had lost this instance; registered it again"
                        );
                    } else if recovered {
                        tracing::info!(id = %self.id, "the agent answers again; still registered");
                    }
                    backoff.reset();
                    interval
                }
                Err(error) => {
                    // Once per outage: the first failure after a success.
                    if backoff.failures() == 0 {
                        tracing::warn!(
                            service = %self.registration.name, id = %self.id, %error,
                            "cannot keep the registration alive; retrying until the agent answers"
                        );
                    } else {
                        tracing::debug!(id = %self.id, %error, "keepalive still failing");
                    }
                    backoff.next_delay()
                }
            };
        }
    }

    /// One heartbeat (TTL check) or resync (otherwise), registering again if the agent does
    /// not know the instance.
    async fn round(&mut self) -> Result<Outcome, ClientError> {
        if self.registration.heartbeats() {
            match self.heartbeat().await {
                // The agent does not know the check: it lost the instance (404, reference §5).
                Err(ClientError::Status { status: 404, .. }) => {}
                other => return other.map(|()| Outcome::Kept),
            }
            let outcome = self.reregister().await?;
            if outcome == Outcome::Reregistered {
                // Carries the note, which the registration body cannot.
                self.heartbeat().await?;
            }
            Ok(outcome)
        } else if self.agent_lists_us().await? {
            Ok(Outcome::Kept)
        } else {
            self.reregister().await
        }
    }

    /// `PUT /v1/agent/check/{pass|warn|fail}/{check_id}?note=` with the latest report.
    async fn heartbeat(&mut self) -> Result<(), ClientError> {
        let Some(check_id) = &self.check_id else {
            return Ok(());
        };
        let report = self.reports.borrow_and_update().clone();
        let verb = report.status.verb();
        let url = self.http.url(
            &["v1", "agent", "check", verb, check_id],
            &[("note", &report.note)],
        )?;
        self.http
            .send(Method::PUT, url, None, REQUEST_TIMEOUT)
            .await?
            .success(&format!("PUT /v1/agent/check/{verb}/{check_id}"))?;
        Ok(())
    }

    /// Whether `GET /v1/agent/services` lists this instance.
    async fn agent_lists_us(&self) -> Result<bool, ClientError> {
        let what = "GET /v1/agent/services";
        let url = self.http.url(&["v1", "agent", "services"], &[])?;
        let reply = self
            .http
            .send(Method::GET, url, None, REQUEST_TIMEOUT)
            .await?
            .success(what)?;
        let services: Map<String, Value> =
            serde_json::from_slice(&reply.body).map_err(|e| ClientError::Malformed {
                what: what.to_owned(),
                reason: format!("not a JSON object of services: {e}"),
            })?;
        Ok(services.contains_key(&self.id))
    }

    /// Registers the instance again, with the TTL check in its last reported status.
    async fn reregister(&self) -> Result<Outcome, ClientError> {
        // Narrows (cannot close) the window in which a deregistration on drop or SIGTERM is
        // overtaken by a re-registration already in flight.
        if self.shared.is_finished() {
            return Ok(Outcome::Stopped);
        }
        let status = self.reports.borrow().status;
        put_registration(&self.http, &self.registration.body(&self.id, status)).await?;
        Ok(Outcome::Reregistered)
    }
}

/// `PUT /v1/agent/service/register?replace-existing-checks=true`: the process's own description
/// is the whole truth about the instance, so checks from an older definition go.
pub(super) async fn put_registration(http: &AgentHttp, body: &Value) -> Result<(), ClientError> {
    let url = http.url(
        &["v1", "agent", "service", "register"],
        &[("replace-existing-checks", "true")],
    )?;
    http.send(Method::PUT, url, Some(body), REQUEST_TIMEOUT)
        .await?
        .success("PUT /v1/agent/service/register")?;
    Ok(())
}

/// `PUT /v1/agent/service/deregister/{id}`. An unknown ID (404) counts as success: the agent
/// does not have the instance, which is what was asked.
pub(super) async fn deregister(
    http: &AgentHttp,
    id: &str,
    timeout: Duration,
) -> Result<(), ClientError> {
    let url = http.url(&["v1", "agent", "service", "deregister", id], &[])?;
    let reply = http.send(Method::PUT, url, None, timeout).await?;
    if reply.status == StatusCode::NOT_FOUND {
        tracing::debug!(%id, "the agent did not have the instance any more");
        return Ok(());
    }
    reply.success(&format!("PUT /v1/agent/service/deregister/{id}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::DEFAULT_RESYNC_INTERVAL;

    #[test]
    fn a_ttl_check_heartbeats_three_times_per_ttl() {
        let registration = Registration::new("worker").ttl_check(Duration::from_secs(3));
        assert_eq!(registration.round_interval(), Duration::from_secs(1));
        assert!(registration.heartbeats());
    }

    #[test]
    fn an_http_check_resyncs_at_the_resync_interval() {
        let registration = Registration::new("web")
            .http_check("http://10.0.0.5:80/health", Duration::from_millis(500));
        assert!(!registration.heartbeats());
        assert_eq!(registration.round_interval(), DEFAULT_RESYNC_INTERVAL);
    }

    #[test]
    fn the_last_check_set_wins_and_rounds_have_a_floor() {
        let registration = Registration::new("w")
            .http_check("http://127.0.0.1:1/", Duration::from_secs(1))
            .ttl_check(Duration::from_millis(150));
        assert!(registration.heartbeats());
        assert_eq!(registration.round_interval(), MIN_ROUND_INTERVAL);
        let plain = Registration::new("w").resync_interval(Duration::ZERO);
        assert_eq!(plain.round_interval(), MIN_ROUND_INTERVAL);
    }
}
