//! The server's settings: one typed [`Config`], read from a TOML file (`--config`), `SFU_*`
//! environment variables and command-line flags, in that order of precedence from lowest to
//! highest, over built-in defaults. [`Config::load`] validates everything once; its errors name
//! the key at fault. `docs/configuration.md` lists every key with its default.
//!
//! With no API key anywhere the server runs in development mode (see [`Config::is_dev_mode`]).

mod args;
mod duration;
mod file;
mod http_limits;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use signal::auth::KeySet;
use signal::rest::dto::{MAX_EMPTY_TIMEOUT_SECS, MAX_PARTICIPANTS_LIMIT};

pub use args::{KeyArgs, ServeArgs};
pub use duration::{format_duration, parse_duration};
use file::FileConfig;
pub use http_limits::{HttpLimits, HttpLimitsArgs, KEYS as HTTP_LIMITS_KEYS};

use crate::core::limits::ParticipantLimits;
use crate::core::VideoCodecs;
use crate::io::rooms::{Limits, RoomDefaults};
use crate::io::turn::{self, TurnConfig};
use crate::io::webhook::WebhookConfig;

/// Every key of the file, as `docs/configuration.md` must list them.
pub const KEYS: &[&str] = &[
    "http",
    "dev",
    "metrics",
    "udp_ip",
    "udp_port",
    "advertise_ip",
    "workers",
    "log",
    "log_json",
    "keys",
    "room.auto_create",
    "room.max_participants",
    "room.empty_timeout",
    "room.video_codecs",
    "limits.max_participants",
    "limits.max_participants_per_worker",
    "limits.room_participants_per_worker",
    "limits.max_input_age",
    "participant.max_tracks",
    "participant.max_screen_shares",
    "participant.offer_burst",
    "participant.offers_per_second",
    "participant.resume_grace",
    "shutdown.drain_timeout",
    "tls.cert",
    "tls.key",
    "webhook.urls",
    "webhook.api_key",
    "webhook.queue_size",
    "webhook.max_attempts",
    "webhook.initial_backoff",
    "webhook.max_backoff",
    "webhook.timeout",
    "ice_tcp",
    "turn.urls",
    "turn.stun_urls",
    "turn.secret",
    "turn.ttl",
    "cluster.redis_url",
    "cluster.node_id",
    "cluster.region",
    "cluster.public_url",
    "cluster.secret",
    "cluster.room_participants_per_node",
    "cluster.max_cpu_percent",
];

