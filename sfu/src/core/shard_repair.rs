//! Loss repair for media frames between two nodes.
//!
//! Between nodes the engines' packets cross in numbered frames on an unordered data channel that
//! does not retransmit, so that one lost frame holds up nothing behind it (on a reliable, ordered
//! channel every track of the room would wait for its retransmission). The receiving side
//! ([`RepairReceiver`]) notices the numbers that are missing, drops duplicates, and asks for the
//! missing frames again (a NACK) a few times while they can still be of use. The sending side
//! ([`RepairSender`]) keeps the frames it sent for a short while, by age and by bytes, and sends
//! those asked for again. The packets in a repaired frame reach the engine late and out of order,
//! which its rewriters handle as they do the publisher's own retransmissions.
//!
//! Frame numbers are `u32` and compared with wrap-around. Nothing here reads a clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a sent frame is kept for a repeat: a packet older than this is of no use to a
/// viewer (it would be later than a jitter buffer waits).
pub const KEEP_FOR: Duration = Duration::from_millis(500);
/// How many times a missing frame is asked for.
pub const ASKS: u8 = 3;
/// The pause between two asks for the same frame.
pub const ASK_AGAIN_AFTER: Duration = Duration::from_millis(40);
/// Frame numbers the receiver remembers (for duplicates); a frame older than this is dropped.
pub const WINDOW: u32 = 1024;
/// The longest run of missing frames asked for: a longer outage loses what is older.
pub const MAX_MISSING: usize = 256;

/// The sending side: numbers frames and keeps copies of recent ones.
#[derive(Debug)]
pub struct RepairSender {
    next: u32,
    /// Kept frames, consecutive numbers, oldest first.
    kept: VecDeque<Kept>,
    bytes: usize,
    max_bytes: usize,
    /// Buffers of dropped copies, reused.
    spare: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Kept {
    number: u32,
    at: Instant,
    frame: Vec<u8>,
}

impl RepairSender {
    /// A sender that keeps at most `max_bytes` of frames.
    pub fn new(max_bytes: usize) -> Self {
        RepairSender {
            next: 0,
            kept: VecDeque::new(),
            bytes: 0,
            max_bytes,
            spare: Vec::new(),
        }
    }

    /// A new frame, numbered: `write` appends it (given its number) to an empty buffer that is
    /// kept; returns the frame to send.
    pub fn frame(&mut self, now: Instant, write: impl FnOnce(u32, &mut Vec<u8>)) -> &[u8] {
        let number = self.next;
        self.next = self.next.wrapping_add(1);
        let mut frame = self.spare.pop().unwrap_or_default();
        frame.clear();
        write(number, &mut frame);
        self.bytes += frame.len();
        self.kept.push_back(Kept {
            number,
            at: now,
            frame,
        });
        // Keep the new one whatever its size; drop the oldest beyond the limits.
        while self.kept.len() > 1
            && (self.bytes > self.max_bytes
                || self
                    .kept
                    .front()
                    .is_some_and(|k| now.duration_since(k.at) > KEEP_FOR))
        {
            if let Some(old) = self.kept.pop_front() {
                self.bytes -= old.frame.len();
                if self.spare.len() < 64 {
                    self.spare.push(old.frame);
                }
            }
        }
        &self.kept.back().expect("just pushed").frame
    }

    /// Frame `number` as it was sent, if it is still kept and young enough to be of use.
    pub fn get(&self, now: Instant, number: u32) -> Option<&[u8]> {
        let first = self.kept.front()?.number;
        let i = number.wrapping_sub(first) as usize;
        let k = self.kept.get(i)?;
        debug_assert_eq!(k.number, number);
        (now.duration_since(k.at) <= KEEP_FOR).then_some(k.frame.as_slice())
    }

