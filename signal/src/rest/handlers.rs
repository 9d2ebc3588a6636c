//! The request handlers: authenticate, validate, call the [`RoomService`], answer JSON.

use std::future::Future;
use std::time::Duration;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::dto::{
    CreateRoom, CreateToken, MuteTrack, ParticipantList, RoomInfo, RoomList, TokenResponse,
    UpdateParticipant, UpdateRoom,
};
use super::error::{ApiError, ApiPath, JsonBody};
use super::{openapi, ApiState, RoomService};
use crate::auth::{unix_now, AuthError, Claims, Grants, TokenSpec, DEFAULT_TTL};
use crate::protocol::{validate_display_name, validate_room_name, ErrorCode, SignalError};
#[allow(unused_imports)] // named in the OpenAPI attributes only
use crate::protocol::{ParticipantInfo, TrackInfo};

/// The caller, proven by a `room_admin` token.
pub(crate) struct Admin(Claims);

impl Admin {
    /// Whether this caller may act on `room`.
    fn check_room(&self, room: &str) -> Result<(), ApiError> {
        match &self.0.room {
            Some(r) if r != room => Err(AuthError::WrongRoom.into()),
            _ => Ok(()),
        }
    }
}

impl<S: RoomService> FromRequestParts<ApiState<S>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState<S>,
    ) -> Result<Self, Self::Rejection> {
        let token = crate::auth::bearer_token(&parts.headers)?;
        let claims = state.config.keys.verify(token)?;
        if !claims.grants.room_admin {
            return Err(AuthError::MissingGrant("room_admin").into());
        }
        Ok(Admin(claims))
    }
}

/// Waits for the media side at most `limit`.
async fn call<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, SignalError>>,
) -> Result<T, ApiError> {
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(_) => Err(ApiError::new(
            ErrorCode::ServerBusy,
            "the media server did not answer in time; try again",
        )),
    }
}

fn room_param(room: &str) -> Result<(), ApiError> {
    validate_room_name(room).map_err(|e| ApiError::invalid("room", e.message))
}

fn id_param(field: &'static str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 128 {
        return Err(ApiError::invalid(
            field,
            format!("{field} must be 1 to 128 characters"),
        ));
    }
    Ok(())
}

/// This document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    operation_id = "openapi",
    summary = "This document (OpenAPI 3.1).",
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json"))
)]
pub(crate) async fn openapi_json() -> Json<serde_json::Value> {
    Json(openapi::document())
}

