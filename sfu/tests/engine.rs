//! The engine against str0m clients on a virtual clock and an in-memory network.

mod virtual_net;

use signal::protocol::{ErrorCode, ServerMessage};
use signal::ClientSignal;
use virtual_net::{all_receive_all, assert_gap_free, rtp_sent, secs, set_metering, Bed, Scenario};

#[test]
fn each_publisher_reaches_every_other_participant_and_not_itself() {
    let mut bed = Bed::new();
    for name in ["ann", "bob", "cat"] {
        bed.join("r", name, true);
    }
    assert!(
        bed.run_until(secs(5.0), |b| all_receive_all(b, 3)),
        "media did not flow to everyone"
    );
    for i in 0..3 {
        let me = bed.id(i);
        assert!(
            bed.clients[i].video_from(&me).is_empty(),
            "{me} got its own video"
        );
        assert!(
            bed.clients[i].audio_from(&me).is_empty(),
            "{me} got its own audio"
        );
        for j in (0..3).filter(|j| *j != i) {
            let from = bed.id(j);
            let v = bed.clients[i].video_from(&from);
            assert!(
                v[0].keyframe,
                "{me}: video from {from} starts on a keyframe"
            );
            assert_gap_free(&format!("{me} <- {from} video"), v);
            assert_gap_free(
                &format!("{me} <- {from} audio"),
                bed.clients[i].audio_from(&from),
            );
        }
    }
    assert_eq!(bed.engine.participant_count(), 3);
    assert_eq!(bed.engine.room_count(), 1);
}

#[test]
fn rooms_are_separate() {
    let mut bed = Bed::new();
    let a = bed.join("one", "ann", true);
    let b = bed.join("two", "bob", true);
    let c = bed.join("one", "cat", true);
    bed.run(secs(3.0));
    let (ida, idb, idc) = (bed.id(a), bed.id(b), bed.id(c));
    assert!(!bed.clients[c].video_from(&ida).is_empty());
    assert!(bed.clients[c].video_from(&idb).is_empty());
    assert!(bed.clients[b].video_from(&ida).is_empty());
    assert!(bed.clients[b].video_from(&idc).is_empty());
    assert_eq!(bed.engine.room_count(), 2);
    let ServerMessage::Joined { participants, .. } = &bed.clients[b].messages[0] else {
        panic!("first message is joined")
    };
    assert!(participants.is_empty(), "bob is alone in room two");
}

#[test]
fn late_subscriber_gets_a_gap_free_stream_starting_on_a_keyframe() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    bed.run(secs(2.3)); // ann's stream is well under way; frame 100 (a keyframe) is later
    let b = bed.join("r", "bob", false);
    let ida = bed.id(a);
    assert!(bed.run_until(secs(5.0), |bed| bed.clients[b].video_from(&ida).len() > 60));
    let video = bed.clients[b].video_from(&ida);
    assert!(
        video[0].keyframe,
        "first forwarded video packet is a keyframe"
    );
    assert_gap_free("late video", video);
    assert_gap_free("late audio", bed.clients[b].audio_from(&ida));
    // The keyframe came on request (PLI), well before the periodic one at 5 s.
    assert!(bed.clients[a].keyframe_requests >= 1);
    assert!(video[0].at - bed.start < secs(4.0));
    // The joined message listed ann and her tracks.
    let ServerMessage::Joined { participants, .. } = &bed.clients[b].messages[0] else {
        panic!("first message is joined")
    };
    assert_eq!(participants.len(), 1);
    assert_eq!(participants[0].tracks.len(), 2);
}

