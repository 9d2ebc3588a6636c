use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::rtp_::Bitrate;

use super::delay::BETA;

/// Time window for averaging estimate changes.
const ESTIMATE_WINDOW: Duration = Duration::from_secs(3);

type TimeBitrate = (Instant, Bitrate);

const TOLERANCE: f64 = 0.05;

/// How far below the average the newest estimate may be before it caps it: two decreases of the
/// delay controller. One decrease puts its estimate at `BETA` of the throughput the link carried,
/// so the cap is that throughput with one more decrease of margin.
const CAP_FACTOR: f64 = BETA * BETA;

/// Smooths BWE estimates by averaging over a time window.
///
/// Once the estimator is past its start-up, the average is capped at the newest estimate divided
/// by [`CAP_FACTOR`]. A sudden fall of the link's capacity is therefore told as soon as the
/// estimator sees it, not once enough lower estimates have been averaged in, while the delay
/// controller's usual sawtooth (down to `BETA` of what was carried, then up again) and the dips
/// of a thin link leave the average alone. During the start-up the acknowledged bitrate the
/// estimator backs off to is measured over the first packets only, so its falls are not trusted
/// alone.
pub struct EstimateSmoother {
    estimates: VecDeque<TimeBitrate>,
    /// When the oldest estimate leaves the window ([`ESTIMATE_WINDOW`] after it), read at every
    /// record.
    oldest_expires_at: Option<Instant>,
    /// Whether the newest estimate caps the average.
    settled: bool,
    maybe_emit: bool,
    emitted: Option<Bitrate>,
}

impl EstimateSmoother {
    pub fn new() -> Self {
        Self {
            estimates: VecDeque::new(),
            oldest_expires_at: None,
            settled: false,
            maybe_emit: false,
            emitted: None,
        }
    }

    /// Record a new estimate and update the smoothed average. `settled`: the estimator is past
    /// its start-up, so the estimate caps the average.
    pub fn record(&mut self, now: Instant, estimate: Bitrate, settled: bool) {
        if settled != self.settled {
            self.settled = settled;
            self.maybe_emit = true;
        }
        // Did value change from previous?
        let do_update = self.estimates.back().map(|b| b.1) != Some(estimate);

        if do_update {
            self.maybe_emit = true;
            self.estimates.push_back((now, estimate));
            if self.oldest_expires_at.is_none() {
                self.oldest_expires_at = Some(now + ESTIMATE_WINDOW);
            }
        }

        // Remove entries older than the window.
        while self.oldest_expires_at.is_some_and(|at| now > at) {
            // Keep last entry
            if self.estimates.len() == 1 {
                break;
            }

            self.maybe_emit = true;
            self.estimates.pop_front();
            self.oldest_expires_at = self.estimates.front().map(|(t, _)| *t + ESTIMATE_WINDOW);
        }
    }

    /// Poll for an estimate to emit. Returns Some only when there's a new value to emit.
    pub fn poll(&mut self) -> Option<Bitrate> {
        if !self.maybe_emit {
            return None;
        }

        if self.estimates.is_empty() {
            return None;
        }

        let total: f64 = self.estimates.iter().map(|b| b.1.as_f64()).sum();
        let avg = total / self.estimates.len() as f64;
        // The newest estimate is always kept (see `record`).
        let latest = self.estimates.back().map_or(avg, |b| b.1.as_f64());
        let rate: Bitrate = if self.settled {
            avg.min(latest / CAP_FACTOR)
        } else {
            avg
        }
        .into();

        // This forces emitting if we have the first ever value, or a last
        // where the rest of the window is gone (estimates stop coming).
        let force = self.estimates.len() == 1 && self.emitted != Some(rate);

        // Emit if we deviate enough from previously emitted.
        let deviate = if let Some(emitted) = self.emitted {
            !in_tolerance(emitted, rate)
        } else {
            true
        };

        self.maybe_emit = false;

        // Are we not to emit?
        if !force && !deviate {
            return None;
        }

        self.emitted = Some(rate);
        Some(rate)
    }
}

