//! Rooms that span nodes: the relay between two nodes of a cluster (see `docs/cluster.md`).
//!
//! Within a process the workers of a room exchange [`ShardMessage`]s over their command queues
//! (`core::shard`). Between nodes the same messages cross one WebRTC connection per pair of
//! nodes and room, made with str0m: ICE on UDP, DTLS, and one reliable, ordered SCTP data
//! channel that carries them in order, encoded by `core::shard_wire`. The offer and the answer
//! travel over HTTP (`POST /cluster/relay`), each signed with the cluster secret (HMAC-SHA256
//! over a timestamp and the body), so the DTLS fingerprints in them, and hence the connection,
//! are authenticated: a node without the secret can neither open a relay nor pose as the other
//! end of one.
//!
//! A link multiplexes every pair of workers holding the room on its two nodes: each worker of
//! the other node appears to the local workers as one more shard id (numbered after the local
//! workers), so the engines link, mirror and relay exactly as between local workers. Each frame
//! names its sending and its receiving worker. The link tells the other end which local workers
//! hold the room when it opens and whenever that changes; every worker of one side is then
//! linked with every worker of the other.
//!
//! A link runs on the thread of the first worker of its room (a task on that worker's runtime),
//! so packets and messages between them cross no thread.
//!
//! The node that takes a room's participant while the room is served elsewhere too opens links
//! to every other node serving it ([`Relay::ensure`]); the others answer. When the link fails
//! (the other node died, or the network between them), or the room has nobody left here, the
//! engines are unlinked: the other node's participants leave and their tracks are unpublished.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::cluster::Cluster;
use super::handle::Command;
use super::rooms::Placement;
use crate::core::{shard_wire, ShardId, ShardMessage};

/// The header carrying a request's or an answer's signature: `{unix seconds}.{hex HMAC}`.
pub const AUTH_HEADER: &str = "sfu-relay-auth";
/// How far a signature's time may be from this node's clock.
const AUTH_WINDOW: Duration = Duration::from_secs(30);
/// The largest offer or answer accepted (bytes).
pub const MAX_SIGNAL_BYTES: usize = 64 * 1024;
/// Messages a link queues from the local workers before it drops them.
const LINK_QUEUE: usize = 4096;
/// How often a link checks which local workers hold its room.
const LINK_TICK: Duration = Duration::from_millis(100);
/// A link that is not connected after this long is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A link that hears nothing for this long is dead (the other end sends something every
/// [`KEEPALIVE`] at least).
const SILENCE_TIMEOUT: Duration = Duration::from_secs(3);
/// A link with nothing else to send sends an empty frame this often.
const KEEPALIVE: Duration = Duration::from_millis(500);
/// Packets per data-channel message (their messages stay well under 16 KiB).
const PACKETS_PER_FRAME: usize = 8;
/// Bytes a link's data channel may have queued before media for it is dropped.
const MAX_BUFFERED: usize = 2 * 1024 * 1024;
/// Bytes the data channel takes at most: room for events and feedback above [`MAX_BUFFERED`].
/// An event that does not fit ends the link (its two sides would no longer agree).
const SCTP_BUFFER: usize = 8 * 1024 * 1024;
/// Offers made for one link before giving up until the room's next join here.
const OFFER_ATTEMPTS: u32 = 3;
/// The pause between them.
const OFFER_RETRY: Duration = Duration::from_secs(1);
/// The data channel's label.
const LABEL: &str = "sfu-relay";

/// The most workers the other node may say hold a room (each becomes a shard id here, linked
/// with every local worker of the room); a longer list is a malformed frame.
const MAX_REMOTE_WORKERS: usize = 256;
/// Frame kinds on the data channel.
const FRAME_WORKERS: u8 = 0;
const FRAME_SHARD: u8 = 1;
const FRAME_KEEPALIVE: u8 = 2;

/// A message of a local worker for a worker of another node.
#[derive(Debug)]
pub struct Outgoing {
    /// The sending (local) worker.
    pub from: u16,
    /// The receiving worker, on the other node.
    pub to: u16,
    /// The message.
    pub msg: ShardMessage,
}

