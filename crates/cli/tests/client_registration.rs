//! The Rust client's self-registration (`wayfinder_client::Registration`) against the real
//! agent binary (issue 5): a process registers itself with a TTL or HTTP check, its heartbeats
//! keep it passing, dropping or deregistering the handle removes it, and when the agent comes
//! back with a fresh data dir the registration reappears by itself. Everything runs on
//! 127.0.0.1 and every wait is bounded.
//!
//! SIGTERM goes to a child process, never to the test process: this test binary run again as
//! `sigterm_helper` (see [`the_default_sigterm_action_deregisters_then_exits`]).

mod support;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::{
    Agent, CHECK_TIMEOUT, EXIT_TIMEOUT, HttpBackend, START_TIMEOUT, TcpRelay, consistently,
    eventually,
};
use tokio::runtime::Runtime;
use wayfinder_client::{CheckStatus, ClientError, OnSigterm, Registered, Registration};

/// How long a registration may take to reappear at a restarted agent: the client's retry
/// back-off is capped at 5 s; the rest is slack for a loaded machine.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(20);

fn runtime() -> Runtime {
    support::client_runtime()
}

/// Registers `registration` with the agent at `url`, panicking with the error.
fn register(rt: &Runtime, registration: Registration, url: &str) -> Registered {
    rt.block_on(registration.register(url))
        .unwrap_or_else(|e| panic!("registering with {url}: {e}"))
}

/// The status and output of check `id`, from `/v1/agent/checks`.
fn status_and_output(check: &Value) -> (String, String) {
    let text = |key: &str| check[key].as_str().unwrap_or_default().to_owned();
    (text("Status"), text("Output"))
}

#[test]
fn heartbeats_keep_a_ttl_registration_passing_and_reports_reach_the_agent() {
    let rt = runtime();
    let agent = Agent::start(&[]);
    // The default OnSigterm (DeregisterAndExit) on purpose: this starts the real SIGTERM
    // listener thread. Nothing sends SIGTERM to the test process, and if something did, exiting
    // is what it would have done anyway.
    let registered = register(
        &rt,
        Registration::new("ttl-worker")
            .port(9001)
            .ttl_check(Duration::from_secs(1)),
        &agent.base_url(),
    );
    let id = registered.id().to_owned();
    assert!(
        id.starts_with("ttl-worker-") && id.ends_with("-9001"),
        "default ID is name-host-port: {id}"
    );
    let check_id = registered.check_id().expect("a TTL check").to_owned();
    assert_eq!(check_id, format!("service:{id}"));

    agent.eventually(CHECK_TIMEOUT, "the instance passing", || {
        let passing = agent.passing_ids("ttl-worker");
        if passing == [id.as_str()] {
            Ok(())
        } else {
            Err(format!("passing: {passing:?}"))
        }
    });
    // Three TTLs without any help from the test: only the heartbeats keep it passing.
    consistently(
        Duration::from_millis(3500),
        "the instance to stay passing past 3×TTL",
        || match agent.check_status(&check_id).as_deref() {
            Some("passing") => Ok(()),
            other => Err(format!("check {check_id} is {other:?}")),
        },
    );

    registered.report(CheckStatus::Warning, "draining");
    let check = agent.wait_for_check(&check_id, "the check warning with the note", |check| {
        status_and_output(check) == ("warning".to_owned(), "draining".to_owned())
    });
    assert_eq!(check["ServiceID"], id.as_str(), "{check}");
    assert!(
        agent.passing_ids("ttl-worker").is_empty(),
        "a warning instance is left out of ?passing"
    );
    assert_eq!(agent.health_service_ids("ttl-worker", ""), [id.as_str()]);
    // And it stays warning: every heartbeat repeats the report.
    consistently(
        Duration::from_millis(1500),
        "the report to be repeated by every heartbeat",
        || match agent.check(&check_id).map(|c| status_and_output(&c)) {
            Some((status, output)) if status == "warning" && output == "draining" => Ok(()),
            other => Err(format!("check {check_id} is {other:?}")),
        },
    );

    registered.report(CheckStatus::Passing, "");
    agent.wait_for_status(&check_id, "passing");
}

#[test]
fn dropping_the_handle_deregisters_before_drop_returns() {
    let rt = runtime();
    let agent = Agent::start(&[]);
    let registered = register(
        &rt,
        Registration::new("dropped")
            .id("dropped-1")
            .port(9002)
            .ttl_check(Duration::from_millis(300))
            .on_sigterm(OnSigterm::Ignore),
        &agent.base_url(),
    );
    assert!(agent.services().contains_key("dropped-1"));

    drop(registered);
    // Drop waits for the agent's answer (bounded), so no polling is needed here.
    assert!(
        !agent.services().contains_key("dropped-1"),
        "{:?}",
        agent.services()
    );
    // The heartbeat task is gone too: had it survived, its next heartbeat (every 100 ms) would
    // hit the unknown check and register the instance again.
    consistently(
        Duration::from_secs(1),
        "the instance to stay gone",
        || match agent.services().contains_key("dropped-1") {
            false => Ok(()),
            true => Err("dropped-1 is back".to_owned()),
        },
    );
}

