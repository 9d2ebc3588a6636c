//! The server's command-line flags. Each also reads an `SFU_*` environment variable; a flag given
//! on the command line wins over the variable, and both win over the configuration file.
//! Every flag is optional here: defaults are applied after the file (see [`super::Config::load`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;

use super::duration::parse_duration;

/// Where the API keys come from: shared by `serve`, `token` and `room`.
#[derive(Debug, Clone, Default, Args)]
pub struct KeyArgs {
    /// A TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "SFU_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// An API key. With --api-secret it is added to the file's [keys]; alone it picks one of
    /// them (for `token` and `room`).
    #[arg(long, env = "SFU_API_KEY", value_name = "KEY")]
    pub api_key: Option<String>,

    /// The secret of --api-key (at least 32 characters). Prefer the environment variable or the
    /// file: command lines are visible to other users of the machine.
    #[arg(
        long,
        env = "SFU_API_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub api_secret: Option<String>,
}

/// The settings of the server.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub keys: KeyArgs,

    #[command(flatten)]
    pub http_limits: super::HttpLimitsArgs,

    /// Address for HTTP and WebSocket (the demo page, the browser client, signalling, REST).
    /// Default: 127.0.0.1:8080 without API keys (development mode, this machine only),
    /// 0.0.0.0:8080 with keys.
    #[arg(long = "http", env = "SFU_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,

    /// Allow development mode (no API keys: anyone may get a token) on an --http address that
    /// other machines can reach. Without it such a server refuses to start. Default: false.
    #[arg(long, env = "SFU_DEV", num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL")]
    pub dev: Option<bool>,

    /// Serve /metrics on this address (plain HTTP, for Prometheus) instead of on --http, so
    /// that it stays off the public port. Default: none (/metrics on --http).
    #[arg(long, env = "SFU_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// IP the media (UDP) sockets bind to. Default: 0.0.0.0.
    #[arg(long = "udp-ip", env = "SFU_UDP_IP", value_name = "IP")]
    pub udp_ip: Option<IpAddr>,

    /// First UDP media port. Worker N binds port + N, so open `port .. port + workers - 1`.
    /// 0 picks free ports (for tests). Default: 50000.
    #[arg(long = "udp-port", env = "SFU_UDP_PORT", value_name = "PORT")]
    pub udp_port: Option<u16>,

    /// IP put in ICE candidates, for a server behind 1:1 NAT (its public IP). May be given
    /// several times, or comma-separated. Default: every address of the machine's interfaces (or
    /// --udp-ip when that is not the unspecified address).
    #[arg(
        long = "advertise-ip",
        env = "SFU_ADVERTISE_IP",
        value_delimiter = ',',
        value_name = "IP"
    )]
    pub advertise_ip: Vec<IpAddr>,

    /// Media worker threads, each with its own UDP socket. Default: one per CPU core.
    #[arg(long, env = "SFU_WORKERS", value_name = "N")]
    pub workers: Option<usize>,

    /// Log filter, in `tracing` syntax (for example `info` or `sfu=debug,str0m=warn`).
    /// Default: info.
    #[arg(long, env = "SFU_LOG", value_name = "FILTER")]
    pub log: Option<String>,

    /// Log as JSON lines instead of plain text.
    #[arg(long, env = "SFU_LOG_JSON", num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL")]
    pub log_json: Option<bool>,

    /// Whether joining a room that does not exist creates it. Default: true.
    #[arg(long, env = "SFU_ROOM_AUTO_CREATE", num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL")]
    pub room_auto_create: Option<bool>,

    /// Most participants per room (0: no limit), unless the room was created with its own.
    /// Default: 0.
    #[arg(long, env = "SFU_ROOM_MAX_PARTICIPANTS", value_name = "N")]
    pub room_max_participants: Option<u32>,

    /// How long an empty room stays open (e.g. 30s, 5m), unless created with its own.
    /// Default: 5m.
    #[arg(long, env = "SFU_ROOM_EMPTY_TIMEOUT", value_parser = parse_duration,
          value_name = "DURATION")]
    pub room_empty_timeout: Option<std::time::Duration>,

    /// The video codecs publishers may send in rooms created without their own, most preferred
    /// first: `vp8`, `h264`, `vp9`, `av1`, or several (`h264,vp8`). Default: any codec the server forwards, in
    /// each publisher's own order.
    #[arg(
        long,
        env = "SFU_ROOM_VIDEO_CODECS",
        value_delimiter = ',',
        value_name = "CODECS"
    )]
    pub room_video_codecs: Vec<String>,

    /// Most participants on this server (0: no limit); further joins get `server_busy`.
    /// Default: 0.
    #[arg(long, env = "SFU_LIMITS_MAX_PARTICIPANTS", value_name = "N")]
    pub limits_max_participants: Option<u32>,

    /// Most participants on one media worker (0: no limit); further joins to its rooms get
    /// `server_busy`. Default: 0.
    #[arg(long, env = "SFU_LIMITS_MAX_PARTICIPANTS_PER_WORKER", value_name = "N")]
    pub limits_max_participants_per_worker: Option<u32>,

    /// Participants of one room a media worker takes before the room's next participant goes to
    /// the least loaded worker, which then shares the room (0: a room stays on one worker).
    /// Default: 100.
    #[arg(
        long,
        env = "SFU_LIMITS_ROOM_PARTICIPANTS_PER_WORKER",
        value_name = "N"
    )]
    pub limits_room_participants_per_worker: Option<u32>,

    /// RTP that waited longer than this in a media worker's socket is dropped unread: a worker
    /// that falls behind sheds its oldest input instead of forwarding it late (0s: never; else
    /// 10ms to 10s). Default: 100ms.
    #[arg(long, env = "SFU_LIMITS_MAX_INPUT_AGE", value_parser = parse_duration,
          value_name = "DURATION")]
    pub limits_max_input_age: Option<std::time::Duration>,

    /// Most tracks one participant publishes at a time (1 to 64); offers beyond it are refused
    /// with `limit_exceeded`. Default: 8.
    #[arg(long, env = "SFU_PARTICIPANT_MAX_TRACKS", value_name = "N")]
    pub participant_max_tracks: Option<usize>,

    /// Most screen shares one participant publishes at a time (0 to 8; 0: none): tracks of
    /// source `screen`, and as many of `screen_audio`. Offers beyond it get `limit_exceeded`.
    /// Default: 1.
    #[arg(long, env = "SFU_PARTICIPANT_MAX_SCREEN_SHARES", value_name = "N")]
    pub participant_max_screen_shares: Option<usize>,

    /// Offers one participant may send in a burst (1 to 1000); more get `rate_limited`.
    /// Default: 10.
    #[arg(long, env = "SFU_PARTICIPANT_OFFER_BURST", value_name = "N")]
    pub participant_offer_burst: Option<f64>,

    /// Offers per second one participant may send over time (0.01 to 1000). Default: 1.
    #[arg(long, env = "SFU_PARTICIPANT_OFFERS_PER_SECOND", value_name = "RATE")]
    pub participant_offers_per_second: Option<f64>,

    /// How long a participant whose WebSocket dropped may resume its session on a new one
    /// (0s to 5m; 0s: it leaves at once). Default: 20s.
    #[arg(long, env = "SFU_PARTICIPANT_RESUME_GRACE", value_parser = parse_duration,
          value_name = "DURATION")]
    pub participant_resume_grace: Option<std::time::Duration>,

    /// After SIGTERM or Ctrl-C, how long connected participants get to leave before they are
    /// disconnected. Default: 30s.
    #[arg(long, env = "SFU_SHUTDOWN_DRAIN_TIMEOUT", value_parser = parse_duration,
          value_name = "DURATION")]
    pub shutdown_drain_timeout: Option<std::time::Duration>,

    /// PEM certificate chain: serve HTTPS and WSS instead of HTTP (needs --tls-key).
    #[arg(long, env = "SFU_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "SFU_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Check the configuration and exit: 0 when it is valid, 2 otherwise.
    #[arg(long)]
    pub check: bool,

    /// A webhook URL. May be given several times, or comma-separated. Replaces the file's
    /// webhook.urls.
    #[arg(
        long = "webhook-url",
        env = "SFU_WEBHOOK_URLS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub webhook_urls: Vec<String>,

    /// The API key whose secret signs webhooks. Default: the first key.
    #[arg(long, env = "SFU_WEBHOOK_API_KEY", value_name = "KEY")]
    pub webhook_api_key: Option<String>,

    /// Webhook events held before new ones are dropped. Default: 1024.
    #[arg(long, env = "SFU_WEBHOOK_QUEUE_SIZE", value_name = "N")]
    pub webhook_queue_size: Option<usize>,

    /// Posts per webhook event and URL, the first included. Default: 5.
    #[arg(long, env = "SFU_WEBHOOK_MAX_ATTEMPTS", value_name = "N")]
    pub webhook_max_attempts: Option<u32>,

    /// Wait before the first webhook retry; doubled for each further one. Default: 500ms.
    #[arg(long, env = "SFU_WEBHOOK_INITIAL_BACKOFF", value_parser = parse_duration,
          value_name = "DURATION")]
    pub webhook_initial_backoff: Option<std::time::Duration>,

    /// The longest wait between webhook retries. Default: 30s.
    #[arg(long, env = "SFU_WEBHOOK_MAX_BACKOFF", value_parser = parse_duration,
          value_name = "DURATION")]
    pub webhook_max_backoff: Option<std::time::Duration>,

    /// Time limit of one webhook post. Default: 5s.
    #[arg(long, env = "SFU_WEBHOOK_TIMEOUT", value_parser = parse_duration,
          value_name = "DURATION")]
    pub webhook_timeout: Option<std::time::Duration>,

    /// Run as one node of a cluster whose shared state is this Redis server
    /// (`redis://host:6379/0`). Without it the server is a cluster of one.
    #[arg(long = "redis", env = "SFU_REDIS_URL", value_name = "URL")]
    pub cluster_redis_url: Option<String>,

    /// This node's id in the cluster (unique). Default: the host name and the HTTP port.
    #[arg(long = "node-id", env = "SFU_NODE_ID", value_name = "ID")]
    pub cluster_node_id: Option<String>,

    /// This node's region label; clients that name a region prefer its nodes. Default: none.
    #[arg(long = "region", env = "SFU_REGION", value_name = "LABEL")]
    pub cluster_region: Option<String>,

    /// The base URL clients reach this node's HTTP and WebSocket at, for redirects from other
    /// nodes (`https://sfu-2.example.com`). Default: the HTTP address (or the first advertised
    /// address) and port.
    #[arg(long = "public-url", env = "SFU_PUBLIC_URL", value_name = "URL")]
    pub cluster_public_url: Option<String>,

    /// The secret (at least 32 characters, the same on every node) that authenticates the
    /// relay connections between nodes. Without it a room never spans nodes.
    #[arg(
        long = "cluster-secret",
        env = "SFU_CLUSTER_SECRET",
        value_name = "SECRET"
    )]
    pub cluster_secret: Option<String>,

    /// Participants of one room a node takes before the room's next joins go to another node,
    /// which relays the room (needs --cluster-secret; 0: only a client's region sends it
    /// elsewhere). Default: 200.
    #[arg(
        long = "cluster-room-participants-per-node",
        env = "SFU_CLUSTER_ROOM_PARTICIPANTS_PER_NODE",
        value_name = "N"
    )]
    pub cluster_room_participants_per_node: Option<usize>,

    /// CPU use, in percent of one core (150: one and a half cores), at which this node takes no
    /// new rooms and sends the next joins of its rooms to other nodes, which relay them (needs
    /// --cluster-secret to spread a room), while another node can take them. Smoothed over a
    /// few seconds. 0: no limit. Default: 0.
    #[arg(
        long = "cluster-max-cpu-percent",
        env = "SFU_CLUSTER_MAX_CPU_PERCENT",
        value_name = "PERCENT"
    )]
    pub cluster_max_cpu_percent: Option<u32>,

    /// Offer a passive ICE-TCP candidate on the media port numbers, for clients whose UDP is
    /// blocked (true or false). Default: true.
    #[arg(long, env = "SFU_ICE_TCP", value_name = "BOOL")]
    pub ice_tcp: Option<bool>,

    /// A TURN URL handed to clients (`turn:` or `turns:`). May be given several times, or
    /// comma-separated. Replaces the file's turn.urls.
    #[arg(
        long = "turn-url",
        env = "SFU_TURN_URLS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub turn_urls: Vec<String>,

    /// A STUN URL handed to clients (`stun:` or `stuns:`). May be given several times, or
    /// comma-separated. Replaces the file's turn.stun_urls.
    #[arg(
        long = "stun-url",
        env = "SFU_STUN_URLS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub stun_urls: Vec<String>,

    /// The secret shared with the TURN server (coturn's static-auth-secret).
    #[arg(
        long,
        env = "SFU_TURN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,

    /// How long TURN credentials stay valid. Default: 24h.
    #[arg(long, env = "SFU_TURN_TTL", value_parser = parse_duration, value_name = "DURATION")]
    pub turn_ttl: Option<std::time::Duration>,
}
