//! One room over several engines: each engine (a worker of the process) holds the participants
//! of the room that connected to it, and a mirror of the participants and tracks of the others.
//!
//! The caller says which engines share a room ([`Engine::link_shard`]). From then on each engine
//! tells the others, through [`Engine::poll_shard`], what happens to its own participants (joins,
//! leaves, updates, tracks published, muted and unpublished, data messages) and hands them the
//! RTP packets of its tracks while they have subscribers of them. They tell it which simulcast
//! layers their subscribers need (so that the publisher pauses only what nobody anywhere needs)
//! and ask it for keyframes. Messages name tracks by the sending engine's own track keys; the
//! receiver maps them to its mirror tracks ([`Engine::handle_shard`]).
//!
//! A packet is decrypted and parsed once by the publisher's engine and handed to each other
//! engine once, with a shared payload; each engine then runs its own subscribers' selectors,
//! rewriters and connections, with the same code as for a local track. A mirror track has a
//! publisher key with no connection: a keyframe request or a layer change for it becomes a
//! message to its engine instead of RTCP.
//!
//! The transport is the caller's: messages between two engines must arrive in the order they
//! were polled. Nothing here reads a clock or blocks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Rid};
use tracing::debug;

use super::event::{Event, LeaveReason, ParticipantView, TrackSource};
use super::fanout::Packet;
use super::forward::select::LayerIndex;
use super::participant::ParticipantKey;
use super::quality::Quality;
use super::room::TrackKey;
use super::track::{Layer, Track};
use super::Engine;

/// Which engine (worker) of the process: its index.
pub type ShardId = u16;

/// What one engine tells another about a room they share. Tracks are named by the key they have
/// on the engine that publishes them.
#[derive(Debug)]
pub enum ShardMessage {
    /// A participant of the sender joined (or was there when the link was made).
    Joined {
        /// Room name.
        room: String,
        /// Who (without tracks: they follow as `Published`).
        participant: ParticipantView,
    },
    /// A participant of the sender left.
    Left {
        /// Room name.
        room: String,
        /// Its id.
        participant: String,
        /// Why.
        reason: LeaveReason,
    },
    /// A participant of the sender changed its name or metadata.
    Updated {
        /// Room name.
        room: String,
        /// Who, now (tracks ignored).
        participant: ParticipantView,
    },
    /// A participant of the sender published a track.
    Published {
        /// Room name.
        room: String,
        /// The publisher's id.
        publisher: String,
        /// The track.
        track: Box<TrackSpec>,
    },
    /// A participant of the sender is reconnecting (its signalling dropped), or is back.
    Reconnecting {
        /// Room name.
        room: String,
        /// Its id.
        participant: String,
        /// Reconnecting now; false: back.
        reconnecting: bool,
    },
    /// The connection quality of a participant of the sender changed.
    Quality {
        /// Room name.
        room: String,
        /// Its id.
        participant: String,
        /// How it is now.
        quality: Quality,
    },
    /// A track of the sender was unpublished.
    Unpublished {
        /// The sender's key of it.
        track: TrackKey,
    },
    /// A track of the sender was muted or unmuted.
    Muted {
        /// The sender's key of it.
        track: TrackKey,
        /// Muted now.
        muted: bool,
    },
    /// The layers the publisher of a track of the sender was told to send.
    PublisherLayers {
        /// The sender's key of it.
        track: TrackKey,
        /// Bit mask of layers.
        mask: u8,
    },
    /// RTP packets of the sender's tracks, in arrival order.
    Media(Vec<Relayed>),
    /// The layers the sender's subscribers of a track of the receiver need (0: it has no
    /// subscriber of it: send none of its packets).
    Needs {
        /// The receiver's key of the track.
        track: TrackKey,
        /// Bit mask of layers.
        mask: u8,
    },
    /// A subscriber on the sender needs a keyframe of a track of the receiver.
    Keyframe {
        /// The receiver's key of the track.
        track: TrackKey,
        /// Which layer.
        layer: LayerIndex,
    },
    /// A data-channel message of a participant of the sender, stamped with its sender, for the
    /// participants of the receiver.
    Data {
        /// Room name.
        room: String,
        /// The channel label it goes out on.
        label: String,
        /// Binary or text.
        binary: bool,
        /// Only these participants (`None`: everyone).
        to: Option<Vec<String>>,
        /// The message as recipients get it.
        data: Arc<[u8]>,
    },
}

