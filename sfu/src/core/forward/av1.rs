//! Just enough of AV1 over RTP for a forwarding server: where a keyframe starts (the aggregation
//! header's N bit) and, from the dependency descriptor header extension, which spatial and
//! temporal layer a packet carries and where its frame starts and ends.
//!
//! An AV1 payload says nothing about layers; a sender that encodes several (SVC, such as
//! `L3T3_KEY`) describes them in the dependency descriptor (DD) of each packet:
//!
//! ```text
//!  0                   1                   2
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |S|E| template id |         frame number          |  mandatory, in every packet
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | extended fields: the template dependency structure (on keyframes), ...
//! ```
//!
//! The structure lists templates, each with a spatial and temporal id (and, per decode target,
//! how the frame matters, its references and chains), and optionally each spatial layer's
//! resolution. A packet names its template by id, relative to the structure's offset, so its
//! layer is known only with the structure of its keyframe: each stream (a simulcast encoding has
//! its own) keeps the last one.
//!
//! The descriptor goes on to subscribers as it came: a receiver needs it to tell the frames of
//! one picture apart (without it Chromium decodes a single spatial layer only). Its frame numbers
//! and references stay valid for a subset of the layers, since a frame refers only to frames of
//! its own or lower layers, which the subscriber also gets.

use std::sync::Arc;

use str0m::rtp::{ExtensionSerializer, ExtensionValues};

/// The header extension's URI in SDP.
pub const DEPENDENCY_DESCRIPTOR_URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// Most templates a structure holds (the template id is six bits).
const MAX_TEMPLATES: usize = 64;
/// Most spatial layers a structure describes (the spatial id is two bits).
pub const MAX_SPATIAL_LAYERS: usize = 4;

/// Whether an AV1 payload starts a keyframe: the N bit of the aggregation header marks the first
/// packet of a coded video sequence.
pub fn starts_keyframe(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b & 0x08 != 0)
}

/// Why a dependency descriptor could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DdError {
    /// The extension ends inside a field.
    #[error("the dependency descriptor is truncated")]
    Truncated,
    /// A structure with more than 64 templates.
    #[error("the dependency descriptor lists too many templates")]
    TooManyTemplates,
    /// A structure with more than four spatial layers.
    #[error("the dependency descriptor describes too many spatial layers")]
    TooManySpatialLayers,
}

/// The template dependency structure: the layers of the templates, and the resolutions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdStructure {
    /// Template id of the first template.
    pub template_id_offset: u8,
    /// (spatial id, temporal id) of each template.
    pub layers: Vec<(u8, u8)>,
    /// Render resolution of each spatial layer, lowest first, when the structure gives them.
    pub resolutions: Vec<(u16, u16)>,
}

impl DdStructure {
    /// The (spatial, temporal) layer of a frame with template id `template_id`.
    pub fn layer_of(&self, template_id: u8) -> Option<(u8, u8)> {
        let index = (template_id as usize + MAX_TEMPLATES - self.template_id_offset as usize)
            % MAX_TEMPLATES;
        self.layers.get(index).copied()
    }

    /// The number of spatial layers.
    pub fn spatial_layers(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.0 as usize + 1)
            .max()
            .unwrap_or(1)
    }
}

/// One packet's dependency descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependencyDescriptor {
    /// The packet starts a frame.
    pub start_of_frame: bool,
    /// The packet ends a frame.
    pub end_of_frame: bool,
    /// Which template of the structure the frame follows.
    pub template_id: u8,
    /// The frame's number (16 bits, wrapping).
    pub frame_number: u16,
    /// The structure, when this packet carries one (the first packet of a keyframe).
    pub structure: Option<Arc<DdStructure>>,
    /// The extension as it came, to pass on.
    pub bytes: Arc<[u8]>,
}

impl DependencyDescriptor {
    /// Reads a dependency descriptor (the header extension's value).
    pub fn parse(buf: &[u8]) -> Result<DependencyDescriptor, DdError> {
        let mut r = BitReader::new(buf);
        let start_of_frame = r.bit()?;
        let end_of_frame = r.bit()?;
        let template_id = r.bits(6)? as u8;
        let frame_number = r.bits(16)? as u16;
        let mut structure = None;
        if buf.len() > 3 {
            let structure_present = r.bit()?;
            // active decode targets, custom DTIs, fdiffs and chains: not needed here.
            r.bits(4)?;
            if structure_present {
                structure = Some(Arc::new(read_structure(&mut r)?));
            }
        }
        Ok(DependencyDescriptor {
            start_of_frame,
            end_of_frame,
            template_id,
            frame_number,
            structure,
            bytes: buf.into(),
        })
    }
}

