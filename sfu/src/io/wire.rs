//! From the engine's [`Event`]s to the world, in one place: the protocol messages each
//! participant gets, the webhooks, the log lines about refused input and the event metrics. And
//! the other way: a client's parsed signal becomes the engine's [`Request`].
//!
//! The engine says what happened in a room; who hears of it follows from the room's members,
//! which the [`Wire`] keeps from the same events (`Joined` adds one, `Left` takes one away), so
//! the recipients of a message are exactly the participants who were in the room when the event
//! happened.

use std::collections::HashMap;
use std::time::Instant;

use signal::limits::LogThrottle;
use signal::protocol::{
    ErrorCode, IceServer, ParticipantInfo, ResumeTicket, ServerMessage, SignalError,
    Speaker as WireSpeaker, StreamStateKind, TrackInfo, TrackKind, TrackSource as WireSource,
    PROTOCOL_VERSION,
};
use signal::webhook::{EventKind, WebhookEvent};
use signal::ClientSignal;
use str0m::media::MediaKind;
use tracing::info;

use super::webhook::Webhooks;
use crate::core::limits::BAD_INPUT_LOG_INTERVAL;
use crate::core::{
    Error, Event, LeaveReason, ParticipantView, Request, Speaker, StreamState, TrackSource,
    TrackView,
};

/// The translation of one engine's events. See the module docs.
pub struct Wire {
    webhooks: Webhooks,
    /// Members of each room, in join order.
    rooms: HashMap<String, Vec<String>>,
    /// Each participant without its tracks (webhooks describe a participant apart from them).
    members: HashMap<String, ParticipantInfo>,
    /// ICE servers and resume tickets to hand to participants whose join is under way.
    expected: HashMap<String, (Vec<IceServer>, Option<ResumeTicket>)>,
    /// Refused SDPs and candidates are logged at most once per interval.
    bad_input_log: LogThrottle,
}

impl Wire {
    /// No rooms yet; participant and track events go to `webhooks`.
    pub fn new(webhooks: Webhooks) -> Self {
        Wire {
            webhooks,
            rooms: HashMap::new(),
            members: HashMap::new(),
            expected: HashMap::new(),
            bad_input_log: LogThrottle::new(BAD_INPUT_LOG_INTERVAL),
        }
    }

    /// Participant `id` is about to join: its `joined` message carries `ice_servers` (TURN
    /// credentials are per participant) and its resume ticket.
    pub fn expect_join(
        &mut self,
        id: &str,
        ice_servers: Vec<IceServer>,
        resume: Option<ResumeTicket>,
    ) {
        self.expected.insert(id.to_owned(), (ice_servers, resume));
    }

    /// The join of `id` was refused.
    pub fn join_refused(&mut self, id: &str) {
        self.expected.remove(id);
    }

    /// The participants of `room`, in join order.
    pub fn members(&self, room: &str) -> &[String] {
        self.rooms.get(room).map_or(&[], Vec::as_slice)
    }

