//! Signalling with Janus's VideoRoom plugin (Janus 1.x) over the Janus API on a WebSocket
//! (subprotocol `janus-protocol`), for the same media loop ([`Bot`]) as against this server.
//!
//! Per peer connection: one Janus session. A publisher attaches one handle, joins the room as a
//! publisher and publishes its offer; Janus's answer comes back as an event. A viewer attaches two
//! handles: one joins as a publisher that never publishes, only to hear of the room's publishers
//! (present ones in `joined`, later ones in `publishers` events), the other is one multistream
//! subscription: `join` as subscriber with the streams of every publisher present, then
//! `subscribe` for each later one; Janus offers, the bot answers with `start`.
//!
//! A bot that publishes and also receives (a meeting) needs two peer connections with Janus: it
//! runs a publisher connection and a viewer connection (that skips its own feed) side by side and
//! reports them as one bot.
//!
//! A task per connection owns the WebSocket: it turns Janus's messages into the offers and
//! answers of this server's protocol for the bot, turns the bot's answers into `start`, and
//! sends the session keep-alive.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signal::protocol::ServerMessage;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use super::signalling::{Incoming, Ws, INCOMING_QUEUE, SIGNAL_TIMEOUT};
use super::socket::BotSocket;
use super::{ms, Bot, BotError, BotReport, Env, SignalOut};
use crate::scenario::{BotSpec, Publish};

/// The Janus plugin.
const PLUGIN: &str = "janus.plugin.videoroom";
/// The session keep-alive (Janus drops sessions silent for 60 s).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(25);
/// Messages read while waiting for the answer to one request.
const MAX_WAIT_MESSAGES: usize = 256;
/// Messages kept that arrived while waiting for something else.
const MAX_EARLY: usize = 64;
/// How long the end of a connection (destroying the session) may take.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Janus's VideoRoom error code for a room that exists already.
const ROOM_EXISTS: i64 = 427;
/// Feeds one viewer subscribes to at most.
const MAX_FEEDS: usize = 1000;

/// How the bots create each room on Janus (the first bot of a room creates it, the others find it
/// there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JanusRoom {
    /// Concurrent publishers allowed in the room.
    pub publishers: usize,
    /// The bitrate cap Janus announces to publishers (REMB), bit/s; 0 for none.
    pub bitrate_bps: u64,
    /// How often Janus asks publishers for a keyframe on its own, seconds; 0 for never.
    pub fir_freq_s: u64,
}

/// The numeric Janus room id of a room name: FNV-1a, within 1..=2^31 (safe in any JSON reader).
pub fn room_id(name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % (1 << 31) + 1
}

/// Runs one bot against Janus until the end of the run.
pub async fn run(
    spec: &BotSpec,
    env: &Env,
    room: &JanusRoom,
    url: &str,
    report: &mut BotReport,
) -> Result<(), BotError> {
    if spec.publish == Publish::Nothing || !spec.subscribe {
        return connection(spec, env, room, url, report, None, true).await;
    }
    // Publishing and receiving: two peer connections, reported as one bot.
    let publishing = BotSpec {
        subscribe: false,
        ..spec.clone()
    };
    let viewing = BotSpec {
        publish: Publish::Nothing,
        ..spec.clone()
    };
    let mut viewer_report = BotReport::new(&viewing);
    let (p, v) = tokio::join!(
        connection(&publishing, env, room, url, report, None, true),
        connection(
            &viewing,
            env,
            room,
            url,
            &mut viewer_report,
            Some(spec.name.as_str()),
            false
        ),
    );
    report.expected_tracks = spec.expected_tracks;
    report.absorb(viewer_report);
    p?;
    v.map_err(|e| BotError::Rtc(format!("receiving connection: {e}")))
}

