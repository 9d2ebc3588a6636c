//! Sequence number and timestamp rewriting for one outgoing stream.
//!
//! A subscriber sees one continuous RTP stream per track, whatever the server does upstream: it may
//! join mid-stream, skip packets while waiting for a keyframe, or (with simulcast) switch between
//! source streams whose sequence numbers and timestamps have nothing in common. [`SeqRewriter`] and
//! [`TsRewriter`] keep the outgoing numbering gap-free and monotonic across all of that.

/// Maps incoming extended sequence numbers onto a gap-free outgoing space.
///
/// Call [`SeqRewriter::start`] at the first packet of a new source (or after a switch), then
/// [`SeqRewriter::rewrite`] for every packet forwarded and [`SeqRewriter::skip`] for a packet that is
/// dropped on purpose after the start, so that the hole it leaves is closed. A packet that
/// arrives late (behind the highest one seen) still gets the number it would have had in order:
/// the rewriter remembers the last [`SKIP_HISTORY`] skips.
#[derive(Debug, Clone)]
pub struct SeqRewriter {
    /// `out = in + delta` (wrapping in u64, which is exact for the values RTP produces).
    delta: u64,
    /// The first incoming sequence number of the current source; older packets are not forwarded.
    start_in: u64,
    /// Highest incoming sequence number seen since the start.
    highest_in: Option<u64>,
    /// Highest outgoing sequence number produced so far (across sources).
    highest_out: u64,
    started: bool,
    /// The incoming numbers skipped since the start, the last [`SKIP_HISTORY`] of them (a ring,
    /// in increasing order from `skips % SKIP_HISTORY`).
    skipped: [u64; SKIP_HISTORY],
    /// How many were skipped since the start.
    skips: usize,
}

/// Skips remembered for late packets. A late packet older than all of them when more were
/// skipped cannot be numbered any more and is dropped as too old.
pub const SKIP_HISTORY: usize = 64;

/// What [`SeqRewriter::rewrite`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Send with this outgoing sequence number.
    Send(u64),
    /// The packet predates the current source's start (a late retransmission from before a switch,
    /// or a packet already skipped): it has no place in the outgoing stream.
    TooOld,
}

impl SeqRewriter {
    /// A rewriter whose first outgoing sequence number is `first_out`. Keep it below 2^15 so that the
    /// SRTP rollover counter starts at zero, as receivers expect.
    pub fn new(first_out: u16) -> Self {
        SeqRewriter {
            delta: 0,
            start_in: 0,
            highest_in: None,
            highest_out: (first_out as u64).wrapping_sub(1),
            started: false,
            skipped: [0; SKIP_HISTORY],
            skips: 0,
        }
    }

    /// Whether [`SeqRewriter::start`] was called.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// Begin (or switch to) a source whose next packet has sequence number `seq`. That packet will
    /// get the outgoing number right after the highest one sent so far.
    pub fn start(&mut self, seq: u64) {
        let next_out = self.highest_out.wrapping_add(1);
        self.delta = next_out.wrapping_sub(seq);
        self.start_in = seq;
        self.highest_in = None;
        self.started = true;
        self.skips = 0;
    }

    /// The outgoing number for an incoming packet of the current source.
    pub fn rewrite(&mut self, seq: u64) -> SeqVerdict {
        if !self.started || seq < self.start_in {
            return SeqVerdict::TooOld;
        }
        let mut out = seq.wrapping_add(self.delta);
        if self.skips > 0 && self.highest_in.is_some_and(|h| seq <= h) {
            // Late: undo the skips that came after it.
            let known = self.skips.min(SKIP_HISTORY);
            let remembered = &self.skipped[..known];
            if remembered.contains(&seq) {
                return SeqVerdict::TooOld;
            }
            let oldest = remembered.iter().copied().min().unwrap_or(0);
            if self.skips > SKIP_HISTORY && seq < oldest {
                return SeqVerdict::TooOld;
            }
            let later = remembered.iter().filter(|s| **s > seq).count() as u64;
            out = out.wrapping_add(later);
        }
        if self.highest_in.is_none_or(|h| seq > h) {
            self.highest_in = Some(seq);
        }
        if out > self.highest_out {
            self.highest_out = out;
        }
        SeqVerdict::Send(out)
    }

