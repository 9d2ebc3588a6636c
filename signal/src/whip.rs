//! WHIP ingest ([RFC 9725]) and WHEP egress: a participant made by one HTTP request.
//!
//! | route | answer |
//! |---|---|
//! | `POST /whip` | an SDP offer (`application/sdp`) that publishes; `201` with the answer |
//! | `POST /whep/{identity}` | an SDP offer that receives; `201` with an answer that carries that participant's tracks |
//! | `PATCH /whip/{id}`, `PATCH /whep/resource/{id}` | trickled candidates (`204`) or an ICE restart (`200` with the server's fragment) |
//! | `DELETE /whip/{id}`, `DELETE /whep/resource/{id}` | the participant leaves (`204`) |
//! | `OPTIONS` on all of them | CORS preflight (`204`) |
//!
//! The access token travels as `Authorization: Bearer`; its room is the room joined, its
//! identity and name are the participant's. A WHIP participant never subscribes (whatever the
//! token grants), so the server never sends it an offer; a WHEP participant is a *player* of one
//! publisher (see [`MediaBackend::join_player`]) and is never sent an offer either. Nothing
//! waits for an answer from them.
//!
//! Each session is a participant like any other: it leaves when its media does not come up or
//! goes silent (the media side's timeouts), on `DELETE`, or when removed over the REST API. A
//! task per session reads the participant's event queue (so it is never a slow consumer) and
//! forgets the session when the participant has left. The session URL carries 128 random bits
//! and is what `PATCH` and `DELETE` need; the token is not asked for again.
//!
//! Errors are the REST API's JSON ([`ApiError`]); `401` answers carry `WWW-Authenticate:
//! Bearer`. See `docs/whip-whep.md`.
//!
//! [RFC 9725]: https://www.rfc-editor.org/rfc/rfc9725

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, CONTENT_TYPE, ETAG, IF_MATCH, LINK,
    LOCATION, RETRY_AFTER,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use tracing::{debug, info, Instrument};

use crate::auth::{bearer_token, AuthError, Claims, Grants, KeySet};
use crate::limits::{IpLimiter, IpPermit};
use crate::protocol::{
    validate_display_name, ErrorCode, IceCandidate, IceServer, ServerMessage, SignalError,
};
use crate::rest::error::ApiPath;
use crate::rest::{ApiError, RoomService, BODY_READ_TIMEOUT};
use crate::router::PeerIp;
use crate::{ClientSignal, JoinRequest, MediaBackend, RouterConfig};

/// The largest SDP offer or fragment, in bytes.
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// The media type of SDP offers and answers.
pub const SDP: &str = "application/sdp";

/// `Accept-Patch` (RFC 5789), which `http` does not name.
const ACCEPT_PATCH: HeaderName = HeaderName::from_static("accept-patch");

/// The media type of `PATCH` bodies (RFC 8840).
pub const SDP_FRAGMENT: &str = "application/trickle-ice-sdpfrag";

/// What a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Publishes (`POST /whip`).
    Ingest,
    /// Plays one publisher (`POST /whep/{identity}`).
    Egress,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Ingest => "whip",
            Kind::Egress => "whep",
        }
    }

    /// The path of a session of this kind.
    fn location(self, id: &str) -> String {
        match self {
            Kind::Ingest => format!("/whip/{id}"),
            Kind::Egress => format!("/whep/resource/{id}"),
        }
    }
}

/// An answer or refusal the session's task hands to whoever waits for one.
type AnswerSlot = Arc<Mutex<Option<oneshot::Sender<Result<String, SignalError>>>>>;

/// One WHIP or WHEP session.
struct Resource {
    kind: Kind,
    participant_id: String,
    /// The current entity tag (quoted), new after each ICE restart.
    etag: String,
    /// The client's offer as last applied: an ICE restart sends it again with new credentials.
    offer: String,
    /// The client's ICE ufrag in that offer.
    ufrag: String,
    /// Where the task puts the next answer or refusal.
    answer: AnswerSlot,
    /// The session's slot among those of its client address.
    _permit: IpPermit,
}

