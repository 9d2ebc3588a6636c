//! Connection quality of one participant, as the others are told it: excellent, good, poor or
//! lost, from loss, round-trip time, silence and whether its videos fit its bandwidth. A pure
//! type: it takes one sample a second (str0m's peer statistics) and says when the level changes.

use std::time::Duration;

/// How well a participant's connection works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Quality {
    /// Nothing arrives from it.
    Lost,
    /// Noticeable loss or delay, or videos paused for lack of bandwidth.
    Poor,
    /// Some loss or delay, or videos below the size wanted for lack of bandwidth.
    Good,
    /// No trouble.
    Excellent,
}

impl Quality {
    /// The name clients see.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Lost => "lost",
            Quality::Poor => "poor",
            Quality::Good => "good",
            Quality::Excellent => "excellent",
        }
    }
}

/// One second of a participant's connection.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Fraction of packets lost, the worse of the two directions (0 to 1), if known.
    pub loss: Option<f32>,
    /// Round-trip time, if known.
    pub rtt: Option<Duration>,
    /// How long nothing has arrived from it.
    pub silent_for: Duration,
    /// Some video it receives is paused because its bandwidth does not fit it.
    pub paused_for_bandwidth: bool,
    /// Some video it receives is below the layer it wants because of its bandwidth.
    pub below_wanted: bool,
}

/// Nothing from the participant for this long: lost.
pub const LOST_AFTER: Duration = Duration::from_secs(2);
/// A better level is reported once it has held for this many samples in a row (a worse one at
/// once), so that one good second in a bad minute does not flap the indicator.
const SAMPLES_TO_IMPROVE: u32 = 3;

/// The level a sample alone shows.
pub fn grade(s: &Sample) -> Quality {
    if s.silent_for >= LOST_AFTER {
        return Quality::Lost;
    }
    let loss = s.loss.unwrap_or(0.0);
    let rtt = s.rtt.unwrap_or_default();
    if loss >= 0.08 || rtt >= Duration::from_millis(600) || s.paused_for_bandwidth {
        Quality::Poor
    } else if loss >= 0.02 || rtt >= Duration::from_millis(300) || s.below_wanted {
        Quality::Good
    } else {
        Quality::Excellent
    }
}

/// The reported level, with its hysteresis.
#[derive(Debug, Clone, Default)]
pub struct QualityMeter {
    reported: Option<Quality>,
    /// A better level seen, and in how many samples in a row.
    better: Option<(Quality, u32)>,
}

impl QualityMeter {
    /// Take one sample; the new level when it changed.
    pub fn sample(&mut self, s: &Sample) -> Option<Quality> {
        let now = grade(s);
        let Some(reported) = self.reported else {
            self.reported = Some(now);
            return Some(now);
        };
        if now < reported {
            self.better = None;
            self.reported = Some(now);
            return Some(now);
        }
        if now == reported {
            self.better = None;
            return None;
        }
        let count = match self.better {
            Some((q, n)) if q == now => n + 1,
            _ => 1,
        };
        if count >= SAMPLES_TO_IMPROVE {
            self.better = None;
            self.reported = Some(now);
            return Some(now);
        }
        self.better = Some((now, count));
        None
    }

    /// The level last reported.
    pub fn level(&self) -> Option<Quality> {
        self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn grades() {
        let clean = Sample::default();
        let table = [
            (clean, Quality::Excellent),
            (
                Sample {
                    loss: Some(0.01),
                    rtt: Some(ms(80)),
                    ..clean
                },
                Quality::Excellent,
            ),
            (
                Sample {
                    loss: Some(0.03),
                    ..clean
                },
                Quality::Good,
            ),
            (
                Sample {
                    rtt: Some(ms(350)),
                    ..clean
                },
                Quality::Good,
            ),
            (
                Sample {
                    below_wanted: true,
                    ..clean
                },
                Quality::Good,
            ),
            (
                Sample {
                    loss: Some(0.10),
                    ..clean
                },
                Quality::Poor,
            ),
            (
                Sample {
                    rtt: Some(ms(700)),
                    ..clean
                },
                Quality::Poor,
            ),
            (
                Sample {
                    paused_for_bandwidth: true,
                    ..clean
                },
                Quality::Poor,
            ),
            (
                Sample {
                    silent_for: ms(2500),
                    ..clean
                },
                Quality::Lost,
            ),
        ];
        for (s, want) in table {
            assert_eq!(grade(&s), want, "{s:?}");
        }
    }

    #[test]
    fn worse_is_told_at_once_and_better_after_three_seconds() {
        let clean = Sample::default();
        let lossy = Sample {
            loss: Some(0.12),
            ..clean
        };
        let mut m = QualityMeter::default();
        assert_eq!(m.sample(&clean), Some(Quality::Excellent));
        assert_eq!(m.sample(&clean), None);
        assert_eq!(m.sample(&lossy), Some(Quality::Poor));
        assert_eq!(m.sample(&clean), None);
        assert_eq!(
            m.sample(&lossy),
            None,
            "a good second in between resets nothing"
        );
        assert_eq!(m.sample(&clean), None);
        assert_eq!(m.sample(&clean), None);
        assert_eq!(m.sample(&clean), Some(Quality::Excellent));
        assert_eq!(m.level(), Some(Quality::Excellent));
    }
}
