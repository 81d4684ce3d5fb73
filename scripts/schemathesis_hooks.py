"""Schemathesis hooks for crates/cli/tests/openapi.rs (loaded through SCHEMATHESIS_HOOKS).

- A blocking query (`?index=`) waits up to `wait` (default 5m) for a change that never comes
  in a fuzzing run, so every request with `index` gets `wait=100ms`; `wait` itself is still
  fuzzed on requests without `index`.
- `dc` naming another datacenter answers 500 `No path to datacenter` on purpose, as Consul does
  (docs/consul-compat.md, tested in bad_input.rs), so `dc` is pinned to the agent's own.
- `no_undocumented_server_error` replaces schemathesis' `not_a_server_error`, which fails on
  every 5xx: some 5xx answers are the API's contract (`/v1/endpoints/{service}` answers 503 with
  `Retry-After` when the service has no healthy instance, issue 3), declared in the document.
  A 5xx the operation does not declare still fails the run, and a declared one must still match
  its declared body (`response_schema_conformance`).
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


@schemathesis.check
def no_undocumented_server_error(ctx, response, case):
    """Fails on a 5xx answer unless the document declares that status for the operation."""
    status = response.status_code
    if status < 500:
        return None
    declared = case.operation.definition.raw.get("responses", {})
    if str(status) not in declared:
        raise AssertionError(
            f"{case.operation.label} answered {status}, which the document does not declare "
            f"for it (declared: {', '.join(sorted(declared))})"
        )
    return None
