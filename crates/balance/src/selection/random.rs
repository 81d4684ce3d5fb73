//! Uniform random.
//!
//! Owns [`Random`]: each eligible member with equal probability, scaled by its slow start factor
//! (so a ramping endpoint's share is exactly `factor / (others + factor)`). Stateless, so it
//! needs no coordination between threads at all — the choice of a client that wants "random
//! with retries" (issue 5), and a good default when many gateways share the same instances and
//! a shared cursor would synchronise them. Deliberately ignores weight magnitudes (`weighted`
//! uses them); weight 0 still means never.

use super::{Candidates, Strategy};

/// Uniformly random over eligible members.
#[derive(Clone, Copy, Debug, Default)]
pub struct Random;

impl Strategy for Random {
    fn select(&self, c: &mut Candidates<'_>) -> Option<usize> {
        let k = c.sample_weighted(1.0, None, |c, k| c.ramp(k))?;
        Some(c.index(k))
    }

    fn name(&self) -> &'static str {
        "random"
    }

    fn new_instance(&self) -> Box<dyn Strategy> {
        Box::new(Random)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::with_candidates;
    use crate::{Endpoint, EndpointSet, Nanos};

    #[test]
    fn picks_only_accepted_members() {
        let set = EndpointSet::new(["a", "b", "c"].map(Endpoint::new));
        let odd = |i: usize, _: &Endpoint| i % 2 == 1;
        let mut rng = fastrand::Rng::with_seed(4);
        for _ in 0..100 {
            let got = with_candidates(&set, Nanos::ZERO, &mut rng, Some(&odd), |c| {
                Random.select(c)
            });
            assert_eq!(got, Some(1));
        }
        let empty = EndpointSet::default();
        assert_eq!(
            with_candidates(&empty, Nanos::ZERO, &mut rng, None, |c| Random.select(c)),
            None
        );
    }
}
