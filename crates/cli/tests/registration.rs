//! Registering and deregistering over HTTP, as python-consul and the Go client do it, and what
//! every read endpoint shows afterwards.

mod support;

use serde_json::{Value, json};
use support::Agent;

/// Entries of a JSON array answer, panicking with the body otherwise.
fn array(value: &Value) -> &Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("expected a JSON array, got {value}"))
}

#[test]
fn python_consul_lowercase_registration_shows_in_every_view() {
    let agent = Agent::start(&[]);

    // python-consul 0.7.1 `agent.service.register(...)` with `Check.ttl("30s")`: lowercase keys,
    // no Content-Type, no CheckID (so Consul names the check `service:<id>`).
    agent.register(&json!({
        "name": "web",
        "id": "web-1",
        "address": "127.0.0.1",
        "port": 8080,
        "tags": ["v2"],
        "check": {"ttl": "30s"}
    }));

    let services = agent.services();
    let web = &services["web-1"];
    assert_eq!(web["ID"], "web-1", "{web}");
    assert_eq!(web["Service"], "web", "{web}");
    assert_eq!(web["Port"], 8080, "{web}");
    assert_eq!(web["Address"], "127.0.0.1", "{web}");
    assert_eq!(web["Tags"], json!(["v2"]), "{web}");
    assert_eq!(web["Weights"], json!({"Passing": 1, "Warning": 1}), "{web}");

    let catalog = agent.get("/v1/catalog/services");
    catalog.expect_status(200).index();
    assert_eq!(catalog.json()["web"], json!(["v2"]), "{}", catalog.text());

    let nodes = agent.get("/v1/catalog/service/web");
    nodes.expect_status(200).index();
    let nodes = nodes.json();
    let [node] = array(&nodes).as_slice() else {
        panic!("expected one catalog entry, got {nodes}");
    };
    assert_eq!(node["ServiceID"], "web-1", "{node}");
    assert_eq!(node["ServiceName"], "web", "{node}");
    assert_eq!(node["ServicePort"], 8080, "{node}");
    assert_eq!(node["ServiceAddress"], "127.0.0.1", "{node}");
    assert_eq!(node["ServiceTags"], json!(["v2"]), "{node}");
    assert!(node["Node"].is_string(), "{node}");

    let health = agent.get("/v1/health/service/web");
    health.expect_status(200).index();
    let health = health.json();
    let [entry] = array(&health).as_slice() else {
        panic!("expected one health entry, got {health}");
    };
    assert!(entry["Node"].is_object(), "Node must be an object: {entry}");
    assert_eq!(entry["Service"]["ID"], "web-1", "{entry}");
    assert_eq!(entry["Service"]["Service"], "web", "{entry}");
    assert_eq!(entry["Service"]["Port"], 8080, "{entry}");
    let check = array(&entry["Checks"])
        .iter()
        .find(|c| c["ServiceID"] == "web-1")
        .unwrap_or_else(|| panic!("no check of web-1 in {entry}"));
    assert_eq!(check["CheckID"], "service:web-1", "{check}");
    assert_eq!(
        check["Status"], "critical",
        "checks start critical: {check}"
    );

    // A TTL check that never heard from its service is critical, so `?passing` leaves it out.
    assert_eq!(
        agent.health_service_ids("web", "?passing"),
        Vec::<String>::new()
    );
    assert_eq!(
        agent.health_service_ids("web", "?passing=1"),
        Vec::<String>::new()
    );
}

