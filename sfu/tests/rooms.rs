//! The room registry, the REST operations and the webhooks, against real worker threads (UDP on
//! 127.0.0.1) and a webhook receiver on 127.0.0.1 that checks every signature. Participants join
//! through [`MediaBackend`] as the WebSocket router would; publishing is an SDP offer from a
//! str0m client (no media flows).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use parking_lot::Mutex as PlMutex;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

use sfu::core::{generate_dtls_cert, EngineConfig, VideoCodecs};
use sfu::io::handle::{Placement, RoomDefaults, SfuHandle};
use sfu::io::rooms::Limits;
use sfu::io::webhook::{WebhookConfig, Webhooks};
use sfu::io::worker::{self, WorkerSpec};
use signal::auth::Grants;
use signal::protocol::ServerMessage;
use signal::rest::dto::{CreateRoom, UpdateParticipant, UpdateRoom};
use signal::webhook::{verify_signature, EventKind, WebhookEvent, SIGNATURE_HEADER};
use signal::{ClientSignal, ErrorCode, JoinRequest, MediaBackend, RoomService, Session};

const STEP: Duration = Duration::from_secs(5);
const SECRET: &str = "hook-secret-hook-secret-hook-secret";

fn start(defaults: RoomDefaults, webhooks: Webhooks) -> SfuHandle {
    start_with(defaults, webhooks, Limits::default())
}

fn start_with(defaults: RoomDefaults, webhooks: Webhooks, limits: Limits) -> SfuHandle {
    let localhost: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let cert = generate_dtls_cert();
    let placement = Arc::new(PlMutex::new(
        Placement::with_defaults(2, defaults).with_limits(limits),
    ));
    let peers = worker::Peers::default();
    let mut senders = Vec::new();
    for index in 0..2 {
        let spec = WorkerSpec {
            index,
            bind: SocketAddr::new(localhost, 0),
            candidate_ips: vec![localhost],
            engine: EngineConfig::new(vec![SocketAddr::new(localhost, 0)], cert.clone()),
            webhooks: webhooks.clone(),
            resume_grace: std::time::Duration::from_secs(20),
            max_input_age: std::time::Duration::from_millis(100),
            ice_tcp: false,
            pin_source: false,
            peers: Arc::clone(&peers),
        };
        senders.push(
            worker::spawn(spec, Arc::clone(&placement))
                .unwrap()
                .commands,
        );
    }
    peers.set(senders.clone());
    SfuHandle::new(senders, placement).with_webhooks(webhooks)
}

fn request(room: &str, identity: &str, grants: Grants) -> JoinRequest {
    JoinRequest {
        room: room.into(),
        name: identity.to_uppercase(),
        token: None,
        identity: Some(identity.into()),
        metadata: Some(format!("meta-{identity}")),
        grants,
        region: None,
    }
}

async fn join(sfu: &SfuHandle, room: &str, identity: &str) -> Session {
    let mut s = sfu
        .join(request(room, identity, Grants::participant()))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut s.events).await,
        ServerMessage::Joined { .. }
    ));
    s
}

async fn next(events: &mut mpsc::Receiver<ServerMessage>) -> ServerMessage {
    timeout(STEP, events.recv())
        .await
        .expect("no event in time")
        .expect("event queue closed")
}

/// Reads events until one matches.
async fn until(events: &mut mpsc::Receiver<ServerMessage>, f: impl Fn(&ServerMessage) -> bool) {
    loop {
        let m = next(events).await;
        if f(&m) {
            return;
        }
    }
}

fn room(name: &str) -> CreateRoom {
    CreateRoom {
        name: name.into(),
        max_participants: None,
        empty_timeout: None,
        metadata: None,
        video_codecs: None,
        region: None,
    }
}