fn read_structure(r: &mut BitReader) -> Result<DdStructure, DdError> {
    let template_id_offset = r.bits(6)? as u8;
    let dt_cnt = r.bits(5)? as usize + 1;
    // Template layers: each next template is the same layer (0), the next temporal layer (1),
    // the next spatial layer (2), or there are no more (3).
    let mut layers = Vec::new();
    let (mut spatial, mut temporal) = (0u8, 0u8);
    loop {
        if layers.len() == MAX_TEMPLATES {
            return Err(DdError::TooManyTemplates);
        }
        layers.push((spatial, temporal));
        match r.bits(2)? {
            0 => {}
            1 => temporal = temporal.saturating_add(1),
            2 => {
                temporal = 0;
                spatial += 1;
                if spatial as usize >= MAX_SPATIAL_LAYERS {
                    return Err(DdError::TooManySpatialLayers);
                }
            }
            _ => break,
        }
    }
    let template_cnt = layers.len();
    // Decode target indications: two bits per template and decode target.
    r.skip(2 * template_cnt * dt_cnt)?;
    // Frame diffs: a list per template, each entry a flag and four bits.
    for _ in 0..template_cnt {
        while r.bit()? {
            r.bits(4)?;
        }
    }
    // Chains.
    let chain_cnt = r.ns(dt_cnt as u32 + 1)? as usize;
    if chain_cnt > 0 {
        for _ in 0..dt_cnt {
            r.ns(chain_cnt as u32)?;
        }
        r.skip(4 * template_cnt * chain_cnt)?;
    }
    let mut resolutions = Vec::new();
    if r.bit()? {
        let max_spatial = layers.iter().map(|l| l.0).max().unwrap_or(0);
        for _ in 0..=max_spatial {
            let width = r.bits(16)? as u16;
            let height = r.bits(16)? as u16;
            resolutions.push((width.wrapping_add(1), height.wrapping_add(1)));
        }
    }
    Ok(DdStructure {
        template_id_offset,
        layers,
        resolutions,
    })
}

