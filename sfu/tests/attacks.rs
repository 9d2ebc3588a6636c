//! Attacks on a running call, on the virtual network: an on-path observer forging STUN, and a
//! participant with a valid token abusing negotiation. The call must not notice.

mod virtual_net;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sfu::core::Transport;
use signal::protocol::{ErrorCode, ServerMessage};
use signal::ClientSignal;
use str0m::ice::{StunMessage, TransId};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};
use virtual_net::{all_receive_all, assert_gap_free, secs, Bed};

fn sha1_hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The server's ICE credentials for client `ci`, as they travel in the answer's SDP.
fn server_ice_creds(bed: &Bed, ci: usize) -> (String, String) {
    let sdp = bed.clients[ci]
        .messages
        .iter()
        .find_map(|m| match m {
            ServerMessage::Answer { sdp } => Some(sdp.clone()),
            _ => None,
        })
        .expect("the client got an answer");
    let attr = |name: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .expect("ICE attribute in the answer")
    };
    (attr("a=ice-ufrag:"), attr("a=ice-pwd:"))
}

/// A binding request naming `ufrag`, signed with `password`.
fn binding_request(ufrag: &str, password: &str, n: u32) -> Vec<u8> {
    let username = format!("{ufrag}:attacker");
    let msg = StunMessage::binding_request(&username, TransId::new(), true, n as u64, n, true);
    let mut buf = vec![0u8; 512];
    let len = msg
        .to_bytes(Some(password.as_bytes()), &mut buf, sha1_hmac)
        .expect("serializes");
    buf.truncate(len);
    buf
}

fn errors(bed: &Bed, ci: usize) -> Vec<(ErrorCode, String)> {
    bed.clients[ci]
        .messages
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Error { code, message, .. } => Some((*code, message.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn forged_stun_naming_a_participant_costs_its_path_nothing() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 2)));
    let (ida, idb) = (bed.id(a), bed.id(b));
    let (ufrag, _) = server_ice_creds(&bed, b);

    // An on-path observer saw bob's server ufrag in clear and sends checks naming it from 2,000
    // addresses of its own, with a MESSAGE-INTEGRITY it cannot know, spread over two seconds.
    let before = bed.clients[b].video_from(&ida).len();
    let forged = 2_000;
    for i in 0..forged {
        let from: SocketAddr = format!("192.0.2.{}:{}", i % 250 + 1, 10_000 + i)
            .parse()
            .unwrap();
        bed.inject(from, &binding_request(&ufrag, "not-the-password", i));
        assert!(!bed.engine.knows_address(Transport::Udp, from));
        if i % 10 == 9 {
            bed.run(Duration::from_millis(10));
        }
    }
    assert_eq!(bed.engine.stats().stun_forged, forged as u64);
    assert!(bed
        .engine
        .knows_address(Transport::Udp, bed.clients[b].addr));

    // Bob saw every packet of the time, in order.
    bed.run(secs(1.0));
    let got = &bed.clients[b].video_from(&ida)[before..];
    assert!(got.len() > 40, "bob received {} video packets", got.len());
    assert_gap_free(
        "bob <- ann during the flood",
        bed.clients[b].video_from(&ida),
    );
    assert_gap_free(
        "ann <- bob during the flood",
        bed.clients[a].video_from(&idb),
    );
}

#[test]
fn signed_checks_from_new_addresses_never_evict_the_address_media_uses() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 2)));
    let ida = bed.id(a);
    let (ufrag, pwd) = server_ice_creds(&bed, b);
    let bob = bed.clients[b].addr;

    // Checks that pass the integrity check (a replay of a captured one would) from 50 new
    // addresses: each is learnt, but bob's own address stays.
    for i in 0..50u32 {
        let from: SocketAddr = format!("192.0.2.7:{}", 20_000 + i).parse().unwrap();
        bed.inject(from, &binding_request(&ufrag, &pwd, i));
        assert!(bed.engine.knows_address(Transport::Udp, from));
        assert!(bed.engine.knows_address(Transport::Udp, bob), "after {i}");
        bed.run(Duration::from_millis(5));
    }
    assert_eq!(bed.engine.stats().stun_forged, 0);
    let before = bed.clients[b].video_from(&ida).len();
    bed.run(secs(1.0));
    assert!(bed.clients[b].video_from(&ida).len() > before + 40);
}

