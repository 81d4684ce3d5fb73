//! One run of one check: the probes, and what they share.
//!
//! A probe is prepared once when its runner starts (URL parsed, headers built, gRPC channel
//! created) and then run every interval, so the per-run cost is the IO and little else. A
//! definition that cannot run at all (a header value the HTTP stack refuses) becomes a
//! [`Probe::Broken`] whose every run is critical with the reason: the check shows *why* it
//! fails instead of silently never running.
//!
//! Every probe enforces its own timeout, because what "timed out" means differs: an exec check
//! must kill its process group, the others just drop the connection attempt.

mod exec;
mod grpc;
mod http;
mod tcp;
mod tls;

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use wayfinder_catalog::{CheckKind, Status};

use crate::config::SchedulerConfig;

/// What one run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeResult {
    /// The status this run alone suggests (before thresholds).
    pub(crate) status: Status,
    /// Human-readable evidence, at most 4 KiB.
    pub(crate) output: String,
}

impl ProbeResult {
    pub(crate) fn new(status: Status, mut output: String) -> Self {
        wayfinder_catalog::truncate_output(&mut output);
        Self { status, output }
    }

    pub(crate) fn critical(output: String) -> Self {
        Self::new(Status::Critical, output)
    }
}

/// Agent-wide resources every probe draws on: pooled HTTP clients, the exec slots, TLS trust.
#[derive(Debug)]
pub(crate) struct ProbeContext {
    user_agent: String,
    exec_slots: Arc<Semaphore>,
    tls: tls::TlsTrust,
    http: http::HttpClients,
}

impl ProbeContext {
    pub(crate) fn new(config: &SchedulerConfig) -> Self {
        Self {
            user_agent: config.user_agent.clone(),
            exec_slots: Arc::new(Semaphore::new(config.max_concurrent_exec.max(1))),
            tls: tls::TlsTrust::new(&config.ca_certificates),
            http: http::HttpClients::default(),
        }
    }
}

/// A check prepared to run.
#[derive(Debug)]
pub(crate) enum Probe {
    /// An HTTP request.
    Http(http::HttpProbe),
    /// A TCP connect.
    Tcp(tcp::TcpProbe),
    /// A program run.
    Exec(exec::ExecProbe),
    /// A `grpc.health.v1.Health/Check` call.
    Grpc(grpc::GrpcProbe),
    /// A definition that cannot run; every run is critical with this output.
    Broken(String),
}

impl Probe {
    /// Prepares `kind` to run with `timeout`. `None` for TTL and mirrored checks, which do not
    /// probe.
    /// Must be called inside a Tokio runtime (a gRPC channel spawns its worker).
    pub(crate) fn new(
        kind: &CheckKind,
        timeout: Duration,
        context: &Arc<ProbeContext>,
    ) -> Option<Self> {
        let probe = match kind {
            CheckKind::Http {
                url,
                method,
                headers,
                body,
                tls_skip_verify,
                tls_server_name,
            } => http::HttpProbe::new(
                http::HttpSpec {
                    url,
                    method,
                    headers,
                    body,
                    tls_skip_verify: *tls_skip_verify,
                    tls_server_name,
                },
                timeout,
                context,
            )
            .map_or_else(Probe::Broken, Probe::Http),
            CheckKind::Tcp { address } => Probe::Tcp(tcp::TcpProbe::new(address, timeout)),
            CheckKind::Exec { args } => exec::ExecProbe::new(args, timeout, &context.exec_slots)
                .map_or_else(Probe::Broken, Probe::Exec),
            CheckKind::Grpc { target, use_tls } => {
                grpc::GrpcProbe::new(target, *use_tls, timeout, context)
                    .map_or_else(Probe::Broken, Probe::Grpc)
            }
            CheckKind::Ttl { .. } | CheckKind::Mirrored { .. } => return None,
        };
        Some(probe)
    }

    /// Runs the probe once, within its timeout.
    pub(crate) async fn run(&self) -> ProbeResult {
        match self {
            Probe::Http(probe) => probe.run().await,
            Probe::Tcp(probe) => probe.run().await,
            Probe::Exec(probe) => probe.run().await,
            Probe::Grpc(probe) => probe.run().await,
            Probe::Broken(reason) => ProbeResult::critical(reason.clone()),
        }
    }
}

/// An error with its whole `source()` chain, `outer: inner: innermost`, skipping links that
/// only repeat the previous one. Library errors (hyper, tonic) keep the useful part (`Connection
/// refused`) several links down.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.ends_with(&next) {
            let _ = write!(text, ": {next}");
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_name_every_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connect failed")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert_eq!(error_chain(&e), "connect failed: refused");
    }

    #[test]
    fn results_are_truncated() {
        let r = ProbeResult::critical("x".repeat(10_000));
        assert_eq!(r.output.len(), wayfinder_catalog::MAX_OUTPUT_BYTES);
    }
}
