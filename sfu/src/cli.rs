//! The `sfu` command line: `sfu [serve]` runs the server, `sfu token` mints an access token with
//! the configured key, `sfu generate-keys` makes a new key, `sfu room ...` and
//! `sfu participant ...` call a running server's REST API.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::de::DeserializeOwned;

use signal::auth::{Grants, KeySet, TokenSpec};
use signal::protocol::{ParticipantInfo, TrackInfo, TrackKind};
use signal::rest::dto::{CreateRoom, MuteTrack, ParticipantList, RoomInfo, RoomList};
use signal::ApiError;

use crate::config::{format_duration, parse_duration, Config, ConfigError, KeyArgs, ServeArgs};

/// A WebRTC selective forwarding unit: rooms, one peer connection per participant, simulcast-ready
/// RTP forwarding. Without a subcommand it serves.
#[derive(Debug, Parser)]
#[command(name = "sfu", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The server's settings, for `sfu` without a subcommand.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Mint an access token with the configured API key and print it.
    Token(TokenArgs),
    /// Make a new random API key and secret and print them, with the configuration and the
    /// environment variables that use them.
    GenerateKeys(GenerateKeysArgs),
    /// Manage the rooms of a running server through its REST API.
    Room {
        /// The room command.
        #[command(subcommand)]
        command: RoomCommand,
    },
    /// List, remove and mute the participants of a room of a running server.
    Participant {
        /// The participant command.
        #[command(subcommand)]
        command: ParticipantCommand,
    },
}

/// `sfu token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The room the token opens (required unless --admin).
    #[arg(long)]
    pub room: Option<String>,
    /// The participant's identity (required unless --admin).
    #[arg(long)]
    pub identity: Option<String>,
    /// Display name; wins over the name the client sends.
    #[arg(long)]
    pub name: Option<String>,
    /// Participant metadata.
    #[arg(long)]
    pub metadata: Option<String>,
    /// Lifetime (e.g. 30m, 6h, 7d).
    #[arg(long, value_parser = parse_duration, default_value = "6h")]
    pub ttl: Duration,
    /// Comma-separated grants: join, publish, subscribe, publish_data, room_admin.
    /// Default: join,publish,subscribe,publish_data.
    #[arg(long, value_parser = Grants::parse_list)]
    pub grants: Option<Grants>,
    /// A REST API token: grants room_admin only (for every room, or for --room).
    #[arg(long, conflicts_with = "grants")]
    pub admin: bool,
}

/// `sfu generate-keys`.
#[derive(Debug, Clone, Args)]
pub struct GenerateKeysArgs {
    /// What to print: `text` (both snippets below, with comments), `toml` (a `[keys]` table for
    /// the configuration file), `env` (SFU_API_KEY and SFU_API_SECRET lines, for an environment
    /// file) or `json`.
    #[arg(long, value_enum, default_value_t = KeysFormat::Text)]
    pub format: KeysFormat,
}

/// How `sfu generate-keys` prints the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeysFormat {
    /// The configuration snippet and the environment variables, with comments.
    Text,
    /// A `[keys]` table.
    Toml,
    /// `SFU_API_KEY=...` and `SFU_API_SECRET=...` lines.
    Env,
    /// `{"api_key": ..., "api_secret": ...}`.
    Json,
}

/// Characters after the `API` prefix of a generated key name.
const GENERATED_KEY_CHARS: usize = 12;
/// Characters of a generated secret: 48 letters and digits, some 285 bits.
const GENERATED_SECRET_CHARS: usize = 48;

/// A new API key name (`API` and 12 letters and digits) and secret (48 letters and digits), drawn
/// from the operating system's random generator.
pub fn generate_keys() -> (String, String) {
    use rand::distr::{Alphanumeric, SampleString};
    use rand::TryRngCore;
    let mut rng = rand::rngs::OsRng.unwrap_err();
    let key = format!(
        "API{}",
        Alphanumeric.sample_string(&mut rng, GENERATED_KEY_CHARS)
    );
    let secret = Alphanumeric.sample_string(&mut rng, GENERATED_SECRET_CHARS);
    (key, secret)
}