#[test]
fn a_second_session_of_an_identity_takes_over_from_the_first() {
    let mut bed = Bed::new();
    let ann = bed.join_with("r", "ann", true, |s| s.identity = Some("ann".into()));
    let bob = bed.join("r", "bob", true);
    // Without an identity nothing is taken over.
    let guest = bed.join("r", "guest", false);
    let guest2 = bed.join("r", "guest2", false);
    assert!(bed.run_until(secs(5.0), |b| {
        !b.clients[bob].video_from(&b.id(ann)).is_empty()
    }));
    // Ann opens a second tab: the same identity joins again.
    let ann2 = bed.join_with("r", "ann2", true, |s| s.identity = Some("ann".into()));
    let old = bed.id(ann);
    assert!(matches!(
        bed.clients[ann].messages.last(),
        Some(ServerMessage::Left { reason }) if reason == "duplicate_identity"
    ));
    assert!(bed.clients[bob].messages.iter().any(|m| matches!(m,
        ServerMessage::ParticipantLeft { participant_id, reason }
            if *participant_id == old && reason == "duplicate_identity")));
    assert_eq!(bed.engine.participant_count(), 4);
    let new = bed.id(ann2);
    assert!(bed.run_until(secs(5.0), |b| {
        !b.clients[bob].video_from(&new).is_empty()
            && !b.clients[ann2].video_from(&b.id(bob)).is_empty()
    }));
    for g in [guest, guest2] {
        assert!(!bed.clients[g]
            .messages
            .iter()
            .any(|m| matches!(m, ServerMessage::Left { .. })));
    }
}

#[test]
fn explicit_leave_tells_the_others_and_frees_everything() {
    let mut bed = Bed::new();
    for name in ["ann", "bob", "cat"] {
        bed.join("r", name, true);
    }
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 3)));
    let cat = bed.id(2);
    bed.engine.leave(bed.now, &cat, "left");
    bed.pump_signals();
    assert!(matches!(
        bed.clients[2].messages.last(),
        Some(ServerMessage::Left { reason }) if reason == "left"
    ));
    for i in 0..2 {
        let m = &bed.clients[i].messages;
        assert!(m.iter().any(|m| matches!(m,
            ServerMessage::ParticipantLeft { participant_id, reason }
                if *participant_id == cat && reason == "left")));
        let unpublished = m
            .iter()
            .filter(|m| matches!(m, ServerMessage::TrackUnpublished { participant_id, .. } if *participant_id == cat))
            .count();
        assert_eq!(unpublished, 2, "both of cat's tracks are unpublished");
    }
    assert_eq!(bed.engine.participant_count(), 2);
    // The others keep receiving each other.
    let (a, b) = (bed.id(0), bed.id(1));
    let before = (
        bed.clients[0].video_from(&b).len(),
        bed.clients[1].video_from(&a).len(),
    );
    bed.run(secs(2.0));
    assert!(bed.clients[0].video_from(&b).len() > before.0 + 20);
    assert!(bed.clients[1].video_from(&a).len() > before.1 + 20);
    assert_gap_free("ann <- bob after cat left", bed.clients[0].video_from(&b));
    // Leaving twice is harmless; the room goes when the last one leaves.
    bed.engine.leave(bed.now, &cat, "left");
    bed.engine.leave(bed.now, &a, "left");
    bed.engine.leave(bed.now, &b, "disconnected");
    bed.pump_signals();
    assert_eq!(bed.engine.participant_count(), 0);
    assert_eq!(bed.engine.room_count(), 0);
}

#[test]
fn a_silent_participant_is_removed_by_timeout() {
    let mut bed = Bed::new();
    for name in ["ann", "bob", "cat"] {
        bed.join("r", name, true);
    }
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 3)));
    let cat = bed.id(2);
    bed.clients[2].offline = true; // the tab was killed without a word
    let gone = bed.run_until(secs(18.0), |b| b.engine.participant_count() == 2);
    assert!(gone, "cat was not removed");
    let m = &bed.clients[0].messages;
    assert!(m.iter().any(|m| matches!(m,
        ServerMessage::ParticipantLeft { participant_id, reason }
            if *participant_id == cat && reason == "timeout")));
}

#[test]
fn a_participant_that_never_connects_is_removed() {
    let mut bed = Bed::with_config(|c| c.connect_timeout = secs(3.0));
    bed.join("r", "ann", true);
    bed.clients[0].offline = true;
    assert!(bed.run_until(secs(6.0), |b| b.engine.participant_count() == 0));
    assert_eq!(bed.engine.room_count(), 0);
}

