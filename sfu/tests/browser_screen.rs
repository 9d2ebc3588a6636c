//! Screen share with real browsers: two headless Chromium pages join one room on the `sfu`
//! binary through the demo page, inside a private network namespace (see
//! `tests/browser/screen.js`; `tests/browser/run.sh` runs it with `E2E_SCRIPT=screen.js` and
//! installs Chromium and playwright-core if missing).
//!
//! One page shares an animated canvas as its screen through the client API (headless Chromium
//! has no screen to capture): it must go out as one full-resolution encoding with the settings
//! for screen content; the other page must learn its source `screen` from the server, receive it
//! apart from the camera and decode it at full size while the camera keeps arriving; stopping the
//! share must take it off again. The output reports the times and the size and frame rates
//! received.
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. On machines that cannot run
//! browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built as ignored
//! (see `build.rs`) and shows as such.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn a_shared_screen_reaches_the_other_page_as_a_screen_at_full_size() {
    browser_runner::run_browser_script(
        "run.sh",
        &[("E2E_SCRIPT", "screen.js")],
        "screen share end-to-end test",
    );
}