/// What `sfu generate-keys` prints for `key` and `secret`.
pub fn keys_text(key: &str, secret: &str, format: KeysFormat) -> String {
    let toml = format!("[keys]\n{key} = \"{secret}\"\n");
    let env = format!("SFU_API_KEY={key}\nSFU_API_SECRET={secret}\n");
    match format {
        KeysFormat::Toml => toml,
        KeysFormat::Env => env,
        KeysFormat::Json => format!(
            "{}\n",
            serde_json::json!({ "api_key": key, "api_secret": secret })
        ),
        KeysFormat::Text => format!(
            "# A new API key and its secret. Keep the secret private: whoever holds it can mint\n\
             # tokens for every room. Several keys may be configured at once (to rotate them).\n\
             \n\
             # In the configuration file (--config, SFU_CONFIG):\n\
             {toml}\
             \n\
             # Or in the environment (a systemd EnvironmentFile, docker --env-file):\n\
             {env}"
        ),
    }
}

/// `sfu generate-keys`.
pub fn generate_keys_command(args: &GenerateKeysArgs) -> Result<(), CliError> {
    let (key, secret) = generate_keys();
    // The server's own rules, so that what is printed is always accepted.
    KeySet::single(&key, &secret).map_err(|e| CliError::Usage(e.to_string()))?;
    print!("{}", keys_text(&key, &secret, args.format));
    Ok(())
}

/// `sfu room ...`.
#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room.
    Create {
        #[command(flatten)]
        server: ServerArgs,
        /// Room name.
        name: String,
        /// Most participants at once (0: no limit).
        #[arg(long)]
        max_participants: Option<u32>,
        /// How long the room stays open while empty (e.g. 30s, 5m).
        #[arg(long, value_parser = parse_duration)]
        empty_timeout: Option<Duration>,
        /// Room metadata.
        #[arg(long)]
        metadata: Option<String>,
        /// The video codecs publishers may send, most preferred first (vp8, h264, vp9; e.g.
        /// `h264` or `h264,vp8`). Default: the server's room.video_codecs.
        #[arg(long, value_delimiter = ',', value_name = "CODECS")]
        video_codecs: Option<Vec<String>>,
        /// In a cluster: a node of this region gets the room, when there is one.
        #[arg(long)]
        region: Option<String>,
    },
    /// List rooms.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Delete a room; everyone in it is disconnected.
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        /// Room name.
        name: String,
    },
}

/// `sfu participant ...`.
#[derive(Debug, Subcommand)]
pub enum ParticipantCommand {
    /// List the participants of a room, with their tracks.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Room name.
        room: String,
    },
    /// Remove a participant from its room (it leaves with reason `removed`).
    Remove {
        #[command(flatten)]
        server: ServerArgs,
        /// Room name.
        room: String,
        /// The participant's id, or its identity.
        participant: String,
    },
    /// Mute a participant's tracks (the server stops forwarding them); all of them unless
    /// --track or --kind picks some.
    Mute {
        #[command(flatten)]
        server: ServerArgs,
        /// Room name.
        room: String,
        /// The participant's id, or its identity.
        participant: String,
        /// Only this track (its id, as `participant list` shows it).
        #[arg(long, conflicts_with = "kind")]
        track: Option<String>,
        /// Only the tracks of this kind.
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        /// Unmute instead.
        #[arg(long)]
        unmute: bool,
    },
}

/// `--kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// Microphone tracks.
    Audio,
    /// Camera tracks.
    Video,
}

impl KindArg {
    fn matches(self, kind: TrackKind) -> bool {
        matches!(
            (self, kind),
            (KindArg::Audio, TrackKind::Audio) | (KindArg::Video, TrackKind::Video)
        )
    }
}

