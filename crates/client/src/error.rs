//! What can go wrong talking to the agent, and in a balanced call.

use std::fmt;
use std::time::Duration;

/// A failure talking to the agent, or a setting that cannot work.
///
/// Cloneable, so the reason a service's endpoint set went stale can be kept and shown to every
/// handle that asks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The agent address is not `http(s)://host[:port]`.
    #[error("agent address {url:?} is not usable: {reason}; pass e.g. http://127.0.0.1:8500")]
    BadUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A name or setting the agent would refuse anyway, caught before asking it.
    #[error("{what} is not usable: {reason}")]
    Invalid {
        /// Which setting.
        what: String,
        /// Why not.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot set up the HTTP client for the agent: {0}")]
    Setup(String),
    /// Background work (watching a service, heartbeats) needs a tokio runtime, and there was
    /// none on this thread.
    #[error("{0} must be called from inside a tokio runtime")]
    NoRuntime(&'static str),
    /// The SIGTERM listener a [`crate::Registration`] asked for (see [`crate::OnSigterm`])
    /// could not start: no thread or runtime could be made for it.
    #[error(
        "cannot listen for SIGTERM: {0}; register with OnSigterm::Ignore and deregister on shutdown yourself"
    )]
    Signal(String),
    /// No answer: connection refused or reset, or a timeout.
    #[error("the agent at {agent} is unreachable: {reason}; is `wayfinder agent` running there?")]
    Unreachable {
        /// The agent's base URL.
        agent: String,
        /// What the transport said, with its causes.
        reason: String,
    },
    /// The agent answered, but not with success.
    #[error("{what}: the agent answered {status}: {body}")]
    Status {
        /// The request, e.g. `PUT /v1/agent/service/register`.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The start of the answer's body (the agent's JSON error says what to fix).
        body: String,
    },
    /// Nothing came back in the time allowed, and no request failed either (the agent is slow,
    /// or the first query is still under way).
    #[error("no answer from the agent for {what} within {waited:?}")]
    NoAnswer {
        /// What was waited for.
        what: String,
        /// How long.
        waited: Duration,
    },
    /// A success answer that is not what the endpoint promises.
    #[error("{what}: the agent's answer is malformed: {reason}")]
    Malformed {
        /// The request.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ClientError {
    /// Whether the agent is unreachable or failing (no answer, or a 5xx), as opposed to
    /// refusing a request: worth retrying later, and the sign that a kept set is going stale.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Unreachable { .. })
            || matches!(self, ClientError::Status { status, .. } if *status >= 500)
    }
}

/// Why [`crate::Service::call`] gave up. `E` is the error the caller's closure returned.
#[derive(Debug)]
pub enum CallError<E> {
    /// The service had no endpoint to try before the deadline.
    NoEndpoints {
        /// The service.
        service: String,
        /// Why the set is empty or may be out of date, when the agent could not be asked.
        stale: Option<String>,
    },
    /// The deadline passed during an attempt or between attempts.
    DeadlineExceeded {
        /// The deadline that passed.
        deadline: Duration,
        /// Attempts started.
        attempts: u32,
        /// The last attempt's error, if one finished with an error before the deadline.
        last: Option<E>,
    },
    /// Attempts failed and no more are allowed: the attempt limit, the retry budget, or every
    /// endpoint of the service has been tried.
    Failed {
        /// Attempts made.
        attempts: u32,
        /// Why no further attempt was made.
        stopped: StopReason,
        /// The last attempt's error.
        last: E,
    },
}

/// Why [`crate::Service::call`] made no further attempt after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// [`crate::CallPolicy::max_attempts`] were made.
    MaxAttempts,
    /// The service's retry budget is spent: retries already add as much load as it allows.
    RetryBudget,
    /// Every endpoint in the set was tried once.
    AllEndpointsTried,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopReason::MaxAttempts => "the attempt limit was reached",
            StopReason::RetryBudget => "the retry budget is spent (too many recent retries)",
            StopReason::AllEndpointsTried => "every endpoint was tried",
        })
    }
}

impl<E> CallError<E> {
    /// The last attempt's error, if an attempt finished with one.
    pub fn last_error(&self) -> Option<&E> {
        match self {
            CallError::NoEndpoints { .. } => None,
            CallError::DeadlineExceeded { last, .. } => last.as_ref(),
            CallError::Failed { last, .. } => Some(last),
        }
    }
}

impl<E: fmt::Display> fmt::Display for CallError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::NoEndpoints { service, stale } => {
                write!(f, "service {service:?} has no healthy endpoint")?;
                if let Some(reason) = stale {
                    write!(f, " (the set may be out of date: {reason})")?;
                }
                Ok(())
            }
            CallError::DeadlineExceeded {
                deadline,
                attempts,
                last,
            } => {
                write!(
                    f,
                    "the call's deadline of {deadline:?} passed after {attempts} attempt(s)"
                )?;
                if let Some(last) = last {
                    write!(f, "; the last failed with: {last}")?;
                }
                Ok(())
            }
            CallError::Failed {
                attempts,
                stopped,
                last,
            } => write!(
                f,
                "{attempts} attempt(s) failed and {stopped}; the last failed with: {last}"
            ),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CallError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last_error()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
