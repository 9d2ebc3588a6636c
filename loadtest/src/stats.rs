//! Receiver-side measurements of one track: loss from sequence numbers, latency percentiles,
//! interarrival jitter, freezes and the simulcast layer received.
//!
//! All types take times as parameters (microseconds on one clock) and never read a clock, so they
//! are tested with tables.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::media::{layer_name, parse_vp8, Trailer, LAYER_SINGLE};

/// Sequence numbers remembered for duplicate detection.
const SEQ_WINDOW: u64 = 1024;

/// A forward jump larger than this is taken as a restart of the stream, not as loss
/// (RFC 3550 `MAX_DROPOUT`).
const MAX_DROPOUT: u64 = 3000;

/// Loss accounting from RTP sequence numbers with wrap-around, reordering and duplicates.
///
/// Sequence numbers are extended to 64 bits; a bitmap of the last [`SEQ_WINDOW`] numbers tells a
/// late packet (which repairs a counted loss) from a duplicate (which is ignored).
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    started: bool,
    /// Lowest extended sequence number seen.
    base: u64,
    /// Highest extended sequence number seen.
    max: u64,
    /// Distinct packets received.
    received: u64,
    /// Packets that arrived after a higher sequence number.
    reordered: u64,
    /// Packets received twice.
    duplicates: u64,
    /// Packets so late they fell out of the window (counted as received, never as duplicates).
    too_late: u64,
    /// Forward jumps above [`MAX_DROPOUT`], treated as restarts.
    restarts: u64,
    /// Sequence numbers received, by `ext % SEQ_WINDOW`.
    seen: [u64; (SEQ_WINDOW / 64) as usize],
}

impl SeqTracker {
    fn bit(&self, ext: u64) -> bool {
        let i = ext % SEQ_WINDOW;
        self.seen[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, ext: u64, on: bool) {
        let i = ext % SEQ_WINDOW;
        let w = &mut self.seen[(i / 64) as usize];
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }

    /// One packet with sequence number `seq`. Returns how the lost count changed (negative when a
    /// late packet filled a gap).
    pub fn push(&mut self, seq: u16) -> i64 {
        let before = self.lost() as i64;
        if !self.started {
            self.started = true;
            // Start far from zero so that packets from before the first one can be placed.
            let ext = (1u64 << 32) + u64::from(seq);
            self.base = ext;
            self.max = ext;
            self.received = 1;
            self.set(ext, true);
            return 0;
        }
        let delta = seq.wrapping_sub(self.max as u16) as i16;
        if delta > 0 {
            let d = delta as u64;
            if d > MAX_DROPOUT {
                // Restart: count nothing as lost across the jump.
                self.restarts += 1;
                self.base += d - 1;
            }
            let cleared = d.min(SEQ_WINDOW);
            for k in 1..=cleared {
                self.set(self.max + d - cleared + k, false);
            }
            self.max += d;
            self.set(self.max, true);
            self.received += 1;
        } else if delta == 0 {
            self.duplicates += 1;
        } else {
            let back = u64::from(delta.unsigned_abs());
            let ext = self.max - back;
            if back >= SEQ_WINDOW {
                self.too_late += 1;
                self.received += 1;
                if ext < self.base {
                    self.base = ext;
                }
            } else if ext < self.base {
                // Older than the first packet: the stream started earlier than we thought.
                self.base = ext;
                self.reordered += 1;
                self.received += 1;
                self.set(ext, true);
            } else if self.bit(ext) {
                self.duplicates += 1;
            } else {
                self.reordered += 1;
                self.received += 1;
                self.set(ext, true);
            }
        }
        self.lost() as i64 - before
    }

    /// Packets the sender sent between the first and the last seen, inclusive.
    pub fn expected(&self) -> u64 {
        if self.started {
            self.max - self.base + 1
        } else {
            0
        }
    }

    /// Packets never received.
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }

    /// Packets that came after a higher sequence number.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Packets that came twice.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Loss in percent of the expected packets.
    pub fn loss_pct(&self) -> f64 {
        pct(self.lost(), self.expected())
    }
}