/// Which server, the key to call it with, and how to print the answer.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The server's address as it is configured: the client calls 127.0.0.1 (or the address
    /// itself when it is not a wildcard) on its port. Read like the server reads it: this flag,
    /// SFU_HTTP, the --config file, the default.
    #[arg(long = "http", env = "SFU_HTTP", value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// The server's base URL, when it is not found from --http (behind a proxy, another
    /// machine, a certificate for a host name).
    #[arg(long, env = "SFU_URL")]
    pub url: Option<String>,
    /// Print the server's answer as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is wrong.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// An argument is missing or wrong.
    #[error("{0}")]
    Usage(String),
    /// Nothing listens at the server's address.
    #[error("connection refused, is the server running at {base}? (--url)")]
    Refused {
        /// The base URL called.
        base: String,
    },
    /// The server could not be reached.
    #[error("cannot reach {url}: {}", error_chain(.source))]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// What the command names is not there.
    #[error("{0}")]
    NotFound(String),
    /// The server refused the call.
    #[error("{}{}", .0, .0.field.as_ref().map(|f| format!(" (field: {f})")).unwrap_or_default())]
    Api(ApiError),
}

/// An error and its causes, `: `-separated (reqwest's own message alone says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Whether the connection was refused: nothing listens there.
fn is_refused(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// The configured keys and the one to use.
fn client_key(keys: &KeyArgs) -> Result<(Config, String), CliError> {
    let config = Config::load(&ServeArgs {
        keys: keys.clone(),
        ..ServeArgs::default()
    })?;
    client_key_of(config)
}

/// The key of `config` to use.
fn client_key_of(config: Config) -> Result<(Config, String), CliError> {
    let key = config.client_key.clone().ok_or_else(|| {
        CliError::Usage(
            "no API key configured: set [keys] in the --config file, or SFU_API_KEY and \
             SFU_API_SECRET (a development server's key is printed when it starts)"
                .into(),
        )
    })?;
    Ok((config, key))
}

/// What `sfu token` asks for.
pub fn token_spec(args: &TokenArgs) -> Result<TokenSpec, CliError> {
    let (grants, identity) = if args.admin {
        let identity = args.identity.clone().unwrap_or_else(|| "admin".into());
        (Grants::admin(), identity)
    } else {
        let identity = args
            .identity
            .clone()
            .ok_or_else(|| CliError::Usage("--identity is required (or --admin)".into()))?;
        (args.grants.unwrap_or_else(Grants::participant), identity)
    };
    if grants.join && args.room.is_none() {
        return Err(CliError::Usage(
            "--room is required for a token that grants join".into(),
        ));
    }
    Ok(TokenSpec {
        identity,
        name: args.name.clone(),
        room: args.room.clone(),
        grants,
        metadata: args.metadata.clone(),
        ttl: args.ttl,
    })
}

/// `sfu token`: the token on stdout, what it holds on stderr.
pub fn token(args: &TokenArgs) -> Result<(), CliError> {
    let spec = token_spec(args)?;
    let (config, key) = client_key(&args.keys)?;
    let (token, claims) = config
        .keys
        .mint(&key, &spec)
        .map_err(|(field, e)| CliError::Usage(format!("--{field}: {}", e.message)))?;
    println!("{token}");
    let granted: Vec<&str> = Grants::NAMES
        .iter()
        .copied()
        .filter(|g| grant(&claims.grants, g))
        .collect();
    eprintln!(
        "key {key}, identity {:?}, room {}, grants {}, valid for {}",
        claims.sub,
        claims
            .room
            .as_deref()
            .map_or("(any)".into(), |r| format!("{r:?}")),
        granted.join(","),
        format_duration(spec.ttl)
    );
    Ok(())
}

fn grant(g: &Grants, name: &str) -> bool {
    match name {
        "join" => g.join,
        "publish" => g.publish,
        "subscribe" => g.subscribe,
        "publish_data" => g.publish_data,
        _ => g.room_admin,
    }
}

/// A REST client with a short-lived admin token.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for `base` (e.g. `http://127.0.0.1:8080`) with key `key` of `keys`.
    pub fn new(base: &str, keys: &KeySet, key: &str) -> Result<Self, CliError> {
        let spec = TokenSpec {
            identity: "sfu-cli".into(),
            name: None,
            room: None,
            grants: Grants::admin(),
            metadata: None,
            ttl: Duration::from_secs(300),
        };
        let (token, _) = keys
            .mint(key, &spec)
            .map_err(|(_, e)| CliError::Usage(e.message))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| CliError::Usage(format!("HTTP client: {e}")))?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// The URL of `/api/` and `segments`, each percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<reqwest::Url, CliError> {
        let mut url = reqwest::Url::parse(&format!("{}/", self.base))
            .map_err(|e| CliError::Usage(format!("--url {}: {e}", self.base)))?;
        url.path_segments_mut()
            .map_err(|()| CliError::Usage(format!("--url {}: not a base URL", self.base)))?
            .pop_if_empty()
            .push("api")
            .extend(segments);
        Ok(url)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>, CliError> {
        let url = self.url(segments)?;
        let mut req = self
            .http
            .request(method, url.clone())
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let unreachable = |source: reqwest::Error| {
            if is_refused(&source) {
                CliError::Refused {
                    base: self.base.clone(),
                }
            } else {
                CliError::Unreachable {
                    url: url.to_string(),
                    source,
                }
            }
        };
        let response = req.send().await.map_err(unreachable)?;
        let status = response.status();
        if let Some(nodes) = response
            .headers()
            .get(crate::cluster_api::UNREACHABLE)
            .and_then(|v| v.to_str().ok())
        {
            eprintln!(
                "warning: cluster nodes {nodes} did not answer; their rooms are missing below"
            );
        }
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            let e = serde_json::from_slice::<ApiError>(&bytes).unwrap_or_else(|_| {
                ApiError::new(
                    signal::ErrorCode::Internal,
                    format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
                )
            });
            return Err(CliError::Api(e));
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CliError::Usage(format!("unexpected answer from {url}: {e}")))
    }

    async fn expect<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        segments: &[&str],
        body: Option<serde_json::Value>,
    ) -> Result<T, CliError> {
        self.call(method, segments, body)
            .await?
            .ok_or_else(|| CliError::Usage("empty answer".into()))
    }

    /// `POST /api/rooms`.
    pub async fn create_room(&self, req: &CreateRoom) -> Result<RoomInfo, CliError> {
        let body = serde_json::to_value(req).map_err(|e| CliError::Usage(e.to_string()))?;
        self.expect(reqwest::Method::POST, &["rooms"], Some(body))
            .await
    }

    /// `GET /api/rooms`.
    pub async fn list_rooms(&self) -> Result<RoomList, CliError> {
        self.expect(reqwest::Method::GET, &["rooms"], None).await
    }

    /// `DELETE /api/rooms/{room}`.
    pub async fn delete_room(&self, room: &str) -> Result<(), CliError> {
        self.call::<serde_json::Value>(reqwest::Method::DELETE, &["rooms", room], None)
            .await
            .map(|_| ())
    }

    /// `GET /api/rooms/{room}/participants`.
    pub async fn list_participants(&self, room: &str) -> Result<ParticipantList, CliError> {
        self.expect(reqwest::Method::GET, &["rooms", room, "participants"], None)
            .await
    }

    /// `DELETE /api/rooms/{room}/participants/{id}`.
    pub async fn remove_participant(&self, room: &str, id: &str) -> Result<(), CliError> {
        let path = ["rooms", room, "participants", id];
        self.call::<serde_json::Value>(reqwest::Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }

    /// `POST /api/rooms/{room}/participants/{id}/tracks/{track}/mute`.
    pub async fn mute_track(
        &self,
        room: &str,
        id: &str,
        track: &str,
        muted: bool,
    ) -> Result<TrackInfo, CliError> {
        let path = ["rooms", room, "participants", id, "tracks", track, "mute"];
        let body = serde_json::to_value(MuteTrack { muted })
            .map_err(|e| CliError::Usage(e.to_string()))?;
        self.expect(reqwest::Method::POST, &path, Some(body)).await
    }

    /// The participant of `room` whose id, or else identity, is `who`.
    pub async fn find_participant(
        &self,
        room: &str,
        who: &str,
    ) -> Result<ParticipantInfo, CliError> {
        let list = self.list_participants(room).await?.participants;
        let by_id = list.iter().position(|p| p.id == who);
        let found = by_id.or_else(|| list.iter().position(|p| p.identity.as_deref() == Some(who)));
        match found {
            Some(i) => Ok(list[i].clone()),
            None => Err(CliError::NotFound(format!(
                "not_found: no participant with id or identity {who:?} in room {room}"
            ))),
        }
    }
}

