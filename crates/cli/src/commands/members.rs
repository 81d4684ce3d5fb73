//! `wayfinder members`: the agents in the cluster.
//!
//! Cluster mode is a later issue, so the agent has no `/v1/members` yet. The command asks for
//! it anyway, so it keeps working when it arrives; on 404 it shows the one agent it talks to,
//! from `/v1/agent/self` (`Config.NodeName`, `Member.Addr`, `Config.Datacenter`).

use super::http::{AgentHttp, AgentTarget, CommandError, CommandResult};
use super::table::Table;
use serde_json::json;

/// Arguments of `wayfinder members`.
#[derive(clap::Args)]
pub struct MembersArgs {
    #[command(flatten)]
    target: AgentTarget,
}

/// Runs `wayfinder members`. `--json` prints `[{"name", "address", "datacenter", "status"}]`
/// (from `/v1/members` when the agent has it, as it answers).
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
