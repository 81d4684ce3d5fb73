//! Helpers shared by the property tests.

use proptest::test_runner::{Config, RngSeed};
use wayfinder_balance::{Balancer, Endpoint, EndpointSet, Nanos, Pick};

/// `cases` cases from a fixed proptest seed, so CI and a developer see the same inputs.
pub fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x0057_a7e5_2024),
        ..Config::default()
    }
}

/// `n` default endpoints named `e0`, `e1`, ...
pub fn uniform_set(n: usize) -> EndpointSet {
    EndpointSet::new((0..n).map(|i| Endpoint::new(format!("e{i}"))))
}

/// One pick with no key and no filter.
pub fn pick(b: &Balancer, set: &EndpointSet, now: Nanos, rng: &mut fastrand::Rng) -> Option<usize> {
    b.pick(set, Pick::new(now, rng))
}

/// Counts `picks` picks per endpoint index.
pub fn counts(
    b: &Balancer,
    set: &EndpointSet,
    now: Nanos,
    rng: &mut fastrand::Rng,
    picks: usize,
) -> Vec<usize> {
    let mut counts = vec![0; set.len()];
    for _ in 0..picks {
        let i = pick(b, set, now, rng).expect("the set has eligible endpoints");
        counts[i] += 1;
    }
    counts
}

/// Pearson's chi-square statistic of observed counts against expected probabilities (cells
/// with probability 0 are left out; they are checked to be 0 separately).
pub fn chi_square(observed: &[usize], probabilities: &[f64]) -> (f64, usize) {
    let total: usize = observed.iter().sum();
    let mut stat = 0.0;
    let mut cells: usize = 0;
    for (&o, &p) in observed.iter().zip(probabilities) {
        if p > 0.0 {
            let e = p * total as f64;
            stat += (o as f64 - e).powi(2) / e;
            cells += 1;
        }
    }
    (stat, cells.saturating_sub(1))
}

/// The chi-square value a correct sampler exceeds with probability about 1e-6 (Wilson–Hilferty
/// approximation, z = 4.75; conservative for small df). Many cases run per test, so the bound is
/// chosen for a false-alarm rate far below one in the lifetime of the suite.
pub fn chi_square_critical(df: usize) -> f64 {
    let k = df.max(1) as f64;
    let z = 4.75;
    let c = 2.0 / (9.0 * k);
    k * (1.0 - c + z * c.sqrt()).powi(3)
}

/// Seconds as `Nanos`.
pub fn secs(s: f64) -> Nanos {
    Nanos((s * 1e9) as u64)
}
