//! SVC layer selection with real browsers: a headless Chromium page publishes its camera as VP9,
//! then AV1, with `scalabilityMode: 'L3T3_KEY'` (one stream, three spatial layers) through the
//! demo page, on the `sfu` binary inside a private network namespace (see
//! `tests/browser/svc.js`; `tests/browser/run.sh` runs it with `E2E_SCRIPT=svc.js` and installs
//! Chromium and playwright-core if missing).
//!
//! Two watchers in another Chromium process show the video at 1280x720 and at 320x180: the
//! large one must decode 1280 wide (every spatial layer), the small one 320 wide (the lowest
//! spatial layer only), and 1280 wide once its tile grows (the server switches it up at a
//! keyframe). Then the same with the camera published as three simulcast encodings
//! (`SVC_PUBLISH=simulcast`): the server switches each watcher between encodings and, for VP9,
//! renumbers the picture ids. For AV1 the server reads the layers from the dependency
//! descriptor and passes it on.
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. On machines that cannot run
//! browsers, set `SFU_SKIP_BROWSER_TESTS=1` for `cargo test`: the test is then built as ignored
//! (see `build.rs`) and shows as such.

mod browser_runner;

/// Both codecs in both publishing modes, one run after the other: runs at once would share the
/// two cores.
#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn small_watchers_decode_the_lowest_layer_and_large_ones_the_top() {
    for (codec, publish, what) in [
        ("vp9", "svc", "VP9 SVC end-to-end test"),
        ("vp9", "simulcast", "VP9 simulcast end-to-end test"),
        ("av1", "svc", "AV1 SVC end-to-end test"),
        ("av1", "simulcast", "AV1 simulcast end-to-end test"),
    ] {
        browser_runner::run_browser_script(
            "run.sh",
            &[
                ("E2E_SCRIPT", "svc.js"),
                ("SVC_CODEC", codec),
                ("SVC_PUBLISH", publish),
            ],
            what,
        );
    }
}
