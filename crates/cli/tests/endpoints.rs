//! The Endpoint Provider against the real binary: `GET /v1/endpoints/{service}` answers which
//! healthy endpoints a service has right now as a bare JSON array, filtered by tag, meta and
//! `include=warning`; it is served from a rendering pushed at every change (ETag, 304,
//! `X-Cache-Status`), says what is wrong in JSON, and the probes `/health` and `/ready` answer.

mod support;

use serde::Deserialize;
use serde_json::{Value, json};
use support::{Agent, Response};

const SERVICE: &str = "worker-service";
const PATH: &str = "/v1/endpoints/worker-service";

/// A TTL long enough that no check expires during a test: every status change is one the test
/// made.
const TTL: &str = "10m";

/// Registers `worker-service` in every state the provider has to tell apart:
/// - `w-plain`: no check, so passing; tags `realtime`, `eu`; zone a.
/// - `w-ttl-pass`: a passing TTL check (`w-ttl-pass-ttl`); tag `realtime`; zone b.
/// - `w-warn`: a TTL check in warning, weights 5/2; tags `realtime`, `eu`; zone a.
/// - `w-crit`: a TTL check still critical (a TTL check starts critical).
/// - `w-noaddr`: no check and no `Address` (the node's address stands in), weight 7.
fn register_worker_fleet(agent: &Agent) {
    agent.register(&json!({
        "Name": SERVICE, "ID": "w-plain", "Address": "10.0.1.10", "Port": 8080,
        "Tags": ["realtime", "eu"], "Meta": {"zone": "a", "tier": "gold"}
    }));
    agent.register(&json!({
        "Name": SERVICE, "ID": "w-ttl-pass", "Address": "10.0.1.11", "Port": 8081,
        "Tags": ["realtime"], "Meta": {"zone": "b"},
        "Check": {"CheckID": "w-ttl-pass-ttl", "TTL": TTL, "Status": "passing"}
    }));
    agent.register(&json!({
        "Name": SERVICE, "ID": "w-warn", "Address": "10.0.1.12", "Port": 8082,
        "Tags": ["realtime", "eu"], "Meta": {"zone": "a"},
        "Weights": {"Passing": 5, "Warning": 2},
        "Check": {"CheckID": "w-warn-ttl", "TTL": TTL, "Status": "warning"}
    }));
    agent.register(&json!({
        "Name": SERVICE, "ID": "w-crit", "Address": "10.0.1.13", "Port": 8083,
        "Tags": ["realtime", "eu"], "Meta": {"zone": "a"},
        "Check": {"CheckID": "w-crit-ttl", "TTL": TTL}
    }));
    agent.register(&json!({
        "Name": SERVICE, "ID": "w-noaddr", "Port": 9090,
        "Weights": {"Passing": 7, "Warning": 1}
    }));
}

/// The answer's elements, panicking unless it is a 200 with a bare JSON array.
#[track_caller]
fn endpoints(response: &Response) -> Vec<Value> {
    response.expect_status(200);
    match response.json() {
        Value::Array(elements) => elements,
        other => panic!("/v1/endpoints answers a bare JSON array, got {other}"),
    }
}

