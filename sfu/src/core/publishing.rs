//! Publishing: an m-line the client sends on becomes a track of its room, announced to the others
//! and offered to those who may subscribe; a track it stops sending (or a participant that leaves)
//! is unpublished and taken off every subscriber's connection.

use str0m::media::{MediaAdded, MediaKind, Mid, Rid, Rids, Simulcast, SimulcastLayer};
use tracing::debug;

use super::allocator::SCREEN_PRIORITY;
use super::event::{Error, Event, TrackSource};
use super::participant::ParticipantKey;
use super::room::TrackKey;
use super::shard::ShardMessage;
use super::track::{Layer, Track};
use super::Engine;

impl Engine {
    /// The client's offer brought a new m-line: if it sends on it, it publishes a track.
    pub(super) fn media_added(&mut self, key: ParticipantKey, m: MediaAdded) {
        let MediaAdded {
            mid,
            kind,
            direction,
            simulcast,
            ..
        } = m;
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        if !direction.is_receiving() || p.published.iter().any(|(m, _)| *m == mid) {
            return;
        }
        if !p.grants.publish {
            // Whatever the SDP says: nothing from this m-line reaches anyone.
            p.negotiation.deactivate(mid);
            self.agenda.renegotiate(key);
            let refused = Event::Refused {
                participant: p.id.clone(),
                error: Error::MayNotPublish,
            };
            self.emit(refused);
            return;
        }
        if p.published.len() >= self.config.limits.max_tracks {
            // Reached by sending again on m-lines set inactive earlier; offers that add too
            // many are refused before they get here.
            p.negotiation.deactivate(mid);
            self.agenda.renegotiate(key);
            self.stats.signals_refused += 1;
            let refused = Event::Refused {
                participant: p.id.clone(),
                error: Error::TooManyTracks(self.config.limits.max_tracks),
            };
            self.emit(refused);
            return;
        }
        let tk = self.next_key;
        self.next_key += 1;
        let muted = p.negotiation.take_early_mute(mid);
        let config = p.rtc.codec_config();
        let codecs = p
            .video_orders
            .get(&mid)
            .map(|order| {
                order
                    .iter()
                    .filter_map(|pt| config.find(|pp| pp.pt() == *pt).copied())
                    .collect()
            })
            .unwrap_or_default();
        let source = p
            .negotiation
            .source_of(mid)
            .filter(|s| s.kind() == kind)
            .unwrap_or(TrackSource::default_for(kind));
        let priority = if source == TrackSource::Screen {
            SCREEN_PRIORITY
        } else {
            0
        };
        let track = Track {
            id: format!("{}-{}", p.id, mid),
            kind,
            publisher: key,
            publisher_id: p.id.clone(),
            mid,
            subscribers: Vec::new(),
            layers: track_layers(kind, simulcast),
            codec: None,
            codecs,
            in_params: None,
            last_audio: None,
            muted,
            source,
            priority,
            publisher_mask: None,
            svc: false,
            temporal: Default::default(),
            pause_due: None,
            origin: None,
            relays: Vec::new(),
            speaker: Default::default(),
        };
        p.published.push((mid, tk));
        debug!(participant = %p.id, track = %track.id, ?kind, "published");
        let view = track.view();
        let publisher_id = p.id.clone();
        let room = p.room.clone();
        self.rooms.add_track(tk, track);
        let Some(r) = self.rooms.room_mut(&room) else {
            return;
        };
        r.tracks.push(tk);
        self.offer_track(&room, tk, Some(key));
        self.play_new_track(tk);
        self.announce_track(&room, tk);
        self.emit(Event::TrackPublished {
            room,
            participant: publisher_id,
            track: view,
        });
    }

    /// Offer new track `tk` to every participant of `room` (but its publisher `except`) who may
    /// subscribe.
    pub(super) fn offer_track(&mut self, room: &str, tk: TrackKey, except: Option<ParticipantKey>) {
        let Some(r) = self.rooms.room(room) else {
            return;
        };
        for &k in &r.participants {
            if Some(k) == except {
                continue;
            }
            if let Some(o) = self.participants.get_mut(&k) {
                if o.grants.subscribe && o.plays.is_none() {
                    o.negotiation.add_track(tk);
                    self.agenda.renegotiate(k);
                }
            }
        }
    }

    /// The client sends again on an m-line it had stopped sending on: publish it anew.
    pub(super) fn republish_mid(&mut self, key: ParticipantKey, mid: Mid) {
        let Some(p) = self.participants.get(&key) else {
            return;
        };
        if p.published.iter().any(|(m, _)| *m == mid) {
            return;
        }
        let Some(media) = p.rtc.media(mid) else {
            return;
        };
        let simulcast = match media.rids_rx() {
            Rids::Specific(rids) if !rids.is_empty() => Some(Simulcast {
                send: Vec::new(),
                recv: rids.iter().map(|r| SimulcastLayer::new(r)).collect(),
            }),
            _ => None,
        };
        let added = MediaAdded {
            mid,
            kind: media.kind(),
            direction: media.direction(),
            simulcast,
        };
        self.media_added(key, added);
    }

    /// The client stopped sending on an m-line it published.
    pub(super) fn unpublish_mid(&mut self, key: ParticipantKey, mid: Mid) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let Some(i) = p.published.iter().position(|(m, _)| *m == mid) else {
            return;
        };
        let (_, tk) = p.published.remove(i);
        self.unpublish(tk);
    }

    /// Remove a track: every subscriber stops receiving it and is told; their m-lines go inactive.
    /// The other engines sharing the room hear of it when it is a local track.
    pub(super) fn unpublish(&mut self, tk: TrackKey) {
        let Some(track) = self.rooms.remove_track(tk) else {
            return;
        };
        let Some(room) = self.publisher_room(track.publisher).map(str::to_owned) else {
            return;
        };
        if track.origin.is_some() {
            self.forget_mirror(tk, &track);
        } else {
            self.announce_track_change(&room, || ShardMessage::Unpublished { track: tk });
        }
        if let Some(r) = self.rooms.room_mut(&room) {
            r.tracks.retain(|t| *t != tk);
            for &k in &r.participants {
                if k == track.publisher {
                    continue;
                }
                let Some(o) = self.participants.get_mut(&k) else {
                    continue;
                };
                o.negotiation.forget_track(tk);
                if let Some(sub) = o.subs.remove(&tk) {
                    o.sub_by_mid.remove(&sub.mid);
                    o.negotiation.deactivate(sub.mid);
                    self.agenda.renegotiate(k);
                }
            }
        }
        self.emit(Event::TrackUnpublished {
            room,
            participant: track.publisher_id.clone(),
            track: track.view(),
        });
    }
}

/// The layers of a new track: one per simulcast rid (in the order the publisher listed them,
/// lowest first), or a single one.
fn track_layers(kind: MediaKind, simulcast: Option<Simulcast>) -> Vec<Layer> {
    let rids: Vec<Rid> = match (kind, simulcast) {
        (MediaKind::Video, Some(s)) => {
            let layers = if s.recv.is_empty() { s.send } else { s.recv };
            layers.into_iter().map(|l| l.rid).take(8).collect()
        }
        _ => Vec::new(),
    };
    if rids.is_empty() {
        return vec![Layer::default()];
    }
    rids.into_iter()
        .map(|rid| Layer {
            rid: Some(rid),
            ..Layer::default()
        })
        .collect()
}