/// Where a shard id that is not a local worker leads: a worker of another node, through a link.
#[derive(Debug, Clone)]
pub struct Route {
    /// The link's queue.
    pub tx: mpsc::Sender<Outgoing>,
    /// The worker's index on its node.
    pub remote_worker: u16,
}

/// The shard ids of the other nodes' workers, as the local workers address them.
#[derive(Debug, Default)]
pub struct Routes {
    routes: RwLock<HashMap<ShardId, Route>>,
}

impl Routes {
    /// The route of shard `id`, if it is a worker of another node.
    pub fn get(&self, id: ShardId) -> Option<Route> {
        self.routes.read().get(&id).cloned()
    }
}

/// What one side of a relay sends in its HTTP request.
#[derive(Debug, Serialize, Deserialize)]
struct OfferBody {
    /// The offering node's id.
    from: String,
    /// The room.
    room: String,
    /// The SDP offer.
    offer: String,
}

/// The answer.
#[derive(Debug, Serialize, Deserialize)]
struct AnswerBody {
    /// The answering node's id.
    from: String,
    /// The SDP answer.
    answer: String,
}

/// One link as the relay tracks it.
#[derive(Debug)]
struct LinkEntry {
    /// Distinguishes a link from the one that replaced it.
    serial: u64,
    /// This node offered it and it is not connected yet.
    offering: bool,
    /// Set to end it.
    closed: Arc<AtomicBool>,
}

/// The relay of this node: its links to the other nodes, per room.
pub struct Relay {
    cluster: Arc<Cluster>,
    placement: Arc<Mutex<Placement>>,
    workers: Vec<mpsc::Sender<Command>>,
    /// The workers' runtimes: a link runs on the thread of the first worker of its room, so
    /// that handing it packets wakes no other thread.
    runtimes: Vec<tokio::runtime::Handle>,
    routes: Arc<Routes>,
    secret: Vec<u8>,
    /// The address the links' UDP sockets advertise.
    ip: IpAddr,
    http: reqwest::Client,
    /// (room, other node) -> link.
    links: Mutex<HashMap<(String, String), LinkEntry>>,
    serial: AtomicU64,
    /// Shard ids free for the other nodes' workers.
    ids: Mutex<IdPool>,
    /// Signatures of the requests accepted lately, with their time: a replayed request (an
    /// on-path observer resending one) is refused.
    seen: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct IdPool {
    next: u32,
    free: Vec<ShardId>,
}

impl IdPool {
    fn take(&mut self) -> Option<ShardId> {
        if let Some(id) = self.free.pop() {
            return Some(id);
        }
        let id = ShardId::try_from(self.next).ok()?;
        self.next += 1;
        Some(id)
    }
}

type HmacSha256 = Hmac<Sha256>;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `{t}.{hex hmac(secret, "{t}." + body)}`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{t}.{hex}")
}

/// Whether `header` signs `body` with `secret`, at a time within [`AUTH_WINDOW`] of `now`.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: u64) -> bool {
    let Some((t, hex)) = header.split_once('.') else {
        return false;
    };
    let Ok(t) = t.parse::<u64>() else {
        return false;
    };
    if t.abs_diff(now) > AUTH_WINDOW.as_secs() || hex.len() != 64 {
        return false;
    }
    let Some(tag) = (0..32)
        .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