/// What the handlers share.
struct WhipState<B> {
    backend: Arc<B>,
    keys: Option<KeySet>,
    backend_timeout: Duration,
    sessions: IpLimiter,
    resources: Arc<Mutex<HashMap<String, Resource>>>,
}

impl<B> Clone for WhipState<B> {
    fn clone(&self) -> Self {
        WhipState {
            backend: Arc::clone(&self.backend),
            keys: self.keys.clone(),
            backend_timeout: self.backend_timeout,
            sessions: self.sessions.clone(),
            resources: Arc::clone(&self.resources),
        }
    }
}

/// The WHIP and WHEP routes, to be merged into the server's router. Tokens are checked against
/// `config.keys`; without keys (tests, embedding) every session is admitted with identity
/// `whip`/`whep`, in room `default`.
pub fn whip_router<B: MediaBackend + RoomService>(
    backend: Arc<B>,
    config: &RouterConfig,
) -> Router {
    let state = WhipState {
        backend,
        keys: config.keys.clone(),
        backend_timeout: config.backend_timeout,
        sessions: IpLimiter::new(config.max_whip_sessions, config.max_whip_sessions_per_ip),
        resources: Arc::default(),
    };
    Router::new()
        .route("/whip", post(create_ingest::<B>).options(preflight))
        .route(
            "/whip/{id}",
            axum::routing::patch(patch_resource::<B>)
                .delete(delete_resource::<B>)
                .options(preflight),
        )
        .route(
            "/whep/{identity}",
            post(create_egress::<B>).options(preflight),
        )
        .route(
            "/whep/resource/{id}",
            axum::routing::patch(patch_resource::<B>)
                .delete(delete_resource::<B>)
                .options(preflight),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_SDP_BYTES))
        .layer(axum::middleware::map_response(cors))
        .layer(axum::middleware::map_response(
            crate::router::security_headers,
        ))
        .with_state(state)
}

/// Lets browser pages of any origin use the endpoints: the token in `Authorization` is the
/// credential, never a cookie.
async fn cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Accept-Patch"),
    );
    response
}

async fn preflight() -> Response {
    (
        StatusCode::NO_CONTENT,
        [
            (ACCESS_CONTROL_ALLOW_METHODS, "POST, PATCH, DELETE, OPTIONS"),
            (
                ACCESS_CONTROL_ALLOW_HEADERS,
                "Authorization, Content-Type, If-Match",
            ),
            (ACCESS_CONTROL_MAX_AGE, "86400"),
            (ACCEPT_PATCH, SDP_FRAGMENT),
        ],
    )
        .into_response()
}

async fn method_not_allowed() -> Response {
    let e = ApiError::new(ErrorCode::InvalidRequest, "this method is not allowed here");
    (StatusCode::METHOD_NOT_ALLOWED, Json(e)).into_response()
}

/// An error with a status of its own (`415`, `412`), in the REST API's JSON.
fn refuse(status: StatusCode, e: ApiError) -> Response {
    (status, Json(e)).into_response()
}

/// Checks the token: valid, for a room, granting `join` and `grant`. Without keys, a stand-in.
fn authorize(
    keys: Option<&KeySet>,
    headers: &HeaderMap,
    grant: &'static str,
    kind: Kind,
) -> Result<(Claims, String), AuthError> {
    let Some(keys) = keys else {
        let claims = Claims {
            iss: String::new(),
            sub: kind.as_str().to_owned(),
            name: None,
            room: Some("default".to_owned()),
            grants: Grants::participant(),
            metadata: None,
            nbf: 0,
            exp: 0,
        };
        return Ok((claims, String::new()));
    };
    let token = bearer_token(headers)?;
    let room = keys.verify(token)?.room.ok_or(AuthError::WrongRoom)?;
    let claims = keys.authorize_join(Some(token), &room)?;
    let granted = match grant {
        "publish" => claims.grants.publish,
        _ => claims.grants.subscribe,
    };
    if !granted {
        return Err(AuthError::MissingGrant(grant));
    }
    Ok((claims, token.to_owned()))
}

