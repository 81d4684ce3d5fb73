//! A stand-in for the agent's write path, and builders, shared by the health integration tests
//! so that each test reads as its scenario: register checks, watch the reports, write them.
//!
//! Every test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use wayfinder_catalog::{
    Catalog, CheckDefinition, CheckId, CheckKind, CheckPolicy, Command, Instance, InstanceId,
    Outcome, Registration, ServiceName, Status, Touched,
};
use wayfinder_health::{Report, Scheduler, SchedulerConfig};

/// The longest any single wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A catalog, a scheduler following it, and the reports it sends: the agent in miniature.
pub struct Harness {
    pub catalog: Catalog,
    pub scheduler: Scheduler,
    pub reports: mpsc::Receiver<Report>,
    index: u64,
}

impl Harness {
    /// A harness with the default scheduler configuration.
    pub fn new() -> Self {
        Self::with_config(SchedulerConfig::default())
    }

    /// A harness with `config`.
    pub fn with_config(config: SchedulerConfig) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        Self {
            catalog: Catalog::new(0),
            scheduler: Scheduler::new(tx, config),
            reports: rx,
            index: 0,
        }
    }

    /// Applies `command` as the write path does, then tells the scheduler what it touched.
    pub fn apply(&mut self, command: Command) -> Outcome {
        self.index += 1;
        let outcome = self
            .catalog
            .apply(self.index, &command)
            .expect("test commands are valid");
        let checks: Vec<CheckId> = outcome
            .touched
            .iter()
            .filter_map(|t| match t {
                Touched::Check(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        self.scheduler.update(&self.catalog, &checks);
        outcome
    }

    /// Registers instance `id` (service `web`, 127.0.0.1) with `checks`.
    pub fn register(&mut self, id: &str, checks: Vec<CheckDefinition>) {
        self.apply(Command::Register(Box::new(Registration {
            instance: instance(id),
            checks,
            replace_existing_checks: false,
        })));
    }

    /// Writes `report` as the agent does.
    pub fn write(&mut self, report: &Report) {
        let command = match report {
            Report::Status {
                check,
                status,
                output,
            } => Command::SetCheckStatus {
                id: check.clone(),
                status: *status,
                output: output.clone(),
            },
            Report::DeregisterCritical { instance, .. } => Command::Deregister(instance.clone()),
        };
        self.apply(command);
    }

    /// The next report, failing the test if none comes within `within`.
    pub async fn next_report(&mut self, within: Duration) -> Report {
        tokio::time::timeout(within, self.reports.recv())
            .await
            .expect("a report within the deadline")
            .expect("the report channel stays open")
    }

    /// The next report, written to the catalog like the agent would.
    pub async fn next_written(&mut self, within: Duration) -> Report {
        let report = self.next_report(within).await;
        assert!(
            self.scheduler.is_current(&report),
            "a fresh report is current: {report:?}"
        );
        self.write(&report);
        report
    }

    /// Fails the test if a report arrives within `within`.
    pub async fn no_report(&mut self, within: Duration) {
        if let Ok(report) = tokio::time::timeout(within, self.reports.recv()).await {
            panic!("expected no report, got {report:?}");
        }
    }

    /// The catalog's status for `check`.
    pub fn status(&self, check: &str) -> Status {
        self.catalog
            .check(check)
            .expect("check is registered")
            .status
    }

    /// Polls the scheduler until `check` has an observation accepted by `accept`.
    pub async fn observe(
        &self,
        check: &str,
        accept: impl Fn(&wayfinder_health::Observation) -> bool,
    ) -> wayfinder_health::Observation {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(observation) = self.scheduler.observation(check)
                    && accept(&observation)
                {
                    return observation;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the observation within the deadline")
    }
}

/// A check ID the test knows to be valid.
pub fn check_id(id: &str) -> CheckId {
    CheckId::new(id, "CheckID").expect("test check IDs are valid")
}

/// An instance ID the test knows to be valid.
pub fn instance_id(id: &str) -> InstanceId {
    InstanceId::new(id, "ID").expect("test instance IDs are valid")
}

/// An instance of service `web` on 127.0.0.1.
pub fn instance(id: &str) -> Instance {
    Instance {
        address: "127.0.0.1".to_owned(),
        port: 8080,
        ..Instance::new(
            instance_id(id),
            ServiceName::new("web", "Name").expect("valid"),
        )
    }
}

/// A check `id` of `kind`: every 100 ms with a 1 s timeout (TTL checks: no interval), starting
/// critical as Consul's do, no thresholds.
pub fn check(id: &str, kind: CheckKind) -> CheckDefinition {
    let interval = if matches!(kind, CheckKind::Ttl { .. }) {
        Duration::ZERO
    } else {
        Duration::from_millis(100)
    };
    CheckDefinition {
        id: Some(check_id(id)),
        name: String::new(),
        notes: String::new(),
        service_id: None,
        initial_status: None,
        kind,
        policy: CheckPolicy::new(interval, Duration::from_secs(1)),
    }
}

/// An HTTP GET of `url`.
pub fn http(url: &str) -> CheckKind {
    CheckKind::Http {
        url: url.to_owned(),
        method: "GET".to_owned(),
        headers: BTreeMap::new(),
        body: String::new(),
        tls_skip_verify: false,
        tls_server_name: String::new(),
    }
}

/// A TCP connect to `address`.
pub fn tcp(address: SocketAddr) -> CheckKind {
    CheckKind::Tcp {
        address: address.to_string(),
    }
}

/// `/bin/sh -c script`.
pub fn shell(script: &str) -> CheckKind {
    CheckKind::Exec {
        args: vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()],
    }
}

/// A TTL check.
pub fn ttl(ttl: Duration) -> CheckKind {
    CheckKind::Ttl { ttl }
}

/// A gRPC health check of `target`.
pub fn grpc(target: String, use_tls: bool) -> CheckKind {
    CheckKind::Grpc { target, use_tls }
}

/// Serves `router` on an ephemeral 127.0.0.1 port; the server lives as long as the runtime.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    addr
}

/// A 127.0.0.1 port nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

/// The status and output of a status report; panics on any other report.
pub fn status_of(report: &Report) -> (&str, Status, &str) {
    match report {
        Report::Status {
            check,
            status,
            output,
        } => (check.as_str(), *status, output.as_str()),
        other => panic!("expected a status report, got {other:?}"),
    }
}
