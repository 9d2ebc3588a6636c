//! `--target whip-whep`: the bots publish over WHIP and play over WHEP, against the real `sfu`
//! binary's own endpoints, so the standards' path is measured like the WebSocket one.
//!
//! See `common` for where the server binary comes from.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{free_port, run_loadtest, run_loadtest_env, start_server_with};

const KEY: &str = "APIwhip";
const SECRET: &str = "a-secret-for-the-whip-load-test-40-chars";

/// Two cameras that watch each other, one microphone, two viewers.
const SCENARIO: [&str; 16] = [
    "--target",
    "whip-whep",
    "--video-publishers",
    "2",
    "--audio-publishers",
    "1",
    "--subscribers",
    "2",
    "--duration",
    "5s",
    "--warmup",
    "1s",
    "--max-loss",
    "1",
    "--max-freezes",
    "0",
];

/// The value of an unlabelled or labelled counter in the server's `/metrics` text, 0 if absent.
fn metric(port: u16, series: &str) -> f64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read /metrics");
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (at most 10 s) until `series` reaches `want`; returns the last value.
fn wait_metric(port: u16, series: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(port, series);
        if v >= want || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bots_publish_over_whip_and_play_over_whep() {
    let port = free_port();
    let server = start_server_with(port, &["--http-limits-max-whip-sessions-per-ip", "40"]);
    // Development tokens: the publishers' identities are random and read from their tokens.
    let run = run_loadtest(&server, port, &SCENARIO, Duration::from_secs(90));
    let report = run.passed();
    let stdout = &run.stdout;
    let totals = &report["totals"];
    assert_eq!(totals["bots"], 5, "{stdout}");
    assert_eq!(totals["bots_failed"], 0, "{stdout}");
    // Each camera receives the other camera (2 tracks) and the microphone (1) through two WHEP
    // sessions; the microphone publisher too (4 tracks); each viewer all 5 through three.
    let expected = totals["tracks_expected"].as_u64().expect("tracks_expected");
    assert_eq!(expected, 2 * 3 + 4 + 2 * 5, "{stdout}");
    assert_eq!(
        totals["tracks_received"].as_u64(),
        Some(expected),
        "{stdout}"
    );
    assert!(
        stdout.contains("simulcast accepted by the server for 2 of 2"),
        "WHIP publishers send simulcast: {stdout}"
    );
    // Every session was ended with DELETE, all `left`: 3 WHIP, 2 WHEP per publisher and 3 per
    // viewer.
    let sessions = 3.0 + 3.0 * 2.0 + 2.0 * 3.0;
    let left = wait_metric(
        port,
        "sfu_participants_left_total{reason=\"left\"",
        sessions,
    );
    assert_eq!(left, sessions, "sessions left with DELETE");
}

#[test]
fn keyed_servers_get_a_token_per_session_and_the_session_cap_is_reported() {
    let port = free_port();
    let server = start_server_with(
        port,
        &[
            "--api-key",
            KEY,
            "--api-secret",
            SECRET,
            "--http-limits-max-whip-sessions-per-ip",
            "40",
        ],
    );
    let env = [("SFU_API_KEY", KEY), ("SFU_API_SECRET", SECRET)];
    let run = run_loadtest_env(&server, port, &SCENARIO, &env, Duration::from_secs(90));
    let totals = &run.passed()["totals"];
    assert_eq!(totals["bots_failed"], 0, "{}", run.stdout);
    // One identity per session: with one for all, each would have replaced the one before.
    assert_eq!(
        totals["bots_removed"].as_object().map(|m| m.len()),
        Some(0),
        "{}",
        run.stdout
    );

    // Without a token every session is refused, and the bots say why.
    let run = run_loadtest(&server, port, &SCENARIO, Duration::from_secs(60));
    assert!(!run.status.success(), "{}", run.stdout);
    assert!(run.stdout.contains("401 unauthorized"), "{}", run.stdout);
    drop(server);

    // The server's cap on sessions per address (default 20) stops a larger run, and the report
    // names it.
    let port = free_port();
    let server = start_server_with(port, &["--api-key", KEY, "--api-secret", SECRET]);
    // 3 WHIP and 6 WHEP sessions for the publishers, 3 for each of 8 viewers: 33.
    let mut big = SCENARIO.to_vec();
    big[7] = "8";
    big[9] = "2s";
    let run = run_loadtest_env(&server, port, &big, &env, Duration::from_secs(90));
    assert!(!run.status.success(), "{}", run.stdout);
    assert!(
        run.stdout.contains("503 server_busy"),
        "the cap is named: {}",
        run.stdout
    );
}
