//! How runners follow the catalog: started, informed, restarted and stopped by `update`, no
//! duplicate reports while a write is in flight, first runs staggered, and a clean shutdown.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::time::Instant;
use wayfinder_catalog::{Catalog, Command, Status};
use wayfinder_health::{Report, Scheduler, SchedulerConfig};

async fn open_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    addr
}

#[tokio::test]
async fn runners_start_and_stop_with_their_checks() {
    let mut h = Harness::new();
    h.register(
        "web-1",
        vec![
            check("a", ttl(Duration::from_secs(60))),
            check("b", ttl(Duration::from_secs(60))),
        ],
    );
    h.register("web-2", vec![check("c", ttl(Duration::from_secs(60)))]);
    assert_eq!(h.scheduler.runner_count(), 3);

    h.scheduler
        .heartbeat(&check_id("a"), Status::Passing, "hi".to_owned())
        .expect("heartbeat");
    assert!(h.scheduler.observation("a").is_some());

    h.apply(Command::DeregisterCheck(check_id("c")));
    assert_eq!(h.scheduler.runner_count(), 2);
    h.apply(Command::Deregister(instance_id("web-1")));
    assert_eq!(h.scheduler.runner_count(), 0);
    assert!(h.scheduler.observation("a").is_none());
}

#[tokio::test]
async fn a_redefined_check_gets_a_new_runner_and_an_unchanged_one_keeps_its_own() {
    let closed = closed_port().await;
    let open = open_port().await;
    let mut h = Harness::new();
    let mut definition = check("svc", tcp(closed));
    definition.initial_status = Some(Status::Passing);
    h.register("web-1", vec![definition.clone()]);
    let report = h.next_written(PATIENCE).await;
    assert_eq!(status_of(&report).1, Status::Critical);

    // Same definition again: nothing changes, the runner and its observation stay.
    h.register("web-1", vec![definition.clone()]);
    assert!(h.scheduler.observation("svc").is_some());

    // New address: a new runner probes it.
    definition.kind = tcp(open);
    definition.initial_status = None;
    h.register("web-1", vec![definition]);
    let report = h.next_written(PATIENCE).await;
    assert_eq!(
        status_of(&report),
        (
            "svc",
            Status::Passing,
            format!("TCP connect {open}: Success").as_str()
        )
    );
    assert_eq!(h.scheduler.runner_count(), 1);
}

#[tokio::test]
async fn no_duplicate_reports_while_a_write_is_in_flight() {
    let closed = closed_port().await;
    let mut h = Harness::new();
    let mut definition = check("svc", tcp(closed));
    definition.initial_status = Some(Status::Passing);
    definition.policy.interval = Duration::from_millis(20);
    h.register("web-1", vec![definition]);

    let report = h.next_report(PATIENCE).await;
    assert_eq!(status_of(&report).1, Status::Critical);
    // The write has not landed: many more runs, and not one more report.
    h.no_report(Duration::from_millis(500)).await;
    assert!(h.scheduler.is_current(&report));

    h.write(&report);
    h.no_report(Duration::from_millis(300)).await;

    // Someone else writes passing: the runner learns it and corrects it again.
    h.apply(Command::SetCheckStatus {
        id: check_id("svc"),
        status: Status::Passing,
        output: String::new(),
    });
    let again = h.next_written(PATIENCE).await;
    assert_eq!(status_of(&again).1, Status::Critical);
}

#[tokio::test]
async fn a_stale_report_is_no_longer_current() {
    let closed = closed_port().await;
    let mut h = Harness::new();
    let mut definition = check("svc", tcp(closed));
    definition.initial_status = Some(Status::Passing);
    h.register("web-1", vec![definition]);
    let report = h.next_report(PATIENCE).await;
    assert!(h.scheduler.is_current(&report));
    // The check goes away before the agent gets to the report.
    h.apply(Command::DeregisterCheck(check_id("svc")));
    assert!(!h.scheduler.is_current(&report));
}

