//! Selection: the [`Strategy`] trait, the [`Candidates`] a strategy picks from, and the strategies.
//!
//! Owns what every strategy shares (pingora's "selection is a trait; iterating candidates with
//! an accept filter"): [`Candidates`] is one request's view of a set — the members of the chosen
//! split side, the time, the hash key, the random source, the slow start configuration and the
//! accept filter — and a strategy answers with the set index it picked, or `None` when nothing
//! is eligible. An endpoint is *eligible* when its current weight is above zero and the accept
//! filter takes it; no strategy ever returns anything else, and none allocates on the hot path.
//!
//! One module per strategy, each saying why it is built the way it is:
//! [`round_robin`], [`random`], [`least_request`] and [`peak_ewma`] (both power of two choices,
//! sharing `p2c`), [`weighted`], [`consistent_hash`].
//!
//! Deliberately not here: which side of a split a request goes to ([`crate::TagSplit`]), and
//! load bookkeeping ([`crate::EndpointLoad`]).

pub mod consistent_hash;
pub mod least_request;
mod p2c;
pub mod peak_ewma;
pub mod random;
pub mod round_robin;
pub mod weighted;

pub use consistent_hash::ConsistentHash;
pub use least_request::LeastRequest;
pub use peak_ewma::PeakEwma;
pub use random::Random;
pub use round_robin::RoundRobin;
pub use weighted::Weighted;

use crate::endpoint::Endpoint;
use crate::error::ConfigError;
use crate::load::EndpointLoad;
use crate::rng::RandomSource;
use crate::set::EndpointSet;
use crate::slow_start::SlowStart;
use crate::time::Nanos;
use std::fmt;
use std::str::FromStr;

/// Random draws a sampler makes before falling back to an exact scan. Enough that the scan is
/// rare unless most members are rejected or weights are very uneven; few enough that a pick in
/// that case stays a bounded amount of work on top of the scan.
const SAMPLE_ATTEMPTS: usize = 16;

/// The per-request filter: `(set index, endpoint) -> take it?`. It must answer the same way for
/// the same endpoint within one pick (strategies may ask twice).
pub type Accept<'a> = dyn Fn(usize, &Endpoint) -> bool + 'a;

/// A load-balancing algorithm.
///
/// Implementations keep only state that belongs to the route (a round robin cursor); per-endpoint
/// state lives in the set's [`EndpointLoad`]s so it survives set changes and is shared by routes.
pub trait Strategy: fmt::Debug + Send + Sync {
    /// Picks an eligible member and returns its index in the set, or `None` if no member is
    /// eligible (including when there are no members).
    fn select(&self, candidates: &mut Candidates<'_>) -> Option<usize>;

    /// The strategy's configuration name (`"round_robin"`, ...), for the live route table.
    fn name(&self) -> &'static str;

    /// A new instance with the same configuration and fresh route state. A split balances each
    /// side with its own instance so that, e.g., a round robin cursor counts within its side.
    fn new_instance(&self) -> Box<dyn Strategy>;
}

/// The built-in strategies by name, as route configuration spells them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StrategyKind {
    /// `round_robin`: the default, as in HAProxy — cheapest, and exactly even.
    #[default]
    RoundRobin,
    /// `random`.
    Random,
    /// `least_request`: power of two choices over requests in flight.
    LeastRequest,
    /// `peak_ewma`: power of two choices over RTT × load.
    PeakEwma,
    /// `weighted`: proportional to the instances' `Weights`.
    Weighted,
    /// `consistent_hash`: sticky by a hash key.
    ConsistentHash,
}

impl StrategyKind {
    /// Every kind, in documentation order.
    pub const ALL: [StrategyKind; 6] = [
        StrategyKind::RoundRobin,
        StrategyKind::Random,
        StrategyKind::LeastRequest,
        StrategyKind::PeakEwma,
        StrategyKind::Weighted,
        StrategyKind::ConsistentHash,
    ];

    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round_robin",
            StrategyKind::Random => "random",
            StrategyKind::LeastRequest => "least_request",
            StrategyKind::PeakEwma => "peak_ewma",
            StrategyKind::Weighted => "weighted",
            StrategyKind::ConsistentHash => "consistent_hash",
        }
    }

    /// A new instance of the strategy.
    pub fn new_strategy(self) -> Box<dyn Strategy> {
        match self {
            StrategyKind::RoundRobin => Box::new(RoundRobin::default()),
            StrategyKind::Random => Box::new(Random),
            StrategyKind::LeastRequest => Box::new(LeastRequest),
            StrategyKind::PeakEwma => Box::new(PeakEwma),
            StrategyKind::Weighted => Box::new(Weighted),
            StrategyKind::ConsistentHash => Box::new(ConsistentHash),
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ConfigError::UnknownStrategy(s.to_owned()))
    }
}