/// A published track, as another engine mirrors it.
#[derive(Debug, Clone)]
pub struct TrackSpec {
    /// The sender's key of it.
    pub key: TrackKey,
    /// Public id.
    pub id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// The publisher's m-line.
    pub mid: Mid,
    /// The rid of each layer (`None`: one layer without rid).
    pub rids: Vec<Option<Rid>>,
    /// The video codecs negotiated with the publisher, in its order.
    pub codecs: Vec<PayloadParams>,
    /// Every payload type of the publisher's connection (to read the packets it sends).
    pub params: Vec<PayloadParams>,
    /// Muted.
    pub muted: bool,
    /// What it carries.
    pub source: TrackSource,
    /// Its allocation priority.
    pub priority: u8,
    /// Layers the publisher was told to send.
    pub publisher_mask: Option<u8>,
}

/// One RTP packet of a track, handed to another engine.
#[derive(Debug)]
pub struct Relayed {
    /// The sender's key of the track.
    pub track: TrackKey,
    /// Its layer.
    pub layer: LayerIndex,
    /// The packet.
    pub packet: Packet,
}

/// A participant of another engine, as this one mirrors it.
#[derive(Debug)]
pub(super) struct Remote {
    /// The engine it is connected to.
    pub shard: ShardId,
    /// Room name.
    pub room: String,
    /// Who it is (tracks kept empty).
    pub view: ParticipantView,
    /// The mirror tracks it publishes.
    pub published: Vec<TrackKey>,
}

/// Where a track comes from when its publisher is on another engine.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The publisher's engine.
    pub shard: ShardId,
    /// The track's key there.
    pub key: TrackKey,
    /// Every payload type of the publisher's connection.
    pub params: Vec<PayloadParams>,
    /// The layer mask last sent upstream as this engine's needs.
    pub needs_sent: Option<u8>,
}

/// The engine's side of the rooms it shares with other engines.
#[derive(Debug, Default)]
pub(super) struct Shards {
    /// Room -> the other engines that share it.
    links: HashMap<String, Vec<ShardId>>,
    /// Participants of other engines, by the key this engine gave them.
    pub remotes: HashMap<ParticipantKey, Remote>,
    /// Their ids.
    remote_ids: HashMap<String, ParticipantKey>,
    /// (engine, its track key) -> the mirror track here.
    mirrors: HashMap<(ShardId, TrackKey), TrackKey>,
    /// Messages to send, in order.
    out: VecDeque<(ShardId, ShardMessage)>,
    /// Packets gathered in this turn, per engine, sent after the messages queued before them.
    media: Vec<(ShardId, Vec<Relayed>)>,
}

impl Shards {
    /// The other engines sharing `room`.
    pub fn links(&self, room: &str) -> &[ShardId] {
        self.links.get(room).map_or(&[], Vec::as_slice)
    }

    /// Queue `msg` for `to`, after the packets gathered for it so far.
    fn send(&mut self, to: ShardId, msg: ShardMessage) {
        self.flush_media(Some(to));
        self.out.push_back((to, msg));
    }

    /// Queue a message made by `msg` for every other engine of `room`.
    fn broadcast(&mut self, room: &str, msg: impl Fn() -> ShardMessage) {
        let Some(links) = self.links.get(room) else {
            return;
        };
        for to in links.clone() {
            self.send(to, msg());
        }
    }

