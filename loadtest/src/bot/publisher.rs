//! The sending side of a bot: writes synthetic audio and video into its `Rtc` on time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::{Mid, Pt, Rid};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::Rtc;

use crate::live::{Clock, Pending};
use crate::media::{
    audio_level, frame_bytes, packetize, write_audio_packet, write_vp8_packet, LayerSpec, Trailer,
    Vp8State, LAYER_RIDS, LAYER_SINGLE,
};
use crate::scenario::MediaConfig;

/// Audio packets per second (20 ms Opus frames).
const AUDIO_RATE: u32 = 50;
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// RTP clock of audio.
const AUDIO_CLOCK: u64 = 48_000;
/// RTP clock of video.
const VIDEO_CLOCK: u64 = 90_000;
/// A publisher that falls this many frames behind skips ahead instead of catching up.
const MAX_CATCH_UP: u32 = 3;
/// At most one keyframe per layer this often, however many requests arrive.
const KEYFRAME_MIN_GAP: Duration = Duration::from_millis(250);

/// The payload type of `codec` negotiated on `mid`.
pub fn negotiated_pt(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let pts = media.remote_pts();
    rtc.codec_config()
        .iter()
        .find(|p| p.spec().codec == codec && pts.contains(&p.pt()))
        .map(|p| p.pt())
}

struct Audio {
    mid: Mid,
    pt: Pt,
    seq: u64,
    packets: u64,
    next: Instant,
    level_phase: u64,
    bytes: usize,
}

struct Layer {
    rid: Option<Rid>,
    /// The server said nobody needs this layer: it is not sent.
    paused: bool,
    /// Written into the trailer.
    index: u8,
    spec: LayerSpec,
    seq: u64,
    vp8: Vp8State,
    /// A keyframe was asked for.
    want_key: bool,
    last_key: Option<Instant>,
}

struct Video {
    mid: Mid,
    pt: Pt,
    layers: Vec<Layer>,
    frame: u32,
    start: Instant,
    next: Instant,
    interval: Duration,
    next_periodic_key: Instant,
    ts_base: u32,
}

/// Sends media on the negotiated m-lines once the connection is up.
pub struct Publisher {
    media: Arc<MediaConfig>,
    audio: Option<Audio>,
    video: Option<Video>,
    scratch: Vec<u8>,
    seed: u64,
}

impl Publisher {
    /// A publisher with nothing negotiated yet. `seed` varies start values between bots.
    pub fn new(media: Arc<MediaConfig>, seed: u64) -> Self {
        Publisher {
            media,
            audio: None,
            video: None,
            scratch: Vec::with_capacity(1500),
            seed: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x2545_f491_4f6c_dd1d,
        }
    }

