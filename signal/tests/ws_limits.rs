//! What the WebSocket endpoint does against abusive clients, over real sockets: the join
//! deadline that refused joins do not extend, the cap on refused joins, the caps on sockets that
//! have not joined, the message rate limit, and close codes for broken frames.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use signal::protocol::PROTOCOL_VERSION;
use signal::{
    router, ClientSignal, ErrorCode, JoinRequest, MediaBackend, RouterConfig, ServerMessage,
    Session, SignalError,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const STEP: Duration = Duration::from_secs(5);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Admits everyone except to room `full`.
#[derive(Default)]
struct Rooms {
    /// Keeps the event queues open.
    queues: Mutex<Vec<mpsc::Sender<ServerMessage>>>,
}

impl MediaBackend for Rooms {
    async fn join(&self, req: JoinRequest) -> Result<Session, SignalError> {
        if req.room == "full" {
            return Err(SignalError::new(ErrorCode::RoomFull, "room is full"));
        }
        let (tx, rx) = mpsc::channel(8);
        let joined = ServerMessage::Joined {
            version: PROTOCOL_VERSION,
            room: req.room,
            participant_id: "p1".into(),
            participants: vec![],
            ice_servers: vec![],
            resume: None,
        };
        tx.try_send(joined).expect("fresh queue");
        self.queues.lock().unwrap().push(tx);
        Ok(Session {
            participant_id: "p1".into(),
            events: rx,
        })
    }

    fn signal(&self, _id: &str, _signal: ClientSignal) -> Result<(), SignalError> {
        Ok(())
    }

    fn leave(&self, _id: &str, _reason: &str) {}
}

/// Serves the router with the client's address known, as the `sfu` server does.
async fn start(config: RouterConfig) -> SocketAddr {
    let app = router(Arc::new(Rooms::default()), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

async fn try_connect(addr: SocketAddr) -> Result<Ws, u16> {
    match timeout(
        STEP,
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("connect timed out")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("connect: {e}"),
    }
}

async fn connect(addr: SocketAddr) -> Ws {
    try_connect(addr).await.expect("upgrade accepted")
}

async fn send_json(ws: &mut Ws, value: serde_json::Value) {
    timeout(STEP, ws.send(Message::text(value.to_string())))
        .await
        .expect("send timed out")
        .expect("send");
}

fn join_msg(room: &str) -> serde_json::Value {
    json!({"type": "join", "version": PROTOCOL_VERSION, "room": room, "name": "Ann"})
}

/// What the server sent next, skipping WebSocket pings and pongs: a message, or the close
/// frame's code and reason.
#[derive(Debug, PartialEq)]
enum Next {
    Msg(ServerMessage),
    Close(u16, String),
}

async fn next(ws: &mut Ws) -> Next {
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return Next::Msg(serde_json::from_str(text.as_str()).expect("server message"))
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    return Next::Close(u16::from(f.code), f.reason.to_string())
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a message or a close frame, got {other:?}"),
            }
        }
    };
    timeout(STEP, read).await.expect("nothing in time")
}

async fn expect_error(ws: &mut Ws, code: ErrorCode) {
    match next(ws).await {
        Next::Msg(ServerMessage::Error { code: got, .. }) if got == code => {}
        other => panic!("expected error {}, got {other:?}", code.as_str()),
    }
}

/// Reads until the close frame, skipping messages; its code and reason.
async fn until_close(ws: &mut Ws) -> (u16, String) {
    for _ in 0..10_000 {
        if let Next::Close(code, reason) = next(ws).await {
            return (code, reason);
        }
    }
    panic!("no close frame");
}

#[tokio::test]
async fn refused_joins_do_not_extend_the_join_deadline() {
    let mut config = RouterConfig::default();
    config.join_timeout = Duration::from_millis(600);
    config.max_join_attempts = 100;
    let addr = start(config).await;
    let mut ws = connect(addr).await;
    let opened = Instant::now();
    // A refused join every 200 ms: each used to restart the deadline.
    let closed = loop {
        assert!(opened.elapsed() < STEP, "the socket stayed open");
        send_json(&mut ws, join_msg("full")).await;
        match next(&mut ws).await {
            Next::Msg(ServerMessage::Error { code, .. }) => assert_eq!(code, ErrorCode::RoomFull),
            Next::Close(code, reason) => break (code, reason),
            other => panic!("{other:?}"),
        }
        if let Ok(Some(Ok(Message::Close(Some(f))))) =
            timeout(Duration::from_millis(200), ws.next()).await
        {
            break (u16::from(f.code), f.reason.to_string());
        }
    };
    assert_eq!(closed, (1008, "join timeout".to_owned()));
    assert!(
        opened.elapsed() < Duration::from_millis(600 + 1500),
        "closed after {:?}",
        opened.elapsed()
    );
}

