//! The HTTP listener's defences, against the real `sfu` binary on loopback: slow and silent
//! connections are closed after the header read timeout, connections over the caps are closed
//! at accept (plain HTTP and TLS), and a WebSocket that keeps sending refused joins is closed at
//! the join deadline counted from its opening.
//!
//! Attackers connect from other loopback addresses (127.0.0.2, ...) so that the test's own
//! requests from 127.0.0.1 show whether the server still serves others.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "APIlimits";
const SECRET: &str = "a-limits-test-secret-of-forty-characters";
const STEP: Duration = Duration::from_secs(10);

/// A running `sfu` process, killed when dropped.
struct Server {
    child: Child,
    http: SocketAddr,
}

/// Starts `sfu serve` on a port of its choosing (so no other test can take it in between) and
/// reads the address from its ready line.
fn spawn(args: &[&str]) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["serve", "--http", "127.0.0.1:0"])
        .args(["--udp-ip", "127.0.0.1", "--udp-port", "0", "--workers", "1"])
        .args(args)
        .env("SFU_API_KEY", KEY)
        .env("SFU_API_SECRET", SECRET)
        .env("SFU_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the sfu binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // "SFU ready on http://127.0.0.1:PORT/; ..."
            if let Some(rest) = line.split("://").nth(1) {
                if line.starts_with("SFU ready") {
                    let addr = rest.split('/').next().unwrap_or_default().to_owned();
                    let _ = tx.send(addr);
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(3 * STEP)
        .expect("the server printed its ready line");
    (child, addr.parse().expect("an address in the ready line"))
}

/// A client that opens a fresh connection per request, so it holds no slot between requests.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

impl Server {
    async fn start(args: &[&str]) -> Server {
        let (child, http) = spawn(args);
        let server = Server { child, http };
        let deadline = Instant::now() + 3 * STEP;
        while server.healthz().await != 200 {
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    async fn healthz(&self) -> u16 {
        let url = format!("http://{}/healthz", self.http);
        match timeout(STEP, client().get(&url).send()).await {
            Ok(Ok(r)) => r.status().as_u16(),
            _ => 0,
        }
    }

    async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.http);
        let r = client().get(&url).send().await.unwrap();
        r.text().await.unwrap()
    }

    /// A TCP connection from `from` (a loopback address) that sends nothing.
    async fn connect_from(&self, from: &str) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
            .unwrap();
        timeout(STEP, socket.connect(self.http))
            .await
            .expect("connect in time")
            .expect("connect")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the server closes the connection; how long that took, or `None` if it was still
/// open after `limit`. Any response bytes before the close are skipped.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(start.elapsed())?;
        match timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// The connections the server did not close within `wait`.
async fn keep_open(conns: Vec<TcpStream>, wait: Duration) -> Vec<TcpStream> {
    let checks = conns.into_iter().map(|mut c| async move {
        let closed = closed_within(&mut c, wait).await.is_some();
        (!closed).then_some(c)
    });
    futures_util::future::join_all(checks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_dripping_and_idle_connections_are_closed_after_the_header_timeout() {
    let server = Server::start(&["--http-limits-header-read-timeout", "1s"]).await;
    let limit = Duration::from_secs(6);

    let mut silent = server.connect_from("127.0.0.2").await;
    let silent_closed = closed_within(&mut silent, limit).await;

    // One header byte every 200 ms: always busy, never done.
    let mut drip = server.connect_from("127.0.0.2").await;
    drip.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let start = Instant::now();
    let mut drip_closed = None;
    let mut buf = [0u8; 1024];
    while start.elapsed() < limit {
        if drip.write_all(b"X").await.is_err() {
            drip_closed = Some(start.elapsed());
            break;
        }
        if let Ok(Ok(0) | Err(_)) = timeout(Duration::from_millis(200), drip.read(&mut buf)).await {
            drip_closed = Some(start.elapsed());
            break;
        }
    }

    // HTTP/2 without TLS would skip the header timeout: refused at its preface.
    let mut h2 = server.connect_from("127.0.0.2").await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let h2_closed = closed_within(&mut h2, Duration::from_millis(500)).await;
    assert!(h2_closed.is_some(), "an HTTP/2 connection was served");

    // A keep-alive connection that made one request, then went quiet.
    let mut idle = server.connect_from("127.0.0.2").await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = timeout(STEP, idle.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle_closed = closed_within(&mut idle, limit).await;

    for (what, closed) in [
        ("silent", silent_closed),
        ("dripping", drip_closed),
        ("idle keep-alive", idle_closed),
    ] {
        let after = closed.unwrap_or_else(|| panic!("the {what} connection stayed open"));
        assert!(after >= Duration::from_millis(500), "{what}: {after:?}");
    }
    assert_eq!(server.healthz().await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_are_closed_at_accept_and_others_are_served() {
    let server = Server::start(&[
        "--http-limits-max-connections",
        "12",
        "--http-limits-max-connections-per-ip",
        "5",
        "--http-limits-header-read-timeout",
        "1m",
    ])
    .await;
    // Refused connections close at once; held ones are kept for a minute.
    let quick = Duration::from_secs(5);

    // Six from one address: the slot of whichever the server took last is refused (accepts
    // run in parallel, so not necessarily the sixth's).
    let mut from_one = Vec::new();
    for _ in 0..6 {
        from_one.push(server.connect_from("127.0.0.2").await);
    }
    let held = keep_open(from_one, quick).await;
    assert_eq!(held.len(), 5, "per-address cap");
    assert_eq!(server.healthz().await, 200, "others are still served");

    // Up to the global cap of 12 from other addresses, and one more.
    let mut others = Vec::new();
    for from in ["127.0.0.3", "127.0.0.4", "127.0.0.5"] {
        for _ in 0..3 {
            others.push(server.connect_from(from).await);
        }
    }
    let others = keep_open(others, quick).await;
    // 5 + 7 = 12 (fewer if the health check's connection was still being closed).
    assert!(others.len() <= 7 && others.len() >= 6, "{}", others.len());

    drop((held, others));
    let deadline = Instant::now() + STEP;
    while server.healthz().await != 200 {
        assert!(Instant::now() < deadline, "slots were not given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = server.metrics().await;
    assert!(
        metric(
            &text,
            "sfu_http_connections_refused_total{reason=\"per_ip\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &text,
            "sfu_http_connections_refused_total{reason=\"total\"}"
        ) >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_has_the_same_caps() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("sfu-limits-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path): (PathBuf, PathBuf) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let (child, http) = spawn(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
        "--http-limits-max-connections-per-ip",
        "2",
    ]);
    let server = Server { child, http };
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", http.port());
    let deadline = Instant::now() + 3 * STEP;
    while !matches!(https.get(&url).send().await, Ok(r) if r.status().is_success()) {
        assert!(Instant::now() < deadline, "the server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut three = Vec::new();
    for _ in 0..3 {
        three.push(server.connect_from("127.0.0.2").await);
    }
    assert_eq!(keep_open(three, Duration::from_secs(3)).await.len(), 2);
    let r = https.get(&url).send().await.unwrap();
    assert!(r.status().is_success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_joins_neither_extend_the_join_deadline_nor_go_on_forever() {
    let server = Server::start(&["--http-limits-max-join-attempts", "100"]).await;
    let url = format!("ws://{}/ws", server.http);
    let bad_join = json!({"type": "join", "version": 1, "room": "r", "name": "n",
                          "token": "not-a-token"})
    .to_string();

    // A refused join every 2 s: the socket still closes 10 s after it opened.
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let opened = Instant::now();
    let closed = loop {
        assert!(opened.elapsed() < Duration::from_secs(20), "still open");
        ws.send(Message::text(bad_join.clone())).await.unwrap();
        let wait = tokio::time::sleep(Duration::from_secs(2));
        tokio::pin!(wait);
        let mut closed = None;
        loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(Message::Close(Some(f)))) => {
                        closed = Some((u16::from(f.code), f.reason.to_string()));
                        break;
                    }
                    Some(Ok(_)) => {}
                    other => panic!("{other:?}"),
                },
                () = &mut wait => break,
            }
        }
        if let Some(c) = closed {
            break c;
        }
    };
    assert_eq!(closed, (1008, "join timeout".to_owned()));
    let after = opened.elapsed();
    assert!(
        after >= Duration::from_secs(9) && after < Duration::from_secs(14),
        "{after:?}"
    );
}
