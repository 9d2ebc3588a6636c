//! Runs one of the browser end-to-end scripts in `tests/browser/` against the `sfu` binary of this
//! build, with its output streamed live, bounded in time.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Installing Chromium (and coturn, nftables) and playwright-core on a fresh machine, plus the
/// run itself (every script stops itself well before this).
pub const OVERALL_LIMIT: Duration = Duration::from_secs(600);

/// Runs `bash <script>` in `tests/browser/` with `SFU_BIN` and `env` set, and asserts that it
/// succeeds; `what` names the test in the failure message.
pub fn run_browser_script(script: &str, env: &[(&str, &str)], what: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("browser");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .current_dir(&dir)
        .env("SFU_BIN", env!("CARGO_BIN_EXE_sfu"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start bash tests/browser/{script}: {e}"));
    let status = wait_with_limit(&mut child, OVERALL_LIMIT, what);
    assert!(
        status.success(),
        "{what} failed ({status}); its output above says which check"
    );
}

/// Waits for `child`; past `limit` it is asked to stop (SIGTERM, so that it can close its
/// browsers, the server and its network namespaces), then killed.
pub fn wait_with_limit(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(200)),
            Ok(None) => break,
            Err(e) => panic!("cannot wait for {what}: {e}"),
        }
    }
    eprintln!("{what} still running after {limit:?}: stopping it");
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
    panic!("{what} did not finish within {limit:?}");
}
