//! Property tests: arbitrary command sequences over small pools of names and IDs (so that
//! re-registrations, moves, ID collisions and unknown IDs all happen), with the catalog's
//! invariants checked after every step.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use wayfinder_catalog::{
    Catalog, Check, CheckDefinition, CheckId, CheckKind, Command, EventKind, Instance, InstanceId,
    Outcome, Registration, Rows, ServiceName, Status, Touched,
};

const SERVICES: &[&str] = &["web", "api", "db"];
const INSTANCES: &[&str] = &["a", "b", "c", "d"];
/// Explicit IDs plus some of the defaults (`service:<id>[:n]`) so they collide.
const CHECKS: &[&str] = &["c1", "c2", "c3", "service:a", "service:a:1", "service:b:2"];

/// One step: a command and the gap to the index it is applied at (0 offers the current index,
/// which must be refused).
#[derive(Debug, Clone)]
struct Step {
    action: Action,
    gap: u64,
    /// Whether the writer commits its batch after this step.
    flush: bool,
}

/// What a step sends.
#[derive(Debug, Clone)]
enum Action {
    /// A new command.
    Fresh(Command),
    /// An earlier step's command again (the n-th, modulo how many there were): re-registrations
    /// of the same definition, repeated status reports, a registration after a deregistration.
    Repeat(usize),
}

fn arb_status() -> impl Strategy<Value = Status> {
    select(vec![Status::Passing, Status::Warning, Status::Critical])
}

fn arb_kind() -> impl Strategy<Value = CheckKind> {
    prop_oneof![
        (1u64..=2).prop_map(|s| CheckKind::Ttl {
            ttl: Duration::from_secs(s)
        }),
        select(vec!["127.0.0.1:80", "db.internal:5432"]).prop_map(|a| CheckKind::Tcp {
            address: a.to_owned()
        }),
        Just(CheckKind::Http {
            url: "http://127.0.0.1:8080/health".to_owned(),
            method: "GET".to_owned(),
            headers: BTreeMap::new(),
            body: String::new(),
            tls_skip_verify: false,
            tls_server_name: String::new(),
        }),
        Just(CheckKind::Exec {
            args: vec!["/bin/true".to_owned()]
        }),
        Just(CheckKind::Grpc {
            target: "127.0.0.1:50051".to_owned(),
            use_tls: false
        }),
    ]
}

/// A check definition; about one in twenty breaks a rule (a TTL check with an interval).
fn arb_check(
    ids: impl Strategy<Value = Option<&'static str>>,
) -> impl Strategy<Value = CheckDefinition> {
    (
        ids,
        select(vec!["", "probe"]),
        prop::option::of(arb_status()),
        arb_kind(),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(id, name, initial_status, kind, invalid)| {
            let mut policy = policy_for(&kind);
            if invalid {
                policy.interval = Duration::from_secs(1);
                policy.timeout = Duration::from_secs(1);
                if !matches!(kind, CheckKind::Ttl { .. }) {
                    policy.interval = Duration::ZERO;
                }
            }
            CheckDefinition {
                id: id.map(check_id),
                name: name.to_owned(),
                notes: String::new(),
                service_id: None,
                initial_status,
                kind,
                policy,
            }
        })
}

fn arb_instance() -> impl Strategy<Value = Instance> {
    (
        select(INSTANCES.to_vec()),
        select(SERVICES.to_vec()),
        prop_oneof![
            19 => select(vec!["10.0.0.1", "10.0.0.2"]),
            1 => Just("0.0.0.0"),
        ],
        select(vec![80u16, 81]),
        select(vec![vec![], vec!["v1"], vec!["v1", "canary"]]),
    )
        .prop_map(|(id, service, address, port, tags)| {
            let mut instance = instance(id, service);
            instance.address = address.to_owned();
            instance.port = port;
            instance.tags = tags.into_iter().map(str::to_owned).collect();
            instance
        })
}

