//! The embedded store against a real file in a temporary directory.

use super::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use wayfinder_catalog::{CheckId, CheckKind, CheckPolicy, InstanceId, Status};

fn instance(id: &str, service: &str, index: u64) -> Instance {
    Instance {
        address: "10.0.0.1".to_owned(),
        port: 8080,
        tags: vec!["v1".to_owned()],
        meta: BTreeMap::from([("zone".to_owned(), "a".to_owned())]).into(),
        create_index: index,
        modify_index: index,
        ..Instance::new(
            InstanceId::new(id, "ID").expect("valid ID"),
            ServiceName::new(service, "Name").expect("valid name"),
        )
    }
}

fn check(id: &str, owner: Option<&str>, index: u64) -> Check {
    Check {
        id: CheckId::new(id, "CheckID").expect("valid ID"),
        name: "alive".to_owned(),
        notes: String::new(),
        service_id: owner.map(|o| InstanceId::new(o, "ServiceID").expect("valid ID")),
        status: Status::Warning,
        output: "slow".to_owned(),
        kind: CheckKind::Ttl {
            ttl: Duration::from_secs(10),
        },
        policy: CheckPolicy {
            deregister_critical_after: Some(Duration::from_secs(60)),
            ..CheckPolicy::new(Duration::ZERO, Duration::from_secs(1))
        },
        create_index: index,
        modify_index: index,
    }
}

fn service(name: &str) -> ServiceName {
    ServiceName::new(name, "Name").expect("valid name")
}

/// Rows that write `instances` and `checks` and set each instance's service index.
fn rows(instances: &[Instance], checks: &[Check]) -> Rows {
    let mut rows = Rows::default();
    for i in instances {
        rows.instances
            .insert(i.id.clone(), Some(Arc::new(i.clone())));
        rows.services.insert(i.service.clone(), i.modify_index);
    }
    for c in checks {
        rows.checks.insert(c.id.clone(), Some(Arc::new(c.clone())));
    }
    rows
}

fn open(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir).expect("the store opens")
}

#[test]
fn rows_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = open(dir.path()).load().expect("load").index;
    let (i, c) = (seed + 1, seed + 2);
    let instances = vec![instance("web-1", "web", i), instance("api-1", "api", i)];
    let checks = vec![check("alive", Some("web-1"), c), check("disk", None, c)];
    {
        let store = open(dir.path());
        store.commit(c, &rows(&instances, &checks)).expect("commit");
    }

    let loaded = open(dir.path()).load().expect("load");

    assert_eq!(loaded.index, c);
    // Rows come back in key order.
    assert_eq!(
        loaded.instances,
        vec![instances[1].clone(), instances[0].clone()]
    );
    assert_eq!(loaded.checks, checks);
    assert_eq!(
        loaded.service_indexes,
        vec![(service("api"), i), (service("web"), i)]
    );
}

#[test]
fn none_rows_delete_and_services_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let seed = store.load().expect("load").index;
    let web = instance("web-1", "web", seed + 1);
    let alive = check("alive", Some("web-1"), seed + 1);
    store
        .commit(
            seed + 1,
            &rows(std::slice::from_ref(&web), std::slice::from_ref(&alive)),
        )
        .expect("commit");

    let mut delete = Rows::default();
    delete.instances.insert(web.id.clone(), None);
    delete.checks.insert(alive.id.clone(), None);
    delete
        .checks
        .insert(CheckId::new("never-stored", "x").expect("valid"), None);
    delete.services.insert(service("web"), seed + 2);
    store.commit(seed + 2, &delete).expect("commit");
    drop(store);

    let loaded = open(dir.path()).load().expect("load");
    assert_eq!(loaded.index, seed + 2);
    assert!(loaded.instances.is_empty());
    assert!(loaded.checks.is_empty());
    assert_eq!(loaded.service_indexes, vec![(service("web"), seed + 2)]);
}

#[test]
fn the_index_is_persisted_and_only_grows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let seed = store.load().expect("load").index;
    let one = rows(&[instance("web-1", "web", seed + 5)], &[]);
    store.commit(seed + 5, &one).expect("commit");

    let err = store.commit(seed + 4, &one).expect_err("went backwards");
    assert!(
        matches!(err, StoreError::IndexNotIncreasing { offered, stored } if offered == seed + 4 && stored == seed + 5),
        "{err}"
    );
    let err = store
        .commit(seed + 5, &one)
        .expect_err("same index, new rows");
    assert!(
        matches!(err, StoreError::IndexNotIncreasing { .. }),
        "{err}"
    );
    // Nothing to write at the stored index: accepted, and nothing changes.
    store
        .commit(seed + 5, &Rows::default())
        .expect("empty commit");
    drop(store);

    let loaded = open(dir.path()).load().expect("load");
    assert_eq!(loaded.index, seed + 5);
    assert_eq!(loaded.instances.len(), 1);
}

