//! The loader's unit tests: whole files in, definitions or placed errors out.

use super::checks_shape::ChecksShape;
use super::loader::SCRIPTS_DISABLED;
use super::locate::{Loc, locate};
use super::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use wayfinder_catalog::{CheckId, CheckKind, InstanceId, Source};

const LOCAL: ScriptPolicy = ScriptPolicy {
    enable_script_checks: false,
    enable_local_script_checks: true,
};
const NONE: ScriptPolicy = ScriptPolicy {
    enable_script_checks: false,
    enable_local_script_checks: false,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

/// Writes `files` into a fresh directory.
fn dir_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

fn load_text(name: &str, text: &str, scripts: ScriptPolicy) -> Result<Definitions, ConfigError> {
    let dir = dir_with(&[(name, text.as_bytes())]);
    load_file(&dir.path().join(name), scripts)
}

fn error(name: &str, text: &str) -> ConfigError {
    load_text(name, text, LOCAL).expect_err("should be refused")
}

#[test]
fn bytes_load_as_the_file_they_were_read_from() {
    let path = fixture("worker-service.hcl");
    let bytes = std::fs::read(&path).expect("fixture");
    assert_eq!(
        load_bytes(&path, bytes, LOCAL).expect("loads"),
        load_file(&path, LOCAL).expect("loads"),
    );
    let json = r#"{"service": {"name": "web", "port": 80}}"#;
    let from_bytes = load_bytes(Path::new("web.json"), json.as_bytes().to_vec(), LOCAL);
    let from_file = load_text("web.json", json, LOCAL);
    assert_eq!(
        from_bytes.expect("loads").services,
        from_file.expect("loads").services
    );
    let err = load_bytes(
        Path::new("svc.hcl"),
        b"service {\n  port = \xff\n}".to_vec(),
        LOCAL,
    )
    .expect_err("not UTF-8");
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Read, Some(2)));
    let err = load_bytes(Path::new("svc.txt"), Vec::new(), LOCAL).expect_err("not a service file");
    assert_eq!(err.kind, ConfigErrorKind::Read);
}

#[test]
fn design_notes_file_loads() {
    let path = fixture("worker-service.hcl");
    let defs = load_file(&path, LOCAL).expect("loads");
    assert_eq!(defs.files, vec![path]);
    assert!(defs.checks.is_empty());
    let [registration] = defs.services.as_slice() else {
        panic!("one service expected: {defs:?}");
    };
    let instance = &registration.instance;
    assert_eq!(instance.id.as_str(), "worker-1");
    assert_eq!(instance.service.as_str(), "worker-service");
    assert_eq!(instance.address, "10.0.1.10");
    assert_eq!(instance.port, 8080);
    assert_eq!(instance.tags, ["realtime", "v1.2"]);
    assert_eq!(instance.source, Source::Config);
    assert!(!registration.replace_existing_checks);
    let [check] = registration.checks.as_slice() else {
        panic!("one check expected");
    };
    assert_eq!(
        check.id.as_ref().map(CheckId::as_str),
        Some("worker-load-check")
    );
    assert_eq!(check.name, "Worker Process Load Check");
    assert_eq!(
        check.kind,
        CheckKind::Exec {
            args: vec!["/bin/sh".into(), "-c".into(), "exit 2".into()]
        }
    );
    assert_eq!(check.policy.interval, Duration::from_secs(10));
    assert_eq!(check.policy.timeout, Duration::from_secs(2));

    let only_api = ScriptPolicy {
        enable_script_checks: true,
        enable_local_script_checks: false,
    };
    assert_eq!(
        load_file(&fixture("worker-service.hcl"), only_api),
        Ok(defs)
    );
}

#[test]
fn script_checks_need_a_flag() {
    let err = load_file(&fixture("worker-service.hcl"), NONE).expect_err("refused");
    assert_eq!(err.kind, ConfigErrorKind::ScriptChecksDisabled);
    assert_eq!(err.line, Some(12), "the args line: {err}");
    let text = err.to_string();
    assert!(
        text.ends_with(&format!(":12: {SCRIPTS_DISABLED}")),
        "{text}"
    );

    let top = "check {\n  id = \"disk\"\n  args = [\"true\"]\n  interval = \"5s\"\n}\n";
    let err = load_text("disk.hcl", top, NONE).expect_err("refused");
    assert_eq!(
        (err.kind, err.line),
        (ConfigErrorKind::ScriptChecksDisabled, Some(3))
    );
    assert!(load_text("disk.hcl", top, LOCAL).is_ok());
}

