//! Starts the real `sfu` binary on free loopback ports, runs a tiny scenario against it with the
//! `loadtest` binary and checks the JSON report.
//!
//! See `common` for where the server binary comes from.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, start_server};

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
