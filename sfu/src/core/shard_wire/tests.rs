use super::*;
use str0m::format::{Codec, CodecConfig};
use str0m::media::{MediaKind, Mid, Rid};

use crate::core::event::{LeaveReason, ParticipantView, TrackSource, TrackView};
use crate::core::forward::av1::tests::CHROMIUM_L3T3_KEY;
use crate::core::quality::Quality;
use crate::core::shard::TrackSpec;

fn header(pt: u8, seq: u64, ts: u32, ssrc: u32, marker: bool) -> RtpHeader {
    RtpHeader {
        marker,
        payload_type: pt.into(),
        sequence_number: seq as u16,
        timestamp: ts,
        ssrc: ssrc.into(),
        ..RtpHeader::default()
    }
}

fn relayed(track: u64, layer: u8, seq: u64, header: RtpHeader, payload: &[u8]) -> Relayed {
    Relayed {
        track,
        layer,
        packet: Packet {
            seq_no: seq.into(),
            header,
            payload: payload.into(),
            timestamp: Instant::now(),
        },
    }
}

fn audio_packet() -> Relayed {
    let mut h = header(111, 70_000, 960_000, 0x1234_5678, true);
    h.ext_vals.audio_level = Some(-37);
    h.ext_vals.voice_activity = Some(true);
    relayed(3, 0, 70_000, h, &[0xfc, 1, 2, 3, 4, 5])
}

fn av1_packet() -> Relayed {
    // Rolled over three times: the header has the low 16 bits.
    let seq = (3 << 16) + 5;
    let mut h = header(45, seq, 90_000, 0xdead_beef, false);
    h.ext_vals.video_orientation = Some(VideoOrientation::Deg270);
    h.ext_vals.video_content_type = Some(1);
    let dd = DependencyDescriptor::parse(&CHROMIUM_L3T3_KEY).expect("a valid descriptor");
    h.ext_vals.user_values.set(dd);
    relayed(9, 2, seq, h, &[0x18; 1200])
}

fn malformed_dd_packet() -> Relayed {
    let mut h = header(45, 6, 90_000, 0xdead_beef, true);
    h.ext_vals.user_values.set(DdMalformed);
    relayed(9, 1, 6, h, &[])
}

fn participant(tracks: bool) -> ParticipantView {
    ParticipantView {
        id: "p-1".into(),
        name: "Zoë \"the\" tester".into(),
        identity: Some("zoe@example.com".into()),
        metadata: None,
        tracks: if tracks {
            vec![TrackView {
                id: "TR_1".into(),
                kind: MediaKind::Video,
                muted: true,
                source: TrackSource::Screen,
            }]
        } else {
            Vec::new()
        },
    }
}

fn video_spec() -> TrackSpec {
    let config = CodecConfig::new_with_defaults();
    let params = config.params().to_vec();
    let codecs = params
        .iter()
        .filter(|p| matches!(p.spec().codec, Codec::Vp8 | Codec::H264))
        .copied()
        .collect::<Vec<_>>();
    assert!(codecs.len() >= 2);
    TrackSpec {
        key: 42,
        id: "TR_video".into(),
        kind: MediaKind::Video,
        mid: Mid::from("1"),
        rids: vec![
            Some(Rid::from("q")),
            Some(Rid::from("h")),
            Some(Rid::from("f")),
        ],
        codecs,
        params,
        muted: false,
        source: TrackSource::Camera,
        priority: 3,
        publisher_mask: Some(0b011),
    }
}

fn audio_spec() -> TrackSpec {
    TrackSpec {
        key: 7,
        id: "TR_audio".into(),
        kind: MediaKind::Audio,
        mid: Mid::from("0"),
        rids: vec![None],
        codecs: Vec::new(),
        params: CodecConfig::new_with_defaults().params().to_vec(),
        muted: true,
        source: TrackSource::Microphone,
        priority: 0,
        publisher_mask: None,
    }
}

