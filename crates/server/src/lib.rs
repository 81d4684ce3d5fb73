//! The Wayfinder agent: the write path, the Consul-shaped HTTP API, and config files.
//!
//! Where to look (DESIGN.md, "One path for every write"):
//! - a write enters through [`api`] (or a config file via [`agent::Reloader`], a health
//!   report, or the `--upstream-consul` mirror in [`upstream`]) as a
//!   `wayfinder_catalog::Command` submitted to [`write_path::Writer`];
//! - it becomes durable in the writer task's `Store::commit` (group commit);
//! - the snapshot is swapped in [`snapshots::Snapshots::publish`];
//! - readers ([`api`] handlers) take [`snapshots::Snapshots::load`], and subscribers (the health
//!   scheduler) hear about each batch.
#![forbid(unsafe_code)]

pub mod acl;
pub mod agent;
pub mod api;
pub mod blocking;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod consul;
pub mod dns;
pub mod endpoints;
pub mod events;
pub mod gateway;
pub mod metrics;
pub mod snapshots;
pub mod tls;
pub mod ui;
pub mod upstream;
pub mod write_path;

pub use agent::{Agent, AgentError, ReloadSummary, Reloader};
pub use config::{AgentConfig, DataDir, LogFormat};
