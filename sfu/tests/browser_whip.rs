//! WHIP ingest and WHEP playback with Chromium as the client: a plain page on another origin
//! publishes with `POST /whip` (`fetch` and `RTCPeerConnection` only, as an encoder page does),
//! a participant of the demo page decodes it, another plain page plays it with
//! `POST /whep/{identity}`, and `DELETE` ends the WHIP session (see `tests/browser/whip.js`;
//! `tests/browser/run.sh` runs it with `E2E_SCRIPT=whip.js` and installs Chromium and
//! playwright-core if missing).
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. On machines that cannot run
//! browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built as ignored
//! (see `build.rs`) and shows as such.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn chromium_publishes_with_whip_and_plays_with_whep() {
    browser_runner::run_browser_script(
        "run.sh",
        &[("E2E_SCRIPT", "whip.js")],
        "WHIP/WHEP end-to-end test",
    );
}
