//! CPU time and memory of a process from `/proc`, and finding the process that listens on a TCP
//! port. Linux only; everything here is best effort and returns `None` when `/proc` says no.

use std::time::Instant;

use serde::Serialize;

/// Processes looked at when searching for a listener.
const MAX_PROCESSES: usize = 100_000;
/// File descriptors looked at per process.
const MAX_FDS_PER_PROCESS: usize = 100_000;

/// CPU time and resident memory of a process at one moment.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// When it was read.
    pub at: Instant,
    /// User + system CPU time, µs.
    pub cpu_us: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
}

fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime (clock ticks) from the text of `/proc/PID/stat`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces: start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14, stime 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS in KiB from the text of `/proc/PID/status`.
pub fn parse_status_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Reads the CPU time and RSS of `pid` (`"self"` works too).
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks = parse_stat_cpu_ticks(&stat)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(ProcSample {
        at: Instant::now(),
        cpu_us: ticks * 1_000_000 / clock_ticks_per_second(),
        rss_kib: parse_status_rss_kib(&status).unwrap_or(0),
    })
}

/// Socket inodes listening on TCP `port`, from the text of `/proc/net/tcp` or `tcp6`.
pub fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let state = f.get(3)?;
            let inode: u64 = f.get(9)?.parse().ok()?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (p == port && *state == LISTEN && inode != 0).then_some(inode)
        })
        .collect()
}

/// The process that holds a socket listening on TCP `port`, found through `/proc/net/tcp*` and
/// `/proc/*/fd`. Only processes this user may inspect are found.
pub fn find_listener(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(t) = std::fs::read_to_string(table) {
            inodes.extend(listening_inodes(&t, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let me = std::process::id();
    let procs = std::fs::read_dir("/proc").ok()?;
    for entry in procs.flatten().take(MAX_PROCESSES) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten().take(MAX_FDS_PER_PROCESS) {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// The command name of `pid`.
pub fn command_name(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// CPU use of a process over a window.
#[derive(Debug, Clone, Serialize)]
pub struct CpuWindow {
    /// Wall time of the window, s.
    pub wall_s: f64,
    /// CPU time used in the window, s.
    pub cpu_s: f64,
    /// CPU time per wall time: 1.0 is one core busy.
    pub cores: f64,
    /// RSS at the start, MiB.
    pub rss_start_mib: f64,
    /// RSS at the end, MiB.
    pub rss_end_mib: f64,
}

impl CpuWindow {
    /// The window between two samples.
    pub fn between(a: &ProcSample, b: &ProcSample) -> Self {
        let wall = b.at.saturating_duration_since(a.at).as_secs_f64();
        let cpu = b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1e6;
        CpuWindow {
            wall_s: wall,
            cpu_s: cpu,
            cores: if wall > 0.0 { cpu / wall } else { 0.0 },
            rss_start_mib: a.rss_kib as f64 / 1024.0,
            rss_end_mib: b.rss_kib as f64 / 1024.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_with_spaces_in_the_name() {
        let stat = "1234 (sfu worker (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        assert_eq!(parse_stat_cpu_ticks("1 (x) S 1"), None);
    }

    #[test]
    fn rss_from_status() {
        let status = "Name:\tsfu\nVmPeak:\t  1000 kB\nVmRSS:\t   5120 kB\nThreads:\t9\n";
        assert_eq!(parse_status_rss_kib(status), Some(5120));
        assert_eq!(parse_status_rss_kib("Name: x\n"), None);
    }

    #[test]
    fn listeners_from_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0 100 0 0 10 0\n\
   2: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0 100 0 0 10 0\n";
        assert_eq!(listening_inodes(table, 8080), vec![4242]);
        assert_eq!(listening_inodes(table, 80), vec![4444]);
        assert!(listening_inodes(table, 81).is_empty());
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample("self").expect("/proc/self is readable");
        assert!(s.rss_kib > 0);
    }
}
