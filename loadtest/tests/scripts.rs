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

/// `sendfloor` (which `floor.sh` runs next to the server) sends what it says to receivers that
/// get it all, GSO runs and single datagrams alike, and prints a figure per datagram.
#[test]
fn sendfloor_sends_the_pattern_and_measures_it() {
    for gso in [true, false] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sendfloor"));
        cmd.args([
            "--pattern",
            "3x4x1200@100",
            "--pattern",
            "3x1x120@50",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
        ]);
        if !gso {
            cmd.arg("--no-gso");
        }
        let out = cmd.output().expect("running sendfloor");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}:\n{stdout}", out.status);
        let kind = if gso { "GSO" } else { "a message per datagram" };
        assert!(stdout.contains(kind), "{kind}:\n{stdout}");
        // 3 destinations × (4 datagrams × 100 bursts + 1 × 50) a second, for one second.
        let sent: u64 = field(&stdout, "sent ").expect("a count sent");
        assert!((1300..=1400).contains(&sent), "about 1,350 sent:\n{stdout}");
        let received: f64 = field(&stdout, "received ").expect("a share received");
        assert!(
            (95.0..=105.0).contains(&received),
            "all received:\n{stdout}"
        );
        let us: f64 = field(&stdout, "us_per_datagram ").expect("a figure");
        assert!(us > 0.0 && us < 10_000.0, "a plausible figure:\n{stdout}");
    }
}

/// `sendfloor` refuses a pattern it cannot send, too many patterns, an empty window and a core
/// that does not exist, each with exit status 2 and the reason.
#[test]
fn sendfloor_refuses_what_it_cannot_do() {
    for (pattern, why) in [
        ("3x1x10@50", "bytes must be 28 to 1400"),
        ("3x1x120", "is not DESTINATIONSxDATAGRAMSxBYTES@RATE"),
        ("0x1x120@50", "destinations must be 1 to 1000"),
        ("3x1x120@0", "the rate must be above 0"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sendfloor"))
            .args(["--pattern", pattern, "--duration", "100ms"])
            .output()
            .expect("running sendfloor");
        assert_eq!(out.status.code(), Some(2), "{pattern}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{pattern}: {stderr}");
    }
    let nine: Vec<&str> = ["--pattern", "3x1x120@50"].repeat(9);
    for (args, why) in [
        (
            vec!["--duration", "0s", "--warmup", "0s"],
            "make --duration longer",
        ),
        (nine, "at most 8 patterns"),
        (vec!["--sender-cpu", "5000"], "no core 5000"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sendfloor"))
            .args(&args)
            .output()
            .expect("running sendfloor");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
}

/// The number after `label` in `text`.
fn field<T: std::str::FromStr>(text: &str, label: &str) -> Option<T> {
    let at = text.find(label)? + label.len();
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}
