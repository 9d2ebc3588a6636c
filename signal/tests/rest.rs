//! The REST API, called in memory with `oneshot` against an in-memory room service: every route
//! for success, authentication failures, validation errors naming the field, not found and
//! conflicts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use signal::auth::{unix_now, Claims, Grants, KeySet, TokenSpec};
use signal::protocol::{ParticipantInfo, SignalError, TrackInfo, TrackKind, TrackSource};
use signal::rest::dto::{CreateRoom, RoomInfo, UpdateParticipant, UpdateRoom};
use signal::rest::ROUTES;
use signal::{api_router, ApiConfig, ErrorCode, RoomService};
use tower::ServiceExt;

const KEY: &str = "APItest";
const SECRET: &str = "test-secret-test-secret-test-secret-42";

/// Rooms in memory. Room `busy` makes every call fail with `server_busy`.
#[derive(Default)]
struct Rooms {
    rooms: Mutex<BTreeMap<String, (RoomInfo, Vec<ParticipantInfo>)>>,
}

fn not_found(what: &str) -> SignalError {
    SignalError::new(ErrorCode::NotFound, format!("no such {what}"))
}

impl Rooms {
    fn with<T>(
        &self,
        room: &str,
        f: impl FnOnce(&mut RoomInfo, &mut Vec<ParticipantInfo>) -> Result<T, SignalError>,
    ) -> Result<T, SignalError> {
        let mut rooms = self.rooms.lock().unwrap();
        let (info, ps) = rooms.get_mut(room).ok_or_else(|| not_found("room"))?;
        f(info, ps)
    }

    fn add_participant(&self, room: &str, id: &str) {
        self.with(room, |info, ps| {
            info.num_participants += 1;
            ps.push(ParticipantInfo {
                id: id.into(),
                name: "Ann".into(),
                identity: Some("ann".into()),
                metadata: None,
                tracks: vec![TrackInfo {
                    id: format!("{id}-0"),
                    kind: TrackKind::Audio,
                    muted: false,
                    source: TrackSource::Microphone,
                }],
            });
            Ok(())
        })
        .unwrap();
    }
}

impl RoomService for Rooms {
    async fn create_room(&self, req: CreateRoom) -> Result<RoomInfo, SignalError> {
        let mut rooms = self.rooms.lock().unwrap();
        if rooms.contains_key(&req.name) {
            return Err(SignalError::new(ErrorCode::Conflict, "the room exists"));
        }
        let info = RoomInfo {
            name: req.name.clone(),
            max_participants: req.max_participants.unwrap_or(0),
            empty_timeout: req.empty_timeout.unwrap_or(300),
            metadata: req.metadata.unwrap_or_default(),
            created_at: unix_now(),
            num_participants: 0,
            video_codecs: req.video_codecs.unwrap_or_default(),
            node: None,
        };
        rooms.insert(req.name, (info.clone(), Vec::new()));
        Ok(info)
    }

    async fn list_rooms(&self) -> Result<Vec<RoomInfo>, SignalError> {
        Ok(self
            .rooms
            .lock()
            .unwrap()
            .values()
            .map(|(i, _)| i.clone())
            .collect())
    }

