//! Who is speaking: turning the per-track [`SpeakerDetector`](super::voice_activity::SpeakerDetector)
//! flips into `speakers` events for the room and into allocation priority for the speakers'
//! videos.

use std::time::{Duration, Instant};

use str0m::media::MediaKind;

use super::event::{Event, Speaker};
use super::room::{RoomKey, TrackKey};
use super::voice_activity::SILENCE;
use super::{Engine, TimerKind};

/// Allocation priority of a speaker's video (above the rest, below screen share or pinned; see
/// [`subscriber_priority`](super::allocator::subscriber_priority)).
pub const SPEAKER_PRIORITY: u8 = 1;

/// A room is told who speaks at most this often. A change within this time of the last
/// `speakers` message waits until it has passed and goes with any others in one message. Each
/// participant may start or stop speaking every few hundred milliseconds and every such change
/// goes to everyone in the room: without the bound a room's messages would grow with the square
/// of its size.
pub const SPEAKERS_INTERVAL: Duration = Duration::from_millis(300);

impl Engine {
    /// Act on the speech flips of the last batch: tell the rooms and re-prioritise videos.
    pub(super) fn update_speakers(&mut self, now: Instant) {
        let mut rooms: Vec<String> = Vec::new();
        for (tk, speaking) in self.agenda.take_speech() {
            let Some(track) = self.rooms.track(tk) else {
                continue;
            };
            self.stats.speaker_changes += 1;
            let publisher = track.publisher;
            if speaking {
                let at = now + SILENCE;
                self.timers.set(publisher, TimerKind::Speaker(tk), at);
            }
            // The publisher may be on another engine sharing the room: its audio is relayed
            // here, so speech is detected here too.
            let Some(room) = self.publisher_room(publisher).map(str::to_owned) else {
                continue;
            };
            // The publisher's videos follow its speech.
            let priority = if speaking { SPEAKER_PRIORITY } else { 0 };
            let videos: Vec<TrackKey> = self
                .published_by(publisher)
                .into_iter()
                .filter(|t| {
                    self.rooms
                        .track(*t)
                        .is_some_and(|t| t.kind == MediaKind::Video)
                })
                .collect();
            for v in videos {
                if let Some(t) = self.rooms.track_mut(v) {
                    // A screen share keeps its own, higher priority.
                    if t.priority <= SPEAKER_PRIORITY && t.priority != priority {
                        t.priority = priority;
                        self.agenda.allocate_all(t.subscribers.iter().copied());
                    }
                }
            }
            if !rooms.contains(&room) {
                rooms.push(room);
            }
        }
        for room in rooms {
            self.send_speakers(now, &room);
        }
    }

    /// Who speaks in `room` now, loudest first.
    pub(super) fn speakers_of(&self, room: &str) -> Vec<Speaker> {
        let Some(r) = self.rooms.room(room) else {
            return Vec::new();
        };
        let mut speakers: Vec<(f32, Speaker)> = r
            .tracks
            .iter()
            .filter_map(|tk| self.rooms.track(*tk))
            .filter(|t| t.kind == MediaKind::Audio && t.speaker.is_speaking())
            .map(|t| {
                let level = t.speaker.level();
                (
                    level,
                    Speaker {
                        participant: t.publisher_id.clone(),
                        level: (level * 100.0).round() as u8,
                    },
                )
            })
            .collect();
        speakers.sort_by(|a, b| b.0.total_cmp(&a.0));
        speakers.into_iter().map(|(_, s)| s).collect()
    }

    /// Tell `room` who speaks now, or as soon as [`SPEAKERS_INTERVAL`] has passed since it was
    /// last told.
    fn send_speakers(&mut self, now: Instant, room: &str) {
        let Some(r) = self.rooms.room_mut(room) else {
            return;
        };
        if let Some(sent) = r.speakers_sent {
            let next = sent + SPEAKERS_INTERVAL;
            if now < next {
                if !r.speakers_pending {
                    r.speakers_pending = true;
                    self.timers.set(r.key, TimerKind::Speakers, next);
                }
                return;
            }
        }
        r.speakers_sent = Some(now);
        r.speakers_pending = false;
        let speakers = self.speakers_of(room);
        self.emit(Event::Speakers {
            room: room.to_owned(),
            speakers,
        });
    }

    /// The room with key `rk` may be told who speaks again: tell it if a change waits.
    pub(super) fn send_pending_speakers(&mut self, now: Instant, rk: RoomKey) {
        let Some(room) = self.rooms.name_of(rk).map(str::to_owned) else {
            return;
        };
        if self.rooms.room(&room).is_some_and(|r| r.speakers_pending) {
            self.send_speakers(now, &room);
        }
    }

    /// A speaking track's silence check is due.
    pub(super) fn check_speaker(&mut self, now: Instant, tk: TrackKey) {
        let Some(track) = self.rooms.track_mut(tk) else {
            return;
        };
        if !track.speaker.is_speaking() {
            return;
        }
        if track.speaker.handle_timeout(now) == Some(false) {
            self.agenda.speaking(tk, false);
        } else if let Some(last) = track.speaker.last_packet() {
            self.timers
                .set(track.publisher, TimerKind::Speaker(tk), last + SILENCE);
        }
    }

    /// Forget a track's speech (muted): if it was speaking, the room hears that it stopped.
    pub(super) fn reset_speaker(&mut self, tk: TrackKey) {
        if let Some(t) = self.rooms.track_mut(tk) {
            if t.speaker.is_speaking() {
                self.agenda.speaking(tk, false);
            }
            t.speaker.reset();
        }
    }
}
