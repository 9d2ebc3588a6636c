//! The WebSocket protocol spoken between a client and the server.
//!
//! Every message is one JSON object (a WebSocket text frame) with a `"type"` field. The first message a
//! client sends is [`ClientMessage::Join`], which carries the protocol [`PROTOCOL_VERSION`]. The full
//! description with an example exchange lives in `docs/protocol.md`.

use serde::{Deserialize, Serialize};

/// The protocol version this server speaks. A `join` with another version is refused with
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest client message the server reads, in bytes. Larger messages are answered with
/// [`ErrorCode::MessageTooLarge`] and otherwise ignored.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A message from a client to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Enter a room. Must be the first message, and is accepted once per socket.
    Join {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
        /// Room name: 1 to 64 characters out of letters, digits, `-`, `_` and `.`.
        room: String,
        /// Display name shown to the others: 1 to 64 characters.
        name: String,
        /// Access token (see `auth`). Required whenever the router is given API keys, which the
        /// `sfu` server always does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        /// The client's region label (1 to 64 of letters, digits, `-`, `_`, `.`): in a cluster, a
        /// room's first join places the room on a node of that region when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
    },
    /// Take up an existing participant again on a new socket, after the old one dropped: instead
    /// of `join`, as the first message. Works within the grace period announced in `joined`
    /// (`resume.grace_seconds`) and only with the secret given there. The server answers
    /// [`ServerMessage::Resumed`] and then everything it held back for this participant.
    Resume {
        /// Must equal [`PROTOCOL_VERSION`].
        version: u32,
        /// The participant to take up (`joined`'s `participant_id`).
        participant_id: String,
        /// `joined`'s `resume.secret`.
        secret: String,
    },
    /// An SDP offer for the participant's one peer connection.
    Offer {
        /// The SDP text.
        sdp: String,
        /// What the tracks of this offer carry, by the `a=mid` of their m-line in this offer:
        /// `camera`, `microphone`, `screen` or `screen_audio`. A sending m-line left out is a
        /// `camera` (video) or `microphone` (audio). Read when a track is first published.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sources: Option<std::collections::BTreeMap<String, TrackSource>>,
    },
    /// An SDP answer to the last offer the server sent.
    Answer {
        /// The SDP text.
        sdp: String,
    },
    /// A trickled ICE candidate of the client. An empty `candidate` means end of candidates.
    Candidate(IceCandidate),
    /// How the client shows a remote video: the server never sends a larger simulcast layer than
    /// this needs, and nothing while it is hidden. Send it when the video element is created,
    /// resized or hidden/shown. Until the first one, a video is treated as visible at full size.
    TrackSettings {
        /// The track (`track_published`'s `track.id`).
        track_id: String,
        /// Whether the video is on screen.
        visible: bool,
        /// Rendered width in device pixels (0: unknown).
        #[serde(default)]
        width: u32,
        /// Rendered height in device pixels (0: unknown).
        #[serde(default)]
        height: u32,
        /// The client shows this video prominently (pinned): it gets bandwidth before the other
        /// cameras it receives (after screen shares).
        #[serde(default)]
        pinned: bool,
    },
    /// Mute or unmute one of the client's own tracks: the server stops (or resumes) forwarding it
    /// and tells the room with [`ServerMessage::TrackMuted`].
    Mute {
        /// The client's own track.
        track_id: String,
        /// Muted or not.
        muted: bool,
    },
    /// Leave the room. The server answers with [`ServerMessage::Left`] and closes the socket.
    Leave,
    /// Keep-alive; answered with [`ServerMessage::Pong`].
    Ping,
}

/// What a client needs to resume its session on a new socket (see [`ClientMessage::Resume`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeTicket {
    /// Proof that a resuming socket belongs to this client: random, known only to the client
    /// and the server. Never logged.
    pub secret: String,
    /// How long after the socket drops the session can be resumed.
    pub grace_seconds: u32,
}

