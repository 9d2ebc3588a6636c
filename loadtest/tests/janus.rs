//! The load tester against a real Janus (VideoRoom plugin): one camera publisher and two viewers
//! for ten seconds through `loadtest/scripts/janus.sh`, which installs Janus when it is missing
//! (Debian package), runs it in a network namespace of its own and stops it afterwards. It needs
//! root; without root, or when Janus cannot be installed, the test fails and says why.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn one_publisher_two_viewers_on_janus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("loadtest/scripts/janus.sh");
    let dir = std::env::temp_dir().join(format!("loadtest-janus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let report_path = dir.join("report.json");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(&script)
        .args([
            "--video-publishers",
            "1",
            "--subscribers",
            "2",
            "--publishers-subscribe",
            "false",
            "--duration",
            "10s",
            "--warmup",
            "2s",
            "--max-loss",
            "1",
            "--max-freezes",
            "0",
            "--quiet",
            "--report",
        ])
        .arg(&report_path)
        .env("LOADTEST_BIN", env!("CARGO_BIN_EXE_loadtest"))
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "the run is bounded"
    );
    assert!(
        out.status.code() != Some(2) || report_path.exists(),
        "Janus could not be run (it needs root, the `janus` Debian package and `ip netns`):\n\
         {stderr}\n{stdout}"
    );
    assert!(
        out.status.success(),
        "loadtest against Janus failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report written"))
            .expect("report is JSON");
    let _ = std::fs::remove_dir_all(&dir);
    let totals = &report["totals"];
    // Each viewer gets the publisher's audio and video.
    assert_eq!(totals["tracks_expected"], 4, "{stdout}");
    assert_eq!(totals["tracks_received"], 4, "{stdout}");
    let loss = totals["loss_pct"].as_f64().expect("loss_pct");
    assert!(loss < 1.0, "loss {loss}%\n{stdout}");
    assert_eq!(totals["video_freezes"], 0, "{stdout}");
    assert!(totals["packets"].as_u64().unwrap_or(0) > 1000, "{stdout}");
    assert_eq!(report["server"]["command"], "janus", "{stdout}");
    assert!(
        report["server"]["send_share"].is_null(),
        "only this server says: {stdout}"
    );
    assert_eq!(report["passed"], true, "{stdout}");
}
