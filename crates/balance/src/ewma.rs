//! The peak-sensitive, exponentially decaying RTT estimate behind `peak_ewma`.
//!
//! Owns [`EwmaConfig`] and the estimate's arithmetic. It follows linkerd2-proxy and finagle's
//! Peak EWMA: a sample above the estimate replaces it at once (peak-sensitive: an endpoint that
//! slows down is avoided immediately), a sample below it is blended in with a weight that grows
//! with the time since the last sample (`1 - e^(-elapsed/decay)`), and between samples the
//! estimate decays toward zero so an endpoint that was slow once is tried again.
//!
//! Why our own and not tower's `load::PeakEwma`: tower's is a `Service` wrapper that reads
//! `tokio::time::Instant::now()` itself and tracks in-flight requests through its own handles,
//! so it can neither be driven by a time the caller passes in nor share one estimate per
//! endpoint across the gateway's routes and the client library. Two deliberate differences from
//! tower's arithmetic: a read does not write the decay back (so how often the balancer happens
//! to look does not change how much the next sample counts), and an endpoint without a sample
//! costs exactly the default RTT rather than a decaying copy of it.

use crate::error::ConfigError;
use crate::time::Nanos;
use std::time::Duration;

/// RTT assumed for an endpoint with no sample yet: 30 ms, linkerd2-proxy's default. Low enough
/// that a new endpoint is tried soon, high enough that it does not take every request.
pub const DEFAULT_RTT: Duration = Duration::from_millis(30);

/// Time constant of the decay: 10 s, linkerd2-proxy's default. A sample `decay` old has
/// weight 1/e.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);

/// How RTT estimates start and fade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EwmaConfig {
    /// Cost of an endpoint before its first sample; default [`DEFAULT_RTT`].
    pub default_rtt: Duration,
    /// Decay time constant; default [`DEFAULT_DECAY`]. Must be above zero.
    pub decay: Duration,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        EwmaConfig {
            default_rtt: DEFAULT_RTT,
            decay: DEFAULT_DECAY,
        }
    }
}

impl EwmaConfig {
    /// Checks the decay is usable (a zero decay would divide by zero).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.decay.is_zero() {
            return Err(ConfigError::ZeroDecay);
        }
        Ok(())
    }

    fn decay_ns(&self) -> f64 {
        // A zero decay is rejected by `validate`; clamp anyway so an unvalidated config degrades
        // to "no memory" instead of producing NaN.
        (self.decay.as_nanos() as f64).max(1.0)
    }
}

/// The estimate itself: nanoseconds, and when the last sample arrived.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RttEstimate {
    rtt_ns: f64,
    sampled_at: Nanos,
}

impl RttEstimate {
    /// An estimate from its first sample.
    pub(crate) fn first(rtt: Duration, at: Nanos) -> Self {
        RttEstimate {
            rtt_ns: rtt.as_nanos() as f64,
            sampled_at: at,
        }
    }

    /// The estimate at `now`: the stored value decayed toward zero since the last sample.
    pub(crate) fn at(&self, now: Nanos, config: &EwmaConfig) -> f64 {
        let elapsed = now.saturating_since(self.sampled_at).as_nanos() as f64;
        self.rtt_ns * (-elapsed / config.decay_ns()).exp()
    }

    /// Folds in a sample taken at `now`.
    pub(crate) fn update(&mut self, rtt: Duration, now: Nanos, config: &EwmaConfig) {
        let sample = rtt.as_nanos() as f64;
        if sample > self.rtt_ns {
            // Peak: believe bad news at once.
            self.rtt_ns = sample;
        } else {
            let elapsed = now.saturating_since(self.sampled_at).as_nanos() as f64;
            let keep = (-elapsed / config.decay_ns()).exp();
            self.rtt_ns = self.rtt_ns * keep + sample * (1.0 - keep);
        }
        self.sampled_at = self.sampled_at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: f64 = 1_000_000.0;

    fn at_ms(ms: u64) -> Nanos {
        Nanos(ms * 1_000_000)
    }

    #[test]
    fn peaks_replace_and_lows_blend() {
        let cfg = EwmaConfig::default();
        let mut e = RttEstimate::first(Duration::from_millis(10), at_ms(0));
        e.update(Duration::from_millis(50), at_ms(1), &cfg);
        assert_eq!(e.at(at_ms(1), &cfg), 50.0 * MS);
        // A fast sample right after barely moves it (it is peak-sensitive, slow to forgive)...
        e.update(Duration::from_millis(5), at_ms(2), &cfg);
        assert!(e.at(at_ms(2), &cfg) > 49.0 * MS);
        // ...one a decay later pulls it most of the way.
        e.update(Duration::from_millis(5), at_ms(2 + 10_000), &cfg);
        let v = e.at(at_ms(2 + 10_000), &cfg);
        assert!(v < 22.0 * MS && v > 5.0 * MS, "{v}");
    }

    #[test]
    fn decays_toward_zero_between_samples() {
        let cfg = EwmaConfig::default();
        let e = RttEstimate::first(Duration::from_millis(100), at_ms(0));
        let later = e.at(at_ms(10_000), &cfg);
        assert!((later - 100.0 * MS / std::f64::consts::E).abs() < MS);
        assert!(e.at(at_ms(60_000), &cfg) < e.at(at_ms(30_000), &cfg));
        // Reads do not change it.
        assert_eq!(e.at(at_ms(0), &cfg), 100.0 * MS);
    }

    #[test]
    fn zero_decay_is_rejected_and_harmless() {
        let cfg = EwmaConfig {
            default_rtt: DEFAULT_RTT,
            decay: Duration::ZERO,
        };
        assert_eq!(cfg.validate(), Err(ConfigError::ZeroDecay));
        let e = RttEstimate::first(Duration::from_millis(1), at_ms(0));
        assert!(e.at(at_ms(1), &cfg).is_finite());
        assert!(EwmaConfig::default().validate().is_ok());
    }
}
