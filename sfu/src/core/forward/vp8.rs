//! Just enough of the VP8 RTP payload (RFC 7741): the descriptor's length and the frame size of
//! keyframes. Picture ids are renumbered by [`PictureIdRewriter`](super::picture_id::PictureIdRewriter).

/// Length of the VP8 payload descriptor at the start of `payload`, if it is well formed.
pub fn descriptor_len(payload: &[u8]) -> Option<usize> {
    let b0 = *payload.first()?;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *payload.get(i)?;
        i += 1;
        if x & 0x80 != 0 {
            // I: picture id, 7 or 15 bits.
            let pid = *payload.get(i)?;
            i += if pid & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // T or K: TID/Y/KEYIDX
        }
    }
    (i <= payload.len()).then_some(i)
}

/// Whether the descriptor's picture id (if any) is the 15-bit form.
pub fn long_picture_id(payload: &[u8]) -> bool {
    match payload {
        [b0, x, pid, ..] => b0 & 0x80 != 0 && x & 0x80 != 0 && pid & 0x80 != 0,
        _ => false,
    }
}

/// Width and height of a VP8 keyframe, from the first packet of the frame.
pub fn keyframe_size(payload: &[u8]) -> Option<(u16, u16)> {
    let start = payload.first()? & 0x10 != 0;
    let pid = payload.first()? & 0x07;
    if !start || pid != 0 {
        return None;
    }
    let d = descriptor_len(payload)?;
    let f = payload.get(d..d + 10)?;
    // Frame tag bit 0 clear: keyframe. Then the start code 9d 01 2a.
    if f[0] & 0x01 != 0 || f[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([f[6], f[7]]) & 0x3fff;
    let h = u16::from_le_bytes([f[8], f[9]]) & 0x3fff;
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyframe(descriptor: &[u8], w: u16, h: u16) -> Vec<u8> {
        let mut p = descriptor.to_vec();
        p.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a]);
        p.extend_from_slice(&w.to_le_bytes());
        p.extend_from_slice(&h.to_le_bytes());
        p.extend_from_slice(&[0; 20]);
        p
    }

    #[test]
    fn descriptor_lengths() {
        let table: &[(&[u8], Option<usize>)] = &[
            (&[0x10], Some(1)),
            (&[0x90, 0x80, 0x05], Some(3)),
            (&[0x90, 0x80, 0x85, 0x01], Some(4)),
            (&[0x90, 0xe0, 0x85, 0x01, 0x07, 0x40], Some(6)),
            (&[0x90, 0x80], None),
            (&[], None),
        ];
        for (p, want) in table {
            assert_eq!(descriptor_len(p), *want, "{p:02x?}");
        }
    }

    #[test]
    fn keyframe_sizes() {
        assert_eq!(
            keyframe_size(&keyframe(&[0x90, 0xe0, 0x85, 0x01, 0x07, 0x40], 1280, 720)),
            Some((1280, 720))
        );
        assert_eq!(
            keyframe_size(&keyframe(&[0x10], 320, 180)),
            Some((320, 180))
        );
        // Not the first packet of the frame, an interframe, truncated.
        assert_eq!(keyframe_size(&keyframe(&[0x00], 320, 180)), None);
        let mut inter = keyframe(&[0x10], 320, 180);
        inter[1] |= 1;
        assert_eq!(keyframe_size(&inter), None);
        assert_eq!(keyframe_size(&keyframe(&[0x10], 320, 180)[..8]), None);
    }
}
