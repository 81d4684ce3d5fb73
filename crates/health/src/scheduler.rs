//! The scheduler: one runner per catalog check, reconciled with the catalog after each write.
//!
//! The catalog is the source of truth for which checks exist and what status each has; the
//! scheduler only follows it. [`Scheduler::update`] is the one entry point for that: the agent
//! calls it with the check IDs a write touched, after publishing the write, and the scheduler
//! starts, restarts, informs or stops the matching runners. Runners are tasks on a
//! [`TaskTracker`], each with a child of one [`CancellationToken`], so shutdown is one cancel and
//! one wait.
//!
//! In cluster mode several agents share one catalog, and each check must run on exactly one of
//! them: [`Scheduler::set_ownership`] gives the scheduler the predicate that says which checks
//! are this agent's, and runners exist only for those. The agent re-evaluates it (with
//! [`Scheduler::sync`]) whenever the member set changes.

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, error, info_span};
use wayfinder_catalog::{Catalog, Check, CheckId, CheckKind, CheckPolicy, Status};

use crate::config::SchedulerConfig;
use crate::error::HealthError;
use crate::probe::ProbeContext;
use crate::report::{Observation, Report};
use crate::runner::{CheckRunner, RunnerSetup, RunnerShared};
use crate::runs::RunCounts;

/// Says whether this agent runs a check (see [`Scheduler::set_ownership`]).
pub type Ownership = Arc<dyn Fn(&CheckId) -> bool + Send + Sync>;

/// Runs every check in the catalog and reports the status changes they find.
///
/// Cheap to clone (an `Arc` inside): the write path, the TTL API handlers and the shutdown
/// path each hold a copy. Must be created and used inside a Tokio runtime: runners are tasks.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

struct Inner {
    reports: mpsc::Sender<Report>,
    context: Arc<ProbeContext>,
    runs: Arc<RunCounts>,
    first_run_max_delay: Duration,
    runners: DashMap<CheckId, RunnerHandle>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    runtime: Option<Handle>,
    /// Which checks this agent runs; every check unless the agent shares its catalog. Held by
    /// [`Scheduler::update`] and [`Scheduler::sync`] for their whole pass, so an update that
    /// read the old ownership cannot start a runner after a sync under the new one stopped it.
    ownership: Mutex<Ownership>,
}

/// The scheduler's side of a runner: the definition it runs (to notice redefinitions), what it
/// shares, and how to stop it.
struct RunnerHandle {
    kind: CheckKind,
    policy: CheckPolicy,
    shared: Arc<RunnerShared>,
    cancel: CancellationToken,
}

impl RunnerHandle {
    fn runs(&self, check: &Check) -> bool {
        self.kind == check.kind && self.policy == check.policy
    }
}

