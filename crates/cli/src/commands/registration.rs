//! `wayfinder register FILE` and `wayfinder deregister ID`: instances in and out of the agent.
//!
//! FILE holds a Consul service definition in JSON, the body of
//! `PUT /v1/agent/service/register`, or the config-file form `{"service": {...}}`, which is
//! unwrapped. HCL is not read here: the server's config loader turns files into catalog
//! registrations, not into the API's JSON, so an `.hcl` file is pointed at `--config-dir`.
//! `-` reads the definition from stdin.

use super::http::{AgentHttp, AgentTarget, CommandError, CommandResult};
use serde_json::{Value, json};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Arguments of `wayfinder register`.
#[derive(clap::Args)]
pub struct RegisterArgs {
    /// A JSON service definition (`-` for stdin).
    file: PathBuf,
    #[command(flatten)]
    target: AgentTarget,
}

/// Arguments of `wayfinder deregister`.
#[derive(clap::Args)]
pub struct DeregisterArgs {
    /// The instance ID (the service name when it was registered without an ID).
    id: String,
    #[command(flatten)]
    target: AgentTarget,
}

/// Runs `wayfinder register`. `--json` prints `{"registered": ID, "service": NAME}`.
pub fn register(args: &RegisterArgs) -> CommandResult {
    let definition = read_definition(&args.file)?;
    let name = field(&definition, "Name");
    let id = field(&definition, "ID").or_else(|| name.clone());
    let agent = AgentHttp::new(&args.target)?;
    let answer = agent.put(
        agent.url(&["v1", "agent", "service", "register"]),
        Some(&definition),
    )?;
    if !answer.is_success() {
        return Err(CommandError::Refused(format!(
            "the agent refused the registration from {}: {}",
            args.file.display(),
            answer.refusal()
        )));
    }
    let id = id.unwrap_or_default();
    if args.target.json {
        super::print_json(&json!({"registered": id, "service": name}));
    } else {
        super::print(&format!(
            "registered {id} (service {})\n",
            name.as_deref().unwrap_or("?")
        ));
    }
    Ok(())
}

/// Runs `wayfinder deregister`. `--json` prints `{"deregistered": ID}`.
pub fn deregister(args: &DeregisterArgs) -> CommandResult {
    let agent = AgentHttp::new(&args.target)?;
    let answer = agent.put(
        agent.url(&["v1", "agent", "service", "deregister", &args.id]),
        None,
    )?;
    if !answer.is_success() {
        return Err(CommandError::Refused(format!(
            "the agent refused to deregister {:?}: {}",
            args.id,
            answer.refusal()
        )));
    }
    if args.target.json {
        super::print_json(&json!({"deregistered": args.id}));
    } else {
        super::print(&format!("deregistered {}\n", args.id));
    }
    Ok(())
}

/// The definition in `path`, unwrapped from a config file's `{"service": {...}}`.
fn read_definition(path: &Path) -> CommandResult<Value> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("hcl"))
    {
        return Err(CommandError::Refused(format!(
            "{}: `wayfinder register` reads JSON only; write the definition as JSON, or put the \
             HCL file in the agent's --config-dir",
            path.display()
        )));
    }
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|error| {
        CommandError::Refused(format!("cannot read {}: {error}", path.display()))
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|error| {
        CommandError::Refused(format!(
            "{}: not a JSON service definition: {error}",
            path.display()
        ))
    })?;
    unwrap_service(value)
        .map_err(|reason| CommandError::Refused(format!("{}: {reason}", path.display())))
}

/// `{"service": {...}}` (any case) becomes its inner object; a plain definition is kept.
fn unwrap_service(value: Value) -> Result<Value, String> {
    let Value::Object(map) = value else {
        return Err("a service definition is a JSON object".to_owned());
    };
    if map.len() == 1
        && let Some((key, inner)) = map.iter().next()
    {
        if key.eq_ignore_ascii_case("service") && inner.is_object() {
            return Ok(inner.clone());
        }
        if key.eq_ignore_ascii_case("services") {
            return Err("holds several services; register them one file at a time".to_owned());
        }
    }
    Ok(Value::Object(map))
}

/// A top-level string field, matched case-insensitively as the agent decodes them.
fn field(definition: &Value, name: &str) -> Option<String> {
    definition.as_object()?.iter().find_map(|(key, value)| {
        key.eq_ignore_ascii_case(name)
            .then(|| value.as_str().map(str::to_owned))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_wrappers_are_unwrapped() {
        let inner = json!({"Name": "web", "Port": 80});
        assert_eq!(
            unwrap_service(json!({"service": inner.clone()})).ok(),
            Some(inner.clone())
        );
        assert_eq!(unwrap_service(inner.clone()).ok(), Some(inner));
        assert!(unwrap_service(json!([1])).is_err());
    }

    #[test]
    fn fields_match_any_case() {
        let definition = json!({"name": "web", "id": "web-1"});
        assert_eq!(field(&definition, "Name").as_deref(), Some("web"));
        assert_eq!(field(&definition, "ID").as_deref(), Some("web-1"));
    }
}
