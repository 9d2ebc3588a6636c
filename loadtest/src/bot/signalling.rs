//! The WebSocket side of a bot: sending client messages, reading server messages (including
//! ones newer than the `signal` crate this was built with), leaving.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use signal::protocol::{ClientMessage, ServerMessage};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::BotError;

/// The longest a WebSocket connect, a `join` or a send may take.
pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a leaving bot waits for the server's `left`.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Messages the reader task may hold before it waits for the bot.
pub const INCOMING_QUEUE: usize = 32;

/// The client's WebSocket.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Signalling messages read by a bot's reader task.
pub type Incomings = mpsc::Receiver<Result<Option<Incoming>, BotError>>;

/// The render-size preference for a received video, as the protocol's `track_settings` message.
///
/// Built by hand so that this crate does not need a `signal` that has the message; once the
/// message is in `signal::protocol::ClientMessage` everywhere, build it from the enum instead.
pub fn track_settings_message(track_id: &str, visible: bool, width: u32, height: u32) -> String {
    serde_json::json!({
        "type": "track_settings",
        "track_id": track_id,
        "visible": visible,
        "width": width,
        "height": height,
    })
    .to_string()
}

pub async fn send_json(
    tx: &mut SplitSink<Ws, Message>,
    msg: &ClientMessage,
) -> Result<(), BotError> {
    let text = serde_json::to_string(msg).map_err(|e| BotError::Ws(e.to_string()))?;
    send_text(tx, text).await
}

pub async fn send_text(tx: &mut SplitSink<Ws, Message>, text: String) -> Result<(), BotError> {
    match timeout(SIGNAL_TIMEOUT, tx.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(BotError::Ws(e.to_string())),
        Err(_) => Err(BotError::Timeout("websocket send")),
    }
}

/// A server message as this bot reads it. Messages that newer servers send and that the
/// `signal` crate this was built with may not know yet are read from the JSON directly.
pub enum Incoming {
    /// A message of the protocol as `signal` has it.
    Known(ServerMessage),
    /// `publisher_layers`: the simulcast layers of one of our tracks that somebody needs.
    PublisherLayers {
        /// Rids to send.
        active: Vec<String>,
    },
    /// `stream_state`: whether a subscribed video is forwarded, and which layer.
    StreamState {
        /// `active`, or the reason it is paused (`paused:bandwidth`, `paused:hidden`, ...).
        state: String,
    },
    /// Anything else: skipped, as a browser would.
    Other,
}

pub fn parse_incoming(text: &str) -> Incoming {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return Incoming::Other;
    };
    match v.get("type").and_then(|t| t.as_str()) {
        Some("publisher_layers") => Incoming::PublisherLayers {
            active: v
                .get("active")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r.as_str().map(String::from))
                        .take(8)
                        .collect()
                })
                .unwrap_or_default(),
        },
        Some("stream_state") => {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("?");
            let state = match field("state") {
                "active" => "active".to_string(),
                s => format!("{s}:{}", field("reason"))
                    .chars()
                    .take(48)
                    .collect(),
            };
            Incoming::StreamState { state }
        }
        _ => serde_json::from_value::<ServerMessage>(v).map_or(Incoming::Other, Incoming::Known),
    }
}

/// The next server message; `None` when the socket closed. Frames that are not text are skipped
/// (at most a few in a row).
pub async fn next_incoming(rx: &mut SplitStream<Ws>) -> Result<Option<Incoming>, BotError> {
    for _ in 0..16 {
        match rx.next().await {
            None => return Ok(None),
            Some(Err(e)) => return Err(BotError::Ws(e.to_string())),
            Some(Ok(Message::Text(t))) => return Ok(Some(parse_incoming(&t))),
            Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(_)) => continue,
        }
    }
    Err(BotError::Ws("no text message in 16 frames".into()))
}

/// The next message of the protocol as `signal` knows it, skipping others (at most 16).
pub async fn next_message(rx: &mut SplitStream<Ws>) -> Result<Option<ServerMessage>, BotError> {
    for _ in 0..16 {
        match next_incoming(rx).await? {
            None => return Ok(None),
            Some(Incoming::Known(m)) => return Ok(Some(m)),
            Some(_) => continue,
        }
    }
    Err(BotError::Ws("no known message in 16".into()))
}

/// Says `leave` and waits briefly for `left`; errors here do not matter any more.
pub async fn leave(tx: &mut SplitSink<Ws, Message>, incoming: &mut Incomings) {
    if send_json(tx, &ClientMessage::Leave).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LEAVE_TIMEOUT;
    for _ in 0..64 {
        match tokio::time::timeout_at(deadline, incoming.recv()).await {
            Ok(Some(Ok(Some(Incoming::Known(ServerMessage::Left { .. })))))
            | Ok(Some(Ok(None)))
            | Ok(Some(Err(_)))
            | Ok(None)
            | Err(_) => break,
            Ok(Some(Ok(Some(_)))) => continue,
        }
    }
    let _ = timeout(Duration::from_millis(500), tx.close()).await;
}