/// One or more messages of every variant, with realistic values.
fn samples() -> Vec<ShardMessage> {
    let mut v = vec![
        ShardMessage::Joined {
            room: "room-1".into(),
            participant: participant(false),
        },
        ShardMessage::Updated {
            room: "room-1".into(),
            participant: participant(true),
        },
        ShardMessage::Published {
            room: "room-1".into(),
            publisher: "p-1".into(),
            track: Box::new(video_spec()),
        },
        ShardMessage::Published {
            room: "room-1".into(),
            publisher: "p-1".into(),
            track: Box::new(audio_spec()),
        },
        ShardMessage::Reconnecting {
            room: "room-1".into(),
            participant: "p-1".into(),
            reconnecting: true,
        },
        ShardMessage::Reconnecting {
            room: "room-1".into(),
            participant: "p-1".into(),
            reconnecting: false,
        },
        ShardMessage::Unpublished { track: 42 },
        ShardMessage::Muted {
            track: u64::MAX,
            muted: true,
        },
        ShardMessage::PublisherLayers {
            track: 42,
            mask: 0b101,
        },
        ShardMessage::Media(Vec::new()),
        ShardMessage::Media(vec![audio_packet(), av1_packet(), malformed_dd_packet()]),
        ShardMessage::Needs { track: 42, mask: 0 },
        ShardMessage::Keyframe {
            track: 42,
            layer: 2,
        },
        ShardMessage::Data {
            room: "room-1".into(),
            label: "_reliable".into(),
            binary: true,
            to: Some(vec!["p-2".into(), "p-3".into()]),
            data: Arc::from(&[0u8, 255, 7, b'{'][..]),
        },
        ShardMessage::Data {
            room: "room-1".into(),
            label: "chat".into(),
            binary: false,
            to: None,
            data: Arc::from(&b"{\"from\":\"p-1\",\"text\":\"hi\"}"[..]),
        },
        ShardMessage::Data {
            room: "r".into(),
            label: String::new(),
            binary: false,
            to: Some(Vec::new()),
            data: Arc::from(&[][..]),
        },
    ];
    for reason in LeaveReason::ALL {
        v.push(ShardMessage::Left {
            room: "room-1".into(),
            participant: "p-1".into(),
            reason,
        });
    }
    for quality in [
        Quality::Lost,
        Quality::Poor,
        Quality::Good,
        Quality::Excellent,
    ] {
        v.push(ShardMessage::Quality {
            room: "room-1".into(),
            participant: "p-1".into(),
            quality,
        });
    }
    v
}

fn encoded(msg: &ShardMessage) -> Vec<u8> {
    let mut out = Vec::new();
    encode(msg, &mut out);
    out
}

/// `a` and `b` carry the same packets, with `b` stamped `now`.
fn assert_same_packets(a: &[Relayed], b: &[Relayed], now: Instant) {
    assert_eq!(a.len(), b.len());
    for (a, b) in a.iter().zip(b) {
        assert_eq!(a.track, b.track);
        assert_eq!(a.layer, b.layer);
        assert_eq!(a.packet.seq_no, b.packet.seq_no);
        assert_eq!(a.packet.payload, b.packet.payload);
        assert_eq!(b.packet.timestamp, now);
        let (ha, hb) = (&a.packet.header, &b.packet.header);
        assert_eq!(ha, hb);
        assert_eq!(format!("{ha:?}"), format!("{hb:?}"));
        let (ea, eb) = (&ha.ext_vals, &hb.ext_vals);
        assert_eq!(ea.audio_level, eb.audio_level);
        assert_eq!(ea.voice_activity, eb.voice_activity);
        assert_eq!(ea.video_orientation, eb.video_orientation);
        assert_eq!(ea.video_content_type, eb.video_content_type);
        assert_eq!(
            ea.user_values.get::<DependencyDescriptor>(),
            eb.user_values.get::<DependencyDescriptor>()
        );
        assert_eq!(
            ea.user_values.get::<DdMalformed>().is_some(),
            eb.user_values.get::<DdMalformed>().is_some()
        );
    }
}

#[test]
fn every_variant_round_trips() {
    let now = Instant::now();
    let mut tags = std::collections::BTreeSet::new();
    for msg in samples() {
        let buf = encoded(&msg);
        tags.insert(buf[0]);
        let back = decode(&buf, now).unwrap_or_else(|e| panic!("{msg:?}: {e}"));
        match (&msg, &back) {
            (ShardMessage::Media(a), ShardMessage::Media(b)) => assert_same_packets(a, b, now),
            // Everything else has a faithful Debug (PayloadParams shows every field).
            _ => assert_eq!(format!("{msg:?}"), format!("{back:?}")),
        }
        // Encoding is deterministic: the decoded message encodes to the same bytes.
        assert_eq!(encoded(&back), buf, "{msg:?}");
    }
    assert_eq!(tags.len(), 13, "every variant is sampled");
}

