//! Wayfinder's load balancing: which endpoint gets the next request.
//!
//! What this crate owns: the strategies (round robin, random, least request, peak EWMA,
//! weighted, consistent hash), tag splits (`split { tag = "canary" weight = 0.01 }`), slow
//! start, the per-endpoint load state they read (requests in flight, RTT estimate), and the
//! retry budget that bounds how much retrying may add on top of the original requests. It is
//! shared by the gateway (issue 4) and the Rust client library (issue 5), so both balance the
//! same way.
//!
//! What it deliberately does not own: IO, async, clocks and health. The caller passes the time
//! in ([`Nanos`]) and the randomness in ([`RandomSource`]), so every decision is a pure function
//! of its inputs and the property tests can replay it from a seed. Which instances are healthy
//! is the catalog's business: the caller builds an [`EndpointSet`] of passing and warning
//! instances. Which ones are ejected or already tried is the gateway's business: it says so per
//! pick through an `accept` filter, without rebuilding the set (pingora's `select_with`).
//!
//! Data flow, following one request:
//! discovery change → [`EndpointSet::update`] (a new immutable snapshot that keeps the load
//! state of endpoints that stayed, keyed by ID) → [`Balancer::pick`] with a [`Pick`] (time,
//! random source, hash key, accept filter) → tag split chooses a side → the route's
//! [`Strategy`] selects from the side's [`Candidates`] → [`EndpointSet::start`] counts the
//! request in flight until its [`InFlight`] guard finishes (recording the RTT) or drops.
//!
//! ```
//! use std::time::Duration;
//! use wayfinder_balance::{Balancer, Endpoint, EndpointSet, Nanos, Pick, StrategyKind};
//!
//! let set = EndpointSet::new(["web-1", "web-2", "web-3"].map(Endpoint::new));
//! let balancer = Balancer::new(StrategyKind::LeastRequest);
//! let mut rng = fastrand::Rng::with_seed(7);
//!
//! let now = Nanos::ZERO;
//! let index = balancer.pick(&set, Pick::new(now, &mut rng)).expect("three endpoints");
//! let guard = set.start(index, now).expect("index is in the set");
//! // ... send the request to `set.get(index)` ...
//! guard.finish(now + Duration::from_millis(12)); // records a 12 ms RTT for peak EWMA
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

mod balancer;
mod endpoint;
mod error;
mod ewma;
mod hash;
mod load;
pub mod retry_budget;
mod rng;
pub mod selection;
mod set;
mod slow_start;
mod split;
mod time;

pub use balancer::{Balancer, Pick};
pub use endpoint::{Endpoint, EndpointId, Health, Weights};
pub use error::ConfigError;
pub use ewma::{DEFAULT_DECAY, DEFAULT_RTT, EwmaConfig};
pub use load::{EndpointLoad, InFlight};
pub use retry_budget::{RetryBudget, RetryBudgetConfig};
pub use rng::RandomSource;
pub use selection::{Accept, Candidates, Strategy, StrategyKind};
pub use set::EndpointSet;
pub use slow_start::{DEFAULT_AGGRESSION, DEFAULT_MIN_WEIGHT_PERCENT, SlowStart};
pub use split::TagSplit;
pub use time::Nanos;
