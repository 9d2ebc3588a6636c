//! The bytes of a [`ShardMessage`], for engines in different processes.
//!
//! One message is one buffer: the channels between two servers (SCTP data channels over DTLS)
//! are encrypted and authenticated and keep message boundaries, so there is no framing,
//! checksum or crypto here. Events cross a reliable, ordered channel; `Media` an unordered one
//! whose losses are repaired by [`super::shard_repair`], so its packets may arrive late and out
//! of order, as a publisher's own do.
//!
//! The first byte names the variant. Integers are big-endian, booleans are one byte (0 or 1).
//!
//! - `Media`, the hot path, is binary: a `u16` packet count, then per packet the track key
//!   (`u64`), layer (`u8`), extended sequence number (`u64`), RTP timestamp (`u32`), marker,
//!   payload type (`u8`, below 128), SSRC (`u32`), a flags byte saying which header extension
//!   values follow (audio level `i8`, voice activity, video orientation `u8`, video content type
//!   `u8`, AV1 dependency descriptor as a `u8` length and its bytes), then the payload as a `u16`
//!   length and its bytes. Only what forwarding reads is carried; the receiver's arrival time
//!   stamps the packet.
//! - `Unpublished`, `Muted`, `PublisherLayers`, `Needs` and `Keyframe` are binary too: a track
//!   key and a byte.
//! - `Joined`, `Left`, `Updated`, `Published`, `Reconnecting` and `Quality` are rare: one JSON
//!   object after the tag, to the end of the buffer.
//! - `Data` is a `u32` length and a JSON header (room, label, binary, recipients), then the
//!   message as a `u32` length and its bytes.
//!
//! Decoding checks everything: lengths against what is left, the limits below, enum values,
//! and that nothing follows the message. A peer that sends garbage gets an error, never a panic.

use std::sync::Arc;
use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpHeader, SeqNo, VideoOrientation};
use tracing::debug;

use super::event::{LeaveReason, ParticipantView, TrackSource, TrackView};
use super::fanout::Packet;
use super::forward::av1::{DdMalformed, DependencyDescriptor};
use super::quality::Quality;
use super::shard::{Relayed, ShardMessage, TrackSpec};

/// Most packets in one `Media` message. An engine gathers one message per other engine and per
/// turn (one batch of input), typically far fewer; a longer batch is cut on encode.
pub const MAX_MEDIA_PACKETS: usize = 1024;

/// Largest payload of a relayed packet, in bytes: an RTP packet in a 1500-byte datagram
/// carries less. A packet with a larger payload is left out on encode.
pub const MAX_PAYLOAD: usize = 1500;

/// Most layers (rids) of a relayed track: layer masks are one byte (the local path keeps 8 too).
pub const MAX_LAYERS: usize = 8;

/// Why a buffer is not a message.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the message does.
    #[error("message truncated")]
    Truncated,
    /// The first byte names no variant.
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    /// A count or length is above its limit.
    #[error("{0} above the limit")]
    TooLong(&'static str),
    /// A value is out of its range.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// Bytes follow the message.
    #[error("trailing bytes after the message")]
    Trailing,
    /// A JSON part does not parse.
    #[error("JSON: {0}")]
    Json(String),
}

// The tag of each variant (0 is none, so that a zeroed buffer is refused).
const JOINED: u8 = 1;
const LEFT: u8 = 2;
const UPDATED: u8 = 3;
const PUBLISHED: u8 = 4;
const RECONNECTING: u8 = 5;
const QUALITY: u8 = 6;
const UNPUBLISHED: u8 = 7;
const MUTED: u8 = 8;
const PUBLISHER_LAYERS: u8 = 9;
const MEDIA: u8 = 10;
const NEEDS: u8 = 11;
const KEYFRAME: u8 = 12;
const DATA: u8 = 13;

// Which optional extension values follow a packet's fixed header, in this order.
const EXT_AUDIO_LEVEL: u8 = 1 << 0;
const EXT_VOICE_ACTIVITY: u8 = 1 << 1;
const EXT_VIDEO_ORIENTATION: u8 = 1 << 2;
const EXT_VIDEO_CONTENT_TYPE: u8 = 1 << 3;
const EXT_DEPENDENCY_DESCRIPTOR: u8 = 1 << 4;
const EXT_ALL: u8 = (1 << 5) - 1;

/// A packet's bytes before its optional values: track, layer, seq, timestamp, marker, payload
/// type, SSRC, flags, payload length.
const PACKET_MIN_LEN: usize = 8 + 1 + 8 + 4 + 1 + 1 + 4 + 1 + 2;

