//! `sfu serve`: starts the media workers, the webhook sender and the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{info, warn};

use signal::auth::KeySet;
use signal::limits::IpLimiter;
use signal::ApiConfig;

use crate::cluster_api::{self, ClusterApi};
use crate::config::Config;
use crate::core::{generate_dtls_cert, EngineConfig};
use crate::io::cluster::Cluster;
use crate::io::handle::{Placement, SfuHandle};
use crate::io::relay::Relay;
use crate::io::webhook::Webhooks;
use crate::io::worker::{self, WorkerSpec};
use crate::listener::{self, FirstBytesAcceptor, LimitAcceptor};
use crate::ops;

/// How long open HTTP connections get to finish after the drain.
const HTTP_CLOSE: Duration = Duration::from_secs(2);
/// After a second signal, how long the media workers get to tell everyone `left`.
const FINAL_REMOVE: Duration = Duration::from_secs(2);
/// How often empty rooms are looked for.
const ROOM_SWEEP: Duration = Duration::from_secs(1);
/// How often histogram samples are folded into their buckets, so that they do not pile up in
/// memory when nobody scrapes `/metrics` (a scrape folds them too).
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

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
    if config.is_exposed_dev_mode() {
        println!(
            "  EXPOSED (--dev): listening on {}, which other machines can reach. Anyone who \
             reaches it gets tokens from GET /api/dev/token and can join any room. Configure \
             keys (sfu generate-keys) for anything but a trusted network.",
            config.http
        );
        warn!(http = %config.http, "development mode on an address other machines can reach");
    } else {
        println!(
            "  Loopback only: listening on {}, so only this machine can open the demo page \
             (the page gets tokens from GET /api/dev/token, which anyone who reaches the server \
             could call). To serve other machines configure keys (sfu generate-keys), or pass \
             --dev with --http 0.0.0.0:{}.",
            config.http,
            config.http.port()
        );
    }
    Ok(ApiConfig::development(keys))
}

