//! The sans-IO media core.
//!
//! An [`Engine`] owns whole rooms: their participants (one str0m [`Rtc`] each), their published
//! tracks and every subscription. It never reads a clock or a socket: time is a parameter and
//! network I/O is done by the caller. The call order is:
//!
//! 1. feed input: [`Engine::join`], [`Engine::handle_signal`], [`Engine::leave`] from signalling,
//!    [`Engine::handle_datagram`] for each received datagram, [`Engine::handle_timeout`] when the
//!    deadline from [`Engine::poll_timeout`] has passed;
//! 2. after a batch of datagrams, call [`Engine::flush`] once: every connection that got packets to
//!    send is driven once, so their output leaves together;
//! 3. drain [`Engine::poll_transmit`] (datagrams to send) and [`Engine::poll_signal`] (messages for
//!    participants), then wait until [`Engine::poll_timeout`] or new input.
//!
//! Per packet the engine does O(1) lookups: remote address to participant (a map, learnt from the
//! STUN USERNAME of the first request from a new address), SSRC to track, and one loop over the
//! track's subscribers. Connections are driven from a timer heap of their own deadlines, never by
//! scanning them all.

mod activity;
mod admin;
pub mod allocator;
pub mod bandwidth;
pub mod data;
pub mod forward;
pub mod participant;
pub mod rate;
pub mod room;
mod rooms_admin;
mod signalling;
pub mod speaker;
pub mod stats;

pub use signalling::JoinSpec;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::{Bitrate, BweKind};
use str0m::config::DtlsCert;
use str0m::format::{detect_h264_keyframe, detect_h264_nalu, detect_vp8_keyframe, Codec};
use str0m::media::{KeyframeRequestKind, MediaKind, Pt};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc, Vp8Descriptor};
use str0m::{Event, IceConnectionState, Input, Output, RtcConfig};
use tracing::{debug, warn};

use signal::protocol::{IceServer, ServerMessage, TrackKind};

use forward::select::{LayerIndex, Selection};
use forward::{DropReason, PacketInfo, Verdict};
use participant::{Participant, ParticipantKey, MAX_ADDRS};
use room::{Room, Track, TrackKey, VideoCodec};
use stats::EngineStats;

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
    /// ICE servers handed to clients on join.
    pub ice_servers: Vec<IceServer>,
    /// A connected participant from whom nothing arrived for this long is removed.
    pub silence_timeout: Duration,
    /// A participant whose connection is not up this long after joining is removed.
    pub connect_timeout: Duration,
    /// The most any one subscriber is sent, in bits per second, whatever its estimate says
    /// (`None`: no cap).
    pub max_subscriber_bitrate: Option<u64>,
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
            ice_servers: Vec::new(),
            silence_timeout: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(30),
            max_subscriber_bitrate: None,
        }
    }
}

/// The str0m configuration of a server-side connection: ICE-lite, RTP mode, Opus, VP8 and H264.
pub fn rtc_config(cert: DtlsCert) -> RtcConfig {
    RtcConfig::new()
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .set_dtls_cert(cert)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .enable_h264(true)
        .enable_bwe(Some(Bitrate::bps(bandwidth::INITIAL_ESTIMATE)))
        // Per-stream statistics once a second: the NACK counters come from them.
        .set_stats_interval(Some(Duration::from_secs(1)))
}

/// Makes a DTLS certificate with the default crypto backend.
pub fn generate_dtls_cert() -> DtlsCert {
    str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        // The aws-lc-rs backend always generates certificates; failing here is a broken build.
        .expect("the crypto backend generates DTLS certificates")
}

/// The transport a packet came over; part of the demultiplexing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// ICE-TCP (RFC 6544, RFC 4571 framing).
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// The `Rtc`'s own deadline.
    Rtc,
    /// Check whether the participant went silent.
    Liveness,
    /// Pause layers of this track at the publisher if still unneeded.
    Layers(TrackKey),
    /// Check whether this audio track went silent.
    Speaker(TrackKey),
    /// A deferred allocation of the participant's videos.
    Allocate,
}

