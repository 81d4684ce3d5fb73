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

use crate::consul::relaxed::{self, DecodeError};
use crate::consul::request::{CheckBody, RequestError, ServiceBody};
use hcl::edit::Span;
use hcl::edit::expr::{Expression, ObjectKey};
use hcl::edit::structure::{Body, Structure};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use wayfinder_catalog::{CheckDefinition, CheckId, InstanceId, Registration, Source};

/// How deep the position walkers recurse. Both parsers already refuse deeper files (hcl-edit
/// at 64 levels, serde_json at 128), so this only guards against a parser changing its mind.
const MAX_NESTING: usize = 128;

/// The reason given when a file defines a script check and the agent allows none.
const SCRIPTS_DISABLED: &str = "script checks are disabled on this agent; start it with \
     --enable-local-script-checks (config files only) or --enable-script-checks";

/// Everything the agent should hold from its config dir, ready for the write path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Definitions {
    /// One registration per service block, in load order, each with
    /// `instance.source == Source::Config` so a reload can tell them from API registrations.
    pub services: Vec<Registration>,
    /// Top-level `check` / `checks` blocks: node-level checks, or checks attached to an
    /// instance through `service_id`. Each has an ID (defaulted to its name, as in Consul).
    pub checks: Vec<CheckDefinition>,
    /// Every file read, in load order, including files that defined nothing; for logs and for
    /// telling the operator what a reload looked at.
    pub files: Vec<PathBuf>,
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
    let unreadable = |error: std::io::Error| ConfigError {
        path: dir.to_owned(),
        line: None,
        kind: ConfigErrorKind::Read,
        reason: format!(
            "cannot read the config dir: {error}; create it, or point --config-dir at the \
             directory that holds your .hcl and .json service files"
        ),
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        names.push(entry.map_err(unreadable)?.file_name());
    }
    names.sort();
    let mut loader = Loader::new(scripts);
    for name in names {
        let path = dir.join(&name);
        if Format::of(&path).is_none() {
            tracing::debug!(path = %path.display(), "skipping file: not .hcl or .json");
            continue;
        }
        let metadata = std::fs::metadata(&path).map_err(|error| ConfigError {
            path: path.clone(),
            line: None,
            kind: ConfigErrorKind::Read,
            reason: format!("cannot read it: {error}; fix its permissions or remove it"),
        })?;
        if !metadata.is_file() {
            tracing::debug!(path = %path.display(), "skipping: not a regular file");
            continue;
        }
        loader.load_file(&path)?;
    }
    Ok(loader.definitions)
}

/// Loads one `.hcl` or `.json` file; [`load_dir`] calls it for each file, and tests and
/// `wayfinder` tooling can check a single file with it.
pub fn load_file(path: &Path, scripts: ScriptPolicy) -> Result<Definitions, ConfigError> {
    let mut loader = Loader::new(scripts);
    loader.load_file(path)?;
    Ok(loader.definitions)
}

/// The two file formats, chosen by extension as Consul does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Hcl,
    Json,
}

impl Format {
    fn of(path: &Path) -> Option<Format> {
        let extension = path.extension()?.to_str()?;
        if extension.eq_ignore_ascii_case("hcl") {
            Some(Format::Hcl)
        } else if extension.eq_ignore_ascii_case("json") {
            Some(Format::Json)
        } else {
            None
        }
    }
}

/// A problem found in a file's text, before the file's path is attached.
#[derive(Debug)]
struct Fault {
    line: Option<usize>,
    kind: ConfigErrorKind,
    reason: String,
}

impl Fault {
    fn at(line: usize, kind: ConfigErrorKind, reason: impl Into<String>) -> Self {
        Fault {
            line: Some(line),
            kind,
            reason: reason.into(),
        }
    }

    fn in_file(self, path: &Path) -> ConfigError {
        ConfigError {
            path: path.to_owned(),
            line: self.line,
            kind: self.kind,
            reason: self.reason,
        }
    }
}

/// A place a definition was found, for duplicate-ID messages that name both places.
#[derive(Debug, Clone)]
struct Place {
    path: PathBuf,
    line: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Accumulates definitions across files, remembering where each ID was defined.
struct Loader {
    scripts: ScriptPolicy,
    definitions: Definitions,
    service_ids: HashMap<InstanceId, Place>,
    check_ids: HashMap<CheckId, Place>,
}

impl Loader {
    fn new(scripts: ScriptPolicy) -> Self {
        Loader {
            scripts,
            definitions: Definitions::default(),
            service_ids: HashMap::new(),
            check_ids: HashMap::new(),
        }
    }

