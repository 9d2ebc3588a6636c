//! Just enough of the VP9 RTP payload descriptor (RFC 9628) for a forwarding server: where a
//! keyframe starts, which spatial and temporal layer a packet carries, the frame sizes of the
//! scalability structure, and a copy of a payload with its picture id and TL0PICIDX renumbered.
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |I|P|L|F|B|E|V|Z| (REQUIRED)
//!      +-+-+-+-+-+-+-+-+
//! I:   |M| PICTURE ID  | (7 bits, or 15 with M)
//!      +-+-+-+-+-+-+-+-+
//! M:   | EXTENDED PID  |
//!      +-+-+-+-+-+-+-+-+
//! L:   |  T  |U|  S  |D| (temporal id, switching up, spatial id, inter-layer dependency)
//!      +-+-+-+-+-+-+-+-+
//!      |   TL0PICIDX   | (non-flexible mode only)
//!      +-+-+-+-+-+-+-+-+
//! P,F: | P_DIFF      |N| (flexible mode, up to 3 times)
//!      +-+-+-+-+-+-+-+-+
//! V:   | SS            | (scalability structure)
//! ```

use std::sync::Arc;

/// Why a VP9 payload descriptor could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Vp9Error {
    /// The payload ends inside the descriptor.
    #[error("the VP9 payload descriptor is truncated")]
    Truncated,
    /// More than three reference indices (P_DIFF) in flexible mode.
    #[error("the VP9 payload descriptor has more than three P_DIFF")]
    TooManyReferences,
}

/// The most spatial layers a VP9 stream describes (N_S is three bits).
pub const MAX_SPATIAL_LAYERS: usize = 8;

/// The fields of one packet's VP9 payload descriptor that the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Descriptor {
    /// P: the frame refers to an earlier picture (clear: it can be decoded from this picture on).
    pub inter_picture: bool,
    /// F: flexible mode (references listed in every packet, no TL0PICIDX).
    pub flexible: bool,
    /// B: the packet starts a frame (of its spatial layer).
    pub begins_frame: bool,
    /// E: the packet ends a frame (of its spatial layer).
    pub ends_frame: bool,
    /// The picture id, 7 or 15 bits.
    pub picture_id: Option<u16>,
    /// The picture id is the 15-bit form.
    pub long_picture_id: bool,
    /// Temporal layer id (0 without layer indices).
    pub temporal_id: u8,
    /// Spatial layer id (0 without layer indices).
    pub spatial_id: u8,
    /// D: the frame depends on the lower spatial layer of the same picture.
    pub inter_layer: bool,
    /// TL0PICIDX (non-flexible mode with layer indices).
    pub tl0_pic_idx: Option<u8>,
    /// Spatial layers announced by a scalability structure in this packet (0: none in it).
    pub ss_layers: u8,
    /// Their frame sizes, lowest first, when the structure gives them.
    pub ss_sizes: [Option<(u16, u16)>; MAX_SPATIAL_LAYERS],
    /// Length of the descriptor in bytes.
    pub len: usize,
}

impl Vp9Descriptor {
    /// Reads the descriptor at the start of `payload`.
    pub fn parse(payload: &[u8]) -> Result<Vp9Descriptor, Vp9Error> {
        let byte = |i: usize| payload.get(i).copied().ok_or(Vp9Error::Truncated);
        let b0 = byte(0)?;
        let mut d = Vp9Descriptor {
            inter_picture: b0 & 0x40 != 0,
            flexible: b0 & 0x10 != 0,
            begins_frame: b0 & 0x08 != 0,
            ends_frame: b0 & 0x04 != 0,
            ..Default::default()
        };
        let mut i = 1;
        if b0 & 0x80 != 0 {
            let m = byte(i)?;
            if m & 0x80 != 0 {
                d.picture_id = Some(u16::from(m & 0x7f) << 8 | u16::from(byte(i + 1)?));
                d.long_picture_id = true;
                i += 2;
            } else {
                d.picture_id = Some(u16::from(m));
                i += 1;
            }
        }
        if b0 & 0x20 != 0 {
            let l = byte(i)?;
            d.temporal_id = l >> 5;
            d.spatial_id = (l >> 1) & 0x07;
            d.inter_layer = l & 0x01 != 0;
            i += 1;
            if !d.flexible {
                d.tl0_pic_idx = Some(byte(i)?);
                i += 1;
            }
        }
        if d.flexible && d.inter_picture {
            let mut n = 0;
            loop {
                let more = byte(i)? & 0x01 != 0;
                i += 1;
                n += 1;
                if !more {
                    break;
                }
                if n == 3 {
                    return Err(Vp9Error::TooManyReferences);
                }
            }
        }
        if b0 & 0x02 != 0 {
            let ss = byte(i)?;
            i += 1;
            let layers = (ss >> 5) + 1;
            d.ss_layers = layers;
            if ss & 0x10 != 0 {
                for s in 0..layers as usize {
                    let w = u16::from_be_bytes([byte(i)?, byte(i + 1)?]);
                    let h = u16::from_be_bytes([byte(i + 2)?, byte(i + 3)?]);
                    d.ss_sizes[s] = Some((w, h));
                    i += 4;
                }
            }
            if ss & 0x08 != 0 {
                let pictures = byte(i)?;
                i += 1;
                for _ in 0..pictures {
                    let refs = (byte(i)? >> 2) & 0x03;
                    i += 1 + refs as usize;
                }
            }
        }
        if i > payload.len() {
            return Err(Vp9Error::Truncated);
        }
        d.len = i;
        Ok(d)
    }

