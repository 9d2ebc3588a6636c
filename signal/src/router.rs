//! The HTTP side: the demo page, the browser client, a health check and the WebSocket endpoint.
//!
//! | route          | answer                                                        |
//! |----------------|---------------------------------------------------------------|
//! | `GET /`        | `static/index.html`                                           |
//! | `GET /client.js`, `GET /demo.js` | the browser client (the `client/` package's module) and the demo script |
//! | `GET /demo.css`| the demo style sheet                                          |
//! | `GET /ws`      | WebSocket upgrade; one session per socket (see [`RouterConfig`]) |
//! | `GET /healthz` | `200 ok`                                                      |
//!
//! The REST API under `/api` is a router of its own ([`crate::rest::api_router`]); [`crate::app`]
//! merges the two.
//!
//! Static files are compiled into the binary and served with `Cache-Control: no-cache`, so a browser
//! revalidates them after every deploy. Anything else is `404`. Every response carries the
//! headers of [`security_headers`].
//!
//! WebSockets that have not joined yet are capped, in all and per client address
//! ([`RouterConfig::max_pending_sockets`]); upgrades beyond the caps are answered `503` and counted
//! in `sfu_ws_refused_total{reason}`.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY as CONTENT_SECURITY_POLICY_HEADER, CONTENT_TYPE,
    REFERRER_POLICY, RETRY_AFTER, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tracing::{warn, Instrument};

use crate::auth::KeySet;
use crate::limits::{IpLimiter, LogThrottle};
use crate::protocol::MAX_MESSAGE_BYTES;
use crate::{ws, MediaBackend};

const INDEX_HTML: &str = include_str!("../static/index.html");
const CLIENT_JS: &str = include_str!("../../client/src/sfu-client.js");
const DEMO_JS: &str = include_str!("../static/demo.js");
const DEMO_CSS: &str = include_str!("../static/demo.css");

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The longest any configured duration may be. Keeps deadline arithmetic far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// The shortest any configured duration may be.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// The largest [`RouterConfig::max_frame_bytes`] may be.
pub const MAX_FRAME_BYTES_LIMIT: usize = 16 * 1024 * 1024;

/// What tungstenite reads from the socket at a time, and so what an idle socket holds for reading
/// (its default is 128 KiB). Signalling messages are small; a larger one takes a few more reads.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// Outgoing bytes a session may have queued in the socket before a send fails. Server messages
/// can be large (a `joined` listing many participants with metadata); the buffer only fills when
/// the client stops reading, and [`RouterConfig::send_timeout`] ends that.
const MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// How often a refusal of the same kind may be logged.
const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

/// Refused WebSocket upgrades, for the log.
static PENDING_REFUSALS: LogThrottle = LogThrottle::new(REFUSAL_LOG_PERIOD);

