//! Consul's answers as serde types: only the fields a client reads. Shared by this crate's
//! [`crate::Discovery`] and the agent's `--upstream-consul` mirror.
//!
//! Real Consul sends far more than this (`Proxy`, `Connect`, `Definition`, `Namespace`, raft
//! indexes, ...), omits fields it considers empty, and sends `null` for empty lists and maps.
//! So every type here ignores unknown fields, and every field is optional with `null` read as
//! its default. A field of the wrong type (a string `Port`) makes only its own entry unusable:
//! [`decode_health`] decodes entries one by one and hands back the broken ones as errors, so one
//! odd instance never stops a whole service from being read.

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use std::collections::{BTreeMap, BTreeSet};

/// Reads `null` (or a missing field, with `#[serde(default)]`) as `T::default()`.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One element of `GET /v1/health/service/{name}` (reference §6.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct HealthEntry {
    /// The node the instance runs on; `None` when the server sent none.
    #[serde(rename = "Node", default)]
    pub node: Option<NodeEntry>,
    /// The instance; an entry without one is unusable.
    #[serde(rename = "Service", default)]
    pub service: Option<ServiceEntry>,
    /// Node-level checks (empty `ServiceID`) and the instance's own checks.
    #[serde(rename = "Checks", default, deserialize_with = "nullable")]
    pub checks: Vec<CheckEntry>,
}

/// The `Node` object of a health entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct NodeEntry {
    /// Node name, unique in its datacenter.
    #[serde(rename = "Node", default, deserialize_with = "nullable")]
    pub node: String,
    /// The node's address, used when the instance has none of its own.
    #[serde(rename = "Address", default, deserialize_with = "nullable")]
    pub address: String,
}

/// The `Service` object of a health entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ServiceEntry {
    /// Instance ID, unique on its node (not across nodes).
    #[serde(rename = "ID", default, deserialize_with = "nullable")]
    pub id: String,
    /// Service name.
    #[serde(rename = "Service", default, deserialize_with = "nullable")]
    pub service: String,
    /// Tags, in the server's order.
    #[serde(rename = "Tags", default, deserialize_with = "nullable")]
    pub tags: Vec<String>,
    /// The instance's own address; empty means "the node's".
    #[serde(rename = "Address", default, deserialize_with = "nullable")]
    pub address: String,
    /// Port.
    #[serde(rename = "Port", default, deserialize_with = "nullable")]
    pub port: u16,
    /// Metadata (Consul allows string values only).
    #[serde(rename = "Meta", default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, String>,
    /// Weights; `None` means Consul's default `{1, 1}`.
    #[serde(rename = "Weights", default)]
    pub weights: Option<WeightsEntry>,
    /// Consul's anti-entropy flag, echoed.
    #[serde(rename = "EnableTagOverride", default, deserialize_with = "nullable")]
    pub enable_tag_override: bool,
}

/// `Weights` of a service entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct WeightsEntry {
    /// Weight while passing.
    #[serde(rename = "Passing", default, deserialize_with = "nullable")]
    pub passing: u32,
    /// Weight while in warning.
    #[serde(rename = "Warning", default, deserialize_with = "nullable")]
    pub warning: u32,
}

/// One `HealthCheck` of a health entry (reference §6.6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct CheckEntry {
    /// Check ID, unique on its node.
    #[serde(rename = "CheckID", default, deserialize_with = "nullable")]
    pub check_id: String,
    /// Display name.
    #[serde(rename = "Name", default, deserialize_with = "nullable")]
    pub name: String,
    /// `passing`, `warning` or `critical` (anything else is read as critical).
    #[serde(rename = "Status", default, deserialize_with = "nullable")]
    pub status: String,
    /// Free text.
    #[serde(rename = "Notes", default, deserialize_with = "nullable")]
    pub notes: String,
    /// Output of the check's last run.
    #[serde(rename = "Output", default, deserialize_with = "nullable")]
    pub output: String,
    /// The owning instance's ID; empty for a node-level check such as `serfHealth`.
    #[serde(rename = "ServiceID", default, deserialize_with = "nullable")]
    pub service_id: String,
    /// `http`, `ttl`, ...; empty for `serfHealth`.
    #[serde(rename = "Type", default, deserialize_with = "nullable")]
    pub type_name: String,
}

/// A body that is not what the endpoint promises (not JSON, or not the right top-level shape).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedBody(pub String);

/// Decodes `GET /v1/catalog/services`: an object from service name to its tags; only the names
/// are used (the tags come with each instance).
pub fn decode_service_names(body: &[u8]) -> Result<BTreeSet<String>, MalformedBody> {
    let names: Option<BTreeMap<String, IgnoredAny>> = serde_json::from_slice(body)
        .map_err(|e| MalformedBody(format!("expected an object of service names: {e}")))?;
    Ok(names.unwrap_or_default().into_keys().collect())
}