/// `part` of `whole` in percent (0 when `whole` is 0).
pub fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A latency histogram in microseconds, 1 µs to 60 s, two significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts: 1 <= low, high >= 2 * low, sigfig <= 5.
    Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds")
}

/// Records `us` into `h`, clamped into its range.
pub fn record_latency(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, 60_000_000));
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of a microsecond histogram.
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// RFC 3550 interarrival jitter.
#[derive(Debug, Clone)]
pub struct Jitter {
    clock_hz: u64,
    /// The first arrival, µs: arrivals are converted to clock units relative to it, which keeps
    /// the product far from overflow.
    base_us: Option<u64>,
    last: Option<(u64, u32)>,
    /// Jitter in RTP clock units, scaled by 16 as in RFC 3550 A.8.
    j16: u64,
}

impl Jitter {
    /// Jitter of a stream whose RTP clock runs at `clock_hz`.
    pub fn new(clock_hz: u32) -> Self {
        Jitter {
            clock_hz: u64::from(clock_hz.max(1)),
            base_us: None,
            last: None,
            j16: 0,
        }
    }

    /// A packet with RTP timestamp `ts` arrived at `arrival_us`.
    pub fn push(&mut self, arrival_us: u64, ts: u32) {
        let base = *self.base_us.get_or_insert(arrival_us);
        let arrival = arrival_us
            .saturating_sub(base)
            .saturating_mul(self.clock_hz)
            / 1_000_000;
        if let Some((last_arrival, last_ts)) = self.last {
            let transit_delta = arrival as i64 - last_arrival as i64;
            let ts_delta = i64::from(ts.wrapping_sub(last_ts) as i32);
            let d = (transit_delta - ts_delta).unsigned_abs();
            // J += (|D| - J) / 16, kept as 16 * J in integers.
            self.j16 = self.j16 + d - ((self.j16 + 8) >> 4);
        }
        self.last = Some((arrival, ts));
    }

    /// The jitter in milliseconds.
    pub fn ms(&self) -> f64 {
        (self.j16 as f64 / 16.0) * 1000.0 / self.clock_hz as f64
    }
}

/// Freezes: gaps of more than a threshold between rendered frames, after the first frame.
#[derive(Debug, Clone)]
pub struct FreezeDetector {
    threshold_us: u64,
    last_frame_us: Option<u64>,
    /// Freezes seen.
    pub count: u64,
    /// The longest gap between frames that counted as a freeze, in µs.
    pub longest_us: u64,
    /// All frozen time, in µs.
    pub total_us: u64,
}

impl FreezeDetector {
    /// A detector for gaps above `threshold_us`.
    pub fn new(threshold_us: u64) -> Self {
        FreezeDetector {
            threshold_us,
            last_frame_us: None,
            count: 0,
            longest_us: 0,
            total_us: 0,
        }
    }

    fn gap(&mut self, now_us: u64) {
        if let Some(last) = self.last_frame_us {
            let gap = now_us.saturating_sub(last);
            if gap > self.threshold_us {
                self.count += 1;
                self.longest_us = self.longest_us.max(gap);
                self.total_us += gap;
            }
        }
    }

    /// A frame was completed at `now_us`.
    pub fn frame(&mut self, now_us: u64) {
        self.gap(now_us);
        if self.last_frame_us.is_none_or(|l| now_us > l) {
            self.last_frame_us = Some(now_us);
        }
    }

    /// The measurement ends at `end_us`: a gap still open counts.
    pub fn finish(&mut self, end_us: u64) {
        self.gap(end_us);
        self.last_frame_us = None;
    }
}

/// The kind of a received track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Audio.
    Audio,
    /// Video.
    Video,
}

