//! Players: participants that receive the tracks of one publisher of their room on the m-lines
//! of their own offer, and are never sent an offer (WHEP).
//!
//! A player's offer brings receiving m-lines (`recvonly`); the answer makes them the server's
//! sending m-lines and already names their SSRCs, so a player cannot take a renegotiation. Right
//! after answering, each of the publisher's tracks is put on a free m-line of its kind (in the
//! offer's order); a track the publisher publishes later (its connection came up after the
//! player's offer, or it published again) goes on a free m-line of its kind when there is one.
//! Tracks of anyone else are never put on a player's connection, and changes that would need an
//! offer (an m-line whose track went away) are dropped: the m-line just stays quiet.

use str0m::change::SdpOffer;
use str0m::media::{MediaKind, Mid};
use tracing::debug;

use super::negotiation::start_subscription;
use super::participant::{Participant, ParticipantKey};
use super::room::TrackKey;
use super::Engine;

/// What a player plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Playback {
    /// The identity of the publisher whose tracks it receives.
    pub source: String,
    /// Its receiving m-lines, in the order of its offer.
    pub mlines: Vec<(Mid, MediaKind)>,
}

impl Playback {
    /// Plays the tracks of the participant with identity `source`.
    pub fn new(source: impl Into<String>) -> Self {
        Playback {
            source: source.into(),
            mlines: Vec::new(),
        }
    }
}

/// The audio and video m-lines of a player's offer on which it receives; empty for anyone who
/// is not a player.
pub(super) fn offered_mlines(p: &Participant, offer: &SdpOffer) -> Vec<(Mid, MediaKind)> {
    if p.plays.is_none() {
        return Vec::new();
    }
    offer
        .media_lines
        .iter()
        .filter(|m| !m.disabled && m.direction().is_receiving())
        .filter_map(|m| {
            let kind = match m.typ.to_string().as_str() {
                "audio" => MediaKind::Audio,
                "video" => MediaKind::Video,
                _ => return None,
            };
            Some((m.mid(), kind))
        })
        .collect()
}

impl Engine {
    /// A player's offer was answered: remember its receiving m-lines and put the tracks of its
    /// publisher on them.
    pub(super) fn play_on(&mut self, key: ParticipantKey, offered: &[(Mid, MediaKind)]) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(plays) = p.plays.as_mut() else {
            return;
        };
        for &(mid, kind) in offered {
            if !plays.mlines.iter().any(|(m, _)| *m == mid) {
                plays.mlines.push((mid, kind));
            }
        }
        let source = plays.source.clone();
        let room = p.room.clone();
        let tracks: Vec<TrackKey> = self
            .rooms
            .room(&room)
            .map(|r| r.tracks.clone())
            .unwrap_or_default();
        for tk in tracks {
            let from_source = self
                .rooms
                .track(tk)
                .and_then(|t| self.participants.get(&t.publisher))
                .is_some_and(|publisher| publisher.identity.as_deref() == Some(source.as_str()));
            if from_source {
                self.play_track(key, tk);
            }
        }
    }

    /// Track `tk` was just published: the players of its publisher get it.
    pub(super) fn play_new_track(&mut self, tk: TrackKey) {
        let Some(track) = self.rooms.track(tk) else {
            return;
        };
        let Some(publisher) = self.participants.get(&track.publisher) else {
            return;
        };
        let Some(identity) = publisher.identity.clone() else {
            return;
        };
        let players: Vec<ParticipantKey> = self
            .rooms
            .room(&publisher.room)
            .map(|r| r.participants.as_slice())
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(|k| {
                self.participants.get(k).is_some_and(|p| {
                    p.plays
                        .as_ref()
                        .is_some_and(|pl| pl.source == identity && !pl.mlines.is_empty())
                })
            })
            .collect();
        for key in players {
            self.play_track(key, tk);
        }
    }

    /// Puts track `tk` on the first free m-line of its kind of player `key`, if there is one.
    fn play_track(&mut self, key: ParticipantKey, tk: TrackKey) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(track) = self.rooms.track_mut(tk) else {
            return;
        };
        if p.subs.contains_key(&tk) {
            return;
        }
        let Some(plays) = p.plays.as_ref() else {
            return;
        };
        let free = plays.mlines.iter().find(|(mid, kind)| {
            *kind == track.kind
                && !p.sub_by_mid.contains_key(mid)
                && p.rtc
                    .media(*mid)
                    .is_some_and(|m| m.direction().is_sending())
        });
        let Some(&(mid, _)) = free else {
            debug!(participant = %p.id, track = %track.id, "no free m-line for the track");
            return;
        };
        debug!(participant = %p.id, track = %track.id, %mid, "played");
        if start_subscription(p, key, tk, track, mid) {
            self.agenda.allocate(key);
        }
    }
}
