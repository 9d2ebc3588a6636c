//! The bed: the engines, their clients, the links between them and the virtual clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sfu::core::shard_repair::{RepairReceiver, RepairSender};
use sfu::core::{Engine, EngineConfig, Event as EngineEvent, JoinSpec, ShardMessage};
use sfu::io::webhook::Webhooks;
use sfu::io::wire::{self, Wire};
use signal::protocol::{ServerMessage, TrackSource};
use signal::webhook::WebhookEvent;
use signal::ClientSignal;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input};

use super::client::{cert, Client};
use super::media::rtp_header;
use super::meter::metered;

/// Virtual time step.
pub const TICK: Duration = Duration::from_millis(1);
pub const SERVER: &str = "10.0.0.1:5000";
/// The server's passive ICE-TCP candidate.
pub const SERVER_TCP: &str = "10.0.0.1:5443";

/// Seconds as a `Duration`.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A bottleneck: packets are serialised at `bps`, wait in a queue of at most `max_delay`, and
/// are dropped when it is full.
pub struct Link {
    pub bps: u64,
    pub max_delay: Duration,
    busy_until: Option<Instant>,
    queue: VecDeque<(Instant, Protocol, SocketAddr, SocketAddr, Vec<u8>)>,
    pub dropped: usize,
}

impl Link {
    pub fn new(bps: u64) -> Self {
        Link {
            bps,
            max_delay: Duration::from_millis(150),
            busy_until: None,
            queue: VecDeque::new(),
            dropped: 0,
        }
    }

    fn push(
        &mut self,
        now: Instant,
        proto: Protocol,
        src: SocketAddr,
        dst: SocketAddr,
        data: Vec<u8>,
    ) {
        let start = self.busy_until.map_or(now, |b| b.max(now));
        if start - now > self.max_delay {
            self.dropped += 1;
            return;
        }
        let done =
            start + Duration::from_nanos((data.len() as u64 + 28) * 8 * 1_000_000_000 / self.bps);
        self.busy_until = Some(done);
        self.queue.push_back((done, proto, src, dst, data));
    }

    fn pop(&mut self, now: Instant) -> Option<(Protocol, SocketAddr, SocketAddr, Vec<u8>)> {
        if self.queue.front().is_some_and(|(t, ..)| *t <= now) {
            self.queue.pop_front().map(|(_, pr, s, d, p)| (pr, s, d, p))
        } else {
            None
        }
    }
}

/// The engine with the server's own translation of its events into protocol messages (as a
/// worker runs it), so that tests speak and read the wire protocol.
pub struct WiredEngine {
    engine: Engine,
    wire: Wire,
    queue: VecDeque<(String, ServerMessage)>,
    /// Every event the engine emitted so far, in order.
    pub events: Vec<EngineEvent>,
    webhooks: tokio::sync::mpsc::Receiver<WebhookEvent>,
}

impl WiredEngine {
    pub fn new(config: EngineConfig) -> Self {
        let (tx, webhooks) = tokio::sync::mpsc::channel(4096);
        WiredEngine {
            engine: Engine::new(config),
            wire: Wire::new(Webhooks::to_channel(tx)),
            queue: VecDeque::new(),
            events: Vec::new(),
            webhooks,
        }
    }

    /// The webhooks emitted since the last call.
    pub fn take_webhooks(&mut self) -> Vec<WebhookEvent> {
        let mut out = Vec::new();
        while let Ok(w) = self.webhooks.try_recv() {
            out.push(w);
        }
        out
    }

    /// A client's signal, as the worker hands it to the engine.
    pub fn handle_signal(&mut self, now: Instant, id: &str, signal: ClientSignal) {
        self.engine.handle_request(now, id, wire::request(signal));
    }

    /// Participant `id` leaves with the reason named `reason`.
    pub fn leave(&mut self, now: Instant, id: &str, reason: &str) {
        self.engine.leave(now, id, wire::leave_reason(reason));
    }

    /// The next protocol message for a participant, by participant id.
    pub fn poll_signal(&mut self) -> Option<(String, ServerMessage)> {
        loop {
            if let Some(m) = self.queue.pop_front() {
                return Some(m);
            }
            let event = self.engine.poll_event()?;
            self.events.push(event.clone());
            let queue = &mut self.queue;
            self.wire.translate(Instant::now(), event, &mut |id, msg| {
                queue.push_back((id.to_owned(), msg))
            });
        }
    }
}

