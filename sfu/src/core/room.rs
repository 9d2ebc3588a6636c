//! Rooms: who is in which room, which tracks are published in it, and which track and layer each
//! incoming stream belongs to.

use std::collections::HashMap;
use std::time::Instant;

use rustc_hash::FxHashMap;
use str0m::rtp::Ssrc;

use super::codecs::VideoCodecs;
use super::forward::select::LayerIndex;
use super::participant::ParticipantKey;
use super::track::Track;

/// Internal track key: unique within an engine, never reused.
pub type TrackKey = u64;

/// Internal room key, from the same counter as participants and tracks: a room's deadlines
/// are kept under it.
pub type RoomKey = u64;

/// A room: its participants and tracks, in join/publish order.
#[derive(Debug, Default)]
pub struct Room {
    /// Its key, for its deadlines.
    pub key: RoomKey,
    /// Participants connected to this engine, in join order.
    pub participants: Vec<ParticipantKey>,
    /// Participants connected to other engines sharing the room (see
    /// [`shard`](super::shard)), in the order this engine heard of them.
    pub remotes: Vec<ParticipantKey>,
    /// Tracks, in publish order.
    pub tracks: Vec<TrackKey>,
    /// The video codecs its publishers may send, in order of preference.
    pub video_codecs: VideoCodecs,
    /// When the room was last told who speaks, and whether a change waits for the next turn
    /// (see [`SPEAKERS_INTERVAL`](super::speakers::SPEAKERS_INTERVAL)).
    pub speakers_sent: Option<Instant>,
    pub speakers_pending: bool,
}

impl Room {
    /// Nobody left in it, here or on another engine.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty() && self.remotes.is_empty()
    }
}

/// The rooms of an engine and their tracks.
#[derive(Debug, Default)]
pub struct Rooms {
    rooms: HashMap<String, Room>,
    /// Room key -> name, for the rooms' deadlines. A fast hash: the keys are the engine's own.
    names: FxHashMap<RoomKey, String>,
    /// A fast hash: the keys are the engine's own, see `Engine::participants`.
    tracks: FxHashMap<TrackKey, Track>,
    /// SSRC of an incoming stream -> track and layer, per publisher.
    ssrcs: HashMap<(ParticipantKey, Ssrc), (TrackKey, LayerIndex)>,
}

impl Rooms {
    /// Room `name`.
    pub fn room(&self, name: &str) -> Option<&Room> {
        self.rooms.get(name)
    }

    /// Room `name`, to change.
    pub fn room_mut(&mut self, name: &str) -> Option<&mut Room> {
        self.rooms.get_mut(name)
    }

    /// Room `name`, created empty if there is none (taking its key from `next_key`).
    pub fn room_or_new(&mut self, name: &str, next_key: &mut u64) -> &mut Room {
        self.rooms.entry(name.to_owned()).or_insert_with(|| {
            let key = *next_key;
            *next_key += 1;
            self.names.insert(key, name.to_owned());
            Room {
                key,
                ..Room::default()
            }
        })
    }

    /// The name of the room with key `key`.
    pub fn name_of(&self, key: RoomKey) -> Option<&str> {
        self.names.get(&key).map(String::as_str)
    }

    /// Room `name` is gone (its last participant left). Returns its key, whose deadlines the
    /// caller drops.
    pub fn remove_room(&mut self, name: &str) -> Option<RoomKey> {
        let room = self.rooms.remove(name)?;
        self.names.remove(&room.key);
        Some(room.key)
    }

    /// How many rooms there are.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Track `tk`.
    pub fn track(&self, tk: TrackKey) -> Option<&Track> {
        self.tracks.get(&tk)
    }

    /// Track `tk`, to change.
    pub fn track_mut(&mut self, tk: TrackKey) -> Option<&mut Track> {
        self.tracks.get_mut(&tk)
    }

    /// A new track.
    pub fn add_track(&mut self, tk: TrackKey, track: Track) {
        self.tracks.insert(tk, track);
    }

    /// Track `tk` is unpublished; its streams are forgotten.
    pub fn remove_track(&mut self, tk: TrackKey) -> Option<Track> {
        let track = self.tracks.remove(&tk)?;
        self.ssrcs.retain(|_, (t, _)| *t != tk);
        Some(track)
    }

    /// How many tracks are published.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// The track and layer of incoming stream `ssrc` of publisher `key`, once learnt.
    pub fn stream(&self, key: ParticipantKey, ssrc: Ssrc) -> Option<(TrackKey, LayerIndex)> {
        self.ssrcs.get(&(key, ssrc)).copied()
    }

    /// Incoming stream `ssrc` of publisher `key` carries `layer` of track `tk`.
    pub fn learn_stream(
        &mut self,
        key: ParticipantKey,
        ssrc: Ssrc,
        tk: TrackKey,
        layer: LayerIndex,
    ) {
        self.ssrcs.insert((key, ssrc), (tk, layer));
    }
}
