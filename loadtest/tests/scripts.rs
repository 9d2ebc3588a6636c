//! The benchmark scripts of `loadtest/scripts/` that run in seconds, run for real on a tiny load.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `sidebyside.sh` runs two servers at once, each with its own load tester, and prints each
/// one's CPU per forwarded packet. The same build on both sides: both columns hold a figure.
#[test]
fn side_by_side_measures_both_servers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("loadtest/scripts/sidebyside.sh");
    let sfu = common::sfu_binary();
    let dir = std::env::temp_dir().join(format!("loadtest-sidebyside-{}", std::process::id()));
    // Pinning is what the script is for, not what this checks: any core will do here.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = format!("0-{}", cpus - 1);
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .arg(&sfu)
        .arg(&sfu)
        .args([
            "--video-publishers",
            "1",
            "--subscribers",
            "2",
            "--publishers-subscribe",
            "false",
            "--simulcast",
            "off",
        ])
        .env("LOADTEST_BIN", env!("CARGO_BIN_EXE_loadtest"))
        .env("SERVER_CPUS", &all)
        .env("LOADTEST_CPUS", &all)
        .env("DURATION", "3s")
        .env("RUNS", "1")
        .env("OUT", &dir)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the run is bounded"
    );
    assert!(out.status.success(), "{}:\n{stdout}\n{stderr}", out.status);
    let median = stdout
        .lines()
        .find(|l| l.starts_with("| median |"))
        .unwrap_or_else(|| panic!("no median row:\n{stdout}\n{stderr}"));
    let figures: Vec<f64> = median
        .split('|')
        .skip(2)
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    assert_eq!(figures.len(), 2, "a figure per server: {median}");
    for us in figures {
        assert!(us > 0.0 && us < 10_000.0, "a plausible figure: {median}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
