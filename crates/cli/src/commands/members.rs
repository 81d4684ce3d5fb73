//! `wayfinder members`: the agents in the cluster.
//!
//! It prints `/v1/members`: in cluster mode the agents holding a live etcd lease, otherwise the
//! one agent it talks to. An agent older than `/v1/members` answers 404; then the command shows
//! that agent from `/v1/agent/self` (`Config.NodeName`, `Member.Addr`, `Config.Datacenter`).

use super::http::{AgentHttp, AgentTarget, CommandError, CommandResult};
use super::table::Table;
use serde_json::json;

/// Arguments of `wayfinder members`.
#[derive(clap::Args)]
pub struct MembersArgs {
    #[command(flatten)]
    target: AgentTarget,
}

/// Runs `wayfinder members`. `--json` prints `/v1/members` as the agent answers it:
/// `[{"id", "name", "address", "datacenter", "status"}]`.
pub fn run(args: &MembersArgs) -> CommandResult {
    let agent = AgentHttp::new(&args.target)?;
    let answer = agent.get(agent.url(&["v1", "members"]))?;
    let members = if answer.status == 404 {
        let this = agent.get_json(agent.url(&["v1", "agent", "self"]), "the agent's identity")?;
        let config = this.get("Config");
        json!([{
            "name": config.and_then(|c| c.get("NodeName")),
            "address": this.get("Member").and_then(|m| m.get("Addr")),
            "datacenter": config.and_then(|c| c.get("Datacenter")),
            "status": "alive",
        }])
    } else if answer.is_success() {
        answer.json("the member list")?
    } else {
        return Err(CommandError::Refused(format!(
            "the agent refused the member list: {}",
            answer.refusal()
        )));
    };
    if args.target.json {
        super::print_json(&members);
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "ADDRESS", "DATACENTER", "STATUS"]);
    for member in members.as_array().map(Vec::as_slice).unwrap_or_default() {
        table.row(
            ["name", "address", "datacenter", "status"]
                .iter()
                .map(|key| super::cell(member.get(*key)))
                .collect(),
        );
    }
    super::print(&table.render());
    Ok(())
}
