//! Starts the real `sfu` binary on free loopback ports, runs a tiny scenario against it with the
//! `loadtest` binary and checks the JSON report.
//!
//! See `common` for where the server binary comes from.

mod common;

use std::time::Duration;

use common::{free_port, run_loadtest, start_server};

#[test]
fn four_publishers_twelve_subscribers_for_twenty_seconds() {
    let port = free_port();
    let server = start_server(port);
    let args = [
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
        "--max-loss",
        "1",
    ];
    let run = run_loadtest(&server, port, &args, Duration::from_secs(90));
    let report = run.passed();
    let stdout = &run.stdout;
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
    // The part of it in the server's send calls, from its metrics: some, and less than all.
    let share = report["server"]["send_share"].as_f64().expect("send share");
    assert!(share > 0.0 && share < 1.0, "{stdout}");
    let send = report["server"]["send_us_per_forwarded_packet"]
        .as_f64()
        .expect("send µs");
    let all = report["server"]["cpu_us_per_forwarded_packet"]
        .as_f64()
        .expect("µs");
    assert!(send < all, "{stdout}");
    assert!(stdout.contains("of which send system calls"), "{stdout}");
    assert_eq!(report["passed"], true);
}
