//! `wayfinder endpoints NAME [--watch]`: a service's healthy endpoints, as clients see them.
//!
//! One `GET /v1/endpoints/{name}`; `--json` prints the agent's array as is. `--watch` hands
//! over to [`super::watch`], which follows the service's event stream instead.

use super::http::{AgentHttp, AgentTarget, CommandError, CommandResult};
use super::table::Table;
use serde_json::Value;

/// Arguments of `wayfinder endpoints`.
#[derive(clap::Args)]
pub struct EndpointsArgs {
    /// The service name.
    name: String,
    /// Follow the service: print one line per change (registered, deregistered, health) until
    /// Ctrl-C.
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    target: AgentTarget,
}

/// Runs `wayfinder endpoints`.
pub fn run(args: &EndpointsArgs) -> CommandResult {
    if args.watch {
        return super::watch::follow(&args.target, &args.name);
    }
    let agent = AgentHttp::new(&args.target)?;
    let answer = agent.get(agent.url(&["v1", "endpoints", &args.name]))?;
    if !answer.is_success() {
        return Err(CommandError::Refused(format!(
            "the agent has no endpoints for {:?}: {}",
            args.name,
            answer.refusal()
        )));
    }
    if args.target.json {
        super::print(&format!("{}\n", answer.body.trim_end()));
        return Ok(());
    }
    let endpoints = answer.json("the endpoint list")?;
    let mut table = Table::new(&["ID", "ADDRESS", "STATUS", "WEIGHT", "TAGS"]);
    for endpoint in endpoints.as_array().map(Vec::as_slice).unwrap_or_default() {
        table.row(row(endpoint));
    }
    super::print(&table.render());
    Ok(())
}

/// One endpoint object (`{"host", "port", "id", "tags", "weight", "status", …}`) as cells.
pub fn row(endpoint: &Value) -> Vec<String> {
    vec![
        super::cell(endpoint.get("id")),
        address(endpoint),
        super::cell(endpoint.get("status")),
        super::cell(endpoint.get("weight")),
        super::cell(endpoint.get("tags")),
    ]
}

/// `host:port`, bracketing IPv6 hosts.
pub fn address(endpoint: &Value) -> String {
    let host = super::cell(endpoint.get("host"));
    let port = super::cell(endpoint.get("port"));
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
