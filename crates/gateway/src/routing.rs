//! The gateway's live state: the route table and, per service, its healthy instances.
//!
//! Owns [`Routing`], which the agent feeds with every published catalog change
//! ([`Routing::apply`]) and the proxy reads for every request ([`Routing::route`]). The two
//! never wait on each other: the table and each service's instance list sit behind their own
//! `ArcSwap`, and a change rebuilds only what it touches —
//! - an instance's health or address changes: that service's instance list is rebuilt and
//!   swapped; the table, and every other service, is untouched;
//! - a service's routes change (its `urlprefix-` tags, or it appears or goes with
//!   `--gateway-service-routes`): the table (persistent maps) is cloned and patched at that
//!   service's hosts and prefixes only, reusing the live route objects (their balancer cursors
//!   and retry budgets) of every route that did not change — the cost does not grow with the
//!   number of routes (fabio rebuilds everything: minutes for 50k routes, its issue #865);
//! - config-file routes change (a reload): every claim is resolved again.
//!
//! When two sources claim the same host and prefix, config files beat tags, tags beat service
//! names, and between two services the lower name wins; the loser is logged and listed as a
//! conflict in `GET /v1/routes` rather than silently shadowed.

use crate::outlier::{OutlierConfig, OutlierDetector};
use crate::route::{RouteSource, RouteSpec};
use crate::stats::RouteStats;
use crate::table::RouteTable;
use crate::tags;
use arc_swap::ArcSwap;
use http::uri::Authority;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::time::Instant;
use wayfinder_balance::retry_budget::{RetryBudget, RetryBudgetConfig};
use wayfinder_balance::{Balancer, Endpoint, EndpointId, EndpointSet, Health, Nanos};
use wayfinder_catalog::{Catalog, Status};

/// Why the gateway's settings were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RoutingError {
    /// The outlier ejection settings cannot work.
    #[error(
        "the gateway's outlier ejection settings cannot work (--gateway-ejection-failures, --gateway-max-ejected-percent)"
    )]
    Outlier(#[from] crate::outlier::OutlierConfigError),
    /// The retry budget settings cannot work.
    #[error("the gateway's retry budget settings cannot work")]
    RetryBudget(#[from] wayfinder_balance::retry_budget::RetryBudgetConfigError),
}

/// What the gateway is configured with, beyond the catalog.
#[derive(Clone, Debug, Default)]
pub struct RoutingConfig {
    /// Routes from `route { … }` blocks in config files.
    pub config_routes: Vec<RouteSpec>,
    /// Whether every service is reachable at `/{service}/…` (`--gateway-service-routes`).
    pub service_routes: bool,
    /// The address instances without one of their own are reached at (the agent's node
    /// address, as in Consul).
    pub node_address: String,
    /// Passive ejection of failing instances.
    pub outlier: OutlierConfig,
    /// How many retries each route may add to its traffic.
    pub retry_budget: RetryBudgetConfig,
}

/// One instance the gateway can send to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The instance ID (the balancer's endpoint ID).
    pub id: Arc<str>,
    /// Where to connect: `address:port`.
    pub authority: Authority,
}

/// A service's healthy instances as the balancer sees them, and where each one is: `set` and
/// `targets` are index-aligned (a pick is an index into both).
#[derive(Debug, Default)]
pub struct Backends {
    /// The balancer's view (weights, tags, load).
    pub set: EndpointSet,
    /// The addresses, in the same order.
    pub targets: Vec<Target>,
}

/// One service as the gateway serves it.
#[derive(Debug)]
pub struct ServiceState {
    /// The service name.
    pub name: String,
    backends: ArcSwap<Backends>,
    /// Instances ejected for failing, shared by every route to the service.
    pub outliers: OutlierDetector,
    /// When each healthy instance became healthy, for slow start (instances healthy when the
    /// agent started have no entry: they take their full share at once).
    healthy_since: Mutex<HashMap<Arc<str>, Nanos>>,
}

