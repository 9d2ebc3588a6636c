//! Caps on what clients may hold and how fast they may talk, and a throttle for the log lines
//! that refusals cause.
//!
//! - [`IpLimiter`]: a count of open things (connections, sockets that have not joined) with a
//!   global cap and a cap per client address. A slot is an [`IpPermit`]; dropping it frees it.
//! - [`MessageRate`]: the token bucket a WebSocket session reads its client's messages through.
//! - [`LogThrottle`]: at most one log line per period, with the number of events it stands for.
//!
//! All three are small and pure apart from their lock: they take `now` and return a decision.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Which cap refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The global cap.
    Total,
    /// The cap of the client's address.
    PerIp,
}

impl Refused {
    /// `total` or `per_ip`: the `reason` label of the refusal metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerIp => "per_ip",
        }
    }
}

/// Open slots, at most `max_total` in all and `max_per_ip` per client address.
///
/// IPv6 clients are counted by their /64 prefix, the block one subscriber usually gets, so that
/// a client cannot step around its cap by changing the low bits of its address. IPv4-mapped IPv6
/// addresses count as the IPv4 address. Cheap to clone: clones share the counts.
#[derive(Debug, Clone)]
pub struct IpLimiter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_total: usize,
    max_per_ip: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl IpLimiter {
    /// A limiter with these caps. A cap of 0 refuses everything.
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        IpLimiter {
            inner: Arc::new(Inner {
                max_total,
                max_per_ip,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Takes a slot for `ip`, or says which cap is reached.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<IpPermit, Refused> {
        let key = bucket(ip);
        let mut counts = self.inner.lock();
        if counts.total >= self.inner.max_total {
            return Err(Refused::Total);
        }
        let n = counts.per_ip.entry(key).or_insert(0);
        if *n >= self.inner.max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        counts.total += 1;
        Ok(IpPermit {
            inner: Arc::clone(&self.inner),
            key,
        })
    }

    /// Slots held now.
    pub fn open(&self) -> usize {
        self.inner.lock().total
    }

    /// Slots held now by `ip` (by its /64 for IPv6).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.inner
            .lock()
            .per_ip
            .get(&bucket(ip))
            .copied()
            .unwrap_or(0)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        // The counts stay consistent even if a holder panicked: every change is one statement.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The address a client is counted under.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
            }
        },
    }
}

/// One slot of an [`IpLimiter`], freed when dropped.
#[derive(Debug)]
pub struct IpPermit {
    inner: Arc<Inner>,
    key: IpAddr,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut counts = self.inner.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_ip.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.key);
            }
        }
    }
}

/// How many refused messages beyond the sustained rate, in units of the burst, make a client a
/// flooder whose socket is closed.
pub const FLOOD_BURSTS: u32 = 10;

/// How often a rate-limited client is told so, at most.
pub const RATE_ERROR_INTERVAL: Duration = Duration::from_secs(1);

/// What to do with one client message; see [`MessageRate::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Handle it.
    Accept,
    /// Drop it; `reply` says whether to send `rate_limited` (at most once per
    /// [`RATE_ERROR_INTERVAL`]).
    Refuse {
        /// Send the client an error now.
        reply: bool,
    },
    /// The client kept sending far above the rate: close the socket.
    Close,
}

/// A token bucket over one client's messages: `burst` at once, `rate` per second sustained.
///
/// Refused messages fill a second, leaky bucket that drains at `rate`; when it holds more than
/// [`FLOOD_BURSTS`] × `burst` the client is closed. A client sending at twice the rate is only
/// throttled; one sending at ten times the rate is closed after about `10 × burst / (8 × rate)`
/// seconds past its burst: with 50/s and a burst of 100, a client sending 500/s is closed after
/// about 2.7 s.
#[derive(Debug, Clone)]
pub struct MessageRate {
    rate: f64,
    burst: f64,
    tokens: f64,
    overflow: f64,
    last: Instant,
    last_error: Option<Instant>,
}