impl Relay {
    /// The relay of a node whose workers are `workers` (their shard ids are their indices).
    pub fn new(
        cluster: Arc<Cluster>,
        placement: Arc<Mutex<Placement>>,
        workers: Vec<mpsc::Sender<Command>>,
        runtimes: Vec<tokio::runtime::Handle>,
        routes: Arc<Routes>,
        secret: &str,
        ip: IpAddr,
    ) -> Result<Arc<Relay>, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("relay HTTP client: {e}"))?;
        let first = workers.len() as u32;
        Ok(Arc::new(Relay {
            cluster,
            placement,
            workers,
            runtimes,
            routes,
            secret: secret.as_bytes().to_vec(),
            ip,
            http,
            links: Mutex::new(HashMap::new()),
            serial: AtomicU64::new(0),
            ids: Mutex::new(IdPool {
                next: first,
                free: Vec::new(),
            }),
            seen: Mutex::new(HashMap::new()),
        }))
    }

    /// The HTTP route the other nodes open links through.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        axum::Router::new()
            .route("/cluster/relay", axum::routing::post(accept))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_SIGNAL_BYTES))
            .with_state(Arc::clone(self))
    }

    /// `room` has (or just got) participants here: open links to the other nodes serving it
    /// that this node has none with yet.
    pub fn ensure(self: &Arc<Self>, room: &str) {
        let relay = Arc::clone(self);
        let room = room.to_owned();
        tokio::spawn(async move {
            let members = match relay.cluster.members(&room).await {
                Ok(m) => m,
                Err(e) => {
                    warn!(room, error = %e, "relay: the room's nodes are unknown");
                    return;
                }
            };
            let me = relay.cluster.node_id().to_owned();
            for (node, _) in members {
                if node == me {
                    continue;
                }
                let relay = Arc::clone(&relay);
                let room = room.clone();
                tokio::spawn(async move {
                    for attempt in 1..=OFFER_ATTEMPTS {
                        if attempt > 1 {
                            tokio::time::sleep(OFFER_RETRY).await;
                            if !relay.placement.lock().has_room(&room) {
                                return;
                            }
                        }
                        // Another link (the other node's offer) may be there by now.
                        let Some(closed) = relay.claim(&room, &node, true) else {
                            return;
                        };
                        let serial = closed.1;
                        match relay.offer(&room, &node, closed).await {
                            Ok(()) => return,
                            Err(e) => {
                                relay.forget(&room, &node, serial);
                                let settled = e.contains(" 409 ") || e.contains(" 404 ");
                                if settled || attempt == OFFER_ATTEMPTS {
                                    debug!(room, node, "relay not opened: {e}");
                                    return;
                                }
                                debug!(room, node, attempt, "relay not opened, trying again: {e}");
                            }
                        }
                    }
                });
            }
        });
    }

    /// Registers a link with `node` for `room`, unless one exists (`offering`: this node is
    /// making it). Returns its close flag and serial.
    fn claim(&self, room: &str, node: &str, offering: bool) -> Option<(Arc<AtomicBool>, u64)> {
        let mut links = self.links.lock();
        let key = (room.to_owned(), node.to_owned());
        if links.contains_key(&key) {
            return None;
        }
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        let closed = Arc::new(AtomicBool::new(false));
        links.insert(
            key,
            LinkEntry {
                serial,
                offering,
                closed: Arc::clone(&closed),
            },
        );
        Some((closed, serial))
    }

    /// Drops the entry of link `serial`, if it is still the current one.
    fn forget(&self, room: &str, node: &str, serial: u64) {
        let mut links = self.links.lock();
        let key = (room.to_owned(), node.to_owned());
        if links.get(&key).is_some_and(|l| l.serial == serial) {
            links.remove(&key);
        }
    }

    fn rtc(&self, now: Instant, socket: &std::net::UdpSocket) -> Result<(Rtc, SocketAddr), String> {
        let port = socket.local_addr().map_err(|e| e.to_string())?.port();
        let local = SocketAddr::new(self.ip, port);
        let mut rtc = RtcConfig::new()
            .set_dtls_cert(crate::core::generate_dtls_cert())
            .set_sctp_max_buffered_amount(SCTP_BUFFER)
            .clear_codecs()
            .build(now);
        let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate);
        Ok((rtc, local))
    }

    /// A new UDP socket for a link, on a port the system picks.
    fn socket(&self) -> Result<std::net::UdpSocket, String> {
        let bind = SocketAddr::new(
            match self.ip {
                IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            },
            0,
        );
        let socket = std::net::UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(socket)
    }

    /// Runs a link on the thread of the first worker of its room (of the HTTP runtime if the
    /// room has gone meanwhile: the link then ends at its first check).
    fn start(self: &Arc<Self>, link: LinkSpec) {
        let worker = self.placement.lock().room_worker(&link.room).ok().flatten();
        let relay = Arc::clone(self);
        let mut link = link;
        let run = async move {
            let std = link.socket.take().expect("a new link has its socket");
            match UdpSocket::from_std(std) {
                Ok(socket) => {
                    Link::new(&relay, link, socket).run().await;
                }
                Err(e) => {
                    warn!(room = %link.room, node = %link.node, "relay socket: {e}");
                    relay.forget(&link.room, &link.node, link.serial);
                }
            }
        };
        match worker.and_then(|w| self.runtimes.get(w)) {
            Some(rt) => {
                rt.spawn(run);
            }
            None => {
                tokio::spawn(run);
            }
        }
    }

    /// Opens the link with `node` for `room`: offer, signed request, signed answer, then runs it.
    async fn offer(
        self: &Arc<Self>,
        room: &str,
        node: &str,
        (closed, serial): (Arc<AtomicBool>, u64),
    ) -> Result<(), String> {
        let entry = self
            .cluster
            .node(node)
            .ok_or_else(|| format!("node {node} is not live"))?;
        let socket = self.socket()?;
        let now = Instant::now();
        let (mut rtc, local) = self.rtc(now, &socket)?;
        let mut api = rtc.sdp_api();
        api.add_channel(LABEL.to_owned());
        let (offer, pending) = api.apply().ok_or("no offer")?;
        let body = serde_json::to_vec(&OfferBody {
            from: self.cluster.node_id().to_owned(),
            room: room.to_owned(),
            offer: offer.to_sdp_string(),
        })
        .map_err(|e| e.to_string())?;
        let url = format!("{}/cluster/relay", entry.url.trim_end_matches('/'));
        let response = self
            .http
            .post(&url)
            .header(AUTH_HEADER, sign(&self.secret, unix_now(), &body))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let auth = response
            .headers()
            .get(AUTH_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!(
                "{url}: {status} {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ));
        }
        if !auth.is_some_and(|a| verify(&self.secret, &a, &bytes, unix_now())) {
            return Err(format!(
                "{url}: the answer is not signed with the cluster secret"
            ));
        }
        let answer: AnswerBody = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if answer.from != node {
            return Err(format!("{url} answered as {}", answer.from));
        }
        let answer = SdpAnswer::from_sdp_string(&answer.answer).map_err(|e| e.to_string())?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())?;
        info!(room, node, "relay opening");
        self.start(LinkSpec {
            room: room.to_owned(),
            node: node.to_owned(),
            rtc,
            socket: Some(socket),
            local,
            closed,
            serial,
        });
        Ok(())
    }

    /// Answers an offer from `from` for `room`.
    async fn answer(self: &Arc<Self>, req: OfferBody) -> Result<AnswerBody, (StatusCode, String)> {
        let room = req.room.as_str();
        let node = req.from.as_str();
        if self.cluster.node(node).is_none() {
            return Err((StatusCode::NOT_FOUND, format!("node {node} is not live")));
        }
        if !self.placement.lock().has_room(room) {
            return Err((StatusCode::NOT_FOUND, "the room is not here".into()));
        }
        // Both nodes offered at once: the offer of the node with the smaller id wins.
        {
            let mut links = self.links.lock();
            let key = (room.to_owned(), node.to_owned());
            if let Some(l) = links.get(&key) {
                if l.offering && self.cluster.node_id() < node {
                    return Err((StatusCode::CONFLICT, "this node's offer goes first".into()));
                }
                l.closed.store(true, Ordering::Relaxed);
                links.remove(&key);
            }
        }
        let offer = SdpOffer::from_sdp_string(&req.offer)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("offer: {e}")))?;
        let internal = |e: String| (StatusCode::INTERNAL_SERVER_ERROR, e);
        let socket = self.socket().map_err(internal)?;
        let (mut rtc, local) = self.rtc(Instant::now(), &socket).map_err(internal)?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("offer: {e}")))?;
        let Some((closed, serial)) = self.claim(room, node, false) else {
            return Err((StatusCode::CONFLICT, "a link is being made".into()));
        };
        info!(room, node, "relay answering");
        self.start(LinkSpec {
            room: room.to_owned(),
            node: node.to_owned(),
            rtc,
            socket: Some(socket),
            local,
            closed,
            serial,
        });
        Ok(AnswerBody {
            from: self.cluster.node_id().to_owned(),
            answer: answer.to_sdp_string(),
        })
    }
}

