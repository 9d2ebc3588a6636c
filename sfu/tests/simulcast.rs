//! Simulcast layer selection, allocation and publisher layer control, on the virtual network.

mod virtual_net;

use std::time::{Duration, Instant};

use sfu::core::bandwidth::PAD_AT_START;
use sfu::core::forward::DropReason;
use signal::protocol::{ServerMessage, StreamStateKind};
use signal::ClientSignal;
use str0m::format::Codec;
use virtual_net::{
    assert_clean_switches, by_seq, layer_now, secs, Bed, Link, Received, FRAME_INTERVAL,
};

/// Whether every packet received in the last `hold` before `now` was of the top layer.
fn held_top_layer(packets: &[Received], now: Instant, hold: Duration) -> bool {
    let since = now.checked_sub(hold).unwrap();
    packets.first().is_some_and(|p| p.at < since)
        && packets
            .iter()
            .rev()
            .take_while(|p| p.at >= since)
            .all(|p| p.layer == 2)
}

/// The longest a packet received from `from` on was held beyond the least delay seen over all
/// `packets` (capture to arrival; the least is the network's own). Only packets that arrive in
/// order count: a retransmission is late by design, and a receiver plays it only if it is in
/// time.
fn worst_extra_delay(packets: &[Received], from: Instant) -> Duration {
    let captured = |p: &Received| p.at - FRAME_INTERVAL * p.frame;
    let Some(base) = packets.iter().map(captured).min() else {
        return Duration::ZERO;
    };
    let mut newest: Option<u16> = None;
    let mut worst = Duration::ZERO;
    for p in packets {
        let fresh = newest.is_none_or(|n| (p.seq.wrapping_sub(n) as i16) > 0);
        if !fresh {
            continue;
        }
        newest = Some(p.seq);
        if p.at >= from {
            worst = worst.max(captured(p) - base);
        }
    }
    worst
}

/// When the received layer first satisfied `f` after `since`.
fn first_at(packets: &[Received], since: Instant, f: impl Fn(u8) -> bool) -> Option<Instant> {
    packets
        .iter()
        .find(|p| p.at >= since && f(p.layer))
        .map(|p| p.at)
}

fn simulcast_room() -> (Bed, usize, usize, usize) {
    let mut bed = Bed::new();
    bed.next_simulcast = true;
    let a = bed.join("r", "ann", true);
    bed.next_simulcast = false;
    let b = bed.join("r", "bob", false);
    let c = bed.join("r", "cat", false);
    (bed, a, b, c)
}

/// [`simulcast_room`] once both subscribers have held the top layer for a second (the start
/// may step once more before the estimate settles).
fn room_at_the_top() -> (Bed, usize, usize, usize) {
    let (mut bed, a, b, c) = simulcast_room();
    let ida = bed.id(a);
    assert!(bed.run_until(secs(10.0), |bed| {
        [b, c]
            .iter()
            .all(|s| held_top_layer(bed.clients[*s].video_from(&ida), bed.now, secs(1.0)))
    }));
    (bed, a, b, c)
}

#[test]
fn unconstrained_subscribers_reach_the_top_layer() {
    let (mut bed, a, b, c) = simulcast_room();
    let ida = bed.id(a);
    let top = bed.run_until(secs(10.0), |bed| {
        [b, c]
            .iter()
            .all(|s| layer_now(bed.clients[*s].video_from(&ida)) == Some(2))
    });
    assert!(top, "subscribers did not reach the top layer");
    let reached = [b, c]
        .iter()
        .map(|s| first_at(bed.clients[*s].video_from(&ida), bed.start, |l| l == 2).unwrap())
        .max()
        .unwrap();
    eprintln!("top layer after {:?}", reached - bed.start);
    bed.run(secs(2.0));
    for s in [b, c] {
        assert_clean_switches("subscriber", bed.clients[s].video_from(&ida), true);
    }
    // The state messages name the layer.
    assert!(bed.clients[b].messages.iter().any(|m| matches!(m,
        ServerMessage::StreamState { state: StreamStateKind::Active, layer: Some(l), .. } if l == "f")));
}