/// The server's settings, resolved and validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address for HTTP and WebSocket.
    pub http: SocketAddr,
    /// Development mode (no keys) may listen on an address other machines reach.
    pub dev: bool,
    /// Serve `/metrics` on this address instead of on `http`.
    pub metrics: Option<SocketAddr>,
    /// IP the media sockets bind to.
    pub udp_ip: IpAddr,
    /// First UDP media port; worker N binds port + N. 0: free ports.
    pub udp_port: u16,
    /// IPs put in ICE candidates. Empty: found from the interfaces.
    pub advertise_ip: Vec<IpAddr>,
    /// Media worker threads. `None`: one per core.
    pub workers: Option<usize>,
    /// Log filter.
    pub log: String,
    /// Log as JSON lines.
    pub log_json: bool,
    /// The API keys. Empty: development mode.
    pub keys: KeySet,
    /// The key `token` and `room` use (from `--api-key`, else the first).
    pub client_key: Option<String>,
    /// Room settings.
    pub room: RoomDefaults,
    /// Admission limits.
    pub limits: Limits,
    /// RTP that waited longer than this in a worker's socket (the worker fell behind) is dropped
    /// unread; zero: never.
    pub max_input_age: Duration,
    /// What one participant may do.
    pub participant: ParticipantLimits,
    /// How long a participant whose signalling connection dropped may resume it (0: it leaves
    /// at once).
    pub resume_grace: Duration,
    /// How long connected participants get to leave after a shutdown signal.
    pub drain_timeout: Duration,
    /// Serve HTTPS and WSS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Webhook settings.
    pub webhook: WebhookSettings,
    /// Offer a passive ICE-TCP candidate on the media port numbers.
    pub ice_tcp: bool,
    /// STUN/TURN servers for clients.
    pub turn: TurnConfig,
    /// `[http_limits]`: what one HTTP or WebSocket client may hold.
    pub http_limits: HttpLimits,
    /// `[cluster]`: set when the server is one node of a cluster.
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]` as configured; [`ClusterConfig::settings`] fills in the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The Redis server holding the cluster's shared state.
    pub redis_url: String,
    /// This node's id, if set.
    pub node_id: Option<String>,
    /// Region label ('' when none).
    pub region: String,
    /// Public base URL, if set.
    pub public_url: Option<String>,
    /// The secret the nodes authenticate relay connections with (`None`: rooms never span nodes).
    pub secret: Option<String>,
    /// Participants of one room a node takes before the room's next joins go to another node
    /// (relayed); 0: only a region of its own sends a join elsewhere.
    pub room_participants_per_node: usize,
    /// CPU use (percent of one core) at which the node takes no new rooms and sends the next
    /// joins of its rooms to other nodes while another can take them; 0: no limit.
    pub max_cpu_percent: u32,
}

impl ClusterConfig {
    /// The settings, with the node id defaulting to `host-port` and the public URL to
    /// `scheme://ip:port`, `ip` being the HTTP address when it is a specific one, else the first
    /// media address.
    pub fn settings(
        &self,
        http: SocketAddr,
        tls: bool,
        media_ips: &[IpAddr],
    ) -> crate::io::cluster::ClusterSettings {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "sfu".to_owned());
        let ip = if http.ip().is_unspecified() {
            media_ips.first().copied().unwrap_or(http.ip())
        } else {
            http.ip()
        };
        let scheme = if tls { "https" } else { "http" };
        let addr = SocketAddr::new(ip, http.port());
        crate::io::cluster::ClusterSettings {
            redis_url: self.redis_url.clone(),
            node_id: self
                .node_id
                .clone()
                .unwrap_or_else(|| format!("{host}-{}", http.port())),
            region: self.region.clone(),
            public_url: self
                .public_url
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{addr}")),
            media: Vec::new(),
            secret: self.secret.clone(),
            room_participants_per_node: self.room_participants_per_node,
            max_cpu_percent: self.max_cpu_percent,
        }
    }
}

/// `[tls]`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[webhook]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Where events are posted.
    pub urls: Vec<String>,
    /// The key whose secret signs them; `None`: the first key.
    pub api_key: Option<String>,
    /// Queue length.
    pub queue_size: usize,
    /// Posts per event and URL.
    pub max_attempts: u32,
    /// First retry wait.
    pub initial_backoff: Duration,
    /// Longest retry wait.
    pub max_backoff: Duration,
    /// Time limit per post.
    pub timeout: Duration,
}

/// The highest `cluster.max_cpu_percent`: 1024 cores.
pub const MAX_CPU_PERCENT_LIMIT: u32 = 102_400;

/// Default `cluster.room_participants_per_node`.
pub const DEFAULT_ROOM_PARTICIPANTS_PER_NODE: usize = 200;

/// Where the server listens with API keys configured: every interface.
pub const DEFAULT_HTTP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080);

/// Where it listens in development mode: this machine only.
pub const DEFAULT_DEV_HTTP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);

