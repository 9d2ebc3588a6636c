//! The WebSocket endpoint against an in-memory room, over real sockets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use signal::protocol::{IceCandidate, ParticipantInfo, MAX_MESSAGE_BYTES, PROTOCOL_VERSION};
use signal::{
    router, ClientSignal, ErrorCode, JoinRequest, MediaBackend, RouterConfig, ServerMessage,
    Session, SignalError,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single test step may take.
const STEP: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A room server in memory: the other side of the router, as the media engine would be.
///
/// Room `full` refuses joins; room `slow` takes a minute to answer; in room `quiet`, `leave` drops the session without a `left`; an offer
/// or answer whose SDP is `bad` is refused.
#[derive(Default)]
struct Rooms {
    state: Mutex<RoomsState>,
}

#[derive(Default)]
struct RoomsState {
    next_id: u32,
    members: HashMap<String, Member>,
    signals: Vec<(String, ClientSignal)>,
    leaves: Vec<(String, String)>,
}

struct Member {
    room: String,
    name: String,
    events: mpsc::Sender<ServerMessage>,
}

impl Rooms {
    fn state(&self) -> MutexGuard<'_, RoomsState> {
        self.state.lock().expect("a test thread panicked")
    }

    fn leaves(&self) -> Vec<(String, String)> {
        self.state().leaves.clone()
    }

    fn signals(&self) -> Vec<(String, ClientSignal)> {
        self.state().signals.clone()
    }

    /// The media side removes a participant on its own.
    fn kick(&self, id: &str) {
        if let Some(member) = self.state().members.remove(id) {
            let left = ServerMessage::Left {
                reason: "kicked".into(),
            };
            member.events.try_send(left).expect("event queue full");
        }
    }

    /// Waits until `leaves` satisfies `done`.
    async fn wait_for_leaves(&self, done: impl Fn(&[(String, String)]) -> bool) {
        let waited = timeout(STEP, async {
            while !done(&self.leaves()) {
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "leaves are {:?}", self.leaves());
    }
}

impl MediaBackend for Rooms {
    async fn join(&self, req: JoinRequest) -> Result<Session, SignalError> {
        match req.room.as_str() {
            "full" => return Err(SignalError::new(ErrorCode::RoomFull, "room is full")),
            "slow" => sleep(Duration::from_secs(60)).await,
            _ => {}
        }
        let mut state = self.state();
        state.next_id += 1;
        let id = format!("p{}", state.next_id);
        let others: Vec<ParticipantInfo> = state
            .members
            .iter()
            .filter(|(_, m)| m.room == req.room)
            .map(|(id, m)| ParticipantInfo {
                identity: None,
                metadata: None,
                id: id.clone(),
                name: m.name.clone(),
                tracks: vec![],
            })
            .collect();
        let me = ParticipantInfo {
            identity: None,
            metadata: None,
            id: id.clone(),
            name: req.name.clone(),
            tracks: vec![],
        };
        for m in state.members.values().filter(|m| m.room == req.room) {
            let joined = ServerMessage::ParticipantJoined {
                participant: me.clone(),
            };
            m.events.try_send(joined).expect("event queue full");
        }
        let (tx, rx) = mpsc::channel(64);
        let joined = ServerMessage::Joined {
            version: PROTOCOL_VERSION,
            room: req.room.clone(),
            participant_id: id.clone(),
            participants: others,
            ice_servers: vec![],
            resume: None,
        };
        tx.try_send(joined).expect("fresh queue");
        state.members.insert(
            id.clone(),
            Member {
                room: req.room,
                name: req.name,
                events: tx,
            },
        );
        Ok(Session {
            participant_id: id,
            events: rx,
        })
    }

    fn signal(&self, participant_id: &str, signal: ClientSignal) -> Result<(), SignalError> {
        if let ClientSignal::Offer(sdp) | ClientSignal::Answer(sdp) = &signal {
            if sdp == "bad" {
                return Err(SignalError::new(ErrorCode::InvalidSdp, "unparsable SDP"));
            }
        }
        self.state()
            .signals
            .push((participant_id.to_owned(), signal));
        Ok(())
    }

    fn leave(&self, participant_id: &str, reason: &str) {
        let mut state = self.state();
        state
            .leaves
            .push((participant_id.to_owned(), reason.to_owned()));
        let Some(member) = state.members.remove(participant_id) else {
            return;
        };
        if reason == "left" && member.room != "quiet" {
            let left = ServerMessage::Left {
                reason: reason.to_owned(),
            };
            member.events.try_send(left).expect("event queue full");
        }
        for m in state.members.values().filter(|m| m.room == member.room) {
            let gone = ServerMessage::ParticipantLeft {
                participant_id: participant_id.to_owned(),
                reason: reason.to_owned(),
            };
            m.events.try_send(gone).expect("event queue full");
        }
    }
}

async fn start(config: RouterConfig) -> (SocketAddr, Arc<Rooms>) {
    let rooms = Arc::new(Rooms::default());
    let app = router(Arc::clone(&rooms), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, rooms)
}

async fn connect(addr: SocketAddr) -> Ws {
    let (ws, _) = timeout(
        STEP,
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("connect timed out")
    .expect("connect");
    ws
}

async fn send(ws: &mut Ws, frame: Message) {
    timeout(STEP, ws.send(frame))
        .await
        .expect("send timed out")
        .expect("send");
}

async fn send_json(ws: &mut Ws, value: serde_json::Value) {
    send(ws, Message::text(value.to_string())).await;
}

/// The next server message, skipping WebSocket pings and pongs.
async fn recv(ws: &mut Ws) -> ServerMessage {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).expect("server message")
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    };
    timeout(STEP, next).await.expect("no message in time")
}

/// Reads up to the close frame and returns its code; fails on any message before it.
async fn expect_close(ws: &mut Ws) -> u16 {
    let next = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    };
    timeout(STEP, next).await.expect("no close in time")
}