/// The `id`s of the elements, sorted.
fn ids(elements: &[Value]) -> Vec<&str> {
    let mut ids: Vec<&str> = elements
        .iter()
        .map(|e| {
            e["id"]
                .as_str()
                .unwrap_or_else(|| panic!("element without a string id: {e}"))
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// The element with `id`.
#[track_caller]
fn element<'a>(elements: &'a [Value], id: &str) -> &'a Value {
    elements
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no endpoint {id} in {elements:?}"))
}

/// The ids `/v1/endpoints/worker-service{query}` answers.
#[track_caller]
fn ids_for(agent: &Agent, query: &str) -> Vec<String> {
    let response = agent.get(&format!("{PATH}{query}"));
    ids(&endpoints(&response))
        .into_iter()
        .map(str::to_owned)
        .collect()
}

#[track_caller]
fn assert_cache_status_is_hit_or_miss(response: &Response) {
    let status = response.header("X-Cache-Status");
    assert!(
        matches!(status, Some("HIT" | "MISS")),
        "X-Cache-Status is HIT or MISS, got {status:?}"
    );
}

/// What the iOS client in our design notes decodes: `host` and `port`, nothing else.
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct HostPort {
    host: String,
    port: u16,
}

#[test]
fn default_answer_is_a_bare_array_of_passing_endpoints() {
    let agent = Agent::start(&[]);
    register_worker_fleet(&agent);

    let response = agent.get(PATH);
    assert_eq!(
        response.header("Content-Type"),
        Some("application/json"),
        "{:?}",
        response.headers
    );
    let elements = endpoints(&response);
    assert_eq!(
        ids(&elements),
        ["w-noaddr", "w-plain", "w-ttl-pass"],
        "only passing instances by default (no check counts as passing): {elements:?}"
    );
    for e in &elements {
        for key in ["host", "port", "id", "tags", "meta", "weight", "status"] {
            assert!(e.get(key).is_some(), "endpoint without {key:?}: {e}");
        }
        assert_eq!(e["status"], "passing", "{e}");
        assert!(e["tags"].is_array() && e["meta"].is_object(), "{e}");
    }

    let plain = element(&elements, "w-plain");
    assert_eq!(
        (&plain["host"], &plain["port"], &plain["weight"]),
        (&json!("10.0.1.10"), &json!(8080), &json!(1)),
        "Weights default to 1/1: {plain}"
    );
    assert_eq!(plain["tags"], json!(["realtime", "eu"]), "{plain}");
    assert_eq!(
        plain["meta"],
        json!({"zone": "a", "tier": "gold"}),
        "{plain}"
    );
    let ttl = element(&elements, "w-ttl-pass");
    assert_eq!(
        (&ttl["host"], &ttl["port"]),
        (&json!("10.0.1.11"), &json!(8081))
    );

    // An instance registered without an address is reached at its node's (Consul's rule).
    let health = agent.get("/v1/health/service/worker-service").json();
    let node_address = health[0]["Node"]["Address"]
        .as_str()
        .unwrap_or_else(|| panic!("health entries carry Node.Address: {health}"))
        .to_owned();
    assert!(!node_address.is_empty(), "{health}");
    let noaddr = element(&elements, "w-noaddr");
    assert_eq!(
        (&noaddr["host"], &noaddr["port"], &noaddr["weight"]),
        (&json!(node_address), &json!(9090), &json!(7)),
        "{noaddr}"
    );

    // A client that knows only host and port (serde ignores the other keys by default).
    let minimal: Vec<HostPort> = serde_json::from_slice(&response.body).unwrap_or_else(|e| {
        panic!(
            "a host+port client cannot decode {:?}: {e}",
            response.text()
        )
    });
    let mut minimal: Vec<(String, u16)> = minimal.into_iter().map(|e| (e.host, e.port)).collect();
    minimal.sort();
    let mut expected = vec![
        ("10.0.1.10".to_owned(), 8080),
        ("10.0.1.11".to_owned(), 8081),
        (node_address, 9090),
    ];
    expected.sort();
    assert_eq!(minimal, expected);
}

#[test]
fn tag_meta_and_include_warning_select_endpoints() {
    let agent = Agent::start(&[]);
    register_worker_fleet(&agent);

    // Tags: every one must match, compared case-insensitively as Consul does.
    assert_eq!(ids_for(&agent, "?tag=realtime"), ["w-plain", "w-ttl-pass"]);
    assert_eq!(ids_for(&agent, "?tag=REALTIME&tag=Eu"), ["w-plain"]);
    assert_eq!(
        ids_for(&agent, "?tag=realtime&include=warning"),
        ["w-plain", "w-ttl-pass", "w-warn"]
    );

    // Meta: `key:value`, repeatable, every pair must match.
    assert_eq!(ids_for(&agent, "?meta=zone:a"), ["w-plain"]);
    assert_eq!(ids_for(&agent, "?meta=zone:b"), ["w-ttl-pass"]);
    assert_eq!(ids_for(&agent, "?meta=zone:a&meta=tier:gold"), ["w-plain"]);
    assert_eq!(
        ids_for(&agent, "?meta=zone:a&include=warning"),
        ["w-plain", "w-warn"]
    );
    assert_eq!(
        ids_for(&agent, "?tag=eu&meta=zone%3Aa&include=warning"),
        ["w-plain", "w-warn"],
        "an escaped colon (as the Go client sends it) is the same question"
    );

    // include=warning: warning instances appear with their status and their Warning weight;
    // critical ones never do.
    let response = agent.get(&format!("{PATH}?include=warning"));
    assert_eq!(response.header("X-Cache-Status"), Some("MISS"));
    let elements = endpoints(&response);
    assert_eq!(
        ids(&elements),
        ["w-noaddr", "w-plain", "w-ttl-pass", "w-warn"],
        "{elements:?}"
    );
    let warn = element(&elements, "w-warn");
    assert_eq!(
        (&warn["status"], &warn["weight"], &warn["host"]),
        (&json!("warning"), &json!(2), &json!("10.0.1.12")),
        "a warning endpoint carries Weights.Warning: {warn}"
    );
    assert_eq!(element(&elements, "w-plain")["status"], "passing");

    // Bad filters are refused, naming the field.
    for (query, field) in [
        ("?meta=zone", "meta"),
        ("?meta=zone:a&meta=tier", "meta"),
        ("?include=critical", "include"),
        ("?include=warning&include=critical", "include"),
    ] {
        let body = agent.get(&format!("{PATH}{query}")).expect_error(400);
        assert_eq!(body["field"], field, "{query}: {body}");
    }
}

#[test]
fn etag_cache_status_and_not_modified_follow_the_service_index() {
    let agent = Agent::start(&[]);
    register_worker_fleet(&agent);

    let first = agent.get(PATH);
    first.expect_status(200);
    let etag = first
        .header("ETag")
        .unwrap_or_else(|| panic!("no ETag in {:?}", first.headers))
        .to_owned();
    let health_index = agent.get("/v1/health/service/worker-service").index();
    assert_eq!(
        etag,
        format!("\"{health_index}\""),
        "the ETag is the service's modify index, quoted"
    );
    assert_eq!(first.header("Cache-Control"), Some("no-cache"));
    // A change drops the service's rendering; the first question after it may render it
    // (MISS), and every later one is answered from that rendering until the next change.
    assert_cache_status_is_hit_or_miss(&first);
    let again = agent.get(PATH);
    assert_eq!(
        again.header("X-Cache-Status"),
        Some("HIT"),
        "the unfiltered question after the first render"
    );
    assert_eq!(again.header("ETag"), Some(etag.as_str()));
    assert_eq!(again.body, first.body, "the same rendering, byte for byte");

    let filtered = agent.get(&format!("{PATH}?tag=realtime"));
    filtered.expect_status(200);
    assert_eq!(filtered.header("X-Cache-Status"), Some("MISS"));
    assert_eq!(filtered.header("ETag"), Some(etag.as_str()));

    // A client holding the current answer is told so without a body.
    let cached = agent.get_with_headers(PATH, &[("If-None-Match", &etag)]);
    cached.expect_status(304);
    assert!(
        cached.body.is_empty(),
        "304 has no body: {:?}",
        cached.text()
    );
    assert_eq!(cached.header("ETag"), Some(etag.as_str()));

    // A check fails: the very next request already leaves the instance out (push, not TTL).
    agent
        .put_empty("/v1/agent/check/fail/w-ttl-pass-ttl")
        .expect_write_ok();
    let after = agent.get_with_headers(PATH, &[("If-None-Match", &etag)]);
    let elements = endpoints(&after);
    assert_eq!(
        ids(&elements),
        ["w-noaddr", "w-plain"],
        "the failed instance is gone in the first request after the fail was acknowledged"
    );
    let new_etag = after
        .header("ETag")
        .unwrap_or_else(|| panic!("no ETag in {:?}", after.headers))
        .to_owned();
    assert_ne!(new_etag, etag, "a change moves the ETag");
    assert_eq!(
        new_etag,
        format!(
            "\"{}\"",
            agent.get("/v1/health/service/worker-service").index()
        )
    );
    assert_cache_status_is_hit_or_miss(&after);
    let rendered = agent.get(PATH);
    assert_eq!(rendered.header("X-Cache-Status"), Some("HIT"));
    assert_eq!(rendered.body, after.body);
    agent
        .get_with_headers(PATH, &[("If-None-Match", &new_etag)])
        .expect_status(304);
}

/// The plain question (no query, no `If-None-Match`) is answered before routing; the same
/// question with an empty query goes through the router. Both must give the same answer, header
/// for header, and the plain one must still see a change at once.
#[test]
fn the_plain_read_answers_as_the_routed_one_does() {
    let agent = Agent::start(&[]);
    register_worker_fleet(&agent);
    // The first read renders the answer; from then on the plain read is served before routing.
    agent.get(PATH).expect_status(200);
    let compare = |what: &str| {
        let plain = agent.get(PATH);
        let routed = agent.get(&format!("{PATH}?"));
        plain.expect_status(200);
        routed.expect_status(200);
        assert_eq!(plain.body, routed.body, "{what}: the same bytes");
        for name in [
            "Content-Type",
            "ETag",
            "Cache-Control",
            "X-Cache-Status",
            "X-Consul-Index",
            "Content-Length",
        ] {
            assert_eq!(
                plain.header(name),
                routed.header(name),
                "{what}: {name} differs between the plain and the routed read"
            );
        }
        let names = |response: &Response| {
            let mut names: Vec<String> = response
                .headers
                .keys()
                .map(|name| name.as_str().to_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&plain), names(&routed), "{what}: the same headers");
        assert_eq!(plain.header("X-Cache-Status"), Some("HIT"));
        plain
    };
    let before = compare("before a change");
    agent
        .put_empty("/v1/agent/check/fail/w-ttl-pass-ttl")
        .expect_write_ok();
    // The first plain read after the change is a miss that goes through the router…
    let after = agent.get(PATH);
    assert_eq!(ids(&endpoints(&after)), ["w-noaddr", "w-plain"]);
    assert_ne!(after.header("ETag"), before.header("ETag"));
    // …and the reads after it are served before routing again, with the new answer.
    let again = compare("after a change");
    assert_eq!(again.body, after.body);

    // What the fast path leaves to the router still gets the router's answer.
    agent.get("/v1/endpoints/no-such-service").expect_error(404);
    agent
        .get("/v1/endpoints/worker%2Dservice")
        .expect_status(200);
    agent.deregister("w-plain");
    agent.deregister("w-ttl-pass");
    agent.deregister("w-noaddr");
    agent.get(PATH).expect_error(503);
    agent.get(PATH).expect_error(503);
}

#[test]
fn errors_say_what_is_wrong_in_json() {
    let agent = Agent::start(&[]);

    for path in ["/v1/endpoints/", "/v1/endpoints"] {
        let body = agent.get(path).expect_error(400);
        assert_eq!(body["field"], "service", "{path}: {body}");
    }

    let body = agent.get("/v1/endpoints/no-such-service").expect_error(404);
    assert_eq!(body["service"], "no-such-service", "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no-such-service")),
        "the message names the service: {body}"
    );

    // Known, but nothing healthy: 503 and when to ask again.
    agent.register(&json!({
        "Name": "lonely", "ID": "lonely-1", "Address": "10.0.2.1", "Port": 80,
        "Check": {"CheckID": "lonely-1-ttl", "TTL": TTL}
    }));
    agent.register(&json!({
        "Name": "lonely", "ID": "lonely-2", "Address": "10.0.2.2", "Port": 80,
        "Check": {"CheckID": "lonely-2-ttl", "TTL": TTL, "Status": "warning"}
    }));
    let unavailable = agent.get("/v1/endpoints/lonely");
    let body = unavailable.expect_error(503);
    assert_eq!(body["service"], "lonely", "{body}");
    let retry_after = unavailable
        .header("Retry-After")
        .unwrap_or_else(|| panic!("503 needs Retry-After: {:?}", unavailable.headers));
    assert!(
        retry_after.parse::<u64>().is_ok(),
        "Retry-After is a number of seconds, got {retry_after:?}"
    );

    // The last instances leave: the service is unknown again.
    agent.deregister("lonely-1");
    agent.get("/v1/endpoints/lonely").expect_error(503);
    agent.deregister("lonely-2");
    let body = agent.get("/v1/endpoints/lonely").expect_error(404);
    assert_eq!(body["service"], "lonely", "{body}");
}

#[test]
fn liveness_and_readiness_probes_answer() {
    let agent = Agent::start(&[]);
    agent.get("/health").expect_status(200);
    let ready = agent.get("/ready");
    ready.expect_status(200);
    let body = ready.json();
    assert_eq!(body["catalog"], "loaded", "{body}");
}
