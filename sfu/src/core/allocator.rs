//! Splitting one subscriber's bandwidth estimate across the videos it receives.
//!
//! [`allocate`] is a pure function: given the budget and, per video, its priority, the bitrates of
//! the layers that can be had and the largest layer the subscriber wants, it returns the layer
//! each video should get (or none). The engine calls it when the estimate or a wish changes and
//! commits the result; it never sends anything itself.
//!
//! The rules, in order:
//! 1. Higher priority first: a pinned screen share, a screen share, a pinned video, an active
//!    speaker's video, then the rest ([`subscriber_priority`]).
//! 2. Every wanted video first gets its lowest layer, in priority order, while the budget lasts;
//!    videos that do not fit are paused (lowest priority first) rather than all of them freezing.
//! 3. The budget left is spent raising videos one layer at a time, in priority order, up to what
//!    each subscriber wants.
//! 4. A video whose lowest layer does not fit gets fewer frames of it (its lower temporal layers)
//!    when those fit, before it is paused; raising it starts with its frame rate.
//! 5. Keeping a layer costs its bitrate; moving above the current layer costs
//!    [`UPGRADE_MARGIN_PERCENT`] more, so that a small rise of the estimate does not flap between layers.
//! 6. A video already at its lowest layer keeps it while the budget covers
//!    [`KEEP_LOWEST_PERCENT`] of it: a dip of the estimate does not pause it.

use super::forward::select::LayerIndex;
use super::forward::svc::ALL_TEMPORAL;

/// Extra cost, in percent, of a layer above the one currently forwarded.
pub const UPGRADE_MARGIN_PERCENT: u64 = 15;

/// A video forwarded at its lowest layer, full frame rate, keeps it while the budget left
/// covers this share of it, in percent. After congestion the estimate undershoots the link
/// for a few seconds; pausing then costs seconds of frozen video and a keyframe to come back,
/// where sending a little over a low estimate costs a little delay.
pub const KEEP_LOWEST_PERCENT: u64 = 70;

/// Priority of a screen share for every subscriber: above cameras, pinned ones included. A
/// screen is what everybody looks at, and it is useless when blurred or frozen, while a camera
/// one layer down is still a face.
pub const SCREEN_PRIORITY: u8 = 3;
/// Priority of a video its subscriber pinned (shows large): above the active speaker's.
pub const PINNED_PRIORITY: u8 = 2;

/// The priority of one video for one subscriber: the track's own priority (screen share, active
/// speaker ([`SPEAKER_PRIORITY`](super::speakers::SPEAKER_PRIORITY)) or 0) raised by the
/// subscriber's pin. A pinned screen comes before other screens.
pub fn subscriber_priority(track: u8, pinned: bool) -> u8 {
    match (pinned, track >= SCREEN_PRIORITY) {
        (false, _) => track,
        (true, true) => SCREEN_PRIORITY + 1,
        (true, false) => track.max(PINNED_PRIORITY),
    }
}

/// One video as the allocator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoDemand {
    /// Larger is more important.
    pub priority: u8,
    /// Bitrate of each layer, lowest first; `None` for a layer that cannot be had now.
    pub layers: Vec<Option<u64>>,
    /// The highest layer the subscriber wants; `None`: it wants nothing (hidden).
    pub max_layer: Option<LayerIndex>,
    /// The layer forwarded now.
    pub current: Option<LayerIndex>,
    /// Bitrates of the lowest layer with only its temporal layers up to 0, 1, ... (without the
    /// full frame rate); empty when it has no temporal layers or they are not measured.
    pub base: Vec<u64>,
    /// The highest temporal layer forwarded now ([`ALL_TEMPORAL`]: all).
    pub temporal: u8,
}

impl Default for VideoDemand {
    fn default() -> Self {
        VideoDemand {
            priority: 0,
            layers: Vec::new(),
            max_layer: None,
            current: None,
            base: Vec::new(),
            temporal: ALL_TEMPORAL,
        }
    }
}

