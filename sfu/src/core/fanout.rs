//! The per-packet path: an RTP packet of a publisher, through every subscriber's layer
//! selector, forwarder and rewriters, into their connections' send queues.

use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap;
use str0m::format::{detect_h264_keyframe, detect_h264_nalu, detect_vp8_keyframe, Codec};
use str0m::format::{CodecConfig, PayloadParams};
use str0m::media::{KeyframeRequestKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpHeader, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::rtp::{Vp8Descriptor, Vp8Patch};

use str0m::media::MediaKind;
use tracing::debug;

use super::forward::av1::{self, DdMalformed, DependencyDescriptor};
use super::forward::picture_id::PictureIdRewriter;
use super::forward::select::{LayerIndex, Selection};
use super::forward::svc::{SvcPacket, SvcSelection};
use super::forward::vp9::Vp9Descriptor;
use super::forward::{self, DropReason, PacketInfo, Verdict};
use super::participant::{Participant, ParticipantKey};
use super::room::TrackKey;
use super::stats::{self, EngineStats};
use super::track::{self, Track, VideoCodec};
use super::Engine;

/// An incoming RTP packet as forwarding reads it: what str0m's [`RtpPacket`] carries, in a form
/// that can be handed to another engine (the payload shared, not copied).
#[derive(Debug, Clone)]
pub struct Packet {
    /// Extended sequence number.
    pub seq_no: SeqNo,
    /// The parsed header, with its extension values.
    pub header: RtpHeader,
    /// The payload.
    pub payload: Arc<[u8]>,
    /// When it was received.
    pub timestamp: Instant,
}

impl From<RtpPacket> for Packet {
    fn from(pkt: RtpPacket) -> Self {
        let RtpPacket {
            seq_no,
            header,
            payload,
            timestamp,
            ..
        } = pkt;
        Packet {
            seq_no,
            header,
            payload,
            timestamp,
        }
    }
}

impl Engine {
    /// Forward one RTP packet of publisher `key` to every subscriber of its track.
    pub(super) fn forward(&mut self, now: Instant, key: ParticipantKey, pkt: RtpPacket) {
        self.stats.rtp_in += 1;
        let Some((tk, layer)) = self.track_of(key, pkt.header.ssrc) else {
            return;
        };
        self.forward_packet(now, key, tk, layer, Packet::from(pkt));
    }

    /// Forward packet `pkt` of layer `layer` of track `tk` (published by `key`, here or on
    /// another engine) to every subscriber of the track here, and hand it to the other engines
    /// that have subscribers of it.
    pub(super) fn forward_packet(
        &mut self,
        now: Instant,
        key: ParticipantKey,
        tk: TrackKey,
        layer: LayerIndex,
        pkt: Packet,
    ) {
        let Some(track) = self.rooms.track_mut(tk) else {
            return;
        };
        let kind = stats::kind_index(track.kind);
        if track.origin.is_none() {
            // Counted once in the process: by the engine it reached first.
            self.stats.rtp_in_by_kind[kind] += 1;
            self.stats.rtp_in_bytes_by_kind[kind] += pkt.payload.len() as u64;
        }
        let in_pt = pkt.header.payload_type;
        let codec = match (track.kind, track.codec) {
            (MediaKind::Audio, _) => None,
            (MediaKind::Video, Some(c)) => Some(c),
            (MediaKind::Video, None) => {
                let c = publisher_params(&self.participants, track, key, in_pt, false)
                    .map_or(VideoCodec::Other, |pp| video_codec(pp.spec().codec));
                track.codec = Some(c);
                Some(c)
            }
        };
        // Parsed once; each subscriber may need its own picture id numbering.
        let vp9 = match codec {
            Some(VideoCodec::Vp9) => match Vp9Descriptor::parse(&pkt.payload) {
                Ok(d) => Some(d),
                Err(_) => {
                    self.stats.dropped[DropReason::Malformed.index()] +=
                        track.subscribers.len() as u64;
                    return;
                }
            },
            _ => None,
        };
        let keyframe_start = match (codec, &vp9) {
            // Every audio packet can start a stream.
            (None, _) => true,
            (Some(_), Some(d)) => d.starts_keyframe(),
            (Some(c), None) => is_keyframe_start(c, &pkt.payload),
        };
        // The packet's layers: from the VP9 descriptor, or from the AV1 dependency descriptor
        // and the structure of the last keyframe.
        let mut sizes = None;
        let scalable = match (&vp9, codec) {
            (Some(d), _) => {
                if track.learn_svc(d.ss_layers as usize, &d.ss_sizes) {
                    // Once, when a keyframe first announces more spatial layers.
                    debug!(
                        track = %track.id,
                        spatial_layers = d.ss_layers,
                        descriptor = ?&pkt.payload[..d.len.min(pkt.payload.len())],
                        "VP9 scalability structure"
                    );
                    self.agenda.layers_changed(tk);
                }
                sizes = d.size().map(|s| [Some(s)]);
                Some(Scalable {
                    spatial: d.spatial_id,
                    temporal: d.temporal_id,
                    begins_frame: d.begins_frame,
                    ends_frame: d.ends_frame,
                })
            }
            (None, Some(VideoCodec::Av1)) => {
                let ext = &pkt.header.ext_vals.user_values;
                if ext.get::<DdMalformed>().is_some() {
                    self.stats.dropped[DropReason::Malformed.index()] +=
                        track.subscribers.len() as u64;
                    return;
                }
                match ext.get::<DependencyDescriptor>() {
                    Some(dd) => {
                        if let Some(s) = &dd.structure {
                            // The structure belongs to the stream (the SSRC's layer), not to a
                            // spatial layer of it.
                            let known = track.layers.get(layer as usize).map(|l| &l.av1_structure);
                            if known.and_then(|k| k.as_deref()) != Some(s) {
                                // Once per keyframe at most, when the encoder changes its layers.
                                debug!(
                                    track = %track.id,
                                    spatial_layers = s.spatial_layers(),
                                    templates = s.layers.len(),
                                    resolutions = ?s.resolutions,
                                    descriptor = ?dd.bytes,
                                    "AV1 dependency structure"
                                );
                            }
                            let res: Vec<_> = s.resolutions.iter().map(|r| Some(*r)).collect();
                            if track.learn_svc(s.spatial_layers(), &res) {
                                self.agenda.layers_changed(tk);
                            }
                            sizes = res.first().copied().map(|s| [s]);
                            if let Some(l) = track.layers.get_mut(layer as usize) {
                                l.av1_structure = Some(s.clone());
                            }
                        }
                        let structure = track
                            .layers
                            .get(layer as usize)
                            .and_then(|l| l.av1_structure.as_ref());
                        match structure {
                            Some(s) => match s.layer_of(dd.template_id) {
                                Some((spatial, temporal)) => Some(Scalable {
                                    spatial,
                                    temporal,
                                    begins_frame: dd.start_of_frame,
                                    ends_frame: dd.end_of_frame,
                                }),
                                None => {
                                    self.stats.dropped[DropReason::Malformed.index()] +=
                                        track.subscribers.len() as u64;
                                    return;
                                }
                            },
                            // Before the first keyframe's structure: nothing to place it by
                            // (and nobody can start before that keyframe).
                            None => None,
                        }
                    }
                    None => None,
                }
            }
            _ => None,
        };
        // In an SVC stream the layer is the packet's spatial layer, and a layer's rate
        // includes the layers below it (a subscriber of that layer receives them too).
        let layer = match &scalable {
            Some(sc) if track.svc => {
                if sc.spatial as usize >= track.layers.len() {
                    self.stats.dropped[DropReason::Malformed.index()] +=
                        track.subscribers.len() as u64;
                    return;
                }
                for above in &mut track.layers[sc.spatial as usize + 1..] {
                    above.rate.add(now, pkt.payload.len());
                }
                sc.spatial
            }
            _ => layer,
        };
        if let (0, Some(sc)) = (layer, &scalable) {
            track.temporal.add(now, sc.temporal, pkt.payload.len());
        }
        let svc = track.svc;
        let Some(l) = track.layers.get_mut(layer as usize) else {
            return;
        };
        l.rate.add(now, pkt.payload.len());
        let was_arriving = l
            .last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < track::LAYER_TIMEOUT);
        l.last_packet = Some(now);
        if keyframe_start && track.kind == MediaKind::Video {
            l.last_keyframe = Some(now);
        }
        if keyframe_start && track.codec == Some(VideoCodec::Vp8) {
            l.size = forward::vp8::keyframe_size(&pkt.payload).or(l.size);
        }
        if !svc {
            if let Some([Some(size)]) = sizes {
                l.size = Some(size);
            }
        }
        if svc && keyframe_start {
            // A keyframe starts every spatial layer.
            for l in &mut track.layers {
                l.last_keyframe = Some(now);
            }
        }
        if !was_arriving && track.kind == MediaKind::Video {
            // A layer (re)appeared: the subscribers' allocations may change.
            self.agenda.layers_changed(tk);
        }
        if track.muted {
            self.stats.dropped[DropReason::Muted.index()] += track.subscribers.len() as u64;
            return;
        }
        // Once per other engine with subscribers of it, before this engine's own subscribers.
        for &(shard, _) in &track.relays {
            self.shards.relay(shard, tk, layer, &pkt);
        }
        if let Some(level) = pkt.header.ext_vals.audio_level {
            let dbov = (level as i16).unsigned_abs().min(127) as u8;
            if let Some(speaking) = track.speaker.handle_level(now, dbov) {
                self.agenda.speaking(tk, speaking);
            }
        }
        let info = PacketInfo {
            seq: *pkt.seq_no,
            ts: pkt.header.timestamp,
            keyframe_start,
            at: pkt.timestamp,
        };
        let mut ext = forwarded_extensions(&pkt.header.ext_vals);
        let dd = match codec {
            Some(VideoCodec::Av1) => pkt
                .header
                .ext_vals
                .user_values
                .get::<DependencyDescriptor>(),
            _ => None,
        };
        if let Some(dd) = dd {
            ext.user_values.set(dd.clone());
        }
        // The last renumbered AV1 descriptor, shared by the subscribers that number alike.
        let mut renumbered_dd: Option<DependencyDescriptor> = None;
        let nackable = track.kind == MediaKind::Video;
        let vp8 = (track.codec == Some(VideoCodec::Vp8))
            .then(|| Vp8Descriptor::parse(&pkt.payload).ok())
            .flatten();
        let short_pid = !forward::vp8::long_picture_id(&pkt.payload);
        let mut keyframe_needed = false;
        // The last renumbered VP9 payload, shared by the subscribers that number alike.
        let mut renumbered: Option<Renumbered> = None;
        // The publisher's parameters for this payload type, looked up once per payload type.
        let in_params = match track.in_params {
            Some((pt, params)) if pt == in_pt => Some(params),
            _ => {
                // Redundant audio has no parameters of its own: it belongs to the codec (Opus)
                // whose RED payload type it is.
                let params = publisher_params(&self.participants, track, key, in_pt, true);
                track.in_params = params.map(|pp| (in_pt, pp));
                params
            }
        };

        // Redundant audio: forwarded as it is to subscribers whose link loses packets and who
        // negotiated RED, as plain Opus (its primary block, cut once) to the others. From a
        // publisher that sends plain Opus, those subscribers get RED made here: each packet with
        // the one before it (made once per packet and shared).
        let red = in_params.is_some_and(|p| p.pt() != in_pt);
        let mut primary = None;
        self.stats.red_in += u64::from(red);
        let plain_opus = !red && in_params.is_some_and(|p| p.spec().codec == Codec::Opus);
        let previous = track
            .last_audio
            .as_ref()
            .filter(|(seq, _, _)| plain_opus && seq.wrapping_add(1) == info.seq)
            .map(|(_, ts, p)| (info.ts.wrapping_sub(*ts), p.clone()));
        let mut made: Option<(u8, Arc<[u8]>)> = None;

        for &sk in &track.subscribers {
            let Some(s) = self.participants.get_mut(&sk) else {
                continue;
            };
            let Some(sub) = s.subs.get_mut(&tk) else {
                continue;
            };
            let drop = |stats: &mut EngineStats, r: DropReason| stats.dropped[r.index()] += 1;
            // For RED this is the subscriber's plain Opus payload type.
            let mut out_pt = out_payload_type(&s.rtc, sub.mid, &mut sub.pt_map, in_pt, in_params);
            let mut stripped = red;
            // For a plain Opus publisher: RED made here, carrying this Opus payload type inside.
            let mut wrap = None;
            if plain_opus && s.red.on() {
                let red_pt = *sub.red_pt.get_or_insert_with(|| {
                    in_params.and_then(|params| negotiated_red_pt(&s.rtc, sub.mid, params))
                });
                if let (Some(r), Some(inner)) = (red_pt, out_pt) {
                    wrap = Some(*inner);
                    out_pt = Some(r);
                }
            }
            if red && s.red.on() {
                let red_pt = *sub.red_pt.get_or_insert_with(|| {
                    in_params.and_then(|params| negotiated_red_pt(&s.rtc, sub.mid, params))
                });
                if red_pt.is_some() {
                    out_pt = red_pt;
                    stripped = false;
                }
            }
            if out_pt.is_some() != sub.codec_ok {
                // The publisher changed codec: this subscriber can now, or no longer, take it.
                sub.codec_ok = out_pt.is_some();
                self.agenda.allocate(sk);
            }
            let Some(out_pt) = out_pt else {
                drop(&mut self.stats, DropReason::Codec);
                continue;
            };
            let mut marker = pkt.header.marker;
            let switch = match (svc, &scalable) {
                (true, Some(sc)) => {
                    let p = SvcPacket {
                        ts: pkt.header.timestamp,
                        spatial: sc.spatial,
                        keyframe_start,
                        ends_frame: sc.ends_frame,
                    };
                    let selection = sub.svc.select(sub.selector.target(), p);
                    if sub.svc.current() != sub.selector.current() {
                        sub.selector.set_current(sub.svc.current());
                        self.stats.layer_switches += 1;
                        self.agenda.switched(sk, tk);
                    }
                    match selection {
                        SvcSelection::Forward { marker: m, start } => {
                            marker = m;
                            if start {
                                // Same stream as before a pause: its picture ids go on as
                                // they are, and the payload stays shared.
                                sub.forwarder.restart();
                            }
                            false
                        }
                        SvcSelection::Skip { keyframe_needed: k } => {
                            // Same stream: the packet's number must not leave a hole.
                            sub.forwarder.skip(info.seq);
                            let reason = if k {
                                DropReason::WaitingForKeyframe
                            } else if sub.selector.target().is_none() {
                                DropReason::Paused
                            } else {
                                DropReason::OtherLayer
                            };
                            drop(&mut self.stats, reason);
                            keyframe_needed |= k;
                            continue;
                        }
                    }
                }
                _ => match sub.selector.select(layer, keyframe_start) {
                    Selection::Forward => false,
                    Selection::Switch => true,
                    Selection::Skip { keyframe_needed: k } => {
                        let reason = if k {
                            DropReason::WaitingForKeyframe
                        } else if sub.selector.target().is_none() {
                            DropReason::Paused
                        } else {
                            DropReason::OtherLayer
                        };
                        drop(&mut self.stats, reason);
                        keyframe_needed |= k;
                        continue;
                    }
                },
            };
            if let Some(sc) = &scalable {
                // Fewer frames when the allocator caps the temporal layers; a new cap takes
                // effect at the start of a picture (its spatial layer 0 frame).
                let begins = sc.begins_frame && sc.spatial == 0;
                if !sub.temporal.keep(sub.temporal_cap, sc.temporal, begins) {
                    sub.forwarder.skip(info.seq);
                    drop(&mut self.stats, DropReason::OtherLayer);
                    continue;
                }
            }
            if switch {
                self.stats.layer_switches += 1;
                sub.forwarder.restart();
                sub.pictures.restart();
                sub.frames.restart();
                self.agenda.switched(sk, tk);
            }
            if !s.connected {
                drop(&mut self.stats, DropReason::NotConnected);
                continue;
            }
            let mut api = s.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(sub.mid, None) else {
                drop(&mut self.stats, DropReason::NoStream);
                continue;
            };
            match sub.forwarder.handle_packet(info) {
                Verdict::Send { seq, ts } => {
                    let payload = match &vp9 {
                        Some(d) => vp9_payload(d, &pkt.payload, &mut sub.pictures, &mut renumbered),
                        None if stripped => match primary_of(&pkt.payload, &mut primary) {
                            Some(p) => {
                                self.stats.red_stripped += 1;
                                p
                            }
                            None => {
                                drop(&mut self.stats, DropReason::Malformed);
                                continue;
                            }
                        },
                        None => match wrap {
                            Some(inner) => {
                                self.stats.red_added += 1;
                                made_red(inner, &pkt.payload, previous.as_ref(), &mut made)
                            }
                            None => {
                                self.stats.red_forwarded += u64::from(red);
                                pkt.payload.clone()
                            }
                        },
                    };
                    let mut ext = ext.clone();
                    if let Some(dd) = dd {
                        // After a simulcast switch: the frame numbers go on from the last sent.
                        let frame = sub.frames.rewrite(dd.frame_number);
                        if frame != dd.frame_number {
                            let same = renumbered_dd.as_ref().filter(|d| d.frame_number == frame);
                            let d = match same {
                                Some(d) => d.clone(),
                                None => renumbered_dd.insert(dd.renumbered(frame)).clone(),
                            };
                            ext.user_values.set(d);
                        }
                    }
                    let mut write = RtpWrite::new(out_pt, seq.into(), ts, pkt.timestamp, payload)
                        .marker(marker)
                        .ext_vals(ext)
                        .nackable(nackable);
                    if let Some(patch) = vp8
                        .as_ref()
                        .and_then(|d| vp8_patch(d, &mut sub.pictures, short_pid))
                    {
                        write = write.vp8_patch(patch);
                    }
                    tx.write_rtp(write);
                    self.stats.rtp_forwarded += 1;
                    self.stats.rtp_forwarded_bytes += pkt.payload.len() as u64;
                    self.stats.rtp_out_by_kind[kind] += 1;
                    self.stats.rtp_out_bytes_by_kind[kind] += pkt.payload.len() as u64;
                    if !s.touched {
                        s.touched = true;
                        self.touched.push(sk);
                    }
                }
                Verdict::Drop {
                    reason,
                    keyframe_needed: k,
                } => {
                    drop(&mut self.stats, reason);
                    keyframe_needed |= k;
                }
            }
        }
        if plain_opus {
            track.last_audio = Some((info.seq, info.ts, pkt.payload.clone()));
        }
        if keyframe_needed {
            // An SVC stream has one keyframe for all its layers.
            self.request_keyframe(now, tk, if svc { 0 } else { layer });
        }
    }

    /// The track and layer an incoming SSRC of publisher `key` belongs to (learnt once per
    /// SSRC).
    pub(super) fn track_of(
        &mut self,
        key: ParticipantKey,
        ssrc: Ssrc,
    ) -> Option<(TrackKey, LayerIndex)> {
        if let Some(v) = self.rooms.stream(key, ssrc) {
            return Some(v);
        }
        let p = self.participants.get_mut(&key)?;
        let mut api = p.rtc.direct_api();
        let rx = api.stream_rx(&ssrc)?;
        let (mid, rid) = (rx.mid(), rx.rid());
        let tk = p.published.iter().find(|(m, _)| *m == mid)?.1;
        let track = self.rooms.track(tk)?;
        let layer = match rid {
            None => 0,
            Some(rid) => track.layers.iter().position(|l| l.rid == Some(rid))? as LayerIndex,
        };
        self.rooms.learn_stream(key, ssrc, tk, layer);
        Some((tk, layer))
    }

    /// Ask the publisher of a track for a keyframe on `layer`, at most once per
    /// [`track::KEYFRAME_REQUEST_SPACING`] per layer, and while a request is outstanding (for up
    /// to [`track::KEYFRAME_REQUEST_INTERVAL`]) requests of several subscribers merge into it.
    pub(super) fn request_keyframe(&mut self, now: Instant, tk: TrackKey, layer: LayerIndex) {
        self.request_keyframe_after(now, tk, layer, track::KEYFRAME_REQUEST_SPACING);
    }

    /// Like [`Engine::request_keyframe`], with `spacing` after an answered request (see
    /// [`Track::keyframe_request_due_after`]).
    pub(super) fn request_keyframe_after(
        &mut self,
        now: Instant,
        tk: TrackKey,
        layer: LayerIndex,
        spacing: std::time::Duration,
    ) {
        let Some(track) = self.rooms.track_mut(tk) else {
            return;
        };
        if track.kind != MediaKind::Video || !track.keyframe_request_due_after(now, layer, spacing)
        {
            return;
        }
        if track.origin.is_some() {
            self.request_remote_keyframe(tk, layer);
            return;
        }
        let rid = track.layers.get(layer as usize).and_then(|l| l.rid);
        let Some(p) = self.participants.get_mut(&track.publisher) else {
            return;
        };
        if let Some(rx) = p.rtc.direct_api().stream_rx_by_mid(track.mid, rid) {
            rx.request_keyframe(KeyframeRequestKind::Pli);
            self.stats.keyframe_requests += 1;
            if !p.touched {
                p.touched = true;
                self.touched.push(track.publisher);
            }
        }
    }
}

