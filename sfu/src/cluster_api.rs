//! The REST API of a cluster: whichever node a call reaches answers for every room.
//!
//! A call about one room (`/api/rooms/{room}` and below) is passed to the node that serves the
//! room, as Redis names it, and that node's answer is returned as it is. When the room spans
//! nodes (relayed), a call about one participant is passed on to the other nodes serving the
//! room until one holds the participant, and a call that changes the room (`PATCH`, `DELETE`)
//! is made on every one of them, the owner's answer returned; `POST /api/rooms`
//! places the new room as a first join would (least loaded node) and is passed there;
//! `GET /api/rooms` asks every live node and merges the lists, each room naming its `node`.
//! Since every call about a room is answered by the room's node, a webhook about it is sent
//! once, by that node.
//!
//! The caller's `Authorization` is checked here first and passed on: nodes share their API keys,
//! so the serving node checks the same token again. Calls without a valid `room_admin` token are
//! answered here (with 401 or 403) and never reach another node. A passed-on call carries
//! [`FORWARDED`], which makes the node that receives it answer from its own rooms only; a
//! client that sets that header itself gets nothing more than one node's view.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use signal::auth::KeySet;
use signal::rest::{ApiError, BODY_READ_TIMEOUT, MAX_BODY_BYTES};
use signal::ErrorCode;
use tracing::warn;

use crate::io::cluster::{Cluster, NodeEntry, Place};
use crate::io::handle::SfuHandle;

/// Set on a call one node passes to another: answer from this node's rooms only. Its value is
/// the id of the node that passed it on.
pub const FORWARDED: &str = "sfu-forwarded";
/// On a merged `GET /api/rooms`: the ids of nodes that did not answer (their rooms are missing
/// from the list).
pub const UNREACHABLE: &str = "sfu-unreachable-nodes";
/// The longest a node waits for another node's answer.
pub const NODE_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the routing needs.
#[derive(Clone)]
pub struct ClusterApi {
    cluster: Arc<Cluster>,
    sfu: Arc<SfuHandle>,
    keys: KeySet,
    client: reqwest::Client,
}

impl ClusterApi {
    /// Routing for `cluster`'s node `sfu`, checking tokens with `keys` (the REST API's).
    pub fn new(cluster: Arc<Cluster>, sfu: Arc<SfuHandle>, keys: KeySet) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(NODE_CALL_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("HTTP client for the cluster's REST calls: {e}"))?;
        Ok(ClusterApi {
            cluster,
            sfu,
            keys,
            client,
        })
    }

    /// Whether the call carries a token that may use the REST API.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        signal::auth::bearer_token(headers)
            .and_then(|token| self.keys.verify(token))
            .is_ok_and(|c| c.grants.room_admin)
    }
}

/// The middleware: passes REST calls to the node that should answer them.
pub async fn route(State(api): State<ClusterApi>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/api/rooms") else {
        return next.run(req).await;
    };
    if req.headers().contains_key(FORWARDED) || !api.authorized(req.headers()) {
        return next.run(req).await;
    }
    match (req.method().clone(), rest) {
        (Method::GET, "") => list(api, req, next).await,
        (Method::POST, "") => create(api, req, next).await,
        (_, rest) if rest.starts_with('/') => {
            let room = rest[1..].split('/').next().unwrap_or_default().to_owned();
            for_room(api, room, req, next).await
        }
        _ => next.run(req).await,
    }
}

/// Which nodes of a room a call about it concerns, when the room spans several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Span {
    /// The owner answers for the whole room (it mirrors the others' participants and tracks).
    Owner,
    /// One participant: the node that holds it (tried from the owner on, until one knows it).
    Participant,
    /// The room itself (close it, change its metadata or codecs): every node serving it.
    Every,
}

impl Span {
    /// What a call with `method` on `/api/rooms{rest}` concerns.
    fn of(method: &Method, rest: &str) -> Span {
        let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
        match (method, parts.as_slice()) {
            (&Method::GET, _) => Span::Owner,
            (_, [_room]) => Span::Every,
            (_, [_room, "participants", _, ..]) => Span::Participant,
            _ => Span::Owner,
        }
    }
}

