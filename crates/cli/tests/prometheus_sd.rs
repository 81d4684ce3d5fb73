//! Prometheus' `consul_sd_configs` against the real agent (issue 6).
//!
//! Debian's Prometheus is built without Consul discovery (reference §0.1), so it cannot be the
//! interop client. [`ConsulSd`] stands in for it: a small model of Prometheus 2.42's
//! `discovery/consul` loop and of the Go client under it (`hashicorp/consul/api` v1.18;
//! reference §9.1). It makes exactly the calls Prometheus makes, with the request lines the Go
//! client builds, reads every answer as they read it (exactly 200, `X-Consul-Index` with
//! "same as last time" meaning "no change", Go's JSON decoding of the fields they decode) and
//! builds the target groups Prometheus hands its scrape manager. Only Prometheus is modelled:
//! the agent is the real binary.
//!
//! Left out of the model, on purpose: the `refresh_interval` ticker between calls (a rate limit
//! that changes nothing on the wire), the 15 s retry after a failed call (here a failed call
//! fails the test), tokens, TLS and basic auth (not configured), and Enterprise namespaces and
//! partitions (no `ns=`/`partition=`). Prometheus' `wait` is a constant 2 minutes; tests that
//! let a call run to its deadline shorten it so they stay fast. The decoder wants Consul's
//! own key spelling (Go would also take other casings): the reference fixes the names.
//!
//! Every wait is bounded; everything runs on 127.0.0.1.

mod support;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;
use support::{Agent, Answer, HttpBackend, PendingGet, Response};
// tokio's Instant is std's outside a paused runtime; clippy.toml bans std's.
use tokio::time::Instant;

/// Prometheus' `watchTimeout`: the `wait` of every blocking call it makes.
const PROMETHEUS_WAIT: Duration = Duration::from_secs(120);
/// The wait of calls a change is expected to wake: an answer well before it was woken.
const CHANGE_WAIT: Duration = Duration::from_secs(5);
/// The wait of calls expected to run to their deadline.
const QUIET_WAIT: Duration = Duration::from_secs(1);
/// How long a blocking call is observed to make sure it is still open.
const STILL_BLOCKED: Duration = Duration::from_millis(300);
/// How soon a blocking call must answer once the change that concerns it was acknowledged.
const WAKE_BOUND: Duration = Duration::from_secs(1);
/// Slack past a deadline for scheduling and HTTP on a busy 2-core machine.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);
/// The agent's node address: its HTTP bind IP, loopback in these tests.
const NODE_ADDRESS: &str = "127.0.0.1";

/// The label names Prometheus sets (`discovery/consul/consul.go`).
mod label {
    pub const ADDRESS: &str = "__address__";
    pub const NODE_ADDRESS: &str = "__meta_consul_address";
    pub const NODE: &str = "__meta_consul_node";
    pub const NAMESPACE: &str = "__meta_consul_namespace";
    pub const PARTITION: &str = "__meta_consul_partition";
    pub const TAGS: &str = "__meta_consul_tags";
    pub const SERVICE_ADDRESS: &str = "__meta_consul_service_address";
    pub const SERVICE_PORT: &str = "__meta_consul_service_port";
    pub const SERVICE_ID: &str = "__meta_consul_service_id";
    pub const HEALTH: &str = "__meta_consul_health";
    pub const SERVICE: &str = "__meta_consul_service";
    pub const DATACENTER: &str = "__meta_consul_dc";
    pub const NODE_META: &str = "__meta_consul_metadata_";
    pub const SERVICE_META: &str = "__meta_consul_service_metadata_";
    pub const TAGGED_ADDRESS: &str = "__meta_consul_tagged_address_";
}

// ---------------------------------------------------------------------------------------------
// The model: Prometheus' Consul discovery
// ---------------------------------------------------------------------------------------------

/// The parts of a `consul_sd_configs` entry that change what Prometheus sends or builds, with
/// its defaults (`DefaultSDConfig`).
#[derive(Debug, Clone)]
struct SdConfig {
    /// `datacenter:`. Unset: read from `/v1/agent/self` for the label, and sent on no request.
    datacenter: Option<String>,
    /// `services:`. Empty: every service in the catalog.
    services: Vec<String>,
    /// `tags:`. A service is watched only when its catalog tags include all of them, and each
    /// goes out as `tag=` on its health calls.
    tags: Vec<String>,
    /// `node_meta:`, sent as `node-meta=key:value` on catalog and health calls.
    node_meta: BTreeMap<String, String>,
    /// `allow_stale:` (default true), sent as `stale=`.
    allow_stale: bool,
    /// `tag_separator:` (default `,`).
    tag_separator: String,
    /// Prometheus' constant `watchTimeout`, shortened by tests that let a call expire.
    wait: Duration,
}

impl Default for SdConfig {
    fn default() -> Self {
        Self {
            datacenter: None,
            services: Vec::new(),
            tags: Vec::new(),
            node_meta: BTreeMap::new(),
            allow_stale: true,
            tag_separator: ",".to_owned(),
            wait: PROMETHEUS_WAIT,
        }
    }
}

/// A target's (or a group's) labels.
type LabelSet = BTreeMap<String, String>;

/// A `targetgroup.Group`: what Prometheus' discovery sends to its manager, keyed by source.
#[derive(Debug, Clone, PartialEq)]
struct TargetGroup {
    source: String,
    labels: LabelSet,
    targets: Vec<LabelSet>,
}

impl TargetGroup {
    /// The group that clears a source: no labels, no targets.
    fn clearing(source: &str) -> Self {
        Self {
            source: source.to_owned(),
            labels: LabelSet::new(),
            targets: Vec::new(),
        }
    }
}

/// One of Prometheus' blocking loops.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Watch {
    /// `watchServices`: `/v1/catalog/services`.
    Services,
    /// One service's watcher: `/v1/health/service/{name}`.
    Service(String),
}

/// What Prometheus made of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A new index: the answer was used and target groups sent.
    Updated { from: u64, to: u64 },
    /// The index Prometheus already had: "the watch timed out with no update"; the body is
    /// decoded (a decode error would still count) but not used.
    Unchanged { index: u64 },
}

/// One blocking call in flight, as each of Prometheus' loops has one.
struct InFlight {
    watch: Watch,
    uri: String,
    pending: PendingGet,
}

/// Prometheus' Consul discovery, stepped by the test instead of by goroutines and tickers.
struct ConsulSd {
    config: SdConfig,
    /// `__meta_consul_dc`: the configured datacenter, or `Config.Datacenter` of agent/self.
    datacenter: String,
    /// The catalog loop's `lastIndex` (0 before its first answer).
    services_index: u64,
    /// One watcher per watched service, with its own `lastIndex`.
    watchers: BTreeMap<String, u64>,
    /// The latest group per source, as the discovery manager keeps them.
    groups: BTreeMap<String, TargetGroup>,
    /// Every request line sent, in order.
    sent: Vec<String>,
}

