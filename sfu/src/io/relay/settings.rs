//! A room's settings for a node that joins it: the maximum of participants, the empty timeout,
//! the metadata and the video codecs are the owner's (set when the room was created through
//! the REST API, or changed since), so that a participant on any node sees the same room.
//!
//! The node that takes the room's first participant while another node owns it asks the owner
//! (`POST /cluster/room`, signed like the relay's offers); later changes reach every node
//! through the REST API (`cluster_api`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use signal::rest::dto::RoomInfo;

use super::Relay;

/// The longest a join waits for the owner's settings (then the room starts from the defaults).
const SETTINGS_TIMEOUT: Duration = Duration::from_secs(2);

/// The request: which room.
#[derive(Debug, Serialize, Deserialize)]
struct SettingsBody {
    /// The asking node's id.
    from: String,
    /// The room.
    room: String,
}

impl Relay {
    /// The settings of `room` as its owner, another node, has them; `None` when this node owns
    /// it, nobody does, or the owner does not answer in time.
    pub async fn room_settings(&self, room: &str) -> Option<RoomInfo> {
        let owner = self.cluster.owner(room).await.ok()??;
        if owner == self.cluster.node_id() {
            return None;
        }
        let entry = self.cluster.node(&owner)?;
        let body = serde_json::to_vec(&SettingsBody {
            from: self.cluster.node_id().to_owned(),
            room: room.to_owned(),
        })
        .ok()?;
        let url = format!("{}/cluster/room", entry.url.trim_end_matches('/'));
        let info = tokio::time::timeout(SETTINGS_TIMEOUT, self.call::<RoomInfo>(&url, body))
            .await
            .ok()
            .and_then(Result::ok);
        if info.is_none() {
            tracing::warn!(room, node = %owner, "the room's settings did not come from its owner: defaults");
        }
        info
    }
}

/// `POST /cluster/room`: this node's settings of a room, for another node of the cluster.
pub(super) async fn answer(
    State(relay): State<Arc<Relay>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let req: SettingsBody = match relay.request(&headers, &body) {
        Ok(r) => r,
        Err(refused) => return refused.into_response(),
    };
    let info = relay.placement.lock().info(&req.room);
    match info {
        Ok(info) => relay.signed(serde_json::to_vec(&info).unwrap_or_default()),
        Err(_) => (StatusCode::NOT_FOUND, "no such room here").into_response(),
    }
}