    /// Hand a packet of track `tk` to engine `to` (gathered into one message per receive batch).
    pub fn relay(&mut self, to: ShardId, tk: TrackKey, layer: LayerIndex, packet: &Packet) {
        let relayed = Relayed {
            track: tk,
            layer,
            packet: packet.clone(),
        };
        match self.media.iter_mut().find(|(s, _)| *s == to) {
            Some((_, batch)) => batch.push(relayed),
            None => self.media.push((to, vec![relayed])),
        }
    }

    /// Move the gathered packets (for `to`, or for everyone) into the outgoing queue.
    fn flush_media(&mut self, to: Option<ShardId>) {
        let mut i = 0;
        while i < self.media.len() {
            if to.is_none_or(|t| t == self.media[i].0) {
                let (s, batch) = self.media.swap_remove(i);
                self.out.push_back((s, ShardMessage::Media(batch)));
            } else {
                i += 1;
            }
        }
    }
}

impl Engine {
    /// Engine `peer` shares `room` from now on: it is told about this engine's participants and
    /// tracks in the room, and what happens to them from now on. Call it on both engines.
    pub fn link_shard(&mut self, room: &str, peer: ShardId) {
        let links = self.shards.links.entry(room.to_owned()).or_default();
        if links.contains(&peer) {
            return;
        }
        links.push(peer);
        debug!(%room, peer, "room shared with another worker");
        self.send_snapshot(room, peer);
    }

    /// Tell engine `peer` about this engine's participants and tracks in `room`.
    fn send_snapshot(&mut self, room: &str, peer: ShardId) {
        let Some(r) = self.rooms.room(room) else {
            return;
        };
        let mut msgs = Vec::new();
        for k in &r.participants {
            if let Some(p) = self.participants.get(k) {
                let mut participant = p.view(&self.rooms);
                participant.tracks.clear();
                msgs.push(ShardMessage::Joined {
                    room: room.to_owned(),
                    participant,
                });
            }
        }
        for &tk in &r.tracks {
            if let Some(msg) = self.published_message(tk) {
                msgs.push(msg);
            }
        }
        for msg in msgs {
            self.shards.send(peer, msg);
        }
    }

    /// Engine `peer` no longer shares `room` (it has nobody left in it, or it is gone): its
    /// participants leave the room here, their tracks are unpublished, and nothing more is sent
    /// to it.
    pub fn unlink_shard(&mut self, now: Instant, room: &str, peer: ShardId) {
        if let Some(links) = self.shards.links.get_mut(room) {
            links.retain(|s| *s != peer);
            if links.is_empty() {
                self.shards.links.remove(room);
            }
        }
        let gone: Vec<String> = self
            .shards
            .remotes
            .values()
            .filter(|r| r.shard == peer && r.room == room)
            .map(|r| r.view.id.clone())
            .collect();
        for id in gone {
            self.remote_left(&id, LeaveReason::Disconnected);
        }
        if let Some(r) = self.rooms.room(room) {
            for tk in r.tracks.clone() {
                if let Some(t) = self.rooms.track_mut(tk) {
                    if t.relays.iter().any(|(s, _)| *s == peer) {
                        t.relays.retain(|(s, _)| *s != peer);
                        self.agenda.dynacast(tk);
                    }
                }
            }
        }
        self.process(now);
    }

    /// The next message for another engine: `(to, message)`. Drain it after every input, like
    /// [`Engine::poll_transmit`].
    pub fn poll_shard(&mut self) -> Option<(ShardId, ShardMessage)> {
        if self.shards.out.is_empty() {
            self.shards.flush_media(None);
        }
        let next = self.shards.out.pop_front();
        if let Some((_, ShardMessage::Media(batch))) = &next {
            self.stats.relayed_out += batch.len() as u64;
        }
        next
    }

