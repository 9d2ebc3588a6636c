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
//! Needs Linux, root (network namespaces, nftables), node >= 20 and npm. Set
//! `SFU_SKIP_BROWSER_TESTS=1` to skip it on machines that cannot run browsers.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Installing Chromium, coturn, nftables and playwright-core on a fresh machine plus the run itself
/// (which stops itself after 150 s).
const OVERALL_LIMIT: Duration = Duration::from_secs(600);

#[test]
fn relay_only_and_udp_blocked_browsers_see_each_other() {
    if std::env::var_os("SFU_SKIP_BROWSER_TESTS").is_some_and(|v| v != "0") {
        eprintln!("skipped: SFU_SKIP_BROWSER_TESTS is set");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    // stdout and stderr are inherited, so the run's progress and measurements stream live.
    let mut child = Command::new("bash")
        .arg("run-firewall.sh")
        .current_dir(&dir)
        .env("SFU_BIN", env!("CARGO_BIN_EXE_sfu"))
        .spawn()
        .expect("cannot start bash tests/browser/run-firewall.sh");
    let status = wait_with_limit(&mut child, OVERALL_LIMIT);
    assert!(
        status.success(),
        "TURN / ICE-TCP end-to-end test failed ({status}); its output above says which check"
    );
}

/// Waits for `child`; past `limit` it is asked to stop (SIGTERM, so that it can close its browsers,
/// the server, coturn and the network namespaces), then killed.
fn wait_with_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
            Ok(None) => break,
            Err(e) => panic!("cannot wait for run-firewall.sh: {e}"),
        }
    }
    eprintln!("firewall browser test still running after {limit:?}: stopping it");
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
    panic!("TURN / ICE-TCP end-to-end test did not finish within {limit:?}");
}
