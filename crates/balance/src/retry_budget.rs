//! Retry budgets: retries may add at most a fixed share on top of the original requests, so a
//! struggling service is not buried under its callers' retries.
//!
//! Owns [`RetryBudget`] and its [`RetryBudgetConfig`], the scheme of Finagle's `RetryBudget`,
//! linkerd's retry budgets and tower's `retry::budget::TpsBudget`: every original request
//! deposits `ratio` of a retry, every retry withdraws one, and a reserve of
//! `min_per_second × ttl` retries lets a quiet route retry at all. Deposits and withdrawals are
//! remembered for `ttl`, in ten time slots: a retry is allowed while
//! `reserve + ratio × deposits ≥ withdrawals + 1` over the slots still remembered.
//!
//! What that guarantees, exactly (the property test checks it): over any stretch of time
//! shorter than `ttl` by one slot (`ttl / 10`), the retries granted are at most
//! `ceil(min_per_second × ttl)` plus `ratio` × the requests deposited in that stretch and the
//! `ttl` before it. Note the reserve is a *burst*, not a rate: an idle route may spend all of it
//! at once, and gets it back as those retries age out. A steady `min_per_second` retries per
//! second with no requests at all are always granted.
//!
//! Why our own and not tower's: tower's budget reads `tokio::time::Instant::now()` itself, so it
//! cannot be replayed from a test's clock; this one takes the time as [`Nanos`] and is a pure
//! function of the calls made, like the rest of the balancing code. `ratio` is kept to
//! thousandths (tower keeps it to whole percents).
//!
//! What it deliberately does not own: whether a request may be retried at all (idempotency,
//! which statuses and errors are retryable) and where the retry goes (the balancer, skipping
//! instances already tried). The caller (the gateway's proxy, the client library's `call`)
//! decides those and asks its budget last.
//!
//! Concurrency: a `std::sync::Mutex` around ten slots, held to sum them (no `.await` inside).

use crate::time::Nanos;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Share of a retry each original request earns: 0.2 (retries add at most 20 % load), the
/// default of Finagle, linkerd and tower.
pub const DEFAULT_RATIO: f64 = 0.2;

/// Retries per second allowed even without requests: 10, the default of Finagle, linkerd and
/// tower. Keeps a route with little traffic able to retry its rare failures.
pub const DEFAULT_MIN_PER_SECOND: u32 = 10;

/// How long deposits and withdrawals are remembered: 10 s, the default of Finagle, linkerd and
/// tower.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// Largest accepted ratio: 10 retries per request. Finagle allows ratios above 1 (for requests
/// that are cheap to repeat); beyond 10 the budget no longer limits anything worth limiting.
pub const MAX_RATIO: f64 = 10.0;

/// Shortest accepted `ttl`: 1 s, as tower; shorter windows make the budget follow bursts.
pub const MIN_TTL: Duration = Duration::from_secs(1);

/// Longest accepted `ttl`: 60 s, as tower; a longer memory would let traffic from minutes ago
/// fund retries during an outage now.
pub const MAX_TTL: Duration = Duration::from_secs(60);

/// Time slots the `ttl` is divided into: a deposit or withdrawal is forgotten between
/// `ttl - ttl/SLOTS` and `ttl` after it was made.
const SLOTS: usize = 10;

/// Budget units per retry: the ratio is kept to thousandths.
const UNITS_PER_RETRY: u128 = 1_000;

/// How much a route may retry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudgetConfig {
    /// Retries earned per original request; default [`DEFAULT_RATIO`]. Between 0 and
    /// [`MAX_RATIO`], kept to thousandths.
    pub ratio: f64,
    /// Retries per second allowed on top, even with no requests; default
    /// [`DEFAULT_MIN_PER_SECOND`]. Zero leaves only the ratio.
    pub min_per_second: u32,
    /// How long requests and retries count; default [`DEFAULT_TTL`]. Between [`MIN_TTL`] and
    /// [`MAX_TTL`].
    pub ttl: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            ratio: DEFAULT_RATIO,
            min_per_second: DEFAULT_MIN_PER_SECOND,
            ttl: DEFAULT_TTL,
        }
    }
}

