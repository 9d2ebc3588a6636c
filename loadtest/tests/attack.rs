//! One attacker next to a small call must not break it: the real `sfu` binary, a call of two
//! camera publishers and four viewers, and every attack of the load tester's attacker at once at
//! moderate intensities. The victims' gates must hold (no bot removed, loss within 1 %, at most a
//! few freezes, all tracks received) and the server's answers to the attacker must not be
//! alarming (no internal text in errors, no forged STUN request answered with success).
//!
//! See `common` for where the server binary comes from.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, start_server};

/// Freezes the victims may see over the whole run, all video tracks together.
const MAX_FREEZES: &str = "3";

#[test]
fn one_attacker_does_not_break_a_call() {
    let port = free_port();
    let server = start_server(port);
    let dir = std::env::temp_dir().join(format!("loadtest-attack-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let report_path = dir.join("report.json");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--video-publishers",
            "2",
            "--subscribers",
            "4",
            "--duration",
            "15s",
            "--warmup",
            "2s",
            "--quiet",
            "--server-pid",
            &server.0.id().to_string(),
            "--max-loss",
            "1",
            "--max-freezes",
            MAX_FREEZES,
            "--attack",
            "all",
            "--stun-flood-rate",
            "200",
            "--garbage-udp-rate",
            "200",
            "--track-flood-tracks",
            "400",
            "--slowloris-conns",
            "100",
            "--ws-flood-conns",
            "200",
            "--bad-sdp-rate",
            "100",
            "--oversize-conns",
            "2",
            "--report",
        ])
        .arg(&report_path)
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the run is bounded"
    );
    let text = std::fs::read_to_string(&report_path)
        .unwrap_or_else(|e| panic!("no report ({e}):\n{stdout}\n{stderr}"));
    let report: serde_json::Value = serde_json::from_str(&text).expect("report is JSON");

    // The attacker ran every attack and each one sent something.
    let attacks = report["attacks"].as_array().expect("attacks in the report");
    let names: Vec<&str> = attacks
        .iter()
        .filter_map(|a| a["attack"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "stun-flood",
            "track-flood",
            "slowloris",
            "ws-flood",
            "bad-sdp",
            "garbage-udp",
            "oversize"
        ],
        "{stdout}"
    );
    for a in attacks {
        let sent = a["sent"].as_object().expect("sent");
        assert!(
            sent.values().any(|n| n.as_u64().unwrap_or(0) > 0),
            "{} sent nothing:\n{stdout}",
            a["attack"]
        );
        let alarms = a["alarms"].as_array().expect("alarms");
        assert!(
            alarms.is_empty(),
            "{} saw alarming answers: {alarms:?}\n{stdout}",
            a["attack"]
        );
    }
    // The attacker is not one of the victims.
    let totals = &report["totals"];
    assert_eq!(totals["bots"], 6, "{stdout}");

    // The victims' call held.
    let removed = totals["bots_removed"].as_object().expect("bots_removed");
    assert!(removed.is_empty(), "bots removed: {removed:?}\n{stdout}");
    assert_eq!(totals["bots_failed"], 0, "{stdout}");
    assert_eq!(
        totals["tracks_received"], totals["tracks_expected"],
        "{stdout}"
    );
    let loss = totals["loss_pct"].as_f64().expect("loss_pct");
    assert!(loss <= 1.0, "loss {loss}%\n{stdout}");
    let freezes = totals["video_freezes"].as_u64().expect("video_freezes");
    assert!(
        freezes <= MAX_FREEZES.parse().expect("a number"),
        "{freezes} freezes\n{stdout}"
    );
    assert_eq!(report["passed"], true, "{stdout}");
    assert!(
        out.status.success(),
        "loadtest failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let _ = std::fs::remove_dir_all(&dir);
}
