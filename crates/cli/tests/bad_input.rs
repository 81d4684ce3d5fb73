//! Bad input gets a 4xx with a JSON body that names the field, and changes nothing.

mod support;

use reqwest::blocking::Body;
use serde_json::{Map, Value, json};
use support::{Agent, MIB};

const REGISTER: &str = "/v1/agent/service/register";

/// What the error body's `field` must be.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// Exactly this Consul field path.
    Named(&'static str),
    /// One of these (where more than one field is equally to blame).
    OneOf(&'static [&'static str]),
    /// Omitted: the error is not about one field.
    Absent,
    /// Not checked.
    Any,
}

/// What a refused request must leave untouched.
#[derive(Debug, PartialEq)]
struct Observed {
    services: Map<String, Value>,
    checks: Map<String, Value>,
    index: u64,
}

fn observe(agent: &Agent) -> Observed {
    Observed {
        services: agent.services(),
        checks: agent.checks(),
        index: agent.catalog_index(),
    }
}

/// An agent with one service and check already there, so "changes nothing" has something to
/// compare against.
fn agent_with_one_service() -> Agent {
    let agent = Agent::start(&[]);
    agent.register(&json!({
        "Name": "keep", "ID": "keep-1", "Port": 8080, "Tags": ["stay"],
        "Check": {"CheckID": "keep-ttl", "TTL": "10m", "Status": "passing"}
    }));
    agent
}

/// PUTs `body` to `path` and asserts the answer is `status` with a JSON error naming `field`,
/// and that the catalog did not change. Returns the error body.
#[track_caller]
fn assert_refused(
    agent: &Agent,
    path: &str,
    body: impl Into<Body>,
    status: u16,
    field: Field,
) -> Value {
    let before = observe(agent);
    let response = agent.put(path, body);
    let error = response.expect_error(status);
    let actual = error.get("field").filter(|f| !f.is_null());
    match field {
        Field::Named(name) => assert_eq!(
            actual.and_then(Value::as_str),
            Some(name),
            "PUT {path}: wrong field in {error}"
        ),
        Field::OneOf(names) => assert!(
            actual
                .and_then(Value::as_str)
                .is_some_and(|f| names.contains(&f)),
            "PUT {path}: field should be one of {names:?}: {error}"
        ),
        Field::Absent => assert!(
            actual.is_none(),
            "PUT {path}: the error is not about one field, so `field` is omitted: {error}"
        ),
        Field::Any => {}
    }
    assert_eq!(
        observe(agent),
        before,
        "PUT {path} was refused ({error}) but changed the catalog"
    );
    error
}

/// A registration body with `extra` merged over a valid minimal service.
fn service(extra: Value) -> String {
    let mut body = json!({"Name": "web", "ID": "web-1", "Port": 80});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    body.to_string()
}

#[test]
fn malformed_json_is_refused() {
    let agent = agent_with_one_service();
    for body in [
        r#"{"Name": "web""#,
        "not json",
        "",
        "[]",
        r#"{"Name": "web"} trailing"#,
    ] {
        assert_refused(&agent, REGISTER, body, 400, Field::Absent);
    }
    assert_refused(
        &agent,
        REGISTER,
        r#"{"Name": 5}"#,
        400,
        Field::Named("Name"),
    );
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Port": "80"})),
        400,
        Field::Named("Port"),
    );
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Tags": "v1"})),
        400,
        Field::Named("Tags"),
    );
}

#[test]
fn unknown_keys_are_refused() {
    let agent = agent_with_one_service();
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Bogus": 1})),
        400,
        Field::Named("Bogus"),
    );
    // python-consul 0.7.1's Check.script sends `script`, which Consul refuses too.
    assert_refused(
        &agent,
        REGISTER,
        r#"{"name": "web", "check": {"script": "/bin/true", "interval": "10s"}}"#,
        400,
        Field::Named("Check.script"),
    );
}

