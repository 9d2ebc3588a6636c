//! Data channels, active speaker detection and self-mute, on the virtual network.

mod virtual_net;

use std::time::{Duration, Instant};

use serde_json::json;
use signal::protocol::{ErrorCode, ServerMessage, StreamStateKind};
use signal::ClientSignal;
use virtual_net::{secs, Bed};

fn data_room(n: usize) -> Bed {
    let mut bed = Bed::new();
    bed.next_data = true;
    for name in ["ann", "bob", "cat", "dan"].iter().take(n) {
        bed.join("r", name, true);
    }
    assert!(
        bed.run_until(secs(5.0), |b| b
            .clients
            .iter()
            .all(|c| c.channels.len() == 2)),
        "data channels did not open"
    );
    bed
}

fn errors(bed: &Bed, i: usize) -> Vec<ErrorCode> {
    bed.clients[i]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect()
}

#[test]
fn text_goes_to_the_room_or_to_named_participants_stamped_with_the_sender() {
    let mut bed = data_room(3);
    let (ann, bob) = (bed.id(0), bed.id(1));
    // Ann claims to be bob: the server says who really sent it.
    let msg = json!({"from": bob, "payload": {"text": "hello"}}).to_string();
    bed.clients[0].send_data("reliable", false, msg.as_bytes());
    let direct = json!({"to": [bob], "payload": "just you"}).to_string();
    bed.clients[0].send_data("reliable", false, direct.as_bytes());
    bed.run(secs(0.5));
    assert_eq!(
        bed.clients[1].data_json(),
        vec![
            json!({"from": ann, "payload": {"text": "hello"}}),
            json!({"from": ann, "direct": true, "payload": "just you"}),
        ]
    );
    assert_eq!(
        bed.clients[2].data_json(),
        vec![json!({"from": ann, "payload": {"text": "hello"}})]
    );
    assert!(
        bed.clients[0].data_in.is_empty(),
        "nothing comes back to the sender"
    );
    assert_eq!(bed.clients[1].data_in[0].0, "reliable");
}

#[test]
fn binary_and_lossy_messages_are_relayed_on_their_own_channel() {
    let mut bed = data_room(2);
    let ann = bed.id(0);
    bed.clients[0].send_data("lossy", true, &[1, 2, 3]);
    bed.run(secs(0.5));
    let (label, binary, data) = &bed.clients[1].data_in[0];
    assert_eq!(label, "lossy");
    assert!(*binary);
    let mut want = vec![ann.len() as u8];
    want.extend_from_slice(ann.as_bytes());
    want.extend_from_slice(&[1, 2, 3]);
    assert_eq!(data, &want);
}

