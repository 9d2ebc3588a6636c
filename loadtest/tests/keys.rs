//! A server with API keys: the load tester mints one token per bot with the key (from the same
//! environment variables the server reads), each bot with its own identity. Without the key the
//! server refuses every bot.

mod common;

use std::time::Duration;

use common::{free_port, run_loadtest, run_loadtest_env, start_server_with};

const KEY: &str = "APIload";
const SECRET: &str = "a-secret-for-the-load-test-of-40-chars!!";

const SCENARIO: [&str; 10] = [
    "--video-publishers",
    "2",
    "--subscribers",
    "2",
    "--duration",
    "3s",
    "--warmup",
    "1s",
    "--max-loss",
    "5",
];

#[test]
fn bots_join_a_keyed_server_with_tokens_minted_per_bot() {
    let port = free_port();
    let server = start_server_with(port, &["--api-key", KEY, "--api-secret", SECRET]);

    let env = [("SFU_API_KEY", KEY), ("SFU_API_SECRET", SECRET)];
    let run = run_loadtest_env(&server, port, &SCENARIO, &env, Duration::from_secs(60));
    let report = run.passed();
    let totals = &report["totals"];
    let stdout = &run.stdout;
    assert_eq!(totals["bots"], 4, "{stdout}");
    assert_eq!(totals["bots_failed"], 0, "{stdout}");
    // Every bot kept its place: with one identity for all, each join would have pushed the one
    // before out of the room (duplicate_identity).
    assert_eq!(
        totals["bots_removed"].as_object().map(|m| m.len()),
        Some(0),
        "{stdout}"
    );
    let expected = totals["tracks_expected"].as_u64().unwrap();
    assert_eq!(expected, 2 * 2 + 2 * 4, "{stdout}");
    assert_eq!(
        totals["tracks_received"].as_u64(),
        Some(expected),
        "{stdout}"
    );

    // The flags work as well as the environment.
    let flags = [&SCENARIO[..], &["--api-key", KEY, "--api-secret", SECRET]].concat();
    let run = run_loadtest(&server, port, &flags, Duration::from_secs(60));
    assert_eq!(run.passed()["totals"]["bots_failed"], 0, "{}", run.stdout);

    // Without the key every join is refused.
    let run = run_loadtest(&server, port, &SCENARIO, Duration::from_secs(60));
    assert!(!run.status.success(), "{}", run.stdout);
    let report = run.report.as_ref().expect("report written");
    assert_eq!(report["totals"]["bots_failed"], 4, "{}", run.stdout);

    // A secret the server would refuse (too short) stops the run before any bot starts.
    let wrong = [("SFU_API_KEY", KEY), ("SFU_API_SECRET", "short")];
    let run = run_loadtest_env(&server, port, &SCENARIO, &wrong, Duration::from_secs(10));
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("--api-key"), "{}", run.stderr);
}
