//! The usual `process_*` metrics of the server process, read from `/proc` and `getrusage` when
//! `/metrics` is rendered (Linux only; elsewhere there are none).

/// One reading of the process.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, seconds.
    pub cpu_seconds: f64,
    /// Resident memory, bytes.
    pub resident_bytes: u64,
    /// Virtual memory, bytes.
    pub virtual_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft limit of open file descriptors.
    pub max_fds: u64,
    /// Threads.
    pub threads: u64,
    /// Start time, Unix seconds.
    pub start_time_seconds: f64,
}

impl ProcessStats {
    /// Reads the calling process; `None` where `/proc` is not there.
    #[cfg(target_os = "linux")]
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields = StatFields::parse(&stat)?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse::<u64>()
            .ok()?;
        // SAFETY: sysconf only reads a system setting.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        if ticks <= 0 || page <= 0 {
            return None;
        }
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Some(ProcessStats {
            cpu_seconds: cpu_seconds()
                .unwrap_or((fields.utime + fields.stime) as f64 / ticks as f64),
            resident_bytes: fields.rss_pages.saturating_mul(page as u64),
            virtual_bytes: fields.vsize,
            open_fds,
            max_fds: max_fds()?,
            threads: fields.threads,
            start_time_seconds: boot_time as f64 + fields.start_ticks as f64 / ticks as f64,
        })
    }

    /// Not Linux: nothing to read.
    #[cfg(not(target_os = "linux"))]
    pub fn read() -> Option<ProcessStats> {
        None
    }

    /// (name, type, help, value) of each metric, as the Prometheus client libraries name them.
    pub fn samples(&self) -> [(&'static str, &'static str, &'static str, f64); 7] {
        [
            (
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                self.cpu_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                self.resident_bytes as f64,
            ),
            (
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                self.virtual_bytes as f64,
            ),
            (
                "process_open_fds",
                "gauge",
                "Number of open file descriptors.",
                self.open_fds as f64,
            ),
            (
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                self.max_fds as f64,
            ),
            (
                "process_threads",
                "gauge",
                "Number of OS threads in the process.",
                self.threads as f64,
            ),
            (
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                self.start_time_seconds,
            ),
        ]
    }
}

/// The fields of `/proc/self/stat` that are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StatFields {
    utime: u64,
    stime: u64,
    threads: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: u64,
}

impl StatFields {
    /// Parses `pid (comm) state ppid ...`; the command name may hold spaces and parentheses, so
    /// the fields are counted from the last `)` (field 3 is the first after it; see proc(5)).
    fn parse(stat: &str) -> Option<StatFields> {
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
        Some(StatFields {
            utime: field(14)?,
            stime: field(15)?,
            threads: field(20)?,
            start_ticks: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }
}

/// User and system CPU time of the process from `getrusage`, microsecond resolution.
#[cfg(target_os = "linux")]
pub fn cpu_seconds() -> Option<f64> {
    // SAFETY: an all-zero rusage is valid; getrusage only writes to it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Not Linux: not read.
#[cfg(not(target_os = "linux"))]
pub fn cpu_seconds() -> Option<f64> {
    None
}

/// The soft open-files limit.
#[cfg(target_os = "linux")]
fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    Some(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "4242 (sfu (a) b) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 \
                    7 0 123456 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 \
                    0 0 0 0 0 0";
        let f = StatFields::parse(line).unwrap();
        assert_eq!((f.utime, f.stime), (150, 50));
        assert_eq!(f.threads, 7);
        assert_eq!(f.start_ticks, 123456);
        assert_eq!(f.vsize, 987654321);
        assert_eq!(f.rss_pages, 2048);
        assert_eq!(StatFields::parse("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_read() {
        let p = ProcessStats::read().unwrap();
        assert!(p.threads >= 1);
        assert!(p.open_fds >= 3 && p.open_fds <= p.max_fds, "{p:?}");
        assert!(p.resident_bytes > 1 << 20, "{p:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86_400.0);
        assert!(p.cpu_seconds >= 0.0);
    }
}