impl RetryBudgetConfig {
    /// Checks the settings can be used; [`RetryBudget::new`] calls it too.
    pub fn validate(&self) -> Result<(), RetryBudgetConfigError> {
        if !(self.ratio.is_finite() && (0.0..=MAX_RATIO).contains(&self.ratio)) {
            return Err(RetryBudgetConfigError::Ratio(self.ratio));
        }
        if !(MIN_TTL..=MAX_TTL).contains(&self.ttl) {
            return Err(RetryBudgetConfigError::Ttl(self.ttl));
        }
        Ok(())
    }
}

/// A retry budget setting that cannot be used. The message names the bad value so it can go
/// into a config diagnostic unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RetryBudgetConfigError {
    /// A ratio that is not a number between 0 and [`MAX_RATIO`].
    #[error("retry budget ratio {0} must be a number between 0 and 10")]
    Ratio(f64),
    /// A ttl outside [`MIN_TTL`]..=[`MAX_TTL`].
    #[error("retry budget ttl {0:?} must be between 1 s and 60 s")]
    Ttl(Duration),
}

/// One route's retry budget, shared by every request on the route.
///
/// `Send + Sync`; every method takes `&self`. Deterministic: the answer depends only on the
/// calls made and the times passed in.
#[derive(Debug)]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    /// Length of one slot in nanoseconds (at least 1).
    slot_nanos: u64,
    /// Units one deposit adds: `ratio` in thousandths.
    deposit_units: u128,
    /// Units always available: `ceil(min_per_second × ttl)` retries.
    reserve_units: u128,
    slots: Mutex<Slots>,
}

/// The remembered counts, one entry per time slot, reused round-robin.
#[derive(Debug, Default)]
struct Slots {
    /// The latest slot index seen; time handed in by racing threads never moves it back.
    latest: u64,
    entries: [Slot; SLOTS],
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    /// Which slot index (`nanos / slot_nanos`) the counts belong to.
    index: u64,
    deposits: u64,
    withdrawals: u64,
}

impl Slots {
    /// Moves to the slot of `now` (or stays at the latest, if `now` is earlier), clearing the
    /// entry it reuses, and returns that entry.
    fn current(&mut self, now: Nanos, slot_nanos: u64) -> &mut Slot {
        let index = (now.0 / slot_nanos).max(self.latest);
        self.latest = index;
        let slot = &mut self.entries[(index % SLOTS as u64) as usize];
        if slot.index != index {
            *slot = Slot {
                index,
                ..Slot::default()
            };
        }
        slot
    }

    /// Deposits and withdrawals over the slots still remembered at the latest index.
    fn totals(&self) -> (u64, u64) {
        self.entries
            .iter()
            .filter(|slot| self.latest.saturating_sub(slot.index) < SLOTS as u64)
            .fold((0, 0), |(deposits, withdrawals), slot| {
                (
                    deposits.saturating_add(slot.deposits),
                    withdrawals.saturating_add(slot.withdrawals),
                )
            })
    }
}

impl RetryBudget {
    /// A budget with nothing deposited yet (only the `min_per_second` reserve to spend).
    pub fn new(config: RetryBudgetConfig) -> Result<Self, RetryBudgetConfigError> {
        config.validate()?;
        let ttl_nanos = config.ttl.as_nanos();
        let slot_nanos = u64::try_from(ttl_nanos / SLOTS as u128)
            .unwrap_or(u64::MAX)
            .max(1);
        // Rounded up to whole retries, so a steady `min_per_second` is always granted even when
        // `min_per_second × ttl` is not a whole number.
        let reserve_retries =
            (u128::from(config.min_per_second) * ttl_nanos).div_ceil(1_000_000_000);
        Ok(RetryBudget {
            config,
            slot_nanos,
            deposit_units: (config.ratio * UNITS_PER_RETRY as f64).round() as u128,
            reserve_units: reserve_retries * UNITS_PER_RETRY,
            slots: Mutex::new(Slots::default()),
        })
    }

    /// The settings this budget runs with.
    pub fn config(&self) -> &RetryBudgetConfig {
        &self.config
    }

    /// Records an original request (not a retry), earning `ratio` of a retry for `ttl`.
    pub fn deposit(&self, now: Nanos) {
        let mut slots = self.lock();
        let slot = slots.current(now, self.slot_nanos);
        slot.deposits = slot.deposits.saturating_add(1);
    }

    /// Spends one retry if the budget has one: call it before each retry and do not retry on
    /// `false` (answer with the failure you have).
    pub fn try_withdraw(&self, now: Nanos) -> bool {
        let mut slots = self.lock();
        slots.current(now, self.slot_nanos);
        if self.available(&slots) == 0 {
            return false;
        }
        let slot = slots.current(now, self.slot_nanos);
        slot.withdrawals = slot.withdrawals.saturating_add(1);
        true
    }

