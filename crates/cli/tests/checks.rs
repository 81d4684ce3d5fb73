//! Health checks moving instances between passing, warning and critical against real local
//! servers and processes: HTTP, TCP, exec, TTL; and removal after being critical too long.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::{
    Agent, CHECK_TIMEOUT, HttpBackend, ScriptStatus, TcpBackend, consistently, is_go_duration,
};

/// The check's `Output`, or "" when absent.
fn output(check: &Value) -> &str {
    check["Output"].as_str().unwrap_or_default()
}

#[track_caller]
fn assert_latency_is_a_go_duration(check: &Value) {
    let latency = check["Latency"].as_str().unwrap_or_default();
    assert!(
        is_go_duration(latency),
        "Latency must be a Go duration string once the check has run: {check}"
    );
}

#[test]
fn http_check_follows_the_backend_status() {
    let agent = Agent::start(&[]);
    let backend = HttpBackend::start();
    agent.register(&json!({
        "Name": "web", "ID": "web-1", "Address": "127.0.0.1", "Port": 8080,
        "Check": {"CheckID": "web-http", "HTTP": backend.url(), "Interval": "300ms", "Timeout": "1s"}
    }));

    let check = agent.wait_for_status("web-http", "passing");
    assert!(backend.hits() >= 1, "the agent probed the backend");
    assert_latency_is_a_go_duration(&check);
    assert!(
        output(&check).contains("200"),
        "Output shows the last run: {check}"
    );
    assert_eq!(agent.passing_ids("web"), ["web-1"]);

    backend.set_status(500);
    let check = agent.wait_for_status("web-http", "critical");
    assert!(
        output(&check).contains("500"),
        "Output shows the last run: {check}"
    );
    assert_eq!(agent.passing_ids("web"), Vec::<String>::new());

    backend.set_status(429);
    let check = agent.wait_for_status("web-http", "warning");
    assert!(
        output(&check).contains("429"),
        "Output shows the last run: {check}"
    );
    assert_eq!(
        agent.passing_ids("web"),
        Vec::<String>::new(),
        "?passing drops warning instances"
    );

    backend.set_status(200);
    agent.wait_for_status("web-http", "passing");
    assert_eq!(agent.passing_ids("web"), ["web-1"]);
}

#[test]
fn first_run_comes_soon_after_registration_not_after_one_interval() {
    let agent = Agent::start(&[]);
    let backend = HttpBackend::start();
    agent.register(&json!({
        "Name": "web", "ID": "web-1", "Port": 8080,
        "Check": {"CheckID": "web-http", "HTTP": backend.url(), "Interval": "30s"}
    }));
    // Within ~1 s plus jitter of at most min(interval, 1 s); 5 s leaves room for a busy box.
    agent.eventually(
        Duration::from_secs(5),
        "the first run of a 30s-interval check",
        || match agent.check_status("web-http").as_deref() {
            Some("passing") => Ok(()),
            other => Err(format!("{other:?}, backend hits {}", backend.hits())),
        },
    );
}

#[test]
fn results_that_do_not_change_the_status_write_nothing() {
    let agent = Agent::start(&[]);
    let backend = HttpBackend::start();
    agent.register(&json!({
        "Name": "web", "ID": "web-1", "Port": 8080,
        "Check": {"CheckID": "web-http", "HTTP": backend.url(), "Interval": "200ms"}
    }));
    agent.wait_for_status("web-http", "passing");
    let index = agent.get("/v1/health/service/web").index();
    let hits = backend.hits();
    consistently(
        Duration::from_millis(1500),
        "the health index to stay put while the check keeps passing",
        || match agent.get("/v1/health/service/web").index() {
            now if now == index => Ok(()),
            now => Err(format!("index moved {index} -> {now}")),
        },
    );
    assert!(
        backend.hits() >= hits + 3,
        "the check kept running meanwhile ({} -> {} probes)",
        hits,
        backend.hits()
    );
}

#[test]
fn thresholds_need_consecutive_results_before_a_status_changes() {
    let agent = Agent::start(&[]);
    let backend = HttpBackend::start();
    agent.register(&json!({
        "Name": "web", "ID": "web-1", "Port": 8080,
        "Check": {"CheckID": "web-http", "HTTP": backend.url(), "Interval": "200ms",
                  "SuccessBeforePassing": 2, "FailuresBeforeCritical": 3}
    }));
    agent.wait_for_status("web-http", "passing");

    backend.set_status(500);
    let before = backend.hits();
    // FailuresBeforeWarning defaults to FailuresBeforeCritical (as in Consul): no early warning.
    agent.wait_for_check("web-http", "critical after 3 failures", |check| {
        assert_ne!(
            check["Status"], "warning",
            "no warning threshold was set: {check}"
        );
        check["Status"] == "critical"
    });
    assert!(
        backend.hits() >= before + 3,
        "critical after {} failing probes; FailuresBeforeCritical is 3",
        backend.hits() - before
    );

    backend.set_status(200);
    let before = backend.hits();
    agent.wait_for_status("web-http", "passing");
    assert!(
        backend.hits() >= before + 2,
        "passing after {} good probes; SuccessBeforePassing is 2",
        backend.hits() - before
    );
}