impl ConsulSd {
    /// The discoverer before it has sent anything.
    fn new(config: SdConfig) -> Self {
        Self {
            datacenter: config.datacenter.clone().unwrap_or_default(),
            config,
            services_index: 0,
            watchers: BTreeMap::new(),
            groups: BTreeMap::new(),
            sent: Vec::new(),
        }
    }

    /// `Run` up to its loops: `initialize` (the datacenter, when not configured), then either
    /// the catalog loop or, with `services:` set and no `tags:`, one watcher per service.
    fn start(agent: &Agent, config: SdConfig) -> Self {
        let mut sd = Self::new(config);
        if sd.config.datacenter.is_none() {
            sd.datacenter = sd.agent_datacenter(agent);
        }
        if !sd.watches_catalog() {
            for name in sd.config.services.clone() {
                sd.watchers.insert(name, 0);
            }
        }
        sd
    }

    fn watches_catalog(&self) -> bool {
        self.config.services.is_empty() || !self.config.tags.is_empty()
    }

    /// `getDatacenter`: `Agent().Self()` decodes into `map[string]map[string]interface{}`
    /// (every top-level value an object) and `Config.Datacenter` must be a string; otherwise
    /// Prometheus logs, sleeps 15 s and tries again, and never starts its loops.
    fn agent_datacenter(&mut self, agent: &Agent) -> String {
        let uri = go_request_uri("/v1/agent/self", &BTreeMap::new());
        self.sent.push(uri.clone());
        let response = agent.get(&uri);
        require_ok(&uri, &response);
        let info: Option<BTreeMap<String, Option<serde_json::Map<String, Value>>>> =
            go_decode(&uri, &response);
        let config = info
            .as_ref()
            .and_then(|info| info.get("Config"))
            .and_then(Option::as_ref);
        match config.and_then(|c| c.get("Datacenter")) {
            Some(Value::String(dc)) => dc.clone(),
            other => panic!(
                "GET {uri}: Prometheus reads \"invalid value '{other:?}' for Config.Datacenter\" \
                 and retries forever: {}",
                response.text()
            ),
        }
    }

