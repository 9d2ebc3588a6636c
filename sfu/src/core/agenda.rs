//! What a batch of input leaves for the engine to do once the batch is handled: renegotiations,
//! allocations, layer changes, speech flips and publisher layer updates. Input handlers only note
//! the work here; [`Engine::process`](super::Engine) does it once per batch, so that a hundred
//! packets that each change something cost one allocation per subscriber, not a hundred.

use super::participant::ParticipantKey;
use super::room::TrackKey;

/// The work noted during a batch. See the module docs.
#[derive(Debug, Default)]
pub struct Agenda {
    /// Participants whose negotiation state changed.
    renegotiate: Vec<ParticipantKey>,
    /// Subscribers whose videos need allocating.
    allocate: Vec<ParticipantKey>,
    /// Tracks whose set of arriving layers changed: their subscribers are allocated again.
    layers_changed: Vec<TrackKey>,
    /// Subscriptions (subscriber, track) that switched layer: their state is reported.
    switched: Vec<(ParticipantKey, TrackKey)>,
    /// Audio tracks whose speech state flipped.
    speaking: Vec<(TrackKey, bool)>,
    /// Tracks whose needed layers may have changed.
    dynacast: Vec<TrackKey>,
}

impl Agenda {
    /// Participant `key` may have something to negotiate.
    pub fn renegotiate(&mut self, key: ParticipantKey) {
        self.renegotiate.push(key);
    }

    /// The next participant that may have something to negotiate.
    pub fn next_renegotiation(&mut self) -> Option<ParticipantKey> {
        self.renegotiate.pop()
    }

    /// Subscriber `key`'s videos need allocating.
    pub fn allocate(&mut self, key: ParticipantKey) {
        self.allocate.push(key);
    }

    /// These subscribers' videos need allocating.
    pub fn allocate_all(&mut self, keys: impl IntoIterator<Item = ParticipantKey>) {
        self.allocate.extend(keys);
    }

    /// The layers arriving for track `tk` changed.
    pub fn layers_changed(&mut self, tk: TrackKey) {
        self.layers_changed.push(tk);
    }

    /// Subscriber `sk` switched layer on track `tk`.
    pub fn switched(&mut self, sk: ParticipantKey, tk: TrackKey) {
        self.switched.push((sk, tk));
    }

    /// Audio track `tk` started or stopped speaking.
    pub fn speaking(&mut self, tk: TrackKey, speaking: bool) {
        self.speaking.push((tk, speaking));
    }

    /// The layers needed of track `tk` may have changed.
    pub fn dynacast(&mut self, tk: TrackKey) {
        self.dynacast.push(tk);
    }

    /// Whether speech flipped anywhere.
    pub fn has_speech(&self) -> bool {
        !self.speaking.is_empty()
    }

    /// Whether allocations, stream reports or publisher layers are due.
    pub fn has_allocation_work(&self) -> bool {
        !self.allocate.is_empty()
            || !self.layers_changed.is_empty()
            || !self.switched.is_empty()
            || !self.dynacast.is_empty()
    }

    /// The speech flips, in order.
    pub fn take_speech(&mut self) -> Vec<(TrackKey, bool)> {
        std::mem::take(&mut self.speaking)
    }

    /// The tracks whose arriving layers changed.
    pub fn take_layers_changed(&mut self) -> Vec<TrackKey> {
        std::mem::take(&mut self.layers_changed)
    }

    /// The subscribers to allocate, each once.
    pub fn take_allocations(&mut self) -> Vec<ParticipantKey> {
        let mut keys = std::mem::take(&mut self.allocate);
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// The layer switches, in order.
    pub fn take_switched(&mut self) -> Vec<(ParticipantKey, TrackKey)> {
        std::mem::take(&mut self.switched)
    }

    /// The tracks whose needed layers may have changed, each once.
    pub fn take_dynacast(&mut self) -> Vec<TrackKey> {
        let mut tracks = std::mem::take(&mut self.dynacast);
        tracks.sort_unstable();
        tracks.dedup();
        tracks
    }
}
