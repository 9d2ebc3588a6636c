//! What the engine tells the world, in its own words: [`Event`]s, read with
//! [`Engine::poll_event`](super::Engine::poll_event), and the [`Error`]s that refuse a
//! participant's request.
//!
//! The engine does not know the wire protocol. Events say what happened in a room (a participant
//! joined, a track was published, who speaks) or what one participant must be told (an offer, the
//! state of a stream it receives); the I/O layer turns each one into protocol messages for the
//! right recipients, webhooks and metrics, in one place (`io::wire`).

use str0m::media::MediaKind;

pub use super::quality::Quality;

/// Something that happened, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A participant was admitted into `room`. `others` are the participants who were already
    /// there, with their tracks, in join order; `speakers` who is speaking now.
    Joined {
        /// The room.
        room: String,
        /// The new participant (no tracks yet).
        participant: ParticipantView,
        /// Who was there before.
        others: Vec<ParticipantView>,
        /// Who speaks now, loudest first.
        speakers: Vec<Speaker>,
    },
    /// A participant is gone. Its tracks were unpublished just before, each with
    /// [`Event::TrackUnpublished`].
    Left {
        /// The room it was in.
        room: String,
        /// The participant as it was (no tracks).
        participant: ParticipantView,
        /// Why.
        reason: LeaveReason,
    },
    /// A participant connected to another engine sharing the room (another worker) joined it, or
    /// was in it when the two engines began sharing it. The participants here hear of it; it is
    /// not a join of this engine (no webhook: the engine it joined reports that).
    RemoteJoined {
        /// The room.
        room: String,
        /// Who (no tracks yet: they follow as [`Event::TrackPublished`]).
        participant: ParticipantView,
    },
    /// A participant of another engine sharing the room left it (or that engine stopped
    /// sharing it). Its tracks were unpublished just before.
    RemoteLeft {
        /// The room.
        room: String,
        /// Its id.
        participant: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A participant's signalling dropped and it is held for a while, media or not, in case it
    /// comes back (`reconnecting`); or it came back.
    Reconnecting {
        /// The room.
        room: String,
        /// Its id.
        participant: String,
        /// Held now; false: back.
        reconnecting: bool,
    },
    /// A participant started sending a track.
    TrackPublished {
        /// The room.
        room: String,
        /// The publisher's id.
        participant: String,
        /// The track.
        track: TrackView,
    },
    /// A track is no longer published (its publisher stopped sending it, or left).
    TrackUnpublished {
        /// The room.
        room: String,
        /// The publisher's id.
        participant: String,
        /// The track as it was.
        track: TrackView,
    },
    /// A track was muted or unmuted (by its publisher or the operator).
    TrackMuted {
        /// The room.
        room: String,
        /// The publisher's id.
        participant: String,
        /// The track.
        track_id: String,
        /// Muted now.
        muted: bool,
    },
    /// A participant's name or metadata changed.
    ParticipantUpdated {
        /// The room.
        room: String,
        /// The participant as it is now, with its tracks.
        participant: ParticipantView,
    },
    /// An SDP offer for participant `participant` (the server renegotiates).
    Offer {
        /// Who gets it.
        participant: String,
        /// The SDP.
        sdp: String,
    },
    /// The SDP answer to participant `participant`'s offer.
    Answer {
        /// Who gets it.
        participant: String,
        /// The SDP.
        sdp: String,
    },
    /// Whether a track a subscriber receives is forwarded to it now, and which layer.
    StreamState {
        /// The subscriber.
        subscriber: String,
        /// The track's publisher.
        publisher: String,
        /// The track.
        track_id: String,
        /// Forwarded, or why not.
        state: StreamState,
    },
    /// The simulcast layers a publisher should send (dynacast): the rest nobody needs.
    PublisherLayers {
        /// The publisher.
        participant: String,
        /// Its track.
        track_id: String,
        /// The rids to send, lowest first.
        active: Vec<String>,
    },
    /// A participant's connection quality changed (see [`Quality`]).
    ConnectionQuality {
        /// The room.
        room: String,
        /// Whose.
        participant: String,
        /// How it is now.
        quality: Quality,
    },
    /// Who speaks in a room changed.
    Speakers {
        /// The room.
        room: String,
        /// Who speaks now, loudest first (empty: nobody).
        speakers: Vec<Speaker>,
    },
    /// A request of participant `participant` was refused, or something it sent (a data message,
    /// a track) was not taken.
    Refused {
        /// Who is told.
        participant: String,
        /// Why.
        error: Error,
    },
}

