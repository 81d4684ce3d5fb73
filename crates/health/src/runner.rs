//! One check's runner: a task that owns the check's timers and turns results into reports.
//!
//! A runner waits on four things, in this order of priority:
//! 1. its cancellation token (the check was removed or redefined, or the agent stops);
//! 2. a wake-up from the scheduler: the catalog's status for the check changed, or a TTL
//!    heartbeat arrived;
//! 3. the `deregister_critical_after` deadline, armed while the catalog says critical;
//! 4. the next run (probes) or the TTL's expiry (TTL checks).
//!
//! The status it compares against is always the catalog's, as learned through
//! `Scheduler::update` — never its own last result — so that whatever wrote the catalog (this
//! runner, the TTL API, a re-registration with an initial status) the runner converges on it.
//!
//! It never writes the catalog; it sends [`Report`]s and lets the agent's write path decide.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use wayfinder_catalog::{CheckId, CheckKind, CheckPolicy, InstanceId, Status};

use crate::counters::{Counters, Thresholds};
use crate::gate::ReportGate;
use crate::jitter;
use crate::probe::{Probe, ProbeContext};
use crate::report::{Observation, Report};
use crate::runs::RunCounts;

/// Shortest time between two runs. Validation already refuses a zero interval; this only keeps
/// a definition that bypassed it (a hand-edited store) from spinning a core.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// What a runner shares with the scheduler (and through it with the API): the catalog status
/// it should compare against, heartbeats, the last observation and the pending report.
#[derive(Debug)]
pub(crate) struct RunnerShared {
    state: Mutex<SharedState>,
    wake: Notify,
}

#[derive(Debug)]
struct SharedState {
    catalog_status: Status,
    observation: Option<Observation>,
    last_heartbeat: Option<Instant>,
    gate: ReportGate,
    /// When the runner learned the catalog turned critical; carried over when a redefined check
    /// gets a new runner, so that editing a failing check does not postpone its reaping.
    critical_since: Option<Instant>,
}

impl RunnerShared {
    pub(crate) fn new(catalog_status: Status, critical_since: Option<Instant>) -> Self {
        Self {
            state: Mutex::new(SharedState {
                catalog_status,
                observation: None,
                last_heartbeat: None,
                gate: ReportGate::default(),
                critical_since,
            }),
            wake: Notify::new(),
        }
    }

    /// Critical sections are a few field copies and never panic midway, so a poisoned lock
    /// (a panic elsewhere while holding it) still guards consistent data.
    fn lock(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The catalog now holds `status` for this check.
    pub(crate) fn learn(&self, status: Status) {
        let changed = {
            let mut state = self.lock();
            state.gate.confirm(status);
            let changed = state.catalog_status != status;
            state.catalog_status = status;
            changed
        };
        if changed {
            self.wake.notify_one();
        }
    }

    /// A TTL heartbeat: restarts the TTL and supersedes any expiry report still in flight
    /// (the API writes the heartbeat's status itself).
    pub(crate) fn heartbeat(&self, status: Status, mut output: String) {
        wayfinder_catalog::truncate_output(&mut output);
        {
            let mut state = self.lock();
            state.observation = Some(Observation {
                status,
                output,
                latency: Duration::ZERO,
                at: SystemTime::now(),
            });
            state.last_heartbeat = Some(Instant::now());
            state.gate.withdraw();
        }
        self.wake.notify_one();
    }

    /// The report of `status` could not be written: forget it, so the next run that derives
    /// the same status reports it again instead of waiting for a confirmation that will not
    /// come.
    pub(crate) fn unwritten(&self, status: Status) {
        let mut state = self.lock();
        if state.gate.pending() == Some(status) {
            state.gate.withdraw();
        }
    }

    pub(crate) fn observation(&self) -> Option<Observation> {
        self.lock().observation.clone()
    }

    /// The status reported and not yet seen in the catalog.
    pub(crate) fn pending(&self) -> Option<Status> {
        self.lock().gate.pending()
    }

    pub(crate) fn catalog_status(&self) -> Status {
        self.lock().catalog_status
    }

    pub(crate) fn critical_since(&self) -> Option<Instant> {
        self.lock().critical_since
    }

    fn record(&self, observation: Observation) {
        self.lock().observation = Some(observation);
    }
}

/// Everything a runner needs, handed over by the scheduler.
pub(crate) struct RunnerSetup {
    pub(crate) check: CheckId,
    pub(crate) instance: Option<InstanceId>,
    pub(crate) kind: CheckKind,
    pub(crate) policy: CheckPolicy,
    pub(crate) shared: Arc<RunnerShared>,
    pub(crate) reports: mpsc::Sender<Report>,
    pub(crate) cancel: CancellationToken,
    pub(crate) context: Arc<ProbeContext>,
    pub(crate) runs: Arc<RunCounts>,
    pub(crate) first_run_max_delay: Duration,
}

/// A check's runner task (see the module docs).
pub(crate) struct CheckRunner {
    setup: RunnerSetup,
    /// The catalog status as last seen on a wake-up.
    known: Status,
    counters: Counters,
    critical_since: Option<Instant>,
    /// Whether the deregister report was sent for the current critical spell.
    deregister_sent: bool,
    /// The last heartbeat acted upon (TTL checks).
    heartbeat_seen: Option<Instant>,
}

/// Why the loop stops early: the token was cancelled or nobody reads reports any more.
struct Stopped;

impl CheckRunner {
    pub(crate) fn new(setup: RunnerSetup) -> Self {
        let known = setup.shared.catalog_status();
        Self {
            setup,
            known,
            counters: Counters::default(),
            critical_since: None,
            deregister_sent: false,
            heartbeat_seen: None,
        }
    }