    fn random(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    /// A random first sequence number below 2^15, so the SRTP rollover counter starts at zero.
    fn first_seq(&mut self) -> u64 {
        self.random() & 0x7fff
    }

    /// Audio was negotiated on `mid`.
    pub fn set_audio(&mut self, mid: Mid, pt: Pt, now: Instant) {
        let seq = self.first_seq();
        let level_phase = self.random() % 125;
        let bytes = (self.media.audio_kbps as usize * 1000 / 8 / AUDIO_RATE as usize).max(24);
        self.audio = Some(Audio {
            mid,
            pt,
            seq,
            packets: 0,
            next: now,
            level_phase,
            bytes,
        });
    }

    /// Video was negotiated on `mid`; `simulcast` when the server accepted the rids.
    pub fn set_video(&mut self, mid: Mid, pt: Pt, simulcast: bool, now: Instant) {
        let specs = self.media.layers.clone();
        let temporal = self.media.temporal_layers;
        let mut layers = Vec::with_capacity(specs.len());
        if simulcast {
            for (i, spec) in specs.iter().enumerate() {
                let seq = self.first_seq();
                let pid = self.random() as u16;
                layers.push(Layer {
                    rid: Some(Rid::from(LAYER_RIDS[i.min(2)])),
                    paused: false,
                    index: i as u8,
                    spec: *spec,
                    seq,
                    vp8: Vp8State::new(pid, temporal),
                    want_key: true,
                    last_key: None,
                });
            }
        } else if let Some(spec) = specs.last() {
            let seq = self.first_seq();
            let pid = self.random() as u16;
            layers.push(Layer {
                rid: None,
                paused: false,
                index: LAYER_SINGLE,
                spec: *spec,
                seq,
                vp8: Vp8State::new(pid, temporal),
                want_key: true,
                last_key: None,
            });
        }
        let fps = self.media.fps.clamp(1, 120);
        let ts_base = self.random() as u32;
        self.video = Some(Video {
            mid,
            pt,
            layers,
            frame: 0,
            start: now,
            next: now,
            interval: Duration::from_secs(1) / fps,
            next_periodic_key: now + self.media.keyframe_interval,
            ts_base,
        });
    }

    /// Media starts now (the connection came up): restart the clocks, keyframes first.
    pub fn start(&mut self, now: Instant) {
        if let Some(a) = &mut self.audio {
            a.next = now;
        }
        if let Some(v) = &mut self.video {
            v.next = now;
            v.next_periodic_key = now + self.media.keyframe_interval;
            for l in &mut v.layers {
                l.want_key = true;
            }
        }
    }

    /// A keyframe request for `mid` (all layers when `rid` is `None`).
    pub fn request_keyframe(&mut self, mid: Mid, rid: Option<Rid>) {
        let Some(v) = &mut self.video else {
            return;
        };
        if v.mid != mid {
            return;
        }
        for l in &mut v.layers {
            if rid.is_none() || l.rid == rid {
                l.want_key = true;
            }
        }
    }

    /// Only the layers whose rids are listed are sent (the server's `publisher_layers`); a layer
    /// that comes back starts with a keyframe. A single layer without rid is always sent.
    pub fn set_active_layers(&mut self, active: &[String]) {
        let Some(v) = &mut self.video else {
            return;
        };
        for l in &mut v.layers {
            let Some(rid) = l.rid else {
                continue;
            };
            let on = active.iter().any(|a| a.as_str() == &*rid);
            if on && l.paused {
                l.want_key = true;
            }
            l.paused = !on;
        }
    }

    /// When something is due next.
    pub fn next_due(&self) -> Option<Instant> {
        let a = self.audio.as_ref().map(|a| a.next);
        let v = self.video.as_ref().map(|v| v.next);
        match (a, v) {
            (Some(a), Some(v)) => Some(a.min(v)),
            (a, v) => a.or(v),
        }
    }

    /// Writes every packet due at `now`. Returns whether anything was written.
    pub fn produce(&mut self, rtc: &mut Rtc, now: Instant, clock: &Clock, p: &mut Pending) -> bool {
        let mut wrote = false;
        let sent_us = clock.unix_us(now);
        if let Some(mut a) = self.audio.take() {
            let mut n = 0;
            while a.next <= now {
                if n == MAX_CATCH_UP {
                    p.late_frames += 1;
                    a.next = now + AUDIO_INTERVAL;
                    break;
                }
                n += 1;
                wrote |= self.write_audio(rtc, &mut a, now, sent_us, p);
                a.next += AUDIO_INTERVAL;
            }
            self.audio = Some(a);
        }
        if let Some(mut v) = self.video.take() {
            let mut n = 0;
            while v.next <= now {
                if n == MAX_CATCH_UP {
                    p.late_frames += 1;
                    v.next = now + v.interval;
                    break;
                }
                n += 1;
                wrote |= self.write_video_frame(rtc, &mut v, now, sent_us, p);
                v.next += v.interval;
            }
            self.video = Some(v);
        }
        wrote
    }

    fn write_audio(
        &mut self,
        rtc: &mut Rtc,
        a: &mut Audio,
        now: Instant,
        sent_us: u64,
        p: &mut Pending,
    ) -> bool {
        let trailer = Trailer {
            sent_us,
            frame: a.packets as u32,
            layer: LAYER_SINGLE,
            part: 0,
            parts: 1,
            keyframe: false,
        };
        write_audio_packet(&mut self.scratch, a.bytes, &trailer);
        let (level, voice) = audio_level(a.packets, a.level_phase);
        let ext = ExtensionValues {
            audio_level: Some(level),
            voice_activity: Some(voice),
            ..Default::default()
        };
        let ts = (a.packets * AUDIO_CLOCK / u64::from(AUDIO_RATE)) as u32;
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(a.mid, None) else {
            return false;
        };
        let payload: Arc<[u8]> = Arc::from(&self.scratch[..]);
        tx.write_rtp(
            RtpWrite::new(a.pt, a.seq.into(), ts, now, payload)
                .marker(a.packets == 0)
                .ext_vals(ext),
        );
        a.seq += 1;
        a.packets += 1;
        p.tx_packets += 1;
        p.tx_bytes += self.scratch.len() as u64;
        true
    }

    fn write_video_frame(
        &mut self,
        rtc: &mut Rtc,
        v: &mut Video,
        now: Instant,
        sent_us: u64,
        p: &mut Pending,
    ) -> bool {
        let periodic = now >= v.next_periodic_key;
        if periodic {
            v.next_periodic_key = now + self.media.keyframe_interval;
        }
        let elapsed = v.next.saturating_duration_since(v.start);
        let ts = v
            .ts_base
            .wrapping_add((elapsed.as_micros() as u64 * VIDEO_CLOCK / 1_000_000) as u32);
        let fps = self.media.fps.max(1);
        let key_factor = self.media.keyframe_factor;
        let mut wrote = false;
        for l in v.layers.iter_mut().filter(|l| !l.paused) {
            let throttled = l
                .last_key
                .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_MIN_GAP);
            let key = periodic || (l.want_key && !throttled);
            if key {
                l.want_key = false;
                l.last_key = Some(now);
                p.keyframes += 1;
            }
            let vp8 = l.vp8.next_frame(key);
            let bytes = frame_bytes(l.spec.kbps, fps, key, key_factor);
            let (count, each) = packetize(bytes);
            let mut api = rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(v.mid, l.rid) else {
                continue;
            };
            for part in 0..count {
                let body = if part + 1 == count {
                    bytes.saturating_sub(each * (count - 1)).max(1)
                } else {
                    each
                };
                let trailer = Trailer {
                    sent_us,
                    frame: v.frame,
                    layer: l.index,
                    part: part as u8,
                    parts: count as u8,
                    keyframe: key,
                };
                write_vp8_packet(
                    &mut self.scratch,
                    &vp8,
                    (l.spec.width, l.spec.height),
                    part == 0,
                    body,
                    &trailer,
                );
                let payload: Arc<[u8]> = Arc::from(&self.scratch[..]);
                tx.write_rtp(
                    RtpWrite::new(v.pt, l.seq.into(), ts, now, payload)
                        .marker(part + 1 == count)
                        .nackable(true),
                );
                l.seq += 1;
                p.tx_packets += 1;
                p.tx_bytes += self.scratch.len() as u64;
                wrote = true;
            }
        }
        v.frame = v.frame.wrapping_add(1);
        wrote
    }
}
