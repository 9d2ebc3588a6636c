//! Per subscriber: turning the bandwidth estimate and the subscriber's wishes into a layer per
//! video (through the pure [`allocator`](super::allocator)), telling the subscriber what it gets,
//! and per publisher: pausing the simulcast layers nobody needs (dynacast).

use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;

use str0m::media::MediaKind;

use super::allocator::{allocate, subscriber_priority, VideoDemand};
use super::damping::{Change, Damping};
use super::event::{Event, PauseReason, StreamState};
use super::forward::select::LayerIndex;
use super::forward::svc::ALL_TEMPORAL;
use super::participant::{ParticipantKey, StreamReport};
use super::room::TrackKey;
use super::track::AUDIO_RATE;
use super::{Engine, TimerKind};

/// The estimate assumed before the first one arrives (also str0m's starting estimate).
pub const INITIAL_ESTIMATE: u64 = 1_000_000;
/// Part of the estimate given to media; the rest is headroom for RTCP, retransmissions and the
/// estimate's own error.
pub const ESTIMATE_SHARE: f64 = 0.9;
/// The least a subscriber with video probes for.
const VIDEO_PROBE_FLOOR: u64 = 2_000_000;
/// A rising estimate is acted on at most this often per subscriber; a falling one at once.
const ALLOCATION_INTERVAL: Duration = Duration::from_millis(500);
/// How the bandwidth towards one subscriber was last divided.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocation {
    /// The send-side bandwidth estimate towards it, bits per second, once there is one.
    pub estimate: Option<u64>,
    /// When its videos were last allocated.
    pub last: Option<Instant>,
    /// Step-up damping after step-downs for bandwidth.
    pub damping: Damping,
    /// The highest estimate so far.
    pub peak: u64,
    /// The estimate has fallen clearly below its peak at least once: the path showed loss or
    /// growing delay. Until then the estimate is only ramping up from its starting guess, and
    /// no video is paused for bandwidth (see [`CONGESTION_DROP`]).
    pub congested: bool,
    /// After the last allocation: a video it wants is paused because the budget does not fit it.
    pub paused_for_bandwidth: bool,
    /// After the last allocation: a video is below the layer it wants because of the budget.
    pub below_wanted: bool,
    /// Back from an outage (see [`OUTAGE`]): until then, lower estimates are not believed.
    pub recovering_until: Option<Instant>,
    /// When the estimator was last set back to the estimate held before an outage.
    pub last_reset: Option<Instant>,
    /// Until then the connection is padded up to the rate it uses even with no step up left
    /// (see [`PAD_AT_START`]); cleared, and the connection allocated again, once it is over.
    pub pad_until: Option<Instant>,
    /// The rate last given to the estimator as the one to probe for (see [`steady_desired`]).
    pub desired: Option<u64>,
}

/// With no step up left, a connection is padded up to the rate it uses (over
/// [`ESTIMATE_SHARE`]) for this long from its first estimate, and not after. Loss that starts
/// before str0m's estimator has seen a clean link for a few seconds can make its loss-based
/// estimate fall to the rate acknowledged; with media alone that is the rate used, and the
/// budget, a share of it, would pause a video that fits. Loss that starts later does not do
/// that, and padding there would only add a tenth to the subscriber's traffic.
pub const PAD_AT_START: Duration = Duration::from_secs(5);

/// Nothing at all from a participant for this long is an outage (its link went down, its
/// address changed), not congestion: while it lasts and for [`OUTAGE_RECOVERY`] after packets
/// come back, estimates below the one held before are not acted on, and the estimator is set
/// back to that one. Without this the feedback that reports the gap as lost packets pauses
/// videos for seconds after the link is back. Connected clients send something several times a
/// second (RTCP, transport feedback, media).
pub const OUTAGE: Duration = Duration::from_secs(1);
/// How long after an outage lower estimates are not believed (real congestion on the new path
/// is acted on after this).
pub const OUTAGE_RECOVERY: Duration = Duration::from_secs(3);
/// The estimator is set back at most this often while recovering.
const RESET_SPACING: Duration = Duration::from_millis(250);

