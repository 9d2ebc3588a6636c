//! One participant: its str0m `Rtc` (the one peer connection), what it publishes and what it
//! receives.

use std::collections::HashMap;
use std::time::Instant;

use rustc_hash::FxHashMap;
use str0m::change::SdpPendingOffer;
use str0m::media::{Mid, Pt, Rid};
use str0m::Rtc;

use super::bandwidth::Allocation;
use super::data::DataChannels;
use super::demux::IcePaths;
use super::event::{ParticipantView, PauseReason, TrackSource};
use super::forward::av1::FrameNumberRewriter;
use super::forward::picture_id::PictureIdRewriter;
use super::forward::select::{LayerIndex, LayerSelector};
use super::forward::svc::{SvcSelector, TemporalFilter};
use super::forward::Forwarder;
use super::limits::TokenBucket;
use super::quality::QualityMeter;
use super::room::{Rooms, TrackKey};
use super::track::Track;

/// Internal participant key: unique within an [`Engine`](super::Engine), never reused.
pub type ParticipantKey = u64;

/// A track this participant receives, and how it is forwarded to it.
#[derive(Debug)]
pub struct Subscription {
    /// The m-line on this participant's connection that carries the track.
    pub mid: Mid,
    /// Sequence/timestamp state.
    pub forwarder: Forwarder,
    /// Last publisher payload type seen and the matching payload type on this connection
    /// (`None`: this connection has no codec for it).
    pub pt_map: Option<(Pt, Option<Pt>)>,
    /// For a publisher sending redundant audio (RED): the RED payload type on this connection,
    /// once looked up (`None` inside: the connection did not negotiate RED).
    pub red_pt: Option<Option<Pt>>,
    /// This connection can carry what the publisher sends (as far as known): its answer kept
    /// the publisher's codec.
    pub codec_ok: bool,
    /// Which layer is forwarded (video); audio always has layer 0 as target.
    pub selector: LayerSelector,
    /// VP8 / VP9 picture id and TL0PICIDX continuity across layer switches.
    pub pictures: PictureIdRewriter,
    /// AV1 frame number continuity across layer switches.
    pub frames: FrameNumberRewriter,
    /// The spatial layer forwarded per picture when the track is VP9 SVC (its `selector` then
    /// keeps the target and mirrors the current layer).
    pub svc: SvcSelector,
    /// The highest temporal layer the allocator gives it
    /// ([`ALL_TEMPORAL`](super::forward::svc::ALL_TEMPORAL): all).
    pub temporal_cap: u8,
    /// The temporal layers forwarded, per frame.
    pub temporal: TemporalFilter,
    /// The subscriber's wish: visible, and the rendered size in device pixels (0: unknown).
    pub visible: bool,
    /// Rendered width.
    pub width: u32,
    /// Rendered height.
    pub height: u32,
    /// The subscriber pinned it (shows it large): it comes before other cameras.
    pub pinned: bool,
    /// The stream state last told to the subscriber.
    pub reported: Option<StreamReport>,
    /// An allocation took its layer away although it wanted one and one arrived, and none has
    /// given it one since: giving it a layer again is a step up for bandwidth, which damping
    /// may hold. A video that never had a layer, or had none for another reason (hidden,
    /// muted, nothing arriving), is not held back.
    pub paused_for_bandwidth: bool,
}

/// One RTP stream of a connection as str0m's statistics name it: mid, rid, and whether it is
/// incoming (published) or outgoing (subscribed).
pub type StreamKey = (Mid, Option<Rid>, bool);

/// What a subscriber was last told about one of its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    /// Forwarded or not.
    pub active: bool,
    /// Why not.
    pub reason: Option<PauseReason>,
    /// Which layer.
    pub layer: Option<LayerIndex>,
}

/// An offer the server sent and whose answer it awaits.
pub struct PendingOffer {
    /// str0m's handle to apply the answer.
    pub pending: SdpPendingOffer,
    /// Tracks that get an m-line when the answer is applied.
    pub added: Vec<(TrackKey, Mid)>,
    /// m-lines the offer sets inactive.
    pub deactivated: Vec<Mid>,
}

/// What a participant may do (from its access token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grants {
    /// May publish tracks.
    pub publish: bool,
    /// May receive the others' tracks.
    pub subscribe: bool,
    /// May send data-channel messages.
    pub publish_data: bool,
}