/// A setting that cannot work, found at start. The message starts with the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key (`room.max_participants`, `keys.APIabc`, `webhook.urls[1]`, `config`, ...).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl Default for Config {
    fn default() -> Self {
        let d = WebhookConfig::new(Vec::new(), String::new(), String::new());
        Config {
            http: DEFAULT_HTTP,
            dev: false,
            metrics: None,
            udp_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            udp_port: 50000,
            advertise_ip: Vec::new(),
            workers: None,
            log: "info".into(),
            log_json: false,
            keys: KeySet::new(),
            client_key: None,
            room: RoomDefaults::default(),
            limits: Limits::default(),
            max_input_age: Duration::from_millis(100),
            participant: ParticipantLimits::default(),
            resume_grace: Duration::from_secs(20),
            drain_timeout: Duration::from_secs(30),
            tls: None,
            webhook: WebhookSettings {
                urls: Vec::new(),
                api_key: None,
                queue_size: d.queue_size,
                max_attempts: d.max_attempts,
                initial_backoff: d.initial_backoff,
                max_backoff: d.max_backoff,
                timeout: d.timeout,
            },
            ice_tcp: true,
            turn: TurnConfig {
                ttl: Duration::from_secs(24 * 3600),
                ..TurnConfig::default()
            },
            http_limits: HttpLimits::default(),
            cluster: None,
        }
    }
}