/// An estimate below this share of the highest one so far shows congestion: the estimator
/// lowers its estimate only on loss or growing delay, while a ramp-up only ever rises.
pub const CONGESTION_DROP: f64 = 0.85;

/// Layers nobody needs are paused at the publisher after being unneeded this long.
pub const PUBLISHER_PAUSE_DELAY: Duration = Duration::from_secs(3);

/// How far the rate a subscriber would like may move before the estimator is told: a tenth
/// either way. The estimator probes each time it is told of a higher rate that is above its
/// estimate, and the rate comes from the publishers' measured bitrates, which move by a few
/// percent from one second to the next (more at a keyframe). Told every move, a subscriber
/// that cannot receive all it would like (a large meeting, a slow link) was probed several
/// times a second: bursts above its estimate, and on the server a session timeout for every
/// packet sent while a probe runs.
pub const DESIRED_DEAD_BAND: f64 = 0.1;

/// The rate to give the estimator as the one to probe for, given the one it was last given
/// (`last`) and the one the allocation now asks for: the new one once it is more than
/// [`DESIRED_DEAD_BAND`] above or below the last, the last one until then.
pub fn steady_desired(last: Option<u64>, wanted: u64) -> u64 {
    match last {
        Some(last)
            if (wanted as f64) <= last as f64 * (1.0 + DESIRED_DEAD_BAND)
                && (wanted as f64) >= last as f64 * (1.0 - DESIRED_DEAD_BAND) =>
        {
            last
        }
        _ => wanted,
    }
}

