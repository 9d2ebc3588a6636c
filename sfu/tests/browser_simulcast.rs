//! Simulcast end-to-end test with real browsers: a publisher (headless Chromium, fake 1280x720
//! camera, three layers) and two watching subscribers, one on a clean link and one on a link
//! capped at 300 kbit/s, each in its own network namespace joined to the server's by a veth pair
//! (see `tests/browser/simulcast.js`; `tests/browser/run-simulcast.sh` builds the network and
//! installs Chromium, nftables and playwright-core if missing).
//!
//! Checks that the capped subscriber settles on the low layer while the other gets the top one,
//! that it climbs back to the top layer within 15 s once the cap is lifted, and that video keeps
//! decoding with NACKs under 5 % random loss. Then, with the link capped at 1.2 Mbit/s (where the
//! camera keeps its top layer), the publisher shares a screen: the camera must drop below its top
//! layer or be paused, the capped subscriber must decode the screen at full size and never have
//! it paused, and the camera's top layer must come back once the share stops. Its output reports
//! the times, freezes and screen rates measured.
//!
//! Needs Linux, root (network namespaces, tc, nftables), node >= 20 and npm. On machines that
//! cannot run browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built
//! as ignored (see `build.rs`) and shows as such.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn simulcast_layers_follow_each_subscribers_link() {
    browser_runner::run_browser_script("run-simulcast.sh", &[], "simulcast end-to-end test");
}
