//! [`Registration`]: a process registers itself with its agent, and keeps itself registered
//! until it goes away (issue 5).
//!
//! What it owns:
//! - the registration body, in Consul's shape (`PUT /v1/agent/service/register`), so it works
//!   against a Consul agent too;
//! - one background task per [`Registered`] handle that heartbeats a TTL check, or (with an
//!   HTTP check or none) checks every [`Registration::resync_interval`] that the agent still
//!   lists the instance, and registers again when the agent lost it (an agent restarted with a
//!   fresh data dir knows nothing of its old instances, and nobody else will tell it);
//! - deregistration when the handle is dropped, when [`Registered::deregister`] is awaited, and
//!   on SIGTERM ([`OnSigterm`]).
//!
//! What it does not do: decide when the process is healthy (that is [`Registered::report`] for a
//! TTL check, or the agent's probe for an HTTP check), or shut the application down on SIGTERM
//! (with [`OnSigterm::Notify`] the application hears about it and stops itself).
//!
//! This module holds what callers see: the [`Registration`] builder, the [`Registered`] handle
//! and the settings they take. The rest is in its parts:
//! - `body`: the registration body the agent is sent, durations in Go's format;
//! - `ids`: the instance's default ID and its check's ID;
//! - `keepalive`: the background task, and the agent requests that register and deregister;
//! - `sigterm`: the one process-wide SIGTERM listener, and why there is only one.

mod body;
mod ids;
mod keepalive;
mod sigterm;

use crate::agent::AgentHttp;
use crate::error::ClientError;
use ids::{check_id, default_id, host_label};
use keepalive::{Keepalive, Report, Shared, deregister, put_registration};
use sigterm::TERMINATOR;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use tokio::sync::watch;

/// The address registered unless [`Registration::address`] says otherwise: consumers on the
/// agent's host reach the process there. Set the host's routable address when they are not.
const DEFAULT_ADDRESS: &str = "127.0.0.1";
/// How often a registration without a TTL check asks the agent whether it still lists the
/// instance, unless [`Registration::resync_interval`] says otherwise.
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Longest a registration, heartbeat or listing request may take. A registration answers only
/// once durable at the agent, so this leaves room for a slow disk.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a deregistration on drop or SIGTERM may take: the process is going away and must not
/// hang on an agent that does not answer.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);
/// The exit status after [`OnSigterm::DeregisterAndExit`]: 128 + 15, what a shell reports for
/// a process killed by SIGTERM, so supervisors see the usual outcome.
pub const SIGTERM_EXIT_CODE: i32 = 143;

/// What a process registers about itself. A builder: every method returns the changed value,
/// and [`Registration::register`] sends it.
///
/// Cloneable, so one description can be registered with several agents, or again after
/// [`Registered::deregister`].
#[derive(Clone, Debug)]
pub struct Registration {
    name: String,
    id: Option<String>,
    address: String,
    port: u16,
    tags: Vec<String>,
    meta: BTreeMap<String, String>,
    weights: Option<(u32, u32)>,
    check: Option<CheckSpec>,
    deregister_critical_after: Option<Duration>,
    on_sigterm: OnSigterm,
    resync_interval: Duration,
}

/// The one check a registration carries.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CheckSpec {
    /// The agent probes `url` every `interval`.
    Http { url: String, interval: Duration },
    /// The process reports within every `ttl`.
    Ttl { ttl: Duration },
}

/// What happens when the process receives SIGTERM (the signal supervisors such as systemd and
/// Kubernetes send to stop it).
///
/// Installing a SIGTERM handler disables the default action (exit) for the rest of the
/// process's life; tokio cannot uninstall it. So the handler is only installed when asked for,
/// and once [`OnSigterm::DeregisterAndExit`] was chosen by any registration, SIGTERM keeps
/// ending the process even after every handle is gone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnSigterm {
    /// Deregister every live registration of the process (each within 2 s),
    /// then `std::process::exit(143)` ([`SIGTERM_EXIT_CODE`]), as the default action would
    /// have. The default: consumers stop being sent to the process before it disappears, and an
    /// application that never thought about signals still stops. Destructors do not run.
    #[default]
    DeregisterAndExit,
    /// Deregister this registration, then resolve [`Registered::terminated`]; the application
    /// shuts itself down (drains requests, flushes). Further SIGTERMs are not acted on, so keep
    /// the handle until shutdown. If another registration chose `DeregisterAndExit`, the
    /// process exits after deregistering all of them.
    Notify,
    /// Install no handler: the application deals with SIGTERM itself (and should drop or
    /// [`Registered::deregister`] the handle on the way out). The registration is still
    /// deregistered if another registration's `DeregisterAndExit` ends the process.
    Ignore,
}

