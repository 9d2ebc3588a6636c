//! Connections of the attacker: TCP and WebSockets from its own source addresses, and how what
//! comes back is counted.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use super::tally::{internal_text, Tally};
use super::Ctx;
use crate::bot::{fetch_dev_token, TokenSource};

/// A TCP connect or WebSocket handshake gives up after this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The server must say `joined` within this.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The attacker's WebSocket.
pub type AttackWs = WebSocketStream<TcpStream>;

/// The `n`-th TCP source address of an attack: `127.0.{10 + slot}.{1 + n % sources}`; none for
/// a server on IPv6 (only `::1` is loopback there).
pub fn tcp_source(server: SocketAddr, slot: u8, n: usize, sources: usize) -> Option<IpAddr> {
    source(server, 10 + slot, n, sources)
}

/// The `n`-th forged UDP source address of an attack: `127.0.{100 + slot}.{1 + n % sources}`.
pub fn udp_source(server: SocketAddr, slot: u8, n: usize, sources: usize) -> Option<IpAddr> {
    source(server, 100 + slot, n, sources)
}

fn source(server: SocketAddr, third: u8, n: usize, sources: usize) -> Option<IpAddr> {
    server.is_ipv4().then(|| {
        let host = 1 + (n % sources.clamp(1, 250)) as u8;
        IpAddr::V4(Ipv4Addr::new(127, 0, third, host))
    })
}

/// A short name for a failed connect, for the `refused` counters.
fn io_reason(what: &str, e: &std::io::Error) -> String {
    format!("{what} {:?}", e.kind())
}

/// A TCP connection from `source` (the system picks one when `None`).
pub async fn connect_from(source: Option<IpAddr>, server: SocketAddr) -> Result<TcpStream, String> {
    let socket = if server.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| io_reason("socket", &e))?;
    if let Some(ip) = source {
        socket
            .bind(SocketAddr::new(ip, 0))
            .map_err(|e| io_reason("bind", &e))?;
    }
    match timeout(CONNECT_TIMEOUT, socket.connect(server)).await {
        Err(_) => Err("tcp connect timeout".into()),
        Ok(Err(e)) => Err(io_reason("tcp", &e)),
        Ok(Ok(s)) => Ok(s),
    }
}

/// A WebSocket to the server from `source`; the error is a short reason for `refused`.
pub async fn ws_from(ctx: &Ctx, source: Option<IpAddr>) -> Result<AttackWs, String> {
    let tcp = connect_from(source, ctx.server).await?;
    match timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async(ctx.ws_url.as_str(), tcp),
    )
    .await
    {
        Err(_) => Err("handshake timeout".into()),
        Ok(Err(tungstenite::Error::Http(resp))) => Err(format!("http {}", resp.status().as_u16())),
        Ok(Err(tungstenite::Error::Io(e))) => Err(io_reason("handshake", &e)),
        Ok(Err(e)) => Err(format!("handshake {}", short(&e.to_string()))),
        Ok(Ok((ws, _))) => Ok(ws),
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// What one read from the server's WebSocket was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A text message of this `type` (`error:<code>`, `left:<reason>` for those).
    Message(String),
    /// A frame that is not text (ping, pong, binary).
    Frame,
    /// The connection ended this way (close code and reason, `dropped`, `eof`).
    End(String),
}

/// Counts one read from the server: message types, error codes (checking the text for internal
/// details), closes. Returns what it was.
pub fn count_read(tally: &Tally, read: Option<Result<Message, tungstenite::Error>>) -> Seen {
    let seen = match read {
        None => Seen::End("eof".into()),
        Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
            Seen::End("eof".into())
        }
        Some(Err(tungstenite::Error::Io(e))) => Seen::End(format!("dropped ({:?})", e.kind())),
        Some(Err(tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        ))) => Seen::End("dropped (reset without a close frame)".into()),
        Some(Err(e)) => Seen::End(format!("dropped ({})", short(&e.to_string()))),
        Some(Ok(Message::Close(Some(f)))) => {
            Seen::End(format!("{} {}", u16::from(f.code), short(&f.reason)))
        }
        Some(Ok(Message::Close(None))) => Seen::End("close without code".into()),
        Some(Ok(Message::Text(t))) => Seen::Message(server_message(tally, &t)),
        Some(Ok(_)) => Seen::Frame,
    };
    match &seen {
        Seen::Message(m) => tally.answer(m),
        Seen::End(how) => tally.closed(how),
        Seen::Frame => {}
    }
    seen
}