/// Everything measured about one received track.
#[derive(Debug)]
pub struct TrackStats {
    /// The publisher's participant id (the `a=msid` stream id).
    pub publisher: String,
    /// The server's track id (the `a=msid` track id).
    pub track_id: String,
    /// Audio or video.
    pub kind: Kind,
    /// First and last packet, µs.
    pub first_us: u64,
    /// Last packet, µs.
    pub last_us: u64,
    /// When the measurement ended, µs.
    end_us: Option<u64>,
    /// RTP packets.
    pub packets: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Loss.
    pub seq: SeqTracker,
    /// End-to-end latency, µs.
    pub latency: Histogram<u64>,
    /// Interarrival jitter.
    pub jitter: Jitter,
    /// Freezes of rendered frames.
    pub freezes: FreezeDetector,
    /// Packets per layer: q, h, f, single.
    pub layers: [u64; 4],
    /// The layer of the last packet.
    pub last_layer: Option<u8>,
    /// How often the layer changed.
    pub layer_switches: u64,
    /// Keyframes started.
    pub keyframes: u64,
    /// Packets without a trailer (not from a load-test publisher).
    pub foreign: u64,
    /// Video packets whose VP8 descriptor is not the shape publishers write.
    pub vp8_invalid: u64,
    /// Picture ids that did not follow the previous one (loss, or a broken rewrite).
    pub picture_id_jumps: u64,
    /// When the server's offer with this track was applied (the subscription), µs.
    pub subscribed_us: Option<u64>,
    /// When the first frame was complete (its last packet arrived), µs.
    pub first_frame_us: Option<u64>,
    /// Highest frame counter seen, to count each frame once.
    last_frame: Option<u32>,
    /// The last VP8 picture id seen.
    last_picture_id: Option<u16>,
}

/// The freeze threshold: no frame for more than this.
pub const FREEZE_THRESHOLD_US: u64 = 500_000;

impl TrackStats {
    /// An empty record.
    pub fn new(publisher: String, track_id: String, kind: Kind) -> Self {
        TrackStats {
            publisher,
            track_id,
            kind,
            first_us: 0,
            last_us: 0,
            end_us: None,
            packets: 0,
            bytes: 0,
            seq: SeqTracker::default(),
            latency: latency_histogram(),
            jitter: Jitter::new(match kind {
                Kind::Audio => 48_000,
                Kind::Video => 90_000,
            }),
            freezes: FreezeDetector::new(FREEZE_THRESHOLD_US),
            layers: [0; 4],
            last_layer: None,
            layer_switches: 0,
            keyframes: 0,
            foreign: 0,
            vp8_invalid: 0,
            picture_id_jumps: 0,
            subscribed_us: None,
            first_frame_us: None,
            last_frame: None,
            last_picture_id: None,
        }
    }

