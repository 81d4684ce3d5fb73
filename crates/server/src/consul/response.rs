//! Response bodies in Consul's JSON shapes (reference §6), built from catalog snapshots.
//!
//! Field names, nesting and "never null" rules matter more than anything else here: the Go
//! client, Prometheus and python-consul decode these strictly (reference §0).

use super::duration;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use wayfinder_catalog::{Check, CheckKind, Instance, InstanceView, Meta, Weights};

/// Who this agent is: a single agent is one Consul node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Node name (`--node`, default the host name).
    pub name: String,
    /// Stable node UUID derived from the name.
    pub id: String,
    /// Address other nodes would use: the HTTP bind IP.
    pub address: String,
    /// Datacenter (`--datacenter`).
    pub datacenter: String,
}

impl NodeInfo {
    /// A node with a UUID derived from its name, so it is stable across restarts.
    pub fn new(name: String, address: String, datacenter: String) -> Self {
        let id = name_uuid(&name);
        Self {
            name,
            id,
            address,
            datacenter,
        }
    }
}

/// A deterministic UUID-shaped ID from a name (FNV-1a, twice with different seeds). Consul
/// only needs it to be stable and UUID-formatted.
fn name_uuid(name: &str) -> String {
    let hash = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

/// The id of the synthetic node check every Consul node carries.
pub const SERF_CHECK_ID: &str = "serfHealth";

/// `Weights` as Consul spells it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WeightsJson {
    #[serde(rename = "Passing")]
    passing: u32,
    #[serde(rename = "Warning")]
    warning: u32,
}

impl From<Weights> for WeightsJson {
    fn from(w: Weights) -> Self {
        Self {
            passing: w.passing,
            warning: w.warning,
        }
    }
}

/// A tagged address value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaggedAddressJson<'a> {
    #[serde(rename = "Address")]
    address: &'a str,
    #[serde(rename = "Port")]
    port: u16,
}

fn tagged(instance: &Instance) -> BTreeMap<&str, TaggedAddressJson<'_>> {
    instance
        .tagged_addresses
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                TaggedAddressJson {
                    address: &v.address,
                    port: v.port,
                },
            )
        })
        .collect()
}

/// `GET /v1/agent/services` value.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentServiceJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Service")]
    service: &'a str,
    #[serde(rename = "Tags")]
    tags: &'a [String],
    #[serde(rename = "Meta")]
    #[schema(value_type = BTreeMap<String, String>)]
    meta: &'a Meta,
    #[serde(rename = "Port")]
    port: u16,
    #[serde(rename = "Address")]
    address: &'a str,
    #[serde(rename = "TaggedAddresses", skip_serializing_if = "BTreeMap::is_empty")]
    tagged_addresses: BTreeMap<&'a str, TaggedAddressJson<'a>>,
    #[serde(rename = "Weights")]
    weights: WeightsJson,
    #[serde(rename = "EnableTagOverride")]
    enable_tag_override: bool,
    #[serde(rename = "Datacenter")]
    datacenter: &'a str,
}

impl<'a> AgentServiceJson<'a> {
    /// Shapes one instance.
    pub fn new(instance: &'a Instance, node: &'a NodeInfo) -> Self {
        Self {
            id: instance.id.as_str(),
            service: instance.service.as_str(),
            tags: &instance.tags,
            meta: &instance.meta,
            port: instance.port,
            address: &instance.address,
            tagged_addresses: tagged(instance),
            weights: instance.weights.into(),
            enable_tag_override: instance.enable_tag_override,
            datacenter: &node.datacenter,
        }
    }
}

/// The `Service` object of a health entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Service")]
    service: &'a str,
    #[serde(rename = "Tags")]
    tags: &'a [String],
    #[serde(rename = "Address")]
    address: &'a str,
    #[serde(rename = "Port")]
    port: u16,
    #[serde(rename = "Meta")]
    #[schema(value_type = BTreeMap<String, String>)]
    meta: &'a Meta,
    #[serde(rename = "TaggedAddresses", skip_serializing_if = "BTreeMap::is_empty")]
    tagged_addresses: BTreeMap<&'a str, TaggedAddressJson<'a>>,
    #[serde(rename = "Weights")]
    weights: WeightsJson,
    #[serde(rename = "EnableTagOverride")]
    enable_tag_override: bool,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
}

impl<'a> ServiceJson<'a> {
    fn new(instance: &'a Instance) -> Self {
        Self {
            id: instance.id.as_str(),
            service: instance.service.as_str(),
            tags: &instance.tags,
            address: &instance.address,
            port: instance.port,
            meta: &instance.meta,
            tagged_addresses: tagged(instance),
            weights: instance.weights.into(),
            enable_tag_override: instance.enable_tag_override,
            create_index: instance.create_index,
            modify_index: instance.modify_index,
        }
    }
}

/// The `Node` object of a health entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NodeJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Node")]
    node: &'a str,
    #[serde(rename = "Address")]
    address: &'a str,
    #[serde(rename = "Datacenter")]
    datacenter: &'a str,
    #[serde(rename = "TaggedAddresses")]
    tagged_addresses: BTreeMap<&'static str, &'a str>,
    #[serde(rename = "Meta")]
    meta: BTreeMap<&'static str, &'static str>,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
}

