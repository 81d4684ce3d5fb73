//! Slow start: a newly healthy endpoint ramps up instead of taking its full share at once.
//!
//! Owns [`SlowStart`] and its factor, Envoy's formula: with `t = elapsed / window` clamped to
//! `[0, 1]`, the factor is `max(min_weight, t^(1/aggression))`, and exactly 1 from the end of the
//! window on. Aggression 1 is a linear ramp; above 1 the endpoint gets traffic sooner, below 1
//! later. The floor keeps a ramping endpoint from getting nothing, so it warms up at all.
//!
//! How strategies apply the factor (each in the way that keeps its own guarantees): `weighted`
//! and `random` multiply the endpoint's weight by it (its share is then exact); `least_request`
//! and `peak_ewma` divide its cost by it (as Envoy's weighted least request does); `round_robin`
//! admits a ramping endpoint's turn with probability equal to the factor and otherwise passes
//! the turn on. `consistent_hash` deliberately ignores it: moving a sticky key away and back
//! during the window would cost more than the cold cache it protects.
//!
//! It deliberately does not decide *when* an endpoint became healthy: the caller sets
//! [`crate::Endpoint::healthy_since`] from the catalog's status changes.

use crate::error::ConfigError;
use crate::time::Nanos;
use std::time::Duration;

/// Aggression of a linear ramp, Envoy's default.
pub const DEFAULT_AGGRESSION: f64 = 1.0;

/// Share a ramping endpoint gets at the start of its window, in percent of its full share:
/// 10 %, Envoy's default.
pub const DEFAULT_MIN_WEIGHT_PERCENT: f64 = 10.0;

/// A route's slow start configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SlowStart {
    window: Duration,
    aggression: f64,
    min_factor: f64,
}

impl SlowStart {
    /// A linear ramp over `window` starting at [`DEFAULT_MIN_WEIGHT_PERCENT`].
    pub fn new(window: Duration) -> Result<Self, ConfigError> {
        if window.is_zero() {
            return Err(ConfigError::ZeroSlowStartWindow);
        }
        Ok(SlowStart {
            window,
            aggression: DEFAULT_AGGRESSION,
            min_factor: DEFAULT_MIN_WEIGHT_PERCENT / 100.0,
        })
    }

    /// Sets the aggression (finite, above zero): how front-loaded the ramp is.
    pub fn with_aggression(mut self, aggression: f64) -> Result<Self, ConfigError> {
        if !(aggression.is_finite() && aggression > 0.0) {
            return Err(ConfigError::Aggression(aggression));
        }
        self.aggression = aggression;
        Ok(self)
    }

    /// Sets the starting share in percent of the full share (above 0, at most 100).
    pub fn with_min_weight_percent(mut self, percent: f64) -> Result<Self, ConfigError> {
        if !(percent > 0.0 && percent <= 100.0) {
            return Err(ConfigError::MinWeightPercent(percent));
        }
        self.min_factor = percent / 100.0;
        Ok(self)
    }

    /// The ramp's length.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// The ramp's aggression.
    pub fn aggression(&self) -> f64 {
        self.aggression
    }

    /// The starting share, in percent.
    pub fn min_weight_percent(&self) -> f64 {
        self.min_factor * 100.0
    }

    /// The factor (in `(0, 1]`) applied to an endpoint healthy since `healthy_since`, at `now`.
    ///
    /// Non-decreasing in `now`, exactly 1 once the window has passed or when `healthy_since`
    /// is `None`.
    pub fn factor(&self, healthy_since: Option<Nanos>, now: Nanos) -> f64 {
        let Some(since) = healthy_since else {
            return 1.0;
        };
        let elapsed = now.saturating_since(since);
        if elapsed >= self.window {
            return 1.0;
        }
        let t = elapsed.as_nanos() as f64 / self.window.as_nanos() as f64;
        t.powf(1.0 / self.aggression).clamp(self.min_factor, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Nanos {
        Nanos(s * 1_000_000_000)
    }

    #[test]
    fn linear_ramp_with_floor() {
        let ss = SlowStart::new(Duration::from_secs(100)).expect("window");
        let since = Some(secs(10));
        assert_eq!(ss.factor(since, secs(10)), 0.1);
        assert_eq!(ss.factor(since, secs(5)), 0.1, "clock behind the event");
        assert!((ss.factor(since, secs(60)) - 0.5).abs() < 1e-12);
        assert_eq!(ss.factor(since, secs(110)), 1.0);
        assert_eq!(ss.factor(since, secs(1_000)), 1.0);
        assert_eq!(ss.factor(None, secs(10)), 1.0);
    }

    #[test]
    fn aggression_front_loads() {
        let linear = SlowStart::new(Duration::from_secs(100)).expect("window");
        let eager = linear.with_aggression(2.0).expect("aggression");
        let t = secs(25);
        assert!(eager.factor(Some(Nanos::ZERO), t) > linear.factor(Some(Nanos::ZERO), t));
        assert!((eager.factor(Some(Nanos::ZERO), t) - 0.5).abs() < 1e-12);
        assert_eq!(eager.aggression(), 2.0);
    }

    #[test]
    fn rejects_unusable_settings() {
        assert_eq!(
            SlowStart::new(Duration::ZERO),
            Err(ConfigError::ZeroSlowStartWindow)
        );
        let ss = SlowStart::new(Duration::from_secs(1)).expect("window");
        assert!(ss.with_aggression(0.0).is_err());
        assert!(ss.with_aggression(f64::NAN).is_err());
        assert!(ss.with_min_weight_percent(0.0).is_err());
        assert!(ss.with_min_weight_percent(101.0).is_err());
        let full = ss.with_min_weight_percent(100.0).expect("100%");
        assert_eq!(full.factor(Some(Nanos::ZERO), Nanos::ZERO), 1.0);
        assert_eq!(full.min_weight_percent(), 100.0);
        assert_eq!(full.window(), Duration::from_secs(1));
    }
}
