//! A published track: its simulcast layers, their bit rates and frame sizes, and the keyframe
//! request throttle.

use std::time::{Duration, Instant};

use str0m::format::PayloadParams;
use str0m::media::{Mid, Pt, Rid};

use super::event::{TrackSource, TrackView};
use super::forward::select::LayerIndex;
use super::rate::{self, RateMeter};
use super::voice_activity::SpeakerDetector;

use str0m::media::MediaKind;

use super::participant::ParticipantKey;
use super::shard::{Origin, ShardId};

/// A keyframe request to one layer that has not been answered by a keyframe is repeated after
/// this long (the request or the keyframe was lost); requests of several subscribers meanwhile
/// are merged into the one outstanding.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// Keyframe requests to one layer are at least this far apart, answered or not.
pub const KEYFRAME_REQUEST_SPACING: Duration = Duration::from_millis(100);

/// The video codec a track carries, as far as keyframe detection cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    Vp8,
    /// H.264 (RFC 6184).
    H264,
    /// VP9 (RFC 9628).
    Vp9,
    /// AV1 (the AV1 RTP payload format, with its dependency descriptor).
    Av1,
    /// Anything else: forwarded, keyframes not detected (starts at once).
    Other,
}

/// A track published into a room.
#[derive(Debug)]
pub struct Track {
    /// Public id (unique in the room).
    pub id: String,
    /// Audio or video.
    pub kind: MediaKind,
    /// Who publishes it.
    pub publisher: ParticipantKey,
    /// The publisher's public id (the `a=msid` stream id on subscribers' connections).
    pub publisher_id: String,
    /// The m-line it arrives on at the publisher.
    pub mid: Mid,
    /// Who receives it (keys of participants with a [`Subscription`](super::participant::Subscription)).
    pub subscribers: Vec<ParticipantKey>,
    /// Its encodings: one without rid, or the simulcast layers from lowest to highest.
    pub layers: Vec<Layer>,
    /// Codec, learnt from the first packet.
    pub codec: Option<VideoCodec>,
    /// The video codecs negotiated with the publisher, in the order it was told to send them:
    /// the first is the one it sends (empty for audio).
    pub codecs: Vec<PayloadParams>,
    /// The publisher's payload parameters for the payload type seen last.
    pub in_params: Option<(Pt, PayloadParams)>,
    /// The last plain Opus packet (sequence number, timestamp, payload), repeated in the next
    /// one for listeners who get redundant audio from a publisher that sends none.
    pub last_audio: Option<(u64, u32, std::sync::Arc<[u8]>)>,
    /// Not forwarded while set.
    pub muted: bool,
    /// What it carries, as the publisher named it.
    pub source: TrackSource,
    /// The track's own allocation priority, the same for every subscriber: screen share
    /// ([`SCREEN_PRIORITY`](super::allocator::SCREEN_PRIORITY)), active speaker, or 0. A
    /// subscriber's pin raises it for that subscriber only, when allocating
    /// ([`subscriber_priority`](super::allocator::subscriber_priority)).
    pub priority: u8,
    /// Its layers are the spatial layers of one VP9 stream (SVC, learnt from the scalability
    /// structure of a keyframe), not simulcast encodings: each layer's rate includes the layers
    /// below it, which a subscriber of that layer receives too.
    pub svc: bool,
    /// The temporal layers of its lowest layer, measured.
    pub temporal: TemporalRates,
    /// Layers the publisher was last told to send (as a bit mask); `None`: never told, all on.
    pub publisher_mask: Option<u8>,
    /// Speech detection (audio tracks).
    pub speaker: SpeakerDetector,
    /// A pause of unneeded layers is due at this time (changes that switch layers off wait, so
    /// that a subscriber stepping down and up again does not make the publisher restart them).
    pub pause_due: Option<Instant>,
    /// Set for a mirror of a track published on another engine (see [`shard`](super::shard)).
    pub origin: Option<Origin>,
    /// The other engines this track's packets are handed to, with the layers their
    /// subscribers need (a bit mask, never 0).
    pub relays: Vec<(ShardId, u8)>,
}

