//! Pure reconciliation: what the upstream has, against what the local catalog holds, gives the
//! commands that make the local `Source::Upstream` instances match. No IO, no clock, no state:
//! the same view and catalog always give the same plan, which is what the unit tests pin down.
//!
//! How an upstream entry becomes a local instance:
//! - **ID**: the upstream `Service.ID` (empty: the service name, as Consul defaults it), with
//!   whitespace, control characters and `/` replaced by `_` and anything over 128 bytes cut and
//!   suffixed with a hash. Consul IDs are unique per *node*, ours per agent, so the entries that
//!   share an ID are ordered by (node, service) and the first keeps it; every later one becomes
//!   `{id}-{node}` (then `-2`, `-3`, ... should that be taken too). An ID already used by a local
//!   instance that is not mirrored (a config file on this agent) is never taken over. The rule
//!   depends only on the upstream's answers, so every mirror agrees on it and a restart does
//!   not rename anything.
//! - **Address**: `Service.Address`, or `Node.Address` when that is empty (what Consul clients
//!   do, reference §9.1), so an answer never falls back to *this* agent's address.
//! - **Checks**: every check of the entry becomes a [`CheckKind::Mirrored`] check of the
//!   instance, status and output copied. Node-level checks (`serfHealth`, maintenance) are
//!   folded into each instance of the node as its own checks: the local catalog's node-level
//!   checks count against every instance on *this* agent, which would let one upstream node's
//!   failure take down every mirrored service. As instance checks they count exactly where
//!   Consul counts them (`?passing` needs every check of the entry passing, reference §7).
//! - **Check IDs**: our check IDs are unique per agent, Consul's per node, so every mirrored check
//!   ID is scoped to its local instance. Consul's default service check IDs (`service:{id}` and
//!   `service:{id}:{n}`) already are and are kept when the instance kept its ID; every other ID
//!   (node checks, custom IDs, checks of a renamed instance) becomes `{check-id}:{instance-id}`.
//!
//! An entry that cannot be mirrored (a service name that is not a DNS label, an address the
//! catalog refuses, a check without an ID) is left out and reported in [`Plan::skipped`]; it
//! never blocks the rest of its service.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use wayfinder_catalog::{
    Catalog, CheckDefinition, CheckId, CheckKind, CheckPolicy, Command, Instance, InstanceId,
    Registration, ServiceName, Source, Status, Weights, limits, truncate_output,
};
use wayfinder_client::model::{CheckEntry, HealthEntry};

/// The check `Type` shown when the upstream sends none (Consul's `serfHealth` has `""`).
pub const UNTYPED_CHECK: &str = "mirrored";

/// What the mirror has heard from the upstream so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamView {
    listed: Option<BTreeSet<String>>,
    services: BTreeMap<String, Vec<HealthEntry>>,
}

impl UpstreamView {
    /// Records the upstream's service list. A service no longer listed loses its entries;
    /// returns the services whose view changed that way.
    pub fn set_listed(&mut self, names: BTreeSet<String>) -> BTreeSet<String> {
        let gone: BTreeSet<String> = self
            .services
            .keys()
            .filter(|name| !names.contains(*name))
            .cloned()
            .collect();
        for name in &gone {
            self.services.remove(name);
        }
        self.listed = Some(names);
        gone
    }

    /// Records one service's instances; returns whether they differ from what was recorded.
    /// An answer for a service that is no longer listed is ignored (its loop is being stopped).
    pub fn set_health(&mut self, service: &str, entries: Vec<HealthEntry>) -> bool {
        if self
            .listed
            .as_ref()
            .is_some_and(|listed| !listed.contains(service))
        {
            return false;
        }
        if self.services.get(service) == Some(&entries) {
            // Still counts as fetched; nothing to change.
            return false;
        }
        self.services.insert(service.to_owned(), entries);
        true
    }

    /// The service names of the last catalog answer, once there is one.
    pub fn listed(&self) -> Option<&BTreeSet<String>> {
        self.listed.as_ref()
    }

    /// Whether `service`'s instances have been fetched at least once.
    pub fn is_fetched(&self, service: &str) -> bool {
        self.services.contains_key(service)
    }

    /// Whether the view knows what `service` should hold: its instances were fetched, or the
    /// upstream's list no longer has it. Mirrored instances of a service that is listed but not
    /// yet fetched are left alone (the last mirrored view keeps serving).
    fn knows(&self, service: &str) -> bool {
        self.services.contains_key(service)
            || self
                .listed
                .as_ref()
                .is_some_and(|listed| !listed.contains(service))
    }
}

