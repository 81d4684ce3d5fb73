//! Power of two choices, shared by `least_request` and `peak_ewma` (tower's `balance::p2c`).
//!
//! Draw two distinct eligible members uniformly and take the one with the lower cost. Why not
//! the global minimum: every thread scanning for the minimum sends its next request to the same
//! endpoint (herding), and a scan is O(n); two random choices avoid herding and get
//! exponentially close to the best-of-all balance (Mitzenmacher) at O(1).

use super::Candidates;

/// Picks the cheaper of two random eligible members; with one eligible member, that one.
/// Ties go to the first draw, which is itself random.
pub(super) fn select(
    c: &mut Candidates<'_>,
    cost: impl Fn(&Candidates<'_>, usize) -> f64,
) -> Option<usize> {
    let a = c.sample_uniform(None)?;
    let Some(b) = c.sample_uniform(Some(a)) else {
        return Some(c.index(a));
    };
    let pick = if cost(c, b) < cost(c, a) { b } else { a };
    Some(c.index(pick))
}
