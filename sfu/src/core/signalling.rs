//! The engine's signalling side: joining and leaving, offers and answers, publishing and
//! unpublishing tracks.
//!
//! Negotiation: the client makes the first offer (with what it publishes). After that the server
//! offers whenever tracks come or go. If offers cross (glare), the server gives way: a client offer
//! rolls back the server's pending one, and the server offers again after answering.

use std::collections::HashMap;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaAdded, MediaKind, Mid, Rid, Rids, Simulcast, SimulcastLayer};
use str0m::net::TcpType;
use str0m::Candidate;
use tracing::{debug, info};

use super::event::{Error, Event, LeaveReason, ParticipantView, SdpKind};
use super::forward::select::LayerSelector;
use super::forward::Forwarder;
use super::limits::TokenBucket;
use super::participant::{Participant, ParticipantKey, PendingOffer, Subscription};
use super::room::TrackKey;
use super::track::{Layer, Track};
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
        }
    }
}

/// What a participant asks for over signalling (the wire protocol's client messages, parsed and
/// reduced to what the engine acts on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// An SDP offer (the first one publishes; later ones change what it publishes).
    Offer(String),
    /// The SDP answer to the server's offer.
    Answer(String),
    /// A trickled ICE candidate line (empty: end of candidates).
    Candidate(String),
    /// Mute or unmute one of its own tracks.
    Mute {
        /// The track.
        track_id: String,
        /// Muted or not.
        muted: bool,
    },
    /// How it shows a video it receives.
    TrackSettings {
        /// The track.
        track_id: String,
        /// On screen.
        visible: bool,
        /// Rendered width in device pixels (0: unknown).
        width: u32,
        /// Rendered height in device pixels (0: unknown).
        height: u32,
    },
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
        } = spec;
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
        let others: Vec<ParticipantView> = self
            .rooms
            .room(&room)
            .map(|r| r.participants.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|k| self.participants.get(k))
            .map(|p| p.view(&self.rooms))
            .collect();
        let r = self.rooms.room_or_new(&room);
        r.participants.push(key);
        let to_add = if can_subscribe {
            r.tracks.clone()
        } else {
            Vec::new()
        };
        self.emit(Event::Joined {
            room: room.clone(),
            participant: ParticipantView {
                id: id.clone(),
                name: name.clone(),
                identity: identity.clone(),
                metadata: metadata.clone(),
                tracks: Vec::new(),
            },
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
                can_publish,
                can_subscribe,
                can_publish_data,
                channels: Vec::new(),
                data_limiter: Default::default(),
                offers: TokenBucket::new(
                    self.config.limits.offer_burst,
                    self.config.limits.offers_per_second,
                ),
                candidates: 0,
                room,
                rtc,
                ufrag,
                ice_pass,
                addrs: Vec::new(),
                active_addr: None,
                negotiated: false,
                pending: None,
                connected: false,
                published: Vec::new(),
                subs: HashMap::new(),
                sub_by_mid: HashMap::new(),
                to_add,
                to_deactivate: Vec::new(),
                joined_at: now,
                last_recv: now,
                clock: now,
                touched: false,
                estimate: None,
                last_allocation: None,
                damping: Default::default(),
                nack_counts: Vec::new(),
                early_mutes: Vec::new(),
            },
        );
        self.timers.set(key, TimerKind::Liveness, deadline);
        self.drain(key);
        self.process(now);
        Ok(())
    }

    /// What participant `id` asked for. A refusal goes back to it as [`Event::Refused`]; an
    /// unknown `id` (gone already) is ignored.
    pub fn handle_request(&mut self, now: Instant, id: &str, request: Request) {
        let Some(key) = self.demux.id(id) else {
            return;
        };
        let result = match request {
            Request::Offer(sdp) => self.accept_offer(now, key, &sdp),
            Request::Answer(sdp) => self.accept_answer(key, &sdp),
            Request::Candidate(c) => self.add_candidate(key, &c),
            Request::TrackSettings {
                track_id,
                visible,
                width,
                height,
            } => self.track_settings(key, &track_id, visible, width, height),
            Request::Mute { track_id, muted } => {
                let own = self.participants.get(&key).is_some_and(|p| {
                    p.published
                        .iter()
                        .any(|(_, tk)| self.rooms.track(*tk).is_some_and(|t| t.id == track_id))
                });
                if own {
                    self.set_track_muted(now, id, &track_id, muted)
                } else {
                    self.mute_before_publishing(key, &track_id, muted)
                }
            }
        };
        if let Err(error) = result {
            self.stats.signals_refused += 1;
            self.emit(Event::Refused {
                participant: id.to_string(),
                error,
            });
        }
        self.drain(key);
        self.process(now);
        self.flush(now);
    }

    /// Participant `id` leaves. Idempotent.
    pub fn leave(&mut self, now: Instant, id: &str, reason: LeaveReason) {
        if let Some(key) = self.demux.id(id) {
            self.remove(now, key, reason);
            self.process(now);
            self.flush(now);
        }
    }

    fn accept_offer(&mut self, now: Instant, key: ParticipantKey, sdp: &str) -> Result<(), Error> {
        let limits = self.config.limits;
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(Error::UnknownParticipant)?;
        if !p.offers.take(now, 1.0) {
            return Err(Error::TooManyOffers {
                burst: limits.offer_burst,
                per_second: limits.offers_per_second,
            });
        }
        // Whatever becomes of this offer, the client is not answering ours (it is impolite in a
        // glare): withdraw it and offer its changes again afterwards.
        if let Some(pending) = p.pending.take() {
            debug!(participant = %p.id, "offers crossed; the server gives way");
            restore(p, pending);
        }
        self.agenda.renegotiate(key);
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| Error::UnreadableSdp {
            kind: SdpKind::Offer,
            detail: e.to_string(),
        })?;
        check_new_mlines(p, &offer, limits.max_tracks)?;
        let answer = p
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| Error::SdpMismatch {
                kind: SdpKind::Offer,
                detail: e.to_string(),
            })?;
        p.negotiated = true;
        let answer = Event::Answer {
            participant: p.id.clone(),
            sdp: answer.to_sdp_string(),
        };
        self.emit(answer);
        Ok(())
    }

    fn accept_answer(&mut self, key: ParticipantKey, sdp: &str) -> Result<(), Error> {
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(Error::UnknownParticipant)?;
        let Some(pending) = p.pending.take() else {
            return Err(Error::UnexpectedAnswer);
        };
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                restore(p, pending);
                self.agenda.renegotiate(key);
                return Err(Error::UnreadableSdp {
                    kind: SdpKind::Answer,
                    detail: e.to_string(),
                });
            }
        };
        let PendingOffer { pending, added, .. } = pending;
        if let Err(e) = p.rtc.sdp_api().accept_answer(pending, answer) {
            p.to_add.extend(added.iter().map(|(tk, _)| *tk));
            self.agenda.renegotiate(key);
            return Err(Error::SdpMismatch {
                kind: SdpKind::Answer,
                detail: e.to_string(),
            });
        }
        for (tk, mid) in added {
            match self.rooms.track_mut(tk) {
                Some(track) => {
                    p.subs.insert(
                        tk,
                        Subscription {
                            mid,
                            forwarder: Forwarder::new(track.kind, first_seq(), track.clock_rate()),
                            pt_map: None,
                            selector: LayerSelector::default(),
                            vp8: Default::default(),
                            visible: true,
                            width: 0,
                            height: 0,
                            reported: None,
                        },
                    );
                    p.sub_by_mid.insert(mid, tk);
                    track.subscribers.push(key);
                    if track.kind == MediaKind::Audio {
                        if let Some(sub) = p.subs.get_mut(&tk) {
                            sub.selector.set_target(Some(0));
                        }
                    } else {
                        self.agenda.allocate(key);
                    }
                }
                // Unpublished while the offer was out: take the m-line out of use again.
                None => p.to_deactivate.push(mid),
            }
        }
        self.agenda.renegotiate(key);
        Ok(())
    }

    /// A mute for one of the client's own m-lines whose track is not published yet (the
    /// connection is still coming up): remembered and applied when the track appears.
    fn mute_before_publishing(
        &mut self,
        key: ParticipantKey,
        track_id: &str,
        muted: bool,
    ) -> Result<(), Error> {
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(Error::UnknownParticipant)?;
        let mid = track_id
            .strip_prefix(p.id.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .map(Mid::from)
            .filter(|mid| {
                p.rtc
                    .media(*mid)
                    .is_some_and(|m| m.direction().is_receiving())
            })
            .ok_or(Error::NotOwnTrack)?;
        p.early_mutes.retain(|(m, _)| *m != mid);
        p.early_mutes.push((mid, muted));
        Ok(())
    }

    fn track_settings(
        &mut self,
        key: ParticipantKey,
        track_id: &str,
        visible: bool,
        width: u32,
        height: u32,
    ) -> Result<(), Error> {
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(Error::UnknownParticipant)?;
        let rooms = &self.rooms;
        let sub = p
            .subs
            .iter_mut()
            .find(|(tk, _)| rooms.track(**tk).is_some_and(|t| t.id == track_id))
            .map(|(_, s)| s)
            .ok_or(Error::NotSubscribed)?;
        sub.visible = visible;
        sub.width = width.min(16_384);
        sub.height = height.min(16_384);
        self.agenda.allocate(key);
        Ok(())
    }

    fn add_candidate(&mut self, key: ParticipantKey, candidate: &str) -> Result<(), Error> {
        let line = candidate.trim();
        if line.is_empty() {
            return Ok(()); // end of candidates
        }
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(Error::UnknownParticipant)?;
        // The server is ICE-lite and learns client addresses from their STUN requests; candidates
        // are still taken so that the pair list is complete. mDNS (.local) names cannot be used.
        if line.contains(".local ") {
            return Ok(());
        }
        let max = self.config.limits.max_candidates;
        if p.candidates >= max {
            return Err(Error::TooManyCandidates(max));
        }
        p.candidates += 1;
        let c =
            Candidate::from_sdp_string(line.strip_prefix("a=").unwrap_or(line)).map_err(|e| {
                Error::BadCandidate {
                    detail: e.to_string(),
                }
            })?;
        p.rtc.add_remote_candidate(c);
        Ok(())
    }

    /// Send an offer to `key` if it has changes to negotiate and no offer is outstanding.
    pub(super) fn send_offer(&mut self, key: ParticipantKey) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        if !p.wants_offer() {
            return;
        }
        let mut api = p.rtc.sdp_api();
        let mut added = Vec::new();
        for tk in p.to_add.drain(..) {
            let Some(track) = self.rooms.track(tk) else {
                continue;
            };
            if p.subs.contains_key(&tk) {
                continue;
            }
            let mid = api.add_media(
                track.kind,
                Direction::SendOnly,
                Some(track.publisher_id.clone()),
                Some(track.id.clone()),
                None,
            );
            added.push((tk, mid));
        }
        let deactivated: Vec<Mid> = p.to_deactivate.drain(..).collect();
        for &mid in &deactivated {
            api.set_direction(mid, Direction::Inactive);
        }
        if let Some((offer, pending)) = api.apply() {
            p.pending = Some(PendingOffer {
                pending,
                added,
                deactivated,
            });
            let offer = Event::Offer {
                participant: p.id.clone(),
                sdp: offer.to_sdp_string(),
            };
            self.emit(offer);
        }
    }

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
        if !p.can_publish {
            // Whatever the SDP says: nothing from this m-line reaches anyone.
            p.to_deactivate.push(mid);
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
            p.to_deactivate.push(mid);
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
        let muted = p
            .early_mutes
            .iter()
            .find(|(m, _)| *m == mid)
            .is_some_and(|(_, muted)| *muted);
        p.early_mutes.retain(|(m, _)| *m != mid);
        let track = Track {
            id: format!("{}-{}", p.id, mid),
            kind,
            publisher: key,
            publisher_id: p.id.clone(),
            mid,
            subscribers: Vec::new(),
            layers: track_layers(kind, simulcast),
            codec: None,
            in_params: None,
            muted,
            priority: 0,
            publisher_mask: None,
            pause_due: None,
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
        for &k in &r.participants {
            if k == key {
                continue;
            }
            if let Some(o) = self.participants.get_mut(&k) {
                if o.can_subscribe {
                    o.to_add.push(tk);
                    self.agenda.renegotiate(k);
                }
            }
        }
        self.emit(Event::TrackPublished {
            room,
            participant: publisher_id,
            track: view,
        });
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
    fn unpublish(&mut self, tk: TrackKey) {
        let Some(track) = self.rooms.remove_track(tk) else {
            return;
        };
        let Some(p) = self.participants.get(&track.publisher) else {
            return;
        };
        let room = p.room.clone();
        if let Some(r) = self.rooms.room_mut(&room) {
            r.tracks.retain(|t| *t != tk);
            for &k in &r.participants {
                if k == track.publisher {
                    continue;
                }
                let Some(o) = self.participants.get_mut(&k) else {
                    continue;
                };
                o.to_add.retain(|t| *t != tk);
                if let Some(sub) = o.subs.remove(&tk) {
                    o.sub_by_mid.remove(&sub.mid);
                    o.to_deactivate.push(sub.mid);
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
        self.demux.remove(&p.id, &p.ufrag, &p.addrs);
        for tk in p.subs.keys() {
            if let Some(t) = self.rooms.track_mut(*tk) {
                t.subscribers.retain(|k| *k != key);
            }
        }
        if let Some(r) = self.rooms.room_mut(&p.room) {
            r.participants.retain(|k| *k != key);
            if r.participants.is_empty() {
                self.rooms.remove_room(&p.room);
            }
        }
        let mut participant = p.view(&self.rooms);
        participant.tracks.clear();
        self.emit(Event::Left {
            room: p.room,
            participant,
            reason,
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

/// Refuses an offer that brings more new m-lines than a participant may publish tracks, or that
/// would take its published tracks above the limit. Checked before str0m takes the offer, so a
/// refused offer changes nothing and nobody else hears of it.
fn check_new_mlines(p: &Participant, offer: &SdpOffer, max_tracks: usize) -> Result<(), Error> {
    let (mut new, mut new_sending) = (0, 0);
    for m in offer.media_lines.iter().filter(|m| !m.disabled) {
        // `mid()` cannot fail here: the parser refuses m-lines without exactly one a=mid.
        if m.typ.to_string() == "application" || p.rtc.media(m.mid()).is_some() {
            continue;
        }
        new += 1;
        if m.direction().is_sending() {
            new_sending += 1;
        }
    }
    if new > max_tracks || p.published.len() + new_sending > max_tracks {
        return Err(Error::TooManyTracks(max_tracks));
    }
    Ok(())
}

/// Put the changes of an offer that will never be answered back in the queue.
fn restore(p: &mut Participant, pending: PendingOffer) {
    p.to_add.extend(pending.added.into_iter().map(|(tk, _)| tk));
    p.to_deactivate.extend(pending.deactivated);
}

/// A random first outgoing sequence number, below 2^15 so that the SRTP rollover counter starts at
/// zero however long the stream runs before the receiver sees it.
fn first_seq() -> u16 {
    rand::random::<u16>() & 0x7fff
}
