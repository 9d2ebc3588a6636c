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
    /// Redundant-audio (RED) packets received from publishers.
    pub red_in: u64,
    /// RED packets forwarded as they came (to subscribers on lossy links).
    pub red_forwarded: u64,
    /// RED packets sent as plain Opus (their primary block).
    pub red_stripped: u64,
    /// RED packets made here from a plain Opus publisher's packets, for subscribers on lossy
    /// links.
    pub red_added: u64,
    /// Keyframe requests (PLI, FIR) received from subscribers.
    pub keyframe_requests_in: u64,
    /// NACKs received from subscribers (each answered from the retransmission cache when the
    /// packet is still there), from str0m's per-stream statistics, once a second.
    pub nacks_in: u64,
    /// NACKs sent to publishers for packets lost on their way in.
    pub nacks_out: u64,
    /// Full timeouts handed to connections: one per due deadline other than the pacer's
    /// (reports, feedback, NACKs, ICE, DTLS).
    pub rtc_timeouts: u64,
    /// Pacing-only timeouts (str0m's `release_queued`): one per connection written to in a
    /// batch, and one per deadline a connection's pacer asked for (the next packet of a paced
    /// burst or a probe, padding). With `rtc_timeouts`, a measure of the pacing cost per
    /// forwarded packet.
    pub rtc_releases: u64,
    /// RTP datagrams dropped unread because they waited in the socket longer than
    /// `limits.max_input_age` (the worker could not keep up).
    pub datagrams_stale: u64,
    /// RTP packets handed to other engines sharing a room (one per packet per engine).
    pub relayed_out: u64,
    /// RTP packets of mirror tracks received from other engines.
    pub relayed_in: u64,
    /// Messages for other engines that their queue could not take (counted by the caller).
    pub shard_dropped: u64,
}

/// A histogram with fixed bucket bounds, cheap enough to fill on the hot path: one comparison per
/// bound and two additions, no allocation. Each bucket also sums its samples, so that the samples
/// of a bucket can be handed on as that many samples of their mean (see `io::metrics`), keeping
/// both the bucket counts and the total sum exact.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    /// Samples above the previous bound and at or below [`Histogram::BOUNDS`]`[i]`; the last
    /// bucket holds those above every bound.
    pub counts: [u64; Histogram::BOUNDS.len() + 1],
    /// The sum of the samples of each bucket, in seconds.
    pub sums: [f64; Histogram::BOUNDS.len() + 1],
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
        self.sums[bucket] += v * count as f64;
    }

    /// The sum of all samples, in seconds.
    pub fn sum(&self) -> f64 {
        self.sums.iter().sum()
    }

    /// Samples at or below each bound, then all of them.
    pub fn cumulative(&self) -> [u64; Histogram::BOUNDS.len() + 1] {
        let mut out = self.counts;
        for i in 1..out.len() {
            out[i] += out[i - 1];
        }
        out
    }

    /// Each non-empty bucket as (mean of its samples, number of samples). The mean lies within
    /// the bucket's bounds, so recording it that many times fills the same buckets.
    pub fn means(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.counts
            .iter()
            .zip(&self.sums)
            .enumerate()
            .filter(|(_, (n, _))| **n > 0)
            .map(|(i, (n, sum))| {
                let mean = sum / *n as f64;
                // Rounding must not push the mean over its bucket's upper bound.
                let mean = Self::BOUNDS.get(i).map_or(mean, |b| mean.min(*b));
                (mean, *n)
            })
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
        assert!((h.sum() - 2.002_03).abs() < 1e-9);
    }

    #[test]
    fn bucket_means_stay_in_their_buckets_and_keep_the_sum() {
        let mut h = Histogram::default();
        h.add(Duration::from_micros(300), 2);
        h.add(Duration::from_micros(500), 1);
        h.add(Duration::from_micros(20), 4);
        h.add(Duration::from_secs(1), 1);
        let means: Vec<(f64, u64)> = h.means().collect();
        assert_eq!(means.len(), 3);
        assert_eq!(means[0], (0.000_02, 4));
        let (mean, n) = means[1];
        assert_eq!(n, 3);
        assert!(mean > 0.000_25 && mean <= 0.000_5, "{mean}");
        assert_eq!(means[2], (1.0, 1));
        let total: f64 = means.iter().map(|(m, n)| m * *n as f64).sum();
        assert!((total - h.sum()).abs() < 1e-12);

        // Samples right on a bound stay there.
        let mut h = Histogram::default();
        h.add(Duration::from_micros(100), 3);
        assert_eq!(h.means().next(), Some((0.000_1, 3)));
    }
}
