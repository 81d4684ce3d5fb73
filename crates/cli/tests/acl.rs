//! ACLs against the real binary: `acl { enabled = true default_policy = "deny" }` in
//! `--config-file`, a management token, a token with service-prefix rules, the anonymous rules,
//! the bootstrap token, and every refusal a 403 with a JSON body that changes nothing. Secrets
//! never reach the log.

mod support;

use reqwest::Method;
use serde_json::{Value, json};
use support::{Agent, Response};

const MANAGEMENT: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
const DEPLOYER: &str = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d";
const READER: &str = "11223344-5566-4788-99aa-bbccddeeff00";

fn acl_file(dir: &std::path::Path, management: bool) -> std::path::PathBuf {
    let management = match management {
        true => format!("tokens {{ initial_management = \"{MANAGEMENT}\" }}"),
        false => String::new(),
    };
    let text = format!(
        r#"
acl {{
  enabled        = true
  default_policy = "deny"
  {management}
  token "deployer" {{
    secret = "{DEPLOYER}"
    service_prefix "web-" {{ policy = "write" }}
  }}
  token "reader" {{
    secret = "{READER}"
    service_prefix "" {{ policy = "read" }}
    agent_prefix "" {{ policy = "read" }}
  }}
  anonymous {{
    service_prefix "public-" {{ policy = "read" }}
  }}
}}
"#
    );
    let path = dir.join("agent.hcl");
    std::fs::write(&path, text).expect("write the acl file");
    path
}

fn with_token(
    agent: &Agent,
    method: Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Response {
    agent.request(method, path, &[("X-Consul-Token", token)], body)
}

fn service(name: &str, id: &str) -> Value {
    json!({"Name": name, "ID": id, "Address": "127.0.0.1", "Port": 8080,
           "Check": {"TTL": "30s", "CheckID": format!("{id}-ttl")}})
}

fn start(management: bool) -> (tempfile::TempDir, Agent) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = acl_file(dir.path(), management);
    let agent = Agent::start(&["--config-file", file.to_str().expect("utf-8 path")]);
    (dir, agent)
}

#[test]
fn writes_need_a_token_that_covers_the_service() {
    let (_dir, agent) = start(true);
    let register = "/v1/agent/service/register";

    // No token: anonymous may write nothing. 403, a JSON body, nothing registered.
    let refused = agent.request(
        Method::PUT,
        register,
        &[],
        Some(&service("web-api", "web-1")),
    );
    let body = refused.expect_error(403);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("Permission denied"),
        "{body}"
    );

    // The deployer may write web-*, not db.
    with_token(
        &agent,
        Method::PUT,
        register,
        DEPLOYER,
        Some(&service("web-api", "web-1")),
    )
    .expect_write_ok();
    let body = with_token(
        &agent,
        Method::PUT,
        register,
        DEPLOYER,
        Some(&service("db", "db-1")),
    )
    .expect_error(403);
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("service:write") && message.contains("\"db\""),
        "{message}"
    );

    // An unknown token is refused outright, as Consul does ("ACL not found").
    let body = with_token(
        &agent,
        Method::PUT,
        register,
        "not-a-known-token-000000",
        Some(&service("web-api", "web-2")),
    )
    .expect_error(403);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ACL not found"),
        "{body}"
    );

    // Management may do anything, through `Authorization: Bearer` too.
    agent
        .request(
            Method::PUT,
            register,
            &[("Authorization", &format!("Bearer {MANAGEMENT}"))],
            Some(&service("db", "db-1")),
        )
        .expect_write_ok();

    // The deployer cannot take over db's instance ID by registering it under a web- name,
    // deregister it, or heartbeat its check.
    with_token(
        &agent,
        Method::PUT,
        register,
        DEPLOYER,
        Some(&service("web-evil", "db-1")),
    )
    .expect_error(403);
    with_token(
        &agent,
        Method::PUT,
        "/v1/agent/service/deregister/db-1",
        DEPLOYER,
        None,
    )
    .expect_error(403);
    with_token(
        &agent,
        Method::PUT,
        "/v1/agent/check/fail/db-1-ttl",
        DEPLOYER,
        None,
    )
    .expect_error(403);
    with_token(
        &agent,
        Method::PUT,
        "/v1/agent/check/pass/web-1-ttl",
        DEPLOYER,
        None,
    )
    .expect_status(200);

    // Nothing refused changed anything: exactly web-1 and db-1, db-1 still a db.
    let services = with_token(&agent, Method::GET, "/v1/agent/services", MANAGEMENT, None).json();
    let ids: Vec<&String> = services.as_object().expect("object").keys().collect();
    assert_eq!(ids, ["db-1", "web-1"]);
    assert_eq!(services["db-1"]["Service"], "db");
    assert_eq!(
        with_token(
            &agent,
            Method::GET,
            "/v1/health/checks/db",
            MANAGEMENT,
            None
        )
        .json()[0]["Status"],
        "critical",
        "a TTL check starts critical and was never touched"
    );
}

