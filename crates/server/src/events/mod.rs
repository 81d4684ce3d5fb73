//! Watch streams: every register, deregister and health change, pushed to watchers as
//! Server-Sent Events (`GET /v1/watch/{service}`, `GET /v1/watch`; issue 3).
//!
//! The data flow, in the order a change travels:
//!
//! ```text
//! writer task ─► EventHub::published (a write_path Subscriber, before the snapshot swap)
//!                  ├─ render each Event once into a finished SSE frame     (render.rs)
//!                  ├─ append it to the bounded history ring               (history.rs)
//!                  └─ send an Arc of it on its service's broadcast and on the all-services one
//! watcher ─► EventHub::watch ─► Watch: resync or replayed history, then live frames (hub.rs)
//! ```
//!
//! What this module owns: event rendering, resume positions (`id:` / `Last-Event-ID`, see
//! [`Position`]), history, fan-out, lag handling and ending streams at shutdown. What it does
//! not: HTTP (the handlers in `api::watch` only parse the request and wrap a [`Watch`] in axum's
//! `Sse`), and the catalog's semantics (which events a write yields is `wayfinder-catalog`'s).
//!
//! Choices, and why:
//! - **One rendering per change.** 10,000 watchers of a service must cost one JSON
//!   serialisation, not 10,000 (issue 3): frames are rendered on the writer task and shared as
//!   `Arc`s through `tokio::sync::broadcast`; a watcher only copies finished bytes.
//! - **A broadcast per watched service**, created with its first watcher and dropped with its
//!   last, so a watcher of `web` is never woken by a change to `db` (the complaint of Consul's
//!   issue #1244), plus one broadcast every all-services watcher shares.
//! - **The writer never waits for a watcher.** A watcher that falls more than a channel's depth
//!   behind gets `Lagged`, and then one `resync` with the full current state of its scope, and
//!   continues live. It misses no *state*, only intermediate events.
//! - **Resume misses nothing.** Each event's id is its position; a reconnecting client's
//!   `Last-Event-ID` replays every later event of its scope from a ring of the last
//!   [`HISTORY_CAPACITY`] events. A position older than the ring (or unparseable, or from
//!   another agent's future) gets a `resync` instead.
//! - **A fresh watch starts with a `resync`** too, so a client always has a baseline to apply
//!   events to, and a watch of a service not registered yet starts from "no instances".
//! - **Streams end at shutdown.** An SSE response never finishes on its own, and axum's
//!   graceful shutdown waits for every response to finish; [`EventHub::close`] ends them all.

mod history;
mod hub;
mod position;
mod render;

pub use hub::{
    ALL_CHANNEL_CAPACITY, EventHub, HISTORY_CAPACITY, HubCapacity, HubClosed,
    SERVICE_CHANNEL_CAPACITY, Watch, WatchFrame, WatchScope,
};
pub use position::{ParsePositionError, Position};
pub use render::RESYNC;
