//! The real `sfu` binary as a child process on 127.0.0.1, and a WebSocket client that speaks
//! the protocol as JSON: shared by the tests that need a whole server.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite};
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
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sfu"))
            .args(["serve", "--http", &http.to_string()])
            .args(["--udp-ip", "127.0.0.1", "--udp-port", "0", "--workers", "1"])
            .args(args)
            .env("SFU_API_KEY", KEY)
            .env("SFU_API_SECRET", SECRET)
            .env("SFU_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("the sfu binary starts");
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