#[test]
fn unknown_or_missing_check_kind_is_refused() {
    let agent = agent_with_one_service();
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Check": {"UDP": "x:1", "Interval": "1s"}})),
        400,
        Field::Named("Check.UDP"),
    );
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Check": {"Interval": "1s"}})),
        400,
        Field::Named("Check"),
    );
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Check": {"Status": "bogus", "TTL": "10s"}})),
        400,
        Field::Named("Check.Status"),
    );
}

#[test]
fn names_that_are_not_dns_safe_are_refused() {
    let agent = agent_with_one_service();
    for name in ["web_1", "-x", "x-", "web 1", "web.1", ""] {
        assert_refused(
            &agent,
            REGISTER,
            json!({"Name": name, "ID": "web-1"}).to_string(),
            400,
            Field::Named("Name"),
        );
    }
    assert_refused(
        &agent,
        REGISTER,
        r#"{"Port": 80}"#,
        400,
        Field::Named("Name"),
    );
}

#[test]
fn ports_out_of_range_are_refused() {
    let agent = agent_with_one_service();
    for port in [json!(70000), json!(65536), json!(-1), json!(1.5)] {
        assert_refused(
            &agent,
            REGISTER,
            service(json!({"Port": port})),
            400,
            Field::Named("Port"),
        );
    }
}

#[test]
fn over_long_fields_are_refused() {
    let agent = agent_with_one_service();
    let long = |n: usize| "a".repeat(n);
    assert_refused(
        &agent,
        REGISTER,
        json!({"Name": long(64), "ID": "web-1"}).to_string(),
        400,
        Field::Named("Name"),
    );
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"ID": long(129)})),
        400,
        Field::Named("ID"),
    );
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Tags": ["ok", long(256)]})),
        400,
        Field::Named("Tags[1]"),
    );
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Meta": {"k": long(513)}})),
        400,
        Field::Named("Meta.k"),
    );
}

#[test]
fn fields_at_their_limits_are_accepted() {
    let agent = Agent::start(&[]);
    let long = |n: usize| "a".repeat(n);
    agent.register(&json!({
        "Name": long(63),
        "ID": long(128),
        "Tags": [long(255)],
        "Meta": {"k": long(512)},
        "Port": 65535
    }));
    let services = agent.services();
    assert_eq!(services[&long(128)]["Service"], long(63));
}

#[test]
fn reserved_meta_prefix_is_refused() {
    let agent = agent_with_one_service();
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Meta": {"consul-version": "1"}})),
        400,
        Field::Named("Meta.consul-version"),
    );
}

#[test]
fn zero_passing_weight_is_refused() {
    let agent = agent_with_one_service();
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Weights": {"Passing": 0, "Warning": 1}})),
        400,
        Field::Named("Weights.Passing"),
    );
}

#[test]
fn wildcard_address_is_refused() {
    let agent = agent_with_one_service();
    for address in ["0.0.0.0", "::"] {
        assert_refused(
            &agent,
            REGISTER,
            service(json!({"Address": address})),
            400,
            Field::Named("Address"),
        );
    }
}

#[test]
fn bad_check_timing_is_refused() {
    let agent = agent_with_one_service();
    let http = "http://127.0.0.1:1/health";
    for interval in ["ten", "10", "1x", "-"] {
        assert_refused(
            &agent,
            REGISTER,
            service(json!({"Check": {"HTTP": http, "Interval": interval}})),
            400,
            Field::Named("Check.Interval"),
        );
    }
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Check": {"HTTP": http}})),
        400,
        Field::Named("Check.Interval"),
    );
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Check": {"TTL": "10s", "Interval": "10s"}})),
        400,
        Field::OneOf(&["Check.Interval", "Check.TTL"]),
    );
}

