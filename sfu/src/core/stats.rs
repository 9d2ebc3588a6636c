//! Counters kept by the engine on the hot path as plain integers, published by the I/O layer.

use std::time::Duration;

use str0m::media::MediaKind;

use super::forward::DropReason;

/// Index of a track kind in the `*_by_kind` counters: audio 0, video 1.
pub fn kind_index(kind: MediaKind) -> usize {
    match kind {
        MediaKind::Audio => 0,
        MediaKind::Video => 1,
    }
}

/// The names of the kinds, by [`kind_index`].
pub const KIND_NAMES: [&str; 2] = ["audio", "video"];

/// Cumulative counters of one engine.
#[derive(Debug, Default, Clone)]
pub struct EngineStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams from an address no participant owns, that were not a STUN request naming one.
    pub datagrams_unknown: u64,
    /// STUN binding requests from a new address that named a participant's ufrag but failed the
    /// MESSAGE-INTEGRITY check (forged or stale): dropped, the address not learnt.
    pub stun_forged: u64,
    /// Offers, answers and candidates refused (malformed, over a limit, wrong state).
    pub signals_refused: u64,
    /// Datagrams str0m refused (malformed, failed decryption, ...).
    pub datagrams_rejected: u64,
    /// RTP packets received from publishers.
    pub rtp_in: u64,
    /// RTP packets written towards subscribers.
    pub rtp_forwarded: u64,
    /// Payload bytes written towards subscribers.
    pub rtp_forwarded_bytes: u64,
    /// Packets not forwarded, by [`DropReason::index`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Datagrams handed to the socket.
    pub datagrams_out: u64,
    /// Data-channel messages delivered (one per recipient).
    pub data_relayed: u64,
    /// Data-channel messages refused (limits, grants, malformed).
    pub data_refused: u64,
    /// Data-channel messages not delivered because a recipient's buffer was full.
    pub data_dropped: u64,
    /// Changes of who is speaking.
    pub speaker_changes: u64,
    /// RTP packets received from publishers on known tracks, by [`kind_index`].
    pub rtp_in_by_kind: [u64; 2],
    /// Their payload bytes.
    pub rtp_in_bytes_by_kind: [u64; 2],
    /// RTP packets written towards subscribers, by [`kind_index`].
    pub rtp_out_by_kind: [u64; 2],
    /// Their payload bytes.
    pub rtp_out_bytes_by_kind: [u64; 2],
    /// Simulcast layer switches of subscriptions.
    pub layer_switches: u64,
    /// Keyframe requests (PLI, FIR) received from subscribers.
    pub keyframe_requests_in: u64,
    /// NACKs received from subscribers (each answered from the retransmission cache when the
    /// packet is still there), from str0m's per-stream statistics, once a second.
    pub nacks_in: u64,
    /// NACKs sent to publishers for packets lost on their way in.
    pub nacks_out: u64,
}

/// A histogram with fixed bucket bounds, cheap enough to fill on the hot path: one comparison per
/// bound and two additions, no allocation. Counts are cumulative, like Prometheus buckets.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Samples at or below [`Histogram::BOUNDS`]`[i]`; the last is everything (`+Inf`).
    pub counts: [u64; Histogram::BOUNDS.len() + 1],
    /// The sum of all samples, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Upper bounds in seconds, from 50 µs to 500 ms.
    pub const BOUNDS: [f64; 12] = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
    ];

    /// Adds `count` samples of `value`.
    pub fn add(&mut self, value: Duration, count: u64) {
        let v = value.as_secs_f64();
        let bucket = Self::BOUNDS
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(Self::BOUNDS.len());
        self.counts[bucket] += count;
        self.sum += v * count as f64;
    }

    /// Samples at or below each bound, then all of them.
    pub fn cumulative(&self) -> [u64; Histogram::BOUNDS.len() + 1] {
        let mut out = self.counts;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.add(Duration::from_micros(10), 3);
        h.add(Duration::from_millis(2), 1);
        h.add(Duration::from_secs(2), 1);
        let c = h.cumulative();
        assert_eq!(c[0], 3);
        assert_eq!(c[4], 3);
        assert_eq!(c[5], 4);
        assert_eq!(c[Histogram::BOUNDS.len()], 5);
        assert!((h.sum - 2.002_03).abs() < 1e-9);
    }
}
