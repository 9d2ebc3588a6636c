//! `[http_limits]`: what one HTTP or WebSocket client may hold and how fast it may talk. The file
//! section, its flags and environment variables, the defaults and the checks, in one place.

use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use signal::auth::MAX_TTL;
use signal::router::ConfigError as RouterError;
use signal::{ApiConfig, RouterConfig};

use super::duration::{parse_duration, FileDuration};
use super::{err, ConfigError};

/// The keys of the section, as `docs/configuration.md` must list them.
pub const KEYS: &[&str] = &[
    "http_limits.header_read_timeout",
    "http_limits.max_connections",
    "http_limits.max_connections_per_ip",
    "http_limits.max_pending_sockets",
    "http_limits.max_pending_sockets_per_ip",
    "http_limits.max_join_attempts",
    "http_limits.message_rate",
    "http_limits.message_burst",
    "http_limits.max_frame_bytes",
    "http_limits.max_token_ttl",
    "http_limits.max_whip_sessions",
    "http_limits.max_whip_sessions_per_ip",
];

/// The limits, resolved. Defaults: see [`HttpLimits::default`] and `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time for a complete request head, from the connection opening or the previous response.
    pub header_read_timeout: Duration,
    /// Open TCP connections (HTTP, HTTPS, WebSocket) in all.
    pub max_connections: usize,
    /// Open TCP connections per client address (IPv6: per /64).
    pub max_connections_per_ip: usize,
    /// WebSockets that have not joined, in all.
    pub max_pending_sockets: usize,
    /// WebSockets that have not joined, per client address.
    pub max_pending_sockets_per_ip: usize,
    /// Refused joins per WebSocket before it is closed.
    pub max_join_attempts: u32,
    /// Client messages per second per WebSocket, sustained.
    pub message_rate: u32,
    /// Client messages per WebSocket at once.
    pub message_burst: u32,
    /// Largest WebSocket frame or message; above it the socket is closed.
    pub max_frame_bytes: usize,
    /// Longest lifetime of a token minted with `POST /api/tokens`.
    pub max_token_ttl: Duration,
    /// WHIP and WHEP sessions, in all.
    pub max_whip_sessions: usize,
    /// WHIP and WHEP sessions per client address.
    pub max_whip_sessions_per_ip: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        let router = RouterConfig::default();
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            max_connections_per_ip: 500,
            max_pending_sockets: router.max_pending_sockets,
            max_pending_sockets_per_ip: router.max_pending_sockets_per_ip,
            max_join_attempts: router.max_join_attempts,
            message_rate: router.message_rate,
            message_burst: router.message_burst,
            max_frame_bytes: router.max_frame_bytes,
            max_token_ttl: signal::rest::DEFAULT_MAX_TOKEN_TTL,
            max_whip_sessions: router.max_whip_sessions,
            max_whip_sessions_per_ip: router.max_whip_sessions_per_ip,
        }
    }
}

/// `[http_limits]` in the file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileHttpLimits {
    pub header_read_timeout: Option<FileDuration>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_pending_sockets: Option<usize>,
    pub max_pending_sockets_per_ip: Option<usize>,
    pub max_join_attempts: Option<u32>,
    pub message_rate: Option<u32>,
    pub message_burst: Option<u32>,
    pub max_frame_bytes: Option<usize>,
    pub max_token_ttl: Option<FileDuration>,
    pub max_whip_sessions: Option<usize>,
    pub max_whip_sessions_per_ip: Option<usize>,
}