/// Bytes the server has sent client `ci` so far: in retransmission (RTX) packets, and in all
/// RTP packets.
fn rtx_and_rtp_bytes(bed: &Bed, ci: usize) -> (usize, usize) {
    let client = &bed.clients[ci];
    let (mut rtx, mut all) = (0, 0);
    for ((c, pt), (_, bytes)) in &bed.sent_by_pt {
        if *c == ci {
            all += bytes;
            if client.is_rtx(*pt) {
                rtx += bytes;
            }
        }
    }
    (rtx, all)
}

#[test]
fn padding_probes_for_steps_up_and_stops_at_the_top() {
    // On a lossless network every retransmission packet is padding (or a probe): nothing is
    // ever asked for again.
    let (mut bed, a, b, c) = room_at_the_top();
    let ida = bed.id(a);
    // The estimate started below the top layer: padding probed for the steps up.
    for s in [b, c] {
        let (rtx, all) = rtx_and_rtp_bytes(&bed, s);
        eprintln!("subscriber {s} on its way to the top layer: {rtx} of {all} bytes padding");
        assert!(
            rtx > 0,
            "subscriber {s} reached the top layer without a probe"
        );
    }
    // At the top layer, once the connection's first padded seconds are over, there is no
    // step up left to pad for. What remains is str0m's periodic probe while the link is not
    // used to the full (a few packets every 5 s, under 1 % of the bytes here); padding up to
    // the rate used took 12 %.
    bed.run(PAD_AT_START);
    let before: Vec<(usize, usize)> = [b, c].iter().map(|s| rtx_and_rtp_bytes(&bed, *s)).collect();
    bed.run(secs(10.0));
    for (i, s) in [b, c].into_iter().enumerate() {
        let (rtx, all) = rtx_and_rtp_bytes(&bed, s);
        let (rtx, all) = (rtx - before[i].0, all - before[i].1);
        eprintln!("subscriber {s} at the top layer: {rtx} of {all} bytes padding");
        assert!(all > 1_000_000, "subscriber {s} got {all} bytes in 10 s");
        assert!(
            rtx * 50 <= all,
            "subscriber {s} at the top layer was padded: {rtx} of {all} bytes"
        );
        assert_eq!(layer_now(bed.clients[s].video_from(&ida)), Some(2));
    }
}