/// Connects a str0m client for `s` over UDP on 127.0.0.1 that offers one audio track, and keeps
/// driving it in the background (for at most 30 s). Tracks are published once the connection is
/// up; this waits until the server lists the track.
async fn publish_audio(sfu: &SfuHandle, room: &str, s: &mut Session) -> AbortOnDrop {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    sfu.signal(
        &s.participant_id,
        ClientSignal::Offer(offer.to_sdp_string()),
    )
    .unwrap();
    let answer = loop {
        if let ServerMessage::Answer { sdp } = next(&mut s.events).await {
            break sdp;
        }
    };
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let task = AbortOnDrop(tokio::spawn(drive(rtc, socket, local)));
    let deadline = Instant::now() + STEP;
    loop {
        let people = sfu.list_participants(room.into()).await.unwrap();
        let me = people.iter().find(|p| p.id == s.participant_id);
        if me.is_some_and(|p| !p.tracks.is_empty()) {
            return task;
        }
        assert!(Instant::now() < deadline, "the track was never published");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ends a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a client connection: sends what it wants to send, feeds it what arrives.
async fn drive(mut rtc: Rtc, socket: UdpSocket, local: SocketAddr) {
    let end = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 2048];
    while Instant::now() < end && rtc.is_alive() {
        let deadline = loop {
            match rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Event(_)) => {}
                Err(_) => return,
            }
        };
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        let received = timeout(wait, socket.recv_from(&mut buf)).await;
        let now = Instant::now();
        let input = match &received {
            Ok(Ok((n, source))) => Receive::new(Protocol::Udp, *source, local, &buf[..*n])
                .map_or(Input::Timeout(now), |r| Input::Receive(now, r)),
            _ => Input::Timeout(now),
        };
        if rtc.handle_input(input).is_err() {
            return;
        }
    }
}

/// A webhook receiver that checks signatures; answers 500 to the first `fail_first` posts.
#[derive(Default)]
struct Receiver {
    events: Mutex<Vec<WebhookEvent>>,
    posts: Mutex<u32>,
    bad_signatures: Mutex<u32>,
    fail_first: u32,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let n = {
        let mut posts = r.posts.lock().unwrap();
        *posts += 1;
        *posts
    };
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !verify_signature(SECRET, &body, signature) {
        *r.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if n <= r.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    r.events
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK
}

async fn receiver(fail_first: u32) -> (String, Arc<Receiver>) {
    let r = Arc::new(Receiver {
        fail_first,
        ..Receiver::default()
    });
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&r));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, r)
}

fn hook_config(urls: Vec<String>) -> WebhookConfig {
    let mut c = WebhookConfig::new(urls, "APIhook".into(), SECRET.into());
    c.initial_backoff = Duration::from_millis(20);
    c.max_backoff = Duration::from_millis(50);
    c.timeout = Duration::from_secs(2);
    c
}

/// Waits until the receiver holds `n` events.
async fn received(r: &Receiver, n: usize) -> Vec<WebhookEvent> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let events = r.events.lock().unwrap().clone();
        if events.len() >= n || tokio::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One session per identity and room holds when the room is spread: a second join of ann on the