/// Temporal layers measured on a track's lowest layer (3 at most are used: `L1T3`).
#[derive(Debug, Clone, Default)]
pub struct TemporalRates {
    /// Rate of the frames of temporal layers up to 0, 1 and 2.
    rates: [RateMeter; 3],
    /// The highest temporal layer seen.
    highest: u8,
}

impl TemporalRates {
    /// Count a packet of the lowest layer with temporal layer `temporal`.
    pub fn add(&mut self, now: Instant, temporal: u8, bytes: usize) {
        let t = (temporal as usize).min(2);
        self.highest = self.highest.max(t as u8);
        for r in &mut self.rates[t..] {
            r.add(now, bytes);
        }
    }

    /// The rates of the lowest layer with only temporal layers up to 0, 1, ... below the
    /// highest (the whole layer's rate is the layer's own); empty without temporal layers or
    /// before they are measured.
    pub fn base(&mut self, now: Instant) -> Vec<u64> {
        let mut base = Vec::new();
        for t in 0..self.highest as usize {
            let r = self.rates[t].rate(now);
            if r == 0 {
                break;
            }
            base.push(r);
        }
        base
    }
}

/// Bit rates assumed for video layers that have not been measured yet, by position from the top.
const DEFAULT_RATES: [u64; 3] = [1_500_000, 500_000, 150_000];
/// Bit rate assumed for an audio track that has not been measured yet.
pub const AUDIO_RATE: u64 = 40_000;

/// A layer counts as arriving until this long after its last packet.
pub const LAYER_TIMEOUT: Duration = Duration::from_millis(1500);

/// One encoding of a track.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    /// Its rid, for simulcast.
    pub rid: Option<Rid>,
    /// Recent bit rate.
    pub rate: RateMeter,
    /// The last measured non-zero rate.
    pub known_rate: u64,
    /// A slow average of the measured rate (one full-window reading a [`rate::WINDOW`], each
    /// weighing a quarter): what a paused or resuming layer is counted at. The last reading
    /// alone may be a keyframe or an encoder's peak, and would hold a layer out of a link it
    /// fits for as long as the layer stays paused.
    pub typical_rate: u64,
    /// When `typical_rate` last took a reading.
    pub typical_at: Option<Instant>,
    /// When the last packet arrived.
    pub last_packet: Option<Instant>,
    /// When the publisher was last asked to resume it.
    pub resumed_at: Option<Instant>,
    /// Frame size, from its last keyframe (VP8) or scalability structure (VP9).
    pub size: Option<(u16, u16)>,
    /// The last keyframe request sent upstream for it.
    pub last_keyframe_request: Option<Instant>,
    /// When its last keyframe started arriving.
    pub last_keyframe: Option<Instant>,
    /// The AV1 dependency structure of its stream's last keyframe: the layer of each frame
    /// template. Each simulcast encoding has its own; an SVC stream keeps it on layer 0, the
    /// stream's own.
    pub av1_structure: Option<std::sync::Arc<super::forward::av1::DdStructure>>,
}

impl Track {
    /// The publisher's parameters for what it sends: the codec of the packets arriving, or
    /// before any did, the one it was told to send. `None` for audio.
    pub fn sending_params(&self) -> Option<PayloadParams> {
        if self.kind != MediaKind::Video {
            return None;
        }
        self.in_params
            .map(|(_, p)| p)
            .or_else(|| self.codecs.first().copied())
    }

    /// Learns from a keyframe's description of its layers (a VP9 scalability structure, an AV1
    /// dependency structure) whether the track is SVC: a single-stream video whose keyframe
    /// announces several spatial layers gets one layer per spatial layer, with the frame sizes
    /// given. Returns whether its layers changed.
    pub fn learn_svc(&mut self, n: usize, sizes: &[Option<(u16, u16)>]) -> bool {
        let single = self.layers.len() == 1 && self.layers[0].rid.is_none();
        if n < 2 || !(self.svc || single) {
            return false;
        }
        let grown = n > self.layers.len();
        if grown {
            self.layers.resize_with(n, Layer::default);
        }
        self.svc = true;
        for (l, size) in self.layers.iter_mut().zip(sizes) {
            if size.is_some() {
                l.size = *size;
            }
        }
        grown
    }

