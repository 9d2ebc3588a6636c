//! The sans-IO media core.
//!
//! An [`Engine`] owns whole rooms: their participants (one str0m [`Rtc`] each), their published
//! tracks and every subscription. It never reads a clock or a socket: time is a parameter and
//! network I/O is done by the caller. The call order is:
//!
//! 1. feed input: [`Engine::join`], [`Engine::handle_request`], [`Engine::leave`] from signalling,
//!    [`Engine::handle_datagram`] for each received datagram, [`Engine::handle_timeout`] when the
//!    deadline from [`Engine::poll_timeout`] has passed;
//! 2. after a batch of datagrams, call [`Engine::flush`] once: every connection that got packets to
//!    send is driven once, so their output leaves together;
//! 3. drain [`Engine::poll_transmit`] (datagrams to send) and [`Engine::poll_event`] (what
//!    happened: joins, tracks, offers for participants, ...; see [`event`]), then wait until
//!    [`Engine::poll_timeout`] or new input.
//!
//! Per packet the engine does O(1) lookups: remote address to participant (a map, learnt from the
//! first STUN request from a new address that names the participant's ufrag and is signed with its
//! ICE password), SSRC to track, and one loop over the track's subscribers. Connections are
//! driven from a timer heap of their own deadlines, never by scanning them all.

mod agenda;
pub mod allocator;
pub mod bandwidth;
pub mod codecs;
pub mod damping;
pub mod data;
mod demux;
mod egress;
pub mod event;
mod fanout;
pub mod forward;
pub mod limits;
mod membership;
mod moderation;
mod negotiation;
pub mod participant;
mod publishing;
pub mod quality;
mod queries;
pub mod rate;
pub mod red;
pub mod room;
mod sdp_text;
pub mod shard;
pub mod shard_repair;
pub mod shard_wire;
mod speakers;
pub mod stats;
mod timers;
pub mod track;
pub mod voice_activity;

pub use codecs::VideoCodecs;
pub use demux::Transport;
pub use egress::Playback;
pub use event::{
    Error, Event, LeaveReason, ParticipantView, PauseReason, SdpKind, Speaker, StreamState,
    TrackSource, TrackView,
};
pub use fanout::Packet;
pub use membership::JoinSpec;
pub use negotiation::Request;
pub use shard::{ShardId, ShardMessage};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use str0m::bwe::{Bitrate, BweKind};
use str0m::config::DtlsCert;
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::Extension;
use str0m::{Event as RtcEvent, IceConnectionState, Input, Output, Reason, Rtc, RtcConfig};
use tracing::{debug, warn};

use agenda::Agenda;
use demux::Demux;
use participant::{Participant, ParticipantKey};
use room::Rooms;
use stats::EngineStats;
use timers::{TimerKind, Timers};

/// Settings of an engine.
#[derive(Clone)]
pub struct EngineConfig {
    /// The addresses put in the server's ICE candidates (one host candidate each). For a server
    /// behind 1:1 NAT, the public address. Never empty.
    pub candidate_addrs: Vec<SocketAddr>,
    /// Addresses of passive ICE-TCP candidates (RFC 6544), for clients whose UDP is blocked.
    /// Empty: no TCP candidate.
    pub tcp_candidate_addrs: Vec<SocketAddr>,
    /// The template every participant's `Rtc` is built from (shares one DTLS certificate).
    pub rtc: RtcConfig,
    /// A connected participant from whom nothing arrived for this long is removed.
    pub silence_timeout: Duration,
    /// A participant whose connection is not up this long after joining is removed.
    pub connect_timeout: Duration,
    /// The most any one subscriber is sent, in bits per second, whatever its estimate says
    /// (`None`: no cap).
    pub max_subscriber_bitrate: Option<u64>,
    /// What one participant may do (tracks, offers).
    pub limits: limits::ParticipantLimits,
}