/// The commands that bring the local catalog in line with the view, in the order to submit
/// them: deregistrations, then registrations, then status changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Commands for the write path.
    pub commands: Vec<Command>,
    /// Upstream entries left out, with why.
    pub skipped: Vec<Skipped>,
}

/// An upstream entry that cannot be mirrored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Skipped {
    /// The service it is listed under.
    pub service: String,
    /// Its upstream node.
    pub node: String,
    /// Its upstream `Service.ID`.
    pub upstream_id: String,
    /// What is wrong with it.
    pub reason: String,
}

/// One upstream entry and the local ID it gets.
struct Slot<'a> {
    service: &'a str,
    node: &'a str,
    upstream_id: &'a str,
    entry: &'a HealthEntry,
    local_id: String,
}

/// Plans the commands for the services in `touched` (whose upstream answers changed) and for
/// every service an ID reassignment reaches, plus the removal of every mirrored instance the
/// upstream no longer has.
pub fn plan(view: &UpstreamView, local: &Catalog, touched: &BTreeSet<String>) -> Plan {
    let slots = assign_ids(view, local);

    // Services to rebuild: the touched ones, and any whose instance is not (yet) where its
    // assigned ID says it should be (first sync, renames caused by another service).
    let mut scope: BTreeSet<&str> = touched.iter().map(String::as_str).collect();
    for slot in &slots {
        let in_place = local.instance(&slot.local_id).is_some_and(|view| {
            view.instance.source == Source::Upstream
                && view.instance.service.as_str() == slot.service
        });
        if !in_place {
            scope.insert(slot.service);
        }
    }

    let mut plan = Plan::default();
    let mut registrations = Vec::new();
    let mut statuses = Vec::new();
    let mut desired_ids: BTreeSet<&str> = BTreeSet::new();
    for slot in &slots {
        if !scope.contains(slot.service) {
            desired_ids.insert(&slot.local_id);
            continue;
        }
        match desired(slot) {
            Ok(wanted) => {
                desired_ids.insert(&slot.local_id);
                diff(local, wanted, &mut registrations, &mut statuses);
            }
            Err(reason) => plan.skipped.push(Skipped {
                service: slot.service.to_owned(),
                node: slot.node.to_owned(),
                upstream_id: slot.upstream_id.to_owned(),
                reason,
            }),
        }
    }
    for (service, entries) in &view.services {
        if !scope.contains(service.as_str()) {
            continue;
        }
        for entry in entries.iter().filter(|e| e.service.is_none()) {
            plan.skipped.push(Skipped {
                service: service.clone(),
                node: entry
                    .node
                    .as_ref()
                    .map(|n| n.node.clone())
                    .unwrap_or_default(),
                upstream_id: String::new(),
                reason: "the entry has no Service object".to_owned(),
            });
        }
    }

    for gone in local.all_instances() {
        let instance = gone.instance;
        if instance.source == Source::Upstream
            && !desired_ids.contains(instance.id.as_str())
            && view.knows(instance.service.as_str())
        {
            plan.commands.push(Command::Deregister(instance.id.clone()));
        }
    }
    plan.commands.extend(registrations);
    plan.commands.extend(statuses);
    plan
}

/// Gives every upstream entry that has a `Service` its local instance ID (module docs).
fn assign_ids<'a>(view: &'a UpstreamView, local: &Catalog) -> Vec<Slot<'a>> {
    let mut groups: BTreeMap<String, Vec<Slot<'a>>> = BTreeMap::new();
    for (service, entries) in &view.services {
        for entry in entries {
            let Some(upstream) = &entry.service else {
                continue;
            };
            let upstream_id = if upstream.id.is_empty() {
                service.as_str()
            } else {
                upstream.id.as_str()
            };
            groups
                .entry(sanitize_id(upstream_id))
                .or_default()
                .push(Slot {
                    service,
                    node: entry.node.as_ref().map_or("", |n| n.node.as_str()),
                    upstream_id,
                    entry,
                    local_id: String::new(),
                });
        }
    }
    // IDs this agent holds for itself (config files) are never taken over.
    let reserved: BTreeSet<String> = local
        .all_instances()
        .filter(|view| view.instance.source != Source::Upstream)
        .map(|view| view.instance.id.to_string())
        .collect();
    let mut claimed: BTreeSet<String> = reserved.iter().cloned().collect();
    claimed.extend(groups.keys().cloned());

    let mut slots = Vec::new();
    for (base, mut group) in groups {
        group.sort_by(|a, b| (a.node, a.service).cmp(&(b.node, b.service)));
        for (position, mut slot) in group.into_iter().enumerate() {
            slot.local_id = if position == 0 && !reserved.contains(&base) {
                base.clone()
            } else {
                let mut candidate = sanitize_id(&format!("{base}-{}", slot.node));
                let mut n = 2;
                while claimed.contains(&candidate) {
                    candidate = sanitize_id(&format!("{base}-{}-{n}", slot.node));
                    n += 1;
                }
                claimed.insert(candidate.clone());
                candidate
            };
            slots.push(slot);
        }
    }
    slots
}