impl std::ops::Deref for WiredEngine {
    type Target = Engine;
    fn deref(&self) -> &Engine {
        &self.engine
    }
}

impl std::ops::DerefMut for WiredEngine {
    fn deref_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }
}

/// The m-line of a joining client's first offer that a source is named for.
#[derive(Debug, Clone, Copy)]
pub enum SourceOf {
    /// Its audio m-line.
    Audio,
    /// Its video m-line.
    Video,
    /// Whatever mid (one the offer may not have).
    Mid(&'static str),
}

/// The engine, its clients and the network between them.
pub struct Bed {
    pub now: Instant,
    pub start: Instant,
    pub engine: WiredEngine,
    pub clients: Vec<Client>,
    /// Loss probability of packets from the server to a client, by client index.
    pub loss_to: HashMap<usize, f64>,
    /// Capacity-limited links from the server to a client, by client index.
    pub links: HashMap<usize, Link>,
    rng: u64,
    /// Datagrams the engine was given that came from nowhere (garbage tests).
    pub injected: usize,
    /// Datagrams the network lost on the way to clients.
    pub lost: usize,
    /// The next client joining publishes simulcast.
    pub next_simulcast: bool,
    /// The single layer the next client joining sends without simulcast (default: `h`).
    pub next_single_layer: usize,
    /// The next client joining publishes audio only.
    pub next_audio_only: bool,
    /// The next client joining opens data channels.
    pub next_data: bool,
    /// The next client joining reaches the server over ICE-TCP only.
    pub next_tcp: bool,
    /// The video codecs of the next client joining, in its order of preference (default VP8).
    pub next_codecs: Vec<Codec>,
    /// The sources the next client joining names in its first offer (none by default).
    pub next_sources: Vec<(SourceOf, TrackSource)>,
    /// Sequence numbers of the RTP packets the server sent, by (client index, SSRC), read from
    /// the clear-text SRTP headers before the network can lose anything.
    pub sent: HashMap<(usize, u32), Vec<u16>>,
    /// Datagrams and bytes of the RTP packets the server sent, by (client index, payload type).
    pub sent_by_pt: HashMap<(usize, u8), (usize, usize)>,
    /// More engines (workers of one process) beside `engine`, reached at `peer_addr(i)`.
    pub peers: Vec<WiredEngine>,
    /// The engine the next client joining connects to.
    pub next_engine: usize,
    /// Messages handed between engines, by (from, to).
    pub shard_messages: HashMap<(usize, usize), usize>,
    /// Messages between engines cross as bytes (`shard_wire`), as over a relay between nodes.
    pub over_wire: bool,
    /// With `over_wire`: the share of media frames the wire between engines loses (each
    /// attempt, repeats included). Media then crosses in numbered frames, repaired as between
    /// nodes (`shard_repair`).
    pub relay_loss: f64,
    /// With `relay_loss`: the sender answers NACKs (false: lost media stays lost).
    pub relay_repair: bool,
    /// The repair state of each direction between two engines, by (from, to).
    relay_wire: HashMap<(usize, usize), (RepairSender, RepairReceiver)>,
    /// Media frames the wire between engines lost, and frames sent again when asked.
    pub relay_lost: usize,
    pub relay_resent: usize,
}

/// The UDP address of engine `i` (0: `SERVER`).
pub fn engine_addr(i: usize) -> SocketAddr {
    if i == 0 {
        SERVER.parse().unwrap()
    } else {
        format!("10.0.0.{}:5000", i + 1).parse().unwrap()
    }
}

impl Bed {
    pub fn new() -> Self {
        // `RUST_LOG=sfu::core::bandwidth=debug cargo test ...` shows the engine's logs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let now = Instant::now();
        let mut config = EngineConfig::new(vec![SERVER.parse().unwrap()], cert());
        config.tcp_candidate_addrs = vec![SERVER_TCP.parse().unwrap()];
        Bed {
            now,
            start: now,
            engine: WiredEngine::new(config),
            clients: Vec::new(),
            loss_to: HashMap::new(),
            links: HashMap::new(),
            rng: 0x2545_f491_4f6c_dd1d,
            injected: 0,
            lost: 0,
            next_simulcast: false,
            next_single_layer: 1,
            next_audio_only: false,
            next_data: false,
            next_tcp: false,
            next_codecs: vec![Codec::Vp8],
            next_sources: Vec::new(),
            sent: HashMap::new(),
            sent_by_pt: HashMap::new(),
            peers: Vec::new(),
            next_engine: 0,
            shard_messages: HashMap::new(),
            over_wire: false,
            relay_loss: 0.0,
            relay_repair: true,
            relay_wire: HashMap::new(),
            relay_lost: 0,
            relay_resent: 0,
        }
    }