    /// The newest packet `seq` is dropped on purpose: shift later packets down so no gap appears.
    ///
    /// Only the packet right after the highest one seen can be skipped without a trace. Any other
    /// leaves a gap that the receiver will NACK in vain. Returns whether the skip closed the hole.
    pub fn skip(&mut self, seq: u64) -> bool {
        if !self.started || seq < self.start_in {
            return true;
        }
        let next = self.highest_in.map_or(self.start_in, |h| h + 1);
        if seq == next {
            // Everything after `seq` moves down by one; `seq` itself is never sent.
            self.delta = self.delta.wrapping_sub(1);
            self.highest_in = Some(seq);
            self.skipped[self.skips % SKIP_HISTORY] = seq;
            self.skips += 1;
            true
        } else {
            // Skipping past a hole would hand the hole's packets, if they came late, numbers
            // already used.
            false
        }
    }

    /// The highest outgoing sequence number so far.
    pub fn highest_out(&self) -> u64 {
        self.highest_out
    }
}

/// Maps incoming RTP timestamps onto a monotonic outgoing timeline.
#[derive(Debug, Clone, Default)]
pub struct TsRewriter {
    delta: u32,
    last_out: Option<u32>,
}

impl TsRewriter {
    /// Begin (or switch to) a source whose next packet has timestamp `ts`. The first source keeps its
    /// timestamps; after a switch the new source continues `min_step` ticks after the last timestamp
    /// sent (pass the time elapsed since then, in clock ticks, and at least one tick).
    pub fn start(&mut self, ts: u32, min_step: u32) {
        match self.last_out {
            None => self.delta = 0,
            Some(last) => {
                let target = last.wrapping_add(min_step.max(1));
                self.delta = target.wrapping_sub(ts);
            }
        }
    }

    /// The outgoing timestamp for an incoming one.
    pub fn rewrite(&mut self, ts: u32) -> u32 {
        let out = ts.wrapping_add(self.delta);
        match self.last_out {
            // Compare in wrapping (serial number) arithmetic.
            Some(last) if out.wrapping_sub(last) > u32::MAX / 2 => {}
            _ => self.last_out = Some(out),
        }
        out
    }