    fn load_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let read_error = |reason: String| ConfigError {
            path: path.to_owned(),
            line: None,
            kind: ConfigErrorKind::Read,
            reason,
        };
        let format = Format::of(path).ok_or_else(|| {
            read_error("not a service definition file; name it *.hcl or *.json".to_owned())
        })?;
        let bytes = std::fs::read(path)
            .map_err(|e| read_error(format!("cannot read it: {e}; fix its permissions")))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = e.utf8_error().valid_up_to();
            let line = line_of_byte(e.as_bytes(), valid);
            ConfigError {
                path: path.to_owned(),
                line: Some(line),
                kind: ConfigErrorKind::Read,
                reason: format!(
                    "not valid UTF-8 (at byte offset {valid}); save the file as UTF-8 text"
                ),
            }
        })?;
        // Editors on some systems start UTF-8 files with a byte-order mark; neither parser
        // accepts one, and it carries no meaning.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let parsed = match format {
            Format::Hcl => parse_hcl(text),
            Format::Json => parse_json(text),
        };
        let (value, loc) = parsed.map_err(|fault| fault.in_file(path))?;
        let before = (
            self.definitions.services.len(),
            self.definitions.checks.len(),
        );
        self.load_value(path, value, &loc)
            .map_err(|fault| fault.in_file(path))?;
        self.definitions.files.push(path.to_owned());
        tracing::debug!(
            path = %path.display(),
            services = self.definitions.services.len() - before.0,
            checks = self.definitions.checks.len() - before.1,
            "loaded service definition file"
        );
        Ok(())
    }

    /// Dispatches the top-level keys of one file, in the order the file lists them.
    fn load_value(&mut self, path: &Path, value: Value, loc: &Loc) -> Result<(), Fault> {
        let Value::Object(mut map) = value else {
            return Err(Fault::at(
                loc.line,
                ConfigErrorKind::Shape,
                format!(
                    "the file holds {}; it must be an object such as \
                     {{\"service\": {{\"name\": \"web\", \"port\": 8080}}}}",
                    describe_type(&value)
                ),
            ));
        };
        let entries = loc.entries();
        for (i, entry) in entries.iter().enumerate() {
            if let Some(first) = entries[..i].iter().find(|e| e.key == entry.key) {
                return Err(Fault::at(
                    entry.line,
                    ConfigErrorKind::Shape,
                    format!(
                        "`{}` is set twice (first on line {}), and only the last would count; \
                         list several definitions in `services` or `checks` instead",
                        entry.key, first.line
                    ),
                ));
            }
        }
        let leftover_loc = Loc::leaf(loc.line);
        let mut top = Vec::new();
        for entry in entries {
            if let Some(value) = map.remove(&entry.key) {
                top.push((entry.key.clone(), entry.line, value, &entry.value));
            }
        }
        // Keys the position scan did not see (it should see them all); load them anyway,
        // located at the top of the file.
        for (key, value) in map {
            top.push((key, loc.line, value, &leftover_loc));
        }
        for (key, line, value, value_loc) in top {
            let is_service = same_key(&key, "service") || same_key(&key, "services");
            let is_check = same_key(&key, "check") || same_key(&key, "checks");
            if !is_service && !is_check {
                return Err(Fault::at(
                    line,
                    ConfigErrorKind::Shape,
                    format!(
                        "unknown top-level key `{key}`: only service, services, check and \
                         checks blocks are read from config files; agent settings are \
                         command-line flags of `wayfinder agent`"
                    ),
                ));
            }
            let items = match value {
                Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| (item, value_loc.item(i), format!("{key}[{i}]")))
                    .collect(),
                single => vec![(single, value_loc, key.clone())],
            };
            for (item, item_loc, position) in items {
                if is_service {
                    self.load_service(path, item, item_loc, &position)?;
                } else {
                    self.load_check(path, item, item_loc, &position)?;
                }
            }
        }
        Ok(())
    }

    fn load_service(
        &mut self,
        path: &Path,
        mut value: Value,
        loc: &Loc,
        position: &str,
    ) -> Result<(), Fault> {
        let Value::Object(map) = &mut value else {
            return Err(not_a_block("service", position, &value, loc));
        };
        let label = label("service", map, &["ID", "Name"], position);
        let shape = ChecksShape::normalize(map);
        let body = ServiceBody::decode(value).map_err(|error| {
            let field = shape.remap(error.field(), false);
            let reason = match error {
                RequestError::Decode(e) => e.reason,
                RequestError::Invalid(e) => e.reason,
            };
            field_fault(loc, &label, &field, &reason)
        })?;
        if body.has_script_checks() && !self.scripts.allows_config_files() {
            return Err(Fault::at(
                script_line(loc),
                ConfigErrorKind::ScriptChecksDisabled,
                SCRIPTS_DISABLED,
            ));
        }
        let registration = body
            .into_registration(Source::Config, false)
            .map_err(|e| field_fault(loc, &label, &shape.remap(&e.field, true), &e.reason))?;
        self.claim_service(&registration.instance.id, path, loc.line)?;
        for (i, check) in registration.checks.iter().enumerate() {
            if let Some(id) = &check.id {
                let (line, _) = locate(loc, &shape.remap(&format!("Checks[{i}]"), true));
                self.claim_check(id, path, line)?;
            }
        }
        self.definitions.services.push(registration);
        Ok(())
    }

    fn load_check(
        &mut self,
        path: &Path,
        value: Value,
        loc: &Loc,
        position: &str,
    ) -> Result<(), Fault> {
        let Value::Object(map) = &value else {
            return Err(not_a_block("check", position, &value, loc));
        };
        let label = label("check", map, &["CheckID", "ID", "Name"], position);
        let body: CheckBody = relaxed::decode(value)
            .map_err(|DecodeError { field, reason }| field_fault(loc, &label, &field, &reason))?;
        if body.is_script() && !self.scripts.allows_config_files() {
            return Err(Fault::at(
                script_line(loc),
                ConfigErrorKind::ScriptChecksDisabled,
                SCRIPTS_DISABLED,
            ));
        }
        let mut check = body
            .into_definition("")
            .map_err(|e| field_fault(loc, &label, &e.field, &e.reason))?;
        if check.id.is_none() {
            if check.name.is_empty() {
                return Err(Fault::at(
                    loc.line,
                    ConfigErrorKind::Invalid,
                    format!(
                        "{label}: a check outside a service needs an `id` or a `name` \
                         (the id defaults to the name); add one"
                    ),
                ));
            }
            let id = CheckId::new(&check.name, "Name")
                .map_err(|e| field_fault(loc, &label, &e.field, &e.reason))?;
            check.id = Some(id);
        }
        if let Some(id) = &check.id {
            self.claim_check(id, path, loc.line)?;
        }
        self.definitions.checks.push(check);
        Ok(())
    }

    fn claim_service(&mut self, id: &InstanceId, path: &Path, line: usize) -> Result<(), Fault> {
        let here = Place {
            path: path.to_owned(),
            line,
        };
        if let Some(first) = self.service_ids.get(id) {
            return Err(Fault::at(
                line,
                ConfigErrorKind::Duplicate,
                format!(
                    "service id {:?} is already defined at {first}; give each instance its own \
                     `id` (it defaults to the name, so two blocks with one name need ids)",
                    id.as_str()
                ),
            ));
        }
        self.service_ids.insert(id.clone(), here);
        Ok(())
    }

    fn claim_check(&mut self, id: &CheckId, path: &Path, line: usize) -> Result<(), Fault> {
        let here = Place {
            path: path.to_owned(),
            line,
        };
        if let Some(first) = self.check_ids.get(id) {
            return Err(Fault::at(
                line,
                ConfigErrorKind::Duplicate,
                format!(
                    "check id {:?} is already defined at {first}; give each check its own `id`",
                    id.as_str()
                ),
            ));
        }
        self.check_ids.insert(id.clone(), here);
        Ok(())
    }
}