fn arb_command() -> impl Strategy<Value = Command> {
    let check_ids = || prop::option::of(select(CHECKS.to_vec()));
    prop_oneof![
        4 => (
            arb_instance(),
            prop::collection::vec(arb_check(check_ids()), 0..=3),
            any::<bool>(),
        )
            .prop_map(|(instance, checks, replace_existing_checks)| {
                Command::Register(Box::new(Registration {
                    instance,
                    checks,
                    replace_existing_checks,
                }))
            }),
        1 => select(INSTANCES.to_vec()).prop_map(|id| Command::Deregister(instance_id(id))),
        2 => (
            arb_check(prop_oneof![19 => select(CHECKS.to_vec()).prop_map(Some), 1 => Just(None)]),
            prop_oneof![3 => select(INSTANCES.to_vec()).prop_map(Some), 1 => Just(None)],
        )
            .prop_map(|(mut check, owner)| {
                check.service_id = owner.map(instance_id);
                Command::RegisterCheck(Box::new(check))
            }),
        1 => select(CHECKS.to_vec()).prop_map(|id| Command::DeregisterCheck(check_id(id))),
        4 => (select(CHECKS.to_vec()), arb_status(), select(vec!["", "ok", "boom"])).prop_map(
            |(id, status, output)| Command::SetCheckStatus {
                id: check_id(id),
                status,
                output: output.to_owned(),
            }
        ),
    ]
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    let action = prop_oneof![
        3 => arb_command().prop_map(Action::Fresh),
        1 => any::<usize>().prop_map(Action::Repeat),
    ];
    let step = (
        action,
        prop_oneof![1 => Just(0u64), 15 => 1u64..=3],
        prop::bool::weighted(0.3),
    )
        .prop_map(|(action, gap, flush)| Step { action, gap, flush });
    prop::collection::vec(step, 1..80)
}

/// The checks that count against `id`, found from the check list alone (not the catalog's
/// own indexes): the instance's own, then the node-level ones.
fn checks_counting_against(catalog: &Catalog, id: &InstanceId) -> BTreeSet<CheckId> {
    catalog
        .checks()
        .filter(|c| c.service_id.is_none() || c.service_id.as_ref() == Some(id))
        .map(|c| c.id.clone())
        .collect()
}

fn expected_health(catalog: &Catalog, id: &InstanceId) -> Status {
    Status::worst(
        catalog
            .checks()
            .filter(|c| c.service_id.is_none() || c.service_id.as_ref() == Some(id))
            .map(|c| c.status),
    )
}

/// What a store holds after writing every batch's rows, as a restart would read it.
#[derive(Debug, Default)]
struct StoredRows {
    index: u64,
    instances: BTreeMap<InstanceId, Arc<Instance>>,
    checks: BTreeMap<CheckId, Arc<Check>>,
    services: BTreeMap<ServiceName, u64>,
}

impl StoredRows {
    fn write(&mut self, index: u64, rows: Rows) {
        self.index = index;
        for (id, row) in rows.instances {
            match row {
                Some(instance) => self.instances.insert(id, instance),
                None => self.instances.remove(&id),
            };
        }
        for (id, row) in rows.checks {
            match row {
                Some(check) => self.checks.insert(id, check),
                None => self.checks.remove(&id),
            };
        }
        self.services.extend(rows.services);
    }

    fn restore(&self) -> Catalog {
        Catalog::restore(
            self.index,
            self.instances.values().map(|i| Instance::clone(i)),
            self.checks.values().map(|c| Check::clone(c)),
            self.services.iter().map(|(n, i)| (n.clone(), *i)),
        )
    }
}

/// Everything the sequence test remembers between steps.
#[derive(Debug, Default)]
struct History {
    /// Deregistered instances (not since re-registered), with the checks they had.
    gone: BTreeMap<InstanceId, BTreeSet<CheckId>>,
    /// The last seen index of every service in the pool.
    service_indexes: BTreeMap<&'static str, u64>,
}