#[test]
fn go_client_registration_shows_in_every_view() {
    let agent = Agent::start(&[]);

    agent.register(&json!({
        "ID": "api-1",
        "Name": "api",
        "Tags": ["primary", "v1"],
        "Address": "127.0.0.1",
        "Port": 9000,
        "Meta": {"team": "blue"},
        "Weights": {"Passing": 5, "Warning": 1},
        "EnableTagOverride": false,
        "Checks": [
            {"CheckID": "api-1-ttl", "Name": "api heartbeat", "TTL": "30s", "Status": "passing"},
            {"CheckID": "api-1-ttl-2", "TTL": "30s", "Status": "passing", "Notes": "second"}
        ]
    }));

    let services = agent.services();
    let api = &services["api-1"];
    assert_eq!(api["Service"], "api", "{api}");
    assert_eq!(api["Meta"], json!({"team": "blue"}), "{api}");
    assert_eq!(api["Weights"], json!({"Passing": 5, "Warning": 1}), "{api}");

    let checks = agent.checks();
    for id in ["api-1-ttl", "api-1-ttl-2"] {
        let check = &checks[id];
        assert_eq!(check["ServiceID"], "api-1", "{check}");
        assert_eq!(check["ServiceName"], "api", "{check}");
        assert_eq!(
            check["Status"], "passing",
            "the given Status is the start: {check}"
        );
    }
    assert_eq!(checks["api-1-ttl"]["Name"], "api heartbeat");
    assert_eq!(checks["api-1-ttl-2"]["Notes"], "second");

    let catalog = agent.get("/v1/catalog/services").json();
    let mut tags: Vec<&str> = array(&catalog["api"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["primary", "v1"]);

    let nodes = agent.get("/v1/catalog/service/api").json();
    let [node] = array(&nodes).as_slice() else {
        panic!("expected one catalog entry, got {nodes}");
    };
    assert_eq!(node["ServiceMeta"], json!({"team": "blue"}), "{node}");
    assert_eq!(
        node["ServiceWeights"],
        json!({"Passing": 5, "Warning": 1}),
        "{node}"
    );

    // Every check passing: `?passing` lists it.
    assert_eq!(agent.passing_ids("api"), ["api-1"]);

    let checks = agent.get("/v1/health/checks/api");
    checks.expect_status(200).index();
    let mut ids: Vec<String> = array(&checks.json())
        .iter()
        .map(|c| c["CheckID"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["api-1-ttl", "api-1-ttl-2"]);
}

#[test]
fn tag_filter_matches_case_insensitively_and_needs_every_tag() {
    let agent = Agent::start(&[]);
    for (id, tags) in [
        ("db-1", json!(["primary", "v2"])),
        ("db-2", json!(["replica", "v2"])),
        ("db-3", json!([])),
    ] {
        agent.register(&json!({"Name": "db", "ID": id, "Port": 5432, "Tags": tags}));
    }

    assert_eq!(agent.health_service_ids("db", ""), ["db-1", "db-2", "db-3"]);
    assert_eq!(agent.health_service_ids("db", "?tag=v2"), ["db-1", "db-2"]);
    assert_eq!(agent.health_service_ids("db", "?tag=PRIMARY"), ["db-1"]);
    assert_eq!(
        agent.health_service_ids("db", "?tag=v2&tag=replica"),
        ["db-2"]
    );
    assert_eq!(
        agent.health_service_ids("db", "?tag=v3"),
        Vec::<String>::new()
    );

    let nodes = agent.get("/v1/catalog/service/db?tag=replica").json();
    let ids: Vec<&Value> = array(&nodes).iter().map(|n| &n["ServiceID"]).collect();
    assert_eq!(ids, [&json!("db-2")]);
}

#[test]
fn reregistering_the_same_id_replaces_the_instance() {
    let agent = Agent::start(&[]);
    agent.register(&json!({"Name": "web", "ID": "web-1", "Port": 8080, "Tags": ["old"]}));
    agent.register(&json!({"Name": "web", "ID": "web-1", "Port": 9090, "Tags": ["new"]}));

    let services = agent.services();
    assert_eq!(services.len(), 1, "{services:?}");
    assert_eq!(services["web-1"]["Port"], 9090);
    assert_eq!(services["web-1"]["Tags"], json!(["new"]));

    let nodes = agent.get("/v1/catalog/service/web").json();
    let [node] = array(&nodes).as_slice() else {
        panic!("an upsert leaves one instance, got {nodes}");
    };
    assert_eq!(node["ServicePort"], 9090, "{node}");
    assert_eq!(
        agent.get("/v1/catalog/services").json(),
        json!({"web": ["new"]}),
        "the old tag is gone from the catalog"
    );
}

#[test]
fn reregistering_keeps_unnamed_checks_unless_replace_existing_checks() {
    let agent = Agent::start(&[]);
    agent.register(&json!({
        "Name": "web", "ID": "web-1", "Port": 8080,
        "Checks": [{"CheckID": "a", "TTL": "30s"}, {"CheckID": "b", "TTL": "30s"}]
    }));

    agent.register(&json!({
        "Name": "web", "ID": "web-1", "Port": 8080,
        "Check": {"CheckID": "a", "TTL": "30s"}
    }));
    let mut ids: Vec<String> = agent.checks().keys().cloned().collect();
    ids.sort();
    assert_eq!(
        ids,
        ["a", "b"],
        "Consul keeps checks the new body does not name"
    );

    agent
        .put_json(
            "/v1/agent/service/register?replace-existing-checks",
            &json!({"Name": "web", "ID": "web-1", "Port": 8080, "Check": {"CheckID": "a", "TTL": "30s"}}),
        )
        .expect_write_ok();
    let ids: Vec<String> = agent.checks().keys().cloned().collect();
    assert_eq!(ids, ["a"], "replace-existing-checks drops the others");
}

#[test]
fn deregister_removes_the_instance_and_its_checks() {
    let agent = Agent::start(&[]);
    agent.register(&json!({
        "Name": "web", "ID": "web-1", "Port": 8080,
        "Check": {"CheckID": "web-1-ttl", "TTL": "30s"}
    }));
    agent.register(&json!({
        "Name": "web", "ID": "web-2", "Port": 8081,
        "Check": {"CheckID": "web-2-ttl", "TTL": "30s"}
    }));

    agent.deregister("web-1");

    let services = agent.services();
    assert!(!services.contains_key("web-1"), "{services:?}");
    assert!(services.contains_key("web-2"), "{services:?}");
    let checks = agent.checks();
    assert!(
        !checks.contains_key("web-1-ttl"),
        "its check goes too: {checks:?}"
    );
    assert!(checks.contains_key("web-2-ttl"), "{checks:?}");
    assert_eq!(agent.health_service_ids("web", ""), ["web-2"]);
    let health_checks = agent.get("/v1/health/checks/web").json();
    assert!(
        array(&health_checks)
            .iter()
            .all(|c| c["CheckID"] != "web-1-ttl"),
        "{health_checks}"
    );

    // python-consul 0.7.1 deregisters with GET; Wayfinder accepts it (a documented deviation).
    agent
        .get("/v1/agent/service/deregister/web-2")
        .expect_write_ok();
    assert!(agent.services().is_empty());
    assert!(agent.checks().is_empty());
    assert_eq!(agent.get("/v1/catalog/service/web").json(), json!([]));
    assert_eq!(agent.get("/v1/health/service/web").json(), json!([]));
    assert_eq!(agent.get("/v1/health/checks/web").json(), json!([]));
    let catalog = agent.get("/v1/catalog/services").json();
    assert!(catalog.get("web").is_none(), "{catalog}");
}

#[test]
fn consul_index_is_present_and_grows_with_every_write() {
    let agent = Agent::start(&[]);
    let reads = [
        "/v1/catalog/services",
        "/v1/catalog/service/web",
        "/v1/health/service/web",
        "/v1/health/checks/web",
        "/v1/health/state/any",
    ];
    let indexes = || -> Vec<u64> {
        reads
            .iter()
            .map(|path| {
                let response = agent.get(path);
                response.expect_status(200);
                response.index()
            })
            .collect()
    };

    // Present (and >= 1) even on an empty catalog and for an unknown service.
    let empty = indexes();

    agent.register(&json!({
        "Name": "web", "ID": "web-1", "Port": 8080,
        "Check": {"CheckID": "web-1-ttl", "TTL": "30s"}
    }));
    let registered = indexes();
    for ((path, before), after) in reads.iter().zip(&empty).zip(&registered) {
        assert!(
            after > before,
            "{path}: index {before} -> {after} after a register"
        );
    }

    agent
        .put_empty("/v1/agent/check/pass/web-1-ttl")
        .expect_write_ok();
    let passed = indexes();
    for ((path, before), after) in reads.iter().zip(&registered).zip(&passed).skip(2) {
        assert!(
            after > before,
            "{path}: index {before} -> {after} after a status change"
        );
    }

    // A deletion must move the index too, or watchers never see the instance go.
    agent.deregister("web-1");
    let deregistered = indexes();
    for ((path, before), after) in reads.iter().zip(&passed).zip(&deregistered) {
        assert!(
            after > before,
            "{path}: index {before} -> {after} after a deregister"
        );
    }
}

#[test]
fn index_does_not_move_when_nothing_changes() {
    let agent = Agent::start(&[]);
    agent.register(&json!({"Name": "web", "ID": "web-1", "Port": 8080}));
    let first = agent.get("/v1/health/service/web").index();
    let second = agent.get("/v1/health/service/web").index();
    assert_eq!(first, second, "reads do not bump the index");
    let catalog = agent.catalog_index();
    assert_eq!(catalog, agent.catalog_index());
}
