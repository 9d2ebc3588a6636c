//! Picture id / TL0PICIDX continuity for VP8 (RFC 7741) and VP9 (RFC 9628) payload descriptors.
//!
//! Both codecs number their pictures (7 or 15 bits) and, with temporal layers, their base-layer
//! pictures (TL0PICIDX, 8 bits). Each simulcast layer has its own numbering: when the server
//! switches a subscriber between layers, a jump in these numbers makes the receiver hold frames
//! back as if some were missing. The rewriter continues the numbering the subscriber saw.

/// Picture ids and TL0PICIDX values of one outgoing VP8 or VP9 stream, continuous across switches.
///
/// [`PictureIdRewriter::restart`] at the keyframe a switch starts on; [`PictureIdRewriter::rewrite`] for
/// every packet sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PictureIdRewriter {
    pid_delta: u16,
    tl0_delta: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
    restart: bool,
}

/// 15-bit picture id space.
const PID_MOD: u16 = 0x8000;

impl PictureIdRewriter {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_ids_continue_across_a_switch() {
        let mut r = PictureIdRewriter::default();
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
        let mut r = PictureIdRewriter::default();
        assert_eq!(r.rewrite(Some(32767), None, false), (Some(32767), None));
        r.restart();
        assert_eq!(r.rewrite(Some(10), None, false), (Some(0), None));
        let mut s = PictureIdRewriter::default();
        assert_eq!(s.rewrite(Some(127), Some(1), true), (Some(127), Some(1)));
        s.restart();
        assert_eq!(s.rewrite(Some(50), Some(9), true), (Some(0), Some(2)));
        // Missing fields stay missing.
        assert_eq!(s.rewrite(None, None, true), (None, None));
    }
}