    /// A message from engine `from` about a room they share. Call [`Engine::flush`] after a
    /// batch of them.
    pub fn handle_shard(&mut self, now: Instant, from: ShardId, msg: ShardMessage) {
        // A message sent before the sender heard that the room is no longer shared with this
        // engine (or before it was again) must not bring back what the unlink took away.
        let linked = |room: &str| self.shards.links(room).contains(&from);
        match &msg {
            ShardMessage::Joined { room, .. }
            | ShardMessage::Updated { room, .. }
            | ShardMessage::Published { room, .. }
            | ShardMessage::Data { room, .. }
            | ShardMessage::Reconnecting { room, .. }
            | ShardMessage::Quality { room, .. }
                if !linked(room) =>
            {
                return;
            }
            ShardMessage::Needs { track, .. } => {
                let room = self
                    .rooms
                    .track(*track)
                    .and_then(|t| self.publisher_room(t.publisher));
                if !room.is_some_and(linked) {
                    return;
                }
            }
            _ => {}
        }
        match msg {
            ShardMessage::Joined { room, participant } => {
                self.remote_joined(from, room, participant)
            }
            ShardMessage::Left {
                participant,
                reason,
                ..
            } => self.remote_left(&participant, reason),
            ShardMessage::Updated { room, participant } => {
                let Some(&key) = self.shards.remote_ids.get(&participant.id) else {
                    return;
                };
                if let Some(r) = self.shards.remotes.get_mut(&key) {
                    r.view.name = participant.name;
                    r.view.metadata = participant.metadata;
                }
                if let Some(participant) = self.remote_view(key) {
                    self.emit(Event::ParticipantUpdated { room, participant });
                }
            }
            ShardMessage::Published {
                room,
                publisher,
                track,
            } => self.mirror_published(from, room, &publisher, *track),
            ShardMessage::Reconnecting {
                room,
                participant,
                reconnecting,
            } => {
                if self.shards.remote_ids.contains_key(&participant) {
                    self.emit(Event::Reconnecting {
                        room,
                        participant,
                        reconnecting,
                    });
                }
            }
            ShardMessage::Quality {
                room,
                participant,
                quality,
            } => {
                if self.shards.remote_ids.contains_key(&participant) {
                    self.emit(Event::ConnectionQuality {
                        room,
                        participant,
                        quality,
                    });
                }
            }
            ShardMessage::Unpublished { track } => {
                if let Some(&tk) = self.shards.mirrors.get(&(from, track)) {
                    self.unpublish(tk);
                }
            }
            ShardMessage::Muted { track, muted } => {
                if let Some(&tk) = self.shards.mirrors.get(&(from, track)) {
                    self.apply_mute(now, tk, muted);
                }
            }
            ShardMessage::PublisherLayers { track, mask } => {
                if let Some(&tk) = self.shards.mirrors.get(&(from, track)) {
                    if let Some(t) = self.rooms.track_mut(tk) {
                        t.set_publisher_mask(now, mask);
                        self.agenda.layers_changed(tk);
                    }
                }
            }
            ShardMessage::Media(batch) => {
                self.stats.relayed_in += batch.len() as u64;
                for r in batch {
                    let Some(&tk) = self.shards.mirrors.get(&(from, r.track)) else {
                        continue;
                    };
                    let Some(publisher) = self.rooms.track(tk).map(|t| t.publisher) else {
                        continue;
                    };
                    self.forward_packet(now, publisher, tk, r.layer, r.packet);
                    // As after each datagram of a local publisher: a layer that appeared is
                    // allocated before the next packet.
                    self.process(now);
                }
            }
            ShardMessage::Needs { track, mask } => {
                let Some(t) = self.rooms.track_mut(track) else {
                    return;
                };
                if t.origin.is_some() {
                    return; // only the publisher's engine relays a track
                }
                t.relays.retain(|(s, _)| *s != from);
                if mask != 0 {
                    t.relays.push((from, mask));
                }
                self.agenda.dynacast(track);
            }
            ShardMessage::Keyframe { track, layer } => {
                if self.rooms.track(track).is_some_and(|t| t.origin.is_none()) {
                    self.request_keyframe_after(now, track, layer, Duration::ZERO);
                }
            }
            ShardMessage::Data {
                room,
                label,
                binary,
                to,
                data,
            } => self.deliver_data(&room, None, &label, binary, to.as_deref(), &data),
        }
        self.process(now);
    }

