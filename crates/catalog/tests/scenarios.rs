//! Scenarios from Consul's registration semantics, each checked through the public API: what a
//! re-registration keeps, what `?replace-existing-checks` drops, the default check IDs, and an
//! instance ID moving between services.

mod common;

use common::*;
use wayfinder_catalog::{
    Catalog, CatalogError, Command, EventKind, Status, Touched, ValidationError,
};

#[test]
fn re_registering_the_same_definition_is_a_no_op() {
    let mut catalog = Catalog::new(10);
    let command = register(instance("web-1", "web"), vec![ttl_check(None)]);
    apply(&mut catalog, &command);
    let before = catalog.clone();

    let outcome = catalog.apply(20, &command).expect("valid");

    assert!(outcome.is_empty(), "{outcome:?}");
    assert!(outcome.events.is_empty());
    assert_eq!(catalog.index(), 11);
    assert_eq!(catalog, before);
}

#[test]
fn re_registering_keeps_the_check_status() {
    let mut catalog = Catalog::new(0);
    let command = register(instance("web-1", "web"), vec![ttl_check(Some("alive"))]);
    apply(&mut catalog, &command);
    assert_eq!(check(&catalog, "alive").status, Status::Critical);
    apply(&mut catalog, &set_status("alive", Status::Passing));

    // Same definition: nothing to write, status untouched.
    assert!(apply(&mut catalog, &command).is_empty());
    assert_eq!(check(&catalog, "alive").status, Status::Passing);

    // Changed definition (new notes) without an initial status: still the status it had.
    let mut changed = ttl_check(Some("alive"));
    changed.notes = "heartbeat from the worker".to_owned();
    let outcome = apply(
        &mut catalog,
        &register(instance("web-1", "web"), vec![changed]),
    );
    assert!(outcome.touched.contains(&Touched::Check(check_id("alive"))));
    let alive = check(&catalog, "alive");
    assert_eq!(alive.status, Status::Passing);
    assert_eq!(alive.notes, "heartbeat from the worker");
    assert_eq!(alive.modify_index, catalog.index());
    assert_eq!(alive.create_index, 1);
}

#[test]
fn replace_existing_checks_removes_the_checks_not_named() {
    let mut catalog = Catalog::new(0);
    let both = vec![ttl_check(Some("c1")), ttl_check(Some("c2"))];
    apply(&mut catalog, &register(instance("web-1", "web"), both));

    // Without the flag, a registration naming only c1 keeps c2.
    let only_c1 = vec![ttl_check(Some("c1"))];
    assert!(
        apply(
            &mut catalog,
            &register(instance("web-1", "web"), only_c1.clone())
        )
        .is_empty()
    );
    assert!(catalog.check("c2").is_some());

    // With it, c2 goes, and its row is deleted.
    let outcome = apply(
        &mut catalog,
        &register_replacing(instance("web-1", "web"), only_c1),
    );
    assert!(outcome.touched.contains(&Touched::Check(check_id("c2"))));
    assert!(catalog.check("c2").is_none());
    assert!(catalog.check("c1").is_some());
    let view = catalog.instance("web-1").expect("registered");
    let ids: Vec<&str> = view.checks.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1"]);
    let rows = catalog.rows_for(&outcome.touched);
    assert_eq!(rows.checks.get(&check_id("c2")), Some(&None));

    // Replacing with no checks at all drops every check and brings health back to passing.
    apply(
        &mut catalog,
        &register_replacing(instance("web-1", "web"), vec![]),
    );
    assert_eq!(catalog.checks().count(), 0);
    assert_eq!(catalog.health("web-1"), Status::Passing);
}

#[test]
fn default_check_ids_and_names_follow_consul() {
    let mut catalog = Catalog::new(0);
    apply(
        &mut catalog,
        &register(instance("web-1", "web"), vec![ttl_check(None)]),
    );
    let only = check(&catalog, "service:web-1");
    assert_eq!(only.name, "Service 'web' check");
    assert_eq!(only.service_id, Some(instance_id("web-1")));

    apply(
        &mut catalog,
        &register(
            instance("api-1", "api"),
            vec![ttl_check(None), ttl_check(None)],
        ),
    );
    assert!(catalog.check("service:api-1:1").is_some());
    assert!(catalog.check("service:api-1:2").is_some());
    assert!(catalog.check("service:api-1").is_none());
}

#[test]
fn a_default_id_that_collides_with_an_explicit_one_is_refused() {
    let mut catalog = Catalog::new(0);
    let checks = vec![ttl_check(None), ttl_check(Some("service:web-1:1"))];
    let err = catalog
        .apply(1, &register(instance("web-1", "web"), checks))
        .expect_err("duplicate check ID");
    assert!(
        matches!(&err, CatalogError::Invalid(ValidationError { field, .. }) if field == "Checks[1].CheckID"),
        "{err:?}"
    );
    assert_eq!(catalog, Catalog::new(0));
}

