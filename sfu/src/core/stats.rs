//! Counters kept by the engine on the hot path as plain integers, published by the I/O layer.

use super::forward::DropReason;

/// Cumulative counters of one engine.
#[derive(Debug, Default, Clone)]
pub struct EngineStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams from an address no participant owns, that were not a STUN request naming one.
    pub datagrams_unknown: u64,
    /// Datagrams str0m refused (malformed, failed decryption, ...).
    pub datagrams_rejected: u64,
    /// RTP packets received from publishers.
    pub rtp_in: u64,
    /// RTP packets written towards subscribers.
    pub rtp_forwarded: u64,
    /// Payload bytes written towards subscribers.
    pub rtp_forwarded_bytes: u64,
    /// Packets not forwarded, by [`DropReason::index`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Datagrams handed to the socket.
    pub datagrams_out: u64,
    /// Data-channel messages delivered (one per recipient).
    pub data_relayed: u64,
    /// Data-channel messages refused (limits, grants, malformed).
    pub data_refused: u64,
    /// Data-channel messages not delivered because a recipient's buffer was full.
    pub data_dropped: u64,
    /// Changes of who is speaking.
    pub speaker_changes: u64,
}