/// ICE-lite drops candidate pairs that get no check for 15 s and then reports the connection
/// disconnected; before the connection was ever up, that is not the end: the connect deadline
/// is. (22 s here rather than the default 30 s: the virtual client gives its DTLS handshake 30 s.)
#[test]
fn a_participant_whose_checks_never_arrive_is_removed_at_the_connect_deadline() {
    let mut bed = Bed::with_config(|c| c.connect_timeout = secs(22.0));
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    let idb = bed.id(b);
    bed.clients[b].offline = true; // its UDP is blocked from the start
    let joined = bed.now;
    bed.run(secs(19.0));
    assert_eq!(bed.engine.participant_count(), 2, "bob removed before 22 s");
    assert!(bed.run_until(secs(5.0), |b| b.engine.participant_count() == 1));
    let after = bed.now - joined;
    assert!(
        after >= secs(22.0) && after <= secs(22.5),
        "removed after {after:?}"
    );
    assert!(bed.clients[a].messages.iter().any(|m| matches!(m,
        ServerMessage::ParticipantLeft { participant_id, reason }
            if *participant_id == idb && reason == "timeout")));
}

/// A client whose first path never carried a check and that restarts ICE from another network
/// 20 s after joining connects, and stays.
#[test]
fn a_participant_that_connects_late_but_within_the_connect_deadline_stays() {
    let mut bed = Bed::new();
    bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    bed.clients[b].offline = true;
    bed.run(secs(20.0));
    bed.clients[b].offline = false;
    bed.move_client(b, "10.0.2.2:7000".parse().unwrap());
    assert!(bed.run_until(secs(8.0), |b| all_receive_all(b, 2)));
    bed.run(secs(15.0));
    assert_eq!(bed.engine.participant_count(), 2);
    assert!(all_receive_all(&bed, 2));
}

#[test]
fn keyframe_requests_from_subscribers_are_forwarded_and_merged() {
    let mut bed = Bed::new();
    for name in ["ann", "bob", "cat"] {
        bed.join("r", name, true);
    }
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 3)));
    // Let the requests of the subscriptions' starts age past the merge window.
    bed.run(secs(1.0));
    let ann = bed.id(0);
    let before = bed.clients[0].keyframe_requests;
    // Bob and cat both ask within a few milliseconds: ann sees one request.
    bed.clients[1].request_keyframe(&ann);
    bed.clients[2].request_keyframe(&ann);
    bed.run(secs(0.3));
    assert_eq!(bed.clients[0].keyframe_requests, before + 1);
    // Later requests go through again.
    bed.run(secs(0.5));
    bed.clients[1].request_keyframe(&ann);
    bed.run(secs(0.3));
    assert_eq!(bed.clients[0].keyframe_requests, before + 2);
}

#[test]
fn losses_towards_a_subscriber_are_repaired_from_the_retransmission_cache() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", false);
    let ida = bed.id(a);
    assert!(bed.run_until(secs(5.0), |bed| bed.clients[b].video_from(&ida).len() > 30));
    bed.loss_to.insert(b, 0.05);
    bed.run(secs(6.0));
    bed.loss_to.clear();
    bed.run(secs(1.0));
    let mut seqs: Vec<u16> = bed.clients[b]
        .video_from(&ida)
        .iter()
        .map(|r| r.seq)
        .collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    let span = seqs.last().unwrap().wrapping_sub(seqs[0]) as usize + 1;
    assert!(n > 300, "video kept flowing: {n}");
    assert!(bed.lost > 20, "the link lost packets: {}", bed.lost);
    assert!(
        bed.engine.stats().nacks_in > 0,
        "the subscriber's NACKs were counted"
    );
    assert_eq!(
        seqs.len(),
        span,
        "every lost video packet was retransmitted"
    );
}

