//! Rooms that span nodes: the relay between two nodes of a cluster (see `docs/cluster.md`).
//!
//! Within a process the workers of a room exchange [`ShardMessage`]s over their command queues
//! (`core::shard`). Between nodes the same messages cross one WebRTC connection per pair of
//! nodes and room, made with str0m: ICE on UDP, DTLS, and two SCTP data channels, the messages
//! encoded by `core::shard_wire`. Events and feedback take a reliable, ordered channel. Media
//! takes an unordered channel that SCTP never retransmits, in numbered frames: the receiver asks
//! for a lost frame again and the sender keeps recent ones to answer (`core::shard_repair`), so
//! a loss between nodes delays only the packets it hit. The offer and the answer
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
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::{ChannelConfig, Reliability};
use str0m::{Candidate, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::cluster::Cluster;
use super::handle::Command;
use super::rooms::Placement;
use crate::core::{ShardId, ShardMessage};

mod auth;
mod link;
mod settings;

pub use auth::{sign, verify, AUTH_HEADER};
use auth::{unix_now, AUTH_WINDOW};
use link::{Link, LinkSpec};

/// The largest offer or answer accepted (bytes).
pub const MAX_SIGNAL_BYTES: usize = 64 * 1024;
/// Bytes the data channel takes at most: room for events and feedback above the backlog at which a link drops media.
/// An event that does not fit ends the link (its two sides would no longer agree).
const SCTP_BUFFER: usize = 8 * 1024 * 1024;
/// The lower bound of SCTP's retransmission timeout between nodes (RFC 9260's 1 s would stall
/// every channel of the link for a second after a lost acknowledgement; the round trip between
/// two nodes of a cluster is far shorter, and the timeout still follows the measured one above
/// this bound).
const SCTP_RTO_MIN: Duration = Duration::from_millis(50);
/// The largest datagram of a relay connection: a clients' video packet fits in one SCTP packet
/// with its relay headers (1350 + 28 bytes of IP and UDP headers pass links of MTU 1400, such
/// as most overlays and VPNs).
pub(super) const RELAY_MTU: usize = 1350;
/// Offers made for one link before giving up until the room's next join here.
const OFFER_ATTEMPTS: u32 = 3;
/// The pause between them.
const OFFER_RETRY: Duration = Duration::from_secs(1);
/// The label of the reliable, ordered data channel (events, feedback, NACKs).
const LABEL: &str = "sfu-relay";
/// The label of the unordered data channel without retransmission (media frames).
const MEDIA_LABEL: &str = "sfu-relay-media";

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
            .route("/cluster/room", axum::routing::post(settings::answer))
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
            .set_sctp_rto_min(SCTP_RTO_MIN)
            .set_mtu(RELAY_MTU..=RELAY_MTU)
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
        api.add_channel_with_config(ChannelConfig {
            label: MEDIA_LABEL.to_owned(),
            ordered: false,
            reliability: Reliability::MaxRetransmits { retransmits: 0 },
            ..Default::default()
        });
        let (offer, pending) = api.apply().ok_or("no offer")?;
        let body = serde_json::to_vec(&OfferBody {
            from: self.cluster.node_id().to_owned(),
            room: room.to_owned(),
            offer: offer.to_sdp_string(),
        })
        .map_err(|e| e.to_string())?;
        let url = format!("{}/cluster/relay", entry.url.trim_end_matches('/'));
        let answer: AnswerBody = self.call(&url, body).await?;
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
impl Relay {
    /// Checks that a request from another node is signed with the cluster secret, recently,
    /// and not seen before; the refusal to send otherwise.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), (StatusCode, &'static str)> {
        let now = unix_now();
        let auth = headers.get(AUTH_HEADER).and_then(|v| v.to_str().ok());
        let Some(auth) = auth.filter(|a| verify(&self.secret, a, body, now)) else {
            metrics::counter!("sfu_relay_refused_total", "reason" => "unauthenticated")
                .increment(1);
            return Err((
                StatusCode::UNAUTHORIZED,
                "not signed with the cluster secret",
            ));
        };
        let mut seen = self.seen.lock();
        // Older signatures fail the time check anyway.
        seen.retain(|_, t| now.abs_diff(*t) <= 2 * AUTH_WINDOW.as_secs());
        if seen.insert(auth.to_owned(), now).is_some() {
            metrics::counter!("sfu_relay_refused_total", "reason" => "replayed").increment(1);
            return Err((StatusCode::UNAUTHORIZED, "a replayed request"));
        }
        Ok(())
    }

    /// A signed request to another node (`url`), and its answer, which must be signed too.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        body: Vec<u8>,
    ) -> Result<T, String> {
        let response = self
            .http
            .post(url)
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
        serde_json::from_slice(&bytes).map_err(|e| format!("{url}: {e}"))
    }

    /// A signed request from another node: its body, read as `T`, or the refusal to send.
    fn request<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<T, (StatusCode, String)> {
        self.authenticate(headers, body)
            .map_err(|(status, why)| (status, why.to_owned()))?;
        serde_json::from_slice(body).map_err(|e| (StatusCode::BAD_REQUEST, format!("body: {e}")))
    }

    /// A signed JSON answer.
    fn signed(&self, body: Vec<u8>) -> Response {
        let auth = sign(&self.secret, unix_now(), &body);
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
}

async fn accept(
    State(relay): State<Arc<Relay>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req: OfferBody = match relay.request(&headers, &body) {
        Ok(r) => r,
        Err(refused) => return refused.into_response(),
    };
    match relay.answer(req).await {
        Ok(answer) => relay.signed(serde_json::to_vec(&answer).unwrap_or_default()),
        Err((status, why)) => (status, why).into_response(),
    }
}