impl EngineConfig {
    /// Defaults for a server with candidates `candidate_addrs` (at least one), with the given DTLS
    /// certificate (make one per process and share it).
    pub fn new(candidate_addrs: Vec<SocketAddr>, cert: DtlsCert) -> Self {
        assert!(!candidate_addrs.is_empty(), "a server needs a candidate");
        EngineConfig {
            candidate_addrs,
            tcp_candidate_addrs: Vec::new(),
            rtc: rtc_config(cert),
            silence_timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(30),
            max_subscriber_bitrate: None,
            limits: limits::ParticipantLimits::default(),
        }
    }
}

/// The str0m configuration of a server-side connection: ICE-lite, RTP mode, Opus (with RED),
/// VP8, H264, VP9 (profiles 0 and 2) and AV1, with the header extensions of
/// [`header_extensions`].
pub fn rtc_config(cert: DtlsCert) -> RtcConfig {
    let config = RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_dtls_cert(cert)
        .clear_codecs()
        .enable_opus(true, true)
        .enable_vp8(true)
        .enable_h264(true)
        .enable_vp9(true)
        .enable_av1(true)
        .clear_extension_map();
    header_extensions()
        .into_iter()
        .fold(config, |c, (id, ext)| c.set_extension(id, ext))
        .enable_bwe(Some(Bitrate::bps(bandwidth::INITIAL_ESTIMATE)))
        // Per-stream statistics once a second: the NACK counters come from them.
        .set_stats_interval(Some(Duration::from_secs(1)))
}

/// The RTP header extensions the server negotiates, with the ids it offers (a peer's offer
/// keeps the peer's ids). Send-side bandwidth estimation needs only the transport sequence
/// number, so the absolute send time, which a receiver reads only for its own estimate (REMB,
/// used by nothing here), is left out: three bytes and a clock conversion per packet.
fn header_extensions() -> [(u8, Extension); 7] {
    [
        (1, Extension::AudioLevel),
        (3, Extension::TransportSequenceNumber),
        (4, Extension::RtpMid),
        (10, Extension::RtpStreamId),
        (11, Extension::RepairedRtpStreamId),
        // AV1 layers are described in the dependency descriptor: read it on arrival.
        (
            12,
            Extension::with_serializer(
                forward::av1::DEPENDENCY_DESCRIPTOR_URI,
                forward::av1::DdSerializer,
            ),
        ),
        (13, Extension::VideoOrientation),
    ]
}

/// Makes a DTLS certificate with the default crypto backend.
pub fn generate_dtls_cert() -> DtlsCert {
    str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        // The aws-lc-rs backend always generates certificates; failing here is a broken build.
        .expect("the crypto backend generates DTLS certificates")
}

/// A connection deadline at most this far past its clock is due now (see [`Engine::drain`]).
const IMMEDIATE: Duration = Duration::from_micros(1);
/// Immediate deadlines honoured in one drain before the rest wait for the timer heap: a bound on
/// the work one connection does in one turn (a pacer burst is at most 63 kB, about 55 packets).
const MAX_IMMEDIATE_TURNS: u32 = 128;

/// Drive a connection whose deadline is due at `now`. A deadline the pacer asked for (the next
/// packet of a paced burst or a probe, padding) gets only the pacing part of a timeout, as a
/// release after writes does: every other part of the connection gives a deadline of its own, no
/// later than the pacer's, and one due at the same instant comes back from the next poll. A full
/// timeout reads every stream of the connection (reports, NACKs, keyframe requests), about a
/// hundred per subscriber in a meeting of fifty.
fn drive(rtc: &mut Rtc, now: Instant, stats: &mut EngineStats, id: &str) {
    let r = if matches!(rtc.last_timeout_reason(), Reason::Pacer(_)) {
        stats.rtc_releases += 1;
        rtc.release_queued(now)
    } else {
        stats.rtc_timeouts += 1;
        rtc.handle_input(Input::Timeout(now))
    };
    if let Err(e) = r {
        debug!(participant = %id, "timeout refused: {e}");
    }
}

