//! The browser client as an npm package (`client/` at the top of the repository): runs
//! `client/test/run.sh`, which type-checks its TypeScript declarations, runs its unit tests in
//! Node, packs it and installs the tarball into a scratch project the way an application would.
//! The client's behaviour against a real server is covered by the browser tests, which load the
//! same file from the server at `/client.js`.
//!
//! Needs node >= 20 and npm (the first run installs TypeScript from the npm registry). Machines
//! without them set `SFU_SKIP_BROWSER_TESTS=1`, which builds this test as ignored too.

mod browser_runner;

use std::path::Path;
use std::process::Command;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn the_client_package_builds_installs_and_passes_its_tests() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../client/test/run.sh");
    let mut child = Command::new("bash")
        .arg(&script)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start bash {}: {e}", script.display()));
    let status = browser_runner::wait_with_limit(
        &mut child,
        browser_runner::OVERALL_LIMIT,
        "client package test",
    );
    assert!(
        status.success(),
        "the client package's checks failed ({status}); its output above says which"
    );
}
