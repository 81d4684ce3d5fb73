//! Passive outlier ejection: instances that keep failing real requests are taken out of one
//! service's rotation for a while, with exponential back-off.
//!
//! Owns [`OutlierDetector`] (one per service) and its [`OutlierConfig`]. It follows Envoy's
//! consecutive-errors outlier detection and linkerd's failure accrual: `consecutive_failures`
//! failures in a row eject an instance for `base_ejection × 2^(earlier ejections)`, capped at
//! `max_ejection`. When the ejection runs out the instance is on *probation* (half-open): it is
//! available again, one success re-admits it, and one failure ejects it again at once with the
//! doubled back-off. The back-off multiplier is forgotten once a re-admitted instance has gone
//! `max_ejection` without being ejected again, so an instance that flaps keeps backing off while
//! one that recovered for good starts over.
//!
//! The `max_ejected_percent` cap is the protection against ejecting a whole service because the
//! *callers* or the network are at fault: an ejection that would leave more than that share of
//! the service's instances ejected is not made (counted in [`OutlierDetector::suppressed`]).
//! With the default 50 % a service of one instance is never ejected, deliberately: sending to a
//! failing instance is better than answering 503 without trying. A service's size is what the
//! caller last told [`OutlierDetector::set_members`]; outcomes for other IDs are ignored, so a
//! late answer from an instance that has just left cannot bring it back or skew the cap.
//!
//! What it deliberately does not own: deciding what a failure is (the proxy classifies
//! connection errors and 5xx answers), health checks (the catalog's business: an instance that
//! fails its checks is not a candidate at all), and reading a clock (time is a [`Nanos`] the
//! caller passes in, so tests replay it exactly). It only answers "may this instance take a
//! request now?"; the proxy asks through the balancer's `accept` filter.
//!
//! Concurrency: one `std::sync::Mutex` per service, held for a hash lookup and a few
//! assignments. Only an ejection attempt scans the instances with a record to apply the cap;
//! that happens at most once per failure past the threshold.
//!
//! Memory: an instance that has never failed (or has fully recovered) costs one shared ID
//! pointer in the member set, nothing more; state is kept only for instances with something to
//! remember. With 100,000 routed instances the per-instance state map was ~100 B of the
//! gateway's footprint per instance (issue 10), for instances that almost never fail.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use wayfinder_balance::Nanos;

/// Failures in a row that eject an instance: 5, Envoy's `consecutive_5xx` default.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;

/// Length of a first ejection: 1 s. Short, because a passive detector also ejects instances
/// that merely had a bad second; repeat offenders back off exponentially from here.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(1);

/// Longest ejection: 60 s. Long enough that a dead instance costs few probes, short enough that
/// a recovered one is back within a minute even if health checks never notice anything.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(60);

/// Most of a service that may be ejected at once, in percent: 50 %. Above that the failures
/// are more likely the callers' or the network's than the instances'.
pub const DEFAULT_MAX_EJECTED_PERCENT: u8 = 50;

/// When instances of one service are ejected and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Failures in a row (no success in between) that eject an instance; default
    /// [`DEFAULT_CONSECUTIVE_FAILURES`]. Must be at least 1.
    pub consecutive_failures: u32,
    /// Length of an instance's first ejection; default [`DEFAULT_BASE_EJECTION`]. Each further
    /// ejection doubles it. Must be above zero and at most `max_ejection`.
    pub base_ejection: Duration,
    /// Cap on an ejection's length; default [`DEFAULT_MAX_EJECTION`]. Also how long a
    /// re-admitted instance must stay un-ejected before its back-off is forgotten.
    pub max_ejection: Duration,
    /// Most of the service that may be ejected at once, in percent (0 disables ejection);
    /// default [`DEFAULT_MAX_EJECTED_PERCENT`]. At most 100.
    pub max_ejected_percent: u8,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig {
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
            max_ejected_percent: DEFAULT_MAX_EJECTED_PERCENT,
        }
    }
}

