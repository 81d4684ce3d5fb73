//! What a token may do: an access level per resource, chosen by Consul's rule-matching order
//! (an exact rule beats any prefix rule; among prefix rules the longest wins).

use std::collections::BTreeMap;

/// How much a rule lets its holder do. Ordered: `Write` includes `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Nothing, not even reading.
    Deny,
    /// Read, never change.
    Read,
    /// Read and change.
    Write,
}

impl Access {
    /// Reads a policy word from a config file (`"read"`, `"write"`, `"deny"`).
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "deny" => Some(Access::Deny),
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            _ => None,
        }
    }

    /// The word for this level, as written in rules and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Deny => "deny",
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

/// Rules for one kind of resource (services, or agents by node name): exact names and
/// name prefixes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceRules {
    exact: BTreeMap<String, Access>,
    /// Longest prefix first, so the first match is the one Consul would pick.
    prefixes: Vec<(String, Access)>,
}

impl ResourceRules {
    /// Rules from exact names and prefixes (an empty prefix matches every name).
    pub fn new(
        exact: impl IntoIterator<Item = (String, Access)>,
        prefixes: impl IntoIterator<Item = (String, Access)>,
    ) -> Self {
        let mut prefixes: Vec<(String, Access)> = prefixes.into_iter().collect();
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Self {
            exact: exact.into_iter().collect(),
            prefixes,
        }
    }

    /// Whether every rule gives at least `level` (so no name is held below it by a rule).
    pub fn all_at_least(&self, level: Access) -> bool {
        self.exact
            .values()
            .chain(self.prefixes.iter().map(|(_, a)| a))
            .all(|a| *a >= level)
    }

    /// The access the most specific rule gives `name`, or `None` when no rule names it (the
    /// default policy decides then).
    pub fn access(&self, name: &str) -> Option<Access> {
        if let Some(access) = self.exact.get(name) {
            return Some(*access);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| name.starts_with(prefix.as_str()))
            .map(|(_, access)| *access)
    }
}

/// A token's rules: services by name, and agent operations by node name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// `service "name"` and `service_prefix "prefix"` rules.
    pub services: ResourceRules,
    /// `agent "node"` and `agent_prefix "prefix"` rules: the agent's own view, metrics and
    /// node-level checks.
    pub agents: ResourceRules,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rules(exact: &[(&str, Access)], prefixes: &[(&str, Access)]) -> ResourceRules {
        ResourceRules::new(
            exact.iter().map(|(n, a)| ((*n).to_owned(), *a)),
            prefixes.iter().map(|(n, a)| ((*n).to_owned(), *a)),
        )
    }

    #[test]
    fn exact_beats_prefix_and_longest_prefix_wins() {
        let r = rules(
            &[("web-admin", Access::Deny)],
            &[
                ("", Access::Read),
                ("web-", Access::Write),
                ("web-int", Access::Deny),
            ],
        );
        assert_eq!(r.access("web-admin"), Some(Access::Deny));
        assert_eq!(r.access("web-api"), Some(Access::Write));
        assert_eq!(r.access("web-internal"), Some(Access::Deny));
        assert_eq!(r.access("db"), Some(Access::Read));
        assert_eq!(rules(&[], &[("web", Access::Read)]).access("db"), None);
    }

    proptest! {
        /// Whatever the rules, the answer is the rule a brute-force search for the most
        /// specific match finds.
        #[test]
        fn most_specific_rule_decides(
            exact in proptest::collection::btree_map("[ab]{0,3}", 0..3u8, 0..4),
            prefixes in proptest::collection::btree_map("[ab]{0,3}", 0..3u8, 0..4),
            name in "[ab]{0,4}",
        ) {
            let level = |n: u8| [Access::Deny, Access::Read, Access::Write][usize::from(n)];
            let r = ResourceRules::new(
                exact.iter().map(|(k, v)| (k.clone(), level(*v))),
                prefixes.iter().map(|(k, v)| (k.clone(), level(*v))),
            );
            let expected = exact.get(&name).map(|v| level(*v)).or_else(|| {
                prefixes
                    .iter()
                    .filter(|(p, _)| name.starts_with(p.as_str()))
                    .max_by_key(|(p, _)| p.len())
                    .map(|(_, v)| level(*v))
            });
            prop_assert_eq!(r.access(&name), expected);
        }
    }
}