impl Scheduler {
    /// A scheduler with no runners yet; reports go to `reports`. Call [`Scheduler::update`] with
    /// every check ID of the catalog once at start-up.
    ///
    /// The channel's capacity is the write path's buffer: when it is full, runners wait (their
    /// next runs are delayed) rather than pile up reports.
    pub fn new(reports: mpsc::Sender<Report>, config: SchedulerConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                reports,
                context: Arc::new(ProbeContext::new(&config)),
                runs: Arc::default(),
                first_run_max_delay: config.first_run_max_delay,
                runners: DashMap::new(),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                runtime: Handle::try_current().ok(),
                ownership: Mutex::new(Arc::new(|_: &CheckId| true)),
            }),
        }
    }

    /// How many times this scheduler's checks have run, by kind and result (for metrics).
    pub fn runs(&self) -> Arc<RunCounts> {
        Arc::clone(&self.inner.runs)
    }

    /// Reconciles runners with `catalog` for the given check IDs.
    ///
    /// Call it after every published write with the check IDs the write touched, and once at
    /// start-up with every check ID. For each ID: a check in the catalog gets a runner if it has
    /// none, a new runner if its kind or policy changed, and otherwise its runner learns the
    /// catalog's current status; a check no longer in the catalog has its runner stopped.
    pub fn update<'a>(&self, catalog: &Catalog, checks: impl IntoIterator<Item = &'a CheckId>) {
        let owns = self.lock_ownership();
        for id in checks {
            match catalog.check(id.as_str()) {
                Some(check) if runs_here(check, &owns) => self.reconcile(check),
                // Gone, mirrored from an upstream that runs it, or another agent's to run.
                Some(_) | None => self.stop(id),
            }
        }
    }

    /// Sets which checks this agent runs (cluster mode: the checks the agent owns among the
    /// live members). Takes effect for the next [`Scheduler::update`]; call
    /// [`Scheduler::sync`] to apply it to every check at once.
    pub fn set_ownership(&self, ownership: Ownership) {
        *self.lock_ownership() = ownership;
    }

    fn lock_ownership(&self) -> MutexGuard<'_, Ownership> {
        self.inner
            .ownership
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Reconciles every runner with `catalog`: each check gets its runner, and runners of checks
    /// the catalog no longer holds are stopped. For start-up, and for resynchronising after the
    /// catalog was replaced wholesale (a store restore, an etcd resync).
    pub fn sync(&self, catalog: &Catalog) {
        let owns = self.lock_ownership();
        for check in catalog.checks() {
            if runs_here(check, &owns) {
                self.reconcile(check);
            }
        }
        let gone: Vec<CheckId> = self
            .inner
            .runners
            .iter()
            .filter(|entry| {
                catalog
                    .check(entry.key().as_str())
                    .is_none_or(|check| !runs_here(check, &owns))
            })
            .map(|entry| entry.key().clone())
            .collect();
        for id in &gone {
            self.stop(id);
        }
    }

    /// Whether this agent has a runner for `check` (in cluster mode: whether it owns it).
    pub fn runs_check(&self, check: &str) -> bool {
        self.inner.runners.contains_key(check)
    }

    /// Records a TTL heartbeat (the pass/warn/fail/update API): restarts the check's TTL and
    /// keeps `status` and `output` as its observation.
    ///
    /// It does not report a status: the API handler writes the status change itself, and a
    /// TTL expiry report still in flight is withdrawn (see [`Scheduler::is_current`]).
    pub fn heartbeat(
        &self,
        check: &CheckId,
        status: Status,
        output: String,
    ) -> Result<(), HealthError> {
        let runner = self
            .inner
            .runners
            .get(check.as_str())
            .ok_or_else(|| HealthError::UnknownCheck(check.clone()))?;
        if !matches!(runner.kind, CheckKind::Ttl { .. }) {
            return Err(HealthError::NotTtl(check.clone()));
        }
        runner.shared.heartbeat(status, output);
        Ok(())
    }

    /// The last result of the check's runs (or its last heartbeat), which the catalog holds only
    /// when it changed the status. `None` for unknown checks and checks that have not run yet.
    pub fn observation(&self, check: &str) -> Option<Observation> {
        self.inner.runners.get(check)?.shared.observation()
    }

    /// Whether `report` still says what its runner wants: the agent may call this just before
    /// writing a report and drop it when `false`.
    ///
    /// A status report is current while its runner still waits to see that status in the
    /// catalog: not after a TTL heartbeat superseded it, a later run withdrew it, or the check
    /// was removed or redefined. A deregistration is current while the check's runner still
    /// knows the check as critical.
    pub fn is_current(&self, report: &Report) -> bool {
        match report {
            Report::Status { check, status, .. } => self
                .inner
                .runners
                .get(check.as_str())
                .is_some_and(|runner| runner.shared.pending() == Some(*status)),
            Report::DeregisterCritical { check, .. } => self
                .inner
                .runners
                .get(check.as_str())
                .is_some_and(|runner| runner.shared.catalog_status() == Status::Critical),
        }
    }

    /// Tells the runner that `report` was not written (the store refused it or was
    /// unreachable), so that its next run reports the same change again rather than after the
    /// confirmation timeout. Only status reports are retried this way.
    pub fn unwritten(&self, report: &Report) {
        if let Report::Status { check, status, .. } = report
            && let Some(runner) = self.inner.runners.get(check.as_str())
        {
            runner.shared.unwritten(*status);
        }
    }

    /// Number of running checks.
    pub fn runner_count(&self) -> usize {
        self.inner.runners.len()
    }

    /// Stops every runner and waits for them to finish. Later calls to
    /// [`Scheduler::update`] start nothing.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.runners.clear();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        debug!("health scheduler stopped");
    }

    fn reconcile(&self, check: &Arc<Check>) {
        if self.inner.shutdown.is_cancelled() {
            return;
        }
        match self.inner.runners.entry(check.id.clone()) {
            Entry::Occupied(mut entry) => {
                if entry.get().runs(check) {
                    entry.get().shared.learn(check.status);
                    return;
                }
                let old = entry.get();
                old.cancel.cancel();
                let carried = (check.status == Status::Critical)
                    .then(|| old.shared.critical_since())
                    .flatten();
                debug!(check = %check.id, "check redefined; restarting its runner");
                match self.start(check, carried) {
                    Some(runner) => {
                        entry.insert(runner);
                    }
                    None => {
                        entry.remove();
                    }
                }
            }
            Entry::Vacant(entry) => {
                if let Some(runner) = self.start(check, None) {
                    entry.insert(runner);
                }
            }
        }
    }

    fn stop(&self, id: &CheckId) {
        if let Some((_, runner)) = self.inner.runners.remove(id.as_str()) {
            debug!(check = %id, "check removed; stopping its runner");
            runner.cancel.cancel();
        }
    }

    fn start(&self, check: &Check, critical_since: Option<Instant>) -> Option<RunnerHandle> {
        let runtime = match &self.inner.runtime {
            Some(runtime) => runtime.clone(),
            None => match Handle::try_current() {
                Ok(runtime) => runtime,
                Err(_) => {
                    error!(check = %check.id, "health scheduler used outside a Tokio runtime; check not started");
                    return None;
                }
            },
        };
        let shared = Arc::new(RunnerShared::new(check.status, critical_since));
        let cancel = self.inner.shutdown.child_token();
        let runner = CheckRunner::new(RunnerSetup {
            check: check.id.clone(),
            instance: check.service_id.clone(),
            kind: check.kind.clone(),
            policy: check.policy,
            shared: Arc::clone(&shared),
            reports: self.inner.reports.clone(),
            cancel: cancel.clone(),
            context: Arc::clone(&self.inner.context),
            runs: Arc::clone(&self.inner.runs),
            first_run_max_delay: self.inner.first_run_max_delay,
        });
        let span = info_span!("check_runner", check = %check.id, kind = check.kind.type_name());
        self.inner
            .tasks
            .spawn_on(runner.run().instrument(span), &runtime);
        Some(RunnerHandle {
            kind: check.kind.clone(),
            policy: check.policy,
            shared,
            cancel,
        })
    }
}

/// Whether a runner for `check` belongs on this agent: not for a check mirrored from an upstream
/// (the upstream runs it), nor for one another agent of the cluster owns.
fn runs_here(check: &Check, owns: &Ownership) -> bool {
    !matches!(check.kind, CheckKind::Mirrored { .. }) && owns(&check.id)
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("runners", &self.inner.runners.len())
            .field("shut_down", &self.inner.shutdown.is_cancelled())
            .finish_non_exhaustive()
    }
}