/// The media core of one worker. See the module docs for the call order.
pub struct Engine {
    config: EngineConfig,
    /// Keyed by the engine's own counter (as are tracks and subscriptions): no peer chooses a
    /// key, so the fast hash needs no protection against collisions made on purpose. The fan-out
    /// looks up each subscriber and its subscription once per packet.
    participants: FxHashMap<ParticipantKey, Participant>,
    /// Participants by id, ICE ufrag and remote address.
    demux: Demux,
    /// Rooms, their tracks, and the streams that carry them.
    rooms: Rooms,
    /// SSRC of an incoming stream -> track and layer, per publisher.
    /// Every deadline, of every kind.
    timers: Timers,
    /// Events drained from connections, to be handled.
    rtc_events: Vec<(ParticipantKey, RtcEvent)>,
    /// Connections written to since the last flush.
    touched: Vec<ParticipantKey>,
    /// What the current batch of input left to do.
    agenda: Agenda,
    transmits: VecDeque<Transmit>,
    /// What happened, for the world (see [`Engine::poll_event`]).
    out: VecDeque<Event>,
    next_key: u64,
    stats: EngineStats,
    /// Scales every subscriber's bandwidth budget: below 1 while the worker is overloaded (see
    /// [`Engine::set_load_factor`]).
    load_factor: f64,
    /// The rooms shared with other engines, and what goes to them.
    shards: shard::Shards,
}