#[test]
fn an_explicit_deregister_removes_the_instance_and_stops_the_task() {
    let rt = runtime();
    let agent = Agent::start(&[]);
    let backend = HttpBackend::start();
    let registered = register(
        &rt,
        Registration::new("leaving")
            .id("leaving-1")
            .port(9003)
            .http_check(backend.url(), Duration::from_millis(200))
            .resync_interval(Duration::from_millis(100))
            .on_sigterm(OnSigterm::Ignore),
        &agent.base_url(),
    );
    agent.wait_for_status("service:leaving-1", "passing");

    rt.block_on(registered.deregister()).expect("deregister");
    assert!(!agent.services().contains_key("leaving-1"));
    assert_eq!(agent.check("service:leaving-1"), None);
    // Had the resync task survived, it would find the instance missing within 100 ms and
    // register it again.
    consistently(
        Duration::from_secs(1),
        "the instance to stay gone",
        || match agent.services().contains_key("leaving-1") {
            false => Ok(()),
            true => Err("leaving-1 is back".to_owned()),
        },
    );
}

#[test]
fn the_registration_carries_the_whole_description() {
    let rt = runtime();
    let agent = Agent::start(&[]);
    let backend = HttpBackend::start();
    let _registered = register(
        &rt,
        Registration::new("described")
            .id("described-1")
            .address("127.0.0.2")
            .port(9004)
            .tag("v2")
            .tag("urlprefix-/described")
            .meta("version", "1.2.3")
            .weights(10, 1)
            .http_check(backend.url(), Duration::from_millis(500))
            .deregister_critical_after(Duration::from_secs(90))
            .on_sigterm(OnSigterm::Ignore),
        &agent.base_url(),
    );

    let services = agent.services();
    let service = &services["described-1"];
    assert_eq!(service["Service"], "described", "{service}");
    assert_eq!(service["Address"], "127.0.0.2", "{service}");
    assert_eq!(service["Port"], 9004, "{service}");
    assert_eq!(
        service["Tags"],
        serde_json::json!(["v2", "urlprefix-/described"])
    );
    assert_eq!(service["Meta"], serde_json::json!({"version": "1.2.3"}));
    assert_eq!(
        service["Weights"],
        serde_json::json!({"Passing": 10, "Warning": 1})
    );

    let check = agent.wait_for_status("service:described-1", "passing");
    let definition = &check["Definition"];
    assert_eq!(definition["HTTP"], backend.url().as_str(), "{check}");
    assert_eq!(definition["Interval"], "500ms", "{check}");
    assert_eq!(
        definition["DeregisterCriticalServiceAfter"], "1m30s",
        "{check}"
    );
    assert!(backend.hits() > 0, "the agent probes the registered URL");
}

#[test]
fn a_restarted_agent_with_a_fresh_data_dir_gets_the_registrations_back() {
    let rt = runtime();
    let mut first = Agent::start(&[]);
    // The client's agent address stays the same while the agent behind it is replaced (the
    // harness always starts agents on a fresh ephemeral port).
    let relay = TcpRelay::start(Some(first.addr));
    let backend = HttpBackend::start();
    let ttl = register(
        &rt,
        Registration::new("comeback-ttl")
            .id("comeback-ttl-1")
            .port(9005)
            .tag("ttl")
            .ttl_check(Duration::from_secs(1))
            .on_sigterm(OnSigterm::Ignore),
        &relay.url(),
    );
    let http = register(
        &rt,
        Registration::new("comeback-http")
            .id("comeback-http-1")
            .port(9006)
            .http_check(backend.url(), Duration::from_millis(200))
            .resync_interval(Duration::from_millis(200))
            .on_sigterm(OnSigterm::Ignore),
        &relay.url(),
    );
    ttl.report(CheckStatus::Warning, "still warming up");
    first.wait_for_check("service:comeback-ttl-1", "the TTL check warning", |check| {
        status_and_output(check).0 == "warning"
    });
    first.wait_for_status("service:comeback-http-1", "passing");

    // The agent dies; a new one starts with an empty catalog and takes over the address.
    first.kill9();
    let second = Agent::start(&[]);
    assert!(
        second.services().is_empty(),
        "a fresh data dir knows nothing"
    );
    relay.set_target(Some(second.addr));

    second.eventually(RECOVERY_TIMEOUT, "both registrations back", || {
        let services = second.services();
        let ttl_check = second.check("service:comeback-ttl-1");
        let http_check = second.check("service:comeback-http-1");
        let back = services.contains_key("comeback-ttl-1")
            && services.contains_key("comeback-http-1")
            && ttl_check.as_ref().map(status_and_output)
                == Some(("warning".to_owned(), "still warming up".to_owned()))
            && http_check.as_ref().map(|c| status_and_output(c).0) == Some("passing".to_owned());
        if back {
            Ok(())
        } else {
            Err(format!(
                "services {:?}, TTL check {ttl_check:?}, HTTP check {http_check:?}",
                services.keys().collect::<Vec<_>>()
            ))
        }
    });
    // Re-registered with the whole description, not just the ID.
    let services = second.services();
    assert_eq!(services["comeback-ttl-1"]["Port"], 9005);
    assert_eq!(
        services["comeback-ttl-1"]["Tags"],
        serde_json::json!(["ttl"])
    );
    assert_eq!(services["comeback-http-1"]["Port"], 9006);
    drop(http);
    drop(ttl);
    assert!(second.services().is_empty(), "both deregistered on drop");
}

