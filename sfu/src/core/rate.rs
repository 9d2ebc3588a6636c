//! A sliding-window bitrate meter.

use std::time::{Duration, Instant};

const BUCKETS: usize = 4;
const BUCKET: Duration = Duration::from_millis(250);
/// The window the rate is averaged over.
pub const WINDOW: Duration = Duration::from_millis(250 * BUCKETS as u64);

/// Bits per second over the last second, in four 250 ms buckets.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    bytes: [u64; BUCKETS],
    /// Start of the newest bucket.
    head: Option<Instant>,
    index: usize,
    /// When the first byte was counted (the span is shorter than a second at first).
    first: Option<Instant>,
}

impl RateMeter {
    /// Count `bytes` arriving at `now`.
    pub fn add(&mut self, now: Instant, bytes: usize) {
        self.advance(now);
        self.first.get_or_insert(now);
        self.bytes[self.index] += bytes as u64;
    }

    /// The rate in bits per second at `now` (0 before anything arrived or after a second of
    /// silence): the bytes of the buckets divided by the time they actually cover (three full
    /// buckets and the running part of the newest one).
    pub fn rate(&mut self, now: Instant) -> u64 {
        self.advance(now);
        let (Some(head), Some(first)) = (self.head, self.first) else {
            return 0;
        };
        let full = BUCKET * (BUCKETS as u32 - 1) + now.saturating_duration_since(head);
        let span = full.min(now.saturating_duration_since(first)).max(BUCKET);
        let bits = self.bytes.iter().sum::<u64>() * 8;
        (bits as f64 / span.as_secs_f64()) as u64
    }

    /// Whether the meter has been counting for less than a [`WINDOW`] (since its first byte, or
    /// since a silence cleared it): its rate is then the bytes of a fraction of a second, which
    /// a keyframe at the start makes read far above the stream's rate.
    pub fn young(&self, now: Instant) -> bool {
        self.first
            .is_none_or(|f| now.saturating_duration_since(f) < WINDOW)
    }

    fn advance(&mut self, now: Instant) {
        let Some(head) = self.head else {
            self.head = Some(now);
            return;
        };
        let mut head = head;
        let mut steps = 0;
        while now.saturating_duration_since(head) >= BUCKET && steps <= BUCKETS {
            head += BUCKET;
            self.index = (self.index + 1) % BUCKETS;
            self.bytes[self.index] = 0;
            steps += 1;
        }
        if now.saturating_duration_since(head) >= BUCKET {
            // A long silence: everything was cleared; measure afresh.
            head = now;
            self.first = None;
        }
        self.head = Some(head);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_traffic_reads_steady_whatever_the_phase() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        let mut lo = u64::MAX;
        let mut hi = 0;
        for i in 0..400u64 {
            let now = t0 + Duration::from_millis(5 * i);
            m.add(now, 625); // 1 Mbit/s in 5 ms steps
            if i >= 60 {
                let r = m.rate(now);
                lo = lo.min(r);
                hi = hi.max(r);
            }
        }
        assert!(lo >= 950_000 && hi <= 1_050_000, "{lo}..{hi}");
    }

    #[test]
    fn measures_and_forgets() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        for i in 0..100 {
            m.add(t0 + Duration::from_millis(10 * i), 1250); // 1 Mbit/s
        }
        let r = m.rate(t0 + Duration::from_millis(999));
        assert!((900_000..=1_100_000).contains(&r), "{r}");
        assert_eq!(m.rate(t0 + Duration::from_secs(3)), 0);
        m.add(t0 + Duration::from_secs(60), 100);
        // A single packet after a silence: spread over one bucket.
        assert_eq!(m.rate(t0 + Duration::from_secs(60)), 3200);
    }
}