#[tokio::test]
async fn first_runs_are_soon_and_staggered() {
    let open = open_port().await;
    let mut h = Harness::new();
    let start = Instant::now();
    // Four instances of 25 checks (an instance holds at most 32).
    for instance in 0..4 {
        let checks = (0..25)
            .map(|i| {
                let mut definition = check(&format!("c{instance}-{i}"), tcp(open));
                definition.policy.interval = Duration::from_secs(30);
                definition
            })
            .collect();
        h.register(&format!("web-{instance}"), checks);
    }
    let mut times = Vec::new();
    for _ in 0..100 {
        let report = h.next_written(PATIENCE).await;
        assert_eq!(status_of(&report).1, Status::Passing);
        times.push(start.elapsed());
    }
    let (first, last) = (times[0], times[99]);
    assert!(
        last < Duration::from_millis(2500),
        "all ran within the first-run bound, last after {last:?}"
    );
    assert!(
        last - first > Duration::from_millis(300),
        "first runs are spread, not simultaneous ({first:?}..{last:?})"
    );
}

#[tokio::test]
async fn sync_reconciles_everything() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let scheduler = Scheduler::new(tx, SchedulerConfig::default());
    let mut h = Harness::new();
    h.register(
        "web-1",
        vec![
            check("a", ttl(Duration::from_secs(60))),
            check("b", ttl(Duration::from_secs(60))),
        ],
    );
    scheduler.sync(&h.catalog);
    assert_eq!(scheduler.runner_count(), 2);
    h.apply(Command::DeregisterCheck(check_id("a")));
    scheduler.sync(&h.catalog);
    assert_eq!(scheduler.runner_count(), 1);
    scheduler.sync(&Catalog::new(0));
    assert_eq!(scheduler.runner_count(), 0);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn only_owned_checks_get_runners_and_ownership_changes_move_them() {
    let mut h = Harness::new();
    let mine = std::sync::Arc::new(std::sync::Mutex::new(vec!["a".to_owned()]));
    let owned = std::sync::Arc::clone(&mine);
    h.scheduler.set_ownership(std::sync::Arc::new(move |id| {
        owned
            .lock()
            .expect("ownership list")
            .iter()
            .any(|o| o == id.as_str())
    }));
    h.register(
        "web-1",
        vec![
            check("a", ttl(Duration::from_secs(60))),
            check("b", ttl(Duration::from_secs(60))),
        ],
    );
    assert_eq!(h.scheduler.runner_count(), 1, "only the owned check runs");
    assert!(h.scheduler.runs_check("a") && !h.scheduler.runs_check("b"));

    // The member set changed: this agent now owns b, not a.
    *mine.lock().expect("ownership list") = vec!["b".to_owned()];
    h.scheduler.sync(&h.catalog);
    assert!(h.scheduler.runs_check("b") && !h.scheduler.runs_check("a"));
    assert_eq!(h.scheduler.runner_count(), 1);
}

#[tokio::test]
async fn shutdown_stops_runners_mid_run_and_starts_nothing_after() {
    let mut h = Harness::new();
    let mut definition = check("sleepy", shell("sleep 30"));
    definition.policy.timeout = Duration::from_secs(60);
    h.register("web-1", vec![definition]);
    // Wait until the process is running (first run is at most 100 ms away).
    tokio::time::sleep(Duration::from_millis(300)).await;

    tokio::time::timeout(Duration::from_secs(5), h.scheduler.shutdown())
        .await
        .expect("shutdown does not wait for the check's timeout");
    assert_eq!(h.scheduler.runner_count(), 0);

    h.register("web-2", vec![check("late", ttl(Duration::from_secs(1)))]);
    assert_eq!(h.scheduler.runner_count(), 0);
    // Nothing runs, so nothing reports; the senders are gone with the runners.
    if let Ok(Some(report)) =
        tokio::time::timeout(Duration::from_millis(1500), h.reports.recv()).await
    {
        panic!("report after shutdown: {report:?}");
    }
}

#[tokio::test]
async fn a_closed_report_channel_stops_runners_quietly() {
    let closed = closed_port().await;
    let mut h = Harness::new();
    let mut definition = check("svc", tcp(closed));
    definition.initial_status = Some(Status::Passing);
    h.register("web-1", vec![definition]);
    h.reports.close();
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::time::timeout(Duration::from_secs(5), h.scheduler.shutdown())
        .await
        .expect("shutdown");
    assert!(matches!(
        h.reports.recv().await,
        None | Some(Report::Status { .. })
    ));
}