/// The display name: the token's, else the identity (cut to what a name may be).
fn display_name(claims: &Claims) -> String {
    if let Some(name) = &claims.name {
        return name.clone();
    }
    let name: String = claims
        .sub
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if validate_display_name(&name).is_ok() {
        name
    } else {
        "whip".to_owned()
    }
}

/// Whether the request says its body is of media type `expected`.
fn has_content_type(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

/// Reads a text body of media type `expected`: `415` for another type, `413` above
/// [`MAX_SDP_BYTES`], `400` when it does not arrive in time or is not UTF-8.
async fn read_text(req: Request, expected: &str) -> Result<String, Response> {
    if !has_content_type(req.headers(), expected) {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::invalid(
                "Content-Type",
                format!("the body must be {expected} (Content-Type)"),
            ),
        ));
    }
    let read = timeout(BODY_READ_TIMEOUT, Bytes::from_request(req, &()));
    let bytes = match read.await {
        Err(_) => {
            return Err(
                ApiError::invalid("body", "the request body did not arrive in time")
                    .into_response(),
            )
        }
        Ok(Err(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::new(
                ErrorCode::MessageTooLarge,
                format!("the body must be at most {MAX_SDP_BYTES} bytes"),
            )
            .into_response())
        }
        Ok(Err(_)) => {
            return Err(
                ApiError::invalid("body", "the request body could not be read").into_response(),
            )
        }
        Ok(Ok(b)) => b,
    };
    String::from_utf8(bytes.to_vec()).map_err(|_| bad_sdp("the body is not UTF-8 text"))
}

fn bad_sdp(message: impl Into<String>) -> Response {
    ApiError {
        code: ErrorCode::InvalidSdp,
        message: message.into(),
        field: Some("body".into()),
    }
    .into_response()
}

/// The parts of an offer this module looks at.
#[derive(Debug, Default, PartialEq, Eq)]
struct OfferSummary {
    /// Audio and video m-lines on which the offerer sends.
    sending: usize,
    /// Audio and video m-lines on which the offerer receives.
    receiving: usize,
    /// The first `a=ice-ufrag`.
    ufrag: Option<String>,
}

/// A first look at an offer: is it SDP at all, and what does it send and receive. The media
/// side parses it for real.
fn summarize_offer(sdp: &str) -> Result<OfferSummary, &'static str> {
    let mut lines = sdp.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next() != Some("v=0") {
        return Err("the body is not an SDP offer: it must start with v=0");
    }
    let mut summary = OfferSummary::default();
    // The m-line being read: (audio or video, its direction).
    let mut current: Option<(bool, &str)> = None;
    let close = |m: Option<(bool, &str)>, s: &mut OfferSummary| {
        if let Some((true, dir)) = m {
            if matches!(dir, "sendrecv" | "sendonly") {
                s.sending += 1;
            }
            if matches!(dir, "sendrecv" | "recvonly") {
                s.receiving += 1;
            }
        }
    };
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            close(current.take(), &mut summary);
            let media = m.starts_with("audio ") || m.starts_with("video ");
            let disabled = m.split_whitespace().nth(1) == Some("0");
            current = Some((media && !disabled, "sendrecv"));
        } else if let Some(a) = line.strip_prefix("a=") {
            if let (Some((_, dir)), "sendrecv" | "sendonly" | "recvonly" | "inactive") =
                (current.as_mut(), a)
            {
                *dir = a;
            }
            if let Some(u) = a.strip_prefix("ice-ufrag:") {
                summary.ufrag.get_or_insert_with(|| u.trim().to_owned());
            }
        }
    }
    close(current, &mut summary);
    Ok(summary)
}

