//! How a [`crate::Service`] reads, balances and retries: [`ServiceOptions`] and [`CallPolicy`].

use crate::endpoint::WarningPolicy;
use std::time::Duration;
use wayfinder_balance::{RetryBudgetConfig, SlowStart, StrategyKind, TagSplit};

/// How one service's endpoints are chosen, filtered and called.
///
/// The defaults are what our design notes' mobile client did: random selection with retries on
/// another endpoint. Every strategy of `wayfinder-balance` is available, so a Rust service
/// balances exactly as the gateway would.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    pub(crate) strategy: StrategyKind,
    pub(crate) split: Option<TagSplit>,
    pub(crate) slow_start: Option<SlowStart>,
    pub(crate) tags: Vec<String>,
    pub(crate) warnings: WarningPolicy,
    pub(crate) call: CallPolicy,
}

impl ServiceOptions {
    /// Random selection, no tag filter, warning instances included, [`CallPolicy::default`].
    pub fn new() -> Self {
        ServiceOptions {
            strategy: StrategyKind::Random,
            split: None,
            slow_start: None,
            tags: Vec::new(),
            warnings: WarningPolicy::Include,
            call: CallPolicy::default(),
        }
    }

    /// The strategy that picks among the endpoints (default random).
    pub fn strategy(mut self, strategy: StrategyKind) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sends `split.weight()` of the picks to endpoints tagged `split.tag()` (a canary).
    pub fn split(mut self, split: TagSplit) -> Self {
        self.split = Some(split);
        self
    }

    /// Ramps endpoints that became healthy while this client was watching up over a window,
    /// instead of giving them their full share at once.
    pub fn slow_start(mut self, slow_start: SlowStart) -> Self {
        self.slow_start = Some(slow_start);
        self
    }

    /// Only instances carrying `tag` (repeatable: all must match), filtered by the agent.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Whether warning instances take traffic (at their warning weight; default yes).
    pub fn warnings(mut self, policy: WarningPolicy) -> Self {
        self.warnings = policy;
        self
    }

    /// Deadline, attempts and retry budget of [`crate::Service::call`].
    pub fn call_policy(mut self, policy: CallPolicy) -> Self {
        self.call = policy;
        self
    }
}

impl Default for ServiceOptions {
    /// [`ServiceOptions::new`].
    fn default() -> Self {
        ServiceOptions::new()
    }
}

/// The bounds of one [`crate::Service::call`]: an overall deadline, a most number of attempts,
/// and a retry budget shared by every call through the same service handle.
///
/// Why a budget as well as an attempt limit: three attempts per call triple the load on a
/// service that is failing because it is overloaded. The budget lets retries add at most a
/// share (20 % by default) on top of the calls, plus a small reserve so a quiet service can
/// still retry its rare failure (Finagle's and linkerd's scheme).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallPolicy {
    /// The whole call, every attempt and the wait for a first endpoint included (default 10 s).
    pub deadline: Duration,
    /// The most attempts per call, the first included (default 3).
    pub max_attempts: u32,
    /// How much retrying may add on top of the calls.
    pub retry_budget: RetryBudgetConfig,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            deadline: Duration::from_secs(10),
            max_attempts: 3,
            retry_budget: RetryBudgetConfig::default(),
        }
    }
}
