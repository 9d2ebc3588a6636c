//! ICE over TCP through a real worker socket, and the ICE servers handed to joining clients.
//!
//! A str0m client whose only candidate is an active TCP one connects to the worker's passive
//! ICE-TCP port on 127.0.0.1 and must complete ICE and DTLS over RFC 4571 framing.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, RtcConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use sfu::core::{generate_dtls_cert, EngineConfig};
use sfu::io::handle::{Placement, RoomDefaults, SfuHandle};
use sfu::io::turn::{password, TurnConfig};
use sfu::io::webhook::Webhooks;
use sfu::io::worker::{self, WorkerSpec};
use signal::auth::Grants;
use signal::protocol::ServerMessage;
use signal::{ClientSignal, JoinRequest, MediaBackend};

const STEP: Duration = Duration::from_secs(5);

fn start(turn: TurnConfig) -> (SfuHandle, u16) {
    let localhost: IpAddr = "127.0.0.1".parse().unwrap();
    let placement = Arc::new(Mutex::new(Placement::with_defaults(
        1,
        RoomDefaults::default(),
    )));
    let spec = WorkerSpec {
        index: 0,
        bind: SocketAddr::new(localhost, 0),
        candidate_ips: vec![localhost],
        engine: EngineConfig::new(vec![SocketAddr::new(localhost, 0)], generate_dtls_cert()),
        webhooks: Webhooks::disabled(),
        resume_grace: std::time::Duration::from_secs(20),
        max_input_age: std::time::Duration::from_millis(100),
        ice_tcp: true,
        pin_source: false,
        peers: Default::default(),
    };
    let w = worker::spawn(spec, Arc::clone(&placement)).unwrap();
    let handle = SfuHandle::new(vec![w.commands], placement).with_turn(turn);
    (handle, w.port)
}

fn request(identity: &str) -> JoinRequest {
    JoinRequest {
        room: "tcp".into(),
        name: identity.into(),
        token: None,
        identity: Some(identity.into()),
        metadata: None,
        grants: Grants::participant(),
        region: None,
    }
}

#[tokio::test]
async fn a_client_with_only_a_tcp_candidate_connects() {
    let (sfu, port) = start(TurnConfig::default());
    let mut session = sfu.join(request("tina")).await.unwrap();
    let first = timeout(STEP, session.events.recv()).await.unwrap().unwrap();
    assert!(matches!(first, ServerMessage::Joined { .. }));

    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let local = stream.local_addr().unwrap();
    let remote = stream.peer_addr().unwrap();
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    let candidate = Candidate::builder()
        .tcp()
        .host(local)
        .tcptype(TcpType::Active)
        .build()
        .unwrap();
    rtc.add_local_candidate(candidate);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    sfu.signal(
        &session.participant_id,
        ClientSignal::Offer(offer.to_sdp_string()),
    )
    .unwrap();
    let answer = loop {
        let m = timeout(STEP, session.events.recv()).await.unwrap().unwrap();
        if let ServerMessage::Answer { sdp } = m {
            break sdp;
        }
    };
    assert!(
        answer.contains(&format!("127.0.0.1 {port} typ host tcptype passive")),
        "the answer offers the passive TCP candidate"
    );
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    // Drive the client over the TCP stream with RFC 4571 framing until it is connected.
    let end = Instant::now() + Duration::from_secs(10);
    let mut connected = false;
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end && !connected {
        let deadline = loop {
            match rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    assert_eq!(t.proto, Protocol::Tcp);
                    let mut frame = (t.contents.len() as u16).to_be_bytes().to_vec();
                    frame.extend_from_slice(&t.contents);
                    stream.write_all(&frame).await.unwrap();
                }
                Output::Timeout(t) => break t,
                Output::Event(Event::Connected) => connected = true,
                Output::Event(_) => {}
            }
        };
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        let read = timeout(wait, async {
            let len = stream.read_u16().await? as usize;
            stream.read_exact(&mut buf[..len]).await?;
            std::io::Result::Ok(len)
        })
        .await;
        let now = Instant::now();
        let input = match read {
            Ok(Ok(len)) => Input::Receive(
                now,
                Receive::new(Protocol::Tcp, remote, local, &buf[..len]).unwrap(),
            ),
            Ok(Err(e)) => panic!("the server closed the TCP connection: {e}"),
            Err(_) => Input::Timeout(now),
        };
        rtc.handle_input(input).unwrap();
    }
    assert!(connected, "ICE and DTLS over TCP did not complete");
}

#[tokio::test]
async fn joining_clients_get_time_limited_turn_credentials() {
    let turn = TurnConfig {
        urls: vec!["turn:127.0.0.1:3478?transport=udp".into()],
        stun_urls: vec!["stun:127.0.0.1:3478".into()],
        secret: Some("a-secret-shared-with-coturn".into()),
        ttl: Duration::from_secs(600),
    };
    let (sfu, _) = start(turn);
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut session = sfu.join(request("uma")).await.unwrap();
    let ServerMessage::Joined { ice_servers, .. } =
        timeout(STEP, session.events.recv()).await.unwrap().unwrap()
    else {
        panic!("joined first");
    };
    assert_eq!(ice_servers.len(), 2);
    assert_eq!(ice_servers[0].urls, vec!["stun:127.0.0.1:3478".to_string()]);
    let t = &ice_servers[1];
    let user = t.username.as_deref().unwrap();
    let (expiry, identity) = user.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert_eq!(identity, "uma");
    assert!((before + 600..=before + 602).contains(&expiry));
    assert_eq!(
        t.credential.as_deref(),
        Some(password("a-secret-shared-with-coturn", user).as_str())
    );
}
