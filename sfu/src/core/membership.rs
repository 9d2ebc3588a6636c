//! Joining and leaving: a participant's connection is made on join and torn down on leave,
//! with its tracks unpublished first.

use std::collections::HashMap;
use std::time::Instant;

use rustc_hash::FxHashMap;
use str0m::net::TcpType;
use str0m::Candidate;
use tracing::info;

use super::codecs::VideoCodecs;
use super::demux::IcePaths;
use super::egress::Playback;
use super::event::{Error, Event, LeaveReason, ParticipantView};
use super::limits::TokenBucket;
use super::participant::{Grants, Negotiation, Participant, ParticipantKey};
use super::{Engine, TimerKind};

/// Who joins, and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSpec {
    /// Participant id, unique on the server (chosen by the caller).
    pub id: String,
    /// Room name.
    pub room: String,
    /// Display name.
    pub name: String,
    /// The identity from the access token, if any.
    pub identity: Option<String>,
    /// Operator metadata, opaque to the server.
    pub metadata: Option<String>,
    /// May publish tracks. Without it, m-lines the client sends on are set inactive.
    pub can_publish: bool,
    /// May receive the others' tracks.
    pub can_subscribe: bool,
    /// May send data-channel messages.
    pub can_publish_data: bool,
    /// The room's video codec policy, as the room registry has it now: every join brings it,
    /// so that the engine's copy follows the registry's.
    pub video_codecs: VideoCodecs,
    /// Receive only the tracks of the participant with this identity, on the m-lines of its own
    /// offer, and never an offer from the server (a WHEP player). Needs `can_subscribe`.
    pub plays: Option<String>,
}

impl JoinSpec {
    /// A participant with every right.
    pub fn new(id: impl Into<String>, room: impl Into<String>, name: impl Into<String>) -> Self {
        JoinSpec {
            id: id.into(),
            room: room.into(),
            name: name.into(),
            identity: None,
            metadata: None,
            can_publish: true,
            can_subscribe: true,
            can_publish_data: true,
            video_codecs: VideoCodecs::any(),
            plays: None,
        }
    }
}

