//! Redundant audio (RED, RFC 2198) for Opus: a publisher whose browser offers `red/48000/2`
//! sends each Opus packet together with a copy of the one before, so that one lost packet costs
//! nothing. Per subscriber the server forwards the RED packet as it came (the subscriber
//! negotiated RED and its link loses packets) or only its primary block as plain Opus (no RED on
//! the subscriber's m-line, or a clean link where the copy would only double the audio bitrate).
//!
//! A RED payload is a list of block headers, then the blocks' data in the same order:
//!
//! ```text
//! redundant block header (4 bytes):  |1| block PT (7) | timestamp offset (14) | length (10) |
//! primary block header (1 byte):     |0| block PT (7) |
//! ```
//!
//! The primary block is the last one; its timestamp is the packet's and its length is what is
//! left after the redundant blocks.

use std::ops::Range;
use std::time::{Duration, Instant};

/// Redundant blocks accepted in one payload (browsers send one or two; the bound keeps a hostile
/// payload from making the parse long).
const MAX_REDUNDANT_BLOCKS: usize = 16;

/// Loss on a subscriber's link (fraction of packets, from its receiver reports) at which it gets
/// the redundant packets.
pub const RED_ON_LOSS: f32 = 0.02;
/// Below this loss for [`RED_OFF_AFTER`], plain Opus again.
pub const RED_OFF_LOSS: f32 = 0.01;
/// How long the loss must stay low before the redundancy is dropped.
pub const RED_OFF_AFTER: Duration = Duration::from_secs(10);

/// Why a RED payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedError {
    /// The payload ends inside a header or a block.
    #[error("truncated RED payload")]
    Truncated,
    /// More redundant blocks than [`MAX_REDUNDANT_BLOCKS`].
    #[error("too many RED blocks")]
    TooManyBlocks,
}

/// Where the primary block's data is in a RED payload, and its payload type.
pub fn primary(payload: &[u8]) -> Result<(Range<usize>, u8), RedError> {
    let mut at = 0;
    let mut redundant_len = 0usize;
    for _ in 0..=MAX_REDUNDANT_BLOCKS {
        let first = *payload.get(at).ok_or(RedError::Truncated)?;
        if first & 0x80 == 0 {
            // The primary header: data starts after it, behind the redundant blocks' data.
            let start = at + 1 + redundant_len;
            if start > payload.len() {
                return Err(RedError::Truncated);
            }
            return Ok((start..payload.len(), first & 0x7f));
        }
        let header = payload.get(at..at + 4).ok_or(RedError::Truncated)?;
        redundant_len += (usize::from(header[2] & 0x03) << 8) | usize::from(header[3]);
        at += 4;
    }
    Err(RedError::TooManyBlocks)
}