    /// Another engine beside the first, as another worker of the same server; returns its
    /// index.
    pub fn add_engine(&mut self) -> usize {
        let i = self.peers.len() + 1;
        let config = EngineConfig::new(vec![engine_addr(i)], cert());
        self.peers.push(WiredEngine::new(config));
        i
    }

    /// Engine `i`.
    pub fn engine_at(&mut self, i: usize) -> &mut WiredEngine {
        if i == 0 {
            &mut self.engine
        } else {
            &mut self.peers[i - 1]
        }
    }

    /// Engines `a` and `b` share `room` from now on.
    pub fn link(&mut self, room: &str, a: usize, b: usize) {
        self.engine_at(a).link_shard(room, b as u16);
        self.engine_at(b).link_shard(room, a as u16);
        self.exchange_shard_messages();
    }

    /// Engines `a` and `b` no longer share `room`.
    pub fn unlink(&mut self, room: &str, a: usize, b: usize) {
        let now = self.now;
        self.engine_at(a).unlink_shard(now, room, b as u16);
        self.engine_at(b).unlink_shard(now, room, a as u16);
        self.exchange_shard_messages();
    }

    /// Deliver the messages the engines have for each other, until none is left.
    pub fn exchange_shard_messages(&mut self) {
        let now = self.now;
        for _ in 0..100 {
            let mut any = self.ask_again();
            for from in 0..=self.peers.len() {
                while let Some((to, msg)) = self.engine_at(from).poll_shard() {
                    *self.shard_messages.entry((from, to as usize)).or_default() += 1;
                    self.cross(from, to as usize, msg);
                    any = true;
                }
            }
            if !any {
                for i in 0..=self.peers.len() {
                    self.engine_at(i).flush(now);
                }
                if (0..=self.peers.len()).all(|i| self.engines_quiet(i)) {
                    return;
                }
            }
        }
        panic!("engines keep messaging each other");
    }

    /// A message on its way between engines: handed over itself, or encoded and decoded again;
    /// media on a lossy wire in a numbered frame that may be lost.
    fn cross(&mut self, from: usize, to: usize, msg: ShardMessage) {
        let now = self.now;
        if !self.over_wire {
            self.engine_at(to).handle_shard(now, from as u16, msg);
            return;
        }
        if self.relay_loss > 0.0 && matches!(msg, ShardMessage::Media(_)) {
            let frame = self
                .relay_wire
                .entry((from, to))
                .or_insert_with(|| (RepairSender::new(2 << 20), RepairReceiver::default()))
                .0
                .frame(now, |number, buf| {
                    buf.extend_from_slice(&number.to_be_bytes());
                    sfu::core::shard_wire::encode(&msg, buf);
                })
                .to_vec();
            self.lossy_arrival(from, to, &frame);
            return;
        }
        let mut buf = Vec::new();
        sfu::core::shard_wire::encode(&msg, &mut buf);
        let msg =
            sfu::core::shard_wire::decode(&buf, now).expect("a message decodes as it was encoded");
        self.engine_at(to).handle_shard(now, from as u16, msg);
    }

    /// A numbered media frame reaches engine `to` over the lossy wire, or is lost.
    fn lossy_arrival(&mut self, from: usize, to: usize, frame: &[u8]) {
        if self.random() < self.relay_loss {
            self.relay_lost += 1;
            return;
        }
        let now = self.now;
        let number = u32::from_be_bytes(frame[..4].try_into().unwrap());
        let (_, receiver) = self.relay_wire.get_mut(&(from, to)).unwrap();
        if receiver.arrived(now, number) {
            let msg = sfu::core::shard_wire::decode(&frame[4..], now)
                .expect("a message decodes as it was encoded");
            self.engine_at(to).handle_shard(now, from as u16, msg);
        }
    }