/// Append the encoding of `msg` to `out`.
///
/// A `Media` message keeps at most [`MAX_MEDIA_PACKETS`] packets and leaves out those whose
/// payload is above [`MAX_PAYLOAD`], so that what is encoded always decodes; split longer
/// batches first. A lost packet is recovered like one lost on the network.
pub fn encode(msg: &ShardMessage, out: &mut Vec<u8>) {
    match msg {
        ShardMessage::Joined { room, participant } => {
            out.push(JOINED);
            put_json(out, &RoomParticipant::new(room, participant));
        }
        ShardMessage::Left {
            room,
            participant,
            reason,
        } => {
            out.push(LEFT);
            let left = LeftJson {
                room: room.clone(),
                participant: participant.clone(),
                reason: (*reason).into(),
            };
            put_json(out, &left);
        }
        ShardMessage::Updated { room, participant } => {
            out.push(UPDATED);
            put_json(out, &RoomParticipant::new(room, participant));
        }
        ShardMessage::Published {
            room,
            publisher,
            track,
        } => {
            out.push(PUBLISHED);
            let published = PublishedJson {
                room: room.clone(),
                publisher: publisher.clone(),
                track: TrackSpecJson::from(&**track),
            };
            put_json(out, &published);
        }
        ShardMessage::Reconnecting {
            room,
            participant,
            reconnecting,
        } => {
            out.push(RECONNECTING);
            let r = ReconnectingJson {
                room: room.clone(),
                participant: participant.clone(),
                reconnecting: *reconnecting,
            };
            put_json(out, &r);
        }
        ShardMessage::Quality {
            room,
            participant,
            quality,
        } => {
            out.push(QUALITY);
            let q = QualityJson {
                room: room.clone(),
                participant: participant.clone(),
                quality: (*quality).into(),
            };
            put_json(out, &q);
        }
        ShardMessage::Unpublished { track } => {
            out.push(UNPUBLISHED);
            out.extend_from_slice(&track.to_be_bytes());
        }
        ShardMessage::Muted { track, muted } => {
            out.push(MUTED);
            out.extend_from_slice(&track.to_be_bytes());
            out.push(u8::from(*muted));
        }
        ShardMessage::PublisherLayers { track, mask } => {
            out.push(PUBLISHER_LAYERS);
            out.extend_from_slice(&track.to_be_bytes());
            out.push(*mask);
        }
        ShardMessage::Media(batch) => {
            out.push(MEDIA);
            encode_media(batch, out);
        }
        ShardMessage::Needs { track, mask } => {
            out.push(NEEDS);
            out.extend_from_slice(&track.to_be_bytes());
            out.push(*mask);
        }
        ShardMessage::Keyframe { track, layer } => {
            out.push(KEYFRAME);
            out.extend_from_slice(&track.to_be_bytes());
            out.push(*layer);
        }
        ShardMessage::Data {
            room,
            label,
            binary,
            to,
            data,
        } => {
            out.push(DATA);
            let header = DataHeader {
                room: room.clone(),
                label: label.clone(),
                binary: *binary,
                to: to.clone(),
            };
            let at = out.len();
            out.extend_from_slice(&[0; 4]);
            put_json(out, &header);
            patch_u32(out, at);
            put_u32_len(out, data.len());
            out.extend_from_slice(data);
        }
    }
}

/// Read one message; relayed packets get `now` as their arrival time.
pub fn decode(buf: &[u8], now: Instant) -> Result<ShardMessage, WireError> {
    let mut r = Reader { buf };
    let msg = match r.u8()? {
        JOINED => {
            let j: RoomParticipant = json(r.rest())?;
            ShardMessage::Joined {
                room: j.room,
                participant: j.participant.into(),
            }
        }
        LEFT => {
            let j: LeftJson = json(r.rest())?;
            ShardMessage::Left {
                room: j.room,
                participant: j.participant,
                reason: j.reason.into(),
            }
        }
        UPDATED => {
            let j: RoomParticipant = json(r.rest())?;
            ShardMessage::Updated {
                room: j.room,
                participant: j.participant.into(),
            }
        }
        PUBLISHED => {
            let j: PublishedJson = json(r.rest())?;
            ShardMessage::Published {
                room: j.room,
                publisher: j.publisher,
                track: Box::new(j.track.into_spec()?),
            }
        }
        RECONNECTING => {
            let j: ReconnectingJson = json(r.rest())?;
            ShardMessage::Reconnecting {
                room: j.room,
                participant: j.participant,
                reconnecting: j.reconnecting,
            }
        }
        QUALITY => {
            let j: QualityJson = json(r.rest())?;
            ShardMessage::Quality {
                room: j.room,
                participant: j.participant,
                quality: j.quality.into(),
            }
        }
        UNPUBLISHED => ShardMessage::Unpublished { track: r.u64()? },
        MUTED => ShardMessage::Muted {
            track: r.u64()?,
            muted: r.bool()?,
        },
        PUBLISHER_LAYERS => ShardMessage::PublisherLayers {
            track: r.u64()?,
            mask: r.u8()?,
        },
        MEDIA => ShardMessage::Media(decode_media(&mut r, now)?),
        NEEDS => ShardMessage::Needs {
            track: r.u64()?,
            mask: r.u8()?,
        },
        KEYFRAME => ShardMessage::Keyframe {
            track: r.u64()?,
            layer: r.u8()?,
        },
        DATA => {
            let len = r.u32()? as usize;
            let header: DataHeader = json(r.take(len)?)?;
            let len = r.u32()? as usize;
            let data = Arc::from(r.take(len)?);
            ShardMessage::Data {
                room: header.room,
                label: header.label,
                binary: header.binary,
                to: header.to,
                data,
            }
        }
        tag => return Err(WireError::UnknownTag(tag)),
    };
    r.end()?;
    Ok(msg)
}