impl Engine {
    /// Admit a participant into its room, creating the room if needed ([`Event::Joined`]).
    pub fn join(&mut self, now: Instant, spec: JoinSpec) -> Result<(), Error> {
        let JoinSpec {
            id,
            room,
            name,
            identity,
            metadata,
            can_publish,
            can_subscribe,
            can_publish_data,
            video_codecs,
            plays,
        } = spec;
        let plays = plays.filter(|_| can_subscribe).map(Playback::new);
        if self.demux.id(&id).is_some() {
            return Err(Error::IdInUse);
        }
        // One session per identity and room: a second join (another tab, a reconnect from a new
        // network) takes over, and the older session leaves as `duplicate_identity`.
        if let (Some(ident), Some(r)) = (&identity, self.rooms.room(&room)) {
            let older: Vec<ParticipantKey> = r
                .participants
                .iter()
                .copied()
                .filter(|k| {
                    self.participants
                        .get(k)
                        .is_some_and(|p| p.identity.as_ref() == Some(ident))
                })
                .collect();
            for k in older {
                self.remove(now, k, LeaveReason::DuplicateIdentity);
            }
        }
        let key = self.next_key;
        self.next_key += 1;

        let mut rtc = self.config.rtc.clone().build(now);
        for addr in &self.config.candidate_addrs {
            let candidate =
                Candidate::host(*addr, "udp").map_err(|e| Error::ServerCandidate(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        for addr in &self.config.tcp_candidate_addrs {
            let candidate = Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| Error::ServerCandidate(e.to_string()))?;
            rtc.add_local_candidate(candidate);
        }
        let creds = rtc.direct_api().local_ice_credentials();
        let (ufrag, ice_pass) = (creds.ufrag, creds.pass);

        let speakers = self.speakers_of(&room);
        let mut others: Vec<ParticipantView> = self
            .rooms
            .room(&room)
            .map(|r| r.participants.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|k| self.participants.get(k))
            .map(|p| p.view(&self.rooms))
            .collect();
        // Those connected to other workers that share the room.
        others.extend(self.remotes_of(&room));
        let r = self.rooms.room_or_new(&room, &mut self.next_key);
        r.participants.push(key);
        r.video_codecs = video_codecs;
        let to_add = if can_subscribe && plays.is_none() {
            r.tracks.clone()
        } else {
            Vec::new()
        };
        let participant = ParticipantView {
            id: id.clone(),
            name: name.clone(),
            identity: identity.clone(),
            metadata: metadata.clone(),
            tracks: Vec::new(),
        };
        self.announce_participant(&room, &participant, true);
        self.emit(Event::Joined {
            room: room.clone(),
            participant,
            others,
            speakers,
        });
        info!(participant = %id, %room, "joined");
        self.demux.add(key, &id, &ufrag);
        let deadline = now + self.config.connect_timeout;
        self.participants.insert(
            key,
            Participant {
                id,
                name,
                identity,
                metadata,
                grants: Grants {
                    publish: can_publish,
                    subscribe: can_subscribe,
                    publish_data: can_publish_data,
                },
                data: Default::default(),
                room,
                rtc,
                paths: IcePaths::new(ufrag, ice_pass),
                negotiation: Negotiation::new(
                    to_add,
                    TokenBucket::new(
                        self.config.limits.offer_burst,
                        self.config.limits.offers_per_second,
                    ),
                ),
                connected: false,
                published: Vec::new(),
                subs: FxHashMap::default(),
                sub_by_mid: HashMap::new(),
                joined_at: now,
                last_recv: now,
                clock: now,
                touched: false,
                allocation: Default::default(),
                quality: Default::default(),
                red: Default::default(),
                held_until: None,
                nack_counts: Vec::new(),
                video_orders: HashMap::new(),
                codec_refused: Vec::new(),
                plays,
            },
        );
        self.timers.set(key, TimerKind::Liveness, deadline);
        self.drain(key);
        self.process(now);
        Ok(())
    }

    /// Participant `id` leaves. Idempotent.
    pub fn leave(&mut self, now: Instant, id: &str, reason: LeaveReason) {
        if let Some(key) = self.demux.id(id) {
            self.remove(now, key, reason);
            self.process(now);
            self.flush(now);
        }
    }

    /// Take a participant out: its tracks are unpublished, its subscriptions dropped, and
    /// [`Event::Left`] says so.
    pub(super) fn remove(&mut self, _now: Instant, key: ParticipantKey, reason: LeaveReason) {
        let Some(published) = self
            .participants
            .get(&key)
            .map(|p| p.published.iter().map(|(_, tk)| *tk).collect::<Vec<_>>())
        else {
            return;
        };
        for tk in published {
            self.unpublish(tk);
        }
        let Some(mut p) = self.participants.remove(&key) else {
            return;
        };
        p.rtc.disconnect();
        self.timers.forget(key);
        info!(participant = %p.id, room = %p.room, reason = reason.as_str(), "left");
        self.demux.remove(&p.id, p.paths.ufrag(), p.paths.addrs());
        for tk in p.subs.keys() {
            if let Some(t) = self.rooms.track_mut(*tk) {
                t.subscribers.retain(|k| *k != key);
                if t.origin.is_some() {
                    // The track's engine may stop handing it over.
                    self.agenda.dynacast(*tk);
                }
            }
        }
        if let Some(r) = self.rooms.room_mut(&p.room) {
            r.participants.retain(|k| *k != key);
            // While other engines share the room, their participants stay mirrored here (with
            // nobody subscribed, their packets are no longer handed over).
            if r.is_empty() {
                if let Some(rk) = self.rooms.remove_room(&p.room) {
                    self.timers.forget(rk);
                }
            }
        }
        self.announce_left(&p.room, &p.id, reason);
        let mut participant = p.view(&self.rooms);
        participant.tracks.clear();
        self.emit(Event::Left {
            room: p.room,
            participant,
            reason,
        });
    }
}