fn not_a_block(what: &str, position: &str, value: &Value, loc: &Loc) -> Fault {
    Fault::at(
        loc.line,
        ConfigErrorKind::Shape,
        format!(
            "`{position}` holds {}; each {what} must be a block such as \
             {what} {{ name = \"web\" ... }} (JSON: an object)",
            describe_type(value)
        ),
    )
}

/// How a definition is named in messages: `service "web-1"`, or its position when it has
/// neither ID nor name.
fn label(what: &str, map: &Map<String, Value>, keys: &[&str], position: &str) -> String {
    keys.iter()
        .find_map(|key| {
            map.iter()
                .filter(|(k, _)| same_key(k, key))
                .find_map(|(_, v)| v.as_str().filter(|s| !s.is_empty()))
        })
        .map_or_else(
            || format!("`{position}`"),
            |name| format!("{what} {name:?}"),
        )
}

/// An error about `field` (a path relative to the definition at `loc`), placed on the line of
/// the key it names and spelled as the file spells it.
fn field_fault(loc: &Loc, label: &str, field: &str, reason: &str) -> Fault {
    let (line, spelled) = locate(loc, field);
    let reason = if spelled.is_empty() {
        format!("{label}: {reason}")
    } else {
        format!("{label}: {spelled}: {reason}")
    };
    Fault::at(line, ConfigErrorKind::Invalid, reason)
}

