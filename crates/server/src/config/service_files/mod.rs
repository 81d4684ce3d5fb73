//! Service definitions from `--config-dir`: the `service`, `services`, `check` and `checks`
//! blocks of `*.hcl` and `*.json` files, turned into catalog registrations.
//!
//! This module owns finding the files (lexical order, not recursive, as Consul), parsing them,
//! decoding every block with the same types as `PUT /v1/agent/service/register` (a file and a
//! request mean the same thing, so the two cannot drift), the script-check gate, duplicate IDs
//! across files, and errors that point at a file and a line. It does not apply anything: the
//! agent turns [`Definitions`] into commands on the one write path, and tells config-file
//! instances from API ones by their `Source::Config`.
//!
//! Loading is all or nothing. The first error stops it and nothing is returned, because an
//! agent that starts with half its services looks healthy while clients miss endpoints.
//!
//! Line numbers: parse errors carry a location from hcl-rs or serde_json. Errors found after
//! parsing (a bad duration, an unknown key, a wildcard address) name a field path such as
//! `Checks[1].Interval`. To turn that into a line, parsing also builds a `Loc` tree that
//! mirrors the parsed value with the line of every key and value — from hcl-edit's spans for
//! HCL, and from a small scanner for JSON, because serde_json keeps no positions — and the
//! path is walked through it. A walk that gets lost stops at the deepest block it found, so
//! every error still has a line, if sometimes the block's rather than the key's.
//!
//! The submodules follow one file through the loader. This one lists the directory and holds
//! the public API; `file` reads one file and picks its parser; `hcl` and `json` parse it into
//! a `serde_json::Value` and its `Loc` tree; `locate` holds that tree and walks field paths
//! through it; `loader` decodes the values into [`Definitions`], with `checks_shape` moving a
//! service's checks into the shape the decoder wants and mapping its paths back.

mod checks_shape;
mod file;
mod hcl;
mod json;
mod loader;
mod locate;
mod route_block;
#[cfg(test)]
mod tests;

use loader::Loader;
use std::fmt;
use std::path::{Path, PathBuf};
use wayfinder_catalog::{CheckDefinition, Command, Registration};

/// Everything the agent should hold from its config dir, ready for the write path.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Definitions {
    /// One registration per service block, in load order, each with
    /// `instance.source == Source::Config` so a reload can tell them from API registrations.
    pub services: Vec<Registration>,
    /// Top-level `check` / `checks` blocks: node-level checks, or checks attached to an
    /// instance through `service_id`. Each has an ID (defaulted to its name, as in Consul).
    pub checks: Vec<CheckDefinition>,
    /// `route` blocks: gateway routes (used when the gateway is on).
    pub routes: Vec<wayfinder_gateway::RouteSpec>,
    /// Every file read, in load order, including files that defined nothing; for logs and for
    /// telling the operator what a reload looked at.
    pub files: Vec<PathBuf>,
}

impl Definitions {
    /// The catalog commands the services and checks stand for, in load order: every
    /// registration, then every check.
    pub fn into_commands(self) -> impl Iterator<Item = Command> {
        self.services
            .into_iter()
            .map(|r| Command::Register(Box::new(r)))
            .chain(
                self.checks
                    .into_iter()
                    .map(|c| Command::RegisterCheck(Box::new(c))),
            )
    }
}

/// Which script checks the agent runs. Both default to off, as in Consul: a script check runs
/// an arbitrary program, so it must be asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScriptPolicy {
    /// `--enable-script-checks`: script checks from anywhere, including the HTTP API (remote
    /// code execution for anyone who can reach the API; prefer the local flag).
    pub enable_script_checks: bool,
    /// `--enable-local-script-checks`: script checks from config files only.
    pub enable_local_script_checks: bool,
}

impl ScriptPolicy {
    /// Whether config files may define script checks: either flag allows them.
    pub fn allows_config_files(self) -> bool {
        self.enable_script_checks || self.enable_local_script_checks
    }
}