/// `rate` with the upgrade margin when `above` the current level.
fn with_margin(rate: u64, above: bool) -> u64 {
    if above {
        rate + rate * UPGRADE_MARGIN_PERCENT / 100
    } else {
        rate
    }
}

impl VideoDemand {
    fn cost(&self, layer: LayerIndex) -> Option<u64> {
        let rate = (*self.layers.get(layer as usize)?)?;
        let above = self
            .current
            .is_none_or(|c| layer > c || (layer == c && self.temporal != ALL_TEMPORAL));
        Some(with_margin(rate, above))
    }

    /// The cost of the lowest layer with temporal layers up to `t` ([`ALL_TEMPORAL`]: all).
    fn cost_at(&self, layer: LayerIndex, t: u8) -> Option<u64> {
        if t == ALL_TEMPORAL {
            return self.cost(layer);
        }
        let rate = *self.base.get(t as usize)?;
        let above = self.current.is_none_or(|c| layer > c || t > self.temporal);
        Some(with_margin(rate, above))
    }

    /// The next temporal step above `t` for the lowest layer.
    fn temporal_above(&self, t: u8) -> u8 {
        if (t as usize + 1) < self.base.len() {
            t + 1
        } else {
            ALL_TEMPORAL
        }
    }

    fn lowest(&self) -> Option<LayerIndex> {
        let max = self.max_layer?;
        (0..=max).find(|l| self.cost(*l).is_some())
    }

    fn next_above(&self, layer: LayerIndex) -> Option<LayerIndex> {
        let max = self.max_layer?;
        (layer + 1..=max).find(|l| self.cost(*l).is_some())
    }

    /// What the subscriber would take with unlimited bandwidth.
    pub fn ideal(&self) -> Option<LayerIndex> {
        let max = self.max_layer?;
        (0..=max).rev().find(|l| self.cost(*l).is_some())
    }
}

/// The outcome for one subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The layer per video (same order as the input), `None`: paused.
    pub layers: Vec<Option<LayerIndex>>,
    /// The highest temporal layer per video ([`ALL_TEMPORAL`]: all).
    pub temporal: Vec<u8>,
    /// Bits per second the allocation uses.
    pub used: u64,
    /// Bits per second that would let every video reach its ideal layer (upgrade margins
    /// included): what to probe for.
    pub wanted: u64,
    /// Bits per second the next upgrade would need (used + step): a padding target.
    pub next_step: Option<u64>,
}