#[test]
fn reads_are_filtered_or_refused_by_service() {
    let (_dir, agent) = start(true);
    for (name, id) in [
        ("web-api", "web-1"),
        ("db", "db-1"),
        ("public-api", "pub-1"),
    ] {
        with_token(
            &agent,
            Method::PUT,
            "/v1/agent/service/register",
            MANAGEMENT,
            Some(&service(name, id)),
        )
        .expect_write_ok();
        with_token(
            &agent,
            Method::PUT,
            &format!("/v1/agent/check/pass/{id}-ttl"),
            MANAGEMENT,
            None,
        )
        .expect_status(200);
    }

    // Lists are filtered to what the token may read.
    let names = |response: Response| -> Vec<String> {
        response.expect_status(200);
        response
            .json()
            .as_object()
            .expect("object")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(names(agent.get("/v1/catalog/services")), ["public-api"]);
    assert_eq!(
        names(with_token(
            &agent,
            Method::GET,
            "/v1/catalog/services",
            DEPLOYER,
            None
        )),
        ["web-api"]
    );
    assert_eq!(
        names(with_token(
            &agent,
            Method::GET,
            "/v1/catalog/services",
            READER,
            None
        )),
        ["db", "public-api", "web-api"]
    );
    assert_eq!(
        names(with_token(
            &agent,
            Method::GET,
            "/v1/agent/services",
            DEPLOYER,
            None
        )),
        ["web-1"]
    );

    // A named service the token may not read is a 403, on every interface.
    for path in [
        "/v1/health/service/db",
        "/v1/catalog/service/db",
        "/v1/health/checks/db",
        "/v1/endpoints/db",
        "/v1/watch/db",
    ] {
        agent.get(path).expect_error(403);
    }
    agent.get("/v1/endpoints/public-api").expect_status(200);
    with_token(&agent, Method::GET, "/v1/endpoints/db", READER, None).expect_status(200);
    // `?token=` works as in Consul (python-consul sends it that way).
    agent
        .get(&format!("/v1/health/service/db?token={READER}"))
        .expect_status(200);

    // The all-services watch cannot be filtered per token: only a token that reads everything.
    agent.get("/v1/watch").expect_error(403);

    // Agent operations need agent rules.
    agent.get("/v1/agent/self").expect_error(403);
    agent.get("/metrics").expect_error(403);
    with_token(&agent, Method::GET, "/v1/agent/self", READER, None).expect_status(200);
    with_token(&agent, Method::GET, "/metrics", READER, None).expect_status(200);

    // Liveness, readiness, the leader and the API description stay open.
    for path in ["/health", "/ready", "/v1/status/leader", "/v1/openapi.json"] {
        agent.get(path).expect_status(200);
    }

    // Who am I.
    let me = with_token(&agent, Method::GET, "/v1/acl/token/self", DEPLOYER, None).json();
    assert_eq!(me["AccessorID"], "deployer");

    // No secret was ever logged.
    let log = agent.stderr();
    for secret in [MANAGEMENT, DEPLOYER, READER] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

#[test]
fn bootstrap_hands_out_one_management_token_that_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = tempfile::tempdir().expect("data dir");
    let file = acl_file(dir.path(), false);
    let args = ["--config-file", file.to_str().expect("utf-8 path")];
    let agent = Agent::start_on(data.path(), &args);
    let first = agent.put_empty("/v1/acl/bootstrap");
    first.expect_status(200);
    let secret = first.json()["SecretID"]
        .as_str()
        .expect("SecretID")
        .to_owned();
    let body = agent.put_empty("/v1/acl/bootstrap").expect_error(403);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no longer allowed"),
        "{body}"
    );
    with_token(
        &agent,
        Method::PUT,
        "/v1/agent/service/register",
        &secret,
        Some(&service("db", "db-1")),
    )
    .expect_write_ok();
    assert!(
        !agent.stderr().contains(&secret),
        "the bootstrap secret reached the log"
    );
    drop(agent);

    let restarted = Agent::start_on(data.path(), &args);
    with_token(
        &restarted,
        Method::GET,
        "/v1/catalog/service/db",
        &secret,
        None,
    )
    .expect_status(200);
    restarted.put_empty("/v1/acl/bootstrap").expect_error(403);
}

#[test]
fn a_bad_acl_file_stops_the_agent_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.hcl");
    std::fs::write(
        &path,
        "acl {\n enabled = true\n default_policy = \"nope\"\n}\n",
    )
    .expect("write");
    let (status, _, stderr) =
        Agent::start_expecting_failure(&["--config-file", path.to_str().expect("utf-8 path")]);
    assert!(!status.success());
    assert!(
        stderr.contains("default_policy") && stderr.contains("\"allow\" or \"deny\""),
        "{stderr}"
    );
}

#[test]
fn without_acls_bootstrap_says_they_are_off() {
    let agent = Agent::start(&[]);
    let body = agent.put_empty("/v1/acl/bootstrap").expect_error(401);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("disabled"),
        "{body}"
    );
}

#[test]
fn the_cli_sends_wayfinder_token() {
    let (_dir, agent) = start(true);
    with_token(
        &agent,
        Method::PUT,
        "/v1/agent/service/register",
        MANAGEMENT,
        Some(&service("db", "db-1")),
    )
    .expect_write_ok();
    let run = |token: Option<&str>| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_wayfinder"));
        command
            .args(["services", "--json"])
            .env("WAYFINDER_HTTP_ADDR", agent.base_url())
            .env_remove("WAYFINDER_TOKEN");
        if let Some(token) = token {
            command.env("WAYFINDER_TOKEN", token);
        }
        command.output().expect("run wayfinder services")
    };
    let anonymous = run(None);
    assert!(!String::from_utf8_lossy(&anonymous.stdout).contains("\"db\""));
    let reader = run(Some(READER));
    assert!(
        reader.status.success(),
        "{}",
        String::from_utf8_lossy(&reader.stderr)
    );
    assert!(String::from_utf8_lossy(&reader.stdout).contains("db"));
}