    /// How many retries `try_withdraw` would grant at `now`, for metrics. Records nothing
    /// beyond moving to `now`'s slot.
    pub fn remaining(&self, now: Nanos) -> u64 {
        let mut slots = self.lock();
        slots.current(now, self.slot_nanos);
        self.available(&slots)
    }

    /// Whole retries left: `(reserve + ratio × deposits) − withdrawals`, floored at zero.
    fn available(&self, slots: &Slots) -> u64 {
        let (deposits, withdrawals) = slots.totals();
        let credit = self
            .reserve_units
            .saturating_add(self.deposit_units.saturating_mul(u128::from(deposits)));
        let debit = UNITS_PER_RETRY.saturating_mul(u128::from(withdrawals));
        u64::try_from(credit.saturating_sub(debit) / UNITS_PER_RETRY).unwrap_or(u64::MAX)
    }

    /// The slots. Never left half-updated by a panic, so a poisoned lock is still consistent.
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at_ms(ms: u64) -> Nanos {
        Nanos::from_duration(Duration::from_millis(ms))
    }

    fn budget(ratio: f64, min_per_second: u32, ttl_secs: u64) -> RetryBudget {
        let config = RetryBudgetConfig {
            ratio,
            min_per_second,
            ttl: Duration::from_secs(ttl_secs),
        };
        RetryBudget::new(config).expect("valid config")
    }

    fn withdraw_all(budget: &RetryBudget, now: Nanos) -> u64 {
        let mut granted = 0;
        while budget.try_withdraw(now) {
            granted += 1;
            assert!(granted <= 1_000_000, "budget never ran out");
        }
        granted
    }