impl Engine {
    /// A new estimate for the connection towards `key`.
    pub(super) fn on_estimate(&mut self, now: Instant, key: ParticipantKey, bps: u64) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let silent = now.saturating_duration_since(p.last_recv) >= OUTAGE;
        let recovering = p.allocation.recovering_until.is_some_and(|t| now < t);
        if silent || recovering {
            if let Some(held) = p.allocation.estimate.filter(|held| bps < *held) {
                let due = p
                    .allocation
                    .last_reset
                    .is_none_or(|t| now.saturating_duration_since(t) >= RESET_SPACING);
                if recovering && due {
                    p.rtc.bwe().reset(Bitrate::bps(held));
                    p.allocation.last_reset = Some(now);
                }
                return;
            }
        }
        if p.allocation.estimate.is_none() {
            p.allocation.pad_until = Some(now + PAD_AT_START);
        }
        let previous = p
            .allocation
            .estimate
            .replace(bps)
            .unwrap_or(INITIAL_ESTIMATE);
        let a = &mut p.allocation;
        a.peak = a.peak.max(bps);
        if !a.congested && (bps as f64) < CONGESTION_DROP * a.peak as f64 {
            a.congested = true;
        }
        let next = p.allocation.last.map(|t| t + ALLOCATION_INTERVAL);
        if bps < previous || next.is_none_or(|t| t <= now) {
            self.agenda.allocate(key);
        } else if let Some(at) = next {
            // A rising estimate inside the interval: allocate when it ends, even if no further
            // estimate comes (a stable one does not).
            if self.timers.get(key, TimerKind::Allocate).is_none() {
                self.timers.set(key, TimerKind::Allocate, at);
            }
        }
    }

    /// Run what a batch of input left to do: allocations, stream reports, publisher layers.
    pub(super) fn update_allocations(&mut self, now: Instant) {
        for tk in self.agenda.take_layers_changed() {
            if let Some(t) = self.rooms.track(tk) {
                self.agenda.allocate_all(t.subscribers.iter().copied());
            }
        }
        for key in self.agenda.take_allocations() {
            self.allocate_for(now, key);
        }
        for (sk, tk) in self.agenda.take_switched() {
            self.report(now, sk, tk);
            // The layer the subscriber left may now be unneeded at the publisher.
            self.agenda.dynacast(tk);
        }
        for tk in self.agenda.take_dynacast() {
            self.update_publisher_layers(now, tk);
        }
    }

    /// Divide the estimate towards `key` across its videos and commit the outcome.
    pub(super) fn allocate_for(&mut self, now: Instant, key: ParticipantKey) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        p.allocation.last = Some(now);
        self.timers.cancel(key, TimerKind::Allocate);
        let cap = self.config.max_subscriber_bitrate.unwrap_or(u64::MAX);
        let estimate = p.allocation.estimate.unwrap_or(INITIAL_ESTIMATE).min(cap);
        // An overloaded worker forwards less: every budget shrinks alike.
        let overloaded = self.load_factor < 1.0;
        let estimate = if overloaded {
            (estimate as f64 * self.load_factor) as u64
        } else {
            estimate
        };
        let mut audio = 0;
        let mut keys: Vec<TrackKey> = Vec::with_capacity(p.subs.len());
        let mut demands: Vec<VideoDemand> = Vec::with_capacity(p.subs.len());
        for (tk, sub) in &p.subs {
            let Some(track) = self.rooms.track_mut(*tk) else {
                continue;
            };
            if track.kind == MediaKind::Audio {
                if !track.muted {
                    let r = track.layer_rates(now);
                    audio += r.first().copied().flatten().unwrap_or(AUDIO_RATE);
                }
                continue;
            }
            let max_layer = if !sub.visible || track.muted || !sub.codec_ok {
                None
            } else {
                Some(track.layer_for_size(sub.width, sub.height))
            };
            keys.push(*tk);
            demands.push(VideoDemand {
                priority: subscriber_priority(track.priority, sub.pinned),
                layers: track.layer_rates(now),
                max_layer,
                current: sub.selector.current(),
                base: track.temporal.base(now),
                temporal: sub.temporal.current(),
            });
        }
        let budget = ((estimate as f64 * ESTIMATE_SHARE) as u64).saturating_sub(audio);
        // Until the path has shown congestion the estimate is a guess still ramping up: every
        // wanted video keeps at least its lowest layer (a single-layer video is never paused
        // on a clean link); upgrades still wait for the budget.
        let provisional = !p.allocation.congested && !overloaded;
        let mut a = allocate(budget, &demands, provisional);

        // Damping: a step down for bandwidth starts a hold during which a step up must stay
        // affordable before it is taken; a step up that is undone soon after doubles the hold.
        // A level is a layer and its temporal cap: fewer frames is a step down too.
        let changes: Vec<Change> = keys
            .iter()
            .enumerate()
            .map(|(i, tk)| {
                let sub = p.subs.get(tk);
                let old = sub.and_then(|s| s.selector.target().map(|l| (l, s.temporal_cap)));
                Change {
                    old,
                    new: a.layers[i].map(|l| (l, a.temporal[i])),
                    wish_capped: demands[i].max_layer.is_none_or(|m| a.layers[i] == Some(m))
                        && a.temporal[i] == ALL_TEMPORAL,
                    // A layer that stopped arriving (the publisher's network dropped, or it
                    // paused the layer) is not a step down for bandwidth.
                    still_there: old.is_some_and(|(l, _)| {
                        demands[i]
                            .layers
                            .get(l as usize)
                            .is_some_and(Option::is_some)
                    }),
                    shown: demands[i].current.is_some(),
                    // No layer, and not for bandwidth: just subscribed, shown again, unmuted,
                    // arriving again. A hold must not keep it black.
                    fresh: old.is_none() && !sub.is_some_and(|s| s.paused_for_bandwidth),
                }
            })
            .collect();
        if let Some(ready) = p.allocation.damping.judge(now, &changes) {
            for (i, c) in changes.iter().enumerate() {
                if c.steps_up() {
                    a.layers[i] = c.old.map(|(l, _)| l);
                    a.temporal[i] = c.old.map_or(ALL_TEMPORAL, |(_, t)| t);
                }
            }
            if self.timers.get(key, TimerKind::Allocate).is_none() {
                self.timers.set(key, TimerKind::Allocate, ready);
            }
        }

        tracing::debug!(
            participant = %p.id,
            estimate,
            budget,
            provisional,
            congested = p.allocation.congested,
            layers = ?a.layers,
            temporal = ?a.temporal,
            next_step = ?a.next_step,
            // Per video: its layers' rates as priced, the layer wanted and the one forwarded.
            // (Field values are only computed when this line is enabled.)
            videos = ?demands
                .iter()
                .map(|d| (&d.layers, d.max_layer, d.current))
                .collect::<Vec<_>>(),
            hold = ?p.allocation.damping.hold_left(now),
            "allocation"
        );
        let (mut paused, mut below) = (false, false);
        for (i, d) in demands.iter().enumerate() {
            let top = d.layers.iter().rposition(Option::is_some);
            let want = d.max_layer.zip(top).map(|(m, t)| m.min(t as LayerIndex));
            if let Some(sub) = p.subs.get_mut(&keys[i]) {
                // Only a layer taken away (or kept away) counts: a video that has not had one
                // yet, say because its top layer arrived a moment before its lowest, is not.
                sub.paused_for_bandwidth = want.is_some()
                    && a.layers[i].is_none()
                    && (changes[i].old.is_some() || sub.paused_for_bandwidth);
            }
            match (want, a.layers[i]) {
                (Some(_), None) => paused = true,
                (Some(w), Some(l)) if l < w || a.temporal[i] != ALL_TEMPORAL => below = true,
                _ => {}
            }
        }
        p.allocation.paused_for_bandwidth = paused;
        p.allocation.below_wanted = below;
        for (i, tk) in keys.iter().enumerate() {
            let Some(sub) = p.subs.get_mut(tk) else {
                continue;
            };
            let target = a.layers[i];
            sub.temporal_cap = a.temporal[i];
            if sub.selector.target() != target {
                sub.selector.set_target(target);
                self.agenda.dynacast(*tk);
            }
            if let Some(cur) = sub.selector.current() {
                if demands[i]
                    .layers
                    .get(cur as usize)
                    .copied()
                    .flatten()
                    .is_none()
                {
                    sub.selector.drop_current();
                }
            }
        }
        // Probe for what the subscriber would like; pad towards the next step up. With video
        // to receive, probe for at least a good single stream even while the layers are
        // unknown: a probe can only ever confirm the rate it is sent at. With no step up left,
        // pad up to the rate used only while `pad_until` says so (see `PAD_AT_START`).
        let share = |bps: u64| (bps as f64 / ESTIMATE_SHARE) as u64;
        let floor = if demands.is_empty() {
            0
        } else {
            VIDEO_PROBE_FLOOR
        };
        let desired = share(a.wanted.max(a.used) + audio).max(floor).min(cap);
        let desired = steady_desired(p.allocation.desired, desired);
        p.allocation.desired = Some(desired);
        let pad_used = p.allocation.pad_until.is_some_and(|t| now < t);
        let pad_to = a.next_step.or(pad_used.then_some(a.used));
        let minimum = pad_to.map_or(0, |bps| share(bps + audio).min(desired));
        p.rtc
            .bwe()
            .set_bitrate(Bitrate::bps(minimum), Bitrate::bps(desired));
        if !p.touched {
            p.touched = true;
            self.touched.push(key);
        }
        for tk in keys {
            self.report(now, key, tk);
        }
    }

    /// Tell subscriber `sk` the state of its stream of track `tk` if it changed.
    fn report(&mut self, now: Instant, sk: ParticipantKey, tk: TrackKey) {
        let Some(track) = self.rooms.track(tk) else {
            return;
        };
        if track.kind != MediaKind::Video {
            return;
        }
        let Some(p) = self.participants.get_mut(&sk) else {
            return;
        };
        let Some(sub) = p.subs.get_mut(&tk) else {
            return;
        };
        let target = sub.selector.target();
        let layer = sub.selector.current().or(target);
        let reason = if target.is_some() {
            None
        } else if track.muted {
            Some(PauseReason::Muted)
        } else if !sub.codec_ok {
            Some(PauseReason::Codec)
        } else if !sub.visible {
            Some(PauseReason::Hidden)
        } else if track.publisher_silent(now) {
            Some(PauseReason::Publisher)
        } else {
            Some(PauseReason::Bandwidth)
        };
        let report = StreamReport {
            active: target.is_some(),
            reason,
            layer,
        };
        if sub.reported.as_ref() == Some(&report) {
            return;
        }
        let rid = layer
            .and_then(|l| track.layers.get(l as usize))
            .and_then(|l| l.rid)
            .map(|r| r.to_string());
        sub.reported = Some(report);
        let state = match reason {
            None => StreamState::Active { layer: rid },
            Some(reason) => StreamState::Paused(reason),
        };
        let event = Event::StreamState {
            subscriber: p.id.clone(),
            publisher: track.publisher_id.clone(),
            track_id: track.id.clone(),
            state,
        };
        self.emit(event);
    }

    /// Tell the publisher of `tk` which simulcast layers somebody needs. Layers come on at
    /// once; they go off only after [`PUBLISHER_PAUSE_DELAY`] of not being needed. The lowest
    /// layer always stays on so that a new subscriber starts without a round trip.
    pub(super) fn update_publisher_layers(&mut self, now: Instant, tk: TrackKey) {
        let Some(track) = self.rooms.track_mut(tk) else {
            return;
        };
        let n = track.layers.len();
        let mut needed: u8 = 1;
        for sk in &track.subscribers {
            if let Some(sub) = self.participants.get(sk).and_then(|s| s.subs.get(&tk)) {
                for l in [sub.selector.target(), sub.selector.current()]
                    .into_iter()
                    .flatten()
                {
                    needed |= 1 << l;
                }
            }
        }
        if track.origin.is_some() {
            // A mirror: the publisher's engine decides, from every engine's needs.
            self.send_needs(tk, needed);
            return;
        }
        // What the other engines' subscribers need.
        for (_, mask) in &track.relays {
            needed |= mask;
        }
        // The spatial layers of an SVC stream are not encodings the publisher can pause.
        if n <= 1 || track.svc {
            return;
        }
        let all = ((1u16 << n) - 1) as u8;
        let on = track.publisher_mask.unwrap_or(all);
        let send = if needed & !on != 0 {
            // Something needed is off: switch it on now (keeping the rest until its pause).
            Some(on | needed)
        } else if needed != on {
            match track.pause_due {
                Some(at) if at <= now => Some(needed),
                Some(_) => None,
                None => {
                    let at = now + PUBLISHER_PAUSE_DELAY;
                    track.pause_due = Some(at);
                    self.timers.set(track.publisher, TimerKind::Layers(tk), at);
                    None
                }
            }
        } else {
            if track.pause_due.take().is_some() {
                self.timers.cancel(track.publisher, TimerKind::Layers(tk));
            }
            None
        };
        let Some(mask) = send else {
            return;
        };
        if mask == needed && track.pause_due.take().is_some() {
            self.timers.cancel(track.publisher, TimerKind::Layers(tk));
        }
        track.set_publisher_mask(now, mask);
        let relayed = !track.relays.is_empty();
        let active = track
            .layers
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .filter_map(|(_, l)| l.rid.map(|r| r.to_string()))
            .collect();
        let track_id = track.id.clone();
        let publisher = track.publisher;
        if relayed {
            self.announce_publisher_mask(tk, mask);
        }
        if let Some(p) = self.participants.get(&publisher) {
            let event = Event::PublisherLayers {
                participant: p.id.clone(),
                track_id,
                active,
            };
            self.emit(event);
        }
    }

    /// Ask for a keyframe on every layer of a track (after an unmute).
    pub(super) fn request_all_keyframes(&mut self, now: Instant, tk: TrackKey) {
        let n = self.rooms.track(tk).map_or(0, |t| t.layers.len());
        for l in 0..n {
            self.request_keyframe(now, tk, l as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_to_probe_for_moves_only_beyond_the_dead_band() {
        // (last given, asked for now, given now)
        let table = [
            (None, 3_000_000, 3_000_000),
            (Some(3_000_000), 3_000_000, 3_000_000),
            (Some(3_000_000), 3_290_000, 3_000_000),
            (Some(3_000_000), 3_300_000, 3_000_000),
            (Some(3_000_000), 3_310_000, 3_310_000),
            (Some(3_000_000), 2_710_000, 3_000_000),
            (Some(3_000_000), 2_700_000, 3_000_000),
            (Some(3_000_000), 2_690_000, 2_690_000),
            (Some(3_000_000), 0, 0),
            (Some(0), 1, 1),
            (Some(0), 0, 0),
        ];
        for (last, asked, given) in table {
            assert_eq!(steady_desired(last, asked), given, "{last:?} then {asked}");
        }
    }
}