/// The name a server message is counted under; error texts are checked for internal details.
fn server_message(tally: &Tally, text: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        tally.alarm_example("the server sent text that is not JSON".into(), text);
        return "not json".into();
    };
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("?");
    match field("type") {
        "error" => {
            let message = field("message");
            if let Some(why) = internal_text(message) {
                tally.alarm_example(format!("error {} carries {why}", field("code")), message);
            }
            tally.example(&format!("error {}", field("code")), message);
            format!("error:{}", field("code"))
        }
        "left" => format!("left:{}", field("reason")),
        t => short(t),
    }
}

/// A token for `room` as the bots get one; `Err` is a short reason.
pub async fn token(ctx: &Ctx, room: &str, name: &str) -> Result<Option<String>, String> {
    match &ctx.token {
        TokenSource::None => Ok(None),
        TokenSource::Fixed(t) => Ok(Some(t.clone())),
        TokenSource::Dev { authority, prefix } => fetch_dev_token(authority, prefix, room, name)
            .await
            .map_err(|e| short(&e.to_string())),
        TokenSource::Keys { .. } => {
            // The attacker joins many times under one name: each join its own identity, as a
            // development token would have, so that it never pushes out its own other sockets.
            static JOINS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = JOINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let identity = format!("{name}-{n}");
            match ctx.token.mint(room, &identity) {
                Some(minted) => minted.map(Some).map_err(|e| short(&e)),
                None => Ok(None),
            }
        }
    }
}

/// Sends one text message; false when the socket is gone.
pub async fn send(ws: &mut AttackWs, text: String) -> bool {
    matches!(
        timeout(CONNECT_TIMEOUT, ws.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

/// Joins `room` as `name` from `source`: a WebSocket on which `joined` arrived, or a short
/// reason why not (counted already).
pub async fn join(
    ctx: &Ctx,
    tally: &Tally,
    source: Option<IpAddr>,
    room: &str,
    name: &str,
) -> Result<AttackWs, String> {
    let token = token(ctx, room, name).await.inspect_err(|e| {
        tally.refused(&format!("token: {e}"));
    })?;
    let mut ws = ws_from(ctx, source)
        .await
        .inspect_err(|e| tally.refused(e))?;
    let join = serde_json::json!({
        "type": "join", "version": signal::protocol::PROTOCOL_VERSION,
        "room": room, "name": name, "token": token,
    });
    if !send(&mut ws, join.to_string()).await {
        return Err("join not sent".into());
    }
    tally.sent("join", 1);
    let deadline = Instant::now() + JOIN_TIMEOUT;
    // Each turn reads one frame; the deadline bounds the loop.
    loop {
        let read = match tokio::time::timeout_at(deadline.into(), ws.next()).await {
            Err(_) => return Err("no joined in time".into()),
            Ok(r) => r,
        };
        match count_read(tally, read) {
            Seen::Message(m) if m == "joined" => return Ok(ws),
            Seen::Message(m) if m.starts_with("error:") => return Err(m),
            Seen::End(how) => return Err(how),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attack::Attack;

    #[test]
    fn sources_per_attack() {
        let v4: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_eq!(tcp_source(v4, 3, 0, 1), Some("127.0.13.1".parse().unwrap()));
        assert_eq!(tcp_source(v4, 3, 5, 4), Some("127.0.13.2".parse().unwrap()));
        assert_eq!(
            udp_source(v4, 0, 249, 300),
            Some("127.0.100.250".parse().unwrap())
        );
        assert_eq!(
            udp_source(v4, 0, 250, 300),
            Some("127.0.100.1".parse().unwrap())
        );
        assert_eq!(tcp_source(v6, 0, 0, 1), None);
    }

    #[test]
    fn reads_are_counted() {
        let t = Tally::new(Attack::BadSdp, None);
        let err = r#"{"type":"error","code":"invalid_sdp","message":"bad at 0xdeadbeef00"}"#;
        assert_eq!(
            count_read(&t, Some(Ok(Message::Text(err.into())))),
            Seen::Message("error:invalid_sdp".into())
        );
        let left = r#"{"type":"left","reason":"slow_consumer"}"#;
        count_read(&t, Some(Ok(Message::Text(left.into()))));
        count_read(&t, None);
        let o = t.outcome();
        assert_eq!(o.answers["error:invalid_sdp"], 1);
        assert_eq!(o.answers["left:slow_consumer"], 1);
        assert_eq!(o.closes["eof"], 1);
        assert_eq!(o.alarms.len(), 1, "{:?}", o.alarms);
    }
}