#[utoipa::path(
    post,
    path = "/api/rooms",
    operation_id = "createRoom",
    summary = "Create a room.",
    request_body = CreateRoom,
    responses(
        (status = 201, description = "The room.", body = RoomInfo),
        (status = 409, description = "conflict: the room exists", body = ApiError),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn create_room<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    JsonBody(req): JsonBody<CreateRoom>,
) -> Result<Response, ApiError> {
    req.validate()?;
    admin.check_room(&req.name)?;
    let room = call(s.config.call_timeout, s.service.create_room(req)).await?;
    Ok((StatusCode::CREATED, Json(room)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/rooms",
    operation_id = "listRooms",
    summary = "List rooms (only the token's room for a room-scoped token).",
    responses(
        (status = 200, description = "The rooms.", body = RoomList),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn list_rooms<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
) -> Result<Json<RoomList>, ApiError> {
    let mut rooms = call(s.config.call_timeout, s.service.list_rooms()).await?;
    rooms.retain(|r| admin.check_room(&r.name).is_ok());
    Ok(Json(RoomList { rooms }))
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}",
    operation_id = "getRoom",
    summary = "Get a room.",
    params(("room" = String, Path, description = "Room name.")),
    responses(
        (status = 200, description = "The room.", body = RoomInfo),
        (status = 404, description = "not_found: no such room", body = ApiError),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn get_room<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    ApiPath(room): ApiPath<String>,
) -> Result<Response, ApiError> {
    room_param(&room)?;
    admin.check_room(&room)?;
    let room = call(s.config.call_timeout, s.service.get_room(room)).await?;
    Ok(Json(room).into_response())
}

#[utoipa::path(
    patch,
    path = "/api/rooms/{room}",
    operation_id = "updateRoom",
    summary = "Change a room's metadata or settings.",
    params(("room" = String, Path, description = "Room name.")),
    request_body = UpdateRoom,
    responses(
        (status = 200, description = "The room.", body = RoomInfo),
        (status = 404, description = "not_found: no such room", body = ApiError),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn update_room<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    ApiPath(room): ApiPath<String>,
    JsonBody(req): JsonBody<UpdateRoom>,
) -> Result<Response, ApiError> {
    room_param(&room)?;
    req.validate()?;
    admin.check_room(&room)?;
    let room = call(s.config.call_timeout, s.service.update_room(room, req)).await?;
    Ok(Json(room).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/rooms/{room}",
    operation_id = "deleteRoom",
    summary = "Delete a room; everyone in it leaves with reason room_deleted.",
    params(("room" = String, Path, description = "Room name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 404, description = "not_found: no such room", body = ApiError),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn delete_room<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    ApiPath(room): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    room_param(&room)?;
    admin.check_room(&room)?;
    call(s.config.call_timeout, s.service.delete_room(room)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/participants",
    operation_id = "listParticipants",
    summary = "List a room's participants with their tracks.",
    params(("room" = String, Path, description = "Room name.")),
    responses(
        (status = 200, description = "The participants.", body = ParticipantList),
        (status = 404, description = "not_found: no such room", body = ApiError),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn list_participants<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    ApiPath(room): ApiPath<String>,
) -> Result<Json<ParticipantList>, ApiError> {
    room_param(&room)?;
    admin.check_room(&room)?;
    let participants = call(s.config.call_timeout, s.service.list_participants(room)).await?;
    Ok(Json(ParticipantList { participants }))
}

#[utoipa::path(
    get,
    path = "/api/rooms/{room}/participants/{participant}",
    operation_id = "getParticipant",
    summary = "Get a participant.",
    params(("room" = String, Path, description = "Room name."), ("participant" = String, Path, description = "Participant id (`Participant.id`).")),
    responses(
        (status = 200, description = "The participant.", body = ParticipantInfo),
        (status = 404, description = "not_found: no such room or participant", body = ApiError),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn get_participant<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    ApiPath((room, participant)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    room_param(&room)?;
    id_param("participant", &participant)?;
    admin.check_room(&room)?;
    let all = call(s.config.call_timeout, s.service.list_participants(room)).await?;
    let p = all
        .into_iter()
        .find(|p| p.id == participant)
        .ok_or_else(|| ApiError::not_found("no such participant in this room"))?;
    Ok(Json(p).into_response())
}

#[utoipa::path(
    patch,
    path = "/api/rooms/{room}/participants/{participant}",
    operation_id = "updateParticipant",
    summary = "Change a participant's name or metadata.",
    params(("room" = String, Path, description = "Room name."), ("participant" = String, Path, description = "Participant id (`Participant.id`).")),
    request_body = UpdateParticipant,
    responses(
        (status = 200, description = "The participant.", body = ParticipantInfo),
        (status = 404, description = "not_found: no such room or participant", body = ApiError),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn update_participant<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    ApiPath((room, participant)): ApiPath<(String, String)>,
    JsonBody(req): JsonBody<UpdateParticipant>,
) -> Result<Response, ApiError> {
    room_param(&room)?;
    id_param("participant", &participant)?;
    req.validate()?;
    admin.check_room(&room)?;
    let p = call(
        s.config.call_timeout,
        s.service.update_participant(room, participant, req),
    )
    .await?;
    Ok(Json(p).into_response())
}

#[utoipa::path(
    delete,
    path = "/api/rooms/{room}/participants/{participant}",
    operation_id = "removeParticipant",
    summary = "Remove a participant; it leaves with reason removed.",
    params(("room" = String, Path, description = "Room name."), ("participant" = String, Path, description = "Participant id (`Participant.id`).")),
    responses(
        (status = 204, description = "Removed."),
        (status = 404, description = "not_found: no such room or participant", body = ApiError),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn remove_participant<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    ApiPath((room, participant)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    room_param(&room)?;
    id_param("participant", &participant)?;
    admin.check_room(&room)?;
    call(
        s.config.call_timeout,
        s.service.remove_participant(room, participant),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post,
    path = "/api/rooms/{room}/participants/{participant}/tracks/{track}/mute",
    operation_id = "muteTrack",
    summary = "Mute or unmute a published track.",
    params(("room" = String, Path, description = "Room name."), ("participant" = String, Path, description = "Participant id (`Participant.id`)."), ("track" = String, Path, description = "Track id (`Track.id`).")),
    request_body = MuteTrack,
    responses(
        (status = 200, description = "The track.", body = TrackInfo),
        (status = 404, description = "not_found: no such room, participant or track", body = ApiError),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn mute_track<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    ApiPath((room, participant, track)): ApiPath<(String, String, String)>,
    JsonBody(req): JsonBody<MuteTrack>,
) -> Result<Response, ApiError> {
    room_param(&room)?;
    id_param("participant", &participant)?;
    id_param("track", &track)?;
    admin.check_room(&room)?;
    let t = call(
        s.config.call_timeout,
        s.service.mute_track(room, participant, track, req.muted),
    )
    .await?;
    Ok(Json(t).into_response())
}

#[utoipa::path(
    post,
    path = "/api/tokens",
    operation_id = "createToken",
    summary = "Mint an access token, signed with the caller's API key.",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token.", body = TokenResponse),
        (status = 400, description = "invalid_request: a field breaks the rules (`field` names it)", body = ApiError),
        (status = 401, description = "unauthorized: no token, or a malformed, forged, expired or not yet valid one", body = ApiError),
        (status = 403, description = "forbidden: the token lacks room_admin, or is for another room", body = ApiError),
        (status = 503, description = "server_busy: the media server did not answer in time", body = ApiError),
    )
)]
pub(crate) async fn create_token<S: RoomService>(
    State(s): State<ApiState<S>>,
    admin: Admin,
    JsonBody(req): JsonBody<CreateToken>,
) -> Result<Response, ApiError> {
    let spec = TokenSpec {
        identity: req.identity,
        name: req.name,
        room: req.room,
        grants: req.grants.unwrap_or_else(Grants::participant),
        metadata: req.metadata,
        ttl: token_ttl(req.ttl, &admin.0, s.config.max_token_ttl)?,
    };
    spec.validate()
        .map_err(|(field, e)| ApiError::invalid(field, e.message))?;
    if let Some(scope) = &admin.0.room {
        if spec.room.as_deref() != Some(scope.as_str()) {
            return Err(AuthError::WrongRoom.into());
        }
    }
    // An admin hands out participant grants in its scope, and nothing it does not have itself.
    if !admin
        .0
        .grants
        .union(&Grants::participant())
        .covers(&spec.grants)
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "a token cannot grant more than the token that mints it",
        ));
    }
    let key = admin.0.iss.clone();
    mint(&s, &key, &spec).map(|t| (StatusCode::CREATED, Json(t)).into_response())
}

/// The lifetime of a token minted by `minter`: the one asked for, which may not exceed `max` nor
/// the minter's own remaining lifetime; or by default [`DEFAULT_TTL`] cut to both.
fn token_ttl(asked: Option<u64>, minter: &Claims, max: Duration) -> Result<Duration, ApiError> {
    let left = Duration::from_secs(minter.exp.saturating_sub(unix_now()));
    let Some(asked) = asked.map(Duration::from_secs) else {
        return Ok(DEFAULT_TTL.min(max).min(left));
    };
    if asked > max {
        return Err(ApiError::invalid(
            "ttl",
            format!("ttl must be at most {} s on this server", max.as_secs()),
        ));
    }
    if asked > left {
        return Err(ApiError::invalid(
            "ttl",
            format!(
                "ttl must not outlive the token that mints it ({} s left)",
                left.as_secs()
            ),
        ));
    }
    Ok(asked)
}

fn mint<S>(s: &ApiState<S>, key: &str, spec: &TokenSpec) -> Result<TokenResponse, ApiError> {
    let (token, claims) = s
        .config
        .keys
        .mint(key, spec)
        .map_err(|(field, e)| match e.code {
            ErrorCode::InvalidRequest => ApiError::invalid(field, e.message),
            _ => ApiError::from(e),
        })?;
    Ok(TokenResponse {
        token,
        identity: claims.sub,
        room: claims.room,
        name: claims.name,
        grants: claims.grants,
        expires_at: claims.exp,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct DevTokenQuery {
    room: Option<String>,
    name: Option<String>,
}

/// Development mode only: a participant token for `room`, named `name`, with a fresh identity.
#[utoipa::path(
    get,
    path = "/api/dev/token",
    operation_id = "devToken",
    summary = "Development mode only: a participant token for anyone.",
    description = "Exists only while the server runs without configured keys. The identity is \
        `dev-` and 10 random characters, new each time; the token is valid for 6 hours and grants \
        join, publish, subscribe and publish_data in the room.",
    params(
        ("room" = String, Query, description = "The room the token opens."),
        ("name" = String, Query, description = "The display name the token carries."),
    ),
    responses(
        (status = 200, description = "The token.", body = TokenResponse),
        (status = 400, description = "invalid_request: room or name missing or invalid (`field` names it)", body = ApiError),
        (status = 404, description = "not_found: the server has configured keys", body = ApiError),
    )
)]
pub(crate) async fn dev_token<S: RoomService>(
    State(s): State<ApiState<S>>,
    query: Result<Query<DevTokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TokenResponse>, ApiError> {
    let Query(q) = query.map_err(|_| {
        ApiError::invalid(
            "query",
            "the query must be room=...&name=..., percent-encoded UTF-8",
        )
    })?;
    let room = q
        .room
        .ok_or_else(|| ApiError::invalid("room", "room is required"))?;
    room_param(&room)?;
    let name = q
        .name
        .ok_or_else(|| ApiError::invalid("name", "name is required"))?;
    validate_display_name(&name).map_err(|e| ApiError::invalid("name", e.message))?;
    let key = s
        .config
        .keys
        .names()
        .next()
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "no API key"))?
        .to_owned();
    let spec = TokenSpec {
        name: Some(name),
        ..TokenSpec::participant(room, dev_identity())
    };
    mint(&s, &key, &spec).map(Json)
}

/// `dev-` and 10 random characters.
fn dev_identity() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyz23456789";
    let tail: String = (0..10)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("dev-{tail}")
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such API route; see /api/openapi.json")
}

pub(crate) async fn method_not_allowed() -> Response {
    let e = ApiError::new(
        ErrorCode::InvalidRequest,
        "this method is not allowed on this route; see /api/openapi.json",
    );
    (StatusCode::METHOD_NOT_ALLOWED, Json(e)).into_response()
}
