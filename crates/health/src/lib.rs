//! Wayfinder's health checks: the runners that probe (HTTP, TCP, exec, gRPC) or wait for
//! heartbeats (TTL), and the [`Scheduler`] that keeps one runner per catalog check.
//!
//! What this crate owns: *when* a check runs (interval, first-run stagger, jitter, timeouts),
//! *how* a probe result becomes a status (Consul's success/failure thresholds), and *when* a
//! status change or a `DeregisterCriticalServiceAfter` expiry is worth a write.
//!
//! What it deliberately does not own: the catalog. A runner never writes; it sends a [`Report`]
//! over a channel and the agent turns it into a command on its single write path (DESIGN.md,
//! "One path for every write"). The catalog then tells the scheduler what it now holds through
//! [`Scheduler::update`]. That loop is what keeps "a result that does not change a status writes
//! nothing": a runner reports only when its derived status differs from the catalog's, and keeps
//! the live output of every run in memory as an [`Observation`] instead of writing it.
//!
//! Data flow, following a check's life:
//! `scheduler` (one runner task per check) → `runner` (timers, TTL, deregister-after) →
//! `probe::*` (one run) → `counters` (thresholds) → `gate` (report only real, new changes)
//! → [`Report`] on the channel.
//!
//! Wiring it into the agent:
//! 1. Create the [`Scheduler`] inside the runtime with the sending half of a bounded channel;
//!    the write path owns the receiving half.
//! 2. At start-up, after the catalog is restored, call [`Scheduler::sync`] (or
//!    [`Scheduler::update`] with every check ID).
//! 3. After every published write, call [`Scheduler::update`] with the write's touched check IDs
//!    (`Touched::Check`), including writes that came from reports: that is how a runner learns
//!    its report landed.
//! 4. For each report, optionally drop it if [`Scheduler::is_current`] says it was overtaken,
//!    then write it (`SetCheckStatus`, or `Deregister` of the instance).
//! 5. TTL endpoints call [`Scheduler::heartbeat`] and write the status themselves.
//! 6. On shutdown, await [`Scheduler::shutdown`].
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

mod config;
mod counters;
mod error;
mod gate;
mod jitter;
mod probe;
mod report;
mod runner;
mod runs;
mod scheduler;

pub use config::{
    DEFAULT_FIRST_RUN_MAX_DELAY, DEFAULT_MAX_CONCURRENT_EXEC, DEFAULT_USER_AGENT, SchedulerConfig,
};
pub use error::HealthError;
pub use report::{Observation, Report};
pub use runs::RunCounts;
pub use scheduler::{Ownership, Scheduler};
