//! Per-service renderings, dropped by the write path the moment a service changes (push, never
//! a TTL: the original design's Memcached TTL kept a dead node in answers for up to ~20 s).
//!
//! The write path only invalidates: rendering a large service on the writer task made every
//! write batch pay for it (registrations fell from 14,000/s to 1,700/s for a 20,000-instance
//! service, see docs/BENCHMARKS.md). The first read after a change renders (MISS) and stores the
//! result for every read after it (HIT). Each rendering carries the service index it was made
//! at and is only served at that index, so a slow reader can never resurrect an old answer.

use super::render::{EndpointFilter, render};
use crate::write_path::{Published, Subscriber};
use bytes::Bytes;
use dashmap::DashMap;
use http::HeaderValue;
use std::sync::Arc;
use wayfinder_catalog::{Catalog, Touched};

/// The default answer for one service at one index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The service's modify index the rendering was made at (the ETag).
    pub index: u64,
    /// The JSON array of passing endpoints.
    pub body: Bytes,
    /// How many endpoints `body` holds; 0 means "known but nothing healthy".
    pub count: usize,
    /// `index` as a quoted entity tag, ready for the `ETag` header: built once per rendering,
    /// not once per read.
    pub etag: HeaderValue,
    /// `index` for the `X-Consul-Index` header, built once per rendering too.
    pub index_header: HeaderValue,
}

impl Rendered {
    /// A rendering of `count` endpoints as `body`, made at `index`.
    pub fn new(index: u64, body: Bytes, count: usize) -> Self {
        Self {
            index,
            body,
            count,
            etag: etag(index),
            index_header: HeaderValue::from(index),
        }
    }
}

/// `index` as a quoted entity tag (`"42"`).
fn etag(index: u64) -> HeaderValue {
    HeaderValue::try_from(format!("\"{index}\""))
        .expect("digits between quotes are a valid header value")
}

/// Renderings of services' default answers, made on first read after each change.
pub struct EndpointCache {
    entries: DashMap<Arc<str>, Arc<Rendered>>,
    node_address: String,
}

impl EndpointCache {
    /// An empty cache, rendering instances without an address as `node_address`.
    pub fn new(node_address: String) -> Self {
        Self {
            entries: DashMap::new(),
            node_address,
        }
    }

    /// The stored rendering of `service` if it was made at `index`.
    pub fn get(&self, service: &str, index: u64) -> Option<Arc<Rendered>> {
        self.entries
            .get(service)
            .map(|e| Arc::clone(e.value()))
            .filter(|r| r.index == index)
    }

    /// The default answer for `service` in `catalog`: the stored rendering when it is current
    /// (`true`: a hit), else a fresh one, stored for the next reader (`false`: a miss).
    pub fn get_or_render(&self, catalog: &Catalog, service: &str) -> (Arc<Rendered>, bool) {
        let index = catalog.service_index(service);
        if let Some(rendered) = self.get(service, index) {
            return (rendered, true);
        }
        let rendered = Arc::new(self.render_default(catalog, service));
        self.entries
            .entry(Arc::from(service))
            .and_modify(|stored| {
                if stored.index < index {
                    *stored = Arc::clone(&rendered);
                }
            })
            .or_insert_with(|| Arc::clone(&rendered));
        (rendered, false)
    }

    /// Renders `service`'s default answer without storing it.
    pub fn render_default(&self, catalog: &Catalog, service: &str) -> Rendered {
        self.render_filtered(catalog, service, &EndpointFilter::default())
    }

    /// Renders a filtered answer for one request.
    pub fn render_filtered(
        &self,
        catalog: &Catalog,
        service: &str,
        filter: &EndpointFilter,
    ) -> Rendered {
        let (body, count) = render(catalog, service, filter, &self.node_address);
        Rendered::new(catalog.service_index(service), body, count)
    }
}