impl OutlierConfig {
    /// Checks the settings can be used; [`OutlierDetector::new`] calls it too, so a detector
    /// never runs with a setting that would eject on every failure or never end an ejection.
    pub fn validate(&self) -> Result<(), OutlierConfigError> {
        if self.consecutive_failures == 0 {
            return Err(OutlierConfigError::ZeroFailures);
        }
        if self.max_ejected_percent > 100 {
            return Err(OutlierConfigError::Percent(self.max_ejected_percent));
        }
        if self.base_ejection.is_zero() {
            return Err(OutlierConfigError::ZeroBaseEjection);
        }
        if self.base_ejection > self.max_ejection {
            return Err(OutlierConfigError::BaseAboveMax {
                base: self.base_ejection,
                max: self.max_ejection,
            });
        }
        Ok(())
    }
}

/// An outlier detection setting that cannot be used. The message names the bad value so it can
/// go into a config diagnostic unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutlierConfigError {
    /// Zero consecutive failures would eject an instance before it failed at all.
    #[error("outlier consecutive failures must be at least 1")]
    ZeroFailures,
    /// A share above 100 %.
    #[error("outlier max ejected percent {0} must be at most 100")]
    Percent(u8),
    /// A zero-length ejection would not take the instance out of rotation.
    #[error("outlier base ejection must be longer than zero")]
    ZeroBaseEjection,
    /// The first ejection would already be longer than the cap.
    #[error("outlier base ejection {base:?} is longer than max ejection {max:?}")]
    BaseAboveMax {
        /// The configured base ejection.
        base: Duration,
        /// The configured max ejection.
        max: Duration,
    },
}

/// Passive outlier detection for one service's instances, shared by every request to it.
///
/// `Send + Sync`; every method takes `&self` and holds an internal lock only for a few
/// instructions (never across an `.await`, as none of them is async).
#[derive(Debug)]
pub struct OutlierDetector {
    config: OutlierConfig,
    instances: Mutex<Instances>,
    ejections: AtomicU64,
    suppressed: AtomicU64,
}

/// The service's instances, and what is remembered about the few that need it.
#[derive(Debug, Default)]
struct Instances {
    /// Every instance of the service, as the caller last said.
    members: HashSet<Arc<str>>,
    /// The members whose state is not the default (failures, ejections, back-off); a member
    /// absent here is healthy with nothing to forgive.
    states: HashMap<Arc<str>, InstanceState>,
}

impl Instances {
    /// The state of member `id`, made on first use; `None` for an ID that is not a member.
    fn state_mut(&mut self, id: &str) -> Option<&mut InstanceState> {
        let key = self.members.get(id)?;
        Some(self.states.entry(Arc::clone(key)).or_default())
    }

    /// Drops `id`'s state if it is back to the default, so that it costs nothing again.
    fn tidy(&mut self, id: &str) {
        if self
            .states
            .get(id)
            .is_some_and(|state| *state == InstanceState::default())
        {
            self.states.remove(id);
        }
    }
}

/// What the detector remembers about one instance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct InstanceState {
    /// Failures since the last success or ejection.
    consecutive_failures: u32,
    /// Ejections not yet forgiven: the back-off exponent for the next one.
    ejections: u32,
    /// Set by an ejection: ejected before this point, on probation from it until the next
    /// success (or failure, which ejects again).
    ejected_until: Option<Nanos>,
    /// When probation last ended with a success; the back-off is forgiven `max_ejection` later.
    readmitted_at: Option<Nanos>,
}

/// Where an instance stands at one point in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Healthy,
    Ejected,
    Probation,
}

impl InstanceState {
    fn phase(&self, now: Nanos) -> Phase {
        match self.ejected_until {
            None => Phase::Healthy,
            Some(until) if now < until => Phase::Ejected,
            Some(_) => Phase::Probation,
        }
    }

    /// Forgets the back-off of an instance that has stayed admitted for `max_ejection`.
    fn forgive(&mut self, now: Nanos, max_ejection: Duration) {
        if let Some(at) = self.readmitted_at
            && now.saturating_since(at) >= max_ejection
        {
            self.ejections = 0;
            self.readmitted_at = None;
        }
    }
}

impl OutlierDetector {
    /// A detector with no members yet; tell it the service's instances with
    /// [`OutlierDetector::set_members`] before recording outcomes.
    pub fn new(config: OutlierConfig) -> Result<Self, OutlierConfigError> {
        config.validate()?;
        Ok(OutlierDetector {
            config,
            instances: Mutex::new(Instances::default()),
            ejections: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        })
    }

    /// The settings this detector runs with.
    pub fn config(&self) -> &OutlierConfig {
        &self.config
    }