    /// Turn one event into messages for participants (`send(participant id, message)`),
    /// webhooks and metrics.
    pub fn translate(
        &mut self,
        now: Instant,
        event: Event,
        send: &mut dyn FnMut(&str, ServerMessage),
    ) {
        match event {
            Event::Joined {
                room,
                participant,
                others,
                speakers,
            } => self.joined(room, participant, others, speakers, send),
            Event::Left {
                room,
                participant,
                reason,
            } => self.left(room, participant, reason, send),
            Event::RemoteJoined { room, participant } => {
                // A participant of another worker: its own worker sends the webhook.
                let info = participant_info(participant);
                self.to_room(&room, send, || ServerMessage::ParticipantJoined {
                    participant: info.clone(),
                });
            }
            Event::RemoteLeft {
                room,
                participant,
                reason,
            } => self.to_room(&room, send, || ServerMessage::ParticipantLeft {
                participant_id: participant.clone(),
                reason: reason.as_str().to_owned(),
            }),
            Event::Reconnecting {
                room,
                participant,
                reconnecting,
            } => self.to_others(&room, &participant, send, || {
                let participant_id = participant.clone();
                if reconnecting {
                    ServerMessage::ParticipantReconnecting { participant_id }
                } else {
                    ServerMessage::ParticipantResumed { participant_id }
                }
            }),
            Event::TrackPublished {
                room,
                participant,
                track,
            } => {
                let track = track_info(track);
                self.to_others(&room, &participant, send, || {
                    ServerMessage::TrackPublished {
                        participant_id: participant.clone(),
                        track: track.clone(),
                    }
                });
                self.track_webhook(EventKind::TrackPublished, &room, &participant, track);
            }
            Event::TrackUnpublished {
                room,
                participant,
                track,
            } => {
                let track = track_info(track);
                self.to_others(&room, &participant, send, || {
                    ServerMessage::TrackUnpublished {
                        participant_id: participant.clone(),
                        track_id: track.id.clone(),
                    }
                });
                self.track_webhook(EventKind::TrackUnpublished, &room, &participant, track);
            }
            Event::TrackMuted {
                room,
                participant,
                track_id,
                muted,
            } => self.to_room(&room, send, || ServerMessage::TrackMuted {
                participant_id: participant.clone(),
                track_id: track_id.clone(),
                muted,
            }),
            Event::ParticipantUpdated { room, participant } => {
                let info = participant_info(participant);
                self.to_room(&room, send, || ServerMessage::ParticipantUpdated {
                    participant: info.clone(),
                });
                if let Some(member) = self.members.get_mut(&info.id) {
                    *member = ParticipantInfo {
                        tracks: Vec::new(),
                        ..info
                    };
                }
            }
            Event::Offer { participant, sdp } => send(&participant, ServerMessage::Offer { sdp }),
            Event::Answer { participant, sdp } => send(&participant, ServerMessage::Answer { sdp }),
            Event::StreamState {
                subscriber,
                publisher,
                track_id,
                state,
            } => send(&subscriber, stream_state(publisher, track_id, state)),
            Event::PublisherLayers {
                participant,
                track_id,
                active,
            } => send(
                &participant,
                ServerMessage::PublisherLayers { track_id, active },
            ),
            Event::ConnectionQuality {
                room,
                participant,
                quality,
            } => self.to_room(&room, send, || ServerMessage::ConnectionQuality {
                participant_id: participant.clone(),
                quality: quality.as_str().to_owned(),
            }),
            Event::Speakers { room, speakers } => {
                let msg = speakers_message(speakers);
                self.to_room(&room, send, || msg.clone());
            }
            Event::Refused { participant, error } => {
                if let Some(detail) = error.detail() {
                    if let Some(refused) = self.bad_input_log.hit(now) {
                        let detail = detail.get(..detail.len().min(300)).unwrap_or("");
                        info!(participant, refused, "{error} ({detail})");
                    }
                }
                send(&participant, signal_error(&error).into());
            }
        }
    }

    /// `participant_joined` to those already there, `joined` (and who speaks) to the newcomer.
    fn joined(
        &mut self,
        room: String,
        participant: ParticipantView,
        others: Vec<ParticipantView>,
        speakers: Vec<Speaker>,
        send: &mut dyn FnMut(&str, ServerMessage),
    ) {
        let info = participant_info(participant);
        let id = info.id.clone();
        self.to_room(&room, send, || ServerMessage::ParticipantJoined {
            participant: info.clone(),
        });
        let (ice_servers, resume) = self.expected.remove(&id).unwrap_or_default();
        let joined = ServerMessage::Joined {
            version: PROTOCOL_VERSION,
            room: room.clone(),
            participant_id: id.clone(),
            participants: others.into_iter().map(participant_info).collect(),
            ice_servers,
            resume,
        };
        send(&id, joined);
        if !speakers.is_empty() {
            send(&id, speakers_message(speakers));
        }
        self.rooms.entry(room.clone()).or_default().push(id.clone());
        self.webhooks
            .emit(WebhookEvent::new(EventKind::ParticipantJoined, &room).participant(info.clone()));
        self.members.insert(id, info);
    }

