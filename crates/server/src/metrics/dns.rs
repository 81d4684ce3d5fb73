//! The DNS interface's group, updated by the request handler ([`crate::dns`]).
//!
//! Messages hickory refuses before the handler (unparsable: FORMERR) are not counted.

use super::{Metrics, duration_buckets};
use hickory_proto::op::ResponseCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// The `rcode` label of `wayfinder_dns_queries_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RcodeLabel {
    /// `NOERROR`, `FORMERR`, `SERVFAIL`, `NXDOMAIN`, `NOTIMP`, `REFUSED` or `OTHER`.
    pub rcode: &'static str,
}

impl RcodeLabel {
    /// The label of an answer with `code`.
    pub fn new(code: ResponseCode) -> Self {
        let rcode = match code {
            ResponseCode::NoError => "NOERROR",
            ResponseCode::FormErr => "FORMERR",
            ResponseCode::ServFail => "SERVFAIL",
            ResponseCode::NXDomain => "NXDOMAIN",
            ResponseCode::NotImp => "NOTIMP",
            ResponseCode::Refused => "REFUSED",
            _ => "OTHER",
        };
        Self { rcode }
    }
}

/// The DNS interface's metrics.
#[derive(Debug, Clone)]
pub struct DnsMetrics {
    /// `wayfinder_dns_queries_total{rcode}`: questions answered, by response code.
    pub queries: Family<RcodeLabel, Counter>,
    /// `wayfinder_dns_query_duration_seconds`: from the handler's start to the answer sent.
    pub duration: Histogram,
}

impl Default for DnsMetrics {
    fn default() -> Self {
        Self {
            queries: Family::default(),
            duration: Histogram::new(duration_buckets()),
        }
    }
}

impl DnsMetrics {
    /// Registers the group in `metrics` and returns its handles.
    pub fn register(metrics: &mut Metrics) -> Self {
        let group = Self::default();
        let registry = metrics.registry_mut();
        registry.register(
            "dns_queries",
            "DNS questions answered, by response code",
            group.queries.clone(),
        );
        registry.register(
            "dns_query_duration_seconds",
            "Time to answer a DNS question, from the handler's start to the answer sent",
            group.duration.clone(),
        );
        group
    }

    /// Counts one answer with `code` that took `seconds`.
    pub fn answered(&self, code: ResponseCode, seconds: f64) {
        self.queries.get_or_create(&RcodeLabel::new(code)).inc();
        self.duration.observe(seconds);
    }
}