fn describe_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `EnableTagOverride`, `enable_tag_override` and `enabletagoverride` name the same key, as in
/// the request decoder.
fn same_key(key: &str, field: &str) -> bool {
    let mut k = key.bytes().filter(|b| *b != b'_');
    let mut f = field.bytes().filter(|b| *b != b'_');
    loop {
        match (k.next(), f.next()) {
            (None, None) => return true,
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(&b) => {}
            _ => return false,
        }
    }
}

/// Field names the decoders report under another spelling than the file may use.
const ALIASES: &[&[&str]] = &[&["ScriptArgs", "Args"], &["CheckID", "ID"]];

/// Whether a key as written in the file stands for the decoder's `field`.
fn key_matches(written: &str, field: &str) -> bool {
    same_key(written, field)
        || ALIASES.iter().any(|group| {
            group.iter().any(|a| same_key(field, a)) && group.iter().any(|a| same_key(written, a))
        })
}

/// How a service spelled its checks, so decoder paths can be mapped back onto the file.
///
/// HCL gives `check { } check { }` as a list under `check`, and a lone `checks { }` block as
/// an object; the decoder wants one object in `Check` and a list in `Checks`. Both are
/// accepted by moving them into shape, and error paths are mapped back to what was written.
#[derive(Debug, Default)]
struct ChecksShape {
    /// `check` held a list, now moved to `Checks`.
    check_moved: bool,
    /// `check` holds one object.
    single_check: bool,
}

impl ChecksShape {
    fn normalize(map: &mut Map<String, Value>) -> Self {
        let mut shape = ChecksShape::default();
        let check_key = map.keys().find(|k| same_key(k, "Check")).cloned();
        let checks_key = map.keys().find(|k| same_key(k, "Checks")).cloned();
        if let Some(key) = &checks_key
            && let Some(value) = map.get_mut(key)
            && value.is_object()
        {
            let single = value.take();
            *value = Value::Array(vec![single]);
        }
        if let Some(key) = check_key {
            match map.get(&key) {
                Some(Value::Array(_)) if checks_key.is_none() => {
                    if let Some(list) = map.remove(&key) {
                        map.insert("Checks".to_owned(), list);
                        shape.check_moved = true;
                    }
                }
                Some(Value::Object(_)) => shape.single_check = true,
                _ => {}
            }
        }
        shape
    }

    /// Maps a decoder path onto the file's keys. `chained` paths number `check` and `checks`
    /// together (`Checks[0]` is `check` when both are present), as `into_registration` does;
    /// decode paths index `checks` alone.
    fn remap(&self, field: &str, chained: bool) -> String {
        let Some(rest) = field.strip_prefix("Checks[") else {
            return field.to_owned();
        };
        let Some((index, rest)) = rest.split_once(']') else {
            return field.to_owned();
        };
        let Ok(index) = index.parse::<usize>() else {
            return field.to_owned();
        };
        if self.check_moved {
            format!("Check[{index}]{rest}")
        } else if chained && self.single_check {
            match index.checked_sub(1) {
                None => format!("Check{rest}"),
                Some(i) => format!("Checks[{i}]{rest}"),
            }
        } else {
            field.to_owned()
        }
    }
}