/// A RED payload of `payload` (plain Opus, payload type `pt` on the subscriber's connection)
/// repeating the packet before it, made on first use and shared by every subscriber with the same
/// Opus payload type after.
fn made_red(
    pt: u8,
    payload: &Arc<[u8]>,
    previous: Option<&(u32, Arc<[u8]>)>,
    made: &mut Option<(u8, Arc<[u8]>)>,
) -> Arc<[u8]> {
    if let Some((p, m)) = made {
        if *p == pt {
            return m.clone();
        }
    }
    let m: Arc<[u8]> =
        super::red::encode(pt, payload, previous.map(|(offset, p)| (*offset, &p[..]))).into();
    *made = Some((pt, m.clone()));
    m
}

/// The primary block of a RED payload as its own payload, cut on first use and shared by every
/// subscriber after; `None` when the payload is not valid RED (it is dropped).
fn primary_of(
    payload: &std::sync::Arc<[u8]>,
    cut: &mut Option<Option<std::sync::Arc<[u8]>>>,
) -> Option<std::sync::Arc<[u8]>> {
    cut.get_or_insert_with(|| {
        super::red::primary(payload)
            .ok()
            .map(|(range, _)| std::sync::Arc::from(&payload[range]))
    })
    .clone()
}

/// The payload type on the subscriber's m-line `mid` for the publisher's `in_pt` (whose
/// parameters are `in_params`), remembered in `pt_map` for the next packet; `None` when the
/// m-line has no codec for it.
fn out_payload_type(
    rtc: &str0m::Rtc,
    mid: Mid,
    pt_map: &mut Option<(Pt, Option<Pt>)>,
    in_pt: Pt,
    in_params: Option<PayloadParams>,
) -> Option<Pt> {
    if let Some((i, o)) = *pt_map {
        if i == in_pt {
            return o;
        }
    }
    let out = negotiated_pt(rtc, mid, in_params?);
    *pt_map = Some((in_pt, out));
    out
}