#[test]
fn a_constrained_subscriber_steps_down_and_back_up_without_affecting_others() {
    let (mut bed, a, b, c) = room_at_the_top();
    let ida = bed.id(a);

    // Bob's downlink drops to 400 kbit/s.
    let constrained = bed.now;
    if std::env::var_os("DBG").is_some() {
        for c in [b, c] {
            for m in &bed.clients[c].messages {
                if let ServerMessage::StreamState {
                    state,
                    layer,
                    reason,
                    ..
                } = m
                {
                    eprintln!("{c}: {state:?} {layer:?} {reason:?}");
                }
            }
            eprintln!("{c} est {:?}", bed.engine.estimate_of(&bed.id(c)));
        }
    }
    bed.links.insert(b, Link::new(400_000));
    let mut queued = Duration::ZERO;
    let mut stepped = false;
    for _ in 0..500 {
        bed.run(secs(0.01));
        let now = bed.now;
        queued = queued.max(bed.engine.oldest_queued(now));
        if layer_now(bed.clients[b].video_from(&ida)).is_some_and(|l| l < 2) {
            stepped = true;
            break;
        }
    }
    assert!(stepped, "bob did not step down");
    // Top-layer packets queued in bob's pacer while his estimate fell: the metric sees them
    // (0.09 to 0.3 s).
    eprintln!("oldest packet in bob's pacer while stepping down: {queued:?}");
    assert!(
        queued >= secs(0.05),
        "the pacer backlog was seen: {queued:?}"
    );
    let down = first_at(bed.clients[b].video_from(&ida), constrained, |l| l < 2).unwrap();
    bed.run(secs(8.0));
    let settled = layer_now(bed.clients[b].video_from(&ida)).unwrap();
    let now = bed.now;
    let left = bed.engine.oldest_queued(now);
    assert!(left < secs(0.1), "bob's pacer drained: {left:?} left");
    // While constrained, the layer does not flap. Counted in sequence order from the first
    // packet of the lower layer: a retransmission of a top-layer packet lost just before the
    // switch arrives late, but it belongs before the switch.
    let sorted = by_seq(bed.clients[b].video_from(&ida));
    let first_down = sorted
        .iter()
        .filter(|(_, p)| p.at >= down && p.layer < 2)
        .map(|(seq, _)| *seq)
        .min()
        .unwrap();
    let while_constrained: Vec<u8> = sorted
        .iter()
        .filter(|(seq, _)| *seq >= first_down)
        .map(|(_, p)| p.layer)
        .collect();
    let changes = while_constrained
        .windows(2)
        .filter(|w| w[0] != w[1])
        .count();
    eprintln!("layer changes while constrained: {changes}");
    assert!(changes <= 2, "{changes} layer changes while constrained");

    // How long video was held on the way while the estimate caught up (reported, see
    // docs/simulcast-and-bandwidth.md); the other subscriber's is not held at all.
    let held = worst_extra_delay(bed.clients[b].video_from(&ida), constrained);
    eprintln!("longest extra video delay while constrained: {held:?}");
    assert!(
        worst_extra_delay(bed.clients[c].video_from(&ida), constrained) <= secs(0.1),
        "the unconstrained subscriber's video was held"
    );

    // The constraint lifts.
    let lifted = bed.now;
    bed.links.get_mut(&b).unwrap().bps = 100_000_000;
    let idb = bed.id(b);
    let mut estimates = Vec::new();
    // Top-layer packets captured before the lift may still be on their way: count only frames
    // captured after it (the unconstrained subscriber has the newest frame at the lift).
    let lift_frame = bed.clients[c].video_from(&ida).last().unwrap().frame;
    let top_since_lift = |p: &Received| p.layer == 2 && p.frame > lift_frame;
    let back = bed.run_until(secs(15.0), |bed| {
        estimates.push(bed.engine.estimate_of(&idb).unwrap_or(0) / 1000);
        bed.clients[b].video_from(&ida).iter().any(top_since_lift)
            && layer_now(bed.clients[b].video_from(&ida)) == Some(2)
    });
    if !back {
        let sampled: Vec<u64> = estimates.iter().step_by(500).copied().collect();
        eprintln!("bob's estimate (kbit/s, every 0.5 s): {sampled:?}");
    }
    if !back {
        for m in &bed.clients[b].messages {
            if let ServerMessage::StreamState {
                state,
                layer,
                reason,
                ..
            } = m
            {
                eprintln!("bob: {state:?} {layer:?} {reason:?}");
            }
        }
        eprintln!("ann layers: {:?}", bed.clients[a].active_layers);
        eprintln!("bob now: {:?}", layer_now(bed.clients[b].video_from(&ida)));
    }
    assert!(back, "bob did not return to the top layer");
    let up = bed.clients[b]
        .video_from(&ida)
        .iter()
        .find(|p| top_since_lift(p))
        .unwrap()
        .at;
    bed.run(secs(2.0));
    eprintln!(
        "step down after {:?} (layer {settled} while constrained), back up after {:?}",
        down - constrained,
        up - lifted
    );
    // The first lower-layer packet reaches bob behind the top-layer packets queued for him
    // while his estimate came down, in the server's pacer (0.09 to 0.3 s, see above) and on the
    // 400 kbit/s link: 0.8 to 0.9 s. The reported estimate follows a fall of the raw one at
    // once; when it was a 3 s average alone, this took 1.1, 2.1 or 4.5 s depending on how many
    // estimates the average held before the drop.
    assert!(
        down - constrained <= secs(1.5),
        "step down took {:?}",
        down - constrained
    );
    assert!(held <= secs(1.0), "bob's video was held {held:?}");
    assert!(
        settled < 2,
        "bob stays below the top layer while constrained"
    );
    assert!(up - lifted <= secs(10.0), "step up took {:?}", up - lifted);

    // Bob's link lost packets; what the server sent him is still gap-free.
    bed.assert_sent_gap_free(b);
    let switches = assert_clean_switches("bob", bed.clients[b].video_from(&ida), false);
    assert!(switches >= 2);
    // Cat never left the top layer after reaching it.
    let cat = bed.clients[c].video_from(&ida);
    assert!(cat
        .iter()
        .filter(|p| p.at >= constrained)
        .all(|p| p.layer == 2));
    assert_clean_switches("cat", cat, true);
    bed.assert_sent_gap_free(c);
}

