//! The start of a call on a clean loopback link: one single-layer camera (1.5 Mbit/s, more than
//! the server's starting bandwidth estimate affords) and thirty viewers who join together. No
//! video may be paused for bandwidth or freeze while the estimates ramp up; the start is measured
//! (no warm-up).

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, start_server};

#[test]
fn a_single_layer_camera_starts_for_thirty_viewers_without_pauses_or_freezes() {
    let port = free_port();
    let server = start_server(port);
    let dir = std::env::temp_dir().join(format!("loadtest-startup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let report_path = dir.join("report.json");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--url", &format!("http://127.0.0.1:{port}")])
        .args(["--video-publishers", "1", "--subscribers", "30"])
        .args(["--simulcast", "off", "--publishers-subscribe", "false"])
        .args(["--duration", "10s", "--warmup", "0s", "--quiet"])
        .args(["--server-pid", &server.0.id().to_string()])
        .args(["--max-loss", "1", "--max-freezes", "0", "--report"])
        .arg(&report_path)
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the run is bounded"
    );
    assert!(
        out.status.success(),
        "loadtest failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let text = std::fs::read_to_string(&report_path).expect("report written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");
    let states = report["stream_states"].to_string();
    assert!(
        !states.contains("bandwidth"),
        "videos were paused for bandwidth: {states}\n{stdout}"
    );
    let video = report["by_kind"]
        .as_array()
        .and_then(|k| k.iter().find(|k| k["kind"] == "video"))
        .expect("video summary");
    assert_eq!(video["tracks"], 30, "{stdout}");
    assert!(
        video["first_frame"]["tracks"].as_u64() == Some(30),
        "first frame measured for every viewer: {stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
