//! Which spatial and temporal layers of a scalable stream (VP9 SVC, AV1 with a dependency
//! descriptor) a subscriber gets, packet by packet.
//!
//! An SVC publisher sends every spatial layer in one RTP stream: each picture (one RTP
//! timestamp) carries a frame per spatial layer, lowest first, and a frame of layer S may be
//! predicted from layer S-1 of the same picture (on keyframes, with `L3T3_KEY`) and from layer S
//! of earlier pictures. A subscriber that gets spatial layer S is sent the frames of layers
//! 0..=S of each picture and nothing above, with the RTP marker bit on the last packet of layer
//! S (its end-of-frame bit E).
//!
//! The allocator's target layer is a spatial layer. The selector decides once per picture, at
//! its first packet, which layer that picture is forwarded up to:
//!
//! - down at once (a lower layer never depends on a higher one);
//! - up only at a keyframe (the first packet of layer 0 with P clear): with `L3T3_KEY` a higher
//!   layer refers to its own earlier frames, which the subscriber did not get; meanwhile it asks
//!   for a keyframe;
//! - a (re)start, when nothing was forwarded, also waits for a keyframe.
//!
//! Temporal layers are chosen apart, by a [`TemporalFilter`]: when even the lowest layer at full
//! frame rate does not fit a subscriber's bandwidth, it gets fewer frames of it rather than none.
//! The same filter serves a single stream or simulcast encoding with temporal layers (`L1T3`).

use super::select::LayerIndex;

/// Every temporal layer: no cap.
pub const ALL_TEMPORAL: u8 = u8::MAX;

/// The temporal layers forwarded to one subscriber: up to a cap.
///
/// - down at the next frame start (a frame of a higher layer is never cut in two);
/// - up at the start of a frame of temporal layer 0: in the usual structures (`L1T2`, `L1T3`,
///   `LxTy_KEY`) the frames of higher temporal layers refer only to lower layers since the last
///   base frame, so from there on every frame of the raised layers can be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemporalFilter {
    /// Highest temporal layer forwarded now.
    current: u8,
}

impl Default for TemporalFilter {
    fn default() -> Self {
        TemporalFilter {
            current: ALL_TEMPORAL,
        }
    }
}

impl TemporalFilter {
    /// The highest temporal layer forwarded now ([`ALL_TEMPORAL`]: no cap).
    pub fn current(&self) -> u8 {
        self.current
    }

    /// Whether to forward a packet of temporal layer `temporal` that starts a frame (or not),
    /// the allocator wanting layers up to `cap`.
    pub fn keep(&mut self, cap: u8, temporal: u8, begins_frame: bool) -> bool {
        if begins_frame && (cap < self.current || temporal == 0) {
            self.current = cap;
        }
        temporal <= self.current
    }
}

/// What the selector looks at in one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SvcPacket {
    /// RTP timestamp: the picture.
    pub ts: u32,
    /// Spatial layer id.
    pub spatial: LayerIndex,
    /// The first packet of a keyframe (layer 0, P clear, B set).
    pub keyframe_start: bool,
    /// E: the last packet of its layer's frame.
    pub ends_frame: bool,
}

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvcSelection {
    /// Forward it with this marker bit.
    Forward {
        /// The last packet of the highest spatial layer forwarded for its picture.
        marker: bool,
        /// Forwarding (re)starts with this packet (a keyframe).
        start: bool,
    },
    /// Leave it out (a higher spatial layer, or nothing is wanted).
    Skip {
        /// The target is above what can be forwarded until a keyframe: ask for one.
        keyframe_needed: bool,
    },
}

/// The spatial layer forwarded to one subscriber, per picture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SvcSelector {
    /// Layer of the newest picture, when forwarding.
    current: Option<LayerIndex>,
    /// Timestamp of the newest picture seen while forwarding.
    picture: Option<u32>,
    /// Layer of the picture before it (for its late packets).
    previous: Option<LayerIndex>,
}

impl SvcSelector {
    /// The spatial layer of the newest picture forwarded, if any.
    pub fn current(&self) -> Option<LayerIndex> {
        self.current
    }