/// The line of the first script check's `args` in a service or check, for the script-gate
/// error; the block's own line if none is found.
fn script_line(loc: &Loc) -> usize {
    let args_in = |check: &Loc| {
        check
            .entries()
            .iter()
            .rev()
            .find(|e| key_matches(&e.key, "ScriptArgs"))
            .map(|e| e.line)
    };
    if let Some(line) = args_in(loc) {
        return line;
    }
    loc.entries()
        .iter()
        .filter(|e| same_key(&e.key, "Check") || same_key(&e.key, "Checks"))
        .flat_map(|e| match &e.value.node {
            Node::List(items) => items.iter().collect::<Vec<_>>(),
            _ => vec![&e.value],
        })
        .find_map(args_in)
        .unwrap_or(loc.line)
}

// ---------------------------------------------------------------------------------------------
// Positions

/// Where a parsed value sits in its file: its line, and the same for everything inside it.
/// It mirrors the `serde_json::Value` the parser produced, so a decoder's field path can be
/// followed through it.
#[derive(Debug, Clone, Default)]
struct Loc {
    line: usize,
    node: Node,
}

#[derive(Debug, Clone, Default)]
enum Node {
    #[default]
    Leaf,
    /// Keys in file order, duplicates kept (the last one is the one that counts).
    Map(Vec<Entry>),
    List(Vec<Loc>),
}

#[derive(Debug, Clone)]
struct Entry {
    /// As written in the file.
    key: String,
    /// Line of the key itself.
    line: usize,
    value: Loc,
}

impl Loc {
    fn leaf(line: usize) -> Self {
        Loc {
            line,
            node: Node::Leaf,
        }
    }

    fn entries(&self) -> &[Entry] {
        match &self.node {
            Node::Map(entries) => entries,
            _ => &[],
        }
    }

    /// The `i`th element, or the whole value when it is not a list (HCL's lone block).
    fn item(&self, i: usize) -> &Loc {
        match &self.node {
            Node::List(items) => items.get(i).unwrap_or(self),
            _ => self,
        }
    }
}

/// One step of a decoder's field path: `Checks[1].Interval` is `Checks`, `1`, `Interval`.
enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut indexes) = part
            .split_once('[')
            .map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some((index, rest)) = indexes.split_once(']') {
            match index.parse() {
                Ok(i) => out.push(Segment::Index(i)),
                Err(_) => out.push(Segment::Key(index)),
            }
            indexes = rest.strip_prefix('[').unwrap_or(rest);
        }
    }
    out
}

/// Follows a decoder's field path through `loc`: the line of the deepest key or element found,
/// and the path spelled as in the file (`check.interval` for `Check.Interval`). Segments past
/// the point where the walk got lost are kept as the decoder spelled them.
fn locate(loc: &Loc, path: &str) -> (usize, String) {
    let mut line = loc.line;
    let mut node = loc;
    let mut lost = false;
    let mut spelled = String::new();
    let push_key = |spelled: &mut String, key: &str| {
        if !spelled.is_empty() {
            spelled.push('.');
        }
        spelled.push_str(key);
    };
    for segment in segments(path) {
        match segment {
            Segment::Key(key) => {
                let found = match (&node.node, lost) {
                    (Node::Map(entries), false) => {
                        entries.iter().rev().find(|e| key_matches(&e.key, key))
                    }
                    _ => None,
                };
                match found {
                    Some(entry) => {
                        push_key(&mut spelled, &entry.key);
                        line = entry.line;
                        node = &entry.value;
                    }
                    None => {
                        push_key(&mut spelled, key);
                        lost = true;
                    }
                }
            }
            Segment::Index(i) => {
                spelled.push_str(&format!("[{i}]"));
                match (&node.node, lost) {
                    (Node::List(items), false) => match items.get(i) {
                        Some(item) => {
                            line = item.line;
                            node = item;
                        }
                        None => lost = true,
                    },
                    // A lone HCL block where the decoder saw a one-element list.
                    (Node::Map(_), false) if i == 0 => {
                        spelled.truncate(spelled.len() - "[0]".len());
                    }
                    _ => lost = true,
                }
            }
        }
    }
    (line, spelled)
}

/// Maps byte offsets to 1-based line numbers.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Lines { starts }
    }

    fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|start| *start <= offset).max(1)
    }

    fn of_span(&self, span: Option<Range<usize>>, fallback: usize) -> usize {
        span.map_or(fallback, |span| self.line(span.start))
    }
}