impl ServiceState {
    fn new(name: &str, outlier: &OutlierConfig) -> Self {
        ServiceState {
            name: name.to_owned(),
            backends: ArcSwap::from_pointee(Backends::default()),
            outliers: OutlierDetector::new(*outlier)
                .expect("the outlier settings were validated by Routing::new"),
            healthy_since: Mutex::new(HashMap::new()),
        }
    }

    /// The current healthy instances.
    pub fn backends(&self) -> Arc<Backends> {
        self.backends.load_full()
    }
}

/// A route as the proxy uses it: its spec, and the state that must outlive a table rebuild.
#[derive(Debug)]
pub struct ActiveRoute {
    /// What the route matches and does.
    pub spec: RouteSpec,
    /// Its balancer (a round robin cursor, split sides).
    pub balancer: Balancer,
    /// Its retry budget.
    pub budget: RetryBudget,
    /// The service that answers.
    pub service: Arc<ServiceState>,
    /// What its traffic did, for the agent's metrics.
    pub stats: RouteStats,
}

/// A claim on a host and prefix that lost to another (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The host, if the claim was for one.
    pub host: Option<String>,
    /// The prefix.
    pub prefix: String,
    /// The service that got it.
    pub winner: String,
    /// The service that did not, and where it asked.
    pub loser: String,
    /// Where the losing claim was declared.
    pub source: String,
}

/// A `urlprefix-` tag that could not be parsed, shown in `GET /v1/routes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TagProblem {
    /// The service.
    pub service: String,
    /// The instance carrying the tag.
    pub instance: String,
    /// What is wrong.
    pub error: String,
}

/// The routes and instances the proxy serves from.
pub struct Routing {
    table: ArcSwap<RouteTable<Arc<ActiveRoute>>>,
    origin: Instant,
    builder: Mutex<Builder>,
}

/// What only [`Routing::apply`] touches.
struct Builder {
    config: RoutingConfig,
    services: HashMap<String, Arc<ServiceState>>,
    /// Each service's routes from its instances' tags, de-duplicated by host and prefix.
    tag_routes: BTreeMap<String, Vec<RouteSpec>>,
    tag_problems: BTreeMap<String, Vec<TagProblem>>,
    /// Every claim on each host (lower case) and prefix, from every source.
    claims: HashMap<RouteKey, Vec<RouteSpec>>,
    /// The claims that lost, by the host and prefix they lost on.
    conflicts: BTreeMap<RouteKey, Vec<Conflict>>,
}

/// A route's place in the table: its host (lower case; `None` for any host) and prefix.
type RouteKey = (Option<String>, String);

fn key_of(spec: &RouteSpec) -> RouteKey {
    (
        spec.host.as_deref().map(str::to_ascii_lowercase),
        spec.prefix.clone(),
    )
}

impl Routing {
    /// Routing for `catalog` as it is now; refuses settings that cannot work.
    pub fn new(config: RoutingConfig, catalog: &Catalog) -> Result<Self, RoutingError> {
        config.outlier.validate()?;
        config.retry_budget.validate()?;
        let routing = Routing {
            table: ArcSwap::from_pointee(RouteTable::new()),
            origin: Instant::now(),
            builder: Mutex::new(Builder {
                config,
                services: HashMap::new(),
                tag_routes: BTreeMap::new(),
                tag_problems: BTreeMap::new(),
                claims: HashMap::new(),
                conflicts: BTreeMap::new(),
            }),
        };
        let names: Vec<String> = catalog.services().map(|s| s.name.to_string()).collect();
        routing.apply(catalog, names.iter().map(String::as_str));
        // Config routes may name services that do not exist yet: build the table regardless.
        routing.rebuild_table(&mut routing.lock());
        Ok(routing)
    }

    /// Now, as the balancer counts time.
    pub fn now(&self) -> Nanos {
        Nanos::from_duration(self.origin.elapsed())
    }