impl<'a> NodeJson<'a> {
    /// Shapes the agent's node.
    pub fn new(node: &'a NodeInfo) -> Self {
        let address = node.address.as_str();
        Self {
            id: &node.id,
            node: &node.name,
            address,
            datacenter: &node.datacenter,
            tagged_addresses: [
                ("lan", address),
                ("lan_ipv4", address),
                ("wan", address),
                ("wan_ipv4", address),
            ]
            .into_iter()
            .collect(),
            meta: [("consul-network-segment", "")].into_iter().collect(),
            create_index: 1,
            modify_index: 1,
        }
    }
}

/// A check's definition as Consul reports it; durations as Go strings (never empty).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DefinitionJson<'a> {
    #[serde(rename = "HTTP", skip_serializing_if = "str::is_empty")]
    http: &'a str,
    #[serde(rename = "Header", skip_serializing_if = "Option::is_none")]
    header: Option<&'a BTreeMap<String, Vec<String>>>,
    #[serde(rename = "Method", skip_serializing_if = "str::is_empty")]
    method: &'a str,
    #[serde(rename = "Body", skip_serializing_if = "str::is_empty")]
    body: &'a str,
    #[serde(rename = "TLSServerName", skip_serializing_if = "str::is_empty")]
    tls_server_name: &'a str,
    #[serde(rename = "TLSSkipVerify")]
    tls_skip_verify: bool,
    #[serde(rename = "TCP", skip_serializing_if = "str::is_empty")]
    tcp: &'a str,
    #[serde(rename = "GRPC", skip_serializing_if = "str::is_empty")]
    grpc: &'a str,
    #[serde(rename = "GRPCUseTLS")]
    grpc_use_tls: bool,
    #[serde(rename = "ScriptArgs", skip_serializing_if = "Option::is_none")]
    script_args: Option<&'a [String]>,
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(rename = "Interval")]
    interval: String,
    #[serde(rename = "Timeout")]
    timeout: String,
    #[serde(rename = "DeregisterCriticalServiceAfter")]
    deregister_critical_service_after: String,
}

impl<'a> DefinitionJson<'a> {
    fn new(check: &'a Check) -> Self {
        let mut def = Self {
            http: "",
            header: None,
            method: "",
            body: "",
            tls_server_name: "",
            tls_skip_verify: false,
            tcp: "",
            grpc: "",
            grpc_use_tls: false,
            script_args: None,
            ttl: None,
            interval: duration::format(check.policy.interval),
            timeout: duration::format(check.policy.timeout),
            deregister_critical_service_after: duration::format(
                check.policy.deregister_critical_after.unwrap_or_default(),
            ),
        };
        match &check.kind {
            CheckKind::Http {
                url,
                method,
                headers,
                body,
                tls_skip_verify,
                tls_server_name,
            } => {
                def.http = url;
                def.method = method;
                def.header = (!headers.is_empty()).then_some(headers);
                def.body = body;
                def.tls_skip_verify = *tls_skip_verify;
                def.tls_server_name = tls_server_name;
            }
            CheckKind::Tcp { address } => def.tcp = address,
            CheckKind::Grpc { target, use_tls } => {
                def.grpc = target;
                def.grpc_use_tls = *use_tls;
            }
            CheckKind::Exec { args } => def.script_args = Some(args),
            CheckKind::Ttl { ttl } => def.ttl = Some(duration::format(*ttl)),
            CheckKind::Mirrored { .. } => {}
        }
        def
    }
}

/// What the health scheduler last saw for a check, shown beside the stored status.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastRun<'a> {
    /// Output of the last run (or TTL update), if any happened since start-up.
    pub output: Option<&'a str>,
    /// How long the last run took.
    pub latency: Option<Duration>,
}

/// A `HealthCheck` object (agent/checks, health/checks, health/state, health/service).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthCheckJson<'a> {
    #[serde(rename = "Node")]
    node: &'a str,
    #[serde(rename = "CheckID")]
    check_id: &'a str,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Status")]
    status: &'static str,
    #[serde(rename = "Notes")]
    notes: &'a str,
    #[serde(rename = "Output")]
    output: &'a str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    #[serde(rename = "ServiceName")]
    service_name: &'a str,
    #[serde(rename = "ServiceTags")]
    service_tags: &'a [String],
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Interval", skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(rename = "Timeout", skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(rename = "ExposedPort")]
    exposed_port: u16,
    #[serde(rename = "Definition", skip_serializing_if = "Option::is_none")]
    definition: Option<DefinitionJson<'a>>,
    /// Not in Consul: how long the last run took, so slow health endpoints are visible.
    #[serde(rename = "Latency", skip_serializing_if = "Option::is_none")]
    latency: Option<String>,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
}