/// Allocate `budget` bits per second across `videos`.
///
/// With `provisional` (the budget comes from an estimate still ramping up from its starting
/// guess, on a path that has shown no congestion), every wanted video gets at least its lowest
/// layer whatever the budget says: pausing a video on a guess would be worse than overshooting
/// while the estimate climbs.
pub fn allocate(budget: u64, videos: &[VideoDemand], provisional: bool) -> Allocation {
    let mut order: Vec<usize> = (0..videos.len()).collect();
    order.sort_by_key(|i| std::cmp::Reverse(videos[*i].priority));
    let mut layers: Vec<Option<LayerIndex>> = vec![None; videos.len()];
    let mut temporal = vec![ALL_TEMPORAL; videos.len()];
    let mut left = budget;

    for &i in &order {
        let v = &videos[i];
        if let Some(l) = v.lowest() {
            let c = v.cost(l).unwrap_or(u64::MAX);
            let kept = v.current == Some(l)
                && v.temporal == ALL_TEMPORAL
                && c.saturating_mul(KEEP_LOWEST_PERCENT) / 100 <= left;
            if c <= left || provisional || kept {
                left = left.saturating_sub(c);
                layers[i] = Some(l);
                continue;
            }
            // Fewer frames of the lowest layer, the most that fit.
            let fit = (0..v.base.len() as u8)
                .rev()
                .find_map(|t| v.cost_at(l, t).filter(|c| *c <= left).map(|c| (t, c)));
            if let Some((t, c)) = fit {
                left -= c;
                layers[i] = Some(l);
                temporal[i] = t;
            }
        }
    }
    let mut next_step = None;
    for &i in &order {
        let v = &videos[i];
        while let Some(cur) = layers[i] {
            let t = temporal[i];
            let (up, up_t) = if t != ALL_TEMPORAL {
                (cur, v.temporal_above(t))
            } else {
                let Some(up) = v.next_above(cur) else { break };
                (up, ALL_TEMPORAL)
            };
            let delta = v
                .cost_at(up, up_t)
                .unwrap_or(u64::MAX)
                .saturating_sub(v.cost_at(cur, t).unwrap_or(0));
            if delta <= left {
                left -= delta;
                layers[i] = Some(up);
                temporal[i] = up_t;
            } else {
                next_step.get_or_insert(budget.saturating_sub(left) + delta);
                break;
            }
        }
        if layers[i].is_none() {
            if let Some(l) = v.lowest() {
                let c = v.cost_at(l, 0).or(v.cost(l)).unwrap_or(0);
                next_step.get_or_insert(budget.saturating_sub(left) + c);
            }
        }
    }
    // What to probe for: each video at its ideal layer, with the upgrade margin where that is
    // above the layer it has now (the margin is what the upgrade must see in the budget).
    let wanted = videos
        .iter()
        .filter_map(|v| v.ideal().and_then(|l| v.cost(l)))
        .sum();
    let used = layers
        .iter()
        .zip(&temporal)
        .zip(videos)
        .filter_map(|((l, t), v)| l.and_then(|l| v.cost_at(l, *t)))
        .sum();
    Allocation {
        layers,
        temporal,
        used,
        wanted,
        next_step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIMULCAST: [Option<u64>; 3] = [Some(150_000), Some(500_000), Some(1_500_000)];

    fn video(priority: u8, max: Option<u8>, current: Option<u8>) -> VideoDemand {
        VideoDemand {
            priority,
            layers: SIMULCAST.to_vec(),
            max_layer: max,
            current,
            ..Default::default()
        }
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            budget: u64,
            videos: Vec<VideoDemand>,
            want: Vec<Option<u8>>,
        }
        let cases = [
            Case {
                name: "plenty: everyone at the top",
                budget: 10_000_000,
                videos: vec![video(0, Some(2), None), video(0, Some(2), None)],
                want: vec![Some(2), Some(2)],
            },
            Case {
                name: "the subscriber's wish caps the layer",
                budget: 10_000_000,
                videos: vec![video(0, Some(0), None), video(0, Some(1), None)],
                want: vec![Some(0), Some(1)],
            },
            Case {
                name: "hidden video gets nothing",
                budget: 10_000_000,
                videos: vec![video(0, None, Some(2)), video(0, Some(2), None)],
                want: vec![None, Some(2)],
            },
            Case {
                name: "tight: lowest layers for all, then upgrades by priority",
                budget: 1_000_000,
                videos: vec![video(0, Some(2), None), video(5, Some(2), None)],
                // 2 x 172.5k for the base; the priority video goes up to h (575k): 747.5k.
                want: vec![Some(0), Some(1)],
            },
            Case {
                name: "too tight for everyone: the low-priority video is paused",
                budget: 200_000,
                videos: vec![video(0, Some(2), None), video(9, Some(2), None)],
                want: vec![None, Some(0)],
            },
            Case {
                name: "keeping the current layer costs no margin",
                budget: 1_500_000,
                videos: vec![video(0, Some(2), Some(2))],
                want: vec![Some(2)],
            },
            Case {
                name: "but moving up to it does",
                budget: 1_500_000,
                videos: vec![video(0, Some(2), Some(1))],
                want: vec![Some(1)],
            },
            Case {
                name: "a layer that does not arrive is skipped",
                budget: 10_000_000,
                videos: vec![VideoDemand {
                    priority: 0,
                    layers: vec![Some(150_000), Some(500_000), None],
                    max_layer: Some(2),
                    current: Some(2),
                    ..Default::default()
                }],
                want: vec![Some(1)],
            },
            Case {
                name: "single-layer video",
                budget: 600_000,
                videos: vec![VideoDemand {
                    priority: 0,
                    layers: vec![Some(800_000)],
                    max_layer: Some(0),
                    current: None,
                    ..Default::default()
                }],
                want: vec![None],
            },
            Case {
                name: "no budget at all",
                budget: 0,
                videos: vec![video(0, Some(2), Some(0))],
                want: vec![None],
            },
        ];
        for c in cases {
            let a = allocate(c.budget, &c.videos, false);
            assert_eq!(a.layers, c.want, "{}", c.name);
            assert!(a.used <= c.budget, "{}: over budget", c.name);
        }
    }

    #[test]
    fn priorities_order_screens_pins_speakers_and_the_rest() {
        use crate::core::speakers::SPEAKER_PRIORITY;
        let p = subscriber_priority;
        let order = [
            p(SCREEN_PRIORITY, true),
            p(SCREEN_PRIORITY, false),
            p(0, true),
            p(SPEAKER_PRIORITY, true),
            p(SPEAKER_PRIORITY, false),
            p(0, false),
        ];
        assert_eq!(order, [4, 3, 2, 2, 1, 0]);
    }

    #[test]
    fn a_screen_share_keeps_its_layer_while_cameras_give_way() {
        // A single-layer screen at 1.2 Mbit/s and two simulcast cameras, on 1.6 Mbit/s: the
        // screen is served first, the cameras get what is left.
        let screen = VideoDemand {
            priority: subscriber_priority(SCREEN_PRIORITY, false),
            layers: vec![Some(1_200_000)],
            max_layer: Some(0),
            current: Some(0),
            ..Default::default()
        };
        let cams = [video(0, Some(2), Some(2)), video(0, Some(2), Some(2))];
        let a = allocate(
            1_600_000,
            &[cams[0].clone(), screen.clone(), cams[1].clone()],
            false,
        );
        assert_eq!(a.layers, vec![Some(0), Some(0), Some(0)]);
        // Tighter: one camera is paused, the screen stays.
        let a = allocate(
            1_400_000,
            &[cams[0].clone(), screen.clone(), cams[1].clone()],
            false,
        );
        assert_eq!(a.layers, vec![Some(0), Some(0), None]);
        // A pinned camera comes before the other one, but after the screen.
        let pinned = video(subscriber_priority(0, true), Some(2), Some(2));
        let a = allocate(2_000_000, &[cams[0].clone(), screen, pinned], false);
        assert_eq!(a.layers, vec![Some(0), Some(0), Some(1)]);
    }

    #[test]
    fn a_provisional_budget_pauses_nothing_but_upgrades_nothing_it_cannot_pay() {
        let single = VideoDemand {
            priority: 0,
            layers: vec![Some(1_500_000)],
            max_layer: Some(0),
            current: None,
            ..Default::default()
        };
        let videos = [single.clone(), single, video(0, Some(2), None)];
        let a = allocate(900_000, &videos, true);
        assert_eq!(a.layers, vec![Some(0), Some(0), Some(0)]);
        assert!(a.used > 900_000);
        let hidden = [video(0, None, None)];
        assert_eq!(allocate(0, &hidden, true).layers, vec![None]);
    }

    #[test]
    fn a_video_at_its_lowest_layer_keeps_it_through_a_dip_of_the_budget() {
        // q costs 150k. Kept down to 70 % of it when already forwarded at full frame rate;
        // not started, nor kept at a reduced frame rate, below its cost.
        let cases = [
            ("forwarded, budget covers it", 150_000, Some(0), Some(0)),
            ("forwarded, 70 %", 105_000, Some(0), Some(0)),
            ("forwarded, under 70 %", 104_000, Some(0), None),
            ("not forwarded", 149_000, None, None),
            ("forwarded at a higher layer", 149_000, Some(1), None),
        ];
        for (what, budget, current, want) in cases {
            let a = allocate(budget, &[video(0, Some(2), current)], false);
            assert_eq!(a.layers, vec![want], "{what}");
        }
        // The one kept leaves nothing to the next video.
        let two = [video(1, Some(2), Some(0)), video(0, Some(2), Some(0))];
        let a = allocate(250_000, &two, false);
        assert_eq!(a.layers, vec![Some(0), None]);
        let a = allocate(255_000, &two, false);
        assert_eq!(a.layers, vec![Some(0), Some(0)]);
        // At a reduced frame rate, the temporal rules decide.
        let reduced = VideoDemand {
            base: vec![60_000, 100_000],
            temporal: 1,
            ..video(0, Some(2), Some(0))
        };
        let a = allocate(110_000, &[reduced], false);
        assert_eq!((a.layers[0], a.temporal[0]), (Some(0), 1));
    }

    #[test]
    fn reports_what_to_probe_for() {
        let a = allocate(
            400_000,
            &[video(0, Some(2), Some(0)), video(0, Some(1), Some(0))],
            false,
        );
        assert_eq!(a.layers, vec![Some(0), Some(0)]);
        assert_eq!(a.used, 300_000);
        // Both would go up: 1.5M and 500k, each with the 15% margin.
        assert_eq!(a.wanted, 1_725_000 + 575_000);
        // Next: the first video to h costs 575k - 150k more.
        assert_eq!(a.next_step, Some(300_000 + 575_000 - 150_000));
        let full = allocate(10_000_000, &[video(0, Some(2), Some(2))], false);
        assert_eq!(full.next_step, None);
        assert_eq!(full.wanted, 1_500_000, "no margin at the top");
    }

    #[test]
    fn a_lowest_layer_that_does_not_fit_is_sent_at_a_lower_frame_rate() {
        // Lowest layer 150k at 30 fps, 60k with temporal layer 0 (7.5 fps), 100k with 0 and 1.
        let temporal = |current: Option<u8>, t: u8| VideoDemand {
            base: vec![60_000, 100_000],
            temporal: t,
            ..video(0, Some(2), current)
        };
        let cases = [
            (
                "all frames fit",
                200_000,
                temporal(None, ALL_TEMPORAL),
                Some(0),
                ALL_TEMPORAL,
            ),
            (
                "15 fps fit",
                120_000,
                temporal(None, ALL_TEMPORAL),
                Some(0),
                1,
            ),
            (
                "7.5 fps fit",
                80_000,
                temporal(None, ALL_TEMPORAL),
                Some(0),
                0,
            ),
            (
                "nothing fits",
                50_000,
                temporal(None, ALL_TEMPORAL),
                None,
                ALL_TEMPORAL,
            ),
            // Keeping 7.5 fps costs no margin; 15 fps from 7.5 does.
            ("kept", 60_000, temporal(Some(0), 0), Some(0), 0),
            ("up from 7.5 fps", 114_000, temporal(Some(0), 0), Some(0), 0),
            ("up from 7.5 fps", 115_000, temporal(Some(0), 0), Some(0), 1),
            // Full rate from 15 fps pays the margin too.
            ("up from 15 fps", 172_000, temporal(Some(0), 1), Some(0), 1),
            (
                "up from 15 fps",
                173_000,
                temporal(Some(0), 1),
                Some(0),
                ALL_TEMPORAL,
            ),
            // Without temporal layers: paused.
            (
                "no temporal layers",
                120_000,
                video(0, Some(2), None),
                None,
                ALL_TEMPORAL,
            ),
        ];
        for (name, budget, v, layer, t) in cases {
            let a = allocate(budget, std::slice::from_ref(&v), false);
            assert_eq!((a.layers[0], a.temporal[0]), (layer, t), "{name}");
            assert!(a.used <= budget, "{name}: over budget");
        }
        // A screen keeps its layer; the camera drops frames rather than disappearing.
        let screen = VideoDemand {
            priority: SCREEN_PRIORITY,
            layers: vec![Some(1_000_000)],
            max_layer: Some(0),
            current: Some(0),
            ..Default::default()
        };
        let a = allocate(1_080_000, &[temporal(Some(0), ALL_TEMPORAL), screen], false);
        assert_eq!(a.layers, vec![Some(0), Some(0)]);
        assert_eq!(a.temporal, vec![0, ALL_TEMPORAL]);
        // What to pad towards from there: the next frame rate (no margin: it was sent before).
        assert_eq!(a.next_step, Some(1_000_000 + 100_000));
    }
}