/// Reads bits, most significant first.
struct BitReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        BitReader { buf, pos: 0 }
    }

    fn bit(&mut self) -> Result<bool, DdError> {
        let byte = self.buf.get(self.pos / 8).ok_or(DdError::Truncated)?;
        let bit = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    fn bits(&mut self, n: u32) -> Result<u32, DdError> {
        let mut v = 0;
        for _ in 0..n {
            v = v << 1 | u32::from(self.bit()?);
        }
        Ok(v)
    }

    fn skip(&mut self, n: usize) -> Result<(), DdError> {
        if self.pos + n > self.buf.len() * 8 {
            return Err(DdError::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    /// A non-symmetric unsigned value below `n`.
    fn ns(&mut self, n: u32) -> Result<u32, DdError> {
        let w = 32 - n.leading_zeros();
        let m = (1 << w) - n;
        let v = self.bits(w - 1)?;
        if v < m {
            return Ok(v);
        }
        let extra = self.bits(1)?;
        Ok((v << 1) - m + extra)
    }
}

/// Frame numbers of one outgoing AV1 stream, continuous across simulcast switches: each encoding
/// numbers its frames on its own, and a jump at a switch (possibly backwards) could make the
/// receiver take the new frames for old ones. Frame references in the descriptor are relative,
/// so one offset per source keeps them right.
///
/// [`FrameNumberRewriter::restart`] at the keyframe a switch starts on; [`FrameNumberRewriter::rewrite`]
/// for every packet sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameNumberRewriter {
    delta: u16,
    last: Option<u16>,
    restart: bool,
}

impl FrameNumberRewriter {
    /// The next packet starts a new source: number its frame right after the last one sent.
    pub fn restart(&mut self) {
        self.restart = true;
    }

    /// The outgoing frame number of a packet whose descriptor says `frame`.
    pub fn rewrite(&mut self, frame: u16) -> u16 {
        if std::mem::take(&mut self.restart) {
            if let Some(last) = self.last {
                self.delta = last.wrapping_add(1).wrapping_sub(frame);
            }
        }
        let out = frame.wrapping_add(self.delta);
        self.last = Some(match self.last {
            // Keep the newest in wrapping order (a late packet does not move it back).
            Some(l) if out.wrapping_sub(l) > 0x8000 => l,
            _ => out,
        });
        out
    }
}

impl DependencyDescriptor {
    /// This descriptor with another frame number (bytes 1 and 2), as a new value to pass on.
    pub fn renumbered(&self, frame: u16) -> DependencyDescriptor {
        let mut bytes = self.bytes.to_vec();
        if let Some(b) = bytes.get_mut(1..3) {
            b.copy_from_slice(&frame.to_be_bytes());
        }
        DependencyDescriptor {
            frame_number: frame,
            bytes: bytes.into(),
            ..self.clone()
        }
    }
}

/// Reads the dependency descriptor of arriving packets into
/// [`ExtensionValues::user_values`], and writes the one found there on packets that leave.
#[derive(Debug)]
pub struct DdSerializer;

impl ExtensionSerializer for DdSerializer {
    fn write_to(&self, buf: &mut [u8], ev: &ExtensionValues) -> usize {
        let Some(d) = ev.user_values.get::<DependencyDescriptor>() else {
            return 0;
        };
        match buf.get_mut(..d.bytes.len()) {
            Some(out) => {
                out.copy_from_slice(&d.bytes);
                d.bytes.len()
            }
            None => 0,
        }
    }

    fn requires_two_byte_form(&self, ev: &ExtensionValues) -> bool {
        ev.user_values
            .get::<DependencyDescriptor>()
            .is_some_and(|d| d.bytes.len() > 16)
    }

    fn parse_value(&self, buf: &[u8], ev: &mut ExtensionValues) -> bool {
        match DependencyDescriptor::parse(buf) {
            Ok(d) => {
                ev.user_values.set(d);
                true
            }
            Err(_) => {
                ev.user_values.set(DdMalformed);
                true
            }
        }
    }

    fn is_video(&self) -> bool {
        true
    }

    fn is_audio(&self) -> bool {
        false
    }
}

/// Left in a packet's extension values when its dependency descriptor could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdMalformed;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes bits, most significant first (to build descriptors by hand).
    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bits: usize,
    }

    impl BitWriter {
        fn put(&mut self, n: u32, v: u32) -> &mut Self {
            for i in (0..n).rev() {
                if self.bits.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let bit = (v >> i & 1) as u8;
                *self.bytes.last_mut().unwrap() |= bit << (7 - self.bits % 8);
                self.bits += 1;
            }
            self
        }
    }

    #[test]
    fn mandatory_fields_alone() {
        // S=1, E=0, template 5, frame 0x1234.
        let d = DependencyDescriptor::parse(&[0b1000_0101, 0x12, 0x34]).unwrap();
        assert_eq!(
            d,
            DependencyDescriptor {
                start_of_frame: true,
                end_of_frame: false,
                template_id: 5,
                frame_number: 0x1234,
                structure: None,
                bytes: [0b1000_0101, 0x12, 0x34].into(),
            }
        );
        assert_eq!(
            DependencyDescriptor::parse(&[0x80, 0]),
            Err(DdError::Truncated)
        );
    }

    /// The descriptor a sender puts on the first packet of an `L2T2` keyframe: templates
    /// S0T0, S0T1, S1T0, S1T1, four decode targets, two chains, 320x180 and 640x360.
    fn l2t2_keyframe() -> Vec<u8> {
        let mut w = BitWriter::default();
        // Mandatory: S=1, E=0, template id 2 (offset 2: the first template, S0T0), frame 7.
        w.put(1, 1).put(1, 0).put(6, 2).put(16, 7);
        // Extended flags: structure present, the others clear.
        w.put(1, 1).put(4, 0);
        // Structure: offset 2, four decode targets.
        w.put(6, 2).put(5, 3);
        // Layers: S0T0 -1-> S0T1 -2-> S1T0 -1-> S1T1 -3.
        w.put(2, 1).put(2, 2).put(2, 1).put(2, 3);
        // DTIs: 4 templates x 4 decode targets.
        for _ in 0..16 {
            w.put(2, 3);
        }
        // Frame diffs: S0T0 refs 2 back; S0T1 refs 1; S1T0 refs 1 and 2; S1T1 none.
        w.put(1, 1).put(4, 1).put(1, 0);
        w.put(1, 1).put(4, 0).put(1, 0);
        w.put(1, 1).put(4, 0).put(1, 1).put(4, 1).put(1, 0);
        w.put(1, 0);
        // Chains: ns(5) = 2 (w = 3, m = 3: two bits "10" are 2).
        w.put(2, 2);
        // Protected by: ns(2) per decode target, one bit each.
        w.put(1, 0).put(1, 0).put(1, 1).put(1, 1);
        // Chain frame diffs: 4 templates x 2 chains x 4 bits.
        for _ in 0..8 {
            w.put(4, 1);
        }
        // Resolutions.
        w.put(1, 1)
            .put(16, 319)
            .put(16, 179)
            .put(16, 639)
            .put(16, 359);
        w.bytes
    }

    #[test]
    fn a_keyframe_structure_gives_layers_and_resolutions() {
        let d = DependencyDescriptor::parse(&l2t2_keyframe()).unwrap();
        assert!(d.start_of_frame && !d.end_of_frame);
        assert_eq!(d.frame_number, 7);
        let s = d.structure.expect("a structure");
        assert_eq!(s.layers, [(0, 0), (0, 1), (1, 0), (1, 1)]);
        assert_eq!(s.resolutions, [(320, 180), (640, 360)]);
        assert_eq!(s.spatial_layers(), 2);
        // Template ids count from the offset and wrap at 64.
        assert_eq!(s.layer_of(2), Some((0, 0)));
        assert_eq!(s.layer_of(5), Some((1, 1)));
        assert_eq!(s.layer_of(6), None);
        assert_eq!(s.layer_of(1), None);
    }

    #[test]
    fn every_truncation_of_a_structure_is_an_error() {
        let full = l2t2_keyframe();
        for len in 4..full.len() {
            assert!(
                DependencyDescriptor::parse(&full[..len]).is_err(),
                "cut at {len} bytes"
            );
        }
    }

    #[test]
    fn endless_or_oversized_structures_are_refused() {
        // 64 templates of the same layer and more.
        let mut w = BitWriter::default();
        w.put(24, 0).put(1, 1).put(4, 0).put(6, 0).put(5, 0);
        for _ in 0..70 {
            w.put(2, 0);
        }
        assert_eq!(
            DependencyDescriptor::parse(&w.bytes),
            Err(DdError::TooManyTemplates)
        );
        // A fifth spatial layer.
        let mut w = BitWriter::default();
        w.put(24, 0).put(1, 1).put(4, 0).put(6, 0).put(5, 0);
        for _ in 0..4 {
            w.put(2, 2);
        }
        w.put(2, 3).put(32, 0);
        assert_eq!(
            DependencyDescriptor::parse(&w.bytes),
            Err(DdError::TooManySpatialLayers)
        );
    }

    #[test]
    fn non_symmetric_values() {
        // ns(5): w = 3, m = 3; 0..3 in two bits, 3 and 4 with an extra bit.
        for (bits, len, want) in [(0b00, 2, 0), (0b10, 2, 2), (0b110, 3, 3), (0b111, 3, 4)] {
            let mut w = BitWriter::default();
            w.put(len, bits).put(8, 0);
            assert_eq!(BitReader::new(&w.bytes).ns(5), Ok(want), "{bits:b}");
        }
        // ns(1) reads nothing and is 0.
        assert_eq!(BitReader::new(&[]).ns(1), Ok(0));
    }

    #[test]
    fn keyframes_are_marked_by_the_n_bit() {
        assert!(starts_keyframe(&[0b0001_1000, 0x0a]));
        assert!(!starts_keyframe(&[0b0001_0000, 0x0a]));
        assert!(!starts_keyframe(&[]));
    }

    #[test]
    fn the_descriptor_is_written_on_as_it_came() {
        let mut ev = ExtensionValues::default();
        let key = l2t2_keyframe();
        assert!(DdSerializer.parse_value(&key, &mut ev));
        let mut buf = [0u8; 255];
        assert_eq!(DdSerializer.write_to(&mut buf, &ev), key.len());
        assert_eq!(&buf[..key.len()], &key[..]);
        assert!(
            DdSerializer.requires_two_byte_form(&ev),
            "{} bytes",
            key.len()
        );
        // Too little room: nothing written.
        assert_eq!(DdSerializer.write_to(&mut buf[..4], &ev), 0);
        // A short one fits the one-byte form; none at all writes nothing.
        assert!(DdSerializer.parse_value(&[0x80, 0, 1], &mut ev));
        assert!(!DdSerializer.requires_two_byte_form(&ev));
        assert_eq!(
            DdSerializer.write_to(&mut buf, &ExtensionValues::default()),
            0
        );
        // A malformed one is marked, not dropped silently.
        let mut ev = ExtensionValues::default();
        assert!(DdSerializer.parse_value(&[0x80], &mut ev));
        assert!(ev.user_values.get::<DdMalformed>().is_some());
    }

    /// The descriptor on the first packet of a keyframe from Chromium encoding `L3T3_KEY` at
    /// 1280x720, as it arrived at the server.
    pub(crate) const CHROMIUM_L3T3_KEY: [u8; 92] = [
        192, 0, 1, 192, 8, 20, 133, 33, 78, 170, 170, 168, 0, 6, 0, 0, 64, 0, 16, 0, 2, 170, 128,
        168, 0, 6, 0, 0, 64, 0, 16, 0, 2, 160, 0, 168, 0, 6, 0, 0, 64, 0, 22, 213, 73, 36, 27, 85,
        36, 144, 109, 84, 146, 49, 87, 224, 1, 151, 76, 168, 100, 51, 14, 34, 35, 150, 236, 168,
        101, 83, 4, 34, 67, 144, 236, 168, 119, 83, 1, 63, 0, 179, 2, 127, 1, 103, 4, 255, 2, 207,
        31, 128,
    ];

    #[test]
    fn chromiums_l3t3_key_structure() {
        let d = DependencyDescriptor::parse(&CHROMIUM_L3T3_KEY).unwrap();
        assert!(d.start_of_frame && d.end_of_frame);
        let s = d.structure.expect("a keyframe carries the structure");
        // Five templates per spatial layer: two for temporal layer 0 (a keyframe's and the
        // others), one for layer 1, two for layer 2. The resolutions come last in the structure:
        // reading them right means every field before was read right.
        let per_spatial = |sp: u8| [(sp, 0), (sp, 0), (sp, 1), (sp, 2), (sp, 2)];
        let want: Vec<(u8, u8)> = (0..3).flat_map(per_spatial).collect();
        assert_eq!(s.layers, want);
        assert_eq!(s.resolutions, [(320, 180), (640, 360), (1280, 720)]);
        assert_eq!(s.spatial_layers(), 3);
        assert_eq!(s.layer_of(d.template_id), Some((0, 0)));
        assert_eq!(s.layer_of(13), Some((2, 2)));
    }

    #[test]
    fn frame_numbers_continue_across_switches() {
        let mut r = FrameNumberRewriter::default();
        // The first source goes through as it is.
        assert_eq!(r.rewrite(500), 500);
        assert_eq!(r.rewrite(500), 500);
        assert_eq!(r.rewrite(501), 501);
        // A switch to an encoding numbered lower: it continues at 502.
        r.restart();
        assert_eq!(r.rewrite(20), 502);
        assert_eq!(r.rewrite(21), 503);
        // A late packet of the earlier frame keeps its own number and does not move `last` back.
        assert_eq!(r.rewrite(20), 502);
        // Across the 16-bit wrap.
        r.restart();
        assert_eq!(r.rewrite(65_535), 504);
        assert_eq!(r.rewrite(0), 505);
        let d = DependencyDescriptor::parse(&[0x80, 0x12, 0x34]).unwrap();
        let n = d.renumbered(0xabcd);
        assert_eq!(&n.bytes[..], &[0x80, 0xab, 0xcd]);
        assert_eq!(DependencyDescriptor::parse(&n.bytes).unwrap(), n);
    }
}
