//! Tag splits: `split { tag = "canary" weight = 0.01 }`.
//!
//! Owns [`TagSplit`] and the choice of side for one request. A request goes to the tagged side
//! with probability `weight` and to the untagged side otherwise; each side is balanced by the
//! route's strategy (its own instance, so a round robin cursor counts within its side), and when
//! the chosen side has nothing eligible — no endpoints carry the tag, or all of them are ejected
//! or already tried — the request goes to the other side rather than failing.
//!
//! With a hash key the side comes from the key, not from the random source, so a sticky client
//! stays on one side instead of flipping to the canary on 1 % of its requests. One split per
//! route: several splits with overlapping tags would need rules about endpoints on two sides
//! that no requirement asks for yet.
//!
//! It deliberately does not find the side's members: the set's tag index does, so choosing a
//! side costs no scan.

use crate::error::ConfigError;
use crate::hash::{stable_hash, unit_fraction};
use crate::rng::RandomSource;

/// Sends a share of a route's requests to endpoints carrying a tag.
#[derive(Clone, Debug, PartialEq)]
pub struct TagSplit {
    tag: Box<str>,
    weight: f64,
}

impl TagSplit {
    /// A split sending `weight` (in `0..=1`) of requests to endpoints tagged `tag` (matched
    /// case-insensitively, like Consul's tag filter).
    pub fn new(tag: &str, weight: f64) -> Result<Self, ConfigError> {
        if tag.is_empty() {
            return Err(ConfigError::EmptySplitTag);
        }
        if !(0.0..=1.0).contains(&weight) {
            return Err(ConfigError::SplitWeight(weight));
        }
        Ok(TagSplit {
            tag: tag.to_ascii_lowercase().into(),
            weight,
        })
    }

    /// The tag, lower-cased.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The tagged side's share of requests.
    pub fn weight(&self) -> f64 {
        self.weight
    }

    /// Whether this request's first choice is the tagged side.
    pub(crate) fn prefers_tagged(&self, key: Option<&[u8]>, rng: &mut dyn RandomSource) -> bool {
        let draw = match key {
            Some(key) => unit_fraction(stable_hash(&[key, b"split", self.tag.as_bytes()])),
            None => rng.unit(),
        };
        draw < self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates() {
        assert_eq!(TagSplit::new("", 0.5), Err(ConfigError::EmptySplitTag));
        assert!(matches!(
            TagSplit::new("c", 1.5),
            Err(ConfigError::SplitWeight(_))
        ));
        assert!(TagSplit::new("c", f64::NAN).is_err());
        let s = TagSplit::new("Canary", 0.01).expect("valid");
        assert_eq!((s.tag(), s.weight()), ("canary", 0.01));
    }

    #[test]
    fn keyed_side_is_sticky() {
        let s = TagSplit::new("canary", 0.5).expect("valid");
        let mut rng = fastrand::Rng::with_seed(3);
        for i in 0..100u32 {
            let key = i.to_le_bytes();
            let first = s.prefers_tagged(Some(&key), &mut rng);
            assert!((0..5).all(|_| s.prefers_tagged(Some(&key), &mut rng) == first));
        }
        let never = TagSplit::new("canary", 0.0).expect("valid");
        let always = TagSplit::new("canary", 1.0).expect("valid");
        assert!(!(0..100).any(|_| never.prefers_tagged(None, &mut rng)));
        assert!((0..100).all(|_| always.prefers_tagged(None, &mut rng)));
    }
}