impl<'a> HealthCheckJson<'a> {
    /// Shapes a registered check; `owner` is its instance (None for node-level checks).
    pub fn new(
        check: &'a Check,
        owner: Option<&'a Instance>,
        node: &'a NodeInfo,
        last: LastRun<'a>,
    ) -> Self {
        let timed = check.kind.is_scheduled();
        Self {
            node: &node.name,
            check_id: check.id.as_str(),
            name: &check.name,
            status: check.status.as_str(),
            notes: &check.notes,
            output: last.output.unwrap_or(&check.output),
            service_id: owner.map_or("", |i| i.id.as_str()),
            service_name: owner.map_or("", |i| i.service.as_str()),
            service_tags: owner.map_or(&[], |i| i.tags.as_slice()),
            kind: check.kind.type_name(),
            interval: timed.then(|| duration::format(check.policy.interval)),
            timeout: timed.then(|| duration::format(check.policy.timeout)),
            exposed_port: 0,
            definition: Some(DefinitionJson::new(check)),
            latency: last.latency.filter(|_| timed).map(duration::format),
            create_index: check.create_index,
            modify_index: check.modify_index,
        }
    }

    /// The synthetic `serfHealth` check: the agent is alive, so it is always passing.
    pub fn serf(node: &'a NodeInfo) -> Self {
        Self {
            node: &node.name,
            check_id: SERF_CHECK_ID,
            name: "Serf Health Status",
            status: "passing",
            notes: "",
            output: "Agent alive and reachable",
            service_id: "",
            service_name: "",
            service_tags: &[],
            kind: "",
            interval: None,
            timeout: None,
            exposed_port: 0,
            definition: None,
            latency: None,
            create_index: 1,
            modify_index: 1,
        }
    }
}

/// One `/v1/health/service/{name}` entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceEntryJson<'a> {
    #[serde(rename = "Node")]
    node: NodeJson<'a>,
    #[serde(rename = "Service")]
    service: ServiceJson<'a>,
    #[serde(rename = "Checks")]
    checks: Vec<HealthCheckJson<'a>>,
}

impl<'a> ServiceEntryJson<'a> {
    /// Shapes an instance with the serf check, node checks and its own checks.
    pub fn new(
        view: &InstanceView<'a>,
        node: &'a NodeInfo,
        last: impl Fn(&Check) -> LastRun<'a>,
    ) -> Self {
        let mut checks = Vec::with_capacity(view.checks.len() + 1);
        checks.push(HealthCheckJson::serf(node));
        for check in &view.checks {
            let owner = check.service_id.as_ref().map(|_| view.instance.as_ref());
            checks.push(HealthCheckJson::new(check, owner, node, last(check)));
        }
        Self {
            node: NodeJson::new(node),
            service: ServiceJson::new(view.instance),
            checks,
        }
    }
}

/// One `/v1/catalog/service/{name}` entry: a flat ServiceNode.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceNodeJson<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Node")]
    node: &'a str,
    #[serde(rename = "Address")]
    address: &'a str,
    #[serde(rename = "Datacenter")]
    datacenter: &'a str,
    #[serde(rename = "TaggedAddresses")]
    tagged_addresses: BTreeMap<&'static str, &'a str>,
    #[serde(rename = "NodeMeta")]
    node_meta: BTreeMap<&'static str, &'static str>,
    #[serde(rename = "ServiceKind")]
    service_kind: &'static str,
    #[serde(rename = "ServiceID")]
    service_id: &'a str,
    #[serde(rename = "ServiceName")]
    service_name: &'a str,
    #[serde(rename = "ServiceTags")]
    service_tags: &'a [String],
    #[serde(rename = "ServiceAddress")]
    service_address: &'a str,
    #[serde(
        rename = "ServiceTaggedAddresses",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    service_tagged_addresses: BTreeMap<&'a str, TaggedAddressJson<'a>>,
    #[serde(rename = "ServiceWeights")]
    service_weights: WeightsJson,
    #[serde(rename = "ServiceMeta")]
    #[schema(value_type = BTreeMap<String, String>)]
    service_meta: &'a Meta,
    #[serde(rename = "ServicePort")]
    service_port: u16,
    #[serde(rename = "ServiceEnableTagOverride")]
    service_enable_tag_override: bool,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
}

impl<'a> ServiceNodeJson<'a> {
    /// Shapes one instance as a catalog ServiceNode.
    pub fn new(instance: &'a Instance, node: &'a NodeInfo) -> Self {
        let n = NodeJson::new(node);
        Self {
            id: &node.id,
            node: &node.name,
            address: &node.address,
            datacenter: &node.datacenter,
            tagged_addresses: n.tagged_addresses,
            node_meta: n.meta,
            service_kind: "",
            service_id: instance.id.as_str(),
            service_name: instance.service.as_str(),
            service_tags: &instance.tags,
            service_address: &instance.address,
            service_tagged_addresses: tagged(instance),
            service_weights: instance.weights.into(),
            service_meta: &instance.meta,
            service_port: instance.port,
            service_enable_tag_override: instance.enable_tag_override,
            create_index: instance.create_index,
            modify_index: instance.modify_index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_uuids() {
        let id = name_uuid("node-a");
        assert_eq!(id, name_uuid("node-a"));
        assert_ne!(id, name_uuid("node-b"));
        let parts: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
    }
}
