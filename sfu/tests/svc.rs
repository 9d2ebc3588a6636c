//! SVC: one stream with three spatial layers (VP9, or AV1 with its dependency descriptor), each
//! subscriber getting the layers its rendered size needs, and fewer frames (temporal layers)
//! where even the lowest layer does not fit its link; on the virtual network.

mod virtual_net;

use std::collections::BTreeMap;
use std::time::Instant;

use sfu::core::forward::DropReason;
use signal::ClientSignal;
use str0m::format::Codec;
use virtual_net::{assert_gap_free, secs, Bed, Link, Received};

/// An SVC publisher of `codec` and two subscribers.
fn svc_room_with(codec: Codec) -> (Bed, usize, usize, usize) {
    let mut bed = Bed::new();
    bed.next_codecs = vec![codec];
    let a = bed.join("r", "ann", true);
    bed.clients[a].svc = true;
    let b = bed.join("r", "bob", false);
    let c = bed.join("r", "cat", false);
    (bed, a, b, c)
}

/// The highest spatial layer among the packets received since `since`.
fn top_since(packets: &[Received], since: Instant) -> Option<u8> {
    packets
        .iter()
        .filter(|p| p.at >= since)
        .map(|p| p.layer)
        .max()
}

/// The packets received since `since`, by picture (RTP timestamp), in arrival order.
fn pictures(packets: &[Received], since: Instant) -> BTreeMap<u32, Vec<&Received>> {
    let mut out: BTreeMap<u32, Vec<&Received>> = BTreeMap::new();
    for p in packets.iter().filter(|p| p.at >= since) {
        out.entry(p.ts).or_default().push(p);
    }
    out
}

/// Every complete picture received since `since` has layers 0..=`top` and one marker, on its
/// last packet, which is of layer `top`.
fn assert_pictures_end_at(what: &str, packets: &[Received], since: Instant, top: u8) {
    let pics = pictures(packets, since);
    // The first and last pictures may be cut by `since` or still arriving.
    let n = pics.len();
    assert!(n > 10, "{what}: only {n} pictures");
    for (ts, pic) in pics.iter().skip(1).take(n - 2) {
        let layers: Vec<u8> = pic.iter().map(|p| p.layer).collect();
        assert!(
            layers.windows(2).all(|w| w[0] <= w[1]) && layers[0] == 0,
            "{what}: picture {ts} has layers {layers:?}"
        );
        assert_eq!(
            *layers.last().unwrap(),
            top,
            "{what}: picture {ts} has layers {layers:?}"
        );
        let markers: Vec<bool> = pic.iter().map(|p| p.marker).collect();
        assert!(
            markers.last() == Some(&true) && markers.iter().filter(|m| **m).count() == 1,
            "{what}: picture {ts} markers {markers:?}"
        );
    }
}

fn show(bed: &mut Bed, subscriber: usize, track: &str, w: u32, h: u32) {
    settings(bed, subscriber, track, true, w, h);
}

fn settings(bed: &mut Bed, subscriber: usize, track: &str, visible: bool, w: u32, h: u32) {
    let id = bed.id(subscriber);
    bed.engine.handle_signal(
        bed.now,
        &id,
        ClientSignal::TrackSettings {
            track_id: track.to_owned(),
            visible,
            width: w,
            height: h,
            pinned: false,
        },
    );
    bed.pump_signals();
}

