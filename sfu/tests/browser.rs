//! End-to-end test with real browsers: three headless Chromium processes join one room on the `sfu`
//! binary, inside a private network namespace, and must see and hear each other (see
//! `tests/browser/e2e.js`; `tests/browser/run.sh` installs Chromium and playwright-core if missing).
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. Set `SFU_SKIP_BROWSER_TESTS=1` to
//! skip it on machines that cannot run browsers.

mod browser_runner;

#[test]
fn three_browsers_see_and_hear_each_other() {
    if browser_runner::skipped() {
        return;
    }
    browser_runner::run_browser_script(
        "run.sh",
        &[("E2E_SCRIPT", "e2e.js")],
        "browser end-to-end test",
    );
}
