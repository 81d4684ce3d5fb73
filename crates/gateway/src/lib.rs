//! Wayfinder's gateway: server-side discovery for clients that do not choose an instance.
//!
//! A reverse proxy in front of every registered service. Each request is matched to a route
//! (longest path prefix, host routes first), the route's service's healthy instances are
//! balanced with `wayfinder-balance` (per request, not per client connection), and failures are
//! absorbed: a refused connection is retried on another instance, idempotent requests are
//! retried on 502/503 within a per-route budget, and instances that keep failing are ejected
//! with exponential back-off.
//!
//! Routes and instances come from the catalog. The agent feeds every published change to the
//! gateway, which rebuilds only what the changed service touches and swaps it in atomically, so
//! a request never waits on a rebuild.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod body;
pub mod error;
pub mod forwarded;
pub mod listener;
pub mod outlier;
pub mod proxy;
pub mod route;
pub mod routing;
pub mod stats;
pub mod table;
pub mod tags;
pub mod upstream;

pub use error::GatewayError;
pub use proxy::{Proxy, ProxyConfig};
pub use route::RouteSpec;
pub use routing::{Routing, RoutingConfig};
