//! What to run: rooms, who publishes what, who subscribes, and the media each publisher sends.

use std::time::Duration;

use serde::Serialize;

use crate::media::{LayerSpec, LAYER_SIZES};

/// What a bot publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Publish {
    /// Nothing: a pure viewer.
    Nothing,
    /// A microphone.
    Audio,
    /// A camera, with a microphone when `audio`.
    Video {
        /// Also a microphone.
        audio: bool,
    },
}

impl Publish {
    /// Tracks this bot publishes.
    pub fn tracks(self) -> usize {
        match self {
            Publish::Nothing => 0,
            Publish::Audio => 1,
            Publish::Video { audio } => 1 + usize::from(audio),
        }
    }

    /// A short role name for tables.
    pub fn role(self) -> &'static str {
        match self {
            Publish::Nothing => "viewer",
            Publish::Audio => "audio-pub",
            Publish::Video { .. } => "video-pub",
        }
    }
}

/// One bot to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotSpec {
    /// Position in join order.
    pub index: usize,
    /// Display name (unique in the run).
    pub name: String,
    /// Room name.
    pub room: String,
    /// What it publishes.
    pub publish: Publish,
    /// Whether it measures what it receives.
    pub subscribe: bool,
    /// At most this many tracks are measured (the rest are received and counted apart).
    pub max_tracks: Option<usize>,
    /// Tracks it should receive when everybody in its room is up.
    pub expected_tracks: usize,
}

/// What every publisher sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MediaConfig {
    /// Three simulcast layers (rids q, h, f) instead of one.
    pub simulcast: bool,
    /// The layers to send, low to high; one when simulcast is off.
    pub layers: Vec<LayerSpec>,
    /// Video frame rate.
    pub fps: u32,
    /// VP8 temporal layers per simulcast layer (1 to 3).
    pub temporal_layers: u8,
    /// A keyframe at least this often.
    #[serde(serialize_with = "ser_secs")]
    pub keyframe_interval: Duration,
    /// A keyframe is this many times larger than a delta frame.
    pub keyframe_factor: u32,
    /// Audio bitrate, kbit/s (50 packets/s).
    pub audio_kbps: u32,
}

impl MediaConfig {
    /// Layers from bitrates low to high; with `simulcast` off only the highest is used.
    pub fn new(simulcast: bool, kbps: &[u32]) -> Self {
        let mut layers: Vec<LayerSpec> = kbps
            .iter()
            .zip(LAYER_SIZES)
            .map(|(&kbps, (width, height))| LayerSpec {
                kbps,
                width,
                height,
            })
            .collect();
        if !simulcast && layers.len() > 1 {
            layers.drain(..layers.len() - 1);
        }
        MediaConfig {
            simulcast,
            layers,
            fps: 30,
            temporal_layers: if simulcast { 3 } else { 1 },
            keyframe_interval: Duration::from_secs(4),
            keyframe_factor: 3,
            audio_kbps: 32,
        }
    }
}

fn ser_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A whole run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// Preset name, or `custom`.
    pub name: String,
    /// Rooms, all alike.
    pub rooms: usize,
    /// Camera publishers per room.
    pub video_publishers: usize,
    /// Microphone-only publishers per room.
    pub audio_publishers: usize,
    /// Pure viewers per room.
    pub subscribers: usize,
    /// Publishers also receive the others (like a browser in a meeting).
    pub publishers_subscribe: bool,
    /// Camera publishers also send audio.
    pub video_with_audio: bool,
    /// A subscriber measures at most this many tracks.
    pub max_tracks: Option<usize>,
    /// Measured time after all joins and the warm-up.
    #[serde(serialize_with = "ser_secs")]
    pub duration: Duration,
    /// Time between the last join and the measured window.
    #[serde(serialize_with = "ser_secs")]
    pub warmup: Duration,
    /// Joins per second, over all rooms.
    pub join_rate: f64,
    /// Room names are `{room_prefix}-{n}`.
    pub room_prefix: String,
    /// What publishers send.
    pub media: MediaConfig,
}

impl Scenario {
    /// Bots per room.
    pub fn bots_per_room(&self) -> usize {
        self.video_publishers + self.audio_publishers + self.subscribers
    }

    /// All bots.
    pub fn bot_count(&self) -> usize {
        self.rooms * self.bots_per_room()
    }

