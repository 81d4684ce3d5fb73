//! Service definition files and the ACL settings file, from arbitrary bytes.
//!
//! Every input is loaded as a `*.hcl` and as a `*.json` service file through
//! `service_files::load_bytes` (the same parser, `Loc` walk and request decoding as
//! `--config-dir`), and, when it is UTF-8, as the ACL settings of `--config-file` (HCL through
//! hcl-rs, and JSON) through `AclConfig::from_text`. What loads is applied to a catalog, as the
//! agent would apply it.
//!
//! Beyond "no panic" it checks what the module documents: every error but an unreadable file
//! names a line, and that line is in the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use wayfinder_catalog::Catalog;
use wayfinder_server::acl::config::AclConfig;
use wayfinder_server::config::service_files::{ConfigErrorKind, ScriptPolicy, load_bytes};

/// Script checks allowed, so script check blocks are decoded rather than refused at the gate.
const SCRIPTS: ScriptPolicy = ScriptPolicy {
    enable_script_checks: false,
    enable_local_script_checks: true,
};

fuzz_target!(|data: &[u8]| {
    // One more than the newline count: an error on a last line without a newline is on it.
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    for name in ["fuzz.hcl", "fuzz.json"] {
        match load_bytes(Path::new(name), data.to_vec(), SCRIPTS) {
            Ok(definitions) => {
                let mut catalog = Catalog::new(1);
                for command in definitions.into_commands() {
                    let _ = catalog.apply(catalog.index() + 1, &command);
                }
            }
            Err(error) => {
                let _ = error.to_string();
                if error.kind != ConfigErrorKind::Read {
                    let line = error.line.unwrap_or_else(|| panic!("no line: {error:?}"));
                    assert!(
                        (1..=lines).contains(&line),
                        "line {line} of {lines}: {error:?}"
                    );
                }
            }
        }
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for is_json in [false, true] {
        let _ = AclConfig::from_text(text, is_json);
    }
});
