//! Per (subscriber, track) forwarding decisions.
//!
//! A [`Forwarder`] is a small pure state machine: given an incoming packet's numbers and whether it
//! starts a keyframe, it returns a [`Verdict`]: send with these outgoing numbers, or drop for a
//! [`DropReason`]. It never sends anything itself.

pub mod av1;
pub mod picture_id;
pub mod rewrite;
pub mod select;
pub mod svc;
pub mod vp8;
pub mod vp9;

use std::time::Instant;

use rewrite::{SeqRewriter, SeqVerdict, TsRewriter};
use str0m::media::MediaKind;

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
    /// The track is muted.
    Muted,
    /// Another simulcast layer than the one this subscriber gets.
    OtherLayer,
    /// Nothing is wanted: hidden by the subscriber, or paused for bandwidth.
    Paused,
    /// The subscriber's connection has no codec for the packet's payload type.
    Codec,
    /// The packet's payload descriptor cannot be read (counted for every subscriber).
    Malformed,
}

impl DropReason {
    /// All reasons, for counters.
    pub const ALL: [DropReason; 9] = [
        DropReason::WaitingForKeyframe,
        DropReason::TooOld,
        DropReason::NotConnected,
        DropReason::NoStream,
        DropReason::Muted,
        DropReason::OtherLayer,
        DropReason::Paused,
        DropReason::Codec,
        DropReason::Malformed,
    ];

    /// A stable name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::WaitingForKeyframe => "waiting_for_keyframe",
            DropReason::TooOld => "too_old",
            DropReason::NotConnected => "not_connected",
            DropReason::NoStream => "no_stream",
            DropReason::Muted => "muted",
            DropReason::OtherLayer => "other_layer",
            DropReason::Paused => "paused",
            DropReason::Codec => "codec",
            DropReason::Malformed => "malformed",
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
    /// When it arrived.
    pub at: Instant,
}

/// Forwarding state for one track towards one subscriber.
#[derive(Debug, Clone)]
pub struct Forwarder {
    kind: MediaKind,
    /// RTP clock rate of the track (ticks per second).
    clock_rate: u32,
    seq: SeqRewriter,
    ts: TsRewriter,
    /// Waiting for a packet to (re)start on.
    waiting: bool,
    /// Arrival time of the last packet sent.
    last_sent_at: Option<Instant>,
}

impl Forwarder {
    /// A forwarder whose outgoing sequence numbers start at `first_seq`.
    pub fn new(kind: MediaKind, first_seq: u16, clock_rate: u32) -> Self {
        Forwarder {
            kind,
            clock_rate,
            seq: SeqRewriter::new(first_seq),
            ts: TsRewriter::default(),
            waiting: true,
            last_sent_at: None,
        }
    }

    /// Whether the forwarder is waiting for a packet (audio) or keyframe (video) to start on.
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Stop, and start again on the next packet (audio) or keyframe (video) as if it continued
    /// the stream: sequence numbers go on without a gap and timestamps advance by the time that
    /// passed. Used when the source was interrupted (mute) or changes (layer switch).
    pub fn restart(&mut self) {
        self.waiting = true;
    }

    /// A packet of the current source is left out on purpose (a spatial layer above the one
    /// this subscriber gets, in the same stream): later packets move down so that no hole is
    /// left. Returns whether that worked (see [`SeqRewriter::skip`]).
    pub fn skip(&mut self, seq: u64) -> bool {
        self.waiting || self.seq.skip(seq)
    }

    /// Decide about one packet.
    pub fn handle_packet(&mut self, p: PacketInfo) -> Verdict {
        if self.waiting {
            let can_start = match self.kind {
                MediaKind::Audio => true,
                MediaKind::Video => p.keyframe_start,
            };
            if !can_start {
                return Verdict::Drop {
                    reason: DropReason::WaitingForKeyframe,
                    keyframe_needed: true,
                };
            }
            let elapsed = self
                .last_sent_at
                .map_or(0, |t| p.at.saturating_duration_since(t).as_micros() as u64);
            let step = (elapsed * self.clock_rate as u64 / 1_000_000).min(u32::MAX as u64 / 4);
            self.seq.start(p.seq);
            self.ts.start(p.ts, step as u32);
            self.waiting = false;
        }
        match self.seq.rewrite(p.seq) {
            SeqVerdict::Send(seq) => {
                self.last_sent_at = Some(p.at);
                Verdict::Send {
                    seq,
                    ts: self.ts.rewrite(p.ts),
                }
            }
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

    use std::time::Duration;

    fn pkt(seq: u64, ts: u32, key: bool) -> PacketInfo {
        PacketInfo {
            seq,
            ts,
            keyframe_start: key,
            at: base(),
        }
    }

    fn base() -> Instant {
        use std::sync::OnceLock;
        static T: OnceLock<Instant> = OnceLock::new();
        *T.get_or_init(Instant::now)
    }

    #[test]
    fn video_waits_for_a_keyframe_then_is_gap_free() {
        let mut f = Forwarder::new(MediaKind::Video, 1, 90_000);
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
        let mut f = Forwarder::new(MediaKind::Video, 1, 90_000);
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
    fn restart_continues_numbering_and_advances_time() {
        let mut f = Forwarder::new(MediaKind::Video, 1, 90_000);
        assert_eq!(
            f.handle_packet(pkt(100, 9000, true)),
            Verdict::Send { seq: 1, ts: 9000 }
        );
        f.restart();
        assert!(f.is_waiting());
        // Half a second later, a new source (or the same one after a mute) with other numbers.
        let later = PacketInfo {
            seq: 5000,
            ts: 1,
            keyframe_start: false,
            at: base() + Duration::from_millis(500),
        };
        assert!(matches!(f.handle_packet(later), Verdict::Drop { .. }));
        let key = PacketInfo {
            keyframe_start: true,
            ..later
        };
        assert_eq!(
            f.handle_packet(key),
            Verdict::Send {
                seq: 2,
                ts: 9000 + 45_000
            }
        );
    }

    #[test]
    fn audio_starts_at_once() {
        let mut f = Forwarder::new(MediaKind::Audio, 7, 48_000);
        assert_eq!(
            f.handle_packet(pkt(1000, 48_000, false)),
            Verdict::Send { seq: 7, ts: 48_000 }
        );
    }
}
