//! Video codecs: the answer to a publisher keeps the order of its offer (or the room's policy),
//! subscribers are offered only the codec the publisher sends, and a subscriber that cannot take
//! it is told.
//!
//! The table tests answer a real Chromium offer (`fixtures/chromium-offer.sdp`: audio, VP8 /
//! H.264 / AV1 / VP9 video in three simulcast layers, a data channel), reordered the way
//! `RTCRtpTransceiver.setCodecPreferences` reorders it. The others run str0m clients on the
//! virtual network.

mod virtual_net;

use sfu::core::{JoinSpec, VideoCodecs};
use signal::protocol::{ServerMessage, StreamStateKind};
use signal::ClientSignal;
use str0m::format::Codec;
use str0m::media::MediaKind;
use virtual_net::{assert_gap_free, secs, Bed};

/// Chromium 156's offer with its default codec order (VP8 first), lines ending in CRLF.
fn chromium_offer() -> String {
    include_str!("fixtures/chromium-offer.sdp").replace('\n', "\r\n")
}

/// The video section of an SDP: its `m=` line's payload types and its lines.
fn video_section(sdp: &str) -> (Vec<String>, Vec<&str>) {
    let lines: Vec<&str> = sdp.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("m=video "))
        .expect("a video m-line");
    let end = lines[start + 1..]
        .iter()
        .position(|l| l.starts_with("m="))
        .map_or(lines.len(), |e| start + 1 + e);
    let pts = lines[start].split(' ').skip(3).map(str::to_owned).collect();
    (pts, lines[start..end].to_vec())
}

fn encoding<'a>(lines: &[&'a str], pt: &str) -> &'a str {
    let prefix = format!("a=rtpmap:{pt} ");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.split('/').next())
        .unwrap_or("?")
}

fn fmtp<'a>(lines: &[&'a str], pt: &str) -> &'a str {
    let prefix = format!("a=fmtp:{pt} ");
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or("")
}

/// The video codecs of an SDP in its order, retransmissions left out: `H264 42e01f/1`, `VP8`.
fn video_codecs(sdp: &str) -> Vec<String> {
    let (pts, lines) = video_section(sdp);
    pts.iter()
        .filter(|pt| encoding(&lines, pt) != "rtx")
        .map(|pt| {
            let name = encoding(&lines, pt);
            let f = fmtp(&lines, pt);
            let param = |key: &str| {
                f.split(';')
                    .find_map(|p| p.strip_prefix(key))
                    .unwrap_or("")
                    .to_owned()
            };
            if name == "H264" {
                format!(
                    "H264 {}/{}",
                    param("profile-level-id="),
                    param("packetization-mode=")
                )
            } else {
                name.to_owned()
            }
        })
        .collect()
}

/// The offer as `setCodecPreferences` with `encoding`'s codecs first (the others after them)
/// makes it: only the order of the video `m=` line changes.
fn prefer(sdp: &str, encoding_name: &str) -> String {
    reorder(sdp, encoding_name, true)
}

/// The offer with only `encoding`'s codecs (and their retransmissions) left on the video m-line.
fn only(sdp: &str, encoding_name: &str) -> String {
    reorder(sdp, encoding_name, false)
}