fn encode_media(batch: &[Relayed], out: &mut Vec<u8>) {
    let fits = |r: &&Relayed| r.packet.payload.len() <= MAX_PAYLOAD;
    let count = batch.iter().filter(fits).take(MAX_MEDIA_PACKETS).count();
    if count < batch.len() {
        debug!(
            packets = batch.len(),
            kept = count,
            "relayed packets left out of a media message"
        );
    }
    let bytes: usize = batch
        .iter()
        .filter(fits)
        .take(count)
        .map(|r| PACKET_MIN_LEN + 8 + r.packet.payload.len())
        .sum();
    out.reserve(2 + bytes);
    // At most MAX_MEDIA_PACKETS: fits in a u16.
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for r in batch.iter().filter(fits).take(count) {
        encode_packet(r, out);
    }
}

/// The bytes packet `r` adds to an encoded `Media` message (which starts with 3 bytes of tag
/// and count).
pub fn media_packet_len(r: &Relayed) -> usize {
    let ext = &r.packet.header.ext_vals;
    let dd = match ext.user_values.get::<DependencyDescriptor>() {
        Some(d) if d.bytes.len() <= usize::from(u8::MAX) => 1 + d.bytes.len(),
        Some(_) => 1,
        None => usize::from(ext.user_values.get::<DdMalformed>().is_some()),
    };
    28 + usize::from(ext.audio_level.is_some())
        + usize::from(ext.voice_activity.is_some())
        + usize::from(ext.video_orientation.is_some())
        + usize::from(ext.video_content_type.is_some())
        + dd
        + 2
        + r.packet.payload.len()
}