impl MessageRate {
    /// A full bucket at `now`. `rate` and `burst` must be at least 1.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        MessageRate {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            overflow: 0.0,
            last: now,
            last_error: None,
        }
    }

    /// Decides about one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> RateVerdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.overflow = (self.overflow - elapsed * self.rate).max(0.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return RateVerdict::Accept;
        }
        self.overflow += 1.0;
        if self.overflow > f64::from(FLOOD_BURSTS) * self.burst {
            return RateVerdict::Close;
        }
        let reply = self
            .last_error
            .is_none_or(|t| now.saturating_duration_since(t) >= RATE_ERROR_INTERVAL);
        if reply {
            self.last_error = Some(now);
        }
        RateVerdict::Refuse { reply }
    }
}

/// At most one log line per `period` for a kind of event that an attacker can cause at will.
#[derive(Debug)]
pub struct LogThrottle {
    period: Duration,
    state: Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogThrottle {
    /// A throttle letting one line through per `period`.
    pub const fn new(period: Duration) -> Self {
        LogThrottle {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one event at `now`. `Some(n)` when a line is due: `n` events since the last line,
    /// this one included.
    pub fn hit(&self, now: std::time::Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (last, count) = &mut *state;
        *count += 1;
        match last {
            Some(t) if now.saturating_duration_since(*t) < self.period => None,
            _ => {
                *last = Some(now);
                Some(std::mem::take(count))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_hold_and_dropping_a_permit_frees_its_slot() {
        let l = IpLimiter::new(3, 2);
        let a1 = l.try_acquire(ip("10.0.0.1")).unwrap();
        let _a2 = l.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(l.try_acquire(ip("10.0.0.1")).unwrap_err(), Refused::PerIp);
        let _b1 = l.try_acquire(ip("10.0.0.2")).unwrap();
        assert_eq!(l.try_acquire(ip("10.0.0.3")).unwrap_err(), Refused::Total);
        assert_eq!((l.open(), l.open_from(ip("10.0.0.1"))), (3, 2));
        drop(a1);
        assert_eq!((l.open(), l.open_from(ip("10.0.0.1"))), (2, 1));
        let _a3 = l.try_acquire(ip("10.0.0.1")).unwrap();
        assert_eq!(
            IpLimiter::new(0, 5).try_acquire(ip("::1")).unwrap_err(),
            Refused::Total
        );
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let l = IpLimiter::new(10, 1);
        let _a = l.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            Refused::PerIp
        );
        let _b = l.try_acquire(ip("2001:db8:1:3::1")).unwrap();
        let _c = l.try_acquire(ip("192.0.2.1")).unwrap();
        assert_eq!(
            l.try_acquire(ip("::ffff:192.0.2.1")).unwrap_err(),
            Refused::PerIp
        );
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = MessageRate::new(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(r.check(t0), RateVerdict::Accept);
        }
        assert_eq!(r.check(t0), RateVerdict::Refuse { reply: true });
        assert_eq!(r.check(t0), RateVerdict::Refuse { reply: false });
        // 100 ms later one token is back; the error reply waits for its second.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(r.check(t1), RateVerdict::Accept);
        assert_eq!(r.check(t1), RateVerdict::Refuse { reply: false });
        let t2 = t0 + Duration::from_secs(1);
        assert_eq!(r.check(t2), RateVerdict::Accept);
        // Sustained at the rate: always accepted.
        for i in 1..=100 {
            assert_eq!(
                r.check(t2 + Duration::from_millis(100 * i)),
                RateVerdict::Accept
            );
        }
    }

    #[test]
    fn twice_the_rate_is_throttled_ten_times_is_closed() {
        let (rate, burst) = (50, 100);
        let run = |factor: u32, seconds: u32| {
            let t0 = Instant::now();
            let mut r = MessageRate::new(rate, burst, t0);
            let step = Duration::from_secs(1) / (rate * factor);
            for i in 0..rate * factor * seconds {
                if r.check(t0 + step * i) == RateVerdict::Close {
                    return Some(step * i);
                }
            }
            None
        };
        assert_eq!(run(2, 30), None);
        let closed = run(10, 10).expect("a flood is closed");
        assert!(
            closed > Duration::from_secs(2) && closed < Duration::from_secs(4),
            "{closed:?}"
        );
    }

    #[test]
    fn the_log_throttle_counts_what_it_held_back() {
        let t = LogThrottle::new(Duration::from_secs(10));
        let t0 = std::time::Instant::now();
        assert_eq!(t.hit(t0), Some(1));
        assert_eq!(t.hit(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(2)), None);
        assert_eq!(t.hit(t0 + Duration::from_secs(10)), Some(3));
    }
}