/// A call about one room: answered by the room's node; one about a participant, by the node
/// that holds the participant; one that changes the room, by every node serving it.
async fn for_room(api: ClusterApi, room: String, req: Request, next: Next) -> Response {
    let owner = match api.cluster.owner(&room).await {
        Ok(owner) => owner,
        // Without Redis this node answers for its own rooms.
        Err(_) => return next.run(req).await,
    };
    let owner = match owner {
        Some(owner) if owner != api.cluster.node_id() => match api.cluster.node(&owner) {
            Some(node) => Some(node),
            // Its node is gone; the room is nowhere until a join claims it again.
            None => return next.run(req).await,
        },
        _ => None,
    };
    let rest = req.uri().path()["/api/rooms".len()..].to_owned();
    let span = Span::of(req.method(), &rest);
    // The other nodes serving the room (`None`: this one, when it is not the owner).
    let others: Vec<Option<NodeEntry>> = if span == Span::Owner {
        Vec::new()
    } else {
        let me = api.cluster.node_id();
        let owner_id = owner.as_ref().map_or(me, |o| o.id.as_str());
        api.cluster
            .members(&room)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|(node, _)| node != owner_id)
            .filter_map(|(node, _)| match node == me {
                true => Some(None),
                false => api.cluster.node(&node).map(Some),
            })
            .collect()
    };
    if others.is_empty() {
        return match owner {
            Some(node) => forward(&api, &node, req).await,
            None => next.run(req).await,
        };
    }
    // The room spans nodes: the body is read once and the call made on several.
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let again = || Request::from_parts(parts.clone(), Body::from(bytes.clone()));
    let first = match &owner {
        Some(node) => forward(&api, node, again()).await,
        None => next.clone().run(again()).await,
    };
    let call = |node: &Option<NodeEntry>| {
        let (api, next, req) = (api.clone(), next.clone(), again());
        let node = node.clone();
        async move {
            match node {
                Some(node) => forward(&api, &node, req).await,
                None => next.run(req).await,
            }
        }
    };
    match span {
        Span::Participant if first.status() == StatusCode::NOT_FOUND => {
            for node in &others {
                let response = call(node).await;
                if response.status() != StatusCode::NOT_FOUND {
                    return response;
                }
            }
            first
        }
        Span::Every => {
            for node in &others {
                let status = call(node).await.status();
                if !status.is_success() && status != StatusCode::NOT_FOUND {
                    let id = node
                        .as_ref()
                        .map_or(api.cluster.node_id(), |n| n.id.as_str());
                    warn!(node = %id, %room, %status, "a node serving the room did not apply a change to it");
                }
            }
            first
        }
        _ => first,
    }
}

