//! The server's resource use: CPU seconds (from each process's CPU-time clock, in nanoseconds;
//! /proc's utime + stime, in 10 ms ticks, where the clock cannot be read), and from /proc RSS
//! and PSS, open files and threads. Also the machine's side of a phase ([`MachineTicks`]: how
//! many cores stayed idle, or were taken by the hypervisor) and the generator's own CPU
//! ([`process_cpu_secs`]).
//!
//! A server may be several processes (nginx: a master and its workers; Pushpin: a runner, its
//! condure, pushpin-proxy and pushpin-handler, plus zurl and the GRIP origin), so every figure is
//! a sum over the server's processes: the PIDs given (or every process holding the listening
//! socket) and their descendants. PSS (proportional set size) is reported next to RSS because summing RSS
//! over processes counts shared pages (nginx's shared memory zone) once per process.

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;

use serde::Serialize;

/// A snapshot of the server's processes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Sample {
    pub cpu_secs: f64,
    pub rss_bytes: u64,
    pub pss_bytes: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub pids: Vec<u32>,
    ticks_per_sec: f64,
}

impl Server {
    /// The server: the processes `pids` and their descendants, or (with no PID) the processes
    /// listening on `addr` and theirs.
    pub(crate) fn find(pids: &[u32], addr: SocketAddr) -> Result<Server, String> {
        let roots: BTreeSet<u32> = if pids.is_empty() {
            listeners(addr)?
        } else {
            pids.iter().copied().collect()
        };
        if roots.is_empty() {
            return Err(format!(
                "no process listens on {addr} (give --server-pid, or start the server first)"
            ));
        }
        let parents = all_parents();
        let mut pids = roots;
        loop {
            let before = pids.len();
            for &(child, parent) in &parents {
                if pids.contains(&parent) {
                    pids.insert(child);
                }
            }
            if pids.len() == before {
                break;
            }
        }
        // One of the workspace's two unsafe blocks (both here): the clock tick rate that
        // /proc's CPU times are counted in has no safe std API.
        // SAFETY: sysconf has no preconditions.
        #[allow(unsafe_code)]
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        Ok(Server {
            pids: pids.into_iter().collect(),
            ticks_per_sec: if ticks > 0 { ticks as f64 } else { 100.0 },
        })
    }

    pub(crate) fn sample(&self) -> Sample {
        let mut sample = Sample::default();
        for pid in &self.pids {
            if let Some(nanos) = process_cpu_nanos(*pid) {
                sample.cpu_secs += nanos as f64 / 1e9;
            } else if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
                // Fields after the command name, which is in parentheses and may hold spaces.
                let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks: u64 = [11, 12]
                    .iter()
                    .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
                    .sum();
                sample.cpu_secs += ticks as f64 / self.ticks_per_sec;
            }
            sample.rss_bytes += kib_field(&format!("/proc/{pid}/status"), "VmRSS:");
            sample.pss_bytes += kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:");
        }
        sample
    }

    /// Open file descriptors (sockets included), summed over the server's processes.
    pub(crate) fn open_files(&self) -> u64 {
        self.pids
            .iter()
            .filter_map(|pid| fs::read_dir(format!("/proc/{pid}/fd")).ok())
            .map(|dir| dir.count() as u64)
            .sum()
    }

    /// Threads, summed over the server's processes.
    pub(crate) fn threads(&self) -> u64 {
        self.pids
            .iter()
            .map(|pid| count_field(&format!("/proc/{pid}/status"), "Threads:"))
            .sum()
    }
}

/// The CPU seconds process `pid` has used (0 if it is gone): the load generator's own processes.
pub(crate) fn process_cpu_secs(pid: u32) -> f64 {
    process_cpu_nanos(pid).map_or(0.0, |nanos| nanos as f64 / 1e9)
}

/// The machine's CPU time by state since boot, summed over its cores, from /proc/stat's first
/// line (in 10 ms ticks: over a phase of half a second on two cores, a tick is 1% of it).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MachineTicks {
    /// Idle and waiting for I/O.
    idle: u64,
    /// Taken by the hypervisor for other guests (a virtual machine's "steal").
    steal: u64,
    /// Every state.
    total: u64,
    /// Cores the figures are summed over.
    cores: u32,
}

/// What the machine's cores did during a phase, in cores (0 to the number of cores).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MachineShare {
    /// Cores idle on average: neither the server, nor the generator, nor anything else had
    /// work for them.
    pub idle_cores: f64,
    /// Cores the hypervisor gave to other guests on average.
    pub steal_cores: f64,
}

impl MachineTicks {
    /// Now; zeros where /proc/stat cannot be read.
    pub(crate) fn now() -> MachineTicks {
        fs::read_to_string("/proc/stat")
            .map(|text| MachineTicks::parse(&text))
            .unwrap_or_default()
    }

