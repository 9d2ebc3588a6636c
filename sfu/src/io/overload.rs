//! Overload: what a worker does when media arrives faster than it can forward it.
//!
//! A worker that falls behind leaves datagrams waiting in its socket's receive buffer, and a
//! buffer of a few MiB holds seconds of publisher input: without a guard every video would arrive
//! seconds late instead of at a lower quality. The kernel stamps each datagram as it arrives
//! (`SO_TIMESTAMPNS`), so the worker knows how long each one waited. (Linux turns stamping on
//! for the whole stack a moment after the first socket asks; datagrams read before that are
//! stamped as they are read and show no wait.)
//!
//! - **Shedding.** As CoDel does for a router queue, the worker looks at the *least* wait in each
//!   interval: a queue that never empties within [`INTERVAL`] stands, while one burst (a keyframe
//!   fanned out to hundreds of viewers) drains in the next turns. When the least wait exceeds
//!   [`TARGET`], the worker lowers its load factor, which scales every subscriber's bandwidth
//!   budget on that worker: the allocator picks lower layers, fewer frames, or pauses videos, and
//!   the worker forwards fewer packets. The first cut waits for [`STANDING_INTERVALS`] such
//!   intervals in a row. After [`RECOVERY_QUIET`] without a standing queue the
//!   factor climbs back, a step per [`RECOVERY_STEP`].
//! - **Stale input.** An RTP packet that waited longer than `limits.max_input_age` is dropped
//!   before decryption: forwarding it would only make every viewer's video later. STUN, DTLS and
//!   RTCP are always handled (they are small, and connections and feedback depend on them).

use std::time::{Duration, Instant};

/// Interval over which the least wait is taken.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// A standing queue above this is overload.
pub const TARGET: Duration = Duration::from_millis(20);
/// Consecutive intervals with a standing queue before the first cut: one interval can be a
/// single scheduling hiccup of a busy machine (the worker thread not run for 100 ms), which the
/// input age limit rides out without lowering anyone's video.
pub const STANDING_INTERVALS: u32 = 2;
/// Each interval with a standing queue multiplies the factor by this, at most once per
/// [`CUT_SPACING`].
pub const CUT: f64 = 0.7;
/// An allocation needs a frame or two to take effect before the next cut is judged.
pub const CUT_SPACING: Duration = Duration::from_millis(300);
/// The factor never goes below this: every subscriber keeps some budget.
pub const FLOOR: f64 = 0.05;
/// How long without a standing queue before the factor climbs.
pub const RECOVERY_QUIET: Duration = Duration::from_secs(3);
/// Recovery: the factor grows by [`RECOVERY_GAIN`] once per this.
pub const RECOVERY_STEP: Duration = Duration::from_secs(1);
/// Recovery gain per step.
pub const RECOVERY_GAIN: f64 = 1.25;

/// The load controller of one worker.
#[derive(Debug, Clone)]
pub struct LoadControl {
    factor: f64,
    /// Start of the current interval and the least wait seen in it.
    interval: Option<(Instant, Duration)>,
    last_cut: Option<Instant>,
    last_standing: Option<Instant>,
    last_raise: Option<Instant>,
    /// Consecutive intervals with a standing queue, up to the last complete one.
    standing_run: u32,
    /// The least wait of the last complete interval, for metrics.
    standing: Duration,
}

impl Default for LoadControl {
    fn default() -> Self {
        Self {
            factor: 1.0,
            interval: None,
            last_cut: None,
            last_standing: None,
            last_raise: None,
            standing_run: 0,
            standing: Duration::ZERO,
        }
    }
}

impl LoadControl {
    /// The current factor, 1 when the worker keeps up.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The least wait in the last complete interval.
    pub fn standing(&self) -> Duration {
        self.standing
    }

    /// A datagram read at `now` that waited `wait` in the socket. Returns the new factor when it
    /// changed.
    pub fn observe(&mut self, now: Instant, wait: Duration) -> Option<f64> {
        let changed = self.close_interval(now);
        match &mut self.interval {
            Some((_, least)) => *least = (*least).min(wait),
            None => self.interval = Some((now, wait)),
        }
        changed
    }

