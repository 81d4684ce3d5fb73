//! The Rust client library (`wayfinder-client`) against the real agent binary: a live endpoint
//! set kept by blocking queries, the last good set kept (and reported stale) through an agent
//! outage, calls failing over when an instance dies, and tower's balancer over the discovered
//! set (issue 5). Backends are real processes (`fixtures/backend.py`); everything runs on
//! 127.0.0.1 and every wait is bounded.

mod support;

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::backend::Backend;
use support::{Agent, TcpRelay};
use tokio::runtime::Runtime;
use wayfinder_client::balance::StrategyKind;
use wayfinder_client::{
    CallError, Discovery, Endpoint, Endpoints, Freshness, Service, ServiceOptions, WarningPolicy,
};

/// How long a change in the catalog may take to reach the client in these tests. It takes
/// milliseconds (one blocking query returning); the bound only keeps a stuck test from hanging.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the client may take to reach a restarted agent: its back-off is capped at 5 s.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(20);

const SERVICE: &str = "worker-service";

fn runtime() -> Runtime {
    support::client_runtime()
}

/// A `worker-service` instance at `port` with a passing TTL check `{id}-ttl`.
fn worker(id: &str, port: u16, tags: &[&str]) -> Value {
    json!({
        "Name": SERVICE, "ID": id, "Address": "127.0.0.1", "Port": port, "Tags": tags,
        "Check": {"CheckID": format!("{id}-ttl"), "TTL": "300s", "Status": "passing"}
    })
}

/// Waits until the service's set satisfies `ready`, at most `timeout`.
fn wait_for(
    rt: &Runtime,
    service: &Service,
    timeout: Duration,
    what: &str,
    ready: impl Fn(&Endpoints) -> bool,
) -> Arc<Endpoints> {
    let mut changes = service.subscribe();
    rt.block_on(async {
        tokio::time::timeout(timeout, changes.wait_for(|set| ready(set)))
            .await
            .map(|set| set.map(|set| Arc::clone(&set)))
    })
    .unwrap_or_else(|_| {
        panic!(
            "{what}: not within {timeout:?}; the set is {:?}, {:?}",
            ids(&service.endpoints()),
            service.freshness()
        )
    })
    .expect("the query loop runs while the service handle lives")
}

fn ids(set: &Endpoints) -> Vec<String> {
    let mut ids: Vec<String> = set.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids
}

#[test]
fn the_set_follows_the_catalog_as_it_changes() {
    let rt = runtime();
    let agent = Agent::start(&[]);
    let discovery = Discovery::new(&agent.base_url()).expect("agent url");
    let service = {
        let _entered = rt.enter();
        discovery.service(SERVICE).expect("service")
    };
    // A service nobody registered yet: the agent answers, with nothing in it.
    let first = rt
        .block_on(service.ready(CHANGE_TIMEOUT))
        .expect("the agent answers");
    assert!(first.is_loaded() && first.is_empty());
    assert_eq!(service.freshness(), Freshness::Fresh);

    for (i, id) in ["w-1", "w-2", "w-3"].iter().enumerate() {
        agent.register(&worker(id, 9001 + i as u16, &["v1"]));
    }
    let set = wait_for(&rt, &service, CHANGE_TIMEOUT, "three registered", |s| {
        s.len() == 3
    });
    let w1 = set.by_id("w-1").expect("w-1");
    assert_eq!(w1.authority(), "127.0.0.1:9001");
    assert_eq!(w1.tags, ["v1"]);

    // A failing check drops the instance; a warning keeps it at its warning weight; passing
    // brings it back.
    agent
        .put_empty("/v1/agent/check/fail/w-2-ttl")
        .expect_write_ok();
    wait_for(&rt, &service, CHANGE_TIMEOUT, "w-2 critical", |s| {
        ids(s) == ["w-1", "w-3"]
    });
    agent
        .put_empty("/v1/agent/check/warn/w-2-ttl")
        .expect_write_ok();
    let set = wait_for(&rt, &service, CHANGE_TIMEOUT, "w-2 warning", |s| {
        s.len() == 3
    });
    assert_eq!(
        set.by_id("w-2").map(|e| e.health),
        Some(wayfinder_client::balance::Health::Warning)
    );
    agent.deregister("w-3");
    wait_for(&rt, &service, CHANGE_TIMEOUT, "w-3 deregistered", |s| {
        ids(s) == ["w-1", "w-2"]
    });
    assert!(service.endpoints().index() > first.index());
}

