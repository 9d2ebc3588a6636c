//! End-to-end test of data channels, mute and the speaking indicator with real browsers: two
//! headless Chromium processes join one room on the `sfu` binary through the demo page, inside a
//! private network namespace (see `tests/browser/chat.js`; `tests/browser/run.sh` runs it with
//! `E2E_SCRIPT=chat.js` and installs Chromium and playwright-core if missing).
//!
//! Checks chat through the page's panel, direct messages, that the server stamps the sender, the
//! camera and microphone mute buttons (badges on the other side, video stops and resumes), the
//! rate limit on a burst of 100 messages, and the speaking highlight. It prints what the server
//! made of Chromium's fake microphone beep and whether a newcomer learns who is speaking.
//! Screenshots of both pages go to `target/chat-e2e/` in the workspace.
//!
//! Needs Linux, root (or user namespaces), node >= 20 and npm. Set `SFU_SKIP_BROWSER_TESTS=1` to
//! skip it on machines that cannot run browsers.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// Installing Chromium and playwright-core on a fresh machine plus the run itself (which stops
/// itself after 90 s).
const OVERALL_LIMIT: Duration = Duration::from_secs(600);

#[test]
fn chat_mute_and_speakers_between_two_browsers() {
    if std::env::var_os("SFU_SKIP_BROWSER_TESTS").is_some_and(|v| v != "0") {
        eprintln!("skipped: SFU_SKIP_BROWSER_TESTS is set");
        return;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("tests").join("browser");
    let screenshots = manifest
        .parent()
        .unwrap_or(manifest)
        .join("target")
        .join("chat-e2e");
    // stdout and stderr are inherited, so the run's progress and observations stream live.
    let mut child = Command::new("bash")
        .arg("run.sh")
        .current_dir(&dir)
        .env("SFU_BIN", env!("CARGO_BIN_EXE_sfu"))
        .env("E2E_SCRIPT", "chat.js")
        .env("CHAT_SCREENSHOTS", &screenshots)
        .spawn()
        .expect("cannot start bash tests/browser/run.sh");
    let status = wait_with_limit(&mut child, OVERALL_LIMIT);
    assert!(
        status.success(),
        "chat end-to-end test failed ({status}); its output above says which check"
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
    eprintln!("chat browser test still running after {limit:?}: stopping it");
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
    panic!("chat end-to-end test did not finish within {limit:?}");
}
