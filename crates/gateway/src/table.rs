//! Matching a request to a route: host routes first, then path-only routes; the longest prefix
//! wins within each.
//!
//! Owns [`RouteTable`], an immutable index the gateway keeps in an `ArcSwap`, so a lookup takes
//! no lock; a route change clones it (O(1): persistent maps), changes the clone where the
//! change is, and swaps it in. It is generic over what a
//! route carries so that it stays pure and property-testable; it knows nothing of services or
//! instances.
//!
//! A lookup does not scan the routes: each bucket (one per host, one for any host) keeps its
//! prefixes in a hash map and the distinct prefix lengths in descending order, and tries the
//! request path cut at each of those lengths. That is a few hash lookups whatever the number of
//! routes (fabio walks a sorted list, which is what made 50k routes slow, its issue #865).

use imbl::HashMap;

/// Routes indexed by host and path prefix. Cloning is O(1) and an insert or removal on the
/// clone copies only the path to the changed entry (persistent maps), so a change to one
/// service's routes costs the same with 10 routes in the table as with 100,000.
#[derive(Debug, Clone)]
pub struct RouteTable<T: Clone> {
    hosts: HashMap<Box<str>, Bucket<T>>,
    any_host: Bucket<T>,
    len: usize,
}

impl<T: Clone> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            hosts: HashMap::new(),
            any_host: Bucket::default(),
            len: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct Bucket<T: Clone> {
    /// Distinct prefix lengths, longest first, each with how many prefixes have it.
    lengths: Vec<(usize, usize)>,
    routes: HashMap<Box<str>, T>,
}

impl<T: Clone> Default for Bucket<T> {
    fn default() -> Self {
        Bucket {
            lengths: Vec::new(),
            routes: HashMap::new(),
        }
    }
}

impl<T: Clone> Bucket<T> {
    fn insert(&mut self, prefix: &str, route: T) -> Option<T> {
        let replaced = self.routes.insert(prefix.into(), route);
        if replaced.is_none() {
            match self.lengths.binary_search_by(|(l, _)| prefix.len().cmp(l)) {
                Ok(at) => self.lengths[at].1 += 1,
                Err(at) => self.lengths.insert(at, (prefix.len(), 1)),
            }
        }
        replaced
    }

    fn remove(&mut self, prefix: &str) -> Option<T> {
        let removed = self.routes.remove(prefix)?;
        if let Ok(at) = self.lengths.binary_search_by(|(l, _)| prefix.len().cmp(l)) {
            self.lengths[at].1 -= 1;
            if self.lengths[at].1 == 0 {
                self.lengths.remove(at);
            }
        }
        Some(removed)
    }

    fn lookup(&self, path: &str) -> Option<&T> {
        self.lengths.iter().find_map(|&(len, _)| {
            path.get(..len)
                .and_then(|candidate| self.routes.get(candidate))
        })
    }
}

impl<T: Clone> RouteTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        RouteTable::default()
    }

    /// Adds a route for `prefix` on `host` (`None`: any host). Host names are matched
    /// case-insensitively. Returns the route it replaces, if that host and prefix were taken:
    /// the caller decides which of two claims wins before inserting.
    pub fn insert(&mut self, host: Option<&str>, prefix: &str, route: T) -> Option<T> {
        let bucket = match host {
            Some(host) => self
                .hosts
                .entry(host.to_ascii_lowercase().into())
                .or_default(),
            None => &mut self.any_host,
        };
        let replaced = bucket.insert(prefix, route);
        if replaced.is_none() {
            self.len += 1;
        }
        replaced
    }

    /// Removes the route for exactly `host` and `prefix`, returning it.
    pub fn remove(&mut self, host: Option<&str>, prefix: &str) -> Option<T> {
        let removed = match host {
            Some(host) => {
                let host = host.to_ascii_lowercase();
                let bucket = self.hosts.get_mut(host.as_str())?;
                let removed = bucket.remove(prefix);
                if bucket.routes.is_empty() {
                    self.hosts.remove(host.as_str());
                }
                removed
            }
            None => self.any_host.remove(prefix),
        }?;
        self.len -= 1;
        Some(removed)
    }

    /// The route for a request to `host` (as the `Host` header or URI authority gives it; a
    /// port is ignored) and `path`: the longest prefix among the host's routes, else the
    /// longest among the routes for any host.
    pub fn lookup(&self, host: Option<&str>, path: &str) -> Option<&T> {
        let host_route = host
            .map(strip_port)
            .filter(|_| !self.hosts.is_empty())
            .and_then(|host| match self.hosts.get(host) {
                Some(bucket) => bucket.lookup(path),
                None if host.bytes().any(|b| b.is_ascii_uppercase()) => self
                    .hosts
                    .get(host.to_ascii_lowercase().as_str())
                    .and_then(|bucket| bucket.lookup(path)),
                None => None,
            });
        host_route.or_else(|| self.any_host.lookup(path))
    }

    /// The route stored for exactly `host` and `prefix`, if any (not a request match: for
    /// carrying live routes over from one table to the next).
    pub fn lookup_exact(&self, host: Option<&str>, prefix: &str) -> Option<&T> {
        let bucket = match host {
            Some(host) => self.hosts.get(host.to_ascii_lowercase().as_str())?,
            None => &self.any_host,
        };
        bucket.routes.get(prefix)
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no route.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every route with its host and prefix, host routes first, each group by host then by
    /// prefix (for `GET /v1/routes`).
    pub fn entries(&self) -> Vec<(Option<&str>, &str, &T)> {
        let mut hosts: Vec<_> = self.hosts.iter().collect();
        hosts.sort_by(|a, b| a.0.cmp(b.0));
        let mut entries = Vec::with_capacity(self.len);
        for (host, bucket) in hosts {
            entries.extend(sorted(bucket).map(|(prefix, route)| (Some(&**host), prefix, route)));
        }
        entries.extend(sorted(&self.any_host).map(|(prefix, route)| (None, prefix, route)));
        entries
    }
}