/// A TTL check's status, as the process reports it with [`Registered::report`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CheckStatus {
    /// Healthy: consumers are sent here.
    #[default]
    Passing,
    /// Degraded: still listed by default, but left out of `?passing` queries.
    Warning,
    /// Unhealthy: consumers are not sent here.
    Critical,
}

impl CheckStatus {
    /// The status as Consul spells it in check bodies.
    fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Warning => "warning",
            CheckStatus::Critical => "critical",
        }
    }

    /// The path segment of the TTL update: `PUT /v1/agent/check/{verb}/{check_id}`.
    fn verb(self) -> &'static str {
        match self {
            CheckStatus::Passing => "pass",
            CheckStatus::Warning => "warn",
            CheckStatus::Critical => "fail",
        }
    }
}

impl Registration {
    /// A registration of service `name` at 127.0.0.1, port 0, without a check.
    ///
    /// Unless [`Registration::id`] sets one, the instance ID is made at registration from the
    /// name, the short host name (`local` if unknown) and the port (the process ID when the
    /// port is 0): unique on the host, and the same when the process restarts on its port, so
    /// a restart replaces its own old instance instead of leaving a stale duplicate.
    pub fn new(name: impl Into<String>) -> Self {
        Registration {
            name: name.into(),
            id: None,
            address: DEFAULT_ADDRESS.to_owned(),
            port: 0,
            tags: Vec::new(),
            meta: BTreeMap::new(),
            weights: None,
            check: None,
            deregister_critical_after: None,
            on_sigterm: OnSigterm::default(),
            resync_interval: DEFAULT_RESYNC_INTERVAL,
        }
    }

