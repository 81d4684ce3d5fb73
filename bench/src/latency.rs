//! Request latencies, recorded into an HDR histogram per task and merged at the end.

use hdrhistogram::Histogram;
use std::fmt;
use std::time::Duration;

/// Highest latency recorded exactly; slower requests are clamped to it (and still counted).
const MAX_TRACKED: Duration = Duration::from_secs(60);
/// Three significant figures: p99 of 4.213 ms is reported as 4.21 ms, not 4 ms.
const SIGNIFICANT_FIGURES: u8 = 3;

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Latencies {
    /// An empty record.
    pub fn new() -> Self {
        let max = u64::try_from(MAX_TRACKED.as_micros()).unwrap_or(u64::MAX);
        // `new_with_bounds` fails only on low < 1, high < 2 * low or figures > 5; these
        // constants are none of those.
        let histogram = Histogram::new_with_bounds(1, max, SIGNIFICANT_FIGURES)
            .expect("constant histogram bounds are valid");
        Self { histogram }
    }

    /// Records one request's latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.histogram.saturating_record(micros);
    }

    /// Adds another task's latencies.
    pub fn merge(&mut self, other: &Latencies) {
        // Both were built with the same bounds, so adding cannot go out of range; a clamp would
        // only lose the maximum's exactness, never counts.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Requests recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The latency at `quantile` (0.0..=1.0).
    pub fn at(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.histogram.value_at_quantile(quantile))
    }

    /// The slowest request.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.histogram.max())
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// A duration printed in the unit a reader expects for request latencies.
pub struct Millis(pub Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_secs_f64() * 1000.0;
        if ms < 10.0 {
            write!(f, "{ms:.2} ms")
        } else if ms < 100.0 {
            write!(f, "{ms:.1} ms")
        } else {
            write!(f, "{ms:.0} ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_merged_records() {
        let mut a = Latencies::new();
        let mut b = Latencies::new();
        for ms in 1..=99 {
            a.record(Duration::from_millis(ms));
        }
        b.record(Duration::from_secs(2));
        a.merge(&b);
        assert_eq!(a.count(), 100);
        assert!((a.at(0.5).as_secs_f64() - 0.050).abs() < 0.001);
        assert!(a.max() >= Duration::from_millis(1999));
        assert_eq!(Millis(Duration::from_micros(4213)).to_string(), "4.21 ms");
    }
}