/// An SVC publisher of `codec` and two subscribers who show it large. Both reach the top
/// spatial layer; then Bob shows it small (layer 0 from the next picture, each picture ending on
/// it, Cat still getting all three), middle-sized (layer 1 from a keyframe asked for), hidden
/// (nothing) and shown again (from a keyframe). Every complete picture ends with one marker on
/// its top forwarded layer, and neither sequence has a gap. Returns the bed, Bob, Cat and the
/// publisher's id.
fn layers_follow_the_rendered_size(codec: Codec) -> (Bed, usize, usize, String) {
    let (mut bed, a, b, c) = svc_room_with(codec);
    let ida = bed.id(a);
    let track = format!("{ida}-{}", bed.clients[a].video_mid.unwrap());
    // The three layers together need about 2.2 Mbit/s: the estimate ramps up to it.
    let both_top = bed.run_until(secs(30.0), |bed| {
        let since = bed.now - secs(1.5);
        [b, c].iter().all(|s| {
            let pics = pictures(bed.clients[*s].video_from(&ida), since);
            pics.len() > 20
                && pics
                    .values()
                    .all(|p| p.iter().map(|x| x.layer).max() == Some(2))
        })
    });
    eprintln!(
        "{codec:?}: both at spatial layer 2 after {:?}",
        bed.now - bed.start
    );
    assert!(
        both_top,
        "subscribers did not reach spatial layer 2; stats {:?}",
        bed.engine.stats()
    );

    // Bob shows it small: from the next picture on he gets layer 0 only, marked as the end
    // of each picture; Cat still gets all three.
    show(&mut bed, b, &track, 320, 180);
    let small_at = bed.now;
    assert!(
        bed.run_until(secs(3.0), |bed| {
            let since = bed.now - secs(0.5);
            since > small_at && top_since(bed.clients[b].video_from(&ida), since) == Some(0)
        }),
        "bob did not step down to layer 0"
    );
    let low_from = bed.now;
    bed.run(secs(1.0));
    assert_pictures_end_at(
        "bob at 320x180",
        bed.clients[b].video_from(&ida),
        low_from,
        0,
    );
    assert_pictures_end_at("cat", bed.clients[c].video_from(&ida), low_from, 2);

    // Middle size: layer 1, which needs a keyframe (asked for).
    let requests = bed.clients[a].keyframe_requests;
    show(&mut bed, b, &track, 600, 340);
    let mid_at = bed.now;
    assert!(
        bed.run_until(secs(3.0), |bed| top_since(
            bed.clients[b].video_from(&ida),
            mid_at
        ) == Some(1)),
        "bob did not step up to layer 1"
    );
    assert!(
        bed.clients[a].keyframe_requests > requests,
        "no keyframe asked for"
    );
    bed.run(secs(1.0));
    let video = bed.clients[b].video_from(&ida);
    // The step up happened at a keyframe: the first picture with layer 1 starts with one.
    let first_up = video
        .iter()
        .find(|p| p.at >= mid_at && p.layer == 1)
        .unwrap()
        .ts;
    assert!(
        video.iter().any(|p| p.ts == first_up && p.keyframe),
        "layer 1 came back without a keyframe"
    );
    assert_pictures_end_at("bob at 600x340", video, bed.now - secs(0.8), 1);

    // Hidden, then shown again: nothing while hidden, and the resume waits for a keyframe.
    settings(&mut bed, b, &track, false, 600, 340);
    bed.run(secs(0.5));
    let hidden = bed.clients[b].video_from(&ida).len();
    bed.run(secs(1.0));
    assert_eq!(
        bed.clients[b].video_from(&ida).len(),
        hidden,
        "nothing while hidden"
    );
    show(&mut bed, b, &track, 600, 340);
    let shown_at = bed.now;
    assert!(
        bed.run_until(secs(3.0), |bed| top_since(
            bed.clients[b].video_from(&ida),
            shown_at
        ) == Some(1)),
        "bob did not come back at layer 1: {:?} since",
        top_since(bed.clients[b].video_from(&ida), shown_at),
    );
    bed.run(secs(1.0));
    let video = bed.clients[b].video_from(&ida);
    let resumed = video.iter().find(|p| p.at >= shown_at).unwrap();
    assert!(resumed.keyframe, "the resume starts on a keyframe");
    assert_pictures_end_at("bob shown again", video, bed.now - secs(0.8), 1);

    let video = bed.clients[b].video_from(&ida);
    assert_gap_free("bob", video);
    assert_gap_free("cat", bed.clients[c].video_from(&ida));
    assert!(video[0].keyframe, "starts on a keyframe");
    (bed, b, c, ida)
}