/// The flags (and environment variables) of `[http_limits]`.
#[derive(Debug, Clone, Default, Args)]
pub struct HttpLimitsArgs {
    /// Time a client gets to send a complete request head, from opening the connection or from
    /// the previous response (so also how long an idle keep-alive connection stays). Default: 10s.
    #[arg(long, env = "SFU_HTTP_LIMITS_HEADER_READ_TIMEOUT", value_parser = parse_duration,
          value_name = "DURATION")]
    pub http_limits_header_read_timeout: Option<Duration>,

    /// Open HTTP connections (WebSockets included) on the server; more are closed at accept.
    /// Default: 10000.
    #[arg(long, env = "SFU_HTTP_LIMITS_MAX_CONNECTIONS", value_name = "N")]
    pub http_limits_max_connections: Option<usize>,

    /// Open HTTP connections per client address (IPv6: per /64). Default: 500.
    #[arg(long, env = "SFU_HTTP_LIMITS_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub http_limits_max_connections_per_ip: Option<usize>,

    /// WebSockets that have not joined yet, on the server; more upgrades get 503. Default: 1000.
    #[arg(long, env = "SFU_HTTP_LIMITS_MAX_PENDING_SOCKETS", value_name = "N")]
    pub http_limits_max_pending_sockets: Option<usize>,

    /// WebSockets that have not joined yet, per client address. Default: 100.
    #[arg(
        long,
        env = "SFU_HTTP_LIMITS_MAX_PENDING_SOCKETS_PER_IP",
        value_name = "N"
    )]
    pub http_limits_max_pending_sockets_per_ip: Option<usize>,

    /// Refused joins per WebSocket; after the last one the socket is closed. Default: 3.
    #[arg(long, env = "SFU_HTTP_LIMITS_MAX_JOIN_ATTEMPTS", value_name = "N")]
    pub http_limits_max_join_attempts: Option<u32>,

    /// Signalling messages per second a WebSocket may send, sustained. Default: 50.
    #[arg(long, env = "SFU_HTTP_LIMITS_MESSAGE_RATE", value_name = "N")]
    pub http_limits_message_rate: Option<u32>,

    /// Signalling messages a WebSocket may send at once. Default: 100.
    #[arg(long, env = "SFU_HTTP_LIMITS_MESSAGE_BURST", value_name = "N")]
    pub http_limits_message_burst: Option<u32>,

    /// Largest WebSocket frame or message in bytes; above it the socket is closed (1009).
    /// Default: 327680.
    #[arg(long, env = "SFU_HTTP_LIMITS_MAX_FRAME_BYTES", value_name = "BYTES")]
    pub http_limits_max_frame_bytes: Option<usize>,

    /// Longest lifetime of a token minted with POST /api/tokens. Default: 24h.
    #[arg(long, env = "SFU_HTTP_LIMITS_MAX_TOKEN_TTL", value_parser = parse_duration,
          value_name = "DURATION")]
    pub http_limits_max_token_ttl: Option<Duration>,

    /// WHIP and WHEP sessions on the server; more get 503. Default: 1000.
    #[arg(long, env = "SFU_HTTP_LIMITS_MAX_WHIP_SESSIONS", value_name = "N")]
    pub http_limits_max_whip_sessions: Option<usize>,

    /// WHIP and WHEP sessions per client address. Default: 20.
    #[arg(
        long,
        env = "SFU_HTTP_LIMITS_MAX_WHIP_SESSIONS_PER_IP",
        value_name = "N"
    )]
    pub http_limits_max_whip_sessions_per_ip: Option<usize>,
}

impl HttpLimits {
    /// The defaults, overridden by the file, overridden by flags and environment.
    pub fn merge(file: &FileHttpLimits, a: &HttpLimitsArgs) -> HttpLimits {
        let d = HttpLimits::default();
        HttpLimits {
            header_read_timeout: a
                .http_limits_header_read_timeout
                .or(file.header_read_timeout.map(|d| d.0))
                .unwrap_or(d.header_read_timeout),
            max_connections: a
                .http_limits_max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            max_connections_per_ip: a
                .http_limits_max_connections_per_ip
                .or(file.max_connections_per_ip)
                .unwrap_or(d.max_connections_per_ip),
            max_pending_sockets: a
                .http_limits_max_pending_sockets
                .or(file.max_pending_sockets)
                .unwrap_or(d.max_pending_sockets),
            max_pending_sockets_per_ip: a
                .http_limits_max_pending_sockets_per_ip
                .or(file.max_pending_sockets_per_ip)
                .unwrap_or(d.max_pending_sockets_per_ip),
            max_join_attempts: a
                .http_limits_max_join_attempts
                .or(file.max_join_attempts)
                .unwrap_or(d.max_join_attempts),
            message_rate: a
                .http_limits_message_rate
                .or(file.message_rate)
                .unwrap_or(d.message_rate),
            message_burst: a
                .http_limits_message_burst
                .or(file.message_burst)
                .unwrap_or(d.message_burst),
            max_frame_bytes: a
                .http_limits_max_frame_bytes
                .or(file.max_frame_bytes)
                .unwrap_or(d.max_frame_bytes),
            max_token_ttl: a
                .http_limits_max_token_ttl
                .or(file.max_token_ttl.map(|d| d.0))
                .unwrap_or(d.max_token_ttl),
            max_whip_sessions: a
                .http_limits_max_whip_sessions
                .or(file.max_whip_sessions)
                .unwrap_or(d.max_whip_sessions),
            max_whip_sessions_per_ip: a
                .http_limits_max_whip_sessions_per_ip
                .or(file.max_whip_sessions_per_ip)
                .unwrap_or(d.max_whip_sessions_per_ip),
        }
    }

