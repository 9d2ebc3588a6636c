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
use serde::Serialize;
use str0m::media::Pt;
use str0m::rtp::{ExtensionValues, RtpHeader, SeqNo, VideoOrientation};
use tracing::debug;

use super::fanout::Packet;
use super::forward::av1::{DdMalformed, DependencyDescriptor};
use super::shard::{Relayed, ShardMessage};

mod json;

use json::{
    DataHeader, LeftJson, PublishedJson, QualityJson, ReconnectingJson, RoomParticipant,
    TrackSpecJson,
};

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

#[cfg(test)]
mod tests;