fn check_outcome(
    before: &Catalog,
    after: &Catalog,
    offered: u64,
    outcome: &Outcome,
) -> Result<(), TestCaseError> {
    if outcome.is_empty() {
        prop_assert!(
            outcome.events.is_empty(),
            "events without writes: {outcome:?}"
        );
        prop_assert_eq!(after.index(), before.index());
        // An empty outcome writes nothing, so the catalog must not have changed either, or the
        // store and the live catalog would part ways.
        prop_assert_eq!(after, before);
        return Ok(());
    }
    prop_assert_eq!(after.index(), offered);
    prop_assert!(after.index() > before.index());
    for event in &outcome.events {
        prop_assert_eq!(event.index, offered, "{:?}", event);
        if let EventKind::HealthChanged { from, to } = event.kind {
            prop_assert_ne!(from, to);
        }
    }
    // HealthChanged is sent exactly for the instances, present before and after, whose
    // aggregate health moved, and says from what to what.
    let ids: BTreeSet<InstanceId> = before
        .all_instances()
        .chain(after.all_instances())
        .map(|v| v.instance.id.clone())
        .collect();
    for id in ids {
        let changes: Vec<(Status, Status)> = outcome
            .events
            .iter()
            .filter(|e| e.instance == id)
            .filter_map(|e| match e.kind {
                EventKind::HealthChanged { from, to } => Some((from, to)),
                _ => None,
            })
            .collect();
        let in_both =
            before.instance(id.as_str()).is_some() && after.instance(id.as_str()).is_some();
        let (was, is) = (expected_health(before, &id), expected_health(after, &id));
        if in_both && was != is {
            prop_assert_eq!(changes, vec![(was, is)], "instance {}", id);
        } else {
            prop_assert!(changes.is_empty(), "instance {id}: {changes:?}");
        }
    }
    Ok(())
}

