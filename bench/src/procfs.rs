//! CPU, memory and disk readings from `/proc`, for the agent (by pid), this process, and the
//! whole machine.
//!
//! CPU is reported in *cores*: CPU seconds used divided by wall seconds elapsed, so 1.0 means
//! one core kept fully busy. On a shared 2-core machine the machine-wide figure matters as much
//! as the agent's own: it shows how much of the machine the load generator and anything else
//! running at the time took.

use crate::report::Table;
use anyhow::Context;
use std::time::Duration;

/// Linux's usual `sysconf(_SC_CLK_TCK)`; `bench/run` passes the real one from `getconf`.
pub const DEFAULT_CLK_TCK: u64 = 100;

/// Which process to read.
#[derive(Debug, Clone, Copy)]
pub enum Process {
    /// A process by pid (the agent).
    Pid(u32),
    /// A process and its children, by the parent's pid: nginx's master and its workers. CPU is
    /// summed over them; memory and disk are the parent's alone.
    WithChildren(u32),
    /// This process (the load generator).
    Current,
}

impl Process {
    fn dir(self) -> String {
        match self {
            Process::Pid(pid) | Process::WithChildren(pid) => format!("/proc/{pid}"),
            Process::Current => "/proc/self".to_owned(),
        }
    }

    /// User plus system CPU time so far, in clock ticks (`utime + stime` of `/proc/PID/stat`).
    /// For [`Process::WithChildren`], the children running now are included (the ticks of a
    /// child that has exited are not: keep the children alive across a measurement).
    pub fn cpu_ticks(self) -> anyhow::Result<u64> {
        let own = stat_ticks(&self.dir())?;
        let Process::WithChildren(pid) = self else {
            return Ok(own);
        };
        let mut total = own;
        for child in children(pid)? {
            // A child may exit between the listing and the read; it then counts for nothing.
            total += stat_ticks(&format!("/proc/{child}")).unwrap_or(0);
        }
        Ok(total)
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

/// `utime + stime` of the process at `dir` (`/proc/PID`).
fn stat_ticks(dir: &str) -> anyhow::Result<u64> {
    let path = format!("{dir}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat_ticks(&stat).with_context(|| format!("unexpected format of {path}"))
}

/// The pids of `pid`'s children (`/proc/PID/task/*/children`).
pub fn children(pid: u32) -> anyhow::Result<Vec<u32>> {
    let tasks = format!("/proc/{pid}/task");
    let mut pids = Vec::new();
    for task in std::fs::read_dir(&tasks).with_context(|| format!("cannot list {tasks}"))? {
        // A thread that ended since the listing has no children to report.
        let Ok(listed) = std::fs::read_to_string(task?.path().join("children")) else {
            continue;
        };
        pids.extend(
            listed
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    Ok(pids)
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
    server: Option<u64>,
    generator: u64,
    machine: MachineTicks,
    server_disk_writes: Option<u64>,
}

/// CPU used over a window, in cores.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// The server measured: the agent, or a peer (None when no process was given).
    pub server: Option<f64>,
    /// This process: the load generator (and, for check capacity, the checked servers).
    pub generator: f64,
    /// Every process on the machine, including other users' work.
    pub machine: f64,
    /// Cores the machine has (from `/proc/stat` tick totals).
    pub machine_cores: f64,
    /// Bytes the server sent to storage over the window.
    pub server_disk_writes: Option<u64>,
}

impl CpuUse {
    /// The whole machine's CPU as the reports write it: `1.92 of 2 cores`.
    pub fn machine_text(&self) -> String {
        format!("{:.2} of {:.0} cores", self.machine, self.machine_cores)
    }

    /// Adds the rows every benchmark reports: this process's CPU, labelled `generator` (what
    /// this process ran besides the load), and the whole machine's.
    pub fn rows<'t>(&self, table: &'t mut Table, generator: &str) -> &'t mut Table {
        table
            .row(generator, format!("{:.2} cores", self.generator))
            .row("machine CPU, all processes", self.machine_text())
    }
}

impl CpuMark {
    /// Takes the readings now, of `server` (the agent, or a peer), this process and the machine.
    pub fn now(server: Option<Process>) -> anyhow::Result<Self> {
        Ok(Self {
            server: server.map(Process::cpu_ticks).transpose()?,
            generator: Process::Current.cpu_ticks()?,
            machine: MachineTicks::now()?,
            server_disk_writes: server.and_then(Process::disk_write_bytes),
        })
    }

    /// CPU used since this mark over `elapsed` wall time; `server` as given to [`CpuMark::now`].
    pub fn since(
        &self,
        server: Option<Process>,
        elapsed: Duration,
        clk_tck: u64,
    ) -> anyhow::Result<CpuUse> {
        let later = CpuMark::now(server)?;
        let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
        let cores = |ticks: u64| ticks as f64 / clk_tck as f64 / seconds;
        let machine_total = later.machine.total.saturating_sub(self.machine.total) as f64;
        let machine_busy = later.machine.busy.saturating_sub(self.machine.busy) as f64;
        let machine_cores = machine_total / clk_tck as f64 / seconds;
        Ok(CpuUse {
            server: match (self.server, later.server) {
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
            server_disk_writes: match (self.server_disk_writes, later.server_disk_writes) {
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
        Process::WithChildren(std::process::id()).cpu_ticks()?;
        assert!(Process::Current.memory_kib()?.rss_kib > 0);
        MachineTicks::now()?;
        Ok(())
    }
}
