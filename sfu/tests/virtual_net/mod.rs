//! A deterministic test bed for the engine: str0m clients (the role browsers play), a virtual
//! clock and an in-memory network whose per-link loss can be set.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sfu::core::forward::av1::{self, DdSerializer, DependencyDescriptor};
use sfu::core::shard_repair::{RepairReceiver, RepairSender};
use sfu::core::{
    generate_dtls_cert, Engine, EngineConfig, Event as EngineEvent, JoinSpec, ShardMessage,
};
use sfu::io::webhook::Webhooks;
use sfu::io::wire::{self, Wire};
use signal::protocol::{ServerMessage, TrackSource};
use signal::webhook::WebhookEvent;
use signal::ClientSignal;
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::rtp::{Extension, ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Virtual time step.
pub const TICK: Duration = Duration::from_millis(1);
pub const SERVER: &str = "10.0.0.1:5000";
/// The server's passive ICE-TCP candidate.
pub const SERVER_TCP: &str = "10.0.0.1:5443";

/// The test publisher captures a video frame this often.
pub const FRAME_INTERVAL: Duration = Duration::from_millis(50);

/// A simulcast layer the test publisher sends: 20 frames/s of `packets` packets.
pub struct Layer {
    pub rid: &'static str,
    pub width: u16,
    pub height: u16,
    pub packets: usize,
    pub packet_bytes: usize,
}

/// q about 150 kbit/s, h about 500 kbit/s, f about 1.5 Mbit/s.
pub const LAYERS: [Layer; 3] = [
    Layer {
        rid: "q",
        width: 320,
        height: 180,
        packets: 1,
        packet_bytes: 930,
    },
    Layer {
        rid: "h",
        width: 640,
        height: 360,
        packets: 3,
        packet_bytes: 1040,
    },
    Layer {
        rid: "f",
        width: 1280,
        height: 720,
        packets: 8,
        packet_bytes: 1170,
    },
];

fn cert() -> DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(generate_dtls_cert).clone()
}

/// One RTP packet as a client received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub seq: u16,
    pub ts: u32,
    pub keyframe: bool,
    pub marker: bool,
    /// The simulcast layer index the publisher wrote in the payload's last byte (low half).
    pub layer: u8,
    /// The temporal layer it wrote there (high half).
    pub temporal: u8,
    /// The VP8 or VP9 picture id as received (AV1: the dependency descriptor's frame number).
    pub pid: Option<u16>,
    /// The publisher's frame counter (video; frames are captured every 50 ms).
    pub frame: u32,
    /// The payload type it arrived with.
    pub pt: u8,
    /// The payload's length.
    pub len: usize,
}

/// An AV1 dependency descriptor for a frame of layer (`spatial`, `temporal`) of an `L3T3` stream
/// (templates S0T0, S0T1, S0T2, S1T0, ... with ids `offset` to `offset` + 8), with the structure
/// and these layers' resolutions when `structure` is given.
pub fn dependency_descriptor(
    first: bool,
    last: bool,
    spatial: u8,
    temporal: u8,
    frame: u16,
    offset: u8,
    structure: Option<&[Layer]>,
) -> Vec<u8> {
    let mut bits: Vec<bool> = Vec::new();
    let mut put = |n: u32, v: u32| {
        for i in (0..n).rev() {
            bits.push(v >> i & 1 == 1);
        }
    };
    put(1, first.into());
    put(1, last.into());
    put(6, u32::from((offset + spatial * 3 + temporal) % 64));
    put(16, frame.into());
    if let Some(layers) = structure {
        let spatial_layers = layers.len() as u32;
        let templates = spatial_layers * 3;
        // Structure present; no active decode targets, custom DTIs, fdiffs or chains.
        put(5, 0b10000);
        // The template id offset; one decode target per template.
        put(6, u32::from(offset));
        put(5, templates - 1);
        for s in 0..spatial_layers {
            put(2, 1);
            put(2, 1);
            put(2, if s + 1 == spatial_layers { 3 } else { 2 });
        }
        // DTIs: required ("3") for every decode target at or above the template's layer.
        for _ in 0..templates * templates {
            put(2, 3);
        }
        // No frame diffs.
        for _ in 0..templates {
            put(1, 0);
        }
        // No chains: ns(templates + 1) = 0.
        let w = 32 - (templates + 1).leading_zeros();
        put(w - 1, 0);
        // Resolutions.
        put(1, 1);
        for l in layers {
            put(16, u32::from(l.width) - 1);
            put(16, u32::from(l.height) - 1);
        }
    }
    bits.chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |b, (i, bit)| b | u8::from(*bit) << (7 - i))
        })
        .collect()
}

