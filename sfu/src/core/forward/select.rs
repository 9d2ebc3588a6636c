//! Which simulcast layer of a track a subscriber gets, packet by packet.
//!
//! The allocator sets a *target* layer; the selector moves the subscriber's *current* layer to it
//! only at a keyframe of the target, so that the decoder never sees a frame it cannot decode.
//! Until that keyframe arrives it keeps forwarding the current layer.

/// Layer index: 0 is the lowest.
pub type LayerIndex = u8;

/// What to do with a packet of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Forward it (it belongs to the current layer).
    Forward,
    /// Switch to this packet's layer, starting with this packet (a keyframe of the target).
    Switch,
    /// Not for this subscriber: another layer than the current one, or nothing is wanted.
    Skip {
        /// The target layer waits for a keyframe: ask the publisher for one on that layer.
        keyframe_needed: bool,
    },
}

/// Current and target layer of one subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerSelector {
    current: Option<LayerIndex>,
    target: Option<LayerIndex>,
}

impl LayerSelector {
    /// The layer being forwarded, if any.
    pub fn current(&self) -> Option<LayerIndex> {
        self.current
    }

    /// The layer wanted.
    pub fn target(&self) -> Option<LayerIndex> {
        self.target
    }

    /// Set the layer wanted; `None` stops forwarding at once.
    pub fn set_target(&mut self, target: Option<LayerIndex>) {
        self.target = target;
        if target.is_none() {
            self.current = None;
        }
    }

    /// Set the layer being forwarded when another selector decides it (the spatial layers of
    /// an SVC stream, [`SvcSelector`](super::svc::SvcSelector)).
    pub fn set_current(&mut self, current: Option<LayerIndex>) {
        self.current = current;
    }

    /// The current layer stopped arriving: forget it so that the switch to the target (which the
    /// caller has moved elsewhere) is not held back by it.
    pub fn drop_current(&mut self) {
        self.current = None;
    }

    /// Decide about a packet of `layer`.
    pub fn select(&mut self, layer: LayerIndex, keyframe_start: bool) -> Selection {
        let Some(target) = self.target else {
            return Selection::Skip {
                keyframe_needed: false,
            };
        };
        if layer == target && self.current != Some(target) {
            if keyframe_start {
                self.current = Some(target);
                return Selection::Switch;
            }
            return Selection::Skip {
                keyframe_needed: true,
            };
        }
        if Some(layer) == self.current {
            return Selection::Forward;
        }
        Selection::Skip {
            keyframe_needed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Selection::*;

    const NO_KF: Selection = Skip {
        keyframe_needed: false,
    };
    const WANT_KF: Selection = Skip {
        keyframe_needed: true,
    };

    /// (set target to, packet layer, keyframe?, expected, current after)
    type Row = (Option<Option<u8>>, u8, bool, Selection, Option<u8>);

    fn run(rows: &[Row]) {
        let mut s = LayerSelector::default();
        for (i, (target, layer, key, want, current)) in rows.iter().enumerate() {
            if let Some(t) = target {
                s.set_target(*t);
            }
            assert_eq!(s.select(*layer, *key), *want, "row {i}");
            assert_eq!(s.current(), *current, "row {i}: current");
        }
    }

    #[test]
    fn starts_on_a_keyframe_of_the_target() {
        run(&[
            (None, 2, true, NO_KF, None), // nothing wanted yet
            (Some(Some(1)), 0, true, NO_KF, None),
            (None, 1, false, WANT_KF, None),
            (None, 1, true, Switch, Some(1)),
            (None, 1, false, Forward, Some(1)),
            (None, 2, true, NO_KF, Some(1)),
        ]);
    }

    #[test]
    fn keeps_the_old_layer_until_the_new_one_has_a_keyframe() {
        run(&[
            (Some(Some(2)), 2, true, Switch, Some(2)),
            (Some(Some(0)), 2, false, Forward, Some(2)), // step down requested
            (None, 0, false, WANT_KF, Some(2)),
            (None, 2, false, Forward, Some(2)),
            (None, 0, true, Switch, Some(0)),
            (None, 2, false, NO_KF, Some(0)),
            (None, 0, false, Forward, Some(0)),
        ]);
    }

    #[test]
    fn pausing_stops_at_once_and_resuming_waits_for_a_keyframe() {
        run(&[
            (Some(Some(1)), 1, true, Switch, Some(1)),
            (Some(None), 1, false, NO_KF, None),
            (Some(Some(1)), 1, false, WANT_KF, None),
            (None, 1, true, Switch, Some(1)),
        ]);
    }

    #[test]
    fn a_lost_current_layer_does_not_block_the_switch() {
        let mut s = LayerSelector::default();
        s.set_target(Some(2));
        assert_eq!(s.select(2, true), Switch);
        s.set_target(Some(1));
        s.drop_current();
        assert_eq!(s.select(2, false), NO_KF);
        assert_eq!(s.select(1, true), Switch);
    }
}