    /// `QueryOptions` as Prometheus fills them, as the Go client turns them into parameters:
    /// `dc` from the client config, `stale=`, `index` unless 0, `wait=<ms>ms`, `node-meta`.
    fn query_options(&self, index: u64) -> BTreeMap<&'static str, Vec<String>> {
        let mut params: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        if let Some(dc) = &self.config.datacenter {
            params.insert("dc", vec![dc.clone()]);
        }
        if self.config.allow_stale {
            params.insert("stale", vec![String::new()]);
        }
        if index != 0 {
            params.insert("index", vec![index.to_string()]);
        }
        if !self.config.wait.is_zero() {
            params.insert("wait", vec![go_dur_to_msec(self.config.wait)]);
        }
        for (key, value) in &self.config.node_meta {
            params
                .entry("node-meta")
                .or_default()
                .push(format!("{key}:{value}"));
        }
        params
    }

    /// The `lastIndex` the next call of `watch` carries.
    fn last_index(&self, watch: &Watch) -> u64 {
        match watch {
            Watch::Services => self.services_index,
            Watch::Service(name) => *self
                .watchers
                .get(name)
                .unwrap_or_else(|| panic!("Prometheus has no watcher for {name:?}")),
        }
    }

    /// The request line of `watch`'s next call.
    fn request(&self, watch: &Watch) -> String {
        let mut params = self.query_options(self.last_index(watch));
        match watch {
            Watch::Services => go_request_uri("/v1/catalog/services", &params),
            Watch::Service(name) => {
                // `ServiceMultipleTags(name, tags, passingOnly=false, ...)`: every configured tag
                // as `tag=`, and never `passing` (health is a label, not a filter).
                for tag in &self.config.tags {
                    params.entry("tag").or_default().push(tag.clone());
                }
                go_request_uri(&format!("/v1/health/service/{name}"), &params)
            }
        }
    }

    /// Makes `watch`'s next call and reads the answer.
    fn call(&mut self, agent: &Agent, watch: &Watch) -> Outcome {
        let uri = self.request(watch);
        self.sent.push(uri.clone());
        let response = agent.get(&uri);
        self.read(watch, &uri, &response)
    }

    /// Opens `watch`'s next call on its own thread, for blocking-query observations.
    fn start_call(&mut self, agent: &Agent, watch: Watch) -> InFlight {
        let uri = self.request(&watch);
        self.sent.push(uri.clone());
        InFlight {
            pending: agent.get_in_background(&uri),
            watch,
            uri,
        }
    }

    /// Waits up to `within` for `call`'s answer and reads it.
    fn finish(&mut self, call: InFlight, within: Duration) -> (Answer, Outcome) {
        let answer = call.pending.answer_within(within);
        let outcome = self.read(&call.watch, &call.uri, &answer.response);
        (answer, outcome)
    }

    /// What Prometheus does at start and after a catalog change: the catalog call (when it
    /// watches the catalog), then the first call of every watcher that has not answered yet.
    fn discover(&mut self, agent: &Agent) {
        if self.watches_catalog() {
            let outcome = self.call(agent, &Watch::Services);
            assert!(
                matches!(outcome, Outcome::Updated { .. }),
                "the first catalog call must be read as an update: {outcome:?}"
            );
        }
        self.first_calls(agent);
    }

    /// The first call of each watcher started since the last catalog answer.
    fn first_calls(&mut self, agent: &Agent) {
        let new: Vec<String> = self
            .watchers
            .iter()
            .filter(|(_, index)| **index == 0)
            .map(|(name, _)| name.clone())
            .collect();
        for name in new {
            let outcome = self.call(agent, &Watch::Service(name.clone()));
            assert!(
                matches!(outcome, Outcome::Updated { from: 0, .. }),
                "the first call of {name}'s watcher must be read as an update: {outcome:?}"
            );
        }
    }

    fn read(&mut self, watch: &Watch, uri: &str, response: &Response) -> Outcome {
        require_ok(uri, response);
        let index = go_last_index(uri, response);
        match watch {
            Watch::Services => self.read_services(uri, index, response),
            Watch::Service(name) => self.read_service(name, uri, index, response),
        }
    }

    /// `watchServices` after its call returned.
    fn read_services(&mut self, uri: &str, index: u64, response: &Response) -> Outcome {
        let services: Option<BTreeMap<String, Option<Vec<String>>>> = go_decode(uri, response);
        if index == self.services_index {
            return Outcome::Unchanged { index };
        }
        let from = std::mem::replace(&mut self.services_index, index);
        let services = services.unwrap_or_default();
        for (name, tags) in &services {
            let tags = tags.as_deref().unwrap_or_default();
            if self.should_watch(name, tags) && !self.watchers.contains_key(name) {
                self.watchers.insert(name.clone(), 0);
            }
        }
        // Only a service gone from the catalog stops its watcher (a tag change does not).
        let gone: Vec<String> = self
            .watchers
            .keys()
            .filter(|name| !services.contains_key(*name))
            .cloned()
            .collect();
        for name in gone {
            self.watchers.remove(&name);
            self.publish(TargetGroup::clearing(&name));
        }
        if self.watchers.is_empty() {
            self.publish(TargetGroup::clearing(""));
        }
        Outcome::Updated { from, to: index }
    }

    /// `shouldWatch`: the name is configured (or none are), and the catalog tags include every
    /// configured tag (exact, case-sensitive comparison).
    fn should_watch(&self, name: &str, tags: &[String]) -> bool {
        let by_name =
            self.config.services.is_empty() || self.config.services.iter().any(|s| s == name);
        let by_tags = self.config.tags.iter().all(|wanted| tags.contains(wanted));
        by_name && by_tags
    }

    /// `consulService.watch` after its call returned.
    fn read_service(&mut self, name: &str, uri: &str, index: u64, response: &Response) -> Outcome {
        let entries: Option<Vec<ServiceEntry>> = go_decode(uri, response);
        let from = self.last_index(&Watch::Service(name.to_owned()));
        if index == from {
            return Outcome::Unchanged { index };
        }
        self.watchers.insert(name.to_owned(), index);
        let group = TargetGroup {
            source: name.to_owned(),
            labels: [
                (label::SERVICE.to_owned(), name.to_owned()),
                (label::DATACENTER.to_owned(), self.datacenter.clone()),
            ]
            .into(),
            targets: entries
                .unwrap_or_default()
                .iter()
                .map(|entry| self.target(uri, entry))
                .collect(),
        };
        self.publish(group);
        Outcome::Updated { from, to: index }
    }

    /// One target, built as Prometheus builds it from a health entry.
    fn target(&self, uri: &str, entry: &ServiceEntry) -> LabelSet {
        // Prometheus dereferences both pointers: a null Node or Service crashes it (§0.4).
        let (Some(node), Some(service)) = (&entry.node, &entry.service) else {
            panic!("GET {uri}: an entry without Node or Service makes Prometheus dereference nil")
        };
        let separator = &self.config.tag_separator;
        let tags = service.tags.as_deref().unwrap_or_default().join(separator);
        let node_address = node.address.clone().unwrap_or_default();
        let service_address = service.address.clone().unwrap_or_default();
        let port = service.port.unwrap_or_default().to_string();
        let host = if service_address.is_empty() {
            &node_address
        } else {
            &service_address
        };
        let checks = entry.checks.as_deref().unwrap_or_default();
        let mut labels: LabelSet = [
            (label::ADDRESS, go_join_host_port(host, &port)),
            (label::NODE_ADDRESS, node_address.clone()),
            (label::NODE, node.node.clone().unwrap_or_default()),
            // Empty unless Enterprise; Prometheus treats an empty label as no label.
            (
                label::NAMESPACE,
                service.namespace.clone().unwrap_or_default(),
            ),
            (
                label::PARTITION,
                service.partition.clone().unwrap_or_default(),
            ),
            (label::TAGS, format!("{separator}{tags}{separator}")),
            (label::SERVICE_ADDRESS, service_address.clone()),
            (label::SERVICE_PORT, port.clone()),
            (label::SERVICE_ID, service.id.clone().unwrap_or_default()),
            (label::HEALTH, aggregated_status(checks).to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        let prefixed = [
            (label::NODE_META, &node.meta),
            (label::SERVICE_META, &service.meta),
            (label::TAGGED_ADDRESS, &node.tagged_addresses),
        ];
        for (prefix, pairs) in prefixed {
            for (key, value) in pairs.iter().flatten() {
                labels.insert(
                    format!("{prefix}{}", sanitize_label_name(key)),
                    value.clone(),
                );
            }
        }
        labels
    }

    fn publish(&mut self, group: TargetGroup) {
        self.groups.insert(group.source.clone(), group);
    }

    /// The group Prometheus last received for `source`.
    fn group(&self, source: &str) -> &TargetGroup {
        self.groups
            .get(source)
            .unwrap_or_else(|| panic!("no target group for {source:?}: {:?}", self.groups))
    }

    /// Every target with its group's labels merged in (the target's own win), as the scrape
    /// manager sees them.
    fn targets(&self) -> Vec<LabelSet> {
        self.groups
            .values()
            .flat_map(|group| {
                group.targets.iter().map(|target| {
                    let mut merged = group.labels.clone();
                    merged.extend(target.clone());
                    merged
                })
            })
            .collect()
    }

    /// One line per target, `service id address health`, sorted: the compact view of what
    /// Prometheus would scrape.
    fn summary(&self) -> Vec<String> {
        let get = |target: &LabelSet, name: &str| target.get(name).cloned().unwrap_or_default();
        let mut lines: Vec<String> = self
            .targets()
            .iter()
            .map(|t| {
                format!(
                    "{} {} {} {}",
                    get(t, label::SERVICE),
                    get(t, label::SERVICE_ID),
                    get(t, label::ADDRESS),
                    get(t, label::HEALTH)
                )
            })
            .collect();
        lines.sort();
        lines
    }
}

// ---------------------------------------------------------------------------------------------
// The Go client's encoding and decoding rules
// ---------------------------------------------------------------------------------------------

/// `requireOK`: anything but exactly 200 is an error; Prometheus counts a failed RPC, sleeps
/// 15 s and tries again.
#[track_caller]
fn require_ok(uri: &str, response: &Response) {
    assert_eq!(
        response.status,
        200,
        "GET {uri}: Prometheus takes anything but 200 as a failed call: {}",
        response.text()
    );
}

/// `parseQueryMeta`'s `X-Consul-Index`: absent or not a decimal u64, `LastIndex` stays 0 (the
/// error is ignored). 0 is the index Prometheus starts from, so it would read every answer as
/// "no change" and never publish a target (reference §0.2): the model refuses it.
#[track_caller]
fn go_last_index(uri: &str, response: &Response) -> u64 {
    let raw = response.header("X-Consul-Index");
    let index = raw
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        index >= 1,
        "GET {uri}: X-Consul-Index {raw:?} reads as {index}, which Prometheus takes as \
         \"no change\" forever"
    );
    index
}