    /// Bytes kept.
    pub fn kept_bytes(&self) -> usize {
        self.bytes
    }
}

/// The receiving side: which numbers arrived, which are missing and when to ask for them.
#[derive(Debug)]
pub struct RepairReceiver {
    /// The highest number that arrived.
    highest: Option<u32>,
    /// One bit per number in `(highest - WINDOW, highest]`, at `number % WINDOW`: arrived.
    seen: Vec<u64>,
    /// Numbers still missing, in order.
    missing: VecDeque<Missing>,
}

#[derive(Debug)]
struct Missing {
    number: u32,
    next_ask: Instant,
    asks: u8,
}

impl Default for RepairReceiver {
    fn default() -> Self {
        RepairReceiver {
            highest: None,
            seen: vec![0; (WINDOW / 64) as usize],
            missing: VecDeque::new(),
        }
    }
}

impl RepairReceiver {
    /// Frame `number` arrived: true if it is new (hand it on), false if it is a duplicate or
    /// older than anything remembered.
    pub fn arrived(&mut self, now: Instant, number: u32) -> bool {
        let Some(highest) = self.highest else {
            self.highest = Some(number);
            self.set(number);
            return true;
        };
        let ahead = number.wrapping_sub(highest) as i32;
        if ahead > 0 {
            // Numbers between the last and this one are missing (at most the latest
            // `MAX_MISSING`; older ones of a long outage are given up).
            let ahead = ahead as u32;
            if ahead >= WINDOW {
                self.seen.fill(0);
            } else {
                for n in 1..=ahead {
                    self.clear(highest.wrapping_add(n));
                }
            }
            let gap = (ahead - 1).min(MAX_MISSING as u32);
            for n in (ahead - gap)..ahead {
                self.missing.push_back(Missing {
                    number: highest.wrapping_add(n),
                    next_ask: now,
                    asks: 0,
                });
            }
            while self.missing.len() > MAX_MISSING {
                self.missing.pop_front();
            }
            self.highest = Some(number);
            self.set(number);
            return true;
        }
        if ahead.unsigned_abs() >= WINDOW || self.is_set(number) {
            return false;
        }
        self.set(number);
        if let Some(i) = self.missing.iter().position(|m| m.number == number) {
            self.missing.remove(i);
        }
        true
    }

    /// Appends to `out` the numbers to ask for now (each at most [`ASKS`] times, then given up).
    pub fn poll_nacks(&mut self, now: Instant, out: &mut Vec<u32>) {
        for m in &mut self.missing {
            if m.next_ask <= now {
                out.push(m.number);
                m.asks += 1;
                m.next_ask = now + ASK_AGAIN_AFTER;
            }
        }
        self.missing.retain(|m| m.asks < ASKS);
    }

    /// When [`RepairReceiver::poll_nacks`] has something next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.missing.iter().map(|m| m.next_ask).min()
    }

    /// Numbers missing now (asked for or about to be).
    pub fn missing(&self) -> usize {
        self.missing.len()
    }

    fn bit(number: u32) -> (usize, u64) {
        let i = number % WINDOW;
        ((i / 64) as usize, 1 << (i % 64))
    }

    fn set(&mut self, number: u32) {
        let (w, b) = Self::bit(number);
        self.seen[w] |= b;
    }

    fn clear(&mut self, number: u32) {
        let (w, b) = Self::bit(number);
        self.seen[w] &= !b;
    }