fn line_of_byte(bytes: &[u8], offset: usize) -> usize {
    bytes
        .get(..offset)
        .unwrap_or(bytes)
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

// ---------------------------------------------------------------------------------------------
// HCL

fn parse_hcl(text: &str) -> Result<(Value, Loc), Fault> {
    let body = hcl::edit::parser::parse_body(text).map_err(|error| {
        let location = error.location();
        Fault::at(
            location.line(),
            ConfigErrorKind::Syntax,
            format!(
                "HCL syntax error at column {}: {}; fix the syntax (files ending in .hcl are \
                 read as HCL, .json as JSON)",
                location.column(),
                error.message()
            ),
        )
    })?;
    let lines = Lines::new(text);
    for structure in body.iter() {
        if let Structure::Block(block) = structure
            && !block.labels.is_empty()
            && ["service", "services", "check", "checks"]
                .iter()
                .any(|k| same_key(block.ident.as_str(), k))
        {
            let ident = block.ident.as_str();
            return Err(Fault::at(
                lines.of_span(block.ident.span(), 1),
                ConfigErrorKind::Shape,
                format!(
                    "`{ident}` blocks take no label; put the name inside the block: \
                     {ident} {{ name = \"{}\" ... }}",
                    block.labels.first().map(|l| l.as_str()).unwrap_or_default()
                ),
            ));
        }
    }
    let loc = hcl_body_loc(&body, 1, &lines);
    let value: Value = hcl::from_body(hcl::Body::from(body)).map_err(|error| Fault {
        line: None,
        kind: ConfigErrorKind::Syntax,
        reason: format!("cannot read the HCL: {error}; use plain values, not expressions"),
    })?;
    Ok((value, loc))
}

/// Positions for an HCL body, grouped as hcl-rs groups it into JSON: attributes by key, and
/// repeated blocks with one identifier into a list (a lone block stays an object).
fn hcl_body_loc(body: &Body, line: usize, lines: &Lines) -> Loc {
    let mut entries: Vec<Entry> = Vec::new();
    let mut blocks: HashMap<String, usize> = HashMap::new();
    for structure in body.iter() {
        match structure {
            Structure::Attribute(attribute) => {
                let key_line = lines.of_span(attribute.key.span(), line);
                entries.push(Entry {
                    key: attribute.key.as_str().to_owned(),
                    line: key_line,
                    value: hcl_expr_loc(&attribute.value, key_line, lines, 0),
                });
            }
            Structure::Block(block) => {
                let key = block.ident.as_str().to_owned();
                let key_line = lines.of_span(block.ident.span(), line);
                let mut value = hcl_body_loc(&block.body, key_line, lines);
                for label in block.labels.iter().rev() {
                    value = Loc {
                        line: key_line,
                        node: Node::Map(vec![Entry {
                            key: label.as_str().to_owned(),
                            line: key_line,
                            value,
                        }]),
                    };
                }
                match blocks.get(&key).and_then(|i| entries.get_mut(*i)) {
                    Some(entry) => {
                        let first = std::mem::take(&mut entry.value);
                        entry.value = match first.node {
                            Node::List(mut items) if block.labels.is_empty() => {
                                items.push(value);
                                Loc {
                                    line: first.line,
                                    node: Node::List(items),
                                }
                            }
                            node => Loc {
                                line: first.line,
                                node: Node::List(vec![
                                    Loc {
                                        line: first.line,
                                        node,
                                    },
                                    value,
                                ]),
                            },
                        };
                    }
                    None => {
                        blocks.insert(key.clone(), entries.len());
                        entries.push(Entry {
                            key,
                            line: key_line,
                            value,
                        });
                    }
                }
            }
        }
    }
    Loc {
        line,
        node: Node::Map(entries),
    }
}

fn hcl_expr_loc(expr: &Expression, fallback: usize, lines: &Lines, depth: usize) -> Loc {
    let line = lines.of_span(expr.span(), fallback);
    if depth > MAX_NESTING {
        return Loc::leaf(line);
    }
    let node = match expr {
        Expression::Array(array) => Node::List(
            array
                .iter()
                .map(|item| hcl_expr_loc(item, line, lines, depth + 1))
                .collect(),
        ),
        Expression::Object(object) => Node::Map(
            object
                .iter()
                .map(|(key, value)| {
                    let key_line = lines.of_span(key.span(), line);
                    let key = match key {
                        ObjectKey::Ident(ident) => ident.as_str().to_owned(),
                        ObjectKey::Expression(expr) => expr.as_str().unwrap_or_default().to_owned(),
                    };
                    Entry {
                        key,
                        line: key_line,
                        value: hcl_expr_loc(value.expr(), key_line, lines, depth + 1),
                    }
                })
                .collect(),
        ),
        _ => Node::Leaf,
    };
    Loc { line, node }
}

// ---------------------------------------------------------------------------------------------
// JSON

fn parse_json(text: &str) -> Result<(Value, Loc), Fault> {
    let value: Value = serde_json::from_str(text).map_err(|error| {
        let message = error.to_string();
        let suffix = format!(" at line {} column {}", error.line(), error.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message);
        Fault {
            line: (error.line() > 0).then_some(error.line()),
            kind: ConfigErrorKind::Syntax,
            reason: format!(
                "JSON syntax error at column {}: {message}; fix the syntax (files ending in \
                 .json are read as JSON, .hcl as HCL)",
                error.column()
            ),
        }
    })?;
    let lines = Lines::new(text);
    let mut scanner = JsonScanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        lines: &lines,
    };
    let loc = scanner.value(0);
    Ok((value, loc))
}