fn reorder(sdp: &str, encoding_name: &str, keep_others: bool) -> String {
    let (pts, lines) = video_section(sdp);
    let apt = |pt: &str| {
        fmtp(&lines, pt)
            .strip_prefix("apt=")
            .map(str::to_owned)
            .unwrap_or_default()
    };
    let wanted = |pt: &str| {
        let primary = if encoding(&lines, pt) == "rtx" {
            apt(pt)
        } else {
            pt.to_owned()
        };
        encoding(&lines, &primary) == encoding_name
    };
    let mut order: Vec<&String> = pts.iter().filter(|pt| wanted(pt)).collect();
    if keep_others {
        order.extend(pts.iter().filter(|pt| !wanted(pt)));
    }
    let list: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
    let old = lines[0];
    let new = format!("m=video 9 UDP/TLS/RTP/SAVPF {}", list.join(" "));
    // Codecs left out lose their lines too.
    let gone = |l: &str| {
        ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().any(|p| {
            l.strip_prefix(p)
                .and_then(|r| r.split(' ').next())
                .is_some_and(|pt| pts.iter().any(|x| x == pt) && !list.contains(&pt))
        })
    };
    sdp.split("\r\n")
        .filter(|l| !gone(l))
        .map(|l| if l == old { new.as_str() } else { l })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// What the server says to a participant that joins a room with `policy` and offers `offer`:
/// the answer (if any) and the error codes.
fn answer_to(policy: &[&str], offer: String) -> (Option<String>, Vec<String>) {
    let mut bed = Bed::new();
    let now = bed.now;
    let mut spec = JoinSpec::new("p", "r", "P");
    spec.video_codecs = VideoCodecs::parse(policy).unwrap();
    bed.engine.join(now, spec).unwrap();
    bed.engine
        .handle_signal(now, "p", ClientSignal::Offer(offer));
    let (mut answer, mut errors) = (None, Vec::new());
    while let Some((_, msg)) = bed.engine.poll_signal() {
        match msg {
            ServerMessage::Answer { sdp } => answer = Some(sdp),
            ServerMessage::Error { code, .. } => errors.push(code.as_str().to_owned()),
            _ => {}
        }
    }
    (answer, errors)
}

const H264_ORDER: [&str; 6] = [
    "H264 42001f/1",
    "H264 42001f/0",
    "H264 42e01f/1",
    "H264 42e01f/0",
    "H264 4d001f/1",
    "H264 4d001f/0",
];

/// H.264 and VP8 (first or after H.264), then AV1 and VP9 (profiles 0 and 2) when `vp9`: the
/// offer's order.
fn with_vp8(first: bool, vp9: bool) -> Vec<String> {
    let mut v: Vec<String> = H264_ORDER.iter().map(|s| s.to_string()).collect();
    if first {
        v.insert(0, "VP8".into());
    } else {
        v.push("VP8".into());
    }
    if vp9 {
        v.extend(["AV1".into(), "VP9".into(), "VP9".into()]);
    }
    v
}

#[test]
fn the_answer_lists_the_video_codecs_in_the_offers_order_unless_the_room_says_otherwise() {
    let offer = chromium_offer();
    let h264_only: Vec<String> = H264_ORDER.iter().map(|s| s.to_string()).collect();
    let cases: Vec<(&str, &[&str], String, Vec<String>)> = vec![
        ("VP8 first", &[], offer.clone(), with_vp8(true, true)),
        (
            "H.264 first",
            &[],
            prefer(&offer, "H264"),
            with_vp8(false, true),
        ),
        ("VP9 first", &[], prefer(&offer, "VP9"), {
            let mut v = vec!["VP9".to_string(), "VP9".into()];
            v.extend(with_vp8(true, false));
            v.push("AV1".into());
            v
        }),
        ("AV1 first", &[], prefer(&offer, "AV1"), {
            let mut v = vec!["AV1".to_string()];
            v.extend(with_vp8(true, false));
            v.extend(["VP9".into(), "VP9".into()]);
            v
        }),
        (
            "an AV1-only room, VP8 first",
            &["av1"],
            offer.clone(),
            vec!["AV1".into()],
        ),
        (
            "a VP9-only room, VP8 first",
            &["vp9"],
            offer.clone(),
            vec!["VP9".into(), "VP9".into()],
        ),
        ("only H.264", &[], only(&offer, "H264"), h264_only.clone()),
        (
            "a VP8-only room, H.264 first",
            &["vp8"],
            prefer(&offer, "H264"),
            vec!["VP8".into()],
        ),
        (
            "an H.264-only room, VP8 first",
            &["h264"],
            offer.clone(),
            h264_only,
        ),
        (
            "a room preferring H.264, VP8 first",
            &["h264", "vp8"],
            offer.clone(),
            with_vp8(false, false),
        ),
        (
            "a room preferring VP8, H.264 first",
            &["vp8", "h264"],
            prefer(&offer, "H264"),
            with_vp8(true, false),
        ),
    ];
    for (name, policy, offer, want) in cases {
        let (answer, errors) = answer_to(policy, offer);
        let answer = answer.unwrap_or_else(|| panic!("{name}: no answer ({errors:?})"));
        assert!(errors.is_empty(), "{name}: {errors:?}");
        assert_eq!(video_codecs(&answer), want, "{name}");
        // Every codec keeps its retransmission payload type and its parameters.
        let (pts, lines) = video_section(&answer);
        for pt in pts.iter().filter(|pt| encoding(&lines, pt) == "rtx") {
            let apt = fmtp(&lines, pt).strip_prefix("apt=").unwrap();
            assert!(
                pts.iter().any(|p| p == apt),
                "{name}: rtx {pt} without {apt}"
            );
        }
        assert!(answer.contains("a=simulcast:recv q;h;f"), "{name}");
    }
}

#[test]
fn a_room_that_requires_h264_refuses_a_vp8_only_video_and_keeps_the_audio() {
    let (answer, errors) = answer_to(&["h264"], only(&chromium_offer(), "VP8"));
    assert_eq!(errors, ["unsupported_codec"]);
    let answer = answer.expect("the offer is still answered");
    let (_, video) = video_section(&answer);
    assert!(video.contains(&"a=inactive"), "video: {video:?}");
    let audio = answer
        .split("m=video")
        .next()
        .and_then(|s| s.split("m=audio").nth(1))
        .unwrap();
    assert!(audio.contains("a=recvonly"), "audio still published");
}

/// Two str0m clients on the virtual network: `pub_codecs` and `sub_codecs` are their video
/// codecs in order of preference.
fn two_clients(policy: &[&str], pub_codecs: &[Codec], sub_codecs: &[Codec]) -> (Bed, usize, usize) {
    let mut bed = Bed::new();
    let policy = VideoCodecs::parse(policy).unwrap();
    bed.next_codecs = pub_codecs.to_vec();
    let p = bed.join_with("r", "pub", true, |s| s.video_codecs = policy.clone());
    bed.next_codecs = sub_codecs.to_vec();
    let s = bed.join_with("r", "sub", true, |s| s.video_codecs = policy.clone());
    (bed, p, s)
}

/// The last offer the server sent a client, by its SDP.
fn last_offer(bed: &Bed, i: usize) -> String {
    bed.clients[i]
        .messages
        .iter()
        .rev()
        .find_map(|m| match m {
            ServerMessage::Offer { sdp } => Some(sdp.clone()),
            _ => None,
        })
        .expect("an offer from the server")
}

#[test]
fn an_h264_publisher_reaches_its_subscriber_in_h264_with_the_same_parameters() {
    let (mut bed, p, s) = two_clients(&[], &[Codec::H264, Codec::Vp8], &[Codec::Vp8, Codec::H264]);
    let (idp, ids) = (bed.id(p), bed.id(s));
    let flowed = bed.run_until(secs(5.0), |b| {
        b.clients[s].video_from(&idp).len() > 40 && b.clients[p].video_from(&ids).len() > 40
    });
    assert!(
        flowed,
        "video did not flow both ways: {} and {} packets; stats {:?}",
        bed.clients[s].video_from(&idp).len(),
        bed.clients[p].video_from(&ids).len(),
        bed.engine.stats()
    );

    // The publisher sends what the answer put first: its own first choice.
    let sent = bed.clients[p].video_pt();
    let sent = bed.clients[p].codec_of(*sent).unwrap();
    assert_eq!(sent.spec().codec, Codec::H264);

    // The subscriber was offered that codec alone, and receives it.
    let offer = last_offer(&bed, s);
    // The video m-line that carries the publisher's track (its msid names the publisher).
    let at = offer
        .split("m=")
        .filter(|s| s.starts_with("video ") && s.contains(&format!("a=msid:{idp} ")))
        .map(|s| format!("m={s}"))
        .next()
        .expect("an m-line for the publisher's video");
    let (pts, lines) = video_section(&at);
    let primaries: Vec<&String> = pts
        .iter()
        .filter(|pt| encoding(&lines, pt) != "rtx")
        .collect();
    assert_eq!(primaries.len(), 1, "one codec offered: {:?}", lines[0]);
    assert_eq!(encoding(&lines, primaries[0]), "H264");
    let video = bed.clients[s].video_from(&idp);
    assert!(video[0].keyframe, "starts on a keyframe: {:?}", &video[..3]);
    assert_gap_free("pub -> sub video", video);
    let got = bed.clients[s].codec_of(video.last().unwrap().pt).unwrap();
    assert_eq!(got.spec().codec, Codec::H264);
    let (f_sent, f_got) = (sent.spec().format, got.spec().format);
    assert_eq!(f_got.profile_level_id, f_sent.profile_level_id);
    assert_eq!(f_got.packetization_mode, f_sent.packetization_mode);
    assert_eq!(
        fmtp(&lines, primaries[0]),
        format!(
            "level-asymmetry-allowed=1;packetization-mode={};profile-level-id={:06x}",
            f_sent.packetization_mode.unwrap(),
            f_sent.profile_level_id.unwrap()
        )
    );

    // The other way round the subscriber's own first choice, VP8, goes through.
    let back = bed.clients[p].video_from(&ids);
    let got = bed.clients[p].codec_of(back.last().unwrap().pt).unwrap();
    assert_eq!(got.spec().codec, Codec::Vp8);
    assert!(bed.clients[s].audio_from(&idp).len() > 20);
}

#[test]
fn a_subscriber_without_the_publishers_codec_is_told_and_gets_the_audio() {
    let (mut bed, p, s) = two_clients(&[], &[Codec::H264], &[Codec::Vp8]);
    let idp = bed.id(p);
    assert!(bed.run_until(secs(5.0), |b| b.clients[s].audio_from(&idp).len() > 40));
    bed.run(secs(1.0));
    assert!(
        bed.clients[s].video_from(&idp).is_empty(),
        "no undecodable video is sent"
    );
    let paused = bed.clients[s].messages.iter().any(|m| {
        matches!(m, ServerMessage::StreamState { participant_id, state, reason, .. }
            if *participant_id == idp && *state == StreamStateKind::Paused
                && reason.as_deref() == Some("codec"))
    });
    assert!(
        paused,
        "stream_state paused codec: {:?}",
        bed.clients[s].messages
    );
    // Nor the other way: the H.264-only publisher cannot take the subscriber's VP8.
    assert!(bed.clients[p].video_from(&bed.id(s)).is_empty());
}

#[test]
fn a_vp8_only_publisher_in_an_h264_room_publishes_its_audio_alone() {
    let (mut bed, p, s) = two_clients(&["h264"], &[Codec::Vp8], &[Codec::H264]);
    let (idp, ids) = (bed.id(p), bed.id(s));
    assert!(bed.run_until(secs(5.0), |b| b.clients[s].audio_from(&idp).len() > 40));
    let refused = bed.clients[p].messages.iter().any(
        |m| matches!(m, ServerMessage::Error { code, .. } if code.as_str() == "unsupported_codec"),
    );
    assert!(refused, "{:?}", bed.clients[p].messages);
    let kinds: Vec<String> = bed.clients[s]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::TrackPublished {
                participant_id,
                track,
            } if *participant_id == idp => Some(format!("{:?}", track.kind)),
            ServerMessage::Joined { participants, .. } => participants
                .iter()
                .find(|x| x.id == idp)
                .map(|x| format!("{:?}", x.tracks.iter().map(|t| t.kind).collect::<Vec<_>>())),
            _ => None,
        })
        .collect();
    assert!(
        kinds.iter().all(|k| !k.contains("Video")),
        "no video track of the VP8 publisher: {kinds:?}"
    );
    assert!(bed.clients[s].video_from(&idp).is_empty());
    // Nor can the VP8-only participant take the other's H.264.
    assert!(bed.clients[p].video_from(&ids).is_empty());
    assert_eq!(bed.clients[p].mids.get(&(ids, MediaKind::Video)), None);
}

