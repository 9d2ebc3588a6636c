//! Shared by the end-to-end tests: the real `sfu` binary on free loopback ports.
//!
//! `loadtest` must not link the server, so the server binary is found on disk: `$SFU_BIN`, or
//! `target/{release,debug}/sfu` of this workspace (the newer one). Build it first with
//! `cargo build -p sfu`. A missing binary fails the test.

// Each test file uses a part of this.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the server when the test ends, however it ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sfu_binary() -> PathBuf {
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

pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// Starts the server and waits (at most 20 s) for its ready line.
pub fn start_server(http_port: u16) -> Server {
    start_server_with(http_port, &[])
}

/// Starts the server with `extra` flags and waits (at most 20 s) for its ready line.
pub fn start_server_with(http_port: u16, extra: &[&str]) -> Server {
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
        .args(extra)
        // Keys only from `extra`, never from the environment of whoever runs the tests.
        .env_remove("SFU_API_KEY")
        .env_remove("SFU_API_SECRET")
        .env_remove("SFU_CONFIG")
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

/// What one run of the `loadtest` binary produced.
pub struct Run {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// Its standard output (the text report).
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
    /// The JSON report, when one was written.
    pub report: Option<serde_json::Value>,
}

/// Runs the `loadtest` binary against `server` on `port` with `args` (plus `--quiet`, the server's
/// pid for its CPU cost and a JSON report), and asserts that it ended within `limit`.
pub fn run_loadtest(server: &Server, port: u16, args: &[&str], limit: Duration) -> Run {
    run_loadtest_env(server, port, args, &[], limit)
}

/// [`run_loadtest`] with `env` set for the load tester (and no other `SFU_API_*`).
pub fn run_loadtest_env(
    server: &Server,
    port: u16,
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> Run {
    let dir = std::env::temp_dir().join(format!("loadtest-run-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let report_path = dir.join("report.json");
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--url", &format!("http://127.0.0.1:{port}"), "--quiet"])
        .args(["--server-pid", &server.0.id().to_string()])
        .args(args)
        .arg("--report")
        .arg(&report_path)
        .env_remove("SFU_API_KEY")
        .env_remove("SFU_API_SECRET")
        .envs(env.iter().copied())
        .output()
        .expect("run loadtest");
    assert!(started.elapsed() < limit, "the run is bounded");
    let report = std::fs::read_to_string(&report_path)
        .ok()
        .map(|t| serde_json::from_str(&t).expect("report is JSON"));
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report,
    }
}

impl Run {
    /// The report of a run that succeeded; fails the test with the output otherwise.
    pub fn passed(&self) -> &serde_json::Value {
        assert!(
            self.status.success(),
            "loadtest failed ({}):\n{}\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.report.as_ref().expect("report written")
    }
}
