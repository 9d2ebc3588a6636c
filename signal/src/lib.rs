//! Signalling for the SFU: the language clients speak.
//!
//! - [`protocol`]: the WebSocket messages (JSON), error codes and name rules.
//! - [`mod@router`]: the axum router serving the demo page, the browser client and the WebSocket endpoint.
//!   It is generic over [`MediaBackend`], which the media side implements; this crate knows nothing of
//!   RTP.
//! - [`auth`]: API keys and access tokens (HS256 JWTs).
//! - [`rest`]: the REST API under `/api`, generic over [`RoomService`], and its OpenAPI document.
//! - [`webhook`]: the events posted to webhook URLs and their signature.
//!
//! [`app`] puts it all together: the router plus the REST API, sharing one set of keys.

pub mod auth;
pub mod limits;
pub mod protocol;
pub mod rest;
pub mod router;
pub mod webhook;
pub mod whip;
mod ws;

use std::future::Future;
use std::sync::Arc;

pub use auth::{Claims, Grants, KeySet};
pub use protocol::{ClientMessage, ErrorCode, ServerMessage, SignalError};
pub use rest::{api_router, ApiConfig, ApiError, RoomService};
pub use router::{router, RouterConfig};

/// The whole HTTP side: [`router`] (static files, `/healthz`, `/ws`), [`api_router`]
/// (`/api`) and [`whip::whip_router`] (`/whip`, `/whep`). The WebSocket joins and WHIP/WHEP
/// sessions check tokens against `api.keys`.
///
/// # Panics
///
/// If `config` fails [`RouterConfig::validate`].
pub fn app<B: MediaBackend + RoomService>(
    backend: Arc<B>,
    mut config: RouterConfig,
    api: ApiConfig,
) -> axum::Router {
    config.keys = Some(api.keys.clone());
    let whip = whip::whip_router(Arc::clone(&backend), &config);
    router(Arc::clone(&backend), config)
        .merge(api_router(backend, api))
        .merge(whip)
}

/// What a client asks for when it joins, after the router has checked the message's shape, version
/// and names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// The room.
    pub room: String,
    /// The display name: the token's `name` when it has one, else the one the client sent.
    pub name: String,
    /// The access token, if the client sent one. Already verified when the router has keys.
    pub token: Option<String>,
    /// The token's identity (`sub`); `None` when the router checks no tokens.
    pub identity: Option<String>,
    /// The token's participant metadata.
    pub metadata: Option<String>,
    /// What the participant may do: the token's grants, or [`Grants::all`] when the router
    /// checks no tokens.
    pub grants: Grants,
    /// The region the client said it is in (validated), for placing a new room in a cluster.
    pub region: Option<String>,
}

/// A joined participant, as the router holds it for the life of one WebSocket.
#[derive(Debug)]
pub struct Session {
    /// The id the media side gave the participant.
    pub participant_id: String,
    /// Everything the media side wants to tell this client, in order, starting with
    /// [`ServerMessage::Joined`]. A [`ServerMessage::Left`] ends the session; so does the sender
    /// being dropped.
    pub events: tokio::sync::mpsc::Receiver<ServerMessage>,
}

/// A signal a joined client sends about its peer connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSignal {
    /// An SDP offer.
    Offer(String),
    /// An SDP answer.
    Answer(String),
    /// A trickled candidate.
    Candidate(protocol::IceCandidate),
    /// Mute or unmute one of the client's own tracks.
    Mute {
        /// The track.
        track_id: String,
        /// Muted or not.
        muted: bool,
    },
    /// How the client shows a remote video.
    TrackSettings {
        /// The track.
        track_id: String,
        /// On screen.
        visible: bool,
        /// Rendered width in device pixels (0: unknown).
        width: u32,
        /// Rendered height in device pixels (0: unknown).
        height: u32,
        /// Shown prominently (pinned): more important than the other cameras.
        pinned: bool,
    },
    /// What the tracks of the offer that follows carry, by mid (`offer`'s `sources`). Sent right
    /// before that [`ClientSignal::Offer`], which applies them.
    TrackSources(Vec<(String, protocol::TrackSource)>),
}

/// The media side, as the signalling layer sees it.
///
/// All calls are cheap and never wait for media work: `signal` and `leave` only queue a command.
pub trait MediaBackend: Send + Sync + 'static {
    /// Admit a participant into a room. Errors are sent to the client as they are.
    fn join(&self, req: JoinRequest) -> impl Future<Output = Result<Session, SignalError>> + Send;

    /// Pass on a signal from a joined participant. An error here (for example a full command queue) is
    /// sent to the client; errors found while handling the signal come back on [`Session::events`].
    fn signal(&self, participant_id: &str, signal: ClientSignal) -> Result<(), SignalError>;

    /// Admit a participant that plays one publisher of the room (WHEP): it receives only the
    /// tracks of the participant whose identity is `publisher`, on the m-lines of its own first
    /// offer, and is never sent an offer. By default nothing can be played.
    fn join_player(
        &self,
        req: JoinRequest,
        publisher: String,
    ) -> impl Future<Output = Result<Session, SignalError>> + Send {
        let _ = (req, publisher);
        async {
            Err(SignalError::new(
                ErrorCode::NotFound,
                "this server does not play participants",
            ))
        }
    }

    /// The WebSocket URL (`ws://node/ws`) of the node of a cluster that serves `room`, when
    /// that is another node than this one; `None` otherwise (and by default). WHEP sends a
    /// player there when the publisher is not here.
    fn room_elsewhere(&self, room: &str) -> impl Future<Output = Option<String>> + Send {
        let _ = room;
        async { None }
    }

    /// The participant is gone: it said `leave`. `reason` is `left` or `disconnected`.
    /// Idempotent.
    fn leave(&self, participant_id: &str, reason: &str);

    /// The participant's socket closed without `leave`. A backend that resumes sessions keeps
    /// the participant for a grace period (see [`MediaBackend::resume`]); by default it leaves as
    /// `disconnected`. Idempotent.
    fn detach(&self, participant_id: &str) {
        self.leave(participant_id, "disconnected");
    }

    /// Take a detached (or still attached) participant up again on a new socket, if the secret
    /// is the one handed out in its `joined`. The new session's first event is
    /// [`ServerMessage::Resumed`](protocol::ServerMessage::Resumed). By default nothing can be
    /// resumed.
    fn resume(
        &self,
        req: ResumeRequest,
    ) -> impl Future<Output = Result<Session, SignalError>> + Send {
        let _ = req;
        async {
            Err(SignalError::new(
                ErrorCode::ResumeFailed,
                "this server does not resume sessions; join again",
            ))
        }
    }
}

/// A `resume` as the media side gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The participant to take up.
    pub participant_id: String,
    /// The secret from its `joined`.
    pub secret: String,
}