    /// Tracks published in one room.
    fn room_tracks(&self) -> usize {
        self.video_publishers
            * Publish::Video {
                audio: self.video_with_audio,
            }
            .tracks()
            + self.audio_publishers
    }

    /// The bots in join order: the rooms fill side by side; in a room publishers come first.
    pub fn bots(&self) -> Vec<BotSpec> {
        let per_room: Vec<(String, Publish, bool)> = (0..self.video_publishers)
            .map(|i| {
                (
                    format!("vpub{i}"),
                    Publish::Video {
                        audio: self.video_with_audio,
                    },
                    self.publishers_subscribe,
                )
            })
            .chain((0..self.audio_publishers).map(|i| {
                (
                    format!("apub{i}"),
                    Publish::Audio,
                    self.publishers_subscribe,
                )
            }))
            .chain((0..self.subscribers).map(|i| (format!("sub{i}"), Publish::Nothing, true)))
            .collect();
        let room_tracks = self.room_tracks();
        let mut out = Vec::with_capacity(self.bot_count());
        for (name, publish, subscribe) in &per_room {
            for r in 0..self.rooms {
                let room = format!("{}-{r}", self.room_prefix);
                let available = room_tracks - publish.tracks();
                let expected = if *subscribe {
                    self.max_tracks.map_or(available, |m| available.min(m))
                } else {
                    0
                };
                out.push(BotSpec {
                    index: out.len(),
                    name: format!("{name}-r{r}"),
                    room,
                    publish: *publish,
                    subscribe: *subscribe,
                    max_tracks: self.max_tracks,
                    expected_tracks: expected,
                });
            }
        }
        out
    }

    /// Tracks all subscribers together should receive.
    pub fn tracks_expected(&self) -> usize {
        self.bots().iter().map(|b| b.expected_tracks).sum()
    }

    /// Time from the first join to the last.
    pub fn join_time(&self) -> Duration {
        let n = self.bot_count().saturating_sub(1) as f64;
        Duration::from_secs_f64(n / self.join_rate.max(0.001))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(v: usize, a: usize, s: usize, rooms: usize) -> Scenario {
        Scenario {
            name: "custom".into(),
            rooms,
            video_publishers: v,
            audio_publishers: a,
            subscribers: s,
            publishers_subscribe: true,
            video_with_audio: true,
            max_tracks: None,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            join_rate: 10.0,
            room_prefix: "t".into(),
            media: MediaConfig::new(false, &[150, 500, 1500]),
        }
    }

    #[test]
    fn expected_tracks() {
        // (video pubs, audio pubs, subs, rooms, publishers subscribe, video with audio, max) -> expected
        let table = [
            (2, 0, 2, 1, true, true, None, 2 * 2 + 2 * 4),
            (2, 0, 2, 1, false, true, None, 2 * 4),
            (2, 0, 2, 1, true, false, None, 2 + 2 * 2),
            (1, 0, 10, 3, true, true, None, 3 * 10 * 2),
            (0, 10, 5, 1, true, true, None, 10 * 9 + 5 * 10),
            (10, 0, 0, 1, true, true, None, 10 * 18),
            (10, 0, 0, 1, true, true, Some(4), 10 * 4),
        ];
        for (v, a, s, rooms, ps, va, max, want) in table {
            let mut sc = scenario(v, a, s, rooms);
            sc.publishers_subscribe = ps;
            sc.video_with_audio = va;
            sc.max_tracks = max;
            assert_eq!(sc.tracks_expected(), want, "{v}v {a}a {s}s x{rooms}");
            assert_eq!(sc.bots().len(), (v + a + s) * rooms);
        }
    }

    #[test]
    fn rooms_fill_side_by_side_publishers_first() {
        let sc = scenario(1, 0, 1, 2);
        let names: Vec<_> = sc.bots().into_iter().map(|b| b.name).collect();
        assert_eq!(names, ["vpub0-r0", "vpub0-r1", "sub0-r0", "sub0-r1"]);
    }

    #[test]
    fn single_layer_keeps_the_top_bitrate() {
        let m = MediaConfig::new(false, &[150, 500, 1500]);
        assert_eq!(m.layers.len(), 1);
        assert_eq!(m.layers[0].kbps, 1500);
        assert_eq!(m.layers[0].width, 1280);
        let m = MediaConfig::new(true, &[150, 500, 1500]);
        assert_eq!(m.layers.len(), 3);
        assert_eq!(m.temporal_layers, 3);
    }
}
