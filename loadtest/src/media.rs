//! Synthetic media: VP8-shaped video packets in up to three simulcast layers and Opus-shaped audio
//! packets, each ending in a [`Trailer`] that tells the receiver when it was sent, which frame it
//! belongs to and which layer it is.
//!
//! Nothing here touches a socket or a clock: times are parameters. Packets are written into a
//! caller-owned scratch buffer, so producing a packet allocates nothing here (str0m still takes
//! an owned `Arc<[u8]>` per packet).

/// The rids of the simulcast layers, low to high.
pub const LAYER_RIDS: [&str; 3] = ["q", "h", "f"];

/// The layer index a publisher writes into the trailer when it sends a single layer (no rid).
pub const LAYER_SINGLE: u8 = 0xff;

/// Bytes at the end of every synthetic payload.
pub const TRAILER_LEN: usize = 20;

const MAGIC: [u8; 4] = *b"LTv1";

/// The largest RTP payload a publisher writes (room for header, extensions and SRTP tag in 1200).
pub const MAX_PAYLOAD: usize = 1100;

/// The VP8 payload descriptor this module writes: X, I (15-bit picture id), L, T.
pub const VP8_DESCRIPTOR_LEN: usize = 6;

/// The VP8 payload header at the start of a frame: 3 bytes, 10 on a keyframe.
const VP8_HEADER_LEN: usize = 3;
const VP8_KEY_HEADER_LEN: usize = 10;

/// The Opus TOC byte used for audio: CELT fullband 20 ms, one frame.
const OPUS_TOC: u8 = 0xfc;

/// What the receiver learns from the end of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Send time, microseconds since the UNIX epoch.
    pub sent_us: u64,
    /// The publisher's frame counter (the same for all layers of one captured frame); for audio the
    /// packet counter.
    pub frame: u32,
    /// Index into [`LAYER_RIDS`], or [`LAYER_SINGLE`].
    pub layer: u8,
    /// Packet index within the frame.
    pub part: u8,
    /// Packets in the frame.
    pub parts: u8,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
}

impl Trailer {
    /// Writes the trailer into the last [`TRAILER_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8; TRAILER_LEN]) {
        out[0..4].copy_from_slice(&MAGIC);
        out[4..12].copy_from_slice(&self.sent_us.to_be_bytes());
        out[12..16].copy_from_slice(&self.frame.to_be_bytes());
        out[16] = self.layer;
        out[17] = self.part;
        out[18] = self.parts;
        out[19] = u8::from(self.keyframe);
    }

    /// Reads the trailer at the end of `payload`; `None` when it is too short or not ours.
    pub fn parse(payload: &[u8]) -> Option<Trailer> {
        let start = payload.len().checked_sub(TRAILER_LEN)?;
        let t = &payload[start..];
        if t[0..4] != MAGIC {
            return None;
        }
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&t[4..12]);
        let mut frame = [0u8; 4];
        frame.copy_from_slice(&t[12..16]);
        Some(Trailer {
            sent_us: u64::from_be_bytes(sent),
            frame: u32::from_be_bytes(frame),
            layer: t[16],
            part: t[17],
            parts: t[18],
            keyframe: t[19] & 1 == 1,
        })
    }
}

/// The name of a layer index as reports show it.
pub fn layer_name(layer: u8) -> &'static str {
    match layer {
        LAYER_SINGLE => "single",
        l => LAYER_RIDS.get(l as usize).copied().unwrap_or("?"),
    }
}

/// One video layer's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LayerSpec {
    /// Bitrate target in kbit/s (payload bytes; keyframes come on top).
    pub kbps: u32,
    /// Picture size written into keyframes.
    pub width: u16,
    /// Picture size written into keyframes.
    pub height: u16,
}

/// Picture sizes for the layers, low to high (a 720p camera).
pub const LAYER_SIZES: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];