#[test]
fn json_and_hcl_forms_agree() {
    let hcl = r#"
service {
  name = "web"
  id = "web-1"
  address = "10.0.0.5"
  port = 8080
  tags = ["v2"]
  meta = { team = "blue" }
  enable_tag_override = true
  weights = { passing = 3, warning = 1 }
  check {
    id = "web-probe"
    http = "http://10.0.0.5:8080/health"
    interval = "10s"
    deregister_critical_service_after = "1m"
  }
}
"#;
    let json = r#"{
  "service": {
    "name": "web", "ID": "web-1", "address": "10.0.0.5", "Port": 8080, "tags": ["v2"],
    "meta": {"team": "blue"}, "EnableTagOverride": true, "weights": {"passing": 3, "warning": 1},
    "check": {"id": "web-probe", "http": "http://10.0.0.5:8080/health", "interval": "10s",
              "DeregisterCriticalServiceAfter": "1m"}
  }
}"#;
    let from_hcl = load_text("web.hcl", hcl, NONE).expect("hcl loads");
    let from_json = load_text("web.json", json, NONE).expect("json loads");
    assert_eq!(from_hcl.services, from_json.services);
    let registration = &from_hcl.services[0];
    assert_eq!(registration.instance.meta.get("team"), Some("blue"));
    assert_eq!(registration.instance.weights.passing, 3);
    assert_eq!(
        registration.checks[0].policy.deregister_critical_after,
        Some(Duration::from_secs(60))
    );
}

#[test]
fn services_lists_and_repeated_blocks() {
    let list = r#"
services = [
  { name = "api", port = 1 },
  { name = "db", id = "db-1", port = 2, checks = [{ tcp = "localhost:2", interval = "5s" }] },
]
"#;
    let defs = load_text("list.hcl", list, NONE).expect("loads");
    let ids: Vec<_> = defs
        .services
        .iter()
        .map(|r| r.instance.id.as_str())
        .collect();
    assert_eq!(ids, ["api", "db-1"]);

    let json = r#"{"services": [{"name": "api"}, {"name": "db", "id": "db-1"}]}"#;
    let defs = load_text("list.json", json, NONE).expect("loads");
    assert_eq!(defs.services.len(), 2);

    let blocks = r#"
service {
  name = "api"
}
service {
  name = "db"
  check {
    ttl = "30s"
  }
  check {
    tcp = "localhost:5432"
    interval = "5s"
  }
}
"#;
    let defs = load_text("blocks.hcl", blocks, NONE).expect("loads");
    let ids: Vec<_> = defs
        .services
        .iter()
        .map(|r| r.instance.id.as_str())
        .collect();
    assert_eq!(ids, ["api", "db"]);
    assert_eq!(
        defs.services[1].checks.len(),
        2,
        "repeated check blocks are a list"
    );

    let lone_checks_block = "service {\n  name = \"db\"\n  checks {\n    ttl = \"30s\"\n  }\n}\n";
    let defs = load_text("lone.hcl", lone_checks_block, NONE).expect("loads");
    assert_eq!(defs.services[0].checks.len(), 1);
}

#[test]
fn top_level_checks() {
    let hcl = r#"
check {
  name = "disk"
  ttl = "1m"
}
checks = [
  { id = "web-alive", service_id = "web-1", http = "http://localhost:80/", interval = "10s" },
]
"#;
    let defs = load_text("checks.hcl", hcl, NONE).expect("loads");
    assert!(defs.services.is_empty());
    let ids: Vec<_> = defs
        .checks
        .iter()
        .filter_map(|c| c.id.as_ref())
        .map(CheckId::as_str)
        .collect();
    assert_eq!(ids, ["disk", "web-alive"], "the id defaults to the name");
    assert_eq!(defs.checks[0].service_id, None);
    assert_eq!(
        defs.checks[1].service_id.as_ref().map(InstanceId::as_str),
        Some("web-1")
    );

    let json =
        r#"{"checks": [{"ID": "mem", "TTL": "10s"}], "check": {"name": "cpu", "ttl": "5s"}}"#;
    assert_eq!(
        load_text("checks.json", json, NONE)
            .expect("loads")
            .checks
            .len(),
        2
    );

    let err = error("anon.hcl", "\ncheck {\n  ttl = \"5s\"\n}\n");
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Invalid, Some(2)));
    assert!(err.reason.contains("needs an `id` or a `name`"), "{err}");
}