/// One peer connection with its own Janus session: a publisher (`spec.publish` is something) or
/// a viewer of every publisher but `exclude`. `counted`: counts in the shared join counters.
async fn connection(
    spec: &BotSpec,
    env: &Env,
    room: &JanusRoom,
    url: &str,
    report: &mut BotReport,
    exclude: Option<&str>,
    counted: bool,
) -> Result<(), BotError> {
    let opened = Instant::now();
    let mut janus = Janus::connect(url).await?;
    let created = janus.request(json!({"janus": "create"})).await?;
    janus.session = created["data"]["id"]
        .as_u64()
        .ok_or_else(|| BotError::Ws("no session id from Janus".into()))?;
    let main = janus.attach().await?;
    let room_id = room_id(&spec.room);
    let create = json!({
        "request": "create",
        "room": room_id,
        "description": spec.room,
        "publishers": room.publishers,
        "bitrate": room.bitrate_bps,
        "fir_freq": room.fir_freq_s,
        "audiocodec": "opus",
        "videocodec": "vp8",
        "notify_joining": false,
        "permanent": false,
    });
    match janus.message(main, create, None).await {
        Ok(_) => {}
        Err(BotError::Server { code, .. }) if code == ROOM_EXISTS.to_string() => {}
        Err(e) => return Err(e),
    }
    let joined = janus
        .message(
            main,
            json!({
                "request": "join",
                "ptype": "publisher",
                "room": room_id,
                "display": spec.name,
            }),
            None,
        )
        .await?;
    let feed = joined["id"].as_u64().unwrap_or(0);
    let viewing = spec.publish == Publish::Nothing;
    let mut subs = Subscriptions::new(viewing, exclude.map(str::to_owned));
    if viewing {
        subs.handle = janus.attach().await?;
        subs.learn(&joined);
    }
    let joined_at = Instant::now();
    report.join_ms = Some(ms(joined_at - opened));
    report.participant_id = Some(feed.to_string());
    if counted {
        env.live.joined.fetch_add(1, Relaxed);
    }

    let socket = BotSocket::bind(SocketAddr::new(env.bind_ip, 0), env.gro)?;
    let local = socket.local_addr()?;
    let mut bot = Bot::new(spec, env, local, joined_at)?;
    bot.counted = counted;
    bot.janus_offer = true;
    if !viewing {
        let offer = bot.first_offer()?;
        janus
            .send_message(
                main,
                json!({"request": "publish"}),
                Some(json!({"type": "offer", "sdp": offer})),
            )
            .await?;
        janus.trickle_completed(main).await?;
    }

    let (in_tx, mut incoming) = mpsc::channel(INCOMING_QUEUE);
    let (out_tx, out_rx) = mpsc::channel::<String>(INCOMING_QUEUE);
    let task = tokio::spawn(signalling(janus, main, subs, in_tx, out_rx));
    let result = bot
        .run(
            &socket,
            &mut SignalOut::Channel(&out_tx),
            &mut incoming,
            report,
        )
        .await;
    bot.finish(report);
    // The task destroys the session when the bot stops talking.
    drop(out_tx);
    drop(incoming);
    let abort = task.abort_handle();
    if timeout(LEAVE_TIMEOUT + Duration::from_secs(1), task)
        .await
        .is_err()
    {
        abort.abort();
    }
    result
}

/// What a viewer subscribed to, and what it is about to.
struct Subscriptions {
    /// Whether this connection subscribes at all.
    enabled: bool,
    /// The subscriber handle.
    handle: u64,
    /// The subscriber `join` was sent.
    joined: bool,
    /// A `join`, `subscribe` or an offer of Janus is being answered: wait before the next.
    busy: bool,
    /// The bot answered at least once (trickle end sent).
    answered: bool,
    /// The display name of a publisher not to subscribe to (the bot's own publishing half).
    exclude: Option<String>,
    /// Feeds subscribed to or asked for.
    feeds: BTreeSet<u64>,
    /// Streams to subscribe to next: feed and its mid (`None`: all of the feed's).
    waiting: Vec<(u64, Option<String>)>,
}

impl Subscriptions {
    fn new(enabled: bool, exclude: Option<String>) -> Self {
        Subscriptions {
            enabled,
            handle: 0,
            joined: false,
            busy: false,
            answered: false,
            exclude,
            feeds: BTreeSet::new(),
            waiting: Vec::new(),
        }
    }

