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