#[test]
fn the_rendered_size_caps_the_layer_and_hidden_videos_get_nothing() {
    let (mut bed, a, b, _c) = simulcast_room();
    let ida = bed.id(a);
    let track = format!("{ida}-{}", bed.clients[a].video_mid.unwrap());
    assert!(
        bed.run_until(secs(10.0), |bed| layer_now(bed.clients[b].video_from(&ida))
            == Some(2))
    );
    let idb = bed.id(b);
    let settings = |bed: &mut Bed, visible: bool, w: u32, h: u32| {
        bed.engine.handle_signal(
            bed.now,
            &idb,
            ClientSignal::TrackSettings {
                track_id: track.clone(),
                visible,
                width: w,
                height: h,
                pinned: false,
            },
        );
        bed.pump_signals();
    };
    settings(&mut bed, true, 320, 180);
    assert!(
        bed.run_until(secs(2.0), |bed| layer_now(bed.clients[b].video_from(&ida))
            == Some(0))
    );
    settings(&mut bed, true, 600, 340);
    assert!(
        bed.run_until(secs(2.0), |bed| layer_now(bed.clients[b].video_from(&ida))
            == Some(1))
    );

    settings(&mut bed, false, 600, 340);
    bed.run(secs(0.3));
    let hidden_at = bed.clients[b].video_from(&ida).len();
    bed.run(secs(1.0));
    assert_eq!(
        bed.clients[b].video_from(&ida).len(),
        hidden_at,
        "nothing while hidden"
    );
    assert!(bed.clients[b].messages.iter().any(|m| matches!(m,
        ServerMessage::StreamState { state: StreamStateKind::Paused, reason: Some(r), .. } if r == "hidden")));

    settings(&mut bed, true, 1920, 1080);
    assert!(
        bed.run_until(secs(3.0), |bed| layer_now(bed.clients[b].video_from(&ida))
            == Some(2))
    );
    bed.run(secs(0.5));
    assert_clean_switches("bob", bed.clients[b].video_from(&ida), true);
}

#[test]
fn layers_nobody_needs_are_paused_at_the_publisher() {
    let mut bed = Bed::new();
    bed.next_simulcast = true;
    let a = bed.join("r", "ann", true);
    bed.next_simulcast = false;
    let b = bed.join("r", "bob", false);
    let ida = bed.id(a);
    let idb = bed.id(b);
    let track = format!("{ida}-{}", bed.clients[a].video_mid.unwrap());
    assert!(
        bed.run_until(secs(10.0), |bed| layer_now(bed.clients[b].video_from(&ida))
            == Some(2))
    );
    bed.engine.handle_signal(
        bed.now,
        &idb,
        ClientSignal::TrackSettings {
            track_id: track.clone(),
            visible: true,
            width: 320,
            height: 180,
            pinned: false,
        },
    );
    // After the pause delay, only q is asked for.
    assert!(bed.run_until(secs(5.0), |bed| bed.clients[a].active_layers
        == Some(vec!["q".to_string()])));
    let paused_at = bed.now;
    bed.run(secs(1.0));
    assert_eq!(layer_now(bed.clients[b].video_from(&ida)), Some(0));
    // Bob wants full size again: the top layer is switched on at once and reached quickly.
    bed.engine.handle_signal(
        bed.now,
        &idb,
        ClientSignal::TrackSettings {
            track_id: track,
            visible: true,
            width: 1280,
            height: 720,
            pinned: false,
        },
    );
    bed.pump_signals();
    assert!(bed.clients[a]
        .active_layers
        .as_ref()
        .is_some_and(|l| l.iter().any(|r| r == "f")));
    let asked = bed.now;
    assert!(
        bed.run_until(secs(3.0), |bed| layer_now(bed.clients[b].video_from(&ida))
            == Some(2))
    );
    eprintln!(
        "paused at {:?}, top again {:?} after asking",
        paused_at - bed.start,
        bed.now - asked
    );
    assert_clean_switches("bob", bed.clients[b].video_from(&ida), true);
}

