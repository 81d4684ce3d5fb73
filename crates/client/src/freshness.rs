//! [`Freshness`]: how far a service's endpoint set can be trusted, and the shared clock that
//! times picks and health transitions.

use crate::error::ClientError;
use std::time::Duration;
use tokio::time::Instant;
use wayfinder_balance::Nanos;

/// Whether a service's endpoint set is as current as the agent's catalog.
///
/// Why it exists: when the agent cannot be reached the client keeps handing out the last good
/// set (instances rarely all move at once, and an empty set would fail every call), but the
/// caller should be able to see, log and alert on how old that set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// The agent has not answered yet; `error` is why the last attempt failed, if one did.
    Loading {
        /// The last failure.
        error: Option<ClientError>,
    },
    /// The last query succeeded and a blocking query is parked at the agent: any change will
    /// arrive as soon as the agent knows it.
    Fresh,
    /// The agent stopped answering at `since`; the set is the last good one.
    Stale {
        /// When the first query of this outage failed.
        since: Instant,
        /// Why the last attempt failed.
        error: ClientError,
    },
}

impl Freshness {
    /// How long the set has been possibly out of date: `Some` only while [`Freshness::Stale`].
    pub fn stale_for(&self) -> Option<Duration> {
        match self {
            Freshness::Stale { since, .. } => Some(since.elapsed()),
            _ => None,
        }
    }

    /// Whether the set is current.
    pub fn is_fresh(&self) -> bool {
        *self == Freshness::Fresh
    }

    /// The last failure talking to the agent, while it lasts.
    pub fn error(&self) -> Option<&ClientError> {
        match self {
            Freshness::Loading { error } => error.as_ref(),
            Freshness::Fresh => None,
            Freshness::Stale { error, .. } => Some(error),
        }
    }

    /// The state after a failed query: still loading if nothing was ever loaded, else stale
    /// since the first failure of this outage.
    pub(crate) fn after_failure(&self, loaded: bool, error: ClientError) -> Freshness {
        match self {
            _ if !loaded => Freshness::Loading { error: Some(error) },
            Freshness::Stale { since, .. } => Freshness::Stale {
                since: *since,
                error,
            },
            _ => Freshness::Stale {
                since: Instant::now(),
                error,
            },
        }
    }
}

/// Monotonic time since the service handle was made, in the balancer's [`Nanos`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// The time now.
    pub fn now(&self) -> Nanos {
        Nanos::from_duration(self.origin.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> ClientError {
        ClientError::Unreachable {
            agent: "http://127.0.0.1:1".to_owned(),
            reason: "connection refused".to_owned(),
        }
    }

    #[test]
    fn an_outage_is_stale_from_its_first_failure() {
        let loading = Freshness::Loading { error: None }.after_failure(false, unreachable());
        assert!(matches!(loading, Freshness::Loading { error: Some(_) }));
        assert_eq!(loading.stale_for(), None);

        let stale = Freshness::Fresh.after_failure(true, unreachable());
        let Freshness::Stale { since, .. } = stale else {
            panic!("a loaded set goes stale: {stale:?}");
        };
        let later = stale.after_failure(true, unreachable());
        assert_eq!(
            later,
            Freshness::Stale {
                since,
                error: unreachable()
            },
            "the outage keeps its start"
        );
        assert!(later.stale_for().is_some());
        assert_eq!(later.error(), Some(&unreachable()));
        assert!(!later.is_fresh());
    }
}