    fn is_set(&self, number: u32) -> bool {
        let (w, b) = Self::bit(number);
        self.seen[w] & b != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    fn nacks(r: &mut RepairReceiver, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        r.poll_nacks(now, &mut out);
        out
    }

    #[test]
    fn frames_are_numbered_kept_and_found_again() {
        let t0 = Instant::now();
        let mut s = RepairSender::new(1 << 20);
        for i in 0..5u8 {
            let f = s.frame(t0, |n, buf| {
                buf.extend_from_slice(&n.to_be_bytes());
                buf.push(i);
            });
            assert_eq!(f, [0, 0, 0, i, i]);
        }
        assert_eq!(s.get(t0, 3), Some(&[0, 0, 0, 3, 3][..]));
        assert_eq!(s.get(t0, 5), None, "not sent yet");
        assert_eq!(s.get(ms(t0, 501), 3), None, "too old to be of use");
    }

    #[test]
    fn the_sender_keeps_a_bounded_number_of_bytes_and_a_bounded_age() {
        let t0 = Instant::now();
        let mut s = RepairSender::new(1000);
        for _ in 0..30 {
            s.frame(t0, |_, buf| buf.extend_from_slice(&[0; 100]));
        }
        assert_eq!(s.kept_bytes(), 1000);
        assert_eq!(s.get(t0, 19), None, "dropped for bytes");
        assert!(s.get(t0, 20).is_some());
        // Age: a frame sent later drops those older than KEEP_FOR.
        s.frame(ms(t0, 600), |_, buf| buf.push(1));
        assert_eq!(s.kept_bytes(), 1);
        assert!(s.get(ms(t0, 600), 30).is_some());
        assert_eq!(s.get(ms(t0, 600), 29), None);
        // A frame bigger than the limit is still kept (alone).
        s.frame(ms(t0, 600), |_, buf| buf.extend_from_slice(&[0; 2000]));
        assert!(s.get(ms(t0, 600), 31).is_some());
    }

    #[test]
    fn a_gap_is_asked_for_at_once_then_again_then_given_up() {
        let t0 = Instant::now();
        let mut r = RepairReceiver::default();
        assert!(r.arrived(t0, 0));
        assert!(r.arrived(t0, 1));
        assert_eq!(nacks(&mut r, t0), Vec::<u32>::new());
        assert!(r.arrived(t0, 4), "2 and 3 are missing");
        assert_eq!(nacks(&mut r, t0), [2, 3]);
        assert_eq!(
            nacks(&mut r, ms(t0, 10)),
            Vec::<u32>::new(),
            "asked already"
        );
        assert_eq!(r.poll_timeout(), Some(ms(t0, 40)));
        assert!(r.arrived(ms(t0, 20), 3), "the repeat of 3");
        assert!(!r.arrived(ms(t0, 21), 3), "a duplicate");
        assert_eq!(nacks(&mut r, ms(t0, 40)), [2]);
        assert_eq!(nacks(&mut r, ms(t0, 80)), [2]);
        assert_eq!(r.poll_timeout(), None, "asked three times: given up");
        assert_eq!(nacks(&mut r, ms(t0, 200)), Vec::<u32>::new());
        // Late anyway: still new, handed on once.
        assert!(r.arrived(ms(t0, 200), 2));
        assert!(!r.arrived(ms(t0, 200), 2));
    }

    #[test]
    fn reordering_is_not_loss_and_duplicates_are_dropped() {
        let t0 = Instant::now();
        let mut r = RepairReceiver::default();
        for n in [10, 12, 11, 13, 13, 12] {
            r.arrived(t0, n);
        }
        // 11 was seen missing when 12 came, then arrived before anyone asked.
        assert_eq!(nacks(&mut r, t0), Vec::<u32>::new());
        let fresh: Vec<bool> = [14, 14, 10].iter().map(|&n| r.arrived(t0, n)).collect();
        assert_eq!(fresh, [true, false, false]);
    }

    #[test]
    fn numbers_wrap_around() {
        let t0 = Instant::now();
        let mut r = RepairReceiver::default();
        assert!(r.arrived(t0, u32::MAX - 1));
        assert!(r.arrived(t0, 1), "u32::MAX and 0 missing");
        assert_eq!(nacks(&mut r, t0), [u32::MAX, 0]);
        assert!(r.arrived(t0, 0));
        assert!(!r.arrived(t0, u32::MAX - 1), "seen");

        let mut s = RepairSender::new(1 << 20);
        s.next = u32::MAX;
        s.frame(t0, |n, b| b.extend_from_slice(&n.to_be_bytes()));
        s.frame(t0, |n, b| b.extend_from_slice(&n.to_be_bytes()));
        assert_eq!(s.get(t0, 0), Some(&[0, 0, 0, 0][..]));
        assert_eq!(s.get(t0, u32::MAX), Some(&[255, 255, 255, 255][..]));
    }

    #[test]
    fn an_outage_asks_for_the_latest_frames_only_and_old_ones_are_dropped() {
        let t0 = Instant::now();
        let mut r = RepairReceiver::default();
        r.arrived(t0, 0);
        r.arrived(t0, 5000);
        let asked = nacks(&mut r, t0);
        assert_eq!(asked.len(), MAX_MISSING);
        assert_eq!(asked.first(), Some(&(5000 - MAX_MISSING as u32)));
        assert_eq!(asked.last(), Some(&4999));
        assert!(!r.arrived(t0, 100), "older than the window");
        assert!(r.arrived(t0, 4999));
    }
}