/// The picture id of a VP9 payload descriptor, if it has one.
fn vp9_picture_id(payload: &[u8]) -> Option<u16> {
    match payload {
        [b0, m, x, ..] if b0 & 0x80 != 0 && m & 0x80 != 0 => {
            Some(u16::from(m & 0x7f) << 8 | u16::from(*x))
        }
        [b0, m, ..] if b0 & 0x80 != 0 => Some(u16::from(*m)),
        _ => None,
    }
}

/// Whether a VP9 payload starts a keyframe: P clear, B set, spatial layer 0 (or no layer
/// indices).
fn vp9_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let layer_at = match (
        b0 & 0x80 != 0,
        payload.get(1).is_some_and(|m| m & 0x80 != 0),
    ) {
        (false, _) => 1,
        (true, false) => 2,
        (true, true) => 3,
    };
    b0 & 0x48 == 0x08 && (b0 & 0x20 == 0 || payload.get(layer_at).is_some_and(|l| l & 0x0e == 0))
}

/// A str0m peer publishing one audio and one video track, receiving everything.
pub struct Client {
    pub name: String,
    pub addr: SocketAddr,
    pub rtc: Rtc,
    pub id: Option<String>,
    pub pending: Option<SdpPendingOffer>,
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    pub publish: bool,
    /// Publish video as three simulcast layers q/h/f (320x180, 640x360, 1280x720).
    pub simulcast: bool,
    /// With VP9 and without simulcast: send the three [`LAYERS`] as the spatial layers of one
    /// stream (SVC, inter-layer prediction on keyframes only, like `L3T3_KEY`).
    pub svc: bool,
    /// Without simulcast, the one layer it sends (an index into [`LAYERS`]).
    pub single_layer: usize,
    /// Layers the server asked this publisher to send (by rid); all until told otherwise.
    pub active_layers: Option<Vec<String>>,
    pub connected: bool,
    /// Open the data channels `reliable` and `lossy` with the first offer.
    pub data: bool,
    /// Open data channels by label.
    pub channels: HashMap<String, ChannelId>,
    /// Data-channel messages received: (label, binary, bytes).
    pub data_in: Vec<(String, bool, Vec<u8>)>,
    /// Audio level written on outgoing audio, in dBov attenuation (127: silence).
    pub audio_dbov: u8,
    /// Messages from the server, in order.
    pub messages: Vec<ServerMessage>,
    /// Received packets by (publisher id, kind).
    pub received: HashMap<(String, MediaKind), Vec<Received>>,
    pub keyframe_requests: usize,
    /// The m-line each publisher's track arrives on.
    pub mids: HashMap<(String, MediaKind), Mid>,
    pub offline: bool,
    /// Ignore server offers (to make offers cross).
    pub hold_offers: bool,
    pub held_offers: Vec<String>,
    audio_seq: u64,
    video_seq: [u64; 3],
    frame: u64,
    /// Frames since the last keyframe (the temporal pattern restarts there).
    frame_in_gop: u64,
    next_audio: Instant,
    next_video: Instant,
    force_keyframe: bool,
    out: VecDeque<(Protocol, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Reaches the server over ICE-TCP only.
    pub tcp: bool,
    /// The audio payload type it sends: the first of the answer's audio m-line.
    pub audio_pt: Option<u8>,
    /// The engine (worker) it is connected to: 0 is `Bed::engine`, `i` is `Bed::peers[i - 1]`.
    pub engine: usize,
}

impl Client {
    fn new(
        name: &str,
        addr: SocketAddr,
        now: Instant,
        publish: bool,
        tcp: bool,
        codecs: &[Codec],
    ) -> Self {
        // `Red` among the codecs: it offers redundant audio, as browsers do.
        let mut config = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, codecs.contains(&Codec::Red));
        // Its video codecs in its order of preference, as its offers list them.
        for codec in codecs {
            config = match codec {
                Codec::Red => config,
                Codec::Vp8 => config.enable_vp8(true),
                Codec::H264 => config.enable_h264(true),
                Codec::Vp9 => config.enable_vp9(true),
                // With the dependency descriptor, as browsers send AV1.
                Codec::Av1 => config.enable_av1(true).set_extension(
                    12,
                    Extension::with_serializer(av1::DEPENDENCY_DESCRIPTOR_URI, DdSerializer),
                ),
                other => panic!("the test client does not send {other:?}"),
            };
        }
        let mut rtc = config.build(now);
        let candidate = if tcp {
            // A client whose UDP is blocked: only an active ICE-TCP candidate.
            Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(TcpType::Active)
                .build()
                .unwrap()
        } else {
            Candidate::host(addr, "udp").unwrap()
        };
        rtc.add_local_candidate(candidate);
        Client {
            name: name.into(),
            addr,
            rtc,
            id: None,
            pending: None,
            audio_mid: None,
            video_mid: None,
            publish,
            simulcast: false,
            svc: false,
            single_layer: 1,
            active_layers: None,
            connected: false,
            data: false,
            channels: HashMap::new(),
            data_in: Vec::new(),
            audio_dbov: 127,
            messages: Vec::new(),
            received: HashMap::new(),
            keyframe_requests: 0,
            mids: HashMap::new(),
            offline: false,
            hold_offers: false,
            held_offers: Vec::new(),
            audio_seq: 1,
            video_seq: [1, 1, 1],
            frame: 0,
            frame_in_gop: 0,
            next_audio: now,
            next_video: now,
            force_keyframe: true,
            out: VecDeque::new(),
            tcp,
            audio_pt: None,
            engine: 0,
        }
    }

