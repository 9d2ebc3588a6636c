//! The files in `deploy/` parse, and agree with the server's configuration (`deploy/check.sh`).

use std::process::Command;

#[test]
fn deploy_files_parse_and_match_the_configuration() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let status = Command::new("bash")
        .arg("deploy/check.sh")
        .arg(env!("CARGO_BIN_EXE_sfu"))
        .current_dir(root)
        .status()
        .expect("bash runs");
    assert!(status.success(), "deploy/check.sh failed");
}