/// Which positions of the set a pick may choose from: all, one split side, or the other.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Members<'a> {
    /// Every endpoint of a set of this length.
    All(usize),
    /// Only these (sorted) positions.
    Only(&'a [usize]),
    /// Every position below `total` except these (sorted) ones.
    Except { excluded: &'a [usize], total: usize },
}

impl Members<'_> {
    fn len(&self) -> usize {
        match *self {
            Members::All(n) => n,
            Members::Only(only) => only.len(),
            Members::Except { excluded, total } => total - excluded.len(),
        }
    }

    /// The set position of the `k`-th member; `k < len()`.
    fn get(&self, k: usize) -> usize {
        match *self {
            Members::All(_) => k,
            Members::Only(only) => only[k],
            Members::Except { excluded, .. } => {
                // The k-th position not in `excluded`: k plus the number of excluded positions
                // at or before it. `excluded[j] - j` (non-members before excluded[j]) never
                // decreases, so the count is a binary search, O(log |excluded|).
                let (mut lo, mut hi) = (0, excluded.len());
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if excluded[mid] - mid <= k {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                k + lo
            }
        }
    }

    /// The member number of set position `index`, if it is a member.
    fn position_of(&self, index: usize) -> Option<usize> {
        match *self {
            Members::All(n) => (index < n).then_some(index),
            Members::Only(only) => only.binary_search(&index).ok(),
            Members::Except { excluded, total } => {
                if index >= total || excluded.binary_search(&index).is_ok() {
                    None
                } else {
                    Some(index - excluded.partition_point(|&e| e < index))
                }
            }
        }
    }
}

/// One request's view of a set: what a [`Strategy`] picks from.
///
/// Members are numbered `0..len()`; [`Candidates::index`] maps a member to its set index, which
/// is what a strategy returns. Built by [`crate::Balancer::pick`].
pub struct Candidates<'a> {
    set: &'a EndpointSet,
    members: Members<'a>,
    now: Nanos,
    key: Option<&'a [u8]>,
    slow_start: Option<&'a SlowStart>,
    accept: Option<&'a Accept<'a>>,
    rng: &'a mut dyn RandomSource,
}