#[test]
fn exec_check_output_is_truncated_to_4_kib() {
    let agent = Agent::start(&["--enable-script-checks"]);
    agent.register(&json!({
        "Name": "job", "ID": "job-1",
        "Check": {"CheckID": "job-exec", "Interval": "500ms",
                  "Args": ["/bin/sh", "-c", "head -c 10000 /dev/zero | tr '\\0' x; exit 0"]}
    }));
    let check = agent.wait_for_status("job-exec", "passing");
    let captured = output(&check).len();
    assert!(
        (1024..=4096 + 256).contains(&captured),
        "10000 bytes of output are kept as at most 4 KiB (plus a note), got {captured} bytes"
    );
}

#[test]
fn checks_registered_on_their_own_attach_and_detach() {
    let agent = Agent::start(&[]);
    agent.register(&json!({"Name": "web", "ID": "web-1", "Port": 8080}));
    // python-consul's agent.check.register: lowercase keys, `serviceid`.
    agent
        .put_json(
            "/v1/agent/check/register",
            &json!({"name": "web-heartbeat", "id": "web-hb", "serviceid": "web-1",
                    "ttl": "30s", "notes": "beats"}),
        )
        .expect_write_ok();
    let check = agent.check("web-hb").expect("registered");
    assert_eq!(check["ServiceID"], "web-1", "{check}");
    assert_eq!(check["ServiceName"], "web", "{check}");
    assert_eq!(check["Notes"], "beats", "{check}");
    assert_eq!(check["Status"], "critical", "{check}");
    let health = agent.get("/v1/health/checks/web").json();
    assert!(
        health
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["CheckID"] == "web-hb")),
        "{health}"
    );
    assert_eq!(agent.passing_ids("web"), Vec::<String>::new());

    agent
        .put_empty("/v1/agent/check/deregister/web-hb")
        .expect_write_ok();
    assert!(agent.check("web-hb").is_none());
    assert!(agent.services().contains_key("web-1"), "the service stays");
    assert_eq!(
        agent.passing_ids("web"),
        ["web-1"],
        "no checks left: passing"
    );

    // python-consul 0.7.1 deregisters checks with GET.
    agent
        .put_json(
            "/v1/agent/check/register",
            &json!({"Name": "again", "ServiceID": "web-1", "TTL": "30s"}),
        )
        .expect_write_ok();
    assert!(
        agent.check("again").is_some(),
        "the check ID defaults to its Name"
    );
    agent
        .get("/v1/agent/check/deregister/again")
        .expect_write_ok();
    assert!(agent.checks().is_empty());
}

#[test]
fn http_check_times_out_to_critical() {
    let agent = Agent::start(&[]);
    // A listener that never answers: the connection is accepted by the kernel (backlog) and
    // the request just hangs.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a silent listener");
    let url = format!("http://{}/health", silent.local_addr().expect("address"));
    agent.register(&json!({
        "Name": "slow", "ID": "slow-1", "Port": 1,
        "Check": {"CheckID": "slow-http", "HTTP": url, "Interval": "500ms", "Timeout": "300ms",
                  "Status": "passing"}
    }));
    let check = agent.wait_for_status("slow-http", "critical");
    assert_latency_is_a_go_duration(&check);
}

#[test]
fn tcp_check_follows_the_listener() {
    let agent = Agent::start(&[]);
    let mut backend = TcpBackend::start();
    agent.register(&json!({
        "Name": "db", "ID": "db-1", "Port": 5432,
        "Check": {"CheckID": "db-tcp", "TCP": backend.addr(), "Interval": "300ms", "Timeout": "1s"}
    }));

    let check = agent.wait_for_status("db-tcp", "passing");
    assert_latency_is_a_go_duration(&check);
    assert_eq!(agent.passing_ids("db"), ["db-1"]);

    backend.close();
    agent.wait_for_status("db-tcp", "critical");
    assert_eq!(agent.passing_ids("db"), Vec::<String>::new());

    backend.reopen();
    agent.wait_for_status("db-tcp", "passing");
    assert_eq!(agent.passing_ids("db"), ["db-1"]);
}