/// The base URL the server is reached at: `--url`, else the configured `http` address, with
/// 127.0.0.1 (or ::1) for a wildcard, and `https` when the configuration has TLS files.
pub fn server_url(server: &ServerArgs, config: &Config) -> String {
    if let Some(url) = &server.url {
        return url.clone();
    }
    let http = config.http;
    let ip = match http.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{}", std::net::SocketAddr::new(ip, http.port()))
}

fn client(server: &ServerArgs) -> Result<Client, CliError> {
    let config = Config::load(&ServeArgs {
        keys: server.keys.clone(),
        http: server.http,
        ..ServeArgs::default()
    })?;
    let (config, key) = client_key_of(config)?;
    Client::new(&server_url(server, &config), &config.keys, &key)
}

/// `sfu room ...`.
pub async fn room(command: RoomCommand) -> Result<(), CliError> {
    match command {
        RoomCommand::Create {
            server,
            name,
            max_participants,
            empty_timeout,
            metadata,
            video_codecs,
            region,
        } => {
            let empty_timeout = empty_timeout
                .map(|d| u32::try_from(d.as_secs()))
                .transpose()
                .map_err(|_| CliError::Usage("--empty-timeout is too long".into()))?;
            let req = CreateRoom {
                name,
                max_participants,
                empty_timeout,
                metadata,
                video_codecs,
                region,
            };
            let room = client(&server)?.create_room(&req).await?;
            if server.json {
                print_json(&room);
            } else {
                print!(
                    "created room {}\n{}",
                    room.name,
                    room_table(std::slice::from_ref(&room))
                );
            }
        }
        RoomCommand::List { server } => {
            let list = client(&server)?.list_rooms().await?;
            if server.json {
                print_json(&list);
            } else {
                print!("{}", room_table(&list.rooms));
            }
        }
        RoomCommand::Delete { server, name } => {
            client(&server)?.delete_room(&name).await?;
            if server.json {
                print_json(&serde_json::json!({ "room": name, "deleted": true }));
            } else {
                println!("deleted room {name}");
            }
        }
    }
    Ok(())
}

