//! The route's balancer: strategy, optional tag split and slow start, applied per request.
//!
//! Owns [`Balancer`], the one thing a gateway route or a client-library service handle keeps,
//! and [`Pick`], the per-request inputs. A balancer holds route state only (round robin cursors)
//! and is not tied to a set: each pick names the current snapshot, so a discovery change is a
//! pointer swap on the caller's side and the next pick simply sees the new set.
//!
//! It deliberately does not retry, eject or time out: the gateway does, expressing "skip the
//! ejected ones and the ones this request already tried" as [`Pick::accept`].

use crate::endpoint::Endpoint;
use crate::rng::RandomSource;
use crate::selection::{Accept, Candidates, Members, Strategy, StrategyKind};
use crate::set::EndpointSet;
use crate::slow_start::SlowStart;
use crate::split::TagSplit;
use crate::time::Nanos;

/// The inputs of one pick: time, random source, and optionally a hash key and an accept filter.
pub struct Pick<'a> {
    now: Nanos,
    rng: &'a mut dyn RandomSource,
    key: Option<&'a [u8]>,
    accept: Option<&'a Accept<'a>>,
}

impl<'a> Pick<'a> {
    /// A pick at `now` drawing from `rng`, with no key and accepting every endpoint.
    pub fn new(now: Nanos, rng: &'a mut dyn RandomSource) -> Self {
        Pick {
            now,
            rng,
            key: None,
            accept: None,
        }
    }

    /// The hash key (header value, cookie, client IP bytes) for `consistent_hash`; also makes a
    /// tag split sticky.
    pub fn key(mut self, key: &'a [u8]) -> Self {
        self.key = Some(key);
        self
    }

    /// A filter over `(set index, endpoint)`: endpoints it rejects are never returned. It must
    /// answer consistently within the pick.
    pub fn accept(mut self, accept: &'a Accept<'a>) -> Self {
        self.accept = Some(accept);
        self
    }
}

/// A route's balancing: a strategy, and optionally a tag split and slow start.
#[derive(Debug)]
pub struct Balancer {
    strategy: Box<dyn Strategy>,
    split: Option<(TagSplit, Box<dyn Strategy>)>,
    slow_start: Option<SlowStart>,
}

impl Default for Balancer {
    fn default() -> Self {
        Balancer::new(StrategyKind::default())
    }
}

impl Balancer {
    /// A balancer using a built-in strategy, with no split and no slow start.
    pub fn new(kind: StrategyKind) -> Self {
        Balancer::with_strategy(kind.new_strategy())
    }

    /// A balancer using any [`Strategy`].
    pub fn with_strategy(strategy: Box<dyn Strategy>) -> Self {
        Balancer {
            strategy,
            split: None,
            slow_start: None,
        }
    }

    /// Adds a tag split; the tagged side gets its own instance of the strategy.
    pub fn with_split(mut self, split: TagSplit) -> Self {
        let side = self.strategy.new_instance();
        self.split = Some((split, side));
        self
    }

    /// Adds slow start.
    pub fn with_slow_start(mut self, slow_start: SlowStart) -> Self {
        self.slow_start = Some(slow_start);
        self
    }

    /// The strategy's name.
    pub fn strategy_name(&self) -> &'static str {
        self.strategy.name()
    }

    /// The split, if any.
    pub fn split(&self) -> Option<&TagSplit> {
        self.split.as_ref().map(|(split, _)| split)
    }

    /// The slow start, if any.
    pub fn slow_start(&self) -> Option<&SlowStart> {
        self.slow_start.as_ref()
    }

    /// Picks an endpoint of `set` for one request: its index, or `None` when no endpoint is
    /// eligible (the set is empty, every weight is 0, or the accept filter rejects them all).
    pub fn pick(&self, set: &EndpointSet, pick: Pick<'_>) -> Option<usize> {
        let Pick {
            now,
            rng,
            key,
            accept,
        } = pick;
        let slow_start = self.slow_start.as_ref();
        let Some((split, tagged_strategy)) = &self.split else {
            let members = Members::All(set.len());
            let mut c = Candidates::new(set, members, now, key, slow_start, accept, rng);
            return self.strategy.select(&mut c);
        };
        let tagged = set.tagged(split.tag());
        let tagged_side = (Members::Only(tagged), &**tagged_strategy);
        let other_side = (
            Members::Except {
                excluded: tagged,
                total: set.len(),
            },
            &*self.strategy,
        );
        let order = if split.prefers_tagged(key, rng) {
            [tagged_side, other_side]
        } else {
            [other_side, tagged_side]
        };
        for (members, strategy) in order {
            let mut c = Candidates::new(set, members, now, key, slow_start, accept, &mut *rng);
            if let Some(index) = strategy.select(&mut c) {
                return Some(index);
            }
        }
        None
    }

    /// [`Balancer::pick`] returning the endpoint too.
    pub fn pick_endpoint<'s>(
        &self,
        set: &'s EndpointSet,
        pick: Pick<'_>,
    ) -> Option<(usize, &'s Endpoint)> {
        let index = self.pick(set, pick)?;
        set.get(index).map(|e| (index, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_falls_back_to_the_other_side() {
        let set = EndpointSet::new([
            Endpoint::new("stable-1"),
            Endpoint::new("canary-1").with_tags(["canary"]),
        ]);
        let balancer = Balancer::new(StrategyKind::RoundRobin)
            .with_split(TagSplit::new("canary", 1.0).expect("split"));
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(
            balancer.pick(&set, Pick::new(Nanos::ZERO, &mut rng)),
            Some(1)
        );
        let no_canary = |i: usize, _: &Endpoint| i != 1;
        assert_eq!(
            balancer.pick(&set, Pick::new(Nanos::ZERO, &mut rng).accept(&no_canary)),
            Some(0)
        );
        let untagged = EndpointSet::new(["a"].map(Endpoint::new));
        assert_eq!(
            balancer.pick(&untagged, Pick::new(Nanos::ZERO, &mut rng)),
            Some(0)
        );
        let none = |_: usize, _: &Endpoint| false;
        assert_eq!(
            balancer.pick(&set, Pick::new(Nanos::ZERO, &mut rng).accept(&none)),
            None
        );
    }

    #[test]
    fn shared_types_cross_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Balancer>();
        assert_send_sync::<EndpointSet>();
        assert_send_sync::<crate::InFlight>();
        let set = EndpointSet::new(["a"].map(Endpoint::new));
        set.prepare_hash_ring();
        let mut rng = fastrand::Rng::with_seed(1);
        let b = Balancer::new(StrategyKind::ConsistentHash);
        assert_eq!(
            b.pick(&set, Pick::new(Nanos::ZERO, &mut rng).key(b"k")),
            Some(0)
        );
    }

    #[test]
    fn accessors_describe_the_route() {
        let b = Balancer::default()
            .with_split(TagSplit::new("canary", 0.1).expect("split"))
            .with_slow_start(SlowStart::new(std::time::Duration::from_secs(30)).expect("ss"));
        assert_eq!(b.strategy_name(), "round_robin");
        assert_eq!(b.split().map(TagSplit::weight), Some(0.1));
        assert!(b.slow_start().is_some());
        let set = EndpointSet::new(["a"].map(Endpoint::new));
        let mut rng = fastrand::Rng::with_seed(1);
        let (i, e) = b
            .pick_endpoint(&set, Pick::new(Nanos::ZERO, &mut rng))
            .expect("one endpoint");
        assert_eq!((i, e.id.as_str()), (0, "a"));
    }
}
