//! Blocking queries (`?index=N&wait=D`) against the real binary: every catalog, health and agent
//! read and `/v1/endpoints` stays open until its index passes `N` and answers promptly once it
//! does; a watcher of one service is not woken by another (Consul's issue #1244); without a
//! change the answer comes at the deadline (plus at most 1/16 jitter) with the same index.

mod support;

use serde_json::json;
use std::time::Duration;
use support::{Agent, PendingGet, Response};
// tokio's Instant is std's outside a paused runtime; clippy.toml bans std's.
use tokio::time::Instant;

/// How long a blocked query is observed to make sure it is still open.
const STILL_BLOCKED: Duration = Duration::from_millis(300);
/// How soon a blocked query must answer once the change that concerns it was acknowledged.
const WAKE_BOUND: Duration = Duration::from_secs(1);
/// Slack past a deadline for scheduling and HTTP on a busy 2-core machine.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// Reads scoped to one service, `web`: they wait on `web`'s own index.
const WEB_READS: [&str; 4] = [
    "/v1/health/service/web",
    "/v1/catalog/service/web",
    "/v1/health/checks/web",
    "/v1/endpoints/web",
];
/// Reads over the whole catalog: they wait on the catalog-wide index.
const CATALOG_READS: [&str; 3] = [
    "/v1/catalog/services",
    "/v1/health/state/any",
    "/v1/agent/services",
];

/// Registers an instance with a passing TTL check (long enough never to expire during a
/// test), so it shows in every read: health, catalog, checks and endpoints.
fn register(agent: &Agent, service: &str, id: &str) {
    agent.register(&json!({
        "Name": service, "ID": id, "Address": "127.0.0.1", "Port": 8080,
        "Check": {"CheckID": format!("{id}-ttl"), "TTL": "10m", "Status": "passing"}
    }));
}

/// `path` with `query` appended.
fn with_query(path: &str, query: &str) -> String {
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}{query}")
}

/// Reads `path`'s current index and opens `path?index=<it>&wait=<wait>` in the background.
#[track_caller]
fn block_on_current(agent: &Agent, path: &str, wait: &str) -> (u64, PendingGet) {
    let now = agent.get(path);
    now.expect_status(200);
    let index = now.index();
    let pending = agent.get_in_background(&with_query(path, &format!("index={index}&wait={wait}")));
    (index, pending)
}

/// Asserts that a blocked `pending` (opened at `index`) answers within [`WAKE_BOUND`] of
/// `change` returning, not before `change` started, with a higher index; returns the answer.
#[track_caller]
fn assert_woken_by(path: &str, index: u64, pending: PendingGet, change: impl FnOnce()) -> Response {
    let changing = Instant::now();
    change();
    let answer = pending.answer_within(WAKE_BOUND);
    assert!(
        answer.arrived >= changing,
        "{path} answered before the change was made"
    );
    let response = answer.response;
    response.expect_status(200);
    assert!(
        response.index() > index,
        "{path} was woken by a change, so its index moves past {index}: got {}",
        response.index()
    );
    response
}

/// Asserts that `path?index=<current>&wait=5s` stays open until `change`, then answers promptly
/// with a higher index; returns the answer.
#[track_caller]
fn assert_blocks_until(agent: &Agent, path: &str, change: impl FnOnce()) -> Response {
    let (index, pending) = block_on_current(agent, path, "5s");
    pending.assert_pending_for(STILL_BLOCKED);
    assert_woken_by(path, index, pending, change)
}

/// The longest a `wait` of `wait` may take: the wait, Consul's jitter of up to 1/16 of it, and
/// [`DEADLINE_MARGIN`].
fn deadline_bound(wait: Duration) -> Duration {
    wait + wait / 16 + DEADLINE_MARGIN
}