/// `sfu participant ...`.
pub async fn participant(command: ParticipantCommand) -> Result<(), CliError> {
    match command {
        ParticipantCommand::List { server, room } => {
            let list = client(&server)?.list_participants(&room).await?;
            if server.json {
                print_json(&list);
            } else {
                print!("{}", participant_table(&list.participants));
            }
        }
        ParticipantCommand::Remove {
            server,
            room,
            participant,
        } => {
            let client = client(&server)?;
            let p = client.find_participant(&room, &participant).await?;
            client.remove_participant(&room, &p.id).await?;
            if server.json {
                print_json(&serde_json::json!({
                    "room": room, "participant": p, "removed": true,
                }));
            } else {
                println!("removed {} from room {room}", who(&p));
            }
        }
        ParticipantCommand::Mute {
            server,
            room,
            participant,
            track,
            kind,
            unmute,
        } => {
            let client = client(&server)?;
            let p = client.find_participant(&room, &participant).await?;
            let chosen: Vec<&TrackInfo> = p
                .tracks
                .iter()
                .filter(|t| track.as_ref().is_none_or(|id| &t.id == id))
                .filter(|t| kind.is_none_or(|k| k.matches(t.kind)))
                .collect();
            if chosen.is_empty() {
                let what = match (&track, kind) {
                    (Some(id), _) => format!("track {id}"),
                    (None, Some(KindArg::Audio)) => "audio track".into(),
                    (None, Some(KindArg::Video)) => "video track".into(),
                    (None, None) => "track".into(),
                };
                return Err(CliError::NotFound(format!(
                    "not_found: {} publishes no {what}",
                    who(&p)
                )));
            }
            let mut done = Vec::with_capacity(chosen.len());
            for t in chosen {
                done.push(client.mute_track(&room, &p.id, &t.id, !unmute).await?);
            }
            if server.json {
                print_json(&serde_json::json!({
                    "room": room, "participant": p.id, "tracks": done,
                }));
            } else {
                let verb = if unmute { "unmuted" } else { "muted" };
                for t in &done {
                    println!("{verb} {} track {} of {}", kind_name(t.kind), t.id, who(&p));
                }
            }
        }
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) {
    match serde_json::to_string_pretty(v) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("cannot print the answer: {e}"),
    }
}

