//! Cluster mode (issue 7): several agents sharing one catalog in a real 3-member etcd cluster
//! on loopback (`--store etcd://…`). A write through one agent is acknowledged once etcd
//! committed it and that agent applied it; every other agent applies it from etcd's watch and
//! serves it from memory, blocking queries included.
//!
//! Every test here needs etcd: they are `#[ignore]`d, and `scripts/test` installs etcd and
//! runs them.

mod support;

use serde_json::{Value, json};
use std::time::Duration;
use support::etcd::EtcdCluster;
use support::{Agent, eventually};

/// How long a write may take to reach another agent, or an agent to get over an etcd member's
/// death (the watch is re-created within ~100 ms; the rest is slack for a busy 2-core machine).
const SPREAD: Duration = Duration::from_secs(15);

fn start_agents(etcd: &EtcdCluster, count: usize) -> Vec<Agent> {
    let url = etcd.url();
    (0..count)
        .map(|_| Agent::start(&["--store", &url]))
        .collect()
}

fn registration(id: &str, address: &str) -> Value {
    json!({
        "Name": "web", "ID": id, "Address": address, "Port": 8080,
        "Check": {"CheckID": format!("{id}-ttl"), "TTL": "10m", "Status": "passing"}
    })
}

/// The instance IDs `/v1/catalog/service/web` lists on `agent`, sorted.
fn catalog_ids(agent: &Agent) -> Vec<String> {
    let response = agent.get("/v1/catalog/service/web");
    response.expect_status(200);
    let mut ids: Vec<String> = response
        .json()
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e["ServiceID"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

#[test]
#[ignore = "needs etcd: scripts/test"]
fn a_write_through_one_agent_is_read_through_the_others() {
    let etcd = EtcdCluster::start();
    let agents = start_agents(&etcd, 3);
    let (a, b, c) = (&agents[0], &agents[1], &agents[2]);

    // A blocking query on C, opened before the write.
    let before = c.get("/v1/health/service/web");
    before.expect_status(200);
    let waiting = c.get_in_background(&format!(
        "/v1/health/service/web?index={}&wait=20s",
        before.index()
    ));

    a.register(&registration("web-1", "10.0.0.1"));
    // Read-your-writes through the agent that acknowledged.
    assert_eq!(catalog_ids(a), ["web-1"], "A acknowledged before applying");
    let index = a.get("/v1/catalog/service/web").index();
    assert!(index > before.index(), "the index grows with the write");

    for (name, agent) in [("B", b), ("C", c)] {
        agent.eventually(
            SPREAD,
            &format!("{name} lists web-1"),
            || match catalog_ids(agent).as_slice() {
                [only] if only == "web-1" => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        // The same write has the same index everywhere: etcd's revision.
        assert_eq!(agent.get("/v1/catalog/service/web").index(), index);
    }
    let endpoints = b.get("/v1/endpoints/web");
    endpoints.expect_status(200);
    let body = endpoints.json();
    assert_eq!(body[0]["host"], "10.0.0.1", "B's /v1/endpoints: {body}");

    let woken = waiting.answer_within(SPREAD).response;
    woken.expect_status(200);
    assert!(
        woken.index() >= index,
        "C's blocking query woke at the write"
    );
    assert_eq!(woken.json()[0]["Service"]["ID"], "web-1");

    // A deregistration through C reaches A.
    c.deregister("web-1");
    assert!(catalog_ids(c).is_empty(), "C acknowledged before applying");
    a.eventually(SPREAD, "A sees the deregistration", || {
        match catalog_ids(a).is_empty() {
            true => Ok(()),
            false => Err("web-1 still listed".to_owned()),
        }
    });
    assert!(a.catalog_index() > index, "indexes only grow");
}

#[test]
#[ignore = "needs etcd: scripts/test"]
fn no_acknowledged_write_is_lost_when_an_etcd_member_dies() {
    let mut etcd = EtcdCluster::start();
    let agents = start_agents(&etcd, 3);
    const WRITES: usize = 30;
    let mut expected = Vec::new();
    for i in 0..WRITES {
        if i == WRITES / 3 {
            etcd.kill(0);
        }
        let id = format!("web-{i:02}");
        agents[i % agents.len()].register(&registration(&id, "10.0.0.2"));
        expected.push(id);
    }
    expected.sort();
    for agent in &agents {
        let seen = eventually(SPREAD, "every agent lists every acknowledged write", || {
            let ids = catalog_ids(agent);
            match ids == expected {
                true => Ok(ids),
                false => Err(format!("{} of {WRITES}", ids.len())),
            }
        });
        assert_eq!(seen.len(), WRITES);
    }
    // The agents' leases outlived the member's death (renewals retried on live members).
    for agent in &agents {
        assert_eq!(
            member_ids(agent).len(),
            agents.len(),
            "no agent dropped out"
        );
    }
    // The member rejoins and the cluster keeps taking writes through every agent.
    etcd.restart(0);
    for (i, agent) in agents.iter().enumerate() {
        agent.register(&registration(&format!("late-{i}"), "10.0.0.3"));
    }
    for agent in &agents {
        agent.eventually(SPREAD, "the late writes spread", || {
            match catalog_ids(agent).len() == WRITES + agents.len() {
                true => Ok(()),
                false => Err("missing late writes".to_owned()),
            }
        });
    }
}

#[test]
#[ignore = "needs etcd: scripts/test"]
fn agents_that_lose_etcd_serve_stale_reads_refuse_writes_and_catch_up() {
    let mut etcd = EtcdCluster::start();
    let agents = start_agents(&etcd, 2);
    let (a, b) = (&agents[0], &agents[1]);
    a.register(&registration("web-1", "10.0.0.1"));
    assert!(
        a.get("/v1/catalog/service/web")
            .header("x-wayfinder-stale")
            .is_none()
    );
    a.get("/ready").expect_status(200);

    etcd.kill_all();
    for (name, agent) in [("A", a), ("B", b)] {
        agent.eventually(SPREAD, &format!("{name} marks its answers stale"), || {
            let response = agent.get("/v1/catalog/service/web");
            match response.header("x-wayfinder-stale") {
                Some("true") => Ok(()),
                other => Err(format!("X-Wayfinder-Stale: {other:?}")),
            }
        });
        // The last catalog is still served, from memory.
        assert_eq!(
            catalog_ids(agent),
            ["web-1"],
            "{name} serves its last catalog"
        );
        let endpoints = agent.get("/v1/endpoints/web");
        endpoints.expect_status(200);
        assert_eq!(endpoints.header("x-wayfinder-stale"), Some("true"));
        let ready = agent.get("/ready");
        let body = ready.json();
        ready.expect_status(503);
        assert!(
            body["store"]
                .as_str()
                .is_some_and(|s| s.starts_with("stale")),
            "/ready says why: {body}"
        );
        let metrics = agent.get("/metrics").text();
        assert!(
            metrics.lines().any(|l| l == "wayfinder_store_stale 1"),
            "{name}'s stale gauge is 1"
        );
        let refused = agent
            .put_json(
                "/v1/agent/service/register",
                &registration("web-2", "10.0.0.2"),
            )
            .expect_error(503);
        assert!(
            refused["error"]
                .as_str()
                .is_some_and(|e| e.contains("etcd")),
            "the refusal names etcd: {refused}"
        );
    }

    etcd.restart_all();
    for (name, agent) in [("A", a), ("B", b)] {
        agent.eventually(SPREAD, &format!("{name} is ready again"), || {
            match agent.get("/ready").status {
                200 => Ok(()),
                other => Err(format!("/ready {other}")),
            }
        });
    }
    // Leases may have expired while etcd was down: both agents join again.
    for (name, agent) in [("A", a), ("B", b)] {
        wait_for_members(agent, name, 2);
    }
    b.register(&registration("web-2", "10.0.0.2"));
    a.eventually(
        SPREAD,
        "A catches up with B's write",
        || match catalog_ids(a).len() {
            2 => Ok(()),
            n => Err(format!("{n} instances")),
        },
    );
    let fresh = a.get("/v1/catalog/service/web");
    assert!(fresh.header("x-wayfinder-stale").is_none());
    assert!(
        a.get("/metrics")
            .text()
            .lines()
            .any(|l| l == "wayfinder_store_stale 0"),
        "the stale gauge is back to 0"
    );
}

#[test]
#[ignore = "needs etcd: scripts/test"]
fn an_agent_behind_a_compaction_reads_everything_again_without_going_backwards() {
    let mut etcd = EtcdCluster::start();
    // A talks to member 0 only, so it alone loses etcd when that member dies.
    let a = Agent::start(&["--store", &etcd.member_url(0)]);
    let b = Agent::start(&["--store", &etcd.url()]);
    b.register(&registration("web-1", "10.0.0.1"));
    b.register(&registration("web-2", "10.0.0.2"));
    a.eventually(SPREAD, "A lists both", || match catalog_ids(&a).len() {
        2 => Ok(()),
        n => Err(format!("{n} instances")),
    });
    let before = a.get("/v1/health/service/web").index();

    etcd.kill(0);
    b.deregister("web-1");
    b.register(&registration("web-3", "10.0.0.3"));
    let latest = b.get("/v1/catalog/service/web").index();
    etcd.compact(1, latest);
    etcd.restart(0);

    a.eventually(SPREAD, "A resyncs to B's catalog", || {
        match catalog_ids(&a).as_slice() {
            [x, y] if x == "web-2" && y == "web-3" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let after = a.get("/v1/health/service/web");
    assert!(after.index() > before, "the index never goes backwards");
    assert!(after.index() >= latest);
    // And A follows the watch again after the resync.
    b.register(&registration("web-4", "10.0.0.4"));
    a.eventually(SPREAD, "A follows B again", || {
        match catalog_ids(&a).len() {
            3 => Ok(()),
            n => Err(format!("{n} instances")),
        }
    });
    a.register(&registration("web-5", "10.0.0.5"));
    assert_eq!(catalog_ids(&a).len(), 4, "A writes again");
}

/// How long after an agent's death the others may take to drop it and run its checks: the
/// lease TTL (the default 5 s) plus slack for the watch, a first run and a busy machine.
const TAKEOVER: Duration = Duration::from_secs(15);

/// The member IDs `/v1/members` lists on `agent`, checking every entry is alive.
fn member_ids(agent: &Agent) -> Vec<String> {
    let response = agent.get("/v1/members");
    response.expect_status(200);
    let body = response.json();
    body.as_array()
        .map(|members| {
            members
                .iter()
                .filter(|m| m["status"] == "alive")
                .filter_map(|m| m["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for_members(agent: &Agent, name: &str, count: usize) -> Vec<String> {
    agent.eventually(TAKEOVER, &format!("{name} lists {count} members"), || {
        let ids = member_ids(agent);
        match ids.len() == count {
            true => Ok(ids),
            false => Err(format!("{ids:?}")),
        }
    })
}

/// The checks `agent` runs (`wayfinder_checks_running`).
fn running(agent: &Agent) -> usize {
    agent
        .metrics()
        .get("wayfinder_checks_running")
        .map_or(0, |n| *n as usize)
}

/// The status of every check in `ids` as `agent` serves it.
fn statuses(agent: &Agent, ids: &[String]) -> Vec<Option<String>> {
    let checks = agent.checks();
    ids.iter()
        .map(|id| {
            checks
                .get(id)
                .and_then(|c| c["Status"].as_str().map(str::to_owned))
        })
        .collect()
}

fn all_are(agent: &Agent, ids: &[String], status: &str) -> Result<(), String> {
    let seen = statuses(agent, ids);
    let off = seen.iter().filter(|s| s.as_deref() != Some(status)).count();
    match off {
        0 => Ok(()),
        n => Err(format!("{n} of {} not {status}: {seen:?}", ids.len())),
    }
}

#[test]
#[ignore = "needs etcd: scripts/test"]
fn checks_are_spread_over_the_members_and_move_when_one_dies() {
    let etcd = EtcdCluster::start();
    let mut agents = start_agents(&etcd, 3);
    for (i, agent) in agents.iter().enumerate() {
        wait_for_members(agent, &format!("agent {i}"), 3);
    }
    // Every agent lists the same members, each under its own address.
    let listed = agents[1].get("/v1/members").json();
    for agent in &agents {
        assert!(
            listed
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["address"] == agent.addr.to_string())),
            "{} missing from {listed}",
            agent.addr
        );
    }

    // 30 services with HTTP checks, all registered through A. With three members the chance
    // that one owns none of 30 checks is 3·(2/3)^30 ≈ 2e-5.
    const SERVICES: usize = 30;
    let backend = support::HttpBackend::start();
    let mut checks = Vec::new();
    for i in 0..SERVICES {
        let id = format!("svc-{i:02}");
        agents[0].register(&json!({
            "Name": "spread", "ID": id, "Address": "10.0.1.1", "Port": 8000 + i,
            "Check": {"CheckID": format!("{id}-http"), "HTTP": backend.url(), "Interval": "300ms"}
        }));
        checks.push(format!("{id}-http"));
    }
    // Every check runs (each turns passing) and each runs on exactly one agent.
    agents[2].eventually(TAKEOVER, "every check passes, seen through C", || {
        all_are(&agents[2], &checks, "passing")
    });
    let shares: Vec<usize> = agents.iter().map(running).collect();
    assert_eq!(
        shares.iter().sum::<usize>(),
        SERVICES,
        "each check runs on exactly one agent: {shares:?}"
    );
    assert!(
        shares.iter().all(|n| *n > 0),
        "every agent runs a share: {shares:?}"
    );

    // A dies without a word: B and C drop it within the lease TTL and take its checks over.
    agents[0].kill9();
    let survivors = &agents[1..];
    for (name, agent) in [("B", &survivors[0]), ("C", &survivors[1])] {
        wait_for_members(agent, name, 2);
    }
    // Every write A acknowledged is still there, on both survivors.
    for agent in survivors {
        let listed = agent.get("/v1/catalog/service/spread").json();
        assert_eq!(
            listed.as_array().map(Vec::len),
            Some(SERVICES),
            "{} lists every registration A acknowledged",
            agent.addr
        );
    }
    eventually(TAKEOVER, "B and C run every check between them", || {
        let shares: Vec<usize> = survivors.iter().map(running).collect();
        match shares.iter().sum::<usize>() == SERVICES {
            true => Ok(()),
            false => Err(format!("{shares:?}")),
        }
    });
    // The checks A ran still change status: the backend fails, and B serves every check as
    // critical.
    backend.set_status(503);
    survivors[0].eventually(TAKEOVER, "every check critical, seen through B", || {
        all_are(&survivors[0], &checks, "critical")
    });
    // B and C keep serving reads and taking writes.
    survivors[1].register(&registration("after-a", "10.0.0.9"));
    survivors[0].eventually(SPREAD, "B lists C's write", || {
        match catalog_ids(&survivors[0]).contains(&"after-a".to_owned()) {
            true => Ok(()),
            false => Err("after-a missing".to_owned()),
        }
    });
    drop(agents);
}

#[test]
#[ignore = "needs etcd: scripts/test"]
fn ttl_heartbeats_through_any_agent_reach_the_checks_owner() {
    let etcd = EtcdCluster::start();
    let mut agents = start_agents(&etcd, 3);
    for (i, agent) in agents.iter().enumerate() {
        wait_for_members(agent, &format!("agent {i}"), 3);
    }
    // Six TTL checks: with three members, some are almost surely run by A or B
    // (1 - (1/3)^6 ≈ 99.9%); every heartbeat goes through C.
    const TTL_CHECKS: usize = 6;
    let mut checks = Vec::new();
    for i in 0..TTL_CHECKS {
        let id = format!("beat-{i}");
        agents[0].register(&json!({
            "Name": "beating", "ID": id, "Address": "10.0.2.1", "Port": 9000 + i,
            "Check": {"CheckID": format!("{id}-ttl"), "TTL": "2s", "Status": "passing"}
        }));
        checks.push(format!("{id}-ttl"));
    }
    let beat_through_c = |agents: &[Agent]| {
        let c = &agents[2];
        for check in &checks {
            c.put_empty(&format!("/v1/agent/check/pass/{check}?note=alive"))
                .expect_status(200);
        }
    };
    // Heartbeats through C every 400 ms for three TTLs: no check expires anywhere.
    for _ in 0..15 {
        beat_through_c(&agents);
        all_are(&agents[0], &checks, "passing").unwrap_or_else(|e| panic!("A sees {e}"));
        std::thread::sleep(Duration::from_millis(400));
    }
    // B dies; heartbeats through C go on, and keep the checks B ran passing once C or A
    // has taken them over.
    agents[1].kill9();
    let observer = &agents[0];
    let mut rounds_after_takeover = 0;
    let deadline = tokio::time::Instant::now() + TAKEOVER + Duration::from_secs(6);
    while rounds_after_takeover < 15 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "C still lists {:?}",
            member_ids(&agents[2])
        );
        beat_through_c(&agents);
        all_are(observer, &checks, "passing").unwrap_or_else(|e| panic!("A sees {e}"));
        if member_ids(&agents[2]).len() == 2 {
            rounds_after_takeover += 1;
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    // The heartbeats stop: every TTL expires, wherever its check runs.
    observer.eventually(
        SPREAD,
        "every TTL check critical once heartbeats stop",
        || all_are(observer, &checks, "critical"),
    );
    // A failure through C lands too.
    beat_through_c(&agents);
    observer.eventually(SPREAD, "passing again", || {
        all_are(observer, &checks, "passing")
    });
    agents[2]
        .put_empty(&format!("/v1/agent/check/fail/{}?note=down", checks[0]))
        .expect_status(200);
    observer.eventually(SPREAD, "the failed check is critical", || {
        match statuses(observer, &checks[..1])[0].as_deref() {
            Some("critical") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
}

#[test]
#[ignore = "needs etcd: scripts/test"]
fn an_agent_joining_reads_a_catalog_larger_than_grpcs_default_message() {
    let etcd = EtcdCluster::start();
    let a = Agent::start(&["--store", &etcd.url()]);
    // 700 instances of about 8 KiB each: a 5.6 MiB catalog, over the 4 MiB a gRPC client
    // accepts by default in one answer.
    const INSTANCES: usize = 700;
    let meta: serde_json::Map<String, Value> = (0..16)
        .map(|k| (format!("k{k}"), Value::String("x".repeat(500))))
        .collect();
    for i in 0..INSTANCES {
        a.register(&json!({
            "Name": "big", "ID": format!("big-{i:04}"), "Address": "10.0.3.1",
            "Port": 7000 + i, "Meta": meta
        }));
    }
    let joining = Agent::start(&["--store", &etcd.url()]);
    let listed = joining.get("/v1/catalog/service/big").json();
    assert_eq!(listed.as_array().map(Vec::len), Some(INSTANCES));
}