#[test]
fn per_service_reads_block_until_their_service_changes() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1");
    for (n, path) in WEB_READS.into_iter().enumerate() {
        let id = format!("web-new-{n}");
        let response = assert_blocks_until(&agent, path, || register(&agent, "web", &id));
        assert!(
            response.text().contains(&format!("\"{id}\"")),
            "{path} answers with the new instance {id}: {}",
            response.text()
        );
        if path.starts_with("/v1/endpoints/") {
            assert_eq!(
                response.header("ETag"),
                Some(format!("\"{}\"", response.index()).as_str()),
                "the Endpoint Provider's ETag moves with the index"
            );
        }
    }
}

#[test]
fn catalog_wide_reads_block_until_anything_changes() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1");
    for (n, path) in CATALOG_READS.into_iter().enumerate() {
        let service = format!("svc-{n}");
        let id = format!("svc-{n}-1");
        let response = assert_blocks_until(&agent, path, || register(&agent, &service, &id));
        assert!(
            response.text().contains(&format!("\"{service}\"")),
            "{path} answers with the new service {service}: {}",
            response.text()
        );
    }
}

#[test]
fn a_watcher_of_one_service_is_not_woken_by_another() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1");

    // Consul wakes every watcher of a table (its issue #1244); here a change to db leaves web's
    // watchers asleep until their deadline, which they meet with the index they were given.
    let wait = Duration::from_secs(2);
    let watchers: Vec<(&str, u64, PendingGet)> = WEB_READS
        .into_iter()
        .map(|path| {
            let (index, pending) = block_on_current(&agent, path, "2s");
            (path, index, pending)
        })
        .collect();
    watchers[0].2.assert_pending_for(STILL_BLOCKED);
    register(&agent, "db", "db-1");
    for (path, index, pending) in watchers {
        let answer = pending.answer_within(deadline_bound(wait));
        let took = answer.took();
        assert!(
            took >= wait,
            "{path} answered after {took:?}, before its 2s deadline, though only db changed: {:?}",
            answer.response.text()
        );
        assert!(
            took < deadline_bound(wait),
            "{path} answered after {took:?}, well past its 2s deadline (+1/16 jitter)"
        );
        answer.response.expect_status(200);
        assert_eq!(
            answer.response.index(),
            index,
            "{path} at its deadline answers with the index it was given"
        );
    }

    // ... and a change to web does wake them, even after db changed again meanwhile.
    for (n, path) in WEB_READS.into_iter().enumerate() {
        let (index, pending) = block_on_current(&agent, path, "5s");
        pending.assert_pending_for(STILL_BLOCKED);
        register(&agent, "db", &format!("db-{}", n + 2));
        pending.assert_pending_for(STILL_BLOCKED);
        let id = format!("web-{}", n + 2);
        assert_woken_by(path, index, pending, || register(&agent, "web", &id));
    }
}

#[test]
fn without_a_change_the_answer_comes_at_the_deadline_with_the_same_index() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1");
    let wait = Duration::from_secs(1);
    let watchers: Vec<(&str, u64, PendingGet)> = WEB_READS
        .into_iter()
        .chain(CATALOG_READS)
        .map(|path| {
            let (index, pending) = block_on_current(&agent, path, "1s");
            (path, index, pending)
        })
        .collect();
    for (path, index, pending) in watchers {
        let answer = pending.answer_within(deadline_bound(wait) + Duration::from_secs(1));
        let took = answer.took();
        assert!(
            took >= wait && took < deadline_bound(wait),
            "{path}?wait=1s answered after {took:?}; expected within [1s, {:?})",
            deadline_bound(wait)
        );
        answer.response.expect_status(200);
        assert_eq!(answer.response.index(), index, "{path}");
    }
}