    /// The instance ID, unique on the agent; registering the same ID again replaces the
    /// instance. Needed when several instances share a host and port scheme.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The address consumers connect to (an IP or host name; not `0.0.0.0`).
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = address.into();
        self
    }

    /// The port consumers connect to.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Adds a tag (consumers filter on tags, the gateway routes on `urlprefix-` tags).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Sets a metadata pair (e.g. the build version), replacing an earlier value of `key`.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Balancing weights while passing and while warning (the agent's default is 1 and 1).
    /// A warning weight below the passing one sheds load from a degraded instance.
    pub fn weights(mut self, passing: u32, warning: u32) -> Self {
        self.weights = Some((passing, warning));
        self
    }

    /// An HTTP check: the agent requests `url` every `interval`; 2xx is passing, 429 warning,
    /// anything else critical. The right check for a process that serves HTTP, because it
    /// checks what consumers use. Replaces a TTL check set earlier.
    pub fn http_check(mut self, url: impl Into<String>, interval: Duration) -> Self {
        self.check = Some(CheckSpec::Http {
            url: url.into(),
            interval,
        });
        self
    }

    /// A TTL check: the instance turns critical unless the process reports within every `ttl`.
    /// The background task heartbeats every `ttl / 3` (at least 100 ms) with
    /// what [`Registered::report`] last said (passing until then), so the instance stays
    /// healthy exactly as long as the process and its runtime are alive. For processes that
    /// serve no HTTP. Replaces an HTTP check set earlier.
    pub fn ttl_check(mut self, ttl: Duration) -> Self {
        self.check = Some(CheckSpec::Ttl { ttl });
        self
    }

    /// Consul's `DeregisterCriticalServiceAfter`: the agent removes the instance once its check
    /// has been critical this long. The safety net for a process that dies without
    /// deregistering (SIGKILL, power loss). Needs a check; [`Registration::register`] refuses
    /// it without one.
    pub fn deregister_critical_after(mut self, after: Duration) -> Self {
        self.deregister_critical_after = Some(after);
        self
    }

    /// What SIGTERM does (default [`OnSigterm::DeregisterAndExit`]).
    pub fn on_sigterm(mut self, action: OnSigterm) -> Self {
        self.on_sigterm = action;
        self
    }

    /// Without a TTL check, how often the background task asks the agent whether it still
    /// lists the instance, and registers it again if not (default
    /// [`DEFAULT_RESYNC_INTERVAL`], at least 100 ms). It bounds how long the
    /// instance is missing after the agent lost it. With a TTL check the heartbeat notices
    /// instead, and this is not used.
    pub fn resync_interval(mut self, interval: Duration) -> Self {
        self.resync_interval = interval;
        self
    }

    /// Registers with the agent at `agent_url` (e.g. `http://127.0.0.1:8500`) and starts the
    /// background task on the current tokio runtime; it runs until the returned handle is
    /// dropped or deregistered.
    ///
    /// Fails without registering if there is no tokio runtime ([`ClientError::NoRuntime`]),
    /// the URL or a setting cannot work ([`ClientError::BadUrl`], [`ClientError::Invalid`]),
    /// the SIGTERM listener cannot start ([`ClientError::Signal`]), the agent cannot be reached
    /// ([`ClientError::Unreachable`]), or it refuses the registration ([`ClientError::Status`],
    /// quoting its reason). It does not retry: whether to start without being registered is
    /// the application's call.
    ///
    /// The SIGTERM listener is installed before registering, so there is no moment at which
    /// the process is registered and SIGTERM would kill it without deregistering.
    pub async fn register(self, agent_url: &str) -> Result<Registered, ClientError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ClientError::NoRuntime("Registration::register"))?;
        if self.id.as_deref() == Some("") {
            return Err(ClientError::Invalid {
                what: "the service ID".to_owned(),
                reason: "it is empty; leave it unset for the default".to_owned(),
            });
        }
        if self.deregister_critical_after.is_some() && self.check.is_none() {
            return Err(ClientError::Invalid {
                what: "deregister_critical_after".to_owned(),
                reason: "it needs a check to be critical; add http_check or ttl_check".to_owned(),
            });
        }
        let http = AgentHttp::new(agent_url)?;
        if self.on_sigterm != OnSigterm::Ignore {
            TERMINATOR.listen(self.on_sigterm).await?;
        }
        let id = match &self.id {
            Some(id) => id.clone(),
            None => default_id(&self.name, &host_label(), self.port, std::process::id()),
        };
        put_registration(&http, &self.body(&id, CheckStatus::default())).await?;
        tracing::info!(service = %self.name, %id, agent = %http.base(), "registered with the agent");

        let check_id = self.check.as_ref().map(|_| check_id(&id));
        let shared = Shared::new(http.base(), &id, self.on_sigterm);
        let (report, reports) = watch::channel(Report::default());
        let keepalive = Keepalive {
            http: http.clone(),
            registration: self,
            id,
            check_id: check_id.clone(),
            reports,
            shared: Arc::clone(&shared),
        };
        let task = runtime.spawn(keepalive.run());
        // `finish` aborts through this. Nothing can finish the registration before it is set:
        // neither the handle nor the SIGTERM listener has it yet.
        let _ = shared.task.set(task.abort_handle());
        TERMINATOR.adopt(&shared);
        Ok(Registered {
            shared,
            http,
            check_id,
            report,
        })
    }
}

/// The handle of a live registration. It owns the background task that keeps the registration
/// alive; dropping it deregisters (best effort, within about 2 s).
pub struct Registered {
    shared: Arc<Shared>,
    http: AgentHttp,
    check_id: Option<String>,
    report: watch::Sender<Report>,
}

impl fmt::Debug for Registered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registered")
            .field("agent", &self.shared.agent)
            .field("id", &self.shared.id)
            .field("check_id", &self.check_id)
            .finish_non_exhaustive()
    }
}

impl Registered {
    /// The instance ID, as consumers see it in the catalog (the default one if none was set).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// The check's ID (`service:<id>`, Consul's default for a service's only check), or `None`
    /// without a check. What to look for in `/v1/agent/checks`.
    pub fn check_id(&self) -> Option<&str> {
        self.check_id.as_deref()
    }