impl Config {
    /// Reads the file named by `args.keys.config` (if any), applies `args` (flags and
    /// environment, already merged by clap) over it, and validates the result.
    pub fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.keys.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::merge(file, args)
    }

    /// Parses the text of a configuration file and applies `args` over it.
    pub fn from_toml(text: &str, args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = FileConfig::parse(text).map_err(|e| toml_error(text, &e, None))?;
        Config::merge(file, args)
    }

    fn merge(file: FileConfig, a: &ServeArgs) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        macro_rules! set {
            ($field:expr, $($v:expr),+) => {
                $( if let Some(v) = $v { $field = v; } )+
            };
        }
        set!(c.http, file.http, a.http);
        let http_given = file.http.is_some() || a.http.is_some();
        set!(c.dev, file.dev, a.dev);
        c.metrics = a.metrics.or(file.metrics);
        set!(c.udp_ip, file.udp_ip, a.udp_ip);
        set!(c.udp_port, file.udp_port, a.udp_port);
        set!(c.advertise_ip, file.advertise_ip);
        if !a.advertise_ip.is_empty() {
            c.advertise_ip.clone_from(&a.advertise_ip);
        }
        c.workers = a.workers.or(file.workers);
        set!(c.log, file.log, a.log.clone());
        set!(c.log_json, file.log_json, a.log_json);

        for (key, secret) in &file.keys {
            c.keys
                .insert(key, secret)
                .map_err(|e| err(format!("keys.{key}"), e.to_string()))?;
        }
        match (&a.keys.api_key, &a.keys.api_secret) {
            (Some(key), Some(secret)) => c
                .keys
                .insert(key, secret)
                .map_err(|e| err("api_key", e.to_string()))?,
            (Some(key), None) if c.keys.secret(key).is_none() => {
                return Err(err(
                    "api_secret",
                    format!("no secret for API key {key:?}: set SFU_API_SECRET or [keys]"),
                ))
            }
            (None, Some(_)) => {
                return Err(err(
                    "api_key",
                    "SFU_API_SECRET/--api-secret is set without SFU_API_KEY/--api-key",
                ))
            }
            _ => {}
        }
        if !http_given && c.keys.is_empty() {
            c.http = DEFAULT_DEV_HTTP;
        }
        c.client_key = a
            .keys
            .api_key
            .clone()
            .or_else(|| c.keys.names().next().map(str::to_owned));

        let r = &file.room;
        set!(c.room.auto_create, r.auto_create, a.room_auto_create);
        set!(
            c.room.max_participants,
            r.max_participants,
            a.room_max_participants
        );
        set!(
            c.room.empty_timeout,
            r.empty_timeout.map(|d| d.0),
            a.room_empty_timeout
        );
        let codecs = match (&r.video_codecs, a.room_video_codecs.as_slice()) {
            (_, given) if !given.is_empty() => Some(given),
            (Some(file), _) => Some(file.as_slice()),
            _ => None,
        };
        if let Some(names) = codecs {
            c.room.video_codecs =
                VideoCodecs::parse(names).map_err(|m| err("room.video_codecs", m))?;
        }

        let l = &file.limits;
        set!(
            c.limits.max_participants,
            l.max_participants,
            a.limits_max_participants
        );
        set!(
            c.limits.max_participants_per_worker,
            l.max_participants_per_worker,
            a.limits_max_participants_per_worker
        );
        set!(
            c.limits.room_participants_per_worker,
            l.room_participants_per_worker,
            a.limits_room_participants_per_worker
        );
        set!(
            c.max_input_age,
            l.max_input_age.map(|d| d.0),
            a.limits_max_input_age
        );
        let pl = &file.participant;
        set!(
            c.participant.max_tracks,
            pl.max_tracks,
            a.participant_max_tracks
        );
        set!(
            c.participant.max_screen_shares,
            pl.max_screen_shares,
            a.participant_max_screen_shares
        );
        set!(
            c.participant.offer_burst,
            pl.offer_burst,
            a.participant_offer_burst
        );
        set!(
            c.participant.offers_per_second,
            pl.offers_per_second,
            a.participant_offers_per_second
        );
        set!(
            c.resume_grace,
            pl.resume_grace.map(|d| d.0),
            a.participant_resume_grace
        );
        set!(
            c.drain_timeout,
            file.shutdown.drain_timeout.map(|d| d.0),
            a.shutdown_drain_timeout
        );
        let cert = a.tls_cert.clone().or_else(|| file.tls.cert.clone());
        let key = a.tls_key.clone().or_else(|| file.tls.key.clone());
        c.tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            (Some(_), None) => return Err(err("tls.key", "tls.cert is set without tls.key")),
            (None, Some(_)) => return Err(err("tls.cert", "tls.key is set without tls.cert")),
        };

        let w = &file.webhook;
        let cw = &mut c.webhook;
        set!(cw.urls, w.urls.clone());
        if !a.webhook_urls.is_empty() {
            cw.urls.clone_from(&a.webhook_urls);
        }
        cw.api_key = a.webhook_api_key.clone().or_else(|| w.api_key.clone());
        set!(cw.queue_size, w.queue_size, a.webhook_queue_size);
        set!(cw.max_attempts, w.max_attempts, a.webhook_max_attempts);
        set!(
            cw.initial_backoff,
            w.initial_backoff.map(|d| d.0),
            a.webhook_initial_backoff
        );
        set!(
            cw.max_backoff,
            w.max_backoff.map(|d| d.0),
            a.webhook_max_backoff
        );
        set!(cw.timeout, w.timeout.map(|d| d.0), a.webhook_timeout);

        set!(c.ice_tcp, file.ice_tcp, a.ice_tcp);

        let fc = &file.cluster;
        let redis_url = a.cluster_redis_url.clone().or_else(|| fc.redis_url.clone());
        c.cluster = match redis_url {
            Some(url) => {
                if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                    return Err(err(
                        "cluster.redis_url",
                        "must start with redis:// or rediss://",
                    ));
                }
                let public_url = a
                    .cluster_public_url
                    .clone()
                    .or_else(|| fc.public_url.clone());
                if let Some(u) = &public_url {
                    if !(u.starts_with("http://") || u.starts_with("https://")) {
                        return Err(err(
                            "cluster.public_url",
                            "must start with http:// or https://",
                        ));
                    }
                }
                let node_id = a.cluster_node_id.clone().or_else(|| fc.node_id.clone());
                if node_id.as_ref().is_some_and(|id| {
                    id.is_empty()
                        || id.len() > 64
                        || !id
                            .chars()
                            .all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch))
                }) {
                    return Err(err(
                        "cluster.node_id",
                        "1 to 64 of ASCII letters, digits, '-', '_' and '.'",
                    ));
                }
                let secret = a.cluster_secret.clone().or_else(|| fc.secret.clone());
                if secret.as_ref().is_some_and(|s| s.len() < 32) {
                    return Err(err("cluster.secret", "at least 32 characters"));
                }
                let max_cpu_percent = a
                    .cluster_max_cpu_percent
                    .or(fc.max_cpu_percent)
                    .unwrap_or(0);
                if max_cpu_percent > MAX_CPU_PERCENT_LIMIT {
                    return Err(err(
                        "cluster.max_cpu_percent",
                        format!("must be 0 (no limit) to {MAX_CPU_PERCENT_LIMIT}"),
                    ));
                }
                Some(ClusterConfig {
                    secret,
                    max_cpu_percent,
                    room_participants_per_node: a
                        .cluster_room_participants_per_node
                        .or(fc.room_participants_per_node)
                        .unwrap_or(DEFAULT_ROOM_PARTICIPANTS_PER_NODE),
                    redis_url: url,
                    node_id,
                    region: a
                        .cluster_region
                        .clone()
                        .or_else(|| fc.region.clone())
                        .unwrap_or_default(),
                    public_url,
                })
            }
            None => None,
        };
        let t = &file.turn;
        let ct = &mut c.turn;
        set!(ct.urls, t.urls.clone());
        if !a.turn_urls.is_empty() {
            ct.urls.clone_from(&a.turn_urls);
        }
        set!(ct.stun_urls, t.stun_urls.clone());
        if !a.stun_urls.is_empty() {
            ct.stun_urls.clone_from(&a.stun_urls);
        }
        ct.secret = a.turn_secret.clone().or_else(|| t.secret.clone());
        set!(ct.ttl, t.ttl.map(|d| d.0), a.turn_ttl);

        c.http_limits = HttpLimits::merge(&file.http_limits, &a.http_limits);

        c.validate()?;
        Ok(c)
    }

    /// No API keys are configured: the server makes a development key at start and serves
    /// `GET /api/dev/token`.
    pub fn is_dev_mode(&self) -> bool {
        self.keys.is_empty()
    }

    /// Development mode on an address other machines can reach: refused unless `dev` says so,
    /// since anyone who reaches the server can get tokens from `GET /api/dev/token`. Checked
    /// before serving (and by `sfu serve --check`), not for the client commands, which only read
    /// the keys and the address.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.is_dev_mode() && !self.http.ip().is_loopback() && !self.dev {
            return Err(err(
                "http",
                format!(
                    "{} can be reached from other machines, but no API keys are configured \
                     (development mode: anyone who reaches the server can get tokens from \
                     /api/dev/token and join). Configure keys (`sfu generate-keys` makes a \
                     pair; put it in [keys] of the configuration file, or in SFU_API_KEY and \
                     SFU_API_SECRET), or pass --dev (SFU_DEV=true) to serve development mode on \
                     this address anyway",
                    self.http
                ),
            ));
        }
        Ok(())
    }

    /// Development mode listening on an address other machines can reach (allowed by `dev`).
    pub fn is_exposed_dev_mode(&self) -> bool {
        self.is_dev_mode() && !self.http.ip().is_loopback()
    }

    /// The number of workers, defaulting to the core count.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// Checks every setting, alone and against the others.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let n = self.worker_count();
        if n == 0 || n > 256 {
            return Err(err("workers", format!("{n} is not within 1..=256")));
        }
        if self.udp_port != 0 && self.udp_port as usize + n - 1 > u16::MAX as usize {
            return Err(err(
                "udp_port",
                format!(
                    "ports {}..{} for {n} workers do not fit",
                    self.udp_port,
                    self.udp_port as usize + n - 1
                ),
            ));
        }
        if self.advertise_ip.iter().any(|ip| ip.is_unspecified()) {
            return Err(err(
                "advertise_ip",
                "0.0.0.0 or :: cannot be reached; give a real address",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log) {
            return Err(err("log", format!("not a log filter: {e}")));
        }
        if self.dev && !self.keys.is_empty() {
            return Err(err(
                "dev",
                "development mode is for a server without API keys: remove --dev (SFU_DEV, \
                 dev) or the keys",
            ));
        }
        if self
            .metrics
            .is_some_and(|m| m == self.http && m.port() != 0)
        {
            return Err(err(
                "metrics",
                "must differ from http: it is the address that keeps /metrics off the public one",
            ));
        }
        self.validate_participant()?;
        if self.room.max_participants > MAX_PARTICIPANTS_LIMIT {
            return Err(err(
                "room.max_participants",
                format!("must be 0 (no limit) to {MAX_PARTICIPANTS_LIMIT}"),
            ));
        }
        if !self.max_input_age.is_zero()
            && (self.max_input_age < Duration::from_millis(10)
                || self.max_input_age > Duration::from_secs(10))
        {
            return Err(err(
                "limits.max_input_age",
                "must be 0s (off) or 10ms to 10s",
            ));
        }
        if self.resume_grace > Duration::from_secs(300) {
            return Err(err("participant.resume_grace", "must be 0s to 5m"));
        }
        if self.drain_timeout > Duration::from_secs(3600) {
            return Err(err("shutdown.drain_timeout", "must be 0s to 1h"));
        }
        let t = self.room.empty_timeout;
        if t < Duration::from_secs(1) || t > Duration::from_secs(MAX_EMPTY_TIMEOUT_SECS.into()) {
            return Err(err(
                "room.empty_timeout",
                format!("must be 1s to {MAX_EMPTY_TIMEOUT_SECS}s"),
            ));
        }
        self.validate_turn()?;
        self.http_limits.validate()?;
        self.validate_webhook()
    }

    fn validate_participant(&self) -> Result<(), ConfigError> {
        let p = &self.participant;
        if !(1..=64).contains(&p.max_tracks) {
            return Err(err("participant.max_tracks", "must be 1 to 64"));
        }
        if p.max_screen_shares > 8 {
            return Err(err("participant.max_screen_shares", "must be 0 to 8"));
        }
        if !(1.0..=1000.0).contains(&p.offer_burst) {
            return Err(err("participant.offer_burst", "must be 1 to 1000"));
        }
        if !(0.01..=1000.0).contains(&p.offers_per_second) {
            return Err(err("participant.offers_per_second", "must be 0.01 to 1000"));
        }
        Ok(())
    }

    fn validate_turn(&self) -> Result<(), ConfigError> {
        let t = &self.turn;
        turn::check_urls(&t.urls, &["turn:", "turns:"]).map_err(|m| err("turn.urls", m))?;
        turn::check_urls(&t.stun_urls, &["stun:", "stuns:"])
            .map_err(|m| err("turn.stun_urls", m))?;
        match &t.secret {
            None if !t.urls.is_empty() => {
                return Err(err(
                    "turn.secret",
                    "required with turn.urls: the secret shared with the TURN server",
                ))
            }
            Some(s) if s.len() < 16 => {
                return Err(err("turn.secret", "use at least 16 characters"));
            }
            _ => {}
        }
        if t.ttl < Duration::from_secs(60) || t.ttl > Duration::from_secs(30 * 24 * 3600) {
            return Err(err("turn.ttl", "must be 1m to 30d"));
        }
        Ok(())
    }

    fn validate_webhook(&self) -> Result<(), ConfigError> {
        let w = &self.webhook;
        for (i, url) in w.urls.iter().enumerate() {
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
            if !ok {
                return Err(err(
                    format!("webhook.urls[{i}]"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        if let Some(key) = &w.api_key {
            if self.keys.secret(key).is_none() {
                return Err(err(
                    "webhook.api_key",
                    format!("{key:?} is not one of the configured keys"),
                ));
            }
        }
        if !(1..=1_000_000).contains(&w.queue_size) {
            return Err(err("webhook.queue_size", "must be 1 to 1000000"));
        }
        if !(1..=20).contains(&w.max_attempts) {
            return Err(err("webhook.max_attempts", "must be 1 to 20"));
        }
        let ms = Duration::from_millis(1);
        if w.initial_backoff < ms {
            return Err(err("webhook.initial_backoff", "must be at least 1ms"));
        }
        if w.max_backoff < w.initial_backoff {
            return Err(err(
                "webhook.max_backoff",
                "must not be shorter than webhook.initial_backoff",
            ));
        }
        if w.timeout < ms || w.timeout > Duration::from_secs(300) {
            return Err(err("webhook.timeout", "must be 1ms to 5m"));
        }
        Ok(())
    }

    /// The UDP address worker `index` binds.
    pub fn udp_bind(&self, index: usize) -> SocketAddr {
        let port = if self.udp_port == 0 {
            0
        } else {
            self.udp_port + index as u16
        };
        SocketAddr::new(self.udp_ip, port)
    }

    /// The IPs to advertise in candidates.
    pub fn candidate_ips(&self) -> Result<Vec<IpAddr>, ConfigError> {
        if !self.advertise_ip.is_empty() {
            return Ok(self.advertise_ip.clone());
        }
        if !self.udp_ip.is_unspecified() {
            return Ok(vec![self.udp_ip]);
        }
        let want_v6 = self.udp_ip.is_ipv6();
        let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
            .map_err(|e| err("advertise_ip", format!("listing interfaces: {e}")))?
            .into_iter()
            .map(|i| i.ip())
            .filter(|ip| match ip {
                IpAddr::V4(_) => true,
                // Link-local IPv6 needs a scope id that candidates cannot carry.
                IpAddr::V6(v6) => want_v6 && (v6.segments()[0] & 0xffc0) != 0xfe80,
            })
            .collect();
        // Loopback last: browsers on other machines try the real addresses first.
        ips.sort_by_key(|ip| ip.is_loopback());
        ips.dedup();
        if ips.is_empty() {
            ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        Ok(ips)
    }

    /// The webhook delivery settings, signing with the configured key (or with `keys`, the
    /// development key, when none is configured).
    pub fn webhook_config(&self, keys: &KeySet) -> WebhookConfig {
        let w = &self.webhook;
        let key = w
            .api_key
            .clone()
            .or_else(|| keys.names().next().map(str::to_owned))
            .unwrap_or_default();
        let secret = keys.secret(&key).unwrap_or_default().to_owned();
        WebhookConfig {
            urls: w.urls.clone(),
            key,
            secret,
            queue_size: w.queue_size,
            max_attempts: w.max_attempts,
            initial_backoff: w.initial_backoff,
            max_backoff: w.max_backoff,
            timeout: w.timeout,
        }
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| err("config", format!("cannot read {shown}: {e}")))?;
    FileConfig::parse(&text).map_err(|e| toml_error(&text, &e, Some(&shown.to_string())))
}

/// A TOML error as a [`ConfigError`] naming the key (`room.max_participant`) when the error
/// points at a `key = value` line, else `config`; the message gives the file and line.
fn toml_error(text: &str, e: &toml::de::Error, path: Option<&str>) -> ConfigError {
    let Some(span) = e.span() else {
        let place = path.map(|p| format!("{p}: ")).unwrap_or_default();
        return err("config", format!("{place}{}", e.message()));
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    let section = text
        .lines()
        .take(line_no - 1)
        .filter_map(|l| l.trim().strip_prefix('['))
        .filter_map(|l| l.split(']').next())
        .map(|l| l.trim_matches(|c| c == '[' || c == ' '))
        .last();
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty());
    let place = match path {
        Some(p) => format!("{p}, line {line_no}"),
        None => format!("line {line_no}"),
    };
    let message = format!("{} ({place})", e.message().trim());
    match (section, key) {
        (Some(s), Some(k)) => err(format!("{s}.{k}"), message),
        (None, Some(k)) => err(k, message),
        _ => err("config", message),
    }
}

#[cfg(test)]
mod tests;
