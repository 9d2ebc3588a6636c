//! The video codec choice with real browsers: two headless Chromium pages join one room on the
//! `sfu` binary through the demo page, inside a private network namespace (see
//! `tests/browser/codec.js`; `tests/browser/run.sh` runs it with `E2E_SCRIPT=codec.js` and
//! installs Chromium and playwright-core if missing).
//!
//! One page asks for H.264 (`?codec=h264`, VP8 still listed after it): the server must answer
//! in that order, so that it sends H.264 and the other page decodes `video/H264` with the same
//! profile; the other page keeps Chromium's order and its VP8 must reach the first. The output
//! reports the codec and fmtp seen in each direction.
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. On machines that cannot run
//! browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built as ignored
//! (see `build.rs`) and shows as such.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn a_page_that_prefers_h264_publishes_h264_and_the_other_decodes_it() {
    browser_runner::run_browser_script(
        "run.sh",
        &[("E2E_SCRIPT", "codec.js")],
        "video codec end-to-end test",
    );
}
