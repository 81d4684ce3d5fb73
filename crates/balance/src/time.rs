//! Time as a number the caller hands in.
//!
//! Owns [`Nanos`], the only notion of time in the crate. It deliberately reads no clock (no
//! `Instant::now`, no tokio time): the gateway converts its tokio `Instant` to nanoseconds since
//! a process origin, the client library does the same, and tests simply count. That is what
//! makes EWMA decay and slow start deterministic and property-testable.

use std::ops::Add;
use std::time::Duration;

/// A point in time: nanoseconds since an origin the caller chooses (process start, a test's 0).
///
/// Why a newtype and not `Instant`: an `Instant` cannot be built from a number, so code that
/// takes one cannot be replayed; a `u64` of nanoseconds lasts 584 years from any origin.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Nanos(pub u64);

impl Nanos {
    /// The origin.
    pub const ZERO: Nanos = Nanos(0);

    /// The point `since` after the origin; saturates at `u64::MAX` nanoseconds.
    pub fn from_duration(since: Duration) -> Self {
        Nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Time from the origin to this point.
    pub fn as_duration(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Time from `earlier` to `self`; zero if `earlier` is later (clocks handed in by different
    /// threads may race by a few nanoseconds, and a negative age means "just now").
    pub fn saturating_since(self, earlier: Nanos) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl From<Duration> for Nanos {
    fn from(since: Duration) -> Self {
        Nanos::from_duration(since)
    }
}

impl Add<Duration> for Nanos {
    type Output = Nanos;

    /// Saturating: a point past `u64::MAX` nanoseconds is clamped rather than wrapped.
    fn add(self, rhs: Duration) -> Nanos {
        Nanos(self.0.saturating_add(Nanos::from_duration(rhs).0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Nanos::ZERO + Duration::from_millis(5);
        assert_eq!(t, Nanos(5_000_000));
        assert_eq!(
            t.saturating_since(Nanos(1_000_000)),
            Duration::from_millis(4)
        );
        assert_eq!(Nanos(1).saturating_since(t), Duration::ZERO);
        assert_eq!(Nanos(u64::MAX) + Duration::from_secs(1), Nanos(u64::MAX));
        assert_eq!(Nanos::from_duration(Duration::MAX), Nanos(u64::MAX));
        assert_eq!(t.as_duration(), Duration::from_millis(5));
    }
}
