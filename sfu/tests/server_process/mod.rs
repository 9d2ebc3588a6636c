//! The real `sfu` binary as a child process on 127.0.0.1, a WebSocket client that speaks the
//! protocol as JSON, and a participant that publishes audio over a real peer connection: shared
//! by the tests that need a whole server.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::rtp::RtpWrite;
use str0m::{Candidate, Event, Input, Output, RtcConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use signal::auth::{Grants, KeySet, TokenSpec};

pub const KEY: &str = "APIops";
pub const SECRET: &str = "an-operations-test-secret-of-40-chars!!";
pub const STEP: Duration = Duration::from_secs(10);

/// A running `sfu` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub http: SocketAddr,
    client: reqwest::Client,
    scheme: &'static str,
}

/// The address in the server's ready line (`SFU ready on http://127.0.0.1:PORT/; ...`).
fn ready_address(line: &str) -> Option<SocketAddr> {
    let rest = line.strip_prefix("SFU ready")?;
    let host = rest.split("://").nth(1)?.split('/').next()?;
    host.parse().ok()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub async fn start(args: &[&str]) -> Server {
        Server::start_with(args, reqwest::Client::new(), "http").await
    }

    pub async fn start_with(
        args: &[&str],
        client: reqwest::Client,
        scheme: &'static str,
    ) -> Server {
        // Port 0: the server binds a port the kernel picks, which no other test can hold (a
        // port found free beforehand may be taken by another test's server in between), and
        // names it in its ready line.
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
        // Reads the output to its end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(addr) = ready_address(&line) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let deadline = Instant::now() + 3 * STEP;
        let http = loop {
            match rx.try_recv() {
                Ok(addr) => break addr,
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    assert!(Instant::now() < deadline, "the server did not come up");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    panic!("the server exited before it was ready: {:?}", child.wait())
                }
            }
        };
        let server = Server {
            child,
            http,
            client,
            scheme,
        };
        let deadline = Instant::now() + 3 * STEP;
        while server.get("/healthz").await.0 != 200 {
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}://localhost:{}{path}", self.scheme, self.http.port());
        match self.client.get(&url).send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(_) => (0, String::new()),
        }
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = timeout(STEP, self.get("/metrics"))
            .await
            .expect("no metrics in time");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Reads `/metrics` until `done` holds for the text, for at most `limit`. Returns the last
    /// text either way, so that the caller's assertions say what is missing.
    pub async fn metrics_until(&self, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.metrics().await;
            if done(&text) || Instant::now() >= deadline {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.http.port())
    }

    pub fn sigterm(&self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: sends a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }

    pub async fn exit_within(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn token(room: &str, identity: &str) -> String {
    let keys = KeySet::single(KEY, SECRET).unwrap();
    let spec = TokenSpec {
        identity: identity.into(),
        name: None,
        room: Some(room.into()),
        grants: Grants::participant(),
        metadata: None,
        ttl: Duration::from_secs(600),
    };
    keys.mint(KEY, &spec).unwrap().0
}

/// A signalling connection.
pub struct Ws<S>(pub WebSocketStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Ws<S> {
    pub async fn send(&mut self, v: Value) {
        self.0.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next server message (`None` when the socket closed).
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            let m = timeout(STEP, self.0.next())
                .await
                .expect("no message in time");
            match m {
                Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads until a message of type `kind`.
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            let m = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("closed before {kind}"));
            if m["type"] == kind {
                return m;
            }
        }
    }

    /// Sends `join`; returns the first answer (`joined` or `error`).
    pub async fn join(&mut self, room: &str, identity: &str) -> Value {
        self.send(json!({
            "type": "join", "version": 1, "room": room, "name": identity,
            "token": token(room, identity),
        }))
        .await;
        loop {
            let m = self.recv().await.expect("closed before joined");
            if m["type"] == "joined" || m["type"] == "error" {
                return m;
            }
        }
    }
}

pub async fn connect(url: &str) -> Ws<impl AsyncRead + AsyncWrite + Unpin> {
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    Ws(ws)
}

/// A participant that publishes one audio track (a 60-byte packet every 20 ms) over UDP and
/// receives the others', counting the RTP packets it receives in `received`, until `stop` turns
/// true (and for at most `limit`).
pub async fn call(
    url: String,
    room: &str,
    identity: &str,
    limit: Duration,
    received: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let mut ws = connect(&url).await;
    assert_eq!(ws.join(room, identity).await["type"], "joined");
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let mut pending = Some(pending);
    ws.send(json!({"type": "offer", "sdp": offer.to_sdp_string()}))
        .await;
    let pt = rtc
        .codec_config()
        .find(|p| p.spec().codec == Codec::Opus)
        .unwrap()
        .pt();

    let end = Instant::now() + limit;
    let mut next_audio = Instant::now();
    let mut seq: u64 = 0;
    let mut connected = false;
    let mut closed = false;
    let mut buf = vec![0u8; 2048];
    while Instant::now() < end && !*stop.borrow_and_update() {
        let now = Instant::now();
        if connected && now >= next_audio {
            if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
                let ts = (seq * 960) as u32;
                tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, now, vec![0xfc; 60]));
                seq += 1;
            }
            next_audio += Duration::from_millis(20);
        }
        let deadline = loop {
            match rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Output::Timeout(t) => break t,
                Output::Event(Event::Connected) => connected = true,
                Output::Event(Event::RtpPacket(_)) => {
                    received.fetch_add(1, Ordering::Relaxed);
                }
                Output::Event(_) => {}
            }
        };
        let wake = deadline
            .min(end)
            .min(if connected { next_audio } else { end });
        let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake));
        tokio::select! {
            m = ws.recv() => {
                let Some(m) = m else {
                    // Removed, or the server went away: nothing to leave.
                    closed = true;
                    break;
                };
                match m["type"].as_str() {
                    Some("answer") => {
                        let answer = SdpAnswer::from_sdp_string(m["sdp"].as_str().unwrap()).unwrap();
                        if let Some(p) = pending.take() {
                            rtc.sdp_api().accept_answer(p, answer).unwrap();
                        }
                    }
                    Some("offer") => {
                        let offer = SdpOffer::from_sdp_string(m["sdp"].as_str().unwrap()).unwrap();
                        let answer = rtc.sdp_api().accept_offer(offer).unwrap();
                        ws.send(json!({"type": "answer", "sdp": answer.to_sdp_string()})).await;
                    }
                    _ => {}
                }
            }
            r = socket.recv_from(&mut buf) => {
                let (n, source) = r.unwrap();
                if let Ok(r) = Receive::new(Protocol::Udp, source, local, &buf[..n]) {
                    rtc.handle_input(Input::Receive(Instant::now(), r)).unwrap();
                }
            }
            _ = sleep => rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
            changed = stop.changed() => if changed.is_err() { break },
        }
    }
    if !closed {
        ws.send(json!({"type": "leave"})).await;
    }
}