    /// One packet arrived at `now_us`. Returns (lost-count change, latency in µs if measurable).
    pub fn push(
        &mut self,
        now_us: u64,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> (i64, Option<u64>) {
        if self.packets == 0 {
            self.first_us = now_us;
        }
        self.last_us = now_us;
        self.packets += 1;
        self.bytes += payload.len() as u64;
        let lost = self.seq.push(seq);
        self.jitter.push(now_us, ts);
        if self.kind == Kind::Video {
            self.check_vp8(payload);
        }
        let Some(t) = Trailer::parse(payload) else {
            self.foreign += 1;
            return (lost, None);
        };
        let latency = now_us.saturating_sub(t.sent_us);
        record_latency(&mut self.latency, latency);
        let slot = if t.layer == LAYER_SINGLE {
            3
        } else {
            usize::from(t.layer.min(2))
        };
        self.layers[slot] += 1;
        if self.last_layer.is_some_and(|l| l != t.layer) {
            self.layer_switches += 1;
        }
        self.last_layer = Some(t.layer);
        let new_frame = self.last_frame.is_none_or(|f| t.frame > f);
        if t.keyframe && t.part == 0 {
            self.keyframes += 1;
        }
        // A frame is rendered when its last packet (the marker) arrives.
        if new_frame && (marker || self.kind == Kind::Audio) {
            self.first_frame_us.get_or_insert(now_us);
            self.last_frame = Some(t.frame);
            self.freezes.frame(now_us);
        }
        (lost, Some(latency))
    }

    fn check_vp8(&mut self, payload: &[u8]) {
        let Some((pid, _, _, _)) = parse_vp8(payload) else {
            self.vp8_invalid += 1;
            return;
        };
        if let Some(last) = self.last_picture_id {
            let step = pid.wrapping_sub(last) & 0x7fff;
            // Same picture (another packet of the frame), the next one, or a late packet.
            if step > 1 && step < 0x4000 {
                self.picture_id_jumps += 1;
            }
            if step == 0 || step >= 0x4000 {
                return;
            }
        }
        self.last_picture_id = Some(pid);
    }

    /// The measurement ends at `end_us`: an open freeze counts, and the bitrate is taken up to
    /// here.
    pub fn finish(&mut self, end_us: u64) {
        if self.packets > 0 {
            self.freezes.finish(end_us);
            self.end_us = Some(end_us.max(self.last_us));
        }
    }

    /// Bitrate from the first packet to the end of the measurement (or the last packet, before
    /// [`TrackStats::finish`]), kbit/s.
    pub fn kbps(&self) -> f64 {
        let span = self
            .end_us
            .unwrap_or(self.last_us)
            .saturating_sub(self.first_us);
        if span == 0 {
            0.0
        } else {
            self.bytes as f64 * 8.0 / span as f64 * 1000.0
        }
    }

    /// The summary of this track for reports.
    pub fn report(&self, subscriber: &str) -> TrackReport {
        let names = ["q", "h", "f", "single"];
        TrackReport {
            subscriber: subscriber.to_string(),
            publisher: self.publisher.clone(),
            track_id: self.track_id.clone(),
            kind: self.kind,
            packets: self.packets,
            bytes: self.bytes,
            kbps: self.kbps(),
            expected: self.seq.expected(),
            lost: self.seq.lost(),
            loss_pct: self.seq.loss_pct(),
            reordered: self.seq.reordered(),
            duplicates: self.seq.duplicates(),
            latency: Percentiles::of(&self.latency),
            jitter_ms: self.jitter.ms(),
            freezes: self.freezes.count,
            longest_freeze_ms: self.freezes.longest_us as f64 / 1000.0,
            first_frame_ms: self
                .subscribed_us
                .zip(self.first_frame_us)
                .map(|(s, f)| f.saturating_sub(s) as f64 / 1000.0),
            frozen_ms: self.freezes.total_us as f64 / 1000.0,
            layers: names
                .iter()
                .zip(self.layers)
                .filter(|(_, n)| *n > 0)
                .map(|(name, n)| (name.to_string(), n))
                .collect(),
            last_layer: self.last_layer.map(|l| layer_name(l).to_string()),
            layer_switches: self.layer_switches,
            keyframes: self.keyframes,
            foreign_packets: self.foreign,
            vp8_invalid: self.vp8_invalid,
            picture_id_jumps: self.picture_id_jumps,
        }
    }
}

/// One received track in the report.
#[derive(Debug, Clone, Serialize)]
pub struct TrackReport {
    /// The receiving bot.
    pub subscriber: String,
    /// The publisher's participant id.
    pub publisher: String,
    /// The server's track id.
    pub track_id: String,
    /// Audio or video.
    pub kind: Kind,
    /// RTP packets received.
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Payload bitrate while packets arrived.
    pub kbps: f64,
    /// Packets expected from sequence numbers.
    pub expected: u64,
    /// Packets lost.
    pub lost: u64,
    /// Loss in percent.
    pub loss_pct: f64,
    /// Packets out of order.
    pub reordered: u64,
    /// Duplicated packets.
    pub duplicates: u64,
    /// Send-to-receive latency.
    pub latency: Percentiles,
    /// RFC 3550 jitter.
    pub jitter_ms: f64,
    /// Gaps of more than 500 ms between frames.
    pub freezes: u64,
    /// The longest such gap.
    pub longest_freeze_ms: f64,
    /// From the subscription (the server's offer with the track applied) to the first complete
    /// frame, ms; `None` when either was not seen.
    pub first_frame_ms: Option<f64>,
    /// All frozen time.
    pub frozen_ms: f64,
    /// Packets per layer (rid, or `single`).
    pub layers: Vec<(String, u64)>,
    /// The layer received last.
    pub last_layer: Option<String>,
    /// Layer changes.
    pub layer_switches: u64,
    /// Keyframes received.
    pub keyframes: u64,
    /// Packets without a load-test trailer.
    pub foreign_packets: u64,
    /// Video packets without a valid VP8 descriptor.
    pub vp8_invalid: u64,
    /// VP8 picture ids that skipped ahead.
    pub picture_id_jumps: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_from_sequence_numbers() {
        // (sequence numbers in arrival order, expected, lost, reordered, duplicates)
        let table: &[(&[u16], u64, u64, u64, u64)] = &[
            (&[], 0, 0, 0, 0),
            (&[5], 1, 0, 0, 0),
            (&[1, 2, 3, 4], 4, 0, 0, 0),
            (&[1, 2, 4, 5], 5, 1, 0, 0),
            (&[1, 3, 2, 4], 4, 0, 1, 0),
            (&[1, 2, 2, 3], 3, 0, 0, 1),
            (&[1, 3, 2, 2, 4], 4, 0, 1, 1),
            (&[65534, 65535, 0, 1], 4, 0, 0, 0),
            (&[65534, 0, 65535, 1], 4, 0, 1, 0),
            (&[65533, 1], 5, 3, 0, 0),
            (&[10, 9, 11], 3, 0, 1, 0),
            (&[0, 2, 1, 1, 5, 3], 6, 1, 2, 1),
            // A jump beyond MAX_DROPOUT is a restart, not 9000 lost packets.
            (&[1, 2, 9003, 9004], 4, 0, 0, 0),
            // 0xffff after 0 is one step back, not a jump of 65535.
            (&[0, 65535, 1], 3, 0, 1, 0),
        ];
        for (seqs, expected, lost, reordered, dups) in table {
            let mut t = SeqTracker::default();
            let mut lost_sum = 0i64;
            for s in seqs.iter() {
                lost_sum += t.push(*s);
            }
            assert_eq!(t.expected(), *expected, "expected for {seqs:?}");
            assert_eq!(t.lost(), *lost, "lost for {seqs:?}");
            assert_eq!(t.reordered(), *reordered, "reordered for {seqs:?}");
            assert_eq!(t.duplicates(), *dups, "duplicates for {seqs:?}");
            assert_eq!(lost_sum, *lost as i64, "lost deltas add up for {seqs:?}");
        }
    }