    /// `participant_left` to those who stay, then `left` to the one leaving.
    fn left(
        &mut self,
        room: String,
        participant: ParticipantView,
        reason: LeaveReason,
        send: &mut dyn FnMut(&str, ServerMessage),
    ) {
        let id = participant.id.clone();
        if let Some(members) = self.rooms.get_mut(&room) {
            members.retain(|m| *m != id);
            if members.is_empty() {
                self.rooms.remove(&room);
            }
        }
        self.to_room(&room, send, || ServerMessage::ParticipantLeft {
            participant_id: id.clone(),
            reason: reason.as_str().to_owned(),
        });
        let left = ServerMessage::Left {
            reason: reason.as_str().to_owned(),
        };
        send(&id, left);
        self.members.remove(&id);
        self.webhooks.emit(
            WebhookEvent::new(EventKind::ParticipantLeft, &room)
                .participant(participant_info(participant))
                .reason(reason.as_str()),
        );
        metrics::counter!("sfu_participants_left_total", "reason" => reason.as_str()).increment(1);
    }

    /// `msg()` to every member of `room`.
    fn to_room(
        &self,
        room: &str,
        send: &mut dyn FnMut(&str, ServerMessage),
        msg: impl Fn() -> ServerMessage,
    ) {
        for m in self.members(room) {
            send(m, msg());
        }
    }

    /// `msg()` to every member of `room` but `except`.
    fn to_others(
        &self,
        room: &str,
        except: &str,
        send: &mut dyn FnMut(&str, ServerMessage),
        msg: impl Fn() -> ServerMessage,
    ) {
        for m in self.members(room).iter().filter(|m| *m != except) {
            send(m, msg());
        }
    }

    /// A track webhook for `participant`'s `track`.
    fn track_webhook(&self, kind: EventKind, room: &str, participant: &str, track: TrackInfo) {
        if !self.webhooks.is_enabled() {
            return;
        }
        let Some(member) = self.members.get(participant) else {
            return;
        };
        self.webhooks.emit(
            WebhookEvent::new(kind, room)
                .participant(member.clone())
                .track(track),
        );
    }
}

/// The engine's request for a client's signal.
pub fn request(signal: ClientSignal) -> Request {
    match signal {
        ClientSignal::Offer(sdp) => Request::Offer(sdp),
        ClientSignal::Answer(sdp) => Request::Answer(sdp),
        ClientSignal::Candidate(c) => Request::Candidate(c.candidate),
        ClientSignal::Mute { track_id, muted } => Request::Mute { track_id, muted },
        ClientSignal::TrackSettings {
            track_id,
            visible,
            width,
            height,
            pinned,
        } => Request::TrackSettings {
            track_id,
            visible,
            width,
            height,
            pinned,
        },
        ClientSignal::TrackSources(sources) => Request::TrackSources(
            sources
                .into_iter()
                .map(|(mid, s)| (mid, core_source(s)))
                .collect(),
        ),
    }
}

/// The leave reason a signalling connection gives (`left`, or `disconnected` for anything else).
pub fn leave_reason(name: &str) -> LeaveReason {
    LeaveReason::from_name(name).unwrap_or(LeaveReason::Disconnected)
}

/// The protocol error for an engine error: the code a client acts on, and the engine's text.
pub fn signal_error(error: &Error) -> SignalError {
    let code = match error {
        Error::IdInUse | Error::ServerCandidate(_) => ErrorCode::Internal,
        Error::UnknownParticipant => ErrorCode::NotJoined,
        Error::UnknownTrack
        | Error::NotSubscribed
        | Error::BadCandidate { .. }
        | Error::BadDataMessage => ErrorCode::BadMessage,
        Error::TooManyOffers { .. } | Error::DataRateLimited { .. } => ErrorCode::RateLimited,
        Error::UnreadableSdp { .. } | Error::SdpMismatch { .. } => ErrorCode::InvalidSdp,
        Error::UnexpectedAnswer => ErrorCode::WrongState,
        Error::TooManyTracks(_) | Error::TooManyCandidates(_) | Error::TooManyScreenShares(_) => {
            ErrorCode::LimitExceeded
        }
        Error::BadTrackSource(_) => ErrorCode::BadMessage,
        Error::MayNotPublish | Error::NotOwnTrack | Error::MayNotSendData => ErrorCode::Forbidden,
        Error::DataTooLarge(_) => ErrorCode::MessageTooLarge,
        Error::CodecNotAllowed { .. } => ErrorCode::UnsupportedCodec,
    };
    SignalError::new(code, error.to_string())
}