/// Waits for the answer to the offer just sent (or its refusal) on the participant's queue,
/// noting the ICE servers of `joined`.
async fn await_answer(
    events: &mut mpsc::Receiver<ServerMessage>,
    ice_servers: &mut Vec<IceServer>,
) -> Result<String, SignalError> {
    while let Some(event) = events.recv().await {
        match event {
            ServerMessage::Joined { ice_servers: s, .. } => *ice_servers = s,
            ServerMessage::Answer { sdp } => return Ok(sdp),
            ServerMessage::Error { code, message } => return Err(SignalError::new(code, message)),
            ServerMessage::Left { reason } => {
                return Err(SignalError::new(
                    ErrorCode::ServerBusy,
                    format!("the participant left before the answer ({reason})"),
                ))
            }
            _ => {}
        }
    }
    Err(SignalError::new(
        ErrorCode::ServerBusy,
        "the participant left before the answer",
    ))
}

/// An SDP refusal from the media side, said plainly.
fn offer_error(e: SignalError) -> Response {
    match e.code {
        ErrorCode::InvalidSdp => bad_sdp(format!("the SDP offer was refused: {}", e.message)),
        _ => ApiError::from(e).into_response(),
    }
}

/// A join refusal: a redirect to the node that serves the room (`307`), or the error.
fn join_error(e: SignalError, kind: Kind, path: &str) -> Response {
    if let Some(ws) = &e.redirect {
        // `ws://node/ws` -> `http://node` + this path.
        let base = ws
            .trim_end_matches("/ws")
            .replacen("wss://", "https://", 1)
            .replacen("ws://", "http://", 1);
        let location = format!("{base}{path}");
        debug!(kind = kind.as_str(), %location, "sent to another node");
        if let Ok(v) = HeaderValue::from_str(&location) {
            return (StatusCode::TEMPORARY_REDIRECT, [(LOCATION, v)]).into_response();
        }
    }
    ApiError::from(e).into_response()
}

