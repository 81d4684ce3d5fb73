//! What the balancer knows about one endpoint.
//!
//! Owns [`Endpoint`] and its parts: the ID that keys load state across set changes, the
//! Consul-shaped [`Weights`], the [`Health`] that selects between them, tags for splits, and
//! when the endpoint became healthy (for slow start).
//!
//! It deliberately does not hold an address or depend on `wayfinder-catalog`: the balancer
//! returns an index into the set and the caller keeps whatever it dials (a `SocketAddr`, a
//! pooled client) in a parallel vector. That keeps this crate free of the catalog's serde and
//! persistent maps, so the client library can use it on its own; converting a catalog
//! `Instance` is a field-by-field copy of its ID, weights and tags.

use crate::time::Nanos;
use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// An endpoint's identity, stable across discovery changes (the catalog's instance ID).
///
/// Why it matters: in-flight counts and RTT estimates are keyed by it, so an endpoint that stays
/// in the set keeps its load history when the set is rebuilt. Cloning is a reference count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EndpointId(Arc<str>);

impl EndpointId {
    /// Wraps an ID.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        EndpointId(id.into())
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for EndpointId {
    fn from(id: &str) -> Self {
        EndpointId::new(id)
    }
}

impl From<String> for EndpointId {
    fn from(id: String) -> Self {
        EndpointId::new(id)
    }
}

impl Borrow<str> for EndpointId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Relative traffic weights by health, as the catalog's instance `Weights` (Consul's).
///
/// Why two numbers: an operator can keep a warning instance registered but take it out of
/// rotation (`warning = 0`) or give it less traffic, without deregistering it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Weights {
    /// Weight while all checks pass. The catalog keeps it at 1 or more.
    pub passing: u32,
    /// Weight while the worst check is a warning; 0 takes the endpoint out of rotation.
    pub warning: u32,
}

impl Default for Weights {
    /// Consul's default, `{Passing: 1, Warning: 1}`.
    fn default() -> Self {
        Weights {
            passing: 1,
            warning: 1,
        }
    }
}

/// Which of the [`Weights`] applies.
///
/// Only two states: critical instances are not handed to the balancer at all (the catalog's
/// health query filters them out before a set is built).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Health {
    /// All checks pass.
    #[default]
    Passing,
    /// The worst check is a warning.
    Warning,
}

/// One endpoint of a service, as the balancer sees it.
///
/// Fields are public so the caller can build one with a struct literal; [`Endpoint::new`] and
/// the `with_*` methods give the defaults (weights 1/1, passing, no tags, no slow start).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Identity; load state survives set changes under it.
    pub id: EndpointId,
    /// Weights by health; default 1/1.
    pub weights: Weights,
    /// Which weight applies; default passing.
    pub health: Health,
    /// Labels a [`crate::TagSplit`] matches (case-insensitively, like Consul's tag filter).
    pub tags: Vec<String>,
    /// When the endpoint last became healthy, for slow start. `None` (the default) means
    /// "healthy for longer than any window": endpoints present when the agent started should
    /// not all ramp up at once.
    pub healthy_since: Option<Nanos>,
}

impl Endpoint {
    /// An endpoint with default weights, passing, no tags and no slow start.
    pub fn new(id: impl Into<EndpointId>) -> Self {
        Endpoint {
            id: id.into(),
            weights: Weights::default(),
            health: Health::Passing,
            tags: Vec::new(),
            healthy_since: None,
        }
    }

    /// Sets the weights.
    pub fn with_weights(mut self, passing: u32, warning: u32) -> Self {
        self.weights = Weights { passing, warning };
        self
    }

    /// Sets the health.
    pub fn with_health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Sets the tags.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets when the endpoint became healthy, starting its slow start window there.
    pub fn with_healthy_since(mut self, since: Nanos) -> Self {
        self.healthy_since = Some(since);
        self
    }

    /// The weight that applies now: `passing` while passing, `warning` while in warning.
    ///
    /// Zero makes the endpoint ineligible for every strategy, not only `weighted`: an operator
    /// who set `warning = 0` asked for no traffic to warning instances, whatever the route's
    /// strategy. Other magnitudes matter only to `weighted`.
    pub fn weight(&self) -> u32 {
        match self.health {
            Health::Passing => self.weights.passing,
            Health::Warning => self.weights.warning,
        }
    }

    /// Whether the endpoint carries `tag`, compared ASCII case-insensitively.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_follows_health() {
        let e = Endpoint::new("a").with_weights(5, 2);
        assert_eq!(e.weight(), 5);
        assert_eq!(e.clone().with_health(Health::Warning).weight(), 2);
        assert_eq!(Endpoint::new("b").weight(), 1);
    }

    #[test]
    fn tags_match_case_insensitively() {
        let e = Endpoint::new("a").with_tags(["Canary", "v2"]);
        assert!(e.has_tag("canary"));
        assert!(e.has_tag("V2"));
        assert!(!e.has_tag("stable"));
    }

    #[test]
    fn id_conversions() {
        let id = EndpointId::from(String::from("web-1"));
        assert_eq!(id.as_str(), "web-1");
        assert_eq!(id.to_string(), "web-1");
        assert_eq!(id, EndpointId::from("web-1"));
    }
}