    /// Time passed without input (called on the worker's metrics tick): an interval that ended
    /// is judged, and an idle worker recovers. Returns the new factor when it changed.
    pub fn tick(&mut self, now: Instant) -> Option<f64> {
        let changed = self.close_interval(now);
        changed.or_else(|| self.recover(now))
    }

    fn close_interval(&mut self, now: Instant) -> Option<f64> {
        let (start, least) = self.interval?;
        if now.saturating_duration_since(start) < INTERVAL {
            return None;
        }
        self.interval = None;
        self.standing = least;
        if least > TARGET {
            self.last_standing = Some(now);
            self.standing_run = self.standing_run.saturating_add(1);
            let due = self
                .last_cut
                .is_none_or(|t| now.saturating_duration_since(t) >= CUT_SPACING);
            if due && self.standing_run >= STANDING_INTERVALS && self.factor > FLOOR {
                self.last_cut = Some(now);
                self.factor = (self.factor * CUT).max(FLOOR);
                return Some(self.factor);
            }
            return None;
        }
        self.standing_run = 0;
        self.recover(now)
    }

    fn recover(&mut self, now: Instant) -> Option<f64> {
        if self.factor >= 1.0 {
            return None;
        }
        let quiet = self
            .last_standing
            .is_none_or(|t| now.saturating_duration_since(t) >= RECOVERY_QUIET);
        let due = self
            .last_raise
            .is_none_or(|t| now.saturating_duration_since(t) >= RECOVERY_STEP);
        if !(quiet && due) {
            return None;
        }
        self.last_raise = Some(now);
        self.factor = (self.factor * RECOVERY_GAIN).min(1.0);
        Some(self.factor)
    }
}

/// How a datagram that waited in the socket is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// Handle it: not RTP, or young enough.
    Fresh,
    /// RTP older than the limit but within twice it: kept if it is audio. A call lives on its
    /// voices; a video has layers to shed and keyframes to restart from, audio has neither.
    OldUnlessAudio,
    /// RTP too old to forward whatever it carries.
    Stale,
}

/// The [`Age`] of a datagram that waited `wait` (`max_age` zero: always fresh). STUN (first
/// byte 0-3), DTLS (20-63) and RTCP (payload types 192-223, RFC 5761) are always fresh.
pub fn media_age(data: &[u8], wait: Duration, max_age: Duration) -> Age {
    if max_age.is_zero() || wait <= max_age {
        return Age::Fresh;
    }
    match data {
        [first, second, ..] if (128..=191).contains(first) && !(192..=223).contains(second) => {
            if wait <= max_age.saturating_mul(AUDIO_AGE_FACTOR) {
                Age::OldUnlessAudio
            } else {
                Age::Stale
            }
        }
        _ => Age::Fresh,
    }
}

/// Audio is forwarded up to this many times `limits.max_input_age`.
pub const AUDIO_AGE_FACTOR: u32 = 2;

