//! `GET /v1/openapi.json` against the real agent: schemathesis (PyPI, pinned in
//! scripts/schemathesis-requirements.txt, installed by scripts/test into
//! target/schemathesis-venv) generates requests from the document, valid and invalid, and
//! checks that no answer is a 5xx the document does not declare (scripts/schemathesis_hooks.py)
//! and that every answer's status, content type and body are the ones the document declares.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::{Agent, eventually};

/// The workspace's root, where scripts/ and target/ are.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The schemathesis command: `$SCHEMATHESIS` if set, else the venv scripts/test installs.
fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/schemathesis-venv/bin/schemathesis"))
}

/// A schemathesis run, killed when dropped (so a failed wait does not leave it running).
struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "needs schemathesis: scripts/test"]
fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let agent = Agent::start(&[]);
    let document = format!("{}/v1/openapi.json", agent.base_url());
    let output = agent.work_dir().join("schemathesis.log");
    let log = std::fs::File::create(&output).expect("creating the schemathesis log");
    let child = Command::new(schemathesis())
        .current_dir(agent.work_dir())
        // scripts/schemathesis_hooks.py: `?index=` gets `wait=100ms` so no blocking query
        // waits its default 5 minutes, and `dc` is pinned to the agent's own datacenter.
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .env("PYTHONPATH", workspace().join("scripts"))
        .args(["run", &document, "--no-color"])
        .args([
            "--checks",
            "no_undocumented_server_error,response_schema_conformance,\
             status_code_conformance,content_type_conformance",
        ])
        // Under two minutes on 2 cores; --max-time bounds it whatever the machine.
        .args(["--max-examples", "50", "--max-time", "110"])
        .args(["--request-timeout", "10"])
        // One worker: CPython 3.11's ast.parse is not thread-safe, and hypothesis calls it
        // while describing strategies ("AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        // The watch streams never end, so no request to them completes; their 400 on a bad
        // name is tested in crates/cli/tests/watch.rs.
        .args(["--exclude-path-regex", "^/v1/watch"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("cloning the log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "running {} ({e}); scripts/test installs it",
                schemathesis().display()
            )
        });
    let mut run = Run(child);
    let status = eventually(Duration::from_secs(240), "schemathesis to finish", || {
        run.0
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_owned())
    });
    let report = std::fs::read_to_string(&output).unwrap_or_default();
    assert!(
        status.success(),
        "schemathesis failed ({status}):\n{report}\nagent log:\n{}",
        agent.stderr_tail()
    );
    // It really tested: every selected operation (all but the two watch streams).
    let selected = summary_number(&report, "Selected:");
    assert!(selected >= 30, "{report}");
    assert_eq!(summary_number(&report, "Tested:"), selected, "{report}");
}

/// The first number after `label` in schemathesis' summary (`Selected: 31/33`, `Tested: 31`).
fn summary_number(report: &str, label: &str) -> u32 {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix(label))
        .and_then(|rest| {
            let digits: String = rest
                .trim()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("no {label:?} in the summary:\n{report}"))
}
