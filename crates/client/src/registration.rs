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
//! Why SIGTERM is handled by one process-wide thread and not by each handle's task: tokio's
//! handler, once installed, disables SIGTERM's default action for the rest of the process. A
//! per-handle listener would leave a process that dropped its handle (or registered two
//! services) unkillable by SIGTERM, or racing two `exit`s. The single listener deregisters every
//! live registration, then exits once; it also keeps working when the application's runtime is
//! busy or gone, because it runs on its own current-thread runtime.

use crate::agent::AgentHttp;
use crate::blocking::Backoff;
use crate::error::ClientError;
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::thread;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::sleep;

/// The address registered unless [`Registration::address`] says otherwise: consumers on the
/// agent's host reach the process there. Set the host's routable address when they are not.
const DEFAULT_ADDRESS: &str = "127.0.0.1";
/// How often a registration without a TTL check asks the agent whether it still lists the
/// instance, unless [`Registration::resync_interval`] says otherwise.
pub const DEFAULT_RESYNC_INTERVAL: Duration = Duration::from_secs(10);
/// Shortest time between two rounds of the background task (heartbeat or resync), whatever the
/// TTL or resync interval: a smaller one would only load the agent.
const MIN_ROUND_INTERVAL: Duration = Duration::from_millis(100);
/// Longest a registration, heartbeat or listing request may take. A registration answers only
/// once durable at the agent, so this leaves room for a slow disk.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a deregistration on drop or SIGTERM may take: the process is going away and must not
/// hang on an agent that does not answer.
const FAREWELL_TIMEOUT: Duration = Duration::from_secs(2);
/// The exit status after [`OnSigterm::DeregisterAndExit`]: 128 + 15, what a shell reports for
/// a process killed by SIGTERM, so supervisors see the usual outcome.
pub const SIGTERM_EXIT_CODE: i32 = 143;
/// First retry delay after a failed round: the agent is usually local, so retry soon.
const RETRY_BASE: Duration = Duration::from_millis(100);
/// Longest retry delay: a restarted agent gets the registration back within this long.
const RETRY_MAX: Duration = Duration::from_secs(5);

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

    /// The body of `PUT /v1/agent/service/register` for instance `id`. A TTL check starts in
    /// `status` (what the process last reported), so a re-registration does not flap the
    /// instance to critical; an HTTP check starts critical, as in Consul, until the agent's
    /// first probe passes.
    fn body(&self, id: &str, status: CheckStatus) -> Value {
        let mut body = Map::new();
        body.insert("ID".into(), json!(id));
        body.insert("Name".into(), json!(self.name));
        body.insert("Address".into(), json!(self.address));
        body.insert("Port".into(), json!(self.port));
        body.insert("Tags".into(), json!(self.tags));
        body.insert("Meta".into(), json!(self.meta));
        if let Some((passing, warning)) = self.weights {
            body.insert(
                "Weights".into(),
                json!({"Passing": passing, "Warning": warning}),
            );
        }
        if let Some(check) = &self.check {
            let mut fields = Map::new();
            // Consul's default ID for a service's only check, sent explicitly so heartbeats do
            // not depend on the agent's defaulting.
            fields.insert("CheckID".into(), json!(check_id(id)));
            match check {
                CheckSpec::Http { url, interval } => {
                    fields.insert("HTTP".into(), json!(url));
                    fields.insert("Interval".into(), json!(go_duration(*interval)));
                }
                CheckSpec::Ttl { ttl } => {
                    fields.insert("TTL".into(), json!(go_duration(*ttl)));
                    fields.insert("Status".into(), json!(status.as_str()));
                }
            }
            if let Some(after) = self.deregister_critical_after {
                fields.insert(
                    "DeregisterCriticalServiceAfter".into(),
                    json!(go_duration(after)),
                );
            }
            body.insert("Check".into(), Value::Object(fields));
        }
        Value::Object(body)
    }

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

/// What the TTL heartbeat reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Report {
    status: CheckStatus,
    note: String,
}