#[test]
fn exec_check_follows_the_script_exit_code() {
    let agent = Agent::start(&["--enable-script-checks"]);
    let script = ScriptStatus::new(0);
    agent.register(&json!({
        "Name": "job", "ID": "job-1", "Port": 9000,
        "Check": {"CheckID": "job-exec", "Args": script.args(), "Interval": "300ms", "Timeout": "2s"}
    }));

    let check = agent.wait_for_status("job-exec", "passing");
    assert!(
        output(&check).contains("exit code 0"),
        "Output is the script's: {check}"
    );
    assert_latency_is_a_go_duration(&check);

    script.set(1);
    let check = agent.wait_for_status("job-exec", "warning");
    assert!(output(&check).contains("exit code 1"), "{check}");

    script.set(2);
    let check = agent.wait_for_status("job-exec", "critical");
    assert!(output(&check).contains("exit code 2"), "{check}");
    assert_eq!(agent.passing_ids("job"), Vec::<String>::new());

    script.set(0);
    agent.wait_for_status("job-exec", "passing");
    assert_eq!(agent.passing_ids("job"), ["job-1"]);
}

#[test]
fn exec_check_via_the_go_client_spelling_and_check_register() {
    // The Go client sends `ScriptArgs`; `/v1/agent/check/register` adds a check to a service.
    let agent = Agent::start(&["--enable-script-checks"]);
    let script = ScriptStatus::new(1);
    agent.register(&json!({"Name": "job", "ID": "job-1", "Port": 9000}));
    agent
        .put_json(
            "/v1/agent/check/register",
            &json!({"ID": "job-extra", "Name": "extra", "ServiceID": "job-1",
                    "ScriptArgs": script.args(), "Interval": "300ms"}),
        )
        .expect_write_ok();
    let check = agent.wait_for_status("job-extra", "warning");
    assert_eq!(check["ServiceID"], "job-1", "{check}");
}

#[test]
fn script_checks_via_the_api_need_enable_script_checks() {
    let agent = Agent::start(&["--enable-local-script-checks"]);
    let script = ScriptStatus::new(0);
    let index = agent.catalog_index();

    let error = agent
        .put_json(
            "/v1/agent/service/register",
            &json!({"Name": "job", "ID": "job-1",
                    "Check": {"Args": script.args(), "Interval": "1s"}}),
        )
        .expect_error(400);
    let message = error["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("--enable-script-checks"),
        "the error names the flag: {error}"
    );

    agent.register(&json!({"Name": "plain", "ID": "plain-1"}));
    let error = agent
        .put_json(
            "/v1/agent/check/register",
            &json!({"ID": "x", "Name": "x", "ServiceID": "plain-1",
                    "ScriptArgs": script.args(), "Interval": "1s"}),
        )
        .expect_error(400);
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|m| m.contains("--enable-script-checks")),
        "{error}"
    );

    let services = agent.services();
    assert!(
        !services.contains_key("job-1"),
        "nothing registered: {services:?}"
    );
    assert!(agent.checks().is_empty(), "no check registered");
    assert!(
        agent.catalog_index() > index,
        "only the plain registration moved the index"
    );
}

