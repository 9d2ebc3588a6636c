//! One participant: its str0m `Rtc` (the one peer connection), what it publishes and what it
//! receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use str0m::change::SdpPendingOffer;
use str0m::media::{Mid, Pt, Rid};
use str0m::Rtc;

use str0m::channel::ChannelId;

use super::bandwidth::Damping;
use super::data::DataLimiter;
use super::event::{ParticipantView, PauseReason};
use super::forward::select::{LayerIndex, LayerSelector};
use super::forward::vp8::Vp8Rewriter;
use super::forward::Forwarder;
use super::limits::TokenBucket;
use super::room::{Rooms, TrackKey};
use super::track::Track;
use super::Transport;

/// Internal participant key: unique within an [`Engine`](super::Engine), never reused.
pub type ParticipantKey = u64;

/// Up to this many remote addresses are remembered per participant (ICE may try several).
pub const MAX_ADDRS: usize = 8;

/// A track this participant receives, and how it is forwarded to it.
#[derive(Debug)]
pub struct Subscription {
    /// The m-line on this participant's connection that carries the track.
    pub mid: Mid,
    /// Sequence/timestamp state.
    pub forwarder: Forwarder,
    /// Last publisher payload type seen and the matching payload type on this connection.
    pub pt_map: Option<(Pt, Pt)>,
    /// Which layer is forwarded (video); audio always has layer 0 as target.
    pub selector: LayerSelector,
    /// VP8 picture id / TL0PICIDX continuity across layer switches.
    pub vp8: Vp8Rewriter,
    /// The subscriber's wish: visible, and the rendered size in device pixels (0: unknown).
    pub visible: bool,
    /// Rendered width.
    pub width: u32,
    /// Rendered height.
    pub height: u32,
    /// The stream state last told to the subscriber.
    pub reported: Option<StreamReport>,
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
    /// May publish.
    pub can_publish: bool,
    /// May subscribe.
    pub can_subscribe: bool,
    /// May send data-channel messages.
    pub can_publish_data: bool,
    /// Its open data channels by label.
    pub channels: Vec<(String, ChannelId)>,
    /// Limits on the data it sends.
    pub data_limiter: DataLimiter,
    /// Its offers are rate-limited.
    pub offers: TokenBucket,
    /// Remote ICE candidates it added.
    pub candidates: u32,
    /// Room name.
    pub room: String,
    /// The one peer connection.
    pub rtc: Rtc,
    /// The server's ICE ufrag for this connection (STUN USERNAME demux).
    pub ufrag: String,
    /// The server's ICE password for this connection: STUN requests from a new address must be
    /// signed with it before the address is learnt.
    pub ice_pass: String,
    /// Remote addresses learnt for this participant.
    pub addrs: Vec<(Transport, SocketAddr)>,
    /// The address the last DTLS or RTP datagram came from; never forgotten to make room for a
    /// new one.
    pub active_addr: Option<(Transport, SocketAddr)>,
    /// The client's first offer has been answered: the server may now offer.
    pub negotiated: bool,
    /// The server's outstanding offer.
    pub pending: Option<PendingOffer>,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// Tracks it publishes, by the m-line they arrive on.
    pub published: Vec<(Mid, TrackKey)>,
    /// Tracks it receives.
    pub subs: HashMap<TrackKey, Subscription>,
    /// Which track an m-line of this connection carries (for keyframe requests).
    pub sub_by_mid: HashMap<Mid, TrackKey>,
    /// Tracks to add to the connection at the next offer.
    pub to_add: Vec<TrackKey>,
    /// m-lines to set inactive at the next offer.
    pub to_deactivate: Vec<Mid>,
    /// When the participant was admitted.
    pub joined_at: Instant,
    /// Last datagram received from it.
    pub last_recv: Instant,
    /// The latest time the `Rtc` was driven to; inputs never go back before it (str0m would
    /// ignore them).
    pub clock: Instant,
    /// Marked while it is in the engine's list of connections to drive after a batch.
    pub touched: bool,
    /// The send-side bandwidth estimate towards this participant, bits per second.
    pub estimate: Option<u64>,
    /// When its videos were last allocated.
    pub last_allocation: Option<Instant>,
    /// Step-up damping after step-downs for bandwidth.
    pub damping: Damping,
    /// Last cumulative NACK count per stream, to count differences.
    pub nack_counts: Vec<(StreamKey, u64)>,
    /// Mutes asked for m-lines whose track is not published yet.
    pub early_mutes: Vec<(Mid, bool)>,
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

    /// Whether a renegotiation is wanted and allowed now.
    pub fn wants_offer(&self) -> bool {
        self.negotiated
            && self.pending.is_none()
            && (!self.to_add.is_empty() || !self.to_deactivate.is_empty())
    }
}
