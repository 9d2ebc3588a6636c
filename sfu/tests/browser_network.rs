//! Network trouble end-to-end test with real parts: two headless Chromium participants, each in
//! its own network namespace joined to the servers' by a veth pair, and two servers behind a load
//! balancer with health checks (see `tests/browser/network.js`; `tests/browser/run-network.sh`
//! builds the network and installs Chromium, nftables and playwright-core if missing).
//!
//! One after the other: P1's WebSocket is cut by a firewall rule while media flows (it resumes
//! on a new socket, video uninterrupted); P1's link goes down for 5 s (P2 sees it reconnecting,
//! never leaving; video back within 2 s of the link returning); P1's address changes (ICE
//! restart on the same peer connection, same participant); the first server gets SIGTERM (both
//! pages move the call to the second server through the same URL). Its output reports the
//! interruption each step caused.
//!
//! Needs Linux, root (network namespaces, nftables), node >= 20 and npm. On machines that cannot
//! run browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built as
//! ignored (see `build.rs`) and shows as such.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn a_call_survives_socket_cuts_link_loss_address_changes_and_a_server_restart() {
    browser_runner::run_browser_script("run-network.sh", &[], "network trouble end-to-end test");
}
