//! The rules a well-behaved Consul client follows between blocking queries (Consul's client
//! rules, `../shared/reference/consul-api-subset.md` §3): which index it sends next, how long
//! it pauses after an answer that changed nothing, how it backs off after failures, and how
//! long it lets one query take.
//!
//! They are plain values so they are unit-tested without a network. Both this crate's
//! [`crate::Discovery`] and the agent's `--upstream-consul` mirror follow them.

use std::time::Duration;

/// How long each blocking query asks the agent to hold the answer (Consul's default).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
/// Added to `wait + wait/16` (the agent's own jitter) for the request timeout, so a slow but
/// healthy answer is not cut off.
pub const TIMEOUT_MARGIN: Duration = Duration::from_secs(5);
/// Least time between two queries of one loop whose index did not move, so an agent that
/// answers at once without blocking is asked at most once a second.
pub const MIN_UNCHANGED_INTERVAL: Duration = Duration::from_secs(1);

/// What an answer's index says about the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The index moved forward: the data may have changed.
    Changed,
    /// Same index: nothing changed (the wait ran out).
    Unchanged,
    /// The index went backwards (the agent's state was reset, or a different server answered):
    /// the data is current, and the next query starts over at index 0.
    WentBackwards,
}

/// The index a loop sends next, following Consul's client rules: an answered index below 1
/// counts as 1, and an index that goes backwards resets the loop to 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexCursor {
    index: u64,
}

impl IndexCursor {
    /// The `index` to send: 0 (answer at once) before the first answer and after a reset.
    pub fn request_index(&self) -> u64 {
        self.index
    }

    /// Takes in an answer's `X-Consul-Index`.
    pub fn advance(&mut self, answered: u64) -> Progress {
        let answered = answered.max(1);
        if answered < self.index {
            self.index = 0;
            Progress::WentBackwards
        } else if answered == self.index {
            Progress::Unchanged
        } else {
            self.index = answered;
            Progress::Changed
        }
    }
}

/// How long a loop pauses after an answer whose index did not move, given how long that query
/// took: whatever is left of [`MIN_UNCHANGED_INTERVAL`]. A query that blocked for its whole
/// wait goes again at once; one answered instantly waits.
pub fn unchanged_pause(elapsed: Duration) -> Duration {
    MIN_UNCHANGED_INTERVAL.saturating_sub(elapsed)
}

/// The request timeout for a blocking query of `wait`: the agent may hold it for
/// `wait + wait/16` (its jitter), plus [`TIMEOUT_MARGIN`] for the answer to travel.
pub fn request_timeout(wait: Duration) -> Duration {
    wait + wait / 16 + TIMEOUT_MARGIN
}

/// Exponential back-off with jitter for consecutive failures: `base` after the first, doubled
/// per failure, capped at `max`.
///
/// Why the bounds are the caller's: the agent's mirror of a remote Consul backs off to 30 s
/// (it is one of many clients of a shared server), while a service's own client wants to
/// notice its local agent is back within a few seconds.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A back-off starting at `base` and capped at `max` (`max` below `base` counts as `base`).
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// The delay before the next retry; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        backoff_delay(self.base, self.max, self.failures, fastrand::f64())
    }

    /// Consecutive failures counted since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forgets the failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The delay after `failures` consecutive failures: `base * 2^(failures-1)`, capped at `max`,
/// then scaled into its upper half by `jitter` in [0, 1) so that loops which failed together
/// do not retry together.
pub fn backoff_delay(base: Duration, max: Duration, failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let full = base.saturating_mul(1 << exponent).min(max);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_query_does_not_block_and_any_answer_is_a_change() {
        let mut cursor = IndexCursor::default();
        assert_eq!(cursor.request_index(), 0);
        assert_eq!(cursor.advance(57), Progress::Changed);
        assert_eq!(cursor.request_index(), 57);
    }

    #[test]
    fn an_index_below_one_counts_as_one() {
        let mut cursor = IndexCursor::default();
        assert_eq!(cursor.advance(0), Progress::Changed);
        assert_eq!(
            cursor.request_index(),
            1,
            "never send index=0 after an answer"
        );
        assert_eq!(cursor.advance(0), Progress::Unchanged);
    }

    #[test]
    fn the_same_index_is_no_change() {
        let mut cursor = IndexCursor::default();
        cursor.advance(10);
        assert_eq!(cursor.advance(10), Progress::Unchanged);
        assert_eq!(cursor.request_index(), 10);
    }

    #[test]
    fn an_index_that_goes_backwards_resets_to_zero() {
        let mut cursor = IndexCursor::default();
        cursor.advance(100);
        assert_eq!(cursor.advance(7), Progress::WentBackwards);
        assert_eq!(cursor.request_index(), 0, "next query answers at once");
        assert_eq!(cursor.advance(7), Progress::Changed);
        assert_eq!(cursor.request_index(), 7);
    }

    #[test]
    fn unchanged_answers_are_rate_limited_but_long_blocks_are_not() {
        assert_eq!(unchanged_pause(Duration::ZERO), MIN_UNCHANGED_INTERVAL);
        assert_eq!(
            unchanged_pause(Duration::from_millis(300)),
            MIN_UNCHANGED_INTERVAL - Duration::from_millis(300)
        );
        assert_eq!(unchanged_pause(Duration::from_secs(300)), Duration::ZERO);
    }

    #[test]
    fn back_off_doubles_with_jitter_up_to_the_cap() {
        let base = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        assert_eq!(backoff_delay(base, max, 1, 1.0), base);
        assert_eq!(backoff_delay(base, max, 1, 0.0), base / 2);
        assert_eq!(backoff_delay(base, max, 3, 1.0), base * 4);
        for failures in [7, 8, 50, u32::MAX] {
            assert_eq!(backoff_delay(base, max, failures, 1.0), max);
            assert_eq!(backoff_delay(base, max, failures, 0.0), max / 2);
        }
        let mut backoff = Backoff::new(base, max);
        let first = backoff.next_delay();
        assert!(first <= base && first >= base / 2);
        for _ in 0..20 {
            assert!(backoff.next_delay() <= max);
        }
        assert_eq!(backoff.failures(), 21);
        backoff.reset();
        assert!(backoff.next_delay() <= base);
    }

    #[test]
    fn a_cap_below_the_base_is_the_base() {
        let mut backoff = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        for _ in 0..5 {
            assert!(backoff.next_delay() <= Duration::from_secs(2));
        }
    }

    #[test]
    fn the_timeout_outlasts_the_agents_jittered_wait() {
        assert_eq!(
            request_timeout(DEFAULT_WAIT),
            Duration::from_millis(300_000 + 18_750) + TIMEOUT_MARGIN
        );
    }
}