/// `POST /cluster/relay`: another node opens a link.
async fn accept(
    State(relay): State<Arc<Relay>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let now = unix_now();
    let auth = headers.get(AUTH_HEADER).and_then(|v| v.to_str().ok());
    let Some(auth) = auth.filter(|a| verify(&relay.secret, a, &body, now)) else {
        metrics::counter!("sfu_relay_refused_total", "reason" => "unauthenticated").increment(1);
        return (
            StatusCode::UNAUTHORIZED,
            "not signed with the cluster secret",
        )
            .into_response();
    };
    {
        let mut seen = relay.seen.lock();
        // Older signatures fail the time check anyway.
        seen.retain(|_, t| now.abs_diff(*t) <= 2 * AUTH_WINDOW.as_secs());
        if seen.insert(auth.to_owned(), now).is_some() {
            metrics::counter!("sfu_relay_refused_total", "reason" => "replayed").increment(1);
            return (StatusCode::UNAUTHORIZED, "a replayed request").into_response();
        }
    }
    let req: OfferBody = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("body: {e}")).into_response(),
    };
    match relay.answer(req).await {
        Ok(answer) => {
            let body = serde_json::to_vec(&answer).unwrap_or_default();
            let auth = sign(&relay.secret, unix_now(), &body);
            (
                StatusCode::OK,
                [
                    (AUTH_HEADER, auth),
                    ("content-type", "application/json".into()),
                ],
                body,
            )
                .into_response()
        }
        Err((status, why)) => (status, why).into_response(),
    }
}

