//! Read access to rooms and participants for the operator (REST API, webhooks), and room-wide
//! notices. Nothing here touches media state.

use signal::protocol::{ParticipantInfo, ServerMessage};

use super::Engine;

impl Engine {
    /// Participant `id` as the protocol describes it, with its published tracks.
    pub fn participant_info(&self, id: &str) -> Option<ParticipantInfo> {
        let key = self.by_id.get(id)?;
        self.participants.get(key).map(|p| p.info(&self.tracks))
    }

    /// The room participant `id` is in.
    pub fn participant_room(&self, id: &str) -> Option<&str> {
        let key = self.by_id.get(id)?;
        self.participants.get(key).map(|p| p.room.as_str())
    }

    /// Every participant of `room` with its tracks, in join order.
    pub fn participants_info(&self, room: &str) -> Vec<ParticipantInfo> {
        self.rooms
            .get(room)
            .map(|r| {
                r.participants
                    .iter()
                    .filter_map(|k| self.participants.get(k))
                    .map(|p| p.info(&self.tracks))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A value that changes whenever a track is published or unpublished (and when someone
    /// joins): one comparison tells the I/O layer whether to look at the participants' tracks.
    /// Tracks appear when a connection is up, not when its offer is answered.
    pub fn track_epoch(&self) -> (u64, usize) {
        (self.next_key, self.tracks.len())
    }

    /// How many tracks are published on this engine.
    pub fn track_count(&self) -> usize {
        self.tracks.len()
    }

    /// Queues `msg` for participant `id` alone, after what is queued for it already.
    pub fn notify(&mut self, id: &str, msg: ServerMessage) {
        if self.by_id.contains_key(id) {
            self.signals.push_back((id.to_owned(), msg));
        }
    }

    /// Tells everyone in `room` its new metadata with [`ServerMessage::RoomUpdated`].
    pub fn set_room_metadata(&mut self, room: &str, metadata: &str) {
        for id in self.room_participants(room) {
            self.signals.push_back((
                id,
                ServerMessage::RoomUpdated {
                    room: room.to_owned(),
                    metadata: metadata.to_owned(),
                },
            ));
        }
    }
}