#[test]
fn when_bandwidth_is_short_one_video_is_paused_rather_than_all_frozen() {
    let mut bed = Bed::new();
    bed.next_simulcast = true;
    let a = bed.join("r", "ann", true);
    let d = bed.join("r", "dan", true);
    bed.next_simulcast = false;
    let b = bed.join("r", "bob", false);
    let (ida, idd) = (bed.id(a), bed.id(d));
    assert!(bed.run_until(secs(10.0), |bed| {
        layer_now(bed.clients[b].video_from(&ida)) == Some(2)
            && layer_now(bed.clients[b].video_from(&idd)) == Some(2)
    }));
    // Room for one low layer and the audio, not two.
    // The drop from 100 Mbit/s overflows the link's queue, and after such losses the estimate
    // can undershoot for a few seconds (both videos paused) before it climbs back: allow 20 s
    // to reach the state where exactly one video flows, held for 2 s.
    bed.links.insert(b, Link::new(400_000));
    let constrained = bed.now;
    let flowing = |bed: &Bed, since: Instant| {
        [&ida, &idd]
            .iter()
            .filter(|id| bed.clients[b].video_from(id).iter().any(|p| p.at > since))
            .count()
    };
    let one_flows = bed.run_until(secs(20.0), |bed| {
        bed.now - constrained >= secs(4.0) && flowing(bed, bed.now - secs(2.0)) == 1
    });
    let paused = bed.clients[b].messages.iter().any(|m| matches!(m, ServerMessage::StreamState { state: StreamStateKind::Paused, reason: Some(r), .. } if r == "bandwidth"));
    assert!(paused, "a video was paused for bandwidth");
    assert!(one_flows, "exactly one video keeps flowing");
    // When the link recovers both come back.
    bed.links.get_mut(&b).unwrap().bps = 100_000_000;
    assert!(bed.run_until(secs(15.0), |bed| {
        let t = bed.now - secs(0.5);
        [&ida, &idd]
            .iter()
            .all(|id| bed.clients[b].video_from(id).iter().any(|p| p.at > t))
    }));
    assert!(bed.clients[b].messages.iter().any(|m| matches!(
        m,
        ServerMessage::StreamState {
            state: StreamStateKind::Active,
            ..
        }
    )));
}

#[test]
fn a_video_that_arrives_while_a_step_up_is_held_is_shown_at_once() {
    // Damping holds a step up back for a while after a step down for bandwidth. A new video
    // taking its first layer is no step up: it must not stay black until the hold is over.
    let (mut bed, a, b, c) = simulcast_room();
    let ida = bed.id(a);
    assert!(bed.run_until(secs(10.0), |bed| {
        held_top_layer(bed.clients[b].video_from(&ida), bed.now, secs(1.0))
    }));
    // Room for ann's middle layer and a low one beside it, not for her top layer.
    bed.links.insert(b, Link::new(1_200_000));
    let constrained = bed.now;
    assert!(
        bed.run_until(secs(10.0), |bed| {
            first_at(bed.clients[b].video_from(&ida), constrained, |l| l < 2).is_some()
        }),
        "bob did not step down"
    );
    // Dan starts publishing while the hold that step down started still runs.
    bed.next_simulcast = true;
    let d = bed.join("r", "dan", true);
    bed.next_simulcast = false;
    let idd = bed.id(d);
    assert!(
        bed.run_until(secs(10.0), |bed| {
            !bed.clients[c].video_from(&idd).is_empty()
                && !bed.clients[b].video_from(&idd).is_empty()
        }),
        "dan's video reached neither viewer"
    );
    let to_cat = bed.clients[c].video_from(&idd)[0].at;
    let to_bob = bed.clients[b].video_from(&idd)[0].at;
    let late = to_bob.saturating_duration_since(to_cat);
    eprintln!(
        "dan's video: cat after {:?}, bob {late:?} after cat",
        to_cat - constrained
    );
    assert!(
        late < secs(0.5),
        "bob got dan's video {late:?} after cat did"
    );
}

