//! Two headless Chromium pages on two nodes of a cluster (a real `redis-server` holds its state):
//! the page on the node that does not serve the room follows the `redirect` to the one that
//! does (or, with a cluster secret, stays and the nodes relay the room), and both decode each
//! other's video (see `tests/browser/cluster.js`, run through
//! `tests/browser/run.sh` in a private network namespace).
//!
//! Needs Linux, node >= 20, npm, Debian's chromium and redis-server (installed when missing and
//! running as root). With `SFU_SKIP_BROWSER_TESTS=1` the test is built as ignored.

mod browser_runner;

#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn pages_on_two_nodes_of_a_cluster_meet_in_one_room() {
    browser_runner::run_browser_script(
        "run.sh",
        &[("E2E_SCRIPT", "cluster.js")],
        "cluster browser test",
    );
}

/// The same pages when the nodes relay: each node takes one participant of the room, and the
/// pages see each other through the relay between the nodes. Then the second page's node is
/// killed: that page joins again through the node it opened the page on, and the pages see
/// each other's video again.
#[test]
#[cfg_attr(skip_browser_tests, ignore = "SFU_SKIP_BROWSER_TESTS is set")]
fn pages_on_two_nodes_relaying_one_room_see_each_other() {
    browser_runner::run_browser_script(
        "run.sh",
        &[("E2E_SCRIPT", "cluster.js"), ("E2E_CLUSTER_RELAY", "1")],
        "cluster relay browser test",
    );
}