/// A participant as the engine describes it to the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantView {
    /// Its id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The identity from its access token.
    pub identity: Option<String>,
    /// Operator metadata.
    pub metadata: Option<String>,
    /// What it publishes, in publish order (empty where an event says "no tracks").
    pub tracks: Vec<TrackView>,
}

/// A published track as the engine describes it to the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackView {
    /// Its id (unique in the room).
    pub id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// Muted.
    pub muted: bool,
    /// What it carries.
    pub source: TrackSource,
}

/// What a published track carries, as its publisher named it (see `Request::TrackSources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackSource {
    /// A camera (video).
    Camera,
    /// A microphone (audio).
    Microphone,
    /// A shared screen, window or tab (video).
    Screen,
    /// The audio of a shared screen or tab.
    ScreenAudio,
}

impl TrackSource {
    /// The source of a track whose publisher named none.
    pub fn default_for(kind: MediaKind) -> TrackSource {
        match kind {
            MediaKind::Audio => TrackSource::Microphone,
            MediaKind::Video => TrackSource::Camera,
        }
    }

    /// The kind of m-line that can carry it.
    pub fn kind(self) -> MediaKind {
        match self {
            TrackSource::Camera | TrackSource::Screen => MediaKind::Video,
            TrackSource::Microphone | TrackSource::ScreenAudio => MediaKind::Audio,
        }
    }

    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Camera => "camera",
            TrackSource::Microphone => "microphone",
            TrackSource::Screen => "screen",
            TrackSource::ScreenAudio => "screen_audio",
        }
    }
}

/// One speaker in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speaker {
    /// The participant.
    pub participant: String,
    /// Loudness, 0 (silence) to 100 (the loudest).
    pub level: u8,
}

/// Whether a subscriber gets a track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Forwarded; `layer` is the simulcast rid, if the track has layers.
    Active {
        /// The rid of the layer forwarded.
        layer: Option<String>,
    },
    /// Not forwarded.
    Paused(PauseReason),
}

/// Why a subscriber does not get a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// Its bandwidth estimate does not fit even the lowest layer.
    Bandwidth,
    /// It said it does not show the video.
    Hidden,
    /// The publisher muted it.
    Muted,
    /// Nothing arrives from the publisher.
    Publisher,
    /// The subscriber's connection has no codec for what the publisher sends (its answer left
    /// that codec out).
    Codec,
}

impl PauseReason {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Bandwidth => "bandwidth",
            PauseReason::Hidden => "hidden",
            PauseReason::Muted => "muted",
            PauseReason::Publisher => "publisher",
            PauseReason::Codec => "codec",
        }
    }
}

/// Why a participant left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeaveReason {
    /// It said so.
    Left,
    /// Its signalling connection closed, or its media connection failed or was closed.
    Disconnected,
    /// No media connectivity: not connected in time, silent for too long, or ICE disconnected.
    Timeout,
    /// Its event queue was full: its signalling connection does not keep up.
    SlowConsumer,
    /// The same identity joined the same room again; the newer session took over.
    DuplicateIdentity,
    /// The operator removed it.
    Removed,
    /// The operator deleted its room.
    RoomDeleted,
    /// The server shut down.
    ServerShutdown,
}

impl LeaveReason {
    /// Every reason.
    pub const ALL: [LeaveReason; 8] = [
        LeaveReason::Left,
        LeaveReason::Disconnected,
        LeaveReason::Timeout,
        LeaveReason::SlowConsumer,
        LeaveReason::DuplicateIdentity,
        LeaveReason::Removed,
        LeaveReason::RoomDeleted,
        LeaveReason::ServerShutdown,
    ];

    /// The name clients and webhooks see.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::Timeout => "timeout",
            LeaveReason::SlowConsumer => "slow_consumer",
            LeaveReason::DuplicateIdentity => "duplicate_identity",
            LeaveReason::Removed => "removed",
            LeaveReason::RoomDeleted => "room_deleted",
            LeaveReason::ServerShutdown => "server_shutdown",
        }
    }

    /// The reason named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<LeaveReason> {
        LeaveReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// What SDP a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdpKind {
    /// The client's offer.
    Offer,
    /// The client's answer to the server's offer.
    Answer,
}