#[test]
fn a_new_store_is_seeded_from_the_clock_and_keeps_its_seed() {
    let before = clock_index();
    let dir = tempfile::tempdir().expect("tempdir");
    let seed = open(dir.path()).load().expect("load").index;
    let after = clock_index();
    assert!(
        (before..=after).contains(&seed),
        "{before} <= {seed} <= {after}"
    );

    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(open(dir.path()).load().expect("load").index, seed);
}

#[test]
fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nested = dir.path().join("a").join("b");
    let store = open(&nested);
    assert_eq!(store.path(), nested.join(FILE_NAME));
    assert!(store.path().is_file());
}

#[test]
fn a_second_open_of_a_held_data_dir_says_who_holds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open(dir.path());

    let err = EmbeddedStore::open(dir.path()).expect_err("already open");

    assert!(
        matches!(&err, StoreError::InUse { dir: d } if d == dir.path()),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("in use by another wayfinder agent"),
        "{message}"
    );
    assert!(message.contains("--data-dir"), "{message}");

    drop(first);
    open(dir.path());
}

#[test]
fn a_file_that_is_not_a_store_is_reported_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(FILE_NAME);
    std::fs::write(&path, vec![0x5a; 64 * 1024]).expect("write garbage");

    let err = EmbeddedStore::open(dir.path()).expect_err("garbage");

    assert!(
        matches!(&err, StoreError::Corrupt { path: p, .. } if *p == path),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("move the file aside"), "{message}");
}

#[test]
fn damaged_pages_are_reported_not_panicked_on() {
    let mut reported = 0;
    for tenth in 1..10 {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = open(dir.path());
            let index = store.load().expect("load").index + 1;
            let instances: Vec<Instance> = (0..500)
                .map(|n| instance(&format!("web-{n:05}"), "web", index))
                .collect();
            store.commit(index, &rows(&instances, &[])).expect("commit");
        }
        let path = dir.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes.len() / 10 * tenth;
        bytes[at..at + 64].iter_mut().for_each(|b| *b ^= 0xff);
        std::fs::write(&path, bytes).expect("write");

        // Damage to a page in use is caught by the integrity check on open; damage to a free
        // page is harmless. Nothing else may happen, least of all a panic.
        match EmbeddedStore::open(dir.path()).and_then(|store| store.load()) {
            Ok(loaded) => assert_eq!(loaded.instances.len(), 500),
            Err(StoreError::Corrupt { path: p, .. }) if p == path => reported += 1,
            Err(other) => panic!("at {tenth}/10: {other:?}"),
        }
    }
    assert!(reported > 0, "no damage was detected at all");
}

#[test]
fn a_row_that_does_not_decode_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    {
        let txn = store.db.begin_write().expect("write");
        txn.open_table(INSTANCES)
            .expect("table")
            .insert("web-1", b"{not json".as_slice())
            .expect("insert");
        txn.commit().expect("commit");
    }

    let err = store.load().expect_err("bad row");

    assert!(matches!(&err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("\"web-1\""), "{err}");
}

#[test]
fn a_newer_format_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        let txn = store.db.begin_write().expect("write");
        txn.open_table(META)
            .expect("table")
            .insert(FORMAT_KEY, FORMAT + 1)
            .expect("insert");
        txn.commit().expect("commit");
    }

    let err = EmbeddedStore::open(dir.path()).expect_err("newer format");

    assert!(
        matches!(err, StoreError::NewerFormat { found, supported, .. } if found == FORMAT + 1 && supported == FORMAT),
        "{err:?}"
    );
}

#[test]
fn a_data_dir_that_cannot_be_created_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"").expect("write");

    let err = EmbeddedStore::open(&file.join("data")).expect_err("not a directory");

    assert!(matches!(&err, StoreError::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("plain-file"), "{err}");
}

#[test]
fn many_rows_fit_in_one_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let index = store.load().expect("load").index + 1;
    let instances: Vec<Instance> = (0..5_000)
        .map(|n| instance(&format!("web-{n:05}"), &format!("svc-{}", n % 50), index))
        .collect();
    let checks: Vec<Check> = instances
        .iter()
        .map(|i| check(&format!("service:{}", i.id), Some(i.id.as_str()), index))
        .collect();

    store
        .commit(index, &rows(&instances, &checks))
        .expect("commit");
    drop(store);

    let loaded = open(dir.path()).load().expect("load");
    assert_eq!(loaded.index, index);
    assert_eq!(loaded.instances, instances);
    assert_eq!(loaded.checks.len(), 5_000);
    assert_eq!(loaded.service_indexes.len(), 50);
}