/// other worker takes over, and the first session leaves as `duplicate_identity`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_session_of_an_identity_on_another_worker_takes_over() {
    let limits = Limits {
        room_participants_per_worker: 1,
        ..Limits::default()
    };
    let sfu = start_with(RoomDefaults::default(), Webhooks::disabled(), limits);
    let mut ann = join(&sfu, "r", "ann").await;
    let mut bob = join(&sfu, "r", "bob").await;
    let cat = join(&sfu, "r", "cat").await;
    assert_eq!(sfu.load(), [2, 1]);
    let again = join(&sfu, "r", "ann").await;
    assert_eq!(
        sfu.load()[1],
        2,
        "the second session is on the other worker"
    );
    until(
        &mut ann.events,
        |m| matches!(m, ServerMessage::Left { reason } if reason == "duplicate_identity"),
    )
    .await;
    let first = ann.participant_id.clone();
    until(&mut bob.events, |m| {
        matches!(m, ServerMessage::ParticipantLeft { participant_id, reason }
            if *participant_id == first && reason == "duplicate_identity")
    })
    .await;
    let people = sfu.list_participants("r".into()).await.unwrap();
    let mut ids: Vec<&str> = people.iter().map(|p| p.id.as_str()).collect();
    ids.sort();
    let mut want = vec![
        bob.participant_id.as_str(),
        cat.participant_id.as_str(),
        again.participant_id.as_str(),
    ];
    want.sort();
    assert_eq!(ids, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_auto_create_are_enforced_at_join() {
    let sfu = start(
        RoomDefaults {
            auto_create: false,
            ..RoomDefaults::default()
        },
        Webhooks::disabled(),
    );
    let refused = sfu
        .join(request("nowhere", "ann", Grants::participant()))
        .await
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::NotFound);

    sfu.create_room(CreateRoom {
        max_participants: Some(1),
        ..room("small")
    })
    .await
    .unwrap();
    let _ann = join(&sfu, "small", "ann").await;
    let full = sfu
        .join(request("small", "bob", Grants::participant()))
        .await
        .unwrap_err();
    assert_eq!(full.code, ErrorCode::RoomFull);
    assert_eq!(
        sfu.get_room("small".into()).await.unwrap().num_participants,
        1
    );
    let conflict = sfu.create_room(room("small")).await.unwrap_err();
    assert_eq!(conflict.code, ErrorCode::Conflict);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_take_their_video_codecs_from_the_defaults_or_their_own() {
    let defaults = RoomDefaults {
        video_codecs: VideoCodecs::parse(&["vp8"]).unwrap(),
        ..RoomDefaults::default()
    };
    let sfu = start(defaults, Webhooks::disabled());
    let plain = sfu.create_room(room("plain")).await.unwrap();
    assert_eq!(plain.video_codecs, ["vp8"]);
    let rec = sfu
        .create_room(CreateRoom {
            video_codecs: Some(vec!["H264".into(), "vp8".into()]),
            ..room("rec")
        })
        .await
        .unwrap();
    assert_eq!(rec.video_codecs, ["h264", "vp8"]);
    let _ann = join(&sfu, "rec", "ann").await;
    let any = sfu
        .update_room(
            "rec".into(),
            UpdateRoom {
                video_codecs: Some(Vec::new()),
                ..UpdateRoom::default()
            },
        )
        .await
        .unwrap();
    assert!(any.video_codecs.is_empty(), "no policy: any codec");
    assert_eq!(sfu.get_room("rec".into()).await.unwrap(), any);
    let bad = sfu
        .create_room(CreateRoom {
            video_codecs: Some(vec!["h265".into()]),
            ..room("x")
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code, ErrorCode::InvalidRequest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_update_mute_remove_and_delete() {
    let sfu = start(RoomDefaults::default(), Webhooks::disabled());
    operate(&sfu, [2, 0]).await;
}

/// The same with the room spread over both workers: ann on the first, bob on the second. Each
/// operation reaches the participant's worker, and the other hears of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_reach_a_room_spread_over_two_workers() {
    let limits = Limits {
        room_participants_per_worker: 1,
        ..Limits::default()
    };
    let sfu = start_with(RoomDefaults::default(), Webhooks::disabled(), limits);
    operate(&sfu, [1, 1]).await;
}

/// Operations on room `r`; `load`: the participants on each worker once ann and bob are in.
async fn operate(sfu: &SfuHandle, load: [usize; 2]) {
    let sfu = sfu.clone();
    sfu.create_room(CreateRoom {
        metadata: Some("agenda".into()),
        ..room("r")
    })
    .await
    .unwrap();
    let mut ann = join(&sfu, "r", "ann").await;
    // The room's metadata comes right after `joined`.
    assert_eq!(
        next(&mut ann.events).await,
        ServerMessage::RoomUpdated {
            room: "r".into(),
            metadata: "agenda".into()
        }
    );
    let mut bob = join(&sfu, "r", "bob").await;
    next(&mut bob.events).await; // room_updated
    assert_eq!(sfu.load(), load);

    // Ann publishes audio.
    let _ann_peer = publish_audio(&sfu, "r", &mut ann).await;
    let people = sfu.list_participants("r".into()).await.unwrap();
    assert_eq!(people.len(), 2);
    let me = people.iter().find(|p| p.id == ann.participant_id).unwrap();
    assert_eq!(me.identity.as_deref(), Some("ann"));
    assert_eq!(me.metadata.as_deref(), Some("meta-ann"));
    assert_eq!(me.tracks.len(), 1);
    let track = me.tracks[0].id.clone();

    let muted = sfu
        .mute_track("r".into(), ann.participant_id.clone(), track.clone(), true)
        .await
        .unwrap();
    assert!(muted.muted);
    until(&mut bob.events, |m| {
        matches!(m, ServerMessage::TrackMuted { muted: true, .. })
    })
    .await;
    let e = sfu
        .mute_track("r".into(), ann.participant_id.clone(), "nope".into(), true)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    let updated = sfu
        .update_participant(
            "r".into(),
            bob.participant_id.clone(),
            UpdateParticipant {
                name: Some("Robert".into()),
                metadata: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "Robert");
    until(&mut ann.events, |m| {
        matches!(m, ServerMessage::ParticipantUpdated { participant } if participant.name == "Robert")
    })
    .await;

    sfu.update_room(
        "r".into(),
        UpdateRoom {
            metadata: Some("new agenda".into()),
            ..UpdateRoom::default()
        },
    )
    .await
    .unwrap();
    until(
        &mut bob.events,
        |m| matches!(m, ServerMessage::RoomUpdated { metadata, .. } if metadata == "new agenda"),
    )
    .await;

    let e = sfu
        .remove_participant("other".into(), bob.participant_id.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    sfu.remove_participant("r".into(), bob.participant_id.clone())
        .await
        .unwrap();
    until(
        &mut bob.events,
        |m| matches!(m, ServerMessage::Left { reason } if reason == "removed"),
    )
    .await;
    let e = sfu
        .remove_participant("r".into(), bob.participant_id.clone())
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    sfu.delete_room("r".into()).await.unwrap();
    until(
        &mut ann.events,
        |m| matches!(m, ServerMessage::Left { reason } if reason == "room_deleted"),
    )
    .await;
    assert_eq!(
        sfu.get_room("r".into()).await.unwrap_err().code,
        ErrorCode::NotFound
    );
    assert_eq!(
        sfu.delete_room("r".into()).await.unwrap_err().code,
        ErrorCode::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_publish_grant_nothing_is_published() {
    let sfu = start(RoomDefaults::default(), Webhooks::disabled());
    let grants = Grants {
        publish: false,
        ..Grants::participant()
    };
    let mut viewer = sfu.join(request("r", "viewer", grants)).await.unwrap();
    next(&mut viewer.events).await;
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_opus(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    sfu.signal(
        &viewer.participant_id,
        ClientSignal::Offer(offer.to_sdp_string()),
    )
    .unwrap();
    let answer = loop {
        if let ServerMessage::Answer { sdp } = next(&mut viewer.events).await {
            break sdp;
        }
    };
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();
    let _peer = AbortOnDrop(tokio::spawn(drive(rtc, socket, local)));
    // Once connected, the server refuses the m-line whatever the SDP said.
    until(&mut viewer.events, |m| {
        matches!(
            m,
            ServerMessage::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        )
    })
    .await;
    let people = sfu.list_participants("r".into()).await.unwrap();
    assert!(people[0].tracks.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_tell_the_story_of_a_room_signed() {
    let (url, hooks) = receiver(0).await;
    let webhooks = Webhooks::start(hook_config(vec![url])).unwrap();
    let sfu = start(
        RoomDefaults {
            empty_timeout: Duration::from_secs(1),
            ..RoomDefaults::default()
        },
        webhooks,
    );
    let mut ann = join(&sfu, "story", "ann").await;
    let peer = publish_audio(&sfu, "story", &mut ann).await;
    sfu.leave(&ann.participant_id, "left");
    until(&mut ann.events, |m| matches!(m, ServerMessage::Left { .. })).await;
    drop(peer);
    // Give the worker a moment to release the seat, then sweep past the empty timeout.
    let deadline = Instant::now() + STEP;
    while sfu.close_expired_rooms(Instant::now() + Duration::from_secs(2)) == 0 {
        assert!(Instant::now() < deadline, "the room never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let events = received(&hooks, 6).await;
    let kinds: Vec<EventKind> = events.iter().map(|e| e.event).collect();
    assert_eq!(
        kinds,
        [
            EventKind::RoomStarted,
            EventKind::ParticipantJoined,
            EventKind::TrackPublished,
            EventKind::TrackUnpublished,
            EventKind::ParticipantLeft,
            EventKind::RoomFinished,
        ]
    );
    assert!(events.iter().all(|e| e.room == "story"));
    let joined = events[1].participant.as_ref().unwrap();
    assert_eq!(joined.identity.as_deref(), Some("ann"));
    assert_eq!(
        events[2].track.as_ref().unwrap().kind,
        signal::protocol::TrackKind::Audio
    );
    assert_eq!(events[4].reason.as_deref(), Some("left"));
    assert_eq!(events[5].reason.as_deref(), Some("empty_timeout"));
    assert_eq!(*hooks.bad_signatures.lock().unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_posts_are_retried_with_backoff_then_given_up() {
    // The first two posts fail: the event arrives on the third attempt.
    let (url, hooks) = receiver(2).await;
    let webhooks = Webhooks::start(hook_config(vec![url])).unwrap();
    webhooks.emit(WebhookEvent::new(EventKind::RoomStarted, "r"));
    let events = received(&hooks, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(*hooks.posts.lock().unwrap(), 3);
    // The receiver has the event before the sender has read its answer: wait for the count.
    let deadline = Instant::now() + STEP;
    while webhooks.stats().delivered.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "never counted as delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(webhooks.stats().delivered.load(Ordering::Relaxed), 1);
    assert_eq!(webhooks.stats().retries.load(Ordering::Relaxed), 2);

    // A receiver that always fails gets max_attempts posts, then the event is dropped.
    let (url, hooks) = receiver(u32::MAX).await;
    let mut config = hook_config(vec![url]);
    config.max_attempts = 3;
    let webhooks = Webhooks::start(config).unwrap();
    webhooks.emit(WebhookEvent::new(EventKind::RoomStarted, "r"));
    let deadline = Instant::now() + STEP;
    while webhooks.stats().failed.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "never gave up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*hooks.posts.lock().unwrap(), 3);

    // Nobody listening: the post fails fast and is retried the same way.
    let mut config = hook_config(vec!["http://127.0.0.1:9/hook".into()]);
    config.max_attempts = 2;
    let webhooks = Webhooks::start(config).unwrap();
    webhooks.emit(WebhookEvent::new(EventKind::RoomStarted, "r"));
    let deadline = Instant::now() + STEP;
    while webhooks.stats().failed.load(Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline, "never gave up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_and_never_waits() {
    // A receiver that never answers in time: everything piles up behind the first post.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let _held = listener;
    let mut config = hook_config(vec![url]);
    config.queue_size = 4;
    config.timeout = Duration::from_secs(30);
    let webhooks = Webhooks::start(config).unwrap();
    let started = Instant::now();
    for _ in 0..1000 {
        webhooks.emit(WebhookEvent::new(EventKind::RoomStarted, "r"));
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    let dropped = webhooks.stats().dropped.load(Ordering::Relaxed);
    assert!(dropped >= 1000 - 3 * 4, "dropped {dropped}");
}