impl Engine {
    /// An engine with no rooms.
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            participants: FxHashMap::default(),
            demux: Demux::default(),
            rooms: Rooms::default(),
            timers: Timers::default(),
            rtc_events: Vec::new(),
            touched: Vec::new(),
            agenda: Agenda::default(),
            transmits: VecDeque::new(),
            out: VecDeque::new(),
            next_key: 1,
            stats: EngineStats::default(),
            load_factor: 1.0,
            shards: Default::default(),
        }
    }

    /// The worker cannot keep up (or can again): every subscriber's bandwidth budget is scaled
    /// by `factor` (0.01 to 1), so that the allocator picks lower layers, fewer frames or pauses
    /// videos, and fewer packets are forwarded. Below 1, a subscriber's lowest layer is no longer
    /// kept while its estimate is still a guess. Everyone is allocated again now.
    pub fn set_load_factor(&mut self, now: Instant, factor: f64) {
        let factor = factor.clamp(0.01, 1.0);
        if factor == self.load_factor {
            return;
        }
        debug!(factor, "load factor");
        self.load_factor = factor;
        self.agenda.allocate_all(self.participants.keys().copied());
        self.process(now);
    }

    /// How long the oldest packet still queued towards any subscriber has waited in its pacer
    /// (str0m's snapshot of each send queue). A scan of every subscription: for the once-a-second
    /// metrics, not the packet path.
    pub fn oldest_queued(&mut self, now: Instant) -> Duration {
        let mut oldest = Duration::ZERO;
        for p in self.participants.values_mut() {
            let mut api = p.rtc.direct_api();
            for sub in p.subs.values() {
                let first = api
                    .stream_tx_by_mid(sub.mid, None)
                    .and_then(|tx| tx.queue_info().and_then(|q| q.first_unsent()));
                if let Some(first) = first {
                    oldest = oldest.max(now.saturating_duration_since(first));
                }
            }
        }
        oldest
    }

    /// The current load factor (see [`Engine::set_load_factor`]).
    pub fn load_factor(&self) -> f64 {
        self.load_factor
    }

    /// Whether RTP stream `ssrc` from UDP address `source` is a published audio track: the
    /// worker keeps such packets longer when it falls behind (see `io/overload.rs`). Two hash
    /// lookups, for datagrams that already waited past the input age limit only.
    pub fn is_audio_from(&self, source: SocketAddr, ssrc: u32) -> bool {
        let Some(key) = self.demux.addr(Transport::Udp, source) else {
            return false;
        };
        self.rooms
            .stream(key, ssrc.into())
            .and_then(|(tk, _)| self.rooms.track(tk))
            .is_some_and(|t| t.kind == str0m::media::MediaKind::Audio)
    }

    /// A received datagram was dropped before reaching the engine because it waited too long.
    pub fn count_stale_input(&mut self) {
        self.stats.datagrams_stale += 1;
    }

    /// A message for another engine was dropped because that engine's queue was full.
    pub fn count_shard_dropped(&mut self) {
        self.stats.shard_dropped += 1;
    }

    /// The addresses in the server's candidates.
    pub fn candidate_addrs(&self) -> &[SocketAddr] {
        &self.config.candidate_addrs
    }

    /// How many participants this engine holds.
    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// How many rooms this engine holds.
    pub fn room_count(&self) -> usize {
        self.rooms.room_count()
    }

    /// Ids of the participants of a room, in join order.
    pub fn room_participants(&self, room: &str) -> Vec<String> {
        self.rooms
            .room(room)
            .map(|r| {
                r.participants
                    .iter()
                    .filter_map(|k| self.participants.get(k).map(|p| p.id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a participant owns the remote address `source` (it proved it with a signed STUN
    /// request and has not left).
    pub fn knows_address(&self, transport: Transport, source: SocketAddr) -> bool {
        self.demux.addr(transport, source).is_some()
    }

    /// The bandwidth estimate towards participant `id`, bits per second, once there is one.
    pub fn estimate_of(&self, id: &str) -> Option<u64> {
        let key = self.demux.id(id)?;
        self.participants.get(&key)?.allocation.estimate
    }

    /// The rate the estimator towards participant `id` was last told to probe for, bits per
    /// second, once it was told one.
    pub fn desired_of(&self, id: &str) -> Option<u64> {
        let key = self.demux.id(id)?;
        self.participants.get(&key)?.allocation.desired
    }

    /// Counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front();
        if t.is_some() {
            self.stats.datagrams_out += 1;
        }
        t
    }

    /// The next thing that happened: events come out in the order they happened.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.out.pop_front()
    }

    /// Queue an event for the world.
    fn emit(&mut self, mut event: Event) {
        if let Event::Offer { sdp, .. } | Event::Answer { sdp, .. } = &mut event {
            sdp_text::end_candidates(sdp);
        }
        self.out.push_back(event);
    }

    /// When [`Engine::handle_timeout`] should be called next (`None`: no participant).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// One received UDP datagram, sent by `source` to `destination`. A destination that is not
    /// one of the candidates (the private side of a 1:1 NAT) is taken as the first candidate.
    /// Call [`Engine::flush`] after a batch.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        self.handle_receive(now, Transport::Udp, source, destination, buf);
    }

    /// One packet received over ICE-TCP (RFC 4571 framing already removed) on a connection from
    /// `source` to `destination`. Transmits for it come out with [`Protocol::Tcp`].
    pub fn handle_tcp_packet(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        self.handle_receive(now, Transport::Tcp, source, destination, buf);
    }

    fn handle_receive(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        buf: &[u8],
    ) {
        self.stats.datagrams_in += 1;
        let key = match self.demux.addr(transport, source) {
            Some(k) => k,
            None => match self.learn_address(transport, source, buf) {
                Some(k) => k,
                None => {
                    self.stats.datagrams_unknown += 1;
                    return;
                }
            },
        };
        let (candidates, proto) = match transport {
            Transport::Udp => (&self.config.candidate_addrs, Protocol::Udp),
            Transport::Tcp => (&self.config.tcp_candidate_addrs, Protocol::Tcp),
        };
        let destination = if candidates.contains(&destination) || candidates.is_empty() {
            destination
        } else {
            candidates[0]
        };
        let Ok(receive) = Receive::new(proto, source, destination, buf) else {
            self.stats.datagrams_rejected += 1;
            return;
        };
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        if p.connected && now.saturating_duration_since(p.last_recv) >= bandwidth::OUTAGE {
            // Back after an outage: what its feedback reports about the gap is not congestion.
            p.allocation.recovering_until = Some(now + bandwidth::OUTAGE_RECOVERY);
        }
        p.last_recv = now;
        // DTLS, RTP and RTCP (RFC 7983: first byte 20 and up), not STUN: a replayed check must
        // not make its address look like the one media uses.
        if buf.first().is_some_and(|b| *b >= 20) {
            p.paths.media_from((transport, source));
        }
        p.clock = p.clock.max(now);
        if let Err(e) = p.rtc.handle_input(Input::Receive(p.clock, receive)) {
            self.stats.datagrams_rejected += 1;
            debug!(participant = %p.id, "input refused: {e}");
        }
        self.drain(key);
        self.process(now);
    }

    /// Drive every connection that was written to since the last flush, so that what was queued on
    /// it goes out now.
    pub fn flush(&mut self, now: Instant) {
        while !self.touched.is_empty() {
            let touched = std::mem::take(&mut self.touched);
            for &key in &touched {
                let Some(p) = self.participants.get_mut(&key) else {
                    continue;
                };
                p.touched = false;
                p.clock = p.clock.max(now);
                // Only the pacing part of a timeout: anything else due shows as an immediate
                // deadline, which `drain` honours at once.
                self.stats.rtc_releases += 1;
                if let Err(e) = p.rtc.release_queued(p.clock) {
                    debug!(participant = %p.id, "release refused: {e}");
                }
                self.drain(key);
            }
            // Give the (now empty) allocation back for reuse.
            self.touched = touched;
            self.touched.clear();
            self.process(now);
        }
    }

    /// Time passed: drive every connection whose deadline is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((key, kind)) = self.timers.pop_due(now) {
            // A track's timers are kept under its publisher's key, which for a mirror track is
            // a participant of another engine, with no connection here.
            match kind {
                TimerKind::Layers(tk) => self.update_publisher_layers(now, tk),
                TimerKind::Speaker(tk) => self.check_speaker(now, tk),
                TimerKind::Speakers => self.send_pending_speakers(now, key),
                _ => {}
            }
            let Some(p) = self.participants.get_mut(&key) else {
                self.process(now);
                continue;
            };
            match kind {
                TimerKind::Layers(_) | TimerKind::Speaker(_) | TimerKind::Speakers => {}
                TimerKind::Rtc => {
                    p.clock = p.clock.max(now);
                    drive(&mut p.rtc, p.clock, &mut self.stats, &p.id);
                    self.drain(key);
                }
                TimerKind::Liveness => self.check_liveness(now, key),
                TimerKind::Allocate => self.agenda.allocate(key),
            }
            self.process(now);
        }
        self.flush(now);
    }

    /// Keep participant `id` in its room without media until `until` (its signalling dropped and
    /// it may come back and restart ICE); `None` ends the hold. Silence and ICE disconnection
    /// remove it only after the hold. The room hears that it is reconnecting, or back
    /// ([`Event::Reconnecting`]).
    pub fn hold(&mut self, now: Instant, id: &str, until: Option<Instant>) {
        let Some(key) = self.demux.id(id) else {
            return;
        };
        if let Some(p) = self.participants.get_mut(&key) {
            let changed = p.held_until.is_some() != until.is_some();
            p.held_until = until;
            if changed {
                let (room, participant) = (p.room.clone(), p.id.clone());
                let reconnecting = until.is_some();
                self.announce_reconnecting(&room, &participant, reconnecting);
                self.emit(Event::Reconnecting {
                    room,
                    participant,
                    reconnecting,
                });
            }
        }
        self.check_liveness(now, key);
        self.process(now);
    }

    fn check_liveness(&mut self, now: Instant, key: ParticipantKey) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let deadline = if p.connected {
            p.last_recv + self.config.silence_timeout
        } else {
            p.joined_at + self.config.connect_timeout
        };
        let deadline = deadline.max(p.held_until.unwrap_or(deadline));
        if now >= deadline || !p.rtc.is_alive() {
            debug!(participant = %p.id, "no media connectivity; removing");
            self.remove(now, key, LeaveReason::Timeout);
        } else {
            self.timers.set(key, TimerKind::Liveness, deadline);
        }
    }

    /// Poll a connection until it has nothing more to say, queueing transmits and events.
    ///
    /// str0m's pacer lets one packet out per timeout and then asks for a timeout one microsecond
    /// later. Such immediate deadlines are honoured here, in the same turn, rather than through
    /// the timer heap: otherwise a burst of N packets to one subscriber costs N turns of the
    /// worker loop and N send calls. The connection's clock moves on by that microsecond each
    /// time, so send times stay monotonic and GCC sees the pacer's own spacing.
    fn drain(&mut self, key: ParticipantKey) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let mut immediate = 0;
        // A deadline that comes back unchanged after a timeout that produced nothing goes to the
        // timer heap: driving it again here would only spin.
        let (mut progress, mut last) = (true, None);
        loop {
            // The datagrams of a burst under way, each without an `Output` around it (an enum
            // sized for the largest event).
            while let Some(t) = p.rtc.poll_transmit() {
                progress = true;
                self.transmits.push_back(t);
            }
            match p.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    progress = true;
                    self.transmits.push_back(t);
                }
                Ok(Output::Event(e)) => {
                    progress = true;
                    self.rtc_events.push((key, e));
                }
                Ok(Output::Timeout(t))
                    if t <= p.clock + IMMEDIATE
                        && immediate < MAX_IMMEDIATE_TURNS
                        && (progress || last != Some(t)) =>
                {
                    immediate += 1;
                    (progress, last) = (false, Some(t));
                    p.clock = p.clock.max(t);
                    drive(&mut p.rtc, p.clock, &mut self.stats, &p.id);
                }
                Ok(Output::Timeout(t)) => {
                    self.timers.set(key, TimerKind::Rtc, t);
                    break;
                }
                Err(e) => {
                    warn!(participant = %p.id, "connection failed: {e}");
                    p.rtc.disconnect();
                    break;
                }
            }
        }
    }

    /// Handle queued events until none are left, then send offers where negotiation is due.
    fn process(&mut self, now: Instant) {
        while !self.rtc_events.is_empty() {
            let mut events = std::mem::take(&mut self.rtc_events);
            for (key, event) in events.drain(..) {
                self.handle_event(now, key, event);
            }
            if self.rtc_events.is_empty() {
                self.rtc_events = events; // reuse the allocation
            }
        }
        while let Some(key) = self.agenda.next_renegotiation() {
            self.send_offer(key);
            self.drain(key);
            while !self.rtc_events.is_empty() {
                let events = std::mem::take(&mut self.rtc_events);
                for (key, event) in events {
                    self.handle_event(now, key, event);
                }
            }
        }
        if self.agenda.has_speech() {
            self.update_speakers(now);
        }
        if self.agenda.has_allocation_work() {
            self.update_allocations(now);
        }
    }

    fn handle_event(&mut self, now: Instant, key: ParticipantKey, event: RtcEvent) {
        match event {
            RtcEvent::RtpPacket(pkt) => self.forward(now, key, pkt),
            RtcEvent::KeyframeRequest(req) => {
                self.stats.keyframe_requests_in += 1;
                let Some(p) = self.participants.get(&key) else {
                    return;
                };
                let Some(&tk) = p.sub_by_mid.get(&req.mid) else {
                    return;
                };
                let layer = p
                    .subs
                    .get(&tk)
                    .and_then(|s| s.selector.current().or(s.selector.target()));
                if let Some(layer) = layer {
                    self.request_keyframe(now, tk, layer);
                }
            }
            RtcEvent::Connected => {
                let Some(p) = self.participants.get_mut(&key) else {
                    return;
                };
                debug!(participant = %p.id, "connected");
                p.connected = true;
                p.last_recv = now;
                // From now on silence, not the connect deadline, decides liveness.
                let at = now + self.config.silence_timeout;
                self.timers.set(key, TimerKind::Liveness, at);
            }
            RtcEvent::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // ICE-lite gives up on candidate pairs that got no check for 15 s. Before the
                // connection was ever up that is not the end (checks may still come, from
                // another path or after an ICE restart): the connect deadline decides.
                let keep = self
                    .participants
                    .get(&key)
                    .is_some_and(|p| !p.connected || p.held_until.is_some_and(|t| t > now));
                if !keep {
                    self.remove(now, key, LeaveReason::Timeout);
                }
            }
            RtcEvent::MediaAdded(m) => self.media_added(key, m),
            RtcEvent::MediaChanged(m) => {
                if m.direction.is_receiving() {
                    // An m-line the client stopped sending on and now uses again.
                    self.republish_mid(key, m.mid);
                } else {
                    self.unpublish_mid(key, m.mid);
                }
            }
            RtcEvent::Closed => self.remove(now, key, LeaveReason::Disconnected),
            RtcEvent::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.on_estimate(now, key, estimate.as_u64());
            }
            RtcEvent::MediaEgressStats(s) => self.count_nacks(key, (s.mid, s.rid, false), s.nacks),
            RtcEvent::PeerStats(s) => self.sample_quality(now, key, &s),
            RtcEvent::MediaIngressStats(s) => self.count_nacks(key, (s.mid, s.rid, true), s.nacks),
            RtcEvent::ChannelOpen(id, label) => self.channel_open(key, id, label),
            RtcEvent::ChannelClose(id) => self.channel_close(key, id),
            RtcEvent::ChannelData(cd) => self.channel_data(now, key, cd.id, cd.binary, &cd.data),
            RtcEvent::StreamPaused(sp) => {
                if let Some((tk, _)) = self.rooms.stream(key, sp.ssrc) {
                    self.agenda.layers_changed(tk);
                }
            }
            _ => {}
        }
    }

    /// A second of a connection's statistics: its quality, told to its room when it changes.
    fn sample_quality(&mut self, now: Instant, key: ParticipantKey, s: &str0m::stats::PeerStats) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        if !p.connected {
            return;
        }
        if p.red.sample(now, s.egress_loss_fraction) {
            debug!(participant = %p.id, redundant = p.red.on(), "redundant audio");
        }
        // The connection's first padded seconds are over (bandwidth::PAD_AT_START): allocate
        // again to stop the padding.
        if p.allocation.pad_until.is_some_and(|t| now >= t) {
            p.allocation.pad_until = None;
            self.agenda.allocate(key);
        }
        let loss = match (s.egress_loss_fraction, s.ingress_loss_fraction) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let sample = quality::Sample {
            loss,
            rtt: s.rtt,
            silent_for: now.saturating_duration_since(p.last_recv),
            paused_for_bandwidth: p.allocation.paused_for_bandwidth,
            below_wanted: p.allocation.below_wanted,
        };
        if let Some(q) = p.quality.sample(&sample) {
            let (room, participant) = (p.room.clone(), p.id.clone());
            self.announce_quality(&room, &participant, q);
            self.emit(Event::ConnectionQuality {
                room,
                participant,
                quality: q,
            });
        }
    }

    /// str0m reports cumulative NACK counts per stream; count what is new since the last report.
    fn count_nacks(&mut self, key: ParticipantKey, stream: participant::StreamKey, total: u64) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let last = match p.nack_counts.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, n)) => std::mem::replace(n, total),
            None => {
                p.nack_counts.push((stream, total));
                0
            }
        };
        let new = total.saturating_sub(last);
        if stream.2 {
            self.stats.nacks_out += new;
        } else {
            self.stats.nacks_in += new;
        }
    }
}