fn encode_packet(r: &Relayed, out: &mut Vec<u8>) {
    let Packet {
        seq_no,
        header,
        payload,
        ..
    } = &r.packet;
    let ext = &header.ext_vals;
    out.extend_from_slice(&r.track.to_be_bytes());
    out.push(r.layer);
    out.extend_from_slice(&(**seq_no).to_be_bytes());
    out.extend_from_slice(&header.timestamp.to_be_bytes());
    out.push(u8::from(header.marker));
    out.push(*header.payload_type);
    out.extend_from_slice(&(*header.ssrc).to_be_bytes());
    // A malformed descriptor goes as an empty one: the receiver marks it malformed too.
    let dd = match ext.user_values.get::<DependencyDescriptor>() {
        Some(d) if d.bytes.len() <= usize::from(u8::MAX) => Some(&d.bytes[..]),
        Some(_) => Some(&[][..]),
        None => ext.user_values.get::<DdMalformed>().map(|_| &[][..]),
    };
    let flags = flag(ext.audio_level.is_some(), EXT_AUDIO_LEVEL)
        | flag(ext.voice_activity.is_some(), EXT_VOICE_ACTIVITY)
        | flag(ext.video_orientation.is_some(), EXT_VIDEO_ORIENTATION)
        | flag(ext.video_content_type.is_some(), EXT_VIDEO_CONTENT_TYPE)
        | flag(dd.is_some(), EXT_DEPENDENCY_DESCRIPTOR);
    out.push(flags);
    if let Some(level) = ext.audio_level {
        out.extend_from_slice(&level.to_be_bytes());
    }
    if let Some(active) = ext.voice_activity {
        out.push(u8::from(active));
    }
    if let Some(o) = ext.video_orientation {
        out.push(orientation_byte(o));
    }
    if let Some(t) = ext.video_content_type {
        out.push(t);
    }
    if let Some(dd) = dd {
        // Checked above: at most 255 bytes.
        out.push(dd.len() as u8);
        out.extend_from_slice(dd);
    }
    // At most MAX_PAYLOAD (the caller filters): fits in a u16.
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

fn decode_media(r: &mut Reader<'_>, now: Instant) -> Result<Vec<Relayed>, WireError> {
    let count = usize::from(r.u16()?);
    if count > MAX_MEDIA_PACKETS {
        return Err(WireError::TooLong("packets"));
    }
    // Not more than the bytes left can hold, whatever the count says.
    let mut batch = Vec::with_capacity(count.min(r.buf.len() / PACKET_MIN_LEN));
    for _ in 0..count {
        batch.push(decode_packet(r, now)?);
    }
    Ok(batch)
}

fn decode_packet(r: &mut Reader<'_>, now: Instant) -> Result<Relayed, WireError> {
    let track = r.u64()?;
    let layer = r.u8()?;
    let seq_no = SeqNo::from(r.u64()?);
    let timestamp = r.u32()?;
    let marker = r.bool()?;
    let pt = r.u8()?;
    if pt > 127 {
        return Err(WireError::Invalid("payload type"));
    }
    let ssrc = r.u32()?;
    let flags = r.u8()?;
    if flags & !EXT_ALL != 0 {
        return Err(WireError::Invalid("extension flags"));
    }
    let mut ext = ExtensionValues::default();
    if flags & EXT_AUDIO_LEVEL != 0 {
        ext.audio_level = Some(i8::from_be_bytes([r.u8()?]));
    }
    if flags & EXT_VOICE_ACTIVITY != 0 {
        ext.voice_activity = Some(r.bool()?);
    }
    if flags & EXT_VIDEO_ORIENTATION != 0 {
        ext.video_orientation = Some(orientation(r.u8()?)?);
    }
    if flags & EXT_VIDEO_CONTENT_TYPE != 0 {
        ext.video_content_type = Some(r.u8()?);
    }
    if flags & EXT_DEPENDENCY_DESCRIPTOR != 0 {
        let len = usize::from(r.u8()?);
        // As on arrival from a publisher (see `DdSerializer::parse_value`).
        match DependencyDescriptor::parse(r.take(len)?) {
            Ok(dd) => ext.user_values.set(dd),
            Err(_) => ext.user_values.set(DdMalformed),
        }
    }
    let len = usize::from(r.u16()?);
    if len > MAX_PAYLOAD {
        return Err(WireError::TooLong("payload"));
    }
    let payload = Arc::from(r.take(len)?);
    let header = RtpHeader {
        marker,
        payload_type: Pt::from(pt),
        sequence_number: *seq_no as u16,
        timestamp,
        ssrc: ssrc.into(),
        ext_vals: ext,
        ..RtpHeader::default()
    };
    Ok(Relayed {
        track,
        layer,
        packet: Packet {
            seq_no,
            header,
            payload,
            timestamp: now,
        },
    })
}

fn flag(on: bool, bit: u8) -> u8 {
    if on {
        bit
    } else {
        0
    }
}

/// Quarter turns clockwise.
fn orientation_byte(o: VideoOrientation) -> u8 {
    match o {
        VideoOrientation::Deg0 => 0,
        VideoOrientation::Deg90 => 1,
        VideoOrientation::Deg180 => 2,
        VideoOrientation::Deg270 => 3,
    }
}

fn orientation(b: u8) -> Result<VideoOrientation, WireError> {
    Ok(match b {
        0 => VideoOrientation::Deg0,
        1 => VideoOrientation::Deg90,
        2 => VideoOrientation::Deg180,
        3 => VideoOrientation::Deg270,
        _ => return Err(WireError::Invalid("video orientation")),
    })
}

fn put_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Writing to a Vec does not fail, and these types (strings, numbers, bools, options,
    // sequences, plain structs and enums; no maps) always serialize.
    serde_json::to_writer(out, value).expect("plain data serializes to JSON");
}

/// Write the length of what follows the 4 bytes at `at` into them.
fn patch_u32(out: &mut [u8], at: usize) {
    let len = out.len() - at - 4;
    put_u32_at(out, at, len);
}

fn put_u32_at(out: &mut [u8], at: usize, len: usize) {
    // A message over 4 GiB cannot cross an SCTP channel: cap rather than wrap, so that it
    // fails to decode instead of reading as something else.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_u32_len(out: &mut Vec<u8>, len: usize) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    put_u32_at(out, at, len);
}

/// One JSON value that fills `buf` exactly (no whitespace or anything else after it).
fn json<T: DeserializeOwned>(buf: &[u8]) -> Result<T, WireError> {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<T>();
    let value = match values.next() {
        Some(v) => v.map_err(|e| {
            if e.is_eof() {
                WireError::Truncated
            } else {
                WireError::Json(e.to_string())
            }
        })?,
        None => return Err(WireError::Truncated),
    };
    if values.byte_offset() != buf.len() {
        return Err(WireError::Trailing);
    }
    Ok(value)
}

/// Reads a buffer front to back; every read checks what is left.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(WireError::Truncated)?;
        self.buf = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn bool(&mut self) -> Result<bool, WireError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(WireError::Invalid("boolean")),
        }
    }

    /// Everything left (for a part that runs to the end).
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn end(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

// The JSON forms. The core types stay free of serde: ids of str0m (`Mid`, `Rid`) go as strings
// and are checked on the way in (their own serde takes any bytes, which their `Deref` would
// later refuse with a panic), and `MediaKind` has no serde at all.

#[derive(Serialize, Deserialize)]
struct RoomParticipant {
    room: String,
    participant: ParticipantJson,
}

impl RoomParticipant {
    fn new(room: &str, p: &ParticipantView) -> Self {
        RoomParticipant {
            room: room.to_owned(),
            participant: p.into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct LeftJson {
    room: String,
    participant: String,
    reason: ReasonJson,
}

#[derive(Serialize, Deserialize)]
struct PublishedJson {
    room: String,
    publisher: String,
    track: TrackSpecJson,
}

#[derive(Serialize, Deserialize)]
struct ReconnectingJson {
    room: String,
    participant: String,
    reconnecting: bool,
}

#[derive(Serialize, Deserialize)]
struct QualityJson {
    room: String,
    participant: String,
    quality: QualityLevel,
}

#[derive(Serialize, Deserialize)]
struct DataHeader {
    room: String,
    label: String,
    binary: bool,
    to: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct ParticipantJson {
    id: String,
    name: String,
    identity: Option<String>,
    metadata: Option<String>,
    tracks: Vec<TrackViewJson>,
}

impl From<&ParticipantView> for ParticipantJson {
    fn from(p: &ParticipantView) -> Self {
        ParticipantJson {
            id: p.id.clone(),
            name: p.name.clone(),
            identity: p.identity.clone(),
            metadata: p.metadata.clone(),
            tracks: p.tracks.iter().map(TrackViewJson::from).collect(),
        }
    }
}

impl From<ParticipantJson> for ParticipantView {
    fn from(p: ParticipantJson) -> Self {
        ParticipantView {
            id: p.id,
            name: p.name,
            identity: p.identity,
            metadata: p.metadata,
            tracks: p.tracks.into_iter().map(TrackView::from).collect(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct TrackViewJson {
    id: String,
    kind: Kind,
    muted: bool,
    source: Source,
}

impl From<&TrackView> for TrackViewJson {
    fn from(t: &TrackView) -> Self {
        TrackViewJson {
            id: t.id.clone(),
            kind: t.kind.into(),
            muted: t.muted,
            source: t.source.into(),
        }
    }
}

impl From<TrackViewJson> for TrackView {
    fn from(t: TrackViewJson) -> Self {
        TrackView {
            id: t.id,
            kind: t.kind.into(),
            muted: t.muted,
            source: t.source.into(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct TrackSpecJson {
    key: u64,
    id: String,
    kind: Kind,
    mid: String,
    rids: Vec<Option<String>>,
    codecs: Vec<PayloadParams>,
    params: Vec<PayloadParams>,
    muted: bool,
    source: Source,
    priority: u8,
    publisher_mask: Option<u8>,
}

impl From<&TrackSpec> for TrackSpecJson {
    fn from(t: &TrackSpec) -> Self {
        TrackSpecJson {
            key: t.key,
            id: t.id.clone(),
            kind: t.kind.into(),
            mid: t.mid.to_string(),
            rids: t.rids.iter().map(|r| r.map(|r| r.to_string())).collect(),
            codecs: t.codecs.clone(),
            params: t.params.clone(),
            muted: t.muted,
            source: t.source.into(),
            priority: t.priority,
            publisher_mask: t.publisher_mask,
        }
    }
}

impl TrackSpecJson {
    fn into_spec(self) -> Result<TrackSpec, WireError> {
        if self.rids.is_empty() || self.rids.len() > MAX_LAYERS {
            return Err(WireError::Invalid("layer count"));
        }
        let rids = self
            .rids
            .iter()
            .map(|r| r.as_deref().map(rid).transpose())
            .collect::<Result<_, _>>()?;
        // Payload types are 7 bits; str0m asserts that when it writes a header.
        let pt_ok = |pt: Pt| *pt <= 127;
        let params_ok = |p: &PayloadParams| {
            pt_ok(p.pt()) && p.resend().is_none_or(pt_ok) && p.red().is_none_or(pt_ok)
        };
        if !self.codecs.iter().chain(&self.params).all(params_ok) {
            return Err(WireError::Invalid("payload type"));
        }
        Ok(TrackSpec {
            key: self.key,
            id: self.id,
            kind: self.kind.into(),
            mid: mid(&self.mid)?,
            rids,
            codecs: self.codecs,
            params: self.params,
            muted: self.muted,
            source: self.source.into(),
            priority: self.priority,
            publisher_mask: self.publisher_mask,
        })
    }
}

/// Whether `s` is an id as str0m keeps them: ASCII letters, digits and `_` (it replaces anything
/// else), at most `max` bytes.
fn id_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn mid(s: &str) -> Result<Mid, WireError> {
    if !id_ok(s, 16) {
        return Err(WireError::Invalid("mid"));
    }
    Ok(Mid::from(s))
}

fn rid(s: &str) -> Result<Rid, WireError> {
    if !id_ok(s, 8) {
        return Err(WireError::Invalid("rid"));
    }
    Ok(Rid::from(s))
}

/// Implements `From` both ways between a core enum and its JSON twin.
macro_rules! twin {
    ($json:ident, $core:ty, $($v:ident),+) => {
        #[derive(Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum $json {
            $($v),+
        }

        impl From<$core> for $json {
            fn from(v: $core) -> Self {
                match v {
                    $(<$core>::$v => $json::$v),+
                }
            }
        }

        impl From<$json> for $core {
            fn from(v: $json) -> Self {
                match v {
                    $($json::$v => <$core>::$v),+
                }
            }
        }
    };
}

twin!(Kind, MediaKind, Audio, Video);
twin!(Source, TrackSource, Camera, Microphone, Screen, ScreenAudio);
twin!(QualityLevel, Quality, Lost, Poor, Good, Excellent);
twin!(
    ReasonJson,
    LeaveReason,
    Left,
    Disconnected,
    Timeout,
    SlowConsumer,
    DuplicateIdentity,
    Removed,
    RoomDeleted,
    ServerShutdown
);

#[cfg(test)]
mod tests {
    use super::*;
    use str0m::format::{Codec, CodecConfig};

    use crate::core::forward::av1::tests::CHROMIUM_L3T3_KEY;

    fn header(pt: u8, seq: u64, ts: u32, ssrc: u32, marker: bool) -> RtpHeader {
        RtpHeader {
            marker,
            payload_type: pt.into(),
            sequence_number: seq as u16,
            timestamp: ts,
            ssrc: ssrc.into(),
            ..RtpHeader::default()
        }
    }

    fn relayed(track: u64, layer: u8, seq: u64, header: RtpHeader, payload: &[u8]) -> Relayed {
        Relayed {
            track,
            layer,
            packet: Packet {
                seq_no: seq.into(),
                header,
                payload: payload.into(),
                timestamp: Instant::now(),
            },
        }
    }

    fn audio_packet() -> Relayed {
        let mut h = header(111, 70_000, 960_000, 0x1234_5678, true);
        h.ext_vals.audio_level = Some(-37);
        h.ext_vals.voice_activity = Some(true);
        relayed(3, 0, 70_000, h, &[0xfc, 1, 2, 3, 4, 5])
    }

    fn av1_packet() -> Relayed {
        // Rolled over three times: the header has the low 16 bits.
        let seq = (3 << 16) + 5;
        let mut h = header(45, seq, 90_000, 0xdead_beef, false);
        h.ext_vals.video_orientation = Some(VideoOrientation::Deg270);
        h.ext_vals.video_content_type = Some(1);
        let dd = DependencyDescriptor::parse(&CHROMIUM_L3T3_KEY).expect("a valid descriptor");
        h.ext_vals.user_values.set(dd);
        relayed(9, 2, seq, h, &[0x18; 1200])
    }

    fn malformed_dd_packet() -> Relayed {
        let mut h = header(45, 6, 90_000, 0xdead_beef, true);
        h.ext_vals.user_values.set(DdMalformed);
        relayed(9, 1, 6, h, &[])
    }

    fn participant(tracks: bool) -> ParticipantView {
        ParticipantView {
            id: "p-1".into(),
            name: "Zoë \"the\" tester".into(),
            identity: Some("zoe@example.com".into()),
            metadata: None,
            tracks: if tracks {
                vec![TrackView {
                    id: "TR_1".into(),
                    kind: MediaKind::Video,
                    muted: true,
                    source: TrackSource::Screen,
                }]
            } else {
                Vec::new()
            },
        }
    }

    fn video_spec() -> TrackSpec {
        let config = CodecConfig::new_with_defaults();
        let params = config.params().to_vec();
        let codecs = params
            .iter()
            .filter(|p| matches!(p.spec().codec, Codec::Vp8 | Codec::H264))
            .copied()
            .collect::<Vec<_>>();
        assert!(codecs.len() >= 2);
        TrackSpec {
            key: 42,
            id: "TR_video".into(),
            kind: MediaKind::Video,
            mid: Mid::from("1"),
            rids: vec![
                Some(Rid::from("q")),
                Some(Rid::from("h")),
                Some(Rid::from("f")),
            ],
            codecs,
            params,
            muted: false,
            source: TrackSource::Camera,
            priority: 3,
            publisher_mask: Some(0b011),
        }
    }

    fn audio_spec() -> TrackSpec {
        TrackSpec {
            key: 7,
            id: "TR_audio".into(),
            kind: MediaKind::Audio,
            mid: Mid::from("0"),
            rids: vec![None],
            codecs: Vec::new(),
            params: CodecConfig::new_with_defaults().params().to_vec(),
            muted: true,
            source: TrackSource::Microphone,
            priority: 0,
            publisher_mask: None,
        }
    }

    /// One or more messages of every variant, with realistic values.
    fn samples() -> Vec<ShardMessage> {
        let mut v = vec![
            ShardMessage::Joined {
                room: "room-1".into(),
                participant: participant(false),
            },
            ShardMessage::Updated {
                room: "room-1".into(),
                participant: participant(true),
            },
            ShardMessage::Published {
                room: "room-1".into(),
                publisher: "p-1".into(),
                track: Box::new(video_spec()),
            },
            ShardMessage::Published {
                room: "room-1".into(),
                publisher: "p-1".into(),
                track: Box::new(audio_spec()),
            },
            ShardMessage::Reconnecting {
                room: "room-1".into(),
                participant: "p-1".into(),
                reconnecting: true,
            },
            ShardMessage::Reconnecting {
                room: "room-1".into(),
                participant: "p-1".into(),
                reconnecting: false,
            },
            ShardMessage::Unpublished { track: 42 },
            ShardMessage::Muted {
                track: u64::MAX,
                muted: true,
            },
            ShardMessage::PublisherLayers {
                track: 42,
                mask: 0b101,
            },
            ShardMessage::Media(Vec::new()),
            ShardMessage::Media(vec![audio_packet(), av1_packet(), malformed_dd_packet()]),
            ShardMessage::Needs { track: 42, mask: 0 },
            ShardMessage::Keyframe {
                track: 42,
                layer: 2,
            },
            ShardMessage::Data {
                room: "room-1".into(),
                label: "_reliable".into(),
                binary: true,
                to: Some(vec!["p-2".into(), "p-3".into()]),
                data: Arc::from(&[0u8, 255, 7, b'{'][..]),
            },
            ShardMessage::Data {
                room: "room-1".into(),
                label: "chat".into(),
                binary: false,
                to: None,
                data: Arc::from(&b"{\"from\":\"p-1\",\"text\":\"hi\"}"[..]),
            },
            ShardMessage::Data {
                room: "r".into(),
                label: String::new(),
                binary: false,
                to: Some(Vec::new()),
                data: Arc::from(&[][..]),
            },
        ];
        for reason in LeaveReason::ALL {
            v.push(ShardMessage::Left {
                room: "room-1".into(),
                participant: "p-1".into(),
                reason,
            });
        }
        for quality in [
            Quality::Lost,
            Quality::Poor,
            Quality::Good,
            Quality::Excellent,
        ] {
            v.push(ShardMessage::Quality {
                room: "room-1".into(),
                participant: "p-1".into(),
                quality,
            });
        }
        v
    }

    fn encoded(msg: &ShardMessage) -> Vec<u8> {
        let mut out = Vec::new();
        encode(msg, &mut out);
        out
    }

    /// `a` and `b` carry the same packets, with `b` stamped `now`.
    fn assert_same_packets(a: &[Relayed], b: &[Relayed], now: Instant) {
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            assert_eq!(a.track, b.track);
            assert_eq!(a.layer, b.layer);
            assert_eq!(a.packet.seq_no, b.packet.seq_no);
            assert_eq!(a.packet.payload, b.packet.payload);
            assert_eq!(b.packet.timestamp, now);
            let (ha, hb) = (&a.packet.header, &b.packet.header);
            assert_eq!(ha, hb);
            assert_eq!(format!("{ha:?}"), format!("{hb:?}"));
            let (ea, eb) = (&ha.ext_vals, &hb.ext_vals);
            assert_eq!(ea.audio_level, eb.audio_level);
            assert_eq!(ea.voice_activity, eb.voice_activity);
            assert_eq!(ea.video_orientation, eb.video_orientation);
            assert_eq!(ea.video_content_type, eb.video_content_type);
            assert_eq!(
                ea.user_values.get::<DependencyDescriptor>(),
                eb.user_values.get::<DependencyDescriptor>()
            );
            assert_eq!(
                ea.user_values.get::<DdMalformed>().is_some(),
                eb.user_values.get::<DdMalformed>().is_some()
            );
        }
    }

    #[test]
    fn every_variant_round_trips() {
        let now = Instant::now();
        let mut tags = std::collections::BTreeSet::new();
        for msg in samples() {
            let buf = encoded(&msg);
            tags.insert(buf[0]);
            let back = decode(&buf, now).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
            match (&msg, &back) {
                (ShardMessage::Media(a), ShardMessage::Media(b)) => assert_same_packets(a, b, now),
                // Everything else has a faithful Debug (PayloadParams shows every field).
                _ => assert_eq!(format!("{msg:?}"), format!("{back:?}")),
            }
            // Encoding is deterministic: the decoded message encodes to the same bytes.
            assert_eq!(encoded(&back), buf, "{msg:?}");
        }
        assert_eq!(tags.len(), 13, "every variant is sampled");
    }

    #[test]
    fn media_is_compact_and_keeps_the_descriptor() {
        let audio = encoded(&ShardMessage::Media(vec![audio_packet()]));
        // Tag, count, fixed header, level and activity, payload length, payload.
        assert_eq!(audio.len(), 1 + 2 + 28 + 2 + 2 + 6);
        let now = Instant::now();
        let Ok(ShardMessage::Media(batch)) =
            decode(&encoded(&ShardMessage::Media(vec![av1_packet()])), now)
        else {
            panic!("media");
        };
        let dd = batch[0]
            .packet
            .header
            .ext_vals
            .user_values
            .get::<DependencyDescriptor>()
            .expect("descriptor");
        assert!(dd.structure.is_some());
        assert_eq!(&dd.bytes[..], &CHROMIUM_L3T3_KEY[..]);
        assert_eq!(batch[0].packet.header.sequence_number, 5);
        assert_eq!(*batch[0].packet.seq_no, (3 << 16) + 5);
    }

    #[test]
    fn the_length_of_a_packet_is_known_before_encoding() {
        for p in [audio_packet(), av1_packet(), malformed_dd_packet()] {
            let len = media_packet_len(&p);
            assert_eq!(encoded(&ShardMessage::Media(vec![p])).len(), 3 + len);
        }
    }

    #[test]
    fn every_strict_prefix_fails() {
        for msg in samples() {
            let buf = encoded(&msg);
            for len in 0..buf.len() {
                assert!(
                    decode(&buf[..len], Instant::now()).is_err(),
                    "{msg:?} cut at {len} of {}",
                    buf.len()
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        for msg in samples() {
            for extra in [0u8, b' ', b'\n', 1] {
                let mut buf = encoded(&msg);
                buf.push(extra);
                assert!(
                    matches!(decode(&buf, Instant::now()), Err(WireError::Trailing)),
                    "{msg:?} with {extra}"
                );
            }
        }
    }

    #[test]
    fn limits_are_enforced() {
        let now = Instant::now();
        let h = header(96, 1, 0, 1, false);
        let one = encoded(&ShardMessage::Media(vec![relayed(1, 0, 1, h, &[1, 2, 3])]));
        // The count, after the tag.
        let mut buf = one.clone();
        buf[1..3].copy_from_slice(&(MAX_MEDIA_PACKETS as u16 + 1).to_be_bytes());
        assert!(matches!(
            decode(&buf, now),
            Err(WireError::TooLong("packets"))
        ));
        // The payload length, after the tag, the count and the fixed header (no extensions).
        let mut buf = one.clone();
        let at = 1 + 2 + 28;
        buf[at..at + 2].copy_from_slice(&(MAX_PAYLOAD as u16 + 1).to_be_bytes());
        buf.extend(std::iter::repeat_n(0, MAX_PAYLOAD + 1 - 3));
        assert!(matches!(
            decode(&buf, now),
            Err(WireError::TooLong("payload"))
        ));
        // A payload of exactly the limit is fine.
        let h = header(96, 1, 0, 1, false);
        let max = encoded(&ShardMessage::Media(vec![relayed(
            1,
            0,
            1,
            h,
            &[7; MAX_PAYLOAD],
        )]));
        assert!(decode(&max, now).is_ok());
        // A payload type above 7 bits, an unknown flag, an orientation that is none.
        let mut buf = one.clone();
        buf[1 + 2 + 8 + 1 + 8 + 4 + 1] = 128;
        assert!(matches!(
            decode(&buf, now),
            Err(WireError::Invalid("payload type"))
        ));
        let mut buf = one.clone();
        buf[1 + 2 + 27] = 1 << 5;
        assert!(matches!(
            decode(&buf, now),
            Err(WireError::Invalid("extension flags"))
        ));
        let mut h = header(96, 1, 0, 1, false);
        h.ext_vals.video_orientation = Some(VideoOrientation::Deg90);
        let mut buf = encoded(&ShardMessage::Media(vec![relayed(1, 0, 1, h, &[])]));
        buf[1 + 2 + 28] = 4;
        assert!(matches!(
            decode(&buf, now),
            Err(WireError::Invalid("video orientation"))
        ));
        // A boolean that is neither 0 nor 1.
        let mut buf = encoded(&ShardMessage::Muted {
            track: 1,
            muted: true,
        });
        buf[9] = 2;
        assert!(matches!(
            decode(&buf, now),
            Err(WireError::Invalid("boolean"))
        ));
        assert!(matches!(decode(&[], now), Err(WireError::Truncated)));
        assert!(matches!(decode(&[0], now), Err(WireError::UnknownTag(0))));
        assert!(matches!(
            decode(&[200, 1, 2], now),
            Err(WireError::UnknownTag(200))
        ));
    }

    #[test]
    fn encode_keeps_within_the_limits() {
        let now = Instant::now();
        let h = header(96, 1, 0, 1, false);
        let mut batch: Vec<Relayed> = (0..MAX_MEDIA_PACKETS as u64 + 10)
            .map(|i| relayed(1, 0, i, h.clone(), &[1]))
            .collect();
        batch.insert(0, relayed(1, 0, 99, h.clone(), &[0; MAX_PAYLOAD + 1]));
        let buf = encoded(&ShardMessage::Media(batch));
        let Ok(ShardMessage::Media(back)) = decode(&buf, now) else {
            panic!("media");
        };
        assert_eq!(back.len(), MAX_MEDIA_PACKETS);
        assert_eq!(
            *back[0].packet.seq_no, 0,
            "the oversized packet is left out"
        );
    }

    #[test]
    fn bad_ids_and_payload_types_in_a_track_are_refused() {
        let now = Instant::now();
        let publish = |edit: &dyn Fn(&mut serde_json::Value)| {
            let buf = encoded(&ShardMessage::Published {
                room: "r".into(),
                publisher: "p".into(),
                track: Box::new(video_spec()),
            });
            let mut v: serde_json::Value = serde_json::from_slice(&buf[1..]).expect("JSON");
            edit(&mut v);
            let mut buf = vec![PUBLISHED];
            buf.extend(serde_json::to_vec(&v).expect("JSON"));
            decode(&buf, now)
        };
        assert!(publish(&|_| {}).is_ok());
        let bad_mid = publish(&|v| v["track"]["mid"] = "a\u{e9}".into());
        assert!(matches!(bad_mid, Err(WireError::Invalid("mid"))));
        let long_rid = publish(&|v| v["track"]["rids"][0] = "123456789".into());
        assert!(matches!(long_rid, Err(WireError::Invalid("rid"))));
        let many = publish(&|v| {
            v["track"]["rids"] = serde_json::Value::Array(vec![serde_json::Value::Null; 9])
        });
        assert!(matches!(many, Err(WireError::Invalid("layer count"))));
        let none = publish(&|v| v["track"]["rids"] = serde_json::json!([]));
        assert!(matches!(none, Err(WireError::Invalid("layer count"))));
        let pt = publish(&|v| v["track"]["params"][0]["pt"] = 200.into());
        assert!(matches!(pt, Err(WireError::Invalid("payload type"))));
        let kind = publish(&|v| v["track"]["kind"] = "data".into());
        assert!(matches!(kind, Err(WireError::Json(_))));
        let rate = publish(&|v| v["track"]["params"][0]["spec"]["clock_rate"] = 0.into());
        assert!(matches!(rate, Err(WireError::Json(_))));
    }

    /// xorshift64: a fixed sequence, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
    }

    #[test]
    fn random_and_mutated_buffers_never_panic() {
        let now = Instant::now();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Random bytes behind each tag (and a few unknown ones).
        for i in 0..4000 {
            let len = (rng.next() % 96) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Some(first) = buf.first_mut() {
                *first = (i % 15) as u8;
            }
            let _ = decode(&buf, now);
        }
        // Valid messages with a few bytes changed, cut or grown.
        let valid: Vec<Vec<u8>> = samples().iter().map(encoded).collect();
        for _ in 0..4000 {
            let mut buf = valid[(rng.next() % valid.len() as u64) as usize].clone();
            for _ in 0..1 + rng.next() % 4 {
                if buf.is_empty() {
                    break;
                }
                let at = (rng.next() % buf.len() as u64) as usize;
                buf[at] = rng.next() as u8;
            }
            match rng.next() % 4 {
                0 => buf.truncate((rng.next() % (buf.len() as u64 + 1)) as usize),
                1 => buf.push(rng.next() as u8),
                _ => {}
            }
            let _ = decode(&buf, now);
        }
    }
}