    /// Makes `ids` the service's instances: new ones start healthy, ones that stay keep their
    /// state, ones missing are forgotten. Call it on every discovery change for the service.
    ///
    /// If the service shrank so far that more than `max_ejected_percent` of it is now ejected,
    /// the ejections closest to their end are cut short (the instances go on probation) until
    /// the cap holds again: a service must not be left unreachable because its healthy
    /// instances left.
    ///
    /// The IDs are shared, not copied: pass the same `Arc<str>`s the caller's endpoints hold.
    pub fn set_members(&self, ids: impl IntoIterator<Item = Arc<str>>, now: Nanos) {
        let mut instances = self.lock();
        instances.members = ids.into_iter().collect();
        let Instances { members, states } = &mut *instances;
        states.retain(|id, _| members.contains(id));

        let allowed = self.max_ejected(members.len());
        let mut ejected: Vec<&mut InstanceState> = states
            .values_mut()
            .filter(|state| state.phase(now) == Phase::Ejected)
            .collect();
        ejected.sort_by_key(|state| state.ejected_until);
        let excess = ejected.len().saturating_sub(allowed);
        for state in ejected.into_iter().take(excess) {
            state.ejected_until = Some(now);
        }
    }

    /// Records a request to `id` that succeeded. Ends probation (the instance is fully back and
    /// its failure count starts over); ignored while the instance is ejected, because such an
    /// answer is to a request sent before the ejection.
    pub fn record_success(&self, id: &str, now: Nanos) {
        let mut instances = self.lock();
        // The common case, a healthy instance with nothing on record, is one failed lookup.
        let Some(state) = instances.states.get_mut(id) else {
            return;
        };
        match state.phase(now) {
            Phase::Ejected => {}
            Phase::Probation => {
                state.ejected_until = None;
                state.consecutive_failures = 0;
                state.readmitted_at = Some(now);
            }
            Phase::Healthy => {
                state.consecutive_failures = 0;
                state.forgive(now, self.config.max_ejection);
            }
        }
        instances.tidy(id);
    }

    /// Records a request to `id` that failed. Returns the ejection's length if this failure
    /// ejected the instance: the `consecutive_failures`-th in a row, or any failure on
    /// probation. An ejection the cap forbids is not made; the next failure tries again.
    /// Ignored while the instance is ejected (the request was sent before the ejection).
    pub fn record_failure(&self, id: &str, now: Nanos) -> Option<Duration> {
        let mut instances = self.lock();
        let state = instances.state_mut(id)?;
        let phase = state.phase(now);
        if phase == Phase::Ejected {
            return None;
        }
        state.forgive(now, self.config.max_ejection);
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        if phase == Phase::Healthy && state.consecutive_failures < self.config.consecutive_failures
        {
            return None;
        }

        // This instance is not ejected now, so it is not among those counted; a member without
        // a record is not ejected either.
        let members = instances.members.len();
        let ejected = instances
            .states
            .values()
            .filter(|other| other.phase(now) == Phase::Ejected)
            .count();
        if ejected.saturating_add(1) > self.max_ejected(members) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }

