//! Randomness as an argument.
//!
//! Owns [`RandomSource`], the two draws every strategy needs. It deliberately holds no random
//! state of its own (no thread-local generator): the caller passes one per pick — the gateway a
//! per-worker `fastrand::Rng`, tests a seeded one — so a strategy shared across threads needs no
//! lock for randomness, and every test run can be reproduced from its seed.

/// A source of uniform random numbers.
///
/// Why a trait rather than `fastrand::Rng` itself: tests can script the draws exactly (e.g. to
/// force both P2C candidates), and a caller already holding another generator can adapt it.
pub trait RandomSource {
    /// A uniform integer in `0..n`. Returns 0 when `n` is 0 or 1 rather than panicking, because
    /// a balancer must never take the request path down.
    fn below(&mut self, n: usize) -> usize;

    /// A uniform float in `[0, 1)`.
    fn unit(&mut self) -> f64;
}

impl RandomSource for fastrand::Rng {
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 { 0 } else { self.usize(..n) }
    }

    fn unit(&mut self) -> f64 {
        self.f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_ranges_do_not_panic() {
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
        for _ in 0..100 {
            assert!(rng.below(3) < 3);
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