    /// The message that announces local track `tk` to another engine.
    fn published_message(&self, tk: TrackKey) -> Option<ShardMessage> {
        let t = self.rooms.track(tk)?;
        if t.origin.is_some() {
            return None;
        }
        let p = self.participants.get(&t.publisher)?;
        Some(ShardMessage::Published {
            room: p.room.clone(),
            publisher: p.id.clone(),
            track: Box::new(TrackSpec {
                key: tk,
                id: t.id.clone(),
                kind: t.kind,
                mid: t.mid,
                rids: t.layers.iter().map(|l| l.rid).collect(),
                codecs: t.codecs.clone(),
                params: p.rtc.codec_config().params().to_vec(),
                muted: t.muted,
                source: t.source,
                priority: t.priority,
                publisher_mask: t.publisher_mask,
            }),
        })
    }

    /// Tell the other engines of `room` that local track `tk` was published.
    pub(super) fn announce_track(&mut self, room: &str, tk: TrackKey) {
        if self.shards.links(room).is_empty() {
            return;
        }
        for to in self.shards.links(room).to_vec() {
            if let Some(msg) = self.published_message(tk) {
                self.shards.send(to, msg);
            }
        }
    }

    /// Tell the other engines of `room` about a local participant (`joined`: it joined; else it
    /// changed).
    pub(super) fn announce_participant(
        &mut self,
        room: &str,
        view: &ParticipantView,
        joined: bool,
    ) {
        let mut participant = view.clone();
        participant.tracks.clear();
        self.shards.broadcast(room, || {
            if joined {
                ShardMessage::Joined {
                    room: room.to_owned(),
                    participant: participant.clone(),
                }
            } else {
                ShardMessage::Updated {
                    room: room.to_owned(),
                    participant: participant.clone(),
                }
            }
        });
    }

    /// Tell the other engines of `room` that local participant `id` is reconnecting, or back.
    pub(super) fn announce_reconnecting(&mut self, room: &str, id: &str, reconnecting: bool) {
        self.shards.broadcast(room, || ShardMessage::Reconnecting {
            room: room.to_owned(),
            participant: id.to_owned(),
            reconnecting,
        });
    }

    /// Tell the other engines of `room` how local participant `id`'s connection is now.
    pub(super) fn announce_quality(&mut self, room: &str, id: &str, quality: Quality) {
        self.shards.broadcast(room, || ShardMessage::Quality {
            room: room.to_owned(),
            participant: id.to_owned(),
            quality,
        });
    }

    /// Tell the other engines of `room` that local participant `id` left.
    pub(super) fn announce_left(&mut self, room: &str, id: &str, reason: LeaveReason) {
        self.shards.broadcast(room, || ShardMessage::Left {
            room: room.to_owned(),
            participant: id.to_owned(),
            reason,
        });
    }

    /// Tell the other engines of `room` what `msg` makes (a change to one of its local tracks).
    pub(super) fn announce_track_change(&mut self, room: &str, msg: impl Fn() -> ShardMessage) {
        self.shards.broadcast(room, msg);
    }

    /// Hand a data message of a local participant to the other engines of `room`.
    pub(super) fn relay_data(
        &mut self,
        room: &str,
        label: &str,
        binary: bool,
        to: Option<&[String]>,
        data: &[u8],
    ) {
        if self.shards.links(room).is_empty() {
            return;
        }
        let data: Arc<[u8]> = data.into();
        self.shards.broadcast(room, || ShardMessage::Data {
            room: room.to_owned(),
            label: label.to_owned(),
            binary,
            to: to.map(<[String]>::to_vec),
            data: data.clone(),
        });
    }

