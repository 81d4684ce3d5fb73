//! TTL expiry and `deregister_critical_after`, on Tokio's paused clock: the tests jump through
//! minutes of check time in milliseconds, and assert when things happen to the virtual second.

mod support;

use std::time::Duration;
use support::*;
use tokio::time::Instant;
use wayfinder_catalog::Status;
use wayfinder_health::{HealthError, Report};

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn a_ttl_check_without_heartbeats_expires() {
    let mut h = Harness::new();
    let mut definition = check("beat", ttl(10 * SEC));
    definition.initial_status = Some(Status::Passing);
    let start = Instant::now();
    h.register("web-1", vec![definition]);

    let report = h.next_written(60 * SEC).await;
    assert_eq!(
        status_of(&report),
        ("beat", Status::Critical, "TTL expired")
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed >= 10 * SEC && elapsed < 11 * SEC,
        "expired after {elapsed:?}"
    );
    assert_eq!(h.status("beat"), Status::Critical);
    // Once expired it stays quiet until the next heartbeat.
    h.no_report(60 * SEC).await;
}

#[tokio::test(start_paused = true)]
async fn heartbeats_restart_the_ttl_and_their_note_survives_expiry() {
    let mut h = Harness::new();
    let mut definition = check("beat", ttl(10 * SEC));
    definition.initial_status = Some(Status::Passing);
    h.register("web-1", vec![definition]);
    let id = check_id("beat");

    tokio::time::sleep(6 * SEC).await;
    h.scheduler
        .heartbeat(&id, Status::Passing, "all good".to_owned())
        .expect("a TTL check takes heartbeats");
    let beat = Instant::now();
    let observation = h.scheduler.observation("beat").expect("recorded");
    assert_eq!(
        (observation.status, observation.output.as_str()),
        (Status::Passing, "all good")
    );

    // Not at the original deadline (10 s after start) ...
    h.no_report(9 * SEC).await;
    // ... but 10 s after the heartbeat.
    let report = h.next_written(10 * SEC).await;
    assert_eq!(
        status_of(&report),
        (
            "beat",
            Status::Critical,
            "TTL expired (last output before timeout follows): all good"
        )
    );
    let elapsed = beat.elapsed();
    assert!(
        elapsed >= 10 * SEC && elapsed < 11 * SEC,
        "expired {elapsed:?} after the heartbeat"
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_supersedes_an_expiry_still_in_flight() {
    let mut h = Harness::new();
    let mut definition = check("beat", ttl(5 * SEC));
    definition.initial_status = Some(Status::Passing);
    h.register("web-1", vec![definition]);

    let expiry = h.next_report(60 * SEC).await;
    assert!(h.scheduler.is_current(&expiry));
    // The service heartbeats before the agent got to the expiry: the API writes passing, and
    // the stale expiry must not overwrite it.
    h.scheduler
        .heartbeat(&check_id("beat"), Status::Passing, String::new())
        .expect("heartbeat");
    assert!(!h.scheduler.is_current(&expiry));
}

#[tokio::test(start_paused = true)]
async fn heartbeats_are_refused_for_unknown_and_non_ttl_checks() {
    let mut h = Harness::new();
    h.register(
        "web-1",
        vec![check("tcp", tcp("127.0.0.1:9".parse().expect("addr")))],
    );
    let err = h
        .scheduler
        .heartbeat(&check_id("nope"), Status::Passing, String::new())
        .expect_err("unknown");
    assert_eq!(err, HealthError::UnknownCheck(check_id("nope")));
    assert_eq!(
        err.to_string(),
        "Unknown check ID \"nope\". Ensure that the check ID is passed, not the check name."
    );
    let err = h
        .scheduler
        .heartbeat(&check_id("tcp"), Status::Passing, String::new())
        .expect_err("not ttl");
    assert_eq!(
        err.to_string(),
        "CheckID \"tcp\" does not have associated TTL"
    );
}

#[tokio::test(start_paused = true)]
async fn a_check_that_starts_critical_deregisters_after_the_delay() {
    let mut h = Harness::new();
    let mut definition = check("beat", ttl(1000 * SEC));
    definition.policy.deregister_critical_after = Some(30 * SEC);
    let start = Instant::now();
    h.register("web-1", vec![definition]);

    let report = h.next_written(120 * SEC).await;
    assert_eq!(
        report,
        Report::DeregisterCritical {
            instance: instance_id("web-1"),
            check: check_id("beat"),
        }
    );
    let elapsed = start.elapsed();
    assert!(
        elapsed >= 30 * SEC && elapsed < 31 * SEC,
        "deregistered after {elapsed:?} (no 1-minute floor)"
    );
    assert!(h.catalog.instance("web-1").is_none());
    assert_eq!(h.scheduler.runner_count(), 0, "its runner stopped with it");
}

#[tokio::test(start_paused = true)]
async fn the_deregister_delay_counts_from_when_the_catalog_turned_critical() {
    let mut h = Harness::new();
    let mut definition = check("beat", ttl(5 * SEC));
    definition.initial_status = Some(Status::Passing);
    definition.policy.deregister_critical_after = Some(10 * SEC);
    let start = Instant::now();
    h.register("web-1", vec![definition]);

    let expiry = h.next_written(60 * SEC).await;
    assert_eq!(status_of(&expiry).1, Status::Critical);
    let critical_at = Instant::now();
    assert!(critical_at - start >= 5 * SEC);

    let report = h.next_written(60 * SEC).await;
    assert!(
        matches!(report, Report::DeregisterCritical { .. }),
        "{report:?}"
    );
    let elapsed = critical_at.elapsed();
    assert!(
        elapsed >= 10 * SEC && elapsed < 11 * SEC,
        "deregistered {elapsed:?} after turning critical"
    );
}

#[tokio::test(start_paused = true)]
async fn recovering_cancels_the_deregister_timer() {
    let mut h = Harness::new();
    let mut definition = check("beat", ttl(1000 * SEC));
    definition.policy.deregister_critical_after = Some(30 * SEC);
    h.register("web-1", vec![definition]);

    tokio::time::sleep(20 * SEC).await;
    // A passing heartbeat, written by the API as the agent does.
    h.scheduler
        .heartbeat(&check_id("beat"), Status::Passing, String::new())
        .expect("heartbeat");
    h.apply(wayfinder_catalog::Command::SetCheckStatus {
        id: check_id("beat"),
        status: Status::Passing,
        output: String::new(),
    });
    h.no_report(60 * SEC).await;

    // Critical again: the timer starts over from now, not from the first critical spell.
    h.apply(wayfinder_catalog::Command::SetCheckStatus {
        id: check_id("beat"),
        status: Status::Critical,
        output: String::new(),
    });
    let again = Instant::now();
    let report = h.next_written(120 * SEC).await;
    assert!(
        matches!(report, Report::DeregisterCritical { .. }),
        "{report:?}"
    );
    assert!(again.elapsed() >= 30 * SEC && again.elapsed() < 31 * SEC);
}

#[tokio::test(start_paused = true)]
async fn node_level_checks_never_ask_to_deregister() {
    let mut h = Harness::new();
    let mut definition = check("node", ttl(1000 * SEC));
    definition.policy.deregister_critical_after = Some(10 * SEC);
    h.apply(wayfinder_catalog::Command::RegisterCheck(Box::new(
        definition,
    )));
    h.no_report(60 * SEC).await;
}
