//! Wayfinder's Rust client: client-side discovery, balancing and self-registration, with no
//! gateway hop.
//!
//! Our design notes let the client keep control of its connection strategy while the back end
//! stays dynamic. This crate is that client for Rust services:
//!
//! - [`Discovery::service`] gives a [`Service`]: a service's healthy endpoints, kept current by
//!   blocking queries on the agent's Consul-shaped `GET /v1/health/service/{name}` (no polling:
//!   a change arrives within a round trip of the agent learning it). When the agent cannot be
//!   reached the last good set stays in use and [`Service::freshness`] says how stale it is.
//! - [`Service::pick`] balances with any strategy of [`wayfinder_balance`] (the gateway's own);
//!   [`Service::call`] runs a request on a picked endpoint and retries on another one, bounded
//!   by a deadline, an attempt limit and a retry budget ([`CallPolicy`]).
//! - With the `tower` feature, `Service::discover` is a `tower::discover::Discover`, so the
//!   set plugs into tower's balancers.
//! - [`Registration`] registers the process itself with an HTTP or TTL check, heartbeats the
//!   TTL, re-registers when the agent lost it, and deregisters on drop or SIGTERM.
//!
//! - Under ACLs, every request carries the token in `WAYFINDER_TOKEN` (else `CONSUL_HTTP_TOKEN`,
//!   which Consul's own clients read) as `X-Consul-Token`: a service needs no code for it.
//!
//! Because it speaks Consul's API, it works against a Consul agent too.
//!
//! # Example
//!
//! A set of three endpoints where one is down: `call` retries on another and succeeds. With an
//! agent, `Discovery::new("http://127.0.0.1:8500")?.service("worker-service")?` gives the same
//! [`Service`], kept current from the catalog (see `examples/consumer.rs`).
//!
//! ```
//! use std::collections::BTreeMap;
//! use wayfinder_client::{CallPolicy, Endpoint, Service, ServiceOptions};
//! use wayfinder_client::balance::{Health, StrategyKind, Weights};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let endpoint = |id: &str, port| Endpoint {
//!     id: id.to_owned(),
//!     node: String::new(),
//!     address: "127.0.0.1".to_owned(),
//!     port,
//!     tags: vec![],
//!     meta: BTreeMap::new(),
//!     weights: Weights::default(),
//!     health: Health::Passing,
//! };
//! let service = Service::fixed(
//!     "worker-service",
//!     [endpoint("w-1", 8001), endpoint("w-2", 8002), endpoint("w-3", 8003)],
//!     ServiceOptions::new()
//!         .strategy(StrategyKind::RoundRobin)
//!         .call_policy(CallPolicy { max_attempts: 3, ..CallPolicy::default() }),
//! )?;
//!
//! // w-2 is down: every call that lands on it is retried on another endpoint.
//! for _ in 0..6 {
//!     let answered = service
//!         .call(|endpoint| async move {
//!             if endpoint.id == "w-2" {
//!                 Err(std::io::Error::other(format!("{} refused", endpoint.authority())))
//!             } else {
//!                 Ok(endpoint.id.clone())
//!             }
//!         })
//!         .await?;
//!     assert_ne!(answered, "w-2");
//! }
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

mod agent;
pub mod blocking;
mod call;
#[cfg(feature = "tower")]
mod discover;
mod discovery;
mod endpoint;
mod endpoints;
mod error;
mod freshness;
pub mod model;
mod options;
mod registration;
mod service;
pub mod tls;
pub mod transport;
mod watcher;

#[cfg(feature = "tower")]
pub use discover::EndpointChanges;
pub use discovery::{Discovery, MAX_WAIT, MIN_WAIT};
pub use endpoint::{Endpoint, WarningPolicy};
pub use endpoints::Endpoints;
pub use error::{CallError, ClientError, StopReason};
pub use freshness::Freshness;
pub use options::{CallPolicy, ServiceOptions};
pub use registration::{
    CheckStatus, DEFAULT_RESYNC_INTERVAL, OnSigterm, Registered, Registration, SIGTERM_EXIT_CODE,
};
pub use service::{Picked, Service};
/// The balancing crate the client picks with, re-exported so callers name its strategies and
/// types without a second dependency.
pub use wayfinder_balance as balance;