#[test]
fn a_single_layer_video_is_never_paused_on_a_clean_link() {
    // A 1.5 Mbit/s single-layer camera: above what the starting estimate affords, so only the
    // ramp-up of the estimate stands between the viewer and the video.
    let mut bed = Bed::new();
    bed.next_single_layer = 2;
    let p = bed.join("r", "pub", true);
    bed.next_single_layer = 1;
    let v = bed.join("r", "viewer", false);
    let idp = bed.id(p);
    bed.run(secs(10.0));
    let paused: Vec<&ServerMessage> = bed.clients[v]
        .messages
        .iter()
        .filter(|m| {
            matches!(m, ServerMessage::StreamState { state: StreamStateKind::Paused, reason: Some(r), .. }
                if r == "bandwidth")
        })
        .collect();
    assert!(paused.is_empty(), "paused for bandwidth: {paused:?}");
    let video = bed.clients[v].video_from(&idp);
    assert!(!video.is_empty(), "no video arrived");
    let longest_gap = video
        .windows(2)
        .map(|w| w[1].at.saturating_duration_since(w[0].at))
        .max()
        .unwrap_or_default();
    assert!(
        longest_gap < Duration::from_millis(300),
        "the video stopped for {longest_gap:?}"
    );
    let first = video[0].at.saturating_duration_since(bed.start);
    assert!(
        first < Duration::from_millis(500),
        "first video after {first:?}"
    );
}

#[test]
fn random_loss_after_the_first_seconds_does_not_pause_a_video_that_fits() {
    // A 500 kbit/s single-layer camera and one viewer whose link loses 2, 5 or 8 % of the
    // packets at random, four draws of the loss each, from 8 s after the first packets or from
    // the first packets on. Only loss in the estimator's first seconds can take str0m's
    // estimate down to the rate acknowledged, which is why the connection is padded then
    // (`PAD_AT_START`) and not later.
    let mut paused_from_start = Vec::new();
    for onset in [8.0, 0.0] {
        for loss in [0.02, 0.05, 0.08] {
            for seed in 0..4 {
                let mut bed = Bed::new();
                bed.seed(seed);
                let p = bed.join("r", "pub", true);
                let v = bed.join("r", "viewer", false);
                let idp = bed.id(p);
                let idv = bed.id(v);
                assert!(bed.run_until(secs(5.0), |bed| {
                    bed.clients[v].video_from(&idp).len() > 30
                }));
                bed.run(secs(onset));
                bed.loss_to.insert(v, loss);
                let from = bed.now;
                let mut lowest = u64::MAX;
                for _ in 0..100 {
                    bed.run(secs(0.1));
                    lowest = lowest.min(bed.engine.estimate_of(&idv).unwrap_or(0));
                }
                let paused = bed.clients[v].messages.iter().any(|m| {
                    matches!(m, ServerMessage::StreamState { state: StreamStateKind::Paused, reason: Some(r), .. }
                        if r == "bandwidth")
                });
                let what = format!("onset {onset} s, loss {loss}, draw {seed}");
                if onset > 0.0 {
                    let gap = bed.clients[v]
                        .video_from(&idp)
                        .iter()
                        .filter(|r| r.at >= from)
                        .map(|r| r.at)
                        .collect::<Vec<_>>()
                        .windows(2)
                        .map(|w| w[1] - w[0])
                        .max()
                        .unwrap_or(secs(10.0));
                    assert!(
                        !paused,
                        "{what}: paused for bandwidth (lowest estimate {lowest})"
                    );
                    assert!(gap < secs(0.5), "{what}: video stopped for {gap:?}");
                    assert!(lowest > 700_000, "{what}: the estimate fell to {lowest}");
                } else if paused {
                    paused_from_start.push(what);
                }
            }
        }
    }
    // From the first packets on, one draw (2 %) is sometimes paused all the same, as it was
    // when every connection was padded all the time; with no padding at all, six of the twelve
    // were.
    assert!(
        paused_from_start.len() <= 1,
        "paused for bandwidth: {paused_from_start:?}"
    );
}

