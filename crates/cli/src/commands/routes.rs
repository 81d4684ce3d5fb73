//! `wayfinder routes`: the gateway's live route table, from `GET /v1/routes`.
//!
//! A 404 there means the agent runs without a gateway, which is said plainly (with the agent's
//! own hint) and ends with a non-zero exit. The table shows one route per line with its
//! instances' health; conflicts and unparseable `urlprefix-` tags follow, since they are why a
//! path goes somewhere unexpected. `--json` prints the agent's answer as is.

use super::http::{AgentHttp, AgentTarget, CommandError, CommandResult};
use super::table::Table;
use serde_json::Value;

/// Arguments of `wayfinder routes`.
#[derive(clap::Args)]
pub struct RoutesArgs {
    #[command(flatten)]
    target: AgentTarget,
}

/// Runs `wayfinder routes`.
pub fn run(args: &RoutesArgs) -> CommandResult {
    let agent = AgentHttp::new(&args.target)?;
    let answer = agent.get(agent.url(&["v1", "routes"]))?;
    if answer.status == 404 {
        return Err(CommandError::Refused(format!(
            "no routes from the agent at {}: {}",
            agent.base(),
            answer.refusal()
        )));
    }
    if !answer.is_success() {
        return Err(CommandError::Refused(format!(
            "the agent refused the route table: {}",
            answer.refusal()
        )));
    }
    if args.target.json {
        super::print(&format!("{}\n", answer.body.trim_end()));
        return Ok(());
    }
    let routes = answer.json("the route table")?;
    let mut table = Table::new(&["ROUTE", "SERVICE", "STRATEGY", "INSTANCES", "SOURCE"]);
    for route in list(&routes, "routes") {
        let instances = list(route, "instances");
        let available = instances
            .iter()
            .filter(|i| i.get("ejected").and_then(Value::as_bool) != Some(true))
            .count();
        table.row(vec![
            format!(
                "{}{}",
                super::cell(route.get("host")),
                super::cell(route.get("prefix"))
            ),
            super::cell(route.get("service")),
            super::cell(route.get("strategy")),
            format!("{available}/{}", instances.len()),
            super::cell(route.get("source")),
        ]);
    }
    let mut out = table.render();
    for conflict in list(&routes, "conflicts") {
        out.push_str(&format!(
            "conflict: {}{} goes to {}, not {} ({})\n",
            super::cell(conflict.get("host")),
            super::cell(conflict.get("prefix")),
            super::cell(conflict.get("winner")),
            super::cell(conflict.get("loser")),
            super::cell(conflict.get("source")),
        ));
    }
    for problem in list(&routes, "tag_errors") {
        out.push_str(&format!(
            "tag error: {} instance {}: {}\n",
            super::cell(problem.get("service")),
            super::cell(problem.get("instance")),
            super::cell(problem.get("error")),
        ));
    }
    super::print(&out);
    Ok(())
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}