    #[test]
    fn loss_over_many_wraps_with_periodic_gaps() {
        let mut t = SeqTracker::default();
        let mut seq = 60_000u16;
        let mut sent = 0u64;
        for i in 0..200_000u32 {
            sent += 1;
            if i % 100 != 7 {
                t.push(seq);
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(t.expected(), sent);
        assert_eq!(t.lost(), 2000);
        assert!((t.loss_pct() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn latency_percentiles() {
        // (samples in µs, p50, p95, p99, max) in ms, within the histogram's 1% resolution
        let ramp: Vec<u64> = (1..=100).map(|i| i * 1000).collect();
        let table: Vec<(Vec<u64>, f64, f64, f64, f64)> = vec![
            (vec![], 0.0, 0.0, 0.0, 0.0),
            (vec![5000], 5.0, 5.0, 5.0, 5.0),
            (ramp, 50.0, 95.0, 99.0, 100.0),
            (
                [vec![2000; 90], vec![40_000; 10]].concat(),
                2.0,
                40.0,
                40.0,
                40.0,
            ),
            (vec![0, 0, 0], 0.001, 0.001, 0.001, 0.001),
        ];
        for (samples, p50, p95, p99, max) in table {
            let mut h = latency_histogram();
            for s in &samples {
                record_latency(&mut h, *s);
            }
            let p = Percentiles::of(&h);
            let close = |a: f64, b: f64| (a - b).abs() <= b * 0.011 + 1e-9;
            assert_eq!(p.count, samples.len() as u64);
            assert!(close(p.p50_ms, p50), "p50 {} vs {p50}", p.p50_ms);
            assert!(close(p.p95_ms, p95), "p95 {} vs {p95}", p.p95_ms);
            assert!(close(p.p99_ms, p99), "p99 {} vs {p99}", p.p99_ms);
            assert!(close(p.max_ms, max), "max {} vs {max}", p.max_ms);
        }
    }

    #[test]
    fn freeze_detection() {
        // (frame times in ms, end in ms, freezes, longest ms, total ms)
        let table: &[(&[u64], u64, u64, u64, u64)] = &[
            (&[], 10_000, 0, 0, 0),
            (&[0, 33, 66, 100], 120, 0, 0, 0),
            (&[0, 500, 1000], 1000, 0, 0, 0),
            (&[0, 501], 501, 1, 501, 501),
            (&[0, 100, 900, 1000, 3000], 3010, 2, 2000, 2800),
            // Nothing after the last frame until the end: a freeze.
            (&[0, 100], 2100, 1, 2000, 2000),
            // A late first frame is not a freeze.
            (&[5000, 5033], 5050, 0, 0, 0),
        ];
        for (frames, end, count, longest, total) in table {
            let mut f = FreezeDetector::new(FREEZE_THRESHOLD_US);
            for t in frames.iter() {
                f.frame(t * 1000);
            }
            f.finish(end * 1000);
            assert_eq!(f.count, *count, "count for {frames:?}");
            assert_eq!(f.longest_us, longest * 1000, "longest for {frames:?}");
            assert_eq!(f.total_us, total * 1000, "total for {frames:?}");
        }
    }

    #[test]
    fn jitter_of_a_steady_and_a_bursty_stream() {
        let mut steady = Jitter::new(90_000);
        for i in 0..100u64 {
            steady.push(i * 33_333, (i * 3000) as u32);
        }
        // Arrival times as they really come: microseconds since 1970.
        let epoch = 1_700_000_000_000_000u64;
        let mut audio = Jitter::new(48_000);
        for i in 0..500u64 {
            audio.push(epoch + i * 20_000, (i * 960) as u32);
        }
        assert!(audio.ms() < 0.1, "audio {}", audio.ms());
        assert!(steady.ms() < 0.1, "steady {}", steady.ms());
        let mut bursty = Jitter::new(90_000);
        for i in 0..1000u64 {
            let late = if i % 2 == 0 { 0 } else { 20_000 };
            bursty.push(i * 33_333 + late, (i * 3000) as u32);
        }
        // Every transit difference is 20 ms: J converges to 20 ms.
        assert!((bursty.ms() - 20.0).abs() < 0.5, "bursty {}", bursty.ms());
    }

    #[test]
    fn track_stats_measure_layers_frames_and_latency() {
        use crate::media::{write_vp8_packet, Vp8State};
        let mut st = Vp8State::new(1, 1);
        let mut t = TrackStats::new("pub".into(), "pub-1".into(), Kind::Video);
        let mut buf = Vec::new();
        let mut seq = 100u16;
        for frame in 0..10u32 {
            let f = st.next_frame(frame == 0);
            let layer = if frame < 5 { 0 } else { 2 };
            for part in 0..2u8 {
                let trailer = Trailer {
                    sent_us: u64::from(frame) * 40_000,
                    frame,
                    layer,
                    part,
                    parts: 2,
                    keyframe: frame == 0,
                };
                write_vp8_packet(&mut buf, &f, (320, 180), part == 0, 300, &trailer);
                let now = u64::from(frame) * 40_000 + 3_000;
                t.push(now, seq, frame * 3600, part == 1, &buf);
                seq = seq.wrapping_add(1);
            }
        }
        let r = t.report("sub");
        assert_eq!(r.packets, 20);
        assert_eq!(r.lost, 0);
        assert_eq!(r.keyframes, 1);
        assert_eq!(r.layer_switches, 1);
        assert_eq!(r.last_layer.as_deref(), Some("f"));
        assert_eq!(r.layers, vec![("q".into(), 10), ("f".into(), 10)]);
        assert!((r.latency.p50_ms - 3.0).abs() < 0.05);
        assert_eq!(r.freezes, 0);
        assert_eq!((r.vp8_invalid, r.picture_id_jumps), (0, 0));
        // 20 packets of 326 bytes between 3 ms and 363 ms, then nothing until 1 s.
        assert!(
            (r.kbps - 20.0 * 326.0 * 8.0 / 360.0).abs() < 0.5,
            "{}",
            r.kbps
        );
        t.finish(1_003_000);
        let r = t.report("sub");
        assert!(
            (r.kbps - 20.0 * 326.0 * 8.0 / 1000.0).abs() < 0.5,
            "{}",
            r.kbps
        );
        assert_eq!(r.freezes, 1, "the silence until the end is a freeze");
    }
}
