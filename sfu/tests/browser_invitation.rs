//! The demo page on a server with API keys, in a real browser (see `tests/browser/invitation.js`;
//! `tests/browser/run.sh` runs it with `E2E_SCRIPT=invitation.js` inside a private network
//! namespace and installs Chromium and playwright-core if missing): opened without a token it
//! says to ask the meeting's organiser for an invitation link; opened with one, the room field
//! shows the token's room and cannot be changed.
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. On machines that cannot run
//! browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built as ignored
//! (see `build.rs`) and shows as such.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn the_demo_page_asks_for_an_invitation_and_locks_the_invited_room() {
    browser_runner::run_browser_script(
        "run.sh",
        &[("E2E_SCRIPT", "invitation.js")],
        "invitation page test",
    );
}