    fn parse(stat: &str) -> MachineTicks {
        let mut lines = stat.lines();
        // "cpu  user nice system idle iowait irq softirq steal guest guest_nice": guest time is
        // already counted in user and nice.
        let ticks: Vec<u64> = lines
            .next()
            .and_then(|line| line.strip_prefix("cpu "))
            .map(|rest| {
                rest.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let at = |i: usize| ticks.get(i).copied().unwrap_or(0);
        let cores = lines.filter(|line| line.starts_with("cpu")).count();
        MachineTicks {
            idle: at(3) + at(4),
            steal: at(7),
            total: (0..8).map(at).sum(),
            cores: u32::try_from(cores).unwrap_or(0),
        }
    }

    /// The share of the machine between `earlier` and this reading; `None` if no tick passed.
    pub(crate) fn since(&self, earlier: &MachineTicks) -> Option<MachineShare> {
        let total = self.total.checked_sub(earlier.total).filter(|&t| t > 0)? as f64;
        let cores = f64::from(self.cores);
        let share = |now: u64, then: u64| now.saturating_sub(then) as f64 / total * cores;
        Some(MachineShare {
            idle_cores: share(self.idle, earlier.idle),
            steal_cores: share(self.steal, earlier.steal),
        })
    }
}

/// The CPU time process `pid` has used, all its threads (exited ones included), in nanoseconds:
/// its CPU-time clock. /proc counts the same time in 10 ms ticks, too coarse for a connection
/// storm that takes the server a quarter of a second. `None` if the process is gone.
fn process_cpu_nanos(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // The workspace's second unsafe block: std reads only its own process's clocks.
    // SAFETY: both calls only write through the pointers given, to locals that outlive them.
    #[allow(unsafe_code)]
    let read = unsafe {
        libc::clock_getcpuclockid(pid, &mut clock) == 0
            && libc::clock_gettime(clock, &mut time) == 0
    };
    if !read {
        return None;
    }
    Some(u64::try_from(time.tv_sec).ok()? * 1_000_000_000 + u64::try_from(time.tv_nsec).ok()?)
}

/// This process's RSS.
pub(crate) fn own_rss_bytes() -> u64 {
    kib_field("/proc/self/status", "VmRSS:")
}

fn count_field(path: &str, name: &str) -> u64 {
    let Ok(text) = fs::read_to_string(path) else {
        return 0;
    };
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

fn kib_field(path: &str, name: &str) -> u64 {
    let Ok(text) = fs::read_to_string(path) else {
        return 0;
    };
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Every (pid, parent pid) on the machine.
fn all_parents() -> Vec<(u32, u32)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
        Some((pid, ppid))
    })
    .collect()
}

/// The processes holding a socket that listens on `addr` (IPv4 or IPv6 wildcard included).
fn listeners(addr: SocketAddr) -> Result<BTreeSet<u32>, String> {
    let port = addr.port();
    let mut inodes = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 || fields[3] != "0A" {
                continue;
            }
            let local_port = fields[1]
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.insert(format!("socket:[{}]", fields[9]));
            }
        }
    }
    let mut pids = BTreeSet::new();
    if inodes.is_empty() {
        return Ok(pids);
    }
    let dir = fs::read_dir("/proc").map_err(|e| e.to_string())?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path())
                && inodes.contains(target.to_string_lossy().as_ref())
            {
                pids.insert(pid);
                break;
            }
        }
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_process_cpu_clock_in_nanoseconds() {
        let pid = std::process::id();
        let before = process_cpu_nanos(pid).expect("own CPU clock");
        // Spin until the clock moves by less than a tick: /proc could not see the step.
        let mut after = before;
        while after == before {
            after = process_cpu_nanos(pid).unwrap();
        }
        assert!(after - before < 10_000_000, "{before} -> {after}");
        // A process that has exited and been waited for has no clock left.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        assert_eq!(process_cpu_nanos(gone), None);
    }

    #[test]
    fn machine_share_is_counted_in_cores() {
        let stat = |user: u64, idle: u64, steal: u64| {
            format!(
                "cpu  {user} 0 0 {idle} 0 0 0 {steal} 0 0\n\
                 cpu0 0 0 0 0 0 0 0 0 0 0\ncpu1 0 0 0 0 0 0 0 0 0 0\nintr 1 2 3\n"
            )
        };
        let before = MachineTicks::parse(&stat(100, 100, 0));
        // 200 ticks on two cores: 100 busy, 80 idle, 20 stolen.
        let after = MachineTicks::parse(&stat(200, 180, 20));
        let share = after.since(&before).unwrap();
        assert!((share.idle_cores - 0.8).abs() < 1e-9, "{share:?}");
        assert!((share.steal_cores - 0.2).abs() < 1e-9, "{share:?}");
        assert!(before.since(&before).is_none(), "no tick passed");
        // The machine this runs on.
        let now = MachineTicks::now();
        assert!(now.cores >= 1 && now.total > 0, "{now:?}");
    }
}
