//! One synthetic participant: it joins over the WebSocket like a browser, negotiates its one peer
//! connection (str0m, RTP mode, full ICE as the controlling side), publishes synthetic media and
//! measures what it receives.
//!
//! The media loop ([`Bot`]) is the same whatever the server; only signalling differs: this
//! server's protocol here, Janus's VideoRoom API in [`janus`] (which turns Janus's messages into
//! the same offers and answers).
//!
//! A bot is one task. Each turn of its loop waits for the first of: a datagram on its UDP socket,
//! a signalling message, or the earliest deadline (the `Rtc`'s own timeout, the next media packet,
//! the next counter flush, the end of the run). Every input is followed by draining
//! `poll_output` until it returns a timeout.

mod janus;
mod publisher;
mod receiver;
mod sdp;

pub use janus::JanusRoom;
pub use sdp::keep_loopback_candidates;
mod signalling;
mod socket;
mod whip;

pub use whip::WhipWhep;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::StreamExt;
use serde::Serialize;
use signal::auth::{KeySet, TokenSpec};
use signal::protocol::{ClientMessage, ServerMessage, PROTOCOL_VERSION};
use socket::BotSocket;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout};
use tokio_tungstenite::tungstenite::Message;

use crate::attack::{sdp_ufrag, Intel};
use crate::live::{Clock, Live, Pending, FLUSH_INTERVAL};
use crate::media::LAYER_RIDS;
use crate::scenario::{BotSpec, MediaConfig, Publish};
use crate::stats::{latency_histogram, Kind, TrackReport};
use hdrhistogram::Histogram;
use publisher::{negotiated_pt, Publisher};
use receiver::Receiver;
pub use signalling::{fetch_dev_token, track_settings_message};
use signalling::{
    leave, message_type, next_incoming, next_message, send_json, send_text, Incoming, Incomings,
    Ws, INCOMING_QUEUE, SIGNAL_TIMEOUT,
};

/// ICE and DTLS must be up this long after `joined`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A keep-alive `ping` this often (the server closes silent sockets).
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Receive calls (each up to a few datagrams or GRO trains) in one go, before the loop looks at
/// anything else.
const RECV_CALLS: usize = 8;
/// `poll_output` calls after one input before the loop moves on (str0m always ends with a
/// timeout; this only bounds a misbehaving connection).
const MAX_DRAIN: usize = 4096;
/// Server errors kept per bot.
const MAX_ERRORS_KEPT: usize = 8;
/// Distinct `stream_state` states counted per bot.
const MAX_STATES_KEPT: usize = 16;
/// Signalling messages handled in one turn.
const MAX_SIGNAL_BATCH: usize = 16;
/// Redirects between the nodes of a cluster a join follows.
const MAX_REDIRECTS: usize = 3;

/// The kind of server the bots talk to.
#[derive(Debug, Clone)]
pub enum ServerKind {
    /// This server, through its own protocol.
    Sfu,
    /// Janus's VideoRoom plugin, through the Janus API over a WebSocket.
    Janus(JanusRoom),
    /// Any server with WHIP and WHEP endpoints.
    WhipWhep(Arc<WhipWhep>),
}

/// What all bots of a run share.
pub struct Env {
    /// Which server, and so which signalling.
    pub server: ServerKind,
    /// `ws://host:port/ws` of each node bots join through (one for a single server).
    pub ws_urls: Vec<String>,
    /// Where the `join` token comes from.
    pub token: TokenSource,
    /// The IP bots bind their UDP sockets to.
    pub bind_ip: IpAddr,
    /// Whether bots receive with UDP GRO (see [`socket`]).
    pub gro: bool,
    /// Whether ICE may use candidates that are not on the loopback network.
    pub allow_remote: bool,
    /// Addresses besides loopback that ICE may use without `allow_remote` (a server's address in
    /// a network namespace of this machine).
    pub allow_ips: Vec<IpAddr>,
    /// What publishers send.
    pub media: Arc<MediaConfig>,
    /// One DTLS certificate for every bot (making one costs milliseconds).
    pub cert: DtlsCert,
    /// The shared clock.
    pub clock: Clock,
    /// Shared counters.
    pub live: Arc<Live>,
    /// When every bot leaves.
    pub end: Instant,
    /// Render size to announce for every received video (see [`track_settings_message`]).
    pub render_size: Option<(u32, u32)>,
    /// Where bots leave what they saw of the server for the attacker (none without attacks).
    pub intel: Option<Arc<Intel>>,
}

