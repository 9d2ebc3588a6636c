//! Connections and demultiplexing: which participant a datagram or a request is for, in O(1).
//!
//! Signalling names participants by id. A datagram is matched by its remote address; an address
//! is learnt from a STUN binding request that names one of the server's ICE ufrags and is signed
//! with that connection's ICE password (MESSAGE-INTEGRITY), never from the ufrag alone.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::participant::ParticipantKey;
use super::Engine;

/// The transport a packet came over; part of the demultiplexing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP.
    Udp,
    /// ICE-TCP (RFC 6544, RFC 4571 framing).
    Tcp,
}

/// Up to this many remote addresses are remembered per participant (ICE may try several).
pub const MAX_ADDRS: usize = 8;

/// The server's ICE credentials for one connection, and the remote addresses its client proved
/// with them.
#[derive(Debug)]
pub struct IcePaths {
    /// The server's ICE ufrag for this connection (STUN USERNAME demux).
    ufrag: String,
    /// The server's ICE password: STUN requests from a new address must be signed with it.
    pass: String,
    /// Remote addresses learnt, oldest first.
    addrs: Vec<(Transport, SocketAddr)>,
    /// The address the last DTLS or RTP datagram came from; never forgotten to make room for a
    /// new one.
    active: Option<(Transport, SocketAddr)>,
}

impl IcePaths {
    /// A connection with these server credentials and no address yet.
    pub fn new(ufrag: String, pass: String) -> Self {
        IcePaths {
            ufrag,
            pass,
            addrs: Vec::new(),
            active: None,
        }
    }

    /// The server's ufrag.
    pub fn ufrag(&self) -> &str {
        &self.ufrag
    }

    /// The addresses learnt.
    pub fn addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.addrs
    }

    /// Whether a STUN request is signed with this connection's password.
    fn verifies(&self, stun: &str0m::ice::StunMessage) -> bool {
        stun.verify(self.pass.as_bytes(), sha1_hmac)
    }

    /// Remember `addr`; returns the address forgotten to make room for it, if any (the oldest
    /// one that media does not arrive from).
    fn learn(&mut self, addr: (Transport, SocketAddr)) -> Option<(Transport, SocketAddr)> {
        let mut forgotten = None;
        if self.addrs.len() >= MAX_ADDRS {
            let active = self.active;
            let i = self
                .addrs
                .iter()
                .position(|a| Some(*a) != active)
                .unwrap_or(0);
            forgotten = Some(self.addrs.remove(i));
        }
        self.addrs.push(addr);
        forgotten
    }

    /// ICE restarted with new server credentials; returns the old ufrag. The addresses proved
    /// so far stay (str0m checks their traffic against the new credentials itself).
    pub fn restart(&mut self, ufrag: String, pass: String) -> String {
        self.pass = pass;
        std::mem::replace(&mut self.ufrag, ufrag)
    }

    /// DTLS, RTP or RTCP arrived from `addr`.
    pub fn media_from(&mut self, addr: (Transport, SocketAddr)) {
        self.active = Some(addr);
    }
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

    /// Participant `key`'s connection now has server ufrag `new` instead of `old`.
    pub fn rename_ufrag(&mut self, old: &str, new: &str, key: ParticipantKey) {
        self.by_ufrag.remove(old);
        self.by_ufrag.insert(new.to_owned(), key);
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
        if !p.paths.verifies(&stun) {
            self.stats.stun_forged += 1;
            return None;
        }
        if let Some(old) = p.paths.learn((transport, source)) {
            self.demux.forget_addr(old);
        }
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