/// The media core of one worker. See the module docs for the call order.
pub struct Engine {
    config: EngineConfig,
    participants: HashMap<ParticipantKey, Participant>,
    by_addr: HashMap<(Transport, SocketAddr), ParticipantKey>,
    by_ufrag: HashMap<String, ParticipantKey>,
    by_id: HashMap<String, ParticipantKey>,
    rooms: HashMap<String, Room>,
    tracks: HashMap<TrackKey, Track>,
    /// SSRC of an incoming stream -> track and layer, per publisher.
    ssrc_tracks: HashMap<(ParticipantKey, Ssrc), (TrackKey, LayerIndex)>,
    /// Tracks whose set of arriving layers changed: their subscribers are allocated again.
    layers_changed: Vec<TrackKey>,
    /// Subscriptions that switched layer (subscriber, track): their state is reported.
    switched: Vec<(ParticipantKey, TrackKey)>,
    /// Audio tracks whose speech state flipped.
    speaking_changed: Vec<(TrackKey, bool)>,
    timers: BinaryHeap<Reverse<(Instant, ParticipantKey, TimerKind)>>,
    /// Events drained from connections, to be handled.
    events: Vec<(ParticipantKey, Event)>,
    /// Connections written to since the last flush.
    touched: Vec<ParticipantKey>,
    /// Participants whose negotiation state changed.
    renegotiate: Vec<ParticipantKey>,
    /// Subscribers whose videos need allocating.
    allocate_queue: Vec<ParticipantKey>,
    /// Tracks whose needed layers may have changed.
    dynacast_queue: Vec<TrackKey>,
    transmits: VecDeque<Transmit>,
    signals: VecDeque<(String, ServerMessage)>,
    next_key: u64,
    stats: EngineStats,
}

