//! The Node.js `consul` client from npm (pinned in `fixtures/node-consul/package-lock.json`)
//! against the real agent (issue 6): registration with HTTP and TTL checks, TTL
//! pass/warn/fail, `health.service` with `passing` and `tag`, `catalog.services`,
//! `catalog.service.nodes`, `agent.services`, `agent.checks`, deregistration, and a blocking
//! `consul.watch` on `health.service` that fires when an instance is added and when one fails.
//!
//! The scenario lives in `fixtures/node-consul/compat.mjs`, written the way a user of that
//! library writes it, so it checks what the library makes of our answers rather than what we
//! think Consul answers. This test boots the agent, runs the script against it, and shows the
//! script's step log and the agent's stderr when it fails.

mod support;

use std::time::Duration;
use support::Agent;
use support::node;

/// How long the whole script may run before it is killed. It bounds every wait itself (20 s
/// per condition, 80 s in all); this is the backstop if node itself hangs.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs node and npm ci: scripts/test"]
fn the_npm_consul_client_registers_reads_and_watches() {
    let dir = node::fixture_dir("node-consul");
    node::require_installed(&dir, "consul");
    let agent = Agent::start(&[]);

    let host = agent.addr.ip().to_string();
    let port = agent.addr.port().to_string();
    let run = node::run(&dir, "compat.mjs", &[&host, &port], SCRIPT_TIMEOUT);
    // The step log, for `--nocapture`.
    print!("{}", run.stdout);

    if run.succeeded() {
        return;
    }
    panic!(
        "{}\n--- compat.mjs stdout ---\n{}\n--- compat.mjs stderr ---\n{}\n--- agent stderr ---\n{}",
        run.outcome("compat.mjs", SCRIPT_TIMEOUT),
        run.stdout,
        run.stderr,
        agent.stderr_tail()
    );
}