    /// Whether a keyframe request for `layer` may go upstream now; records it if so.
    pub fn keyframe_request_due(&mut self, now: Instant, layer: LayerIndex) -> bool {
        self.keyframe_request_due_after(now, layer, KEYFRAME_REQUEST_SPACING)
    }

    /// Like [`Track::keyframe_request_due`], with `spacing` after an answered request. Another
    /// engine's request comes with no spacing: that engine throttles its own, and a keyframe
    /// that answered a request here may have passed before it needed one.
    pub fn keyframe_request_due_after(
        &mut self,
        now: Instant,
        layer: LayerIndex,
        spacing: Duration,
    ) -> bool {
        let Some(l) = self.layers.get_mut(layer as usize) else {
            return false;
        };
        // Merge into a request still outstanding; once a keyframe answered it, a subscriber that
        // arrives afterwards needs a new one and need not wait out the interval.
        let due = l.last_keyframe_request.is_none_or(|t| {
            let since = now.saturating_duration_since(t);
            let answered = l.last_keyframe.is_some_and(|k| k >= t);
            since >= KEYFRAME_REQUEST_INTERVAL || (answered && since >= spacing)
        });
        if due {
            l.last_keyframe_request = Some(now);
        }
        due
    }

    /// The publisher is told to send the layers in `mask`. A layer that comes back starts a fresh
    /// meter: the old one, part silence, would read low for a second and make the layer look
    /// cheaper than it is.
    pub fn set_publisher_mask(&mut self, now: Instant, mask: u8) {
        for (i, l) in self.layers.iter_mut().enumerate() {
            let bit = 1 << i;
            let was_on = self.publisher_mask.is_none_or(|m| m & bit != 0);
            if mask & bit != 0 && !was_on {
                l.rate = RateMeter::default();
                l.resumed_at = Some(now);
            }
        }
        self.publisher_mask = Some(mask);
    }