    /// Each receiving side asks for the media frames it misses, and the sender sends those it
    /// still has again (over the same lossy wire). True if anything was sent again.
    fn ask_again(&mut self) -> bool {
        let now = self.now;
        let mut any = false;
        let pairs: Vec<(usize, usize)> = self.relay_wire.keys().copied().collect();
        for (from, to) in pairs {
            let (sender, receiver) = self.relay_wire.get_mut(&(from, to)).unwrap();
            let mut asked = Vec::new();
            receiver.poll_nacks(now, &mut asked);
            if !self.relay_repair {
                continue;
            }
            let again: Vec<Vec<u8>> = asked
                .iter()
                .filter_map(|&n| sender.get(now, n).map(<[u8]>::to_vec))
                .collect();
            for frame in again {
                self.relay_resent += 1;
                self.lossy_arrival(from, to, &frame);
                any = true;
            }
        }
        any
    }

    fn engines_quiet(&mut self, i: usize) -> bool {
        // Peek without losing: a message polled here is delivered at once.
        match self.engine_at(i).poll_shard() {
            None => true,
            Some((to, msg)) => {
                *self.shard_messages.entry((i, to as usize)).or_default() += 1;
                self.cross(i, to as usize, msg);
                false
            }
        }
    }

    pub fn with_config(f: impl FnOnce(&mut EngineConfig)) -> Self {
        let mut bed = Bed::new();
        let mut config = EngineConfig::new(vec![SERVER.parse().unwrap()], cert());
        config.tcp_candidate_addrs = vec![SERVER_TCP.parse().unwrap()];
        f(&mut config);
        bed.engine = WiredEngine::new(config);
        bed
    }

    fn random(&mut self) -> f64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A client joins `room` and makes its first offer. Returns its index.
    pub fn join(&mut self, room: &str, name: &str, publish: bool) -> usize {
        self.join_with(room, name, publish, |_| {})
    }

    /// Like [`Bed::join`], with the join adjusted by `f` (grants, metadata).
    pub fn join_with(
        &mut self,
        room: &str,
        name: &str,
        publish: bool,
        f: impl FnOnce(&mut JoinSpec),
    ) -> usize {
        let i = self.clients.len();
        let addr: SocketAddr = format!("10.0.1.{}:{}", i + 1, 6000 + i).parse().unwrap();
        let mut c = Client::new(
            name,
            addr,
            self.now,
            publish,
            self.next_tcp,
            &self.next_codecs,
        );
        c.simulcast = self.next_simulcast;
        c.single_layer = self.next_single_layer;
        c.audio_only = self.next_audio_only;
        c.data = self.next_data;
        c.engine = self.next_engine;
        let id = format!("{name}-id");
        let mut spec = JoinSpec::new(id.clone(), room, name);
        f(&mut spec);
        let now = self.now;
        self.engine_at(c.engine).join(now, spec).expect("join");
        c.id = Some(id.clone());
        let offer = c.make_offer();
        let sources: Vec<(String, TrackSource)> = std::mem::take(&mut self.next_sources)
            .into_iter()
            .map(|(of, source)| {
                let mid = match of {
                    SourceOf::Audio => c.audio_mid.unwrap().to_string(),
                    SourceOf::Video => c.video_mid.unwrap().to_string(),
                    SourceOf::Mid(m) => m.to_string(),
                };
                (mid, source)
            })
            .collect();
        let e = c.engine;
        self.clients.push(c);
        if !sources.is_empty() {
            // As the WebSocket session passes an `offer` with `sources` on.
            self.engine_at(e)
                .handle_signal(now, &id, ClientSignal::TrackSources(sources));
        }
        self.engine_at(e)
            .handle_signal(now, &id, ClientSignal::Offer(offer));
        self.exchange_shard_messages();
        self.pump_signals();
        i
    }