/// The VP8 fields of one frame of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Frame {
    /// 15-bit picture id.
    pub picture_id: u16,
    /// TL0PICIDX: the counter of base-layer frames.
    pub tl0_pic_idx: u8,
    /// Temporal layer id.
    pub tid: u8,
    /// Layer sync: this frame depends only on the base layer.
    pub layer_sync: bool,
    /// Keyframe.
    pub keyframe: bool,
    /// Not used as a reference (the highest temporal layer): may be dropped.
    pub non_reference: bool,
}

/// The temporal pattern for 1, 2 or 3 temporal layers (L1T1, L1T2, L1T3 as libwebrtc does them).
fn temporal_pattern(layers: u8) -> &'static [u8] {
    match layers {
        0 | 1 => &[0],
        2 => &[0, 1],
        _ => &[0, 2, 1, 2],
    }
}

/// Picture id, TL0PICIDX and temporal layer of one simulcast layer's VP8 stream.
#[derive(Debug, Clone)]
pub struct Vp8State {
    picture_id: u16,
    tl0_pic_idx: u8,
    pattern_pos: usize,
    temporal_layers: u8,
    /// Temporal layers already seen since the last keyframe (bit per tid), for the sync flag.
    seen_since_key: u8,
}

impl Vp8State {
    /// A stream starting at `picture_id` (taken modulo 2^15) with `temporal_layers` (1 to 3).
    pub fn new(picture_id: u16, temporal_layers: u8) -> Self {
        Vp8State {
            picture_id: picture_id & 0x7fff,
            tl0_pic_idx: 0,
            pattern_pos: 0,
            temporal_layers: temporal_layers.clamp(1, 3),
            seen_since_key: 0,
        }
    }

    /// The fields of the next frame. A keyframe restarts the temporal pattern.
    pub fn next_frame(&mut self, keyframe: bool) -> Vp8Frame {
        let pattern = temporal_pattern(self.temporal_layers);
        if keyframe {
            self.pattern_pos = 0;
            self.seen_since_key = 0;
        }
        let tid = pattern[self.pattern_pos % pattern.len()];
        self.pattern_pos = (self.pattern_pos + 1) % pattern.len();
        if tid == 0 {
            self.tl0_pic_idx = self.tl0_pic_idx.wrapping_add(1);
        }
        let first_of_tid = self.seen_since_key & (1 << tid) == 0;
        self.seen_since_key |= 1 << tid;
        let top = self.temporal_layers - 1;
        let frame = Vp8Frame {
            picture_id: self.picture_id,
            tl0_pic_idx: self.tl0_pic_idx,
            tid,
            layer_sync: tid > 0 && first_of_tid,
            keyframe,
            non_reference: top > 0 && tid == top,
        };
        self.picture_id = (self.picture_id + 1) & 0x7fff;
        frame
    }
}

/// How a frame of `frame_bytes` is cut into packets: the number of packets and the payload size of
/// each (the last one takes the rest).
pub fn packetize(frame_bytes: usize) -> (usize, usize) {
    let overhead = VP8_DESCRIPTOR_LEN + TRAILER_LEN;
    let room = MAX_PAYLOAD - overhead - VP8_KEY_HEADER_LEN;
    let count = frame_bytes.div_ceil(room).clamp(1, 255);
    let each = frame_bytes.div_ceil(count).max(1);
    (count, each)
}

/// Bytes of one frame for `kbps` at `fps`, times `key_factor` on a keyframe.
pub fn frame_bytes(kbps: u32, fps: u32, keyframe: bool, key_factor: u32) -> usize {
    let base = (kbps as usize * 1000 / 8) / fps.max(1) as usize;
    if keyframe {
        base * key_factor.max(1) as usize
    } else {
        base
    }
}