#[test]
fn hcl_syntax_errors_report_their_line() {
    let err = error(
        "broken.hcl",
        "service {\n  name = \"web\"\n  port = = 8080\n}\n",
    );
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Syntax, Some(3)));
    let text = err.to_string();
    assert!(text.contains("broken.hcl:3: HCL syntax error"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");

    let err = error("open.hcl", "service {\n  name = \"web\"\n");
    assert_eq!(err.kind, ConfigErrorKind::Syntax);
    assert!(err.line.is_some(), "{err}");

    // Found by fuzzing: hcl-rs gives no position for a value it cannot convert (a number as an
    // object key); the line is that of the attribute holding it.
    let err = error(
        "number-key.hcl",
        "service {\n  name = \"web\"\n  meta = {\n    242.5 = \"x\"\n  }\n}\n",
    );
    assert_eq!(
        (err.kind, err.line),
        (ConfigErrorKind::Syntax, Some(3)),
        "{err}"
    );
}

#[test]
fn deeply_nested_hcl_is_refused_before_parsing() {
    // Found by fuzzing: hcl-edit's parser took minutes on this file (docs/FUZZING.md).
    let text = "s = 1 -1-1/a[-1/1.a --1[1/llllllllllla/a[-1/1.a --1[1/a.a/a[ 1 -1/a[-1/1.a --1[1/lllllllllll -1.a --1[1/a.a/a[ 1 -1/a[-1/1.a --1[1/l-1[1/a.a/a[ 1 -1/a[-1/1.a --1[1/llllllllllllllll -1.a --1[1/a.a/a[ 1 -1/a[-1/1.a --1[1/llllllllllllll11a[-";
    let err = error("slow.hcl", text);
    assert_eq!(
        (err.kind, err.line),
        (ConfigErrorKind::Syntax, Some(1)),
        "{err}"
    );
    assert!(err.reason.contains("nested more than"), "{err}");
}

#[test]
fn json_syntax_errors_report_their_line() {
    let err = error(
        "broken.json",
        "{\n  \"service\": {\n    \"name\": \"web\",\n  }\n}\n",
    );
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Syntax, Some(4)));
    let text = err.to_string();
    assert!(
        text.contains("broken.json:4: JSON syntax error at column 3"),
        "{text}"
    );
    assert!(!text.contains("at line"), "the line is said once: {text}");

    let err = error("empty.json", "");
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Syntax, Some(1)));
}

