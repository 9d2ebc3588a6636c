//! Just enough of the VP8 RTP payload (RFC 7741): the frame size of keyframes, and the picture
//! id / TL0PICIDX continuity a receiver expects when the server switches it between simulcast
//! layers (each layer has its own numbering; a jump makes the receiver hold frames back as if
//! some were missing).

/// Picture ids and TL0PICIDX values of one outgoing VP8 stream, continuous across switches.
///
/// [`Vp8Rewriter::restart`] at the keyframe a switch starts on; [`Vp8Rewriter::rewrite`] for
/// every packet sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vp8Rewriter {
    pid_delta: u16,
    tl0_delta: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    restart: bool,
}

/// 15-bit picture id space.
const PID_MOD: u16 = 0x8000;

impl Vp8Rewriter {
    /// The next packet starts a new source: number it right after what was sent last.
    pub fn restart(&mut self) {
        self.restart = true;
    }

    /// The outgoing picture id and TL0PICIDX for a packet with these values (`None`: absent).
    /// `short_pid`: the descriptor carries a 7-bit picture id.
    pub fn rewrite(
        &mut self,
        pid: Option<u16>,
        tl0: Option<u8>,
        short_pid: bool,
    ) -> (Option<u16>, Option<u8>) {
        let modulus = if short_pid { 0x80 } else { PID_MOD };
        if std::mem::take(&mut self.restart) {
            if let (Some(p), Some(last)) = (pid, self.last_pid) {
                let next = (last + 1) % modulus;
                self.pid_delta = (next + modulus - p % modulus) % modulus;
            }
            if let (Some(t), Some(last)) = (tl0, self.last_tl0) {
                self.tl0_delta = last.wrapping_add(1).wrapping_sub(t);
            }
        }
        let out_pid = pid.map(|p| (p % modulus + self.pid_delta % modulus) % modulus);
        let out_tl0 = tl0.map(|t| t.wrapping_add(self.tl0_delta));
        if let Some(p) = out_pid {
            self.last_pid = Some(match self.last_pid {
                // Keep the newest in wrapping order (reordered packets do not move it back).
                Some(l) if (p + modulus - l) % modulus > modulus / 2 => l,
                _ => p,
            });
        }
        if let Some(t) = out_tl0 {
            self.last_tl0 = Some(match self.last_tl0 {
                Some(l) if t.wrapping_sub(l) > 128 => l,
                _ => t,
            });
        }
        (out_pid, out_tl0)
    }
}

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

    #[test]
    fn picture_ids_continue_across_a_switch() {
        let mut r = Vp8Rewriter::default();
        // (in pid, in tl0, restart before, expected out)
        let rows: &[(u16, u8, bool, (u16, u8))] = &[
            (100, 7, false, (100, 7)), // first source passes through
            (101, 7, false, (101, 7)),
            (101, 7, false, (101, 7)), // several packets of one frame
            (102, 8, false, (102, 8)),
            (5000, 200, true, (103, 9)), // switch: continue after 102 / 8
            (5001, 200, false, (104, 9)),
            (5002, 201, false, (105, 10)),
            (32767, 255, true, (106, 11)), // another switch, near the wrap
            (0, 0, false, (107, 12)),
        ];
        for (i, (pid, tl0, restart, want)) in rows.iter().enumerate() {
            if *restart {
                r.restart();
            }
            assert_eq!(
                r.rewrite(Some(*pid), Some(*tl0), false),
                (Some(want.0), Some(want.1)),
                "row {i}"
            );
        }
    }

    #[test]
    fn wraps_and_short_ids() {
        let mut r = Vp8Rewriter::default();
        assert_eq!(r.rewrite(Some(32767), None, false), (Some(32767), None));
        r.restart();
        assert_eq!(r.rewrite(Some(10), None, false), (Some(0), None));
        let mut s = Vp8Rewriter::default();
        assert_eq!(s.rewrite(Some(127), Some(1), true), (Some(127), Some(1)));
        s.restart();
        assert_eq!(s.rewrite(Some(50), Some(9), true), (Some(0), Some(2)));
        // Missing fields stay missing.
        assert_eq!(s.rewrite(None, None, true), (None, None));
    }

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
