use std::time::{Duration, Instant};

/// How many buckets the window is kept in.
const BUCKETS: usize = 20;

/// How long each bucket is: the window is `BUCKETS` of them, one second.
const BUCKET: Duration = Duration::from_millis(50);

/// The sum of the values added over about the last second, kept in 20 buckets of 50 ms.
///
/// A value counts from the bucket of its time until that bucket is 20 buckets old: the sum
/// covers between 950 ms and one second before the latest time given. Adding a value and
/// reading the sum cost the same whatever the rate of values, and neither reads anything
/// older than the buckets themselves.
#[derive(Debug)]
pub(crate) struct WindowSum {
    buckets: [u64; BUCKETS],
    /// Bucket times are counted from here: the first time given.
    base: Option<Instant>,
    /// The number of the newest bucket, counted from `base`.
    newest: u64,
    /// The sum of the buckets.
    total: u64,
}

impl Default for WindowSum {
    fn default() -> Self {
        Self {
            buckets: [0; BUCKETS],
            base: None,
            newest: 0,
            total: 0,
        }
    }
}

impl WindowSum {
    /// Add `v` at time `t`. A time before the latest one given counts in its own bucket while
    /// that is in the window, and not at all after.
    pub fn push(&mut self, t: Instant, v: u64) {
        let n = self.bucket_of(t);
        self.advance(n);
        if n + (BUCKETS as u64) <= self.newest {
            return;
        }
        self.buckets[n as usize % BUCKETS] += v;
        self.total += v;
    }

    /// The sum over the window ending at `now` (or at the latest time given, if later).
    pub fn sum(&mut self, now: Instant) -> u64 {
        let n = self.bucket_of(now);
        self.advance(n);
        self.total
    }

    fn bucket_of(&mut self, t: Instant) -> u64 {
        let base = *self.base.get_or_insert(t);
        let d = t.saturating_duration_since(base);
        let per_sec = (Duration::from_secs(1).as_millis() / BUCKET.as_millis()) as u64;
        d.as_secs() * per_sec + u64::from(d.subsec_millis()) / BUCKET.as_millis() as u64
    }

    /// Make bucket `n` the newest: empty the buckets that leave the window.
    fn advance(&mut self, n: u64) {
        if n <= self.newest {
            return;
        }
        let gone = (n - self.newest).min(BUCKETS as u64);
        for i in 1..=gone {
            let b = &mut self.buckets[(self.newest + i) as usize % BUCKETS];
            self.total -= *b;
            *b = 0;
        }
        self.newest = n;
    }
}

#[allow(clippy::unchecked_time_subtraction)]
#[cfg(test)]
mod test {
    use std::collections::VecDeque;
    use std::time::{Duration, Instant};

    use super::WindowSum;

    #[test]
    fn values_leave_the_sum_after_a_second() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut w = WindowSum::default();
        assert_eq!(w.sum(t0), 0);
        w.push(ms(0), 22);
        w.push(ms(10), 5);
        w.push(ms(700), 33);
        assert_eq!(w.sum(ms(700)), 60);
        // The first bucket (0 to 50 ms) stays until the window has moved a second past it.
        assert_eq!(w.sum(ms(999)), 60);
        assert_eq!(w.sum(ms(1000)), 33);
        assert_eq!(w.sum(ms(1699)), 33);
        assert_eq!(w.sum(ms(1700)), 0);
        // A gap of many seconds empties everything.
        w.push(ms(1800), 7);
        assert_eq!(w.sum(ms(60_000)), 0);
        w.push(ms(60_000), 9);
        assert_eq!(w.sum(ms(60_000)), 9);
    }

    #[test]
    fn a_late_value_counts_in_its_own_bucket() {
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        let mut w = WindowSum::default();
        w.push(t0, 1);
        w.push(ms(1000), 2);
        w.push(ms(1990), 4);
        assert_eq!(w.sum(ms(1990)), 6);
        // Too old for the window: not counted.
        w.push(ms(900), 8);
        assert_eq!(w.sum(ms(1990)), 6);
        // Inside it: counted, and gone with its bucket.
        w.push(ms(1500), 16);
        assert_eq!(w.sum(ms(1990)), 22);
        assert_eq!(w.sum(ms(2000)), 20);
        assert_eq!(w.sum(ms(2500)), 4);
        // An earlier time than any before counts in the first bucket, while that is in the
        // window.
        let mut w = WindowSum::default();
        w.push(ms(1000), 1);
        w.push(t0, 2);
        assert_eq!(w.sum(ms(1000)), 3);
        assert_eq!(w.sum(ms(2000)), 0);
    }

    /// The buckets against an exact sliding window of one second, with values every few
    /// milliseconds: they agree but for what is between 950 ms and one second old.
    #[test]
    fn it_follows_an_exact_window() {
        let t0 = Instant::now();
        let mut w = WindowSum::default();
        let mut exact: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut state = 12345_u64;
        let mut t = t0;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            t += Duration::from_micros(state >> 54);
            let v = (state >> 40) & 0xfff;
            w.push(t, v);
            exact.push_back((t, v));
            while exact
                .front()
                .is_some_and(|(at, _)| t - *at >= Duration::from_secs(1))
            {
                exact.pop_front();
            }
            let newer: u64 = exact
                .iter()
                .filter(|(at, _)| t - *at < Duration::from_millis(950))
                .map(|(_, v)| v)
                .sum();
            let all: u64 = exact.iter().map(|(_, v)| v).sum();
            let got = w.sum(t);
            assert!(newer <= got && got <= all, "{newer} <= {got} <= {all}");
        }
    }
}