#[test]
fn bad_fields_report_the_line_of_their_key() {
    let hcl = r#"service {
  name = "db"
  checks = [
    { ttl = "30s" },
    {
      tcp = "localhost:5432"
      interval = "ten"
    },
  ]
}
"#;
    let err = error("db.hcl", hcl);
    assert_eq!(
        (err.kind, err.line),
        (ConfigErrorKind::Invalid, Some(7)),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("db.hcl:7: service \"db\": checks[1].interval: invalid duration \"ten\""),
        "{text}"
    );

    let json = "{\"service\": {\n  \"name\": \"web\",\n  \"check\": {\n    \"ttl\": \"10s\",\n    \"Interval\": \"10s\"\n  }\n}}";
    let err = error("web.json", json);
    assert_eq!(
        (err.kind, err.line),
        (ConfigErrorKind::Invalid, Some(5)),
        "{err}"
    );
    assert!(
        err.reason
            .contains("check.Interval: Interval and TTL cannot both be specified"),
        "{err}"
    );

    // A validation error from the catalog, and an unknown key, on the lines they are on.
    let err = error(
        "wild.hcl",
        "service {\n  name = \"web\"\n\n  address = \"0.0.0.0\"\n}\n",
    );
    assert_eq!(
        (err.kind, err.line),
        (ConfigErrorKind::Invalid, Some(4)),
        "{err}"
    );
    assert!(
        err.reason.contains("address: 0.0.0.0 is a wildcard"),
        "{err}"
    );
    let err = error(
        "typo.hcl",
        "service {\n  name = \"web\"\n  check {\n    script = \"x\"\n  }\n}\n",
    );
    assert_eq!(err.line, Some(4), "{err}");
    assert!(
        err.reason.contains("check.script: unknown field `script`"),
        "{err}"
    );

    // The second of two repeated check blocks, and the check of a service with both forms.
    let repeated = "service {\n  name = \"db\"\n  check {\n    ttl = \"1s\"\n  }\n  check {\n    ttl = \"-1s\"\n  }\n}\n";
    let err = error("rep.hcl", repeated);
    assert_eq!(err.line, Some(7), "{err}");
    assert!(err.reason.contains("check[1].ttl"), "{err}");
    let both = "service {\n  name = \"db\"\n  check {\n    ttl = \"1s\"\n  }\n  checks = [{ ttl = \"1s\" }, { tcp = \"nope\", interval = \"1s\" }]\n}\n";
    let err = error("both.hcl", both);
    assert_eq!(err.line, Some(6), "{err}");
    assert!(err.reason.contains("checks[1].tcp"), "{err}");

    // A missing name is on the block's line.
    let err = error("anon.hcl", "\n\nservice {\n  port = 80\n}\n");
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.reason.contains("missing service name"), "{err}");
}

#[test]
fn unknown_top_level_keys_are_refused() {
    let err = error(
        "agent.hcl",
        "service {\n  name = \"web\"\n}\ndatacenter = \"dc1\"\n",
    );
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Shape, Some(4)));
    assert!(
        err.reason.contains("unknown top-level key `datacenter`"),
        "{err}"
    );
    assert!(
        err.reason
            .contains("only service, services, check, checks, route and routes blocks"),
        "{err}"
    );

    let err = error("agent.json", "{\n  \"node_name\": \"a\"\n}");
    assert_eq!(err.line, Some(2), "{err}");

    let err = error("label.hcl", "service \"web\" {\n  port = 80\n}\n");
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Shape, Some(1)));
    assert!(err.reason.contains("take no label"), "{err}");

    let err = error("array.json", "[]");
    assert_eq!(err.kind, ConfigErrorKind::Shape);
    let err = error(
        "twice.json",
        "{\"service\": {\"name\": \"a\"},\n \"service\": {\"name\": \"b\"}}",
    );
    assert_eq!(
        (err.kind, err.line),
        (ConfigErrorKind::Shape, Some(2)),
        "{err}"
    );
    let err = error("scalar.hcl", "service = \"web\"\n");
    assert_eq!(
        (err.kind, err.line),
        (ConfigErrorKind::Shape, Some(1)),
        "{err}"
    );
}

#[test]
fn duplicate_ids_name_both_places() {
    let err = error(
        "dup.hcl",
        "service {\n  name = \"web\"\n}\n\nservice {\n  name = \"web\"\n}\n",
    );
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Duplicate, Some(5)));
    assert!(err.reason.contains("dup.hcl:1"), "{err}");

    let dir = dir_with(&[
        ("a.hcl", b"service {\n  name = \"web\"\n  id = \"web-1\"\n}\n"),
        ("b.json", b"{\n\"services\": [\n {\"name\": \"api\"},\n {\"name\": \"web\", \"id\": \"web-1\"}\n]}"),
    ]);
    let err = load_dir(dir.path(), NONE).expect_err("duplicate");
    assert_eq!(err.kind, ConfigErrorKind::Duplicate);
    assert_eq!(err.path, dir.path().join("b.json"));
    assert_eq!(err.line, Some(4));
    let first = format!("{}:1", dir.path().join("a.hcl").display());
    assert!(err.reason.contains(&first), "{err}");

    let checks = "check {\n  id = \"c\"\n  ttl = \"1s\"\n}\nservice {\n  name = \"x\"\n  check {\n    id = \"c\"\n    ttl = \"1s\"\n  }\n}\n";
    let err = error("checks.hcl", checks);
    assert_eq!(
        (err.kind, err.line),
        (ConfigErrorKind::Duplicate, Some(7)),
        "{err}"
    );
}