#[test]
fn bad_input_is_refused_without_harm() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 2)));
    let (ida, idb) = (bed.id(a), bed.id(b));

    // Garbage UDP from strangers and from a participant's own address.
    let bob_addr = bed.clients[b].addr;
    for (i, junk) in [
        &b""[..],
        b"\x00",
        b"\x80\x60garbage-rtp-header",
        &[0xffu8; 1500],
        b"\x16\xfe\xfd\x00",
    ]
    .iter()
    .enumerate()
    {
        bed.inject(format!("192.0.2.{}:9", i + 1).parse().unwrap(), junk);
        bed.inject(bob_addr, junk);
    }
    // A STUN request naming a ufrag nobody has.
    let mut stun = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    stun.extend_from_slice(&[7u8; 12]);
    stun.extend_from_slice(&[0x00, 0x06, 0x00, 0x08]);
    stun.extend_from_slice(b"nope:who");
    bed.inject("192.0.2.99:9".parse().unwrap(), &stun);
    assert!(bed.engine.stats().datagrams_unknown >= 6);

    // Bad SDP and an answer nobody asked for.
    bed.engine
        .handle_signal(bed.now, &ida, ClientSignal::Offer("v=0\r\nnonsense".into()));
    bed.engine
        .handle_signal(bed.now, &ida, ClientSignal::Answer("v=0".into()));
    bed.engine.handle_signal(
        bed.now,
        &ida,
        ClientSignal::Candidate(signal::protocol::IceCandidate {
            candidate: "candidate:broken".into(),
            sdp_mid: None,
            sdp_m_line_index: None,
        }),
    );
    // Signals for someone who does not exist are ignored.
    bed.engine
        .handle_signal(bed.now, "nobody", ClientSignal::Answer("v=0".into()));
    bed.pump_signals();
    let codes: Vec<ErrorCode> = bed.clients[a]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::InvalidSdp,
            ErrorCode::WrongState,
            ErrorCode::BadMessage
        ]
    );

    // Media still flows both ways, gap-free.
    let before = bed.clients[b].video_from(&ida).len();
    bed.run(secs(2.0));
    assert!(bed.clients[b].video_from(&ida).len() > before + 20);
    assert_gap_free("bob <- ann", bed.clients[b].video_from(&ida));
    assert_gap_free("ann <- bob", bed.clients[a].video_from(&idb));
}

#[test]
fn crossing_offers_settle_with_the_server_giving_way() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    bed.run(secs(1.0));
    // Ann holds the server's next offer while she makes one of her own.
    bed.clients[a].hold_offers = true;
    let b = bed.join("r", "bob", true);
    bed.run(secs(0.2));
    assert!(
        !bed.clients[a].held_offers.is_empty(),
        "the server offered bob's tracks"
    );
    let offer = bed.clients[a].rtc.sdp_api();
    let mut offer = offer;
    offer.add_channel("chat".into());
    let (sdp, pending) = offer.apply().unwrap();
    bed.clients[a].pending = Some(pending);
    bed.clients[a].hold_offers = false;
    let ida = bed.id(a);
    bed.engine
        .handle_signal(bed.now, &ida, ClientSignal::Offer(sdp.to_sdp_string()));
    bed.pump_signals();
    // The server answered ann, then offered bob's tracks again; ann now receives bob.
    let idb = bed.id(b);
    assert!(bed.run_until(secs(5.0), |bed| bed.clients[a].video_from(&idb).len() > 20));
    assert_gap_free("ann <- bob", bed.clients[a].video_from(&idb));
}

#[test]
fn a_muted_track_stops_and_resumes_on_a_keyframe_without_a_gap() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", false);
    let ida = bed.id(a);
    assert!(bed.run_until(secs(5.0), |bed| bed.clients[b].video_from(&ida).len() > 30));
    let video_track = format!(
        "{ida}-{}",
        bed.clients[a].video_mid.expect("ann publishes video")
    );
    bed.engine
        .set_track_muted(bed.now, &ida, &video_track, true)
        .unwrap();
    bed.pump_signals();
    for c in [a, b] {
        assert!(bed.clients[c].messages.iter().any(|m| matches!(m,
            ServerMessage::TrackMuted { track_id, muted: true, .. } if *track_id == video_track)));
    }
    bed.run(secs(0.2));
    let at_mute = bed.clients[b].video_from(&ida).len();
    bed.run(secs(1.0));
    assert_eq!(
        bed.clients[b].video_from(&ida).len(),
        at_mute,
        "nothing while muted"
    );
    assert!(bed.clients[b].audio_from(&ida).len() > 60, "audio goes on");

    bed.engine
        .set_track_muted(bed.now, &ida, &video_track, false)
        .unwrap();
    assert!(
        bed.run_until(secs(2.0), |bed| bed.clients[b].video_from(&ida).len()
            > at_mute + 10)
    );
    let v = bed.clients[b].video_from(&ida);
    assert!(v[at_mute].keyframe, "resumes on a keyframe");
    assert_gap_free("video across mute", v);
    assert!(
        v[at_mute].ts.wrapping_sub(v[at_mute - 1].ts) >= 90_000,
        "timestamps advanced by the muted second"
    );
    assert!(bed
        .engine
        .set_track_muted(bed.now, &ida, "nope", true)
        .is_err());
}