/// A new random session id: 22 characters of a 62-letter alphabet (over 128 bits).
fn new_id(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn new_etag() -> String {
    format!("\"{}\"", new_id(16))
}

/// `Link` header values for the ICE servers (RFC 9725 section 4.6).
fn ice_server_links(servers: &[IceServer]) -> Vec<HeaderValue> {
    let quote = |s: &str| s.replace(['"', '\\'], "");
    servers
        .iter()
        .flat_map(|s| {
            s.urls.iter().filter_map(move |url| {
                let mut link = format!("<{url}>; rel=\"ice-server\"");
                if let (Some(user), Some(credential)) = (&s.username, &s.credential) {
                    link.push_str(&format!(
                        "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                        quote(user),
                        quote(credential)
                    ));
                }
                HeaderValue::from_str(&link).ok()
            })
        })
        .collect()
}

async fn create_ingest<B: MediaBackend + RoomService>(
    State(state): State<WhipState<B>>,
    PeerIp(ip): PeerIp,
    req: Request,
) -> Response {
    create(state, ip, req, Kind::Ingest, None).await
}

async fn create_egress<B: MediaBackend + RoomService>(
    State(state): State<WhipState<B>>,
    PeerIp(ip): PeerIp,
    ApiPath(identity): ApiPath<String>,
    req: Request,
) -> Response {
    create(state, ip, req, Kind::Egress, Some(identity)).await
}

/// `POST /whip` and `POST /whep/{identity}`.
async fn create<B: MediaBackend + RoomService>(
    state: WhipState<B>,
    ip: IpAddr,
    req: Request,
    kind: Kind,
    publisher: Option<String>,
) -> Response {
    let grant = match kind {
        Kind::Ingest => "publish",
        Kind::Egress => "subscribe",
    };
    let (claims, token) = match authorize(state.keys.as_ref(), req.headers(), grant, kind) {
        Ok(c) => c,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let path = req.uri().path().to_owned();
    let offer = match read_text(req, SDP).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let summary = match summarize_offer(&offer) {
        Ok(s) => s,
        Err(message) => return bad_sdp(message),
    };
    match kind {
        Kind::Ingest if summary.sending == 0 => {
            return bad_sdp("the offer sends nothing: WHIP needs a sendonly audio or video m-line")
        }
        Kind::Egress if summary.receiving == 0 => {
            return bad_sdp(
                "the offer receives nothing: WHEP needs a recvonly audio or video m-line",
            )
        }
        _ => {}
    }
    let room = claims.room.clone().unwrap_or_default();
    if publisher.as_deref() == Some(claims.sub.as_str()) {
        return ApiError::invalid(
            "identity",
            "a participant cannot play itself: the token's identity is the one to play",
        )
        .into_response();
    }
    if let Some(publisher) = &publisher {
        let present = match state.backend.list_participants(room.clone()).await {
            Ok(list) => list
                .iter()
                .any(|p| p.identity.as_deref() == Some(publisher.as_str())),
            Err(e) if e.code == ErrorCode::NotFound => false,
            Err(e) => return ApiError::from(e).into_response(),
        };
        if !present {
            // In a cluster the room (and so the publisher) may be on another node: send the
            // player there, as a WHIP publisher is.
            if let Some(ws) = state.backend.room_elsewhere(&room).await {
                return join_error(SignalError::redirect(ws), kind, &path);
            }
            return ApiError::not_found(format!(
                "no participant with identity {publisher:?} is in room {room:?}"
            ))
            .into_response();
        }
    }
    let permit = match state.sessions.try_acquire(ip) {
        Ok(p) => p,
        Err(refused) => {
            metrics::counter!("sfu_whip_refused_total", "reason" => refused.as_str()).increment(1);
            let e = ApiError::new(
                ErrorCode::ServerBusy,
                "too many WHIP and WHEP sessions; try again later",
            );
            let mut response = e.into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        }
    };
    let join = JoinRequest {
        room: room.clone(),
        name: display_name(&claims),
        token: (!token.is_empty()).then_some(token),
        identity: Some(claims.sub.clone()),
        metadata: claims.metadata.clone(),
        grants: Grants {
            join: true,
            publish: kind == Kind::Ingest,
            subscribe: kind == Kind::Egress,
            publish_data: false,
            room_admin: false,
        },
        region: None,
    };
    let joined = match publisher.clone() {
        None => timeout(state.backend_timeout, state.backend.join(join)).await,
        Some(p) => timeout(state.backend_timeout, state.backend.join_player(join, p)).await,
    };
    let mut session = match joined {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return join_error(e, kind, &path),
        Err(_) => {
            return ApiError::new(
                ErrorCode::ServerBusy,
                "the server did not answer in time; try again",
            )
            .into_response()
        }
    };
    let pid = session.participant_id.clone();
    let span = tracing::info_span!(
        "whip",
        kind = kind.as_str(),
        room = %room,
        participant = %pid
    );
    if let Err(e) = state
        .backend
        .signal(&pid, ClientSignal::Offer(offer.clone()))
    {
        state.backend.leave(&pid, "left");
        return ApiError::from(e).into_response();
    }
    let mut ice_servers = Vec::new();
    let answer = timeout(
        state.backend_timeout,
        await_answer(&mut session.events, &mut ice_servers),
    )
    .await;
    let answer = match answer {
        Ok(Ok(sdp)) => sdp,
        Ok(Err(e)) => {
            state.backend.leave(&pid, "left");
            span.in_scope(|| debug!(code = e.code.as_str(), "offer refused"));
            return offer_error(e);
        }
        Err(_) => {
            state.backend.leave(&pid, "left");
            return ApiError::new(
                ErrorCode::ServerBusy,
                "the server did not answer the offer in time; try again",
            )
            .into_response();
        }
    };
    let id = new_id(22);
    let etag = new_etag();
    let slot: AnswerSlot = Arc::default();
    state.resources.lock().expect("resources").insert(
        id.clone(),
        Resource {
            kind,
            participant_id: pid.clone(),
            etag: etag.clone(),
            offer,
            ufrag: summary.ufrag.unwrap_or_default(),
            answer: Arc::clone(&slot),
            _permit: permit,
        },
    );
    span.in_scope(|| info!(publisher = publisher.as_deref(), "session started"));
    tokio::spawn(
        follow(
            session.events,
            slot,
            Arc::clone(&state.resources),
            id.clone(),
        )
        .instrument(span),
    );
    let mut response = (StatusCode::CREATED, [(CONTENT_TYPE, SDP)], answer).into_response();
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&kind.location(&id)) {
        h.insert(LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(ETAG, v);
    }
    h.insert(ACCEPT_PATCH, HeaderValue::from_static(SDP_FRAGMENT));
    for link in ice_server_links(&ice_servers) {
        h.append(LINK, link);
    }
    response
}

/// Reads a session's events until its participant has left: answers go to whoever waits for
/// one, everything else is dropped. Then forgets the session.
async fn follow(
    mut events: mpsc::Receiver<ServerMessage>,
    slot: AnswerSlot,
    resources: Arc<Mutex<HashMap<String, Resource>>>,
    id: String,
) {
    let reason = loop {
        let Some(event) = events.recv().await else {
            break "ended".to_owned();
        };
        let outcome = match event {
            ServerMessage::Left { reason } => break reason,
            ServerMessage::Answer { sdp } => Ok(sdp),
            ServerMessage::Error { code, message } => Err(SignalError::new(code, message)),
            ServerMessage::Offer { .. } => {
                debug!("offer for a session that never answers: ignored");
                continue;
            }
            _ => continue,
        };
        if let Some(waiter) = slot.lock().expect("answer slot").take() {
            let _ = waiter.send(outcome);
        } else if let Err(e) = outcome {
            debug!(code = e.code.as_str(), "refused");
        }
    };
    resources.lock().expect("resources").remove(&id);
    info!(%reason, "session ended");
}

/// The session named by the path, if it is of the kind the path says.
fn lookup<B>(state: &WhipState<B>, path: &str, id: &str) -> Option<(Kind, String)> {
    let resources = state.resources.lock().expect("resources");
    let r = resources.get(id)?;
    (r.kind.location(id) == path).then(|| (r.kind, r.participant_id.clone()))
}

fn unknown_session() -> Response {
    ApiError::not_found("no such WHIP or WHEP session (it ended, or never existed)").into_response()
}

/// `DELETE`: the participant leaves.
async fn delete_resource<B: MediaBackend + RoomService>(
    State(state): State<WhipState<B>>,
    ApiPath(id): ApiPath<String>,
    req: Request<Body>,
) -> Response {
    let Some((kind, pid)) = lookup(&state, req.uri().path(), &id) else {
        return unknown_session();
    };
    state.resources.lock().expect("resources").remove(&id);
    state.backend.leave(&pid, "left");
    info!(kind = kind.as_str(), participant = %pid, "session deleted");
    StatusCode::NO_CONTENT.into_response()
}

/// What a `PATCH` body says (RFC 8840 fragment).
#[derive(Debug, Default, PartialEq, Eq)]
struct Fragment {
    ufrag: Option<String>,
    pwd: Option<String>,
    /// (`mid`, candidate line without `a=`).
    candidates: Vec<(Option<String>, String)>,
}

fn parse_fragment(text: &str) -> Fragment {
    let mut f = Fragment::default();
    let mut mid: Option<String> = None;
    for line in text.lines().map(str::trim) {
        let Some(a) = line.strip_prefix("a=") else {
            continue;
        };
        if let Some(u) = a.strip_prefix("ice-ufrag:") {
            f.ufrag = Some(u.trim().to_owned());
        } else if let Some(p) = a.strip_prefix("ice-pwd:") {
            f.pwd = Some(p.trim().to_owned());
        } else if let Some(m) = a.strip_prefix("mid:") {
            mid = Some(m.trim().to_owned());
        } else if a.starts_with("candidate:") {
            f.candidates.push((mid.clone(), a.to_owned()));
        }
    }
    f
}

/// The offer with new ICE credentials and without its old candidates.
fn restart_offer(offer: &str, ufrag: &str, pwd: &str) -> String {
    let mut out = String::with_capacity(offer.len());
    for line in offer.lines() {
        let t = line.trim();
        if t.starts_with("a=candidate:") || t == "a=end-of-candidates" {
            continue;
        }
        if t.starts_with("a=ice-ufrag:") {
            out.push_str(&format!("a=ice-ufrag:{ufrag}\r\n"));
        } else if t.starts_with("a=ice-pwd:") {
            out.push_str(&format!("a=ice-pwd:{pwd}\r\n"));
        } else {
            out.push_str(t);
            out.push_str("\r\n");
        }
    }
    out
}

/// The server's fragment after an ICE restart: its credentials and candidates, on the first
/// m-line of the answer (all of them are bundled).
fn answer_fragment(answer: &str) -> String {
    let mut out = String::new();
    let mut in_media = false;
    let mut first_media_done = false;
    let mut media: Vec<&str> = Vec::new();
    let mut creds: Vec<&str> = Vec::new();
    for line in answer.lines().map(str::trim) {
        if line.starts_with("m=") {
            if in_media {
                first_media_done = true;
            }
            in_media = true;
            if !first_media_done {
                media.push(line);
            }
            continue;
        }
        if line == "a=ice-lite" && !in_media {
            out.push_str("a=ice-lite\r\n");
        }
        if line.starts_with("a=ice-ufrag:") || line.starts_with("a=ice-pwd:") {
            if creds.len() < 2 && !creds.iter().any(|c| c[..8] == line[..8]) {
                creds.push(line);
            }
            continue;
        }
        if in_media
            && !first_media_done
            && (line.starts_with("a=mid:") || line.starts_with("a=candidate:"))
        {
            media.push(line);
        }
    }
    for c in creds {
        out.push_str(c);
        out.push_str("\r\n");
    }
    for m in media {
        out.push_str(m);
        out.push_str("\r\n");
    }
    out.push_str("a=end-of-candidates\r\n");
    out
}

/// `PATCH`: trickled candidates, or an ICE restart when the fragment brings new credentials.
async fn patch_resource<B: MediaBackend + RoomService>(
    State(state): State<WhipState<B>>,
    ApiPath(id): ApiPath<String>,
    req: Request,
) -> Response {
    let path = req.uri().path().to_owned();
    let Some((kind, pid)) = lookup(&state, &path, &id) else {
        return unknown_session();
    };
    let if_match = req
        .headers()
        .get(IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned());
    let text = match read_text(req, SDP_FRAGMENT).await {
        Ok(t) => t,
        Err(response) => return response,
    };
    let fragment = parse_fragment(&text);
    let (etag, ufrag, offer, slot) = {
        let resources = state.resources.lock().expect("resources");
        let Some(r) = resources.get(&id) else {
            return unknown_session();
        };
        (
            r.etag.clone(),
            r.ufrag.clone(),
            r.offer.clone(),
            Arc::clone(&r.answer),
        )
    };
    if let Some(tag) = &if_match {
        if tag != "*" && *tag != etag {
            return refuse(
                StatusCode::PRECONDITION_FAILED,
                ApiError::new(
                    ErrorCode::Conflict,
                    "If-Match does not name the session's current ETag",
                ),
            );
        }
    }
    let restart = fragment
        .ufrag
        .as_deref()
        .is_some_and(|u| !ufrag.is_empty() && u != ufrag);
    if !restart {
        for (mid, candidate) in fragment.candidates {
            let signal = ClientSignal::Candidate(IceCandidate {
                candidate,
                sdp_mid: mid,
                sdp_m_line_index: None,
            });
            if let Err(e) = state.backend.signal(&pid, signal) {
                return ApiError::from(e).into_response();
            }
        }
        return StatusCode::NO_CONTENT.into_response();
    }
    let (Some(new_ufrag), Some(pwd)) = (fragment.ufrag, fragment.pwd) else {
        return bad_sdp("an ICE restart needs both a=ice-ufrag and a=ice-pwd");
    };
    let new_offer = restart_offer(&offer, &new_ufrag, &pwd);
    let (tx, rx) = oneshot::channel();
    *slot.lock().expect("answer slot") = Some(tx);
    if let Err(e) = state
        .backend
        .signal(&pid, ClientSignal::Offer(new_offer.clone()))
    {
        slot.lock().expect("answer slot").take();
        return ApiError::from(e).into_response();
    }
    let answer = match timeout(state.backend_timeout, rx).await {
        Ok(Ok(Ok(sdp))) => sdp,
        Ok(Ok(Err(e))) => return offer_error(e),
        Ok(Err(_)) => return unknown_session(),
        Err(_) => {
            slot.lock().expect("answer slot").take();
            return ApiError::new(
                ErrorCode::ServerBusy,
                "the server did not answer the ICE restart in time",
            )
            .into_response();
        }
    };
    for (mid, candidate) in fragment.candidates {
        let _ = state.backend.signal(
            &pid,
            ClientSignal::Candidate(IceCandidate {
                candidate,
                sdp_mid: mid,
                sdp_m_line_index: None,
            }),
        );
    }
    let etag = new_etag();
    if let Some(r) = state.resources.lock().expect("resources").get_mut(&id) {
        r.etag = etag.clone();
        r.offer = new_offer;
        r.ufrag = new_ufrag;
    }
    info!(kind = kind.as_str(), participant = %pid, "ICE restart");
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, SDP_FRAGMENT)],
        answer_fragment(&answer),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        response.headers_mut().insert(ETAG, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:pw\r\n\
        a=sendonly\r\na=candidate:1 1 udp 1 10.0.0.1 5000 typ host\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:abcd\r\na=ice-pwd:pw\r\na=recvonly\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\n";

    #[test]
    fn offers_are_summarized() {
        let s = summarize_offer(OFFER).unwrap();
        assert_eq!(s.sending, 1);
        assert_eq!(s.receiving, 1);
        assert_eq!(s.ufrag.as_deref(), Some("abcd"));
        assert!(summarize_offer("hello").is_err());
        assert!(summarize_offer("").is_err());
        let plain = summarize_offer("v=0\r\nm=audio 9 RTP/AVP 0\r\n").unwrap();
        assert_eq!((plain.sending, plain.receiving), (1, 1));
    }

    #[test]
    fn fragments_parse_and_restarts_rewrite_the_offer() {
        let f = parse_fragment(
            "a=ice-ufrag:new\r\na=ice-pwd:secret\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
             a=candidate:1 1 udp 1 10.0.0.2 6000 typ host\r\na=end-of-candidates\r\n",
        );
        assert_eq!(f.ufrag.as_deref(), Some("new"));
        assert_eq!(f.pwd.as_deref(), Some("secret"));
        assert_eq!(
            f.candidates,
            vec![(
                Some("0".to_owned()),
                "candidate:1 1 udp 1 10.0.0.2 6000 typ host".to_owned()
            )]
        );
        let offer = restart_offer(OFFER, "new", "secret");
        assert!(offer.contains("a=ice-ufrag:new\r\n") && offer.contains("a=ice-pwd:secret\r\n"));
        assert!(!offer.contains("abcd") && !offer.contains("a=candidate"));
    }

    #[test]
    fn the_answer_fragment_has_credentials_and_candidates() {
        let answer = "v=0\r\na=ice-lite\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
            a=ice-ufrag:srv\r\na=ice-pwd:srvpw\r\na=candidate:1 1 udp 2 127.0.0.1 4000 typ host\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:srv\r\na=ice-pwd:srvpw\r\n";
        let f = answer_fragment(answer);
        assert_eq!(
            f,
            "a=ice-lite\r\na=ice-ufrag:srv\r\na=ice-pwd:srvpw\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
             a=mid:0\r\na=candidate:1 1 udp 2 127.0.0.1 4000 typ host\r\na=end-of-candidates\r\n"
        );
    }

    #[test]
    fn links_name_turn_credentials() {
        let links = ice_server_links(&[IceServer {
            urls: vec!["turn:t.example:3478?transport=udp".into()],
            username: Some("u".into()),
            credential: Some("c\"x".into()),
        }]);
        assert_eq!(
            links[0],
            "<turn:t.example:3478?transport=udp>; rel=\"ice-server\"; username=\"u\"; \
             credential=\"cx\"; credential-type=\"password\""
        );
    }
}
