//! `wayfinder services`: every service in the catalog with its instance counts by health.
//!
//! Two questions: `/v1/catalog/services` for the names and tags, then
//! `/v1/health/service/{name}` per service for each instance's checks. An instance counts
//! under its worst check (critical over warning over passing; no checks is passing), as
//! Consul's health filters do.

use super::http::{AgentHttp, AgentTarget, CommandResult};
use super::table::Table;
use serde_json::{Value, json};

/// Arguments of `wayfinder services`.
#[derive(clap::Args)]
pub struct ServicesArgs {
    #[command(flatten)]
    target: AgentTarget,
}

/// One service's line: its name, tags and instance counts.
struct ServiceCounts {
    name: String,
    tags: Vec<String>,
    passing: u64,
    warning: u64,
    critical: u64,
}

/// Runs `wayfinder services`. `--json` prints
/// `[{"name", "tags", "instances", "passing", "warning", "critical"}]`, sorted by name.
pub fn run(args: &ServicesArgs) -> CommandResult {
    let agent = AgentHttp::new(&args.target)?;
    let catalog = agent.get_json(
        agent.url(&["v1", "catalog", "services"]),
        "the service list",
    )?;
    let mut services = Vec::new();
    if let Some(names) = catalog.as_object() {
        for (name, tags) in names {
            let health = agent.get_json(
                agent.url(&["v1", "health", "service", name]),
                &format!("the health of {name:?}"),
            )?;
            services.push(count(name, tags, &health));
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    if args.target.json {
        let list: Vec<Value> = services
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "tags": s.tags,
                    "instances": s.passing + s.warning + s.critical,
                    "passing": s.passing,
                    "warning": s.warning,
                    "critical": s.critical,
                })
            })
            .collect();
        super::print_json(&Value::Array(list));
        return Ok(());
    }
    let mut table = Table::new(&[
        "SERVICE",
        "INSTANCES",
        "PASSING",
        "WARNING",
        "CRITICAL",
        "TAGS",
    ]);
    for s in &services {
        table.row(vec![
            s.name.clone(),
            (s.passing + s.warning + s.critical).to_string(),
            s.passing.to_string(),
            s.warning.to_string(),
            s.critical.to_string(),
            s.tags.join(","),
        ]);
    }
    super::print(&table.render());
    Ok(())
}

fn count(name: &str, tags: &Value, health: &Value) -> ServiceCounts {
    let mut counts = ServiceCounts {
        name: name.to_owned(),
        tags: tags
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
        passing: 0,
        warning: 0,
        critical: 0,
    };
    for entry in health.as_array().map(Vec::as_slice).unwrap_or_default() {
        match worst_status(entry.get("Checks")) {
            "critical" => counts.critical += 1,
            "warning" => counts.warning += 1,
            _ => counts.passing += 1,
        }
    }
    counts
}

/// The worst status among an instance's checks; anything unknown counts as critical.
pub fn worst_status(checks: Option<&Value>) -> &'static str {
    let mut worst = "passing";
    for check in checks
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        match check.get("Status").and_then(Value::as_str) {
            Some("passing") => {}
            Some("warning") => {
                if worst == "passing" {
                    worst = "warning";
                }
            }
            _ => return "critical",
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_counts_under_its_worst_check() {
        let health = json!([
            {"Checks": [{"Status": "passing"}, {"Status": "warning"}]},
            {"Checks": [{"Status": "warning"}, {"Status": "critical"}]},
            {"Checks": []},
        ]);
        let counts = count("web", &json!(["v1"]), &health);
        assert_eq!((counts.passing, counts.warning, counts.critical), (1, 1, 1));
        assert_eq!(counts.tags, vec!["v1".to_owned()]);
    }
}
