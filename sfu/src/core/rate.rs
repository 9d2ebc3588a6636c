//! A sliding-window bitrate meter.

use std::time::{Duration, Instant};

const BUCKETS: usize = 4;
const BUCKET: Duration = Duration::from_millis(250);

/// Bits per second over the last second, in four 250 ms buckets.
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    bytes: [u64; BUCKETS],
    /// Start of the newest bucket.
    head: Option<Instant>,
    index: usize,
}

impl RateMeter {
    /// Count `bytes` arriving at `now`.
    pub fn add(&mut self, now: Instant, bytes: usize) {
        self.advance(now);
        self.bytes[self.index] += bytes as u64;
    }

    /// The rate in bits per second at `now` (0 before anything arrived or after a second of
    /// silence).
    pub fn rate(&mut self, now: Instant) -> u64 {
        self.advance(now);
        self.bytes.iter().sum::<u64>() * 8
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
            head = now; // a long silence: everything was cleared
        }
        self.head = Some(head);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(m.rate(t0 + Duration::from_secs(60)), 800);
    }
}
