//! Weighted: traffic in proportion to the instances' `Weights`.
//!
//! Owns [`Weighted`]: an eligible member is picked with probability proportional to its current
//! weight (passing weight while passing, warning weight while in warning, 0 = never) times its
//! slow start factor.
//!
//! Why weighted *random* and not nginx's smooth weighted round robin: SWRR keeps a running
//! "current weight" per endpoint that every pick reads and rewrites across the whole set. nginx
//! can afford that because each worker process is single-threaded; our gateway picks from many
//! threads at once, so SWRR would need a lock over the set on every request (breaking DESIGN.md's
//! "readers never wait on a writer longer than a pointer swap") and O(n) work per pick. Weighted
//! random is lock-free, O(1) expected (rejection sampling against the set's largest weight; see
//! [`Candidates::sample_weighted`]), needs no state to carry across set changes, composes with
//! the accept filter by simply re-drawing, and takes fractional slow start weights without
//! rounding. What it gives up is SWRR's exactness over short windows: shares converge at the
//! usual 1/√n rate, which the property tests bound with a chi-square test.

use super::{Candidates, Strategy};

/// Weighted random over eligible members.
#[derive(Clone, Copy, Debug, Default)]
pub struct Weighted;

impl Strategy for Weighted {
    fn select(&self, c: &mut Candidates<'_>) -> Option<usize> {
        let max = f64::from(c.max_weight());
        let k = c.sample_weighted(max, None, |c, k| f64::from(c.weight(k)) * c.ramp(k))?;
        Some(c.index(k))
    }

    fn name(&self) -> &'static str {
        "weighted"
    }

    fn new_instance(&self) -> Box<dyn Strategy> {
        Box::new(Weighted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::with_candidates;
    use crate::{Endpoint, EndpointSet, Health, Nanos};

    #[test]
    fn follows_weights_and_never_picks_zero() {
        let set = EndpointSet::new([
            Endpoint::new("heavy").with_weights(9, 1),
            Endpoint::new("light").with_weights(1, 1),
            Endpoint::new("warn-zero")
                .with_weights(50, 0)
                .with_health(Health::Warning),
        ]);
        let mut rng = fastrand::Rng::with_seed(11);
        let mut counts = [0u32; 3];
        for _ in 0..10_000 {
            let i = with_candidates(&set, Nanos::ZERO, &mut rng, None, |c| Weighted.select(c));
            counts[i.expect("eligible members exist")] += 1;
        }
        assert_eq!(counts[2], 0);
        assert!((8_800..=9_200).contains(&counts[0]), "{counts:?}");
    }
}