/// A message from the server to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The join succeeded. Sent once, before any other event of the room.
    Joined {
        /// The protocol version of the server.
        version: u32,
        /// The room joined.
        room: String,
        /// The id the server gave this participant.
        participant_id: String,
        /// Everybody else already in the room, with their published tracks.
        participants: Vec<ParticipantInfo>,
        /// ICE servers (STUN/TURN) the client should configure on its peer connection.
        ice_servers: Vec<IceServer>,
        /// How to take this participant up again if the socket drops; absent when the server
        /// does not resume sessions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<ResumeTicket>,
    },
    /// The answer to `resume`: the participant is taken up again on this socket. Messages held
    /// back while no socket was attached follow, in order.
    Resumed {
        /// The participant.
        participant_id: String,
    },
    /// The answer to a `join` of a room that another node of the cluster serves: open a socket
    /// to `url` and send the same `join` there. The server closes this socket after it.
    Redirect {
        /// The WebSocket URL of the node that serves the room.
        url: String,
    },
    /// Never sent to a client: tells the session of an older socket that a `resume` on a newer
    /// one took its participant over. That session closes its socket with close code `4000`
    /// and no `left` (the participant has not left).
    #[serde(skip)]
    Superseded,
    /// Another participant's signalling connection dropped; it may come back (`participant_resumed`)
    /// within the grace period, or leave (`participant_left`). Its media keeps flowing meanwhile.
    ParticipantReconnecting {
        /// Who.
        participant_id: String,
    },
    /// A participant that was reconnecting is back.
    ParticipantResumed {
        /// Who.
        participant_id: String,
    },
    /// A participant's connection quality changed (sent to everyone in the room, the participant
    /// included): `excellent`, `good`, `poor` or `lost`.
    ConnectionQuality {
        /// Whose.
        participant_id: String,
        /// How it is now.
        quality: String,
    },
    /// An SDP offer from the server (renegotiation when tracks come or go).
    Offer {
        /// The SDP text.
        sdp: String,
    },
    /// The answer to the client's offer.
    Answer {
        /// The SDP text.
        sdp: String,
    },
    /// A server ICE candidate (the server's candidates are also in every SDP it sends).
    Candidate(IceCandidate),
    /// Somebody entered the room.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Somebody left the room.
    ParticipantLeft {
        /// Who.
        participant_id: String,
        /// Why: `left`, `disconnected` (socket closed), `timeout` (no media connectivity).
        reason: String,
    },
    /// A participant published a track. It arrives on the peer connection with the next offer; its
    /// `a=msid` carries the participant id as stream id and the track id.
    TrackPublished {
        /// The publisher.
        participant_id: String,
        /// The track.
        track: TrackInfo,
    },
    /// A participant stopped publishing a track.
    TrackUnpublished {
        /// The publisher.
        participant_id: String,
        /// The track id.
        track_id: String,
    },
    /// A track was muted or unmuted: the server stops or resumes forwarding it.
    TrackMuted {
        /// The publisher.
        participant_id: String,
        /// The track id.
        track_id: String,
        /// Whether it is muted now.
        muted: bool,
    },
    /// Whether a video this client subscribes to is being forwarded, and which layer.
    StreamState {
        /// The publisher.
        participant_id: String,
        /// The track.
        track_id: String,
        /// `active`, or `paused` (nothing is sent).
        state: StreamStateKind,
        /// Why it is paused: `bandwidth` (the estimate cannot carry it), `hidden` (the client said
        /// it is not visible), `muted`, `publisher` (no layer arrives) or `codec` (the client's
        /// answer left out the codec the publisher sends).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// The simulcast layer (rid) forwarded while active, if the track has layers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layer: Option<String>,
    },
    /// The simulcast layers of one of this client's own tracks that somebody needs. The client
    /// should deactivate the other encodings (`RTCRtpSender.setParameters`) to save CPU and uplink,
    /// and reactivate them when they are listed again.
    PublisherLayers {
        /// The client's own track.
        track_id: String,
        /// Rids to send; all others may be paused.
        active: Vec<String>,
    },
    /// Who is speaking now, loudest first (empty: nobody). Sent when the set changes.
    Speakers {
        /// The speakers.
        speakers: Vec<Speaker>,
    },
    /// A participant's name or metadata changed.
    ParticipantUpdated {
        /// The participant as it is now.
        participant: ParticipantInfo,
    },
    /// The room's metadata, sent after [`ServerMessage::Joined`] when the room has metadata and
    /// to everyone in the room whenever the operator changes it.
    RoomUpdated {
        /// The room.
        room: String,
        /// Its metadata now (empty: none).
        metadata: String,
    },
    /// The server is shutting down: it admits no more joins, and removes this participant with
    /// `left` (reason `server_shutdown`) after `drain_seconds` at the latest. The client should
    /// leave and join again, on another server behind the same address.
    ShuttingDown {
        /// Seconds until the server removes everyone still connected.
        drain_seconds: u32,
    },
    /// The server removed this participant (answer to `leave`, or for the reason given); the socket
    /// closes after this message.
    Left {
        /// Why.
        reason: String,
    },
    /// Something the client sent was refused. The session goes on unless a `left` follows.
    Error {
        /// A stable, machine-readable code.
        code: ErrorCode,
        /// A message for humans.
        message: String,
    },
    /// Answer to [`ClientMessage::Ping`].
    Pong,
}

