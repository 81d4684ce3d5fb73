//! Services from `--config-dir`: the design-note file, script-check gating, broken files, and
//! reloading on SIGHUP.

mod support;

use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use support::{Agent, CHECK_TIMEOUT, path_str, temp_dir};

/// The design-note service file (issue 2), shared with the server crate's tests.
fn worker_service_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/fixtures/config/worker-service.hcl")
}

/// A config dir holding `files` (name, content).
fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = temp_dir("wayfinder-config-");
    for (name, content) in files {
        fs::write(dir.path().join(name), content).expect("writing a config file");
    }
    dir
}

/// Whether `stderr` points at `line` of `file`, in any of the usual spellings
/// (`file:3:10`, `line 3`, `"line":3`).
fn mentions_line(stderr: &str, file: &str, line: u32) -> bool {
    let spellings = [
        format!("{file}:{line}"),
        format!("line {line}"),
        format!("line: {line}"),
        format!("line={line}"),
        format!("\"line\":{line}"),
    ];
    spellings.iter().any(|spelling| {
        stderr.match_indices(spelling.as_str()).any(|(at, found)| {
            !stderr[at + found.len()..].starts_with(|c: char| c.is_ascii_digit())
        })
    })
}

#[track_caller]
fn assert_no_banner(stdout: &str) {
    assert!(
        !stdout.lines().any(|l| support::banner_address(l).is_some()),
        "the agent must refuse before it listens, but printed a banner:\n{stdout}"
    );
}

/// Starts an agent on `dir`, asserts it refused before listening, and that stderr names
/// `file`; returns stderr for the scenario's own assertions.
#[track_caller]
fn refused_start_naming(dir: &Path, file: &Path) -> String {
    let (status, stdout, stderr) = Agent::start_expecting_failure(&["--config-dir", path_str(dir)]);
    assert!(!status.success(), "{status}");
    assert_no_banner(&stdout);
    assert!(
        stderr.contains(path_str(file)),
        "stderr must name {}:\n{stderr}",
        file.display()
    );
    stderr
}

#[test]
fn design_note_worker_service_loads_and_stays_out_of_healthy_answers() {
    let fixture = worker_service_fixture();
    let text = fs::read_to_string(&fixture)
        .unwrap_or_else(|e| panic!("reading {}: {e}", fixture.display()));
    let config = config_dir(&[("worker-service.hcl", &text)]);

    let agent = Agent::start(&[
        "--config-dir",
        path_str(config.path()),
        "--enable-local-script-checks",
    ]);

    let services = agent.services();
    let worker = services
        .get("worker-1")
        .unwrap_or_else(|| panic!("worker-1 not registered: {services:?}"));
    assert_eq!(worker["Service"], "worker-service", "{worker}");
    assert_eq!(worker["Port"], 8080, "{worker}");
    assert_eq!(worker["Address"], "10.0.1.10", "{worker}");
    assert_eq!(worker["Tags"], json!(["realtime", "v1.2"]), "{worker}");

    // `exit 2` is critical. Wait for a real run, not just the initial critical status.
    let check = agent.wait_for_first_run("worker-load-check");
    assert_eq!(check["Status"], "critical", "{check}");
    assert_eq!(check["Name"], "Worker Process Load Check", "{check}");
    assert_eq!(check["ServiceID"], "worker-1", "{check}");

    assert_eq!(agent.passing_ids("worker-service"), Vec::<String>::new());
    assert_eq!(
        agent.health_service_ids("worker-service", ""),
        ["worker-1"],
        "without ?passing the critical instance is still listed"
    );
    let critical = agent.get("/v1/health/state/critical").json();
    assert!(
        critical
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["CheckID"] == "worker-load-check")),
        "{critical}"
    );
}