#[test]
fn oversized_bursty_and_malformed_messages_get_errors() {
    let mut bed = data_room(2);
    bed.clients[0].send_data("reliable", true, &vec![0u8; 20 * 1024]);
    bed.run(secs(0.3));
    assert_eq!(errors(&bed, 0), vec![ErrorCode::MessageTooLarge]);
    assert!(bed.clients[1].data_in.is_empty());

    // A burst of 100 small messages: the first 60 go through, then the limit answers.
    bed.run(secs(1.5));
    for i in 0..100 {
        let m = json!({"payload": i}).to_string();
        bed.clients[0].send_data("reliable", false, m.as_bytes());
    }
    bed.run(secs(0.5));
    let got = bed.clients[1].data_json().len();
    assert!((60..=62).contains(&got), "{got} relayed");
    assert_eq!(
        errors(&bed, 0),
        vec![ErrorCode::MessageTooLarge, ErrorCode::RateLimited]
    );
    // It recovers.
    bed.run(secs(2.0));
    bed.clients[0].send_data("reliable", false, br#"{"payload":"later"}"#);
    bed.run(secs(1.2));
    bed.clients[0].send_data("reliable", false, b"not json");
    bed.run(secs(0.3));
    assert_eq!(
        bed.clients[1].data_json().last().unwrap()["payload"],
        "later"
    );
    assert_eq!(errors(&bed, 0).last(), Some(&ErrorCode::BadMessage));
}

#[test]
fn without_the_data_grant_nothing_is_relayed() {
    let mut bed = Bed::new();
    bed.next_data = true;
    bed.join_with("r", "ann", true, |s| s.can_publish_data = false);
    bed.join("r", "bob", true);
    assert!(bed.run_until(secs(5.0), |b| b
        .clients
        .iter()
        .all(|c| c.channels.len() == 2)));
    bed.clients[0].send_data("reliable", false, br#"{"payload":1}"#);
    bed.clients[1].send_data("reliable", false, br#"{"payload":2}"#);
    bed.run(secs(0.5));
    assert!(bed.clients[1].data_in.is_empty());
    assert_eq!(bed.clients[0].data_json().len(), 1, "ann still receives");
    assert_eq!(errors(&bed, 0), vec![ErrorCode::Forbidden]);
}

fn speakers(bed: &Bed, i: usize) -> Vec<Vec<String>> {
    bed.clients[i]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Speakers { speakers } => {
                Some(speakers.iter().map(|s| s.participant_id.clone()).collect())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn speakers_are_detected_from_audio_levels_with_hysteresis() {
    let mut bed = Bed::new();
    for name in ["ann", "bob", "cat"] {
        bed.join("r", name, true);
    }
    bed.run(secs(2.0));
    let (ann, bob) = (bed.id(0), bed.id(1));
    assert!(speakers(&bed, 2).is_empty(), "silence: no speaker");

    bed.clients[0].audio_dbov = 25;
    let t = bed.now;
    assert!(bed.run_until(secs(2.0), |b| speakers(b, 2).last()
        == Some(&vec![ann.clone()])));
    eprintln!("speaker detected after {:?}", bed.now - t);
    assert!(bed.now - t <= secs(0.6));

    // Bob joins in, louder; then ann stops.
    bed.clients[1].audio_dbov = 15;
    assert!(bed.run_until(secs(2.0), |b| speakers(b, 2)
        .last()
        .is_some_and(|s| s.len() == 2)));
    assert_eq!(speakers(&bed, 2).last().unwrap()[0], bob, "loudest first");
    bed.clients[0].audio_dbov = 127;
    let t = bed.now;
    assert!(bed.run_until(secs(3.0), |b| speakers(b, 2).last()
        == Some(&vec![bob.clone()])));
    assert!(bed.now - t >= secs(0.8), "not before the off hold");

    // Bob goes quiet by muting: he stops at once, and the room hears it as soon as the last
    // message is far enough behind.
    bed.run(secs(0.3));
    mute(&mut bed, 1);
    assert_eq!(speakers(&bed, 2).last(), Some(&vec![]));
    // Everyone got the same updates.
    assert_eq!(speakers(&bed, 0), speakers(&bed, 2));
}

/// Participant `i` mutes its microphone.
fn mute(bed: &mut Bed, i: usize) {
    let id = bed.id(i);
    let track = format!("{id}-{}", bed.clients[i].audio_mid.unwrap());
    bed.engine.handle_signal(
        bed.now,
        &id,
        ClientSignal::Mute {
            track_id: track,
            muted: true,
        },
    );
    bed.pump_signals();
}

/// Note when dan (client 3) got each `speakers` message so far, then run `d` in steps of `step`,
/// noting as it goes.
fn watch(bed: &mut Bed, at: &mut Vec<Instant>, d: Duration, step: Duration) {
    let note = |bed: &Bed, at: &mut Vec<Instant>| {
        let n = speakers(bed, 3).len();
        while at.len() < n {
            at.push(bed.now);
        }
    };
    note(bed, at);
    let end = bed.now + d;
    while bed.now < end {
        bed.run(step);
        note(bed, at);
    }
}

#[test]
fn a_room_hears_who_speaks_at_most_every_300_ms() {
    let interval = secs(0.3);
    let step = secs(0.005);
    let mut bed = Bed::new();
    for name in ["ann", "bob", "cat", "dan"] {
        bed.join("r", name, true);
    }
    bed.run(secs(2.0));
    let ids: Vec<String> = (0..3).map(|i| bed.id(i)).collect();
    // When each `speakers` message reached dan.
    let mut at = Vec::new();
    // Ann, bob and cat start 100 ms apart: ann's start goes at once, the other two wait and go
    // together, 300 ms later.
    bed.clients[0].audio_dbov = 25;
    watch(&mut bed, &mut at, secs(0.1), step);
    bed.clients[1].audio_dbov = 25;
    watch(&mut bed, &mut at, secs(0.1), step);
    bed.clients[2].audio_dbov = 25;
    watch(&mut bed, &mut at, secs(1.5), step);
    let got = speakers(&bed, 3);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0], vec![ids[0].clone()]);
    let mut all = got[1].clone();
    all.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(all, want);
    let gap = at[1] - at[0];
    assert!(gap >= interval && gap <= interval + step, "{gap:?}");

    // A second later ann mutes: nothing was said for 300 ms, so the room hears it at once.
    watch(&mut bed, &mut at, secs(1.0), step);
    assert_eq!(speakers(&bed, 3).len(), 2, "nothing changed");
    mute(&mut bed, 0);
    bed.clients[0].audio_dbov = 127;
    watch(&mut bed, &mut at, Duration::ZERO, step);
    let got = speakers(&bed, 3);
    assert_eq!(got.len(), 3, "{got:?}");
    let mut rest = got[2].clone();
    rest.sort();
    assert_eq!(
        rest,
        want[..]
            .iter()
            .filter(|id| **id != ids[0])
            .cloned()
            .collect::<Vec<_>>()
    );
    // Bob and cat mute 50 and 150 ms after that message: one message for both, 300 ms after it.
    watch(&mut bed, &mut at, secs(0.05), step);
    mute(&mut bed, 1);
    bed.clients[1].audio_dbov = 127;
    watch(&mut bed, &mut at, secs(0.1), step);
    mute(&mut bed, 2);
    bed.clients[2].audio_dbov = 127;
    watch(&mut bed, &mut at, secs(1.0), step);
    let got = speakers(&bed, 3);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[3], Vec::<String>::new());
    let gap = at[3] - at[2];
    assert!(gap >= interval && gap <= interval + step, "{gap:?}");
    for w in at.windows(2) {
        assert!(w[1] - w[0] >= interval, "{at:?}");
    }
    // Everyone got the same messages.
    for i in 0..3 {
        assert_eq!(speakers(&bed, i), got);
    }
}

#[test]
fn a_speakers_video_wins_when_bandwidth_is_short() {
    // Every subscriber is capped at 300 kbit/s: after audio, room for one low layer, not two
    // (not even at the share of its cost a video already flowing keeps).
    let mut bed = Bed::with_config(|c| c.max_subscriber_bitrate = Some(300_000));
    bed.next_simulcast = true;
    let a = bed.join("r", "ann", true);
    let d = bed.join("r", "dan", true);
    bed.next_simulcast = false;
    let b = bed.join("r", "bob", false);
    let (ida, idd) = (bed.id(a), bed.id(d));
    bed.run(secs(3.0));
    // Whoever speaks gets the one video that fits; the other is paused for bandwidth.
    for (speaker, silent, id_s, id_q) in [(d, a, &idd, &ida), (a, d, &ida, &idd)] {
        bed.clients[speaker].audio_dbov = 20;
        bed.clients[silent].audio_dbov = 127;
        bed.run(secs(2.5));
        let t = bed.now;
        bed.run(secs(2.0));
        let flowing = |id: &str| bed.clients[b].video_from(id).iter().any(|p| p.at > t);
        assert!(flowing(id_s), "the speaker's video flows");
        assert!(!flowing(id_q), "the silent one's video is paused");
        assert!(bed.clients[b].messages.iter().rev().any(|m| matches!(m,
            ServerMessage::StreamState { participant_id, state: StreamStateKind::Paused, reason: Some(r), .. }
                if participant_id == id_q && r == "bandwidth")));
    }
}

#[test]
fn participants_mute_their_own_tracks_only() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    let (ida, idb) = (bed.id(a), bed.id(b));
    assert!(bed.run_until(secs(5.0), |bed| bed.clients[b].video_from(&ida).len() > 20));
    let video = format!("{ida}-{}", bed.clients[a].video_mid.unwrap());
    // Bob may not mute ann.
    bed.engine.handle_signal(
        bed.now,
        &idb,
        ClientSignal::Mute {
            track_id: video.clone(),
            muted: true,
        },
    );
    bed.pump_signals();
    assert_eq!(errors(&bed, b), vec![ErrorCode::Forbidden]);
    // Ann mutes herself: bob is told and gets nothing more.
    bed.engine.handle_signal(
        bed.now,
        &ida,
        ClientSignal::Mute {
            track_id: video.clone(),
            muted: true,
        },
    );
    bed.pump_signals();
    assert!(bed.clients[b].messages.iter().any(|m| matches!(m,
        ServerMessage::TrackMuted { track_id, muted: true, .. } if *track_id == video)));
    bed.run(secs(0.2));
    let n = bed.clients[b].video_from(&ida).len();
    bed.run(secs(1.0));
    assert_eq!(bed.clients[b].video_from(&ida).len(), n);
}

#[test]
fn a_newcomer_hears_who_is_speaking_and_an_early_mute_is_kept() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let ann = bed.id(a);
    // Ann mutes her camera right after her offer, before her connection is up.
    let video = format!("{ann}-{}", bed.clients[a].video_mid.unwrap());
    bed.engine.handle_signal(
        bed.now,
        &ann,
        ClientSignal::Mute {
            track_id: video.clone(),
            muted: true,
        },
    );
    bed.pump_signals();
    assert!(errors(&bed, a).is_empty(), "{:?}", errors(&bed, a));
    bed.clients[a].audio_dbov = 20;
    bed.run(secs(2.0));
    let b = bed.join("r", "bob", false);
    bed.run(secs(2.0));
    // Bob learns at once who speaks, and ann's camera arrives muted.
    assert_eq!(speakers(&bed, b).first(), Some(&vec![ann.clone()]));
    let ServerMessage::Joined { participants, .. } = &bed.clients[b].messages[0] else {
        panic!("joined first")
    };
    let cam = participants[0]
        .tracks
        .iter()
        .find(|t| t.id == video)
        .unwrap();
    assert!(cam.muted);
    assert!(bed.clients[b].video_from(&ann).is_empty());
    assert!(!bed.clients[b].audio_from(&ann).is_empty());
}