/// One participant in a room.
pub struct Participant {
    /// Public id (the protocol's `participant_id`).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Identity from the access token.
    pub identity: Option<String>,
    /// Operator metadata.
    pub metadata: Option<String>,
    /// What it may do.
    pub grants: Grants,
    /// Its data channels and the limits on what it sends on them.
    pub data: DataChannels,
    /// Room name.
    pub room: String,
    /// The one peer connection.
    pub rtc: Rtc,
    /// Its ICE credentials and the remote addresses it proved.
    pub paths: IcePaths,
    /// Offers, answers and what the next offer will change.
    pub negotiation: Negotiation,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// Tracks it publishes, by the m-line they arrive on.
    pub published: Vec<(Mid, TrackKey)>,
    /// Tracks it receives (a fast hash: the keys are the engine's own, see `Engine::participants`).
    pub subs: FxHashMap<TrackKey, Subscription>,
    /// Which track an m-line of this connection carries (for keyframe requests).
    pub sub_by_mid: HashMap<Mid, TrackKey>,
    /// When the participant was admitted.
    pub joined_at: Instant,
    /// Last datagram received from it.
    pub last_recv: Instant,
    /// The latest time the `Rtc` was driven to; inputs never go back before it (str0m would
    /// ignore them).
    pub clock: Instant,
    /// Marked while it is in the engine's list of connections to drive after a batch.
    pub touched: bool,
    /// The bandwidth towards it and how its videos were last allocated.
    pub allocation: Allocation,
    /// Its connection quality, as last told.
    pub quality: QualityMeter,
    /// Whether this connection's link loses enough to be sent redundant audio.
    pub red: super::red::RedPolicy,
    /// Kept without media until then (its signalling dropped; it may resume).
    pub held_until: Option<Instant>,
    /// Last cumulative NACK count per stream, to count differences.
    pub nack_counts: Vec<(StreamKey, u64)>,
    /// The codecs answered on each of its own video m-lines, in the order it is to send them
    /// (kept for the life of the m-line, so that later answers do not change what it sends).
    pub video_orders: HashMap<Mid, Vec<Pt>>,
    /// Its video m-lines that offered none of the room's codecs: answered inactive, for good.
    pub codec_refused: Vec<Mid>,
    /// A player receives one publisher's tracks on the m-lines of its own offer and is never
    /// sent an offer (see `egress.rs`).
    pub plays: Option<super::egress::Playback>,
}

impl Participant {
    /// The participant as the engine describes it, with its published tracks.
    pub fn view(&self, rooms: &Rooms) -> ParticipantView {
        ParticipantView {
            id: self.id.clone(),
            name: self.name.clone(),
            identity: self.identity.clone(),
            metadata: self.metadata.clone(),
            tracks: self
                .published
                .iter()
                .filter_map(|(_, tk)| rooms.track(*tk).map(Track::view))
                .collect(),
        }
    }
}

/// The state of negotiation on a participant's connection: whether the server may offer, its
/// offer in flight, the changes waiting for the next offer, and the client's budgets for offers
/// and candidates.
pub struct Negotiation {
    /// The client's first offer has been answered: the server may now offer.
    negotiated: bool,
    /// The server's outstanding offer.
    pending: Option<PendingOffer>,
    /// Tracks to add to the connection at the next offer.
    to_add: Vec<TrackKey>,
    /// m-lines to set inactive at the next offer.
    to_deactivate: Vec<Mid>,
    /// The client's offers are rate-limited.
    offers: TokenBucket,
    /// Remote ICE candidates the client added.
    candidates: u32,
    /// Mutes asked for m-lines whose track is not published yet.
    early_mutes: Vec<(Mid, bool)>,
    /// Sources named for the client's next offer (`Request::TrackSources`), not yet checked.
    next_sources: Vec<(String, TrackSource)>,
    /// Sources of the client's m-lines, from its accepted offers: read when a track is published.
    sources: Vec<(Mid, TrackSource)>,
}

impl Negotiation {
    /// Nothing negotiated yet; `to_add` are the tracks the first server offer brings, `offers`
    /// the client's offer budget.
    pub fn new(to_add: Vec<TrackKey>, offers: TokenBucket) -> Self {
        Negotiation {
            negotiated: false,
            pending: None,
            to_add,
            to_deactivate: Vec::new(),
            offers,
            candidates: 0,
            early_mutes: Vec::new(),
            next_sources: Vec::new(),
            sources: Vec::new(),
        }
    }