/// Reads and drops whatever is left until the server ends the connection. The server ends it
/// only when it is done with the session, so the media side has heard all it will hear of it.
async fn read_to_end(ws: &mut Ws) {
    use tokio_tungstenite::tungstenite::error::{Error, ProtocolError};
    let end = async {
        loop {
            match ws.next().await {
                None
                | Some(Err(
                    Error::ConnectionClosed
                    | Error::AlreadyClosed
                    | Error::Io(_)
                    | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
                )) => return,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("expected the connection to end, got {e}"),
            }
        }
    };
    timeout(STEP, end)
        .await
        .expect("the server did not end the connection in time");
}

async fn expect_error(ws: &mut Ws, code: ErrorCode) -> String {
    match recv(ws).await {
        ServerMessage::Error { code: got, message } if got == code => message,
        other => panic!("expected error {}, got {other:?}", code.as_str()),
    }
}

async fn ping_pong(ws: &mut Ws) {
    send_json(ws, json!({"type": "ping"})).await;
    assert_eq!(recv(ws).await, ServerMessage::Pong);
}

fn join_msg(room: &str, name: &str) -> serde_json::Value {
    json!({"type": "join", "version": PROTOCOL_VERSION, "room": room, "name": name})
}

/// Joins and returns the participant id and the others already in the room.
async fn join(ws: &mut Ws, room: &str, name: &str) -> (String, Vec<ParticipantInfo>) {
    send_json(ws, join_msg(room, name)).await;
    match recv(ws).await {
        ServerMessage::Joined {
            version,
            room: joined_room,
            participant_id,
            participants,
            ..
        } => {
            assert_eq!(version, PROTOCOL_VERSION);
            assert_eq!(joined_room, room);
            (participant_id, participants)
        }
        other => panic!("expected joined, got {other:?}"),
    }
}

#[tokio::test]
async fn join_forwards_room_events_and_signals() {
    let (addr, rooms) = start(RouterConfig::default()).await;
    let mut ann = connect(addr).await;
    let (ann_id, others) = join(&mut ann, "standup", "Ann").await;
    assert!(others.is_empty());

    let mut bob = connect(addr).await;
    let (bob_id, others) = join(&mut bob, "standup", "Bob").await;
    assert_eq!(others.len(), 1);
    assert_eq!(
        (others[0].id.as_str(), others[0].name.as_str()),
        (ann_id.as_str(), "Ann")
    );
    match recv(&mut ann).await {
        ServerMessage::ParticipantJoined { participant } => assert_eq!(participant.id, bob_id),
        other => panic!("expected participant_joined, got {other:?}"),
    }

    send_json(&mut ann, json!({"type": "offer", "sdp": "v=0 offer"})).await;
    send_json(&mut ann, json!({"type": "answer", "sdp": "v=0 answer"})).await;
    send_json(
        &mut ann,
        json!({"type": "candidate", "candidate": "candidate:1 1 udp 1 10.0.0.1 5000 typ host", "sdpMid": "0"}),
    )
    .await;
    ping_pong(&mut ann).await;
    let candidate = IceCandidate {
        candidate: "candidate:1 1 udp 1 10.0.0.1 5000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: None,
    };
    assert_eq!(
        rooms.signals(),
        vec![
            (ann_id.clone(), ClientSignal::Offer("v=0 offer".into())),
            (ann_id.clone(), ClientSignal::Answer("v=0 answer".into())),
            (ann_id.clone(), ClientSignal::Candidate(candidate)),
        ]
    );

    send_json(&mut ann, json!({"type": "offer", "sdp": "bad"})).await;
    expect_error(&mut ann, ErrorCode::InvalidSdp).await;
    ping_pong(&mut ann).await;

    timeout(STEP, bob.close(None))
        .await
        .expect("close")
        .expect("close");
    assert_eq!(
        recv(&mut ann).await,
        ServerMessage::ParticipantLeft {
            participant_id: bob_id,
            reason: "disconnected".into()
        }
    );
}