#[test]
fn moving_an_instance_id_to_another_service() {
    let mut catalog = Catalog::new(0);
    apply(
        &mut catalog,
        &register(instance("x-1", "web"), vec![ttl_check(Some("x-alive"))]),
    );
    let web_before = catalog.service_index("web");

    let outcome = apply(&mut catalog, &register(instance("x-1", "api"), vec![]));

    let index = catalog.index();
    let kinds: Vec<(&str, EventKind)> = outcome
        .events
        .iter()
        .map(|e| (e.service.as_str(), e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("web", EventKind::Deregistered),
            ("api", EventKind::Registered)
        ]
    );
    assert!(outcome.events.iter().all(|e| e.index == index));
    assert!(!catalog.has_service("web"));
    assert_eq!(catalog.instances_of("web").count(), 0);
    assert_eq!(catalog.service_index("web"), index);
    assert!(catalog.service_index("web") > web_before);
    let api: Vec<_> = catalog.instances_of("api").collect();
    assert_eq!(api.len(), 1);
    assert_eq!(api[0].instance.service.as_str(), "api");
    assert_eq!(
        api[0].instance.create_index, 1,
        "the ID keeps its create index"
    );
    // Its checks follow the ID.
    assert_eq!(catalog.checks_of_service("web").count(), 0);
    assert_eq!(catalog.checks_of_service("api").count(), 1);
    assert_eq!(restored(&catalog), catalog);
}

#[test]
fn node_level_checks_count_against_every_instance() {
    let mut catalog = Catalog::new(0);
    apply(&mut catalog, &register(instance("web-1", "web"), vec![]));
    apply(&mut catalog, &register(instance("api-1", "api"), vec![]));

    let outcome = apply(
        &mut catalog,
        &Command::RegisterCheck(Box::new(ttl_check(Some("node-disk")))),
    );

    let health_events = outcome
        .events
        .iter()
        .filter(|e| {
            e.kind
                == EventKind::HealthChanged {
                    from: Status::Passing,
                    to: Status::Critical,
                }
        })
        .count();
    assert_eq!(health_events, 2);
    assert_eq!(catalog.health("web-1"), Status::Critical);
    assert_eq!(catalog.health("api-1"), Status::Critical);
    assert_eq!(catalog.service_index("web"), catalog.index());
    assert_eq!(catalog.checks_of_service("web").count(), 0);
    assert_eq!(
        catalog.instance("web-1").expect("registered").checks.len(),
        1
    );
}

#[test]
fn a_status_that_does_not_change_writes_nothing() {
    let mut catalog = Catalog::new(0);
    apply(
        &mut catalog,
        &register(instance("web-1", "web"), vec![ttl_check(None)]),
    );
    let before = catalog.clone();
    let outcome = apply(&mut catalog, &set_status("service:web-1", Status::Critical));
    assert!(outcome.is_empty());
    assert_eq!(catalog, before);
}

#[test]
fn refused_commands_change_nothing() {
    let mut catalog = Catalog::new(5);
    apply(&mut catalog, &register(instance("web-1", "web"), vec![]));
    let before = catalog.clone();

    assert_eq!(
        catalog.apply(6, &Command::Deregister(instance_id("web-1"))),
        Err(CatalogError::IndexNotIncreasing {
            offered: 6,
            current: 6
        })
    );
    assert_eq!(
        catalog.apply(7, &Command::Deregister(instance_id("nope"))),
        Err(CatalogError::UnknownInstance(instance_id("nope")))
    );
    assert_eq!(
        catalog.apply(7, &set_status("nope", Status::Passing)),
        Err(CatalogError::UnknownCheck(check_id("nope")))
    );
    let mut wildcard = instance("web-1", "web");
    wildcard.address = "0.0.0.0".to_owned();
    assert!(catalog.apply(7, &register(wildcard, vec![])).is_err());
    assert_eq!(catalog, before);
}

#[test]
fn a_service_is_found_by_its_name_in_any_case_and_only_while_it_has_instances() {
    let mut catalog = Catalog::new(0);
    apply(&mut catalog, &register(instance("web-1", "Web"), vec![]));
    let found = |name: &str| {
        catalog
            .live_service_ignoring_case(name)
            .map(|(stored, _)| stored.as_str().to_owned())
    };
    assert_eq!(found("Web").as_deref(), Some("Web"));
    assert_eq!(found("web").as_deref(), Some("Web"));
    assert_eq!(found("WEB").as_deref(), Some("Web"));
    assert_eq!(found("db"), None);

    apply(&mut catalog, &Command::Deregister(instance_id("web-1")));
    assert_eq!(
        catalog.live_service_ignoring_case("web"),
        None,
        "a service whose last instance left is not found"
    );
}