#[test]
fn non_utf8_files_are_an_error() {
    let dir = dir_with(&[("bad.hcl", b"service {\n  name = \"w\xffb\"\n}\n")]);
    let err = load_dir(dir.path(), NONE).expect_err("not UTF-8");
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Read, Some(2)));
    assert!(
        err.to_string().contains("bad.hcl:2: not valid UTF-8"),
        "{err}"
    );
}

#[test]
fn directories_load_in_lexical_order() {
    let dir = dir_with(&[
        ("b.json", b"{\"service\": {\"name\": \"b\"}}"),
        ("a.hcl", b"service {\n  name = \"a\"\n}\n"),
        ("README.md", b"not a config file"),
        ("c.hcl.bak", b"service {"),
        ("d.HCL", b"service {\n  name = \"d\"\n}\n"),
    ]);
    std::fs::create_dir(dir.path().join("nested.hcl")).expect("mkdir");
    std::fs::write(dir.path().join("nested.hcl/x.hcl"), "service {").expect("write");
    let defs = load_dir(dir.path(), NONE).expect("loads");
    let names: Vec<_> = defs
        .services
        .iter()
        .map(|r| r.instance.service.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "d"]);
    let files: Vec<_> = defs.files.iter().filter_map(|f| f.file_name()).collect();
    assert_eq!(files, ["a.hcl", "b.json", "d.HCL"]);
}

#[test]
fn empty_and_missing_dirs() {
    let dir = dir_with(&[]);
    assert_eq!(load_dir(dir.path(), NONE), Ok(Definitions::default()));

    let missing = dir.path().join("nope");
    let err = load_dir(&missing, NONE).expect_err("missing");
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Read, None));
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{}: cannot read the config dir",
            missing.display()
        )),
        "{text}"
    );

    // An empty HCL file defines nothing, and is still reported as read.
    let defs = load_text("empty.hcl", "", NONE).expect("loads");
    assert_eq!(defs.files.len(), 1);
    assert!(defs.services.is_empty());
}

#[test]
fn deep_nesting_is_refused_not_a_crash() {
    let deep = format!(
        "service {{\n  name = \"x\"\n  meta = {}\n}}\n",
        "[".repeat(100_000)
    );
    let err = error("deep.hcl", &deep);
    assert_eq!((err.kind, err.line), (ConfigErrorKind::Syntax, Some(3)));
    let deep = format!("{{\"service\": {}}}", "[".repeat(100_000));
    assert_eq!(error("deep.json", &deep).kind, ConfigErrorKind::Syntax);
}

#[test]
fn field_paths_map_back_to_the_file() {
    let shape = ChecksShape {
        check_moved: false,
        single_check: true,
    };
    assert_eq!(shape.remap("Checks[0].TTL", true), "Check.TTL");
    assert_eq!(shape.remap("Checks[2].TTL", true), "Checks[1].TTL");
    assert_eq!(shape.remap("Checks[2].TTL", false), "Checks[2].TTL");
    assert_eq!(shape.remap("Name", true), "Name");
    let (line, spelled) = locate(&Loc::leaf(4), "Checks[1].Interval");
    assert_eq!((line, spelled.as_str()), (4, "Checks[1].Interval"));
}

proptest::proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        let _ = load_text("any.hcl", &text, LOCAL);
        let _ = load_text("any.json", &text, LOCAL);
    }

    #[test]
    fn damaged_files_never_panic(cut in 0usize..400, insert in "[\\[\\]{}\"=#/*\n a-z0-9]{0,4}") {
        let original = std::fs::read_to_string(fixture("worker-service.hcl")).expect("fixture");
        let mut at = cut.min(original.len());
        while !original.is_char_boundary(at) {
            at -= 1;
        }
        let damaged = format!("{}{insert}{}", &original[..at], &original[at..]);
        let _ = load_text("any.hcl", &damaged, LOCAL);
        let json = r#"{"service": {"name": "w", "check": {"args": ["x"], "interval": "1s"}}}"#;
        let at = cut.min(json.len());
        let _ = load_text("any.json", &format!("{}{insert}{}", &json[..at], &json[at..]), LOCAL);
    }
}
