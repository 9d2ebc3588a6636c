//! TURN and ICE-TCP end-to-end test with real parts: three headless Chromium participants, each in
//! its own network namespace joined to the server's by a veth pair, and a real coturn in a fifth
//! namespace (see `tests/browser/firewall.js`; `tests/browser/run-firewall.sh` builds the network,
//! starts coturn and installs Chromium, coturn, nftables and playwright-core if missing).
//!
//! P1 connects plainly; P2 uses `iceTransportPolicy: 'relay'` with the TURN URL and time-limited
//! credentials the server hands out; P3's namespace drops all UDP, so it must use the server's
//! passive ICE-TCP candidate. Checks that all three decode each other's video, that P2's selected
//! candidate pair is a relay one (and coturn logged the allocation) and that P3's runs over TCP.
//! Its output reports the time to the first frame and the selected candidates.
//!
//! Needs Linux, root (network namespaces, nftables), node >= 20 and npm. On machines that cannot
//! run browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built as
//! ignored (see `build.rs`) and shows as such.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn relay_only_and_udp_blocked_browsers_see_each_other() {
    browser_runner::run_browser_script("run-firewall.sh", &[], "TURN / ICE-TCP end-to-end test");
}
