//! Resuming a session after its WebSocket dropped, against the real `sfu` binary: the same
//! participant is taken up on a new socket with the secret from its `joined`, the others see
//! `participant_reconnecting` and `participant_resumed` and never a leave, and messages held back
//! meanwhile arrive in order; without a resume the participant leaves when the grace period ends.

mod server_process;

use serde_json::{json, Value};
use server_process::{connect, Server, Ws};
use tokio::io::{AsyncRead, AsyncWrite};

/// Joins `room` as `identity`; returns the socket, the participant id and the resume secret.
async fn join(
    server: &Server,
    room: &str,
    identity: &str,
) -> (
    Ws<impl AsyncRead + AsyncWrite + Unpin>,
    String,
    Option<String>,
) {
    let mut ws = connect(&server.ws_url()).await;
    let joined = ws.join(room, identity).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let id = joined["participant_id"].as_str().unwrap().to_owned();
    let secret = joined["resume"]["secret"].as_str().map(str::to_owned);
    (ws, id, secret)
}

fn resume(id: &str, secret: &str) -> Value {
    json!({"type": "resume", "version": 1, "participant_id": id, "secret": secret})
}

/// Message types up to and including the first of type `kind`.
async fn types_until<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, kind: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let m = ws
            .recv()
            .await
            .unwrap_or_else(|| panic!("closed before {kind}; saw {seen:?}"));
        let done = m["type"] == kind;
        seen.push(m);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_resumes_the_same_participant_without_a_leave() {
    let server = Server::start(&[]).await;
    let (ann_ws, ann, secret) = join(&server, "r", "ann").await;
    let secret = secret.expect("joined carries a resume secret");
    let (mut bob_ws, _bob, _) = join(&server, "r", "bob").await;

    // Ann's socket goes away without `leave` (a dropped connection).
    drop(ann_ws);
    let seen = types_until(&mut bob_ws, "participant_reconnecting").await;
    assert_eq!(seen.last().unwrap()["participant_id"], ann.as_str());

    // Something happens in the room meanwhile: it is held for ann.
    let (_carl_ws, carl, _) = join(&server, "r", "carl").await;

    // A wrong secret gets nothing.
    let mut thief = connect(&server.ws_url()).await;
    thief.send(resume(&ann, "not-the-secret")).await;
    let refused = thief.recv().await.unwrap();
    assert_eq!(refused["code"], "resume_failed", "{refused}");

    let mut back = connect(&server.ws_url()).await;
    back.send(resume(&ann, &secret)).await;
    let first = back.recv().await.unwrap();
    assert_eq!(first["type"], "resumed", "{first}");
    assert_eq!(first["participant_id"], ann.as_str());
    let held = back.until("participant_joined").await;
    assert_eq!(held["participant"]["id"], carl.as_str(), "the held message");

    let seen = types_until(&mut bob_ws, "participant_resumed").await;
    assert!(
        seen.iter().all(|m| m["type"] != "participant_left"),
        "bob saw ann leave: {seen:?}"
    );

    // The resumed session is a whole session: it can leave cleanly.
    back.send(json!({"type": "leave"})).await;
    let left = back.until("left").await;
    assert_eq!(left["reason"], "left");
    let gone = bob_ws.until("participant_left").await;
    assert_eq!(gone["participant_id"], ann.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_resume_the_participant_leaves_when_the_grace_period_ends() {
    let server = Server::start(&["--participant-resume-grace", "2s"]).await;
    let (ann_ws, ann, secret) = join(&server, "r", "ann").await;
    let (mut bob_ws, _, _) = join(&server, "r", "bob").await;
    drop(ann_ws);
    bob_ws.until("participant_reconnecting").await;
    let left = bob_ws.until("participant_left").await;
    assert_eq!(left["participant_id"], ann.as_str());
    assert_eq!(left["reason"], "disconnected");

    let mut late = connect(&server.ws_url()).await;
    late.send(resume(&ann, &secret.unwrap())).await;
    let refused = late.recv().await.unwrap();
    assert_eq!(refused["code"], "resume_failed", "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_resuming_off_a_dropped_socket_leaves_at_once() {
    let server = Server::start(&["--participant-resume-grace", "0s"]).await;
    let (ann_ws, ann, secret) = join(&server, "r", "ann").await;
    assert_eq!(secret, None, "no ticket when resuming is off");
    let (mut bob_ws, _, _) = join(&server, "r", "bob").await;
    drop(ann_ws);
    let seen = types_until(&mut bob_ws, "participant_left").await;
    assert!(seen.iter().all(|m| m["type"] != "participant_reconnecting"));
    assert_eq!(seen.last().unwrap()["participant_id"], ann.as_str());
}

/// A client that resumes on a new socket while its old one still works (it suspected the old one
/// after a network change): the old socket is closed with code 4000 and no `left`, the session
/// goes on on the new one, and the others see nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_while_the_old_socket_lives_closes_it_without_a_leave() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let server = Server::start(&[]).await;
    let (mut old, ann, secret) = join(&server, "r", "ann").await;
    let secret = secret.expect("joined carries a resume secret");
    let (mut bob_ws, _bob, _) = join(&server, "r", "bob").await;
    let _ = old.until("participant_joined").await;

    let mut new = connect(&server.ws_url()).await;
    new.send(resume(&ann, &secret)).await;
    assert_eq!(new.recv().await.unwrap()["type"], "resumed");

    // The old socket: no `left`, then a close frame with code 4000.
    let close = loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(5), old.0.next())
            .await
            .expect("the old socket was not closed");
        match m {
            Some(Ok(Message::Text(t))) => assert!(!t.contains("\"left\""), "told `left`: {t}"),
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("the old socket ended without a close frame: {other:?}"),
        }
    };
    let frame = close.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 4000, "{frame:?}");

    // The session goes on: a ping on the new socket is answered, and bob sees no change.
    new.send(json!({"type": "ping"})).await;
    assert_eq!(new.until("pong").await["type"], "pong");
    bob_ws.send(json!({"type": "ping"})).await;
    let seen = types_until(&mut bob_ws, "pong").await;
    assert!(
        seen.iter().all(|m| m["type"] == "pong"),
        "bob saw something: {seen:?}"
    );
}
