//! Which live member runs a check: rendezvous (highest random weight) hashing.
//!
//! Every agent computes the owner of every check from the same two inputs, the check ID and
//! the live member IDs, so agents agree without talking to each other. When a member leaves,
//! only the checks it owned move (each to the member with the next-highest weight for it), and
//! when one joins it takes about 1/n of the checks from the others; nothing else moves.
//!
//! The hash is our own (FNV-1a, then a 64-bit finaliser), not `std`'s `DefaultHasher`, whose
//! output may change between Rust releases: agents built by different toolchains must still
//! agree on every owner.

/// The member (by ID) among `members` that owns `check`: the one with the highest weight for
/// it (ties, which need a 64-bit collision, go to the greater ID). `None` without members.
pub fn owner<'a>(check: &str, members: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    members
        .into_iter()
        .max_by_key(|member| (weight(check, member), *member))
}

/// The weight of the pair: FNV-1a over `member`, a separator and `check`, mixed so that close
/// inputs spread over the whole range.
fn weight(check: &str, member: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let bytes = member.bytes().chain([0xff]).chain(check.bytes());
    let hash = bytes.fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    mix(hash)
}

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn no_members_no_owner() {
        assert_eq!(owner("web-1-http", std::iter::empty()), None);
    }

    #[test]
    fn checks_spread_evenly_over_three_members() {
        let members = ["a1b2", "c3d4", "e5f6"];
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for i in 0..3000 {
            let check = format!("service-{i}:http");
            let owner = owner(&check, members).expect("an owner");
            *counts.entry(owner).or_default() += 1;
        }
        for member in members {
            let count = counts.get(member).copied().unwrap_or(0);
            assert!(
                (850..=1150).contains(&count),
                "{member} owns {count} of 3000: {counts:?}"
            );
        }
    }

    proptest! {
        /// Removing a member moves exactly its checks; every other check keeps its owner.
        #[test]
        fn only_the_leaving_members_checks_move(
            members in proptest::collection::btree_set("[a-z0-9]{1,12}", 2..8),
            checks in proptest::collection::vec("[a-zA-Z0-9:_-]{1,24}", 1..64),
            leaving in any::<proptest::sample::Index>(),
        ) {
            let members: Vec<&str> = members.iter().map(String::as_str).collect();
            let gone = members[leaving.index(members.len())];
            let rest: Vec<&str> = members.iter().copied().filter(|m| *m != gone).collect();
            for check in &checks {
                let before = owner(check, members.iter().copied()).expect("an owner");
                let after = owner(check, rest.iter().copied()).expect("an owner");
                if before == gone {
                    prop_assert_ne!(after, gone);
                } else {
                    prop_assert_eq!(before, after, "{} moved without its owner leaving", check);
                }
            }
        }

        /// The owner does not depend on the order members are listed in.
        #[test]
        fn the_owner_is_the_same_in_any_order(
            members in proptest::collection::btree_set("[a-z0-9]{1,12}", 1..8),
            check in "[a-zA-Z0-9:_-]{1,24}",
        ) {
            let forward = owner(&check, members.iter().map(String::as_str));
            let backward = owner(&check, members.iter().rev().map(String::as_str));
            prop_assert_eq!(forward, backward);
        }
    }
}