/// The RED payload type of the codec on m-line `mid` of `rtc` that matches a publisher's
/// `params`, when the connection negotiated redundant audio for it.
fn negotiated_red_pt(rtc: &str0m::Rtc, mid: Mid, params: PayloadParams) -> Option<Pt> {
    let pt = negotiated_pt(rtc, mid, params)?;
    rtc.codec_config().find(|p| p.pt() == pt)?.red()
}

/// The payload type, among those negotiated on m-line `mid` of `rtc`, that best matches a
/// publisher's `params` (same codec; for H.264 the same profile and packetization mode).
pub(super) fn negotiated_pt(rtc: &str0m::Rtc, mid: Mid, params: PayloadParams) -> Option<Pt> {
    let negotiated = rtc.media(mid)?.remote_pts();
    let candidates: Vec<PayloadParams> = rtc
        .codec_config()
        .params()
        .iter()
        .filter(|p| negotiated.contains(&p.pt()))
        .copied()
        .collect();
    CodecConfig::new_from_payload_params(candidates)
        .match_params(params)
        .map(|p| p.pt())
}

/// The patch that gives this subscriber its own continuous VP8 picture ids and TL0PICIDX
/// across layer switches; `None` when the publisher's fields can go through as they are.
fn vp8_patch(
    d: &Vp8Descriptor,
    rewriter: &mut PictureIdRewriter,
    short_pid: bool,
) -> Option<Vp8Patch> {
    let (pid, tl0) = (d.picture_id(), d.tl0_pic_idx());
    let (out_pid, out_tl0) = rewriter.rewrite(pid, tl0, short_pid);
    if (out_pid, out_tl0) == (pid, tl0) {
        return None;
    }
    let mut b = d.patch();
    if let Some(p) = out_pid {
        b = b.picture_id(p);
    }
    if let Some(t) = out_tl0 {
        b = b.tl0_pic_idx(t);
    }
    b.build().ok()
}

