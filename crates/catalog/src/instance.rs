//! A service instance: one address and port answering for a service name.

use crate::meta::Meta;
use crate::names::{InstanceId, ServiceName};
use crate::validate::{ValidationError, count, limits, text};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How much traffic an instance should get relative to its peers, by health.
///
/// Consul's `Weights`: `passing` applies while all checks pass, `warning` while the worst is a
/// warning (0 takes a warning instance out of weighted answers without deregistering it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Weights {
    /// Weight while passing; at least 1.
    pub passing: u32,
    /// Weight while in warning; 0 or more.
    pub warning: u32,
}

impl Default for Weights {
    /// Consul's default, `{Passing: 1, Warning: 1}`.
    fn default() -> Self {
        Self {
            passing: 1,
            warning: 1,
        }
    }
}

/// An extra address an instance answers on (Consul's `TaggedAddresses` entry, e.g. `lan_ipv4`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaggedAddress {
    /// IP or hostname.
    pub address: String,
    /// Port on that address.
    pub port: u16,
}

/// Where a registration came from. Config-file instances are reconciled on reload: one whose
/// file is gone is deregistered, while API registrations are left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Registered through the HTTP API (or a client library).
    #[default]
    Api,
    /// Loaded from a file in `--config-dir`.
    Config,
    /// Copied from an upstream Consul this agent mirrors (`--upstream-consul`).
    Upstream,
}

/// One registered instance of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Unique on this agent; re-registering the same ID replaces the instance.
    pub id: InstanceId,
    /// The service this instance answers for.
    pub service: ServiceName,
    /// IP or hostname; empty means "the agent's own address", as in Consul.
    pub address: String,
    /// TCP port.
    pub port: u16,
    /// Free-form labels, order kept as registered.
    pub tags: Vec<String>,
    /// Free-form key/value metadata.
    pub meta: Meta,
    /// Relative traffic weights by health.
    pub weights: Weights,
    /// Extra named addresses.
    pub tagged_addresses: BTreeMap<String, TaggedAddress>,
    /// Consul's anti-entropy flag; stored and echoed, it changes nothing on a single agent.
    pub enable_tag_override: bool,
    /// API or config file.
    pub source: Source,
    /// Index at which this ID was first registered (kept across re-registrations).
    pub create_index: u64,
    /// Index of the last change to this instance's definition.
    pub modify_index: u64,
}

impl Instance {
    /// The starting point for a registration of `id` under `service`, with Consul's defaults
    /// for everything else: no address (the agent's own address is used), port 0, no tags or
    /// meta, default [`Weights`], no tagged addresses, no tag override, [`Source::Api`], and
    /// indexes 0 (the catalog sets both when it applies the registration).
    ///
    /// Set the fields that differ with struct update syntax:
    /// `Instance { address: "10.0.0.5".into(), port: 8080, ..Instance::new(id, service) }`.
    pub fn new(id: InstanceId, service: ServiceName) -> Self {
        Self {
            id,
            service,
            address: String::new(),
            port: 0,
            tags: Vec::new(),
            meta: Meta::new(),
            weights: Weights::default(),
            tagged_addresses: BTreeMap::new(),
            enable_tag_override: false,
            source: Source::Api,
            create_index: 0,
            modify_index: 0,
        }
    }

    /// Checks every field against [`limits`]. IDs and the name were validated on construction.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_address("Address", &self.address)?;
        count("Tags", self.tags.len(), "tags", limits::TAGS_MAX)?;
        for (i, tag) in self.tags.iter().enumerate() {
            text(&format!("Tags[{i}]"), tag, limits::TAG_MAX)?;
        }
        validate_meta(&self.meta)?;
        if self.weights.passing < 1 {
            return Err(ValidationError::new(
                "Weights.Passing",
                "must be at least 1",
            ));
        }
        for (name, tagged) in &self.tagged_addresses {
            text("TaggedAddresses", name, limits::META_KEY_MAX)?;
            validate_address(&format!("TaggedAddresses.{name}.Address"), &tagged.address)?;
        }
        Ok(())
    }

    /// Whether the instance carries every tag in `wanted`, compared case-insensitively
    /// (Consul's tag filter rule).
    pub fn has_tags<S: AsRef<str>>(&self, wanted: &[S]) -> bool {
        wanted
            .iter()
            .all(|w| self.tags.iter().any(|t| t.eq_ignore_ascii_case(w.as_ref())))
    }

    /// Whether `other` defines the same instance: every field but the bookkeeping indexes, for
    /// "did anything change" comparisons (a re-registration of an unchanged definition, or a
    /// mirror deciding whether to write).
    pub fn same_definition(&self, other: &Instance) -> bool {
        self.id == other.id
            && self.service == other.service
            && self.address == other.address
            && self.port == other.port
            && self.tags == other.tags
            && self.meta == other.meta
            && self.weights == other.weights
            && self.tagged_addresses == other.tagged_addresses
            && self.enable_tag_override == other.enable_tag_override
            && self.source == other.source
    }
}

fn validate_address(field: &str, address: &str) -> Result<(), ValidationError> {
    if address.len() > limits::ADDRESS_MAX {
        return Err(ValidationError::new(
            field,
            format!(
                "is {} bytes; at most {} are allowed",
                address.len(),
                limits::ADDRESS_MAX
            ),
        ));
    }
    if address == "0.0.0.0" || address == "::" || address == "[::]" {
        return Err(ValidationError::new(
            field,
            format!(
                "{address} is a wildcard, not an address clients can reach; send a real IP or hostname"
            ),
        ));
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_' | '%' | '[' | ']');
    if !address.chars().all(allowed) {
        return Err(ValidationError::new(
            field,
            format!("{address:?} is neither an IP address nor a hostname"),
        ));
    }
    Ok(())
}

fn validate_meta(meta: &Meta) -> Result<(), ValidationError> {
    count("Meta", meta.len(), "pairs", limits::META_PAIRS_MAX)?;
    for (key, value) in meta.iter() {
        let field = format!("Meta.{key}");
        if key.is_empty() || key.len() > limits::META_KEY_MAX {
            return Err(ValidationError::new(
                field,
                format!("keys must be 1 to {} bytes", limits::META_KEY_MAX),
            ));
        }
        if !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ValidationError::new(
                field,
                "keys may hold only letters, digits, '_' and '-'",
            ));
        }
        if key.starts_with("consul-") {
            return Err(ValidationError::new(
                field,
                "the 'consul-' key prefix is reserved",
            ));
        }
        text(&field, value, limits::META_VALUE_MAX)?;
    }
    Ok(())
}
