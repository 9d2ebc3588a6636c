//! Starts the real `sfu` binary on free loopback ports, runs a tiny scenario against it with the
//! `loadtest` binary and checks the JSON report.
//!
//! `loadtest` must not link the server, so the server binary is found on disk: `$SFU_BIN`, or
//! `target/{release,debug}/sfu` of this workspace (the newer one). Build it first with
//! `cargo build -p sfu`. A missing binary fails the test.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sfu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SFU_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "SFU_BIN={} is not a file", p.display());
        return p;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut targets = vec![manifest.join("../target")];
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        targets.insert(0, PathBuf::from(t));
    }
    let newest = targets
        .iter()
        .flat_map(|t| [t.join("release/sfu"), t.join("debug/sfu")])
        .filter_map(|p| {
            let modified = p.metadata().ok()?.modified().ok()?;
            Some((modified, p))
        })
        .max();
    match newest {
        Some((_, p)) => p,
        None => panic!(
            "no sfu binary: build it with `cargo build -p sfu` (or --release), or set SFU_BIN; \
             looked in {}",
            targets
                .iter()
                .map(|t| t.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// Starts the server and waits (at most 20 s) for its ready line.
fn start_server(http_port: u16) -> Server {
    let bin = sfu_binary();
    let mut child = Command::new(&bin)
        .args([
            "--http",
            &format!("127.0.0.1:{http_port}"),
            "--udp-ip",
            "127.0.0.1",
            "--udp-port",
            "0",
            "--advertise-ip",
            "127.0.0.1",
            "--workers",
            "1",
            "--log",
            "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().take(1000) {
            let Ok(line) = line else { break };
            if line.contains("SFU ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{} did not print its ready line in 20 s", bin.display()));
    server
}

#[test]
fn four_publishers_twelve_subscribers_for_twenty_seconds() {
    let port = free_port();
    let server = start_server(port);
    let dir = std::env::temp_dir().join(format!("loadtest-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let report_path = dir.join("report.json");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--rooms",
            "1",
            "--video-publishers",
            "4",
            "--subscribers",
            "12",
            "--duration",
            "20s",
            "--warmup",
            "3s",
            "--simulcast",
            "on",
            "--quiet",
            "--server-pid",
            &server.0.id().to_string(),
            "--max-loss",
            "1",
            "--report",
        ])
        .arg(&report_path)
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "the run is bounded"
    );
    assert!(
        out.status.success(),
        "loadtest failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&report_path).expect("report written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");
    let totals = &report["totals"];
    let expected = totals["tracks_expected"].as_u64().expect("tracks_expected");
    let received = totals["tracks_received"].as_u64().expect("tracks_received");
    // Each publisher gets the other three's audio and video; each viewer gets all eight.
    assert_eq!(expected, 4 * 6 + 12 * 8, "{stdout}");
    assert_eq!(received, expected, "{stdout}");
    let loss = totals["loss_pct"].as_f64().expect("loss_pct");
    assert!(loss < 1.0, "loss {loss}%\n{stdout}");
    assert!(totals["packets"].as_u64().unwrap_or(0) > 1000, "{stdout}");
    assert!(
        report["server"]["cpu_us_per_forwarded_packet"].is_number(),
        "server cost measured: {stdout}"
    );
    assert_eq!(report["passed"], true);
    let _ = std::fs::remove_dir_all(&dir);
}