/// The SSRC of an RTP packet (in the clear in SRTP).
pub fn rtp_ssrc(data: &[u8]) -> Option<u32> {
    let b = data.get(8..12)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn only_old_rtp_is_stale_and_audio_gets_twice_the_age() {
        let rtp = [0x80, 96, 0, 1];
        let rtp_marker = [0x80, 0x80 | 96, 0, 1];
        let rtcp_rr = [0x81, 201, 0, 7];
        let rtcp_twcc = [0x8f, 205, 0, 7];
        let stun = [0x00, 0x01, 0, 0];
        let dtls = [22, 0xfe, 0xfd, 0];
        use Age::*;
        let cases: &[(&[u8], u64, u64, Age)] = &[
            (&rtp, 150, 100, OldUnlessAudio),
            (&rtp_marker, 150, 100, OldUnlessAudio),
            (&rtp, 200, 100, OldUnlessAudio),
            (&rtp, 201, 100, Stale),
            (&rtp_marker, 5000, 100, Stale),
            (&rtp, 100, 100, Fresh),
            (&rtp, 99, 100, Fresh),
            (&rtp, 5000, 0, Fresh),
            (&rtcp_rr, 5000, 100, Fresh),
            (&rtcp_twcc, 5000, 100, Fresh),
            (&stun, 5000, 100, Fresh),
            (&dtls, 5000, 100, Fresh),
            (&[0x80], 5000, 100, Fresh),
            (&[], 5000, 100, Fresh),
        ];
        for (data, wait, max, age) in cases {
            assert_eq!(
                media_age(data, ms(*wait), ms(*max)),
                *age,
                "{data:?} after {wait} ms, limit {max} ms"
            );
        }
    }

    #[test]
    fn the_ssrc_is_read_from_the_clear_header() {
        let mut rtp = [0u8; 12];
        rtp[0] = 0x80;
        rtp[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        assert_eq!(rtp_ssrc(&rtp), Some(0x1234_5678));
        assert_eq!(rtp_ssrc(&rtp[..11]), None);
    }

    /// Feeds one datagram per millisecond with the given wait for `dur` ms; returns the factors
    /// as they changed.
    fn feed(lc: &mut LoadControl, t: &mut Instant, dur: u64, wait: u64) -> Vec<f64> {
        let mut out = Vec::new();
        for _ in 0..dur {
            *t += ms(1);
            if let Some(f) = lc.observe(*t, ms(wait)) {
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn a_standing_queue_lowers_the_factor_and_quiet_raises_it() {
        let mut lc = LoadControl::default();
        let mut t = Instant::now();
        // Keeping up: waits of a few ms change nothing.
        assert!(feed(&mut lc, &mut t, 2000, 3).is_empty());
        assert_eq!(lc.factor(), 1.0);

        // A standing queue of 50 ms: a cut once it stood for two intervals, then one per 300 ms,
        // not per interval (intervals close at 100, 200, ... 900 ms into it; cuts at 200, 500
        // and 800).
        let cuts = feed(&mut lc, &mut t, 950, 50);
        assert_eq!(cuts.len(), 3, "{cuts:?}");
        assert!((lc.factor() - CUT * CUT * CUT).abs() < 1e-9);
        assert_eq!(lc.standing(), ms(50));

        // Quiet again: nothing within 3 s of the last standing queue, then a step per second
        // back to 1.
        let before = lc.factor();
        assert!(feed(&mut lc, &mut t, 2500, 2).is_empty());
        assert_eq!(lc.factor(), before);
        let raises = feed(&mut lc, &mut t, 10_000, 2);
        assert_eq!(raises.last(), Some(&1.0), "{raises:?}");
        assert!(raises.windows(2).all(|w| w[1] > w[0]));
        assert!(feed(&mut lc, &mut t, 2000, 2).is_empty(), "stays at 1");
    }

    #[test]
    fn one_interval_behind_is_a_hiccup_not_overload() {
        let mut lc = LoadControl::default();
        let mut t = Instant::now();
        for _ in 0..20 {
            // The worker thread was not run for 150 ms: one interval's least wait is high.
            assert!(feed(&mut lc, &mut t, 100, 150).is_empty());
            assert!(feed(&mut lc, &mut t, 900, 2).is_empty());
        }
        assert_eq!(lc.factor(), 1.0);
    }

    #[test]
    fn a_burst_that_drains_within_the_interval_is_not_overload() {
        let mut lc = LoadControl::default();
        let mut t = Instant::now();
        // 40 ms behind after each keyframe fan-out, but the queue empties every interval.
        for _ in 0..50 {
            assert!(feed(&mut lc, &mut t, 60, 40).is_empty());
            assert!(feed(&mut lc, &mut t, 40, 1).is_empty());
        }
        assert_eq!(lc.factor(), 1.0);
    }

    #[test]
    fn the_factor_has_a_floor_and_an_idle_worker_recovers() {
        let mut lc = LoadControl::default();
        let mut t = Instant::now();
        feed(&mut lc, &mut t, 60_000, 500);
        assert_eq!(lc.factor(), FLOOR);
        // No input at all (every publisher left): the metrics tick brings it back.
        let mut raised = 0;
        for _ in 0..30 {
            t += ms(1000);
            if lc.tick(t).is_some() {
                raised += 1;
            }
        }
        assert_eq!(lc.factor(), 1.0);
        assert!(raised >= 10, "{raised} steps");
    }
}