/// One relay connection: a str0m connection with one data channel, its UDP socket, and the
/// pairs of workers it joins.
struct Link {
    relay: Arc<Relay>,
    room: String,
    node: String,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    closed: Arc<AtomicBool>,
    serial: u64,
    /// The local workers' queue into the link.
    tx: mpsc::Sender<Outgoing>,
    rx: mpsc::Receiver<Outgoing>,
    channel: Option<ChannelId>,
    /// Local workers holding the room, as last told to the other end.
    local_workers: Vec<u16>,
    /// The other node's workers holding the room -> the shard id they have here.
    remote_workers: Vec<(u16, ShardId)>,
    started: Instant,
    last_heard: Instant,
    connected: bool,
    /// When the link last wrote a frame.
    last_sent: Instant,
    /// An event could not be written: the link ends.
    failed: bool,
    /// `sfu_relay_packets_total`, looked up once.
    packets_in: metrics::Counter,
    packets_out: metrics::Counter,
    buf: Vec<u8>,
}

/// What a link starts from.
struct LinkSpec {
    room: String,
    node: String,
    rtc: Rtc,
    /// Taken when the link starts on its thread.
    socket: Option<std::net::UdpSocket>,
    local: SocketAddr,
    closed: Arc<AtomicBool>,
    serial: u64,
}

impl Link {
    fn new(relay: &Arc<Relay>, spec: LinkSpec, socket: UdpSocket) -> Link {
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let now = Instant::now();
        Link {
            relay: Arc::clone(relay),
            room: spec.room,
            node: spec.node,
            rtc: spec.rtc,
            socket,
            local: spec.local,
            closed: spec.closed,
            serial: spec.serial,
            tx,
            rx,
            channel: None,
            local_workers: Vec::new(),
            remote_workers: Vec::new(),
            started: now,
            last_heard: now,
            connected: false,
            last_sent: now,
            failed: false,
            packets_in: metrics::counter!("sfu_relay_packets_total", "direction" => "in"),
            packets_out: metrics::counter!("sfu_relay_packets_total", "direction" => "out"),
            buf: Vec::with_capacity(16 * 1024),
        }
    }

    async fn run(mut self) {
        let why = self.serve().await;
        info!(room = %self.room, node = %self.node, "relay closed: {why}");
        self.unlink_all();
        self.relay.forget(&self.room, &self.node, self.serial);
    }