#[test]
fn grants_decide_who_publishes_and_who_receives() {
    let mut bed = Bed::new();
    let viewer = bed.join_with("r", "viewer", true, |s| s.can_publish = false);
    let deaf = bed.join_with("r", "deaf", true, |s| s.can_subscribe = false);
    let ann = bed.join("r", "ann", true);
    bed.run(secs(3.0));
    let (idv, idd, ida) = (bed.id(viewer), bed.id(deaf), bed.id(ann));
    // The viewer's SDP said sendonly; nothing of it is published or forwarded.
    assert!(bed.clients[ann].video_from(&idv).is_empty());
    assert!(bed.clients[viewer].messages.iter().any(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    )));
    assert!(!bed.clients[ann].messages.iter().any(|m| matches!(m,
        ServerMessage::TrackPublished { participant_id, .. } if *participant_id == idv)));
    // The viewer receives; the deaf one publishes but receives nothing.
    assert!(!bed.clients[viewer].video_from(&ida).is_empty());
    assert!(!bed.clients[ann].video_from(&idd).is_empty());
    assert!(bed.clients[deaf].video_from(&ida).is_empty());
}

#[test]
fn participant_updates_reach_the_room() {
    let mut bed = Bed::new();
    let a = bed.join_with("r", "ann", true, |s| {
        s.metadata = Some("{\"role\":\"host\"}".into())
    });
    let b = bed.join("r", "bob", true);
    let ida = bed.id(a);
    let ServerMessage::Joined { participants, .. } = &bed.clients[b].messages[0] else {
        panic!("joined first")
    };
    assert_eq!(
        participants[0].metadata.as_deref(),
        Some("{\"role\":\"host\"}")
    );
    bed.engine
        .update_participant(&ida, Some("Ann B.".into()), None)
        .unwrap();
    bed.pump_signals();
    for c in [a, b] {
        assert!(bed.clients[c].messages.iter().any(|m| matches!(m,
            ServerMessage::ParticipantUpdated { participant } if participant.name == "Ann B."
                && participant.metadata.is_some())));
    }
}

#[test]
fn a_broken_client_offer_during_glare_does_not_stall_negotiation() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    bed.run(secs(1.0));
    bed.clients[a].hold_offers = true;
    let b = bed.join("r", "bob", true);
    bed.run(secs(0.2));
    let held = bed.clients[a].held_offers.len();
    assert!(held > 0, "the server offered bob's tracks");
    bed.clients[a].hold_offers = false;
    let ida = bed.id(a);
    // Ann's own offer is garbage: refused, and the server offers again rather than waiting.
    bed.engine
        .handle_signal(bed.now, &ida, ClientSignal::Offer("v=0 broken".into()));
    bed.pump_signals();
    assert!(bed.clients[a].messages.iter().any(|m| matches!(
        m,
        ServerMessage::Error {
            code: ErrorCode::InvalidSdp,
            ..
        }
    )));
    let idb = bed.id(b);
    assert!(bed.run_until(secs(5.0), |bed| bed.clients[a].video_from(&idb).len() > 20));
}

#[test]
fn a_client_without_udp_joins_over_ice_tcp() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    bed.next_tcp = true;
    let b = bed.join("r", "bob", true);
    bed.next_tcp = false;
    let (ida, idb) = (bed.id(a), bed.id(b));
    assert!(
        bed.run_until(secs(8.0), |bed| bed.clients[b].video_from(&ida).len() > 30
            && bed.clients[a].video_from(&idb).len() > 30),
        "media did not flow over TCP"
    );
    assert_gap_free("bob <- ann over tcp", bed.clients[b].video_from(&ida));
    assert_gap_free("ann <- bob", bed.clients[a].video_from(&idb));
}

