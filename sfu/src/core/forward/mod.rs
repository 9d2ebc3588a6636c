//! Per (subscriber, track) forwarding decisions.
//!
//! A [`Forwarder`] is a small pure state machine: given an incoming packet's numbers and whether it
//! starts a keyframe, it returns a [`Verdict`]: send with these outgoing numbers, or drop for a
//! [`DropReason`]. It never sends anything itself.

pub mod rewrite;

use rewrite::{SeqRewriter, SeqVerdict, TsRewriter};
use signal::protocol::TrackKind;

/// Why a packet was not forwarded to a subscriber. Every drop is counted by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A video subscription starts on a keyframe; packets before it cannot be decoded.
    WaitingForKeyframe,
    /// The packet is older than the point where the subscription (re)started.
    TooOld,
    /// The subscriber's connection is not up yet (ICE/DTLS), so nothing can be sent.
    NotConnected,
    /// The subscriber's peer connection has no send stream for the track yet (negotiating).
    NoStream,
}

impl DropReason {
    /// All reasons, for counters.
    pub const ALL: [DropReason; 4] = [
        DropReason::WaitingForKeyframe,
        DropReason::TooOld,
        DropReason::NotConnected,
        DropReason::NoStream,
    ];

    /// A stable name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::WaitingForKeyframe => "waiting_for_keyframe",
            DropReason::TooOld => "too_old",
            DropReason::NotConnected => "not_connected",
            DropReason::NoStream => "no_stream",
        }
    }

    /// Index into [`DropReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What to do with one packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it with these outgoing numbers.
    Send {
        /// Outgoing extended sequence number.
        seq: u64,
        /// Outgoing RTP timestamp.
        ts: u32,
    },
    /// Do not send it; the forwarder asks for a keyframe if `keyframe_needed`.
    Drop {
        /// Why.
        reason: DropReason,
        /// Whether the publisher should be asked for a keyframe (the caller throttles).
        keyframe_needed: bool,
    },
}

/// The numbers of one incoming packet that the forwarder looks at.
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo {
    /// Extended sequence number.
    pub seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    /// The packet is the first of a keyframe (decoding can start here).
    pub keyframe_start: bool,
}

/// Forwarding state for one track towards one subscriber.
#[derive(Debug, Clone)]
pub struct Forwarder {
    kind: TrackKind,
    seq: SeqRewriter,
    ts: TsRewriter,
}

impl Forwarder {
    /// A forwarder whose outgoing sequence numbers start at `first_seq`.
    pub fn new(kind: TrackKind, first_seq: u16) -> Self {
        Forwarder {
            kind,
            seq: SeqRewriter::new(first_seq),
            ts: TsRewriter::default(),
        }
    }

    /// Whether the forwarder is still waiting for its first packet (audio) or keyframe (video).
    pub fn is_waiting(&self) -> bool {
        !self.seq.is_started()
    }

    /// Decide about one packet.
    pub fn handle_packet(&mut self, p: PacketInfo) -> Verdict {
        if !self.seq.is_started() {
            let can_start = match self.kind {
                TrackKind::Audio => true,
                TrackKind::Video => p.keyframe_start,
            };
            if !can_start {
                return Verdict::Drop {
                    reason: DropReason::WaitingForKeyframe,
                    keyframe_needed: true,
                };
            }
            self.seq.start(p.seq);
            self.ts.start(p.ts, 1);
        }
        match self.seq.rewrite(p.seq) {
            SeqVerdict::Send(seq) => Verdict::Send {
                seq,
                ts: self.ts.rewrite(p.ts),
            },
            SeqVerdict::TooOld => Verdict::Drop {
                reason: DropReason::TooOld,
                keyframe_needed: false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u64, ts: u32, key: bool) -> PacketInfo {
        PacketInfo {
            seq,
            ts,
            keyframe_start: key,
        }
    }

    #[test]
    fn video_waits_for_a_keyframe_then_is_gap_free() {
        let mut f = Forwarder::new(TrackKind::Video, 1);
        let table = [
            (pkt(10, 100, false), None),
            (pkt(11, 100, false), None),
            (pkt(12, 200, true), Some((1, 200))),
            (pkt(13, 200, false), Some((2, 200))),
            (pkt(11, 100, false), None),
            (pkt(14, 300, false), Some((3, 300))),
        ];
        for (i, (p, want)) in table.into_iter().enumerate() {
            let got = f.handle_packet(p);
            match want {
                Some((seq, ts)) => assert_eq!(got, Verdict::Send { seq, ts }, "row {i}"),
                None => assert!(matches!(got, Verdict::Drop { .. }), "row {i}: {got:?}"),
            }
        }
        assert!(!f.is_waiting());
    }

    #[test]
    fn waiting_asks_for_a_keyframe_and_too_old_does_not() {
        let mut f = Forwarder::new(TrackKind::Video, 1);
        assert_eq!(
            f.handle_packet(pkt(5, 0, false)),
            Verdict::Drop {
                reason: DropReason::WaitingForKeyframe,
                keyframe_needed: true
            }
        );
        f.handle_packet(pkt(6, 0, true));
        assert_eq!(
            f.handle_packet(pkt(5, 0, false)),
            Verdict::Drop {
                reason: DropReason::TooOld,
                keyframe_needed: false
            }
        );
    }

    #[test]
    fn audio_starts_at_once() {
        let mut f = Forwarder::new(TrackKind::Audio, 7);
        assert_eq!(
            f.handle_packet(pkt(1000, 48_000, false)),
            Verdict::Send { seq: 7, ts: 48_000 }
        );
    }
}