#[test]
fn tags_and_warnings_filter_what_the_client_sees() {
    let rt = runtime();
    let agent = Agent::start(&[]);
    agent.register(&worker("v1-a", 9001, &["v1"]));
    agent.register(&worker("v2-a", 9002, &["v2", "canary"]));
    agent.register(&worker("v2-b", 9003, &["v2"]));
    agent
        .put_empty("/v1/agent/check/warn/v2-b-ttl")
        .expect_write_ok();
    let discovery = Discovery::new(&agent.base_url()).expect("agent url");
    let _entered = rt.enter();
    let v2 = discovery
        .service_with(SERVICE, ServiceOptions::new().tag("v2"))
        .expect("service");
    let passing_v2 = discovery
        .service_with(
            SERVICE,
            ServiceOptions::new()
                .tag("v2")
                .warnings(WarningPolicy::Exclude),
        )
        .expect("service");
    let set = rt.block_on(v2.ready(CHANGE_TIMEOUT)).expect("answer");
    assert_eq!(ids(&set), ["v2-a", "v2-b"]);
    let set = rt
        .block_on(passing_v2.ready(CHANGE_TIMEOUT))
        .expect("answer");
    assert_eq!(ids(&set), ["v2-a"]);
}

#[test]
fn the_last_good_set_outlives_an_agent_outage_and_says_how_stale_it_is() {
    let rt = runtime();
    let mut agent = Agent::start(&[]);
    // The client talks to the agent through a relay, so a new agent on another port can take
    // the old one's place, as a restarted agent would on its fixed port.
    let relay = TcpRelay::start(Some(agent.addr));
    agent.register(&worker("w-1", 9001, &[]));
    agent.register(&worker("w-2", 9002, &[]));
    let discovery = Discovery::new(&relay.url()).expect("relay url");
    let service = {
        let _entered = rt.enter();
        discovery.service(SERVICE).expect("service")
    };
    wait_for(&rt, &service, CHANGE_TIMEOUT, "both registered", |s| {
        s.len() == 2
    });

    relay.set_target(None);
    agent.kill9();
    let stale =
        support::eventually(
            CHANGE_TIMEOUT,
            "the client notices the outage",
            || match service.freshness() {
                stale @ Freshness::Stale { .. } => Ok(stale),
                other => Err(format!("{other:?}")),
            },
        );
    assert!(stale.stale_for().is_some());
    assert!(
        stale.error().is_some_and(|e| e.is_unreachable()),
        "{stale:?}"
    );
    assert_eq!(
        ids(&service.endpoints()),
        ["w-1", "w-2"],
        "the last good set stays in use"
    );
    // Calls still reach the kept endpoints (here: the attempt just reports which it got).
    let answered = rt
        .block_on(service.call(|e| async move { Ok::<_, std::io::Error>(e.id.clone()) }))
        .expect("a kept endpoint");
    assert!(answered.starts_with("w-"));

    // A fresh agent (new data dir) with a changed fleet: the client's first query after the
    // outage does not block (its index is reset on failure, whether the new agent's index is
    // higher or lower), so it reads the new state at once and is fresh again.
    let fresh = Agent::start(&[]);
    fresh.register(&worker("w-3", 9003, &[]));
    relay.set_target(Some(fresh.addr));
    wait_for(
        &rt,
        &service,
        RECOVERY_TIMEOUT,
        "the new agent's fleet",
        |s| ids(s) == ["w-3"],
    );
    assert_eq!(service.freshness(), Freshness::Fresh);
}

