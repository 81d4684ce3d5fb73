//! [`Discovery`]: the entry point. Holds the agent's address and a connection pool, and makes
//! [`Service`] handles that keep themselves current.

use crate::agent::AgentHttp;
use crate::blocking::DEFAULT_WAIT;
use crate::endpoints::Endpoints;
use crate::error::ClientError;
use crate::freshness::{Clock, Freshness};
use crate::options::ServiceOptions;
use crate::service::Service;
use crate::watcher::Watch;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Shortest accepted blocking-query wait: a shorter one turns the blocking query into polling.
pub const MIN_WAIT: Duration = Duration::from_secs(1);
/// Longest accepted wait: the agent caps waits at 10 minutes anyway (as Consul does).
pub const MAX_WAIT: Duration = Duration::from_secs(10 * 60);

/// A client of one Wayfinder (or Consul) agent's HTTP API.
///
/// Cheap to clone; clones share the connection pool. One per process is usual.
#[derive(Clone, Debug)]
pub struct Discovery {
    http: AgentHttp,
    wait: Duration,
}

impl Discovery {
    /// A client of the agent at `agent`, e.g. `http://127.0.0.1:8500`. Only checks the address:
    /// nothing is sent until a service is asked for.
    pub fn new(agent: &str) -> Result<Discovery, ClientError> {
        Ok(Discovery {
            http: AgentHttp::new(agent)?,
            wait: DEFAULT_WAIT,
        })
    }

    /// How long each blocking query may park at the agent before it answers unchanged (default
    /// 5 minutes, between [`MIN_WAIT`] and [`MAX_WAIT`]). A change answers at once whatever the
    /// wait; a shorter wait only notices a silently vanished agent sooner.
    pub fn with_wait(mut self, wait: Duration) -> Result<Discovery, ClientError> {
        if !(MIN_WAIT..=MAX_WAIT).contains(&wait) {
            return Err(ClientError::Invalid {
                what: format!("a blocking-query wait of {wait:?}"),
                reason: format!("it must be between {MIN_WAIT:?} and {MAX_WAIT:?}"),
            });
        }
        self.wait = wait;
        Ok(self)
    }

    /// The agent's base URL.
    pub fn agent(&self) -> &str {
        self.http.base()
    }

    /// The healthy endpoints of `name`, balanced at random with retries
    /// ([`ServiceOptions::new`]). See [`Discovery::service_with`].
    pub fn service(&self, name: &str) -> Result<Service, ClientError> {
        self.service_with(name, ServiceOptions::new())
    }

    /// The healthy endpoints of `name`, kept current by blocking queries in a background task
    /// on the current tokio runtime, balanced and retried as `options` say.
    ///
    /// Returns at once with an empty set; [`Service::ready`] waits for the first answer, and
    /// [`Service::call`] waits for an endpoint within its deadline. Call it once per service
    /// and clone the handle: each call starts its own query loop.
    pub fn service_with(
        &self,
        name: &str,
        options: ServiceOptions,
    ) -> Result<Service, ClientError> {
        if name.is_empty() {
            return Err(ClientError::Invalid {
                what: "the service name".to_owned(),
                reason: "it is empty".to_owned(),
            });
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| ClientError::NoRuntime("Discovery::service"))?;
        let clock = Clock::start();
        let (sender, receiver) = watch::channel(Arc::new(Endpoints::default()));
        let freshness = Arc::new(Mutex::new(Freshness::Loading { error: None }));
        let service = Service::new(
            name.to_owned(),
            &options,
            clock,
            receiver,
            Arc::clone(&freshness),
        )?;
        let watch = Watch {
            http: self.http.clone(),
            service: name.to_owned(),
            tags: options.tags.clone(),
            warnings: options.warnings,
            wait: self.wait,
            clock,
            sender,
            freshness,
        };
        runtime.spawn(watch.run());
        Ok(service)
    }
}
