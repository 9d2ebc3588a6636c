//! One room over two engines (two workers of one server, or two nodes joined by a relay), on
//! the virtual network: the publisher's engine hands each packet over once, and each engine
//! forwards to its own subscribers.

mod virtual_net;

use std::collections::BTreeSet;

use sfu::core::ShardMessage;
use signal::protocol::ServerMessage;
use signal::ClientSignal;
use virtual_net::{assert_clean_switches, assert_gap_free, layer_now, secs, Bed, Received};

/// A bed with two engines sharing room `r`; `wire`: their messages cross as bytes, as between
/// two nodes over a relay.
fn two_engines(wire: bool) -> Bed {
    let mut bed = Bed::new();
    bed.over_wire = wire;
    let second = bed.add_engine();
    bed.link("r", 0, second);
    bed
}

/// The publisher's frames a subscriber received (complete or not) between `from` and `to`.
fn frames(packets: &[Received], from: u32, to: u32) -> BTreeSet<u32> {
    packets
        .iter()
        .map(|p| p.frame)
        .filter(|f| (from..to).contains(f))
        .collect()
}

fn track_settings(bed: &mut Bed, viewer: usize, track: &str, width: u32, height: u32) {
    let id = bed.id(viewer);
    let now = bed.now;
    let e = bed.clients[viewer].engine;
    bed.engine_at(e).handle_signal(
        now,
        &id,
        ClientSignal::TrackSettings {
            track_id: track.to_owned(),
            visible: true,
            width,
            height,
            pinned: false,
        },
    );
    bed.exchange_shard_messages();
    bed.pump_signals();
}

fn subscribers_on_two_engines_receive_the_same_gap_free_stream_on(wire: bool) {
    let mut bed = two_engines(wire);
    bed.next_simulcast = true;
    let pubr = bed.join("r", "ann", true);
    bed.next_simulcast = false;
    let here = bed.join("r", "bob", false);
    bed.next_engine = 1;
    let there = [bed.join("r", "cat", false), bed.join("r", "dan", false)];
    let ida = bed.id(pubr);
    let viewers = [here, there[0], there[1]];
    assert!(
        bed.run_until(secs(10.0), |bed| viewers
            .iter()
            .all(|v| layer_now(bed.clients[*v].video_from(&ida)) == Some(2))),
        "every viewer reaches the top layer"
    );
    let before = bed.engine.stats().relayed_out;
    let rtp_before = bed.engine.stats().rtp_in;
    bed.run(secs(3.0));

    for v in viewers {
        let name = &bed.clients[v].name;
        assert_clean_switches(name, bed.clients[v].video_from(&ida), true);
        assert_gap_free(name, bed.clients[v].audio_from(&ida));
        bed.assert_sent_gap_free(v);
    }
    // The same frames, to the viewer on the publisher's engine and to those on the other.
    let last = bed.clients[here].video_from(&ida).last().unwrap().frame;
    let window = (last - 40, last - 2);
    let reference = frames(bed.clients[here].video_from(&ida), window.0, window.1);
    assert_eq!(reference.len(), 38, "every frame of the window reached bob");
    for v in there {
        assert_eq!(
            frames(bed.clients[v].video_from(&ida), window.0, window.1),
            reference,
            "{} got the frames bob got",
            bed.clients[v].name
        );
    }

    // Each packet crossed once, whatever the number of viewers over there.
    let relayed = bed.engine.stats().relayed_out - before;
    let arrived = bed.engine.stats().rtp_in - rtp_before;
    eprintln!("3 s: {arrived} packets from the publisher, {relayed} handed over");
    assert!(relayed > 0 && relayed <= arrived, "{relayed} of {arrived}");
    assert_eq!(
        bed.peers[0].stats().relayed_in,
        bed.engine.stats().relayed_out
    );
    // Both engines list the whole room.
    for e in [0, 1] {
        let mut ids: Vec<String> = bed
            .engine_at(e)
            .participants_of("r")
            .into_iter()
            .map(|p| p.id)
            .collect();
        ids.sort();
        assert_eq!(ids, ["ann-id", "bob-id", "cat-id", "dan-id"], "engine {e}");
    }
    // The viewers over there heard of the publisher and of each other like anyone.
    let cat = &bed.clients[there[0]].messages;
    assert!(cat.iter().any(|m| matches!(m,
        ServerMessage::Joined { participants, .. } if participants.iter().any(|p| p.id == ida))));
    assert!(cat.iter().any(|m| matches!(m,
        ServerMessage::ParticipantJoined { participant } if participant.id == "dan-id")));
    // And of the connection quality of those on the publisher's engine.
    assert!(cat.iter().any(|m| matches!(m,
        ServerMessage::ConnectionQuality { participant_id, .. } if participant_id == "bob-id")));
}