/// Lets the calling thread (of the HTTP and signalling runtime) be woken without preempting a
/// media worker on its core: Linux's `SCHED_BATCH`, the same share of the CPU, no wake-up
/// preemption. A `speakers` message goes to every participant of a room, one channel each; on a
/// shared core each of those hand-overs would otherwise switch from the worker to this thread
/// and back (about 2,000 switches a second with 210 participants). So the worker hands them all
/// over and this thread writes them in one go when the worker yields. Elsewhere nothing.
fn yield_to_media() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a valid sched_param for this thread (pid 0); a non-real-time policy needs no
        // privilege.
        let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if r != 0 {
            warn!(
                "signalling threads keep the default policy: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Runs the server until SIGTERM or Ctrl-C, then drains (see [`SfuHandle::shut_down`]).
pub fn serve(config: Config) -> Result<(), BoxError> {
    let mut api = api_config(&config)?;
    config.http_limits.apply_to(&mut api);
    let workers = config.worker_count();
    let candidate_ips = config.candidate_ips()?;
    let cert = generate_dtls_cert();
    let placement = Arc::new(Mutex::new(
        Placement::with_defaults(workers, config.room.clone()).with_limits(config.limits),
    ));
    let recorder = match crate::io::metrics::install() {
        Ok(r) => Some(r),
        Err(e) => {
            warn!("no metrics: {e}");
            None
        }
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sfu-http")
        .on_thread_start(yield_to_media)
        .enable_all()
        .build()?;
    let webhooks = {
        let _enter = rt.enter();
        Webhooks::start(config.webhook_config(&api.keys))?
    };

    // Replies leave from the address the client sent to when every candidate is an address of
    // this machine (not so behind 1:1 NAT, where the advertised address is someone else's).
    let local_ips: Vec<std::net::IpAddr> = if_addrs::get_if_addrs()
        .map(|v| v.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    let pin_source =
        config.udp_ip.is_unspecified() && candidate_ips.iter().all(|ip| local_ips.contains(ip));
    let mut senders = Vec::with_capacity(workers);
    let mut ports = Vec::with_capacity(workers);
    let mut runtimes = Vec::with_capacity(workers);
    let peers = worker::Peers::default();
    for index in 0..workers {
        let spec = WorkerSpec {
            index,
            bind: config.udp_bind(index),
            candidate_ips: candidate_ips.clone(),
            engine: EngineConfig {
                limits: config.participant,
                ..EngineConfig::new(
                    candidate_ips
                        .iter()
                        .map(|ip| SocketAddr::new(*ip, 0))
                        .collect(),
                    cert.clone(),
                )
            },
            webhooks: webhooks.clone(),
            resume_grace: config.resume_grace,
            max_input_age: config.max_input_age,
            ice_tcp: config.ice_tcp,
            pin_source,
            peers: Arc::clone(&peers),
        };
        let w = worker::spawn(spec, placement.clone())
            .map_err(|e| format!("media worker {index} on {}: {e}", config.udp_bind(index)))?;
        ports.push(w.port);
        runtimes.push(w.runtime);
        senders.push(w.commands);
    }
    // Every worker can now reach the others.
    peers.set(senders.clone());
    let listener = std::net::TcpListener::bind(config.http)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| format!("HTTP on {}: {e}", config.http))?;
    let local = listener.local_addr()?;
    let mut handle = SfuHandle::new(senders.clone(), placement.clone())
        .with_webhooks(webhooks)
        .with_turn(config.turn.clone());
    let cluster = match &config.cluster {
        Some(c) => {
            let mut settings = c.settings(local, config.tls.is_some(), &candidate_ips);
            settings.media = candidate_ips
                .iter()
                .flat_map(|ip| ports.iter().map(|port| SocketAddr::new(*ip, *port)))
                .collect();
            info!(
                node = %settings.node_id,
                region = %settings.region,
                url = %settings.public_url,
                redis = %settings.redis_url,
                "cluster node"
            );
            // The Redis connection manager spawns its tasks on the runtime.
            let _enter = rt.enter();
            let secret = settings.secret.clone();
            let cluster = Cluster::new(settings, placement.clone())?;
            handle = handle.with_cluster(Arc::clone(&cluster));
            if let Some(secret) = secret {
                let ip = candidate_ips
                    .first()
                    .copied()
                    .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
                let relay = Relay::new(
                    Arc::clone(&cluster),
                    placement,
                    senders.clone(),
                    runtimes.clone(),
                    Arc::clone(&peers.remote),
                    &secret,
                    ip,
                )?;
                handle = handle.with_relay(relay);
            }
            Some(cluster)
        }
        None => None,
    };
    let handle = Arc::new(handle);
    let dev_mode = api.dev_mode;

    rt.block_on(async move {
        handle.spawn_room_sweeper(ROOM_SWEEP);
        if let Some(cluster) = &cluster {
            cluster.refresh().await;
            cluster.spawn_refresh();
        }
        let limits = &config.http_limits;
        if let Some(recorder) = recorder.clone() {
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(METRICS_UPKEEP);
                loop {
                    tick.tick().await;
                    recorder.run_upkeep();
                }
            });
        }
        if let Some(addr) = config.metrics {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("metrics on {addr}: {e}"))?;
            info!(address = %listener.local_addr()?, "metrics: GET /metrics");
            let app = ops::metrics_router(Arc::clone(&handle), recorder.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    warn!("metrics listener: {e}");
                }
            });
        }
        let public_metrics = config.metrics.is_none();
        let api_keys = api.keys.clone();
        let mut app = signal::app(Arc::clone(&handle), limits.router_config(), api)
            .merge(ops::router(Arc::clone(&handle), recorder, public_metrics));
        if let Some(relay) = handle.relay() {
            app = app.merge(relay.router());
        }
        if let Some(cluster) = &cluster {
            // Any node answers REST calls for every room of the cluster.
            let routing = ClusterApi::new(Arc::clone(cluster), Arc::clone(&handle), api_keys)?;
            app = app.layer(axum::middleware::from_fn_with_state(
                routing,
                cluster_api::route,
            ));
            // The page may follow a redirect to another node's WebSocket.
            let cluster = Arc::clone(cluster);
            app = app.layer(axum::middleware::map_response(
                move |response: axum::response::Response| {
                    let cluster = Arc::clone(&cluster);
                    async move { ops::allow_cluster_origins(response, &cluster) }
                },
            ));
        }
        match listener::raise_open_files_limit() {
            Some(files) if (files as usize) < limits.max_connections.saturating_add(256) => warn!(
                open_files = files,
                max_connections = limits.max_connections,
                "the open-files limit is below http_limits.max_connections: raise it (ulimit -n, \
                 LimitNOFILE) or lower the cap"
            ),
            _ => {}
        }
        let tls = match &config.tls {
            Some(files) => Some(ops::tls_config(files).await?),
            None => None,
        };
        info!(
            workers,
            udp_ports = ?ports,
            candidates = ?candidate_ips,
            dev_mode,
            "media ready"
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shown = if local.ip().is_unspecified() {
            format!("{scheme}://localhost:{}/", local.port())
        } else {
            format!("{scheme}://{local}/")
        };
        match (dev_mode, local.ip().is_loopback()) {
            (true, true) => println!(
                "SFU ready (development mode, loopback only): open {shown} in two browser tabs \
                 and join the same room"
            ),
            (true, false) => println!(
                "SFU ready (development mode, reachable from other machines): open {shown} in \
                 two browser tabs and join the same room"
            ),
            (false, _) => {
                println!("SFU ready on {shown}; clients join with access tokens (sfu token --help)")
            }
        }
        let http = axum_server::Handle::new();
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let connections = IpLimiter::new(limits.max_connections, limits.max_connections_per_ip);
        let limit = LimitAcceptor::new(connections.clone());
        let read_timeout = limits.header_read_timeout;
        let server = match tls {
            Some(tls) => {
                let mut server = axum_server::from_tcp_rustls(listener, tls)?
                    .map(|tls| FirstBytesAcceptor::new(tls.acceptor(limit), read_timeout))
                    .handle(http.clone());
                listener::configure(server.http_builder(), read_timeout);
                tokio::spawn(server.serve(service))
            }
            None => {
                let mut server = axum_server::from_tcp(listener)?
                    .acceptor(FirstBytesAcceptor::new(limit, read_timeout))
                    .handle(http.clone());
                listener::configure(server.http_builder(), read_timeout);
                tokio::spawn(server.serve(service))
            }
        };
        ops::shutdown_signal().await;
        info!(drain = ?config.drain_timeout, "shutting down: no new joins");
        let drained = tokio::select! {
            _ = handle.shut_down(config.drain_timeout) => true,
            _ = ops::shutdown_signal() => false,
        };
        if !drained {
            // The drain future was dropped before it removed anyone: do that now, briefly,
            // so every client still gets `left` `server_shutdown` and a close frame.
            info!("second signal: not waiting any longer");
            handle
                .remove_all(crate::core::LeaveReason::ServerShutdown, FINAL_REMOVE)
                .await;
        }
        if let Some(cluster) = &cluster {
            cluster.leave().await;
        }
        http.graceful_shutdown(Some(HTTP_CLOSE));
        server.await??;
        // WebSockets left the HTTP server at their upgrade but still hold their connection's
        // slot: give them as long to send `left` and their close frame.
        let deadline = tokio::time::Instant::now() + HTTP_CLOSE;
        while connections.open() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        info!("stopped");
        Ok::<_, BoxError>(())
    })
}
