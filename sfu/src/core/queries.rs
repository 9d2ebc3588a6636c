//! Read access to rooms and participants for the operator (REST API). Nothing here touches media
//! state.

use super::event::ParticipantView;
use super::Engine;

impl Engine {
    /// Participant `id`, with its published tracks.
    pub fn participant(&self, id: &str) -> Option<ParticipantView> {
        let key = self.demux.id(id)?;
        self.participants.get(&key).map(|p| p.view(&self.rooms))
    }

    /// The room participant `id` is in.
    pub fn participant_room(&self, id: &str) -> Option<&str> {
        let key = self.demux.id(id)?;
        self.participants.get(&key).map(|p| p.room.as_str())
    }

    /// Every participant of `room` with its tracks, in join order: those connected to this
    /// engine, then those of other engines sharing the room.
    pub fn participants_of(&self, room: &str) -> Vec<ParticipantView> {
        let mut all: Vec<ParticipantView> = self
            .rooms
            .room(room)
            .map(|r| {
                r.participants
                    .iter()
                    .filter_map(|k| self.participants.get(k))
                    .map(|p| p.view(&self.rooms))
                    .collect()
            })
            .unwrap_or_default();
        all.extend(self.remotes_of(room));
        all
    }

    /// How many tracks are published on this engine.
    pub fn track_count(&self) -> usize {
        self.rooms.track_count()
    }
}