/// Where a bot's `join` token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// No token.
    None,
    /// The same token for every bot.
    Fixed(String),
    /// One per bot from the server's development endpoint, when it has one.
    Dev {
        /// `host:port` of the server.
        authority: String,
        /// Path prefix.
        prefix: String,
    },
    /// One per bot, minted here with an API key of the server (as `sfu token` does), each with
    /// the bot's own identity.
    Keys {
        /// The key and its secret (`Debug` shows the name only).
        keys: KeySet,
        /// The key's name.
        key: String,
    },
}

impl TokenSource {
    /// A source that mints with `key` and `secret`; an error when the server would refuse them.
    pub fn keys(key: &str, secret: &str) -> Result<TokenSource, String> {
        let keys = KeySet::single(key, secret).map_err(|e| format!("--api-key {key}: {e}"))?;
        Ok(TokenSource::Keys {
            keys,
            key: key.to_owned(),
        })
    }

    /// The token of one session in `room` as `identity` (also its display name): fixed, fetched
    /// from the server's development endpoint, minted, or none.
    pub async fn token_for(&self, room: &str, identity: &str) -> Result<Option<String>, BotError> {
        match self {
            TokenSource::None => Ok(None),
            TokenSource::Fixed(t) => Ok(Some(t.clone())),
            TokenSource::Dev { authority, prefix } => {
                fetch_dev_token(authority, prefix, room, identity).await
            }
            TokenSource::Keys { .. } => match self.mint(room, identity) {
                Some(Ok(token)) => Ok(Some(token)),
                Some(Err(e)) => Err(BotError::Connect(e)),
                None => Ok(None),
            },
        }
    }

    /// A participant token for `room` with identity `identity` (and that display name), from a
    /// [`TokenSource::Keys`]; `None` for the other sources.
    pub fn mint(&self, room: &str, identity: &str) -> Option<Result<String, String>> {
        let TokenSource::Keys { keys, key } = self else {
            return None;
        };
        let spec = TokenSpec {
            name: Some(identity.to_owned()),
            ..TokenSpec::participant(room, identity)
        };
        Some(
            keys.mint(key, &spec)
                .map(|(token, _)| token)
                .map_err(|(field, e)| format!("token {field}: {}", e.message)),
        )
    }
}