/// One participant as other participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Participant)]
pub struct ParticipantInfo {
    /// Server-assigned id, unique in the room.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The identity the access token named, if the server uses tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Application data attached by the operator (REST API or token), opaque to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// What it publishes.
    pub tracks: Vec<TrackInfo>,
}

/// A published track.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Track)]
pub struct TrackInfo {
    /// Server-assigned id, unique in the room; the `a=msid` track id on subscribers' connections.
    pub id: String,
    /// `audio` or `video`.
    pub kind: TrackKind,
    /// The server does not forward it (muted by its publisher or by an admin).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub muted: bool,
    /// What it carries: `camera`, `microphone`, `screen` or `screen_audio`, as the publisher
    /// named it in its offer.
    pub source: TrackSource,
}

/// What a published track carries. The publisher names it per m-line in its `offer`; without a
/// name a video is a `camera` and an audio track a `microphone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
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
    /// The source as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Camera => "camera",
            TrackSource::Microphone => "microphone",
            TrackSource::Screen => "screen",
            TrackSource::ScreenAudio => "screen_audio",
        }
    }
}

/// A participant that is speaking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speaker {
    /// Who.
    pub participant_id: String,
    /// How loud, 0 to 100 (smoothed audio level).
    pub level: u8,
}

/// Whether a subscribed stream is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStateKind {
    /// Media is forwarded.
    Active,
    /// Nothing is forwarded.
    Paused,
}

/// The kind of a track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// Audio (Opus).
    Audio,
    /// Video (VP8, H264 or VP9).
    Video,
}

/// An ICE candidate as the browser API has it (`RTCIceCandidateInit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceCandidate {
    /// The `candidate:` attribute line, or empty for end of candidates.
    pub candidate: String,
    /// The media id it belongs to.
    #[serde(default, rename = "sdpMid", skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The m-line index it belongs to.
    #[serde(
        default,
        rename = "sdpMLineIndex",
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_m_line_index: Option<u16>,
}