    async fn get_room(&self, room: String) -> Result<RoomInfo, SignalError> {
        if room == "busy" {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        self.with(&room, |i, _| Ok(i.clone()))
    }

    async fn update_room(&self, room: String, req: UpdateRoom) -> Result<RoomInfo, SignalError> {
        self.with(&room, |i, _| {
            if let Some(m) = req.metadata {
                i.metadata = m;
            }
            if let Some(m) = req.max_participants {
                i.max_participants = m;
            }
            Ok(i.clone())
        })
    }

    async fn delete_room(&self, room: String) -> Result<(), SignalError> {
        let mut rooms = self.rooms.lock().unwrap();
        rooms
            .remove(&room)
            .map(|_| ())
            .ok_or_else(|| not_found("room"))
    }

    async fn list_participants(&self, room: String) -> Result<Vec<ParticipantInfo>, SignalError> {
        self.with(&room, |_, ps| Ok(ps.clone()))
    }

    async fn remove_participant(&self, room: String, id: String) -> Result<(), SignalError> {
        self.with(&room, |_, ps| {
            let n = ps.len();
            ps.retain(|p| p.id != id);
            if ps.len() == n {
                Err(not_found("participant"))
            } else {
                Ok(())
            }
        })
    }

    async fn update_participant(
        &self,
        room: String,
        id: String,
        req: UpdateParticipant,
    ) -> Result<ParticipantInfo, SignalError> {
        self.with(&room, |_, ps| {
            let p = ps
                .iter_mut()
                .find(|p| p.id == id)
                .ok_or_else(|| not_found("participant"))?;
            if let Some(n) = req.name {
                p.name = n;
            }
            if req.metadata.is_some() {
                p.metadata = req.metadata;
            }
            Ok(p.clone())
        })
    }

    async fn mute_track(
        &self,
        room: String,
        id: String,
        track: String,
        muted: bool,
    ) -> Result<TrackInfo, SignalError> {
        self.with(&room, |_, ps| {
            let p = ps
                .iter_mut()
                .find(|p| p.id == id)
                .ok_or_else(|| not_found("participant"))?;
            let t = p
                .tracks
                .iter_mut()
                .find(|t| t.id == track)
                .ok_or_else(|| not_found("track"))?;
            t.muted = muted;
            Ok(t.clone())
        })
    }
}

fn keys() -> KeySet {
    KeySet::single(KEY, SECRET).unwrap()
}

fn token_with(grants: Grants, room: Option<&str>) -> String {
    token_for(grants, room, Duration::from_secs(3600))
}

fn token_for(grants: Grants, room: Option<&str>, ttl: Duration) -> String {
    let spec = TokenSpec {
        identity: "ops".into(),
        name: None,
        room: room.map(str::to_owned),
        grants,
        metadata: None,
        ttl,
    };
    keys().mint(KEY, &spec).unwrap().0
}

fn admin() -> String {
    token_with(Grants::admin(), None)
}

struct Api {
    app: Router,
    rooms: Arc<Rooms>,
}

impl Api {
    fn new(dev_mode: bool) -> Api {
        let rooms = Arc::new(Rooms::default());
        let mut config = if dev_mode {
            ApiConfig::development(keys())
        } else {
            ApiConfig::new(keys())
        };
        config.call_timeout = Duration::from_millis(200);
        Api {
            app: api_router(Arc::clone(&rooms), config),
            rooms,
        }
    }

    /// A fresh API with room `r1` (max 2 participants) holding participant `p1`.
    fn with_room() -> Api {
        let api = Api::new(false);
        let mut rooms = api.rooms.rooms.lock().unwrap();
        rooms.insert(
            "r1".into(),
            (
                RoomInfo {
                    name: "r1".into(),
                    max_participants: 2,
                    empty_timeout: 300,
                    metadata: String::new(),
                    created_at: 1,
                    num_participants: 0,
                    video_codecs: Vec::new(),
                    node: None,
                },
                Vec::new(),
            ),
        );
        drop(rooms);
        api.rooms.add_participant("r1", "p1");
        api
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
        let response = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {bytes:?}"))
        };
        (status, value)
    }

    /// A call with an admin token.
    async fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (StatusCode, Value) {
        self.call(method, path, Some(&format!("Bearer {}", admin())), body)
            .await
    }
}

/// Asserts an error answer: status, code and (when given) field.
fn refused(answer: &(StatusCode, Value), status: StatusCode, code: &str, field: Option<&str>) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["code"], code, "{}", answer.1);
    assert!(answer.1["message"].as_str().is_some_and(|m| !m.is_empty()));
    match field {
        Some(f) => assert_eq!(answer.1["field"], f, "{}", answer.1),
        None => assert!(answer.1.get("field").is_none(), "{}", answer.1),
    }
}