/// Why a bot stopped early.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The WebSocket could not be opened.
    #[error("websocket connect: {0}")]
    Connect(String),
    /// The WebSocket failed or closed.
    #[error("websocket: {0}")]
    Ws(String),
    /// The server refused something essential.
    #[error("server error {code}: {message}")]
    Server {
        /// Stable error code.
        code: String,
        /// Human text.
        message: String,
    },
    /// A step did not finish in time.
    #[error("timeout: {0}")]
    Timeout(&'static str),
    /// A socket error.
    #[error("udp: {0}")]
    Io(#[from] std::io::Error),
    /// str0m refused SDP or input.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// The server removed the bot.
    #[error("removed by the server: {0}")]
    Removed(String),
}

/// What a bot reports at the end.
#[derive(Debug, Clone, Serialize)]
pub struct BotReport {
    /// Display name.
    pub name: String,
    /// Room.
    pub room: String,
    /// `video-pub`, `audio-pub` or `viewer`.
    pub role: &'static str,
    /// The id the server gave it.
    pub participant_id: Option<String>,
    /// Tracks it should have received.
    pub expected_tracks: usize,
    /// Tracks it received.
    pub received_tracks: usize,
    /// Why it stopped early.
    pub error: Option<String>,
    /// Error messages from the server (first few).
    pub server_errors: Vec<String>,
    /// WebSocket open to `joined`.
    pub join_ms: Option<f64>,
    /// `joined` to ICE+DTLS connected.
    pub connect_ms: Option<f64>,
    /// `joined` to the first media packet received.
    pub first_media_ms: Option<f64>,
    /// For video publishers: whether the server answered the simulcast offer with receive rids.
    pub simulcast_accepted: Option<bool>,
    /// Keyframe requests received from the server.
    pub keyframe_requests: u64,
    /// Packets received on tracks beyond the measured ones.
    pub unmeasured_packets: u64,
    /// Server offers answered.
    pub renegotiations: u64,
    /// `publisher_layers` messages received (the server pausing or resuming our layers).
    pub publisher_layer_updates: u64,
    /// `stream_state` messages received.
    pub stream_state_messages: u64,
    /// `stream_state` messages by state (`active`, `paused:bandwidth`, ...).
    pub stream_states: BTreeMap<String, u64>,
    /// Per received track.
    #[serde(skip)]
    pub tracks: Vec<TrackReport>,
    /// Latency of all measured packets: audio, video.
    #[serde(skip)]
    pub latency: Option<[Histogram<u64>; 2]>,
}

impl BotReport {
    /// Adds what another connection of the same bot measured (a receiving connection beside the
    /// publishing one, or one of several): tracks, latency, counts, errors.
    fn absorb(&mut self, part: BotReport) {
        self.received_tracks += part.received_tracks;
        self.tracks.extend(part.tracks);
        match (&mut self.latency, part.latency) {
            (Some(mine), Some(theirs)) => {
                for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                    // Same bounds on both sides: adding cannot fail.
                    let _ = m.add(t);
                }
            }
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
        self.first_media_ms = match (self.first_media_ms, part.first_media_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if self.connect_ms.is_none() {
            self.connect_ms = part.connect_ms;
        }
        self.unmeasured_packets += part.unmeasured_packets;
        self.keyframe_requests += part.keyframe_requests;
        self.renegotiations += part.renegotiations;
        for e in part.server_errors {
            if self.server_errors.len() < MAX_ERRORS_KEPT {
                self.server_errors.push(e);
            }
        }
    }

    fn new(spec: &BotSpec) -> Self {
        BotReport {
            name: spec.name.clone(),
            room: spec.room.clone(),
            role: spec.publish.role(),
            participant_id: None,
            expected_tracks: spec.expected_tracks,
            received_tracks: 0,
            error: None,
            server_errors: Vec::new(),
            join_ms: None,
            connect_ms: None,
            first_media_ms: None,
            simulcast_accepted: None,
            keyframe_requests: 0,
            unmeasured_packets: 0,
            renegotiations: 0,
            publisher_layer_updates: 0,
            stream_state_messages: 0,
            stream_states: BTreeMap::new(),
            tracks: Vec::new(),
            latency: None,
        }
    }
}

/// Runs one bot until the end of the run; never panics on network input.
pub async fn run(spec: BotSpec, env: Arc<Env>, index: usize) -> BotReport {
    env.live.started.fetch_add(1, Relaxed);
    let mut report = BotReport::new(&spec);
    let url = env.ws_urls[index % env.ws_urls.len().max(1)].clone();
    let result = match &env.server {
        ServerKind::Sfu => run_inner(&spec, &env, &url, &mut report).await,
        ServerKind::Janus(room) => janus::run(&spec, &env, room, &url, &mut report).await,
        ServerKind::WhipWhep(ww) => whip::run(&spec, &env, ww, &mut report).await,
    };
    if let Err(e) = result {
        env.live.failed.fetch_add(1, Relaxed);
        tracing::debug!(bot = %spec.name, "stopped: {e}");
        report.error = Some(e.to_string());
    }
    env.live.done.fetch_add(1, Relaxed);
    report
}

async fn run_inner(
    spec: &BotSpec,
    env: &Env,
    first_url: &str,
    report: &mut BotReport,
) -> Result<(), BotError> {
    // Bot names are unique in the run: one identity per bot.
    let token = env.token.token_for(&spec.room, &spec.name).await?;
    let opened = Instant::now();
    let mut url = first_url.to_owned();
    let mut redirects = 0;
    // A node of a cluster may send the join to the node that serves the room.
    let (mut tx, mut rx, participant_id) = loop {
        let (ws, _) = timeout(
            SIGNAL_TIMEOUT,
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| BotError::Timeout("websocket connect"))?
        .map_err(|e| BotError::Connect(e.to_string()))?;
        let (mut tx, mut rx) = ws.split();
        send_json(
            &mut tx,
            &ClientMessage::Join {
                version: PROTOCOL_VERSION,
                room: spec.room.clone(),
                name: spec.name.clone(),
                token: token.clone(),
                region: None,
            },
        )
        .await?;
        match timeout(SIGNAL_TIMEOUT, next_message(&mut rx)).await {
            Err(_) => return Err(BotError::Timeout("joined")),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(None)) => return Err(BotError::Ws("closed before joined".into())),
            Ok(Ok(Some(ServerMessage::Joined { participant_id, .. }))) => {
                break (tx, rx, participant_id)
            }
            Ok(Ok(Some(ServerMessage::Redirect { url: to }))) if redirects < MAX_REDIRECTS => {
                redirects += 1;
                url = to;
            }
            Ok(Ok(Some(ServerMessage::Error { code, message }))) => {
                return Err(BotError::Server {
                    code: code.as_str().into(),
                    message,
                })
            }
            Ok(Ok(Some(other))) => {
                return Err(BotError::Ws(format!(
                    "expected joined, got {}",
                    message_type(&other)
                )))
            }
        }
    };
    let joined = Instant::now();
    report.join_ms = Some(ms(joined - opened));
    report.participant_id = Some(participant_id);
    env.live.joined.fetch_add(1, Relaxed);

    let socket = BotSocket::bind(SocketAddr::new(env.bind_ip, 0), env.gro)?;
    let local = socket.local_addr()?;
    let mut bot = Bot::new(spec, env, local, joined)?;
    let offer = bot.first_offer()?;
    send_json(
        &mut tx,
        &ClientMessage::Offer {
            sdp: offer,
            sources: None,
        },
    )
    .await?;

    // Signalling is read by a task of its own: polling the WebSocket in the media loop would
    // cost a read attempt (and a buffer fill) per datagram.
    let (in_tx, mut incoming) = mpsc::channel(INCOMING_QUEUE);
    let reader = tokio::spawn(async move {
        // Ends when the socket closes or fails, or when the bot stops listening.
        loop {
            let m = next_incoming(&mut rx).await;
            let last = !matches!(m, Ok(Some(_)));
            if in_tx.send(m).await.is_err() || last {
                break;
            }
        }
    });
    let result = bot
        .run(&socket, &mut SignalOut::Ws(&mut tx), &mut incoming, report)
        .await;
    bot.finish(report);
    if result.is_ok() {
        leave(&mut tx, &mut incoming).await;
    }
    reader.abort();
    result
}

/// Where a bot's signalling messages go: this server's WebSocket, or the task that speaks
/// another server's API for the bot.
enum SignalOut<'a> {
    /// This server's WebSocket.
    Ws(&'a mut SplitSink<Ws, Message>),
    /// Messages of this server's protocol, for a task to translate (it keeps the session alive
    /// itself: no pings).
    Channel(&'a mpsc::Sender<String>),
    /// No signalling after the first answer (WHIP and WHEP): what the bot would send is dropped.
    Nowhere,
}

impl SignalOut<'_> {
    async fn send_text(&mut self, text: String) -> Result<(), BotError> {
        match self {
            SignalOut::Ws(tx) => send_text(tx, text).await,
            SignalOut::Channel(tx) => match timeout(SIGNAL_TIMEOUT, tx.send(text)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(BotError::Ws("signalling ended".into())),
                Err(_) => Err(BotError::Timeout("signalling send")),
            },
            SignalOut::Nowhere => Ok(()),
        }
    }

    async fn ping(&mut self) -> Result<(), BotError> {
        match self {
            SignalOut::Ws(tx) => send_json(tx, &ClientMessage::Ping).await,
            SignalOut::Channel(_) | SignalOut::Nowhere => Ok(()),
        }
    }
}

/// Socket errors that an ICMP message from an earlier send can cause: the socket goes on.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionRefused, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionRefused | ConnectionReset | Interrupted)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A bot's connection and its media.
struct Bot<'a> {
    spec: &'a BotSpec,
    env: &'a Env,
    rtc: Rtc,
    local: SocketAddr,
    joined: Instant,
    pending_offer: Option<SdpPendingOffer>,
    /// This bot's ICE ufrag (from its first offer), for [`Intel`].
    local_ufrag: Option<String>,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    /// The first answer was accepted: media can be set up.
    negotiated: bool,
    connected: bool,
    publisher: Option<Publisher>,
    receiver: Receiver,
    pending: Pending,
    /// Signalling messages to send after the current input.
    outbox: Vec<String>,
    first_media: Option<Instant>,
    connected_at: Option<Instant>,
    keyframe_requests: u64,
    disconnected: bool,
    /// Whether this connection counts in the shared `joined`/`connected` counters (a bot's second
    /// peer connection does not).
    counted: bool,
    /// An offer shaped for Janus: simulcast rids listed highest first (Janus takes the first as
    /// the best) and no inactive m-lines.
    janus_offer: bool,
    /// A WHEP player's offer: one receive-only audio and one receive-only video m-line.
    whep_offer: bool,
}