fn a_subscriber_on_another_engine_switches_on_keyframes_and_keeps_its_layer_on_on(wire: bool) {
    let mut bed = two_engines(wire);
    bed.next_simulcast = true;
    let pubr = bed.join("r", "ann", true);
    bed.next_simulcast = false;
    // The only viewer is on the other engine.
    bed.next_engine = 1;
    let v = bed.join("r", "bob", false);
    let ida = bed.id(pubr);
    let track = format!("{ida}-{}", bed.clients[pubr].video_mid.unwrap());
    assert!(
        bed.run_until(secs(10.0), |bed| layer_now(bed.clients[v].video_from(&ida))
            == Some(2)),
        "the viewer reaches the top layer"
    );
    // Its needs reach the publisher: the top layer stays on.
    bed.run(secs(3.0));
    assert!(bed.clients[pubr]
        .active_layers
        .as_ref()
        .is_none_or(|l| l.iter().any(|r| r == "f")));

    // It shows the video small: it steps down on a keyframe, and after the pause delay the
    // publisher is asked for the lowest layer only.
    track_settings(&mut bed, v, &track, 320, 180);
    assert!(
        bed.run_until(secs(5.0), |bed| bed.clients[pubr].active_layers
            == Some(vec!["q".to_string()])),
        "the publisher pauses what nobody needs: {:?}",
        bed.clients[pubr].active_layers
    );
    assert_eq!(layer_now(bed.clients[v].video_from(&ida)), Some(0));

    // Large again: the top layer comes back on at the publisher and the viewer reaches it.
    track_settings(&mut bed, v, &track, 1280, 720);
    assert!(
        bed.run_until(secs(4.0), |bed| layer_now(bed.clients[v].video_from(&ida))
            == Some(2)),
        "back to the top layer"
    );
    bed.run(secs(0.5));
    assert_clean_switches("bob", bed.clients[v].video_from(&ida), true);
    bed.assert_sent_gap_free(v);
    // The keyframes it switched on were asked of the publisher by its engine, for the other.
    assert!(bed.engine.stats().keyframe_requests > 0);
    assert!(bed.shard_messages[&(1, 0)] > 0);
}

