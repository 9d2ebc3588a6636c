//! The HTTP side: the demo page, the browser client, a health check and the WebSocket endpoint.
//!
//! | route          | answer                                                        |
//! |----------------|---------------------------------------------------------------|
//! | `GET /`        | `static/index.html`                                           |
//! | `GET /client.js`, `GET /demo.js` | the browser client and the demo script     |
//! | `GET /demo.css`| the demo style sheet                                          |
//! | `GET /ws`      | WebSocket upgrade; one session per socket (see [`RouterConfig`]) |
//! | `GET /healthz` | `200 ok`                                                      |
//!
//! The REST API under `/api` is a router of its own ([`crate::rest::api_router`]); [`crate::app`]
//! merges the two.
//!
//! Static files are compiled into the binary and served with `Cache-Control: no-cache`, so a browser
//! revalidates them after every deploy. Anything else is `404`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::Instrument;

use crate::auth::KeySet;
use crate::protocol::MAX_MESSAGE_BYTES;
use crate::{ws, MediaBackend};

const INDEX_HTML: &str = include_str!("../static/index.html");
const CLIENT_JS: &str = include_str!("../static/client.js");
const DEMO_JS: &str = include_str!("../static/demo.js");
const DEMO_CSS: &str = include_str!("../static/demo.css");

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The longest any configured duration may be. Keeps deadline arithmetic far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest any configured duration may be.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// How the WebSocket sessions keep time and how much they read.
///
/// Build it with [`RouterConfig::default`] and change the fields you need; [`router`] checks it with
/// [`RouterConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterConfig {
    /// A socket that has not joined within this time after it opened, or after its last refused
    /// `join`, is closed (close code 1008). Default: 10 s.
    pub join_timeout: Duration,
    /// How often the server sends a WebSocket ping. Browsers answer pings on their own. Default: 15 s.
    pub ping_interval: Duration,
    /// A socket from which no frame at all (message, ping or pong) arrived within this time is
    /// closed, and its participant leaves as `disconnected`. Must be longer than
    /// [`ping_interval`](Self::ping_interval). Default: 45 s.
    pub idle_timeout: Duration,
    /// After a client's `leave`, how long the server keeps forwarding events while it waits for the
    /// media side's `left`. When it does not come in time, the server sends `left` itself and
    /// closes. Default: 2 s.
    pub leave_timeout: Duration,
    /// A send to the client that does not complete within this time (the client stopped reading)
    /// ends the session as `disconnected`. Default: 10 s.
    pub send_timeout: Duration,
    /// The longest the server waits for [`MediaBackend::join`]. Past it the client gets
    /// `server_busy` and may try again; the join future is dropped. Default: 10 s.
    pub backend_timeout: Duration,
    /// The hard cap on one WebSocket frame or message, in bytes. Messages between
    /// [`MAX_MESSAGE_BYTES`] and this cap are answered with `message_too_large`; above it the socket
    /// closes. Must be larger than [`MAX_MESSAGE_BYTES`]. Default: 4 MiB.
    pub max_frame_bytes: usize,
    /// The API keys that sign access tokens. With keys, every `join` needs a valid token for its
    /// room that grants `join` (see [`KeySet::authorize_join`]). `None` (the default, for tests
    /// and embedding) admits everyone with every grant; [`crate::app`] always sets it.
    pub keys: Option<KeySet>,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            join_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            leave_timeout: Duration::from_secs(2),
            send_timeout: Duration::from_secs(10),
            backend_timeout: Duration::from_secs(10),
            max_frame_bytes: 4 * 1024 * 1024,
            keys: None,
        }
    }
}

/// Why a [`RouterConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration is zero, below a millisecond or above a day.
    #[error("{field} must be between 1 ms and 24 h, got {value:?}")]
    DurationOutOfRange {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: Duration,
    },
    /// The ping interval is not shorter than the idle timeout, so idle clients would be closed
    /// before they were asked for a pong.
    #[error("ping_interval ({ping:?}) must be shorter than idle_timeout ({idle:?})")]
    PingNotBeforeIdle {
        /// The ping interval.
        ping: Duration,
        /// The idle timeout.
        idle: Duration,
    },
    /// The frame cap leaves no room to answer an oversized message with an error.
    #[error("max_frame_bytes ({0}) must be larger than MAX_MESSAGE_BYTES ({MAX_MESSAGE_BYTES})")]
    FrameCapTooSmall(usize),
}

impl RouterConfig {
    /// Checks the values against each other and against sane bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("join_timeout", self.join_timeout),
            ("ping_interval", self.ping_interval),
            ("idle_timeout", self.idle_timeout),
            ("leave_timeout", self.leave_timeout),
            ("send_timeout", self.send_timeout),
            ("backend_timeout", self.backend_timeout),
        ] {
            if !(MIN_DURATION..=MAX_DURATION).contains(&value) {
                return Err(ConfigError::DurationOutOfRange { field, value });
            }
        }
        if self.ping_interval >= self.idle_timeout {
            return Err(ConfigError::PingNotBeforeIdle {
                ping: self.ping_interval,
                idle: self.idle_timeout,
            });
        }
        if self.max_frame_bytes <= MAX_MESSAGE_BYTES {
            return Err(ConfigError::FrameCapTooSmall(self.max_frame_bytes));
        }
        Ok(())
    }
}

/// What every request handler shares.
struct AppState<B> {
    backend: Arc<B>,
    config: RouterConfig,
    /// Numbers sockets for the logs.
    next_socket: Arc<AtomicU64>,
}

impl<B> Clone for AppState<B> {
    fn clone(&self) -> Self {
        AppState {
            backend: Arc::clone(&self.backend),
            config: self.config.clone(),
            next_socket: Arc::clone(&self.next_socket),
        }
    }
}

/// Builds the router: static files, `/healthz` and the WebSocket endpoint `/ws`, whose sessions talk
/// to `backend`.
///
/// # Panics
///
/// If `config` fails [`RouterConfig::validate`]. Call `validate` first to report the error nicely.
pub fn router<B: MediaBackend>(backend: Arc<B>, config: RouterConfig) -> Router {
    if let Err(e) = config.validate() {
        panic!("invalid RouterConfig: {e}");
    }
    let state = AppState {
        backend,
        config,
        next_socket: Arc::new(AtomicU64::new(1)),
    };
    Router::new()
        .route("/", get(|| async { asset(HTML, INDEX_HTML) }))
        .route("/client.js", get(|| async { asset(JAVASCRIPT, CLIENT_JS) }))
        .route("/demo.js", get(|| async { asset(JAVASCRIPT, DEMO_JS) }))
        .route("/demo.css", get(|| async { asset(CSS, DEMO_CSS) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/ws", get(upgrade::<B>))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

async fn upgrade<B: MediaBackend>(
    State(state): State<AppState<B>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let socket_no = state.next_socket.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "ws",
        socket = socket_no,
        room = tracing::field::Empty,
        participant = tracing::field::Empty
    );
    let cap = state.config.max_frame_bytes;
    upgrade
        .max_message_size(cap)
        .max_frame_size(cap)
        .max_write_buffer_size(cap)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| ws::run(socket, state.backend, state.config).instrument(span))
}