/// `decodeBody`: `json.NewDecoder(body).Decode(out)` reads the first JSON value; a decode error
/// fails the call like a non-200.
#[track_caller]
fn go_decode<T: DeserializeOwned>(uri: &str, response: &Response) -> T {
    let first = serde_json::Deserializer::from_slice(&response.body)
        .into_iter::<T>()
        .next()
        .unwrap_or_else(|| serde_json::from_slice::<T>(&response.body));
    first.unwrap_or_else(|e| {
        panic!(
            "GET {uri}: the Go client cannot decode the body ({e}); Prometheus counts a failed \
             call: {}",
            response.text()
        )
    })
}

/// The Go client's request line: `EscapedPath()` of `path`, then `url.Values.Encode()` of
/// `params` (keys sorted, one key's values in the order added, `QueryEscape`d), with no `?`
/// when there are none.
fn go_request_uri(path: &str, params: &BTreeMap<&str, Vec<String>>) -> String {
    let mut uri = go_escape(path, Escape::Path);
    let mut separator = '?';
    for (key, values) in params {
        for value in values {
            let _ = write!(
                uri,
                "{separator}{}={}",
                go_escape(key, Escape::QueryComponent),
                go_escape(value, Escape::QueryComponent)
            );
            separator = '&';
        }
    }
    uri
}

/// Which of Go's `net/url` escapers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    /// `encodePath`: RFC 3986 reserved characters other than `?` stay.
    Path,
    /// `encodeQueryComponent` (`QueryEscape`): only unreserved characters stay; space is `+`.
    QueryComponent,
}

fn go_escape(text: &str, mode: Escape) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        let keep = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'~')
            || (mode == Escape::Path && b"$&+,/:;=@".contains(&byte));
        if keep {
            out.push(char::from(byte));
        } else if byte == b' ' && mode == Escape::QueryComponent {
            out.push('+');
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The Go client's `durToMsec`: whole milliseconds (at least 1 for a positive duration), `ms`.
fn go_dur_to_msec(wait: Duration) -> String {
    let mut ms = wait.as_millis();
    if ms == 0 && !wait.is_zero() {
        ms = 1;
    }
    format!("{ms}ms")
}

/// `net.JoinHostPort`: a host with a colon (IPv6) is bracketed.
fn go_join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// `strutil.SanitizeLabelName`: every character outside `[a-zA-Z0-9_]` becomes `_`.
fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `HealthChecks.AggregatedStatus`: maintenance > critical > warning > passing; a status
/// outside the three ends the scan with `""`; no checks is `passing`.
fn aggregated_status(checks: &[HealthCheck]) -> &'static str {
    let (mut warning, mut critical, mut maintenance) = (false, false, false);
    for check in checks {
        let id = check.check_id.as_deref().unwrap_or_default();
        if id == "_node_maintenance" || id.starts_with("_service_maintenance:") {
            maintenance = true;
            continue;
        }
        match check.status.as_deref().unwrap_or_default() {
            "passing" => {}
            "warning" => warning = true,
            "critical" => critical = true,
            _ => return "",
        }
    }
    if maintenance {
        "maintenance"
    } else if critical {
        "critical"
    } else if warning {
        "warning"
    } else {
        "passing"
    }
}

/// `time.ParseDuration`'s grammar: `[-+]?([0-9]*(\.[0-9]*)?unit)+` or `0`, every number with
/// at least one digit and a unit of ns, us, µs, μs, ms, s, m or h.
fn go_parse_duration(text: &str) -> Result<(), String> {
    let invalid = || format!("time: invalid duration {text:?}");
    let mut rest = text.strip_prefix(['-', '+']).unwrap_or(text);
    if rest == "0" {
        return Ok(());
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let whole = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let mut digits = whole;
        rest = &rest[whole..];
        if let Some(after_point) = rest.strip_prefix('.') {
            let fraction = after_point
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(after_point.len());
            digits += fraction;
            rest = &after_point[fraction..];
        }
        if digits == 0 {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&&rest[..unit_len]) {
            return Err(format!(
                "time: missing or unknown unit in duration {text:?}"
            ));
        }
        rest = &rest[unit_len..];
    }
    Ok(())
}

/// `api.ReadableDuration` (a check definition's `Interval`, `Timeout`,
/// `DeregisterCriticalServiceAfter`): its `UnmarshalJSON` takes a quoted Go duration or a bare
/// number; `null`, `""` and anything else fail the whole response (reference §0.10).
#[derive(Debug, Default)]
struct ReadableDuration;

impl<'de> Deserialize<'de> for ReadableDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => go_parse_duration(&text)
                .map(|()| ReadableDuration)
                .map_err(D::Error::custom),
            Value::Number(_) => Ok(ReadableDuration),
            other => Err(D::Error::custom(format!(
                "ReadableDuration cannot be {other}"
            ))),
        }
    }
}

/// The `interface{}` a check definition's `IntervalDuration` & co. decode into first: a string
/// must parse as a Go duration, anything else is ignored.
#[derive(Debug)]
struct LooseDuration;

impl<'de> Deserialize<'de> for LooseDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => go_parse_duration(&text)
                .map(|()| LooseDuration)
                .map_err(D::Error::custom),
            _ => Ok(LooseDuration),
        }
    }
}

// The Go client's response types, with every field it decodes: a field of the wrong JSON type
// fails the whole answer even when Prometheus never reads it. `Option` is Go's tolerance of
// `null` (the zero value); the one place Go fails on `null` is `ReadableDuration`.

/// `api.ServiceEntry`.
#[derive(Debug, Deserialize)]
struct ServiceEntry {
    #[serde(rename = "Node")]
    node: Option<Node>,
    #[serde(rename = "Service")]
    service: Option<AgentService>,
    #[serde(rename = "Checks")]
    checks: Option<Vec<HealthCheck>>,
}

/// `api.Node`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Decoded for their types, as Go decodes them; Prometheus reads a few.
struct Node {
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "Node")]
    node: Option<String>,
    #[serde(rename = "Address")]
    address: Option<String>,
    #[serde(rename = "Datacenter")]
    datacenter: Option<String>,
    #[serde(rename = "TaggedAddresses")]
    tagged_addresses: Option<BTreeMap<String, String>>,
    #[serde(rename = "Meta")]
    meta: Option<BTreeMap<String, String>>,
    #[serde(rename = "CreateIndex")]
    create_index: Option<u64>,
    #[serde(rename = "ModifyIndex")]
    modify_index: Option<u64>,
    #[serde(rename = "Partition")]
    partition: Option<String>,
    #[serde(rename = "PeerName")]
    peer_name: Option<String>,
}