#[tokio::test]
async fn the_third_refused_join_is_answered_then_the_socket_is_closed() {
    let addr = start(RouterConfig::default()).await;
    let mut ws = connect(addr).await;
    for _ in 0..3 {
        send_json(&mut ws, join_msg("full")).await;
        expect_error(&mut ws, ErrorCode::RoomFull).await;
    }
    assert_eq!(
        next(&mut ws).await,
        Next::Close(1008, "too many joins".into())
    );

    // Two refusals leave the socket able to join.
    let mut ws = connect(addr).await;
    for room in ["full", "no spaces"] {
        send_json(&mut ws, join_msg(room)).await;
        next(&mut ws).await;
    }
    send_json(&mut ws, join_msg("r")).await;
    assert!(matches!(
        next(&mut ws).await,
        Next::Msg(ServerMessage::Joined { .. })
    ));
}

#[tokio::test]
async fn sockets_that_have_not_joined_are_capped_per_address_and_in_all() {
    let mut config = RouterConfig::default();
    config.max_pending_sockets_per_ip = 2;
    let addr = start(config).await;
    let mut first = connect(addr).await;
    let _second = connect(addr).await;
    assert_eq!(try_connect(addr).await.err(), Some(503));
    // A join frees the slot.
    send_json(&mut first, join_msg("r")).await;
    assert!(matches!(
        next(&mut first).await,
        Next::Msg(ServerMessage::Joined { .. })
    ));
    let mut third = connect(addr).await;
    assert_eq!(try_connect(addr).await.err(), Some(503));
    // So does a close.
    third.close(None).await.expect("close");
    let deadline = Instant::now() + STEP;
    while try_connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the closed socket kept its slot");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut config = RouterConfig::default();
    config.max_pending_sockets = 1;
    let addr = start(config).await;
    let _only = connect(addr).await;
    assert_eq!(try_connect(addr).await.err(), Some(503));
}

#[tokio::test]
async fn messages_above_the_rate_are_refused_and_a_flood_is_closed() {
    let mut config = RouterConfig::default();
    config.message_rate = 1;
    config.message_burst = 10;
    let addr = start(config).await;
    let mut ws = connect(addr).await;
    for _ in 0..10 {
        send_json(&mut ws, json!({"type": "ping"})).await;
    }
    for _ in 0..10 {
        assert_eq!(next(&mut ws).await, Next::Msg(ServerMessage::Pong));
    }
    // Over the burst: one error for several refused messages (a token may come back meanwhile).
    for _ in 0..5 {
        send_json(&mut ws, json!({"type": "ping"})).await;
    }
    let mut pongs = 0;
    loop {
        match next(&mut ws).await {
            Next::Msg(ServerMessage::Pong) if pongs < 5 => pongs += 1,
            Next::Msg(ServerMessage::Error { code, .. }) => {
                assert_eq!(code, ErrorCode::RateLimited);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    // A second later a token is back.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    send_json(&mut ws, json!({"type": "ping"})).await;
    assert_eq!(next(&mut ws).await, Next::Msg(ServerMessage::Pong));

    // A flood: far more than 10 bursts beyond the rate.
    let flood = async {
        for _ in 0..400 {
            if ws.send(Message::text(r#"{"type":"ping"}"#)).await.is_err() {
                break;
            }
        }
    };
    timeout(STEP, flood).await.expect("flood sent");
    assert_eq!(
        until_close(&mut ws).await,
        (1008, "message rate exceeded".to_owned())
    );
}

#[tokio::test]
async fn broken_frames_get_the_right_close_code() {
    let addr = start(RouterConfig::default()).await;

    let mut ws = connect(addr).await;
    let not_utf8 = Frame::message(vec![0xff, 0xfe, 0x22], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(not_utf8)).await.expect("send");
    assert_eq!(
        next(&mut ws).await,
        Next::Close(1007, "invalid utf-8".into())
    );

    let mut ws = connect(addr).await;
    let reserved = Frame::message(vec![1, 2, 3], OpCode::Data(Data::Reserved(3)), true);
    ws.send(Message::Frame(reserved)).await.expect("send");
    assert_eq!(
        next(&mut ws).await,
        Next::Close(1002, "protocol error".into())
    );

    let mut ws = connect(addr).await;
    let huge = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "a".repeat(400 * 1024));
    ws.send(Message::text(huge)).await.expect("send");
    assert_eq!(
        next(&mut ws).await,
        Next::Close(1009, "message too big".into())
    );
}