    /// Runs until cancelled (or until the report channel closes).
    pub(crate) async fn run(mut self) {
        debug!(status = %self.known, "runner started");
        // Either way out is a normal stop; the reason was logged where it happened.
        let _: Result<(), Stopped> = self.run_loop().await;
        debug!("runner stopped");
    }

    async fn run_loop(&mut self) -> Result<(), Stopped> {
        let started = Instant::now();
        let timeout = if self.setup.policy.timeout.is_zero() {
            self.setup.kind.default_timeout()
        } else {
            self.setup.policy.timeout
        };
        let ttl = match self.setup.kind {
            CheckKind::Ttl { ttl } => Some(ttl),
            _ => None,
        };
        let probe = Probe::new(&self.setup.kind, timeout, &self.setup.context);
        let interval = self.setup.policy.interval.max(MIN_INTERVAL);
        let mut next = match ttl {
            Some(ttl) => started.checked_add(ttl),
            None => started.checked_add(jitter::first_delay(
                interval,
                self.setup.first_run_max_delay,
            )),
        };
        let carried = self.setup.shared.critical_since();
        self.track_critical(self.known, carried.unwrap_or(started));

        let cancel = self.setup.cancel.clone();
        let shared = Arc::clone(&self.setup.shared);
        let mut runs: u64 = 0;
        loop {
            let deregister_at = self.deregister_deadline();
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Ok(()),
                () = shared.wake.notified() => self.on_wake(ttl, &mut next),
                () = sleep_until(deregister_at) => self.deregister().await?,
                () = sleep_until(next) => match &probe {
                    Some(probe) => {
                        self.probe_once(probe).await?;
                        runs += 1;
                        let wait = if runs == 1 {
                            jitter::phase_delay(interval)
                        } else {
                            jitter::next_delay(interval)
                        };
                        next = Instant::now().checked_add(wait);
                    }
                    None => {
                        self.expire().await?;
                        next = None;
                    }
                },
            }
        }
    }

    fn deregister_deadline(&self) -> Option<Instant> {
        if self.deregister_sent || self.setup.instance.is_none() {
            return None;
        }
        let after = self.setup.policy.deregister_critical_after?;
        self.critical_since?.checked_add(after)
    }