/// Writes one VP8 packet: descriptor, the payload header on the first packet, filler, trailer.
/// `body` is the number of bytes between the descriptor and the trailer.
pub fn write_vp8_packet(
    out: &mut Vec<u8>,
    frame: &Vp8Frame,
    size: (u16, u16),
    first: bool,
    body: usize,
    trailer: &Trailer,
) {
    out.clear();
    // Descriptor: X, S on the first packet, partition 0, N on non-reference frames.
    let mut b0 = 0x80;
    if first {
        b0 |= 0x10;
    }
    if frame.non_reference {
        b0 |= 0x20;
    }
    out.push(b0);
    out.push(0xe0); // I, L, T present
    out.push(0x80 | (frame.picture_id >> 8) as u8 & 0x7f);
    out.push(frame.picture_id as u8);
    out.push(frame.tl0_pic_idx);
    out.push((frame.tid << 6) | if frame.layer_sync { 0x20 } else { 0 });
    let mut written = 0;
    if first {
        // Frame tag: P (0 on a keyframe), version 0, show_frame, first partition size.
        let part_size: u32 = (body as u32).min(0x7ffff);
        let tag = u32::from(!frame.keyframe) | (1 << 4) | (part_size << 5);
        out.extend_from_slice(&tag.to_le_bytes()[..3]);
        written += VP8_HEADER_LEN;
        if frame.keyframe {
            out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            out.extend_from_slice(&(size.0 & 0x3fff).to_le_bytes());
            out.extend_from_slice(&(size.1 & 0x3fff).to_le_bytes());
            written += VP8_KEY_HEADER_LEN - VP8_HEADER_LEN;
        }
    }
    let filler = body.saturating_sub(written);
    out.resize(out.len() + filler, 0x5a);
    let mut t = [0u8; TRAILER_LEN];
    trailer.write(&mut t);
    out.extend_from_slice(&t);
}

/// Writes one audio packet of `bytes` in total (at least the TOC byte and the trailer).
pub fn write_audio_packet(out: &mut Vec<u8>, bytes: usize, trailer: &Trailer) {
    out.clear();
    out.push(OPUS_TOC);
    let filler = bytes.saturating_sub(1 + TRAILER_LEN);
    out.resize(1 + filler, 0x33);
    let mut t = [0u8; TRAILER_LEN];
    trailer.write(&mut t);
    out.extend_from_slice(&t);
}

/// A speech-like audio level (RFC 6464, -dBov, 0..=127 where 127 is silence) for packet `n`:
/// talk spurts of about 1.5 s separated by 1 s pauses. Returns (level, voice activity).
pub fn audio_level(n: u64, phase: u64) -> (i8, bool) {
    let t = (n + phase) % 125; // 2.5 s at 50 packets/s
    if t < 75 {
        // Loud with a slow wobble between -20 and -35 dBov.
        let wobble = ((t * 7) % 16) as i8;
        (-(20 + wobble), true)
    } else {
        (-90, false)
    }
}