/// An ICE server entry as the browser API has it (`RTCIceServer`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// Stable error codes. Clients act on these; the message is for humans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or unknown `type`, or a field of the wrong shape.
    BadMessage,
    /// A message above [`MAX_MESSAGE_BYTES`].
    MessageTooLarge,
    /// The `version` in `join` is not one this server speaks.
    UnsupportedVersion,
    /// A message that needs a joined session arrived before `join`.
    NotJoined,
    /// A second `join` on the same socket.
    AlreadyJoined,
    /// A room or display name that breaks the rules.
    InvalidName,
    /// The SDP could not be parsed or does not fit the session.
    InvalidSdp,
    /// An `answer` with no offer outstanding, or a message that breaks the negotiation order.
    WrongState,
    /// The access token is missing, malformed, expired or forged.
    Unauthorized,
    /// The token is valid but does not grant this.
    Forbidden,
    /// The room is at its participant limit.
    RoomFull,
    /// The server cannot take more work now (admission control, overload, shutting down).
    ServerBusy,
    /// A REST request whose body, path or query breaks the rules; the error names the field.
    InvalidRequest,
    /// The room, participant or track does not exist (or the room does not exist and joining
    /// does not create rooms).
    NotFound,
    /// The thing to create exists already.
    Conflict,
    /// Too many messages, offers or data-channel messages in a short time; the ones over the
    /// limit were not handled (not relayed).
    RateLimited,
    /// A per-participant limit would be exceeded (tracks published); the request was refused
    /// whole.
    LimitExceeded,
    /// A `resume` that cannot be honoured: no such session (it ended, or its grace period
    /// passed), or the wrong secret. Join again.
    ResumeFailed,
    /// The join was sent to another node of the cluster (`redirect`); never in an `error`.
    Redirected,
    /// An offer's video m-line sends none of the video codecs the room takes; that m-line is
    /// answered inactive and publishes nothing.
    UnsupportedCodec,
    /// A bug on the server side.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::MessageTooLarge => "message_too_large",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::InvalidSdp => "invalid_sdp",
            ErrorCode::WrongState => "wrong_state",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::ResumeFailed => "resume_failed",
            ErrorCode::Redirected => "redirected",
            ErrorCode::UnsupportedCodec => "unsupported_codec",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error for a client: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct SignalError {
    /// The stable code.
    pub code: ErrorCode,
    /// The human message.
    pub message: String,
    /// A `join` that another node of a cluster must take: the client is sent `redirect` with
    /// this WebSocket URL instead of an `error`.
    pub redirect: Option<String>,
}

impl SignalError {
    /// Build an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        SignalError {
            code,
            message: message.into(),
            redirect: None,
        }
    }

    /// A join that the node at `url` (a WebSocket URL) must take.
    pub fn redirect(url: impl Into<String>) -> Self {
        SignalError {
            code: ErrorCode::Redirected,
            message: "the room is served by another node".into(),
            redirect: Some(url.into()),
        }
    }
}

impl From<SignalError> for ServerMessage {
    fn from(e: SignalError) -> Self {
        match e.redirect {
            Some(url) => ServerMessage::Redirect { url },
            None => ServerMessage::Error {
                code: e.code,
                message: e.message,
            },
        }
    }
}