#[test]
fn one_bad_check_refuses_the_whole_registration() {
    let agent = agent_with_one_service();
    assert_refused(
        &agent,
        REGISTER,
        service(json!({"Checks": [
            {"CheckID": "fine", "TTL": "10s"},
            {"CheckID": "bad", "HTTP": "http://127.0.0.1:1/", "Interval": "ten"}
        ]})),
        400,
        Field::Named("Checks[1].Interval"),
    );
}

#[test]
fn body_over_one_mib_is_refused_with_413() {
    let agent = agent_with_one_service();
    let padded = |len: usize| {
        let mut body = service(json!({"ID": "big-1"})).into_bytes();
        body.resize(len, b' ');
        body
    };

    assert_refused(&agent, REGISTER, padded(MIB + 1), 413, Field::Any);
    // Without Content-Length (chunked), the limit still holds.
    assert_refused(
        &agent,
        REGISTER,
        Body::new(std::io::Cursor::new(padded(MIB + 1))),
        413,
        Field::Any,
    );

    // Exactly 1 MiB is within the limit.
    agent.put(REGISTER, padded(MIB)).expect_write_ok();
    assert!(agent.services().contains_key("big-1"));
}

#[test]
fn non_utf8_body_is_refused() {
    let agent = agent_with_one_service();
    let mut body = br#"{"Name": "web", "ID": "we"#.to_vec();
    body.extend_from_slice(&[0xff, 0xfe]);
    body.extend_from_slice(br#"b-1", "Port": 80}"#);
    assert_refused(&agent, REGISTER, body, 400, Field::Any);
}

#[test]
fn unknown_ids_are_404() {
    let agent = agent_with_one_service();
    for path in [
        "/v1/agent/check/pass/no-such-check",
        "/v1/agent/check/warn/no-such-check",
        "/v1/agent/check/fail/no-such-check?note=x",
        "/v1/agent/check/deregister/no-such-check",
        "/v1/agent/service/deregister/no-such-service",
        // A service name is not its ID.
        "/v1/agent/service/deregister/keep",
    ] {
        assert_refused(&agent, path, "", 404, Field::Any);
    }
    assert_refused(
        &agent,
        "/v1/agent/check/update/no-such-check",
        json!({"Status": "passing"}).to_string(),
        404,
        Field::Any,
    );
    // python-consul 0.7.1's GET spelling answers the same.
    agent
        .get("/v1/agent/check/pass/no-such-check")
        .expect_error(404);
    agent
        .get("/v1/agent/service/deregister/no-such-service")
        .expect_error(404);
}

#[test]
fn bad_status_on_check_update_is_refused() {
    let agent = agent_with_one_service();
    for status in ["sideways", "PASSING!", ""] {
        assert_refused(
            &agent,
            "/v1/agent/check/update/keep-ttl",
            json!({"Status": status, "Output": "x"}).to_string(),
            400,
            Field::Named("Status"),
        );
    }
    assert_eq!(agent.check_status("keep-ttl").as_deref(), Some("passing"));
}

#[test]
fn filter_expressions_are_refused_not_ignored() {
    let agent = agent_with_one_service();
    for path in [
        "/v1/health/service/keep?filter=Service.Port%20%3D%3D%2080",
        "/v1/catalog/service/keep?filter=ServicePort%20%3D%3D%2080",
        "/v1/catalog/services?filter=x",
        "/v1/health/checks/keep?filter=x",
        "/v1/health/state/any?filter=x",
    ] {
        let error = agent.get(path).expect_error(400);
        assert_eq!(error["field"], "filter", "{path}: {error}");
    }
    // An empty filter is no filter.
    agent
        .get("/v1/health/service/keep?filter=")
        .expect_status(200);
}

#[test]
fn another_datacenter_has_no_path_as_in_consul() {
    let agent = agent_with_one_service();
    let error = agent
        .get("/v1/health/service/keep?dc=dc9")
        .expect_error(500);
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("No path to datacenter")),
        "{error}"
    );
    agent
        .get("/v1/health/service/keep?dc=dc1")
        .expect_status(200);
}
