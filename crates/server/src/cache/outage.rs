//! Whether each Memcached server can be used right now, and saying so once per outage.
//!
//! Every server has one state, changed by whoever learns something (a failed request, a probe):
//! [`Reachability::Up`], [`Reachability::Down`] (it does not answer) or
//! [`Reachability::Unsynced`] (it answers but holds no complete set of endpoint lists: it was
//! restarted or flushed and no primary has pushed since; providers must not trust its misses).
//!
//! The state is one atomic swapped per report, so of many concurrent requests failing at once
//! exactly one sees the `Up → not Up` transition: that one logs the warning and counts the
//! outage, and exactly one sees the way back. Logging per request during an outage would bury
//! the one line that matters (issue 3: "a log line once per outage, not per request").

use crate::metrics::{CacheMetrics, ServerLabel};
use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use tokio::time::Instant;

/// What this agent knows about one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    /// It answers, and (for providers) holds a synced set of endpoint lists.
    Up,
    /// It does not answer (refused, timed out, reset).
    Down,
    /// It answers but lost its data (no sync marker): its misses mean nothing yet.
    Unsynced,
}

impl Reachability {
    fn to_u8(self) -> u8 {
        match self {
            Self::Up => 0,
            Self::Down => 1,
            Self::Unsynced => 2,
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Up,
            1 => Self::Down,
            _ => Self::Unsynced,
        }
    }
}

/// What a report changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Nothing: the server was already in that state.
    None,
    /// An outage began (was up, now is not): logged as a warning, counted.
    Began,
    /// The outage ended: logged as info.
    Ended,
    /// Still out, for another reason (down ↔ unsynced): logged at debug only.
    Changed,
}

/// Which side of the cache this agent is, for what the log lines tell the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The agent pushing endpoint lists (`--cache`).
    Pusher,
    /// A provider reading them (`--provider-only --cache`).
    Provider,
}

struct ServerState {
    name: String,
    state: AtomicU8,
    since: Mutex<Option<Instant>>,
}

/// The reachability of every configured server, with its log lines and metrics.
pub struct Availability {
    role: Role,
    servers: Vec<ServerState>,
    /// How many servers are out. A lock, not an atomic: the count and the `cache_up` gauge
    /// must change together, and they change only on transitions, which are rare.
    out: Mutex<usize>,
    metrics: CacheMetrics,
}

impl Availability {
    /// Every server starts `Up`: the first failed probe or request then logs the outage.
    pub fn new(role: Role, names: &[String], metrics: CacheMetrics) -> Self {
        for name in names {
            metrics
                .server_up
                .get_or_create(&ServerLabel {
                    server: name.clone(),
                })
                .set(1);
        }
        metrics.up.set(1);
        Self {
            role,
            servers: names
                .iter()
                .map(|name| ServerState {
                    name: name.clone(),
                    state: AtomicU8::new(Reachability::Up.to_u8()),
                    since: Mutex::new(None),
                })
                .collect(),
            out: Mutex::new(0),
            metrics,
        }
    }

    /// The state of server `index`.
    pub fn state(&self, index: usize) -> Reachability {
        self.servers.get(index).map_or(Reachability::Down, |s| {
            Reachability::from_u8(s.state.load(Ordering::Acquire))
        })
    }

    /// Whether server `index` may be used.
    pub fn is_up(&self, index: usize) -> bool {
        self.state(index) == Reachability::Up
    }

    /// Records what was learnt about server `index`; `cause` says why (the error) and is
    /// logged only when the state changes.
    pub fn report(&self, index: usize, now: Reachability, cause: &dyn Display) -> Transition {
        let Some(server) = self.servers.get(index) else {
            return Transition::None;
        };
        let before = Reachability::from_u8(server.state.swap(now.to_u8(), Ordering::AcqRel));
        let transition = match (before, now) {
            (before, now) if before == now => Transition::None,
            (Reachability::Up, _) => Transition::Began,
            (_, Reachability::Up) => Transition::Ended,
            _ => Transition::Changed,
        };
        match transition {
            Transition::None => {}
            Transition::Began => {
                if let Ok(mut since) = server.since.lock() {
                    *since = Some(Instant::now());
                }
                self.metrics.outages.inc();
                self.set_gauges(server, false);
                self.log_began(&server.name, now, cause);
            }
            Transition::Ended => {
                let lasted = server
                    .since
                    .lock()
                    .ok()
                    .and_then(|mut since| since.take())
                    .map(|start| start.elapsed());
                self.set_gauges(server, true);
                self.log_ended(&server.name, lasted);
            }
            Transition::Changed => {
                tracing::debug!(server = %server.name, ?now, %cause, "memcached still unusable");
            }
        }
        transition
    }

