//! CPU, memory and disk readings from `/proc`, for the agent (by pid), this process, and the
//! whole machine.
//!
//! CPU is reported in *cores*: CPU seconds used divided by wall seconds elapsed, so 1.0 means
//! one core kept fully busy. On a shared 2-core machine the machine-wide figure matters as much
//! as the agent's own: it shows how much of the machine the load generator and anything else
//! running at the time took.

use anyhow::Context;
use std::time::Duration;

/// Linux's usual `sysconf(_SC_CLK_TCK)`; `bench/run` passes the real one from `getconf`.
pub const DEFAULT_CLK_TCK: u64 = 100;

/// Which process to read.
#[derive(Debug, Clone, Copy)]
pub enum Process {
    /// A process by pid (the agent).
    Pid(u32),
    /// This process (the load generator).
    Current,
}

impl Process {
    fn dir(self) -> String {
        match self {
            Process::Pid(pid) => format!("/proc/{pid}"),
            Process::Current => "/proc/self".to_owned(),
        }
    }

    /// User plus system CPU time so far, in clock ticks (`utime + stime` of `/proc/PID/stat`).
    pub fn cpu_ticks(self) -> anyhow::Result<u64> {
        let path = format!("{}/stat", self.dir());
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        parse_stat_ticks(&stat).with_context(|| format!("unexpected format of {path}"))
    }

    /// Resident memory now and at its peak, in KiB (`VmRSS`, `VmHWM` of `/proc/PID/status`).
    pub fn memory_kib(self) -> anyhow::Result<Memory> {
        let path = format!("{}/status", self.dir());
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .with_context(|| format!("{path} has no {name}"))
        };
        Ok(Memory {
            rss_kib: field("VmRSS:")?,
            peak_rss_kib: field("VmHWM:")?,
        })
    }

    /// Bytes this process caused to be sent to storage so far (`write_bytes` of
    /// `/proc/PID/io`), or `None` where the kernel does not expose it.
    pub fn disk_write_bytes(self) -> Option<u64> {
        let io = std::fs::read_to_string(format!("{}/io", self.dir())).ok()?;
        io.lines()
            .find_map(|line| line.strip_prefix("write_bytes:")?.trim().parse().ok())
    }
}

/// Resident memory of a process.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// `VmHWM` (peak RSS), KiB.
    pub peak_rss_kib: u64,
}

/// `utime` and `stime` are fields 14 and 15; the command name (field 2) may contain spaces and
/// parentheses, so count fields from the last `)`.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Machine-wide CPU ticks from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy)]
pub struct MachineTicks {
    busy: u64,
    total: u64,
}

impl MachineTicks {
    /// Reads `/proc/stat` now.
    pub fn now() -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string("/proc/stat").context("cannot read /proc/stat")?;
        let line = stat.lines().next().context("/proc/stat is empty")?;
        parse_machine(line).context("unexpected format of /proc/stat")
    }
}

fn parse_machine(line: &str) -> Option<MachineTicks> {
    let values: Vec<u64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is already
    // counted in user, so stop at steal.
    let counted = values.get(..8)?;
    let total: u64 = counted.iter().sum();
    let idle = counted[3] + counted[4];
    Some(MachineTicks {
        busy: total - idle,
        total,
    })
}

/// CPU readings taken at the start of a measured window.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    agent: Option<u64>,
    generator: u64,
    machine: MachineTicks,
    agent_disk_writes: Option<u64>,
}

/// CPU used over a window, in cores.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// The agent (None when no pid was given).
    pub agent: Option<f64>,
    /// This process: the load generator (and, for check capacity, the checked servers).
    pub generator: f64,
    /// Every process on the machine, including other users' work.
    pub machine: f64,
    /// Cores the machine has (from `/proc/stat` tick totals).
    pub machine_cores: f64,
    /// Bytes the agent sent to storage over the window.
    pub agent_disk_writes: Option<u64>,
}

impl CpuMark {
    /// Takes the readings now.
    pub fn now(agent: Option<u32>) -> anyhow::Result<Self> {
        Ok(Self {
            agent: agent.map(|pid| Process::Pid(pid).cpu_ticks()).transpose()?,
            generator: Process::Current.cpu_ticks()?,
            machine: MachineTicks::now()?,
            agent_disk_writes: agent.and_then(|pid| Process::Pid(pid).disk_write_bytes()),
        })
    }

    /// CPU used since this mark over `elapsed` wall time.
    pub fn since(
        &self,
        agent: Option<u32>,
        elapsed: Duration,
        clk_tck: u64,
    ) -> anyhow::Result<CpuUse> {
        let later = CpuMark::now(agent)?;
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        let cores = |ticks: u64| ticks as f64 / clk_tck as f64 / seconds;
        let machine_total = later.machine.total.saturating_sub(self.machine.total) as f64;
        let machine_busy = later.machine.busy.saturating_sub(self.machine.busy) as f64;
        let machine_cores = machine_total / clk_tck as f64 / seconds;
        Ok(CpuUse {
            agent: match (self.agent, later.agent) {
                (Some(before), Some(after)) => Some(cores(after.saturating_sub(before))),
                _ => None,
            },
            generator: cores(later.generator.saturating_sub(self.generator)),
            machine: if machine_total > 0.0 {
                machine_busy / machine_total * machine_cores
            } else {
                0.0
            },
            machine_cores,
            agent_disk_writes: match (self.agent_disk_writes, later.agent_disk_writes) {
                (Some(before), Some(after)) => Some(after.saturating_sub(before)),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_counted_after_the_name() {
        let stat = "4242 (way finder) (x) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 9 0";
        assert_eq!(parse_stat_ticks(stat), Some(175));
    }

    #[test]
    fn machine_line() {
        let ticks = parse_machine("cpu  100 5 50 800 20 1 4 0 0 0");
        let ticks = ticks.map(|t| (t.busy, t.total));
        assert_eq!(ticks, Some((160, 980)));
    }

    #[test]
    fn reads_this_process() -> anyhow::Result<()> {
        Process::Current.cpu_ticks()?;
        assert!(Process::Current.memory_kib()?.rss_kib > 0);
        MachineTicks::now()?;
        Ok(())
    }
}
