//! Load generators for Wayfinder's benchmarks, and what they share.
//!
//! The binaries (`register-load`, `check-capacity`, `propagation`, `endpoint-throughput`,
//! `gateway-throughput`, and `cluster` and `etcd-writes` against etcd) are driven by
//! `bench/run`, which builds the agent, starts it on a loopback port with a fresh durable data
//! dir (for the gateway, `--dev`; against etcd, `--dev --store etcd://…`), and passes its
//! address and pid. This library owns what they share: a
//! keep-alive HTTP/1.1 connection to the agent ([`client`]), CPU and memory readings from
//! `/proc` ([`procfs`]), peers run in process groups of their own ([`process_group`]), latency percentiles ([`latency`]), the markdown the results are printed
//! as ([`report`]); and for the Endpoint Provider benchmarks, the `worker-service` fleet they
//! measure ([`fleet`]), watch streams ([`sse`]), and the read-throughput peer and load generator
//! ([`nginx`], [`wrk`]), and DNS queries under load ([`dns`]). For the gateway benchmark, HAProxy as a second peer ([`haproxy`]); the
//! backends behind the proxies are a binary of their own (`backend-server`).
//!
//! What it deliberately does not own: starting or stopping the agent (the script does, so the
//! agent is the real release binary, exactly as a user runs it), or installing wrk, nginx and
//! HAProxy (the script does that too, with apt, when they are missing).
//!
//! Every load loop here is bounded twice, by a request count and by a deadline, and only ever
//! talks to loopback addresses ([`args::loopback_addr`] refuses anything else).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod args;
pub mod client;
pub mod dns;
pub mod fleet;
pub mod haproxy;
pub mod latency;
pub mod nginx;
pub mod process_group;
pub mod procfs;
pub mod report;
pub mod sse;
pub mod wrk;