/// Re-reads text that serde_json has already accepted, noting where each key and value
/// starts. It trusts the text to be valid, but never panics or loops if it is not: every step
/// either consumes a byte or stops.
struct JsonScanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    lines: &'a Lines,
}

impl JsonScanner<'_> {
    fn skip_whitespace(&mut self) {
        while self
            .bytes
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.pos += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Loc {
        self.skip_whitespace();
        let line = self.lines.line(self.pos);
        if depth > MAX_NESTING {
            return Loc::leaf(line);
        }
        let node = match self.bytes.get(self.pos) {
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                loop {
                    self.skip_whitespace();
                    match self.bytes.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'"') => {
                            let key_line = self.lines.line(self.pos);
                            let key = self.string();
                            self.skip_whitespace();
                            if self.bytes.get(self.pos) == Some(&b':') {
                                self.pos += 1;
                            }
                            let value = self.value(depth + 1);
                            entries.push(Entry {
                                key,
                                line: key_line,
                                value,
                            });
                        }
                        Some(b'}') => {
                            self.pos += 1;
                            break;
                        }
                        _ => break,
                    }
                }
                Node::Map(entries)
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_whitespace();
                    match self.bytes.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            break;
                        }
                        Some(_) => {
                            let before = self.pos;
                            items.push(self.value(depth + 1));
                            if self.pos == before {
                                break;
                            }
                        }
                        None => break,
                    }
                }
                Node::List(items)
            }
            Some(b'"') => {
                self.string();
                Node::Leaf
            }
            _ => {
                while self
                    .bytes
                    .get(self.pos)
                    .is_some_and(|b| !b",]}".contains(b) && !b.is_ascii_whitespace())
                {
                    self.pos += 1;
                }
                Node::Leaf
            }
        };
        Loc { line, node }
    }

    /// Reads a string starting at its opening quote and returns its decoded text.
    fn string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.bytes.get(self.pos) {
            match b {
                b'\\' => self.pos += 2,
                b'"' => {
                    self.pos += 1;
                    break;
                }
                _ => self.pos += 1,
            }
        }
        let raw = self
            .text
            .get(start..self.pos.min(self.text.len()))
            .unwrap_or("");
        serde_json::from_str(raw).unwrap_or_else(|_| raw.trim_matches('"').to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use wayfinder_catalog::CheckKind;

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

    fn load_text(
        name: &str,
        text: &str,
        scripts: ScriptPolicy,
    ) -> Result<Definitions, ConfigError> {
        let dir = dir_with(&[(name, text.as_bytes())]);
        load_file(&dir.path().join(name), scripts)
    }

    fn error(name: &str, text: &str) -> ConfigError {
        load_text(name, text, LOCAL).expect_err("should be refused")
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
        assert_eq!(
            registration.instance.meta.get("team").map(String::as_str),
            Some("blue")
        );
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

        let lone_checks_block =
            "service {\n  name = \"db\"\n  checks {\n    ttl = \"30s\"\n  }\n}\n";
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
                .contains("only service, services, check and checks blocks"),
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
}
