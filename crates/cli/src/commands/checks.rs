//! `wayfinder check pass|warn|fail ID [--note TEXT]`: sets a TTL check's status, through
//! `PUT /v1/agent/check/{pass|warn|fail}/{id}?note=`.

use super::http::{AgentHttp, AgentTarget, CommandError, CommandResult};
use clap::ValueEnum;
use serde_json::json;

/// The status to report.
#[derive(Clone, Copy, ValueEnum)]
pub enum CheckVerdict {
    /// passing
    Pass,
    /// warning
    Warn,
    /// critical
    Fail,
}

impl CheckVerdict {
    fn path(self) -> &'static str {
        match self {
            CheckVerdict::Pass => "pass",
            CheckVerdict::Warn => "warn",
            CheckVerdict::Fail => "fail",
        }
    }

    fn status(self) -> &'static str {
        match self {
            CheckVerdict::Pass => "passing",
            CheckVerdict::Warn => "warning",
            CheckVerdict::Fail => "critical",
        }
    }
}

/// Arguments of `wayfinder check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The status to set.
    #[arg(value_enum)]
    verdict: CheckVerdict,
    /// The check's ID (a service's only check is `service:<instance id>`).
    id: String,
    /// Text stored as the check's output.
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
    #[command(flatten)]
    target: AgentTarget,
}

/// Runs `wayfinder check`. `--json` prints `{"check": ID, "status": STATUS}`.
pub fn run(args: &CheckArgs) -> CommandResult {
    let agent = AgentHttp::new(&args.target)?;
    let mut url = agent.url(&["v1", "agent", "check", args.verdict.path(), &args.id]);
    if let Some(note) = &args.note {
        url.query_pairs_mut().append_pair("note", note);
    }
    let answer = agent.put(url, None)?;
    if !answer.is_success() {
        return Err(CommandError::Refused(format!(
            "the agent refused to update check {:?}: {}",
            args.id,
            answer.refusal()
        )));
    }
    let status = args.verdict.status();
    if args.target.json {
        super::print_json(&json!({"check": args.id, "status": status}));
    } else {
        super::print(&format!("check {} is {status}\n", args.id));
    }
    Ok(())
}