/// GET / on the endpoint; the backend answers with its ID.
async fn ask(client: &reqwest::Client, endpoint: Arc<Endpoint>) -> Result<String, reqwest::Error> {
    let answer: Value = client
        .get(endpoint.http_url("/"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["id"].as_str().unwrap_or_default().to_owned())
}

#[test]
fn calls_fail_over_when_an_instance_dies_without_deregistering() {
    let rt = runtime();
    let agent = Agent::start(&[]);
    let mut backends: Vec<Backend> = ["w-1", "w-2", "w-3"].map(Backend::start).into();
    for backend in &backends {
        agent.register(&worker(&backend.id, backend.port(), &[]));
    }
    let discovery = Discovery::new(&agent.base_url()).expect("agent url");
    let service = {
        let _entered = rt.enter();
        discovery.service(SERVICE).expect("service")
    };
    wait_for(&rt, &service, CHANGE_TIMEOUT, "three backends", |s| {
        s.len() == 3
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    let mut answered = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..60 {
        let id = rt
            .block_on(service.call(|e| ask(&client, e)))
            .expect("every call succeeds");
        *answered.entry(id).or_default() += 1;
    }
    assert_eq!(
        answered.len(),
        3,
        "random selection reaches all: {answered:?}"
    );

    // w-2 dies hard; the catalog still lists it (its TTL is long), so only retries save calls.
    backends[1].kill();
    let mut after = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..200 {
        match rt.block_on(service.call(|e| ask(&client, e))) {
            Ok(id) => *after.entry(id).or_default() += 1,
            Err(error) => panic!("a call failed although two instances are up: {error}"),
        }
    }
    assert!(!after.contains_key("w-2"), "{after:?}");
    assert_eq!(after.values().sum::<u32>(), 200);

    // With every instance down, the call says so after trying each once.
    backends[0].kill();
    backends[2].kill();
    let error = rt
        .block_on(service.call(|e| ask(&client, e)))
        .expect_err("nothing answers");
    assert!(
        matches!(error, CallError::Failed { attempts: 3, .. }),
        "{error}"
    );
}

#[test]
fn consistent_hash_picks_keep_a_key_on_one_instance() {
    let rt = runtime();
    let agent = Agent::start(&[]);
    for (i, id) in ["w-1", "w-2", "w-3", "w-4"].iter().enumerate() {
        agent.register(&worker(id, 9001 + i as u16, &[]));
    }
    let discovery = Discovery::new(&agent.base_url()).expect("agent url");
    let service = {
        let _entered = rt.enter();
        discovery
            .service_with(
                SERVICE,
                ServiceOptions::new().strategy(StrategyKind::ConsistentHash),
            )
            .expect("service")
    };
    wait_for(&rt, &service, CHANGE_TIMEOUT, "four instances", |s| {
        s.len() == 4
    });
    let owner = |key: &str| {
        service
            .pick_by_key(key.as_bytes())
            .map(|p| p.endpoint().id.clone())
            .expect("a pick")
    };
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let before: Vec<String> = keys.iter().map(|k| owner(k)).collect();
    assert_eq!(
        before,
        keys.iter().map(|k| owner(k)).collect::<Vec<_>>(),
        "the same key, the same instance"
    );
    agent.deregister("w-4");
    wait_for(&rt, &service, CHANGE_TIMEOUT, "w-4 gone", |s| s.len() == 3);
    for (key, old) in keys.iter().zip(&before) {
        if old != "w-4" {
            assert_eq!(&owner(key), old, "{key} moved although its instance stayed");
        }
    }
}

#[test]
fn tower_balances_over_the_discovered_set() {
    use tower::{Service as _, ServiceExt as _};

    let rt = runtime();
    let agent = Agent::start(&[]);
    let backends: Vec<Backend> = ["w-1", "w-2", "w-3"].map(Backend::start).into();
    for backend in &backends {
        agent.register(&worker(&backend.id, backend.port(), &[]));
    }
    let discovery = Discovery::new(&agent.base_url()).expect("agent url");
    let service = {
        let _entered = rt.enter();
        discovery.service(SERVICE).expect("service")
    };
    wait_for(&rt, &service, CHANGE_TIMEOUT, "three backends", |s| {
        s.len() == 3
    });
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let discover = service.discover(|endpoint| {
        let endpoint = Arc::clone(endpoint);
        let client = client.clone();
        tower::load::PendingRequests::new(
            tower::service_fn(move |(): ()| ask_owned(client.clone(), Arc::clone(&endpoint))),
            tower::load::CompleteOnResponse::default(),
        )
    });
    let mut balance = tower::balance::p2c::Balance::new(discover);

    let call = |balance: &mut tower::balance::p2c::Balance<_, ()>| {
        rt.block_on(async {
            let ready = tokio::time::timeout(CHANGE_TIMEOUT, balance.ready())
                .await
                .expect("the balancer becomes ready")
                .expect("ready");
            ready.call(()).await.expect("the backend answers")
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        seen.insert(call(&mut balance));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");

    // A deregistered instance leaves the balancer: no request reaches it afterwards.
    agent.deregister("w-2");
    wait_for(&rt, &service, CHANGE_TIMEOUT, "w-2 gone", |s| s.len() == 2);
    // The balancer applies discovery changes when it is polled for readiness.
    let mut after = std::collections::BTreeMap::<String, u32>::new();
    for _ in 0..60 {
        *after.entry(call(&mut balance)).or_default() += 1;
    }
    assert!(!after.contains_key("w-2"), "{after:?}");
}

async fn ask_owned(
    client: reqwest::Client,
    endpoint: Arc<Endpoint>,
) -> Result<String, reqwest::Error> {
    ask(&client, endpoint).await
}
