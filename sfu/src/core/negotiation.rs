//! Offers and answers on a participant's one connection, trickled candidates, and the requests
//! that change what it receives.
//!
//! The client makes the first offer (with what it publishes). After that the server offers
//! whenever tracks come or go. If offers cross (glare), the server gives way: a client offer rolls
//! back the server's pending one, and the server offers again after answering.

use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::Candidate;
use tracing::debug;

use super::codecs;
use super::event::{Error, Event, SdpKind, TrackSource};
use super::fanout;
use super::forward::select::LayerSelector;
use super::forward::svc::ALL_TEMPORAL;
use super::forward::Forwarder;
use super::participant::{Participant, ParticipantKey, PendingOffer, Subscription};
use super::room::{Rooms, TrackKey};
use super::track::Track;
use super::Engine;

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
        /// Shown prominently: more important than the other cameras it receives.
        pinned: bool,
    },
    /// What the m-lines of its next offer carry, by mid. Checked and applied with that offer;
    /// an offer that follows none names no source.
    TrackSources(Vec<(String, TrackSource)>),
}

impl Engine {
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
                pinned,
            } => self.track_settings(key, &track_id, visible, (width, height), pinned),
            Request::TrackSources(sources) => match self.participants.get_mut(&key) {
                Some(p) => {
                    p.negotiation.name_sources(sources);
                    Ok(())
                }
                None => Err(Error::UnknownParticipant),
            },
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

    fn accept_offer(&mut self, now: Instant, key: ParticipantKey, sdp: &str) -> Result<(), Error> {
        let limits = self.config.limits;
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(Error::UnknownParticipant)?;
        let policy = self
            .rooms
            .room(&p.room)
            .map(|r| r.video_codecs.clone())
            .unwrap_or_default();
        if !p.negotiation.allow_offer(now) {
            return Err(Error::TooManyOffers {
                burst: limits.offer_burst,
                per_second: limits.offers_per_second,
            });
        }
        // Whatever becomes of this offer, the client is not answering ours (it is impolite in a
        // glare): withdraw it and offer its changes again afterwards.
        if p.negotiation.withdraw() {
            debug!(participant = %p.id, "offers crossed; the server gives way");
        }
        self.agenda.renegotiate(key);
        let prepared = codecs::prepare_offer(
            sdp,
            &policy,
            |mid| p.rtc.media(mid).is_some(),
            &p.codec_refused,
            p.grants.publish,
        );
        let offer = SdpOffer::from_sdp_string(&prepared.sdp).map_err(|e| Error::UnreadableSdp {
            kind: SdpKind::Offer,
            detail: e.to_string(),
        })?;
        check_new_mlines(p, &offer, limits.max_tracks)?;
        let played = super::egress::offered_mlines(p, &offer);
        let named = p.negotiation.take_named_sources();
        let sources = check_sources(p, &offer, named, &self.rooms, limits.max_screen_shares)?;
        let answer = p
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| Error::SdpMismatch {
                kind: SdpKind::Offer,
                detail: e.to_string(),
            })?;
        p.negotiation.answered_client();
        for (mid, source) in sources {
            p.negotiation.set_source(mid, source);
        }
        let (answer, orders) = codecs::shape_answer(
            &answer.to_sdp_string(),
            &prepared.sdp,
            &policy,
            &p.video_orders,
            &prepared.new,
        );
        p.video_orders.extend(orders);
        p.codec_refused.extend(prepared.refused.iter().copied());
        // An offer with new ICE credentials restarts ICE (a client whose network changed): the
        // server's credentials change too, and checks from the new path name the new ones.
        let creds = p.rtc.direct_api().local_ice_credentials();
        if creds.ufrag != p.paths.ufrag() {
            debug!(participant = %p.id, "ICE restart");
            let old = p.paths.restart(creds.ufrag, creds.pass);
            self.demux.rename_ufrag(&old, p.paths.ufrag(), key);
        }
        let id = p.id.clone();
        self.emit(Event::Answer {
            participant: id.clone(),
            sdp: answer,
        });
        for mid in prepared.refused {
            debug!(participant = %id, %mid, "video m-line without an allowed codec");
            self.stats.signals_refused += 1;
            self.emit(Event::Refused {
                participant: id.clone(),
                error: Error::CodecNotAllowed {
                    mid: mid.to_string(),
                    allowed: policy.describe(),
                },
            });
        }
        if !played.is_empty() {
            self.play_on(key, &played);
        }
        Ok(())
    }

    fn accept_answer(&mut self, key: ParticipantKey, sdp: &str) -> Result<(), Error> {
        let p = self
            .participants
            .get_mut(&key)
            .ok_or(Error::UnknownParticipant)?;
        let Some(pending) = p.negotiation.take_pending() else {
            return Err(Error::UnexpectedAnswer);
        };
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                p.negotiation.requeue(pending);
                self.agenda.renegotiate(key);
                return Err(Error::UnreadableSdp {
                    kind: SdpKind::Answer,
                    detail: e.to_string(),
                });
            }
        };
        let PendingOffer { pending, added, .. } = pending;
        if let Err(e) = p.rtc.sdp_api().accept_answer(pending, answer) {
            p.negotiation
                .requeue_tracks(added.iter().map(|(tk, _)| *tk));
            self.agenda.renegotiate(key);
            return Err(Error::SdpMismatch {
                kind: SdpKind::Answer,
                detail: e.to_string(),
            });
        }
        for (tk, mid) in added {
            match self.rooms.track_mut(tk) {
                Some(track) => {
                    if start_subscription(p, key, tk, track, mid) {
                        self.agenda.allocate(key);
                    }
                    // A mirror track's engine starts handing it over.
                    if track.origin.is_some() {
                        self.agenda.dynacast(tk);
                    }
                }
                // Unpublished while the offer was out: take the m-line out of use again.
                None => p.negotiation.deactivate(mid),
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
        p.negotiation.mute_early(mid, muted);
        Ok(())
    }

    fn track_settings(
        &mut self,
        key: ParticipantKey,
        track_id: &str,
        visible: bool,
        (width, height): (u32, u32),
        pinned: bool,
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
        sub.pinned = pinned;
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
        if !p.negotiation.allow_candidate(max) {
            return Err(Error::TooManyCandidates(max));
        }
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
        if !p.negotiation.wants_offer() {
            return;
        }
        if p.plays.is_some() {
            // A player is never sent an offer: what changes on its m-lines needs none.
            let _ = p.negotiation.take_changes();
            return;
        }
        let (to_add, deactivated) = p.negotiation.take_changes();
        // The codec each new video m-line carries: the one its publisher sends, as this
        // connection numbers it.
        let mut publisher_pts = Vec::new();
        for tk in &to_add {
            let sending = self.rooms.track(*tk).and_then(|t| t.sending_params());
            if let Some(pp) = sending.and_then(|s| p.rtc.codec_config().match_params(s)) {
                publisher_pts.push((*tk, pp.pt()));
            }
        }
        let mut api = p.rtc.sdp_api();
        let mut added = Vec::new();
        let mut restrict = Vec::new();
        for tk in to_add {
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
            if let Some((_, pt)) = publisher_pts.iter().find(|(t, _)| *t == tk) {
                restrict.push((mid, *pt));
            }
        }
        for &mid in &deactivated {
            api.set_direction(mid, Direction::Inactive);
        }
        if let Some((offer, pending)) = api.apply() {
            p.negotiation.offered(PendingOffer {
                pending,
                added,
                deactivated,
            });
            // Its own video m-lines keep the order they were answered in, so that it goes on
            // sending the same codec; a new track's m-line carries its publisher's codec.
            let mut sdp = codecs::keep_orders(&offer.to_sdp_string(), &p.video_orders);
            for (mid, pt) in restrict {
                sdp = codecs::restrict_mline(&sdp, mid, &[pt]);
            }
            let offer = Event::Offer {
                participant: p.id.clone(),
                sdp,
            };
            self.emit(offer);
        }
    }
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

/// Starts forwarding `track` (key `tk`) to participant `p` (key `key`) on its m-line `mid`.
/// Returns whether the track is a video, whose layer the allocator has to choose.
pub(super) fn start_subscription(
    p: &mut Participant,
    key: ParticipantKey,
    tk: TrackKey,
    track: &mut Track,
    mid: Mid,
) -> bool {
    // Whether this connection took the codec the publisher sends (checked again on every change
    // of payload type).
    let codec_ok = track
        .sending_params()
        .is_none_or(|params| fanout::negotiated_pt(&p.rtc, mid, params).is_some());
    let mut selector = LayerSelector::default();
    if track.kind == MediaKind::Audio {
        selector.set_target(Some(0));
    }
    p.subs.insert(
        tk,
        Subscription {
            mid,
            forwarder: Forwarder::new(track.kind, first_seq(), track.clock_rate()),
            pt_map: None,
            red_pt: None,
            codec_ok,
            selector,
            pictures: Default::default(),
            frames: Default::default(),
            svc: Default::default(),
            temporal_cap: ALL_TEMPORAL,
            temporal: Default::default(),
            visible: true,
            width: 0,
            height: 0,
            pinned: false,
            reported: None,
            paused_for_bandwidth: false,
        },
    );
    p.sub_by_mid.insert(mid, tk);
    track.subscribers.push(key);
    track.kind == MediaKind::Video
}

/// Checks the sources an offer names against the offer: each names an m-line of it by mid, with
/// a source that fits the m-line's kind; and the participant's screen shares (the published ones
/// it goes on sending plus the new ones this offer names) stay within `max_screens` per source.
/// Returns the sources to remember. A published track keeps the source it was published with.
fn check_sources(
    p: &Participant,
    offer: &SdpOffer,
    named: Vec<(String, TrackSource)>,
    rooms: &Rooms,
    max_screens: usize,
) -> Result<Vec<(Mid, TrackSource)>, Error> {
    let lines: Vec<(Mid, String, bool)> = offer
        .media_lines
        .iter()
        .map(|m| {
            let sending = !m.disabled && m.direction().is_sending();
            (m.mid(), m.typ.to_string(), sending)
        })
        .collect();
    if named.len() > lines.len() {
        return Err(Error::BadTrackSource(format!(
            "{} sources for {} m-lines",
            named.len(),
            lines.len()
        )));
    }
    let mut sources = Vec::with_capacity(named.len());
    for (mid, source) in named {
        let Some((m, typ, _)) = lines.iter().find(|(m, _, _)| m.to_string() == mid) else {
            return Err(Error::BadTrackSource(format!(
                "the offer has no m-line with mid {mid:?}"
            )));
        };
        let (kind, article) = match source.kind() {
            MediaKind::Audio => ("audio", "an"),
            MediaKind::Video => ("video", "a"),
        };
        if typ != kind {
            return Err(Error::BadTrackSource(format!(
                "{} needs {article} {kind} m-line, but m-line {mid:?} is {typ}",
                source.as_str()
            )));
        }
        sources.push((*m, source));
    }
    for screen in [TrackSource::Screen, TrackSource::ScreenAudio] {
        let count = lines
            .iter()
            .filter(|(_, _, sending)| *sending)
            .filter(|(mid, _, _)| {
                let published = p
                    .published
                    .iter()
                    .find(|(m, _)| m == mid)
                    .and_then(|(_, tk)| rooms.track(*tk));
                match published {
                    Some(track) => track.source == screen,
                    None => {
                        sources
                            .iter()
                            .find(|(m, _)| m == mid)
                            .map(|(_, s)| *s)
                            .or_else(|| p.negotiation.source_of(*mid))
                            == Some(screen)
                    }
                }
            })
            .count();
        if count > max_screens {
            return Err(Error::TooManyScreenShares(max_screens));
        }
    }
    Ok(sources)
}

/// A random first outgoing sequence number, below 2^15 so that the SRTP rollover counter starts at
/// zero however long the stream runs before the receiver sees it.
fn first_seq() -> u16 {
    rand::random::<u16>() & 0x7fff
}
