//! What survives: `kill -9` during concurrent registrations loses no acknowledged write, and a
//! clean restart keeps instances, checks, their states and the index.

mod support;

use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use support::{Agent, EXIT_TIMEOUT, http_client, temp_dir};

const WRITERS: usize = 16;
const ACKED_BEFORE_KILL: usize = 300;

#[test]
fn kill_9_during_concurrent_registrations_loses_no_acknowledged_write() {
    let data = temp_dir("wayfinder-durable-");
    let mut agent = Agent::start_on(data.path(), &[]);
    let url = format!("{}/v1/agent/service/register", agent.base_url());

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let cut_off = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let (url, acked, stop) = (url.clone(), acked.clone(), stop.clone());
            let cut_off = cut_off.clone();
            thread::spawn(move || {
                let client = http_client();
                for n in 0.. {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let id = format!("dur-{writer}-{n}");
                    let body = json!({
                        "Name": "durable", "ID": id, "Port": 10_000 + n % 50_000,
                        "Tags": [format!("writer-{writer}")],
                        "Check": {"CheckID": format!("{id}-ttl"), "TTL": "10m", "Status": "passing"}
                    });
                    match client.put(&url).body(body.to_string()).send() {
                        Ok(response) if response.status() == 200 => {
                            acked.lock().expect("acked lock").push(id);
                        }
                        Ok(response) => panic!(
                            "registering {id} answered {}: {:?}",
                            response.status(),
                            response.text()
                        ),
                        // The agent was killed: this request and the rest are unacknowledged.
                        Err(_) => {
                            cut_off.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                }
            })
        })
        .collect();

    agent.eventually(
        Duration::from_secs(120),
        &format!("{ACKED_BEFORE_KILL} acknowledged registrations"),
        || match acked.lock().expect("acked lock").len() {
            n if n >= ACKED_BEFORE_KILL => Ok(()),
            n => Err(format!("{n} acknowledged")),
        },
    );
    // Mid-stream: the writers are still sending when the agent dies.
    agent.kill9();
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.join().expect("a writer thread panicked");
    }
    let acked = acked.lock().expect("acked lock").clone();
    assert!(acked.len() >= ACKED_BEFORE_KILL);
    assert!(
        cut_off.load(Ordering::SeqCst) > 0,
        "the kill must land mid-stream: some writer should have lost a request"
    );

    let agent = Agent::start_on(data.path(), &[]);
    let services = agent.services();
    let checks = agent.checks();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !services.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged registrations lost after kill -9, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    let lost_checks: Vec<String> = acked
        .iter()
        .map(|id| format!("{id}-ttl"))
        .filter(|id| !checks.contains_key(id))
        .collect();
    assert!(
        lost_checks.is_empty(),
        "{} checks of acknowledged registrations lost, e.g. {:?}",
        lost_checks.len(),
        &lost_checks[..lost_checks.len().min(10)]
    );
    for id in acked.iter().take(20) {
        assert_eq!(services[id]["Service"], "durable", "{}", services[id]);
    }
}

#[test]
fn ttl_check_state_survives_a_clean_restart_until_its_ttl_runs_out() {
    let data = temp_dir("wayfinder-durable-");
    let mut agent = Agent::start_on(data.path(), &[]);
    agent.register(&json!({
        "Name": "worker", "ID": "worker-1", "Port": 8080,
        "Checks": [
            {"CheckID": "worker-ttl", "TTL": "6s"},
            {"CheckID": "worker-steady", "TTL": "10m"}
        ]
    }));
    agent
        .put_empty("/v1/agent/check/pass/worker-ttl?note=fresh")
        .expect_write_ok();
    agent
        .put_empty("/v1/agent/check/warn/worker-steady?note=busy")
        .expect_write_ok();
    agent.sigterm();
    assert_eq!(agent.wait_exit(EXIT_TIMEOUT).code(), Some(0));

    let agent = Agent::start_on(data.path(), &[]);
    let checks = agent.checks();
    let ttl = &checks["worker-ttl"];
    assert_eq!(ttl["Status"], "passing", "restored, within its TTL: {ttl}");
    assert_eq!(ttl["Output"], "fresh", "{ttl}");
    let steady = &checks["worker-steady"];
    assert_eq!(steady["Status"], "warning", "{steady}");
    assert_eq!(steady["Output"], "busy", "{steady}");
    assert_eq!(agent.passing_ids("worker"), Vec::<String>::new());

    // Nobody heartbeats after the restart: the TTL still runs out.
    agent.eventually(
        Duration::from_secs(20),
        "worker-ttl to expire",
        || match agent.check_status("worker-ttl").as_deref() {
            Some("critical") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn sigterm_exits_0_and_a_restart_finds_everything() {
    let data = temp_dir("wayfinder-durable-");
    let mut agent = Agent::start_on(data.path(), &[]);
    for n in 0..20 {
        agent.register(&json!({
            "Name": if n % 2 == 0 { "even" } else { "odd" },
            "ID": format!("svc-{n}"),
            "Port": 9000 + n,
            "Meta": {"n": n.to_string()},
            "Check": {"CheckID": format!("svc-{n}-ttl"), "TTL": "10m"}
        }));
    }
    for n in 15..20 {
        agent.deregister(&format!("svc-{n}"));
    }
    let services_before = agent.services();
    let checks_before = agent.checks();
    let index_before = agent.catalog_index();
    let health_index_before = agent.get("/v1/health/service/even").index();

    agent.sigterm();
    let status = agent.wait_exit(EXIT_TIMEOUT);
    assert_eq!(status.code(), Some(0), "SIGTERM exit status: {status}");

    let agent = Agent::start_on(data.path(), &[]);
    let services_after = agent.services();
    assert_eq!(services_after.len(), 15, "{:?}", services_after.keys());
    assert_eq!(services_after, services_before);
    let checks_after = agent.checks();
    let mut ids_before: Vec<&String> = checks_before.keys().collect();
    let mut ids_after: Vec<&String> = checks_after.keys().collect();
    ids_before.sort();
    ids_after.sort();
    assert_eq!(ids_after, ids_before);

    // The index never goes backwards across a restart: clients hold it across our restarts.
    assert!(agent.catalog_index() >= index_before);
    assert!(agent.get("/v1/health/service/even").index() >= health_index_before);

    // And the restarted agent keeps writing with a growing index.
    agent.register(&json!({"Name": "later", "ID": "later-1"}));
    assert!(agent.catalog_index() > index_before);
}

#[test]
fn dev_mode_keeps_nothing_across_restarts() {
    let mut agent = Agent::start(&["--dev"]);
    agent.register(&json!({"Name": "web", "ID": "web-1"}));
    agent.sigterm();
    assert_eq!(agent.wait_exit(EXIT_TIMEOUT).code(), Some(0));
    // It wrote nothing into its working directory's default ./wayfinder-data.
    let default_data_dir = agent.work_dir().join("wayfinder-data");
    assert!(
        !default_data_dir.exists(),
        "{} exists",
        default_data_dir.display()
    );

    let agent = Agent::start(&["--dev"]);
    assert!(
        agent.services().is_empty(),
        "--dev uses a fresh temporary data dir"
    );
}
