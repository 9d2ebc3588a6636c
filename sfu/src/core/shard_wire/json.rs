//! The JSON forms of the rare messages. The core types stay free of serde: ids of str0m (`Mid`,
//! `Rid`) go as strings and are checked on the way in (their own serde takes any bytes, which
//! their `Deref` would later refuse with a panic), and `MediaKind` has no serde at all.

use serde::{Deserialize, Serialize};
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt, Rid};

use super::super::event::{LeaveReason, ParticipantView, TrackSource, TrackView};
use super::super::quality::Quality;
use super::super::shard::TrackSpec;
use super::{WireError, MAX_LAYERS};

#[derive(Serialize, Deserialize)]
pub(super) struct RoomParticipant {
    pub(super) room: String,
    pub(super) participant: ParticipantJson,
}

impl RoomParticipant {
    pub(super) fn new(room: &str, p: &ParticipantView) -> Self {
        RoomParticipant {
            room: room.to_owned(),
            participant: p.into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct LeftJson {
    pub(super) room: String,
    pub(super) participant: String,
    pub(super) reason: ReasonJson,
}

#[derive(Serialize, Deserialize)]
pub(super) struct PublishedJson {
    pub(super) room: String,
    pub(super) publisher: String,
    pub(super) track: TrackSpecJson,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ReconnectingJson {
    pub(super) room: String,
    pub(super) participant: String,
    pub(super) reconnecting: bool,
}

#[derive(Serialize, Deserialize)]
pub(super) struct QualityJson {
    pub(super) room: String,
    pub(super) participant: String,
    pub(super) quality: QualityLevel,
}

#[derive(Serialize, Deserialize)]
pub(super) struct DataHeader {
    pub(super) room: String,
    pub(super) label: String,
    pub(super) binary: bool,
    pub(super) to: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct ParticipantJson {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) identity: Option<String>,
    pub(super) metadata: Option<String>,
    pub(super) tracks: Vec<TrackViewJson>,
}

impl From<&ParticipantView> for ParticipantJson {
    fn from(p: &ParticipantView) -> Self {
        ParticipantJson {
            id: p.id.clone(),
            name: p.name.clone(),
            identity: p.identity.clone(),
            metadata: p.metadata.clone(),
            tracks: p.tracks.iter().map(TrackViewJson::from).collect(),
        }
    }
}

impl From<ParticipantJson> for ParticipantView {
    fn from(p: ParticipantJson) -> Self {
        ParticipantView {
            id: p.id,
            name: p.name,
            identity: p.identity,
            metadata: p.metadata,
            tracks: p.tracks.into_iter().map(TrackView::from).collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct TrackViewJson {
    pub(super) id: String,
    pub(super) kind: Kind,
    pub(super) muted: bool,
    pub(super) source: Source,
}

impl From<&TrackView> for TrackViewJson {
    fn from(t: &TrackView) -> Self {
        TrackViewJson {
            id: t.id.clone(),
            kind: t.kind.into(),
            muted: t.muted,
            source: t.source.into(),
        }
    }
}

impl From<TrackViewJson> for TrackView {
    fn from(t: TrackViewJson) -> Self {
        TrackView {
            id: t.id,
            kind: t.kind.into(),
            muted: t.muted,
            source: t.source.into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct TrackSpecJson {
    pub(super) key: u64,
    pub(super) id: String,
    pub(super) kind: Kind,
    pub(super) mid: String,
    pub(super) rids: Vec<Option<String>>,
    pub(super) codecs: Vec<PayloadParams>,
    pub(super) params: Vec<PayloadParams>,
    pub(super) muted: bool,
    pub(super) source: Source,
    pub(super) priority: u8,
    pub(super) publisher_mask: Option<u8>,
}

impl From<&TrackSpec> for TrackSpecJson {
    fn from(t: &TrackSpec) -> Self {
        TrackSpecJson {
            key: t.key,
            id: t.id.clone(),
            kind: t.kind.into(),
            mid: t.mid.to_string(),
            rids: t.rids.iter().map(|r| r.map(|r| r.to_string())).collect(),
            codecs: t.codecs.clone(),
            params: t.params.clone(),
            muted: t.muted,
            source: t.source.into(),
            priority: t.priority,
            publisher_mask: t.publisher_mask,
        }
    }
}

impl TrackSpecJson {
    pub(super) fn into_spec(self) -> Result<TrackSpec, WireError> {
        if self.rids.is_empty() || self.rids.len() > MAX_LAYERS {
            return Err(WireError::Invalid("layer count"));
        }
        let rids = self
            .rids
            .iter()
            .map(|r| r.as_deref().map(rid).transpose())
            .collect::<Result<_, _>>()?;
        // Payload types are 7 bits; str0m asserts that when it writes a header.
        let pt_ok = |pt: Pt| *pt <= 127;
        let params_ok = |p: &PayloadParams| {
            pt_ok(p.pt()) && p.resend().is_none_or(pt_ok) && p.red().is_none_or(pt_ok)
        };
        if !self.codecs.iter().chain(&self.params).all(params_ok) {
            return Err(WireError::Invalid("payload type"));
        }
        Ok(TrackSpec {
            key: self.key,
            id: self.id,
            kind: self.kind.into(),
            mid: mid(&self.mid)?,
            rids,
            codecs: self.codecs,
            params: self.params,
            muted: self.muted,
            source: self.source.into(),
            priority: self.priority,
            publisher_mask: self.publisher_mask,
        })
    }
}

/// Whether `s` is an id as str0m keeps them: ASCII letters, digits and `_` (it replaces anything
/// else), at most `max` bytes.
fn id_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn mid(s: &str) -> Result<Mid, WireError> {
    if !id_ok(s, 16) {
        return Err(WireError::Invalid("mid"));
    }
    Ok(Mid::from(s))
}

fn rid(s: &str) -> Result<Rid, WireError> {
    if !id_ok(s, 8) {
        return Err(WireError::Invalid("rid"));
    }
    Ok(Rid::from(s))
}

/// Implements `From` both ways between a core enum and its JSON twin.
macro_rules! twin {
    ($json:ident, $core:ty, $($v:ident),+) => {
        #[derive(Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub(super) enum $json {
            $($v),+
        }

        impl From<$core> for $json {
            fn from(v: $core) -> Self {
                match v {
                    $(<$core>::$v => $json::$v),+
                }
            }
        }

        impl From<$json> for $core {
            fn from(v: $json) -> Self {
                match v {
                    $($json::$v => <$core>::$v),+
                }
            }
        }
    };
}

twin!(Kind, MediaKind, Audio, Video);
twin!(Source, TrackSource, Camera, Microphone, Screen, ScreenAudio);
twin!(QualityLevel, Quality, Lost, Poor, Good, Excellent);
twin!(
    ReasonJson,
    LeaveReason,
    Left,
    Disconnected,
    Timeout,
    SlowConsumer,
    DuplicateIdentity,
    Removed,
    RoomDeleted,
    ServerShutdown
);
