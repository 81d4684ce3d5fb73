//! Command-line arguments and value parsers shared by the benchmark binaries.

use crate::procfs::{DEFAULT_CLK_TCK, Process};
use std::net::SocketAddr;
use std::time::Duration;

/// The agent under test, as `bench/run` hands it to every benchmark binary
/// (`#[command(flatten)]` it into the binary's own arguments).
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// The agent's HTTP address, e.g. 127.0.0.1:8500 (loopback only).
    #[arg(long, value_parser = loopback_addr)]
    pub addr: SocketAddr,
    /// The agent's pid, to report its CPU use (and memory or disk writes, where reported).
    #[arg(long)]
    pub agent_pid: Option<u32>,
    /// Clock ticks per second for /proc CPU times (`getconf CLK_TCK`).
    #[arg(long, default_value_t = DEFAULT_CLK_TCK)]
    pub clk_tck: u64,
}

impl AgentArgs {
    /// The agent as a process to read CPU from, when its pid was given.
    pub fn process(&self) -> Option<Process> {
        self.agent_pid.map(Process::Pid)
    }
}

/// Longest `--duration`/`--window` accepted: a benchmark must stop by itself, soon.
pub const MAX_RUN: Duration = Duration::from_secs(300);

/// Parses `127.0.0.1:8500` or `http://127.0.0.1:8500` (as the agent's banner prints it), and
/// refuses anything that is not a loopback address: benchmarks never send load elsewhere.
pub fn loopback_addr(value: &str) -> Result<SocketAddr, String> {
    let bare = value
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let addr: SocketAddr = bare
        .parse()
        .map_err(|e| format!("{value:?} is not IP:PORT (e.g. 127.0.0.1:8500): {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address; benchmarks only load agents on 127.0.0.0/8 or ::1"
        ));
    }
    Ok(addr)
}

/// Parses a duration written as `10s`, `500ms`, `2m` or bare seconds (`10`, `0.5`), at most
/// [`MAX_RUN`].
pub fn duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let (number, unit) = match value.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => value.split_at(at),
        None => (value, "s"),
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{value:?} is not a duration; try 10s or 500ms"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {value:?}; use ms, s or m"
            ));
        }
    };
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("{value:?} is not a non-negative duration"))?;
    if duration > MAX_RUN {
        return Err(format!(
            "{value:?} is longer than the {}s limit",
            MAX_RUN.as_secs()
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_must_be_loopback() {
        assert!(loopback_addr("http://127.0.0.1:8500").is_ok());
        assert!(loopback_addr("127.0.0.1:0").is_ok());
        assert!(loopback_addr("[::1]:8500").is_ok());
        assert!(loopback_addr("10.0.0.1:8500").is_err());
        assert!(loopback_addr("localhost:8500").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("1h").is_err());
        assert!(duration("600s").is_err());
        assert!(duration("-1s").is_err());
    }
}