/// Checks a room name: 1 to 64 characters out of ASCII letters, digits, `-`, `_` and `.`.
pub fn validate_room_name(room: &str) -> Result<(), SignalError> {
    let ok = !room.is_empty()
        && room.len() <= 64
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SignalError::new(
            ErrorCode::InvalidName,
            "room must be 1 to 64 characters of letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Checks a region label: 1 to 64 characters of letters, digits, `-`, `_` and `.`.
pub fn validate_region(region: &str) -> Result<(), SignalError> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SignalError::new(
            ErrorCode::BadMessage,
            "region must be 1 to 64 characters of letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Checks a display name: 1 to 64 characters, no control characters, not only white space.
pub fn validate_display_name(name: &str) -> Result<(), SignalError> {
    let count = name.chars().count();
    let ok = count > 0
        && count <= 64
        && !name.trim().is_empty()
        && !name.chars().any(|c| c.is_control());
    if ok {
        Ok(())
    } else {
        Err(SignalError::new(
            ErrorCode::InvalidName,
            "name must be 1 to 64 printable characters",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_round_trips_with_and_without_token() {
        let j = r#"{"type":"join","version":1,"room":"r1","name":"Ann"}"#;
        let m: ClientMessage = serde_json::from_str(j).unwrap();
        assert_eq!(
            m,
            ClientMessage::Join {
                version: 1,
                room: "r1".into(),
                name: "Ann".into(),
                token: None,
                region: None,
            }
        );
        assert_eq!(serde_json::to_string(&m).unwrap(), j);
    }

    #[test]
    fn offer_names_sources_and_refuses_unknown_ones() {
        let j = r#"{"type":"offer","sdp":"v=0","sources":{"0":"microphone","2":"screen"}}"#;
        let m: ClientMessage = serde_json::from_str(j).unwrap();
        let ClientMessage::Offer { sources, .. } = &m else {
            panic!("not an offer: {m:?}")
        };
        let sources = sources.as_ref().unwrap();
        assert_eq!(sources.get("2"), Some(&TrackSource::Screen));
        assert_eq!(serde_json::to_string(&m).unwrap(), j);
        let plain: ClientMessage = serde_json::from_str(r#"{"type":"offer","sdp":"v=0"}"#).unwrap();
        assert_eq!(
            plain,
            ClientMessage::Offer {
                sdp: "v=0".into(),
                sources: None
            }
        );
        let err = serde_json::from_str::<ClientMessage>(
            r#"{"type":"offer","sdp":"v=0","sources":{"1":"webcam"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown variant `webcam`"), "{err}");
        assert!(err.contains("`screen_audio`"), "{err}");
    }

    #[test]
    fn track_settings_pin_defaults_to_false() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"track_settings","track_id":"a-1","visible":true}"#)
                .unwrap();
        assert!(matches!(
            m,
            ClientMessage::TrackSettings { pinned: false, .. }
        ));
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"track_settings","track_id":"a-1","visible":true,"pinned":true}"#,
        )
        .unwrap();
        assert!(matches!(
            m,
            ClientMessage::TrackSettings { pinned: true, .. }
        ));
    }

    #[test]
    fn candidate_uses_browser_field_names() {
        let j = r#"{"type":"candidate","candidate":"candidate:1 1 udp 1 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0}"#;
        let m: ClientMessage = serde_json::from_str(j).unwrap();
        let ClientMessage::Candidate(c) = m else {
            panic!("not a candidate: {m:?}")
        };
        assert_eq!(c.sdp_mid.as_deref(), Some("0"));
        assert_eq!(c.sdp_m_line_index, Some(0));
    }

    #[test]
    fn unknown_types_and_fields_are_rejected() {
        for bad in [
            r#"{"type":"dance"}"#,
            r#"{"type":"offer"}"#,
            r#"{"type":"offer","sdp":"v=0","extra":1}"#,
            r#"{"sdp":"v=0"}"#,
            r#"[]"#,
            r#"not json"#,
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_codes_serialize_as_their_wire_names() {
        for code in [
            ErrorCode::BadMessage,
            ErrorCode::MessageTooLarge,
            ErrorCode::UnsupportedVersion,
            ErrorCode::NotJoined,
            ErrorCode::AlreadyJoined,
            ErrorCode::InvalidName,
            ErrorCode::InvalidSdp,
            ErrorCode::WrongState,
            ErrorCode::Unauthorized,
            ErrorCode::Forbidden,
            ErrorCode::RoomFull,
            ErrorCode::ServerBusy,
            ErrorCode::InvalidRequest,
            ErrorCode::NotFound,
            ErrorCode::Conflict,
            ErrorCode::RateLimited,
            ErrorCode::LimitExceeded,
            ErrorCode::Internal,
        ] {
            assert_eq!(
                serde_json::to_string(&code).unwrap(),
                format!("\"{}\"", code.as_str())
            );
        }
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_room_name("team-standup_1.a").is_ok());
        for bad in ["", "a b", "x/y", &"a".repeat(65)] {
            assert!(validate_room_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_display_name("Zoë Ångström").is_ok());
        for bad in ["", "   ", "a\nb", &"é".repeat(65)] {
            assert!(validate_display_name(bad).is_err(), "{bad:?}");
        }
    }
}