#[test]
fn ttl_check_follows_heartbeats_and_expires() {
    let agent = Agent::start(&[]);
    agent.register(&json!({
        "Name": "worker", "ID": "worker-1", "Port": 8080,
        "Check": {"CheckID": "worker-ttl", "TTL": "1500ms"}
    }));
    assert_eq!(
        agent.check_status("worker-ttl").as_deref(),
        Some("critical"),
        "checks start critical"
    );

    agent
        .put_empty("/v1/agent/check/pass/worker-ttl?note=alive")
        .expect_write_ok();
    let check = agent.check("worker-ttl").expect("the check exists");
    assert_eq!(
        check["Status"], "passing",
        "an acknowledged pass is visible: {check}"
    );
    assert_eq!(output(&check), "alive", "?note becomes Output: {check}");
    assert_eq!(agent.passing_ids("worker"), ["worker-1"]);

    // Heartbeats well within the TTL keep it passing past several TTLs' worth of time.
    let started = tokio::time::Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        agent
            .put_empty("/v1/agent/check/pass/worker-ttl")
            .expect_write_ok();
        consistently(
            Duration::from_millis(300),
            "worker-ttl passing while heartbeating",
            || match agent.check_status("worker-ttl").as_deref() {
                Some("passing") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }

    // No heartbeat for the TTL: critical.
    agent.wait_for_status("worker-ttl", "critical");
    assert_eq!(agent.passing_ids("worker"), Vec::<String>::new());

    agent
        .put_empty("/v1/agent/check/warn/worker-ttl?note=slow")
        .expect_write_ok();
    let check = agent.check("worker-ttl").expect("the check exists");
    assert_eq!(check["Status"], "warning", "{check}");
    assert_eq!(output(&check), "slow", "{check}");

    agent
        .put_empty("/v1/agent/check/fail/worker-ttl?note=down")
        .expect_write_ok();
    let check = agent.check("worker-ttl").expect("the check exists");
    assert_eq!(check["Status"], "critical", "{check}");
    assert_eq!(output(&check), "down", "{check}");

    agent
        .put_json(
            "/v1/agent/check/update/worker-ttl",
            &json!({"Status": "passing", "Output": "all good"}),
        )
        .expect_write_ok();
    let check = agent.check("worker-ttl").expect("the check exists");
    assert_eq!(check["Status"], "passing", "{check}");
    assert_eq!(output(&check), "all good", "{check}");

    // python-consul 0.7.1 heartbeats with GET.
    agent
        .get("/v1/agent/check/warn/worker-ttl")
        .expect_write_ok();
    assert_eq!(agent.check_status("worker-ttl").as_deref(), Some("warning"));
}

#[test]
fn passing_filter_needs_every_check_passing() {
    let agent = Agent::start(&[]);
    let ttl = |id: &str, status: &str| json!({"CheckID": id, "TTL": "60s", "Status": status});
    agent.register(&json!({
        "Name": "api", "ID": "api-1", "Port": 1,
        "Checks": [ttl("api-1-a", "passing"), ttl("api-1-b", "passing")]
    }));
    agent.register(&json!({
        "Name": "api", "ID": "api-2", "Port": 2,
        "Checks": [ttl("api-2-a", "passing"), ttl("api-2-b", "warning")]
    }));
    agent.register(&json!({
        "Name": "api", "ID": "api-3", "Port": 3,
        "Checks": [ttl("api-3-a", "critical"), ttl("api-3-b", "passing")]
    }));
    agent.register(&json!({"Name": "api", "ID": "api-4", "Port": 4}));

    assert_eq!(agent.passing_ids("api"), ["api-1", "api-4"]);
    assert_eq!(
        agent.health_service_ids("api", "?passing=false"),
        ["api-1", "api-2", "api-3", "api-4"]
    );
    assert_eq!(
        agent.health_service_ids("api", ""),
        ["api-1", "api-2", "api-3", "api-4"]
    );

    let warning = agent.get("/v1/health/state/warning").json();
    let ids: Vec<&str> = warning
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["CheckID"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, ["api-2-b"], "{warning}");
}

#[test]
fn deregister_critical_service_after_removes_the_instance() {
    let agent = Agent::start(&[]);
    let backend = HttpBackend::start();
    agent.register(&json!({
        "Name": "flaky", "ID": "flaky-1", "Port": 8080,
        "Check": {"CheckID": "flaky-http", "HTTP": backend.url(), "Interval": "200ms",
                  "Timeout": "1s", "DeregisterCriticalServiceAfter": "1s"}
    }));
    agent.wait_for_status("flaky-http", "passing");
    // Passing for longer than the deadline does not count towards it.
    consistently(
        Duration::from_millis(1500),
        "flaky-1 registered while passing",
        || {
            if agent.services().contains_key("flaky-1") {
                Ok(())
            } else {
                Err("removed while passing".to_owned())
            }
        },
    );

    backend.set_status(500);
    agent.wait_for_status("flaky-http", "critical");
    agent.eventually(CHECK_TIMEOUT, "flaky-1 removed after 1s critical", || {
        if agent.services().contains_key("flaky-1") {
            Err("still registered".to_owned())
        } else {
            Ok(())
        }
    });
    assert!(agent.check("flaky-http").is_none(), "its checks go with it");
    assert_eq!(agent.health_service_ids("flaky", ""), Vec::<String>::new());
}

#[test]
fn deregister_critical_service_after_spares_an_instance_that_recovers() {
    let agent = Agent::start(&[]);
    agent.register(&json!({
        "Name": "steady", "ID": "steady-1", "Port": 8080,
        "Check": {"CheckID": "steady-ttl", "TTL": "30s", "Status": "passing",
                  "DeregisterCriticalServiceAfter": "2s"}
    }));
    agent
        .put_empty("/v1/agent/check/fail/steady-ttl")
        .expect_write_ok();
    agent
        .put_empty("/v1/agent/check/pass/steady-ttl")
        .expect_write_ok();
    // Critical only for a moment, so it must still be there after the 2 s deadline.
    consistently(
        Duration::from_millis(3000),
        "steady-1 stays registered",
        || {
            if agent.services().contains_key("steady-1") {
                Ok(())
            } else {
                Err("removed although it recovered".to_owned())
            }
        },
    );
}
