//! `wayfinder endpoints NAME --watch`: follows `GET /v1/watch/{name}` (Server-Sent Events) and
//! prints one line per event until Ctrl-C.
//!
//! The stream opens with a `resync` (the service's full state), then one `registered`,
//! `deregistered` or `health` event per change. When the stream breaks, the command reconnects
//! with `Last-Event-ID`, so the agent replays what was missed; it gives up after
//! [`MAX_RECONNECTS`] failed attempts in a row rather than retry forever against an agent that
//! is gone. `--json` prints `{"event", "id", "data"}` per event, `data` being the agent's JSON.

use super::http::{AgentHttp, AgentTarget, CommandError, CommandResult};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::time::Duration;

/// Failed reconnects in a row before the watch gives up.
pub const MAX_RECONNECTS: u32 = 5;

/// Pause before the first reconnect; doubled per failure, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest pause between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// One Server-Sent Event, as read from the stream.
#[derive(Default)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

/// Follows `name`'s events until Ctrl-C (which ends the process) or the agent is gone.
pub fn follow(target: &AgentTarget, name: &str) -> CommandResult {
    let agent = AgentHttp::streaming(target)?;
    let url = agent.url(&["v1", "watch", name]);
    let mut last_id: Option<String> = None;
    let mut failures = 0;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let mut headers = vec![("Accept", "text/event-stream")];
        if let Some(id) = &last_id {
            headers.push(("Last-Event-ID", id.as_str()));
        }
        let problem = match agent.open(url.clone(), &headers) {
            Ok(response) if response.status().is_success() => {
                let read = read_stream(response, target.json, &mut last_id, &mut failures);
                match read {
                    Ok(()) => "the agent closed the stream".to_owned(),
                    Err(error) => format!("the stream broke: {error}"),
                }
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().unwrap_or_default();
                let answer = super::http::Answer { status, body };
                return Err(CommandError::Refused(format!(
                    "the agent refused to watch {name:?}: {}",
                    answer.refusal()
                )));
            }
            // Never connected at all: the usual "is the agent running?" answer.
            Err(error) if last_id.is_none() => return Err(error),
            Err(error) => error.to_string(),
        };
        failures += 1;
        if failures > MAX_RECONNECTS {
            return Err(CommandError::Unreachable(format!(
                "lost the watch on {name:?} at {}: {problem}; gave up after {MAX_RECONNECTS} \
                 reconnects",
                agent.base()
            )));
        }
        eprintln!("watch: {problem}; reconnecting in {backoff:?}");
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads events until the stream ends, printing each; `failures` resets once one arrives.
fn read_stream(
    response: reqwest::blocking::Response,
    json: bool,
    last_id: &mut Option<String>,
    failures: &mut u32,
) -> std::io::Result<()> {
    let mut event = SseEvent::default();
    for line in BufReader::new(response).lines() {
        let line = line?;
        if line.is_empty() {
            if !event.data.is_empty() || !event.event.is_empty() {
                if let Some(id) = &event.id {
                    *last_id = Some(id.clone());
                }
                *failures = 0;
                super::print(&format!("{}\n", describe(&event, json)));
            }
            event = SseEvent::default();
            continue;
        }
        if line.starts_with(':') {
            continue; // keep-alive comment
        }
        let (field, value) = line.split_once(':').unwrap_or((line.as_str(), ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = value.to_owned(),
            "id" => event.id = Some(value.to_owned()),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            _ => {}
        }
    }
    Ok(())
}

/// One event as a line: JSON for scripts, or `KIND SERVICE ID DETAIL` for people.
fn describe(event: &SseEvent, json_output: bool) -> String {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
    if json_output {
        return json!({"event": event.event, "id": event.id, "data": data}).to_string();
    }
    let service = super::cell(data.get("service"));
    let id = super::cell(data.get("id"));
    let instance = data.get("instance");
    let detail = match event.event.as_str() {
        "resync" => {
            let instances = data
                .get("instances")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let listed: Vec<String> = instances
                .iter()
                .map(|i| {
                    format!(
                        "{}={}",
                        super::cell(i.get("id")),
                        super::cell(i.get("status"))
                    )
                })
                .collect();
            format!("{} instances {}", instances.len(), listed.join(" "))
        }
        "health" => format!(
            "{} {} -> {}",
            id,
            super::cell(data.get("from")),
            super::cell(data.get("to"))
        ),
        "registered" => match instance {
            Some(instance) => format!(
                "{} {} {}",
                id,
                super::endpoints::address(instance),
                super::cell(instance.get("status"))
            ),
            None => id,
        },
        _ => id,
    };
    format!("{:<12}  {}  {}", event.event, service, detail.trim_end())
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_events_read_as_a_transition() {
        let event = SseEvent {
            event: "health".to_owned(),
            id: Some("1-2".to_owned()),
            data: r#"{"service":"web","id":"web-1","from":"passing","to":"critical"}"#.to_owned(),
        };
        assert_eq!(
            describe(&event, false),
            "health        web  web-1 passing -> critical"
        );
        let line: Value = serde_json::from_str(&describe(&event, true)).expect("JSON line");
        assert_eq!(line["event"], "health");
        assert_eq!(line["data"]["to"], "critical");
    }
}
