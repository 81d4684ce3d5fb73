//! From parsed files to [`Definitions`]: dispatching a file's top-level keys, decoding each
//! service and check block with the request types, the script-check gate, and duplicate IDs
//! across files, with every error placed on a line through the file's `Loc` tree. Reading and
//! parsing the file is `file`'s job; this module sees only the value and its positions.

use super::checks_shape::ChecksShape;
use super::file::{parse_bytes, parse_file};
use super::locate::{Loc, locate};
use super::route_block::RouteBody;
use super::{ConfigError, ConfigErrorKind, Definitions, Fault, ScriptPolicy};
use crate::consul::relaxed::{self, DecodeError, same_key};
use crate::consul::request::{CheckBody, RequestError, ServiceBody};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use wayfinder_catalog::{CheckId, InstanceId, Source};

/// The reason given when a file defines a script check and the agent allows none.
pub(super) const SCRIPTS_DISABLED: &str = "script checks are disabled on this agent; start it \
     with --enable-local-script-checks (config files only) or --enable-script-checks";

/// The two kinds of definition, by the key that holds them: at the top of a file, and (for
/// checks) inside a service block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DefinitionKind {
    /// `service` or `services`.
    Service,
    /// `check` or `checks`.
    Check,
    /// `route` or `routes`: gateway routes.
    Route,
}

impl DefinitionKind {
    /// The kind `key` holds, in any spelling the request decoder accepts; `None` for a key
    /// that holds no definitions.
    pub(super) fn of_key(key: &str) -> Option<Self> {
        if same_key(key, "service") || same_key(key, "services") {
            Some(DefinitionKind::Service)
        } else if same_key(key, "check") || same_key(key, "checks") {
            Some(DefinitionKind::Check)
        } else if same_key(key, "route") || same_key(key, "routes") {
            Some(DefinitionKind::Route)
        } else {
            None
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
pub(super) struct Loader {
    scripts: ScriptPolicy,
    definitions: Definitions,
    service_ids: HashMap<InstanceId, Place>,
    check_ids: HashMap<CheckId, Place>,
}

impl Loader {
    /// A loader with nothing loaded, applying `scripts` to every file.
    pub(super) fn new(scripts: ScriptPolicy) -> Self {
        Loader {
            scripts,
            definitions: Definitions::default(),
            service_ids: HashMap::new(),
            check_ids: HashMap::new(),
        }
    }

    /// Everything loaded so far.
    pub(super) fn into_definitions(self) -> Definitions {
        self.definitions
    }

    /// Reads, parses and loads one file, adding its definitions to those of earlier files.
    pub(super) fn load_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let parsed = parse_file(path)?;
        self.load_parsed(path, parsed)
    }

    /// Parses and loads the contents of the file at `path`, already read.
    pub(super) fn load_bytes(&mut self, path: &Path, bytes: Vec<u8>) -> Result<(), ConfigError> {
        let parsed = parse_bytes(path, bytes)?;
        self.load_parsed(path, parsed)
    }

    /// Loads one parsed file, adding its definitions to those of earlier files.
    fn load_parsed(&mut self, path: &Path, (value, loc): (Value, Loc)) -> Result<(), ConfigError> {
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
            let Some(kind) = DefinitionKind::of_key(&key) else {
                return Err(Fault::at(
                    line,
                    ConfigErrorKind::Shape,
                    format!(
                        "unknown top-level key `{key}`: only service, services, check, \
                         checks, route and routes blocks are read from config files; agent \
                         settings are command-line flags of `wayfinder agent`"
                    ),
                ));
            };
            let items = match value {
                Value::Array(items) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| (item, value_loc.item(i), format!("{key}[{i}]")))
                    .collect(),
                single => vec![(single, value_loc, key.clone())],
            };
            for (item, item_loc, position) in items {
                match kind {
                    DefinitionKind::Service => {
                        self.load_service(path, item, item_loc, &position)?;
                    }
                    DefinitionKind::Check => self.load_check(path, item, item_loc, &position)?,
                    DefinitionKind::Route => self.load_route(path, item, item_loc, &position)?,
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
        self.gate_scripts(body.has_script_checks(), loc)?;
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
        self.gate_scripts(body.is_script(), loc)?;
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

    fn load_route(
        &mut self,
        path: &Path,
        value: Value,
        loc: &Loc,
        position: &str,
    ) -> Result<(), Fault> {
        let Value::Object(map) = &value else {
            return Err(not_a_block("route", position, &value, loc));
        };
        let label = label("route", map, &["Prefix"], position);
        let body: RouteBody = relaxed::decode(value)
            .map_err(|DecodeError { field, reason }| field_fault(loc, &label, &field, &reason))?;
        let route = body
            .into_spec(&path.display().to_string())
            .map_err(|e| field_fault(loc, &label, e.field, &e.reason))?;
        self.definitions.routes.push(route);
        Ok(())
    }

    /// Refuses a definition that has script checks unless the agent allows them from config
    /// files, pointing at the first script's `args`.
    fn gate_scripts(&self, has_scripts: bool, loc: &Loc) -> Result<(), Fault> {
        if has_scripts && !self.scripts.allows_config_files() {
            return Err(Fault::at(
                script_line(loc),
                ConfigErrorKind::ScriptChecksDisabled,
                SCRIPTS_DISABLED,
            ));
        }
        Ok(())
    }

    fn claim_service(&mut self, id: &InstanceId, path: &Path, line: usize) -> Result<(), Fault> {
        claim(&mut self.service_ids, id, path, line, |first| {
            format!(
                "service id {:?} is already defined at {first}; give each instance its own \
                 `id` (it defaults to the name, so two blocks with one name need ids)",
                id.as_str()
            )
        })
    }

    fn claim_check(&mut self, id: &CheckId, path: &Path, line: usize) -> Result<(), Fault> {
        claim(&mut self.check_ids, id, path, line, |first| {
            format!(
                "check id {:?} is already defined at {first}; give each check its own `id`",
                id.as_str()
            )
        })
    }
}

/// Records that `id` is defined at `path:line`, or refuses it with the reason `already` gives
/// for the place an earlier definition took it (which keeps that place).
fn claim<Id: Eq + Hash + Clone>(
    ids: &mut HashMap<Id, Place>,
    id: &Id,
    path: &Path,
    line: usize,
    already: impl FnOnce(&Place) -> String,
) -> Result<(), Fault> {
    if let Some(first) = ids.get(id) {
        return Err(Fault::at(line, ConfigErrorKind::Duplicate, already(first)));
    }
    let here = Place {
        path: path.to_owned(),
        line,
    };
    ids.insert(id.clone(), here);
    Ok(())
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

/// The line of the first script check's `args` in a service or check, for the script-gate
/// error; the block's own line if none is found.
fn script_line(loc: &Loc) -> usize {
    let args_in = |check: &Loc| check.field("ScriptArgs").map(|e| e.line);
    if let Some(line) = args_in(loc) {
        return line;
    }
    loc.entries()
        .iter()
        .filter(|e| DefinitionKind::of_key(&e.key) == Some(DefinitionKind::Check))
        .flat_map(|e| e.value.items())
        .find_map(args_in)
        .unwrap_or(loc.line)
}
