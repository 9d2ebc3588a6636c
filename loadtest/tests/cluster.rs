//! Bots spread over the three nodes of a cluster (`--urls`) join one room: the nodes that do not
//! serve it redirect them, and every bot receives every other one's tracks. Needs Debian's
//! `redis-server` (installed with `apt-get` when missing and running as root).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, run_loadtest_env, start_server_with};

const KEY: &str = "APIcluster";
const SECRET: &str = "a-secret-for-the-cluster-test-of-40-chars";

/// A `redis-server` on a free loopback port, without persistence; killed when dropped.
struct Redis(Child, u16);

impl Redis {
    fn start() -> Redis {
        let found = |_: ()| {
            Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok()
        };
        if !found(()) && unsafe { libc::geteuid() } == 0 {
            let _ = Command::new("apt-get")
                .args(["install", "-y", "-q", "redis-server"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status();
        }
        assert!(found(()), "this test needs Debian's redis-server");
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis(child, port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn bots_joining_through_three_nodes_meet_in_one_room() {
    let redis = Redis::start();
    let url = format!("redis://127.0.0.1:{}/0", redis.1);
    let ports = [free_port(), free_port(), free_port()];
    let nodes: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let id = format!("n{}", i + 1);
            start_server_with(
                *port,
                &[
                    "--api-key",
                    KEY,
                    "--api-secret",
                    SECRET,
                    "--redis",
                    &url,
                    "--node-id",
                    &id,
                ],
            )
        })
        .collect();
    // Every node reads the others' entries within a second or two.
    std::thread::sleep(Duration::from_millis(2500));
    let urls = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let args = [
        "--urls",
        urls.as_str(),
        "--video-publishers",
        "2",
        "--subscribers",
        "4",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--max-loss",
        "5",
    ];
    let env = [("SFU_API_KEY", KEY), ("SFU_API_SECRET", SECRET)];
    let run = run_loadtest_env(&nodes[0], ports[0], &args, &env, Duration::from_secs(60));
    let report = run.passed();
    let totals = &report["totals"];
    let stdout = &run.stdout;
    assert_eq!(totals["bots"], 6, "{stdout}");
    assert_eq!(totals["bots_failed"], 0, "{stdout}");
    let expected = totals["tracks_expected"].as_u64().unwrap();
    assert_eq!(
        totals["tracks_received"].as_u64(),
        Some(expected),
        "{stdout}"
    );
}
