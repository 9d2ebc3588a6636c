//! Operations on behalf of the operator or the participant itself: mute, metadata, the room's
//! video codecs.

use std::time::Instant;

use super::codecs::VideoCodecs;
use super::event::{Error, Event};
use super::participant::ParticipantKey;
use super::room::TrackKey;
use super::shard::ShardMessage;
use super::Engine;

impl Engine {
    /// The video codecs publishers of `room` may send from now on (if the room is here). Video
    /// m-lines already negotiated keep their codecs.
    pub fn set_video_codecs(&mut self, room: &str, codecs: VideoCodecs) {
        if let Some(r) = self.rooms.room_mut(room) {
            r.video_codecs = codecs;
        }
    }

    /// Mute or unmute track `track_id` of participant `participant_id`. A muted track is not
    /// forwarded; on unmute every subscriber restarts on a fresh keyframe with continuous
    /// numbering. The room hears of it with [`Event::TrackMuted`].
    pub fn set_track_muted(
        &mut self,
        now: Instant,
        participant_id: &str,
        track_id: &str,
        muted: bool,
    ) -> Result<(), Error> {
        let (key, tk) = self.find_track(participant_id, track_id)?;
        if !self.apply_mute(now, tk, muted) {
            return Ok(());
        }
        if let Some(room) = self.participants.get(&key).map(|p| p.room.clone()) {
            self.announce_track_change(&room, || ShardMessage::Muted { track: tk, muted });
        }
        self.flush(now);
        Ok(())
    }

    /// Mute or unmute track `tk` (local or a mirror) and tell the room. Returns whether that
    /// changed anything.
    pub(super) fn apply_mute(&mut self, now: Instant, tk: TrackKey, muted: bool) -> bool {
        let Some(track) = self.rooms.track_mut(tk) else {
            return false;
        };
        if track.muted == muted {
            return false;
        }
        track.muted = muted;
        let subscribers = track.subscribers.clone();
        let (publisher, participant, track_id) = (
            track.publisher,
            track.publisher_id.clone(),
            track.id.clone(),
        );
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
        if let Some(room) = self.publisher_room(publisher) {
            let muted = Event::TrackMuted {
                room: room.to_owned(),
                participant,
                track_id,
                muted,
            };
            self.emit(muted);
        }
        true
    }

    /// Change a participant's display name and/or metadata ([`Event::ParticipantUpdated`]).
    pub fn update_participant(
        &mut self,
        participant_id: &str,
        name: Option<String>,
        metadata: Option<String>,
    ) -> Result<(), Error> {
        let key = self
            .demux
            .id(participant_id)
            .ok_or(Error::UnknownParticipant)?;
        let Some(p) = self.participants.get_mut(&key) else {
            return Err(Error::UnknownParticipant);
        };
        if let Some(name) = name {
            p.name = name;
        }
        if metadata.is_some() {
            p.metadata = metadata;
        }
        let (room, participant) = (p.room.clone(), p.view(&self.rooms));
        self.announce_participant(&room, &participant, false);
        self.emit(Event::ParticipantUpdated { room, participant });
        Ok(())
    }

    fn find_track(
        &self,
        participant_id: &str,
        track_id: &str,
    ) -> Result<(ParticipantKey, TrackKey), Error> {
        let key = self.demux.id(participant_id).ok_or(Error::UnknownTrack)?;
        let p = self.participants.get(&key).ok_or(Error::UnknownTrack)?;
        p.published
            .iter()
            .map(|(_, tk)| *tk)
            .find(|tk| self.rooms.track(*tk).is_some_and(|t| t.id == track_id))
            .map(|tk| (key, tk))
            .ok_or(Error::UnknownTrack)
    }
}