    #[test]
    fn shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<RetryBudget>();
    }

    #[test]
    fn config_validation() {
        assert_eq!(RetryBudgetConfig::default().validate(), Ok(()));
        let with = |ratio: f64, ttl: Duration| {
            RetryBudget::new(RetryBudgetConfig {
                ratio,
                ttl,
                ..RetryBudgetConfig::default()
            })
            .err()
        };
        assert_eq!(with(0.0, DEFAULT_TTL), None);
        assert_eq!(with(10.0, DEFAULT_TTL), None);
        assert_eq!(
            with(-0.1, DEFAULT_TTL),
            Some(RetryBudgetConfigError::Ratio(-0.1))
        );
        assert_eq!(
            with(10.5, DEFAULT_TTL),
            Some(RetryBudgetConfigError::Ratio(10.5))
        );
        assert!(matches!(
            with(f64::NAN, DEFAULT_TTL),
            Some(RetryBudgetConfigError::Ratio(_))
        ));
        assert_eq!(
            with(0.2, Duration::from_millis(999)),
            Some(RetryBudgetConfigError::Ttl(Duration::from_millis(999)))
        );
        assert_eq!(
            with(0.2, Duration::from_secs(61)),
            Some(RetryBudgetConfigError::Ttl(Duration::from_secs(61)))
        );
    }

    #[test]
    fn defaults_allow_the_reserve_plus_a_fifth_of_requests() {
        let b = RetryBudget::new(RetryBudgetConfig::default()).expect("valid");
        let now = at_ms(5_000);
        for _ in 0..100 {
            b.deposit(now);
        }
        assert_eq!(b.remaining(now), 100 + 20);
        assert_eq!(withdraw_all(&b, now), 120);
        assert_eq!(b.remaining(now), 0);
    }

    #[test]
    fn ratio_only_and_above_one() {
        let b = budget(0.2, 0, 10);
        assert!(!b.try_withdraw(Nanos::ZERO));
        for _ in 0..4 {
            b.deposit(Nanos::ZERO);
        }
        // 0.8 of a retry is not a retry.
        assert!(!b.try_withdraw(Nanos::ZERO));
        b.deposit(Nanos::ZERO);
        assert_eq!(withdraw_all(&b, Nanos::ZERO), 1);

        let b = budget(2.5, 0, 10);
        b.deposit(Nanos::ZERO);
        b.deposit(Nanos::ZERO);
        assert_eq!(withdraw_all(&b, Nanos::ZERO), 5);

        let b = budget(0.0, 0, 10);
        b.deposit(Nanos::ZERO);
        assert!(!b.try_withdraw(Nanos::ZERO));
    }

    #[test]
    fn deposits_and_withdrawals_age_out_after_the_ttl() {
        let b = budget(0.5, 0, 10);
        for _ in 0..10 {
            b.deposit(at_ms(0));
        }
        assert_eq!(b.remaining(at_ms(8_999)), 5);
        // Slots are a tenth of the ttl: slot 0 is forgotten when slot 10 starts.
        assert_eq!(b.remaining(at_ms(9_999)), 5);
        assert_eq!(b.remaining(at_ms(10_000)), 0);

        let b = budget(0.0, 1, 10);
        assert_eq!(withdraw_all(&b, at_ms(0)), 10);
        assert!(!b.try_withdraw(at_ms(9_999)));
        assert_eq!(withdraw_all(&b, at_ms(10_000)), 10);
    }

    #[test]
    fn time_going_backwards_counts_in_the_latest_slot() {
        let b = budget(1.0, 0, 10);
        b.deposit(at_ms(5_000));
        // A racing thread's slightly older timestamp must not clear or reopen a slot.
        assert!(b.try_withdraw(at_ms(4_000)));
        assert!(!b.try_withdraw(at_ms(4_000)));
        assert_eq!(b.remaining(at_ms(5_000)), 0);
    }

    /// One step of the property test.
    #[derive(Clone, Debug)]
    enum Event {
        Deposit,
        Withdraw,
        Advance(u64),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            4 => Just(Event::Deposit),
            4 => Just(Event::Withdraw),
            1 => (0..3_000_000_000u64).prop_map(Event::Advance),
        ]
    }

    proptest! {
        #[test]
        fn withdrawals_stay_within_ratio_and_reserve(
            ratio_thousandths in 0..=3_000u64,
            min_per_second in 0..20u32,
            ttl_ms in 1_000..=20_000u64,
            start in 0..1_000_000_000_000u64,
            events in proptest::collection::vec(event(), 0..600),
        ) {
            let ratio = ratio_thousandths as f64 / 1_000.0;
            let ttl = Duration::from_millis(ttl_ms);
            let config = RetryBudgetConfig { ratio, min_per_second, ttl };
            let b = RetryBudget::new(config).expect("valid config");
            let mut now = start;
            let mut deposits = Vec::new();
            let mut withdrawals = Vec::new();
            for event in events {
                match event {
                    Event::Deposit => {
                        b.deposit(Nanos(now));
                        deposits.push(now);
                    }
                    Event::Withdraw => {
                        if b.try_withdraw(Nanos(now)) {
                            withdrawals.push(now);
                        }
                    }
                    Event::Advance(ns) => now += ns,
                }
            }

            let ttl_ns = u64::try_from(ttl.as_nanos()).expect("ttl fits");
            let slot_ns = ttl_ns / 10;
            let reserve = (u64::from(min_per_second) * ttl_ns).div_ceil(1_000_000_000);
            for &from in &withdrawals {
                // Nine slots: at most ten distinct slot indices, whatever the phase.
                let to = from + 9 * slot_ns;
                let granted = withdrawals.iter().filter(|&&t| from <= t && t < to).count() as u64;
                let earned = deposits
                    .iter()
                    .filter(|&&t| from.saturating_sub(ttl_ns) <= t && t < to)
                    .count() as u64;
                let bound = reserve + ratio_thousandths * earned / 1_000;
                prop_assert!(
                    granted <= bound,
                    "{} retries granted in [{}, {}), bound {}", granted, from, to, bound
                );
            }
        }

        #[test]
        fn a_steady_min_per_second_trickle_is_granted(
            min_per_second in 1..50u32,
            ttl_ms in 1_000..=60_000u64,
            start in 0..1_000_000_000_000u64,
        ) {
            let ttl = Duration::from_millis(ttl_ms);
            let b = RetryBudget::new(RetryBudgetConfig { ratio: 0.2, min_per_second, ttl })
                .expect("valid config");
            // Rounded up: never faster than `min_per_second`.
            let interval = 1_000_000_000u64.div_ceil(u64::from(min_per_second));
            let attempts = 3 * ttl_ms * u64::from(min_per_second) / 1_000 + 1;
            for n in 0..attempts {
                let now = Nanos(start + n * interval);
                prop_assert!(b.try_withdraw(now), "retry {} at {:?} refused", n, now);
            }
        }
    }
}