/// An upstream ID made acceptable as a local ID: whitespace, control characters and `/` become
/// `_`; over [`limits::ID_MAX`] bytes it is cut and suffixed with a hash of the whole, so two
/// long IDs that share a prefix stay apart.
pub fn sanitize_id(raw: &str) -> String {
    let mut id: String = raw
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '/' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if id.is_empty() {
        id.push('_');
    }
    if id.len() > limits::ID_MAX {
        let hash = raw.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let suffix = format!("~{hash:016x}");
        let mut end = limits::ID_MAX - suffix.len();
        while !id.is_char_boundary(end) {
            end -= 1;
        }
        id.truncate(end);
        id.push_str(&suffix);
    }
    id
}

/// The local ID of a mirrored check (module docs, "Check IDs").
pub fn mirrored_check_id(check: &CheckEntry, upstream_id: &str, local_id: &str) -> String {
    let default_form = format!("service:{upstream_id}");
    let scoped = !check.service_id.is_empty()
        && local_id == upstream_id
        && (check.check_id == default_form
            || check
                .check_id
                .strip_prefix(&default_form)
                .is_some_and(|rest| rest.starts_with(':')));
    if scoped {
        sanitize_id(&check.check_id)
    } else {
        sanitize_id(&format!("{}:{local_id}", check.check_id))
    }
}

/// Reads an upstream status; anything but `passing` and `warning` counts as critical, so an
/// unknown state never makes an instance look healthy.
pub fn mirrored_status(status: &str) -> Status {
    match status {
        "passing" => Status::Passing,
        "warning" => Status::Warning,
        _ => Status::Critical,
    }
}

/// Free text cut to `max` bytes, without the control characters the catalog refuses.
fn clean_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r'))
        .collect();
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// A mirrored check is not run here: no interval, no timeout, no thresholds.
const MIRRORED_POLICY: CheckPolicy = CheckPolicy::new(Duration::ZERO, Duration::ZERO);

/// One entry as the local catalog should hold it.
struct Desired {
    registration: Registration,
    /// Each check's upstream status and output.
    statuses: Vec<(CheckId, Status, String)>,
}

/// Builds the registration of one entry, validated as the catalog would.
fn desired(slot: &Slot<'_>) -> Result<Desired, String> {
    let Some(upstream) = &slot.entry.service else {
        return Err("the entry has no Service object".to_owned());
    };
    let service = ServiceName::new(slot.service, "Service").map_err(|e| e.to_string())?;
    let id = InstanceId::new(&slot.local_id, "ID").map_err(|e| e.to_string())?;
    let node_address = slot.entry.node.as_ref().map_or("", |n| n.address.as_str());
    let address = if upstream.address.is_empty() {
        node_address
    } else {
        upstream.address.as_str()
    };
    if address.is_empty() {
        return Err("neither the service nor its node has an address".to_owned());
    }
    let weights = upstream.weights.map_or_else(Weights::default, |w| Weights {
        passing: w.passing,
        warning: w.warning,
    });
    let instance = Instance {
        address: address.to_owned(),
        port: upstream.port,
        tags: upstream.tags.clone(),
        meta: upstream.meta.clone().into(),
        weights,
        enable_tag_override: upstream.enable_tag_override,
        source: Source::Upstream,
        ..Instance::new(id.clone(), service.clone())
    };
    instance.validate().map_err(|e| e.to_string())?;

    let mut checks = Vec::with_capacity(slot.entry.checks.len());
    let mut statuses = Vec::with_capacity(slot.entry.checks.len());
    let mut seen = BTreeSet::new();
    for check in &slot.entry.checks {
        if check.check_id.is_empty() {
            return Err("a check has no CheckID".to_owned());
        }
        let check_id = mirrored_check_id(check, slot.upstream_id, &slot.local_id);
        if !seen.insert(check_id.clone()) {
            continue;
        }
        let check_id = CheckId::new(&check_id, "CheckID").map_err(|e| e.to_string())?;
        let status = mirrored_status(&check.status);
        let mut name = clean_text(&check.name, limits::TEXT_MAX);
        if name.is_empty() {
            // What the catalog would fill in, so the stored definition compares equal.
            name = format!("Service '{service}' check");
        }
        let type_name = match clean_text(&check.type_name, limits::TAG_MAX) {
            t if t.is_empty() => UNTYPED_CHECK.to_owned(),
            t => t,
        };
        let definition = CheckDefinition {
            id: Some(check_id.clone()),
            name,
            notes: clean_text(&check.notes, limits::TEXT_MAX),
            service_id: Some(id.clone()),
            initial_status: Some(status),
            kind: CheckKind::Mirrored { type_name },
            policy: MIRRORED_POLICY,
        };
        definition.validate().map_err(|e| e.to_string())?;
        let mut output = check.output.clone();
        truncate_output(&mut output);
        checks.push(definition);
        statuses.push((check_id, status, output));
    }
    if checks.len() > limits::CHECKS_PER_INSTANCE_MAX {
        return Err(format!(
            "{} checks; at most {} per instance can be mirrored",
            checks.len(),
            limits::CHECKS_PER_INSTANCE_MAX
        ));
    }
    Ok(Desired {
        registration: Registration {
            instance,
            checks,
            replace_existing_checks: true,
        },
        statuses,
    })
}

