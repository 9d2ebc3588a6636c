//! What the test publisher sends (its layers and payload marks) and what a client receives.

use std::time::{Duration, Instant};

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
pub(super) fn vp9_picture_id(payload: &[u8]) -> Option<u16> {
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
pub(super) fn vp9_keyframe(payload: &[u8]) -> bool {
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

/// SSRC and sequence number of an RTP (not RTCP) packet.
pub(super) fn rtp_header(d: &[u8]) -> Option<(u32, u16)> {
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
