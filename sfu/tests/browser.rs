//! End-to-end test with real browsers: three headless Chromium processes join one room on the `sfu`
//! binary, inside a private network namespace, and must see and hear each other (see
//! `tests/browser/e2e.js`; `tests/browser/run.sh` installs Chromium and playwright-core if missing).
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. On machines that cannot run
//! browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built as ignored
//! (see `build.rs`) and shows as such.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn three_browsers_see_and_hear_each_other() {
    browser_runner::run_browser_script(
        "run.sh",
        &[("E2E_SCRIPT", "e2e.js")],
        "browser end-to-end test",
    );
}
