//! End-to-end test of data channels, mute and the speaking indicator with real browsers: two
//! headless Chromium processes join one room on the `sfu` binary through the demo page, inside a
//! private network namespace (see `tests/browser/chat.js`; `tests/browser/run.sh` runs it with
//! `E2E_SCRIPT=chat.js` and installs Chromium and playwright-core if missing).
//!
//! Checks chat through the page's panel, direct messages, that the server stamps the sender, the
//! camera and microphone mute buttons (badges on the other side, video stops and resumes), the
//! rate limit on a burst of 100 messages, and the speaking highlight. It prints what the server
//! made of Chromium's fake microphone beep and whether a newcomer learns who is speaking.
//! Screenshots of both pages go to `target/chat-e2e/` in the workspace.
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. On machines that cannot run
//! browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built as ignored
//! (see `build.rs`) and shows as such.

mod browser_runner;

use std::path::Path;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn chat_mute_and_speakers_between_two_browsers() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let screenshots = manifest
        .parent()
        .unwrap_or(manifest)
        .join("target")
        .join("chat-e2e");
    let screenshots = screenshots.to_string_lossy();
    browser_runner::run_browser_script(
        "run.sh",
        &[
            ("E2E_SCRIPT", "chat.js"),
            ("CHAT_SCREENSHOTS", &screenshots),
        ],
        "chat end-to-end test",
    );
}