    /// Deliver the engine's messages to the clients and act on them like a browser would.
    pub fn pump_signals(&mut self) {
        // Bounded, so that messages that cause each other without end fail the test.
        for _ in 0..100 * (1 + self.clients.len()) {
            let next = (0..=self.peers.len()).find_map(|i| {
                let engine = self.engine_at(i);
                metered(|| engine.poll_signal())
            });
            let Some((id, msg)) = next else {
                return;
            };
            let Some(ci) = self
                .clients
                .iter()
                .position(|c| c.id.as_deref() == Some(&id))
            else {
                continue;
            };
            let now = self.now;
            let c = &mut self.clients[ci];
            c.messages.push(msg.clone());
            match msg {
                ServerMessage::Answer { sdp } => {
                    // Like a browser, it sends audio with the first codec of the answer.
                    c.audio_pt = sdp
                        .lines()
                        .find(|l| l.starts_with("m=audio "))
                        .and_then(|l| l.split_ascii_whitespace().nth(3))
                        .and_then(|pt| pt.parse::<u8>().ok())
                        .or(c.audio_pt);
                    let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                    let pending = c.pending.take().expect("answer to our offer");
                    c.rtc.sdp_api().accept_answer(pending, answer).unwrap();
                    c.drain(now);
                }
                ServerMessage::PublisherLayers { active, .. } => {
                    c.active_layers = Some(active);
                }
                ServerMessage::Offer { sdp } => {
                    if c.pending.is_some() || c.hold_offers {
                        // The client is impolite: its own offer wins.
                        c.held_offers.push(sdp);
                        continue;
                    }
                    let offer = SdpOffer::from_sdp_string(&sdp).unwrap();
                    let answer = c.rtc.sdp_api().accept_offer(offer).unwrap();
                    c.drain(now);
                    let id = id.clone();
                    let e = c.engine;
                    let answer = ClientSignal::Answer(answer.to_sdp_string());
                    let engine = self.engine_at(e);
                    metered(|| engine.handle_signal(now, &id, answer));
                }
                _ => {}
            }
        }
        panic!("signalling does not settle");
    }

    /// Advance the virtual clock by `d`, running the network.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Run until `cond` holds or `limit` passes; returns whether it held.
    pub fn run_until(&mut self, limit: Duration, mut cond: impl FnMut(&Bed) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if cond(self) {
                return true;
            }
            self.step();
        }
        cond(self)
    }

    /// Seeds the network's random loss.
    pub fn seed(&mut self, seed: u64) {
        self.rng = 0x2545_f491_4f6c_dd1d ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        if self.rng == 0 {
            self.rng = 1;
        }
    }