    /// The first offer: what the client publishes.
    fn make_offer(&mut self) -> String {
        let mut api = self.rtc.sdp_api();
        let dir = if self.publish {
            Direction::SendOnly
        } else {
            Direction::Inactive
        };
        self.audio_mid = Some(api.add_media(MediaKind::Audio, dir, None, None, None));
        let simulcast = self.simulcast.then(|| Simulcast {
            send: LAYERS.iter().map(|l| SimulcastLayer::new(l.rid)).collect(),
            recv: vec![],
        });
        self.video_mid = Some(api.add_media(MediaKind::Video, dir, None, None, simulcast));
        if self.data {
            api.add_channel("reliable".into());
            api.add_channel_with_config(ChannelConfig {
                label: "lossy".into(),
                ordered: false,
                reliability: Reliability::MaxRetransmits { retransmits: 0 },
                ..Default::default()
            });
        }
        let (offer, pending) = api.apply().unwrap();
        self.pending = Some(pending);
        offer.to_sdp_string()
    }

    pub fn pt(&self, codec: Codec) -> str0m::media::Pt {
        self.rtc
            .codec_config()
            .find(|p| p.spec().codec == codec)
            .unwrap()
            .pt()
    }

    /// The video payload type it sends: like a browser, the first one of the server's answer.
    pub fn video_pt(&self) -> str0m::media::Pt {
        self.video_mid
            .and_then(|mid| self.rtc.media(mid))
            .and_then(|m| m.remote_pts().first().copied())
            .unwrap_or_else(|| self.pt(Codec::Vp8))
    }

    /// Whether `pt` is the RED (redundant audio) payload type of its connection.
    pub fn is_red(&self, pt: u8) -> bool {
        self.rtc
            .codec_config()
            .find(|p| p.red().is_some_and(|r| *r == pt))
            .is_some()
    }

    /// Whether `pt` is a retransmission (RTX) payload type of its connection.
    pub fn is_rtx(&self, pt: u8) -> bool {
        self.rtc
            .codec_config()
            .find(|p| p.resend().is_some_and(|r| *r == pt))
            .is_some()
    }

    /// The codec of payload type `pt` on its connection.
    pub fn codec_of(&self, pt: u8) -> Option<str0m::format::PayloadParams> {
        self.rtc.codec_config().find(|p| *p.pt() == pt).copied()
    }

