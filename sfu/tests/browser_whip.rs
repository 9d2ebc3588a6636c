//! WHIP ingest and WHEP playback with Chromium as the client: a plain page on another origin
//! publishes with `POST /whip` (`fetch` and `RTCPeerConnection` only, as an encoder page does),
//! a participant of the demo page decodes it, another plain page plays it with
//! `POST /whep/{identity}`, and `DELETE` ends the WHIP session. Then GStreamer's own WebRTC stack
//! (`webrtcbin`, driven by `tests/browser/gst-whip.py`) publishes a test pattern with WHIP and
//! the participant decodes it (see `tests/browser/whip.js`; `tests/browser/run.sh` runs it with
//! `E2E_SCRIPT=whip.js` and installs Chromium, playwright-core and the GStreamer packages if
//! missing).
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
        &[
            ("E2E_SCRIPT", "whip.js"),
            ("E2E_APT_PACKAGES", GSTREAMER_PACKAGES),
        ],
        "WHIP/WHEP end-to-end test",
    );
}

/// What `gst-whip.py` (GStreamer's webrtcbin as a WHIP encoder) needs, from Debian.
const GSTREAMER_PACKAGES: &str = "python3-gi gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-base \
     gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-nice openssl";
