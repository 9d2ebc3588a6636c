//! The `sfu` command line: `sfu [serve]` runs the server, `sfu token` mints an access token with
//! the configured key, `sfu room ...` calls a running server's REST API.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::de::DeserializeOwned;

use signal::auth::{Grants, KeySet, TokenSpec};
use signal::rest::dto::{CreateRoom, RoomInfo, RoomList};
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
    },
    /// List rooms.
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a room; everyone in it is disconnected.
    Delete {
        #[command(flatten)]
        server: ServerArgs,
        /// Room name.
        name: String,
    },
}

/// Which server, and the key to call it with.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The server's base URL. Default: http://127.0.0.1 with the port of the configured `http`.
    #[arg(long, env = "SFU_URL")]
    pub url: Option<String>,
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
    /// The server could not be reached.
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The server refused the call.
    #[error("{}{}", .0, .0.field.as_ref().map(|f| format!(" (field: {f})")).unwrap_or_default())]
    Api(ApiError),
}

/// The configured keys and the one to use.
fn client_key(keys: &KeyArgs) -> Result<(Config, String), CliError> {
    let config = Config::load(&ServeArgs {
        keys: keys.clone(),
        ..ServeArgs::default()
    })?;
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

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<T>, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let unreachable = |source| CliError::Unreachable {
            url: url.clone(),
            source,
        };
        let response = req.send().await.map_err(unreachable)?;
        let status = response.status();
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

    /// `POST /api/rooms`.
    pub async fn create_room(&self, req: &CreateRoom) -> Result<RoomInfo, CliError> {
        let body = serde_json::to_value(req).map_err(|e| CliError::Usage(e.to_string()))?;
        self.call(reqwest::Method::POST, "/api/rooms", Some(body))
            .await?
            .ok_or_else(|| CliError::Usage("empty answer".into()))
    }

    /// `GET /api/rooms`.
    pub async fn list_rooms(&self) -> Result<RoomList, CliError> {
        self.call(reqwest::Method::GET, "/api/rooms", None)
            .await?
            .ok_or_else(|| CliError::Usage("empty answer".into()))
    }

    /// `DELETE /api/rooms/{room}`.
    pub async fn delete_room(&self, room: &str) -> Result<(), CliError> {
        let path = format!("/api/rooms/{room}");
        self.call::<serde_json::Value>(reqwest::Method::DELETE, &path, None)
            .await
            .map(|_| ())
    }
}

fn client(server: &ServerArgs) -> Result<Client, CliError> {
    let (config, key) = client_key(&server.keys)?;
    let base = server
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.http.port()));
    Client::new(&base, &config.keys, &key)
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
            };
            let room = client(&server)?.create_room(&req).await?;
            print_json(&room);
        }
        RoomCommand::List { server, json } => {
            let list = client(&server)?.list_rooms().await?;
            if json {
                print_json(&list);
            } else {
                print!("{}", room_table(&list.rooms));
            }
        }
        RoomCommand::Delete { server, name } => {
            client(&server)?.delete_room(&name).await?;
            println!("deleted room {name}");
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

/// The rooms as a text table.
pub fn room_table(rooms: &[RoomInfo]) -> String {
    let mut out = format!(
        "{:<24} {:>12} {:>6} {:>13}  {}\n",
        "NAME", "PARTICIPANTS", "MAX", "EMPTY_TIMEOUT", "METADATA"
    );
    for r in rooms {
        let max = if r.max_participants == 0 {
            "-".to_owned()
        } else {
            r.max_participants.to_string()
        };
        out.push_str(&format!(
            "{:<24} {:>12} {:>6} {:>13}  {}\n",
            r.name,
            r.num_participants,
            max,
            format_duration(Duration::from_secs(r.empty_timeout.into())),
            r.metadata
        ));
    }
    out
}