    /// Write due media: audio every 20 ms, a three-packet VP8 frame every 50 ms.
    fn produce(&mut self, now: Instant) {
        if !self.publish || !self.connected {
            return;
        }
        while self.next_audio <= now {
            let opus = self.pt(Codec::Opus);
            // Like a browser: the first codec of the server's answer; with RED each packet
            // carries the one before as a redundant block (60 bytes of 0xfb) and its own
            // primary (60 bytes of 0xfc).
            let pt = self.audio_pt.map_or(opus, str0m::media::Pt::from);
            let red = self.is_red(*pt);
            let payload = if red {
                let mut p = vec![
                    0x80 | *opus,
                    (960u16 >> 6) as u8,
                    ((960u16 & 0x3f) << 2) as u8,
                    60,
                ];
                p.push(*opus);
                p.extend_from_slice(&[0xfb; 60]);
                p.extend_from_slice(&[0xfc; 60]);
                p
            } else {
                vec![0xfc; 60]
            };
            let seq = self.audio_seq;
            self.audio_seq += 1;
            let ts = (seq * 960) as u32;
            let mid = self.audio_mid.unwrap();
            let ext = ExtensionValues {
                audio_level: Some(-(self.audio_dbov.min(127) as i8)),
                voice_activity: Some(self.audio_dbov < 60),
                ..Default::default()
            };
            if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, None) {
                tx.write_rtp(RtpWrite::new(pt, seq.into(), ts, now, payload).ext_vals(ext));
            }
            self.next_audio += Duration::from_millis(20);
        }
        while self.next_video <= now {
            let pt = self.video_pt();
            let codec = self.codec_of(*pt).map(|p| p.spec().codec);
            let h264 = codec == Some(Codec::H264);
            let vp9 = codec == Some(Codec::Vp9);
            let av1 = codec == Some(Codec::Av1);
            let key = std::mem::take(&mut self.force_keyframe) || self.frame.is_multiple_of(100);
            // AV1 goes out as L3T3 (or L1T3): temporal layers 0 2 1 2 (30, 15, 7.5 frames/s at
            // 60 frames/s; here at 20, 10 and 5), a keyframe restarting the pattern.
            if key {
                self.frame_in_gop = 0;
            }
            let temporal = if av1 {
                [0, 2, 1, 2][(self.frame_in_gop % 4) as usize]
            } else {
                0
            };
            self.frame_in_gop += 1;
            let ts = (self.frame * 4500) as u32;
            let pic = (self.frame & 0x7fff) as u16;
            let mid = self.video_mid.unwrap();
            let svc = (vp9 || av1) && self.svc && !self.simulcast;
            let layers: Vec<(usize, &Layer)> = if self.simulcast || svc {
                LAYERS.iter().enumerate().collect()
            } else {
                // A single-layer sender.
                vec![(self.single_layer, &LAYERS[self.single_layer])]
            };
            for (index, layer) in layers {
                let rid = self.simulcast.then(|| Rid::from(layer.rid));
                if let (Some(active), Some(_)) = (&self.active_layers, rid) {
                    if !active.iter().any(|r| r == layer.rid) {
                        continue;
                    }
                }
                // Every simulcast layer numbers its pictures on its own, as browsers do; the
                // spatial layers of one SVC stream share the numbers and the sequence.
                let (pic, stream) = if svc {
                    (pic, 0)
                } else {
                    ((pic as usize + index * 7919) as u16 & 0x7fff, index)
                };
                let seq_base = &mut self.video_seq[stream];
                let spatial = if svc { index as u8 } else { 0 };
                for part in 0..layer.packets {
                    let (first, last) = (part == 0, part + 1 == layer.packets);
                    let mut ext = ExtensionValues::default();
                    let mut payload = vec![
                        0x80 | if part == 0 { 0x10 } else { 0 },
                        0x80,
                        0x80 | (pic >> 8) as u8,
                        pic as u8,
                    ];
                    if h264 {
                        // Single NAL units: a keyframe starts with the SPS, then IDR slices;
                        // other frames are non-IDR slices.
                        payload = match (key, part) {
                            (true, 0) => vec![0x67, 0x42, 0xe0, 0x1f],
                            (true, _) => vec![0x65, 0x88, 0x84],
                            (false, _) => vec![0x41, 0x9a, 0x02],
                        };
                    } else if vp9 {
                        // VP9 descriptor (RFC 9628), non-flexible: I, P unless a keyframe, L,
                        // B and E at the frame's ends, V with the frame size on a keyframe;
                        // 15-bit picture id, T0 S0, TL0PICIDX numbered per layer.
                        // With SVC: S = the layer, D on a keyframe's upper layers, the scalability
                        // structure (three layers) on the keyframe's first packet.
                        let ss = key && first && spatial == 0;
                        let b0 = 0x80
                            | 0x20
                            | if key { 0 } else { 0x40 }
                            | if first { 0x08 } else { 0 }
                            | if last { 0x04 } else { 0 }
                            | if ss { 0x02 } else { 0 };
                        let tl0 = (self.frame as usize + stream * 31) as u8;
                        let l = spatial << 1 | u8::from(key && spatial > 0);
                        payload = vec![b0, 0x80 | (pic >> 8) as u8, pic as u8, l, tl0];
                        if ss {
                            let sized: &[Layer] =
                                if svc { &LAYERS } else { &LAYERS[index..=index] };
                            payload.push(((sized.len() as u8 - 1) << 5) | 0x10); // N_S, Y
                            for s in sized {
                                payload.extend_from_slice(&s.width.to_be_bytes());
                                payload.extend_from_slice(&s.height.to_be_bytes());
                            }
                        }
                    } else if av1 {
                        // Aggregation header: one OBU element (W = 1), N on the first packet
                        // of a keyframe. The layers go in the dependency descriptor.
                        let n = key && first && spatial == 0;
                        payload = vec![0x10 | if n { 0x08 } else { 0 }, 0x32];
                        let sized: &[Layer] = if svc { &LAYERS } else { &LAYERS[index..=index] };
                        // Each simulcast encoding numbers its frames and its templates on its
                        // own.
                        let bytes = dependency_descriptor(
                            first,
                            last,
                            spatial,
                            temporal,
                            (self.frame as usize + stream * 7919) as u16,
                            (stream * 20) as u8,
                            n.then_some(sized),
                        );
                        ext.user_values
                            .set(DependencyDescriptor::parse(&bytes).expect("a valid descriptor"));
                    } else if part == 0 && key {
                        // VP8 keyframe header: frame tag, start code, size.
                        payload.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a]);
                        payload.extend_from_slice(&layer.width.to_le_bytes());
                        payload.extend_from_slice(&layer.height.to_le_bytes());
                    } else if part == 0 {
                        payload.extend_from_slice(&[0x51, 0x42, 0x00]);
                    }
                    payload.resize(layer.packet_bytes, 0x55);
                    // The frame counter and the layer, for the receiver's bookkeeping.
                    payload.extend_from_slice(&(self.frame as u32).to_be_bytes());
                    payload.push(index as u8 | temporal << 4);
                    let seq = *seq_base;
                    *seq_base += 1;
                    if let Some(tx) = self.rtc.direct_api().stream_tx_by_mid(mid, rid) {
                        tx.write_rtp(
                            RtpWrite::new(pt, seq.into(), ts, now, payload)
                                .marker(
                                    part + 1 == layer.packets
                                        && (!svc || index + 1 == LAYERS.len()),
                                )
                                .ext_vals(ext)
                                .nackable(true),
                        );
                    }
                }
            }
            self.frame += 1;
            self.next_video += FRAME_INTERVAL;
        }
    }

    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(_)) => break,
                Ok(Output::Transmit(t)) => {
                    self.out
                        .push_back((t.proto, t.source, t.destination, t.contents.to_vec()))
                }
                Ok(Output::Event(e)) => self.on_event(now, e),
                Err(e) => panic!("{}: {e}", self.name),
            }
        }
    }

    fn on_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Connected => self.connected = true,
            Event::ChannelOpen(id, label) => {
                self.channels.insert(label, id);
            }
            Event::ChannelData(d) => {
                let label = self
                    .channels
                    .iter()
                    .find(|(_, c)| **c == d.id)
                    .map(|(l, _)| l.clone())
                    .unwrap_or_default();
                self.data_in.push((label, d.binary, d.data));
            }
            Event::KeyframeRequest(r) => {
                assert_eq!(Some(r.mid), self.video_mid, "keyframe request for a video");
                self.keyframe_requests += 1;
                self.force_keyframe = true;
            }
            Event::RtpPacket(p) => {
                let Some(mid) = self
                    .rtc
                    .direct_api()
                    .stream_rx(&p.header.ssrc)
                    .map(|s| s.mid())
                else {
                    return;
                };
                let Some(media) = self.rtc.media(mid) else {
                    return;
                };
                let publisher = media.stream_id().to_string();
                let kind = media.kind();
                let pt = *p.header.payload_type;
                let codec = self.codec_of(pt).map(|c| c.spec().codec);
                let h264 = codec == Some(Codec::H264);
                let vp9 = codec == Some(Codec::Vp9);
                let keyframe = kind == MediaKind::Video
                    && if vp9 {
                        vp9_keyframe(&p.payload)
                    } else if codec == Some(Codec::Av1) {
                        av1::starts_keyframe(&p.payload)
                    } else if h264 {
                        // An SPS (which senders put in front of an IDR) or an IDR slice.
                        str0m::format::detect_h264_nalu(&p.payload, 7)
                            || str0m::format::detect_h264_keyframe(&p.payload)
                    } else {
                        str0m::format::detect_vp8_keyframe(&p.payload)
                    };
                self.mids.insert((publisher.clone(), kind), mid);
                self.received
                    .entry((publisher, kind))
                    .or_default()
                    .push(Received {
                        at: now,
                        seq: p.header.sequence_number,
                        ts: p.header.timestamp,
                        keyframe,
                        marker: p.header.marker,
                        layer: p.payload.last().map_or(0, |b| b & 0x0f),
                        temporal: p.payload.last().map_or(0, |b| b >> 4),
                        frame: p
                            .payload
                            .len()
                            .checked_sub(5)
                            .and_then(|at| p.payload.get(at..at + 4))
                            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                        pid: match (kind, vp9) {
                            (MediaKind::Video, true) => vp9_picture_id(&p.payload),
                            (MediaKind::Video, false) if codec == Some(Codec::Av1) => p
                                .header
                                .ext_vals
                                .user_values
                                .get::<DependencyDescriptor>()
                                .map(|d| d.frame_number),
                            (MediaKind::Video, false) if !h264 => {
                                str0m::rtp::Vp8Descriptor::parse(&p.payload)
                                    .ok()
                                    .and_then(|d| d.picture_id())
                            }
                            _ => None,
                        },
                        pt,
                        len: p.payload.len(),
                    });
            }
            _ => {}
        }
    }

    /// Video packets received from `publisher`.
    pub fn video_from(&self, publisher: &str) -> &[Received] {
        self.received
            .get(&(publisher.to_string(), MediaKind::Video))
            .map_or(&[], |v| v.as_slice())
    }

    /// Audio packets received from `publisher`.
    pub fn audio_from(&self, publisher: &str) -> &[Received] {
        self.received
            .get(&(publisher.to_string(), MediaKind::Audio))
            .map_or(&[], |v| v.as_slice())
    }

    /// Ask the server for a keyframe of the video from `publisher`.
    pub fn request_keyframe(&mut self, publisher: &str) {
        let mid = *self
            .mids
            .get(&(publisher.to_string(), MediaKind::Video))
            .expect("receiving video from that publisher");
        let mut api = self.rtc.direct_api();
        let rx = api.stream_rx_by_mid(mid, None).unwrap();
        rx.request_keyframe(KeyframeRequestKind::Pli);
    }

    pub fn id(&self) -> &str {
        self.id.as_deref().expect("joined")
    }

    /// Send a data-channel message on the channel `label`.
    pub fn send_data(&mut self, label: &str, binary: bool, data: &[u8]) {
        let id = *self.channels.get(label).expect("channel open");
        let mut ch = self.rtc.channel(id).expect("channel");
        assert!(ch.write(binary, data).unwrap(), "written");
    }

    /// Text data-channel messages received, parsed.
    pub fn data_json(&self) -> Vec<serde_json::Value> {
        self.data_in
            .iter()
            .filter(|(_, b, _)| !b)
            .map(|(_, _, d)| serde_json::from_slice(d).unwrap())
            .collect()
    }
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
        for _ in 0..100 {
            let next = (0..=self.peers.len()).find_map(|i| self.engine_at(i).poll_signal());
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
                    self.engine_at(e).handle_signal(
                        now,
                        &id,
                        ClientSignal::Answer(answer.to_sdp_string()),
                    );
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
                        self.engine.handle_tcp_packet(now, src, dst, &data);
                    }
                    _ => {
                        let e = (0..=self.peers.len())
                            .find(|i| engine_addr(*i) == dst)
                            .expect("clients only talk to the server");
                        if self.clients[ci].tcp {
                            continue; // UDP is blocked for this client
                        }
                        self.engine_at(e).handle_datagram(now, src, dst, &data);
                    }
                }
                any = true;
            }
        }
        for e in 0..=self.peers.len() {
            let engine = self.engine_at(e);
            if any {
                engine.flush(now);
            }
            if engine.poll_timeout().is_some_and(|t| t <= now) {
                engine.handle_timeout(now);
            }
        }
        if !self.peers.is_empty() {
            self.exchange_shard_messages();
        }
        // Server -> clients.
        let mut arrived: Vec<(usize, Protocol, SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
        let mut transmits = Vec::new();
        for e in 0..=self.peers.len() {
            while let Some(t) = self.engine_at(e).poll_transmit() {
                transmits.push(t);
            }
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

/// Seconds as a `Duration`.
pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Whether each of the first `n` clients receives audio and video from each other one.
pub fn all_receive_all(bed: &Bed, n: usize) -> bool {
    (0..n).all(|i| {
        (0..n).filter(|j| *j != i).all(|j| {
            let from = bed.id(j);
            bed.clients[i].video_from(&from).len() > 20
                && bed.clients[i].audio_from(&from).len() > 20
        })
    })
}

/// SSRC and sequence number of an RTP (not RTCP) packet.
fn rtp_header(d: &[u8]) -> Option<(u32, u16)> {
    if d.len() < 12
        || d[0] >> 6 != 2
        || (200..=206).contains(&d[1])
        || (72..=79).contains(&(d[1] & 0x7f))
    {
        return None;
    }
    Some((
        u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        u16::from_be_bytes([d[2], d[3]]),
    ))
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

/// Asserts sequence numbers are consecutive (mod 2^16) and timestamps never go back.
pub fn assert_gap_free(what: &str, packets: &[Received]) {
    assert!(!packets.is_empty(), "{what}: nothing received");
    for w in packets.windows(2) {
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "{what}: sequence gap {} -> {}",
            w[0].seq,
            w[1].seq
        );
        assert!(
            w[1].ts.wrapping_sub(w[0].ts) < u32::MAX / 2,
            "{what}: timestamp went back {} -> {}",
            w[0].ts,
            w[1].ts
        );
    }
}

/// The packets in sequence order (first arrival of each), with wrap-around undone.
pub fn by_seq(packets: &[Received]) -> Vec<(u64, Received)> {
    let mut out: Vec<(u64, Received)> = Vec::new();
    let mut last: Option<u64> = None;
    for p in packets {
        let ext = match last {
            None => p.seq as u64 + 65536,
            Some(l) => {
                let d = p.seq.wrapping_sub(l as u16) as i16 as i64;
                (l as i64 + d) as u64
            }
        };
        last = Some(last.map_or(ext, |l| l.max(ext)));
        out.push((ext, p.clone()));
    }
    out.sort_by_key(|(s, _)| *s);
    out.dedup_by_key(|(s, _)| *s);
    out
}

/// Every layer change starts with a keyframe (where the network let both sides of the change
/// through); with `lossless`, no packet may be missing either.
pub fn assert_clean_switches(what: &str, packets: &[Received], lossless: bool) -> usize {
    let seq = by_seq(packets);
    let mut switches = 0;
    for w in seq.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            assert!(!lossless, "{what}: hole after seq {}", w[0].0);
            continue;
        }
        if let (Some(a), Some(b)) = (w[0].1.pid, w[1].1.pid) {
            let step = b.wrapping_sub(a) & 0x7fff;
            assert!(
                step <= 1,
                "{what}: picture id jumps {a} -> {b} at seq {}",
                w[1].0
            );
        }
        if w[1].1.layer != w[0].1.layer {
            switches += 1;
            assert!(
                w[1].1.keyframe,
                "{what}: switch {} -> {} at seq {} is not on a keyframe",
                w[0].1.layer, w[1].1.layer, w[1].0
            );
        }
    }
    assert!(
        seq.first().is_some_and(|(_, p)| p.keyframe),
        "{what}: starts on a keyframe"
    );
    switches
}

/// The layer of the newest packets received.
pub fn layer_now(packets: &[Received]) -> Option<u8> {
    packets.last().map(|p| p.layer)
}
