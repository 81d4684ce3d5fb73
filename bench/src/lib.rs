//! Load generators for Wayfinder's benchmarks, and what they share.
//!
//! The binaries (`register-load`, `check-capacity`) are driven by `bench/run`, which builds the
//! agent, starts it on a loopback port with a fresh durable data dir, and passes its address
//! and pid. This library owns what both need: a keep-alive HTTP/1.1 connection to the agent
//! ([`client`]), CPU and memory readings from `/proc` ([`procfs`]), latency percentiles
//! ([`latency`]) and the markdown the results are printed as ([`report`]).
//!
//! What it deliberately does not own: starting or stopping the agent (the script does, so the
//! agent is the real release binary, exactly as a user runs it).
//!
//! Every load loop here is bounded twice, by a request count and by a deadline, and only ever
//! talks to loopback addresses ([`args::loopback_addr`] refuses anything else).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(missing_docs)]

pub mod args;
pub mod client;
pub mod latency;
pub mod procfs;
pub mod report;
