//! Damping of a subscriber's step-ups: after a step down for bandwidth, a step up waits until
//! it has stayed affordable for a while, so that an estimate swinging around a layer's price
//! does not switch the layer back and forth.

use std::time::{Duration, Instant};

use super::forward::select::LayerIndex;

/// The first hold on step-ups after a step down for bandwidth.
pub const FIRST_UPGRADE_HOLD: Duration = Duration::from_secs(2);
/// The longest hold on step-ups.
pub const MAX_UPGRADE_HOLD: Duration = Duration::from_secs(4);
/// A step down this soon after a step up counts as undoing it (and doubles the hold).
pub const UNDO_WINDOW: Duration = Duration::from_secs(10);

/// Step-up damping state of one subscriber.
#[derive(Debug, Clone, Copy)]
pub struct Damping {
    /// Current hold length.
    hold: Duration,
    /// Step-ups wait until they have been affordable for `hold`, until this time.
    hold_until: Option<Instant>,
    /// Since when a step-up has been affordable.
    up_since: Option<Instant>,
    /// The last step-up taken.
    last_up: Option<Instant>,
}

impl Default for Damping {
    fn default() -> Self {
        Damping {
            hold: FIRST_UPGRADE_HOLD,
            hold_until: None,
            up_since: None,
            last_up: None,
        }
    }
}

impl Damping {
    /// How long step-ups are still held back at `now` (`None`: no hold).
    pub(super) fn hold_left(&self, now: Instant) -> Option<Duration> {
        self.hold_until.map(|t| t.saturating_duration_since(now))
    }

    /// Takes in an allocation's changes, and says until when its step-ups are held back
    /// (`None`: take them now).
    /// - A step down starts a hold; one within `UNDO_WINDOW` of the last step-up taken (that
    ///   step-up undone) doubles the hold first, up to `MAX_UPGRADE_HOLD`.
    /// - During a hold a step-up waits until it has been affordable, in every allocation since,
    ///   for the length of the hold; an allocation without one starts the wait again.
    /// - Long after the last hold (three undo windows), the hold is back to its first length.
    pub(super) fn judge(&mut self, now: Instant, changes: &[Change]) -> Option<Instant> {
        let (down, up) = steps(changes);
        if down {
            if self
                .last_up
                .is_some_and(|t| now.saturating_duration_since(t) < UNDO_WINDOW)
            {
                self.hold = (self.hold * 2).min(MAX_UPGRADE_HOLD);
            }
            self.hold_until = Some(now + self.hold);
            self.up_since = None;
        } else if self
            .hold_until
            .is_some_and(|t| now.saturating_duration_since(t) > UNDO_WINDOW * 3)
        {
            *self = Damping::default();
        }
        if !up {
            self.up_since = None;
            return None;
        }
        if self.hold_until.is_some_and(|t| now < t) {
            let ready = *self.up_since.get_or_insert(now) + self.hold;
            if now < ready {
                return Some(ready);
            }
        }
        self.last_up = Some(now);
        self.up_since = None;
        None
    }
}

/// One video's move in an allocation, as damping sees it.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Change {
    /// Its level (layer, temporal cap) before and after; `None`: no layer.
    pub(super) old: Option<(LayerIndex, u8)>,
    pub(super) new: Option<(LayerIndex, u8)>,
    /// The new level is all the subscriber wants: a wish, not the budget, sets it.
    pub(super) wish_capped: bool,
    /// The old layer is still arriving.
    pub(super) still_there: bool,
    /// Something of it is forwarded now.
    pub(super) shown: bool,
    /// It had no layer, and not for bandwidth (just subscribed, shown again, unmuted,
    /// arriving again).
    pub(super) fresh: bool,
}

/// Whether an allocation is a step down for bandwidth (it starts a hold) and whether it is a
/// step up (a hold may hold it back); a change is at most one of them.
/// - A video lowered below what its subscriber wants, from a layer still arriving, is a step
///   down; a video not shown yet has nothing to step down from (its target fell because its
///   lower layers began to arrive after its top one).
/// - A video raised is a step up, unless it is fresh: a hold must not keep it black.
/// - A change that moves one video down and another up (priorities changed) is a reshuffle,
///   neither damped nor starting a hold.
pub(super) fn steps(changes: &[Change]) -> (bool, bool) {
    let lowered = changes
        .iter()
        .any(|c| c.new < c.old && !c.wish_capped && c.still_there && c.shown);
    let raised = changes.iter().any(|c| c.new > c.old);
    let stepped_up = changes.iter().any(Change::steps_up);
    (lowered && !raised, stepped_up && !lowered)
}