        let state = instances.states.get_mut(id)?;
        let length = self.ejection_length(state.ejections);
        state.ejected_until = Some(now + length);
        state.ejections = state.ejections.saturating_add(1);
        state.consecutive_failures = 0;
        state.readmitted_at = None;
        self.ejections.fetch_add(1, Ordering::Relaxed);
        Some(length)
    }

    /// Whether `id` may take a request at `now`: false only while it is ejected. Instances the
    /// detector does not know are available (health is not this module's call).
    pub fn is_available(&self, id: &str, now: Nanos) -> bool {
        self.lock()
            .states
            .get(id)
            .is_none_or(|state| state.phase(now) != Phase::Ejected)
    }

    /// The instances ejected at `now` and how long each stays out, sorted by ID, for
    /// `GET /v1/routes`-style reports and metrics.
    pub fn ejected(&self, now: Nanos) -> Vec<(String, Duration)> {
        let mut ejected: Vec<(String, Duration)> = self
            .lock()
            .states
            .iter()
            .filter_map(|(id, state)| match state.ejected_until {
                Some(until) if now < until => Some((id.to_string(), until.saturating_since(now))),
                _ => None,
            })
            .collect();
        ejected.sort();
        ejected
    }

    /// How many instances the detector currently counts as the service.
    pub fn members(&self) -> usize {
        self.lock().members.len()
    }

    /// Ejections made since the detector was built: a counter for metrics.
    pub fn total_ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Ejections the `max_ejected_percent` cap prevented: a counter for metrics. A rising count
    /// means most of the service is failing, which ejection cannot fix.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }

    /// How many of `members` instances may be ejected at once.
    fn max_ejected(&self, members: usize) -> usize {
        members.saturating_mul(usize::from(self.config.max_ejected_percent)) / 100
    }

    /// `base × 2^earlier`, capped at `max`.
    fn ejection_length(&self, earlier: u32) -> Duration {
        let factor = 1u32.checked_shl(earlier).unwrap_or(u32::MAX);
        self.config
            .base_ejection
            .saturating_mul(factor)
            .min(self.config.max_ejection)
    }

    /// The instances. Nothing in this module panics while holding the lock, so a poisoned lock
    /// (a panic elsewhere in the thread) still guards consistent state.
    fn lock(&self) -> MutexGuard<'_, Instances> {
        self.instances
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn at(secs: u64) -> Nanos {
        Nanos::from_duration(Duration::from_secs(secs))
    }

    fn detector(config: OutlierConfig, ids: &[&str]) -> OutlierDetector {
        let detector = OutlierDetector::new(config).expect("valid config");
        detector.set_members(ids.iter().copied().map(Arc::from), Nanos::ZERO);
        detector
    }

    fn fail_times(
        detector: &OutlierDetector,
        id: &str,
        times: u32,
        now: Nanos,
    ) -> Option<Duration> {
        let mut last = None;
        for _ in 0..times {
            last = detector.record_failure(id, now);
        }
        last
    }

    #[test]
    fn shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<OutlierDetector>();
    }

    #[test]
    fn config_validation() {
        assert_eq!(OutlierConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut OutlierConfig)| {
            let mut config = OutlierConfig::default();
            f(&mut config);
            OutlierDetector::new(config).err()
        };
        assert_eq!(
            bad(|c| c.consecutive_failures = 0),
            Some(OutlierConfigError::ZeroFailures)
        );
        assert_eq!(
            bad(|c| c.max_ejected_percent = 101),
            Some(OutlierConfigError::Percent(101))
        );
        assert_eq!(
            bad(|c| c.base_ejection = Duration::ZERO),
            Some(OutlierConfigError::ZeroBaseEjection)
        );
        assert_eq!(
            bad(|c| c.base_ejection = Duration::from_secs(61)),
            Some(OutlierConfigError::BaseAboveMax {
                base: Duration::from_secs(61),
                max: DEFAULT_MAX_EJECTION
            })
        );
        assert_eq!(bad(|c| c.max_ejected_percent = 0), None);
    }

    #[test]
    fn consecutive_failures_eject_and_a_success_resets_the_count() {
        let d = detector(OutlierConfig::default(), &["a", "b", "c", "d"]);
        let now = at(1);
        assert_eq!(fail_times(&d, "a", 4, now), None);
        d.record_success("a", now);
        assert_eq!(fail_times(&d, "a", 4, now), None);
        assert!(d.is_available("a", now));
        assert_eq!(d.record_failure("a", now), Some(SECOND));
        assert!(!d.is_available("a", now));
        assert!(d.is_available("b", now));
        assert_eq!(d.ejected(now), vec![("a".to_owned(), SECOND)]);
        assert_eq!(
            d.ejected(now + Duration::from_millis(400)),
            vec![("a".to_owned(), Duration::from_millis(600))]
        );
        assert_eq!(d.total_ejections(), 1);
        // The ejection ends by itself.
        assert!(d.is_available("a", now + SECOND));
        assert!(d.ejected(now + SECOND).is_empty());
    }

    #[test]
    fn outcomes_while_ejected_are_ignored() {
        let d = detector(OutlierConfig::default(), &["a", "b"]);
        let now = at(0);
        assert_eq!(fail_times(&d, "a", 5, now), Some(SECOND));
        let later = now + Duration::from_millis(500);
        assert_eq!(fail_times(&d, "a", 10, later), None);
        d.record_success("a", later);
        assert!(!d.is_available("a", later));
        assert_eq!(
            d.ejected(later),
            vec![("a".to_owned(), Duration::from_millis(500))]
        );
        assert_eq!(d.total_ejections(), 1);
    }

    #[test]
    fn probation_failure_doubles_up_to_the_cap() {
        let d = detector(OutlierConfig::default(), &["a", "b"]);
        let mut now = at(0);
        assert_eq!(fail_times(&d, "a", 5, now), Some(SECOND));
        let mut expected = SECOND;
        for _ in 0..10 {
            now = now + expected;
            assert!(d.is_available("a", now), "on probation, available");
            expected = (expected * 2).min(DEFAULT_MAX_EJECTION);
            // One failure on probation is enough.
            assert_eq!(d.record_failure("a", now), Some(expected));
        }
        assert_eq!(expected, DEFAULT_MAX_EJECTION);
    }

    #[test]
    fn success_on_probation_readmits_and_back_off_is_forgiven_later() {
        let d = detector(OutlierConfig::default(), &["a", "b"]);
        let now = at(0);
        assert_eq!(fail_times(&d, "a", 5, now), Some(SECOND));
        assert_eq!(d.record_failure("a", now + SECOND), Some(2 * SECOND));
        let back = now + 3 * SECOND;
        d.record_success("a", back);
        // Fully back: one failure no longer ejects.
        assert_eq!(fail_times(&d, "a", 4, back), None);
        // Soon after re-admission the back-off is remembered: 4 s.
        assert_eq!(d.record_failure("a", back), Some(4 * SECOND));

        let back = back + 4 * SECOND;
        d.record_success("a", back);
        // After `max_ejection` healthy, it is forgotten: 1 s again.
        let much_later = back + DEFAULT_MAX_EJECTION;
        assert_eq!(fail_times(&d, "a", 5, much_later), Some(SECOND));
    }

    #[test]
    fn cap_never_ejects_a_lone_instance() {
        let d = detector(OutlierConfig::default(), &["only"]);
        let now = at(0);
        assert_eq!(fail_times(&d, "only", 50, now), None);
        assert!(d.is_available("only", now));
        assert_eq!(d.total_ejections(), 0);
        assert_eq!(d.suppressed(), 46);
    }

    #[test]
    fn cap_limits_the_ejected_share_and_retries_once_room_frees() {
        let d = detector(OutlierConfig::default(), &["a", "b", "c", "d"]);
        let now = at(0);
        assert_eq!(fail_times(&d, "a", 5, now), Some(SECOND));
        assert_eq!(fail_times(&d, "b", 5, now), Some(SECOND));
        // Two of four is the 50 % cap: c stays in.
        assert_eq!(fail_times(&d, "c", 5, now), None);
        assert!(d.is_available("c", now));
        // Once a and b are back, c's next failure ejects it (its count is past the threshold).
        assert_eq!(d.record_failure("c", now + SECOND), Some(SECOND));
    }

    #[test]
    fn unknown_and_departed_instances_are_ignored() {
        let d = detector(OutlierConfig::default(), &["a", "b"]);
        let now = at(0);
        assert_eq!(fail_times(&d, "ghost", 10, now), None);
        assert!(d.is_available("ghost", now));
        assert_eq!(d.members(), 2);

        assert_eq!(fail_times(&d, "a", 4, now), None);
        d.set_members(["b", "c", "a"].map(Arc::from), now);
        assert_eq!(d.members(), 3);
        // a kept its count.
        assert_eq!(d.record_failure("a", now), Some(SECOND));
        d.set_members(["b", "c"].map(Arc::from), now);
        assert!(d.is_available("a", now));
        assert!(d.ejected(now).is_empty());
        // Re-added, it starts over.
        d.set_members(["a", "b", "c"].map(Arc::from), now);
        assert_eq!(fail_times(&d, "a", 4, now), None);
    }

    #[test]
    fn only_instances_with_something_to_remember_have_a_record() {
        let d = detector(OutlierConfig::default(), &["a", "b", "c", "d"]);
        let now = at(0);
        d.record_success("a", now);
        // A success on a clean instance records nothing.
        assert_eq!(d.lock().states.len(), 0);
        assert_eq!(fail_times(&d, "b", 2, now), None);
        assert_eq!(d.lock().states.len(), 1);
        // A success resets the count: nothing left to remember.
        d.record_success("b", now);
        assert_eq!(d.lock().states.len(), 0);
        // Ejected, then re-admitted: the back-off is remembered until it is forgiven.
        assert_eq!(fail_times(&d, "c", 5, now), Some(SECOND));
        d.record_success("c", at(2));
        assert_eq!(d.lock().states.len(), 1);
        d.record_success("c", at(2) + DEFAULT_MAX_EJECTION);
        assert_eq!(d.lock().states.len(), 0);
        // Departed members' records go with them.
        assert_eq!(fail_times(&d, "d", 1, now), None);
        d.set_members(["a", "b", "c"].map(Arc::from), now);
        assert_eq!(d.lock().states.len(), 0);
    }

    #[test]
    fn shrinking_the_service_lifts_ejections_over_the_cap() {
        let d = detector(OutlierConfig::default(), &["a", "b", "c", "d"]);
        assert_eq!(fail_times(&d, "a", 5, at(0)), Some(SECOND));
        assert_eq!(d.record_failure("a", at(1)), Some(2 * SECOND));
        assert_eq!(fail_times(&d, "b", 5, at(1)), Some(SECOND));
        // a is out until 3 s, b until 2 s. With only a and b left, one may stay out: the one
        // ending later.
        d.set_members(["a", "b"].map(Arc::from), at(1));
        assert!(d.is_available("b", at(1)));
        assert!(!d.is_available("a", at(1)));
        // b is on probation: one more failure would eject it again, but the cap forbids that.
        assert_eq!(d.record_failure("b", at(1)), None);
    }

    /// One step of the property test.
    #[derive(Clone, Debug)]
    enum Event {
        Success(usize),
        Failure(usize),
        Advance(u64),
        Members(Vec<bool>),
    }

    const POOL: usize = 6;

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            3 => (0..POOL).prop_map(Event::Success),
            6 => (1..POOL).prop_map(Event::Failure),
            3 => (0..3_000u64).prop_map(Event::Advance),
            1 => proptest::collection::vec(any::<bool>(), POOL).prop_map(Event::Members),
        ]
    }

    proptest! {
        #[test]
        fn ejected_share_stays_under_the_cap(
            failures in 1..4u32,
            base_ms in 1..2_000u64,
            extra_ms in 0..5_000u64,
            percent in 0..=100u8,
            events in proptest::collection::vec(event(), 0..300),
        ) {
            let config = OutlierConfig {
                consecutive_failures: failures,
                base_ejection: Duration::from_millis(base_ms),
                max_ejection: Duration::from_millis(base_ms + extra_ms),
                max_ejected_percent: percent,
            };
            let names: Vec<String> = (0..POOL).map(|i| format!("i{i}")).collect();
            let d = OutlierDetector::new(config).expect("valid config");
            let mut now = Nanos(1_000);
            d.set_members(names.iter().map(|n| Arc::from(n.as_str())), now);
            for event in events {
                match event {
                    // Instance 0 only ever succeeds.
                    Event::Success(i) => d.record_success(&names[i], now),
                    Event::Failure(i) => {
                        if let Some(length) = d.record_failure(&names[i], now) {
                            prop_assert!(length >= config.base_ejection);
                            prop_assert!(length <= config.max_ejection);
                            prop_assert!(!d.is_available(&names[i], now));
                        }
                    }
                    Event::Advance(ms) => now = now + Duration::from_millis(ms),
                    Event::Members(keep) => {
                        // Instance 0 stays, so the service is never empty.
                        let ids = names
                            .iter()
                            .zip(keep)
                            .enumerate()
                            .filter(|(i, (_, keep))| *i == 0 || *keep)
                            .map(|(_, (name, _))| Arc::from(name.as_str()));
                        d.set_members(ids, now);
                    }
                }
                let ejected = d.ejected(now);
                prop_assert!(
                    ejected.len() * 100 <= usize::from(percent) * d.members(),
                    "{} of {} ejected, cap {}%", ejected.len(), d.members(), percent
                );
                let unavailable = names.iter().filter(|n| !d.is_available(n, now)).count();
                prop_assert_eq!(unavailable, ejected.len());
                prop_assert!(d.is_available(&names[0], now));
                prop_assert!(ejected.iter().all(|(id, left)| id != &names[0] && !left.is_zero()));
            }
        }
    }
}