impl Subscriber for EndpointCache {
    fn published(&self, change: &Published<'_>) {
        for touched in change.touched {
            if let Touched::Service(name) = touched {
                self.entries.remove(name.as_str());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayfinder_catalog::{
        CheckDefinition, CheckKind, CheckPolicy, Command, Instance, InstanceId, Registration,
        ServiceName, Status,
    };

    fn register(catalog: &mut Catalog, id: &str, address: &str, status: Option<Status>) {
        let instance = Instance {
            address: address.into(),
            port: 8080,
            tags: vec!["realtime".into()],
            ..Instance::new(
                InstanceId::new(id, "ID").expect("id"),
                ServiceName::new("worker-service", "Name").expect("name"),
            )
        };
        let checks = status
            .map(|status| CheckDefinition {
                id: None,
                name: String::new(),
                notes: String::new(),
                service_id: None,
                initial_status: Some(status),
                kind: CheckKind::Ttl {
                    ttl: std::time::Duration::from_secs(30),
                },
                policy: CheckPolicy::new(
                    std::time::Duration::ZERO,
                    std::time::Duration::from_secs(1),
                ),
            })
            .into_iter()
            .collect();
        let command = Command::Register(Box::new(Registration {
            instance,
            checks,
            replace_existing_checks: false,
        }));
        catalog
            .apply(catalog.index() + 1, &command)
            .expect("register");
    }

    #[test]
    fn default_rendering_lists_passing_endpoints_with_host_and_port() {
        let mut catalog = Catalog::new(0);
        register(&mut catalog, "w1", "10.0.1.10", None);
        register(&mut catalog, "w2", "", Some(Status::Passing));
        register(&mut catalog, "w3", "10.0.1.12", Some(Status::Critical));
        register(&mut catalog, "w4", "10.0.1.13", Some(Status::Warning));
        let cache = EndpointCache::new("192.0.2.1".into());
        let index = catalog.service_index("worker-service");
        assert!(
            cache.get("worker-service", index).is_none(),
            "nothing is rendered before a read"
        );
        let (_, hit) = cache.get_or_render(&catalog, "worker-service");
        assert!(!hit, "the first read renders");
        let (rendered, hit) = cache.get_or_render(&catalog, "worker-service");
        assert!(hit, "the second read is served from the stored rendering");
        let body: serde_json::Value = serde_json::from_slice(&rendered.body).expect("json");
        let hosts: Vec<(&str, u64)> = body
            .as_array()
            .expect("array")
            .iter()
            .map(|e| {
                (
                    e["host"].as_str().expect("host"),
                    e["port"].as_u64().expect("port"),
                )
            })
            .collect();
        assert_eq!(hosts, vec![("10.0.1.10", 8080), ("192.0.2.1", 8080)]);
        assert_eq!(rendered.count, 2);
        assert!(
            cache.get("worker-service", index - 1).is_none(),
            "stale index must miss"
        );
    }

    #[test]
    fn filters_select_by_tag_meta_and_warning() {
        let mut catalog = Catalog::new(0);
        register(&mut catalog, "w1", "10.0.1.10", None);
        register(&mut catalog, "w4", "10.0.1.13", Some(Status::Warning));
        let cache = EndpointCache::new("192.0.2.1".into());
        let warning = EndpointFilter {
            include_warning: true,
            ..Default::default()
        };
        assert_eq!(
            cache
                .render_filtered(&catalog, "worker-service", &warning)
                .count,
            2
        );
        let tagged = EndpointFilter {
            tags: vec!["REALTIME".into()],
            ..Default::default()
        };
        assert_eq!(
            cache
                .render_filtered(&catalog, "worker-service", &tagged)
                .count,
            1
        );
        let meta = EndpointFilter {
            meta: vec![("zone".into(), "a".into())],
            ..Default::default()
        };
        assert_eq!(
            cache
                .render_filtered(&catalog, "worker-service", &meta)
                .count,
            0
        );
    }
}
