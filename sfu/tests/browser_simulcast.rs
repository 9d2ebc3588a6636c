//! Simulcast end-to-end test with real browsers: a publisher (headless Chromium, fake 1280x720
//! camera, three layers) and two watching subscribers, one on a clean link and one on a link
//! capped at 300 kbit/s, each in its own network namespace joined to the server's by a veth pair
//! (see `tests/browser/simulcast.js`; `tests/browser/run-simulcast.sh` builds the network and
//! installs Chromium, nftables and playwright-core if missing).
//!
//! Checks that the capped subscriber settles on the low layer while the other gets the top one,
//! that it climbs back to the top layer within 15 s once the cap is lifted, and that video keeps
//! decoding with NACKs under 5 % random loss. Its output reports the times and freezes measured.
//!
//! Needs Linux, root (network namespaces, tc, nftables), node >= 20 and npm. Set
//! `SFU_SKIP_BROWSER_TESTS=1` to skip it on machines that cannot run browsers.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Installing Chromium, nftables and playwright-core on a fresh machine plus the run itself
/// (which stops itself after 150 s).
const OVERALL_LIMIT: Duration = Duration::from_secs(600);

#[test]
fn simulcast_layers_follow_each_subscribers_link() {
    if std::env::var_os("SFU_SKIP_BROWSER_TESTS").is_some_and(|v| v != "0") {
        eprintln!("skipped: SFU_SKIP_BROWSER_TESTS is set");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    // stdout and stderr are inherited, so the run's progress and measurements stream live.
    let mut child = Command::new("bash")
        .arg("run-simulcast.sh")
        .current_dir(&dir)
        .env("SFU_BIN", env!("CARGO_BIN_EXE_sfu"))
        .spawn()
        .expect("cannot start bash tests/browser/run-simulcast.sh");
    let status = wait_with_limit(&mut child, OVERALL_LIMIT);
    assert!(
        status.success(),
        "simulcast end-to-end test failed ({status}); its output above says which check"
    );
}

/// Waits for `child`; past `limit` it is asked to stop (SIGTERM, so that it can close its browsers,
/// the server and the network namespaces), then killed.
fn wait_with_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
            Ok(None) => break,
            Err(e) => panic!("cannot wait for run-simulcast.sh: {e}"),
        }
    }
    eprintln!("simulcast browser test still running after {limit:?}: stopping it");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let grace = Instant::now() + Duration::from_secs(20);
    while Instant::now() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("simulcast end-to-end test did not finish within {limit:?}");
}