#[test]
fn an_unreachable_agent_fails_the_registration_with_advice() {
    let rt = runtime();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let error = rt
        .block_on(
            Registration::new("lonely")
                .on_sigterm(OnSigterm::Ignore)
                .register(&url),
        )
        .expect_err("nothing listens there");
    assert!(
        matches!(error, ClientError::Unreachable { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&url) && message.contains("is `wayfinder agent` running there?"),
        "the message names the agent and what to check: {message}"
    );
}

#[test]
fn a_refused_registration_quotes_the_agent() {
    let rt = runtime();
    let agent = Agent::start(&[]);
    let error = rt
        .block_on(
            Registration::new("not_dns_safe")
                .on_sigterm(OnSigterm::Ignore)
                .register(&agent.base_url()),
        )
        .expect_err("an underscore is not DNS-safe");
    let ClientError::Status {
        ref what,
        status,
        ref body,
    } = error
    else {
        panic!("expected the agent's refusal, got {error:?}");
    };
    assert_eq!(status, 400, "{error}");
    assert_eq!(what, "PUT /v1/agent/service/register");
    assert!(body.contains("not DNS-safe"), "the agent's reason: {body}");
    assert!(agent.services().is_empty());
}

/// Set in the environment of the child process `sigterm_helper` runs in: the agent's URL.
const SIGTERM_HELPER_AGENT: &str = "WAYFINDER_TEST_SIGTERM_HELPER_AGENT";

/// Not a test: the child process of [`the_default_sigterm_action_deregisters_then_exits`]. It
/// registers with the default `OnSigterm` and waits (bounded) to be ended by SIGTERM.
#[test]
#[ignore = "the child process of the_default_sigterm_action_deregisters_then_exits"]
fn sigterm_helper() {
    let Ok(agent) = std::env::var(SIGTERM_HELPER_AGENT) else {
        return;
    };
    let rt = runtime();
    let _registered = register(
        &rt,
        Registration::new("sigterm-default")
            .id("sigterm-default-1")
            .ttl_check(Duration::from_secs(30)),
        &agent,
    );
    // The SIGTERM listener exits the process; getting past this means no SIGTERM came.
    std::thread::sleep(Duration::from_secs(30));
    panic!("no SIGTERM within 30 s");
}

#[test]
fn the_default_sigterm_action_deregisters_then_exits() {
    let agent = Agent::start(&[]);
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["sigterm_helper", "--exact", "--ignored", "--nocapture"])
        .env(SIGTERM_HELPER_AGENT, agent.base_url())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the test binary as sigterm_helper");
    let registered = eventually(START_TIMEOUT, "the helper to register", || {
        if let Ok(Some(status)) = child.try_wait() {
            return Ok(Err(format!("the helper exited early: {status}")));
        }
        match agent.services().contains_key("sigterm-default-1") {
            true => Ok(Ok(())),
            false => Err("not registered yet".to_owned()),
        }
    });
    if let Err(early) = registered {
        panic!("{early}: {}", helper_stderr(&mut child));
    }

    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"));
    kill(pid, Signal::SIGTERM).expect("sending SIGTERM to the helper");
    let status = eventually(EXIT_TIMEOUT, "the helper to exit on SIGTERM", || {
        child
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_owned())
    });
    assert_eq!(
        status.code(),
        Some(wayfinder_client::SIGTERM_EXIT_CODE),
        "exits 143 like a SIGTERM'd process: {}",
        helper_stderr(&mut child)
    );
    // No waiting: the listener deregisters before it exits.
    assert!(
        !agent.services().contains_key("sigterm-default-1"),
        "deregistered before exiting; helper stderr: {}",
        helper_stderr(&mut child)
    );
}

/// What the helper wrote to stderr, for failure messages (kills it first if it still runs).
fn helper_stderr(child: &mut std::process::Child) -> String {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut text = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut text);
    }
    text
}
