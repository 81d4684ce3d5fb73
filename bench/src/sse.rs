//! Reading a Server-Sent Events stream (`GET /v1/watch/...`) event by event, with the time each
//! one arrived.
//!
//! Only what the agent sends is handled: `event:`, `id:` and one `data:` line per event, `\n`
//! line ends (a `\r` before them is tolerated), and `:` comment lines for keep-alive, which are
//! skipped. An event's arrival time is taken when the chunk holding its end is read from the
//! socket, before any parsing, so the parser's own cost is not in the measured latency.

use anyhow::Context;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Response, StatusCode};
use std::collections::VecDeque;
use tokio::time::Instant;

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name (`resync`, `registered`, `deregistered`, `health`).
    pub name: String,
    /// The `id:` (the event's position).
    pub id: String,
    /// The `data:` payload (a JSON object from the agent).
    pub data: String,
}

/// An open event stream.
pub struct EventStream {
    body: Incoming,
    /// Bytes read but not yet part of a complete event.
    partial: Vec<u8>,
    /// Complete events read with the same chunk, and when that chunk arrived.
    ready: VecDeque<(SseEvent, Instant)>,
}

impl EventStream {
    /// Wraps a response, which must be a 200 `text/event-stream`.
    pub fn new(response: Response<Incoming>) -> anyhow::Result<Self> {
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        anyhow::ensure!(
            response.status() == StatusCode::OK && content_type.starts_with("text/event-stream"),
            "expected a 200 text/event-stream, got {} {content_type:?}",
            response.status()
        );
        Ok(Self {
            body: response.into_body(),
            partial: Vec::new(),
            ready: VecDeque::new(),
        })
    }

    /// The next event and when it arrived; `None` when the server ended the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<(SseEvent, Instant)>> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Some(event));
            }
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let arrived = Instant::now();
            let frame = frame.context("the event stream broke")?;
            let Ok(chunk) = frame.into_data() else {
                continue; // trailers: nothing to parse
            };
            self.partial.extend_from_slice(&chunk);
            while let Some(end) = find_blank_line(&self.partial) {
                let block: Vec<u8> = self.partial.drain(..end.end).collect();
                let block = String::from_utf8_lossy(&block[..end.start]);
                if let Some(event) = parse_block(&block) {
                    self.ready.push_back((event, arrived));
                }
            }
        }
    }
}

/// Where the first blank line (the end of an event) is: the range to cut the block at.
fn find_blank_line(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut line_start = 0;
    for (at, byte) in bytes.iter().enumerate() {
        if *byte != b'\n' {
            continue;
        }
        let line = &bytes[line_start..at];
        if line.is_empty() || line == b"\r" {
            return Some(line_start..at + 1);
        }
        line_start = at + 1;
    }
    None
}

/// One event from the lines before a blank line; `None` for a block of comments only.
fn parse_block(block: &str) -> Option<SseEvent> {
    let mut event = SseEvent {
        name: "message".to_owned(),
        id: String::new(),
        data: String::new(),
    };
    let mut any = false;
    for line in block.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => continue, // a comment (keep-alive)
            "event" => event.name = value.to_owned(),
            "id" => event.id = value.to_owned(),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            _ => continue,
        }
        any = true;
    }
    any.then_some(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_comments() {
        let block = "event: health\nid: 17.2\ndata: {\"id\":\"w-1\"}";
        assert_eq!(
            parse_block(block),
            Some(SseEvent {
                name: "health".into(),
                id: "17.2".into(),
                data: "{\"id\":\"w-1\"}".into(),
            })
        );
        assert_eq!(parse_block(": keep-alive"), None);
        assert_eq!(find_blank_line(b"event: a\ndata: 1\n\nevent"), Some(17..18));
        assert_eq!(find_blank_line(b"data: 1\r\n\r\n"), Some(9..11));
        assert_eq!(find_blank_line(b"data: 1\n"), None);
    }
}