#[test]
fn script_check_in_a_config_file_needs_a_flag_to_start() {
    let fixture = worker_service_fixture();
    let text = fs::read_to_string(&fixture).expect("reading the fixture");
    let config = config_dir(&[("worker-service.hcl", &text)]);
    let file = config.path().join("worker-service.hcl");

    let stderr = refused_start_naming(config.path(), &file);
    assert!(
        stderr.contains("--enable-local-script-checks")
            || stderr.contains("--enable-script-checks"),
        "stderr must say which flag enables script checks:\n{stderr}"
    );

    // Either flag lets a config file's script check run (as in Consul).
    let agent = Agent::start(&[
        "--config-dir",
        path_str(config.path()),
        "--enable-script-checks",
    ]);
    assert!(agent.services().contains_key("worker-1"));
}

#[test]
fn broken_hcl_file_stops_the_start_with_its_path_and_line() {
    let config = config_dir(&[
        ("good.json", r#"{"service": {"name": "fine", "port": 80}}"#),
        (
            "broken.hcl",
            "service {\n  name = \"web\"\n  port = = 8080\n}\n",
        ),
    ]);
    let file = config.path().join("broken.hcl");

    let stderr = refused_start_naming(config.path(), &file);
    assert!(
        mentions_line(&stderr, "broken.hcl", 3),
        "stderr must give line 3:\n{stderr}"
    );
}

#[test]
fn broken_json_file_stops_the_start_with_its_path_and_line() {
    let config = config_dir(&[(
        "web.json",
        "{\n  \"service\": {\n    \"name\": \"web\",\n    \"port\": eighty\n  }\n}\n",
    )]);
    let file = config.path().join("web.json");

    let stderr = refused_start_naming(config.path(), &file);
    assert!(
        mentions_line(&stderr, "web.json", 4),
        "stderr must give line 4:\n{stderr}"
    );
}

#[test]
fn invalid_service_in_a_file_stops_the_start_with_its_path_and_reason() {
    let config = config_dir(&[(
        "web.hcl",
        "service {\n  name = \"web_1\"\n  port = 8080\n}\n",
    )]);
    let file = config.path().join("web.hcl");

    let stderr = refused_start_naming(config.path(), &file);
    assert!(
        stderr.contains("web_1") || stderr.contains("DNS"),
        "stderr must say what is wrong with the name:\n{stderr}"
    );
}

#[test]
fn sighup_reloads_the_config_dir() {
    let config = config_dir(&[(
        "alpha.json",
        r#"{"service": {"name": "alpha", "id": "alpha-1", "port": 7001}}"#,
    )]);
    let dir = config.path();
    let agent = Agent::start(&["--config-dir", path_str(dir)]);
    assert!(agent.services().contains_key("alpha-1"));
    // API registrations are not the config dir's to remove.
    agent.register(&json!({"Name": "gamma", "ID": "gamma-1", "Port": 7000}));

    let port_of = |id: &str| -> Result<Value, String> {
        let services = agent.services();
        services
            .get(id)
            .map(|s| s["Port"].clone())
            .ok_or_else(|| format!("no {id} in {:?}", services.keys().collect::<Vec<_>>()))
    };

    // Added file.
    let beta = |port: u16| {
        format!(
            "service {{\n  name = \"beta\"\n  id = \"beta-1\"\n  port = {port}\n  \
             check {{\n    id = \"beta-ttl\"\n    ttl = \"30s\"\n  }}\n}}\n"
        )
    };
    fs::write(dir.join("beta.hcl"), beta(7002)).expect("writing beta.hcl");
    agent.sighup();
    agent.eventually(CHECK_TIMEOUT, "beta-1 after SIGHUP", || port_of("beta-1"));
    assert!(agent.check("beta-ttl").is_some(), "its check came too");

    // Changed file.
    fs::write(dir.join("beta.hcl"), beta(7003)).expect("rewriting beta.hcl");
    agent.sighup();
    agent.eventually(CHECK_TIMEOUT, "beta-1 on port 7003", || {
        match port_of("beta-1")? {
            port if port == 7003 => Ok(()),
            port => Err(format!("port {port}")),
        }
    });

    // Deleted file.
    fs::remove_file(dir.join("alpha.json")).expect("removing alpha.json");
    agent.sighup();
    agent.eventually(
        CHECK_TIMEOUT,
        "alpha-1 gone after SIGHUP",
        || match port_of("alpha-1") {
            Err(_) => Ok(()),
            Ok(_) => Err("alpha-1 still registered".to_owned()),
        },
    );
    let services = agent.services();
    assert!(services.contains_key("gamma-1"), "{services:?}");
    assert_eq!(services["beta-1"]["Port"], 7003);

    // A broken dir on reload: logged, and the running state is kept whole (the valid new file
    // next to the broken one is not half-loaded).
    fs::write(
        dir.join("delta.json"),
        r#"{"services": [{"name": "delta", "id": "delta-1", "port": 7004}]}"#,
    )
    .expect("writing delta.json");
    fs::write(dir.join("broken.hcl"), "service {\n  name = \n").expect("writing broken.hcl");
    agent.sighup();
    agent.eventually(CHECK_TIMEOUT, "the reload error naming broken.hcl", || {
        if agent.stderr().contains("broken.hcl") {
            Ok(())
        } else {
            Err("not logged yet".to_owned())
        }
    });
    let services = agent.services();
    assert!(
        !services.contains_key("delta-1"),
        "no half-load: {services:?}"
    );
    assert!(services.contains_key("beta-1"), "{services:?}");
    assert!(services.contains_key("gamma-1"), "{services:?}");
    assert!(
        agent.get("/v1/status/leader").status == 200,
        "still serving"
    );

    // Fixed: the next reload applies.
    fs::remove_file(dir.join("broken.hcl")).expect("removing broken.hcl");
    agent.sighup();
    agent.eventually(CHECK_TIMEOUT, "delta-1 after the fix", || {
        port_of("delta-1")
    });
}

#[test]
fn a_definition_the_catalog_refuses_stops_start_up_before_anything_is_written() {
    // Both files parse; the second names a service instance that does not exist, which only
    // the catalog can tell. Nothing of the dir may be registered.
    let config = config_dir(&[
        (
            "a.json",
            r#"{"service": {"name": "alpha", "id": "alpha-1", "port": 7001}}"#,
        ),
        (
            "b.hcl",
            "check {\n  id = \"orphan\"\n  name = \"orphan\"\n  service_id = \"nobody\"\n  \
             ttl = \"30s\"\n}\n",
        ),
    ]);
    let data = temp_dir("wayfinder-data-");
    let (status, stdout, stderr) = Agent::start_expecting_failure(&[
        "--config-dir",
        path_str(config.path()),
        "--data-dir",
        path_str(data.path()),
    ]);
    assert!(!status.success(), "the agent must refuse to start");
    assert_no_banner(&stdout);
    assert!(
        stderr.contains("nobody"),
        "the error names the unknown service:\n{stderr}"
    );

    // The same data dir without the config dir: alpha-1 was never written.
    let agent = Agent::start_on(data.path(), &[]);
    assert!(
        agent.services().is_empty(),
        "half-loaded: {:?}",
        agent.services()
    );
}

#[test]
fn sighup_removes_top_level_checks_whose_file_is_gone() {
    let config = config_dir(&[(
        "node-check.hcl",
        "check {\n  id = \"node-ttl\"\n  name = \"node ttl\"\n  ttl = \"30s\"\n}\n",
    )]);
    let agent = Agent::start(&["--config-dir", path_str(config.path())]);
    assert!(
        agent.check("node-ttl").is_some(),
        "the node check is loaded"
    );
    fs::remove_file(config.path().join("node-check.hcl")).expect("removing the file");
    agent.sighup();
    agent.eventually(
        CHECK_TIMEOUT,
        "node-ttl gone after SIGHUP",
        || match agent.check("node-ttl") {
            None => Ok(()),
            Some(_) => Err("node-ttl still registered".to_owned()),
        },
    );
}