    /// Whether nothing of the track arrives, though nothing was told to pause: the publisher
    /// has not started it yet, or its network dropped.
    pub fn publisher_silent(&self, now: Instant) -> bool {
        let arriving = self.layers.iter().any(|l| {
            l.last_packet
                .is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT)
        });
        let all_paused = (0..self.layers.len()).all(|i| self.paused_at_publisher(i));
        !arriving && !all_paused
    }

    /// Whether layer `i` was told to pause at the publisher.
    pub fn paused_at_publisher(&self, i: usize) -> bool {
        self.publisher_mask.is_some_and(|m| m & (1 << i) == 0)
    }

    /// The bit rate of each layer that can be had now: arriving, or paused at the publisher by
    /// the server (it comes back when asked). Unmeasured layers get a typical rate.
    pub fn layer_rates(&mut self, now: Instant) -> Vec<Option<u64>> {
        let n = self.layers.len();
        let single = n == 1;
        let kind = self.kind;
        let paused: Vec<bool> = (0..n).map(|i| self.paused_at_publisher(i)).collect();
        self.layers
            .iter_mut()
            .enumerate()
            .map(|(i, l)| {
                let arriving = l
                    .last_packet
                    .is_some_and(|t| now.saturating_duration_since(t) < LAYER_TIMEOUT);
                if !arriving && !paused[i] {
                    return None;
                }
                // A paused layer's meter only decays, and a resumed one reads low until it has
                // a full window: until then the rate is the one measured before.
                let resuming = l.known_rate > 0
                    && l.resumed_at
                        .is_some_and(|t| now.saturating_duration_since(t) < rate::WINDOW);
                let default = if kind == MediaKind::Audio {
                    AUDIO_RATE
                } else if single {
                    DEFAULT_RATES[1]
                } else {
                    DEFAULT_RATES[(n - 1 - i).min(2)]
                };
                if !paused[i] && !resuming {
                    let r = l.rate.rate(now);
                    if r > 0 {
                        // Until the meter has a full window its reading is a fraction of a
                        // second: the first keyframe makes it read far above the stream's rate,
                        // a layer's first packets far below (one packet in a quarter second).
                        // Too high pauses a new track for a rate it never has; too low raises
                        // a subscriber on a slow link to layers its link cannot carry. Until
                        // then the layer counts at the rate it had before it went silent, or
                        // at the typical rate for its place.
                        let young = l.rate.young(now);
                        l.known_rate = match (young, l.typical_rate) {
                            (false, _) => r,
                            (true, 0) => default,
                            (true, typical) => typical,
                        };
                        let due = l
                            .typical_at
                            .is_none_or(|t| now.saturating_duration_since(t) >= rate::WINDOW);
                        if !young && due {
                            l.typical_rate = if l.typical_rate == 0 {
                                r
                            } else {
                                (3 * l.typical_rate + r) / 4
                            };
                            l.typical_at = Some(now);
                        }
                    }
                }
                let held = paused[i] || resuming;
                Some(if held && l.typical_rate > 0 {
                    l.typical_rate
                } else if l.known_rate > 0 {
                    l.known_rate
                } else {
                    default
                })
            })
            .collect()
    }

    /// The highest layer needed to show the video at `width` x `height` device pixels: the
    /// smallest layer that fills at least 90% of either dimension. Sizes not yet seen are
    /// estimated from the largest known one, halving per layer down (the usual 1, 1/2, 1/4).
    pub fn layer_for_size(&self, width: u32, height: u32) -> LayerIndex {
        let top = (self.layers.len().max(1) - 1) as LayerIndex;
        if width == 0 && height == 0 {
            return top;
        }
        let known = self
            .layers
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, l)| l.size.map(|s| (i, s)));
        let (ki, (kw, kh)) = known.unwrap_or((top as usize, (1280, 720)));
        for i in 0..=top {
            let (w, h) = match self.layers[i as usize].size {
                Some(s) => s,
                None => {
                    let shift = ki as i32 - i as i32;
                    let scale = 2f64.powi(-shift);
                    ((kw as f64 * scale) as u16, (kh as f64 * scale) as u16)
                }
            };
            let fills = w as f64 >= 0.9 * width as f64 || h as f64 >= 0.9 * height as f64;
            if fills {
                return i;
            }
        }
        top
    }

    /// RTP clock rate: 48 kHz for Opus, 90 kHz for video.
    pub fn clock_rate(&self) -> u32 {
        match self.kind {
            MediaKind::Audio => 48_000,
            MediaKind::Video => 90_000,
        }
    }

    /// The track as the engine describes it.
    pub fn view(&self) -> TrackView {
        TrackView {
            id: self.id.clone(),
            kind: self.kind,
            muted: self.muted,
            source: self.source,
        }
    }
}