/// Where a packet of a scalable stream (VP9, AV1 with a dependency descriptor) stands.
struct Scalable {
    spatial: LayerIndex,
    temporal: u8,
    /// It starts a frame of its spatial layer.
    begins_frame: bool,
    /// It ends a frame of its spatial layer.
    ends_frame: bool,
}

/// A VP9 payload copied with a picture id and TL0PICIDX of its own, and those values.
type Renumbered = ((Option<u16>, Option<u8>), Arc<[u8]>);

/// The payload to send this subscriber: the publisher's, shared, while its picture ids and
/// TL0PICIDX go through unchanged (one source, no switch yet); after a switch a copy with them
/// renumbered, shared with the other subscribers that number alike through `last`. (str0m
/// patches VP8 descriptors as it serializes; for VP9 the copy is made here.)
fn vp9_payload(
    d: &Vp9Descriptor,
    payload: &Arc<[u8]>,
    rewriter: &mut PictureIdRewriter,
    last: &mut Option<Renumbered>,
) -> Arc<[u8]> {
    let (pid, tl0) = (d.picture_id, d.tl0_pic_idx);
    let out = rewriter.rewrite(pid, tl0, !d.long_picture_id);
    if out == (pid, tl0) {
        return payload.clone();
    }
    if let Some((numbers, copy)) = last {
        if *numbers == out {
            return copy.clone();
        }
    }
    let copy = d.renumbered(payload, out.0, out.1);
    *last = Some((out, copy.clone()));
    copy
}

