//! A str0m peer in the role a browser plays.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sfu::core::forward::av1::{self, DdSerializer, DependencyDescriptor};
use sfu::core::generate_dtls_cert;
use signal::protocol::ServerMessage;
use str0m::change::SdpPendingOffer;
use str0m::channel::{ChannelConfig, ChannelId, Reliability};
use str0m::config::DtlsCert;
use str0m::format::Codec;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaKind, Mid, Rid, Simulcast, SimulcastLayer,
};
use str0m::net::{Protocol, TcpType};
use str0m::rtp::{Extension, ExtensionValues, RtpWrite};
use str0m::{Candidate, Event, Output, Rtc, RtcConfig};

use super::media::{
    dependency_descriptor, vp9_keyframe, vp9_picture_id, Layer, Received, FRAME_INTERVAL, LAYERS,
};

pub(super) fn cert() -> DtlsCert {
    static CERT: OnceLock<DtlsCert> = OnceLock::new();
    CERT.get_or_init(generate_dtls_cert).clone()
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
    /// Publishes audio only: its video m-line is inactive.
    pub audio_only: bool,
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
    pub(super) out: VecDeque<(Protocol, SocketAddr, SocketAddr, Vec<u8>)>,
    /// Reaches the server over ICE-TCP only.
    pub tcp: bool,
    /// The audio payload type it sends: the first of the answer's audio m-line.
    pub audio_pt: Option<u8>,
    /// The engine (worker) it is connected to: 0 is `Bed::engine`, `i` is `Bed::peers[i - 1]`.
    pub engine: usize,
}

impl Client {
    pub(super) fn new(
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
            audio_only: false,
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
    pub(super) fn make_offer(&mut self) -> String {
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
        let video_dir = if self.audio_only {
            Direction::Inactive
        } else {
            dir
        };
        self.video_mid = Some(api.add_media(MediaKind::Video, video_dir, None, None, simulcast));
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
    pub(super) fn produce(&mut self, now: Instant) {
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
        while !self.audio_only && self.next_video <= now {
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

    pub(super) fn drain(&mut self, now: Instant) {
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