    /// A keyframe of mirror track `tk` is needed: ask its engine.
    pub(super) fn request_remote_keyframe(&mut self, tk: TrackKey, layer: LayerIndex) {
        let Some(origin) = self.rooms.track(tk).and_then(|t| t.origin.as_ref()) else {
            return;
        };
        let (shard, track) = (origin.shard, origin.key);
        self.shards
            .send(shard, ShardMessage::Keyframe { track, layer });
    }

    /// Tell the engine of mirror track `tk` which of its layers this engine's subscribers need,
    /// if that changed.
    pub(super) fn send_needs(&mut self, tk: TrackKey, needed: u8) {
        let Some(t) = self.rooms.track_mut(tk) else {
            return;
        };
        let mask = if t.subscribers.is_empty() { 0 } else { needed };
        let Some(origin) = t.origin.as_mut() else {
            return;
        };
        if origin.needs_sent == Some(mask) {
            return;
        }
        origin.needs_sent = Some(mask);
        let (shard, track) = (origin.shard, origin.key);
        self.shards.send(shard, ShardMessage::Needs { track, mask });
    }

    /// Tell the engines that relay local track `tk` which layers its publisher sends now.
    pub(super) fn announce_publisher_mask(&mut self, tk: TrackKey, mask: u8) {
        let Some(t) = self.rooms.track(tk) else {
            return;
        };
        let to: Vec<ShardId> = t.relays.iter().map(|(s, _)| *s).collect();
        for s in to {
            self.shards
                .send(s, ShardMessage::PublisherLayers { track: tk, mask });
        }
    }

    /// A participant of engine `from` joined `room`.
    fn remote_joined(&mut self, from: ShardId, room: String, participant: ParticipantView) {
        if self.shards.remote_ids.contains_key(&participant.id)
            || self.demux.id(&participant.id).is_some()
        {
            return;
        }
        let key = self.next_key;
        self.next_key += 1;
        self.rooms
            .room_or_new(&room, &mut self.next_key)
            .remotes
            .push(key);
        self.shards.remote_ids.insert(participant.id.clone(), key);
        let mut view = participant;
        view.tracks.clear();
        self.emit(Event::RemoteJoined {
            room: room.clone(),
            participant: view.clone(),
        });
        self.shards.remotes.insert(
            key,
            Remote {
                shard: from,
                room,
                view,
                published: Vec::new(),
            },
        );
    }

    /// A participant of another engine left: its mirror tracks are unpublished first.
    fn remote_left(&mut self, id: &str, reason: LeaveReason) {
        let Some(&key) = self.shards.remote_ids.get(id) else {
            return;
        };
        let published = self
            .shards
            .remotes
            .get(&key)
            .map(|r| r.published.clone())
            .unwrap_or_default();
        for tk in published {
            self.unpublish(tk);
        }
        self.shards.remote_ids.remove(id);
        let Some(remote) = self.shards.remotes.remove(&key) else {
            return;
        };
        self.timers.forget(key);
        if let Some(r) = self.rooms.room_mut(&remote.room) {
            r.remotes.retain(|k| *k != key);
            if r.is_empty() {
                if let Some(rk) = self.rooms.remove_room(&remote.room) {
                    self.timers.forget(rk);
                }
            }
        }
        self.emit(Event::RemoteLeft {
            room: remote.room,
            participant: remote.view.id,
            reason,
        });
    }

    /// A remote participant with its tracks.
    pub(super) fn remote_view(&self, key: ParticipantKey) -> Option<ParticipantView> {
        let r = self.shards.remotes.get(&key)?;
        let mut view = r.view.clone();
        view.tracks = r
            .published
            .iter()
            .filter_map(|tk| self.rooms.track(*tk).map(Track::view))
            .collect();
        Some(view)
    }

