//! One attacker next to a small call must not break it: the real `sfu` binary, a call of two
//! camera publishers and four viewers, and every attack of the load tester's attacker at once at
//! moderate intensities. The victims' gates must hold (no bot removed, loss within 1 %, at most a
//! few freezes, all tracks received) and the server's answers to the attacker must not be
//! alarming (no internal text in errors, no forged STUN request answered with success).
//!
//! See `common` for where the server binary comes from.

mod common;

use std::time::Duration;

use common::{free_port, run_loadtest, start_server};

/// Freezes the victims may see over the whole run, all video tracks together.
const MAX_FREEZES: &str = "3";

#[test]
fn one_attacker_does_not_break_a_call() {
    let port = free_port();
    let server = start_server(port);
    let args = [
        "--video-publishers",
        "2",
        "--subscribers",
        "4",
        "--duration",
        "15s",
        "--warmup",
        "2s",
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
    ];
    let run = run_loadtest(&server, port, &args, Duration::from_secs(60));
    let (stdout, stderr) = (&run.stdout, &run.stderr);
    let report = run
        .report
        .as_ref()
        .unwrap_or_else(|| panic!("no report:\n{stdout}\n{stderr}"));

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
        run.status.success(),
        "loadtest failed ({}):\n{stdout}\n{stderr}",
        run.status
    );
}