/// What kind of problem stopped loading, so callers (and tests) can branch on data rather
/// than on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The directory or a file could not be read, or a file is not UTF-8.
    Read,
    /// The file is not valid HCL or JSON.
    Syntax,
    /// The file parsed but is not shaped like service definitions (an unknown top-level key,
    /// a labelled block, a list where a block belongs).
    Shape,
    /// A definition has a bad field: wrong type, unknown key, or a value the catalog refuses.
    Invalid,
    /// A script check, while neither script flag is set.
    ScriptChecksDisabled,
    /// Two definitions use the same service or check ID.
    Duplicate,
}

/// Why the config dir could not be loaded. Displays as `<path>:<line>: <reason>` (the line is
/// left out only when there is none, as for a missing directory), and the reason says what to
/// change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or the directory, when it could not be listed).
    pub path: PathBuf,
    /// 1-based line the problem is on, when there is one.
    pub line: Option<usize>,
    /// What kind of problem it is.
    pub kind: ConfigErrorKind,
    /// What is wrong and what to do about it.
    pub reason: String,
}

impl ConfigError {
    /// A file or directory that could not be read at all, so no line applies.
    fn unreadable(path: &Path, reason: String) -> Self {
        ConfigError {
            path: path.to_owned(),
            line: None,
            kind: ConfigErrorKind::Read,
            reason,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// Loads every `*.hcl` and `*.json` file directly in `dir`, in lexical order of file name.
/// Other files and subdirectories are skipped (logged at debug). Returns the first error and
/// nothing else: the agent must refuse to start rather than run with part of its services.
pub fn load_dir(dir: &Path, scripts: ScriptPolicy) -> Result<Definitions, ConfigError> {
    let unreadable = |error: std::io::Error| {
        ConfigError::unreadable(
            dir,
            format!(
                "cannot read the config dir: {error}; create it, or point --config-dir at the \
                 directory that holds your .hcl and .json service files"
            ),
        )
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        names.push(entry.map_err(unreadable)?.file_name());
    }
    names.sort();
    let mut loader = Loader::new(scripts);
    for name in names {
        let path = dir.join(&name);
        if file::Format::of(&path).is_none() {
            tracing::debug!(path = %path.display(), "skipping file: not .hcl or .json");
            continue;
        }
        let metadata = std::fs::metadata(&path).map_err(|error| {
            ConfigError::unreadable(
                &path,
                format!("cannot read it: {error}; fix its permissions or remove it"),
            )
        })?;
        if !metadata.is_file() {
            tracing::debug!(path = %path.display(), "skipping: not a regular file");
            continue;
        }
        loader.load_file(&path)?;
    }
    Ok(loader.into_definitions())
}

/// Loads one `.hcl` or `.json` file; [`load_dir`] calls it for each file, and tests and
/// `wayfinder` tooling can check a single file with it.
pub fn load_file(path: &Path, scripts: ScriptPolicy) -> Result<Definitions, ConfigError> {
    let mut loader = Loader::new(scripts);
    loader.load_file(path)?;
    Ok(loader.into_definitions())
}

/// Loads the contents of one `.hcl` or `.json` file, read already, as [`load_file`] would load
/// the file at `path` (its extension picks the parser; errors name it). It exists so the
/// parsers can be fuzzed without a file per input (`fuzz/fuzz_targets/config_files.rs`).
pub fn load_bytes(
    path: &Path,
    bytes: Vec<u8>,
    scripts: ScriptPolicy,
) -> Result<Definitions, ConfigError> {
    let mut loader = Loader::new(scripts);
    loader.load_bytes(path, bytes)?;
    Ok(loader.into_definitions())
}

/// A problem found in a file's text, before the file's path is attached.
#[derive(Debug)]
struct Fault {
    line: Option<usize>,
    kind: ConfigErrorKind,
    reason: String,
}

impl Fault {
    /// A problem on a known line.
    fn at(line: usize, kind: ConfigErrorKind, reason: impl Into<String>) -> Self {
        Fault {
            line: Some(line),
            kind,
            reason: reason.into(),
        }
    }

    /// The public error, now that the file is known.
    fn in_file(self, path: &Path) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            line: self.line,
            kind: self.kind,
            reason: self.reason,
        }
    }
}
