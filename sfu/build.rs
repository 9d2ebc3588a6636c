//! Sets the `skip_browser_tests` cfg when `SFU_SKIP_BROWSER_TESTS` is set to anything but `0`:
//! the browser end-to-end tests (`tests/browser*.rs`) and the client package's test
//! (`tests/client_package.rs`, which needs Node.js) are marked ignored under it, so that a machine
//! that cannot run browsers reports them as ignored rather than passed.

fn main() {
    println!("cargo::rerun-if-env-changed=SFU_SKIP_BROWSER_TESTS");
    println!("cargo::rustc-check-cfg=cfg(skip_browser_tests)");
    if std::env::var_os("SFU_SKIP_BROWSER_TESTS").is_some_and(|v| v != "0") {
        println!("cargo::rustc-cfg=skip_browser_tests");
    }
}