impl<'a> Bot<'a> {
    fn new(
        spec: &'a BotSpec,
        env: &'a Env,
        local: SocketAddr,
        joined: Instant,
    ) -> Result<Self, BotError> {
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .set_dtls_cert(env.cert.clone())
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(joined);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| BotError::Rtc(format!("candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let publisher = match spec.publish {
            Publish::Nothing => None,
            _ => Some(Publisher::new(env.media.clone(), spec.index as u64)),
        };
        Ok(Bot {
            spec,
            env,
            rtc,
            local,
            joined,
            pending_offer: None,
            local_ufrag: None,
            audio_mid: None,
            video_mid: None,
            negotiated: false,
            connected: false,
            publisher,
            receiver: Receiver::new(spec.max_tracks),
            pending: Pending::default(),
            outbox: Vec::new(),
            first_media: None,
            connected_at: None,
            keyframe_requests: 0,
            disconnected: false,
            counted: true,
            janus_offer: false,
            whep_offer: false,
        })
    }

    /// The first offer: the tracks this bot publishes (inactive m-lines for a pure viewer).
    fn first_offer(&mut self) -> Result<String, BotError> {
        let (audio_dir, video_dir) = match self.spec.publish {
            Publish::Nothing if self.whep_offer => (Direction::RecvOnly, Direction::RecvOnly),
            Publish::Nothing => (Direction::Inactive, Direction::Inactive),
            Publish::Audio => (Direction::SendOnly, Direction::Inactive),
            Publish::Video { audio } => (
                if audio {
                    Direction::SendOnly
                } else {
                    Direction::Inactive
                },
                Direction::SendOnly,
            ),
        };
        let simulcast = (video_dir == Direction::SendOnly && self.env.media.simulcast).then(|| {
            let mut s = Simulcast::new();
            let mut rids: Vec<&str> = LAYER_RIDS
                .iter()
                .take(self.env.media.layers.len())
                .copied()
                .collect();
            if self.janus_offer {
                rids.reverse();
            }
            for rid in rids {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let mut api = self.rtc.sdp_api();
        let skip = |dir| self.janus_offer && dir == Direction::Inactive;
        let audio = (!skip(audio_dir))
            .then(|| api.add_media(MediaKind::Audio, audio_dir, None, None, None));
        let video = (!skip(video_dir))
            .then(|| api.add_media(MediaKind::Video, video_dir, None, None, simulcast));
        let Some((offer, pending)) = api.apply() else {
            return Err(BotError::Rtc("no offer to make".into()));
        };
        if audio_dir == Direction::SendOnly {
            self.audio_mid = audio;
        }
        if video_dir == Direction::SendOnly {
            self.video_mid = video;
        }
        self.pending_offer = Some(pending);
        let sdp = offer.to_sdp_string();
        if self.env.intel.is_some() {
            self.local_ufrag = sdp_ufrag(&sdp);
        }
        Ok(sdp)
    }

    async fn run(
        &mut self,
        socket: &BotSocket,
        out: &mut SignalOut<'_>,
        incoming: &mut Incomings,
        report: &mut BotReport,
    ) -> Result<(), BotError> {
        let mut rtc_deadline = self.drain(socket.udp(), Instant::now())?;
        let mut next_flush = Instant::now() + FLUSH_INTERVAL;
        let mut next_ping = Instant::now() + PING_INTERVAL;
        let connect_deadline = self.joined + CONNECT_TIMEOUT;
        let end = self.env.end;
        // The loop ends at `end`; every turn waits for input or a deadline no later than `end`.
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            if !self.connected && now >= connect_deadline {
                return Err(BotError::Timeout("ICE/DTLS connect"));
            }
            if self.disconnected {
                return Err(BotError::Rtc("ICE disconnected".into()));
            }
            let mut wake = rtc_deadline.min(next_flush).min(next_ping).min(end);
            if !self.connected {
                wake = wake.min(connect_deadline);
            }
            if let Some(p) = self.publisher.as_ref().filter(|_| self.connected) {
                if let Some(due) = p.next_due() {
                    wake = wake.min(due);
                }
            }
            tokio::select! {
                r = socket.readable() => {
                    r?;
                    // str0m wants its output drained after every input.
                    for _ in 0..RECV_CALLS {
                        let read = socket.recv_with(|source, data| {
                            rtc_deadline = self.receive(socket.udp(), data, source)?;
                            Ok::<_, BotError>(())
                        })?;
                        match read {
                            Ok((0, _)) => break,
                            Ok(_) => {}
                            Err(e) if transient(&e) => self.pending.input_errors += 1,
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                m = incoming.recv() => {
                    let mut m = m.unwrap_or(Ok(None));
                    for _ in 0..MAX_SIGNAL_BATCH {
                        match m? {
                            None => return Err(BotError::Ws("server closed the socket".into())),
                            Some(msg) => self.on_signal(msg, report)?,
                        }
                        // Take more messages only if they are already there.
                        match incoming.try_recv() {
                            Ok(next) => m = next,
                            Err(_) => break,
                        }
                    }
                    // A new remote description may have given ICE its first pairs: its checks
                    // start on a timeout (a server that sends none first waits for ours).
                    let now = Instant::now();
                    self.rtc
                        .handle_input(Input::Timeout(now))
                        .map_err(|e| BotError::Rtc(e.to_string()))?;
                    rtc_deadline = self.drain(socket.udp(), now)?;
                }
                _ = sleep_until(wake.into()) => {}
            }
            for text in self.outbox.drain(..) {
                out.send_text(text).await?;
            }
            let now = Instant::now();
            let mut wrote = false;
            if self.connected {
                if let Some(p) = &mut self.publisher {
                    wrote = p.produce(&mut self.rtc, now, &self.env.clock, &mut self.pending);
                }
            }
            if wrote || now >= rtc_deadline {
                self.rtc
                    .handle_input(Input::Timeout(now))
                    .map_err(|e| BotError::Rtc(e.to_string()))?;
                rtc_deadline = self.drain(socket.udp(), now)?;
            }
            if now >= next_flush {
                self.env.live.flush(&mut self.pending);
                next_flush = now + FLUSH_INTERVAL;
            }
            if now >= next_ping {
                out.ping().await?;
                next_ping = now + PING_INTERVAL;
            }
        }
    }

    /// One datagram in; returns the connection's next deadline.
    fn receive(
        &mut self,
        socket: &UdpSocket,
        data: &[u8],
        source: SocketAddr,
    ) -> Result<Instant, BotError> {
        self.pending.datagrams_in += 1;
        let now = Instant::now();
        match Receive::new(Protocol::Udp, source, self.local, data) {
            Ok(r) => {
                // A refused datagram (garbage, stale DTLS) is dropped; the connection goes on.
                if let Err(e) = self.rtc.handle_input(Input::Receive(now, r)) {
                    tracing::trace!(%source, "datagram refused: {e}");
                    self.pending.input_errors += 1;
                }
            }
            Err(e) => tracing::trace!(%source, len = data.len(), "datagram not read: {e}"),
        }
        self.drain(socket, now)
    }

    /// Polls the connection until it asks to be woken at a time; sends what it transmits.
    fn drain(&mut self, socket: &UdpSocket, now: Instant) -> Result<Instant, BotError> {
        for _ in 0..MAX_DRAIN {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Ok(t),
                Ok(Output::Transmit(t)) => {
                    let ip = t.destination.ip();
                    if !self.env.allow_remote
                        && !ip.is_loopback()
                        && !self.env.allow_ips.contains(&ip)
                    {
                        self.pending.send_errors += 1;
                        continue;
                    }
                    match socket.try_send_to(&t.contents, t.destination) {
                        Ok(_) => self.pending.datagrams_out += 1,
                        Err(_) => self.pending.send_errors += 1,
                    }
                }
                Ok(Output::Event(e)) => self.on_event(e, now),
                Err(e) => return Err(BotError::Rtc(e.to_string())),
            }
        }
        Ok(now + Duration::from_millis(1))
    }

    fn on_event(&mut self, e: Event, now: Instant) {
        match e {
            Event::Connected if !self.connected => {
                self.connected = true;
                self.connected_at = Some(now);
                if self.counted {
                    self.env.live.connected.fetch_add(1, Relaxed);
                }
                if let Some(p) = &mut self.publisher {
                    p.start(now);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.disconnected = true;
            }
            Event::MediaAdded(m) if m.direction.is_receiving() => {
                let now_us = self.env.clock.now_us();
                self.receiver.media_added(m.mid, now_us);
            }
            Event::KeyframeRequest(r) => {
                self.keyframe_requests += 1;
                self.env.live.keyframe_requests.fetch_add(1, Relaxed);
                if let Some(p) = &mut self.publisher {
                    p.request_keyframe(r.mid, r.rid);
                }
            }
            Event::RtpPacket(pkt) => {
                if self.first_media.is_none() {
                    self.first_media = Some(now);
                }
                let now_us = self.env.clock.now_us();
                let new = self
                    .receiver
                    .packet(&mut self.rtc, now_us, &pkt, &mut self.pending);
                if let Some(track) = new.filter(|_| self.spec.subscribe) {
                    self.env.live.tracks_receiving.fetch_add(1, Relaxed);
                    if let (Some((w, h)), Kind::Video) = (self.env.render_size, track.kind) {
                        self.outbox
                            .push(track_settings_message(&track.track_id, true, w, h));
                    }
                }
            }
            _ => {}
        }
    }

    fn on_signal(&mut self, msg: Incoming, report: &mut BotReport) -> Result<(), BotError> {
        let msg = match msg {
            Incoming::Known(m) => m,
            Incoming::PublisherLayers { active } => {
                report.publisher_layer_updates += 1;
                if let Some(p) = &mut self.publisher {
                    p.set_active_layers(&active);
                }
                return Ok(());
            }
            Incoming::StreamState { state } => {
                report.stream_state_messages += 1;
                if report.stream_states.len() < MAX_STATES_KEPT
                    || report.stream_states.contains_key(&state)
                {
                    *report.stream_states.entry(state).or_default() += 1;
                }
                return Ok(());
            }
            Incoming::Other => return Ok(()),
        };
        match msg {
            ServerMessage::Answer { sdp } => {
                let Some(pending) = self.pending_offer.take() else {
                    return Ok(()); // not ours to answer: ignore
                };
                let sdp = self.filter_candidates(&sdp);
                if let Some(intel) = &self.env.intel {
                    intel.observe(&self.spec.room, self.local_ufrag.as_deref(), &sdp);
                }
                let answer =
                    SdpAnswer::from_sdp_string(&sdp).map_err(|e| BotError::Rtc(e.to_string()))?;
                self.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .map_err(|e| BotError::Rtc(e.to_string()))?;
                if !self.negotiated {
                    self.negotiated = true;
                    self.setup_media(&sdp, report);
                }
            }
            ServerMessage::Offer { sdp } => {
                if self.pending_offer.is_some() {
                    // Our own offer is out: the server gives way and offers again later.
                    return Ok(());
                }
                let sdp = self.filter_candidates(&sdp);
                let offer =
                    SdpOffer::from_sdp_string(&sdp).map_err(|e| BotError::Rtc(e.to_string()))?;
                let answer = self
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|e| BotError::Rtc(e.to_string()))?;
                report.renegotiations += 1;
                let text = serde_json::to_string(&ClientMessage::Answer {
                    sdp: answer.to_sdp_string(),
                })
                .map_err(|e| BotError::Ws(e.to_string()))?;
                self.outbox.push(text);
            }
            ServerMessage::Error { code, message }
                if report.server_errors.len() < MAX_ERRORS_KEPT =>
            {
                report
                    .server_errors
                    .push(format!("{}: {message}", code.as_str()));
            }
            ServerMessage::Left { reason } => return Err(BotError::Removed(reason)),
            _ => {}
        }
        Ok(())
    }

    fn filter_candidates(&self, sdp: &str) -> String {
        if self.env.allow_remote {
            sdp.to_string()
        } else {
            sdp::keep_candidates(sdp, &self.env.allow_ips)
        }
    }

    /// The first answer arrived: find the payload types and whether simulcast was accepted.
    fn setup_media(&mut self, answer: &str, report: &mut BotReport) {
        let now = Instant::now();
        let Some(p) = &mut self.publisher else {
            return;
        };
        if let Some(mid) = self.audio_mid {
            if let Some(pt) = negotiated_pt(&self.rtc, mid, Codec::Opus) {
                p.set_audio(mid, pt, now);
            }
        }
        if let Some(mid) = self.video_mid {
            let simulcast = self.env.media.simulcast
                && sdp::answer_receives_simulcast(answer, &mid.to_string());
            report.simulcast_accepted = Some(simulcast);
            if let Some(pt) = negotiated_pt(&self.rtc, mid, Codec::Vp8) {
                p.set_video(mid, pt, simulcast, now);
            }
        }
    }

    /// Ends the measurement: open freezes count, counters go out, tracks go into the report.
    fn finish(&mut self, report: &mut BotReport) {
        let end_us = self.env.clock.now_us();
        for t in self.receiver.tracks_mut() {
            t.finish(end_us);
        }
        self.env.live.flush(&mut self.pending);
        report.connect_ms = self.connected_at.map(|t| ms(t - self.joined));
        report.first_media_ms = self.first_media.map(|t| ms(t - self.joined));
        report.keyframe_requests = self.keyframe_requests;
        report.unmeasured_packets = self.receiver.unmeasured;
        if self.spec.subscribe {
            report.tracks = self
                .receiver
                .tracks()
                .iter()
                .map(|t| t.report(&self.spec.name))
                .collect();
            report.received_tracks = report.tracks.iter().filter(|t| t.packets > 0).count();
            let mut latency = [latency_histogram(), latency_histogram()];
            for t in self.receiver.tracks() {
                let slot = usize::from(t.kind == Kind::Video);
                // Same bounds on both sides: adding cannot fail.
                let _ = latency[slot].add(&t.latency);
            }
            report.latency = Some(latency);
        }
    }
}