impl fmt::Debug for Candidates<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Candidates")
            .field("members", &self.members)
            .field("now", &self.now)
            .field("key", &self.key)
            .field("slow_start", &self.slow_start)
            .field("accept", &self.accept.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> Candidates<'a> {
    pub(crate) fn new(
        set: &'a EndpointSet,
        members: Members<'a>,
        now: Nanos,
        key: Option<&'a [u8]>,
        slow_start: Option<&'a SlowStart>,
        accept: Option<&'a Accept<'a>>,
        rng: &'a mut dyn RandomSource,
    ) -> Self {
        Candidates {
            set,
            members,
            now,
            key,
            slow_start,
            accept,
            rng,
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The set index of member `k` (`k < len()`).
    pub fn index(&self, k: usize) -> usize {
        self.members.get(k)
    }

    /// The member number of set index `index`, if that endpoint is a member.
    pub fn member_of(&self, index: usize) -> Option<usize> {
        self.members.position_of(index)
    }

    /// Member `k`'s endpoint.
    pub fn endpoint(&self, k: usize) -> &Endpoint {
        &self.set.endpoints()[self.index(k)]
    }

    /// Member `k`'s load state.
    pub fn load(&self, k: usize) -> &EndpointLoad {
        self.set.load_at(self.index(k))
    }

    /// Member `k`'s current weight ([`Endpoint::weight`]).
    pub fn weight(&self, k: usize) -> u32 {
        self.endpoint(k).weight()
    }

    /// Whether member `k` may be picked: weight above zero and taken by the accept filter.
    pub fn is_eligible(&self, k: usize) -> bool {
        let index = self.index(k);
        let endpoint = &self.set.endpoints()[index];
        endpoint.weight() > 0 && self.accept.is_none_or(|accept| accept(index, endpoint))
    }

    /// Member `k`'s slow start factor in `(0, 1]` (1 without slow start).
    pub fn ramp(&self, k: usize) -> f64 {
        self.slow_start
            .map_or(1.0, |s| s.factor(self.endpoint(k).healthy_since, self.now))
    }

    /// The largest current weight in the whole set, an upper bound for any member's.
    pub fn max_weight(&self) -> u32 {
        self.set.max_weight()
    }

    /// The time of the pick.
    pub fn now(&self) -> Nanos {
        self.now
    }

    /// The hash key, if the request has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// The random source.
    pub fn rng(&mut self) -> &mut dyn RandomSource {
        &mut *self.rng
    }

    /// The whole set (for strategies with set-level caches, like the hash ring).
    pub fn set(&self) -> &'a EndpointSet {
        self.set
    }

    /// A uniformly random eligible member other than `exclude`, or `None` if there is none.
    pub fn sample_uniform(&mut self, exclude: Option<usize>) -> Option<usize> {
        self.sample_weighted(1.0, exclude, |_, _| 1.0)
    }

    /// A random eligible member other than `exclude`, chosen with probability proportional to
    /// `weight` (which must not exceed `max_weight`); `None` if no member has positive weight.
    ///
    /// Exact and allocation-free: up to 16 rounds of rejection sampling (draw a
    /// member uniformly, keep it with probability `weight / max_weight`), then a two-pass scan
    /// over cumulative weights. Both stages pick in proportion to `weight`, so the combination
    /// does too; the expected cost is O(1) when few members are rejected and weights are
    /// similar, and O(len) at worst.
    pub fn sample_weighted(
        &mut self,
        max_weight: f64,
        exclude: Option<usize>,
        weight: impl Fn(&Self, usize) -> f64,
    ) -> Option<usize> {
        let usable = |c: &Self, k: usize| -> f64 {
            if Some(k) == exclude || !c.is_eligible(k) {
                return 0.0;
            }
            let w = weight(c, k);
            if w.is_finite() && w > 0.0 { w } else { 0.0 }
        };
        let len = self.len();
        if len == 0 {
            return None;
        }
        if max_weight.is_finite() && max_weight > 0.0 {
            for _ in 0..SAMPLE_ATTEMPTS {
                let k = self.rng.below(len);
                let w = usable(self, k);
                if w > 0.0 && (w >= max_weight || self.rng.unit() * max_weight < w) {
                    return Some(k);
                }
            }
        }
        let total: f64 = (0..len).map(|k| usable(self, k)).sum();
        if total <= 0.0 {
            return None;
        }
        let target = self.rng.unit() * total;
        let mut cumulative = 0.0;
        let mut last = None;
        for k in 0..len {
            let w = usable(self, k);
            if w > 0.0 {
                cumulative += w;
                last = Some(k);
                if target < cumulative {
                    return Some(k);
                }
            }
        }
        // Only reachable through float rounding at the very top of the range.
        last
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `f` with candidates over all of `set`.
    pub(crate) fn with_candidates<R>(
        set: &EndpointSet,
        now: Nanos,
        rng: &mut dyn RandomSource,
        accept: Option<&Accept<'_>>,
        f: impl FnOnce(&mut Candidates<'_>) -> R,
    ) -> R {
        let mut c = Candidates::new(set, Members::All(set.len()), now, None, None, accept, rng);
        f(&mut c)
    }

    #[test]
    fn except_members_map_both_ways() {
        let excluded = [1, 3, 4, 8];
        let m = Members::Except {
            excluded: &excluded,
            total: 10,
        };
        let expected = [0, 2, 5, 6, 7, 9];
        assert_eq!(m.len(), expected.len());
        for (k, &index) in expected.iter().enumerate() {
            assert_eq!(m.get(k), index);
            assert_eq!(m.position_of(index), Some(k));
        }
        for index in excluded {
            assert_eq!(m.position_of(index), None);
        }
        assert_eq!(m.position_of(10), None);
        let only = Members::Only(&excluded);
        assert_eq!(
            (only.len(), only.get(2), only.position_of(4)),
            (4, 4, Some(2))
        );
        assert_eq!(only.position_of(5), None);
        assert_eq!(Members::All(3).position_of(3), None);
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in StrategyKind::ALL {
            assert_eq!(kind.as_str().parse::<StrategyKind>(), Ok(kind));
            assert_eq!(kind.new_strategy().name(), kind.as_str());
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(
            "fastest".parse::<StrategyKind>(),
            Err(ConfigError::UnknownStrategy("fastest".into()))
        );
    }

    #[test]
    fn weighted_sampling_falls_back_to_an_exact_scan() {
        // One eligible member out of 1,000: rejection sampling almost surely misses, the scan
        // must find it.
        let set = EndpointSet::new((0..1000).map(|i| Endpoint::new(i.to_string())));
        let only_7 = |i: usize, _: &Endpoint| i == 7;
        let mut rng = fastrand::Rng::with_seed(9);
        for _ in 0..20 {
            let got = with_candidates(&set, Nanos::ZERO, &mut rng, Some(&only_7), |c| {
                c.sample_uniform(None)
            });
            assert_eq!(got, Some(7));
            let none = with_candidates(&set, Nanos::ZERO, &mut rng, Some(&only_7), |c| {
                c.sample_uniform(Some(7))
            });
            assert_eq!(none, None);
        }
    }
}
