//! The binary's life: the banner, who it says it is, log formats, unknown paths, and graceful
//! shutdown on SIGINT/SIGTERM.

mod support;

use serde_json::{Value, json};
use support::{Agent, EXIT_TIMEOUT};

#[test]
fn banner_names_the_bound_ephemeral_address() {
    let agent = Agent::start(&["--dev"]);
    assert_ne!(
        agent.addr.port(),
        0,
        "the banner shows the port actually bound"
    );
    assert!(agent.addr.ip().is_loopback(), "{}", agent.addr);
    assert!(
        !agent.stdout().contains("HTTP API: http://127.0.0.1:0\n"),
        "the banner must not echo the requested :0\n{}",
        agent.stdout()
    );
    agent.get("/v1/status/leader").expect_status(200);
}

#[test]
fn agent_self_and_status_leader_answer_in_consul_shape() {
    let agent = Agent::start(&["--node", "node-a", "--datacenter", "dc7"]);

    let me = agent.get("/v1/agent/self");
    me.expect_status(200);
    let me = me.json();
    let Value::Object(sections) = &me else {
        panic!("agent/self must be an object: {me}");
    };
    for (name, section) in sections {
        assert!(
            section.is_object(),
            "every top-level value of agent/self must be an object (the Go client needs it); {name} = {section}"
        );
    }
    assert_eq!(me["Config"]["Datacenter"], "dc7", "{me}");
    assert_eq!(me["Config"]["NodeName"], "node-a", "{me}");

    let leader = agent.get("/v1/status/leader");
    leader.expect_status(200);
    assert!(
        leader.json().is_string(),
        "leader is a JSON string: {}",
        leader.text()
    );

    agent.register(&json!({"Name": "web", "Port": 80}));
    let health = agent.get("/v1/health/service/web").json();
    assert_eq!(health[0]["Node"]["Node"], "node-a", "{health}");
    assert_eq!(health[0]["Node"]["Datacenter"], "dc7", "{health}");
}

#[test]
fn unknown_paths_are_404() {
    let agent = Agent::start(&[]);
    agent.get("/v1/no/such/endpoint").expect_status(404);
    agent.get("/v2/agent/services").expect_status(404);
    agent
        .put_empty("/v1/agent/service/nonsense/web-1")
        .expect_status(404);
}

#[test]
fn json_log_format_writes_one_json_object_per_stderr_line() {
    let agent = Agent::start(&["--log-format", "json"]);
    agent.register(&json!({"Name": "web", "Port": 80}));
    let lines: Vec<String> = agent.eventually(
        support::CHECK_TIMEOUT,
        "at least one log line on stderr",
        || {
            let stderr = agent.stderr();
            let lines: Vec<String> = stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect();
            if lines.is_empty() {
                Err("no stderr yet".to_owned())
            } else {
                Ok(lines)
            }
        },
    );
    for line in &lines {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(
            parsed.is_ok_and(|v| v.is_object()),
            "with --log-format json every stderr line is a JSON object, got {line:?}"
        );
    }
    let stdout = agent.stdout();
    assert!(
        !stdout
            .lines()
            .any(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_object())),
        "logs go to stderr, not stdout:\n{stdout}"
    );
}

#[test]
fn sigint_shuts_down_cleanly_with_exit_code_0() {
    let mut agent = Agent::start(&[]);
    agent.register(&json!({"Name": "web", "Port": 80}));
    agent.sigint();
    let status = agent.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "SIGINT exit status: {status}");
}

#[test]
fn sigterm_shuts_down_cleanly_with_exit_code_0() {
    let mut agent = Agent::start(&["--dev"]);
    agent.sigterm();
    let status = agent.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "SIGTERM exit status: {status}");
}

#[test]
fn a_wrong_method_gets_405_with_a_json_body_and_allow() {
    let agent = Agent::start(&["--dev"]);
    let response = agent.get("/v1/agent/service/register");
    response.expect_status(405);
    let allow = response.header("allow").unwrap_or_default();
    assert!(allow.contains("PUT"), "Allow header: {allow:?}");
    let body: serde_json::Value = response.json();
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("GET")),
        "{body}"
    );
}