/// `POST /api/rooms`: the room is placed as a first join would place it.
async fn create(api: ClusterApi, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let body = serde_json::from_slice::<Value>(&bytes).ok();
    let field = |f: &str| {
        body.as_ref()
            .and_then(|v| v.get(f).and_then(Value::as_str).map(str::to_owned))
    };
    let (name, region) = (field("name"), field("region"));
    let req = Request::from_parts(parts, Body::from(bytes));
    // A body without a valid name or region gets this node's own validation error.
    let Some(name) = name.filter(|n| signal::protocol::validate_room_name(n).is_ok()) else {
        return next.run(req).await;
    };
    if region
        .as_deref()
        .is_some_and(|r| signal::protocol::validate_region(r).is_err())
    {
        return next.run(req).await;
    }
    let here = api.sfu.has_room(&name);
    match api.cluster.place(&name, region.as_deref(), here).await {
        Ok(Place::Here) => next.run(req).await,
        Ok(Place::There { node, .. }) => match api.cluster.node(&node) {
            Some(entry) => forward(&api, &entry, req).await,
            None => busy(format!("node {node} is not reachable now; try again")),
        },
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /api/rooms`: this node's rooms and every other live node's, merged.
async fn list(api: ClusterApi, req: Request, next: Next) -> Response {
    let headers = req.headers().clone();
    let query = req.uri().query().map(str::to_owned);
    let local = next.run(req).await;
    if local.status() != StatusCode::OK {
        return local;
    }
    let Ok(bytes) = to_bytes(local.into_body(), usize::MAX).await else {
        return busy("this node's room list could not be read".into());
    };
    let mut rooms = rooms_of(&bytes, api.cluster.node_id());
    let mut calls = tokio::task::JoinSet::new();
    for node in api.cluster.others() {
        let api = api.clone();
        let headers = headers.clone();
        let path = match &query {
            Some(q) => format!("/api/rooms?{q}"),
            None => "/api/rooms".to_owned(),
        };
        calls.spawn(async move {
            let result = call_node(&api, &node, Method::GET, &path, &headers, Bytes::new()).await;
            (node.id, result)
        });
    }
    let mut unreachable = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let Ok((id, result)) = joined else { continue };
        match result {
            Ok((StatusCode::OK, _, body)) => rooms.extend(rooms_of(&body, &id)),
            Ok((status, _, _)) => {
                warn!(node = %id, %status, "a node refused the room list");
                unreachable.push(id);
            }
            Err(e) => {
                warn!(node = %id, error = %e, "a node did not answer the room list");
                unreachable.push(id);
            }
        }
    }
    rooms.sort_by(|a, b| {
        let key = |v: &Value| {
            (
                v["name"].as_str().unwrap_or_default().to_owned(),
                v["node"].as_str().unwrap_or_default().to_owned(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut response = axum::Json(serde_json::json!({ "rooms": rooms })).into_response();
    if !unreachable.is_empty() {
        unreachable.sort();
        if let Ok(v) = HeaderValue::from_str(&unreachable.join(",")) {
            response.headers_mut().insert(UNREACHABLE, v);
        }
    }
    response
}

/// The rooms of a node's `{"rooms": [...]}`, each marked with the node's id.
fn rooms_of(body: &[u8], node: &str) -> Vec<Value> {
    let Ok(Value::Object(mut list)) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let Some(Value::Array(rooms)) = list.remove("rooms") else {
        return Vec::new();
    };
    rooms
        .into_iter()
        .map(|mut r| {
            if let Value::Object(fields) = &mut r {
                fields.insert("node".into(), Value::String(node.to_owned()));
            }
            r
        })
        .collect()
}

/// Passes `req` to `node` and returns its answer.
async fn forward(api: &ClusterApi, node: &NodeEntry, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body).await {
        Ok(bytes) => bytes,
        Err(response) => return response,
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    match call_node(api, node, parts.method, &path, &parts.headers, bytes).await {
        Ok((status, content_type, body)) => {
            let mut response = (status, body).into_response();
            if let Some(ct) = content_type {
                response.headers_mut().insert(CONTENT_TYPE, ct);
            }
            response
        }
        Err(e) => {
            warn!(node = %node.id, error = %e, "a node did not answer a REST call passed to it");
            busy(format!(
                "node {} serves this room and did not answer; try again",
                node.id
            ))
        }
    }
}

/// One call to another node's REST API, with the caller's token.
async fn call_node(
    api: &ClusterApi,
    node: &NodeEntry,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Option<HeaderValue>, Bytes), reqwest::Error> {
    let url = format!("{}{path}", node.url.trim_end_matches('/'));
    let mut request = api
        .client
        .request(method, url)
        .header(FORWARDED, api.cluster.node_id());
    for name in [AUTHORIZATION, CONTENT_TYPE] {
        if let Some(v) = headers.get(&name) {
            request = request.header(name, v.clone());
        }
    }
    let response = request.body(body).send().await?;
    let status = response.status();
    let content_type = response.headers().get(CONTENT_TYPE).cloned();
    let body = response.bytes().await?;
    Ok((status, content_type, body))
}

/// Reads a request body as the REST API does: at most [`MAX_BODY_BYTES`], within
/// [`BODY_READ_TIMEOUT`].
async fn read_body(body: Body) -> Result<Bytes, Response> {
    match tokio::time::timeout(BODY_READ_TIMEOUT, to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::new(
            ErrorCode::MessageTooLarge,
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        )
        .into_response()),
        Err(_) => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "the request body did not arrive in time",
        )
        .into_response()),
    }
}

fn busy(message: String) -> Response {
    ApiError::new(ErrorCode::ServerBusy, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_concerns_the_owner_a_participant_s_node_or_every_node() {
        let cases = [
            (Method::GET, "/r", Span::Owner),
            (Method::GET, "/r/participants", Span::Owner),
            (Method::GET, "/r/participants/p", Span::Owner),
            (Method::PATCH, "/r", Span::Every),
            (Method::DELETE, "/r", Span::Every),
            (Method::DELETE, "/r/participants/p", Span::Participant),
            (Method::PATCH, "/r/participants/p", Span::Participant),
            (
                Method::POST,
                "/r/participants/p/tracks/t/mute",
                Span::Participant,
            ),
            (Method::POST, "/r/participants", Span::Owner),
            (Method::POST, "/r/other", Span::Owner),
        ];
        for (method, rest, span) in cases {
            assert_eq!(Span::of(&method, rest), span, "{method} {rest}");
        }
    }
}