    fn step(&mut self) {
        self.now += TICK;
        let now = self.now;
        for c in &mut self.clients {
            c.produce(now);
            c.rtc.handle_input(Input::Timeout(now)).unwrap();
            c.drain(now);
        }
        // Client -> server.
        let mut any = false;
        for ci in 0..self.clients.len() {
            while let Some((proto, src, dst, data)) = self.clients[ci].out.pop_front() {
                if self.clients[ci].offline || src.ip() != self.clients[ci].addr.ip() {
                    continue; // offline, or sent from an address the client no longer has
                }
                match proto {
                    Protocol::Tcp => {
                        assert_eq!(dst, SERVER_TCP.parse().unwrap(), "TCP goes to the server");
                        let engine = &mut self.engine;
                        metered(|| engine.handle_tcp_packet(now, src, dst, &data));
                    }
                    _ => {
                        let e = (0..=self.peers.len())
                            .find(|i| engine_addr(*i) == dst)
                            .expect("clients only talk to the server");
                        if self.clients[ci].tcp {
                            continue; // UDP is blocked for this client
                        }
                        let engine = self.engine_at(e);
                        metered(|| engine.handle_datagram(now, src, dst, &data));
                    }
                }
                any = true;
            }
        }
        for e in 0..=self.peers.len() {
            let engine = self.engine_at(e);
            metered(|| {
                if any {
                    engine.flush(now);
                }
                if engine.poll_timeout().is_some_and(|t| t <= now) {
                    engine.handle_timeout(now);
                }
            });
        }
        if !self.peers.is_empty() {
            self.exchange_shard_messages();
        }
        // Server -> clients.
        let mut arrived: Vec<(usize, Protocol, SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        let mut transmits = Vec::new();
        for e in 0..=self.peers.len() {
            let engine = self.engine_at(e);
            metered(|| {
                while let Some(t) = engine.poll_transmit() {
                    transmits.push(t);
                }
            });
        }
        for t in transmits {
            let Some(ci) = self.clients.iter().position(|c| c.addr == t.destination) else {
                continue;
            };
            if let Some((ssrc, seq)) = rtp_header(&t.contents) {
                self.sent.entry((ci, ssrc)).or_default().push(seq);
                let by_pt = self
                    .sent_by_pt
                    .entry((ci, t.contents[1] & 0x7f))
                    .or_default();
                by_pt.0 += 1;
                by_pt.1 += t.contents.len();
            }
            let loss = self.loss_to.get(&ci).copied().unwrap_or(0.0);
            if loss > 0.0 && self.random() < loss {
                self.lost += 1;
                continue;
            }
            if t.proto == Protocol::Udp && self.clients[ci].tcp {
                continue; // UDP is blocked for this client
            }
            match self.links.get_mut(&ci) {
                Some(link) => link.push(now, t.proto, t.source, t.destination, t.contents.to_vec()),
                None => arrived.push((ci, t.proto, t.source, t.destination, t.contents.to_vec())),
            }
        }
        for (ci, link) in &mut self.links {
            while let Some((proto, s, d, p)) = link.pop(now) {
                arrived.push((*ci, proto, s, d, p));
            }
        }
        for (ci, proto, src, dst, data) in arrived {
            let c = &mut self.clients[ci];
            if c.offline {
                continue;
            }
            let r = Receive::new(proto, src, dst, &data).unwrap();
            c.rtc.handle_input(Input::Receive(now, r)).unwrap();
            c.drain(now);
        }
        self.pump_signals();
    }

    /// Client `i`'s network changes: it gets address `to` (the old one is gone: nothing leaves
    /// from it or reaches it any more) and restarts ICE with an offer carrying new credentials.
    pub fn move_client(&mut self, i: usize, to: SocketAddr) {
        let now = self.now;
        let c = &mut self.clients[i];
        c.addr = to;
        let mut api = c.rtc.sdp_api();
        api.ice_restart(false);
        let (offer, pending) = api.apply().expect("an ICE restart is a change");
        c.pending = Some(pending);
        c.drain(now);
        let id = c.id.clone().expect("joined");
        self.engine
            .handle_signal(now, &id, ClientSignal::Offer(offer.to_sdp_string()));
        self.pump_signals();
        // The restart takes effect with the answer and drops the old local candidates.
        let c = &mut self.clients[i];
        c.rtc
            .add_local_candidate(Candidate::host(to, "udp").unwrap());
        c.drain(now);
    }

    /// Feed the engine a datagram from anywhere.
    pub fn inject(&mut self, from: SocketAddr, data: &[u8]) {
        self.injected += 1;
        self.engine
            .handle_datagram(self.now, from, SERVER.parse().unwrap(), data);
        self.engine.flush(self.now);
    }

    pub fn id(&self, i: usize) -> String {
        self.clients[i].id().to_string()
    }
}

impl Bed {
    /// Asserts that every RTP stream the server sent to client `ci` is numbered without a gap
    /// (retransmissions and resends aside), whatever the network then lost.
    pub fn assert_sent_gap_free(&self, ci: usize) {
        let mut streams = 0;
        for ((c, ssrc), seqs) in &self.sent {
            if *c != ci || seqs.len() < 2 {
                continue;
            }
            streams += 1;
            let mut ext: Vec<i64> = Vec::with_capacity(seqs.len());
            let mut last = seqs[0] as i64;
            for s in seqs {
                let d = s.wrapping_sub(last as u16) as i16 as i64;
                let e = last + d;
                ext.push(e);
                last = last.max(e);
            }
            ext.sort_unstable();
            ext.dedup();
            for w in ext.windows(2) {
                assert_eq!(
                    w[1],
                    w[0] + 1,
                    "ssrc {ssrc:08x} to client {ci}: gap after {}",
                    w[0]
                );
            }
        }
        assert!(streams > 0, "nothing was sent to client {ci}");
    }
}