    async fn serve(&mut self) -> String {
        let mut datagram = vec![0u8; 2048];
        let mut tick = tokio::time::interval(LINK_TICK);
        loop {
            let deadline = match self.drain().await {
                Ok(t) => t,
                Err(e) => return e,
            };
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                r = self.socket.recv_from(&mut datagram) => {
                    let (n, source) = match r {
                        Ok(x) => x,
                        Err(e) => return format!("socket: {e}"),
                    };
                    let now = Instant::now();
                    if let Ok(r) = Receive::new(Protocol::Udp, source, self.local, &datagram[..n]) {
                        if self.rtc.handle_input(Input::Receive(now, r)).is_ok() {
                            self.last_heard = now;
                        }
                    }
                }
                first = self.rx.recv() => {
                    // Never None: the link holds a sender itself.
                    if let Some(first) = first {
                        self.send(first);
                        for _ in 0..256 {
                            match self.rx.try_recv() {
                                Ok(m) => self.send(m),
                                Err(_) => break,
                            }
                        }
                    }
                }
                () = sleep => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        return format!("connection: {e}");
                    }
                }
                _ = tick.tick() => {
                    if let Some(why) = self.check() {
                        return why;
                    }
                }
            }
        }
    }

    /// The periodic checks: closed, timed out, the room's local workers.
    fn check(&mut self) -> Option<String> {
        if self.closed.load(Ordering::Relaxed) {
            return Some("replaced".into());
        }
        if self.failed {
            return Some("an event did not fit in the connection's buffer".into());
        }
        let now = Instant::now();
        if !self.connected && now.duration_since(self.started) > CONNECT_TIMEOUT {
            return Some("not connected in time".into());
        }
        if self.connected && now.duration_since(self.last_heard) > SILENCE_TIMEOUT {
            return Some("the other node went silent".into());
        }
        let workers: Vec<u16> = self
            .relay
            .placement
            .lock()
            .room_workers(&self.room)
            .unwrap_or_default()
            .into_iter()
            .map(|w| w as u16)
            .collect();
        if workers.is_empty() {
            return Some("the room has nobody here".into());
        }
        if workers != self.local_workers && self.channel.is_some() {
            self.set_local_workers(workers);
        }
        if self.channel.is_some() && now.duration_since(self.last_sent) >= KEEPALIVE {
            let _ = self.write(&[FRAME_KEEPALIVE]);
        }
        None
    }

    /// Polls the connection until it asks to be woken; sends what it transmits.
    async fn drain(&mut self) -> Result<Instant, String> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => return Ok(t),
                Ok(Output::Transmit(t)) => {
                    // A failed send is a lost datagram: ICE and SCTP recover or time out.
                    let _ = self.socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(e)) => self.event(e)?,
                Err(e) => return Err(format!("connection: {e}")),
            }
        }
    }

    fn event(&mut self, e: Event) -> Result<(), String> {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                return Err("ICE disconnected".into());
            }
            Event::ChannelOpen(id, _) => {
                self.channel = Some(id);
                self.connected = true;
                self.relay
                    .links
                    .lock()
                    .entry((self.room.clone(), self.node.clone()))
                    .and_modify(|l| {
                        if l.serial == self.serial {
                            l.offering = false;
                        }
                    });
                info!(room = %self.room, node = %self.node, "relay open");
                let workers = self
                    .relay
                    .placement
                    .lock()
                    .room_workers(&self.room)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| w as u16)
                    .collect();
                self.set_local_workers(workers);
            }
            Event::ChannelData(d) => self.receive(&d.data),
            Event::ChannelClose(_) => return Err("the other node closed it".into()),
            _ => {}
        }
        Ok(())
    }

    /// Tells the other end which local workers hold the room, and links or unlinks them with
    /// the other end's workers.
    fn set_local_workers(&mut self, workers: Vec<u16>) {
        let old = std::mem::replace(&mut self.local_workers, workers);
        for &(_, id) in &self.remote_workers {
            for &w in old.iter().filter(|w| !self.local_workers.contains(w)) {
                self.pair(w, id, false);
            }
            for &w in self.local_workers.iter().filter(|w| !old.contains(w)) {
                self.pair(w, id, true);
            }
        }
        let mut frame = vec![FRAME_WORKERS];
        for w in &self.local_workers {
            frame.extend_from_slice(&w.to_be_bytes());
        }
        if !self.write(&frame) {
            self.failed = true;
        }
    }

    /// Links (or unlinks) local worker `worker` with the other node's worker known here as `id`.
    fn pair(&self, worker: u16, id: ShardId, link: bool) {
        let (room, peer) = (self.room.clone(), id as usize);
        let cmd = if link {
            Command::LinkRoom { room, peer }
        } else {
            Command::UnlinkRoom { room, peer }
        };
        self.command(worker, cmd);
    }

    fn command(&self, worker: u16, cmd: Command) {
        let Some(tx) = self.relay.workers.get(worker as usize) else {
            return;
        };
        if tx.try_send(cmd).is_err() {
            metrics::counter!("sfu_relay_dropped_total", "reason" => "worker_busy").increment(1);
            warn!(room = %self.room, worker, "relay: command for a worker dropped: its queue is full");
        }
    }

    /// One frame from the other end.
    fn receive(&mut self, frame: &[u8]) {
        match frame.split_first() {
            Some((&FRAME_WORKERS, rest)) => match parse_workers(rest) {
                Some(workers) => self.set_remote_workers(&workers),
                None => {
                    metrics::counter!("sfu_relay_refused_total", "reason" => "malformed")
                        .increment(1);
                }
            },
            Some((&FRAME_SHARD, rest)) if rest.len() >= 4 => {
                let from = u16::from_be_bytes([rest[0], rest[1]]);
                let to = u16::from_be_bytes([rest[2], rest[3]]);
                let Some(&(_, id)) = self.remote_workers.iter().find(|(r, _)| *r == from) else {
                    return;
                };
                if !self.local_workers.contains(&to) {
                    return;
                }
                match shard_wire::decode(&rest[4..], Instant::now()) {
                    Ok(msg) => {
                        if let ShardMessage::Media(ref batch) = msg {
                            self.packets_in.increment(batch.len() as u64);
                        }
                        let cmd = Command::Shard {
                            from: id as usize,
                            msg,
                        };
                        if self.relay.workers[to as usize].try_send(cmd).is_err() {
                            metrics::counter!("sfu_relay_dropped_total", "reason" => "worker_busy")
                                .increment(1);
                        }
                    }
                    Err(e) => {
                        metrics::counter!("sfu_relay_refused_total", "reason" => "malformed")
                            .increment(1);
                        debug!(room = %self.room, node = %self.node, "relay frame not read: {e}");
                    }
                }
            }
            Some((&FRAME_KEEPALIVE, [])) => {}
            _ => {
                metrics::counter!("sfu_relay_refused_total", "reason" => "malformed").increment(1);
            }
        }
    }

    /// The other end's workers holding the room are now `workers`.
    fn set_remote_workers(&mut self, workers: &[u16]) {
        let gone: Vec<(u16, ShardId)> = self
            .remote_workers
            .iter()
            .filter(|(r, _)| !workers.contains(r))
            .copied()
            .collect();
        for (r, id) in gone {
            for &w in &self.local_workers {
                self.pair(w, id, false);
            }
            self.relay.routes.routes.write().remove(&id);
            self.relay.ids.lock().free.push(id);
            self.remote_workers.retain(|(x, _)| *x != r);
        }
        for &r in workers {
            if self.remote_workers.iter().any(|(x, _)| *x == r) {
                continue;
            }
            let Some(id) = self.relay.ids.lock().take() else {
                warn!(room = %self.room, "relay: no shard id left");
                return;
            };
            self.relay.routes.routes.write().insert(
                id,
                Route {
                    tx: self.tx.clone(),
                    remote_worker: r,
                },
            );
            self.remote_workers.push((r, id));
            for &w in &self.local_workers {
                self.pair(w, id, true);
            }
        }
    }

    /// A local worker's message: onto the data channel (packets in frames of a few).
    fn send(&mut self, out: Outgoing) {
        if self.channel.is_none() || !self.remote_workers.iter().any(|(r, _)| *r == out.to) {
            return;
        }
        match out.msg {
            ShardMessage::Media(mut batch) => {
                let buffered = self
                    .channel
                    .and_then(|id| self.rtc.channel(id))
                    .map_or(0, |mut c| c.buffered_amount());
                if buffered > MAX_BUFFERED {
                    metrics::counter!("sfu_relay_dropped_total", "reason" => "backlog")
                        .increment(1);
                    return;
                }
                self.packets_out.increment(batch.len() as u64);
                while !batch.is_empty() {
                    let rest = batch.split_off(batch.len().min(PACKETS_PER_FRAME));
                    // A packet that does not fit is lost, as on any network.
                    let _ = self.frame(out.from, out.to, &ShardMessage::Media(batch));
                    batch = rest;
                }
            }
            msg => {
                if !self.frame(out.from, out.to, &msg) {
                    self.failed = true;
                }
            }
        }
    }

    /// Writes one message; false if the connection did not take it.
    fn frame(&mut self, from: u16, to: u16, msg: &ShardMessage) -> bool {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.push(FRAME_SHARD);
        buf.extend_from_slice(&from.to_be_bytes());
        buf.extend_from_slice(&to.to_be_bytes());
        shard_wire::encode(msg, &mut buf);
        let written = self.write(&buf);
        self.buf = buf;
        written
    }

    /// Writes one frame; false if the connection did not take it (counted).
    fn write(&mut self, frame: &[u8]) -> bool {
        let Some(mut channel) = self.channel.and_then(|id| self.rtc.channel(id)) else {
            return false;
        };
        let written = matches!(channel.write(true, frame), Ok(true));
        if !written {
            metrics::counter!("sfu_relay_dropped_total", "reason" => "backlog").increment(1);
        }
        self.last_sent = Instant::now();
        written
    }

    /// The link is over: every local worker forgets the other end's workers.
    fn unlink_all(&mut self) {
        self.set_remote_workers(&[]);
    }
}

