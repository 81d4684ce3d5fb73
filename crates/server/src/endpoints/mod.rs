//! The Endpoint Provider: which healthy endpoints does a service have right now?
//!
//! Mobile apps and SDKs ask `GET /v1/endpoints/{service}` and pick an endpoint themselves. The
//! answer for the common question (all passing instances, no filter) is rendered once per change
//! of the service, pushed by the write path, and served as shared bytes: a hit costs a map
//! lookup and a refcount. Filtered questions are rendered per request from the snapshot.

mod cache;
mod render;

pub use cache::{EndpointCache, Rendered};
pub use render::{EndpointFilter, EndpointJson, render};