/// An offer with `n` send-only m-lines, from a str0m peer of its own.
fn offer_with_tracks(n: usize) -> String {
    let now = Instant::now();
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(now);
    rtc.add_local_candidate(Candidate::host("192.0.2.66:9".parse().unwrap(), "udp").unwrap());
    let mut api = rtc.sdp_api();
    for i in 0..n {
        let kind = if i % 2 == 0 {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        api.add_media(kind, Direction::SendOnly, None, None, None);
    }
    let (offer, _) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

#[test]
fn an_offer_with_hundreds_of_tracks_is_refused_and_nobody_else_hears_of_it() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let b = bed.join("r", "bob", true);
    let c = bed.join("r", "cat", false);
    // A participant with a valid token, publishing audio and video like everybody.
    let m = bed.join("r", "mal", true);
    assert!(bed.run_until(secs(5.0), |b| all_receive_all(b, 2)
        && b.clients[m].connected));
    let (ida, mal) = (bed.id(a), bed.id(m));
    let victims = [a, b, c];
    let messages_before: Vec<usize> = victims
        .iter()
        .map(|&i| bed.clients[i].messages.len())
        .collect();

    // It offers 400 more tracks at once.
    bed.engine
        .handle_signal(bed.now, &mal, ClientSignal::Offer(offer_with_tracks(400)));
    let mut to_mal = Vec::new();
    let mut to_others = 0;
    while let Some((id, msg)) = bed.engine.poll_signal() {
        if id == mal {
            to_mal.push(msg);
        } else {
            to_others += 1;
        }
    }
    assert_eq!(to_others, 0, "nobody else hears of a refused offer");
    assert!(
        matches!(
            to_mal.as_slice(),
            [ServerMessage::Error {
                code: ErrorCode::LimitExceeded,
                ..
            }]
        ),
        "{to_mal:?}"
    );

    // Up to the limit is fine: it adds six to its two.
    let max = sfu::core::limits::ParticipantLimits::default().max_tracks;
    let offer = {
        let client = &mut bed.clients[m];
        let mut api = client.rtc.sdp_api();
        for _ in 2..max {
            api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        }
        let (offer, pending) = api.apply().expect("an offer");
        client.pending = Some(pending);
        offer.to_sdp_string()
    };
    bed.engine
        .handle_signal(bed.now, &mal, ClientSignal::Offer(offer));
    bed.pump_signals();
    bed.run(secs(0.5));
    for (&v, &n) in victims.iter().zip(&messages_before) {
        let announced = bed.clients[v].messages[n..]
            .iter()
            .filter(|msg| matches!(msg, ServerMessage::TrackPublished { participant_id, .. } if *participant_id == mal))
            .count();
        assert_eq!(announced, max - 2, "client {v}");
    }
    // One more is not.
    bed.engine
        .handle_signal(bed.now, &mal, ClientSignal::Offer(offer_with_tracks(1)));
    bed.pump_signals();
    assert_eq!(
        errors(&bed, m).iter().map(|e| e.0).collect::<Vec<_>>(),
        vec![ErrorCode::LimitExceeded]
    );

    // The call went on, and nobody was removed.
    let before = bed.clients[b].video_from(&ida).len();
    bed.run(secs(1.0));
    assert!(bed.clients[b].video_from(&ida).len() > before + 40);
    for (&v, &n) in victims.iter().zip(&messages_before) {
        assert!(
            !bed.clients[v].messages[n..]
                .iter()
                .any(|msg| matches!(msg, ServerMessage::Left { .. })),
            "client {v} was removed"
        );
    }
}

#[test]
fn offers_over_the_rate_are_refused_then_allowed_again() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    assert!(bed.run_until(secs(2.0), |b| b.clients[a].connected));
    let ida = bed.id(a);
    let limits = sfu::core::limits::ParticipantLimits::default();
    // The first offer of the join took one token.
    let burst = limits.offer_burst as usize - 1;
    for _ in 0..burst + 5 {
        bed.engine
            .handle_signal(bed.now, &ida, ClientSignal::Offer("v=0\r\nnonsense".into()));
    }
    bed.pump_signals();
    let codes: Vec<ErrorCode> = errors(&bed, a).into_iter().map(|(c, _)| c).collect();
    assert_eq!(codes.len(), burst + 5);
    assert!(
        codes[..burst].iter().all(|c| *c == ErrorCode::InvalidSdp),
        "{codes:?}"
    );
    assert!(
        codes[burst..].iter().all(|c| *c == ErrorCode::RateLimited),
        "{codes:?}"
    );
    // A second later there is room for one more.
    bed.run(secs(1.0));
    bed.engine
        .handle_signal(bed.now, &ida, ClientSignal::Offer("v=0\r\nnonsense".into()));
    bed.pump_signals();
    assert_eq!(
        errors(&bed, a).last().map(|e| e.0),
        Some(ErrorCode::InvalidSdp)
    );
}

#[test]
fn refusals_carry_no_parser_internals() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let ida = bed.id(a);
    for bad in [
        "v=0\r\nnonsense",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
        &"m=video 9 x\r\n".repeat(100),
    ] {
        bed.engine
            .handle_signal(bed.now, &ida, ClientSignal::Offer(bad.into()));
    }
    bed.engine.handle_signal(
        bed.now,
        &ida,
        ClientSignal::Candidate(signal::protocol::IceCandidate {
            candidate: "candidate:0 1 UDP 99999999999999999999 1.2.3.4 x typ host".into(),
            sdp_mid: None,
            sdp_m_line_index: None,
        }),
    );
    bed.pump_signals();
    let errs = errors(&bed, a);
    assert_eq!(errs.len(), 4, "{errs:?}");
    for (code, message) in errs {
        assert!(matches!(
            code,
            ErrorCode::InvalidSdp | ErrorCode::BadMessage
        ));
        assert!(
            !message.contains("0x") && !message.contains("Pointer") && message.len() < 100,
            "{message}"
        );
    }
}

#[test]
fn candidates_beyond_the_limit_are_refused() {
    let mut bed = Bed::new();
    let a = bed.join("r", "ann", true);
    let ida = bed.id(a);
    let max = sfu::core::limits::ParticipantLimits::default().max_candidates as usize;
    for i in 0..max + 3 {
        let candidate = format!(
            "candidate:{i} 1 udp 2130706431 192.0.2.1 {} typ host",
            1000 + i
        );
        bed.engine.handle_signal(
            bed.now,
            &ida,
            ClientSignal::Candidate(signal::protocol::IceCandidate {
                candidate,
                sdp_mid: None,
                sdp_m_line_index: None,
            }),
        );
    }
    bed.pump_signals();
    let codes: Vec<ErrorCode> = errors(&bed, a).into_iter().map(|e| e.0).collect();
    assert_eq!(codes, vec![ErrorCode::LimitExceeded; 3]);
}