    /// Checks the limits alone and against each other.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let t = self.header_read_timeout;
        if t < Duration::from_millis(100) || t > Duration::from_secs(600) {
            return Err(err(
                "http_limits.header_read_timeout",
                "must be 100ms to 10m",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(err("http_limits.max_connections", "must be 1 to 1000000"));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_ip) {
            return Err(err(
                "http_limits.max_connections_per_ip",
                "must be 1 to http_limits.max_connections",
            ));
        }
        let ttl = self.max_token_ttl;
        if ttl < Duration::from_secs(60) || ttl > MAX_TTL {
            return Err(err("http_limits.max_token_ttl", "must be 1m to 30d"));
        }
        self.router_config().validate().map_err(|e| {
            let key = match &e {
                RouterError::FrameCapTooSmall(_) | RouterError::FrameCapTooLarge(_) => {
                    "max_frame_bytes"
                }
                RouterError::CountOutOfRange { field, .. } => field,
                _ => "config",
            };
            err(format!("http_limits.{key}"), e.to_string())
        })?;
        if self.max_whip_sessions_per_ip > self.max_whip_sessions {
            return Err(err(
                "http_limits.max_whip_sessions_per_ip",
                "must not be above http_limits.max_whip_sessions",
            ));
        }
        if self.max_pending_sockets_per_ip > self.max_pending_sockets {
            return Err(err(
                "http_limits.max_pending_sockets_per_ip",
                "must not be above http_limits.max_pending_sockets",
            ));
        }
        Ok(())
    }

    /// The WebSocket settings: the router's defaults with these limits.
    pub fn router_config(&self) -> RouterConfig {
        let mut c = RouterConfig::default();
        c.max_pending_sockets = self.max_pending_sockets;
        c.max_pending_sockets_per_ip = self.max_pending_sockets_per_ip;
        c.max_join_attempts = self.max_join_attempts;
        c.message_rate = self.message_rate;
        c.message_burst = self.message_burst;
        c.max_frame_bytes = self.max_frame_bytes;
        c.max_whip_sessions = self.max_whip_sessions;
        c.max_whip_sessions_per_ip = self.max_whip_sessions_per_ip;
        c
    }

    /// Applies the REST limits to `api`.
    pub fn apply_to(&self, api: &mut ApiConfig) {
        api.max_token_ttl = self.max_token_ttl;
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::super::{Config, ServeArgs};
    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn load(toml: &str, flags: &[&str]) -> Result<Config, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("sfu").chain(flags.iter().copied()));
        Config::from_toml(toml, &cli.unwrap().args)
    }

    #[test]
    fn defaults_file_flags_and_checks() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.http_limits, HttpLimits::default());
        assert_eq!(c.http_limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.http_limits.max_connections, 10_000);
        assert_eq!(c.http_limits.max_connections_per_ip, 500);
        assert_eq!(c.http_limits.max_frame_bytes, 320 * 1024);

        let file = "[http_limits]\nheader_read_timeout = \"5s\"\nmax_connections = 100\n\
                    max_connections_per_ip = 10\nmessage_rate = 20\nmax_token_ttl = \"1h\"\n";
        let c = load(file, &["--http-limits-max-connections-per-ip", "20"]).unwrap();
        let l = &c.http_limits;
        assert_eq!(l.header_read_timeout, Duration::from_secs(5));
        assert_eq!((l.max_connections, l.max_connections_per_ip), (100, 20));
        assert_eq!(l.router_config().message_rate, 20);
        let mut api = ApiConfig::new(signal::KeySet::new());
        l.apply_to(&mut api);
        assert_eq!(api.max_token_ttl, Duration::from_secs(3600));

        for (text, key) in [
            (
                "header_read_timeout = \"0s\"",
                "http_limits.header_read_timeout",
            ),
            ("max_connections = 0", "http_limits.max_connections"),
            (
                "max_connections_per_ip = 20000",
                "http_limits.max_connections_per_ip",
            ),
            ("max_pending_sockets = 0", "http_limits.max_pending_sockets"),
            (
                "max_pending_sockets_per_ip = 5000",
                "http_limits.max_pending_sockets_per_ip",
            ),
            ("max_join_attempts = 0", "http_limits.max_join_attempts"),
            ("message_rate = 0", "http_limits.message_rate"),
            ("message_burst = 0", "http_limits.message_burst"),
            ("max_frame_bytes = 1000", "http_limits.max_frame_bytes"),
            ("max_token_ttl = \"31d\"", "http_limits.max_token_ttl"),
            ("max_connection = 1", "http_limits.max_connection"),
        ] {
            let e = load(&format!("[http_limits]\n{text}\n"), &[]).unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
        }
    }

    #[test]
    fn the_configuration_doc_lists_every_key() {
        let doc = include_str!("../../../docs/configuration.md");
        for key in KEYS {
            assert!(
                doc.contains(&format!("`{key}`")),
                "docs/configuration.md lacks `{key}`"
            );
        }
    }
}