/// `api.AgentService` (without the Connect-only `Proxy` and `Connect` objects).
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Decoded for their types, as Go decodes them; Prometheus reads a few.
struct AgentService {
    #[serde(rename = "Kind")]
    kind: Option<String>,
    #[serde(rename = "ID")]
    id: Option<String>,
    #[serde(rename = "Service")]
    service: Option<String>,
    #[serde(rename = "Tags")]
    tags: Option<Vec<String>>,
    #[serde(rename = "Meta")]
    meta: Option<BTreeMap<String, String>>,
    #[serde(rename = "Port")]
    port: Option<i64>,
    #[serde(rename = "Address")]
    address: Option<String>,
    #[serde(rename = "SocketPath")]
    socket_path: Option<String>,
    #[serde(rename = "TaggedAddresses")]
    tagged_addresses: Option<BTreeMap<String, ServiceAddress>>,
    #[serde(rename = "Weights")]
    weights: Option<AgentWeights>,
    #[serde(rename = "EnableTagOverride")]
    enable_tag_override: Option<bool>,
    #[serde(rename = "CreateIndex")]
    create_index: Option<u64>,
    #[serde(rename = "ModifyIndex")]
    modify_index: Option<u64>,
    #[serde(rename = "ContentHash")]
    content_hash: Option<String>,
    #[serde(rename = "PeerName")]
    peer_name: Option<String>,
    #[serde(rename = "Namespace")]
    namespace: Option<String>,
    #[serde(rename = "Partition")]
    partition: Option<String>,
    #[serde(rename = "Datacenter")]
    datacenter: Option<String>,
}

/// `api.ServiceAddress`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Decoded for their types only.
struct ServiceAddress {
    #[serde(rename = "Address")]
    address: Option<String>,
    #[serde(rename = "Port")]
    port: Option<i64>,
}

/// `api.AgentWeights`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Decoded for their types only.
struct AgentWeights {
    #[serde(rename = "Passing")]
    passing: Option<i64>,
    #[serde(rename = "Warning")]
    warning: Option<i64>,
}

/// `api.HealthCheck`.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Decoded for their types, as Go decodes them; Prometheus reads two.
struct HealthCheck {
    #[serde(rename = "Node")]
    node: Option<String>,
    #[serde(rename = "CheckID")]
    check_id: Option<String>,
    #[serde(rename = "Name")]
    name: Option<String>,
    #[serde(rename = "Status")]
    status: Option<String>,
    #[serde(rename = "Notes")]
    notes: Option<String>,
    #[serde(rename = "Output")]
    output: Option<String>,
    #[serde(rename = "ServiceID")]
    service_id: Option<String>,
    #[serde(rename = "ServiceName")]
    service_name: Option<String>,
    #[serde(rename = "ServiceTags")]
    service_tags: Option<Vec<String>>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    #[serde(rename = "Namespace")]
    namespace: Option<String>,
    #[serde(rename = "Partition")]
    partition: Option<String>,
    #[serde(rename = "ExposedPort")]
    exposed_port: Option<i64>,
    #[serde(rename = "PeerName")]
    peer_name: Option<String>,
    #[serde(rename = "Definition")]
    definition: Option<HealthCheckDefinition>,
    #[serde(rename = "CreateIndex")]
    create_index: Option<u64>,
    #[serde(rename = "ModifyIndex")]
    modify_index: Option<u64>,
}

/// `api.HealthCheckDefinition`, with its `UnmarshalJSON`'s duration rules.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // Decoded for their types only.
struct HealthCheckDefinition {
    #[serde(rename = "HTTP")]
    http: Option<String>,
    #[serde(rename = "Header")]
    header: Option<BTreeMap<String, Vec<String>>>,
    #[serde(rename = "Method")]
    method: Option<String>,
    #[serde(rename = "Body")]
    body: Option<String>,
    #[serde(rename = "TLSServerName")]
    tls_server_name: Option<String>,
    #[serde(rename = "TLSSkipVerify")]
    tls_skip_verify: Option<bool>,
    #[serde(rename = "TCP")]
    tcp: Option<String>,
    #[serde(rename = "UDP")]
    udp: Option<String>,
    #[serde(rename = "GRPC")]
    grpc: Option<String>,
    #[serde(rename = "OSService")]
    os_service: Option<String>,
    #[serde(rename = "GRPCUseTLS")]
    grpc_use_tls: Option<bool>,
    #[serde(rename = "Interval", default)]
    interval: ReadableDuration,
    #[serde(rename = "Timeout", default)]
    timeout: ReadableDuration,
    #[serde(rename = "DeregisterCriticalServiceAfter", default)]
    deregister_critical_service_after: ReadableDuration,
    #[serde(rename = "IntervalDuration")]
    interval_duration: Option<LooseDuration>,
    #[serde(rename = "TimeoutDuration")]
    timeout_duration: Option<LooseDuration>,
    #[serde(rename = "DeregisterCriticalServiceAfterDuration")]
    deregister_critical_service_after_duration: Option<LooseDuration>,
}

// ---------------------------------------------------------------------------------------------
// Test helpers
// ---------------------------------------------------------------------------------------------

/// A TTL check long enough never to expire mid-test, starting in `status`.
fn ttl_check(id: &str, status: &str) -> Value {
    json!({"CheckID": id, "TTL": "10m", "Status": status})
}

/// Registers `id` of `service` on the node's address with a passing TTL check `{id}-ttl`.
fn register(agent: &Agent, service: &str, id: &str, port: u16) {
    agent.register(&json!({
        "Name": service, "ID": id, "Port": port,
        "Check": ttl_check(&format!("{id}-ttl"), "passing")
    }));
}

/// The agent's node name, which every target carries as `__meta_consul_node`.
fn node_name(agent: &Agent) -> String {
    let response = agent.get("/v1/agent/self");
    response.expect_status(200);
    response.json()["Config"]["NodeName"]
        .as_str()
        .unwrap_or_else(|| panic!("agent/self without Config.NodeName: {}", response.text()))
        .to_owned()
}