#[test]
fn each_subscriber_gets_the_spatial_layers_its_size_needs() {
    let (bed, b, _c, ida) = layers_follow_the_rendered_size(Codec::Vp9);
    // The picture ids of the one stream go through as the publisher numbered them.
    assert!(
        bed.clients[b]
            .video_from(&ida)
            .iter()
            .all(|p| p.pid == Some((p.frame & 0x7fff) as u16)),
        "picture ids renumbered"
    );
}

#[test]
fn av1_subscribers_get_the_spatial_layers_their_size_needs_with_the_descriptor() {
    let (bed, b, c, ida) = layers_follow_the_rendered_size(Codec::Av1);
    assert_eq!(
        bed.engine.stats().dropped[DropReason::Malformed.index()],
        0,
        "every descriptor was read"
    );
    // Every packet keeps its dependency descriptor, with the frame numbers of the one stream as
    // the publisher numbered them; all temporal layers go through on a clean link.
    for (who, s) in [("bob", b), ("cat", c)] {
        let video = bed.clients[s].video_from(&ida);
        assert!(
            video.iter().all(|p| p.pid == Some(p.frame as u16)),
            "{who}: a packet lost its descriptor or was renumbered"
        );
        assert!(
            video.iter().any(|p| p.temporal == 2),
            "{who}: temporal layer 2 is forwarded on a clean link"
        );
    }
}

#[test]
fn a_link_too_thin_for_the_lowest_layer_gets_fewer_frames_of_it_not_none() {
    let (mut bed, a, b, _c) = svc_room_with(Codec::Av1);
    let ida = bed.id(a);
    let track = format!("{ida}-{}", bed.clients[a].video_mid.unwrap());
    // Bob shows it small (layer 0 is all he wants) on a link of 200 kbit/s, which also carries
    // his audio and the packets' overhead: too little for layer 0 at 20 frames/s (150 kbit/s
    // of payload), enough for it at 10 (75 kbit/s).
    show(&mut bed, b, &track, 320, 180);
    bed.links.insert(b, Link::new(200_000));
    let capped = bed.run_until(secs(40.0), |bed| {
        let since = bed.now - secs(3.0);
        let recent: Vec<&Received> = bed.clients[b]
            .video_from(&ida)
            .iter()
            .filter(|p| p.at >= since)
            .collect();
        bed.now - bed.start > secs(5.0)
            && recent.len() > 20
            && recent.iter().all(|p| p.temporal < 2)
    });
    let video = bed.clients[b].video_from(&ida);
    let tail: Vec<(u32, u8)> = video
        .iter()
        .rev()
        .take(12)
        .map(|p| (p.frame, p.temporal))
        .collect();
    assert!(
        capped,
        "bob's video was not reduced to its lower temporal layers: last frames {tail:?}, stats {:?}",
        bed.engine.stats()
    );
    let reduced_at = bed.now;
    bed.run(secs(3.0));
    let video = bed.clients[b].video_from(&ida);
    let frames: std::collections::BTreeMap<u32, u8> = video
        .iter()
        .filter(|p| p.at >= reduced_at)
        .map(|p| (p.frame, p.temporal))
        .collect();
    // Temporal layer 0 alone is 5 frames a second; a paused video gets none.
    assert!(
        frames.len() >= 10,
        "bob gets {} frames in 3 s: paused rather than reduced",
        frames.len()
    );
    assert!(
        frames.values().all(|t| *t < 2),
        "temporal layer 2 still forwarded: {frames:?}"
    );
    // What the server sends is still a gap-free stream of whole pictures (the thin link itself
    // loses some, which NACKs bring back).
    bed.assert_sent_gap_free(b);
    assert_pictures_end_at("bob on a thin link", video, reduced_at, 0);

    // The link widens: every frame again.
    bed.links.remove(&b);
    let widened = bed.now;
    assert!(
        bed.run_until(secs(20.0), |bed| bed.clients[b]
            .video_from(&ida)
            .iter()
            .any(|p| p.at >= widened && p.temporal == 2)),
        "the frame rate did not come back"
    );
    bed.assert_sent_gap_free(b);
}