fn check_queries(catalog: &Catalog, history: &mut History) -> Result<(), TestCaseError> {
    // Health is the worst of the instance's checks and the node's, passing when none.
    for view in catalog.all_instances() {
        let id = &view.instance.id;
        let health = expected_health(catalog, id);
        prop_assert_eq!(catalog.health(id.as_str()), health, "instance {}", id);
        prop_assert_eq!(view.health, health, "instance {}", id);
        let listed: BTreeSet<CheckId> = view.checks.iter().map(|c| c.id.clone()).collect();
        prop_assert_eq!(listed, checks_counting_against(catalog, id));
        prop_assert!(
            catalog
                .instances_of(view.instance.service.as_str())
                .any(|v| &v.instance.id == id)
        );
    }
    // Every check belongs to a live instance or to the node.
    for check in catalog.checks() {
        if let Some(owner) = &check.service_id {
            prop_assert!(catalog.instance(owner.as_str()).is_some(), "{check:?}");
        }
    }
    // A deregistered instance is in no answer, and none of its checks survive it.
    for (id, checks) in &history.gone {
        prop_assert!(catalog.instance(id.as_str()).is_none());
        prop_assert!(catalog.all_instances().all(|v| &v.instance.id != id));
        for name in SERVICES {
            prop_assert!(catalog.instances_of(name).all(|v| &v.instance.id != id));
            prop_assert!(
                catalog
                    .checks_of_service(name)
                    .all(|c| c.service_id.as_ref() != Some(id))
            );
        }
        prop_assert!(catalog.checks().all(|c| c.service_id.as_ref() != Some(id)));
        for check in checks {
            // The ID may since have been reused by someone else, never by the dead instance.
            prop_assert!(
                catalog
                    .check(check.as_str())
                    .is_none_or(|c| c.service_id.as_ref() != Some(id))
            );
        }
    }
    // A service's index covers every change to its instances and their checks, and only grows.
    for name in SERVICES {
        let index = catalog.service_index(name);
        for view in catalog.instances_of(name) {
            prop_assert!(index >= view.instance.create_index);
            prop_assert!(index >= view.instance.modify_index);
        }
        for check in catalog.checks_of_service(name) {
            prop_assert!(index >= check.modify_index, "{name}: {check:?}");
        }
        // The fast path's one-lookup form agrees with the two it replaces.
        prop_assert_eq!(
            catalog.live_service_index(name),
            catalog.has_service(name).then_some(index)
        );
        let last = history.service_indexes.insert(name, index).unwrap_or(0);
        prop_assert!(index >= last, "{name} went from {last} to {index}");
        prop_assert!(index <= catalog.index().max(1));
    }
    Ok(())
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut catalog = Catalog::new(100);
    let mut history = History::default();
    let mut stored = StoredRows {
        index: catalog.index(),
        ..StoredRows::default()
    };
    let mut unflushed: Vec<Touched> = Vec::new();
    let mut sent: Vec<Command> = Vec::new();
    // An agent following this one through a shared store: it sees each write as rows.
    let mut replica = catalog.clone();

    for step in steps {
        let command = match step.action {
            Action::Fresh(command) => command,
            Action::Repeat(n) if !sent.is_empty() => sent[n % sent.len()].clone(),
            Action::Repeat(_) => continue,
        };
        sent.push(command.clone());
        let before = catalog.clone();
        let offered = catalog.index() + step.gap;
        // The checks an instance holds now, in case this step deregisters it.
        let own_checks = |id: &InstanceId| -> BTreeSet<CheckId> {
            before
                .checks()
                .filter(|c| c.service_id.as_ref() == Some(id))
                .map(|c| c.id.clone())
                .collect()
        };
        match catalog.apply(offered, &command) {
            Err(_) => prop_assert_eq!(&catalog, &before, "a refused command changed the catalog"),
            Ok(outcome) => {
                prop_assert!(
                    step.gap > 0,
                    "index {offered} was not above {}",
                    before.index()
                );
                check_outcome(&before, &catalog, offered, &outcome)?;
                check_replica(&mut replica, &catalog, before.index(), offered, &outcome)?;
                match &command {
                    Command::Register(r) => {
                        history.gone.remove(&r.instance.id);
                    }
                    Command::Deregister(id) => {
                        history.gone.insert(id.clone(), own_checks(id));
                    }
                    _ => {}
                }
                unflushed.extend(outcome.touched);
            }
        }
        prop_assert!(catalog.index() >= before.index());
        check_queries(&catalog, &mut history)?;
        prop_assert_eq!(
            &restored(&catalog),
            &catalog,
            "a restart from every row differs"
        );

        if step.flush {
            stored.write(catalog.index(), catalog.rows_for(&unflushed));
            unflushed.clear();
            prop_assert_eq!(
                &stored.restore(),
                &catalog,
                "a restart from the rows written batch by batch differs"
            );
        }
    }
    stored.write(catalog.index(), catalog.rows_for(&unflushed));
    prop_assert_eq!(&stored.restore(), &catalog);
    Ok(())
}

/// A replica that applies the write's rows (marked as a shared store's writer marks them)
/// must end up equal to the catalog that applied the command, with the same events.
fn check_replica(
    replica: &mut Catalog,
    catalog: &Catalog,
    base: u64,
    index: u64,
    outcome: &Outcome,
) -> Result<(), TestCaseError> {
    if outcome.is_empty() {
        return Ok(());
    }
    let rows = catalog.rows_for(&outcome.touched).mark_new(base);
    let replayed = replica
        .apply_rows(index, &rows)
        .map_err(|e| TestCaseError::fail(format!("rows refused: {e}")))?;
    prop_assert_eq!(&*replica, catalog, "a replica applying the rows differs");
    let sorted = |events: &[wayfinder_catalog::Event]| {
        let mut all: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
        all.sort();
        all
    };
    prop_assert_eq!(
        sorted(&replayed.events),
        sorted(&outcome.events),
        "a replica heard other events"
    );
    let touched: BTreeSet<&Touched> = outcome.touched.iter().collect();
    let replayed_touched: BTreeSet<&Touched> = replayed.touched.iter().collect();
    prop_assert_eq!(replayed_touched, touched);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_after_every_command(steps in arb_steps()) {
        run(steps)?;
    }
}
