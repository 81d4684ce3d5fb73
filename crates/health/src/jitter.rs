//! When runs happen: the first-run stagger, the phase spread and the per-interval jitter.
//!
//! Thousands of checks registered together (an agent start-up, a deploy) must not probe in
//! lock-step forever. Each check therefore
//! 1. runs first after a random delay below `min(interval, first_run_max_delay)` — soon, so a
//!    new instance turns healthy quickly, yet spread over up to a second;
//! 2. runs a second time after a random fraction of its interval, which moves it to a random
//!    phase of its period (a 30 s check is not stuck in the first second of every 30);
//! 3. from then on waits its interval, give or take [`JITTER_FRACTION`], after each run ends
//!    (as Consul does: a slow run delays the next one instead of overlapping it).

use std::time::Duration;

/// Each wait between runs is the interval scaled by a random factor in `1 ± JITTER_FRACTION`.
pub(crate) const JITTER_FRACTION: f64 = 0.05;

/// `d` scaled by `factor`, or `d` itself if that is not representable (absurd intervals).
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(d)
}

/// Delay before a check's first run: uniform in `[0, min(interval, max))`.
pub(crate) fn first_delay(interval: Duration, max: Duration) -> Duration {
    scale(interval.min(max), fastrand::f64())
}

/// Delay between the first and the second run: uniform in `(0, interval]`.
pub(crate) fn phase_delay(interval: Duration) -> Duration {
    scale(interval, 1.0 - fastrand::f64())
}

/// Delay between later runs: `interval` ± [`JITTER_FRACTION`].
pub(crate) fn next_delay(interval: Duration) -> Duration {
    scale(
        interval,
        1.0 + JITTER_FRACTION * (2.0 * fastrand::f64() - 1.0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_is_soon() {
        for _ in 0..1000 {
            let d = first_delay(Duration::from_secs(30), Duration::from_secs(1));
            assert!(d < Duration::from_secs(1));
            let d = first_delay(Duration::from_millis(100), Duration::from_secs(1));
            assert!(d < Duration::from_millis(100));
        }
    }

    #[test]
    fn phase_is_within_the_interval() {
        for _ in 0..1000 {
            let d = phase_delay(Duration::from_secs(10));
            assert!(d > Duration::ZERO && d <= Duration::from_secs(10));
        }
    }

    #[test]
    fn jitter_is_small_and_varies() {
        let interval = Duration::from_secs(10);
        let delays: Vec<Duration> = (0..1000).map(|_| next_delay(interval)).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_millis(9_499) && *d <= Duration::from_millis(10_501))
        );
        assert!(delays.iter().any(|d| *d != delays[0]));
    }

    #[test]
    fn huge_intervals_do_not_panic() {
        let _ = next_delay(Duration::MAX);
        let _ = phase_delay(Duration::MAX);
        let _ = first_delay(Duration::MAX, Duration::MAX);
    }
}