    /// Whether a client offer fits its budget now; takes it if so.
    pub fn allow_offer(&mut self, now: Instant) -> bool {
        self.offers.take(now, 1.0)
    }

    /// Whether one more candidate fits under `max`; counts it if so.
    pub fn allow_candidate(&mut self, max: u32) -> bool {
        if self.candidates >= max {
            return false;
        }
        self.candidates += 1;
        true
    }

    /// The client's offer was answered: from now on the server may offer too.
    pub fn answered_client(&mut self) {
        self.negotiated = true;
    }

    /// The server's offer in flight, taken out (its answer came, or it is withdrawn).
    pub fn take_pending(&mut self) -> Option<PendingOffer> {
        self.pending.take()
    }

    /// Withdraw the server's offer in flight, if any, and put its changes back for the next
    /// one. Whether there was one.
    pub fn withdraw(&mut self) -> bool {
        match self.pending.take() {
            Some(p) => {
                self.requeue(p);
                true
            }
            None => false,
        }
    }

    /// Put the changes of an offer that will never be answered back in the queue.
    pub fn requeue(&mut self, pending: PendingOffer) {
        self.requeue_tracks(pending.added.into_iter().map(|(tk, _)| tk));
        self.to_deactivate.extend(pending.deactivated);
    }

    /// Offer these tracks again at the next offer.
    pub fn requeue_tracks(&mut self, tracks: impl IntoIterator<Item = TrackKey>) {
        self.to_add.extend(tracks);
    }

    /// Track `tk` should be added at the next offer.
    pub fn add_track(&mut self, tk: TrackKey) {
        self.to_add.push(tk);
    }

    /// Track `tk` is gone: do not add it.
    pub fn forget_track(&mut self, tk: TrackKey) {
        self.to_add.retain(|t| *t != tk);
    }

    /// m-line `mid` should be set inactive at the next offer.
    pub fn deactivate(&mut self, mid: Mid) {
        self.to_deactivate.push(mid);
    }

    /// Whether a server offer is wanted and allowed now.
    pub fn wants_offer(&self) -> bool {
        self.negotiated
            && self.pending.is_none()
            && (!self.to_add.is_empty() || !self.to_deactivate.is_empty())
    }

    /// The changes for the next offer: tracks to add and m-lines to set inactive.
    pub fn take_changes(&mut self) -> (Vec<TrackKey>, Vec<Mid>) {
        (
            std::mem::take(&mut self.to_add),
            std::mem::take(&mut self.to_deactivate),
        )
    }

    /// The server's offer went out.
    pub fn offered(&mut self, pending: PendingOffer) {
        self.pending = Some(pending);
    }

    /// The client muted (or unmuted) its m-line `mid` before its track was published.
    pub fn mute_early(&mut self, mid: Mid, muted: bool) {
        self.early_mutes.retain(|(m, _)| *m != mid);
        self.early_mutes.push((mid, muted));
    }

    /// The sources the client names for its next offer (replacing any not taken yet).
    pub fn name_sources(&mut self, sources: Vec<(String, TrackSource)>) {
        self.next_sources = sources;
    }

    /// The sources named for the offer being accepted (none if it named none).
    pub fn take_named_sources(&mut self) -> Vec<(String, TrackSource)> {
        std::mem::take(&mut self.next_sources)
    }

    /// Remember the source of the client's m-line `mid` (from an accepted offer).
    pub fn set_source(&mut self, mid: Mid, source: TrackSource) {
        match self.sources.iter_mut().find(|(m, _)| *m == mid) {
            Some(entry) => entry.1 = source,
            None => self.sources.push((mid, source)),
        }
    }

    /// The source the client named for m-line `mid`, if any.
    pub fn source_of(&self, mid: Mid) -> Option<TrackSource> {
        self.sources
            .iter()
            .find(|(m, _)| *m == mid)
            .map(|(_, s)| *s)
    }

    /// Whether the track of m-line `mid` starts muted (a mute that came before it).
    pub fn take_early_mute(&mut self, mid: Mid) -> bool {
        let muted = self
            .early_mutes
            .iter()
            .find(|(m, _)| *m == mid)
            .is_some_and(|(_, muted)| *muted);
        self.early_mutes.retain(|(m, _)| *m != mid);
        muted
    }
}
