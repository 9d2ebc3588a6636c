//! Operations on behalf of the operator or the participant itself: mute, metadata.

use std::time::Instant;

use signal::protocol::{ErrorCode, ServerMessage, SignalError};

use super::participant::ParticipantKey;
use super::room::TrackKey;
use super::Engine;

impl Engine {
    /// Mute or unmute track `track_id` of participant `participant_id`. A muted track is not
    /// forwarded; on unmute every subscriber restarts on a fresh keyframe with continuous
    /// numbering. The room is told with [`ServerMessage::TrackMuted`].
    pub fn set_track_muted(
        &mut self,
        now: Instant,
        participant_id: &str,
        track_id: &str,
        muted: bool,
    ) -> Result<(), SignalError> {
        let (key, tk) = self.find_track(participant_id, track_id)?;
        let Some(track) = self.tracks.get_mut(&tk) else {
            return Err(unknown_track());
        };
        if track.muted == muted {
            return Ok(());
        }
        track.muted = muted;
        let subscribers = track.subscribers.clone();
        if muted {
            self.reset_speaker(tk);
        } else {
            for sk in subscribers {
                if let Some(sub) = self
                    .participants
                    .get_mut(&sk)
                    .and_then(|s| s.subs.get_mut(&tk))
                {
                    sub.forwarder.restart();
                }
            }
            self.request_all_keyframes(now, tk);
        }
        let msg = ServerMessage::TrackMuted {
            participant_id: participant_id.to_string(),
            track_id: track_id.to_string(),
            muted,
        };
        self.broadcast_from(key, msg);
        self.flush(now);
        Ok(())
    }

    /// Change a participant's display name and/or metadata; the room (the participant included)
    /// is told with [`ServerMessage::ParticipantUpdated`].
    pub fn update_participant(
        &mut self,
        participant_id: &str,
        name: Option<String>,
        metadata: Option<String>,
    ) -> Result<(), SignalError> {
        let key = *self
            .by_id
            .get(participant_id)
            .ok_or_else(|| SignalError::new(ErrorCode::NotJoined, "no such participant"))?;
        let Some(p) = self.participants.get_mut(&key) else {
            return Err(SignalError::new(
                ErrorCode::NotJoined,
                "no such participant",
            ));
        };
        if let Some(name) = name {
            p.name = name;
        }
        if metadata.is_some() {
            p.metadata = metadata;
        }
        let participant = p.info(&self.tracks);
        self.broadcast_from(key, ServerMessage::ParticipantUpdated { participant });
        Ok(())
    }

    /// Send `msg` to everyone in the room of participant `key`, that participant included.
    fn broadcast_from(&mut self, key: ParticipantKey, msg: ServerMessage) {
        let Some(room) = self.participants.get(&key).map(|p| p.room.clone()) else {
            return;
        };
        let Some(r) = self.rooms.get(&room) else {
            return;
        };
        for k in &r.participants {
            if let Some(p) = self.participants.get(k) {
                self.signals.push_back((p.id.clone(), msg.clone()));
            }
        }
    }

    fn find_track(
        &self,
        participant_id: &str,
        track_id: &str,
    ) -> Result<(ParticipantKey, TrackKey), SignalError> {
        let key = *self.by_id.get(participant_id).ok_or_else(unknown_track)?;
        let p = self.participants.get(&key).ok_or_else(unknown_track)?;
        p.published
            .iter()
            .map(|(_, tk)| *tk)
            .find(|tk| self.tracks.get(tk).is_some_and(|t| t.id == track_id))
            .map(|tk| (key, tk))
            .ok_or_else(unknown_track)
    }
}

fn unknown_track() -> SignalError {
    SignalError::new(ErrorCode::BadMessage, "no such track")
}