    fn set_gauges(&self, server: &ServerState, up: bool) {
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if up {
            *out = out.saturating_sub(1);
        } else {
            *out += 1;
        }
        self.metrics.up.set(i64::from(*out == 0));
        self.metrics
            .server_up
            .get_or_create(&ServerLabel {
                server: server.name.clone(),
            })
            .set(i64::from(up));
    }

    fn log_began(&self, server: &str, now: Reachability, cause: &dyn Display) {
        match (self.role, now) {
            (Role::Provider, Reachability::Unsynced) => tracing::warn!(
                %server,
                "memcached outage: the server holds no endpoint lists (restarted or flushed, \
                 and no primary agent has pushed since); answering /v1/endpoints from this \
                 provider's own view (X-Cache-Status: BYPASS) until one does"
            ),
            (Role::Provider, _) => tracing::warn!(
                %server,
                error = %cause,
                "memcached outage: the server is unreachable; answering /v1/endpoints from \
                 this provider's own view (X-Cache-Status: BYPASS) until it is back"
            ),
            (Role::Pusher, _) => tracing::warn!(
                %server,
                error = %cause,
                "memcached outage: the server is unreachable; endpoint lists for its keys are \
                 not being pushed, and every service will be pushed again when it is back"
            ),
        }
    }

    fn log_ended(&self, server: &str, lasted: Option<std::time::Duration>) {
        let lasted = lasted.map(|d| format!("{:.1}s", d.as_secs_f64()));
        match self.role {
            Role::Provider => tracing::info!(
                %server,
                outage = lasted.as_deref().unwrap_or("unknown"),
                "memcached outage over: serving /v1/endpoints from memcached again"
            ),
            Role::Pusher => tracing::info!(
                %server,
                outage = lasted.as_deref().unwrap_or("unknown"),
                "memcached outage over: the server is reachable again; pushing every service"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn availability(servers: usize) -> (Availability, CacheMetrics) {
        let metrics = CacheMetrics::default();
        let names: Vec<String> = (0..servers)
            .map(|i| format!("127.0.0.1:{}", 11211 + i))
            .collect();
        (
            Availability::new(Role::Provider, &names, metrics.clone()),
            metrics,
        )
    }

    #[test]
    fn one_outage_is_one_transition_however_many_failures_report_it() {
        let (availability, metrics) = availability(1);
        let availability = Arc::new(availability);
        let began: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| {
                    let availability = Arc::clone(&availability);
                    scope.spawn(move || {
                        (0..100)
                            .filter(|_| {
                                availability.report(0, Reachability::Down, &"refused")
                                    == Transition::Began
                            })
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("thread")).sum()
        });
        assert_eq!(began, 1, "exactly one report may begin the outage");
        assert_eq!(metrics.outages.get(), 1);
        assert_eq!(metrics.up.get(), 0);
        assert!(!availability.is_up(0));

        // Down → unsynced is the same outage: no second warning, no second count.
        assert_eq!(
            availability.report(0, Reachability::Unsynced, &"no marker"),
            Transition::Changed
        );
        assert_eq!(metrics.outages.get(), 1);

        assert_eq!(
            availability.report(0, Reachability::Up, &"probe ok"),
            Transition::Ended
        );
        assert_eq!(
            availability.report(0, Reachability::Up, &"probe ok"),
            Transition::None
        );
        assert_eq!(metrics.up.get(), 1);

        // A second outage is a second warning.
        assert_eq!(
            availability.report(0, Reachability::Down, &"refused"),
            Transition::Began
        );
        assert_eq!(metrics.outages.get(), 2);
    }

    #[test]
    fn cache_up_is_one_only_while_every_server_is_up() {
        let (availability, metrics) = availability(2);
        assert_eq!(metrics.up.get(), 1);
        availability.report(1, Reachability::Down, &"refused");
        assert_eq!(metrics.up.get(), 0);
        assert!(availability.is_up(0));
        availability.report(0, Reachability::Unsynced, &"no marker");
        availability.report(1, Reachability::Up, &"ok");
        assert_eq!(metrics.up.get(), 0, "server 0 is still out");
        availability.report(0, Reachability::Up, &"ok");
        assert_eq!(metrics.up.get(), 1);
        let server = |name: &str| {
            metrics
                .server_up
                .get_or_create(&ServerLabel {
                    server: name.into(),
                })
                .get()
        };
        assert_eq!(server("127.0.0.1:11211"), 1);
        assert_eq!(server("127.0.0.1:11212"), 1);
    }

    #[test]
    fn unknown_servers_are_ignored() {
        let (availability, _) = availability(1);
        assert_eq!(
            availability.report(7, Reachability::Down, &"?"),
            Transition::None
        );
        assert_eq!(availability.state(7), Reachability::Down);
    }
}
