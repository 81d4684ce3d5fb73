//! A DNS load generator: `clients` UDP sockets, each asking one question after another.
//!
//! What wrk is for HTTP, this is for the agent's DNS interface: closed-loop clients on loopback,
//! each sending its next query as soon as the answer to the last one arrives, for a bounded time
//! and count. The query is built by hand (a 12-byte header and one question): a load generator
//! must cost as little CPU as it can beside the agent it measures, and checking an answer needs
//! only its header — the ID, that it is a response, its RCODE and its answer count.

use crate::latency::Latencies;
use anyhow::Context;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::{Instant, timeout};

/// How long a client waits for one answer before counting the query lost and asking again.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// Most queries one client sends in a run, whatever the duration (the loop's second bound).
const MAX_QUERIES_PER_CLIENT: u64 = 50_000_000;
/// Room for any answer the agent sends over UDP (EDNS answers fit in 4,096 bytes).
const ANSWER_BUFFER: usize = 4096;

/// The load to generate.
#[derive(Debug, Clone, Copy)]
pub struct DnsLoad {
    /// Concurrent clients, one UDP socket each.
    pub clients: u32,
    /// How long to send.
    pub duration: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct DnsReport {
    /// Answers with RCODE NOERROR and at least one record, per second.
    pub per_second: f64,
    /// Good answers in all.
    pub answered: u64,
    /// Answers that were errors, empty, or not for the question asked.
    pub bad: u64,
    /// Queries that got no answer within [`ANSWER_TIMEOUT`].
    pub lost: u64,
    /// Query-to-answer latencies of the good answers.
    pub latencies: Latencies,
}

/// An `A` query for `name` with ID `id` and recursion desired (as `dig` sends it).
pub fn a_query(id: u16, name: &str) -> anyhow::Result<Vec<u8>> {
    let mut packet = Vec::with_capacity(18 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        let length = u8::try_from(label.len())
            .ok()
            .filter(|&n| (1..=63).contains(&n))
            .with_context(|| format!("{name:?}: each label must be 1 to 63 bytes"))?;
        packet.push(length);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.extend_from_slice(&[0, 0, 1, 0, 1]);
    Ok(packet)
}

/// Whether `answer` answers query `id` with NOERROR and at least one record.
fn is_good_answer(answer: &[u8], id: u16) -> bool {
    answer.len() >= 12
        && answer[0..2] == id.to_be_bytes()
        && answer[2] & 0x80 != 0
        && answer[3] & 0x0f == 0
        && u16::from_be_bytes([answer[6], answer[7]]) > 0
}

/// Asks `name` (type A) of the DNS server at `server` under `load`, and reports the rate of
/// good answers.
pub async fn run(server: SocketAddr, name: &str, load: DnsLoad) -> anyhow::Result<DnsReport> {
    // Fails early, with the reason, on a name no query can carry.
    a_query(0, name)?;
    let deadline = Instant::now() + load.duration;
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..load.clients {
        let name = name.to_owned();
        clients.push(tokio::spawn(async move {
            ask_until(server, &name, client, deadline).await
        }));
    }
    let mut report = DnsReport {
        per_second: 0.0,
        answered: 0,
        bad: 0,
        lost: 0,
        latencies: Latencies::new(),
    };
    for client in clients {
        let one = client.await.context("a DNS client panicked")??;
        report.answered += one.answered;
        report.bad += one.bad;
        report.lost += one.lost;
        report.latencies.merge(&one.latencies);
    }
    report.per_second = report.answered as f64 / started.elapsed().as_secs_f64();
    Ok(report)
}

/// One client's closed loop: query, wait for the answer, repeat until `deadline`.
async fn ask_until(
    server: SocketAddr,
    name: &str,
    client: u32,
    deadline: Instant,
) -> anyhow::Result<DnsReport> {
    let socket = UdpSocket::bind("127.0.0.1:0")
        .await
        .context("cannot bind a UDP socket on 127.0.0.1")?;
    socket
        .connect(server)
        .await
        .with_context(|| format!("cannot connect a UDP socket to {server}"))?;
    let mut report = DnsReport {
        per_second: 0.0,
        answered: 0,
        bad: 0,
        lost: 0,
        latencies: Latencies::new(),
    };
    let mut buffer = vec![0u8; ANSWER_BUFFER];
    // IDs differ between clients and between queries, so a late answer to a lost query is
    // never taken for the answer to the next one.
    let mut id = (client as u16).wrapping_mul(7919);
    for _ in 0..MAX_QUERIES_PER_CLIENT {
        if Instant::now() >= deadline {
            break;
        }
        id = id.wrapping_add(1);
        let query = a_query(id, name)?;
        let sent = Instant::now();
        socket
            .send(&query)
            .await
            .with_context(|| format!("cannot send a DNS query to {server}"))?;
        loop {
            match timeout(ANSWER_TIMEOUT, socket.recv(&mut buffer)).await {
                Err(_) => {
                    report.lost += 1;
                    break;
                }
                Ok(received) => {
                    let length = received
                        .with_context(|| format!("cannot read a DNS answer from {server}"))?;
                    let answer = &buffer[..length];
                    if answer.len() >= 2 && answer[0..2] != id.to_be_bytes() {
                        // A late answer to an earlier, lost query: keep waiting for ours.
                        continue;
                    }
                    if is_good_answer(answer, id) {
                        report.answered += 1;
                        report.latencies.record(sent.elapsed());
                    } else {
                        report.bad += 1;
                    }
                    break;
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_what_dig_sends() {
        let query = a_query(0x1234, "web.service.consul").expect("a valid name");
        assert_eq!(&query[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&query[12..16], b"\x03web");
        assert_eq!(&query[query.len() - 5..], &[0, 0, 1, 0, 1]);
        assert!(a_query(1, "a..b").is_err());
    }

    #[test]
    fn only_a_nonempty_noerror_response_to_our_id_is_good() {
        let mut answer = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        assert!(is_good_answer(&answer, 0x1234));
        assert!(!is_good_answer(&answer, 0x1235));
        answer[3] = 0x83; // NXDOMAIN
        assert!(!is_good_answer(&answer, 0x1234));
        answer[3] = 0x80;
        answer[7] = 0; // no answer records
        assert!(!is_good_answer(&answer, 0x1234));
        assert!(!is_good_answer(&answer[..11], 0x1234));
    }
}