    /// The scheduler changed something: the catalog's status, or a heartbeat arrived.
    fn on_wake(&mut self, ttl: Option<Duration>, next: &mut Option<Instant>) {
        let (status, heartbeat) = {
            let state = self.setup.shared.lock();
            (state.catalog_status, state.last_heartbeat)
        };
        if status != self.known {
            debug!(from = %self.known, to = %status, "catalog status changed");
            self.known = status;
            self.track_critical(status, Instant::now());
        }
        if let Some(ttl) = ttl
            && heartbeat != self.heartbeat_seen
        {
            self.heartbeat_seen = heartbeat;
            if let Some(at) = heartbeat {
                *next = at.checked_add(ttl);
            }
        }
    }

    /// Arms the deregister timer when the catalog turns critical, disarms it when it leaves.
    fn track_critical(&mut self, status: Status, since: Instant) {
        if status == Status::Critical {
            if self.critical_since.is_none() {
                self.critical_since = Some(since);
                self.setup.shared.lock().critical_since = Some(since);
            }
        } else if self.critical_since.is_some() {
            self.critical_since = None;
            self.deregister_sent = false;
            self.setup.shared.lock().critical_since = None;
        }
    }

    async fn probe_once(&mut self, probe: &Probe) -> Result<(), Stopped> {
        let started = Instant::now();
        let result = tokio::select! {
            biased;
            () = self.setup.cancel.cancelled() => return Err(Stopped),
            result = probe.run() => result,
        };
        let latency = started.elapsed();
        debug!(status = %result.status, ?latency, "check ran");
        self.setup.runs.record(&self.setup.kind, result.status);
        self.setup.shared.record(Observation {
            status: result.status,
            output: result.output.clone(),
            latency,
            at: SystemTime::now(),
        });
        let thresholds = Thresholds::from(&self.setup.policy);
        match self.counters.record(thresholds, result.status) {
            Some(status) => self.offer(status, result.output).await,
            None => {
                debug!(result = %result.status, "held by the check's thresholds");
                Ok(())
            }
        }
    }

    /// No heartbeat within the TTL: critical, with the last heartbeat's note as Consul shows it.
    async fn expire(&mut self) -> Result<(), Stopped> {
        let last = self.setup.shared.observation().map(|o| o.output);
        let output = match last {
            Some(last) if !last.is_empty() => {
                let mut output =
                    format!("TTL expired (last output before timeout follows): {last}");
                wayfinder_catalog::truncate_output(&mut output);
                output
            }
            _ => "TTL expired".to_owned(),
        };
        debug!("TTL expired");
        self.setup.runs.record(&self.setup.kind, Status::Critical);
        self.setup.shared.record(Observation {
            status: Status::Critical,
            output: output.clone(),
            latency: Duration::ZERO,
            at: SystemTime::now(),
        });
        self.offer(Status::Critical, output).await
    }

    /// Reports `status` if the gate says it is a change nobody has reported yet.
    async fn offer(&mut self, status: Status, output: String) -> Result<(), Stopped> {
        let (report, catalog) = {
            let mut state = self.setup.shared.lock();
            let catalog = state.catalog_status;
            (state.gate.decide(status, catalog, Instant::now()), catalog)
        };
        if !report {
            return Ok(());
        }
        info!(from = %catalog, to = %status, "check status changed");
        self.send(Report::Status {
            check: self.setup.check.clone(),
            status,
            output,
        })
        .await
    }

    async fn deregister(&mut self) -> Result<(), Stopped> {
        self.deregister_sent = true;
        let Some(instance) = self.setup.instance.clone() else {
            return Ok(());
        };
        warn!(
            %instance,
            after = ?self.setup.policy.deregister_critical_after,
            "critical for longer than deregister_critical_after; asking to deregister the instance"
        );
        self.send(Report::DeregisterCritical {
            instance,
            check: self.setup.check.clone(),
        })
        .await
    }

    async fn send(&self, report: Report) -> Result<(), Stopped> {
        tokio::select! {
            biased;
            () = self.setup.cancel.cancelled() => Err(Stopped),
            sent = self.setup.reports.send(report) => sent.map_err(|_| {
                debug!("report channel closed");
                Stopped
            }),
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