/// What a handle, its task and the SIGTERM listener share about one registration.
struct Shared {
    /// The agent's base URL: the SIGTERM listener and drop build their own client from it.
    agent: String,
    id: String,
    on_sigterm: OnSigterm,
    /// Set by whoever takes the deregistration on (drop, `deregister`, SIGTERM), so it
    /// happens once and the task stops re-registering.
    finished: AtomicBool,
    /// Aborts the background task.
    task: OnceLock<AbortHandle>,
    /// Flipped to true once SIGTERM has been handled, for [`Registered::terminated`].
    terminated: watch::Sender<bool>,
}

impl Shared {
    fn new(agent: &str, id: &str, on_sigterm: OnSigterm) -> Arc<Shared> {
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
    fn finish(&self) -> bool {
        if self.finished.swap(true, Ordering::AcqRel) {
            return false;
        }
        if let Some(task) = self.task.get() {
            task.abort();
        }
        true
    }

    fn is_finished(&self) -> bool {
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
struct Keepalive {
    http: AgentHttp,
    registration: Registration,
    id: String,
    check_id: Option<String>,
    reports: watch::Receiver<Report>,
    shared: Arc<Shared>,
}

impl Keepalive {
    /// Runs until the registration is finished (the handle aborts it) or the handle is gone.
    async fn run(mut self) {
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
async fn put_registration(http: &AgentHttp, body: &Value) -> Result<(), ClientError> {
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
async fn deregister(http: &AgentHttp, id: &str, timeout: Duration) -> Result<(), ClientError> {
    let url = http.url(&["v1", "agent", "service", "deregister", id], &[])?;
    let reply = http.send(Method::PUT, url, None, timeout).await?;
    if reply.status == StatusCode::NOT_FOUND {
        tracing::debug!(%id, "the agent did not have the instance any more");
        return Ok(());
    }
    reply.success(&format!("PUT /v1/agent/service/deregister/{id}"))?;
    Ok(())
}

/// The process-wide SIGTERM handling: which registrations are alive, and whether SIGTERM ends
/// the process.
struct Terminator {
    /// Every registration made in this process; dead ones are pruned as new ones come.
    live: Mutex<Vec<Weak<Shared>>>,
    /// Whether a registration asked for [`OnSigterm::DeregisterAndExit`].
    exit_on_sigterm: AtomicBool,
    /// Whether the listener thread runs (or is starting).
    listening: AtomicBool,
}

/// The one SIGTERM listener of the process.
static TERMINATOR: Terminator = Terminator::new();

impl Terminator {
    const fn new() -> Terminator {
        Terminator {
            live: Mutex::new(Vec::new()),
            exit_on_sigterm: AtomicBool::new(false),
            listening: AtomicBool::new(false),
        }
    }

    /// Makes sure the listener thread runs, for a registration that asked for `action`.
    async fn listen(&'static self, action: OnSigterm) -> Result<(), ClientError> {
        if action == OnSigterm::DeregisterAndExit {
            self.exit_on_sigterm.store(true, Ordering::Release);
        }
        if self.listening.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let (ready, started) = oneshot::channel();
        let spawned = thread::Builder::new()
            .name("wayfinder-sigterm".into())
            .spawn(move || self.serve(ready));
        let outcome = match spawned {
            Ok(_) => started
                .await
                .unwrap_or_else(|_| Err("the listener thread ended".to_owned())),
            Err(e) => Err(format!("cannot start a thread: {e}")),
        };
        outcome.map_err(|reason| {
            self.listening.store(false, Ordering::Release);
            ClientError::Signal(reason)
        })
    }

    /// The listener thread: its own runtime, so SIGTERM is handled however busy (or gone) the
    /// application's runtime is. Says on `ready` whether it listens.
    fn serve(&self, ready: oneshot::Sender<Result<(), String>>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot start a runtime: {e}")));
                return;
            }
        };
        runtime.block_on(async {
            let mut sigterm = match signal(SignalKind::terminate()) {
                Ok(sigterm) => sigterm,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            while sigterm.recv().await.is_some() {
                tracing::info!("SIGTERM: deregistering from the agent");
                if self.terminate().await {
                    std::process::exit(SIGTERM_EXIT_CODE);
                }
            }
        });
    }

    /// Tracks a new registration.
    fn adopt(&self, shared: &Arc<Shared>) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|registration| registration.strong_count() > 0);
        live.push(Arc::downgrade(shared));
    }

    /// What SIGTERM does, apart from the exit itself: deregisters the live registrations that
    /// asked for it (all of them when the process is about to exit), concurrently and each
    /// within [`FAREWELL_TIMEOUT`]; then resolves [`Registered::terminated`] for
    /// [`OnSigterm::Notify`]. Returns whether the process should exit now.
    async fn terminate(&self) -> bool {
        let exit = self.exit_on_sigterm.load(Ordering::Acquire);
        let live: Vec<Arc<Shared>> = self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        let farewells = live
            .iter()
            .filter(|shared| exit || shared.on_sigterm != OnSigterm::Ignore)
            .filter(|shared| shared.finish())
            .map(|shared| async move {
                let result = match AgentHttp::new(&shared.agent) {
                    Ok(http) => deregister(&http, &shared.id, FAREWELL_TIMEOUT).await,
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => tracing::info!(id = %shared.id, "deregistered on SIGTERM"),
                    Err(error) => tracing::warn!(
                        id = %shared.id, %error,
                        "could not deregister on SIGTERM; the agent keeps the instance until its check fails"
                    ),
                }
            });
        futures::future::join_all(farewells).await;
        for shared in &live {
            if shared.on_sigterm == OnSigterm::Notify {
                shared.terminated.send_replace(true);
            }
        }
        exit
    }
}

/// Consul's default ID for a service's only check.
fn check_id(service_id: &str) -> String {
    format!("service:{service_id}")
}

/// The default instance ID: `{name}-{host}-{port}`, or `{name}-{host}-pid{pid}` without a port
/// (two port-less workers on one host must not replace each other).
fn default_id(name: &str, host: &str, port: u16, pid: u32) -> String {
    if port == 0 {
        format!("{name}-{host}-pid{pid}")
    } else {
        format!("{name}-{host}-{port}")
    }
}

/// This host's short name as an ID part, or `local` when it cannot be read.
fn host_label() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    short_host(&raw)
}

/// The first label of a host name, with anything but letters, digits and dashes made a dash
/// (an ID travels in URL paths and logs), at most 63 bytes; `local` when nothing is left.
fn short_host(raw: &str) -> String {
    let label: String = raw
        .trim()
        .split('.')
        .next()
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if label.is_empty() {
        "local".to_owned()
    } else {
        label
    }
}

/// A duration as a Go duration string, exactly: whole seconds as `10s`, else the largest unit
/// that divides it (`1500ms`, `250us`, `7ns`); zero as `0s`. Consul and Wayfinder parse every
/// form, and no precision is lost to a decimal point.
fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    for (unit, size) in [("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)] {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::{Path, State};
    use axum::routing::put;

    #[test]
    fn durations_are_exact_go_durations() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(90)), "90s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(go_duration(Duration::from_micros(250)), "250us");
        assert_eq!(
            go_duration(Duration::from_nanos(1_000_000_007)),
            "1000000007ns"
        );
    }

    #[test]
    fn a_ttl_registration_renders_in_consuls_shape() {
        let registration = Registration::new("worker")
            .port(8080)
            .tag("v2")
            .tag("urlprefix-/work")
            .meta("version", "1.2.3")
            .weights(10, 1)
            .ttl_check(Duration::from_secs(3))
            .deregister_critical_after(Duration::from_secs(60));
        assert_eq!(
            registration.body("worker-1", CheckStatus::Warning),
            json!({
                "ID": "worker-1",
                "Name": "worker",
                "Address": "127.0.0.1",
                "Port": 8080,
                "Tags": ["v2", "urlprefix-/work"],
                "Meta": {"version": "1.2.3"},
                "Weights": {"Passing": 10, "Warning": 1},
                "Check": {
                    "CheckID": "service:worker-1",
                    "TTL": "3s",
                    "Status": "warning",
                    "DeregisterCriticalServiceAfter": "60s"
                }
            })
        );
        assert_eq!(registration.round_interval(), Duration::from_secs(1));
        assert!(registration.heartbeats());
    }

    #[test]
    fn an_http_registration_leaves_the_status_to_the_agent() {
        let registration = Registration::new("web")
            .address("10.0.0.5")
            .http_check("http://10.0.0.5:80/health", Duration::from_millis(500));
        assert_eq!(
            registration.body("web-a", CheckStatus::Passing),
            json!({
                "ID": "web-a",
                "Name": "web",
                "Address": "10.0.0.5",
                "Port": 0,
                "Tags": [],
                "Meta": {},
                "Check": {
                    "CheckID": "service:web-a",
                    "HTTP": "http://10.0.0.5:80/health",
                    "Interval": "500ms"
                }
            })
        );
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
        assert_eq!(plain.body("w-1", CheckStatus::Passing).get("Check"), None);
        assert_eq!(plain.round_interval(), MIN_ROUND_INTERVAL);
    }

    #[test]
    fn the_default_id_is_unique_per_host_and_port() {
        assert_eq!(default_id("worker", "box", 8080, 42), "worker-box-8080");
        assert_eq!(default_id("worker", "box", 0, 42), "worker-box-pid42");
        assert_eq!(short_host("box-1.example.com\n"), "box-1");
        assert_eq!(short_host("we ird_host"), "we-ird-host");
        assert_eq!(short_host(""), "local");
        assert_eq!(short_host(&"a".repeat(80)).len(), 63);
        assert!(!host_label().is_empty());
        assert_eq!(check_id("worker-box-8080"), "service:worker-box-8080");
    }

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

    /// A stand-in agent that records which instances were deregistered.
    async fn recording_agent() -> (String, Arc<Mutex<Vec<String>>>) {
        let deregistered = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route(
                "/v1/agent/service/deregister/{id}",
                put(
                    |State(seen): State<Arc<Mutex<Vec<String>>>>, Path(id): Path<String>| async move {
                        seen.lock().expect("lock").push(id);
                    },
                ),
            )
            .with_state(Arc::clone(&deregistered));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}"), deregistered)
    }

