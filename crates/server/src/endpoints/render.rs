//! Rendering a service's endpoints as the bare JSON array clients decode.
//!
//! The top level stays an array of objects with `host` and `port` first, because the iOS client
//! in our design notes decodes exactly that and nothing else.

use bytes::Bytes;
use serde::Serialize;
use wayfinder_catalog::{Catalog, InstanceView, Meta, Status};

/// Which instances a request wants. The default is passing instances only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointFilter {
    /// Every tag must be present (case-insensitive, as Consul compares tags).
    pub tags: Vec<String>,
    /// Every `key:value` pair must be present in the instance's meta.
    pub meta: Vec<(String, String)>,
    /// Include instances in warning, with their status.
    pub include_warning: bool,
}

impl EndpointFilter {
    /// Whether this is the unfiltered question, the one kept pre-rendered.
    pub fn is_default(&self) -> bool {
        self.tags.is_empty() && self.meta.is_empty() && !self.include_warning
    }
}

/// One endpoint as clients decode it: `{host, port, id, tags, meta, weight, status}`. The
/// `/v1/endpoints` array lists these, and watch events carry the same object, so a client
/// decodes one shape everywhere.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EndpointJson<'a> {
    host: &'a str,
    port: u16,
    id: &'a str,
    tags: &'a [String],
    #[schema(value_type = BTreeMap<String, String>)]
    meta: &'a Meta,
    weight: u32,
    /// `passing` or `warning` (critical instances are never listed).
    #[schema(value_type = String)]
    status: Status,
}

impl<'a> EndpointJson<'a> {
    /// Shapes one instance: `node_address` stands in for an instance registered without an
    /// address (Consul's rule), and the weight is the one for its health (warning or passing).
    pub fn new(view: &InstanceView<'a>, node_address: &'a str) -> Self {
        let instance = view.instance;
        Self {
            host: if instance.address.is_empty() {
                node_address
            } else {
                &instance.address
            },
            port: instance.port,
            id: instance.id.as_str(),
            tags: &instance.tags,
            meta: &instance.meta,
            weight: match view.health {
                Status::Warning => instance.weights.warning,
                _ => instance.weights.passing,
            },
            status: view.health,
        }
    }
}

/// Renders the endpoints of `service` that match `filter`, with `node_address` standing in for
/// instances registered without an address (Consul's rule). Returns the JSON array and how many
/// endpoints it holds.
pub fn render(
    catalog: &Catalog,
    service: &str,
    filter: &EndpointFilter,
    node_address: &str,
) -> (Bytes, usize) {
    let endpoints: Vec<EndpointJson<'_>> = catalog
        .instances_of(service)
        .filter(|view| match view.health {
            Status::Passing => true,
            Status::Warning => filter.include_warning,
            Status::Critical => false,
        })
        .filter(|view| view.instance.has_tags(&filter.tags))
        .filter(|view| {
            filter
                .meta
                .iter()
                .all(|(k, v)| view.instance.meta.get(k).is_some_and(|value| value == v))
        })
        .map(|view| EndpointJson::new(&view, node_address))
        .collect();
    let count = endpoints.len();
    // Serializing plain structs of strings and numbers cannot fail; an empty array is the
    // harmless answer if it ever did.
    let body = serde_json::to_vec(&endpoints).unwrap_or_else(|_| b"[]".to_vec());
    (Bytes::from(body), count)
}