#[test]
fn media_is_compact_and_keeps_the_descriptor() {
    let audio = encoded(&ShardMessage::Media(vec![audio_packet()]));
    // Tag, count, fixed header, level and activity, payload length, payload.
    assert_eq!(audio.len(), 1 + 2 + 28 + 2 + 2 + 6);
    let now = Instant::now();
    let Ok(ShardMessage::Media(batch)) =
        decode(&encoded(&ShardMessage::Media(vec![av1_packet()])), now)
    else {
        panic!("media");
    };
    let dd = batch[0]
        .packet
        .header
        .ext_vals
        .user_values
        .get::<DependencyDescriptor>()
        .expect("descriptor");
    assert!(dd.structure.is_some());
    assert_eq!(&dd.bytes[..], &CHROMIUM_L3T3_KEY[..]);
    assert_eq!(batch[0].packet.header.sequence_number, 5);
    assert_eq!(*batch[0].packet.seq_no, (3 << 16) + 5);
}

#[test]
fn the_length_of_a_packet_is_known_before_encoding() {
    for p in [audio_packet(), av1_packet(), malformed_dd_packet()] {
        let len = media_packet_len(&p);
        assert_eq!(encoded(&ShardMessage::Media(vec![p])).len(), 3 + len);
    }
}

#[test]
fn every_strict_prefix_fails() {
    for msg in samples() {
        let buf = encoded(&msg);
        for len in 0..buf.len() {
            assert!(
                decode(&buf[..len], Instant::now()).is_err(),
                "{msg:?} cut at {len} of {}",
                buf.len()
            );
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    for msg in samples() {
        for extra in [0u8, b' ', b'\n', 1] {
            let mut buf = encoded(&msg);
            buf.push(extra);
            assert!(
                matches!(decode(&buf, Instant::now()), Err(WireError::Trailing)),
                "{msg:?} with {extra}"
            );
        }
    }
}

#[test]
fn limits_are_enforced() {
    let now = Instant::now();
    let h = header(96, 1, 0, 1, false);
    let one = encoded(&ShardMessage::Media(vec![relayed(1, 0, 1, h, &[1, 2, 3])]));
    // The count, after the tag.
    let mut buf = one.clone();
    buf[1..3].copy_from_slice(&(MAX_MEDIA_PACKETS as u16 + 1).to_be_bytes());
    assert!(matches!(
        decode(&buf, now),
        Err(WireError::TooLong("packets"))
    ));
    // The payload length, after the tag, the count and the fixed header (no extensions).
    let mut buf = one.clone();
    let at = 1 + 2 + 28;
    buf[at..at + 2].copy_from_slice(&(MAX_PAYLOAD as u16 + 1).to_be_bytes());
    buf.extend(std::iter::repeat_n(0, MAX_PAYLOAD + 1 - 3));
    assert!(matches!(
        decode(&buf, now),
        Err(WireError::TooLong("payload"))
    ));
    // A payload of exactly the limit is fine.
    let h = header(96, 1, 0, 1, false);
    let max = encoded(&ShardMessage::Media(vec![relayed(
        1,
        0,
        1,
        h,
        &[7; MAX_PAYLOAD],
    )]));
    assert!(decode(&max, now).is_ok());
    // A payload type above 7 bits, an unknown flag, an orientation that is none.
    let mut buf = one.clone();
    buf[1 + 2 + 8 + 1 + 8 + 4 + 1] = 128;
    assert!(matches!(
        decode(&buf, now),
        Err(WireError::Invalid("payload type"))
    ));
    let mut buf = one.clone();
    buf[1 + 2 + 27] = 1 << 5;
    assert!(matches!(
        decode(&buf, now),
        Err(WireError::Invalid("extension flags"))
    ));
    let mut h = header(96, 1, 0, 1, false);
    h.ext_vals.video_orientation = Some(VideoOrientation::Deg90);
    let mut buf = encoded(&ShardMessage::Media(vec![relayed(1, 0, 1, h, &[])]));
    buf[1 + 2 + 28] = 4;
    assert!(matches!(
        decode(&buf, now),
        Err(WireError::Invalid("video orientation"))
    ));
    // A boolean that is neither 0 nor 1.
    let mut buf = encoded(&ShardMessage::Muted {
        track: 1,
        muted: true,
    });
    buf[9] = 2;
    assert!(matches!(
        decode(&buf, now),
        Err(WireError::Invalid("boolean"))
    ));
    assert!(matches!(decode(&[], now), Err(WireError::Truncated)));
    assert!(matches!(decode(&[0], now), Err(WireError::UnknownTag(0))));
    assert!(matches!(
        decode(&[200, 1, 2], now),
        Err(WireError::UnknownTag(200))
    ));
}

#[test]
fn encode_keeps_within_the_limits() {
    let now = Instant::now();
    let h = header(96, 1, 0, 1, false);
    let mut batch: Vec<Relayed> = (0..MAX_MEDIA_PACKETS as u64 + 10)
        .map(|i| relayed(1, 0, i, h.clone(), &[1]))
        .collect();
    batch.insert(0, relayed(1, 0, 99, h.clone(), &[0; MAX_PAYLOAD + 1]));
    let buf = encoded(&ShardMessage::Media(batch));
    let Ok(ShardMessage::Media(back)) = decode(&buf, now) else {
        panic!("media");
    };
    assert_eq!(back.len(), MAX_MEDIA_PACKETS);
    assert_eq!(
        *back[0].packet.seq_no, 0,
        "the oversized packet is left out"
    );
}

#[test]
fn bad_ids_and_payload_types_in_a_track_are_refused() {
    let now = Instant::now();
    let publish = |edit: &dyn Fn(&mut serde_json::Value)| {
        let buf = encoded(&ShardMessage::Published {
            room: "r".into(),
            publisher: "p".into(),
            track: Box::new(video_spec()),
        });
        let mut v: serde_json::Value = serde_json::from_slice(&buf[1..]).expect("JSON");
        edit(&mut v);
        let mut buf = vec![PUBLISHED];
        buf.extend(serde_json::to_vec(&v).expect("JSON"));
        decode(&buf, now)
    };
    assert!(publish(&|_| {}).is_ok());
    let bad_mid = publish(&|v| v["track"]["mid"] = "a\u{e9}".into());
    assert!(matches!(bad_mid, Err(WireError::Invalid("mid"))));
    let long_rid = publish(&|v| v["track"]["rids"][0] = "123456789".into());
    assert!(matches!(long_rid, Err(WireError::Invalid("rid"))));
    let many = publish(&|v| {
        v["track"]["rids"] = serde_json::Value::Array(vec![serde_json::Value::Null; 9])
    });
    assert!(matches!(many, Err(WireError::Invalid("layer count"))));
    let none = publish(&|v| v["track"]["rids"] = serde_json::json!([]));
    assert!(matches!(none, Err(WireError::Invalid("layer count"))));
    let pt = publish(&|v| v["track"]["params"][0]["pt"] = 200.into());
    assert!(matches!(pt, Err(WireError::Invalid("payload type"))));
    let kind = publish(&|v| v["track"]["kind"] = "data".into());
    assert!(matches!(kind, Err(WireError::Json(_))));
    let rate = publish(&|v| v["track"]["params"][0]["spec"]["clock_rate"] = 0.into());
    assert!(matches!(rate, Err(WireError::Json(_))));
}

/// xorshift64: a fixed sequence, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

#[test]
fn random_and_mutated_buffers_never_panic() {
    let now = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Random bytes behind each tag (and a few unknown ones).
    for i in 0..4000 {
        let len = (rng.next() % 96) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(first) = buf.first_mut() {
            *first = (i % 15) as u8;
        }
        let _ = decode(&buf, now);
    }
    // Valid messages with a few bytes changed, cut or grown.
    let valid: Vec<Vec<u8>> = samples().iter().map(encoded).collect();
    for _ in 0..4000 {
        let mut buf = valid[(rng.next() % valid.len() as u64) as usize].clone();
        for _ in 0..1 + rng.next() % 4 {
            if buf.is_empty() {
                break;
            }
            let at = (rng.next() % buf.len() as u64) as usize;
            buf[at] = rng.next() as u8;
        }
        match rng.next() % 4 {
            0 => buf.truncate((rng.next() % (buf.len() as u64 + 1)) as usize),
            1 => buf.push(rng.next() as u8),
            _ => {}
        }
        let _ = decode(&buf, now);
    }
}