/// A RED payload of `primary` with payload type `pt`, repeating `previous` (its timestamp
/// `offset` ticks earlier) when there is one that RED can carry (offset under 2^14, length under
/// 2^10); else the primary alone.
pub fn encode(pt: u8, primary: &[u8], previous: Option<(u32, &[u8])>) -> Vec<u8> {
    let pt = pt & 0x7f;
    let previous =
        previous.filter(|(offset, p)| *offset > 0 && *offset < 1 << 14 && p.len() < 1 << 10);
    let mut out = Vec::with_capacity(5 + primary.len() + previous.map_or(0, |(_, p)| p.len()));
    if let Some((offset, p)) = previous {
        let len = p.len() as u32;
        let word = (offset << 10) | len;
        out.push(0x80 | pt);
        out.extend_from_slice(&word.to_be_bytes()[1..]);
    }
    out.push(pt);
    if let Some((_, p)) = previous {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(primary);
    out
}

/// Whether a subscriber is sent redundant audio, from its link's loss: on at
/// [`RED_ON_LOSS`], off after [`RED_OFF_AFTER`] below [`RED_OFF_LOSS`].
#[derive(Debug, Clone, Default)]
pub struct RedPolicy {
    on: bool,
    low_since: Option<Instant>,
}

impl RedPolicy {
    /// Whether redundancy is wanted now.
    pub fn on(&self) -> bool {
        self.on
    }

    /// One sample of the link's loss (`None`: not known yet, nothing changes). Returns whether
    /// the decision changed.
    pub fn sample(&mut self, now: Instant, loss: Option<f32>) -> bool {
        let Some(loss) = loss else {
            return false;
        };
        if loss >= RED_ON_LOSS {
            self.low_since = None;
            return !std::mem::replace(&mut self.on, true);
        }
        if !self.on {
            return false;
        }
        if loss >= RED_OFF_LOSS {
            self.low_since = None;
            return false;
        }
        let since = *self.low_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= RED_OFF_AFTER {
            self.on = false;
            self.low_since = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A redundant block header.
    fn block(pt: u8, ts_offset: u16, len: u16) -> [u8; 4] {
        [
            0x80 | pt,
            (ts_offset >> 6) as u8,
            (((ts_offset & 0x3f) as u8) << 2) | ((len >> 8) as u8 & 0x03),
            len as u8,
        ]
    }

    #[test]
    fn the_primary_block_is_found_behind_the_redundant_ones() {
        // One redundant block of 3 bytes (960 samples back), primary of 4 bytes, Opus PT 111.
        let mut p = block(111, 960, 3).to_vec();
        p.push(111);
        p.extend_from_slice(&[1, 2, 3]);
        p.extend_from_slice(&[9, 8, 7, 6]);
        let (range, pt) = primary(&p).unwrap();
        assert_eq!(pt, 111);
        assert_eq!(&p[range], &[9, 8, 7, 6]);

        // Two redundant blocks, one of 300 bytes (the length's high bits), one of 2.
        let mut p = block(111, 1920, 300).to_vec();
        p.extend_from_slice(&block(111, 960, 2));
        p.push(111);
        p.extend(std::iter::repeat_n(0xaa, 300));
        p.extend_from_slice(&[0xbb, 0xbb]);
        p.extend_from_slice(&[5; 60]);
        let (range, _) = primary(&p).unwrap();
        assert_eq!(range.len(), 60);
        assert!(p[range].iter().all(|b| *b == 5));

        // No redundancy at all (a sender that has nothing to repeat yet).
        let p = [111, 4, 4];
        let (range, _) = primary(&p).unwrap();
        assert_eq!(&p[range], &[4, 4]);
        // An empty primary (DTX sends tiny packets; nothing to send is still valid).
        let mut p = block(111, 960, 2).to_vec();
        p.extend_from_slice(&[111, 1, 2]);
        assert_eq!(primary(&p).unwrap().0.len(), 0);
    }

    #[test]
    fn encoded_payloads_read_back() {
        let prev = [7u8; 61];
        let cur = [9u8; 58];
        let p = encode(111, &cur, Some((960, &prev)));
        assert_eq!(p.len(), 4 + 1 + 61 + 58);
        assert_eq!(&p[..4], &block(111, 960, 61));
        let (range, pt) = primary(&p).unwrap();
        assert_eq!((pt, &p[range]), (111, &cur[..]));
        // Nothing to repeat, or nothing RED can carry: the primary alone.
        for previous in [None, Some((0, &prev[..])), Some((1 << 14, &prev[..]))] {
            let p = encode(111, &cur, previous);
            assert_eq!(p[0], 111);
            assert_eq!(&p[1..], &cur);
        }
        let long = vec![1u8; 1024];
        assert_eq!(encode(111, &cur, Some((960, &long))).len(), 1 + cur.len());
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let cases: [(&[u8], RedError); 5] = [
            (&[], RedError::Truncated),
            // A redundant header cut short.
            (&[0x80 | 111, 0, 0], RedError::Truncated),
            // A redundant header and no primary header.
            (&[0x80 | 111, 0, 0, 0], RedError::Truncated),
            // Blocks longer than the payload.
            (&[0x80 | 111, 0, 0, 50, 111, 1, 2], RedError::Truncated),
            // Redundant headers without end.
            (&[0x80 | 111; 4 * 40], RedError::TooManyBlocks),
        ];
        for (payload, want) in cases {
            assert_eq!(primary(payload), Err(want), "{payload:?}");
        }
    }

    #[test]
    fn redundancy_follows_the_loss_with_hysteresis() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut p = RedPolicy::default();
        assert!(!p.sample(at(0), None));
        assert!(!p.sample(at(1), Some(0.0)));
        assert!(!p.sample(at(2), Some(0.015)), "below the threshold");
        assert!(!p.on());
        assert!(p.sample(at(3), Some(0.05)), "loss: on");
        assert!(p.on());
        assert!(!p.sample(at(4), Some(0.03)), "still on");
        // Low loss for less than the hold: still on; a loss in between restarts the hold.
        assert!(!p.sample(at(5), Some(0.0)));
        assert!(!p.sample(at(12), Some(0.0)));
        assert!(!p.sample(at(13), Some(0.012)));
        assert!(!p.sample(at(14), Some(0.0)));
        assert!(!p.sample(at(23), Some(0.0)));
        assert!(p.on());
        assert!(p.sample(at(24), Some(0.0)), "10 s of clean link: off");
        assert!(!p.on());
        assert!(!p.sample(at(25), None));
    }
}