/// Compares one desired instance with the local catalog: a registration when its definition or
/// its set of checks differs, a status change for each check whose status alone differs.
fn diff(
    local: &Catalog,
    wanted: Desired,
    registrations: &mut Vec<Command>,
    statuses: &mut Vec<Command>,
) {
    let Desired {
        registration,
        statuses: wanted_statuses,
    } = wanted;
    let id = registration.instance.id.as_str();
    let Some(current) = local.instance(id) else {
        registrations.push(Command::Register(Box::new(registration)));
        return;
    };
    let own: BTreeMap<&str, _> = current
        .checks
        .iter()
        .filter(|check| check.service_id.as_ref().is_some_and(|s| s.as_str() == id))
        .map(|check| (check.id.as_str(), check))
        .collect();
    let checks_same = own.len() == registration.checks.len()
        && registration.checks.iter().all(|wanted| {
            let Some(wanted_id) = &wanted.id else {
                return false;
            };
            own.get(wanted_id.as_str()).is_some_and(|check| {
                let mut stored = check.definition();
                stored.initial_status = wanted.initial_status;
                &stored == wanted
            })
        });
    if !checks_same || !current.instance.same_definition(&registration.instance) {
        registrations.push(Command::Register(Box::new(registration)));
    }
    for (check, status, output) in wanted_statuses {
        // A check that is new gets its status from the registration.
        if own
            .get(check.as_str())
            .is_some_and(|stored| stored.status != status)
        {
            statuses.push(Command::SetCheckStatus {
                id: check,
                status,
                output,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayfinder_client::model::{NodeEntry, ServiceEntry, WeightsEntry};

    // --- building upstream answers ---------------------------------------------------------

    fn check(id: &str, service_id: &str, status: &str) -> CheckEntry {
        CheckEntry {
            check_id: id.into(),
            name: format!("{id} name"),
            status: status.into(),
            notes: String::new(),
            output: format!("{id} says {status}"),
            service_id: service_id.into(),
            type_name: if service_id.is_empty() { "" } else { "ttl" }.into(),
        }
    }

    /// An instance on `node` with its default service check and the node's `serfHealth`.
    fn entry(service: &str, id: &str, node: &str, status: &str) -> HealthEntry {
        HealthEntry {
            node: Some(NodeEntry {
                node: node.into(),
                address: format!("{node}.example"),
            }),
            service: Some(ServiceEntry {
                id: id.into(),
                service: service.into(),
                tags: vec!["v1".into()],
                address: String::new(),
                port: 8080,
                meta: BTreeMap::new(),
                weights: Some(WeightsEntry {
                    passing: 1,
                    warning: 1,
                }),
                enable_tag_override: false,
            }),
            checks: vec![
                check("serfHealth", "", "passing"),
                check(&format!("service:{id}"), id, status),
            ],
        }
    }

    fn view(services: &[(&str, Vec<HealthEntry>)]) -> UpstreamView {
        let mut view = UpstreamView::default();
        view.set_listed(services.iter().map(|(s, _)| (*s).to_owned()).collect());
        for (service, entries) in services {
            view.set_health(service, entries.clone());
        }
        view
    }

    fn all(view: &UpstreamView) -> BTreeSet<String> {
        view.listed().cloned().unwrap_or_default()
    }

    fn none() -> BTreeSet<String> {
        BTreeSet::new()
    }

    /// Applies a plan the way the writer does (each command at the next index), panicking on
    /// a refused command: a plan must only hold commands the catalog accepts.
    fn apply(catalog: &mut Catalog, plan: &Plan) {
        for command in &plan.commands {
            let index = catalog.index() + 1;
            catalog
                .apply(index, command)
                .unwrap_or_else(|e| panic!("plan command {command:?} refused: {e}"));
        }
    }

    /// Plans and applies until nothing is left to do, returning the catalog.
    fn converge(catalog: &mut Catalog, view: &UpstreamView) {
        let plan = plan(view, catalog, &all(view));
        apply(catalog, &plan);
        let again = super::plan(view, catalog, &all(view));
        assert_eq!(again.commands, Vec::new(), "a second plan must be empty");
    }

    fn ids(catalog: &Catalog) -> Vec<String> {
        catalog
            .all_instances()
            .map(|v| v.instance.id.to_string())
            .collect()
    }

    fn check_ids(catalog: &Catalog, instance: &str) -> Vec<String> {
        catalog
            .instance(instance)
            .map(|v| v.checks.iter().map(|c| c.id.to_string()).collect())
            .unwrap_or_default()
    }

    fn local_config_instance(catalog: &mut Catalog, id: &str) {
        let instance = Instance {
            address: "127.0.0.1".into(),
            port: 1,
            source: Source::Config,
            ..Instance::new(
                InstanceId::new(id, "ID").expect("id"),
                ServiceName::new("local", "Name").expect("name"),
            )
        };
        let index = catalog.index() + 1;
        catalog
            .apply(
                index,
                &Command::Register(Box::new(Registration {
                    instance,
                    checks: Vec::new(),
                    replace_existing_checks: false,
                })),
            )
            .expect("local registration");
    }

    // --- tests -------------------------------------------------------------------------------

    #[test]
    fn new_instances_are_registered_with_every_field_and_check() {
        let mut web = entry("web", "web-1", "node-a", "passing");
        if let Some(service) = &mut web.service {
            service.address = "10.1.1.1".into();
            service.meta.insert("team".into(), "blue".into());
            service.weights = Some(WeightsEntry {
                passing: 5,
                warning: 2,
            });
        }
        let view = view(&[("web", vec![web])]);
        let mut catalog = Catalog::new(10);
        converge(&mut catalog, &view);

        let got = catalog.instance("web-1").expect("mirrored");
        assert_eq!(got.instance.source, Source::Upstream);
        assert_eq!(got.instance.service.as_str(), "web");
        assert_eq!(got.instance.address, "10.1.1.1");
        assert_eq!(got.instance.port, 8080);
        assert_eq!(got.instance.tags, ["v1"]);
        assert_eq!(got.instance.meta.get("team"), Some("blue"));
        assert_eq!(
            got.instance.weights,
            Weights {
                passing: 5,
                warning: 2
            }
        );
        assert_eq!(got.health, Status::Passing);
        assert_eq!(
            check_ids(&catalog, "web-1"),
            ["serfHealth:web-1", "service:web-1"]
        );
        for check in &got.checks {
            assert!(matches!(check.kind, CheckKind::Mirrored { .. }));
        }
        let serf = catalog.check("serfHealth:web-1").expect("node check");
        assert_eq!(serf.kind.type_name(), UNTYPED_CHECK);
        assert_eq!(
            catalog
                .check("service:web-1")
                .expect("check")
                .kind
                .type_name(),
            "ttl"
        );
    }

    #[test]
    fn the_node_address_stands_in_for_an_empty_service_address() {
        let view = view(&[("web", vec![entry("web", "web-1", "node-a", "passing")])]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &view);
        let got = catalog.instance("web-1").expect("mirrored");
        assert_eq!(got.instance.address, "node-a.example");
    }

    #[test]
    fn an_unchanged_upstream_plans_nothing() {
        let view = view(&[("web", vec![entry("web", "web-1", "n", "passing")])]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &view);
        let index = catalog.index();
        assert!(plan(&view, &catalog, &all(&view)).commands.is_empty());
        assert_eq!(catalog.index(), index);
    }

    #[test]
    fn a_status_change_alone_is_a_set_check_status_with_the_output() {
        let mut upstream = view(&[("web", vec![entry("web", "web-1", "n", "passing")])]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        upstream.set_health("web", vec![entry("web", "web-1", "n", "critical")]);
        let plan = plan(&upstream, &catalog, &all(&upstream));
        assert_eq!(
            plan.commands,
            vec![Command::SetCheckStatus {
                id: CheckId::new("service:web-1", "id").expect("id"),
                status: Status::Critical,
                output: "service:web-1 says critical".into(),
            }]
        );
        apply(&mut catalog, &plan);
        assert_eq!(catalog.health("web-1"), Status::Critical);
    }

    #[test]
    fn a_definition_change_re_registers_replacing_checks() {
        let mut upstream = view(&[("web", vec![entry("web", "web-1", "n", "passing")])]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        let mut changed = entry("web", "web-1", "n", "passing");
        if let Some(service) = &mut changed.service {
            service.tags = vec!["v2".into()];
        }
        changed.checks.pop();
        upstream.set_health("web", vec![changed]);
        let plan = plan(&upstream, &catalog, &all(&upstream));
        assert!(matches!(
            plan.commands.as_slice(),
            [Command::Register(r)] if r.replace_existing_checks
        ));
        apply(&mut catalog, &plan);
        assert_eq!(check_ids(&catalog, "web-1"), ["serfHealth:web-1"]);
        let got = catalog.instance("web-1").expect("instance");
        assert_eq!(got.instance.tags, ["v2"]);
        converge(&mut catalog, &upstream);
    }

    #[test]
    fn instances_the_upstream_dropped_are_deregistered() {
        let mut upstream = view(&[(
            "web",
            vec![
                entry("web", "web-1", "a", "passing"),
                entry("web", "web-2", "b", "passing"),
            ],
        )]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        upstream.set_health("web", vec![entry("web", "web-2", "b", "passing")]);
        let plan = plan(&upstream, &catalog, &all(&upstream));
        assert_eq!(
            plan.commands,
            vec![Command::Deregister(
                InstanceId::new("web-1", "id").expect("id")
            )]
        );
        apply(&mut catalog, &plan);
        assert_eq!(ids(&catalog), ["web-2"]);
    }

    #[test]
    fn a_delisted_service_loses_its_instances() {
        let mut upstream = view(&[
            ("web", vec![entry("web", "web-1", "a", "passing")]),
            ("db", vec![entry("db", "db-1", "a", "passing")]),
        ]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        let gone = upstream.set_listed(["db".to_owned()].into());
        assert_eq!(gone, ["web".to_owned()].into());
        assert!(!upstream.is_fetched("web"));
        let plan = plan(&upstream, &catalog, &gone);
        apply(&mut catalog, &plan);
        assert_eq!(ids(&catalog), ["db-1"]);
        assert!(!catalog.has_service("web"));
    }

    #[test]
    fn an_answer_for_a_delisted_service_is_ignored() {
        let mut upstream = view(&[("db", Vec::new())]);
        assert!(!upstream.set_health("web", vec![entry("web", "web-1", "a", "passing")]));
        assert!(!upstream.is_fetched("web"));
    }

    #[test]
    fn stale_mirrored_instances_wait_until_their_service_is_known() {
        // Restored from disk: web-old (mirrored) in a service listed but not fetched yet.
        let mut catalog = Catalog::new(1);
        let first = view(&[("web", vec![entry("web", "web-old", "a", "passing")])]);
        converge(&mut catalog, &first);

        let mut upstream = UpstreamView::default();
        upstream.set_listed(["web".to_owned(), "db".to_owned()].into());
        upstream.set_health("db", vec![entry("db", "db-1", "a", "passing")]);
        let plan1 = plan(&upstream, &catalog, &["db".to_owned()].into());
        apply(&mut catalog, &plan1);
        assert_eq!(
            ids(&catalog),
            ["db-1", "web-old"],
            "web is not fetched yet: keep serving"
        );

        upstream.set_health("web", vec![entry("web", "web-new", "a", "passing")]);
        let plan2 = plan(&upstream, &catalog, &["web".to_owned()].into());
        apply(&mut catalog, &plan2);
        assert_eq!(ids(&catalog), ["db-1", "web-new"]);
    }

    #[test]
    fn a_service_gone_while_the_mirror_was_down_is_removed_by_the_first_listing() {
        let mut catalog = Catalog::new(1);
        converge(
            &mut catalog,
            &view(&[("old", vec![entry("old", "old-1", "a", "passing")])]),
        );
        let mut upstream = UpstreamView::default();
        upstream.set_listed(["web".to_owned()].into());
        let plan = plan(&upstream, &catalog, &none());
        assert_eq!(
            plan.commands,
            vec![Command::Deregister(
                InstanceId::new("old-1", "id").expect("id")
            )]
        );
    }

    #[test]
    fn instances_from_other_sources_are_never_touched() {
        let mut catalog = Catalog::new(1);
        local_config_instance(&mut catalog, "mine");
        let upstream = view(&[("web", Vec::new())]);
        let plan = plan(&upstream, &catalog, &all(&upstream));
        assert!(plan.commands.is_empty());
    }

    #[test]
    fn the_same_id_on_two_nodes_is_disambiguated_by_node_order() {
        // Consul's default ID is the service name, so `web` on every node is the common case.
        let forward = vec![
            entry("web", "web", "node-b", "passing"),
            entry("web", "web", "node-a", "critical"),
        ];
        let mut backward = forward.clone();
        backward.reverse();
        for entries in [forward, backward] {
            let upstream = view(&[("web", entries)]);
            let mut catalog = Catalog::new(1);
            converge(&mut catalog, &upstream);
            assert_eq!(ids(&catalog), ["web", "web-node-b"]);
            assert_eq!(
                catalog.health("web"),
                Status::Critical,
                "node-a keeps the plain ID"
            );
            assert_eq!(catalog.health("web-node-b"), Status::Passing);
            // The renamed instance's checks are scoped to it, so they cannot collide.
            assert_eq!(
                check_ids(&catalog, "web-node-b"),
                ["serfHealth:web-node-b", "service:web:web-node-b"]
            );
            assert_eq!(
                check_ids(&catalog, "web"),
                ["serfHealth:web", "service:web"]
            );
        }
    }

    #[test]
    fn a_disambiguated_id_that_is_taken_gets_a_counter() {
        let upstream = view(&[(
            "web",
            vec![
                entry("web", "web", "a", "passing"),
                entry("web", "web", "b", "passing"),
                entry("web", "web-b", "c", "passing"),
            ],
        )]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        assert_eq!(ids(&catalog), ["web", "web-b", "web-b-2"]);
        let renamed = catalog.instance("web-b-2").expect("renamed");
        assert_eq!(renamed.instance.address, "b.example", "node b's entry");
    }

    #[test]
    fn the_same_id_in_two_services_does_not_flap_between_them() {
        let upstream = view(&[
            ("api", vec![entry("api", "x", "node-b", "passing")]),
            ("web", vec![entry("web", "x", "node-a", "passing")]),
        ]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        assert_eq!(ids(&catalog), ["x", "x-node-b"]);
        assert_eq!(
            catalog.instance("x").expect("x").instance.service.as_str(),
            "web"
        );
        // Each service's own update plans nothing once converged.
        for service in ["api", "web"] {
            let only: BTreeSet<String> = [service.to_owned()].into();
            assert!(plan(&upstream, &catalog, &only).commands.is_empty());
        }
    }

    #[test]
    fn a_rename_caused_by_another_service_is_applied_without_touching_it() {
        // api has `x` alone; then web gains an `x` on a node that sorts first and takes it.
        let mut upstream = view(&[
            ("api", vec![entry("api", "x", "node-b", "passing")]),
            ("web", Vec::new()),
        ]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        assert_eq!(ids(&catalog), ["x"]);
        upstream.set_health("web", vec![entry("web", "x", "node-a", "passing")]);
        let plan = plan(&upstream, &catalog, &["web".to_owned()].into());
        apply(&mut catalog, &plan);
        assert_eq!(ids(&catalog), ["x", "x-node-b"]);
        assert_eq!(
            catalog
                .instance("x-node-b")
                .expect("api's")
                .instance
                .service
                .as_str(),
            "api"
        );
        converge(&mut catalog, &upstream);
    }

    #[test]
    fn ids_held_by_local_config_instances_are_not_taken_over() {
        let mut catalog = Catalog::new(1);
        local_config_instance(&mut catalog, "web-1");
        let upstream = view(&[("web", vec![entry("web", "web-1", "a", "passing")])]);
        converge(&mut catalog, &upstream);
        assert_eq!(ids(&catalog), ["web-1", "web-1-a"]);
        assert_eq!(
            catalog.instance("web-1").expect("mine").instance.source,
            Source::Config
        );
    }

    #[test]
    fn a_failing_node_check_fails_every_instance_of_that_node_only() {
        let mut on_a = entry("web", "web-1", "a", "passing");
        on_a.checks[0].status = "critical".into();
        let upstream = view(&[("web", vec![on_a, entry("web", "web-2", "b", "passing")])]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        assert_eq!(catalog.health("web-1"), Status::Critical);
        assert_eq!(catalog.health("web-2"), Status::Passing);
    }

    #[test]
    fn unknown_statuses_count_as_critical() {
        assert_eq!(mirrored_status("passing"), Status::Passing);
        assert_eq!(mirrored_status("warning"), Status::Warning);
        assert_eq!(mirrored_status("maintenance"), Status::Critical);
        assert_eq!(mirrored_status(""), Status::Critical);
    }

    #[test]
    fn custom_check_ids_are_scoped_to_their_instance() {
        let mut web = entry("web", "web-1", "a", "passing");
        web.checks.push(check("probe", "web-1", "warning"));
        web.checks
            .push(check("service:web-1:2", "web-1", "passing"));
        let mut db = entry("db", "db-1", "a", "passing");
        db.checks.push(check("probe", "db-1", "passing"));
        let upstream = view(&[("web", vec![web]), ("db", vec![db])]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        assert_eq!(
            check_ids(&catalog, "web-1"),
            [
                "probe:web-1",
                "serfHealth:web-1",
                "service:web-1",
                "service:web-1:2"
            ]
        );
        assert_eq!(catalog.health("web-1"), Status::Warning);
        assert_eq!(catalog.health("db-1"), Status::Passing);
    }

    #[test]
    fn ids_are_sanitized_deterministically() {
        assert_eq!(sanitize_id("web 1/a\tb"), "web_1_a_b");
        assert_eq!(sanitize_id(""), "_");
        let long_a = format!("{}a", "x".repeat(200));
        let long_b = format!("{}b", "x".repeat(200));
        let (a, b) = (sanitize_id(&long_a), sanitize_id(&long_b));
        assert!(a.len() <= limits::ID_MAX && b.len() <= limits::ID_MAX);
        assert_ne!(a, b);
        assert_eq!(a, sanitize_id(&long_a));
        assert!(InstanceId::new(&a, "ID").is_ok());
        let wide = "é".repeat(100);
        assert!(InstanceId::new(&sanitize_id(&wide), "ID").is_ok());
    }

    #[test]
    fn an_empty_id_defaults_to_the_service_name() {
        let upstream = view(&[("web", vec![entry("web", "", "a", "passing")])]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        assert_eq!(ids(&catalog), ["web"]);
    }

    #[test]
    fn entries_that_cannot_be_mirrored_are_skipped_not_fatal() {
        let mut wildcard = entry("web", "bad-addr", "a", "passing");
        if let Some(service) = &mut wildcard.service {
            service.address = "0.0.0.0".into();
        }
        let mut no_check_id = entry("web", "bad-check", "b", "passing");
        no_check_id.checks[0].check_id.clear();
        let mut reserved_meta = entry("web", "bad-meta", "c", "passing");
        if let Some(service) = &mut reserved_meta.service {
            service.meta.insert("consul-x".into(), "y".into());
        }
        let headless = HealthEntry {
            service: None,
            ..entry("web", "x", "d", "passing")
        };
        let upstream = view(&[
            (
                "web",
                vec![
                    wildcard,
                    no_check_id,
                    reserved_meta,
                    headless,
                    entry("web", "good", "e", "passing"),
                ],
            ),
            ("not_dns", vec![entry("not_dns", "nd-1", "a", "passing")]),
        ]);
        let mut catalog = Catalog::new(1);
        let plan = plan(&upstream, &catalog, &all(&upstream));
        let mut skipped: Vec<&str> = plan
            .skipped
            .iter()
            .map(|s| s.upstream_id.as_str())
            .collect();
        skipped.sort_unstable();
        assert_eq!(skipped, ["", "bad-addr", "bad-check", "bad-meta", "nd-1"]);
        apply(&mut catalog, &plan);
        assert_eq!(ids(&catalog), ["good"]);
    }

    #[test]
    fn an_instance_that_became_invalid_is_removed() {
        let mut upstream = view(&[("web", vec![entry("web", "web-1", "a", "passing")])]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        let mut broken = entry("web", "web-1", "a", "passing");
        if let Some(service) = &mut broken.service {
            service.address = "::".into();
        }
        upstream.set_health("web", vec![broken]);
        let plan = plan(&upstream, &catalog, &all(&upstream));
        assert_eq!(plan.skipped.len(), 1);
        apply(&mut catalog, &plan);
        assert!(ids(&catalog).is_empty());
    }

    #[test]
    fn untouched_services_are_not_rebuilt() {
        let mut upstream = view(&[
            ("web", vec![entry("web", "web-1", "a", "passing")]),
            ("db", vec![entry("db", "db-1", "a", "passing")]),
        ]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        // db changes, but only web is said to be touched: db is left for its own update.
        upstream.set_health("db", vec![entry("db", "db-1", "a", "critical")]);
        let plan = plan(&upstream, &catalog, &["web".to_owned()].into());
        assert!(plan.commands.is_empty());
    }

    #[test]
    fn names_and_text_are_cleaned_to_what_the_catalog_accepts() {
        let mut web = entry("web", "web-1", "a", "passing");
        web.checks[1].name = String::new();
        web.checks[1].notes = "bell\u{7} ok".into();
        web.checks[1].output = "x".repeat(10_000);
        let upstream = view(&[("web", vec![web])]);
        let mut catalog = Catalog::new(1);
        converge(&mut catalog, &upstream);
        let check = catalog.check("service:web-1").expect("check");
        assert_eq!(check.name, "Service 'web' check");
        assert_eq!(check.notes, "bell ok");
    }
}