fn in_tolerance(b1: Bitrate, b2: Bitrate) -> bool {
    let min = b1 * (1.0 - TOLERANCE);
    let max = b1 * (1.0 + TOLERANCE);
    b2 > min && b2 < max
}

#[cfg(test)]
mod test {
    use super::*;

    fn kbps(k: u64) -> Bitrate {
        Bitrate::kbps(k)
    }

    /// Records `from..=to` in steps of `step` kbit/s, one every 10 ms from `t`, polling after each;
    /// returns the time after the last and every value emitted, with its time.
    fn ramp(
        s: &mut EstimateSmoother,
        mut t: Instant,
        from: u64,
        to: u64,
        step: i64,
    ) -> (Instant, Vec<(Instant, Bitrate)>) {
        let mut emitted = vec![];
        let mut k = from as i64;
        loop {
            s.record(t, kbps(k as u64), true);
            if let Some(e) = s.poll() {
                emitted.push((t, e));
            }
            t += Duration::from_millis(10);
            if k == to as i64 {
                return (t, emitted);
            }
            k += step;
        }
    }

    #[test]
    fn a_fall_of_the_link_is_told_at_once() {
        let mut s = EstimateSmoother::new();
        let start = Instant::now();
        // 1.6 s of estimates creeping up from 2.5 to 2.66 Mbit/s: 161 distinct values.
        let (t, _) = ramp(&mut s, start, 2500, 2660, 1);
        // The link falls: the estimator's next value is 700 kbit/s, then it creeps up again.
        let (_, emitted) = ramp(&mut s, t, 700, 720, 1);
        let (at, first) = emitted[0];
        assert_eq!(at, t, "told with the first low estimate");
        let cap = 700.0 / CAP_FACTOR;
        assert!(
            (first.as_f64() / 1000.0 - cap).abs() < 1.0,
            "at most what the link carried, with one decrease of margin: {first}"
        );
        // Never above the cap while the low estimates last.
        for (_, e) in &emitted {
            assert!(e.as_f64() <= 720_000.0 / CAP_FACTOR + 1.0, "{e}");
        }
    }

    #[test]
    fn during_the_start_up_a_fall_is_averaged() {
        let mut s = EstimateSmoother::new();
        let t = Instant::now();
        s.record(t, kbps(1000), false);
        assert_eq!(s.poll(), Some(kbps(1000)));
        // The first feedback backs off to 85 % of the few packets acknowledged so far.
        s.record(t + Duration::from_millis(50), kbps(88), false);
        assert_eq!(s.poll(), Some(kbps(544)), "the average, not the cap");
        // Past the start-up the same estimate caps it.
        s.record(t + Duration::from_millis(100), kbps(88), true);
        let e = s.poll().expect("told");
        assert!((e.as_f64() - 88_000.0 / CAP_FACTOR).abs() < 1.0, "{e}");
    }

    #[test]
    fn a_decrease_of_the_sawtooth_leaves_the_average_alone() {
        let mut s = EstimateSmoother::new();
        let start = Instant::now();
        let (t, emitted) = ramp(&mut s, start, 1000, 1100, 1);
        let before = emitted.last().unwrap().1;
        // The delay controller backs off to 85 % of what the link carried, which may itself be
        // a little below the estimate.
        s.record(t, kbps(800), true);
        assert_eq!(s.poll(), None, "still about {before}");
    }

    #[test]
    fn rises_are_still_averaged() {
        let mut s = EstimateSmoother::new();
        let start = Instant::now();
        let (t, _) = ramp(&mut s, start, 1000, 1000, 1);
        assert_eq!(s.poll(), None);
        s.record(t, kbps(2000), true);
        let e = s.poll().expect("a 50 % higher average is told");
        assert_eq!(e, kbps(1500), "the average of the two, not the new value");
    }
}
