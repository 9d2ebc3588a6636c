//! End-to-end test with real browsers: three headless Chromium processes join one room on the `sfu`
//! binary, inside a private network namespace, and must see and hear each other (see
//! `tests/browser/e2e.js`; `tests/browser/run.sh` installs Chromium and playwright-core if missing).
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. Set `SFU_SKIP_BROWSER_TESTS=1` to
//! skip it on machines that cannot run browsers.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Installing Chromium and playwright-core on a fresh machine plus the run itself (which stops
/// itself after 120 s).
const OVERALL_LIMIT: Duration = Duration::from_secs(600);

#[test]
fn three_browsers_see_and_hear_each_other() {
    if std::env::var_os("SFU_SKIP_BROWSER_TESTS").is_some_and(|v| v != "0") {
        eprintln!("skipped: SFU_SKIP_BROWSER_TESTS is set");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    // stdout and stderr are inherited, so the run's progress streams live. P1's screenshot goes to
    // target/e2e-p1.png in the workspace.
    let mut child = Command::new("bash")
        .arg("run.sh")
        .current_dir(&dir)
        .env("SFU_BIN", env!("CARGO_BIN_EXE_sfu"))
        .env("E2E_SCRIPT", "e2e.js")
        .spawn()
        .expect("cannot start bash tests/browser/run.sh");
    let status = wait_with_limit(&mut child, OVERALL_LIMIT);
    assert!(
        status.success(),
        "browser end-to-end test failed ({status}); its output above says which check"
    );
}

/// Waits for `child`; past `limit` it is asked to stop (SIGTERM, so that it can close its browsers
/// and the server), then killed.
fn wait_with_limit(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
            Ok(None) => break,
            Err(e) => panic!("cannot wait for run.sh: {e}"),
        }
    }
    eprintln!("browser test still running after {limit:?}: stopping it");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let grace = Instant::now() + Duration::from_secs(15);
    while Instant::now() < grace {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("browser end-to-end test did not finish within {limit:?}");
}