fn leaves_and_unlinks_reach_the_other_engine_on(wire: bool) {
    let mut bed = two_engines(wire);
    let here = bed.join("r", "ann", true);
    bed.next_engine = 1;
    let pubr = bed.join("r", "bob", true);
    let viewer = bed.join("r", "cat", false);
    let idb = bed.id(pubr);
    let ok = bed.run_until(secs(5.0), |bed| {
        !bed.clients[here].video_from(&idb).is_empty()
            && !bed.clients[viewer].video_from("ann-id").is_empty()
    });
    assert!(
        ok,
        "ann got {} of bob's, cat {} of ann's",
        bed.clients[here].video_from(&idb).len(),
        bed.clients[viewer].video_from("ann-id").len()
    );

    // The publisher on the other engine leaves: ann hears of its tracks and of it.
    let now = bed.now;
    bed.peers[0].leave(now, &idb, "left");
    bed.exchange_shard_messages();
    bed.pump_signals();
    let msgs = &bed.clients[here].messages;
    let unpublished = msgs
        .iter()
        .filter(|m| matches!(m, ServerMessage::TrackUnpublished { participant_id, .. } if *participant_id == idb))
        .count();
    assert_eq!(unpublished, 2, "both of bob's tracks are gone for ann");
    assert!(msgs.iter().any(|m| matches!(m,
        ServerMessage::ParticipantLeft { participant_id, reason } if *participant_id == idb && reason == "left")));
    let received = bed.clients[here].video_from(&idb).len();
    bed.run(secs(1.0));
    assert_eq!(bed.clients[here].video_from(&idb).len(), received);

    // The engines stop sharing the room: each side's participants leave the other's view, and
    // nothing more is handed over.
    bed.unlink("r", 0, 1);
    bed.pump_signals();
    assert!(bed.clients[here].messages.iter().any(|m| matches!(m,
        ServerMessage::ParticipantLeft { participant_id, .. } if participant_id == "cat-id")));
    assert!(bed.clients[viewer].messages.iter().any(|m| matches!(m,
        ServerMessage::ParticipantLeft { participant_id, .. } if participant_id == "ann-id")));
    let relayed = bed.engine.stats().relayed_out;
    bed.run(secs(1.0));
    assert_eq!(bed.engine.stats().relayed_out, relayed);
    assert_eq!(bed.peers[0].participants_of("r").len(), 1);
    // A message the other engine sent before it heard of the unlink changes nothing.
    let now = bed.now;
    let late = ShardMessage::Joined {
        room: "r".into(),
        participant: bed.peers[0].participant("cat-id").unwrap(),
    };
    bed.engine.handle_shard(now, 1, late);
    assert_eq!(bed.engine.participants_of("r").len(), 1);
}

fn a_participant_joining_an_engine_later_hears_of_the_whole_room_on(wire: bool) {
    let mut bed = two_engines(wire);
    let pubr = bed.join("r", "ann", true);
    bed.next_engine = 1;
    let first = bed.join("r", "bob", false);
    assert!(bed.run_until(secs(5.0), |bed| !bed.clients[first]
        .video_from("ann-id")
        .is_empty()));
    // The last participant of engine 1 leaves: nobody there subscribes, so engine 0 stops
    // handing packets over.
    let now = bed.now;
    bed.peers[0].leave(now, "bob-id", "left");
    bed.exchange_shard_messages();
    bed.run(secs(0.5));
    let relayed = bed.engine.stats().relayed_out;
    bed.run(secs(1.0));
    assert_eq!(
        bed.engine.stats().relayed_out,
        relayed,
        "nothing is handed over"
    );
    // Someone joins engine 1 again: it sees ann and her tracks, and receives them.
    let again = bed.join("r", "cat", false);
    assert!(bed.clients[again].messages.iter().any(|m| matches!(m,
        ServerMessage::Joined { participants, .. }
            if participants.iter().any(|p| p.id == "ann-id" && p.tracks.len() == 2))));
    assert!(bed.run_until(secs(5.0), |bed| !bed.clients[again]
        .video_from("ann-id")
        .is_empty()));
    let _ = pubr;
}