/// The error for the REST API: what does not exist is `not_found` there.
pub fn rest_error(error: &Error) -> SignalError {
    match error {
        Error::UnknownTrack => SignalError::new(ErrorCode::NotFound, "no such track"),
        Error::UnknownParticipant => {
            SignalError::new(ErrorCode::NotFound, "no such participant in this room")
        }
        e => signal_error(e),
    }
}

/// A participant as the protocol describes it.
pub fn participant_info(p: ParticipantView) -> ParticipantInfo {
    ParticipantInfo {
        id: p.id,
        name: p.name,
        identity: p.identity,
        metadata: p.metadata,
        tracks: p.tracks.into_iter().map(track_info).collect(),
    }
}

/// A track as the protocol describes it.
pub fn track_info(t: TrackView) -> TrackInfo {
    TrackInfo {
        id: t.id,
        kind: match t.kind {
            MediaKind::Audio => TrackKind::Audio,
            MediaKind::Video => TrackKind::Video,
        },
        muted: t.muted,
        source: match t.source {
            TrackSource::Camera => WireSource::Camera,
            TrackSource::Microphone => WireSource::Microphone,
            TrackSource::Screen => WireSource::Screen,
            TrackSource::ScreenAudio => WireSource::ScreenAudio,
        },
    }
}

/// The engine's name for a source a client named.
fn core_source(s: WireSource) -> TrackSource {
    match s {
        WireSource::Camera => TrackSource::Camera,
        WireSource::Microphone => TrackSource::Microphone,
        WireSource::Screen => TrackSource::Screen,
        WireSource::ScreenAudio => TrackSource::ScreenAudio,
    }
}

fn stream_state(publisher: String, track_id: String, state: StreamState) -> ServerMessage {
    let (state, reason, layer) = match state {
        StreamState::Active { layer } => (StreamStateKind::Active, None, layer),
        StreamState::Paused(r) => (StreamStateKind::Paused, Some(r.as_str().to_owned()), None),
    };
    ServerMessage::StreamState {
        participant_id: publisher,
        track_id,
        state,
        reason,
        layer,
    }
}