/// Which video codec a payload type of a publisher's connection stands for.
fn video_codec(codec: Codec) -> VideoCodec {
    match codec {
        Codec::Vp8 => VideoCodec::Vp8,
        Codec::H264 => VideoCodec::H264,
        Codec::Vp9 => VideoCodec::Vp9,
        Codec::Av1 => VideoCodec::Av1,
        _ => VideoCodec::Other,
    }
}

/// The publisher's payload parameters for payload type `pt` (with `red`: also the codec whose
/// RED payload type it is): from its connection, or for a mirror track from what the
/// publisher's engine said.
fn publisher_params(
    participants: &FxHashMap<ParticipantKey, Participant>,
    track: &Track,
    key: ParticipantKey,
    pt: Pt,
    red: bool,
) -> Option<PayloadParams> {
    let fits = |pp: &PayloadParams| pp.pt() == pt || (red && pp.red() == Some(pt));
    match &track.origin {
        Some(origin) => origin.params.iter().find(|pp| fits(pp)).copied(),
        None => participants
            .get(&key)?
            .rtc
            .codec_config()
            .find(|pp| fits(pp))
            .copied(),
    }
}

/// Whether decoding can start at this packet.
fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    const SPS: u8 = 7;
    match codec {
        VideoCodec::Vp8 => detect_vp8_keyframe(payload),
        // Senders put SPS/PPS in front of an IDR; start there so the decoder has them.
        VideoCodec::H264 => detect_h264_nalu(payload, SPS) || detect_h264_keyframe(payload),
        VideoCodec::Vp9 => Vp9Descriptor::parse(payload).is_ok_and(|d| d.starts_keyframe()),
        VideoCodec::Av1 => av1::starts_keyframe(payload),
        VideoCodec::Other => true,
    }
}

/// The header extensions worth passing on; str0m writes mid, rid and transport-cc itself.
fn forwarded_extensions(e: &ExtensionValues) -> ExtensionValues {
    ExtensionValues {
        audio_level: e.audio_level,
        voice_activity: e.voice_activity,
        video_orientation: e.video_orientation,
        video_content_type: e.video_content_type,
        ..Default::default()
    }
}
