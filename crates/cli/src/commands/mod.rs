//! The operator commands: `wayfinder services`, `endpoints`, `register`, `deregister`, `check`,
//! `members` and `routes`, each a thin client of a running agent's HTTP API.
//!
//! Each command group has its module (its clap arguments and its `run`); `http` holds the
//! agent connection and the errors, `table` the aligned output. Tables are for people; `--json`
//! prints the agent's JSON as is, or, where the command combines several answers, a stable
//! shape documented on the command.

pub mod checks;
pub mod endpoints;
pub mod http;
pub mod members;
pub mod registration;
pub mod routes;
pub mod services;
pub mod table;
pub mod watch;

use http::CommandResult;
use std::io::Write;
use std::process::ExitCode;

/// Runs a command and turns its outcome into an exit code, printing a failure on stderr.
pub fn finish(result: CommandResult) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Writes `text` to stdout. A closed pipe (`wayfinder services | head -1`) ends the output
/// quietly instead of panicking as `print!` would.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Writes `value` as pretty JSON and a newline.
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print(&format!("{text}\n"));
}

/// A JSON value as a table cell: strings without quotes, lists joined by commas.
pub fn cell(value: Option<&serde_json::Value>) -> String {
    match value {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|item| cell(Some(item)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}
