//! The embedded store and the catalog together, as the agent uses them: commands applied to the
//! live catalog, their rows committed batch by batch, and restarts that rebuild the catalog from
//! the file. After any sequence, the rebuilt catalog must equal the live one.

use proptest::prelude::*;
use proptest::sample::select;
use std::path::Path;
use std::time::Duration;
use wayfinder_catalog::{
    Catalog, CheckDefinition, CheckId, CheckKind, CheckPolicy, Command, Instance, InstanceId,
    Registration, ServiceName, Status, Touched,
};
use wayfinder_store::{EmbeddedStore, Store};

const SERVICES: &[&str] = &["web", "api"];
const INSTANCES: &[&str] = &["a", "b", "c"];
const CHECKS: &[&str] = &["c1", "c2", "service:a", "service:b:1"];

fn instance_id(id: &str) -> InstanceId {
    InstanceId::new(id, "ID").expect("pool IDs are valid")
}

fn check_id(id: &str) -> CheckId {
    CheckId::new(id, "CheckID").expect("pool IDs are valid")
}

fn check(id: Option<&str>, ttl: bool, initial_status: Option<Status>) -> CheckDefinition {
    let (kind, interval) = if ttl {
        let ttl = Duration::from_secs(30);
        (CheckKind::Ttl { ttl }, Duration::ZERO)
    } else {
        let address = "127.0.0.1:80".to_owned();
        (CheckKind::Tcp { address }, Duration::from_secs(10))
    };
    CheckDefinition {
        id: id.map(check_id),
        name: String::new(),
        notes: String::new(),
        service_id: None,
        initial_status,
        kind,
        policy: CheckPolicy::new(interval, Duration::from_secs(1)),
    }
}

fn arb_status() -> impl Strategy<Value = Status> {
    select(vec![Status::Passing, Status::Warning, Status::Critical])
}

fn arb_check() -> impl Strategy<Value = CheckDefinition> {
    (
        prop::option::of(select(CHECKS.to_vec())),
        any::<bool>(),
        prop::option::of(arb_status()),
    )
        .prop_map(|(id, ttl, status)| check(id, ttl, status))
}

fn arb_command() -> impl Strategy<Value = Command> {
    let register = (
        select(INSTANCES.to_vec()),
        select(SERVICES.to_vec()),
        select(vec![80u16, 81]),
        prop::collection::vec(arb_check(), 0..=3),
        any::<bool>(),
    )
        .prop_map(|(id, service, port, checks, replace_existing_checks)| {
            let instance = Instance {
                address: "10.0.0.1".to_owned(),
                port,
                ..Instance::new(
                    instance_id(id),
                    ServiceName::new(service, "Name").expect("pool names are valid"),
                )
            };
            Command::Register(Box::new(Registration {
                instance,
                checks,
                replace_existing_checks,
            }))
        });
    let register_check = (
        arb_check(),
        select(CHECKS.to_vec()),
        prop::option::of(select(INSTANCES.to_vec())),
    )
        .prop_map(|(mut check, id, owner)| {
            check.id = Some(check_id(id));
            check.service_id = owner.map(instance_id);
            Command::RegisterCheck(Box::new(check))
        });
    prop_oneof![
        3 => register,
        1 => select(INSTANCES.to_vec()).prop_map(|id| Command::Deregister(instance_id(id))),
        2 => register_check,
        1 => select(CHECKS.to_vec()).prop_map(|id| Command::DeregisterCheck(check_id(id))),
        3 => (select(CHECKS.to_vec()), arb_status()).prop_map(|(id, status)| {
            Command::SetCheckStatus {
                id: check_id(id),
                status,
                output: format!("now {status}"),
            }
        }),
    ]
}

/// What the writer does after applying one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// Keep batching.
    Continue,
    /// Commit the batch.
    Commit,
    /// Commit the batch, then stop the agent and start it again from the file.
    Restart,
}

fn arb_steps() -> impl Strategy<Value = Vec<(Command, Then)>> {
    let then = prop_oneof![
        6 => Just(Then::Continue),
        3 => Just(Then::Commit),
        1 => Just(Then::Restart),
    ];
    prop::collection::vec((arb_command(), then), 1..40)
}

fn start(dir: &Path) -> Result<(EmbeddedStore, Catalog), TestCaseError> {
    let store = EmbeddedStore::open(dir).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let catalog = store
        .load()
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .into_catalog();
    Ok((store, catalog))
}

fn run(steps: Vec<(Command, Then)>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (mut store, mut catalog) = start(dir.path())?;
    let mut batch: Vec<Touched> = Vec::new();
    for (command, then) in steps {
        let index = catalog.index() + 1;
        if let Ok(outcome) = catalog.apply(index, &command) {
            batch.extend(outcome.touched);
        }
        if then == Then::Continue {
            continue;
        }
        // A batch in which nothing changed commits no rows at the stored index: a no-op.
        store
            .commit(catalog.index(), &catalog.rows_for(&batch))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        batch.clear();
        if then == Then::Restart {
            drop(store);
            let restarted;
            (store, restarted) = start(dir.path())?;
            prop_assert_eq!(&restarted, &catalog);
            // Carry on from the rebuilt catalog, as the restarted agent would.
            catalog = restarted;
        }
    }
    store
        .commit(catalog.index(), &catalog.rows_for(&batch))
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    drop(store);
    let (_, restarted) = start(dir.path())?;
    prop_assert_eq!(&restarted, &catalog);
    Ok(())
}

proptest! {
    // Every case writes a real file with an fsync per batch: fewer cases than the catalog's.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_restart_rebuilds_the_live_catalog(steps in arb_steps()) {
        run(steps)?;
    }
}
