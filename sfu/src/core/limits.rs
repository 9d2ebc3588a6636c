//! What one participant may do, and the small pure types that enforce it.
//!
//! Every limit here protects the others in a room from one participant: the messages one action
//! makes for everybody else (a published track is announced to each of them) are bounded by
//! [`ParticipantLimits::max_tracks`] per offer and by the offer rate, so that nothing one client
//! does can fill another participant's event queue. See `docs/security.md`.

use std::time::{Duration, Instant};

/// Per-participant limits of an engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParticipantLimits {
    /// Most tracks one participant publishes at a time. An offer that would go above it is
    /// refused whole (`limit_exceeded`); so is an offer that brings more new m-lines than this.
    /// Default: 8 (camera, microphone, screen and its audio leave room to spare).
    pub max_tracks: usize,
    /// Most screen shares one participant publishes at a time: tracks of source `screen`, and
    /// as many of `screen_audio`. An offer that would go above it is refused whole
    /// (`limit_exceeded`). Default: 1.
    pub max_screen_shares: usize,
    /// Offers a participant may send in a burst. Default: 10.
    pub offer_burst: f64,
    /// Offers per second a participant may send over time. Default: 1.
    pub offers_per_second: f64,
    /// Remote ICE candidates a participant may add over its session; more are refused with
    /// `limit_exceeded`. A browser sends a handful per network interface. Default: 64.
    pub max_candidates: u32,
}

impl Default for ParticipantLimits {
    fn default() -> Self {
        ParticipantLimits {
            max_tracks: 8,
            max_screen_shares: 1,
            offer_burst: 10.0,
            offers_per_second: 1.0,
            max_candidates: 64,
        }
    }
}

/// A token bucket: `burst` tokens at most, refilled at `rate` per second. Time only moves
/// forward; an earlier `now` than the last one refills nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    rate: f64,
    at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: f64, rate: f64) -> Self {
        TokenBucket {
            tokens: burst,
            burst,
            rate,
            at: None,
        }
    }

    fn refill(&mut self, now: Instant) {
        if let Some(at) = self.at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        self.at = Some(self.at.map_or(now, |at| at.max(now)));
    }

    /// Whether `n` tokens are there at `now`; takes nothing.
    pub fn has(&mut self, now: Instant, n: f64) -> bool {
        self.refill(now);
        self.tokens >= n
    }

    /// Takes `n` tokens if there are that many; false (and nothing taken) otherwise.
    pub fn take(&mut self, now: Instant, n: f64) -> bool {
        if !self.has(now, n) {
            return false;
        }
        self.tokens -= n;
        true
    }
}

/// Refused client input (SDPs, candidates) is logged at most once per this interval per engine:
/// a client sending thousands of bad messages a second costs a line every ten seconds.
pub const BAD_INPUT_LOG_INTERVAL: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = TokenBucket::new(3.0, 2.0);
        let cases: &[(Duration, bool)] = &[
            (ms(0), true),
            (ms(0), true),
            (ms(0), true),
            (ms(0), false),   // burst spent
            (ms(400), false), // 0.8 tokens
            (ms(500), true),  // 1.0
            (ms(500), false),
            (ms(10_000), true), // refilled to the burst, not beyond
            (ms(10_000), true),
            (ms(10_000), true),
            (ms(10_000), false),
            (ms(9_000), false), // time going back refills nothing
        ];
        for (i, &(at, allowed)) in cases.iter().enumerate() {
            assert_eq!(b.take(t0 + at, 1.0), allowed, "case {i} at {at:?}");
        }
    }
}