#[cfg(test)]
impl Track {
    /// A three-layer video track of `publisher`, for tests.
    pub(crate) fn for_tests(publisher: ParticipantKey, publisher_id: &str) -> Track {
        Track {
            id: "t".into(),
            kind: MediaKind::Video,
            publisher,
            publisher_id: publisher_id.into(),
            mid: Mid::from("0"),
            subscribers: Vec::new(),
            layers: ["q", "h", "f"]
                .iter()
                .map(|r| Layer {
                    rid: Some(Rid::from(*r)),
                    ..Layer::default()
                })
                .collect(),
            codec: None,
            codecs: Vec::new(),
            in_params: None,
            last_audio: None,
            muted: false,
            source: TrackSource::Camera,
            priority: 0,
            publisher_mask: None,
            svc: false,
            temporal: Default::default(),
            speaker: SpeakerDetector::default(),
            pause_due: None,
            origin: None,
            relays: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simulcast_track() -> Track {
        Track::for_tests(1, "p")
    }

    /// Feeds `layers` (index, bytes per 50 ms) from `from` for `span`; returns the end.
    fn feed(t: &mut Track, from: Instant, span: Duration, layers: &[(usize, usize)]) -> Instant {
        let mut now = from;
        while now < from + span {
            for &(i, bytes) in layers {
                t.layers[i].rate.add(now, bytes);
                t.layers[i].last_packet = Some(now);
            }
            now += Duration::from_millis(50);
        }
        now
    }

    /// Like [`feed`], reading the rates every 100 ms as an allocator does.
    fn feed_reading(
        t: &mut Track,
        from: Instant,
        span: Duration,
        layers: &[(usize, usize)],
    ) -> Instant {
        let mut at = from;
        while at < from + span {
            at = feed(t, at, Duration::from_millis(100), layers);
            t.layer_rates(at);
        }
        at
    }

    fn kbps(r: Option<u64>) -> u64 {
        r.unwrap() / 1000
    }

    #[test]
    fn keyframe_requests_merge_while_outstanding_and_follow_an_answer_quickly() {
        let mut t = simulcast_track();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert!(t.keyframe_request_due(t0, 2));
        assert!(
            !t.keyframe_request_due(t0 + ms(50), 2),
            "merged: one is out"
        );
        assert!(t.keyframe_request_due(t0 + ms(50), 1), "per layer");
        // The keyframe answers it; a subscriber arriving after that gets a new request soon.
        t.layers[2].last_keyframe = Some(t0 + ms(80));
        assert!(!t.keyframe_request_due(t0 + ms(90), 2), "spacing");
        assert!(t.keyframe_request_due(t0 + ms(120), 2));
        // Unanswered: asked again only after the interval.
        assert!(!t.keyframe_request_due(t0 + ms(400), 2));
        assert!(t.keyframe_request_due(t0 + ms(620), 2));
        // Another engine's request after an answered one is not held back by the spacing.
        t.layers[2].last_keyframe = Some(t0 + ms(630));
        assert!(!t.keyframe_request_due(t0 + ms(640), 2));
        assert!(t.keyframe_request_due_after(t0 + ms(640), 2, Duration::ZERO));
    }

    #[test]
    fn a_paused_layer_keeps_its_rate_and_a_resumed_one_is_measured_afresh() {
        let mut t = simulcast_track();
        // q 160, h 480, f 1600 kbit/s.
        let all = [(0, 1000), (1, 3000), (2, 10_000)];
        let now = feed(&mut t, Instant::now(), Duration::from_secs(2), &all);
        let r = t.layer_rates(now);
        assert_eq!((kbps(r[0]), kbps(r[1]), kbps(r[2])), (160, 480, 1600));

        // h is paused: its packets stop and its meter runs dry, but it is still worth 480.
        t.set_publisher_mask(now, 0b101);
        let mut at = now;
        for _ in 0..3 {
            at = feed(
                &mut t,
                at,
                Duration::from_millis(300),
                &[(0, 1000), (2, 10_000)],
            );
            assert_eq!(kbps(t.layer_rates(at)[1]), 480);
        }

        // h comes back after less than a meter window of silence: no low reading meanwhile.
        t.set_publisher_mask(at, 0b111);
        let mut lowest = u64::MAX;
        for _ in 0..8 {
            at = feed(&mut t, at, Duration::from_millis(100), &all);
            lowest = lowest.min(kbps(t.layer_rates(at)[1]));
        }
        assert!(lowest >= 400, "h read {lowest} kbit/s after resuming");
    }

    #[test]
    fn a_layer_paused_after_a_peak_is_counted_at_its_typical_rate() {
        let mut t = simulcast_track();
        // h at 480 kbit/s for 6 s, then a second at 1600 (a keyframe, an encoder's peak), and
        // the pause.
        let mut at = feed_reading(
            &mut t,
            Instant::now(),
            Duration::from_secs(6),
            &[(0, 1000), (1, 3000)],
        );
        at = feed_reading(
            &mut t,
            at,
            Duration::from_secs(1),
            &[(0, 1000), (1, 10_000)],
        );
        assert!(
            t.layers[1].known_rate > 1_200_000,
            "{}",
            t.layers[1].known_rate
        );
        t.set_publisher_mask(at, 0b101);
        let paused = kbps(t.layer_rates(at)[1]);
        assert!(
            (480..800).contains(&paused),
            "paused h counted at {paused} kbit/s"
        );
        // Still so while paused, and while it comes back until its meter has a full window.
        at = feed(&mut t, at, Duration::from_secs(3), &[(0, 1000)]);
        assert_eq!(kbps(t.layer_rates(at)[1]), paused);
        t.set_publisher_mask(at, 0b111);
        at = feed(
            &mut t,
            at,
            Duration::from_millis(500),
            &[(0, 1000), (1, 3000)],
        );
        assert_eq!(kbps(t.layer_rates(at)[1]), paused);
        // Then measured again.
        at = feed(&mut t, at, Duration::from_secs(1), &[(0, 1000), (1, 3000)]);
        assert_eq!(kbps(t.layer_rates(at)[1]), 480);
    }

    #[test]
    fn new_layers_count_at_their_typical_rates_until_measured_for_a_full_window() {
        let mut t = simulcast_track();
        // q 150, h 480, f 1440 kbit/s; after their first 100 ms the meters read a fraction of
        // that (two frames over the quarter second they count at least).
        let layers = [(0, 930), (1, 3000), (2, 9000)];
        let t0 = Instant::now();
        let now = feed(&mut t, t0, Duration::from_millis(100), &layers);
        assert!(t.layers[2].rate.clone().rate(now) < 600_000);
        let r = t.layer_rates(now);
        assert_eq!((kbps(r[0]), kbps(r[1]), kbps(r[2])), (150, 500, 1500));
        let now = feed_reading(&mut t, now, Duration::from_secs(2), &layers);
        let r = t.layer_rates(now);
        assert_eq!((kbps(r[0]), kbps(r[1]), kbps(r[2])), (148, 480, 1440));

        // The publisher stops f on its own (not paused by the server) and starts it again:
        // until its meter is full again it counts at the rate it had.
        let mut at = feed(&mut t, now, Duration::from_secs(3), &layers[..2]);
        assert_eq!(t.layer_rates(at)[2], None, "f is not arriving");
        at = feed(&mut t, at, Duration::from_millis(100), &layers);
        assert_eq!(kbps(t.layer_rates(at)[2]), 1440);

        // An audio track's first packets count at the typical audio rate.
        let mut audio = simulcast_track();
        audio.kind = MediaKind::Audio;
        audio.layers.truncate(1);
        audio.layers[0].rid = None;
        let at = feed(&mut audio, t0, Duration::from_millis(100), &[(0, 100)]);
        assert_eq!(audio.layer_rates(at)[0], Some(AUDIO_RATE));
        let at = feed(&mut audio, at, Duration::from_secs(2), &[(0, 100)]);
        assert_eq!(kbps(audio.layer_rates(at)[0]), 16);
    }

    #[test]
    fn a_new_layers_first_keyframe_does_not_make_it_look_expensive() {
        let mut t = simulcast_track();
        t.layers.truncate(1);
        t.layers[0].rid = None;
        let t0 = Instant::now();
        // A 60 kB keyframe in the first 10 ms, then 500 bytes every 50 ms (80 kbit/s).
        for i in 0..6 {
            t.layers[0]
                .rate
                .add(t0 + Duration::from_millis(2 * i), 10_000);
        }
        let now = feed(
            &mut t,
            t0 + Duration::from_millis(50),
            Duration::from_millis(200),
            &[(0, 500)],
        );
        // The meter alone reads about 2 Mbit/s; the track counts it at the typical 500.
        assert!(t.layers[0].rate.clone().rate(now) > 1_500_000);
        assert_eq!(kbps(t.layer_rates(now)[0]), DEFAULT_RATES[1] / 1000);
        // Once the window is full the measured rate counts.
        let settled = feed(&mut t, now, Duration::from_secs(2), &[(0, 500)]);
        assert_eq!(kbps(t.layer_rates(settled)[0]), 80);
    }
}