impl std::fmt::Display for SdpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SdpKind::Offer => "offer",
            SdpKind::Answer => "answer",
        })
    }
}

/// Why the engine refused something. The text (`Display`) is meant for the client; where the
/// cause came from a parser, [`Error::detail`] keeps the parser's words for the server log only
/// (they can hold internals that are nobody else's business).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A join named a participant id that is taken (the caller chooses ids).
    #[error("participant id in use")]
    IdInUse,
    /// The server's own ICE candidate could not be made (a configuration fault).
    #[error("candidate: {0}")]
    ServerCandidate(String),
    /// No participant with that id on this engine.
    #[error("no such participant")]
    UnknownParticipant,
    /// The participant publishes no track with that id.
    #[error("no such track")]
    UnknownTrack,
    /// Settings for a track the participant does not receive.
    #[error("not subscribed to that track")]
    NotSubscribed,
    /// More offers than the participant's offer budget allows.
    #[error("too many offers: at most {burst} in a burst and {per_second} per second")]
    TooManyOffers {
        /// The burst.
        burst: f64,
        /// The sustained rate.
        per_second: f64,
    },
    /// An SDP that does not parse.
    #[error("{kind}: the SDP could not be parsed")]
    UnreadableSdp {
        /// Offer or answer.
        kind: SdpKind,
        /// The parser's words (server log only).
        detail: String,
    },
    /// An SDP that parses but does not fit the session.
    #[error("{}", match kind {
        SdpKind::Offer => "offer: it does not fit this session (see the server log)",
        SdpKind::Answer => "answer: it does not fit the server's offer (see the server log)",
    })]
    SdpMismatch {
        /// Offer or answer.
        kind: SdpKind,
        /// Why, in str0m's words (server log only).
        detail: String,
    },
    /// An answer while the server has no offer out.
    #[error("answer without an offer from the server")]
    UnexpectedAnswer,
    /// The participant would publish more tracks than allowed.
    #[error("a participant publishes at most {0} tracks")]
    TooManyTracks(usize),
    /// The participant would publish more screen shares (tracks of source `screen`, or of
    /// `screen_audio`) than allowed.
    #[error("a participant publishes at most {0} screen shares at a time")]
    TooManyScreenShares(usize),
    /// An offer's `sources` name an m-line the offer does not have, or a source that does not fit
    /// the m-line's kind.
    #[error("sources: {0}")]
    BadTrackSource(String),
    /// The participant added more ICE candidates than allowed.
    #[error("a participant adds at most {0} ICE candidates")]
    TooManyCandidates(u32),
    /// A candidate line that does not parse.
    #[error("candidate: not an ICE candidate line (RFC 8839)")]
    BadCandidate {
        /// The parser's words (server log only).
        detail: String,
    },
    /// The participant's grants do not allow publishing.
    #[error("this participant may not publish")]
    MayNotPublish,
    /// A video m-line of an offer sends none of the codecs the room takes; it was answered
    /// inactive.
    #[error("video m-line {mid} sends none of the codecs this room takes ({allowed}); it publishes nothing")]
    CodecNotAllowed {
        /// The m-line.
        mid: String,
        /// What the room takes (`VP8 or H.264`).
        allowed: String,
    },
    /// A mute for a track that is not the participant's own.
    #[error("only the publisher mutes its own tracks here")]
    NotOwnTrack,
    /// The participant's grants do not allow data messages.
    #[error("this participant may not send data")]
    MayNotSendData,
    /// A data message above the size limit.
    #[error("data messages are limited to {0} bytes")]
    DataTooLarge(usize),
    /// Data messages above the rate limits.
    #[error("data messages are limited to {messages_per_second} per second and {kib_per_second} KiB per second")]
    DataRateLimited {
        /// Messages per second.
        messages_per_second: f64,
        /// KiB per second.
        kib_per_second: usize,
    },
    /// A text data message that is not the expected JSON envelope.
    #[error("data text messages are JSON: {{\"to\"?: [ids], \"payload\": ...}}")]
    BadDataMessage,
}

impl Error {
    /// The detail for the server log, where the client's text leaves it out.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Error::UnreadableSdp { detail, .. }
            | Error::SdpMismatch { detail, .. }
            | Error::BadCandidate { detail } => Some(detail),
            _ => None,
        }
    }
}