    /// Takes the publishers of a `joined` or `event` message of the publisher handle.
    fn learn(&mut self, data: &Value) {
        if !self.enabled {
            return;
        }
        let Some(list) = data["publishers"].as_array() else {
            return;
        };
        for p in list {
            let Some(id) = p["id"].as_u64() else {
                continue;
            };
            if self.exclude.is_some() && p["display"].as_str() == self.exclude.as_deref() {
                continue;
            }
            if self.feeds.len() >= MAX_FEEDS || !self.feeds.insert(id) {
                continue;
            }
            // The media it sends, not the m-lines it left inactive.
            let mids: Vec<String> = p["streams"]
                .as_array()
                .map(|streams| {
                    streams
                        .iter()
                        .filter(|s| s["disabled"] != true)
                        .filter_map(|s| s["mid"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if mids.is_empty() {
                self.waiting.push((id, None));
            }
            for mid in mids {
                self.waiting.push((id, Some(mid)));
            }
        }
    }

    /// A feed is gone: it may come back as a new publisher.
    fn forget(&mut self, id: u64) {
        self.feeds.remove(&id);
        self.waiting.retain(|(f, _)| *f != id);
    }

    /// The next request of the subscriber handle, if one is due.
    fn next_request(&mut self, room: u64) -> Option<Value> {
        if !self.enabled || self.busy || self.waiting.is_empty() {
            return None;
        }
        let streams: Vec<Value> = self
            .waiting
            .drain(..)
            .map(|(feed, mid)| match mid {
                Some(mid) => json!({"feed": feed, "mid": mid}),
                None => json!({"feed": feed}),
            })
            .collect();
        self.busy = true;
        if self.joined {
            Some(json!({"request": "subscribe", "streams": streams}))
        } else {
            self.joined = true;
            Some(json!({
                "request": "join",
                "ptype": "subscriber",
                "room": room,
                "streams": streams,
            }))
        }
    }
}

/// Owns the WebSocket after the setup: Janus events to the bot, the bot's answers to Janus.
async fn signalling(
    mut janus: Janus,
    main: u64,
    mut subs: Subscriptions,
    to_bot: mpsc::Sender<Result<Option<Incoming>, BotError>>,
    mut from_bot: mpsc::Receiver<String>,
) {
    let room = janus.room;
    let result = async {
        let mut next_keepalive = Instant::now() + KEEPALIVE_INTERVAL;
        // One turn per message either way or keep-alive; ends when the bot stops or on an error.
        loop {
            // Messages that came during the setup first.
            let msg = if let Some(m) = janus.early.pop_front() {
                Some(m)
            } else {
                if let Some(body) = subs.next_request(room) {
                    janus.send_message(subs.handle, body, None).await?;
                }
                tokio::select! {
                    m = janus.recv() => Some(m?),
                    text = from_bot.recv() => {
                        let Some(text) = text else { return Ok(()) };
                        on_bot_message(&mut janus, &mut subs, &text).await?;
                        None
                    }
                    _ = sleep_until(next_keepalive.into()) => {
                        janus.send(json!({"janus": "keepalive"})).await?;
                        next_keepalive = Instant::now() + KEEPALIVE_INTERVAL;
                        None
                    }
                }
            };
            if let Some(m) = msg {
                tracing::trace!("from Janus: {}", short(&m));
                for out in on_janus_message(&m, main, &mut subs)? {
                    if to_bot.send(Ok(Some(out))).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    match result {
        Ok(()) => janus.destroy().await,
        Err(e) => {
            let _ = to_bot.send(Err(e)).await;
        }
    }
}

/// A message of the bot in this server's protocol: its answer to Janus's offer becomes `start`.
async fn on_bot_message(
    janus: &mut Janus,
    subs: &mut Subscriptions,
    text: &str,
) -> Result<(), BotError> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Ok(());
    };
    if v["type"] != "answer" || !subs.enabled {
        return Ok(());
    }
    let sdp = v["sdp"].as_str().unwrap_or_default();
    janus
        .send_message(
            subs.handle,
            json!({"request": "start"}),
            Some(json!({"type": "answer", "sdp": sdp})),
        )
        .await?;
    if !subs.answered {
        subs.answered = true;
        janus.trickle_completed(subs.handle).await?;
    }
    Ok(())
}

/// A message of Janus after the setup: what the bot must hear of it (an error ends the bot).
fn on_janus_message(
    m: &Value,
    main: u64,
    subs: &mut Subscriptions,
) -> Result<Vec<Incoming>, BotError> {
    let mut out = Vec::new();
    let sender = m["sender"].as_u64();
    match m["janus"].as_str().unwrap_or_default() {
        "event" => {
            let data = &m["plugindata"]["data"];
            let from_subscriber = subs.enabled && sender == Some(subs.handle);
            if let Some(code) = data["error_code"].as_i64() {
                let message = data["error"].as_str().unwrap_or("?").to_string();
                if from_subscriber && subs.joined {
                    // A feed left before the subscription reached it: go on without it.
                    subs.busy = false;
                    out.push(Incoming::Known(ServerMessage::Error {
                        code: signal::protocol::ErrorCode::NotFound,
                        message: format!("janus {code}: {message}"),
                    }));
                    return Ok(out);
                }
                return Err(BotError::Server {
                    code: code.to_string(),
                    message,
                });
            }
            if sender == Some(main) {
                subs.learn(data);
                for key in ["unpublished", "leaving"] {
                    if let Some(id) = data[key].as_u64() {
                        subs.forget(id);
                    }
                }
            }
            if from_subscriber && data["started"].is_string() {
                subs.busy = false;
            }
            if from_subscriber && data["videoroom"] == "updated" && m["jsep"].is_null() && subs.busy
            {
                // Nothing to renegotiate.
                subs.busy = false;
            }
            let jsep = &m["jsep"];
            if let Some(sdp) = jsep["sdp"].as_str() {
                tracing::trace!(?sender, "Janus SDP:\n{sdp}");
                let sdp = sdp.to_string();
                match jsep["type"].as_str() {
                    Some("answer") => out.push(Incoming::Known(ServerMessage::Answer { sdp })),
                    Some("offer") => {
                        if from_subscriber {
                            subs.busy = true;
                        }
                        out.push(Incoming::Known(ServerMessage::Offer { sdp }))
                    }
                    _ => {}
                }
            }
        }
        "hangup" => {
            return Err(BotError::Removed(format!(
                "janus hangup: {}",
                m["reason"].as_str().unwrap_or("?")
            )))
        }
        "detached" | "timeout" => {
            return Err(BotError::Removed(format!(
                "janus {}",
                m["janus"].as_str().unwrap_or_default()
            )))
        }
        "error" => return Err(janus_error(m)),
        // ack, success, webrtcup, media, slowlink, trickle: nothing to do.
        _ => {}
    }
    Ok(out)
}

/// A Janus message for a log line, without its SDP.
fn short(m: &Value) -> String {
    let mut m = m.clone();
    if m["jsep"]["sdp"].is_string() {
        m["jsep"]["sdp"] = json!("...");
    }
    m.to_string().chars().take(600).collect()
}

fn janus_error(m: &Value) -> BotError {
    BotError::Server {
        code: m["error"]["code"]
            .as_i64()
            .map_or_else(|| "?".into(), |c| c.to_string()),
        message: m["error"]["reason"].as_str().unwrap_or("?").to_string(),
    }
}

/// One Janus session over a WebSocket.
struct Janus {
    tx: SplitSink<Ws, Message>,
    rx: SplitStream<Ws>,
    session: u64,
    room: u64,
    transactions: u64,
    /// Messages that arrived while a request waited for its answer.
    early: VecDeque<Value>,
}

impl Janus {
    async fn connect(url: &str) -> Result<Janus, BotError> {
        let mut request = url
            .into_client_request()
            .map_err(|e| BotError::Connect(e.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (ws, _) = timeout(SIGNAL_TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| BotError::Timeout("websocket connect"))?
            .map_err(|e| BotError::Connect(e.to_string()))?;
        let (tx, rx) = ws.split();
        Ok(Janus {
            tx,
            rx,
            session: 0,
            room: 0,
            transactions: 0,
            early: VecDeque::new(),
        })
    }

    /// Sends `v` with a new transaction (and the session, once there is one); returns the
    /// transaction.
    async fn send(&mut self, mut v: Value) -> Result<String, BotError> {
        self.transactions += 1;
        let transaction = format!("t{}", self.transactions);
        v["transaction"] = json!(transaction);
        if self.session != 0 {
            v["session_id"] = json!(self.session);
        }
        tracing::trace!("to Janus: {}", short(&v));
        let text = v.to_string();
        match timeout(SIGNAL_TIMEOUT, self.tx.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => Ok(transaction),
            Ok(Err(e)) => Err(BotError::Ws(e.to_string())),
            Err(_) => Err(BotError::Timeout("websocket send")),
        }
    }

    /// The next JSON message (frames that are not text are skipped, a few at most).
    async fn recv(&mut self) -> Result<Value, BotError> {
        for _ in 0..16 {
            match self.rx.next().await {
                None | Some(Ok(Message::Close(_))) => {
                    return Err(BotError::Ws("Janus closed the socket".into()))
                }
                Some(Err(e)) => return Err(BotError::Ws(e.to_string())),
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(&t)
                        .map_err(|e| BotError::Ws(format!("not JSON from Janus: {e}")))
                }
                Some(Ok(_)) => continue,
            }
        }
        Err(BotError::Ws("no text message in 16 frames".into()))
    }

    /// Sends `v` and waits for its answer: the first message of its transaction that is not an
    /// `ack` (for plugin messages, the plugin's event). Other messages are kept for later.
    async fn request(&mut self, v: Value) -> Result<Value, BotError> {
        let transaction = self.send(v).await?;
        let wait = async {
            for _ in 0..MAX_WAIT_MESSAGES {
                let m = self.recv().await?;
                if m["transaction"].as_str() == Some(transaction.as_str()) && m["janus"] != "ack" {
                    return Ok(m);
                }
                if m["transaction"].is_null() && self.early.len() < MAX_EARLY {
                    self.early.push_back(m);
                }
            }
            Err(BotError::Ws("no answer from Janus".into()))
        };
        let m = timeout(SIGNAL_TIMEOUT, wait)
            .await
            .map_err(|_| BotError::Timeout("Janus answer"))??;
        if m["janus"] == "error" {
            return Err(janus_error(&m));
        }
        Ok(m)
    }

    /// Attaches a VideoRoom handle.
    async fn attach(&mut self) -> Result<u64, BotError> {
        let m = self
            .request(json!({"janus": "attach", "plugin": PLUGIN}))
            .await?;
        m["data"]["id"]
            .as_u64()
            .ok_or_else(|| BotError::Ws("no handle id from Janus".into()))
    }

    fn message_body(handle: u64, body: Value, jsep: Option<Value>) -> Value {
        let mut v = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(jsep) = jsep {
            v["jsep"] = jsep;
        }
        v
    }

    /// A plugin request and its answer's plugin data; a plugin error is an error.
    async fn message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, BotError> {
        if let Some(room) = body["room"].as_u64() {
            self.room = room;
        }
        let m = self.request(Self::message_body(handle, body, jsep)).await?;
        let data = m["plugindata"]["data"].clone();
        if let Some(code) = data["error_code"].as_i64() {
            return Err(BotError::Server {
                code: code.to_string(),
                message: data["error"].as_str().unwrap_or("?").to_string(),
            });
        }
        Ok(data)
    }

    /// A plugin request whose answer comes later as an event.
    async fn send_message(
        &mut self,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<(), BotError> {
        self.send(Self::message_body(handle, body, jsep))
            .await
            .map(|_| ())
    }

    /// Our candidates are all in the SDP.
    async fn trickle_completed(&mut self, handle: u64) -> Result<(), BotError> {
        self.send(json!({
            "janus": "trickle",
            "handle_id": handle,
            "candidate": {"completed": true},
        }))
        .await
        .map(|_| ())
    }

    /// Ends the session (which hangs up its peer connections), briefly.
    async fn destroy(&mut self) {
        let _ = timeout(LEAVE_TIMEOUT, async {
            if self.send(json!({"janus": "destroy"})).await.is_ok() {
                let _ = self.tx.close().await;
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_stable_and_in_range() {
        assert_eq!(room_id("lt1-0"), room_id("lt1-0"));
        assert_ne!(room_id("lt1-0"), room_id("lt1-1"));
        for name in ["", "a", "lt123456-0", "a-much-longer-room-name-of-a-run-9"] {
            let id = room_id(name);
            assert!((1..=1 << 31).contains(&id), "{name}: {id}");
        }
    }

    #[test]
    fn viewers_subscribe_to_every_feed_once_and_skip_their_own() {
        let mut s = Subscriptions::new(true, Some("vpub0-r0".into()));
        s.handle = 7;
        s.learn(&json!({"publishers": [
            {"id": 1, "display": "vpub0-r0"},
            {"id": 2, "display": "vpub1-r0"},
            {"id": 3, "display": "apub0-r0", "streams": [
                {"type": "audio", "mid": "a"},
                {"type": "video", "mid": "v", "disabled": true},
            ]},
        ]}));
        let first = s.next_request(99).expect("a join");
        assert_eq!(first["request"], "join");
        assert_eq!(first["ptype"], "subscriber");
        assert_eq!(first["room"], 99);
        assert_eq!(
            first["streams"],
            json!([{"feed": 2}, {"feed": 3, "mid": "a"}])
        );
        // One at a time: nothing while Janus's offer is out.
        s.learn(&json!({"publishers": [{"id": 4, "display": "vpub2-r0"}, {"id": 2}]}));
        assert!(s.next_request(99).is_none());
        let started = json!({"janus": "event", "sender": 7,
            "plugindata": {"data": {"videoroom": "event", "started": "ok"}}});
        on_janus_message(&started, 1, &mut s).unwrap();
        let next = s.next_request(99).expect("a subscribe");
        assert_eq!(next["request"], "subscribe");
        assert_eq!(next["streams"], json!([{"feed": 4}]));
        // A publishing connection subscribes to nothing.
        let mut p = Subscriptions::new(false, None);
        p.learn(&json!({"publishers": [{"id": 5}]}));
        assert!(p.next_request(1).is_none());
    }

    #[test]
    fn janus_messages_become_offers_answers_and_errors() {
        let mut s = Subscriptions::new(true, None);
        s.handle = 7;
        let answer = json!({"janus": "event", "sender": 1,
            "plugindata": {"data": {"videoroom": "event", "configured": "ok"}},
            "jsep": {"type": "answer", "sdp": "v=0"}});
        let out = on_janus_message(&answer, 1, &mut s).unwrap();
        assert!(
            matches!(&out[..], [Incoming::Known(ServerMessage::Answer { sdp })] if sdp == "v=0")
        );
        let offer = json!({"janus": "event", "sender": 7,
            "plugindata": {"data": {"videoroom": "attached"}},
            "jsep": {"type": "offer", "sdp": "v=0"}});
        let out = on_janus_message(&offer, 1, &mut s).unwrap();
        assert!(matches!(
            &out[..],
            [Incoming::Known(ServerMessage::Offer { .. })]
        ));
        assert!(s.busy);
        let refused = json!({"janus": "event", "sender": 1,
            "plugindata": {"data": {"videoroom": "event", "error_code": 426, "error": "No such room"}}});
        assert!(matches!(
            on_janus_message(&refused, 1, &mut s),
            Err(BotError::Server { code, .. }) if code == "426"
        ));
        let hangup = json!({"janus": "hangup", "sender": 1, "reason": "DTLS alert"});
        assert!(matches!(
            on_janus_message(&hangup, 1, &mut s),
            Err(BotError::Removed(_))
        ));
        let media = json!({"janus": "webrtcup", "sender": 1});
        assert!(on_janus_message(&media, 1, &mut s).unwrap().is_empty());
    }
}
