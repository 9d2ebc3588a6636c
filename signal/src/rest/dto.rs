//! The JSON bodies of the REST API. Requests refuse unknown fields; every `validate` names the
//! field at fault.

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use crate::auth::{check_metadata, Grants};
use crate::protocol::{validate_display_name, validate_room_name, ParticipantInfo};

/// The largest `max_participants` a room may have (0 means no limit).
pub const MAX_PARTICIPANTS_LIMIT: u32 = 10_000;

/// The longest `empty_timeout`, in seconds (7 days).
pub const MAX_EMPTY_TIMEOUT_SECS: u32 = 7 * 24 * 60 * 60;

/// The video codecs a room's `video_codecs` may name: the ones the server forwards.
pub const VIDEO_CODECS: [&str; 4] = ["vp8", "h264", "vp9", "av1"];

/// Checks a room's video codec policy: each name one of [`VIDEO_CODECS`] (in any case), at most
/// once. An empty list is allowed: every codec the server forwards.
pub fn check_video_codecs(names: &[String]) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if !VIDEO_CODECS.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "unknown video codec {name:?}: the server forwards {}",
                VIDEO_CODECS.join(", ")
            ));
        }
        if names[..i].iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(format!("video codec {name:?} is listed twice"));
        }
    }
    Ok(())
}

/// `POST /api/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// Room name: 1 to 64 letters, digits, `-`, `_` or `.`.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub name: String,
    /// Most participants at once; 0 for no limit. Default: the server's `room.max_participants`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 10000)]
    pub max_participants: Option<u32>,
    /// Seconds an empty room stays open before it is closed. Default: the server's
    /// `room.empty_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 604800)]
    pub empty_timeout: Option<u32>,
    /// Application data, opaque to the server; sent to participants as `room_updated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// The video codecs publishers may send, most preferred first (`["vp8"]`: VP8 only;
    /// `["h264", "vp8"]`: both, H.264 preferred; `vp9` too); empty: every codec the server forwards, in
    /// each publisher's own order. Default: the server's `room.video_codecs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codecs: Option<Vec<String>>,
    /// In a cluster: place the room on a node of this region when there is one (1 to 64
    /// letters, digits, `-`, `_` or `.`). A single server ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub region: Option<String>,
}

impl CreateRoom {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ApiError> {
        validate_room_name(&self.name).map_err(|e| ApiError::invalid("name", e.message))?;
        if let Some(region) = &self.region {
            crate::protocol::validate_region(region)
                .map_err(|e| ApiError::invalid("region", e.message))?;
        }
        check_settings(
            self.max_participants,
            self.empty_timeout,
            &self.metadata,
            &self.video_codecs,
        )
    }
}

/// `PATCH /api/rooms/{room}`: the fields given are changed, the others kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoom {
    /// New metadata; participants are sent `room_updated`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
    /// New participant limit (0: none). Participants already in stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 10000)]
    pub max_participants: Option<u32>,
    /// New empty timeout, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 604800)]
    pub empty_timeout: Option<u32>,
    /// New video codec policy (empty: every codec the server forwards). It applies to video
    /// published from then on; tracks already published keep their codec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codecs: Option<Vec<String>>,
}

impl UpdateRoom {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ApiError> {
        check_settings(
            self.max_participants,
            self.empty_timeout,
            &self.metadata,
            &self.video_codecs,
        )
    }
}

fn check_settings(
    max_participants: Option<u32>,
    empty_timeout: Option<u32>,
    metadata: &Option<String>,
    video_codecs: &Option<Vec<String>>,
) -> Result<(), ApiError> {
    if max_participants.is_some_and(|m| m > MAX_PARTICIPANTS_LIMIT) {
        return Err(ApiError::invalid(
            "max_participants",
            format!("max_participants must be 0 (no limit) to {MAX_PARTICIPANTS_LIMIT}"),
        ));
    }
    if empty_timeout.is_some_and(|t| t == 0 || t > MAX_EMPTY_TIMEOUT_SECS) {
        return Err(ApiError::invalid(
            "empty_timeout",
            format!("empty_timeout must be 1 to {MAX_EMPTY_TIMEOUT_SECS} seconds"),
        ));
    }
    if let Some(m) = metadata {
        check_metadata(m).map_err(|e| ApiError::invalid("metadata", e.message))?;
    }
    if let Some(codecs) = video_codecs {
        check_video_codecs(codecs).map_err(|m| ApiError::invalid("video_codecs", m))?;
    }
    Ok(())
}

/// A room as the REST API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Room)]
pub struct RoomInfo {
    /// Room name.
    pub name: String,
    /// Most participants at once; 0: no limit.
    pub max_participants: u32,
    /// Seconds the room stays open while empty.
    pub empty_timeout: u32,
    /// Application data ("" when none).
    pub metadata: String,
    /// When the room was created (Unix seconds).
    pub created_at: u64,
    /// Participants in it now (including ones still joining).
    pub num_participants: u32,
    /// The video codecs publishers may send, most preferred first, in lower case; empty: every
    /// codec the server forwards, in each publisher's own order.
    #[serde(default)]
    pub video_codecs: Vec<String>,
    /// In a cluster: the id of the node that serves the room. Set in `GET /api/rooms` answers
    /// only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `GET /api/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoomList {
    /// The rooms, sorted by name.
    pub rooms: Vec<RoomInfo>,
}

/// `GET /api/rooms/{room}/participants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ParticipantList {
    /// The participants, in join order.
    pub participants: Vec<ParticipantInfo>,
}

/// `PATCH /api/rooms/{room}/participants/{id}`: the fields given are changed, the others kept.
/// Everyone in the room is sent `participant_updated`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateParticipant {
    /// New display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

impl UpdateParticipant {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(name) = &self.name {
            validate_display_name(name).map_err(|e| ApiError::invalid("name", e.message))?;
        }
        if let Some(m) = &self.metadata {
            check_metadata(m).map_err(|e| ApiError::invalid("metadata", e.message))?;
        }
        Ok(())
    }
}

/// `POST /api/rooms/{room}/participants/{id}/tracks/{track}/mute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteTrack {
    /// `true` stops forwarding the track, `false` resumes it.
    pub muted: bool,
}

/// `POST /api/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// The participant's identity (`sub`).
    #[schema(min_length = 1, max_length = 128)]
    pub identity: String,
    /// The room (`room`). Required when the token grants `join`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Display name (`name`); wins over the name the client sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Lifetime in seconds. Default: 21600 (6 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 2592000)]
    pub ttl: Option<u64>,
    /// Grants; names other than the five are refused. Default: join, publish, subscribe,
    /// publish_data.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict_grants"
    )]
    pub grants: Option<Grants>,
    /// Participant metadata (`metadata`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// Reads grants refusing unknown names (tokens themselves are read leniently).
fn strict_grants<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Grants>, D::Error> {
    #[derive(Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Strict {
        join: bool,
        publish: bool,
        subscribe: bool,
        publish_data: bool,
        room_admin: bool,
    }
    let s = Option::<Strict>::deserialize(d)?;
    Ok(s.map(|s| Grants {
        join: s.join,
        publish: s.publish,
        subscribe: s.subscribe,
        publish_data: s.publish_data,
        room_admin: s.room_admin,
    }))
}

/// A minted token: `POST /api/tokens` and `GET /api/dev/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Token)]
pub struct TokenResponse {
    /// The JWT.
    pub token: String,
    /// Its identity.
    pub identity: String,
    /// Its room, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Its display name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its grants.
    pub grants: Grants,
    /// When it expires (Unix seconds).
    pub expires_at: u64,
}