    /// Whether decoding can start at this packet: the first packet of a picture's lowest spatial
    /// layer, predicted from no earlier picture.
    pub fn starts_keyframe(&self) -> bool {
        self.begins_frame && !self.inter_picture && self.spatial_id == 0
    }

    /// The frame size of the highest spatial layer of the scalability structure, if it has one.
    pub fn size(&self) -> Option<(u16, u16)> {
        let top = (self.ss_layers as usize).checked_sub(1)?;
        self.ss_sizes[top]
    }

    /// Where the TL0PICIDX byte is, if there is one.
    fn tl0_at(&self) -> Option<usize> {
        self.tl0_pic_idx?;
        Some(match (self.picture_id, self.long_picture_id) {
            (None, _) => 2,
            (Some(_), false) => 3,
            (Some(_), true) => 4,
        })
    }

    /// A copy of `payload` (the packet this descriptor was read from) with the picture id and
    /// TL0PICIDX set to `picture_id` and `tl0_pic_idx`. A value whose field is absent is
    /// ignored; a picture id is cut to the field's width.
    pub fn renumbered(
        &self,
        payload: &[u8],
        picture_id: Option<u16>,
        tl0_pic_idx: Option<u8>,
    ) -> Arc<[u8]> {
        let mut out: Arc<[u8]> = Arc::from(payload);
        let Some(bytes) = Arc::get_mut(&mut out) else {
            // A fresh Arc has no other owner.
            return out;
        };
        if let (Some(_), Some(pid)) = (self.picture_id, picture_id) {
            if self.long_picture_id {
                if let Some(b) = bytes.get_mut(1..3) {
                    b.copy_from_slice(&(0x8000 | (pid & 0x7fff)).to_be_bytes());
                }
            } else if let Some(b) = bytes.get_mut(1) {
                *b = (pid & 0x7f) as u8;
            }
        }
        if let (Some(at), Some(t)) = (self.tl0_at(), tl0_pic_idx) {
            if let Some(b) = bytes.get_mut(at) {
                *b = t;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte 0 flags.
    const I: u8 = 0x80;
    const P: u8 = 0x40;
    const L: u8 = 0x20;
    const F: u8 = 0x10;
    const B: u8 = 0x08;
    const E: u8 = 0x04;
    const V: u8 = 0x02;

    /// The layer byte: temporal id, switching up, spatial id, inter-layer dependency.
    fn layer(t: u8, u: bool, s: u8, d: bool) -> u8 {
        t << 5 | u8::from(u) << 4 | s << 1 | u8::from(d)
    }

    #[test]
    fn descriptors_of_single_layer_svc_and_flexible_packets() {
        // (bytes, keyframe start, picture id, long, T, S, D, tl0, ss layers, size, len)
        type Row = (
            Vec<u8>,
            bool,
            Option<u16>,
            bool,
            u8,
            u8,
            bool,
            Option<u8>,
            u8,
            Option<(u16, u16)>,
            usize,
        );
        let rows: Vec<Row> = vec![
            // Minimal: a keyframe start without any optional field.
            (
                vec![B | E, 0xaa],
                true,
                None,
                false,
                0,
                0,
                false,
                None,
                0,
                None,
                1,
            ),
            // 7-bit picture id, interframe, middle packet.
            (
                vec![I | P, 0x05],
                false,
                Some(5),
                false,
                0,
                0,
                false,
                None,
                0,
                None,
                2,
            ),
            // 15-bit picture id, layer indices and TL0PICIDX (non-flexible), interframe.
            (
                vec![I | P | L | B, 0x81, 0x02, layer(2, true, 0, false), 0x33],
                false,
                Some(0x0102),
                true,
                2,
                0,
                false,
                Some(0x33),
                0,
                None,
                5,
            ),
            // An SVC keyframe's base layer with a scalability structure: three spatial
            // layers with sizes, and a group of pictures of two (one with a reference).
            (
                {
                    let mut p = vec![I | L | B | V, 0xff, 0xff, layer(0, false, 0, false), 0x07];
                    p.push(2 << 5 | 0x10 | 0x08); // N_S = 2, Y, G
                    for (w, h) in [(320u16, 180u16), (640, 360), (1280, 720)] {
                        p.extend_from_slice(&w.to_be_bytes());
                        p.extend_from_slice(&h.to_be_bytes());
                    }
                    p.extend_from_slice(&[2, 0, 1 << 5 | 1 << 2, 1]); // N_G, pictures
                    p.push(0x9d);
                    p
                },
                true,
                Some(0x7fff),
                true,
                0,
                0,
                false,
                Some(7),
                3,
                Some((1280, 720)),
                22,
            ),
            // The keyframe's upper spatial layer: no earlier picture, but the layer below.
            (
                vec![I | L | B | E, 0x85, 0x00, layer(0, false, 2, true), 0x07, 0],
                false,
                Some(0x0500),
                true,
                0,
                2,
                true,
                Some(7),
                0,
                None,
                5,
            ),
            // Flexible mode: no TL0PICIDX, two P_DIFF.
            (
                vec![
                    I | P | L | F | B,
                    0x10,
                    layer(1, false, 1, false),
                    0x03,
                    0x04,
                    9,
                ],
                false,
                Some(0x10),
                false,
                1,
                1,
                false,
                None,
                0,
                None,
                5,
            ),
        ];
        for (i, (bytes, key, pid, long, t, s, d, tl0, ss, size, len)) in
            rows.into_iter().enumerate()
        {
            let got = Vp9Descriptor::parse(&bytes).unwrap_or_else(|e| panic!("row {i}: {e}"));
            assert_eq!(got.starts_keyframe(), key, "row {i}: keyframe");
            assert_eq!(
                (got.picture_id, got.long_picture_id),
                (pid, long),
                "row {i}: pid"
            );
            assert_eq!(
                (got.temporal_id, got.spatial_id, got.inter_layer),
                (t, s, d),
                "row {i}: layer"
            );
            assert_eq!(got.tl0_pic_idx, tl0, "row {i}: tl0");
            assert_eq!((got.ss_layers, got.size()), (ss, size), "row {i}: ss");
            assert_eq!(got.len, len, "row {i}: len");
        }
    }

    /// The descriptor of the first packet of a keyframe from Chromium encoding `L3T3_KEY` at
    /// 1280x720, as it arrived at the server: flexible mode, a 15-bit picture id, layer indices
    /// (T0, switching up, S0) and the scalability structure with three sizes.
    const CHROMIUM_L3T3_KEY: [u8; 17] = [
        186, 160, 130, 16, 80, 1, 64, 0, 180, 2, 128, 1, 104, 5, 0, 2, 208,
    ];

    #[test]
    fn chromiums_l3t3_key_keyframe() {
        let d = Vp9Descriptor::parse(&CHROMIUM_L3T3_KEY).unwrap();
        assert!(d.starts_keyframe());
        assert!(d.flexible && d.begins_frame && !d.ends_frame && !d.inter_picture);
        assert_eq!(d.picture_id, Some(0x2082));
        assert!(d.long_picture_id);
        assert_eq!((d.temporal_id, d.spatial_id, d.inter_layer), (0, 0, false));
        assert_eq!(d.tl0_pic_idx, None, "flexible mode has no TL0PICIDX");
        assert_eq!(d.ss_layers, 3);
        assert_eq!(
            &d.ss_sizes[..3],
            &[Some((320, 180)), Some((640, 360)), Some((1280, 720))]
        );
        assert_eq!(d.size(), Some((1280, 720)));
        assert_eq!(d.len, CHROMIUM_L3T3_KEY.len());
    }

    #[test]
    fn malformed_descriptors_are_errors() {
        let rows: &[(&[u8], Vp9Error)] = &[
            (&[], Vp9Error::Truncated),
            (&[I], Vp9Error::Truncated),
            (&[I, 0x80], Vp9Error::Truncated),
            (&[L, 0x00], Vp9Error::Truncated), // TL0PICIDX missing
            (&[P | F, 0x03, 0x05], Vp9Error::Truncated),
            (
                &[P | F, 0x03, 0x05, 0x07, 0x09],
                Vp9Error::TooManyReferences,
            ),
            (&[V, 0x10, 0x01, 0x40], Vp9Error::Truncated), // sizes cut short
            (&[V, 0x08, 0x01, 0x08], Vp9Error::Truncated), // a reference missing
        ];
        for (bytes, want) in rows {
            assert_eq!(Vp9Descriptor::parse(bytes), Err(*want), "{bytes:02x?}");
        }
    }

    #[test]
    fn renumbering_touches_only_the_picture_id_and_tl0picidx() {
        let long = [
            I | P | L | B,
            0x81,
            0x02,
            layer(1, false, 0, false),
            0x33,
            0xde,
            0xad,
        ];
        let d = Vp9Descriptor::parse(&long).unwrap();
        let out = d.renumbered(&long, Some(0x7ffe), Some(0x40));
        assert_eq!(
            &out[..],
            &[
                I | P | L | B,
                0xff,
                0xfe,
                layer(1, false, 0, false),
                0x40,
                0xde,
                0xad
            ]
        );
        let short = [I | L | B, 0x05, layer(0, false, 0, false), 0x33, 0xde];
        let d = Vp9Descriptor::parse(&short).unwrap();
        let out = d.renumbered(&short, Some(0x1ff), None);
        assert_eq!(
            &out[..],
            &[I | L | B, 0x7f, layer(0, false, 0, false), 0x33, 0xde]
        );
        // Fields the packet lacks stay absent.
        let bare = [B | E, 0x01];
        let d = Vp9Descriptor::parse(&bare).unwrap();
        assert_eq!(&d.renumbered(&bare, Some(9), Some(9))[..], &bare);
    }
}