#[test]
fn a_client_whose_address_changes_restarts_ice_and_media_resumes() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 2)));
    let (ida, idb) = (bed.id(a), bed.id(b));
    let before = (
        bed.clients[b].video_from(&ida).len(),
        bed.clients[a].video_from(&idb).len(),
    );
    // Ann's network changes (Wi-Fi to mobile): a new address, an ICE restart on the same
    // connection, no new tracks.
    bed.move_client(a, "10.0.9.1:7000".parse().unwrap());
    assert!(
        bed.run_until(secs(5.0), |bed| {
            bed.clients[b].video_from(&ida).len() > before.0 + 30
                && bed.clients[a].video_from(&idb).len() > before.1 + 30
        }),
        "media did not resume both ways after the address change"
    );
    assert_eq!(bed.engine.participant_count(), 2, "nobody left");
    assert!(
        !bed.clients[b].messages.iter().any(|m| matches!(
            m,
            ServerMessage::ParticipantLeft { .. } | ServerMessage::TrackUnpublished { .. }
        )),
        "bob saw ann leave or unpublish"
    );
    assert_gap_free("bob <- ann video", bed.clients[b].video_from(&ida));
}

#[test]
fn a_held_participant_survives_silence_until_its_hold_ends() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let _b = bed.join("r", "bob", true);
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 2)));
    let ida = bed.id(a);
    // Ann's socket and link drop together; the worker holds her for the resume grace period.
    bed.clients[a].offline = true;
    let now = bed.now;
    bed.engine.hold(now, &ida, Some(now + secs(30.0)));
    bed.run(secs(20.0));
    assert_eq!(
        bed.engine.participant_count(),
        2,
        "ann outlives the 15 s silence timeout while held"
    );
    // She did not come back: once the hold ends, silence removes her.
    let now = bed.now;
    bed.engine.hold(now, &ida, None);
    bed.pump_signals();
    assert_eq!(bed.engine.participant_count(), 1);
    let left = bed.clients[1].messages.iter().any(|m| {
        matches!(m, ServerMessage::ParticipantLeft { participant_id, reason }
            if *participant_id == ida && reason == "timeout")
    });
    assert!(left, "bob saw ann leave as timeout");
}

#[test]
fn video_from_a_publisher_back_from_an_outage_resumes_at_once() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 2)));
    bed.run(secs(3.0));
    let ida = bed.id(a);
    // Ann's link drops for 3 s: her video stops reaching the server, so bob's is paused.
    bed.clients[a].offline = true;
    bed.run(secs(3.0));
    let before = bed.clients[b].video_from(&ida).len();
    bed.clients[a].offline = false;
    let back = bed.now;
    assert!(
        bed.run_until(secs(5.0), |bed| bed.clients[b].video_from(&ida).len()
            > before),
        "bob never got ann's video again"
    );
    let first = bed.clients[b].video_from(&ida)[before].at;
    // Her video stopping was not a step down for bandwidth: nothing holds its return back.
    let waited = first.duration_since(back);
    assert!(
        waited < secs(1.0),
        "bob got ann's video {waited:?} after she was back"
    );
    assert_eq!(bed.engine.participant_count(), 2);
}

