//! Active speaker detection from the audio-level header extension (RFC 6464), without decoding.
//!
//! Each audio packet carries the level of its 20 ms as attenuation in dBov (0 is the loudest,
//! 127 silence). A [`SpeakerDetector`] smooths the loudness (127 minus the attenuation) with an
//! exponential moving average and applies hysteresis: the participant starts speaking when the
//! smoothed loudness stays at or above [`ON_LOUDNESS`] for [`ON_HOLD`], and stops when it stays
//! below [`OFF_LOUDNESS`] for [`OFF_HOLD`] or when no audio arrived for [`SILENCE`].

use std::time::{Duration, Instant};

/// Smoothed loudness (127 - dBov) at which speech starts: about -47 dBov.
pub const ON_LOUDNESS: f32 = 80.0;
/// Smoothed loudness below which speech ends: about -57 dBov.
pub const OFF_LOUDNESS: f32 = 70.0;
/// How long the loudness must stay up before a participant counts as speaking.
pub const ON_HOLD: Duration = Duration::from_millis(200);
/// How long it must stay down before the participant stops speaking.
pub const OFF_HOLD: Duration = Duration::from_millis(800);
/// No audio for this long ends speech (muted, or the packets stopped).
pub const SILENCE: Duration = Duration::from_millis(1000);
/// Weight of a new packet in the moving average (packets come every 20 ms).
const ALPHA: f32 = 0.25;

/// Speech state of one audio track.
#[derive(Debug, Clone, Default)]
pub struct SpeakerDetector {
    smoothed: f32,
    speaking: bool,
    /// Since when the loudness has been on the other side of the threshold.
    crossing_since: Option<Instant>,
    last_packet: Option<Instant>,
}

impl SpeakerDetector {
    /// Whether the track counts as speaking.
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// The smoothed level from 0 (silence) to 1 (full scale).
    pub fn level(&self) -> f32 {
        (self.smoothed / 127.0).clamp(0.0, 1.0)
    }

    /// When the last packet arrived.
    pub fn last_packet(&self) -> Option<Instant> {
        self.last_packet
    }

    /// A packet with audio level `dbov` (0..=127 attenuation) arrived. Returns the new state if
    /// it changed.
    pub fn handle_level(&mut self, now: Instant, dbov: u8) -> Option<bool> {
        let loudness = 127.0 - dbov.min(127) as f32;
        self.smoothed += ALPHA * (loudness - self.smoothed);
        self.last_packet = Some(now);
        let crossing = if self.speaking {
            self.smoothed < OFF_LOUDNESS
        } else {
            self.smoothed >= ON_LOUDNESS
        };
        if !crossing {
            self.crossing_since = None;
            return None;
        }
        let since = *self.crossing_since.get_or_insert(now);
        let hold = if self.speaking { OFF_HOLD } else { ON_HOLD };
        if now.saturating_duration_since(since) >= hold {
            self.speaking = !self.speaking;
            self.crossing_since = None;
            return Some(self.speaking);
        }
        None
    }

    /// Time passed without packets. Returns `Some(false)` if that ended speech.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<bool> {
        let silent = self
            .last_packet
            .is_none_or(|t| now.saturating_duration_since(t) >= SILENCE);
        if self.speaking && silent {
            self.speaking = false;
            self.smoothed = 0.0;
            self.crossing_since = None;
            return Some(false);
        }
        None
    }

    /// Forget everything (muted, unpublished).
    pub fn reset(&mut self) {
        *self = SpeakerDetector::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `ms` milliseconds of packets at `dbov`, one per 20 ms; return the changes with the
    /// time they happened (ms from the start of the whole run).
    fn feed(
        d: &mut SpeakerDetector,
        t0: Instant,
        at: &mut u64,
        ms: u64,
        dbov: u8,
    ) -> Vec<(u64, bool)> {
        let mut out = Vec::new();
        for _ in 0..ms / 20 {
            *at += 20;
            if let Some(s) = d.handle_level(t0 + Duration::from_millis(*at), dbov) {
                out.push((*at, s));
            }
        }
        out
    }

    #[test]
    fn speech_starts_after_the_hold_and_ends_after_the_off_hold() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let mut at = 0;
        assert!(feed(&mut d, t0, &mut at, 1000, 127).is_empty(), "silence");
        let on = feed(&mut d, t0, &mut at, 1000, 20);
        assert_eq!(on.len(), 1);
        assert!(on[0].1);
        // Ramp (about 100 ms to cross) plus the 200 ms hold.
        assert!((1200..=1500).contains(&on[0].0), "{on:?}");
        assert!(d.level() > 0.7);
        let off = feed(&mut d, t0, &mut at, 2000, 127);
        assert_eq!(off.len(), 1);
        assert!(!off[0].1);
        assert!((2800..=3100).contains(&off[0].0), "{off:?}");
    }

    #[test]
    fn short_noises_and_short_pauses_do_not_flip_the_state() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let mut at = 0;
        // A 100 ms cough does not make a speaker.
        assert!(feed(&mut d, t0, &mut at, 100, 10).is_empty());
        assert!(feed(&mut d, t0, &mut at, 1000, 127).is_empty());
        // Speech with 300 ms pauses between words stays speech.
        let mut changes = feed(&mut d, t0, &mut at, 1000, 25);
        for _ in 0..5 {
            changes.extend(feed(&mut d, t0, &mut at, 300, 127));
            changes.extend(feed(&mut d, t0, &mut at, 600, 25));
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(d.is_speaking());
    }

    #[test]
    fn missing_packets_end_speech() {
        let t0 = Instant::now();
        let mut d = SpeakerDetector::default();
        let mut at = 0;
        feed(&mut d, t0, &mut at, 1000, 20);
        assert!(d.is_speaking());
        assert_eq!(d.handle_timeout(t0 + Duration::from_millis(at + 500)), None);
        assert_eq!(
            d.handle_timeout(t0 + Duration::from_millis(at + 1000)),
            Some(false)
        );
        assert!(!d.is_speaking());
    }
}