    /// The route for a request to `host` and `path`.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<Arc<ActiveRoute>> {
        self.table.load().lookup(host, path).cloned()
    }

    /// The live table (for `GET /v1/routes`).
    pub fn table(&self) -> Arc<RouteTable<Arc<ActiveRoute>>> {
        self.table.load_full()
    }

    /// Claims that lost to another, and tags that could not be parsed.
    pub fn problems(&self) -> (Vec<Conflict>, Vec<TagProblem>) {
        let builder = self.lock();
        (
            builder.conflicts.values().flatten().cloned().collect(),
            builder.tag_problems.values().flatten().cloned().collect(),
        )
    }

    /// Replaces the routes from config files (a reload), rebuilding the table.
    pub fn set_config_routes(&self, routes: Vec<RouteSpec>) {
        let mut builder = self.lock();
        if builder.config.config_routes == routes {
            return;
        }
        builder.config.config_routes = routes;
        self.rebuild_table(&mut builder);
    }

    /// Brings the services named in `changed` up to date with `catalog`: their instance lists
    /// always, the route table only when their routes changed.
    pub fn apply<'a>(&self, catalog: &Catalog, changed: impl IntoIterator<Item = &'a str>) {
        let now = self.now();
        let mut builder = self.lock();
        let mut claims_changed = Vec::new();
        for name in changed {
            if let Some(change) = builder.refresh_service(catalog, name, now) {
                claims_changed.push(change);
            }
        }
        if !claims_changed.is_empty() {
            self.update_table(&mut builder, claims_changed);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Builder> {
        // Only the agent's publish path locks this, one change at a time; a panic elsewhere
        // must not stop routing updates.
        self.builder.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves every claim again (config routes changed, or the first build) and swaps in
    /// the result.
    fn rebuild_table(&self, builder: &mut Builder) {
        let mut claims: HashMap<RouteKey, Vec<RouteSpec>> = HashMap::new();
        let names: Vec<String> = builder.tag_routes.keys().cloned().collect();
        let all = builder
            .config
            .config_routes
            .iter()
            .cloned()
            .chain(names.iter().flat_map(|name| builder.service_claims(name)));
        for spec in all {
            claims.entry(key_of(&spec)).or_default().push(spec);
        }
        builder.claims = claims;
        builder.conflicts.clear();
        let old = self.table.load_full();
        let mut affected: BTreeSet<RouteKey> = builder.claims.keys().cloned().collect();
        affected.extend(
            old.entries()
                .into_iter()
                .map(|(host, prefix, _)| (host.map(str::to_owned), prefix.to_owned())),
        );
        let table = builder.patch_table(&old, affected);
        self.table.store(Arc::new(table));
    }

    /// Replaces some services' claims (`(before, after)` each) and patches the table where
    /// they were: one changed service costs a few map operations, whatever the table's size.
    fn update_table(&self, builder: &mut Builder, changes: Vec<(Vec<RouteSpec>, Vec<RouteSpec>)>) {
        let mut affected = BTreeSet::new();
        for (before, after) in changes {
            for spec in before {
                let key = key_of(&spec);
                if let Some(claims) = builder.claims.get_mut(&key) {
                    if let Some(at) = claims.iter().position(|claim| *claim == spec) {
                        claims.remove(at);
                    }
                    if claims.is_empty() {
                        builder.claims.remove(&key);
                    }
                }
                affected.insert(key);
            }
            for spec in after {
                let key = key_of(&spec);
                // Most keys have one claimant: room for exactly one, not the four a first
                // push reserves.
                builder
                    .claims
                    .entry(key.clone())
                    .or_insert_with(|| Vec::with_capacity(1))
                    .push(spec);
                affected.insert(key);
            }
        }
        let old = self.table.load_full();
        let table = builder.patch_table(&old, affected);
        self.table.store(Arc::new(table));
    }
}

impl Builder {
    /// The claims a service makes: its tag routes, and `/{name}/` with
    /// `--gateway-service-routes`.
    fn service_claims(&self, name: &str) -> Vec<RouteSpec> {
        let Some(routes) = self.tag_routes.get(name) else {
            return Vec::new();
        };
        let mut claims = routes.clone();
        if self.config.service_routes {
            let mut spec = RouteSpec::new(
                format!("/{name}/"),
                name.to_owned(),
                RouteSource::ServiceName,
            );
            spec.rewrite.strip = Some(format!("/{name}"));
            claims.push(spec);
        }
        claims
    }

    /// Updates one service; its claims before and after when they changed.
    fn refresh_service(
        &mut self,
        catalog: &Catalog,
        name: &str,
        now: Nanos,
    ) -> Option<(Vec<RouteSpec>, Vec<RouteSpec>)> {
        let claims_before = self.service_claims(name);
        let exists = catalog.has_service(name);
        // Instances of one service usually carry the same tag: one route per host and prefix,
        // from the lowest instance ID (catalog order), so the choice is stable. Duplicates are
        // dropped as they are parsed, so the list held per service is as long as its distinct
        // routes, not its instances (a route spec is ~350 bytes; with 100,000 instances the
        // duplicates were the gateway's largest memory cost).
        let mut routes: Vec<RouteSpec> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut problems = Vec::new();
        if exists {
            for view in catalog.instances_of(name) {
                for tag in &view.instance.tags {
                    match tags::parse_tag(tag, name, view.instance.id.as_str()) {
                        None => {}
                        Some(Ok(route))
                            if seen.insert((route.host.clone(), route.prefix.clone())) =>
                        {
                            routes.push(route);
                        }
                        Some(Ok(_duplicate)) => {}
                        Some(Err(error)) => problems.push(TagProblem {
                            service: name.to_owned(),
                            instance: view.instance.id.as_str().to_owned(),
                            error: error.to_string(),
                        }),
                    }
                }
            }
        }
        routes.shrink_to_fit();
        for problem in &problems {
            tracing::warn!(service = %problem.service, instance = %problem.instance, error = %problem.error, "urlprefix- tag ignored");
        }
        if problems.is_empty() {
            self.tag_problems.remove(name);
        } else {
            self.tag_problems.insert(name.to_owned(), problems);
        }

        if exists {
            let service = Arc::clone(
                self.services
                    .entry(name.to_owned())
                    .or_insert_with(|| Arc::new(ServiceState::new(name, &self.config.outlier))),
            );
            self.refresh_backends(&service, catalog, now);
        } else if let Some(service) = self.services.get(name) {
            // Gone from the catalog: nothing to send to (a config route to it answers 503).
            service.backends.store(Arc::new(Backends::default()));
        }

        if routes.is_empty() && !exists {
            self.tag_routes.remove(name);
        } else {
            self.tag_routes.insert(name.to_owned(), routes);
        }
        let claims_after = self.service_claims(name);
        (claims_before != claims_after).then_some((claims_before, claims_after))
    }

    fn refresh_backends(&self, service: &ServiceState, catalog: &Catalog, now: Nanos) {
        let mut since = service
            .healthy_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let first_build = service.backends.load().targets.is_empty() && since.is_empty();
        let mut endpoints = Vec::new();
        let mut targets = Vec::new();
        let mut live = HashMap::new();
        for view in catalog.instances_of(&service.name) {
            let health = match view.health {
                Status::Passing => Health::Passing,
                Status::Warning => Health::Warning,
                _ => continue,
            };
            let instance = view.instance;
            let host = if instance.address.is_empty() {
                self.config.node_address.as_str()
            } else {
                instance.address.as_str()
            };
            let Some(authority) = authority(host, instance.port) else {
                tracing::warn!(instance = %instance.id, address = %host, "instance address cannot be dialled; left out of the gateway");
                continue;
            };
            let id: Arc<str> = Arc::from(instance.id.as_str());
            let healthy_since = match since.get(&id) {
                Some(at) => Some(*at),
                // Healthy when the gateway first saw the service: no ramp.
                None if first_build => None,
                None => Some(now),
            };
            if let Some(at) = healthy_since {
                live.insert(Arc::clone(&id), at);
            }
            let mut endpoint = Endpoint::new(EndpointId::new(Arc::clone(&id)))
                .with_weights(instance.weights.passing, instance.weights.warning)
                .with_health(health)
                .with_tags(instance.tags.iter().cloned());
            if let Some(at) = healthy_since {
                endpoint = endpoint.with_healthy_since(at);
            }
            endpoints.push(endpoint);
            targets.push(Target { id, authority });
        }
        *since = live;
        targets.shrink_to_fit();
        service
            .outliers
            .set_members(targets.iter().map(|t| Arc::clone(&t.id)), now);
        let set = service.backends.load().set.update(endpoints);
        service.backends.store(Arc::new(Backends { set, targets }));
    }

    /// `old` with every key in `affected` resolved again from the claims: the winner's live
    /// route is kept when its spec did not change (its balancer cursor and retry budget go
    /// on), a new one is made when it did, and a key nobody claims any more is removed.
    fn patch_table(
        &mut self,
        old: &RouteTable<Arc<ActiveRoute>>,
        affected: BTreeSet<RouteKey>,
    ) -> RouteTable<Arc<ActiveRoute>> {
        let mut table = old.clone();
        for key in affected {
            let (host, prefix) = (key.0.as_deref(), key.1.as_str());
            let Some(winner) = self.resolve(&key) else {
                table.remove(host, prefix);
                continue;
            };
            let live = old
                .lookup_exact(host, prefix)
                .filter(|live| live.spec == winner)
                .cloned();
            let route = match live {
                Some(live) => live,
                None => self.active_route(winner),
            };
            table.insert(host, prefix, route);
        }
        table
    }

    /// The claim that wins `key`, recording (and logging, when new) the ones that lose.
    fn resolve(&mut self, key: &RouteKey) -> Option<RouteSpec> {
        let claims = self.claims.get(key)?;
        let mut winner = claims.first()?;
        for claim in &claims[1..] {
            if outranks(claim, winner) {
                winner = claim;
            }
        }
        let conflicts: Vec<Conflict> = claims
            .iter()
            .filter(|loser| loser.service != winner.service)
            .map(|loser| Conflict {
                host: key.0.clone(),
                prefix: key.1.clone(),
                winner: winner.service.clone(),
                loser: loser.service.clone(),
                source: loser.source.to_string(),
            })
            .collect();
        let winner = winner.clone();
        if conflicts.is_empty() {
            self.conflicts.remove(key);
        } else if self.conflicts.get(key) != Some(&conflicts) {
            for conflict in &conflicts {
                tracing::warn!(host = ?conflict.host, prefix = %conflict.prefix, winner = %conflict.winner, loser = %conflict.loser, source = %conflict.source, "two services claim one route; the loser gets no traffic on it");
            }
            self.conflicts.insert(key.clone(), conflicts);
        }
        Some(winner)
    }

    /// A new live route for `spec`, on its service's shared state.
    fn active_route(&mut self, spec: RouteSpec) -> Arc<ActiveRoute> {
        let service = Arc::clone(
            self.services
                .entry(spec.service.clone())
                .or_insert_with(|| {
                    Arc::new(ServiceState::new(&spec.service, &self.config.outlier))
                }),
        );
        Arc::new(ActiveRoute {
            balancer: balancer_for(&spec),
            budget: RetryBudget::new(self.config.retry_budget)
                .expect("the retry budget settings were validated by Routing::new"),
            spec,
            service,
            stats: RouteStats::default(),
        })
    }
}

/// Whether `a`'s claim beats `b`'s: config over tag over service name, then the lower service.
fn outranks(a: &RouteSpec, b: &RouteSpec) -> bool {
    let rank = |s: &RouteSpec| match s.source {
        RouteSource::Config { .. } => 0,
        RouteSource::Tag { .. } => 1,
        RouteSource::ServiceName => 2,
    };
    (rank(a), &a.service) < (rank(b), &b.service)
}

fn balancer_for(spec: &RouteSpec) -> Balancer {
    let mut balancer = Balancer::new(spec.balance.strategy);
    if let Some(split) = &spec.balance.split {
        balancer = balancer.with_split(split.clone());
    }
    if let Some(slow_start) = &spec.balance.slow_start {
        balancer = balancer.with_slow_start(*slow_start);
    }
    balancer
}

/// `host:port` as a URI authority (IPv6 literals bracketed), or `None` if it is not one.
fn authority(host: &str, port: u16) -> Option<Authority> {
    let text = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use wayfinder_catalog::{Command, Instance, InstanceId, Registration, ServiceName};

    /// The tags an instance may carry in these tests: overlapping prefixes, a host route, and
    /// claims two services can fight over.
    const TAGS: [&str; 5] = [
        "urlprefix-/a",
        "urlprefix-/a/b",
        "urlprefix-shop.example/a",
        "urlprefix-/b strip=/b",
        "urlprefix-/c",
    ];
    const SERVICES: [&str; 3] = ["alpha", "beta", "gamma"];

    fn command(service: usize, tags: &[bool; 5]) -> Command {
        let name = SERVICES[service];
        let id = InstanceId::new(&format!("{name}-1"), "ID").expect("id");
        let mut instance = Instance::new(id, ServiceName::new(name, "Name").expect("name"));
        instance.address = "127.0.0.1".to_owned();
        instance.port = 8080;
        instance.tags = TAGS
            .iter()
            .zip(tags)
            .filter(|(_, on)| **on)
            .map(|(tag, _)| (*tag).to_owned())
            .collect();
        Command::Register(Box::new(Registration {
            instance,
            checks: Vec::new(),
            replace_existing_checks: false,
        }))
    }

    /// One route as comparable data: host, prefix and service.
    type Shape = (Option<String>, String, String);

    /// The table as comparable data, and the conflicts.
    fn shape(routing: &Routing) -> (Vec<Shape>, Vec<Conflict>) {
        let table = routing.table();
        let routes = table
            .entries()
            .into_iter()
            .map(|(host, prefix, route)| {
                (
                    host.map(str::to_owned),
                    prefix.to_owned(),
                    route.spec.service.clone(),
                )
            })
            .collect();
        let mut conflicts = routing.problems().0;
        conflicts.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        (routes, conflicts)
    }

    proptest! {
        /// Patching the table one changed service at a time ends where resolving every claim
        /// from scratch does, whatever the order of registrations and deregistrations.
        #[test]
        fn patched_tables_equal_tables_built_from_scratch(
            service_routes in any::<bool>(),
            steps in proptest::collection::vec(
                (0..SERVICES.len(), proptest::option::of(any::<[bool; 5]>())), 1..24),
        ) {
            let config = RoutingConfig { service_routes, ..RoutingConfig::default() };
            let mut catalog = Catalog::new(0);
            let routing = Routing::new(config.clone(), &catalog).expect("routing");
            for (index, (service, tags)) in steps.into_iter().enumerate() {
                let command = match tags {
                    Some(tags) => command(service, &tags),
                    None => Command::Deregister(
                        InstanceId::new(&format!("{}-1", SERVICES[service]), "ID").expect("id"),
                    ),
                };
                // Deregistering an instance that is not there is refused: nothing changes.
                if catalog.apply(index as u64 + 1, &command).is_ok() {
                    routing.apply(&catalog, [SERVICES[service]]);
                }
                let fresh = Routing::new(config.clone(), &catalog).expect("routing");
                prop_assert_eq!(shape(&routing), shape(&fresh));
            }
        }
    }
}
