//! Rooms and published tracks: who publishes what, and who receives it.

use std::time::{Duration, Instant};

use str0m::media::Mid;

use signal::protocol::{TrackInfo, TrackKind};

use super::participant::ParticipantKey;

/// Internal track key: unique within an engine, never reused.
pub type TrackKey = u64;

/// Keyframe requests to one publisher track are sent at most this often; requests from several
/// subscribers inside the window are merged into one.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// The video codec a track carries, as far as keyframe detection cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    Vp8,
    /// H.264 (RFC 6184).
    H264,
    /// Anything else: forwarded, keyframes not detected (starts at once).
    Other,
}

/// A track published into a room.
#[derive(Debug)]
pub struct Track {
    /// Public id (unique in the room).
    pub id: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// Who publishes it.
    pub publisher: ParticipantKey,
    /// The publisher's public id (the `a=msid` stream id on subscribers' connections).
    pub publisher_id: String,
    /// The m-line it arrives on at the publisher.
    pub mid: Mid,
    /// Who receives it (keys of participants with a [`Subscription`](super::participant::Subscription)).
    pub subscribers: Vec<ParticipantKey>,
    /// The last keyframe request sent upstream.
    pub last_keyframe_request: Option<Instant>,
    /// Codec, learnt from the first packet.
    pub codec: Option<VideoCodec>,
    /// Not forwarded while set.
    pub muted: bool,
}

impl Track {
    /// Whether a keyframe request may go upstream now; records it if so.
    pub fn keyframe_request_due(&mut self, now: Instant) -> bool {
        let due = self
            .last_keyframe_request
            .is_none_or(|t| now.saturating_duration_since(t) >= KEYFRAME_REQUEST_INTERVAL);
        if due {
            self.last_keyframe_request = Some(now);
        }
        due
    }

    /// RTP clock rate: 48 kHz for Opus, 90 kHz for video.
    pub fn clock_rate(&self) -> u32 {
        match self.kind {
            TrackKind::Audio => 48_000,
            TrackKind::Video => 90_000,
        }
    }

    /// The track as the protocol describes it.
    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            id: self.id.clone(),
            kind: self.kind,
            muted: self.muted,
        }
    }
}

/// A room: its participants and tracks, in join/publish order.
#[derive(Debug, Default)]
pub struct Room {
    /// Participants, in join order.
    pub participants: Vec<ParticipantKey>,
    /// Tracks, in publish order.
    pub tracks: Vec<TrackKey>,
}
