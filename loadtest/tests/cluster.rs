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

/// Starts one node per id on a free port, in the cluster of `redis` (with `extra` flags), and
/// waits until each has read the others' entries (its page's Content-Security-Policy lists
/// their origins): joins through any node then see every node.
fn start_nodes(redis: &Redis, ids: &[&str], extra: &[&str]) -> (Vec<common::Server>, Vec<u16>) {
    let url = format!("redis://127.0.0.1:{}/0", redis.1);
    let ports: Vec<u16> = ids.iter().map(|_| free_port()).collect();
    let nodes = ids
        .iter()
        .zip(&ports)
        .map(|(id, port)| {
            let mut args = vec![
                "--api-key",
                KEY,
                "--api-secret",
                SECRET,
                "--redis",
                &url,
                "--node-id",
                id,
            ];
            args.extend_from_slice(extra);
            start_server_with(*port, &args)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in &ports {
        let others: Vec<String> = ports
            .iter()
            .filter(|p| *p != port)
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        loop {
            let page = get(*port, "/");
            let csp = page
                .lines()
                .find(|l| {
                    l.to_ascii_lowercase()
                        .starts_with("content-security-policy:")
                })
                .unwrap_or_default();
            if others.iter().all(|o| csp.contains(o.as_str())) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node on {port} never learnt of the others: {csp}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (nodes, ports)
}

#[test]
fn bots_joining_through_three_nodes_meet_in_one_room() {
    let redis = Redis::start();
    let (nodes, ports) = start_nodes(&redis, &["n1", "n2", "n3"], &[]);
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

/// `GET path` of the node on `port`: the whole response, headers and body, as text.
fn get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("node answers");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The sum of the samples of `name` whose labels contain `labels`.
fn sample(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_room_too_big_for_one_node_spans_three_through_relays() {
    const CLUSTER_SECRET: &str = "a-cluster-secret-of-at-least-32-characters";
    let redis = Redis::start();
    // Three participants of a room per node: nine bots fill three nodes.
    let (nodes, ports) = start_nodes(
        &redis,
        &["n1", "n2", "n3"],
        &[
            "--cluster-secret",
            CLUSTER_SECRET,
            "--cluster-room-participants-per-node",
            "3",
        ],
    );
    let urls = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let args = [
        "--urls",
        urls.as_str(),
        "--preset",
        "livestream-1xN",
        "--subscribers",
        "8",
        "--duration",
        "4s",
        "--warmup",
        "1s",
        "--max-loss",
        "1",
    ];
    let env = [("SFU_API_KEY", KEY), ("SFU_API_SECRET", SECRET)];
    let run = run_loadtest_env(&nodes[0], ports[0], &args, &env, Duration::from_secs(60));
    let report = run.passed();
    let totals = &report["totals"];
    let stdout = &run.stdout;
    assert_eq!(totals["bots"], 9, "{stdout}");
    assert_eq!(totals["bots_failed"], 0, "{stdout}");
    let expected = totals["tracks_expected"].as_u64().unwrap();
    assert_eq!(
        totals["tracks_received"].as_u64(),
        Some(expected),
        "{stdout}"
    );
    // Every node took some of the room's participants, and the packets crossed between nodes:
    // out of the publisher's node, into the two others.
    let texts: Vec<String> = ports.iter().map(|p| get(*p, "/metrics")).collect();
    for (i, t) in texts.iter().enumerate() {
        let joins = sample(t, "sfu_joins_total", "result=\"ok\"");
        assert!(joins >= 1.0, "node n{} took no join:\n{stdout}", i + 1);
    }
    let out: Vec<f64> = texts
        .iter()
        .map(|t| sample(t, "sfu_relay_packets_total", "direction=\"out\""))
        .collect();
    let into: Vec<f64> = texts
        .iter()
        .map(|t| sample(t, "sfu_relay_packets_total", "direction=\"in\""))
        .collect();
    assert_eq!(
        out.iter().filter(|&&n| n > 0.0).count(),
        1,
        "one node (the publisher's) sends packets: out {out:?} in {into:?}"
    );
    assert_eq!(
        into.iter().filter(|&&n| n > 0.0).count(),
        2,
        "the two others receive them: out {out:?} in {into:?}"
    );
}
