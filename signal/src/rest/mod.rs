//! The REST API under `/api`: rooms, participants, tracks and tokens, JSON in and out.
//!
//! Every call but `GET /api/openapi.json` (and `GET /api/dev/token` in development mode) needs
//! `Authorization: Bearer <access token>`, a token signed with one of the server's API keys that
//! grants `room_admin`. A token that also names a room reaches that room only. The routes are
//! [`ROUTES`]; `docs/rest-api.md` describes them and `/api/openapi.json` is their OpenAPI 3.1
//! document. Errors are [`ApiError`]s.
//!
//! The router is generic over [`RoomService`], which the media side implements.

pub mod dto;
pub mod error;
mod handlers;
pub mod openapi;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::auth::KeySet;
use crate::protocol::{ParticipantInfo, SignalError, TrackInfo};
use dto::{CreateRoom, RoomInfo, UpdateParticipant, UpdateRoom};
pub use error::ApiError;

/// Every route of the API: method and path (OpenAPI path syntax, as axum's). `/api/dev/token`
/// exists only in development mode.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/openapi.json"),
    ("POST", "/api/rooms"),
    ("GET", "/api/rooms"),
    ("GET", "/api/rooms/{room}"),
    ("PATCH", "/api/rooms/{room}"),
    ("DELETE", "/api/rooms/{room}"),
    ("GET", "/api/rooms/{room}/participants"),
    ("GET", "/api/rooms/{room}/participants/{participant}"),
    ("PATCH", "/api/rooms/{room}/participants/{participant}"),
    ("DELETE", "/api/rooms/{room}/participants/{participant}"),
    (
        "POST",
        "/api/rooms/{room}/participants/{participant}/tracks/{track}/mute",
    ),
    ("POST", "/api/tokens"),
    ("GET", "/api/dev/token"),
];

/// The largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The longest a request body may take to arrive once its handler reads it. Bodies are at most
/// [`MAX_BODY_BYTES`]; a client dripping one holds its connection no longer than this.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Rooms and participants, as the REST API sees the media side.
///
/// Errors carry [`ErrorCode`](crate::ErrorCode)s that become HTTP statuses: `not_found` 404,
/// `conflict` 409, `server_busy` 503, ... Calls never wait for media work beyond one round trip
/// to the thread owning the room.
pub trait RoomService: Send + Sync + 'static {
    /// Creates an empty room; `conflict` if it exists. `req` is validated.
    fn create_room(
        &self,
        req: CreateRoom,
    ) -> impl Future<Output = Result<RoomInfo, SignalError>> + Send;

    /// Every room, sorted by name.
    fn list_rooms(&self) -> impl Future<Output = Result<Vec<RoomInfo>, SignalError>> + Send;

    /// One room.
    fn get_room(&self, room: String) -> impl Future<Output = Result<RoomInfo, SignalError>> + Send;

    /// Changes a room's settings; a metadata change is sent to everyone in it. `req` is
    /// validated.
    fn update_room(
        &self,
        room: String,
        req: UpdateRoom,
    ) -> impl Future<Output = Result<RoomInfo, SignalError>> + Send;

    /// Closes a room: everyone in it leaves with reason `room_deleted`.
    fn delete_room(&self, room: String) -> impl Future<Output = Result<(), SignalError>> + Send;

    /// The participants of a room, with their tracks.
    fn list_participants(
        &self,
        room: String,
    ) -> impl Future<Output = Result<Vec<ParticipantInfo>, SignalError>> + Send;

    /// Removes a participant: it leaves with reason `removed`.
    fn remove_participant(
        &self,
        room: String,
        participant: String,
    ) -> impl Future<Output = Result<(), SignalError>> + Send;

    /// Changes a participant's name and/or metadata; the room is told. `req` is validated.
    fn update_participant(
        &self,
        room: String,
        participant: String,
        req: UpdateParticipant,
    ) -> impl Future<Output = Result<ParticipantInfo, SignalError>> + Send;

    /// Mutes or unmutes a published track; the room is told.
    fn mute_track(
        &self,
        room: String,
        participant: String,
        track: String,
        muted: bool,
    ) -> impl Future<Output = Result<TrackInfo, SignalError>> + Send;
}

/// The default of [`ApiConfig::max_token_ttl`].
pub const DEFAULT_MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How the REST API authenticates.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApiConfig {
    /// The accepted API keys. Never empty in the `sfu` server.
    pub keys: KeySet,
    /// Development mode: `GET /api/dev/token` exists and mints participant tokens with the
    /// first key for anyone who asks. Never on when keys are configured.
    pub dev_mode: bool,
    /// The longest a call waits for the media side before answering `server_busy`.
    pub call_timeout: Duration,
    /// The longest lifetime `POST /api/tokens` gives a token, whoever asks; at most
    /// [`crate::auth::MAX_TTL`]. A token minted there never outlives the token that asked for it
    /// either. Default: 24 h.
    pub max_token_ttl: Duration,
}

impl ApiConfig {
    /// Production settings with `keys`.
    pub fn new(keys: KeySet) -> Self {
        ApiConfig {
            keys,
            dev_mode: false,
            call_timeout: Duration::from_secs(10),
            max_token_ttl: DEFAULT_MAX_TOKEN_TTL,
        }
    }

    /// Development settings with `keys` (normally one generated at start).
    pub fn development(keys: KeySet) -> Self {
        ApiConfig {
            dev_mode: true,
            ..ApiConfig::new(keys)
        }
    }
}

/// What the handlers share.
pub(crate) struct ApiState<S> {
    pub(crate) service: Arc<S>,
    pub(crate) config: Arc<ApiConfig>,
}

impl<S> Clone for ApiState<S> {
    fn clone(&self) -> Self {
        ApiState {
            service: Arc::clone(&self.service),
            config: Arc::clone(&self.config),
        }
    }
}

/// The REST routes, to be merged into the server's router. Unknown paths under `/api` answer a
/// JSON `not_found`, wrong methods a JSON 405.
pub fn api_router<S: RoomService>(service: Arc<S>, config: ApiConfig) -> Router {
    use handlers::*;
    let dev_mode = config.dev_mode;
    let state = ApiState {
        service,
        config: Arc::new(config),
    };
    let participant = "/rooms/{room}/participants/{participant}";
    let mut api = Router::new()
        .route("/openapi.json", get(openapi_json))
        .route("/rooms", post(create_room::<S>).get(list_rooms::<S>))
        .route(
            "/rooms/{room}",
            get(get_room::<S>)
                .patch(update_room::<S>)
                .delete(delete_room::<S>),
        )
        .route("/rooms/{room}/participants", get(list_participants::<S>))
        .route(
            participant,
            get(get_participant::<S>)
                .patch(update_participant::<S>)
                .delete(remove_participant::<S>),
        )
        .route(
            &format!("{participant}/tracks/{{track}}/mute"),
            post(mute_track::<S>),
        )
        .route("/tokens", post(create_token::<S>));
    if dev_mode {
        api = api.route("/dev/token", get(dev_token::<S>));
    }
    let api = api
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::map_response(
            crate::router::security_headers,
        ))
        .with_state(state);
    Router::new().nest("/api", api)
}