    fn sorted(seen: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        let mut seen = seen.lock().expect("lock").clone();
        seen.sort();
        seen
    }

    #[tokio::test]
    async fn sigterm_with_notify_deregisters_and_tells_the_application() {
        let (agent, deregistered) = recording_agent().await;
        let terminator = Terminator::new();
        let notify = Shared::new(&agent, "notify-1", OnSigterm::Notify);
        let ignore = Shared::new(&agent, "ignore-1", OnSigterm::Ignore);
        terminator.adopt(&notify);
        terminator.adopt(&ignore);
        let handle = Registered {
            shared: Arc::clone(&notify),
            http: AgentHttp::new(&agent).expect("url"),
            check_id: None,
            report: watch::Sender::new(Report::default()),
        };

        assert!(!terminator.terminate().await, "Notify alone does not exit");
        assert_eq!(sorted(&deregistered), ["notify-1"]);
        tokio::time::timeout(Duration::from_secs(5), handle.terminated())
            .await
            .expect("terminated() resolves after SIGTERM handling");
        assert!(!ignore.is_finished(), "Ignore is left to the application");

        // Already deregistered: neither the explicit call nor a second SIGTERM sends again.
        handle.deregister().await.expect("nothing left to do");
        assert!(!terminator.terminate().await);
        assert_eq!(sorted(&deregistered), ["notify-1"]);
    }

    #[tokio::test]
    async fn sigterm_with_deregister_and_exit_deregisters_everything_first() {
        let (agent, deregistered) = recording_agent().await;
        let terminator = Terminator::new();
        terminator.exit_on_sigterm.store(true, Ordering::Release);
        let exit = Shared::new(&agent, "exit-1", OnSigterm::DeregisterAndExit);
        let ignore = Shared::new(&agent, "ignore-1", OnSigterm::Ignore);
        let gone = Shared::new(&agent, "gone-1", OnSigterm::DeregisterAndExit);
        terminator.adopt(&exit);
        terminator.adopt(&ignore);
        terminator.adopt(&gone);
        // Dropped (and deregistered by its handle) before SIGTERM: not asked again.
        assert!(gone.finish());

        assert!(terminator.terminate().await, "the process exits");
        assert_eq!(sorted(&deregistered), ["exit-1", "ignore-1"]);
        assert!(exit.is_finished() && ignore.is_finished());
    }
}