/// A simulcast publisher of `codec` and a subscriber who reaches the top layer, then is shown
/// the video at the sizes of each `(width, height, layer)` in turn and must get that layer.
/// Each encoding numbers its pictures (VP9 picture ids, AV1 descriptor frames) on its own; the
/// subscriber must see them continue across every switch, each switch on a keyframe, in its
/// codec, with no gap and no malformed drop. Returns the number of switches.
fn switches_through(codec: Codec, sizes: [(u32, u32, u8); 3]) -> usize {
    let mut bed = Bed::new();
    bed.next_codecs = vec![codec];
    bed.next_simulcast = true;
    let a = bed.join("r", "ann", true);
    bed.next_simulcast = false;
    let b = bed.join("r", "bob", false);
    let (ida, idb) = (bed.id(a), bed.id(b));
    let track = format!("{ida}-{}", bed.clients[a].video_mid.unwrap());
    assert!(
        bed.run_until(secs(10.0), |bed| layer_now(bed.clients[b].video_from(&ida))
            == Some(2)),
        "bob did not reach the top layer; stats {:?}",
        bed.engine.stats()
    );
    for (w, h, layer) in sizes {
        bed.engine.handle_signal(
            bed.now,
            &idb,
            ClientSignal::TrackSettings {
                track_id: track.clone(),
                visible: true,
                width: w,
                height: h,
                pinned: false,
            },
        );
        bed.pump_signals();
        assert!(
            bed.run_until(secs(3.0), |bed| layer_now(bed.clients[b].video_from(&ida))
                == Some(layer)),
            "bob did not get layer {layer} at {w}x{h}"
        );
    }
    bed.run(secs(0.5));
    let video = bed.clients[b].video_from(&ida);
    let pt = video.last().unwrap().pt;
    assert_eq!(
        bed.clients[b].codec_of(pt).map(|c| c.spec().codec),
        Some(codec)
    );
    assert!(
        video.iter().all(|p| p.pid.is_some()),
        "every packet keeps its picture id (VP9) or descriptor (AV1)"
    );
    assert_eq!(
        bed.engine.stats().dropped[DropReason::Malformed.index()],
        0,
        "every packet read"
    );
    assert_clean_switches("bob", video, true)
}

#[test]
fn vp9_simulcast_switches_on_keyframes_with_continuous_picture_ids() {
    let switches = switches_through(Codec::Vp9, [(320, 180, 0), (600, 340, 1), (1920, 1080, 2)]);
    assert!(switches >= 3, "{switches} switches");
}

#[test]
fn av1_simulcast_switches_on_keyframes_with_continuous_frame_numbers() {
    // Each encoding numbers its frames (7919 apart in the test publisher) and its templates (20
    // apart) on its own: the server places each packet by its own encoding's structure, and
    // renumbers the descriptor's frames at every switch, in both directions.
    let switches = switches_through(Codec::Av1, [(320, 180, 0), (1920, 1080, 2), (600, 340, 1)]);
    assert!(switches >= 3, "{switches} switches");
}

#[test]
fn a_lower_load_factor_sheds_layers_and_raising_it_brings_them_back() {
    let (mut bed, a, b, c) = simulcast_room();
    let ida = bed.id(a);
    assert!(bed.run_until(secs(10.0), |bed| [b, c]
        .iter()
        .all(|s| layer_now(bed.clients[*s].video_from(&ida)) >= Some(1))));
    bed.run(secs(1.0));
    let layers: Vec<Option<u8>> = [b, c]
        .iter()
        .map(|s| layer_now(bed.clients[*s].video_from(&ida)))
        .collect();
    let packets = |bed: &Bed, s: usize, since: Instant| {
        bed.clients[s]
            .video_from(&ida)
            .iter()
            .filter(|p| p.at >= since)
            .count()
    };

    // The worker falls behind: every budget shrinks, the subscribers step down together and
    // fewer packets are forwarded, with no holes.
    let before = bed.now;
    bed.run(secs(2.0));
    let full: Vec<usize> = [b, c].iter().map(|s| packets(&bed, *s, before)).collect();
    let now = bed.now;
    bed.engine.set_load_factor(now, 0.2);
    assert_eq!(bed.engine.load_factor(), 0.2);
    assert!(bed.run_until(secs(2.0), |bed| [b, c]
        .iter()
        .all(|s| layer_now(bed.clients[*s].video_from(&ida)) == Some(0))));
    let shed = bed.now;
    bed.run(secs(2.0));
    for (i, s) in [b, c].into_iter().enumerate() {
        let now = packets(&bed, s, shed);
        assert!(
            now * 2 < full[i],
            "subscriber {s}: {now} video packets in 2 s at 0.2, {} before",
            full[i]
        );
    }

    // Keeping up again: the layers come back.
    let now = bed.now;
    bed.engine.set_load_factor(now, 1.0);
    assert!(bed.run_until(secs(10.0), |bed| [b, c]
        .iter()
        .zip(&layers)
        .all(|(s, l)| layer_now(bed.clients[*s].video_from(&ida)) >= *l)));
    bed.run(secs(1.0));
    for s in [b, c] {
        assert_clean_switches("subscriber", bed.clients[s].video_from(&ida), true);
    }
}