    /// A participant of engine `from` published a track: mirror it, and offer it to the local
    /// participants who may subscribe.
    fn mirror_published(&mut self, from: ShardId, room: String, publisher: &str, spec: TrackSpec) {
        let Some(&pk) = self.shards.remote_ids.get(publisher) else {
            return;
        };
        if self.shards.mirrors.contains_key(&(from, spec.key)) {
            return;
        }
        let tk = self.next_key;
        self.next_key += 1;
        let layers = spec
            .rids
            .iter()
            .map(|rid| Layer {
                rid: *rid,
                ..Layer::default()
            })
            .collect();
        let track = Track {
            id: spec.id,
            kind: spec.kind,
            publisher: pk,
            publisher_id: publisher.to_owned(),
            mid: spec.mid,
            subscribers: Vec::new(),
            layers,
            codec: None,
            codecs: spec.codecs,
            in_params: None,
            last_audio: None,
            muted: spec.muted,
            source: spec.source,
            priority: spec.priority,
            publisher_mask: spec.publisher_mask,
            svc: false,
            temporal: Default::default(),
            pause_due: None,
            speaker: Default::default(),
            origin: Some(Origin {
                shard: from,
                key: spec.key,
                params: spec.params,
                needs_sent: None,
            }),
            relays: Vec::new(),
        };
        let view = track.view();
        self.rooms.add_track(tk, track);
        self.shards.mirrors.insert((from, spec.key), tk);
        if let Some(r) = self.shards.remotes.get_mut(&pk) {
            r.published.push(tk);
        }
        let Some(r) = self.rooms.room_mut(&room) else {
            return;
        };
        r.tracks.push(tk);
        self.offer_track(&room, tk, None);
        self.emit(Event::TrackPublished {
            room,
            participant: publisher.to_owned(),
            track: view,
        });
    }

    /// Forget mirror track `tk` (it was unpublished, or nobody here needs it any more).
    pub(super) fn forget_mirror(&mut self, tk: TrackKey, track: &Track) {
        let Some(origin) = &track.origin else {
            return;
        };
        self.shards.mirrors.remove(&(origin.shard, origin.key));
        if origin.needs_sent.is_some_and(|m| m != 0) {
            let msg = ShardMessage::Needs {
                track: origin.key,
                mask: 0,
            };
            self.shards.send(origin.shard, msg);
        }
        if let Some(r) = self.shards.remotes.get_mut(&track.publisher) {
            r.published.retain(|t| *t != tk);
        }
    }

    /// The room and id of a track's publisher, local or on another engine.
    pub(super) fn publisher_room(&self, key: ParticipantKey) -> Option<&str> {
        match self.participants.get(&key) {
            Some(p) => Some(&p.room),
            None => self.shards.remotes.get(&key).map(|r| r.room.as_str()),
        }
    }

    /// The tracks a participant publishes, local or on another engine.
    pub(super) fn published_by(&self, key: ParticipantKey) -> Vec<TrackKey> {
        match self.participants.get(&key) {
            Some(p) => p.published.iter().map(|(_, tk)| *tk).collect(),
            None => self
                .shards
                .remotes
                .get(&key)
                .map(|r| r.published.clone())
                .unwrap_or_default(),
        }
    }

    /// Participants of other engines in `room`, with their tracks, in join order.
    pub(super) fn remotes_of(&self, room: &str) -> Vec<ParticipantView> {
        self.rooms
            .room(room)
            .map(|r| {
                r.remotes
                    .iter()
                    .filter_map(|k| self.remote_view(*k))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `id` is a participant of another engine sharing one of this engine's rooms.
    pub fn is_remote(&self, id: &str) -> bool {
        self.shards.remote_ids.contains_key(id)
    }
}