/// `ID (identity)` of a participant.
fn who(p: &ParticipantInfo) -> String {
    match &p.identity {
        Some(identity) => format!("{} ({identity})", p.id),
        None => p.id.clone(),
    }
}

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Audio => "audio",
        TrackKind::Video => "video",
    }
}

/// The rooms as a text table.
pub fn room_table(rooms: &[RoomInfo]) -> String {
    // A cluster's list names each room's node.
    let clustered = rooms.iter().any(|r| r.node.is_some());
    let node = |n: &str| {
        if clustered {
            format!("{n:<12} ")
        } else {
            String::new()
        }
    };
    let mut out = format!(
        "{:<24} {}{:>12} {:>6} {:>13}  {}\n",
        "NAME",
        node("NODE"),
        "PARTICIPANTS",
        "MAX",
        "EMPTY_TIMEOUT",
        "METADATA"
    );
    for r in rooms {
        let max = if r.max_participants == 0 {
            "-".to_owned()
        } else {
            r.max_participants.to_string()
        };
        out.push_str(&format!(
            "{:<24} {}{:>12} {:>6} {:>13}  {}\n",
            r.name,
            node(r.node.as_deref().unwrap_or("-")),
            r.num_participants,
            max,
            format_duration(Duration::from_secs(r.empty_timeout.into())),
            r.metadata
        ));
    }
    out
}

/// The participants as a text table: tracks as `kind:id`, `(muted)` after muted ones.
pub fn participant_table(participants: &[ParticipantInfo]) -> String {
    let mut out = format!(
        "{:<14} {:<20} {:<20} {}\n",
        "ID", "IDENTITY", "NAME", "TRACKS"
    );
    for p in participants {
        let tracks: Vec<String> = p
            .tracks
            .iter()
            .map(|t| {
                let muted = if t.muted { " (muted)" } else { "" };
                format!("{}:{}{muted}", kind_name(t.kind), t.id)
            })
            .collect();
        out.push_str(&format!(
            "{:<14} {:<20} {:<20} {}\n",
            p.id,
            p.identity.as_deref().unwrap_or("-"),
            p.name,
            if tracks.is_empty() {
                "-".to_owned()
            } else {
                tracks.join(", ")
            }
        ));
    }
    out
}
