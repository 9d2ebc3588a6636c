//! A second browser engine: a headless Firefox ESR page and a headless Chromium page join one
//! room on the `sfu` binary through the demo page, inside a private network namespace (see
//! `tests/browser/firefox.js`; `tests/browser/run.sh` runs it with `E2E_SCRIPT=firefox.js`).
//!
//! Each page must decode the other's video and receive its audio, decode the other's frames at
//! about the rate they are encoded, and the server's offers to Firefox, which offers first, must
//! keep the header-extension ids of Firefox's first offer, give no id Firefox uses for another
//! extension, and list only the extensions the server uses.
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm; Debian's `chromium` and
//! `firefox-esr` and the npm packages `playwright-core` and `puppeteer-core` are installed when
//! missing (as root). With `SFU_SKIP_BROWSER_TESTS=1` the test is built as ignored.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn a_firefox_page_and_a_chromium_page_see_and_hear_each_other() {
    browser_runner::run_browser_script(
        "run.sh",
        &[
            ("E2E_SCRIPT", "firefox.js"),
            ("E2E_APT_PACKAGES", "firefox-esr"),
        ],
        "Firefox end-to-end test",
    );
}
