//! VP9 SVC: one stream with three spatial layers, each subscriber getting the layers its
//! rendered size needs, on the virtual network.

mod virtual_net;

use std::collections::BTreeMap;
use std::time::Instant;

use signal::ClientSignal;
use str0m::format::Codec;
use virtual_net::{assert_gap_free, secs, Bed, Received};

/// A VP9 SVC publisher and two subscribers.
fn svc_room() -> (Bed, usize, usize, usize) {
    let mut bed = Bed::new();
    bed.next_codecs = vec![Codec::Vp9];
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

#[test]
fn each_subscriber_gets_the_spatial_layers_its_size_needs() {
    let (mut bed, a, b, c) = svc_room();
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
    eprintln!("both at spatial layer 2 after {:?}", bed.now - bed.start);
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

    // The dropped layers leave no hole in bob's sequence, across all the steps, and the
    // picture ids of the one stream go through as the publisher numbered them.
    assert_gap_free("bob", video);
    assert!(
        video
            .iter()
            .all(|p| p.pid == Some((p.frame & 0x7fff) as u16)),
        "picture ids renumbered"
    );
    assert_gap_free("cat", bed.clients[c].video_from(&ida));
    assert!(video[0].keyframe, "starts on a keyframe");
}