fn sorted<T: Clone>(bucket: &Bucket<T>) -> impl Iterator<Item = (&str, &T)> {
    let mut routes: Vec<_> = bucket.routes.iter().map(|(p, r)| (&**p, r)).collect();
    routes.sort_by(|a, b| a.0.cmp(b.0));
    routes.into_iter()
}

/// `host` without a `:port` (an IPv6 literal keeps its brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn longest_prefix_wins_and_host_routes_come_first() {
        let mut table = RouteTable::new();
        table.insert(None, "/", "root");
        table.insert(None, "/api", "api");
        table.insert(None, "/api/v2", "api-v2");
        table.insert(Some("Shop.Example"), "/api", "shop-api");
        assert_eq!(table.len(), 4);
        assert_eq!(table.lookup(None, "/api/v2/users"), Some(&"api-v2"));
        assert_eq!(table.lookup(None, "/api/v1"), Some(&"api"));
        assert_eq!(table.lookup(None, "/apix"), Some(&"api"), "fabio's prefix");
        assert_eq!(table.lookup(None, "/other"), Some(&"root"));
        assert_eq!(
            table.lookup(Some("shop.example:8080"), "/api/v2"),
            Some(&"shop-api"),
            "a host route beats a longer path-only route"
        );
        assert_eq!(
            table.lookup(Some("SHOP.example"), "/api"),
            Some(&"shop-api")
        );
        assert_eq!(
            table.lookup(Some("shop.example"), "/x"),
            Some(&"root"),
            "no host route matches: path-only routes"
        );
        assert_eq!(table.lookup(Some("other"), "/api"), Some(&"api"));
    }

    #[test]
    fn no_route_no_match_and_replacement_is_reported() {
        let mut table = RouteTable::new();
        assert_eq!(table.lookup(None, "/"), None::<&u8>);
        table.insert(None, "/a", 1);
        assert_eq!(table.lookup(None, "/b"), None);
        assert_eq!(table.insert(None, "/a", 2), Some(1));
        assert_eq!(table.len(), 1);
        assert_eq!(table.lookup(None, "/a"), Some(&2));
    }

    #[test]
    fn ports_and_ipv6_literals() {
        assert_eq!(strip_port("example.com:80"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1"), "[::1");
    }

    #[test]
    fn multibyte_paths_do_not_panic() {
        let mut table = RouteTable::new();
        table.insert(None, "/ab", 1);
        table.insert(None, "/a", 2);
        assert_eq!(table.lookup(None, "/aé"), Some(&2));
    }

    fn naive<'a>(
        routes: &'a [(Option<String>, String, usize)],
        host: Option<&str>,
        path: &str,
    ) -> Option<&'a usize> {
        let best = |want_host: Option<&str>| {
            routes
                .iter()
                .filter(|(h, p, _)| {
                    h.as_deref().map(str::to_ascii_lowercase).as_deref() == want_host
                        && path.starts_with(p.as_str())
                })
                .max_by_key(|(_, p, _)| p.len())
                .map(|(_, _, v)| v)
        };
        host.map(|h| strip_port(h).to_ascii_lowercase())
            .and_then(|h| best(Some(&h)))
            .or_else(|| best(None))
    }

    proptest! {
        /// The index answers exactly what a scan of every route would (routes de-duplicated by
        /// host and prefix, the last insert winning, as `insert` replaces).
        #[test]
        fn lookup_matches_a_full_scan(
            routes in proptest::collection::vec(
                (proptest::option::of("[ab]{1,2}"), "/[a-c/]{0,4}"), 0..24),
            removals in proptest::collection::vec(
                (proptest::option::of("[ab]{1,2}"), "/[a-c/]{0,4}"), 0..8),
            host in proptest::option::of("[abAB]{1,2}(:[0-9]{1,4})?"),
            path in "/[a-c/é]{0,6}",
        ) {
            let mut table = RouteTable::new();
            let mut kept: Vec<(Option<String>, String, usize)> = Vec::new();
            for (value, (h, p)) in routes.into_iter().enumerate() {
                table.insert(h.as_deref(), &p, value);
                kept.retain(|(kh, kp, _)| !(kh == &h && kp == &p));
                kept.push((h, p, value));
            }
            // A clone taken before the removals keeps answering as before them.
            let before = table.clone();
            let kept_before = kept.clone();
            for (h, p) in removals {
                let expected = kept.iter().position(|(kh, kp, _)| kh == &h && kp == &p);
                let removed = table.remove(h.as_deref(), &p);
                prop_assert_eq!(removed, expected.map(|at| kept.remove(at).2));
            }
            prop_assert_eq!(before.len(), kept_before.len());
            prop_assert_eq!(
                before.lookup(host.as_deref(), &path),
                naive(&kept_before, host.as_deref(), &path)
            );
            prop_assert_eq!(table.len(), kept.len());
            prop_assert_eq!(table.lookup(host.as_deref(), &path), naive(&kept, host.as_deref(), &path));
        }
    }
}