fn data_messages_reach_participants_on_every_engine_on(wire: bool) {
    let mut bed = two_engines(wire);
    bed.next_data = true;
    let a = bed.join("r", "ann", false);
    bed.next_engine = 1;
    let b = bed.join("r", "bob", false);
    let c = bed.join("r", "cat", false);
    assert!(bed.run_until(secs(5.0), |bed| [a, b, c]
        .iter()
        .all(|i| bed.clients[*i].channels.contains_key("reliable"))));
    bed.run(secs(0.2));
    bed.clients[a].send_data("reliable", false, br#"{"payload":{"text":"hi"}}"#);
    bed.clients[b].send_data(
        "reliable",
        false,
        br#"{"to":["ann-id"],"payload":{"text":"only ann"}}"#,
    );
    bed.run(secs(0.5));
    let got = |bed: &Bed, i: usize| bed.clients[i].data_json();
    assert_eq!(
        got(&bed, b),
        [serde_json::json!({"from": "ann-id", "payload": {"text": "hi"}})]
    );
    assert_eq!(got(&bed, c), got(&bed, b));
    assert_eq!(
        got(&bed, a),
        [serde_json::json!({"from": "bob-id", "direct": true, "payload": {"text": "only ann"}})]
    );
}

fn a_viewer_already_there_gets_a_track_published_on_another_engine_at_once_on(wire: bool) {
    let mut bed = two_engines(wire);
    let viewer = bed.join("r", "ann", false);
    // A camera joins the other engine afterwards: the relay starts mid-stream, and the first
    // keyframe the viewer can use is asked of the publisher across engines.
    bed.next_engine = 1;
    bed.next_simulcast = true;
    let pubr = bed.join("r", "bob", true);
    let idb = bed.id(pubr);
    let published = bed.now;
    assert!(
        bed.run_until(secs(1.0), |bed| !bed.clients[viewer]
            .video_from(&idb)
            .is_empty()),
        "video within a second"
    );
    eprintln!("first video after {:?}", bed.now - published);
    // And it keeps flowing.
    let from = bed.clients[viewer].video_from(&idb).last().unwrap().frame;
    bed.run(secs(3.0));
    let got = frames(bed.clients[viewer].video_from(&idb), from + 1, from + 41);
    assert_eq!(got.len(), 40, "every frame of two seconds");
    assert_clean_switches("ann", bed.clients[viewer].video_from(&idb), true);
}

fn a_participant_reconnecting_on_one_engine_is_shown_so_on_the_other_on(wire: bool) {
    let mut bed = two_engines(wire);
    let a = bed.join("r", "ann", false);
    bed.next_engine = 1;
    let _b = bed.join("r", "bob", false);
    bed.run(secs(0.5));
    let now = bed.now;
    // Bob's signalling dropped: his worker holds him for the resume grace period.
    bed.peers[0].hold(now, "bob-id", Some(now + secs(20.0)));
    bed.exchange_shard_messages();
    bed.pump_signals();
    bed.peers[0].hold(now, "bob-id", None);
    bed.exchange_shard_messages();
    bed.pump_signals();
    let seen: Vec<&ServerMessage> = bed.clients[a]
        .messages
        .iter()
        .filter(|m| {
            matches!(m, ServerMessage::ParticipantReconnecting { participant_id }
                | ServerMessage::ParticipantResumed { participant_id } if participant_id == "bob-id")
        })
        .collect();
    assert!(
        matches!(
            seen[..],
            [
                ServerMessage::ParticipantReconnecting { .. },
                ServerMessage::ParticipantResumed { .. }
            ]
        ),
        "{seen:?}"
    );
}

// Each test twice: between two workers of a process, and between two nodes, every message
// encoded and decoded as the relay between nodes carries it.

#[test]
fn subscribers_on_two_engines_receive_the_same_gap_free_stream() {
    subscribers_on_two_engines_receive_the_same_gap_free_stream_on(false);
}

#[test]
fn subscribers_on_two_engines_receive_the_same_gap_free_stream_over_a_relay() {
    subscribers_on_two_engines_receive_the_same_gap_free_stream_on(true);
}

#[test]
fn a_subscriber_on_another_engine_switches_on_keyframes_and_keeps_its_layer_on() {
    a_subscriber_on_another_engine_switches_on_keyframes_and_keeps_its_layer_on_on(false);
}

#[test]
fn a_subscriber_on_another_engine_switches_on_keyframes_and_keeps_its_layer_on_over_a_relay() {
    a_subscriber_on_another_engine_switches_on_keyframes_and_keeps_its_layer_on_on(true);
}

#[test]
fn leaves_and_unlinks_reach_the_other_engine() {
    leaves_and_unlinks_reach_the_other_engine_on(false);
}

#[test]
fn leaves_and_unlinks_reach_the_other_engine_over_a_relay() {
    leaves_and_unlinks_reach_the_other_engine_on(true);
}

#[test]
fn a_participant_joining_an_engine_later_hears_of_the_whole_room() {
    a_participant_joining_an_engine_later_hears_of_the_whole_room_on(false);
}

#[test]
fn a_participant_joining_an_engine_later_hears_of_the_whole_room_over_a_relay() {
    a_participant_joining_an_engine_later_hears_of_the_whole_room_on(true);
}

#[test]
fn data_messages_reach_participants_on_every_engine() {
    data_messages_reach_participants_on_every_engine_on(false);
}

#[test]
fn data_messages_reach_participants_on_every_engine_over_a_relay() {
    data_messages_reach_participants_on_every_engine_on(true);
}

#[test]
fn a_viewer_already_there_gets_a_track_published_on_another_engine_at_once() {
    a_viewer_already_there_gets_a_track_published_on_another_engine_at_once_on(false);
}

#[test]
fn a_viewer_already_there_gets_a_track_published_on_another_engine_at_once_over_a_relay() {
    a_viewer_already_there_gets_a_track_published_on_another_engine_at_once_on(true);
}

#[test]
fn a_participant_reconnecting_on_one_engine_is_shown_so_on_the_other() {
    a_participant_reconnecting_on_one_engine_is_shown_so_on_the_other_on(false);
}

#[test]
fn a_participant_reconnecting_on_one_engine_is_shown_so_on_the_other_over_a_relay() {
    a_participant_reconnecting_on_one_engine_is_shown_so_on_the_other_on(true);
}

/// Sequence numbers missing in what a client received (in sequence order, first arrivals).
fn holes(packets: &[Received]) -> usize {
    virtual_net::by_seq(packets)
        .windows(2)
        .map(|w| (w[1].0 - w[0].0 - 1) as usize)
        .sum()
}

/// A room over two engines whose media crosses a wire losing `loss` of the frames; returns the
/// bed, the publisher's id, the viewer on its engine and the two on the other.
fn over_a_lossy_relay(loss: f64, repair: bool) -> (Bed, String, usize, [usize; 2]) {
    let mut bed = two_engines(true);
    bed.relay_loss = loss;
    bed.relay_repair = repair;
    bed.next_simulcast = true;
    let pubr = bed.join("r", "ann", true);
    bed.next_simulcast = false;
    let here = bed.join("r", "bob", false);
    bed.next_engine = 1;
    let there = [bed.join("r", "cat", false), bed.join("r", "dan", false)];
    let ida = bed.id(pubr);
    assert!(
        bed.run_until(secs(10.0), |bed| [here, there[0], there[1]]
            .iter()
            .all(|v| layer_now(bed.clients[*v].video_from(&ida)) == Some(2))),
        "every viewer reaches the top layer"
    );
    bed.run(secs(3.0));
    (bed, ida, here, there)
}

#[test]
fn media_lost_between_nodes_is_asked_for_again_and_reaches_every_viewer() {
    let (bed, ida, here, there) = over_a_lossy_relay(0.2, true);
    eprintln!(
        "relay: {} frames lost, {} sent again",
        bed.relay_lost, bed.relay_resent
    );
    assert!(
        bed.relay_lost > 10,
        "the wire lost frames: {}",
        bed.relay_lost
    );
    assert!(
        bed.relay_resent >= bed.relay_lost / 2,
        "and they were asked for again"
    );
    let last = bed.clients[here].video_from(&ida).last().unwrap().frame;
    let window = (last - 40, last - 2);
    let reference = frames(bed.clients[here].video_from(&ida), window.0, window.1);
    assert_eq!(reference.len(), 38, "every frame of the window reached bob");
    for v in there {
        let name = &bed.clients[v].name;
        // Repaired packets arrive late, out of order, but nothing is missing.
        assert_clean_switches(name, bed.clients[v].video_from(&ida), true);
        assert_eq!(holes(bed.clients[v].audio_from(&ida)), 0, "{name}: audio");
        bed.assert_sent_gap_free(v);
        assert_eq!(
            frames(bed.clients[v].video_from(&ida), window.0, window.1),
            reference,
            "{name} got the frames bob got"
        );
    }
}

#[test]
fn without_repair_the_same_losses_leave_holes() {
    // The control for the test above: the same wire, NACKs unanswered.
    let (bed, ida, _, there) = over_a_lossy_relay(0.2, false);
    assert!(bed.relay_lost > 10 && bed.relay_resent == 0);
    let missing: usize = there
        .iter()
        .map(|&v| holes(bed.clients[v].video_from(&ida)) + holes(bed.clients[v].audio_from(&ida)))
        .sum();
    assert!(missing > 0, "lost frames show as missing packets");
}