    /// Decide about a packet, the allocator wanting spatial layer `target` (`None`: nothing).
    pub fn select(&mut self, target: Option<LayerIndex>, p: SvcPacket) -> SvcSelection {
        let Some(target) = target else {
            *self = SvcSelector::default();
            return SvcSelection::Skip {
                keyframe_needed: false,
            };
        };
        let age = self.picture.map(|ts| p.ts.wrapping_sub(ts) as i32);
        let mut start = false;
        let layer = match age {
            // A later picture: decide its layer.
            None | Some(1..) => {
                let layer = match self.current {
                    None if p.keyframe_start => {
                        start = true;
                        target
                    }
                    None => {
                        return SvcSelection::Skip {
                            keyframe_needed: true,
                        }
                    }
                    Some(c) if target < c || p.keyframe_start => target,
                    Some(c) => c,
                };
                self.previous = self.current;
                self.current = Some(layer);
                self.picture = Some(p.ts);
                layer
            }
            Some(0) => match self.current {
                Some(c) => c,
                None => {
                    return SvcSelection::Skip {
                        keyframe_needed: true,
                    }
                }
            },
            // A late packet of an earlier picture: never above what that picture got.
            Some(_) => match (self.previous, self.current) {
                (Some(prev), Some(cur)) => prev.min(cur),
                _ => {
                    return SvcSelection::Skip {
                        keyframe_needed: false,
                    }
                }
            },
        };
        if p.spatial > layer {
            return SvcSelection::Skip {
                keyframe_needed: target > layer && age.is_none_or(|a| a >= 0),
            };
        }
        SvcSelection::Forward {
            marker: p.spatial == layer && p.ends_frame,
            start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SvcSelection::*;

    const SKIP: SvcSelection = Skip {
        keyframe_needed: false,
    };
    const WANT_KF: SvcSelection = Skip {
        keyframe_needed: true,
    };

    fn fwd(marker: bool) -> SvcSelection {
        Forward {
            marker,
            start: false,
        }
    }

    /// One packet: timestamp, spatial id, keyframe start, end of frame.
    fn pkt(ts: u32, spatial: u8, keyframe_start: bool, ends_frame: bool) -> SvcPacket {
        SvcPacket {
            ts,
            spatial,
            keyframe_start,
            ends_frame,
        }
    }

    /// (target, packet, expected, current after)
    type Row = (Option<u8>, SvcPacket, SvcSelection, Option<u8>);

    fn run(rows: &[Row]) {
        let mut s = SvcSelector::default();
        for (i, (target, p, want, current)) in rows.iter().enumerate() {
            assert_eq!(s.select(*target, *p), *want, "row {i}");
            assert_eq!(s.current(), *current, "row {i}: current");
        }
    }

    #[test]
    fn starts_on_a_keyframe_with_the_marker_on_the_target_layer() {
        run(&[
            // An interframe: nothing to start on yet.
            (Some(1), pkt(100, 0, false, true), WANT_KF, None),
            (Some(1), pkt(100, 1, false, true), WANT_KF, None),
            // The keyframe: layer 0 in two packets, then layers 1 and 2.
            (
                Some(1),
                pkt(200, 0, true, false),
                Forward {
                    marker: false,
                    start: true,
                },
                Some(1),
            ),
            (Some(1), pkt(200, 0, false, true), fwd(false), Some(1)),
            (Some(1), pkt(200, 1, false, true), fwd(true), Some(1)),
            (Some(1), pkt(200, 2, false, true), SKIP, Some(1)),
            // The next picture.
            (Some(1), pkt(300, 0, false, true), fwd(false), Some(1)),
            (Some(1), pkt(300, 1, false, false), fwd(false), Some(1)),
            (Some(1), pkt(300, 1, false, true), fwd(true), Some(1)),
            (Some(1), pkt(300, 2, false, true), SKIP, Some(1)),
        ]);
    }

    #[test]
    fn steps_down_at_the_next_picture_and_up_only_at_a_keyframe() {
        run(&[
            (
                Some(2),
                pkt(0, 0, true, true),
                Forward {
                    marker: false,
                    start: true,
                },
                Some(2),
            ),
            (Some(2), pkt(0, 1, false, true), fwd(false), Some(2)),
            (Some(2), pkt(0, 2, false, true), fwd(true), Some(2)),
            // Down to 0, even in the middle of a picture: that picture keeps its layers.
            (Some(0), pkt(0, 2, false, true), fwd(true), Some(2)),
            (Some(0), pkt(10, 0, false, true), fwd(true), Some(0)),
            (Some(0), pkt(10, 1, false, true), SKIP, Some(0)),
            // Up to 2: interframes stay at 0 and ask for a keyframe on their higher layers.
            (Some(2), pkt(20, 0, false, true), fwd(true), Some(0)),
            (Some(2), pkt(20, 1, false, true), WANT_KF, Some(0)),
            (Some(2), pkt(20, 2, false, true), WANT_KF, Some(0)),
            // The keyframe: up.
            (Some(2), pkt(30, 0, true, true), fwd(false), Some(2)),
            (Some(2), pkt(30, 1, false, true), fwd(false), Some(2)),
            (Some(2), pkt(30, 2, false, true), fwd(true), Some(2)),
        ]);
    }

    #[test]
    fn late_packets_follow_their_picture_and_pausing_stops_at_once() {
        run(&[
            (
                Some(1),
                pkt(0, 0, true, true),
                Forward {
                    marker: false,
                    start: true,
                },
                Some(1),
            ),
            (Some(0), pkt(10, 0, false, true), fwd(true), Some(0)),
            // A late layer-1 packet of picture 0 (which got layer 1): the picture now has
            // layer 0 only, so it stays out.
            (Some(0), pkt(0, 1, false, true), SKIP, Some(0)),
            (Some(0), pkt(0, 0, false, false), fwd(false), Some(0)),
            // Nothing wanted: nothing forwarded, and the restart waits for a keyframe.
            (None, pkt(20, 0, false, true), SKIP, None),
            (Some(0), pkt(30, 0, false, true), WANT_KF, None),
            (
                Some(0),
                pkt(40, 0, true, true),
                Forward {
                    marker: true,
                    start: true,
                },
                Some(0),
            ),
            // A packet from before the restart stays out (timestamps compare wrapping).
            (Some(0), pkt(u32::MAX, 0, false, true), SKIP, Some(0)),
            (Some(0), pkt(u32::MAX, 1, false, true), SKIP, Some(0)),
        ]);
    }

    #[test]
    fn temporal_layers_go_down_at_a_frame_and_up_at_a_base_frame() {
        let mut f = TemporalFilter::default();
        // (cap, temporal id, begins frame, kept, current after): an L1T3 stream, frames in the
        // order T0 T2 T1 T2, two packets each where it matters.
        let rows = [
            (ALL_TEMPORAL, 0, true, true, ALL_TEMPORAL),
            (ALL_TEMPORAL, 2, true, true, ALL_TEMPORAL),
            // Cap 0 in the middle of a T2 frame: the frame is finished.
            (0, 2, false, true, ALL_TEMPORAL),
            (0, 1, true, false, 0),
            (0, 2, true, false, 0),
            (0, 0, true, true, 0),
            (0, 0, false, true, 0),
            // Up to 1: not before the next base frame.
            (1, 2, true, false, 0),
            (1, 1, true, false, 0),
            (1, 2, true, false, 0),
            (1, 0, true, true, 1),
            (1, 2, true, false, 1),
            (1, 1, true, true, 1),
            (1, 1, false, true, 1),
            // No cap again.
            (ALL_TEMPORAL, 2, true, false, 1),
            (ALL_TEMPORAL, 0, true, true, ALL_TEMPORAL),
            (ALL_TEMPORAL, 2, true, true, ALL_TEMPORAL),
        ];
        for (i, (cap, tid, begins, kept, current)) in rows.into_iter().enumerate() {
            assert_eq!(f.keep(cap, tid, begins), kept, "row {i}");
            assert_eq!(f.current(), current, "row {i}: current");
        }
    }
}
