//! Turning catalog events and snapshots into SSE frames, once.
//!
//! An event is rendered on the writer task, the moment it is published, into a finished
//! [`axum::response::sse::Event`]; every watcher then sends a clone of those bytes. So 10,000
//! watchers of a service cost one JSON serialisation per change, not 10,000 (issue 3).
//!
//! Event `data:` (one JSON object, no newlines):
//!
//! ```json
//! {"index": 1795383607278, "service": "web", "id": "web-1", "kind": "health",
//!  "from": "passing", "to": "critical",
//!  "instance": {"host": "10.0.0.5", "port": 8080, "id": "web-1", "tags": [], "meta": {},
//!               "weight": 1, "status": "critical"}}
//! ```
//!
//! `kind` is the SSE event name: `registered`, `deregistered` or `health`; `from`/`to` appear on
//! `health` only; `instance` appears while the instance still belongs to the service. It is the
//! instance as of the end of the write batch that produced the event (the writer folds queued
//! writes into one batch), so during a burst it can be a little ahead of the event's own index;
//! the events themselves are never merged or skipped.
//!
//! A `resync` event carries the full state of the watcher's scope instead:
//! `{"index", "service", "instances": [...]}` for one service (every instance, whatever its
//! health), `{"index", "services": {"web": [...], ...}}` for all of them.

use super::position::Position;
use crate::endpoints::EndpointJson;
use axum::response::sse::Event as SseEvent;
use serde::Serialize;
use std::collections::BTreeMap;
use wayfinder_catalog::{Catalog, Event, EventKind, ServiceName, Status};

/// SSE event name of a full-state snapshot.
pub const RESYNC: &str = "resync";

/// One catalog event, rendered once and shared by every watcher that receives it.
#[derive(Debug)]
pub struct RenderedEvent {
    /// Where the event sits in the stream (its SSE `id:`).
    pub position: Position,
    /// The service it concerns, for filtering history on resume.
    pub service: ServiceName,
    /// The SSE event name: `registered`, `deregistered` or `health`.
    pub name: &'static str,
    /// The finished SSE frame: `event:`, `id:` and `data:`.
    pub frame: SseEvent,
}

#[derive(Serialize)]
struct EventJson<'a> {
    index: u64,
    service: &'a str,
    id: &'a str,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<Status>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<Status>,
    /// The object `/v1/endpoints` lists, so a client decodes one shape everywhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<EndpointJson<'a>>,
}

#[derive(Serialize)]
struct ServiceResyncJson<'a> {
    index: u64,
    service: &'a str,
    instances: Vec<EndpointJson<'a>>,
}

#[derive(Serialize)]
struct AllResyncJson<'a> {
    index: u64,
    services: BTreeMap<&'a str, Vec<EndpointJson<'a>>>,
}

/// The SSE event name for `kind`.
pub fn kind_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Registered => "registered",
        EventKind::Deregistered => "deregistered",
        EventKind::HealthChanged { .. } => "health",
    }
}

/// Renders `event`, the `seq`-th event of its index, against `catalog` (the catalog its batch
/// published). Instances registered without an address show `node_address`, as in Consul.
pub fn render_event(
    catalog: &Catalog,
    event: &Event,
    seq: u32,
    node_address: &str,
) -> RenderedEvent {
    let position = Position::event(event.index, seq);
    let (from, to) = match event.kind {
        EventKind::HealthChanged { from, to } => (Some(from), Some(to)),
        _ => (None, None),
    };
    let view = catalog
        .instance(event.instance.as_str())
        // An instance that moved to another service no longer belongs to this event's service.
        .filter(|view| view.instance.service == event.service);
    let kind = kind_name(&event.kind);
    let data = EventJson {
        index: event.index,
        service: event.service.as_str(),
        id: event.instance.as_str(),
        kind,
        from,
        to,
        instance: view
            .as_ref()
            .map(|view| EndpointJson::new(view, node_address)),
    };
    RenderedEvent {
        position,
        service: event.service.clone(),
        name: kind,
        frame: frame(kind, position, &data),
    }
}

/// Renders the full state of `service` (`None`: every service) in `catalog` as a `resync`
/// event whose id is the end of the catalog's index.
pub fn render_resync(catalog: &Catalog, service: Option<&str>, node_address: &str) -> SseEvent {
    let index = catalog.index();
    let position = Position::end_of(index);
    match service {
        Some(service) => {
            let data = ServiceResyncJson {
                index,
                service,
                instances: catalog
                    .instances_of(service)
                    .map(|view| EndpointJson::new(&view, node_address))
                    .collect(),
            };
            frame(RESYNC, position, &data)
        }
        None => {
            let mut services: BTreeMap<&str, Vec<EndpointJson<'_>>> = BTreeMap::new();
            for view in catalog.all_instances() {
                services
                    .entry(view.instance.service.as_str())
                    .or_default()
                    .push(EndpointJson::new(&view, node_address));
            }
            frame(RESYNC, position, &AllResyncJson { index, services })
        }
    }
}

fn frame(name: &'static str, position: Position, data: &impl Serialize) -> SseEvent {
    // Serialising structs of strings, numbers and string maps cannot fail; should it ever, the
    // watcher still learns that something happened at this position.
    let json = serde_json::to_string(data).unwrap_or_else(|error| {
        tracing::error!(%error, "rendering a watch event failed");
        format!("{{\"index\":{}}}", position.index)
    });
    // The name is one of ours and the id is digits and a dot, so neither holds the newline
    // that would make axum panic; JSON escapes every newline in the data.
    SseEvent::default()
        .event(name)
        .id(position.to_string())
        .data(json)
}