#[tokio::test]
async fn bad_input_is_answered_and_the_socket_goes_on() {
    let mut config = RouterConfig::default();
    config.max_join_attempts = 10;
    let (addr, rooms) = start(config).await;
    let mut ws = connect(addr).await;
    let oversized = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "a".repeat(300 * 1024));
    assert!(oversized.len() > MAX_MESSAGE_BYTES);

    let before_join: Vec<(&str, Message, ErrorCode)> = vec![
        (
            "garbage",
            Message::text("hello there"),
            ErrorCode::BadMessage,
        ),
        ("array", Message::text("[]"), ErrorCode::BadMessage),
        (
            "unknown type",
            Message::text(r#"{"type":"dance"}"#),
            ErrorCode::BadMessage,
        ),
        (
            "no type",
            Message::text(r#"{"sdp":"v=0"}"#),
            ErrorCode::BadMessage,
        ),
        (
            "missing sdp",
            Message::text(r#"{"type":"offer"}"#),
            ErrorCode::BadMessage,
        ),
        (
            "missing join fields",
            Message::text(r#"{"type":"join","room":"r"}"#),
            ErrorCode::BadMessage,
        ),
        (
            "version as string",
            Message::text(r#"{"type":"join","version":"1","room":"r","name":"n"}"#),
            ErrorCode::BadMessage,
        ),
        (
            "binary",
            Message::binary(vec![1u8, 2, 3]),
            ErrorCode::BadMessage,
        ),
        (
            "oversized",
            Message::text(oversized.clone()),
            ErrorCode::MessageTooLarge,
        ),
        (
            "offer before join",
            Message::text(r#"{"type":"offer","sdp":"v=0"}"#),
            ErrorCode::NotJoined,
        ),
        (
            "leave before join",
            Message::text(r#"{"type":"leave"}"#),
            ErrorCode::NotJoined,
        ),
        (
            "wrong version",
            Message::text(
                json!({"type":"join","version":PROTOCOL_VERSION + 1,"room":"r","name":"n"})
                    .to_string(),
            ),
            ErrorCode::UnsupportedVersion,
        ),
        (
            "bad room",
            Message::text(join_msg("no spaces", "Ann").to_string()),
            ErrorCode::InvalidName,
        ),
        (
            "empty name",
            Message::text(join_msg("r", "").to_string()),
            ErrorCode::InvalidName,
        ),
    ];
    for (case, frame, code) in before_join {
        send(&mut ws, frame).await;
        let message = expect_error(&mut ws, code).await;
        assert!(message.chars().count() <= 201, "{case}: {message}");
        ping_pong(&mut ws).await;
    }
    assert!(rooms.signals().is_empty());

    let (id, _) = join(&mut ws, "r", "Ann").await;
    let after_join: Vec<(&str, Message, ErrorCode)> = vec![
        ("garbage", Message::text("{"), ErrorCode::BadMessage),
        (
            "binary",
            Message::binary(vec![0u8; 16]),
            ErrorCode::BadMessage,
        ),
        (
            "oversized",
            Message::text(oversized),
            ErrorCode::MessageTooLarge,
        ),
        (
            "second join",
            Message::text(join_msg("r", "Ann").to_string()),
            ErrorCode::AlreadyJoined,
        ),
    ];
    for (case, frame, code) in after_join {
        send(&mut ws, frame).await;
        let message = expect_error(&mut ws, code).await;
        assert!(!message.is_empty(), "{case}");
        ping_pong(&mut ws).await;
    }
    send_json(&mut ws, json!({"type": "offer", "sdp": "v=0"})).await;
    ping_pong(&mut ws).await;
    assert_eq!(
        rooms.signals(),
        vec![(id, ClientSignal::Offer("v=0".into()))]
    );
    assert!(rooms.leaves().is_empty());
}

#[tokio::test]
async fn bad_message_carries_the_parser_reason() {
    let (addr, _rooms) = start(RouterConfig::default()).await;
    let mut ws = connect(addr).await;
    send(&mut ws, Message::text(r#"{"type":"dance"}"#)).await;
    let message = expect_error(&mut ws, ErrorCode::BadMessage).await;
    assert!(message.contains("dance"), "{message}");
}

#[tokio::test]
async fn garbage_on_one_socket_does_not_disturb_another() {
    let (addr, rooms) = start(RouterConfig::default()).await;
    let mut ann = connect(addr).await;
    let (ann_id, _) = join(&mut ann, "r", "Ann").await;
    let mut eve = connect(addr).await;
    let (eve_id, _) = join(&mut eve, "r", "Eve").await;
    assert!(matches!(
        recv(&mut ann).await,
        ServerMessage::ParticipantJoined { .. }
    ));

    for frame in [
        Message::text("\u{0}\u{1}not json"),
        Message::binary(vec![0xffu8; 1024]),
        Message::text("x".repeat(300 * 1024)),
    ] {
        send(&mut eve, frame).await;
    }
    send_json(&mut ann, json!({"type": "offer", "sdp": "v=0"})).await;
    ping_pong(&mut ann).await;
    assert_eq!(
        rooms.signals(),
        vec![(ann_id, ClientSignal::Offer("v=0".into()))]
    );

    for code in [
        ErrorCode::BadMessage,
        ErrorCode::BadMessage,
        ErrorCode::MessageTooLarge,
    ] {
        expect_error(&mut eve, code).await;
    }
    send_json(&mut eve, json!({"type": "leave"})).await;
    assert!(matches!(recv(&mut eve).await, ServerMessage::Left { .. }));
    assert_eq!(
        recv(&mut ann).await,
        ServerMessage::ParticipantLeft {
            participant_id: eve_id,
            reason: "left".into()
        }
    );
    ping_pong(&mut ann).await;
}

#[tokio::test]
async fn closing_the_socket_leaves_as_disconnected_exactly_once() {
    let (addr, rooms) = start(RouterConfig::default()).await;
    let mut graceful = connect(addr).await;
    let (graceful_id, _) = join(&mut graceful, "r", "Ann").await;
    let mut abrupt = connect(addr).await;
    let (abrupt_id, _) = join(&mut abrupt, "r", "Bob").await;

    timeout(STEP, graceful.close(None))
        .await
        .expect("close timed out")
        .expect("close");
    // No close frame: the client's end of the TCP connection just goes away. Only the sending
    // half closes, so the test can still see when the server lets go of the connection.
    match abrupt.get_mut() {
        MaybeTlsStream::Plain(tcp) => timeout(STEP, tcp.shutdown())
            .await
            .expect("shutdown timed out")
            .expect("shutdown"),
        _ => unreachable!("the test connects over plain TCP"),
    }

    let expected = [
        (graceful_id.clone(), "disconnected".to_owned()),
        (abrupt_id.clone(), "disconnected".to_owned()),
    ];
    rooms
        .wait_for_leaves(|leaves| expected.iter().all(|e| leaves.contains(e)))
        .await;
    read_to_end(&mut graceful).await;
    read_to_end(&mut abrupt).await;
    let leaves = rooms.leaves();
    assert_eq!(leaves.len(), 2, "{leaves:?}");
}

#[tokio::test]
async fn leave_ends_with_left_and_close() {
    let (addr, rooms) = start(RouterConfig::default()).await;
    let mut ws = connect(addr).await;
    let (id, _) = join(&mut ws, "r", "Ann").await;
    send_json(&mut ws, json!({"type": "leave"})).await;
    assert_eq!(
        recv(&mut ws).await,
        ServerMessage::Left {
            reason: "left".into()
        }
    );
    assert_eq!(expect_close(&mut ws).await, 1000);
    read_to_end(&mut ws).await;
    assert_eq!(rooms.leaves(), vec![(id, "left".to_owned())]);
}

#[tokio::test]
async fn leave_without_left_from_the_backend_still_ends_with_left() {
    let (addr, rooms) = start(RouterConfig::default()).await;
    let mut ws = connect(addr).await;
    let (id, _) = join(&mut ws, "quiet", "Ann").await;
    send_json(&mut ws, json!({"type": "leave"})).await;
    assert_eq!(
        recv(&mut ws).await,
        ServerMessage::Left {
            reason: "left".into()
        }
    );
    assert_eq!(expect_close(&mut ws).await, 1000);
    assert_eq!(rooms.leaves(), vec![(id, "left".to_owned())]);
}

#[tokio::test]
async fn left_from_the_backend_closes_without_a_leave() {
    let (addr, rooms) = start(RouterConfig::default()).await;
    let mut ws = connect(addr).await;
    let (id, _) = join(&mut ws, "r", "Ann").await;
    rooms.kick(&id);
    assert_eq!(
        recv(&mut ws).await,
        ServerMessage::Left {
            reason: "kicked".into()
        }
    );
    assert_eq!(expect_close(&mut ws).await, 1000);
    read_to_end(&mut ws).await;
    assert!(rooms.leaves().is_empty(), "{:?}", rooms.leaves());
}

#[tokio::test]
async fn backend_join_error_is_delivered_and_join_can_be_retried() {
    let (addr, _rooms) = start(RouterConfig::default()).await;
    let mut ws = connect(addr).await;
    send_json(&mut ws, join_msg("full", "Ann")).await;
    assert_eq!(
        expect_error(&mut ws, ErrorCode::RoomFull).await,
        "room is full"
    );
    ping_pong(&mut ws).await;
    join(&mut ws, "r", "Ann").await;
}

#[tokio::test]
async fn resume_is_refused_by_a_backend_that_does_not_resume_and_after_joining() {
    let (addr, _rooms) = start(RouterConfig::default()).await;
    let mut ws = connect(addr).await;
    let resume = json!({"type": "resume", "version": 1, "participant_id": "p", "secret": "s"});
    send_json(&mut ws, resume.clone()).await;
    expect_error(&mut ws, ErrorCode::ResumeFailed).await;
    // A refused resume leaves the socket usable, like a refused join.
    join(&mut ws, "r", "Ann").await;
    send_json(&mut ws, resume).await;
    expect_error(&mut ws, ErrorCode::AlreadyJoined).await;
}

#[tokio::test]
async fn a_backend_that_does_not_answer_join_in_time_is_server_busy() {
    let mut config = RouterConfig::default();
    config.backend_timeout = Duration::from_millis(200);
    let (addr, _rooms) = start(config).await;
    let mut ws = connect(addr).await;
    send_json(&mut ws, join_msg("slow", "Ann")).await;
    expect_error(&mut ws, ErrorCode::ServerBusy).await;
    ping_pong(&mut ws).await;
    join(&mut ws, "r", "Ann").await;
}

#[tokio::test]
async fn a_socket_that_does_not_join_in_time_is_closed() {
    let mut config = RouterConfig::default();
    config.join_timeout = Duration::from_millis(300);
    let (addr, rooms) = start(config).await;
    let mut ws = connect(addr).await;
    let opened = Instant::now();
    ping_pong(&mut ws).await;
    assert_eq!(expect_close(&mut ws).await, 1008);
    assert!(opened.elapsed() >= Duration::from_millis(250));
    assert!(rooms.leaves().is_empty());
}

#[tokio::test]
async fn a_silent_client_is_closed_and_a_live_one_is_kept() {
    let mut config = RouterConfig::default();
    config.ping_interval = Duration::from_millis(100);
    config.idle_timeout = Duration::from_millis(400);
    let (addr, rooms) = start(config).await;

    let mut live = connect(addr).await;
    let (live_id, _) = join(&mut live, "r", "Ann").await;
    let mut silent = connect(addr).await;
    let (silent_id, _) = join(&mut silent, "r", "Bob").await;
    assert!(matches!(
        recv(&mut live).await,
        ServerMessage::ParticipantJoined { .. }
    ));

    let until = Instant::now() + Duration::from_millis(1000);
    let mut pings = 0;
    let mut events = Vec::new();
    while let Ok(frame) = tokio::time::timeout_at(until, live.next()).await {
        match frame {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Text(text))) => {
                events.push(serde_json::from_str::<ServerMessage>(text.as_str()).expect("json"))
            }
            other => panic!("live socket: {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings");
    assert_eq!(
        events,
        vec![ServerMessage::ParticipantLeft {
            participant_id: silent_id.clone(),
            reason: "disconnected".into()
        }]
    );
    ping_pong(&mut live).await;
    assert_eq!(expect_close(&mut silent).await, 1008);
    assert_eq!(rooms.leaves(), vec![(silent_id, "disconnected".to_owned())]);
    assert!(!rooms.leaves().iter().any(|(id, _)| *id == live_id));
}