#[test]
fn a_chromium_offer_is_answered_with_red_first_on_its_microphone() {
    let (answer, errors) = answer_to(&[], chromium_offer());
    assert!(errors.is_empty(), "{errors:?}");
    let answer = answer.expect("an answer");
    let audio = answer
        .split("\r\nm=")
        .find(|s| s.starts_with("audio "))
        .expect("an audio section");
    let pts: Vec<&str> = audio.lines().next().unwrap().split(' ').skip(3).collect();
    let red = audio
        .lines()
        .find_map(|l| {
            l.strip_prefix("a=rtpmap:")
                .filter(|r| r.contains(" red/48000"))
        })
        .and_then(|r| r.split(' ').next())
        .expect("RED in the answer");
    assert_eq!(pts.first().copied(), Some(red), "RED first: {audio}");
}

#[test]
fn a_room_that_prefers_vp9_gets_vp9_from_a_publisher_that_lists_it_second() {
    let both = [Codec::Vp8, Codec::Vp9];
    let (mut bed, p, s) = two_clients(&["vp9", "vp8"], &both, &both);
    let idp = bed.id(p);
    assert!(
        bed.run_until(secs(5.0), |b| b.clients[s].video_from(&idp).len() > 40),
        "no video; stats {:?}",
        bed.engine.stats()
    );
    let sent = bed.clients[p].video_pt();
    assert_eq!(
        bed.clients[p].codec_of(*sent).unwrap().spec().codec,
        Codec::Vp9
    );
    let video = bed.clients[s].video_from(&idp);
    assert!(video[0].keyframe, "starts on a keyframe: {:?}", &video[..3]);
    assert_gap_free("pub -> sub video", video);
    let got = bed.clients[s].codec_of(video.last().unwrap().pt).unwrap();
    assert_eq!(got.spec().codec, Codec::Vp9);
    // One source, no switch: the picture ids go through as they were sent.
    let pids: Vec<u16> = video.iter().filter_map(|v| v.pid).collect();
    assert_eq!(pids.len(), video.len());
    assert!(pids
        .windows(2)
        .all(|w| w[1].wrapping_sub(w[0]) & 0x7fff <= 1));
}

/// The answer to Chromium's offer keeps the header extensions forwarding and the send-side
/// estimate use, with Chromium's ids, and leaves out the absolute send time (read only by a
/// receiver's own estimate) and what the server does not read or write.
#[test]
fn the_answer_keeps_the_header_extensions_the_server_uses() {
    let (answer, errors) = answer_to(&[], chromium_offer());
    assert!(errors.is_empty(), "{errors:?}");
    let answer = answer.expect("an answer");
    let mut extmaps: Vec<&str> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=extmap:"))
        .collect();
    extmaps.sort_unstable();
    extmaps.dedup();
    assert_eq!(
        extmaps,
        [
            "1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
            "10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
            "11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
            "12 https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension",
            "13 urn:3gpp:video-orientation",
            "3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
            "4 urn:ietf:params:rtp-hdrext:sdes:mid",
        ]
    );
}
