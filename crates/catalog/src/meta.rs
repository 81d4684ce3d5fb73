//! An instance's key/value metadata, stored compactly.
//!
//! Most instances carry a handful of pairs (a version, a team). A `BTreeMap<String, String>`
//! allocates a node for eleven pairs the moment it holds one (about 540 bytes), which made
//! metadata half of the catalog's memory with 100,000 instances (docs/BENCHMARKS.md). Here the
//! pairs are one sorted boxed slice of boxed strings: one allocation for the slice and one per
//! string, nothing spare. Lookups are a binary search; changes rebuild the slice, which is fine
//! for data written at registration and read many times after.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// Key/value metadata, sorted by key, each key once.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Meta(Box<[(Box<str>, Box<str>)]>);

impl Meta {
    /// No pairs.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|at| &*self.0[at].1)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Sets `key` to `value` (replacing an earlier value), as `BTreeMap::insert` does.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let mut pairs: Vec<(Box<str>, Box<str>)> = std::mem::take(&mut self.0).into_vec();
        let key: Box<str> = key.into().into_boxed_str();
        let value: Box<str> = value.into().into_boxed_str();
        match pairs.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(at) => pairs[at].1 = value,
            Err(at) => pairs.insert(at, (key, value)),
        }
        self.0 = pairs.into_boxed_slice();
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Meta {
    /// Later pairs replace earlier ones with the same key, as collecting into a map does.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let sorted: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::from(sorted)
    }
}

impl From<BTreeMap<String, String>> for Meta {
    fn from(map: BTreeMap<String, String>) -> Self {
        Meta(
            map.into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        )
    }
}

impl fmt::Debug for Meta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Meta {
    /// A JSON object, exactly as the `BTreeMap` it replaces was written (stored rows and API
    /// answers are unchanged).
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Meta {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, String>::deserialize(deserializer).map(Meta::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever is inserted, `Meta` answers as the map it replaces does, and writes the
        /// same JSON.
        #[test]
        fn meta_behaves_as_a_sorted_map(pairs in proptest::collection::vec(("[a-d]{0,3}", "[a-z]{0,4}"), 0..12)) {
            let mut map = BTreeMap::new();
            let mut meta = Meta::new();
            for (k, v) in &pairs {
                map.insert(k.clone(), v.clone());
                meta.insert(k.clone(), v.clone());
            }
            prop_assert_eq!(meta.len(), map.len());
            prop_assert_eq!(meta.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>(),
                map.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Vec<_>>());
            for (k, v) in &map {
                prop_assert_eq!(meta.get(k), Some(v.as_str()));
            }
            prop_assert_eq!(meta.get("zzz"), None);
            prop_assert_eq!(&Meta::from_iter(pairs.clone()), &meta);
            let json = serde_json::to_string(&meta).expect("serializes");
            prop_assert_eq!(&json, &serde_json::to_string(&map).expect("serializes"));
            let back: Meta = serde_json::from_str(&json).expect("deserializes");
            prop_assert_eq!(back, meta);
        }
    }
}
