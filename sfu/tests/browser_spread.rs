//! The three-browser call of `browser.rs` with the room spread over the server's two workers (one
//! participant per worker before the room spreads): P1 and P3 connect to one worker, P2 to the
//! other, and every page must see and hear the others, resume after its WebSocket is cut, and go
//! on after a leave, as when the room is on one worker. A test binary of its own, so that it does
//! not run beside the other three-browser call.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn three_browsers_on_two_workers_see_and_hear_each_other() {
    browser_runner::run_browser_script(
        "run.sh",
        &[
            ("E2E_SCRIPT", "e2e.js"),
            ("E2E_SFU_ARGS", "--limits-room-participants-per-worker 1"),
            (
                "E2E_SCREENSHOT",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../target/e2e-p1-spread.png"),
            ),
        ],
        "browser end-to-end test, room over two workers",
    );
}