/// The labels Prometheus builds for a target on this agent's node: the node's own (name,
/// address, meta, tagged addresses, as Consul answers them; §6.5) plus `service`'s.
fn expected_target(node: &str, service: &[(&str, &str)]) -> LabelSet {
    let node_labels = [
        (label::NODE_ADDRESS, NODE_ADDRESS),
        (label::NODE, node),
        (label::NAMESPACE, ""),
        (label::PARTITION, ""),
        ("__meta_consul_metadata_consul_network_segment", ""),
        ("__meta_consul_tagged_address_lan", NODE_ADDRESS),
        ("__meta_consul_tagged_address_lan_ipv4", NODE_ADDRESS),
        ("__meta_consul_tagged_address_wan", NODE_ADDRESS),
        ("__meta_consul_tagged_address_wan_ipv4", NODE_ADDRESS),
    ];
    node_labels
        .iter()
        .chain(service)
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// A group's targets ordered by service ID, for comparison.
fn by_id(group: &TargetGroup) -> Vec<LabelSet> {
    let mut targets = group.targets.clone();
    targets.sort_by(|a, b| a.get(label::SERVICE_ID).cmp(&b.get(label::SERVICE_ID)));
    targets
}

/// The longest a call with `wait` may take: the wait, up to 1/16 of jitter, and slack.
fn deadline_bound(wait: Duration) -> Duration {
    wait + wait / 16 + DEADLINE_MARGIN
}

/// Opens the next call of each of `watches`, checks they stay open, makes `change`, and checks
/// each answers within [`WAKE_BOUND`] (long before its wait) with a larger index that
/// Prometheus reads as an update. The calls are read in the order given.
#[track_caller]
fn assert_woken_by(
    sd: &mut ConsulSd,
    agent: &Agent,
    watches: impl IntoIterator<Item = Watch>,
    change: impl FnOnce(),
) {
    let calls: Vec<InFlight> = watches
        .into_iter()
        .map(|watch| sd.start_call(agent, watch))
        .collect();
    for call in &calls {
        call.pending.assert_pending_for(STILL_BLOCKED);
    }
    let changing = Instant::now();
    change();
    for call in calls {
        let uri = call.uri.clone();
        let (answer, outcome) = sd.finish(call, WAKE_BOUND);
        assert!(
            answer.arrived >= changing,
            "GET {uri} answered before the change"
        );
        assert!(
            answer.took() < sd.config.wait,
            "GET {uri} ran {:?}, to its wait, though the change concerns it",
            answer.took()
        );
        match outcome {
            Outcome::Updated { from, to } => assert!(
                to > from,
                "GET {uri}: a change must move the index up, got {from} -> {to}"
            ),
            Outcome::Unchanged { index } => panic!(
                "GET {uri} woke with the index it was given ({index}): Prometheus ignores the \
                 answer and never sees the change"
            ),
        }
    }
}

/// Checks that `call` runs to its deadline and answers with the index it was given, which
/// Prometheus reads as "no change".
#[track_caller]
fn assert_quiet(sd: &mut ConsulSd, call: InFlight) {
    let uri = call.uri.clone();
    let given = sd.last_index(&call.watch);
    let wait = sd.config.wait;
    let (answer, outcome) = sd.finish(call, deadline_bound(wait) + Duration::from_secs(1));
    let took = answer.took();
    assert!(
        took >= wait && took < deadline_bound(wait),
        "GET {uri} answered after {took:?}; nothing it watches changed, so expected within \
         [{wait:?}, {:?})",
        deadline_bound(wait)
    );
    assert_eq!(
        outcome,
        Outcome::Unchanged { index: given },
        "GET {uri} at its deadline"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn the_model_encodes_like_the_go_client_and_aggregates_like_prometheus() {
    // The request line captured from Prometheus' own test (reference §9.1, item 4).
    let mut sd = ConsulSd::new(SdConfig {
        tags: vec!["tag1".into()],
        node_meta: [("rack_name".into(), "2304".into())].into(),
        ..SdConfig::default()
    });
    sd.watchers.insert("test".into(), 0);
    assert_eq!(
        sd.request(&Watch::Service("test".into())),
        "/v1/health/service/test?node-meta=rack_name%3A2304&stale=&tag=tag1&wait=120000ms"
    );
    sd.watchers.insert("test".into(), 57);
    assert_eq!(
        sd.request(&Watch::Service("test".into())),
        "/v1/health/service/test?index=57&node-meta=rack_name%3A2304&stale=&tag=tag1&wait=120000ms"
    );
    assert_eq!(
        go_request_uri(
            "/v1/health/service/a b?",
            &BTreeMap::from([("tag", vec!["x y&z".into()])])
        ),
        "/v1/health/service/a%20b%3F?tag=x+y%26z"
    );
    assert_eq!(go_dur_to_msec(Duration::from_micros(10)), "1ms");

    let check = |id: &str, status: &str| HealthCheck {
        check_id: Some(id.into()),
        status: Some(status.into()),
        ..serde_json::from_value(json!({})).expect("an empty check decodes")
    };
    assert_eq!(aggregated_status(&[]), "passing");
    assert_eq!(
        aggregated_status(&[check("serfHealth", "passing"), check("a", "warning")]),
        "warning"
    );
    assert_eq!(
        aggregated_status(&[
            check("a", "critical"),
            check("_service_maintenance:x", "critical")
        ]),
        "maintenance"
    );
    assert_eq!(
        aggregated_status(&[check("a", "unknown"), check("b", "critical")]),
        ""
    );

    for good in ["0", "0s", "10s", "1m30s", "1.5h", ".5s", "-3ms", "10µs"] {
        assert_eq!(go_parse_duration(good), Ok(()), "{good}");
    }
    for bad in ["", "10", "s", ".s", "1x", "1s5"] {
        assert!(go_parse_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(sanitize_label_name("build-id.v2é"), "build_id_v2_");

    // Go's decoding: nulls are zero values, except a ReadableDuration; types are strict.
    let decodes = |entry: Value| serde_json::from_value::<ServiceEntry>(entry).is_ok();
    assert!(decodes(
        json!({"Node": null, "Service": {"Tags": null, "Meta": null}})
    ));
    assert!(decodes(
        json!({"Checks": [{"Definition": {"Interval": "10s", "Timeout": 2e9}}]})
    ));
    assert!(!decodes(json!({"Service": {"Port": "8080"}})));
    assert!(!decodes(json!({"Service": {"Meta": {"n": 1}}})));
    assert!(!decodes(
        json!({"Node": {"TaggedAddresses": {"lan": {"Address": "x"}}}})
    ));
    for interval in [json!(""), json!(null), json!("10")] {
        let entry = json!({"Checks": [{"Definition": {"Interval": interval}}]});
        assert!(!decodes(entry), "Interval {interval}");
    }
}

#[test]
fn prometheus_discovers_every_instance_with_the_labels_it_builds() {
    let agent = Agent::start(&[]);
    let node = node_name(&agent);
    agent.register(&json!({
        "Name": "web", "ID": "web-1", "Address": "127.0.0.5", "Port": 8080,
        "Tags": ["v2", "canary"], "Meta": {"team": "blue", "build-id": "42"},
        "Check": ttl_check("web-1-ttl", "passing")
    }));
    agent.register(&json!({
        "Name": "web", "ID": "web-2", "Port": 8081,
        "Check": ttl_check("web-2-ttl", "warning")
    }));
    agent.register(&json!({
        "Name": "web", "ID": "web-3", "Address": "::1", "Port": 8082, "Tags": ["v1"],
        "Check": ttl_check("web-3-ttl", "critical")
    }));
    agent.register(&json!({"Name": "db", "ID": "db-1", "Port": 5432}));
    // A scheduled check, so the entry carries what the Go client decodes strictly: the
    // definition's durations, its header map, and the last run's output.
    let backend = HttpBackend::start();
    agent.register(&json!({
        "Name": "db", "ID": "db-2", "Port": 5433,
        "Check": {
            "CheckID": "db-2-http", "HTTP": backend.url(), "Header": {"X-Probe": ["prometheus"]},
            "Interval": "10s", "Timeout": "2s", "DeregisterCriticalServiceAfter": "1m"
        }
    }));
    agent.wait_for_status("db-2-http", "passing");

    let mut sd = ConsulSd::start(&agent, SdConfig::default());
    sd.discover(&agent);

    // Exactly Prometheus' calls: the datacenter, the catalog, then one watcher per service;
    // no index on a first call, `stale=` and the 2-minute wait on every one, no `passing`.
    assert_eq!(
        sd.sent,
        [
            "/v1/agent/self",
            "/v1/catalog/services?stale=&wait=120000ms",
            "/v1/health/service/db?stale=&wait=120000ms",
            "/v1/health/service/web?stale=&wait=120000ms",
        ]
    );
    assert_eq!(sd.datacenter, "dc1");

    let web = sd.group("web");
    assert_eq!(
        web.labels,
        LabelSet::from([
            (label::SERVICE.to_owned(), "web".to_owned()),
            (label::DATACENTER.to_owned(), "dc1".to_owned()),
        ])
    );
    // Critical and warning instances are targets too: Prometheus labels health, never filters.
    assert_eq!(
        by_id(web),
        [
            expected_target(
                &node,
                &[
                    (label::ADDRESS, "127.0.0.5:8080"),
                    (label::SERVICE_ADDRESS, "127.0.0.5"),
                    (label::SERVICE_PORT, "8080"),
                    (label::SERVICE_ID, "web-1"),
                    (label::TAGS, ",v2,canary,"),
                    (label::HEALTH, "passing"),
                    ("__meta_consul_service_metadata_team", "blue"),
                    ("__meta_consul_service_metadata_build_id", "42"),
                ]
            ),
            // No service address: the node's address, and an empty service address label.
            expected_target(
                &node,
                &[
                    (label::ADDRESS, "127.0.0.1:8081"),
                    (label::SERVICE_ADDRESS, ""),
                    (label::SERVICE_PORT, "8081"),
                    (label::SERVICE_ID, "web-2"),
                    (label::TAGS, ",,"),
                    (label::HEALTH, "warning"),
                ]
            ),
            expected_target(
                &node,
                &[
                    (label::ADDRESS, "[::1]:8082"),
                    (label::SERVICE_ADDRESS, "::1"),
                    (label::SERVICE_PORT, "8082"),
                    (label::SERVICE_ID, "web-3"),
                    (label::TAGS, ",v1,"),
                    (label::HEALTH, "critical"),
                ]
            ),
        ]
    );
    // db-1 has no check of its own: only the node's serfHealth, so passing.
    assert_eq!(
        by_id(sd.group("db")),
        [
            expected_target(
                &node,
                &[
                    (label::ADDRESS, "127.0.0.1:5432"),
                    (label::SERVICE_ADDRESS, ""),
                    (label::SERVICE_PORT, "5432"),
                    (label::SERVICE_ID, "db-1"),
                    (label::TAGS, ",,"),
                    (label::HEALTH, "passing"),
                ]
            ),
            expected_target(
                &node,
                &[
                    (label::ADDRESS, "127.0.0.1:5433"),
                    (label::SERVICE_ADDRESS, ""),
                    (label::SERVICE_PORT, "5433"),
                    (label::SERVICE_ID, "db-2"),
                    (label::TAGS, ",,"),
                    (label::HEALTH, "passing"),
                ]
            ),
        ]
    );
    assert_eq!(
        sd.summary(),
        [
            "db db-1 127.0.0.1:5432 passing",
            "db db-2 127.0.0.1:5433 passing",
            "web web-1 127.0.0.5:8080 passing",
            "web web-2 127.0.0.1:8081 warning",
            "web web-3 [::1]:8082 critical",
        ]
    );
}

#[test]
fn tags_node_meta_datacenter_and_services_change_the_calls_as_in_prometheus() {
    let agent = Agent::start(&[]);
    agent
        .register(&json!({"Name": "web", "ID": "web-1", "Port": 8081, "Tags": ["v2", "env=prod"]}));
    agent.register(&json!({"Name": "web", "ID": "web-2", "Port": 8082, "Tags": ["v2"]}));
    agent.register(&json!({"Name": "db", "ID": "db-1", "Port": 5432, "Tags": ["v2"]}));

    // `tags:` keep the catalog loop but watch only services whose catalog tags include them all,
    // and filter instances on the agent with `tag=`. A configured `datacenter` replaces the
    // agent/self call and goes out as `dc=`; `node_meta` as `node-meta=key%3Avalue`.
    let mut sd = ConsulSd::start(
        &agent,
        SdConfig {
            datacenter: Some("dc1".into()),
            tags: vec!["v2".into(), "env=prod".into()],
            node_meta: [("consul-network-segment".into(), String::new())].into(),
            ..SdConfig::default()
        },
    );
    sd.discover(&agent);
    assert_eq!(
        sd.sent,
        [
            "/v1/catalog/services?dc=dc1&node-meta=consul-network-segment%3A&stale=&wait=120000ms",
            "/v1/health/service/web?dc=dc1&node-meta=consul-network-segment%3A&stale=&tag=v2&tag=env%3Dprod&wait=120000ms",
        ]
    );
    assert_eq!(sd.summary(), ["web web-1 127.0.0.1:8081 passing"]);
    assert_eq!(sd.group("web").targets[0][label::TAGS], ",v2,env=prod,");

    // `services:` without `tags:` skips the catalog; `allow_stale: false` drops `stale=`.
    let mut sd = ConsulSd::start(
        &agent,
        SdConfig {
            services: vec!["web".into()],
            allow_stale: false,
            tag_separator: "|".into(),
            ..SdConfig::default()
        },
    );
    sd.discover(&agent);
    assert_eq!(
        sd.sent,
        ["/v1/agent/self", "/v1/health/service/web?wait=120000ms"]
    );
    assert_eq!(
        sd.summary(),
        [
            "web web-1 127.0.0.1:8081 passing",
            "web web-2 127.0.0.1:8082 passing",
        ]
    );
    let tags: Vec<String> = by_id(sd.group("web"))
        .iter()
        .map(|t| t[label::TAGS].clone())
        .collect();
    assert_eq!(tags, ["|v2|env=prod|", "|v2|"]);
}

#[test]
fn the_datacenter_label_is_the_one_agent_self_reports() {
    let agent = Agent::start(&["--datacenter", "eu-west-1"]);
    register(&agent, "web", "web-1", 8081);
    let mut sd = ConsulSd::start(&agent, SdConfig::default());
    sd.discover(&agent);
    assert_eq!(sd.datacenter, "eu-west-1");
    let targets = sd.targets();
    assert_eq!(targets.len(), 1, "{targets:?}");
    assert_eq!(targets[0][label::DATACENTER], "eu-west-1");
    // Learnt, not configured: no request carries `dc=`.
    assert!(
        sd.sent.iter().all(|uri| !uri.contains("dc=")),
        "{:?}",
        sd.sent
    );
}

#[test]
fn registrations_a_failing_check_and_deregistrations_wake_the_watch_that_covers_them() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1", 8081);
    let mut sd = ConsulSd::start(
        &agent,
        SdConfig {
            wait: CHANGE_WAIT,
            ..SdConfig::default()
        },
    );
    sd.discover(&agent);
    assert_eq!(sd.summary(), ["web web-1 127.0.0.1:8081 passing"]);
    let catalog = Watch::Services;
    let web = Watch::Service("web".into());
    let api = Watch::Service("api".into());

    // A new service wakes the catalog loop, which starts a watcher for it.
    assert_woken_by(&mut sd, &agent, [catalog.clone()], || {
        register(&agent, "api", "api-1", 9090);
    });
    assert!(sd.watchers.contains_key("api"), "{:?}", sd.watchers);
    sd.first_calls(&agent);
    assert_eq!(
        sd.summary(),
        [
            "api api-1 127.0.0.1:9090 passing",
            "web web-1 127.0.0.1:8081 passing",
        ]
    );

    // A new instance wakes its service's watcher.
    assert_woken_by(&mut sd, &agent, [web.clone()], || {
        register(&agent, "web", "web-2", 8082);
    });
    assert_eq!(
        sd.summary(),
        [
            "api api-1 127.0.0.1:9090 passing",
            "web web-1 127.0.0.1:8081 passing",
            "web web-2 127.0.0.1:8082 passing",
        ]
    );

    // A failing TTL check wakes it too; the instance stays a target, labelled critical.
    assert_woken_by(&mut sd, &agent, [web.clone()], || {
        agent
            .put_empty("/v1/agent/check/fail/web-1-ttl?note=down")
            .expect_write_ok();
    });
    assert_eq!(
        sd.summary(),
        [
            "api api-1 127.0.0.1:9090 passing",
            "web web-1 127.0.0.1:8081 critical",
            "web web-2 127.0.0.1:8082 passing",
        ]
    );

    // A deregistration wakes it and the instance is no longer a target.
    assert_woken_by(&mut sd, &agent, [web.clone()], || agent.deregister("web-2"));
    assert_eq!(
        sd.summary(),
        [
            "api api-1 127.0.0.1:9090 passing",
            "web web-1 127.0.0.1:8081 critical",
        ]
    );

    // Prometheus keeps its catalog call open all along; the catalog-wide index moved with the
    // changes above, so its next call answers at once, and it finds nothing to start or stop.
    let outcome = sd.call(&agent, &catalog);
    assert!(
        matches!(outcome, Outcome::Updated { from, to } if to > from),
        "the catalog index moved with web-2's registration: {outcome:?}"
    );
    assert_eq!(
        sd.watchers.keys().collect::<Vec<_>>(),
        ["api", "web"],
        "{:?}",
        sd.watchers
    );

    // The last instance of a service leaves: its watcher wakes with an empty list, and the
    // catalog loop, no longer seeing the service, stops the watcher and clears its group.
    assert_woken_by(&mut sd, &agent, [api, catalog], || {
        agent.deregister("api-1")
    });
    assert!(!sd.watchers.contains_key("api"), "{:?}", sd.watchers);
    assert_eq!(sd.group("api"), &TargetGroup::clearing("api"));
    assert_eq!(sd.summary(), ["web web-1 127.0.0.1:8081 critical"]);

    // Every call after the first carried the index of the answer before it.
    let blocking: Vec<&String> = sd
        .sent
        .iter()
        .filter(|uri| uri.contains("index="))
        .collect();
    assert_eq!(blocking.len(), 7, "{:?}", sd.sent);
    assert!(
        blocking
            .iter()
            .all(|uri| uri.ends_with("&stale=&wait=5000ms")),
        "{blocking:?}"
    );
}

#[test]
fn without_a_change_a_watch_answers_at_its_deadline_with_the_same_index() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1", 8081);
    let mut sd = ConsulSd::start(
        &agent,
        SdConfig {
            wait: QUIET_WAIT,
            ..SdConfig::default()
        },
    );
    sd.discover(&agent);
    let before = sd.summary();
    let catalog = sd.start_call(&agent, Watch::Services);
    let web = sd.start_call(&agent, Watch::Service("web".into()));
    let catalog_index = sd.services_index;
    let web_index = sd.last_index(&Watch::Service("web".into()));
    assert_eq!(
        [&catalog.uri, &web.uri],
        [
            &format!("/v1/catalog/services?index={catalog_index}&stale=&wait=1000ms"),
            &format!("/v1/health/service/web?index={web_index}&stale=&wait=1000ms"),
        ]
    );
    assert_quiet(&mut sd, catalog);
    assert_quiet(&mut sd, web);
    assert_eq!(sd.summary(), before);
}

#[test]
fn a_change_to_another_service_does_not_wake_a_health_watch() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1", 8081);
    register(&agent, "db", "db-1", 5432);
    // Long enough for the db steps below to finish while web's call is still open.
    let wait = Duration::from_secs(3);
    let mut sd = ConsulSd::start(
        &agent,
        SdConfig {
            wait,
            ..SdConfig::default()
        },
    );
    sd.discover(&agent);
    let opened = Instant::now();
    let web = sd.start_call(&agent, Watch::Service("web".into()));
    web.pending.assert_pending_for(STILL_BLOCKED);

    // Per-service indexes: db's registration and failing check wake db's watcher only.
    let db = Watch::Service("db".into());
    assert_woken_by(&mut sd, &agent, [db.clone()], || {
        register(&agent, "db", "db-2", 5433);
    });
    assert_woken_by(&mut sd, &agent, [db], || {
        agent
            .put_empty("/v1/agent/check/fail/db-1-ttl")
            .expect_write_ok();
    });
    assert!(
        opened.elapsed() < wait,
        "the db steps took {:?}, longer than web's wait; the observation proves nothing",
        opened.elapsed()
    );
    assert_quiet(&mut sd, web);
    assert_eq!(
        sd.summary(),
        [
            "db db-1 127.0.0.1:5432 critical",
            "db db-2 127.0.0.1:5433 passing",
            "web web-1 127.0.0.1:8081 passing",
        ]
    );
}