/// How the WebSocket sessions keep time and how much they read.
///
/// Build it with [`RouterConfig::default`] and change the fields you need; [`router`] checks it with
/// [`RouterConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RouterConfig {
    /// A socket that has not joined within this time after it opened is closed (close code
    /// 1008). Refused joins do not extend it. Default: 10 s.
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
    /// closes (close code 1009). Must be larger than [`MAX_MESSAGE_BYTES`] and at most
    /// [`MAX_FRAME_BYTES_LIMIT`]. Default: 320 KiB, 64 KiB above [`MAX_MESSAGE_BYTES`]: a
    /// joined socket that holds an unfinished message holds at most this much.
    pub max_frame_bytes: usize,
    /// Refused `join`s a socket may make; the last one is answered, then the socket is closed
    /// (close code 1008, reason `too many joins`). 1 to 100. Default: 3.
    pub max_join_attempts: u32,
    /// Client messages per second a session handles in the long run (a token bucket; pings and
    /// pongs are not counted). Messages over the limit are dropped and answered with
    /// `rate_limited` at most once per second; a client sending far above it is closed (see
    /// [`crate::limits::MessageRate`]). 1 to 100,000. Default: 50.
    pub message_rate: u32,
    /// Client messages a session takes at once before [`message_rate`](Self::message_rate)
    /// applies. A browser trickles some 20 candidates at once. 1 to 100,000. Default: 100.
    pub message_burst: u32,
    /// WebSockets that have not joined yet, at most, on the whole server. Upgrades beyond it are
    /// answered `503`. Default: 1,000.
    pub max_pending_sockets: usize,
    /// WebSockets that have not joined yet, at most, per client address (IPv6: per /64).
    /// Upgrades beyond it are answered `503`. Default: 100.
    pub max_pending_sockets_per_ip: usize,
    /// The API keys that sign access tokens. With keys, every `join` needs a valid token for its
    /// room that grants `join` (see [`KeySet::authorize_join`]). `None` (the default, for tests
    /// and embedding) admits everyone with every grant; [`crate::app`] always sets it.
    pub keys: Option<KeySet>,
    /// WHIP and WHEP sessions at most, on the whole server ([`crate::whip`]). Sessions beyond it
    /// are answered `503`. Default: 1,000.
    pub max_whip_sessions: usize,
    /// WHIP and WHEP sessions at most per client address (IPv6: per /64). Default: 20.
    pub max_whip_sessions_per_ip: usize,
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
            max_frame_bytes: MAX_MESSAGE_BYTES + 64 * 1024,
            max_join_attempts: 3,
            message_rate: 50,
            message_burst: 100,
            max_pending_sockets: 1_000,
            max_pending_sockets_per_ip: 100,
            keys: None,
            max_whip_sessions: 1_000,
            max_whip_sessions_per_ip: 20,
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
    /// The frame cap is above [`MAX_FRAME_BYTES_LIMIT`].
    #[error("max_frame_bytes ({0}) must be at most {MAX_FRAME_BYTES_LIMIT}")]
    FrameCapTooLarge(usize),
    /// A count is outside its range.
    #[error("{field} must be between {min} and {max}, got {value}")]
    CountOutOfRange {
        /// The field's name.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The smallest allowed.
        min: u64,
        /// The largest allowed.
        max: u64,
    },
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
        if self.max_frame_bytes > MAX_FRAME_BYTES_LIMIT {
            return Err(ConfigError::FrameCapTooLarge(self.max_frame_bytes));
        }
        for (field, value, min, max) in [
            (
                "max_join_attempts",
                u64::from(self.max_join_attempts),
                1,
                100,
            ),
            ("message_rate", u64::from(self.message_rate), 1, 100_000),
            ("message_burst", u64::from(self.message_burst), 1, 100_000),
            (
                "max_pending_sockets",
                self.max_pending_sockets as u64,
                1,
                1_000_000,
            ),
            (
                "max_pending_sockets_per_ip",
                self.max_pending_sockets_per_ip as u64,
                1,
                1_000_000,
            ),
            (
                "max_whip_sessions",
                self.max_whip_sessions as u64,
                1,
                1_000_000,
            ),
            (
                "max_whip_sessions_per_ip",
                self.max_whip_sessions_per_ip as u64,
                1,
                1_000_000,
            ),
        ] {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::CountOutOfRange {
                    field,
                    value,
                    min,
                    max,
                });
            }
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
    /// Sockets that have not joined yet.
    pending: IpLimiter,
}

impl<B> Clone for AppState<B> {
    fn clone(&self) -> Self {
        AppState {
            backend: Arc::clone(&self.backend),
            config: self.config.clone(),
            next_socket: Arc::clone(&self.next_socket),
            pending: self.pending.clone(),
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
        pending: IpLimiter::new(
            config.max_pending_sockets,
            config.max_pending_sockets_per_ip,
        ),
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
        .layer(middleware::map_response(security_headers))
}

/// The Content-Security-Policy of every response. The demo page loads only its own script
/// modules and style sheet (no inline script or style, no `eval`), talks to its own origin
/// (`fetch` of `/api/dev/token`, the WebSocket `/ws`: CSP 3 lets `'self'` match `ws:`/`wss:` on
/// the same host), shows camera streams through `srcObject` (no URL, so no `media-src` or `blob:`
/// needed), and has a `data:` favicon. It may not be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Adds the security headers to a response that does not set them itself: the CSP, no framing
/// (`X-Frame-Options` for browsers without `frame-ancestors`), no MIME sniffing, and no
/// `Referer`: URLs of this server may carry `?token=`.
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (CONTENT_SECURITY_POLICY_HEADER, CONTENT_SECURITY_POLICY),
        (X_FRAME_OPTIONS, "DENY"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (REFERRER_POLICY, "no-referrer"),
    ] {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// The client's address, from [`ConnectInfo`] when the server was started with it (as
/// `into_make_service_with_connect_info::<SocketAddr>()`); else `0.0.0.0`, so that every client
/// shares one per-address count.
pub(crate) struct PeerIp(pub(crate) IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

async fn upgrade<B: MediaBackend>(
    State(state): State<AppState<B>>,
    PeerIp(ip): PeerIp,
    upgrade: WebSocketUpgrade,
) -> Response {
    let pending = match state.pending.try_acquire(ip) {
        Ok(permit) => permit,
        Err(refused) => {
            metrics::counter!("sfu_ws_refused_total", "reason" => refused.as_str()).increment(1);
            if let Some(n) = PENDING_REFUSALS.hit(std::time::Instant::now()) {
                warn!(
                    refused = n,
                    cap = refused.as_str(),
                    "WebSocket upgrades refused: too many sockets have not joined"
                );
            }
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(RETRY_AFTER, "5")],
                "too many connections that have not joined; try again later",
            )
                .into_response();
        }
    };
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
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .on_failed_upgrade(|e| tracing::debug!(error = %e, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            ws::run(socket, state.backend, state.config, pending).instrument(span)
        })
}
