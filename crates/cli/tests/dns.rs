//! The DNS interface (`--dns-addr`) against the real binary, queried with `dig` (Debian's
//! dnsutils, installed by `scripts/test`) over UDP and TCP on 127.0.0.1 (issue 6): A/AAAA and
//! SRV answers with healthy instances only, tags, RFC 2782 names, the datacenter label,
//! truncation with TC and EDNS buffer sizes, weights deciding what survives truncation,
//! NXDOMAIN with a configurable negative TTL, REFUSED outside the domain, FORMERR for malformed
//! queries, and an agent that keeps answering whatever it is sent.

mod support;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::Duration;
use support::Agent;

/// The DNS address from the agent's banner (`DNS:           ADDR (UDP and TCP)`).
fn dns_addr(agent: &Agent) -> SocketAddr {
    agent
        .stdout()
        .lines()
        .find_map(|line| line.trim().strip_prefix("DNS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("no DNS line in the banner:\n{}", agent.stdout()))
}

fn start(extra: &[&str]) -> (Agent, SocketAddr) {
    let mut args = vec!["--dns-addr", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let agent = Agent::start(&args);
    let addr = dns_addr(&agent);
    (agent, addr)
}

/// One record line of dig's output: name, TTL, type, data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    name: String,
    ttl: u32,
    kind: String,
    data: String,
}

/// What dig printed, by section.
#[derive(Debug, Default)]
struct Dig {
    status: String,
    flags: Vec<String>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
    edns_udp: Option<u16>,
    raw: String,
}

impl Dig {
    fn data(&self) -> Vec<String> {
        let mut data: Vec<String> = self.answer.iter().map(|r| r.data.clone()).collect();
        data.sort();
        data
    }
}

/// Runs `dig @addr -p port <args>` (one try, bounded) and parses it.
fn dig(addr: SocketAddr, args: &[&str]) -> Dig {
    let output = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args(["-p", &addr.port().to_string(), "+tries=1", "+time=5"])
        .args(args)
        .output()
        .expect("running dig (Debian package dnsutils; scripts/test installs it)");
    let raw = String::from_utf8_lossy(&output.stdout).into_owned();
    let mut dig = Dig {
        raw: raw.clone(),
        ..Dig::default()
    };
    let mut section = "";
    for line in raw.lines() {
        if let Some(rest) = line.strip_prefix(";; ->>HEADER<<-") {
            dig.status = rest
                .split(',')
                .find_map(|part| part.trim().strip_prefix("status: "))
                .unwrap_or_default()
                .to_owned();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            let flags = rest.split(';').next().unwrap_or_default();
            dig.flags = flags.split_whitespace().map(str::to_owned).collect();
        } else if let Some(rest) = line.strip_prefix("; EDNS: ") {
            dig.edns_udp = rest
                .rsplit("udp: ")
                .next()
                .and_then(|n| n.trim().parse().ok());
        } else if line.starts_with(";; ") && line.ends_with("SECTION:") {
            section = line;
        } else if line.is_empty() || line.starts_with(';') {
            if line.is_empty() {
                section = "";
            }
        } else {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 5 {
                continue;
            }
            let rr = Rr {
                name: fields[0].to_owned(),
                ttl: fields[1].parse().unwrap_or(u32::MAX),
                kind: fields[3].to_owned(),
                data: fields[4..].join(" "),
            };
            match section {
                ";; ANSWER SECTION:" => dig.answer.push(rr),
                ";; AUTHORITY SECTION:" => dig.authority.push(rr),
                ";; ADDITIONAL SECTION:" => dig.additional.push(rr),
                _ => {}
            }
        }
    }
    dig
}

fn instance(id: &str, address: &str, port: u16, tags: &[&str], passing_weight: u32) -> Value {
    json!({
        "Name": "worker-service", "ID": id, "Address": address, "Port": port, "Tags": tags,
        "Weights": {"Passing": passing_weight, "Warning": 1},
        "Check": {"CheckID": format!("{id}-ttl"), "TTL": "300s", "Status": "passing"}
    })
}

#[test]
#[ignore = "needs dig: scripts/test"]
fn a_srv_and_tags_answer_with_healthy_instances_only() {
    let (agent, addr) = start(&[]);
    agent.register(&instance("w-1", "127.0.0.11", 9001, &["v1"], 1));
    agent.register(&instance("w-2", "127.0.0.12", 9002, &["v2"], 3));
    agent.register(&instance("w-3", "127.0.0.13", 9003, &["v2"], 1));

    let a = dig(addr, &["worker-service.service.consul", "A"]);
    assert_eq!(a.status, "NOERROR", "{}", a.raw);
    assert!(
        a.flags.contains(&"aa".to_owned()),
        "authoritative: {}",
        a.raw
    );
    assert!(
        !a.flags.contains(&"ra".to_owned()),
        "no recursion: {}",
        a.raw
    );
    assert_eq!(a.data(), ["127.0.0.11", "127.0.0.12", "127.0.0.13"]);
    assert!(a.answer.iter().all(|r| r.ttl == 0), "TTL 0 by default");

    // Names are case-insensitive; the datacenter label is accepted.
    let dc = dig(addr, &["WORKER-service.Service.dc1.consul", "A"]);
    assert_eq!(dc.data().len(), 3, "{}", dc.raw);
    let other_dc = dig(addr, &["worker-service.service.dc9.consul", "A"]);
    assert_eq!(other_dc.status, "NXDOMAIN", "{}", other_dc.raw);

    let tagged = dig(addr, &["v2.worker-service.service.consul", "A"]);
    assert_eq!(tagged.data(), ["127.0.0.12", "127.0.0.13"]);

    // RFC 2782: _tcp means no tag filter; any other protocol label is a tag.
    let srv = dig(addr, &["_worker-service._tcp.service.consul", "SRV"]);
    assert_eq!(srv.answer.len(), 3, "{}", srv.raw);
    let w2 = srv
        .answer
        .iter()
        .find(|r| r.data.contains(" 9002 "))
        .expect("w-2's SRV");
    assert_eq!(
        w2.data, "1 3 9002 7f00000c.addr.dc1.consul.",
        "weight 3, resolvable target"
    );
    for rr in &srv.answer {
        let target = rr.data.split_whitespace().last().expect("target");
        assert!(
            srv.additional
                .iter()
                .any(|extra| extra.name == target && extra.kind == "A"),
            "{target} resolves in the additional section: {}",
            srv.raw
        );
        // …and on its own.
        assert_eq!(dig(addr, &[target, "A"]).answer.len(), 1);
    }
    let srv_tag = dig(addr, &["_worker-service._v1.service.consul", "SRV"]);
    assert_eq!(srv_tag.answer.len(), 1, "{}", srv_tag.raw);
    let plain_srv = dig(addr, &["worker-service.service.consul", "SRV"]);
    assert_eq!(plain_srv.answer.len(), 3);

    // A failing check takes the instance out of every answer at once; a warning does not.
    agent
        .put_empty("/v1/agent/check/fail/w-1-ttl")
        .expect_write_ok();
    assert_eq!(
        dig(addr, &["worker-service.service.consul"]).data(),
        ["127.0.0.12", "127.0.0.13"]
    );
    agent
        .put_empty("/v1/agent/check/warn/w-2-ttl")
        .expect_write_ok();
    assert_eq!(
        dig(addr, &["worker-service.service.consul"]).data(),
        ["127.0.0.12", "127.0.0.13"]
    );
    // No healthy instance left with that tag: NXDOMAIN, as Consul answers.
    agent
        .put_empty("/v1/agent/check/fail/w-3-ttl")
        .expect_write_ok();
    agent
        .put_empty("/v1/agent/check/fail/w-2-ttl")
        .expect_write_ok();
    assert_eq!(
        dig(addr, &["v2.worker-service.service.consul"]).status,
        "NXDOMAIN"
    );

    // Over TCP too.
    agent
        .put_empty("/v1/agent/check/pass/w-1-ttl")
        .expect_write_ok();
    let tcp = dig(addr, &["+tcp", "worker-service.service.consul"]);
    assert_eq!(tcp.data(), ["127.0.0.11"], "{}", tcp.raw);

    // IPv6 instances answer AAAA (and not A); their SRV target is a 32-digit addr name.
    agent.register(&instance("w-6", "::1", 9006, &["v6"], 1));
    let aaaa = dig(addr, &["v6.worker-service.service.consul", "AAAA"]);
    assert_eq!(aaaa.data(), ["::1"], "{}", aaaa.raw);
    let no_a = dig(addr, &["v6.worker-service.service.consul", "A"]);
    assert_eq!((no_a.status.as_str(), no_a.answer.len()), ("NOERROR", 0));
    let srv6 = dig(addr, &["_worker-service._v6.service.consul", "SRV"]);
    let target = srv6.answer[0]
        .data
        .split_whitespace()
        .last()
        .expect("target");
    assert_eq!(target, format!("{}1.addr.dc1.consul.", "0".repeat(31)));
    assert_eq!(dig(addr, &[target, "AAAA"]).data(), ["::1"]);
}

#[test]
#[ignore = "needs dig: scripts/test"]
fn warnings_can_be_left_out_and_domain_and_ttls_are_configurable() {
    let (agent, addr) = start(&[
        "--dns-domain",
        "sd.internal",
        "--dns-ttl",
        "5",
        "--dns-negative-ttl",
        "7",
        "--dns-only-passing",
    ]);
    agent.register(&instance("w-1", "127.0.0.11", 9001, &[], 1));
    agent.register(&instance("w-2", "127.0.0.12", 9002, &[], 1));
    agent
        .put_empty("/v1/agent/check/warn/w-2-ttl")
        .expect_write_ok();

    let a = dig(addr, &["worker-service.service.sd.internal"]);
    assert_eq!(a.data(), ["127.0.0.11"], "{}", a.raw);
    assert_eq!(a.answer[0].ttl, 5);

    // Unknown names: NXDOMAIN with the zone's SOA, whose negative TTL resolvers obey.
    let missing = dig(addr, &["nothing.service.sd.internal"]);
    assert_eq!(missing.status, "NXDOMAIN");
    let soa = missing
        .authority
        .first()
        .expect("an SOA in the authority section");
    assert_eq!(
        (soa.name.as_str(), soa.kind.as_str()),
        ("sd.internal.", "SOA")
    );
    assert_eq!(soa.ttl, 7);
    assert!(
        soa.data.ends_with(" 7"),
        "negative TTL in the SOA: {}",
        soa.data
    );

    // The old domain, and names outside the domain, are refused: no recursion.
    for name in ["worker-service.service.consul", "example.com"] {
        assert_eq!(dig(addr, &[name]).status, "REFUSED", "{name}");
    }
}

#[test]
#[ignore = "needs dig: scripts/test"]
fn udp_answers_are_truncated_to_the_clients_buffer_keeping_heavier_instances() {
    let (agent, addr) = start(&[]);
    // 10 heavy instances (weight 20) among 60 light ones (weight 1).
    for i in 0..70u16 {
        let heavy = i < 10;
        agent.register(&json!({
            "Name": "big", "ID": format!("big-{i}"),
            "Address": format!("10.{}.0.{}", u16::from(heavy), i), "Port": 80,
            "Weights": {"Passing": if heavy { 20 } else { 1 }, "Warning": 1}
        }));
    }
    // Without EDNS: 512 bytes, TC set, no retry over TCP (+ignore).
    let small = dig(addr, &["+noedns", "+ignore", "big.service.consul"]);
    assert!(small.flags.contains(&"tc".to_owned()), "{}", small.raw);
    assert!(!small.answer.is_empty() && small.answer.len() < 70);
    // EDNS buffer sizes are honoured: a larger buffer carries more, 4096 carries all.
    let medium = dig(addr, &["+bufsize=1232", "+ignore", "big.service.consul"]);
    assert_eq!(medium.edns_udp, Some(1232), "OPT echoed: {}", medium.raw);
    let large = dig(addr, &["+bufsize=4096", "+ignore", "big.service.consul"]);
    assert!(!large.flags.contains(&"tc".to_owned()), "{}", large.raw);
    assert_eq!(large.answer.len(), 70);
    // TCP is never truncated.
    let tcp = dig(addr, &["+tcp", "big.service.consul"]);
    assert_eq!(tcp.answer.len(), 70);

    // What fits in 512 bytes favours the heavy instances: 10×20 of 260 weight units is 77 % of
    // the weight, so far more than their 14 % share of the instances survive truncation.
    let (mut heavy, mut total) = (0usize, 0usize);
    for _ in 0..20 {
        let answer = dig(addr, &["+noedns", "+ignore", "big.service.consul"]);
        heavy += answer
            .answer
            .iter()
            .filter(|r| r.data.starts_with("10.1."))
            .count();
        total += answer.answer.len();
    }
    let share = heavy as f64 / total as f64;
    assert!(
        share > 0.25,
        "heavy instances were {share:.2} of truncated answers"
    );

    // The order is shuffled: the first record varies between answers.
    let firsts: std::collections::BTreeSet<String> = (0..20)
        .map(|_| {
            dig(addr, &["+tcp", "big.service.consul"]).answer[0]
                .data
                .clone()
        })
        .collect();
    assert!(firsts.len() > 3, "{firsts:?}");
}

/// A query for `name` (type A, class IN) in wire format, with `id`.
fn query(id: u16, name: &str) -> Vec<u8> {
    let mut bytes = id.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        bytes.push(u8::try_from(label.len()).expect("short label"));
        bytes.extend_from_slice(label.as_bytes());
    }
    bytes.extend_from_slice(&[0, 0, 1, 0, 1]);
    bytes
}

/// Sends `bytes` over UDP and returns the response code of the answer, if one comes.
fn rcode(socket: &UdpSocket, addr: SocketAddr, bytes: &[u8]) -> Option<u8> {
    socket.send_to(bytes, addr).expect("send");
    let mut buffer = [0u8; 4096];
    match socket.recv_from(&mut buffer) {
        Ok((n, _)) if n >= 4 => Some(buffer[3] & 0x0f),
        _ => None,
    }
}

#[test]
#[ignore = "needs dig: scripts/test"]
fn malformed_queries_get_formerr_and_the_agent_keeps_answering() {
    let (agent, addr) = start(&[]);
    agent.register(&instance("w-1", "127.0.0.11", 9001, &[], 1));
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");

    let good = query(7, "worker-service.service.consul");
    assert_eq!(rcode(&socket, addr, &good), Some(0), "NOERROR");
    // A header promising a question that is not there: FORMERR.
    assert_eq!(rcode(&socket, addr, &good[..14]), Some(1), "FORMERR");
    // Two questions: FORMERR.
    let mut two = good.clone();
    two[5] = 2;
    two.extend_from_slice(&good[12..]);
    assert_eq!(rcode(&socket, addr, &two), Some(1), "FORMERR");
    // An opcode other than QUERY (STATUS): NOTIMP.
    let mut status = good.clone();
    status[2] = 0x10;
    assert_eq!(rcode(&socket, addr, &status), Some(4), "NOTIMP");

    // Bytes that are not DNS at all, of every length: never a crash.
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut counts = BTreeMap::new();
    for len in 0..300 {
        let junk: Vec<u8> = (0..len)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng.to_le_bytes()[0]
            })
            .collect();
        socket.send_to(&junk, addr).expect("send");
        let mut buffer = [0u8; 4096];
        let answered = socket.recv_from(&mut buffer).is_ok();
        *counts.entry(answered).or_insert(0) += 1;
    }
    assert_eq!(
        rcode(&socket, addr, &good),
        Some(0),
        "still answering: {counts:?}"
    );
    assert_eq!(
        dig(addr, &["+tcp", "worker-service.service.consul"]).data(),
        ["127.0.0.11"]
    );
    assert!(agent.get("/health").status == 200);
}
