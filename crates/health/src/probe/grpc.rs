//! gRPC checks: `grpc.health.v1.Health/Check`; `SERVING` is passing, anything else critical.
//!
//! The target is `host:port`, optionally followed by `/service` (the service name asked about;
//! empty asks about the server as a whole). Each check keeps one lazily connected channel for
//! its runner's life, so a run is one request on a warm HTTP/2 connection; the channel
//! reconnects by itself after the server restarts.
//!
//! With `GRPCUseTLS` the channel speaks TLS (tonic on rustls/ring) and verifies the server
//! against the same roots as HTTPS checks (system roots plus
//! [`SchedulerConfig::ca_certificates`](crate::SchedulerConfig)).

use std::error::Error as _;
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use wayfinder_catalog::{Status, go_duration};

use super::{ProbeContext, ProbeResult, error_chain};

/// A gRPC check prepared to run.
#[derive(Debug)]
pub(crate) struct GrpcProbe {
    client: HealthClient<Channel>,
    service: String,
    target: String,
    timeout: Duration,
}

impl GrpcProbe {
    /// Builds the channel (it connects on first use). Must run inside a Tokio runtime.
    pub(crate) fn new(
        target: &str,
        use_tls: bool,
        timeout: Duration,
        context: &ProbeContext,
    ) -> Result<Self, String> {
        let (host_port, service) = target.split_once('/').unwrap_or((target, ""));
        let scheme = if use_tls { "https" } else { "http" };
        let fail = |what: &str, error: &(dyn std::error::Error + 'static)| {
            format!("gRPC {target}: {what}: {}", error_chain(error))
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host_port}"))
            .map_err(|e| fail("invalid target", &e))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(context.user_agent.clone())
            .map_err(|e| fail("invalid user agent", &e))?;
        if use_tls {
            let verifier = context.tls.verifier(false);
            endpoint = endpoint
                .tls_config_with_verifier(ClientTlsConfig::new(), verifier)
                .map_err(|e| fail("TLS configuration", &e))?;
        }
        Ok(Self {
            client: HealthClient::new(endpoint.connect_lazy()),
            service: service.to_owned(),
            target: target.to_owned(),
            timeout,
        })
    }

    /// Asks the server once, within the timeout.
    pub(crate) async fn run(&self) -> ProbeResult {
        let request = HealthCheckRequest {
            service: self.service.clone(),
        };
        let mut client = self.client.clone();
        match tokio::time::timeout(self.timeout, client.check(request)).await {
            Ok(Ok(response)) => {
                let status = response.into_inner().status;
                if status == ServingStatus::Serving as i32 {
                    ProbeResult::new(
                        Status::Passing,
                        format!("gRPC check {}: success", self.target),
                    )
                } else {
                    let name = ServingStatus::try_from(status)
                        .map_or_else(|_| status.to_string(), |s| s.as_str_name().to_owned());
                    ProbeResult::critical(format!("gRPC {} serving status: {name}", self.target))
                }
            }
            Ok(Err(status)) => {
                // tonic often repeats its cause in the message; say each part once.
                let cause = status.source().map(error_chain).unwrap_or_default();
                let mut text = format!("gRPC {}: {:?}", self.target, status.code());
                let message = status.message();
                if !message.is_empty() && !cause.contains(message) {
                    text.push_str(": ");
                    text.push_str(message);
                }
                if !cause.is_empty() {
                    text.push_str(": ");
                    text.push_str(&cause);
                }
                ProbeResult::critical(text)
            }
            Err(_) => ProbeResult::critical(format!(
                "gRPC {}: timed out after {}",
                self.target,
                go_duration(self.timeout)
            )),
        }
    }
}