    /// Sets what the TTL heartbeat reports: sent at once and on every heartbeat after, with
    /// `note` as the check's output. How a process takes itself out of rotation (Critical) or
    /// marks itself degraded (Warning) without deregistering. Without a TTL check it has no
    /// effect: the agent's own probe decides.
    pub fn report(&self, status: CheckStatus, note: impl Into<String>) {
        self.report.send_replace(Report {
            status,
            note: note.into(),
        });
    }

    /// Resolves once SIGTERM has been handled for this registration: with
    /// [`OnSigterm::Notify`], after it was deregistered. The application's cue to shut down.
    /// With the other actions it never resolves (the process exits, or SIGTERM is not watched).
    pub async fn terminated(&self) {
        let mut terminated = self.shared.terminated.subscribe();
        if terminated.wait_for(|done| *done).await.is_err() {
            // The sender lives in `shared`, which `self` keeps alive; unreachable, but never
            // resolve on a closed channel.
            std::future::pending::<()>().await;
        }
    }

    /// Stops the background task and deregisters, waiting for the agent's answer. Succeeds if
    /// the agent no longer has the instance, including when it had lost it already or SIGTERM
    /// handling deregistered it first.
    pub async fn deregister(self) -> Result<(), ClientError> {
        if !self.shared.finish() {
            return Ok(());
        }
        deregister(&self.http, &self.shared.id, REQUEST_TIMEOUT).await?;
        tracing::info!(id = %self.shared.id, "deregistered from the agent");
        Ok(())
    }
}

impl Drop for Registered {
    /// Stops the task and deregisters, blocking this thread for at most about
    /// 2 s. Drop cannot await, and the runtime this runs on may be the one
    /// that would have to drive the request, so the request runs on a thread of its own with
    /// its own runtime and connection.
    fn drop(&mut self) {
        if !self.shared.finish() {
            return;
        }
        let agent = self.shared.agent.clone();
        let id = self.shared.id.clone();
        let farewell = thread::Builder::new()
            .name("wayfinder-deregister".into())
            .spawn(move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot start a runtime: {e}"))?;
                runtime
                    .block_on(async {
                        let http = AgentHttp::new(&agent)?;
                        deregister(&http, &id, FAREWELL_TIMEOUT).await
                    })
                    .map_err(|e| e.to_string())
            });
        let outcome = match farewell {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err("the deregistration thread panicked".to_owned())),
            Err(e) => Err(format!("cannot start a thread: {e}")),
        };
        match outcome {
            Ok(()) => tracing::info!(id = %self.shared.id, "deregistered from the agent on drop"),
            Err(error) => tracing::warn!(
                id = %self.shared.id, %error,
                "could not deregister on drop; the agent keeps the instance until its check fails"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigterm_deregisters_and_exits_by_default() {
        assert_eq!(OnSigterm::default(), OnSigterm::DeregisterAndExit);
        assert_eq!(
            Registration::new("w").on_sigterm,
            OnSigterm::DeregisterAndExit
        );
        assert_eq!(CheckStatus::default(), CheckStatus::Passing);
        assert_eq!(SIGTERM_EXIT_CODE, 128 + 15);
    }

    #[test]
    fn registering_needs_a_runtime() {
        let outside = futures::executor::block_on(Registration::new("w").register("http://x"));
        assert_eq!(
            outside.expect_err("no runtime"),
            ClientError::NoRuntime("Registration::register")
        );
    }

    #[tokio::test]
    async fn settings_that_cannot_work_are_refused_before_asking_the_agent() {
        let no_check = Registration::new("w")
            .on_sigterm(OnSigterm::Ignore)
            .deregister_critical_after(Duration::from_secs(60))
            .register("http://127.0.0.1:1")
            .await;
        assert!(
            matches!(no_check, Err(ClientError::Invalid { ref what, .. }) if what == "deregister_critical_after"),
            "{no_check:?}"
        );
        let empty_id = Registration::new("w")
            .on_sigterm(OnSigterm::Ignore)
            .id("")
            .register("http://127.0.0.1:1")
            .await;
        assert!(
            matches!(empty_id, Err(ClientError::Invalid { .. })),
            "{empty_id:?}"
        );
    }
}