pub fn message_type(m: &ServerMessage) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(String::from))
        .unwrap_or_else(|| "?".into())
}

/// Largest HTTP answer read for a development token.
const MAX_HTTP_ANSWER: usize = 64 * 1024;

/// Percent-encodes a query value (everything but unreserved characters).
fn query_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The status code and body of an HTTP/1.1 answer (`Content-Length`, chunked, or until close).
pub fn parse_http_answer(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Some((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    // Each turn takes one chunk; the body is at most MAX_HTTP_ANSWER bytes.
    for _ in 0..MAX_HTTP_ANSWER {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some((status, out));
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
    None
}

/// A participant token from a server in development mode (`GET /api/dev/token?room=&name=`).
/// `None` when the server has no such endpoint (404): older servers, or servers with API keys.
pub async fn fetch_dev_token(
    authority: &str,
    prefix: &str,
    room: &str,
    name: &str,
) -> Result<Option<String>, BotError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = TcpStream::connect(authority)
            .await
            .map_err(|e| BotError::Connect(format!("token: {e}")))?;
        let req = format!(
            "GET {prefix}/api/dev/token?room={}&name={} HTTP/1.1\r\nHost: {authority}\r\n\
             Connection: close\r\n\r\n",
            query_escape(room),
            query_escape(name)
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| BotError::Connect(format!("token: {e}")))?;
        let mut raw = Vec::with_capacity(2048);
        let mut chunk = [0u8; 4096];
        while raw.len() < MAX_HTTP_ANSWER {
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| BotError::Connect(format!("token: {e}")))?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, BotError>(raw)
    };
    let raw = timeout(SIGNAL_TIMEOUT, fetch)
        .await
        .map_err(|_| BotError::Timeout("dev token"))??;
    let Some((status, body)) = parse_http_answer(&raw) else {
        return Err(BotError::Connect("token: unreadable HTTP answer".into()));
    };
    match status {
        200 => {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| BotError::Connect(format!("token: {e}")))?;
            match v.get("token").and_then(|t| t.as_str()) {
                Some(t) => Ok(Some(t.to_string())),
                None => Err(BotError::Connect("token: no `token` in the answer".into())),
            }
        }
        404 => Ok(None),
        other => Err(BotError::Connect(format!("token: HTTP {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_messages() {
        let layers = r#"{"type":"publisher_layers","track_id":"p-1","active":["q","h"]}"#;
        match parse_incoming(layers) {
            Incoming::PublisherLayers { active } => assert_eq!(active, ["q", "h"]),
            _ => panic!("publisher_layers not read"),
        }
        let state = r#"{"type":"stream_state","participant_id":"p","track_id":"p-1","state":"paused","reason":"hidden"}"#;
        match parse_incoming(state) {
            Incoming::StreamState { state } => assert_eq!(state, "paused:hidden"),
            _ => panic!("stream_state not read"),
        }
        assert!(matches!(
            parse_incoming(r#"{"type":"pong"}"#),
            Incoming::Known(ServerMessage::Pong)
        ));
        for other in [
            r#"{"type":"future_thing"}"#,
            "not json",
            "[]",
            r#"{"type":7}"#,
        ] {
            assert!(matches!(parse_incoming(other), Incoming::Other), "{other}");
        }
    }

    #[test]
    fn http_answers() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{\"token\":\"t\"}";
        assert_eq!(
            parse_http_answer(plain),
            Some((200, br#"{"token":"t"}"#.to_vec()))
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"to\r\n9\r\nken\":\"t\"}\r\n0\r\n\r\n";
        assert_eq!(
            parse_http_answer(chunked),
            Some((200, br#"{"token":"t"}"#.to_vec()))
        );
        let missing = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse_http_answer(missing), Some((404, Vec::new())));
        assert_eq!(parse_http_answer(b"HTTP/1.1 200"), None);
        assert_eq!(parse_http_answer(b"garbage\r\n\r\n"), None);
        assert_eq!(query_escape("a b/c-d"), "a%20b%2Fc-d");
    }

    #[test]
    fn track_settings_is_the_protocol_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&track_settings_message("p-1", true, 640, 360)).unwrap();
        assert_eq!(v["type"], "track_settings");
        // The server's own parser takes it (fails here if the protocol changes shape).
        let text = track_settings_message("p-1", false, 0, 0);
        assert!(
            serde_json::from_str::<signal::protocol::ClientMessage>(&text).is_ok(),
            "{text}"
        );
        assert_eq!(v["track_id"], "p-1");
        assert_eq!(v["visible"], true);
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(640), Some(360))
        );
    }
}
