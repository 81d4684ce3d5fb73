"""Schemathesis hooks for crates/cli/tests/openapi.rs (loaded through SCHEMATHESIS_HOOKS).

- A blocking query (`?index=`) waits up to `wait` (default 5m) for a change that never comes
  in a fuzzing run, so every request with `index` gets `wait=100ms`; `wait` itself is still
  fuzzed on requests without `index`.
- `dc` naming another datacenter answers 500 `No path to datacenter` on purpose, as Consul does
  (docs/consul-compat.md, tested in bad_input.rs), so `dc` is pinned to the agent's own.
"""

import schemathesis


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    """Applies the rules above to every request of every phase, just before it is sent."""
    query = case.query
    if not isinstance(query, dict):
        return
    if "index" in query:
        query["wait"] = "100ms"
    if "dc" in query:
        query["dc"] = "dc1"
