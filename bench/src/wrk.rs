//! Running `wrk` (the HTTP load generator) and reading its report.
//!
//! wrk is used for the read benchmarks because it is the tool peers are usually measured with
//! and far cheaper per request than a Rust client built on hyper's connection API, which
//! matters when the load generator shares two cores with the server. It is bounded by its
//! `-d` duration; it has no request-count bound of its own (one would need a Lua `response`
//! hook, which slows wrk enough to change the result), so [`run`] also kills it if it has not
//! finished a few seconds after that duration.

use anyhow::Context;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tokio::time::timeout;

/// How long past its `-d` a wrk run may take before it is killed.
const OVERRUN: Duration = Duration::from_secs(15);

/// wrk's load shape: `-t`, `-c`, `-d`.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Threads (`-t`).
    pub threads: u32,
    /// Keep-alive connections, spread over the threads (`-c`).
    pub connections: u32,
    /// How long (`-d`, whole seconds; at least 1).
    pub duration: Duration,
}

impl Load {
    /// The arguments, as written in reports: `-t2 -c64 -d10s --latency`.
    pub fn args(&self) -> Vec<String> {
        vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
            format!("-d{}s", self.duration.as_secs().max(1)),
            "--latency".to_owned(),
        ]
    }
}

/// What one wrk run reported.
#[derive(Debug, Clone, PartialEq)]
pub struct WrkReport {
    /// Completed requests.
    pub requests: u64,
    /// Seconds the run took, as wrk measured it.
    pub seconds: f64,
    /// Response bytes read (headers and bodies).
    pub bytes: f64,
    /// `Requests/sec`.
    pub per_second: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Responses that were neither 2xx nor 3xx.
    pub non_2xx: u64,
    /// Socket errors of every kind (connect, read, write, timeout).
    pub socket_errors: u64,
}

impl WrkReport {
    /// Responses that were not a success, and connections that failed.
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }

    /// Average size of a response, headers included.
    pub fn bytes_per_response(&self) -> f64 {
        self.bytes / self.requests.max(1) as f64
    }
}

/// Runs `wrk` at `url` and parses its report.
pub async fn run(wrk: &Path, load: Load, url: &str) -> anyhow::Result<WrkReport> {
    let child = Command::new(wrk)
        .args(load.args())
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", wrk.display()))?;
    let output = timeout(load.duration + OVERRUN, child.wait_with_output())
        .await
        .with_context(|| format!("wrk did not finish within {OVERRUN:?} of its duration"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "wrk failed ({}): {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&stdout).with_context(|| format!("unexpected wrk output:\n{stdout}"))
}

/// Parses wrk 4's `--latency` report.
pub fn parse(report: &str) -> anyhow::Result<WrkReport> {
    let mut p50 = None;
    let mut p99 = None;
    let mut totals = None;
    let mut per_second = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => p50 = Some(duration(value)?),
            ["99%", value] => p99 = Some(duration(value)?),
            // `143477 requests in 10.01s, 83.21MB read`
            [requests, "requests", "in", seconds, bytes, "read"] => {
                let seconds = seconds.trim_end_matches(',');
                totals = Some((
                    requests.parse::<u64>()?,
                    duration(seconds)?.as_secs_f64(),
                    size(bytes)?,
                ));
            }
            ["Requests/sec:", value] => per_second = Some(value.parse::<f64>()?),
            ["Non-2xx", "or", "3xx", "responses:", count] => non_2xx = count.parse()?,
            // `Socket errors: connect 0, read 0, write 0, timeout 0`
            ["Socket", "errors:", rest @ ..] => {
                socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    let (requests, seconds, bytes) = totals.context("no \"N requests in T, B read\" line")?;
    Ok(WrkReport {
        requests,
        seconds,
        bytes,
        per_second: per_second.context("no Requests/sec line")?,
        p50: p50.context("no 50% line (was --latency given?)")?,
        p99: p99.context("no 99% line (was --latency given?)")?,
        non_2xx,
        socket_errors,
    })
}

/// `812.00us`, `1.23ms`, `2.00s`, `1.00m` as wrk prints them.
fn duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("{text:?} has no unit"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => anyhow::bail!("unknown time unit {other:?} in {text:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// `83.21MB` (wrk's units are powers of 1024) in bytes.
fn size(text: &str) -> anyhow::Result<f64> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let scale = match unit {
        "" | "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        other => anyhow::bail!("unknown size unit {other:?} in {text:?}"),
    };
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:8500/v1/endpoints/worker-service
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  12.34ms   89.00%
    Req/Sec    25.00k     1.00k   27.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.40ms
     90%    1.80ms
     99%    3.00ms
  500000 requests in 10.00s, 300.00MB read
  Non-2xx or 3xx responses: 5
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  50000.00
Transfer/sec:     30.00MB
";

    #[test]
    fn parses_a_latency_report() -> anyhow::Result<()> {
        let report = parse(REPORT)?;
        assert_eq!(report.requests, 500_000);
        assert_eq!(report.p50, Duration::from_micros(812));
        assert_eq!(report.p99, Duration::from_millis(3));
        assert_eq!(report.per_second, 50_000.0);
        assert_eq!((report.non_2xx, report.socket_errors), (5, 3));
        assert!((report.bytes_per_response() - 629.1456).abs() < 1e-6);
        assert!(parse("Requests/sec: 1").is_err());
        Ok(())
    }
}