/// A subscriber whose link cannot carry all it would like (three simulcast cameras over
/// 1.2 Mbit/s) keeps asking the estimator to probe for more. The rate it asks for comes from the
/// publishers' measured bitrates, which move by a few percent all the time; each rise above the
/// estimate starts a probe, so the estimator is told of a new rate only when it moved by more
/// than the dead band. Without the dead band it was told 21 times in these 20 s.
#[test]
fn a_subscriber_short_of_bandwidth_is_not_probed_at_every_move_of_the_rates() {
    let mut bed = Bed::new();
    bed.next_simulcast = true;
    for i in 0..3 {
        bed.join("r", &format!("p{i}"), true);
    }
    bed.next_simulcast = false;
    let s = bed.join("r", "sub", false);
    bed.links.insert(s, Link::new(1_200_000));
    bed.run(secs(10.0));
    let id = bed.id(s);
    let mut told = Vec::new();
    for _ in 0..200 {
        bed.run(secs(0.1));
        let desired = bed.engine.desired_of(&id).expect("a rate to probe for");
        if told.last() != Some(&desired) {
            told.push(desired);
        }
    }
    let estimate = bed.engine.estimate_of(&id).expect("an estimate");
    eprintln!("estimate {estimate}; rates to probe for, in turn: {told:?}");
    assert!(
        told.iter().all(|d| *d > estimate),
        "the subscriber would like more than its link carries: {told:?} against {estimate}"
    );
    assert!(
        told.len() <= 2,
        "the rate to probe for followed every move of the measured rates: {told:?}"
    );
}

/// In its first seconds a subscriber of two simulcast cameras is padded up to the next layer
/// (and probed) while its estimate climbs from its starting guess:
/// the pacer asks for a deadline for each padding packet. Such a deadline drives only the
/// connection's pacer, not a full timeout that reads every stream; the connection's other
/// deadlines (reports, feedback) still come as full timeouts. Without that, these seconds had
/// 170 full timeouts and 60 releases a second, for the same packets on the wire.
#[test]
fn padding_leaves_without_a_full_timeout_per_packet() {
    let mut bed = Bed::new();
    bed.next_simulcast = true;
    bed.join("r", "ann", true);
    bed.join("r", "cat", true);
    bed.next_simulcast = false;
    let s = bed.join("r", "bob", false);
    bed.run(secs(1.0));
    let before = bed.engine.stats().clone();
    let (padding_before, _) = rtx_and_rtp_bytes(&bed, s);
    bed.run(secs(3.0));
    let after = bed.engine.stats();
    let (padding, _) = rtx_and_rtp_bytes(&bed, s);
    let timeouts = after.rtc_timeouts - before.rtc_timeouts;
    let releases = after.rtc_releases - before.rtc_releases;
    let padding = padding - padding_before;
    eprintln!("{timeouts} full timeouts, {releases} releases, {padding} bytes of padding in 3 s");
    assert!(
        padding > 300_000,
        "the connection was padded: {padding} bytes"
    );
    assert!(
        timeouts * 2 < releases,
        "{timeouts} full timeouts against {releases} releases"
    );
}