#[test]
fn an_index_ahead_of_the_server_waits_out_the_deadline_and_answers_the_current_one() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1");
    // Consul does not special-case an index it has not reached (reference §3, rule 4): the
    // query blocks until its deadline, then answers with the current, lower index, which tells
    // a well-behaved client to reset to 0.
    let wait = Duration::from_secs(1);
    for path in ["/v1/health/service/web", "/v1/catalog/services"] {
        let current = agent.get(path).index();
        let ahead = current + 1000;
        let answer = agent
            .get_in_background(&format!("{path}?index={ahead}&wait=1s"))
            .answer_within(deadline_bound(wait) + Duration::from_secs(1));
        let took = answer.took();
        assert!(
            took >= wait && took < deadline_bound(wait),
            "{path}?index={ahead}&wait=1s answered after {took:?}"
        );
        answer.response.expect_status(200);
        assert_eq!(
            answer.response.index(),
            current,
            "{path} answers the current index, lower than the one asked for"
        );
    }
}

#[test]
fn index_zero_or_none_answers_at_once() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1");
    for path in WEB_READS.into_iter().chain(CATALOG_READS) {
        let current = agent.get(path).index();
        for query in ["index=0&wait=5s", "wait=5s"] {
            let answer = agent
                .get_in_background(&with_query(path, query))
                .answer_within(Duration::from_secs(2));
            assert!(
                answer.took() < Duration::from_secs(1),
                "{path}?{query} must not block; took {:?}",
                answer.took()
            );
            answer.response.expect_status(200);
            assert_eq!(answer.response.index(), current, "{path}?{query}");
        }
    }
}

#[test]
fn a_wait_beyond_ten_minutes_is_accepted_and_clamped() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1");
    // Clamping to 10 minutes cannot be observed without waiting that long; what a client sees is
    // that the request is accepted and answers at the next change.
    for (path, wait) in [
        ("/v1/health/service/web", "20m"),
        ("/v1/endpoints/web", "1h"),
        ("/v1/catalog/services", "87600h"),
    ] {
        let (index, pending) = block_on_current(&agent, path, wait);
        pending.assert_pending_for(STILL_BLOCKED);
        let id = format!("web-{wait}");
        assert_woken_by(path, index, pending, || register(&agent, "web", &id));
    }
}

#[test]
fn bad_index_or_wait_is_refused_naming_the_field() {
    let agent = Agent::start(&[]);
    register(&agent, "web", "web-1");
    for path in WEB_READS.into_iter().chain(CATALOG_READS) {
        for (query, field) in [
            ("index=abc", "index"),
            ("index=-1", "index"),
            ("index=1&wait=ten", "wait"),
            // Go durations need a unit; a bare number is refused.
            ("index=1&wait=10", "wait"),
        ] {
            let body = agent.get(&with_query(path, query)).expect_error(400);
            assert_eq!(body["field"], field, "{path}?{query}: {body}");
        }
    }
}

#[test]
fn a_deregistration_wakes_the_watchers_of_its_service() {
    let agent = Agent::start(&[]);
    for n in 1..=5 {
        register(&agent, "web", &format!("web-{n}"));
    }
    // One instance leaves under each per-service read.
    for (path, id) in WEB_READS
        .into_iter()
        .zip(["web-5", "web-4", "web-3", "web-2"])
    {
        let response = assert_blocks_until(&agent, path, || agent.deregister(id));
        assert!(
            !response.text().contains(&format!("\"{id}\"")),
            "{path} no longer lists {id}: {}",
            response.text()
        );
    }

    // The last one leaves: the index still moves up (a deletion is a change), health answers an
    // empty list and the Endpoint Provider no longer knows the service.
    let (index, health) = block_on_current(&agent, "/v1/health/service/web", "5s");
    let (_, endpoints) = block_on_current(&agent, "/v1/endpoints/web", "5s");
    health.assert_pending_for(STILL_BLOCKED);
    let response = assert_woken_by("/v1/health/service/web", index, health, || {
        agent.deregister("web-1");
    });
    assert_eq!(response.json(), json!([]));
    endpoints
        .answer_within(WAKE_BOUND)
        .response
        .expect_error(404);
}
