//! Joining over WebSocket with access tokens: the router verifies the token before the media side
//! hears of the join, and passes identity, name, metadata and grants down.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use signal::auth::{unix_now, Claims, Grants, KeySet, TokenSpec};
use signal::protocol::PROTOCOL_VERSION;
use signal::{
    router, ClientSignal, ErrorCode, JoinRequest, MediaBackend, RouterConfig, ServerMessage,
    Session, SignalError,
};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const STEP: Duration = Duration::from_secs(5);
const KEY: &str = "APIws";
const SECRET: &str = "ws-secret-ws-secret-ws-secret-ws-secret";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Admits everyone and remembers what it was asked.
#[derive(Default)]
struct Recorder {
    joins: Mutex<Vec<JoinRequest>>,
    /// Keeps the event queues open.
    queues: Mutex<Vec<mpsc::Sender<ServerMessage>>>,
}

impl MediaBackend for Recorder {
    async fn join(&self, req: JoinRequest) -> Result<Session, SignalError> {
        let (tx, rx) = mpsc::channel(8);
        let joined = ServerMessage::Joined {
            version: PROTOCOL_VERSION,
            room: req.room.clone(),
            participant_id: "p1".into(),
            participants: vec![],
            ice_servers: vec![],
            resume: None,
        };
        tx.try_send(joined).expect("fresh queue");
        self.queues.lock().unwrap().push(tx);
        self.joins.lock().unwrap().push(req);
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

fn keys() -> KeySet {
    KeySet::single(KEY, SECRET).unwrap()
}

async fn start() -> (SocketAddr, Arc<Recorder>) {
    let backend = Arc::new(Recorder::default());
    let mut config = RouterConfig::default();
    config.keys = Some(keys());
    // One socket tries every kind of bad token in turn.
    config.max_join_attempts = 100;
    let app = router(Arc::clone(&backend), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, backend)
}

async fn connect(addr: SocketAddr) -> Ws {
    let url = format!("ws://{addr}/ws");
    timeout(STEP, tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap()
        .0
}

async fn join(ws: &mut Ws, room: &str, token: Option<&str>) -> ServerMessage {
    let mut msg =
        json!({"type": "join", "version": PROTOCOL_VERSION, "room": room, "name": "Client"});
    if let Some(t) = token {
        msg["token"] = json!(t);
    }
    timeout(STEP, ws.send(Message::text(msg.to_string())))
        .await
        .unwrap()
        .unwrap();
    loop {
        match timeout(STEP, ws.next()).await.unwrap() {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

fn claims(room: &str) -> Claims {
    let now = unix_now();
    Claims {
        iss: KEY.into(),
        sub: "ann".into(),
        name: Some("Ann".into()),
        room: Some(room.into()),
        grants: Grants::participant(),
        metadata: None,
        nbf: now,
        exp: now + 60,
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_an_error_and_the_socket_may_retry() {
    let (addr, backend) = start().await;
    let mut ws = connect(addr).await;
    let now = unix_now();
    let sign = |c: Claims| keys().sign(&c).unwrap();
    let expired = sign(Claims {
        nbf: now - 7200,
        exp: now - 3600,
        ..claims("a")
    });
    let early = sign(Claims {
        nbf: now + 3600,
        exp: now + 7200,
        ..claims("a")
    });
    let forged = KeySet::single(KEY, &"x".repeat(40))
        .unwrap()
        .sign(&claims("a"))
        .unwrap();
    let no_join = sign(Claims {
        grants: Grants {
            join: false,
            ..Grants::participant()
        },
        ..claims("a")
    });
    let for_b = sign(claims("b"));
    let cases: Vec<(Option<&str>, ErrorCode, &str)> = vec![
        (None, ErrorCode::Unauthorized, "an access token is required"),
        (
            Some("garbage"),
            ErrorCode::Unauthorized,
            "the access token is malformed: not a JWT",
        ),
        (
            Some(&expired),
            ErrorCode::Unauthorized,
            "the access token has expired",
        ),
        (
            Some(&early),
            ErrorCode::Unauthorized,
            "the access token is not valid yet",
        ),
        (
            Some(&forged),
            ErrorCode::Unauthorized,
            "the access token's signature is invalid",
        ),
        (
            Some(&no_join),
            ErrorCode::Forbidden,
            "the access token does not grant join",
        ),
        (
            Some(&for_b),
            ErrorCode::Forbidden,
            "the access token is not valid for this room",
        ),
    ];
    for (token, code, message) in cases {
        assert_eq!(
            join(&mut ws, "a", token).await,
            ServerMessage::Error {
                code,
                message: message.into()
            },
            "{token:?}"
        );
    }
    assert!(backend.joins.lock().unwrap().is_empty());

    // The same socket may still join with a good token.
    let good = sign(claims("a"));
    assert!(matches!(
        join(&mut ws, "a", Some(&good)).await,
        ServerMessage::Joined { .. }
    ));
}

#[tokio::test]
async fn the_token_decides_identity_name_metadata_and_grants() {
    let (addr, backend) = start().await;
    let mut ws = connect(addr).await;
    let spec = TokenSpec {
        name: Some("Ann from the token".into()),
        metadata: Some("{\"seat\":3}".into()),
        grants: Grants {
            publish: false,
            ..Grants::participant()
        },
        ..TokenSpec::participant("a", "ann@example.com")
    };
    let (token, _) = keys().mint(KEY, &spec).unwrap();
    assert!(matches!(
        join(&mut ws, "a", Some(&token)).await,
        ServerMessage::Joined { .. }
    ));
    let req = backend.joins.lock().unwrap()[0].clone();
    assert_eq!(req.name, "Ann from the token");
    assert_eq!(req.identity.as_deref(), Some("ann@example.com"));
    assert_eq!(req.metadata.as_deref(), Some("{\"seat\":3}"));
    assert!(!req.grants.publish && req.grants.subscribe && req.grants.join);

    // Without a name in the token, the client's name is used.
    let mut ws = connect(addr).await;
    let (token, _) = keys()
        .mint(KEY, &TokenSpec::participant("a", "bob"))
        .unwrap();
    join(&mut ws, "a", Some(&token)).await;
    assert_eq!(backend.joins.lock().unwrap()[1].name, "Client");
}
