//! The engine's own event stream on the virtual network, and the webhooks the I/O layer makes of
//! it: a join, publish, mute, leave sequence yields exactly the expected events, once each.

mod virtual_net;

use sfu::core::Event;
use virtual_net::{all_receive_all, secs, Bed};

/// One line per event, leaving out those whose number depends on timing (stream states,
/// speakers, publisher layers), which are checked to be the only ones left out.
fn lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| {
            Some(match e {
                Event::Joined {
                    participant,
                    others,
                    ..
                } => {
                    let others: Vec<String> = others
                        .iter()
                        .map(|o| format!("{} with {} tracks", o.id, o.tracks.len()))
                        .collect();
                    format!("joined {} {others:?}", participant.id)
                }
                Event::Left {
                    participant,
                    reason,
                    ..
                } => format!("left {} {}", participant.id, reason.as_str()),
                Event::RemoteJoined { participant, .. } => {
                    format!("remote joined {}", participant.id)
                }
                Event::RemoteLeft {
                    participant,
                    reason,
                    ..
                } => format!("remote left {participant} {}", reason.as_str()),
                Event::Reconnecting {
                    participant,
                    reconnecting,
                    ..
                } => format!("reconnecting {participant} {reconnecting}"),
                Event::TrackPublished {
                    participant, track, ..
                } => format!("published {participant} {:?}", track.kind),
                Event::TrackUnpublished {
                    participant, track, ..
                } => format!("unpublished {participant} {:?}", track.kind),
                Event::TrackMuted {
                    participant, muted, ..
                } => format!("muted {participant} {muted}"),
                Event::ParticipantUpdated { participant, .. } => {
                    format!("updated {} {}", participant.id, participant.name)
                }
                Event::Offer { participant, .. } => format!("offer to {participant}"),
                Event::Answer { participant, .. } => format!("answer to {participant}"),
                Event::Refused { participant, error } => format!("refused {participant}: {error}"),
                Event::StreamState { .. }
                | Event::Speakers { .. }
                | Event::PublisherLayers { .. }
                | Event::ConnectionQuality { .. } => return None,
            })
        })
        .collect()
}

#[test]
fn a_join_publish_mute_leave_sequence_yields_exactly_its_events_and_webhooks() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", false);
    assert!(
        bed.run_until(secs(5.0), |b| !b.clients[1].video_from("ann-id").is_empty()),
        "media did not flow"
    );
    let (ida, idb) = (bed.id(a), bed.id(b));
    let video = format!(
        "{ida}-{}",
        bed.clients[a].video_mid.expect("ann publishes video")
    );
    bed.engine
        .set_track_muted(bed.now, &ida, &video, true)
        .unwrap();
    bed.engine
        .update_participant(&idb, Some("Bob B.".into()), None)
        .unwrap();
    let now = bed.now;
    bed.engine.leave(now, &ida, "left");
    bed.pump_signals();
    bed.run(secs(1.0));
    bed.engine.leave(now, &idb, "disconnected");
    bed.pump_signals();

    assert_eq!(
        lines(&bed.engine.events),
        [
            "joined ann-id []",
            "answer to ann-id",
            // Both join before ann's connection is up; tracks appear once it is.
            "joined bob-id [\"ann-id with 0 tracks\"]",
            "answer to bob-id",
            "published ann-id Audio",
            "published ann-id Video",
            "offer to bob-id",
            "muted ann-id true",
            "updated bob-id Bob B.",
            "unpublished ann-id Audio",
            "unpublished ann-id Video",
            "left ann-id left",
            "offer to bob-id",
            "left bob-id disconnected",
        ]
    );

    let hooks: Vec<String> = bed
        .engine
        .take_webhooks()
        .into_iter()
        .map(|h| {
            let who = h.participant.map(|p| p.id).unwrap_or_default();
            let what = h
                .track
                .map(|t| format!(" {:?}", t.kind))
                .unwrap_or_default();
            let why = h.reason.map(|r| format!(" {r}")).unwrap_or_default();
            format!("{} {who}{what}{why}", h.event.as_str())
        })
        .collect();
    assert_eq!(
        hooks,
        [
            "participant_joined ann-id",
            "participant_joined bob-id",
            "track_published ann-id Audio",
            "track_published ann-id Video",
            "track_unpublished ann-id Audio",
            "track_unpublished ann-id Video",
            "participant_left ann-id left",
            "participant_left bob-id disconnected",
        ]
    );
}

#[test]
fn refusals_are_events_for_the_one_who_asked() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 2)));
    let (ida, idb) = (bed.id(a), bed.id(b));
    let before = bed.engine.events.len();
    let now = bed.now;
    bed.engine
        .handle_signal(now, &ida, signal::ClientSignal::Answer("v=0".into()));
    bed.engine
        .handle_signal(now, &idb, signal::ClientSignal::Offer("nonsense".into()));
    bed.pump_signals();
    assert_eq!(
        lines(&bed.engine.events[before..]),
        [
            "refused ann-id: answer without an offer from the server",
            "refused bob-id: offer: the SDP could not be parsed",
        ]
    );
}