/// Reads the VP8 descriptor fields this module writes (picture id, TL0PICIDX, tid) and whether
/// the packet starts a keyframe. `None` if the packet is not in that shape.
pub fn parse_vp8(payload: &[u8]) -> Option<(u16, u8, u8, bool)> {
    if payload.len() < VP8_DESCRIPTOR_LEN || payload[0] & 0x80 == 0 || payload[1] & 0xe0 != 0xe0 {
        return None;
    }
    if payload[2] & 0x80 == 0 {
        return None;
    }
    let pid = (u16::from(payload[2] & 0x7f) << 8) | u16::from(payload[3]);
    let tl0 = payload[4];
    let tid = payload[5] >> 6;
    let key = str0m::format::detect_vp8_keyframe(payload);
    Some((pid, tl0, tid, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer(keyframe: bool) -> Trailer {
        Trailer {
            sent_us: 1_700_000_000_123_456,
            frame: 77,
            layer: 2,
            part: 1,
            parts: 3,
            keyframe,
        }
    }

    #[test]
    fn trailer_round_trips_and_rejects_foreign_payloads() {
        let mut buf = vec![1, 2, 3];
        let mut t = [0u8; TRAILER_LEN];
        trailer(true).write(&mut t);
        buf.extend_from_slice(&t);
        assert_eq!(Trailer::parse(&buf), Some(trailer(true)));
        assert_eq!(Trailer::parse(&buf[1..]), Some(trailer(true)));
        assert_eq!(Trailer::parse(&buf[..buf.len() - 1]), None);
        assert_eq!(Trailer::parse(&[0u8; 40]), None);
        assert_eq!(Trailer::parse(&[]), None);
    }

    #[test]
    fn vp8_packets_parse_as_vp8_and_keyframes_are_detected() {
        let mut st = Vp8State::new(0x7ffe, 3);
        let mut out = Vec::new();
        let f = st.next_frame(true);
        write_vp8_packet(&mut out, &f, (1280, 720), true, 500, &trailer(true));
        assert_eq!(out.len(), VP8_DESCRIPTOR_LEN + 500 + TRAILER_LEN);
        assert_eq!(parse_vp8(&out), Some((0x7ffe, 1, 0, true)));
        assert!(str0m::format::detect_vp8_keyframe(&out));
        let d = str0m::rtp::Vp8Descriptor::parse(&out).expect("str0m parses the descriptor");
        assert!(d.starts_keyframe(&out));
        // A later packet of the same frame is not a keyframe start.
        write_vp8_packet(&mut out, &f, (1280, 720), false, 500, &trailer(true));
        assert!(!str0m::format::detect_vp8_keyframe(&out));
        // The next frame wraps the picture id and is a delta frame on tid 2.
        let f2 = st.next_frame(false);
        write_vp8_packet(&mut out, &f2, (1280, 720), true, 500, &trailer(false));
        assert_eq!(parse_vp8(&out), Some((0x7fff, 1, 2, false)));
        let f3 = st.next_frame(false);
        assert_eq!(f3.picture_id, 0);
    }

    #[test]
    fn temporal_pattern_and_tl0picidx() {
        // (temporal layers, keyframe flags) -> expected (tid, tl0, sync, non_ref) per frame
        type Row = (u8, &'static [bool], &'static [(u8, u8, bool, bool)]);
        let table: &[Row] = &[
            (
                1,
                &[true, false, false],
                &[
                    (0, 1, false, false),
                    (0, 2, false, false),
                    (0, 3, false, false),
                ],
            ),
            (
                2,
                &[true, false, false, false],
                &[
                    (0, 1, false, false),
                    (1, 1, true, true),
                    (0, 2, false, false),
                    (1, 2, false, true),
                ],
            ),
            (
                3,
                &[true, false, false, false, false, true],
                &[
                    (0, 1, false, false),
                    (2, 1, true, true),
                    (1, 1, true, false),
                    (2, 1, false, true),
                    (0, 2, false, false),
                    (0, 3, false, false),
                ],
            ),
        ];
        for (layers, keys, want) in table {
            let mut st = Vp8State::new(5, *layers);
            for (i, (key, w)) in keys.iter().zip(want.iter()).enumerate() {
                let f = st.next_frame(*key);
                assert_eq!(
                    (f.tid, f.tl0_pic_idx, f.layer_sync, f.non_reference),
                    *w,
                    "L1T{layers} frame {i}"
                );
                assert_eq!(f.picture_id, 5 + i as u16);
            }
        }
    }

    #[test]
    fn frames_are_cut_into_packets_that_fit() {
        for (bytes, count) in [
            (1, 1),
            (600, 1),
            (1064, 1),
            (1065, 2),
            (6250, 6),
            (18750, 18),
        ] {
            let (n, each) = packetize(bytes);
            assert_eq!(n, count, "{bytes}");
            assert!(each * n >= bytes);
            assert!(each + VP8_DESCRIPTOR_LEN + VP8_KEY_HEADER_LEN + TRAILER_LEN <= MAX_PAYLOAD);
        }
        assert_eq!(frame_bytes(1500, 30, false, 3), 6250);
        assert_eq!(frame_bytes(1500, 30, true, 3), 18750);
    }

    #[test]
    fn audio_packets_have_the_asked_size_and_a_level() {
        let mut out = Vec::new();
        write_audio_packet(&mut out, 80, &trailer(false));
        assert_eq!(out.len(), 80);
        assert_eq!(out[0], OPUS_TOC);
        assert!(Trailer::parse(&out).is_some());
        let (loud, v) = audio_level(0, 0);
        assert!(v && (-35..=-20).contains(&loud));
        let (quiet, v) = audio_level(100, 0);
        assert!(!v && quiet == -90);
    }
}