fn speakers_message(speakers: Vec<Speaker>) -> ServerMessage {
    ServerMessage::Speakers {
        speakers: speakers
            .into_iter()
            .map(|s| WireSpeaker {
                participant_id: s.participant,
                level: s.level,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Error, PauseReason, SdpKind};
    use tokio::sync::mpsc;

    fn person(id: &str) -> ParticipantView {
        ParticipantView {
            id: id.into(),
            name: id.to_uppercase(),
            identity: None,
            metadata: None,
            tracks: Vec::new(),
        }
    }

    fn mic(id: &str) -> TrackView {
        TrackView {
            id: format!("{id}-0"),
            kind: MediaKind::Audio,
            muted: false,
            source: TrackSource::Microphone,
        }
    }

    /// Translates `events`; returns (recipient, message type) and the webhooks as
    /// (kind, participant, track, reason).
    #[allow(clippy::type_complexity)]
    fn run(
        events: Vec<Event>,
    ) -> (
        Vec<(String, String)>,
        Vec<(String, String, Option<String>, Option<String>)>,
    ) {
        let (tx, mut rx) = mpsc::channel(64);
        let mut wire = Wire::new(Webhooks::to_channel(tx));
        let mut sent = Vec::new();
        for e in events {
            wire.translate(Instant::now(), e, &mut |id, msg| {
                let json = serde_json::to_value(&msg).unwrap();
                sent.push((id.to_owned(), json["type"].as_str().unwrap().to_owned()));
            });
        }
        let mut hooks = Vec::new();
        while let Ok(h) = rx.try_recv() {
            hooks.push((
                h.event.as_str().to_owned(),
                h.participant.map(|p| p.id).unwrap_or_default(),
                h.track.map(|t| t.id),
                h.reason,
            ));
        }
        (sent, hooks)
    }

    fn joined(id: &str, others: &[&str]) -> Event {
        Event::Joined {
            room: "r".into(),
            participant: person(id),
            others: others.iter().map(|o| person(o)).collect(),
            speakers: Vec::new(),
        }
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn each_event_reaches_the_members_of_its_room_and_the_webhooks_once() {
        let (sent, hooks) = run(vec![
            joined("ann", &[]),
            joined("bob", &["ann"]),
            Event::TrackPublished {
                room: "r".into(),
                participant: "ann".into(),
                track: mic("ann"),
            },
            Event::StreamState {
                subscriber: "bob".into(),
                publisher: "ann".into(),
                track_id: "ann-0".into(),
                state: StreamState::Paused(PauseReason::Bandwidth),
            },
            Event::Refused {
                participant: "bob".into(),
                error: Error::UnreadableSdp {
                    kind: SdpKind::Offer,
                    detail: "at byte 3".into(),
                },
            },
            Event::TrackUnpublished {
                room: "r".into(),
                participant: "ann".into(),
                track: mic("ann"),
            },
            Event::Left {
                room: "r".into(),
                participant: person("ann"),
                reason: LeaveReason::Timeout,
            },
            Event::Speakers {
                room: "r".into(),
                speakers: Vec::new(),
            },
        ]);
        assert_eq!(
            sent,
            pairs(&[
                ("ann", "joined"),
                ("ann", "participant_joined"),
                ("bob", "joined"),
                ("bob", "track_published"),
                ("bob", "stream_state"),
                ("bob", "error"),
                ("bob", "track_unpublished"),
                ("bob", "participant_left"),
                ("ann", "left"),
                ("bob", "speakers"),
            ])
        );
        let hook = |k: &str, p: &str, t: Option<&str>, r: Option<&str>| {
            (
                k.to_owned(),
                p.to_owned(),
                t.map(str::to_owned),
                r.map(str::to_owned),
            )
        };
        assert_eq!(
            hooks,
            vec![
                hook("participant_joined", "ann", None, None),
                hook("participant_joined", "bob", None, None),
                hook("track_published", "ann", Some("ann-0"), None),
                hook("track_unpublished", "ann", Some("ann-0"), None),
                hook("participant_left", "ann", None, Some("timeout")),
            ]
        );
    }

    #[test]
    fn a_room_emptied_and_joined_again_starts_with_no_members() {
        let (sent, _) = run(vec![
            joined("ann", &[]),
            Event::Left {
                room: "r".into(),
                participant: person("ann"),
                reason: LeaveReason::Left,
            },
            joined("bob", &[]),
        ]);
        assert_eq!(
            sent,
            pairs(&[("ann", "joined"), ("ann", "left"), ("bob", "joined")])
        );
    }

    #[test]
    fn errors_keep_their_codes_and_the_rest_api_says_not_found() {
        let cases = [
            (Error::TooManyTracks(8), "limit_exceeded"),
            (Error::UnexpectedAnswer, "wrong_state"),
            (Error::DataTooLarge(16), "message_too_large"),
            (Error::NotOwnTrack, "forbidden"),
            (Error::UnknownTrack, "bad_message"),
            (
                Error::CodecNotAllowed {
                    mid: "1".into(),
                    allowed: "H.264".into(),
                },
                "unsupported_codec",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(signal_error(&error).code.as_str(), code, "{error}");
        }
        let e = rest_error(&Error::UnknownTrack);
        assert_eq!(e.code.as_str(), "not_found");
        let sdp = Error::SdpMismatch {
            kind: SdpKind::Answer,
            detail: "secret internals".into(),
        };
        assert!(!signal_error(&sdp).message.contains("secret"));
    }
}
