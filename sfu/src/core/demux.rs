//! Connections and demultiplexing: which participant a datagram or a request is for, in O(1).
//!
//! Signalling names participants by id. A datagram is matched by its remote address; an address
//! is learnt from a STUN binding request that names one of the server's ICE ufrags and is signed
//! with that connection's ICE password (MESSAGE-INTEGRITY), never from the ufrag alone.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::participant::{ParticipantKey, MAX_ADDRS};
use super::Engine;

/// The transport a packet came over; part of the demultiplexing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// ICE-TCP (RFC 6544, RFC 4571 framing).
    Tcp,
}

/// The lookup tables from the outside world's names to participants.
#[derive(Debug, Default)]
pub struct Demux {
    by_addr: HashMap<(Transport, SocketAddr), ParticipantKey>,
    by_ufrag: HashMap<String, ParticipantKey>,
    by_id: HashMap<String, ParticipantKey>,
}

impl Demux {
    /// A new participant with public id `id` and the server's ICE ufrag `ufrag` for it.
    pub fn add(&mut self, key: ParticipantKey, id: &str, ufrag: &str) {
        self.by_id.insert(id.to_owned(), key);
        self.by_ufrag.insert(ufrag.to_owned(), key);
    }

    /// The participant is gone: forget its id, ufrag and addresses.
    pub fn remove(&mut self, id: &str, ufrag: &str, addrs: &[(Transport, SocketAddr)]) {
        self.by_id.remove(id);
        self.by_ufrag.remove(ufrag);
        for a in addrs {
            self.by_addr.remove(a);
        }
    }

    /// The participant with public id `id`.
    pub fn id(&self, id: &str) -> Option<ParticipantKey> {
        self.by_id.get(id).copied()
    }

    /// The participant whose connection has the server ICE ufrag `ufrag`.
    pub fn ufrag(&self, ufrag: &str) -> Option<ParticipantKey> {
        self.by_ufrag.get(ufrag).copied()
    }

    /// The participant that owns remote address `source`.
    pub fn addr(&self, transport: Transport, source: SocketAddr) -> Option<ParticipantKey> {
        self.by_addr.get(&(transport, source)).copied()
    }

    /// `source` belongs to participant `key` from now on.
    pub fn learn_addr(&mut self, transport: Transport, source: SocketAddr, key: ParticipantKey) {
        self.by_addr.insert((transport, source), key);
    }

    /// `addr` belongs to nobody any more.
    pub fn forget_addr(&mut self, addr: (Transport, SocketAddr)) {
        self.by_addr.remove(&addr);
    }
}

impl Engine {
    /// A datagram from an unknown address: if it is a STUN binding request naming one of our ICE
    /// ufrags and signed with that connection's ICE password, remember the address for that
    /// participant.
    ///
    /// The ufrag travels in clear in every connectivity check, so it alone proves nothing: an
    /// address is learnt only once MESSAGE-INTEGRITY checks. A forged request is counted and
    /// dropped and costs the real path nothing. When the participant already has
    /// [`MAX_ADDRS`] addresses, the oldest one that media is not arriving from is forgotten.
    pub(super) fn learn_address(
        &mut self,
        transport: Transport,
        source: SocketAddr,
        buf: &[u8],
    ) -> Option<ParticipantKey> {
        let stun = str0m::ice::StunMessage::parse(buf).ok()?;
        if !stun.is_binding_request() {
            return None;
        }
        let (local, _remote) = stun.split_username()?;
        let key = self.demux.ufrag(local)?;
        let p = self.participants.get_mut(&key)?;
        if !stun.verify(p.ice_pass.as_bytes(), sha1_hmac) {
            self.stats.stun_forged += 1;
            return None;
        }
        if p.addrs.len() >= MAX_ADDRS {
            let active = p.active_addr;
            let i = p.addrs.iter().position(|a| Some(*a) != active).unwrap_or(0);
            let old = p.addrs.remove(i);
            self.demux.forget_addr(old);
        }
        p.addrs.push((transport, source));
        self.demux.learn_addr(transport, source, key);
        Some(key)
    }
}

/// HMAC-SHA1 over the concatenated `parts`, as STUN's MESSAGE-INTEGRITY uses it (RFC 5389).
fn sha1_hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}
