//! fabio's `urlprefix-` tags from arbitrary text: `gateway::tags::parse_tag` on the whole input
//! and on each of its lines, every route it accepts put in a `RouteTable` and looked up again.
//!
//! Beyond "no panic" it checks that a tag without the `urlprefix-` prefix is not a route, that
//! an error names its tag, that an accepted route's prefix starts with `/`, that the table
//! finds the route at its own host and prefix, and that rewriting its prefix yields a path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wayfinder_gateway::RouteSpec;
use wayfinder_gateway::table::RouteTable;
use wayfinder_gateway::tags::{URLPREFIX, parse_tag};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut table: RouteTable<RouteSpec> = RouteTable::new();
    for tag in std::iter::once(text).chain(text.lines()) {
        match parse_tag(tag, "web", "web-1") {
            None => assert!(!tag.trim().starts_with(URLPREFIX), "{tag:?}"),
            Some(Err(error)) => {
                assert_eq!(error.tag(), tag);
                let _ = error.to_string();
            }
            Some(Ok(spec)) => {
                assert!(spec.prefix.starts_with('/'), "{tag:?} gave {spec:?}");
                let host = spec.host.clone();
                let prefix = spec.prefix.clone();
                let rewritten = spec.rewrite.apply(&prefix);
                assert!(
                    rewritten.starts_with('/'),
                    "{tag:?} rewrites {prefix:?} to {rewritten:?}"
                );
                table.insert(host.as_deref(), &prefix, spec);
                let found = table
                    .lookup(host.as_deref(), &prefix)
                    .unwrap_or_else(|| panic!("{tag:?}: no route at its own {host:?} {prefix:?}"));
                assert_eq!(found.prefix, prefix, "{tag:?}");
            }
        }
    }
});