#[test]
fn a_burst_towards_a_subscriber_leaves_without_a_timeout_per_packet() {
    // Frames arrive whole within one tick (several packets per layer); each subscriber's pacer
    // lets them out within its budget, in one poll of the connection.
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", false);
    let c = bed.join("r", "cat", false);
    let ida = bed.id(a);
    assert!(bed.run_until(secs(5.0), |bed| [b, c]
        .iter()
        .all(|&i| bed.clients[i].video_from(&ida).len() > 30)));
    bed.run(secs(1.0));
    let before = bed.engine.stats().clone();
    bed.run(secs(3.0));
    let after = bed.engine.stats();
    let timeouts = after.rtc_timeouts - before.rtc_timeouts;
    let releases = after.rtc_releases - before.rtc_releases;
    let out = after.datagrams_out - before.datagrams_out;
    let forwarded = after.rtp_forwarded - before.rtp_forwarded;
    assert!(
        forwarded > 300,
        "media flowed: {forwarded} packets forwarded"
    );
    // Per connection: one release per batch written and one timeout per due deadline
    // (reports, feedback), not one more per packet the pacer releases (about 1.6 per datagram
    // sent when it was).
    assert!(
        timeouts + releases < out,
        "{timeouts} timeouts and {releases} releases for {out} datagrams sent \
         ({forwarded} RTP packets forwarded)"
    );
    // A batch written to a connection drives only its pacer: the whole connection is driven
    // at its own deadlines, far fewer.
    assert!(
        timeouts < releases,
        "{timeouts} timeouts against {releases} releases"
    );
    for i in [b, c] {
        assert_gap_free("video", bed.clients[i].video_from(&ida));
        assert_gap_free("audio", bed.clients[i].audio_from(&ida));
    }
}

/// A worker that falls behind keeps a publisher's audio longer than its video; it tells them
/// apart by the SSRC in the clear header and the sender's address.
#[test]
fn the_engine_tells_a_publisher_s_audio_stream_from_its_video() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", false);
    let ida = bed.id(a);
    assert!(bed.run_until(secs(5.0), |bed| bed.clients[b].video_from(&ida).len() > 10));
    let c = &mut bed.clients[a];
    let addr = c.addr;
    let (audio_mid, video_mid) = (c.audio_mid.unwrap(), c.video_mid.unwrap());
    let mut api = c.rtc.direct_api();
    let audio = *api.stream_tx_by_mid(audio_mid, None).unwrap().ssrc();
    let video = *api.stream_tx_by_mid(video_mid, None).unwrap().ssrc();
    assert!(bed.engine.is_audio_from(addr, audio));
    assert!(!bed.engine.is_audio_from(addr, video));
    assert!(
        !bed.engine.is_audio_from(addr, audio ^ 1),
        "an unknown stream"
    );
    let elsewhere: std::net::SocketAddr = "10.9.9.9:9".parse().unwrap();
    assert!(
        !bed.engine.is_audio_from(elsewhere, audio),
        "another sender"
    );
}

/// The rooms `benches/engine_cost.rs` counts the engine's instructions in: every listener hears
/// every publisher and sees every camera without a gap, the audio room carries no video, and
/// media keeps flowing, gap-free and at least at the audio rate, through a metered second (the
/// bed switching Callgrind's collection around each engine call).
#[test]
fn the_instruction_count_rooms_reach_every_participant() {
    for scenario in Scenario::ALL {
        let viewers = 3;
        let mut bed = scenario.bed(viewers);
        bed.run(secs(3.0));
        let before: usize = rtp_sent(&bed).values().sum();
        set_metering(true);
        bed.run(secs(1.0));
        set_metering(false);
        let sent: usize = rtp_sent(&bed).values().sum::<usize>() - before;
        let publishers = scenario.publisher_indexes(viewers);
        let name = scenario.name();
        let listeners = bed.clients.len();
        assert!(
            listeners >= viewers && !publishers.is_empty(),
            "{name}: the room is not what it says"
        );
        // At least 50 audio packets a second from each publisher to each other participant.
        let pairs = publishers.len() * (listeners - 1);
        assert!(
            sent >= 50 * pairs,
            "{name}: {sent} RTP packets in the metered second"
        );
        for i in 0..listeners {
            let me = bed.id(i);
            for p in publishers.clone().filter(|p| *p != i) {
                let from = bed.id(p);
                let audio = bed.clients[i].audio_from(&from);
                assert_gap_free(&format!("{name}: {me} <- {from} audio"), audio);
                let video = bed.clients[i].video_from(&from);
                if scenario == Scenario::Audio {
                    assert!(video.is_empty(), "{name}: {me} got video from {from}");
                } else {
                    assert!(
                        video[0].keyframe,
                        "{name}: {me} <- {from} starts on a keyframe"
                    );
                    assert_gap_free(&format!("{name}: {me} <- {from} video"), video);
                }
            }
        }
    }
}