    /// The last (highest) outgoing timestamp.
    pub fn last_out(&self) -> Option<u32> {
        self.last_out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a table test: an incoming packet, and whether it is forwarded or skipped.
    enum Step {
        Start(u64),
        Fwd(u64, SeqVerdict),
        Skip(u64),
    }
    use Step::*;

    fn run(first_out: u16, steps: &[Step]) {
        let mut r = SeqRewriter::new(first_out);
        for (i, s) in steps.iter().enumerate() {
            match s {
                Start(seq) => r.start(*seq),
                Fwd(seq, want) => assert_eq!(r.rewrite(*seq), *want, "step {i}"),
                Skip(seq) => assert!(r.skip(*seq), "step {i}"),
            }
        }
    }

    #[test]
    fn late_subscriber_starts_at_first_out() {
        run(
            100,
            &[
                Start(70_000),
                Fwd(70_000, SeqVerdict::Send(100)),
                Fwd(70_001, SeqVerdict::Send(101)),
                Fwd(69_999, SeqVerdict::TooOld),
                Fwd(70_002, SeqVerdict::Send(102)),
            ],
        );
    }

    #[test]
    fn upstream_loss_keeps_its_gap_and_reordering_keeps_order() {
        run(
            10,
            &[
                Start(500),
                Fwd(500, SeqVerdict::Send(10)),
                Fwd(502, SeqVerdict::Send(12)),
                Fwd(501, SeqVerdict::Send(11)),
                Fwd(503, SeqVerdict::Send(13)),
            ],
        );
    }

    #[test]
    fn skipped_packets_leave_no_gap() {
        run(
            1,
            &[
                Start(40),
                Fwd(40, SeqVerdict::Send(1)),
                Skip(41),
                Skip(42),
                Fwd(43, SeqVerdict::Send(2)),
                Fwd(44, SeqVerdict::Send(3)),
            ],
        );
    }

    #[test]
    fn switching_source_continues_the_sequence() {
        run(
            1000,
            &[
                Start(5),
                Fwd(5, SeqVerdict::Send(1000)),
                Fwd(6, SeqVerdict::Send(1001)),
                // A different source with unrelated numbers.
                Start(60_000),
                Fwd(60_000, SeqVerdict::Send(1002)),
                Fwd(60_001, SeqVerdict::Send(1003)),
                // A straggler from the old source is below the new start.
                Fwd(7, SeqVerdict::TooOld),
                // Switch back.
                Start(9),
                Fwd(9, SeqVerdict::Send(1004)),
            ],
        );
    }

    #[test]
    fn nothing_is_sent_before_start() {
        let mut r = SeqRewriter::new(1);
        assert_eq!(r.rewrite(1), SeqVerdict::TooOld);
        assert!(!r.is_started());
    }

    #[test]
    fn out_of_order_skip_is_reported() {
        let mut r = SeqRewriter::new(1);
        r.start(10);
        assert_eq!(r.rewrite(10), SeqVerdict::Send(1));
        assert_eq!(r.rewrite(12), SeqVerdict::Send(3));
        // 11 arrives late and is dropped: the hole cannot be closed any more.
        assert!(!r.skip(11));
    }

    #[test]
    fn late_packets_get_the_numbers_they_would_have_had_in_order() {
        let mut r = SeqRewriter::new(1);
        r.start(10);
        assert_eq!(r.rewrite(10), SeqVerdict::Send(1));
        // 11 is lost upstream for now; 12 is sent, 13 and 15 are skipped.
        assert_eq!(r.rewrite(12), SeqVerdict::Send(3));
        assert!(r.skip(13));
        assert_eq!(r.rewrite(14), SeqVerdict::Send(4));
        assert!(r.skip(15));
        assert_eq!(r.rewrite(16), SeqVerdict::Send(5));
        // The retransmission of 11 fills its hole, a late copy of 14 keeps its number, and a
        // skipped packet coming again stays out.
        assert_eq!(r.rewrite(11), SeqVerdict::Send(2));
        assert_eq!(r.rewrite(14), SeqVerdict::Send(4));
        assert_eq!(r.rewrite(15), SeqVerdict::TooOld);
        assert_eq!(r.rewrite(17), SeqVerdict::Send(6));
    }

    #[test]
    fn late_packets_older_than_the_skip_history_are_too_old() {
        let mut r = SeqRewriter::new(1);
        r.start(0);
        assert_eq!(r.rewrite(0), SeqVerdict::Send(1));
        // 1 is lost; then every other packet is skipped, more often than remembered.
        let mut seq = 2;
        let mut out = 3;
        for _ in 0..SKIP_HISTORY + 1 {
            assert_eq!(r.rewrite(seq), SeqVerdict::Send(out));
            assert!(r.skip(seq + 1));
            seq += 2;
            out += 1;
        }
        assert_eq!(r.rewrite(1), SeqVerdict::TooOld);
        // A late packet within the history is still numbered.
        assert_eq!(r.rewrite(seq - 2), SeqVerdict::Send(out - 1));
    }

    #[test]
    fn timestamps_pass_through_then_continue_after_switch() {
        let mut t = TsRewriter::default();
        t.start(1_000_000, 0);
        assert_eq!(t.rewrite(1_000_000), 1_000_000);
        assert_eq!(t.rewrite(1_003_000), 1_003_000);
        // New source at an unrelated timeline; 3000 ticks (one frame at 30 fps) later.
        t.start(7, 3000);
        assert_eq!(t.rewrite(7), 1_006_000);
        assert_eq!(t.rewrite(3007), 1_009_000);
        // A reordered older packet does not move last_out backwards.
        assert_eq!(t.rewrite(1507), 1_007_500);
        assert_eq!(t.last_out(), Some(1_009_000));
    }

    #[test]
    fn timestamps_wrap() {
        let mut t = TsRewriter::default();
        t.start(u32::MAX - 10, 0);
        assert_eq!(t.rewrite(u32::MAX - 10), u32::MAX - 10);
        t.start(0, 20);
        assert_eq!(t.rewrite(0), 9);
        assert_eq!(t.last_out(), Some(9));
    }
}