impl Change {
    /// Raised, and not fresh: what a hold holds back.
    pub(super) fn steps_up(&self) -> bool {
        self.new > self.old && !self.fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::forward::svc::ALL_TEMPORAL;

    #[test]
    fn steps_down_and_up_for_damping() {
        let at = |l: u8| Some((l, ALL_TEMPORAL));
        let shown = Change {
            still_there: true,
            shown: true,
            ..Default::default()
        };
        let down = Change {
            old: at(2),
            new: at(0),
            ..shown
        };
        let up = Change {
            old: at(0),
            new: at(1),
            ..shown
        };
        let table: [(&str, Vec<Change>, (bool, bool)); 10] = [
            ("lowered", vec![down], (true, false)),
            ("raised", vec![up], (false, true)),
            (
                "fewer frames",
                vec![Change {
                    new: Some((0, 1)),
                    old: at(0),
                    ..shown
                }],
                (true, false),
            ),
            (
                "lowered to the wish",
                vec![Change {
                    wish_capped: true,
                    ..down
                }],
                (false, false),
            ),
            (
                "its layer stopped arriving",
                vec![Change {
                    still_there: false,
                    ..down
                }],
                (false, false),
            ),
            (
                "not shown yet",
                vec![Change {
                    shown: false,
                    ..down
                }],
                (false, false),
            ),
            ("paused", vec![Change { new: None, ..down }], (true, false)),
            (
                "a fresh video",
                vec![Change {
                    old: None,
                    fresh: true,
                    ..up
                }],
                (false, false),
            ),
            (
                "back after a pause for bandwidth",
                vec![Change { old: None, ..up }],
                (false, true),
            ),
            ("a reshuffle", vec![down, up], (false, false)),
        ];
        for (name, changes, expected) in table {
            assert_eq!(steps(&changes), expected, "{name}");
        }
    }

    #[test]
    fn step_ups_wait_out_a_hold_after_a_step_down() {
        let at = |l: u8| Some((l, ALL_TEMPORAL));
        let shown = Change {
            still_there: true,
            shown: true,
            ..Default::default()
        };
        let down = vec![Change {
            old: at(2),
            new: at(0),
            ..shown
        }];
        let up = vec![Change {
            old: at(0),
            new: at(1),
            ..shown
        }];
        let none = vec![Change {
            old: at(1),
            new: at(1),
            ..shown
        }];
        // Per scenario: (ms, the allocation's changes, held until ms).
        type Step = (u64, Vec<Change>, Option<u64>);
        let table: [(&str, Vec<Step>); 6] = [
            ("no hold: taken", vec![(0, up.clone(), None)]),
            (
                "a step down holds step-ups until affordable for 2 s",
                vec![
                    (0, down.clone(), None),
                    (500, up.clone(), Some(2_500)),
                    (1_500, up.clone(), Some(2_500)),
                    // The hold ends at 2 s: taken.
                    (2_000, up.clone(), None),
                ],
            ),
            (
                "an allocation without a step-up starts the wait again",
                vec![
                    (0, down.clone(), None),
                    (500, up.clone(), Some(2_500)),
                    (1_000, none.clone(), None),
                    (1_500, up.clone(), Some(3_500)),
                ],
            ),
            (
                "a step-up undone within 10 s doubles the hold, up to 4 s",
                vec![
                    (0, up.clone(), None),
                    (1_000, down.clone(), None),
                    (1_500, up.clone(), Some(5_500)),
                    (5_000, up.clone(), None),
                    (6_000, down.clone(), None),
                    (6_500, up.clone(), Some(10_500)),
                ],
            ),
            (
                "a step down 10 s after the last step-up keeps the hold",
                vec![
                    (0, up.clone(), None),
                    (10_000, down.clone(), None),
                    (10_500, up.clone(), Some(12_500)),
                ],
            ),
            (
                "30 s after a hold ends, the hold is back to 2 s",
                vec![
                    (0, up.clone(), None),
                    (1_000, down.clone(), None), // held until 5 s, 4 s hold
                    (35_001, none.clone(), None),
                    (36_000, down.clone(), None),
                    (36_500, up.clone(), Some(38_500)),
                ],
            ),
        ];
        let t0 = Instant::now();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        for (name, steps) in table {
            let mut damping = Damping::default();
            for (i, (t, changes, held)) in steps.into_iter().enumerate() {
                assert_eq!(
                    damping.judge(ms(t), &changes),
                    held.map(ms),
                    "{name}, step {i}"
                );
            }
        }
    }
}
