//! Webhook events: what the server posts to the configured URLs, and how the posts are signed.
//!
//! Each event is one JSON [`WebhookEvent`] in a `POST` with these headers:
//!
//! | header | value |
//! |---|---|
//! | [`SIGNATURE_HEADER`] | `sha256=` and the lowercase hex HMAC-SHA256 of the body, keyed with the API secret |
//! | [`TIMESTAMP_HEADER`] | Unix seconds when the post was signed (the body's `created_at` is signed too) |
//! | [`KEY_HEADER`] | the API key whose secret signed it |
//!
//! A receiver checks the signature with [`verify_signature`] over the raw body before parsing it.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::protocol::{ParticipantInfo, TrackInfo};

/// Carries `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-sfu-signature";
/// Carries the Unix time of signing.
pub const TIMESTAMP_HEADER: &str = "x-sfu-timestamp";
/// Carries the API key that signed.
pub const KEY_HEADER: &str = "x-sfu-key";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A room was created (REST, or the first join when joining creates rooms).
    RoomStarted,
    /// A room was closed: deleted, or empty for its `empty_timeout`.
    RoomFinished,
    /// A participant was admitted.
    ParticipantJoined,
    /// A participant left; `reason` says why.
    ParticipantLeft,
    /// A participant published a track.
    TrackPublished,
    /// A track was unpublished (also for each track of a participant that leaves).
    TrackUnpublished,
}

impl EventKind {
    /// The name as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::RoomStarted => "room_started",
            EventKind::RoomFinished => "room_finished",
            EventKind::ParticipantJoined => "participant_joined",
            EventKind::ParticipantLeft => "participant_left",
            EventKind::TrackPublished => "track_published",
            EventKind::TrackUnpublished => "track_unpublished",
        }
    }
}

/// One webhook post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// Unique per event; a retried post carries the same id, so receivers can drop duplicates.
    pub id: String,
    /// What happened.
    pub event: EventKind,
    /// When (Unix seconds).
    pub created_at: u64,
    /// The room's name.
    pub room: String,
    /// The participant, for participant and track events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<ParticipantInfo>,
    /// The track, for track events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<TrackInfo>,
    /// Why, for `participant_left` (`left`, `disconnected`, `timeout`, `removed`,
    /// `room_deleted`, ...) and `room_finished` (`deleted`, `empty_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl WebhookEvent {
    /// An event about `room` with a fresh id, happening now.
    pub fn new(event: EventKind, room: impl Into<String>) -> Self {
        WebhookEvent {
            id: event_id(),
            event,
            created_at: crate::auth::unix_now(),
            room: room.into(),
            participant: None,
            track: None,
            reason: None,
        }
    }

    /// With a participant.
    pub fn participant(mut self, p: ParticipantInfo) -> Self {
        self.participant = Some(p);
        self
    }

    /// With a track.
    pub fn track(mut self, t: TrackInfo) -> Self {
        self.track = Some(t);
        self
    }

    /// With a reason.
    pub fn reason(mut self, r: impl Into<String>) -> Self {
        self.reason = Some(r.into());
        self
    }
}

/// `EV_` and 16 random characters.
fn event_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let tail: String = (0..16)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("EV_{tail}")
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str) -> HmacSha256 {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length")
}

/// The [`SIGNATURE_HEADER`] value for `body`: `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut m = mac(secret);
    m.update(body);
    let digest = m.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Whether `header` is the signature of `body` under `secret` (constant-time comparison).
pub fn verify_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Some(bytes) = decode_hex(hex) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(body);
    m.verify_slice(&bytes).is_ok()
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    hex.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_reference_and_verify() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = br#"{"event":"room_started"}"#;
        let s = sign("secret", body);
        assert!(verify_signature("secret", body, &s));
        assert!(!verify_signature("other", body, &s));
        assert!(!verify_signature("secret", b"{}", &s));
        assert!(!verify_signature("secret", body, "sha256=zz"));
        assert!(!verify_signature("secret", body, &s[7..]));
    }

    #[test]
    fn events_serialize_with_snake_case_names() {
        let e = WebhookEvent::new(EventKind::ParticipantLeft, "r").reason("removed");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "participant_left");
        assert_eq!(v["reason"], "removed");
        assert!(v.get("track").is_none());
        assert!(e.id.starts_with("EV_"));
        assert_eq!(EventKind::TrackPublished.as_str(), "track_published");
    }
}
