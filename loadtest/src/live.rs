//! What all bots share while they run: a clock in microseconds since the UNIX epoch and the
//! counters the timeline and the live view are sampled from.
//!
//! Bots add to these in batches (every [`FLUSH_INTERVAL`]), never per packet, so the shared cache
//! lines stay cold on the media path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

use crate::stats::{latency_histogram, record_latency};

/// How often a bot hands its local counts to [`Live`].
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Microseconds since the UNIX epoch, read from a monotonic clock anchored once.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    anchor: Instant,
    anchor_unix_us: u64,
}

impl Clock {
    /// Anchors the clock now.
    pub fn new() -> Self {
        let anchor = Instant::now();
        let anchor_unix_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Clock {
            anchor,
            anchor_unix_us,
        }
    }

    /// `at` in microseconds since the UNIX epoch.
    pub fn unix_us(&self, at: Instant) -> u64 {
        self.anchor_unix_us + at.saturating_duration_since(self.anchor).as_micros() as u64
    }

    /// Now, in microseconds since the UNIX epoch.
    pub fn now_us(&self) -> u64 {
        self.unix_us(Instant::now())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Counters that only grow, shared by all bots.
#[derive(Debug, Default)]
pub struct Live {
    /// Bots whose task started.
    pub started: AtomicU64,
    /// Bots that got `joined`.
    pub joined: AtomicU64,
    /// Bots whose ICE and DTLS are up.
    pub connected: AtomicU64,
    /// Bots that gave up with an error.
    pub failed: AtomicU64,
    /// Bots that finished.
    pub done: AtomicU64,
    /// Tracks that received at least one packet.
    pub tracks_receiving: AtomicU64,
    /// RTP packets received by all bots.
    pub rx_packets: AtomicU64,
    /// RTP payload bytes received.
    pub rx_bytes: AtomicU64,
    /// RTP packets written by publishers.
    pub tx_packets: AtomicU64,
    /// RTP payload bytes written.
    pub tx_bytes: AtomicU64,
    /// Lost packets (from sequence numbers); may go down when late packets arrive.
    pub lost: AtomicI64,
    /// Keyframes written.
    pub keyframes: AtomicU64,
    /// Keyframe requests (PLI/FIR) received by publishers.
    pub keyframe_requests: AtomicU64,
    /// Frames a publisher could not send in time (the bot process fell behind).
    pub late_frames: AtomicU64,
    /// Datagrams the bots' sockets refused.
    pub send_errors: AtomicU64,
    /// Datagrams sent by all bots (RTP, RTCP, STUN, DTLS).
    pub datagrams_out: AtomicU64,
    /// Datagrams received by all bots.
    pub datagrams_in: AtomicU64,
    /// Datagrams the bots' connections refused.
    pub input_errors: AtomicU64,
    /// Latencies of the current timeline interval, in µs.
    pub interval_latency: Mutex<IntervalLatency>,
}

/// The latency histogram of the current sampling interval.
#[derive(Debug)]
pub struct IntervalLatency {
    /// The samples since the last [`Live::take_interval`].
    pub hist: Histogram<u64>,
}

impl Default for IntervalLatency {
    fn default() -> Self {
        IntervalLatency {
            hist: latency_histogram(),
        }
    }
}

/// One bot's counts since its last flush.
#[derive(Debug, Default)]
pub struct Pending {
    /// See [`Live::rx_packets`].
    pub rx_packets: u64,
    /// See [`Live::rx_bytes`].
    pub rx_bytes: u64,
    /// See [`Live::tx_packets`].
    pub tx_packets: u64,
    /// See [`Live::tx_bytes`].
    pub tx_bytes: u64,
    /// See [`Live::lost`].
    pub lost: i64,
    /// See [`Live::keyframes`].
    pub keyframes: u64,
    /// See [`Live::late_frames`].
    pub late_frames: u64,
    /// See [`Live::send_errors`].
    pub send_errors: u64,
    /// See [`Live::datagrams_out`].
    pub datagrams_out: u64,
    /// See [`Live::datagrams_in`].
    pub datagrams_in: u64,
    /// See [`Live::input_errors`].
    pub input_errors: u64,
    /// Latency samples in µs; the allocation is reused.
    pub latencies: Vec<u64>,
}

impl Live {
    /// Adds a bot's pending counts and clears them.
    pub fn flush(&self, p: &mut Pending) {
        let add = |a: &AtomicU64, v: &mut u64| {
            if *v > 0 {
                a.fetch_add(*v, Relaxed);
                *v = 0;
            }
        };
        add(&self.rx_packets, &mut p.rx_packets);
        add(&self.rx_bytes, &mut p.rx_bytes);
        add(&self.tx_packets, &mut p.tx_packets);
        add(&self.tx_bytes, &mut p.tx_bytes);
        add(&self.keyframes, &mut p.keyframes);
        add(&self.late_frames, &mut p.late_frames);
        add(&self.send_errors, &mut p.send_errors);
        add(&self.datagrams_out, &mut p.datagrams_out);
        add(&self.datagrams_in, &mut p.datagrams_in);
        add(&self.input_errors, &mut p.input_errors);
        if p.lost != 0 {
            self.lost.fetch_add(p.lost, Relaxed);
            p.lost = 0;
        }
        if !p.latencies.is_empty() {
            let mut l = self.interval_latency.lock();
            for us in p.latencies.drain(..) {
                record_latency(&mut l.hist, us);
            }
        }
    }

    /// The latency histogram of the interval that ends now; a new one starts.
    pub fn take_interval(&self) -> Histogram<u64> {
        let mut l = self.interval_latency.lock();
        std::mem::replace(&mut l.hist, latency_histogram())
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            started: self.started.load(Relaxed),
            joined: self.joined.load(Relaxed),
            connected: self.connected.load(Relaxed),
            failed: self.failed.load(Relaxed),
            done: self.done.load(Relaxed),
            tracks_receiving: self.tracks_receiving.load(Relaxed),
            rx_packets: self.rx_packets.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_packets: self.tx_packets.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            lost: self.lost.load(Relaxed),
            keyframes: self.keyframes.load(Relaxed),
            keyframe_requests: self.keyframe_requests.load(Relaxed),
            late_frames: self.late_frames.load(Relaxed),
            send_errors: self.send_errors.load(Relaxed),
            datagrams_out: self.datagrams_out.load(Relaxed),
            datagrams_in: self.datagrams_in.load(Relaxed),
            input_errors: self.input_errors.load(Relaxed),
        }
    }
}

/// The counters of [`Live`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Snapshot {
    pub started: u64,
    pub joined: u64,
    pub connected: u64,
    pub failed: u64,
    pub done: u64,
    pub tracks_receiving: u64,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub lost: i64,
    pub keyframes: u64,
    pub keyframe_requests: u64,
    pub late_frames: u64,
    pub send_errors: u64,
    pub datagrams_out: u64,
    pub datagrams_in: u64,
    pub input_errors: u64,
}
