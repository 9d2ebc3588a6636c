//! Checks on what the clients received.

use super::bed::Bed;
use super::media::Received;

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