/// Decodes `GET /v1/health/service/{name}`: an array whose elements are decoded one by one, so
/// a broken element comes back as an `Err` naming what is wrong and the rest still count.
pub fn decode_health(body: &[u8]) -> Result<Vec<Result<HealthEntry, String>>, MalformedBody> {
    let values: Option<Vec<serde_json::Value>> = serde_json::from_slice(body)
        .map_err(|e| MalformedBody(format!("expected an array of health entries: {e}")))?;
    Ok(values
        .unwrap_or_default()
        .into_iter()
        .map(|value| serde_json::from_value(value).map_err(|e| e.to_string()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_real_consul_entry_decodes_ignoring_what_is_not_read() {
        let body = br#"[{"Node":{"ID":"6f1d","Node":"node-a","Address":"10.0.0.2",
            "Datacenter":"dc1","TaggedAddresses":{"lan":"10.0.0.2"},"Meta":{"rack":"r1"},
            "CreateIndex":5,"ModifyIndex":5},
          "Service":{"ID":"web-1","Service":"web","Tags":["v2"],"Address":"10.0.0.5",
            "Port":8080,"Meta":{"team":"blue"},"Weights":{"Passing":3,"Warning":1},
            "EnableTagOverride":false,"Proxy":{"Mode":""},"Connect":{},"CreateIndex":41},
          "Checks":[{"Node":"node-a","CheckID":"serfHealth","Name":"Serf Health Status",
            "Status":"passing","Notes":"","Output":"Agent alive and reachable","ServiceID":"",
            "ServiceName":"","ServiceTags":[],"Type":"","Definition":{}},
           {"Node":"node-a","CheckID":"service:web-1","Name":"web","Status":"warning",
            "Output":"slow","ServiceID":"web-1","Type":"http",
            "Definition":{"Interval":"10s"},"ExposedPort":0}]}]"#;
        let entries = decode_health(body).expect("array");
        let entry = entries[0].clone().expect("entry");
        let node = entry.node.expect("node");
        assert_eq!(
            (node.node.as_str(), node.address.as_str()),
            ("node-a", "10.0.0.2")
        );
        let service = entry.service.expect("service");
        assert_eq!(service.id, "web-1");
        assert_eq!(service.port, 8080);
        assert_eq!(
            service.weights,
            Some(WeightsEntry {
                passing: 3,
                warning: 1
            })
        );
        assert_eq!(entry.checks.len(), 2);
        assert_eq!(entry.checks[1].type_name, "http");
        assert_eq!(entry.checks[0].service_id, "");
    }

    #[test]
    fn nulls_and_missing_fields_read_as_empty() {
        let body = br#"[{"Node":null,"Service":{"ID":"a","Service":"web","Tags":null,
            "Meta":null,"Weights":null,"Address":null,"Port":null},"Checks":null},
            {"Service":{"ID":"b"}}]"#;
        let entries: Vec<HealthEntry> = decode_health(body)
            .expect("array")
            .into_iter()
            .map(|e| e.expect("entry"))
            .collect();
        assert_eq!(entries[0].node, None);
        let service = entries[0].service.clone().expect("service");
        assert!(service.tags.is_empty() && service.meta.is_empty());
        assert_eq!((service.port, service.weights), (0, None));
        assert!(entries[0].checks.is_empty());
        assert_eq!(
            entries[1].service.as_ref().map(|s| s.id.as_str()),
            Some("b")
        );
    }

    #[test]
    fn a_broken_entry_spoils_only_itself() {
        let body = br#"[{"Service":{"ID":"a","Port":"eighty"}},{"Service":{"ID":"b","Port":80}}]"#;
        let entries = decode_health(body).expect("array");
        assert!(entries[0].is_err());
        assert_eq!(
            entries[1]
                .as_ref()
                .expect("good entry")
                .service
                .as_ref()
                .map(|s| s.port),
            Some(80)
        );
    }

    #[test]
    fn bodies_of_the_wrong_shape_are_malformed() {
        assert!(decode_health(b"{\"web\":[]}").is_err());
        assert!(decode_health(b"<html>").is_err());
        assert!(decode_service_names(b"[]").is_err());
        assert_eq!(decode_health(b"null").expect("null is empty"), Vec::new());
    }

    #[test]
    fn service_names_are_the_keys() {
        let names = decode_service_names(br#"{"web":["v2","canary"],"db":null,"consul":[]}"#)
            .expect("object");
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["consul", "db", "web"]
        );
    }
}