/// The workers a workers frame lists (big-endian u16 each); `None` if it is cut or too long.
fn parse_workers(rest: &[u8]) -> Option<Vec<u16>> {
    if !rest.len().is_multiple_of(2) || rest.len() / 2 > MAX_REMOTE_WORKERS {
        return None;
    }
    Some(
        rest.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_frame_is_bounded() {
        assert_eq!(parse_workers(&[]), Some(vec![]));
        assert_eq!(parse_workers(&[0, 1, 1, 0]), Some(vec![1, 256]));
        assert_eq!(parse_workers(&[0, 1, 1]), None, "cut");
        let most = vec![0u8; 2 * MAX_REMOTE_WORKERS];
        assert_eq!(
            parse_workers(&most).map(|w| w.len()),
            Some(MAX_REMOTE_WORKERS)
        );
        let over = vec![0u8; 2 * MAX_REMOTE_WORKERS + 2];
        assert_eq!(
            parse_workers(&over),
            None,
            "more workers than a node may have"
        );
    }

    #[test]
    fn signatures_bind_the_secret_the_body_and_the_time() {
        let secret = b"a-cluster-secret-of-at-least-32-characters";
        let now = 1_800_000_000;
        let body = br#"{"from":"n1","room":"r","offer":"v=0"}"#;
        let header = sign(secret, now, body);
        assert!(verify(secret, &header, body, now));
        assert!(
            verify(secret, &header, body, now + 30),
            "a little clock skew"
        );
        assert!(
            !verify(secret, &header, body, now + 31),
            "too old: replayed"
        );
        assert!(!verify(secret, &header, body, now - 31), "from the future");
        assert!(!verify(
            b"another-secret-of-at-least-32-characters",
            &header,
            body,
            now
        ));
        assert!(!verify(
            secret,
            &header,
            br#"{"from":"n2","room":"r","offer":"v=0"}"#,
            now
        ));
        let (t, mac) = header.split_once('.').unwrap();
        assert!(
            !verify(secret, &format!("{}.{mac}", now + 1), body, now),
            "time changed"
        );
        for bad in [
            "",
            ".",
            "x.y",
            &format!("{t}."),
            &format!("{t}.{}", &mac[..62]),
            &format!("{t}.{}zz", &mac[..62]),
        ] {
            assert!(!verify(secret, bad, body, now), "{bad:?}");
        }
    }
}
