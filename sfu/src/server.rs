//! `sfu serve`: starts the media workers, the webhook sender and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::info;

use signal::auth::KeySet;
use signal::{ApiConfig, RouterConfig};

use crate::config::Config;
use crate::core::{generate_dtls_cert, EngineConfig};
use crate::io::handle::{Placement, SfuHandle};
use crate::io::webhook::Webhooks;
use crate::io::worker::{self, WorkerSpec};

/// How often empty rooms are looked for.
const ROOM_SWEEP: Duration = Duration::from_secs(1);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A development key: `dev-` and 8 random characters, with a 40-character secret.
pub fn development_keys() -> (String, String) {
    let key = format!("dev-{}", random_text(8));
    (key, random_text(40))
}

fn random_text(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..n)
        .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The keys the server uses and its REST settings: the configured keys, or in development mode
/// a fresh key that is printed once.
fn api_config(config: &Config) -> Result<ApiConfig, BoxError> {
    if !config.is_dev_mode() {
        return Ok(ApiConfig::new(config.keys.clone()));
    }
    let (key, secret) = development_keys();
    let keys = KeySet::single(&key, &secret)?;
    println!(
        "DEVELOPMENT MODE: no API keys are configured, so this key was made for this run only."
    );
    println!("  API key:    {key}");
    println!("  API secret: {secret}");
    println!(
        "  The demo page gets tokens from GET /api/dev/token, which anyone can call. Configure \
         [keys] (or SFU_API_KEY and SFU_API_SECRET) before exposing this server."
    );
    Ok(ApiConfig::development(keys))
}

/// Runs the server until Ctrl-C.
pub fn serve(config: Config) -> Result<(), BoxError> {
    let api = api_config(&config)?;
    let workers = config.worker_count();
    let candidate_ips = config.candidate_ips()?;
    let cert = generate_dtls_cert();
    let placement = Arc::new(Mutex::new(Placement::with_defaults(
        workers,
        config.room.clone(),
    )));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sfu-http")
        .enable_all()
        .build()?;
    let webhooks = {
        let _enter = rt.enter();
        Webhooks::start(config.webhook_config(&api.keys))?
    };

    let mut senders = Vec::with_capacity(workers);
    let mut ports = Vec::with_capacity(workers);
    for index in 0..workers {
        let spec = WorkerSpec {
            index,
            bind: config.udp_bind(index),
            candidate_ips: candidate_ips.clone(),
            engine: EngineConfig::new(
                candidate_ips
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, 0))
                    .collect(),
                cert.clone(),
            ),
            webhooks: webhooks.clone(),
        };
        let w = worker::spawn(spec, placement.clone())
            .map_err(|e| format!("media worker {index} on {}: {e}", config.udp_bind(index)))?;
        ports.push(w.port);
        senders.push(w.commands);
    }
    let handle = Arc::new(SfuHandle::new(senders, placement).with_webhooks(webhooks));
    let dev_mode = api.dev_mode;

    rt.block_on(async move {
        handle.spawn_room_sweeper(ROOM_SWEEP);
        let app = signal::app(handle, RouterConfig::default(), api);
        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .map_err(|e| format!("HTTP on {}: {e}", config.http))?;
        let local = listener.local_addr()?;
        info!(
            workers,
            udp_ports = ?ports,
            candidates = ?candidate_ips,
            dev_mode,
            "media ready"
        );
        let shown = if local.ip().is_unspecified() {
            format!("http://localhost:{}/", local.port())
        } else {
            format!("http://{local}/")
        };
        if dev_mode {
            println!("SFU ready: open {shown} in two browser tabs and join the same room");
        } else {
            println!("SFU ready on {shown}; clients join with access tokens (sfu token --help)");
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
                info!("shutting down");
            })
            .await?;
        Ok::<_, BoxError>(())
    })
}