fn concrete(path: &str) -> String {
    path.replace("{room}", "r1")
        .replace("{participant}", "p1")
        .replace("{track}", "p1-0")
}

#[tokio::test]
async fn every_route_exists_and_needs_a_token() {
    let api = Api::with_room();
    for (method, path) in ROUTES {
        let path = concrete(path);
        let answer = api.call(method, &path, None, Some("{}")).await;
        match path.as_str() {
            "/api/openapi.json" => assert_eq!(answer.0, StatusCode::OK),
            // Only in development mode.
            "/api/dev/token" => refused(&answer, StatusCode::NOT_FOUND, "not_found", None),
            _ => refused(&answer, StatusCode::UNAUTHORIZED, "unauthorized", None),
        }
    }
    let dev = Api::new(true);
    let answer = dev.call("GET", "/api/dev/token", None, None).await;
    refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("room"),
    );
}

#[tokio::test]
async fn bad_credentials_are_refused_with_stable_messages() {
    let api = Api::with_room();
    let now = unix_now();
    let claims = |f: &dyn Fn(&mut Claims)| {
        let mut c = Claims {
            iss: KEY.into(),
            sub: "ops".into(),
            name: None,
            room: None,
            grants: Grants::admin(),
            metadata: None,
            nbf: now,
            exp: now + 60,
        };
        f(&mut c);
        c
    };
    let expired = keys()
        .sign(&claims(&|c| {
            c.nbf = now - 7200;
            c.exp = now - 3600;
        }))
        .unwrap();
    let early = keys()
        .sign(&claims(&|c| {
            c.nbf = now + 3600;
            c.exp = now + 7200;
        }))
        .unwrap();
    let forged = KeySet::single(KEY, &"f".repeat(40))
        .unwrap()
        .sign(&claims(&|_| {}))
        .unwrap();
    let stranger = KeySet::single("other", SECRET)
        .unwrap()
        .sign(&claims(&|c| c.iss = "other".into()))
        .unwrap();
    let participant = token_with(Grants::participant(), Some("r1"));
    let cases: Vec<(String, StatusCode, &str, &str)> = vec![
        (
            String::new(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the Authorization header must be \"Bearer <access token>\"",
        ),
        (
            format!("Basic {KEY}:{SECRET}"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the Authorization header must be \"Bearer <access token>\"",
        ),
        (
            "Bearer not.a.jwt".into(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the access token is malformed: not a JWT",
        ),
        (
            format!("Bearer {expired}"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the access token has expired",
        ),
        (
            format!("Bearer {early}"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the access token is not valid yet",
        ),
        (
            format!("Bearer {forged}"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the access token's signature is invalid",
        ),
        (
            format!("Bearer {stranger}"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the access token is signed with an unknown API key",
        ),
        (
            format!("Bearer {participant}"),
            StatusCode::FORBIDDEN,
            "forbidden",
            "the access token does not grant room_admin",
        ),
    ];
    for (auth, status, code, message) in cases {
        let answer = api.call("GET", "/api/rooms", Some(&auth), None).await;
        refused(&answer, status, code, None);
        assert_eq!(answer.1["message"], message, "{auth}");
    }
    let missing = api.call("GET", "/api/rooms", None, None).await;
    assert_eq!(missing.1["message"], "an access token is required");
}

#[tokio::test]
async fn a_room_scoped_admin_token_reaches_its_room_only() {
    let api = Api::with_room();
    api.admin("POST", "/api/rooms", Some(r#"{"name":"r2"}"#))
        .await;
    let scoped = format!(
        "Bearer {}",
        token_with(
            Grants {
                room_admin: true,
                ..Grants::participant()
            },
            Some("r1")
        )
    );
    let (status, list) = api.call("GET", "/api/rooms", Some(&scoped), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["rooms"].as_array().unwrap().len(), 1);
    assert_eq!(list["rooms"][0]["name"], "r1");
    let ok = api.call("GET", "/api/rooms/r1", Some(&scoped), None).await;
    assert_eq!(ok.0, StatusCode::OK);
    for (method, path, body) in [
        ("GET", "/api/rooms/r2", None),
        ("DELETE", "/api/rooms/r2", None),
        ("POST", "/api/rooms", Some(r#"{"name":"r3"}"#)),
        (
            "POST",
            "/api/tokens",
            Some(r#"{"identity":"x","room":"r2"}"#),
        ),
    ] {
        let answer = api.call(method, path, Some(&scoped), body).await;
        refused(&answer, StatusCode::FORBIDDEN, "forbidden", None);
        assert_eq!(
            answer.1["message"],
            "the access token is not valid for this room"
        );
    }
}

#[tokio::test]
async fn rooms_are_created_listed_read_updated_and_deleted() {
    let api = Api::new(false);
    let body = r#"{"name":"standup","max_participants":5,"empty_timeout":60,"metadata":"m"}"#;
    let (status, room) = api.admin("POST", "/api/rooms", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(room["name"], "standup");
    assert_eq!(room["max_participants"], 5);
    assert_eq!(room["empty_timeout"], 60);
    assert_eq!(room["metadata"], "m");
    assert_eq!(room["num_participants"], 0);

    let again = api.admin("POST", "/api/rooms", Some(body)).await;
    refused(&again, StatusCode::CONFLICT, "conflict", None);

    let (status, list) = api.admin("GET", "/api/rooms", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["rooms"][0]["name"], "standup");

    let (status, got) = api.admin("GET", "/api/rooms/standup", None).await;
    assert_eq!((status, &got), (StatusCode::OK, &room));
    let missing = api.admin("GET", "/api/rooms/nope", None).await;
    refused(&missing, StatusCode::NOT_FOUND, "not_found", None);
    let bad = api.admin("GET", "/api/rooms/a%20b", None).await;
    refused(
        &bad,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("room"),
    );

    let (status, patched) = api
        .admin("PATCH", "/api/rooms/standup", Some(r#"{"metadata":"new"}"#))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["metadata"], "new");
    let missing = api
        .admin("PATCH", "/api/rooms/nope", Some(r#"{"metadata":"x"}"#))
        .await;
    refused(&missing, StatusCode::NOT_FOUND, "not_found", None);
    let huge = format!(r#"{{"metadata":"{}"}}"#, "x".repeat(20_000));
    let answer = api.admin("PATCH", "/api/rooms/standup", Some(&huge)).await;
    refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("metadata"),
    );

    let (status, body) = api.admin("DELETE", "/api/rooms/standup", None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let gone = api.admin("DELETE", "/api/rooms/standup", None).await;
    refused(&gone, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn room_bodies_are_validated_field_by_field() {
    let api = Api::new(false);
    for (body, field) in [
        ("{}", "name"),
        (r#"{"name":""}"#, "name"),
        (r#"{"name":"a b"}"#, "name"),
        (r#"{"name":7}"#, "name"),
        (
            r#"{"name":"r","max_participants":10001}"#,
            "max_participants",
        ),
        (r#"{"name":"r","max_participants":-1}"#, "max_participants"),
        (r#"{"name":"r","empty_timeout":0}"#, "empty_timeout"),
        (r#"{"name":"r","empty_timeout":"5m"}"#, "empty_timeout"),
        (r#"{"name":"r","colour":"red"}"#, "colour"),
        (r#"{"name":"r","video_codecs":["h265"]}"#, "video_codecs"),
        (
            r#"{"name":"r","video_codecs":["vp8","VP8"]}"#,
            "video_codecs",
        ),
        (r#"{"name":"r","video_codecs":"vp8"}"#, "video_codecs"),
        ("not json", "body"),
        ("", "body"),
    ] {
        let answer = api.admin("POST", "/api/rooms", Some(body)).await;
        refused(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(field),
        );
    }
    let big = format!(r#"{{"name":"r","metadata":"{}"}}"#, "x".repeat(70_000));
    let answer = api.admin("POST", "/api/rooms", Some(&big)).await;
    refused(
        &answer,
        StatusCode::PAYLOAD_TOO_LARGE,
        "message_too_large",
        None,
    );
}

#[tokio::test]
async fn participants_are_listed_read_updated_muted_and_removed() {
    let api = Api::with_room();
    let (status, list) = api.admin("GET", "/api/rooms/r1/participants", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["participants"][0]["id"], "p1");
    assert_eq!(list["participants"][0]["tracks"][0]["kind"], "audio");
    let missing = api.admin("GET", "/api/rooms/nope/participants", None).await;
    refused(&missing, StatusCode::NOT_FOUND, "not_found", None);

    let (status, p) = api
        .admin("GET", "/api/rooms/r1/participants/p1", None)
        .await;
    assert_eq!((status, &p["identity"]), (StatusCode::OK, &json!("ann")));
    let missing = api
        .admin("GET", "/api/rooms/r1/participants/p9", None)
        .await;
    refused(&missing, StatusCode::NOT_FOUND, "not_found", None);

    let (status, p) = api
        .admin(
            "PATCH",
            "/api/rooms/r1/participants/p1",
            Some(r#"{"name":"Ann B.","metadata":"{\"hand\":true}"}"#),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["name"], "Ann B.");
    assert_eq!(p["metadata"], "{\"hand\":true}");
    for (body, field) in [
        (r#"{"name":""}"#, "name"),
        (r#"{"name":"a\nb"}"#, "name"),
        (r#"{"name":1}"#, "name"),
        (r#"{"nick":"x"}"#, "nick"),
    ] {
        let answer = api
            .admin("PATCH", "/api/rooms/r1/participants/p1", Some(body))
            .await;
        refused(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(field),
        );
    }
    let missing = api
        .admin(
            "PATCH",
            "/api/rooms/r1/participants/p9",
            Some(r#"{"name":"X"}"#),
        )
        .await;
    refused(&missing, StatusCode::NOT_FOUND, "not_found", None);

    let mute = "/api/rooms/r1/participants/p1/tracks/p1-0/mute";
    let (status, t) = api.admin("POST", mute, Some(r#"{"muted":true}"#)).await;
    assert_eq!((status, &t["muted"]), (StatusCode::OK, &json!(true)));
    let answer = api.admin("POST", mute, Some("{}")).await;
    refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("muted"),
    );
    let answer = api.admin("POST", mute, Some(r#"{"muted":"yes"}"#)).await;
    refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("muted"),
    );
    let missing = api
        .admin(
            "POST",
            "/api/rooms/r1/participants/p1/tracks/zz/mute",
            Some(r#"{"muted":true}"#),
        )
        .await;
    refused(&missing, StatusCode::NOT_FOUND, "not_found", None);

    let (status, _) = api
        .admin("DELETE", "/api/rooms/r1/participants/p1", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let gone = api
        .admin("DELETE", "/api/rooms/r1/participants/p1", None)
        .await;
    refused(&gone, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn tokens_are_minted_and_verify() {
    let api = Api::new(false);
    let body = r#"{"identity":"ann","room":"r1","name":"Ann","ttl":600,
                   "grants":{"join":true,"subscribe":true},"metadata":"m"}"#;
    let (status, t) = api.admin("POST", "/api/tokens", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let claims = keys().verify(t["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.iss, KEY);
    assert_eq!(claims.sub, "ann");
    assert_eq!(claims.room.as_deref(), Some("r1"));
    assert_eq!(claims.name.as_deref(), Some("Ann"));
    assert_eq!(claims.metadata.as_deref(), Some("m"));
    assert!(claims.grants.join && claims.grants.subscribe && !claims.grants.publish);
    assert_eq!(claims.exp - claims.nbf, 600);
    assert_eq!(t["expires_at"], claims.exp);

    let (_, t) = api
        .admin(
            "POST",
            "/api/tokens",
            Some(r#"{"identity":"bob","room":"r1"}"#),
        )
        .await;
    let claims = keys().verify(t["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.grants, Grants::participant());

    for (body, field) in [
        ("{}", "identity"),
        (r#"{"identity":""}"#, "identity"),
        (r#"{"identity":"a"}"#, "room"),
        (r#"{"identity":"a","room":"x y"}"#, "room"),
        (r#"{"identity":"a","room":"r","ttl":0}"#, "ttl"),
        (r#"{"identity":"a","room":"r","ttl":99999999}"#, "ttl"),
        (r#"{"identity":"a","room":"r","name":""}"#, "name"),
        (
            r#"{"identity":"a","room":"r","grants":{"join":"yes"}}"#,
            "grants.join",
        ),
        (
            r#"{"identity":"a","room":"r","grants":{"fly":true}}"#,
            "grants.fly",
        ),
    ] {
        let answer = api.admin("POST", "/api/tokens", Some(body)).await;
        refused(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(field),
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_that_does_not_arrive_in_time_is_refused() {
    let api = Api::new(false);
    let never = futures_util::stream::pending::<Result<Vec<u8>, std::io::Error>>();
    let request = Request::post("/api/rooms")
        .header("authorization", format!("Bearer {}", admin()))
        .body(Body::from_stream(never))
        .unwrap();
    let response = api.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let e: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(e["field"], "body", "{e}");
}

#[tokio::test]
async fn api_answers_carry_the_security_headers() {
    let api = Api::new(false);
    for path in ["/api/openapi.json", "/api/rooms", "/api/nope"] {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = api.app.clone().oneshot(request).await.unwrap();
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
    }
}

#[tokio::test]
async fn minted_tokens_never_outlive_the_token_that_mints_them_nor_the_cap() {
    let api = Api::new(false);
    let mint = |auth: String, body: String| {
        let api = &api;
        async move {
            api.call(
                "POST",
                "/api/tokens",
                Some(&format!("Bearer {auth}")),
                Some(&body),
            )
            .await
        }
    };
    let exp = |t: &Value| keys().verify(t["token"].as_str().unwrap()).unwrap().exp;

    // A room admin token with two minutes left mints a room admin token for its room.
    let room_admin = Grants {
        room_admin: true,
        ..Grants::default()
    };
    let scoped = token_for(room_admin, Some("r1"), Duration::from_secs(120));
    let scoped_exp = keys().verify(&scoped).unwrap().exp;
    let asks = |ttl: &str| {
        format!(r#"{{"identity":"b","room":"r1","grants":{{"room_admin":true}}{ttl}}}"#)
    };
    for ttl in [r#","ttl":2592000"#, r#","ttl":3600"#, r#","ttl":121"#] {
        let answer = mint(scoped.clone(), asks(ttl)).await;
        refused(
            &answer,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("ttl"),
        );
    }
    let (status, t) = mint(scoped.clone(), asks(r#","ttl":60"#)).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert!(exp(&t) <= scoped_exp);
    // Without a ttl the default is cut to what the minter has left.
    let (status, t) = mint(scoped.clone(), asks("")).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert!(exp(&t) <= scoped_exp, "{} > {scoped_exp}", exp(&t));
    assert_eq!(t["grants"]["room_admin"], true);

    // Nobody gets more than max_token_ttl (24 h by default) over REST, even with a 30-day token.
    let global = token_for(Grants::admin(), None, Duration::from_secs(30 * 86_400));
    let day = 86_400;
    let body = |ttl: u64| format!(r#"{{"identity":"c","room":"r1","ttl":{ttl}}}"#);
    let answer = mint(global.clone(), body(day + 1)).await;
    refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("ttl"),
    );
    let (status, t) = mint(global.clone(), body(day)).await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    let mut config = ApiConfig::new(keys());
    config.max_token_ttl = Duration::from_secs(600);
    let small = api_router(Arc::new(Rooms::default()), config);
    let request = Request::post("/api/tokens")
        .header("authorization", format!("Bearer {global}"))
        .body(Body::from(body(601)))
        .unwrap();
    let response = small.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let request = Request::post("/api/tokens")
        .header("authorization", format!("Bearer {global}"))
        .body(Body::from(r#"{"identity":"c","room":"r1"}"#))
        .unwrap();
    let response = small.oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let t: Value = serde_json::from_slice(&bytes).unwrap();
    let claims = keys().verify(t["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.exp - claims.nbf, 600);
}

#[tokio::test]
async fn the_dev_token_endpoint_exists_only_in_development_mode() {
    let dev = Api::new(true);
    let (status, t) = dev
        .call("GET", "/api/dev/token?room=demo&name=Ann%20L.", None, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let claims = keys().authorize_join(t["token"].as_str(), "demo").unwrap();
    assert_eq!(claims.name.as_deref(), Some("Ann L."));
    assert!(claims.sub.starts_with("dev-"));
    assert!(!claims.grants.room_admin);
    let answer = dev
        .call("GET", "/api/dev/token?room=demo&name=", None, None)
        .await;
    refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("name"),
    );
    let answer = dev
        .call("GET", "/api/dev/token?room=a/b&name=x", None, None)
        .await;
    refused(
        &answer,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        Some("room"),
    );

    let prod = Api::new(false);
    let answer = prod
        .call("GET", "/api/dev/token?room=demo&name=Ann", None, None)
        .await;
    refused(&answer, StatusCode::NOT_FOUND, "not_found", None);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let api = Api::new(false);
    let answer = api.admin("GET", "/api/nope", None).await;
    refused(&answer, StatusCode::NOT_FOUND, "not_found", None);
    let answer = api.admin("PUT", "/api/rooms", None).await;
    assert_eq!(answer.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.1["code"], "invalid_request");
}

#[tokio::test]
async fn a_slow_media_side_is_answered_with_server_busy() {
    let api = Api::new(false);
    api.rooms
        .create_room(CreateRoom {
            name: "busy".into(),
            max_participants: None,
            empty_timeout: None,
            metadata: None,
            video_codecs: None,
            region: None,
        })
        .await
        .unwrap();
    let answer = api.admin("GET", "/api/rooms/busy", None).await;
    refused(
        &answer,
        StatusCode::SERVICE_UNAVAILABLE,
        "server_busy",
        None,
    );
}

#[tokio::test]
async fn the_openapi_document_is_public_and_lists_every_route() {
    let api = Api::new(false);
    let (status, doc) = api.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for (method, path) in ROUTES {
        assert!(
            doc["paths"][path][method.to_lowercase()].is_object(),
            "{method} {path} is not documented"
        );
    }
    let code = &doc["components"]["schemas"]["Error"]["properties"]["code"];
    let name = code["$ref"].as_str().unwrap().rsplit('/').next().unwrap();
    let codes = doc["components"]["schemas"][name]["enum"]
        .as_array()
        .unwrap()
        .clone();
    for code in [
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::InvalidRequest,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RoomFull,
        ErrorCode::ServerBusy,
    ] {
        assert!(codes.contains(&json!(code.as_str())), "{code:?}");
    }
}

/// The served document and the router agree: every documented operation is answered by a route
/// of its own (not the JSON 404 for unknown paths, not 405), and every other method on a
/// documented path is refused with 405.
#[tokio::test]
async fn the_router_serves_exactly_the_documented_operations() {
    let api = Api::new(true);
    let (status, doc) = api.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    let route_paths: std::collections::BTreeSet<_> = ROUTES.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        paths
            .keys()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        route_paths
    );
    for (path, item) in paths {
        let concrete = concrete(path);
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let (status, body) = api.call(method, &concrete, None, Some("{}")).await;
            let unknown = status == StatusCode::NOT_FOUND
                && body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("no such API route"));
            if item.get(method.to_lowercase()).is_some() {
                assert!(
                    !unknown && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but not served: {status} {body}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is served but not documented: {body}"
                );
            }
        }
    }
}
