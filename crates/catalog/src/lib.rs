//! Wayfinder's registry: the domain types and the pure catalog state machine.
//!
//! This crate owns *what* the catalog holds and *how* it changes: service instances, their
//! health checks, the strictly increasing index, per-service modify indexes, and the events
//! that later stages (watches, gateway, DNS) consume. It deliberately does no IO and has no
//! async code: durability lives in `wayfinder-store`, check execution in `wayfinder-health`,
//! and the HTTP shape in `wayfinder-server`. Keeping the state machine pure is what lets the
//! property tests drive it through arbitrary command sequences.
//!
//! The write path is: a [`Command`] is validated and applied by [`Catalog::apply`] at an index
//! chosen by the store, yielding an [`Outcome`] (events plus the keys whose rows changed). The
//! caller persists those rows, then publishes the new catalog as an immutable snapshot. Cloning
//! a [`Catalog`] is O(1) (persistent maps), so publishing is a pointer swap.
#![forbid(unsafe_code)]

mod catalog;
mod check;
mod command;
mod duration;
mod event;
mod instance;
mod meta;
mod names;
mod query;
mod replica;
mod status;
mod validate;

pub use catalog::{Catalog, CatalogError, Outcome, Rows, Touched};
pub use check::{
    Check, CheckDefinition, CheckKind, CheckPolicy, MAX_OUTPUT_BYTES, truncate_output,
};
pub use command::{Command, Registration};
pub use duration::go_duration;
pub use event::{Event, EventKind};
pub use instance::{Instance, Source, TaggedAddress, Weights};
pub use meta::Meta;
pub use names::{CheckId, InstanceId, ServiceName};
pub use query::{InstanceView, ServiceSummary};
pub use status::{ParseStatusError, Status};
pub use validate::{ValidationError, limits};