impl Engine {
    /// An engine with no rooms.
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config,
            participants: HashMap::new(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_id: HashMap::new(),
            rooms: HashMap::new(),
            tracks: HashMap::new(),
            ssrc_tracks: HashMap::new(),
            layers_changed: Vec::new(),
            switched: Vec::new(),
            speaking_changed: Vec::new(),
            timers: BinaryHeap::new(),
            events: Vec::new(),
            touched: Vec::new(),
            renegotiate: Vec::new(),
            allocate_queue: Vec::new(),
            dynacast_queue: Vec::new(),
            transmits: VecDeque::new(),
            signals: VecDeque::new(),
            next_key: 1,
            stats: EngineStats::default(),
        }
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
        self.rooms.len()
    }

    /// Ids of the participants of a room, in join order.
    pub fn room_participants(&self, room: &str) -> Vec<String> {
        self.rooms
            .get(room)
            .map(|r| {
                r.participants
                    .iter()
                    .filter_map(|k| self.participants.get(k).map(|p| p.id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The bandwidth estimate towards participant `id`, bits per second, once there is one.
    pub fn estimate_of(&self, id: &str) -> Option<u64> {
        let key = self.by_id.get(id)?;
        self.participants.get(key)?.estimate
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

    /// The next message for a participant, by participant id.
    pub fn poll_signal(&mut self) -> Option<(String, ServerMessage)> {
        self.signals.pop_front()
    }

    /// When [`Engine::handle_timeout`] should be called next (`None`: no participant).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _, _))| *t)
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
        let key = match self.by_addr.get(&(transport, source)) {
            Some(k) => *k,
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
        p.last_recv = now;
        if let Err(e) = p.rtc.handle_input(Input::Receive(now, receive)) {
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
                if let Err(e) = p.rtc.handle_input(Input::Timeout(p.clock)) {
                    debug!(participant = %p.id, "timeout refused: {e}");
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
        while let Some(Reverse((at, key, kind))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(p) = self.participants.get_mut(&key) else {
                continue;
            };
            match kind {
                TimerKind::Rtc => {
                    if p.rtc_timer != Some(at) {
                        continue; // stale
                    }
                    p.rtc_timer = None;
                    p.clock = p.clock.max(now);
                    if let Err(e) = p.rtc.handle_input(Input::Timeout(p.clock)) {
                        debug!(participant = %p.id, "timeout refused: {e}");
                    }
                    self.drain(key);
                }
                TimerKind::Liveness => {
                    if p.liveness_timer != Some(at) {
                        continue;
                    }
                    p.liveness_timer = None;
                    self.check_liveness(now, key);
                }
                TimerKind::Layers(tk) => self.update_publisher_layers(now, tk),
                TimerKind::Speaker(tk) => self.check_speaker(now, tk),
                TimerKind::Allocate => {
                    if p.allocation_timer == Some(at) {
                        self.allocate_queue.push(key);
                    }
                }
            }
            self.process(now);
        }
        self.flush(now);
        self.compact_timers();
    }

    /// The heap keeps stale entries until they come due; rebuild it if they pile up.
    fn compact_timers(&mut self) {
        if self.timers.len() <= 4 * self.participants.len() + 1024 {
            return;
        }
        self.timers = self
            .participants
            .iter()
            .flat_map(|(k, p)| {
                let rtc = p.rtc_timer.map(|t| Reverse((t, *k, TimerKind::Rtc)));
                let live = p
                    .liveness_timer
                    .map(|t| Reverse((t, *k, TimerKind::Liveness)));
                rtc.into_iter().chain(live)
            })
            .collect();
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
        if now >= deadline || !p.rtc.is_alive() {
            debug!(participant = %p.id, "no media connectivity; removing");
            self.remove(now, key, "timeout");
        } else {
            p.liveness_timer = Some(deadline);
            self.timers
                .push(Reverse((deadline, key, TimerKind::Liveness)));
        }
    }

    /// A datagram from an unknown address: if it is a STUN request naming one of our ICE ufrags,
    /// remember the address for that participant.
    fn learn_address(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        buf: &[u8],
    ) -> Option<ParticipantKey> {
        let stun = str0m::ice::StunMessage::parse(buf).ok()?;
        if !stun.is_binding_request() {
            return None;
        }
        let (local, _remote) = stun.split_username()?;
        let key = *self.by_ufrag.get(local)?;
        let p = self.participants.get_mut(&key)?;
        if p.addrs.len() >= MAX_ADDRS {
            let old = p.addrs.remove(0);
            self.by_addr.remove(&old);
        }
        p.addrs.push((transport, source));
        self.by_addr.insert((transport, source), key);
        Some(key)
    }

    /// Poll a connection until it has nothing more to say, queueing transmits and events.
    fn drain(&mut self, key: ParticipantKey) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        loop {
            match p.rtc.poll_output() {
                Ok(Output::Transmit(t)) => self.transmits.push_back(t),
                Ok(Output::Event(e)) => self.events.push((key, e)),
                Ok(Output::Timeout(t)) => {
                    if p.rtc_timer != Some(t) {
                        p.rtc_timer = Some(t);
                        self.timers.push(Reverse((t, key, TimerKind::Rtc)));
                    }
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
        while !self.events.is_empty() {
            let mut events = std::mem::take(&mut self.events);
            for (key, event) in events.drain(..) {
                self.handle_event(now, key, event);
            }
            if self.events.is_empty() {
                self.events = events; // reuse the allocation
            }
        }
        while let Some(key) = self.renegotiate.pop() {
            self.send_offer(key);
            self.drain(key);
            while !self.events.is_empty() {
                let events = std::mem::take(&mut self.events);
                for (key, event) in events {
                    self.handle_event(now, key, event);
                }
            }
        }
        if !self.speaking_changed.is_empty() {
            self.update_speakers(now);
        }
        if !self.allocate_queue.is_empty()
            || !self.layers_changed.is_empty()
            || !self.switched.is_empty()
            || !self.dynacast_queue.is_empty()
        {
            self.update_allocations(now);
        }
    }

    fn handle_event(&mut self, now: Instant, key: ParticipantKey, event: Event) {
        match event {
            Event::RtpPacket(pkt) => self.forward(now, key, pkt),
            Event::KeyframeRequest(req) => {
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
            Event::Connected => {
                let Some(p) = self.participants.get_mut(&key) else {
                    return;
                };
                debug!(participant = %p.id, "connected");
                p.connected = true;
                p.last_recv = now;
                // From now on silence, not the connect deadline, decides liveness.
                let at = now + self.config.silence_timeout;
                p.liveness_timer = Some(at);
                self.timers.push(Reverse((at, key, TimerKind::Liveness)));
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.remove(now, key, "timeout");
            }
            Event::MediaAdded(m) => self.media_added(key, m),
            Event::MediaChanged(m) => {
                if m.direction.is_receiving() {
                    // An m-line the client stopped sending on and now uses again.
                    self.republish_mid(key, m.mid);
                } else {
                    self.unpublish_mid(key, m.mid);
                }
            }
            Event::Closed => self.remove(now, key, "disconnected"),
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.on_estimate(now, key, estimate.as_u64());
            }
            Event::MediaEgressStats(s) => self.count_nacks(key, (s.mid, s.rid, false), s.nacks),
            Event::MediaIngressStats(s) => self.count_nacks(key, (s.mid, s.rid, true), s.nacks),
            Event::ChannelOpen(id, label) => self.channel_open(key, id, label),
            Event::ChannelClose(id) => self.channel_close(key, id),
            Event::ChannelData(cd) => self.channel_data(now, key, cd.id, cd.binary, &cd.data),
            Event::StreamPaused(sp) => {
                if let Some(&(tk, _)) = self.ssrc_tracks.get(&(key, sp.ssrc)) {
                    self.layers_changed.push(tk);
                }
            }
            _ => {}
        }
    }

    /// Forward one RTP packet of publisher `key` to every subscriber of its track.
    fn forward(&mut self, now: Instant, key: ParticipantKey, pkt: RtpPacket) {
        self.stats.rtp_in += 1;
        let Some((tk, layer)) = self.track_of(key, pkt.header.ssrc) else {
            return;
        };
        let Some(track) = self.tracks.get_mut(&tk) else {
            return;
        };
        let kind = stats::kind_index(track.kind);
        self.stats.rtp_in_by_kind[kind] += 1;
        self.stats.rtp_in_bytes_by_kind[kind] += pkt.payload.len() as u64;
        let in_pt = pkt.header.payload_type;
        let keyframe_start = match track.kind {
            // Every audio packet can start a stream.
            TrackKind::Audio => true,
            TrackKind::Video => {
                let codec = match track.codec {
                    Some(c) => c,
                    None => {
                        let c = self
                            .participants
                            .get(&key)
                            .map_or(VideoCodec::Other, |p| video_codec(p, in_pt));
                        track.codec = Some(c);
                        c
                    }
                };
                is_keyframe_start(codec, &pkt.payload)
            }
        };
        let Some(l) = track.layers.get_mut(layer as usize) else {
            return;
        };
        l.rate.add(now, pkt.payload.len());
        let was_arriving = l
            .last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < room::LAYER_TIMEOUT);
        l.last_packet = Some(now);
        if keyframe_start && track.codec == Some(VideoCodec::Vp8) {
            l.size = forward::vp8::keyframe_size(&pkt.payload).or(l.size);
        }
        if !was_arriving && track.kind == TrackKind::Video {
            // A layer (re)appeared: the subscribers' allocations may change.
            self.layers_changed.push(tk);
        }
        if track.muted {
            self.stats.dropped[DropReason::Muted.index()] += track.subscribers.len() as u64;
            return;
        }
        if let Some(level) = pkt.header.ext_vals.audio_level {
            let dbov = (level as i16).unsigned_abs().min(127) as u8;
            if let Some(speaking) = track.speaker.handle_level(now, dbov) {
                self.speaking_changed.push((tk, speaking));
            }
        }
        let info = PacketInfo {
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            keyframe_start,
            at: pkt.timestamp,
        };
        let ext = forwarded_extensions(&pkt.header.ext_vals);
        let nackable = track.kind == TrackKind::Video;
        // Parsed once; each subscriber may need its own picture id numbering.
        let vp8 = (track.codec == Some(VideoCodec::Vp8))
            .then(|| Vp8Descriptor::parse(&pkt.payload).ok())
            .flatten();
        let short_pid = !forward::vp8::long_picture_id(&pkt.payload);
        let mut keyframe_needed = false;
        let in_params = self
            .participants
            .get(&key)
            .and_then(|p| p.rtc.codec_config().find(|pp| pp.pt() == in_pt).copied());

        for &sk in &track.subscribers {
            let Some(s) = self.participants.get_mut(&sk) else {
                continue;
            };
            let Some(sub) = s.subs.get_mut(&tk) else {
                continue;
            };
            let drop = |stats: &mut EngineStats, r: DropReason| stats.dropped[r.index()] += 1;
            let switch = match sub.selector.select(layer, keyframe_start) {
                Selection::Forward => false,
                Selection::Switch => true,
                Selection::Skip { keyframe_needed: k } => {
                    let reason = if k {
                        DropReason::WaitingForKeyframe
                    } else if sub.selector.target().is_none() {
                        DropReason::Paused
                    } else {
                        DropReason::OtherLayer
                    };
                    drop(&mut self.stats, reason);
                    keyframe_needed |= k;
                    continue;
                }
            };
            if switch {
                self.stats.layer_switches += 1;
                sub.forwarder.restart();
                sub.vp8.restart();
                self.switched.push((sk, tk));
            }
            if !s.connected {
                drop(&mut self.stats, DropReason::NotConnected);
                continue;
            }
            let out_pt = match sub.pt_map {
                Some((i, o)) if i == in_pt => Some(o),
                _ => {
                    let o = in_params
                        .and_then(|pp| s.rtc.codec_config().match_params(pp).map(|m| m.pt()));
                    if let Some(o) = o {
                        sub.pt_map = Some((in_pt, o));
                    }
                    o
                }
            };
            let Some(out_pt) = out_pt else {
                drop(&mut self.stats, DropReason::NoStream);
                continue;
            };
            let mut api = s.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(sub.mid, None) else {
                drop(&mut self.stats, DropReason::NoStream);
                continue;
            };
            match sub.forwarder.handle_packet(info) {
                Verdict::Send { seq, ts } => {
                    let mut write =
                        RtpWrite::new(out_pt, seq.into(), ts, pkt.timestamp, pkt.payload.clone())
                            .marker(pkt.header.marker)
                            .ext_vals(ext.clone())
                            .nackable(nackable);
                    if let Some(d) = &vp8 {
                        let (pid, tl0) = (d.picture_id(), d.tl0_pic_idx());
                        let (out_pid, out_tl0) = sub.vp8.rewrite(pid, tl0, short_pid);
                        if (out_pid, out_tl0) != (pid, tl0) {
                            let mut b = d.patch();
                            if let Some(p) = out_pid {
                                b = b.picture_id(p);
                            }
                            if let Some(t) = out_tl0 {
                                b = b.tl0_pic_idx(t);
                            }
                            if let Ok(patch) = b.build() {
                                write = write.vp8_patch(patch);
                            }
                        }
                    }
                    tx.write_rtp(write);
                    self.stats.rtp_forwarded += 1;
                    self.stats.rtp_forwarded_bytes += pkt.payload.len() as u64;
                    self.stats.rtp_out_by_kind[kind] += 1;
                    self.stats.rtp_out_bytes_by_kind[kind] += pkt.payload.len() as u64;
                    if !s.touched {
                        s.touched = true;
                        self.touched.push(sk);
                    }
                }
                Verdict::Drop {
                    reason,
                    keyframe_needed: k,
                } => {
                    drop(&mut self.stats, reason);
                    keyframe_needed |= k;
                }
            }
        }
        if keyframe_needed {
            self.request_keyframe(now, tk, layer);
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

    /// The track and layer an incoming SSRC of publisher `key` belongs to (learnt once per
    /// SSRC).
    fn track_of(&mut self, key: ParticipantKey, ssrc: Ssrc) -> Option<(TrackKey, LayerIndex)> {
        if let Some(v) = self.ssrc_tracks.get(&(key, ssrc)) {
            return Some(*v);
        }
        let p = self.participants.get_mut(&key)?;
        let mut api = p.rtc.direct_api();
        let rx = api.stream_rx(&ssrc)?;
        let (mid, rid) = (rx.mid(), rx.rid());
        let tk = p.published.iter().find(|(m, _)| *m == mid)?.1;
        let track = self.tracks.get(&tk)?;
        let layer = match rid {
            None => 0,
            Some(rid) => track.layers.iter().position(|l| l.rid == Some(rid))? as LayerIndex,
        };
        self.ssrc_tracks.insert((key, ssrc), (tk, layer));
        Some((tk, layer))
    }

    /// Ask the publisher of a track for a keyframe on `layer`, at most once per
    /// [`room::KEYFRAME_REQUEST_INTERVAL`] per layer: requests of several subscribers merge.
    fn request_keyframe(&mut self, now: Instant, tk: TrackKey, layer: LayerIndex) {
        let Some(track) = self.tracks.get_mut(&tk) else {
            return;
        };
        if track.kind != TrackKind::Video || !track.keyframe_request_due(now, layer) {
            return;
        }
        let rid = track.layers.get(layer as usize).and_then(|l| l.rid);
        let Some(p) = self.participants.get_mut(&track.publisher) else {
            return;
        };
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(track.mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.stats.keyframe_requests += 1;
            if !p.touched {
                p.touched = true;
                self.touched.push(track.publisher);
            }
        }
    }
}

/// Which video codec a payload type of a publisher's connection stands for.
fn video_codec(p: &Participant, pt: Pt) -> VideoCodec {
    match p
        .rtc
        .codec_config()
        .find(|pp| pp.pt() == pt)
        .map(|pp| pp.spec().codec)
    {
        Some(Codec::Vp8) => VideoCodec::Vp8,
        Some(Codec::H264) => VideoCodec::H264,
        _ => VideoCodec::Other,
    }
}

/// Whether decoding can start at this packet.
fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    const SPS: u8 = 7;
    match codec {
        VideoCodec::Vp8 => detect_vp8_keyframe(payload),
        // Senders put SPS/PPS in front of an IDR; start there so the decoder has them.
        VideoCodec::H264 => detect_h264_nalu(payload, SPS) || detect_h264_keyframe(payload),
        VideoCodec::Other => true,
    }
}

/// The header extensions worth passing on; str0m writes mid, rid and transport-cc itself.
fn forwarded_extensions(e: &ExtensionValues) -> ExtensionValues {
    ExtensionValues {
        audio_level: e.audio_level,
        voice_activity: e.voice_activity,
        video_orientation: e.video_orientation,
        video_content_type: e.video_content_type,
        ..Default::default()
    }
}

/// str0m's media kind for a protocol track kind.
fn media_kind(kind: TrackKind) -> MediaKind {
    match kind {
        TrackKind::Audio => MediaKind::Audio,
        TrackKind::Video => MediaKind::Video,
    }
}

/// The protocol's track kind for str0m's media kind.
fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
    }
}
