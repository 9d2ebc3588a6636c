//! The `sfu` binary: reads the settings, starts the media workers and serves HTTP/WebSocket.

use std::sync::Arc;

use clap::Parser;
use parking_lot::Mutex;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use sfu::config::Config;
use sfu::core::{generate_dtls_cert, EngineConfig};
use sfu::io::handle::{Placement, SfuHandle};
use sfu::io::worker::{self, WorkerSpec};

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    init_logging(&config);
    if let Err(e) = config.validate() {
        error!("invalid configuration: {e}");
        return std::process::ExitCode::from(2);
    }
    match run(config) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let workers = config.worker_count();
    let candidate_ips = config.candidate_ips()?;
    let cert = generate_dtls_cert();
    let placement = Arc::new(Mutex::new(Placement::new(workers)));

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
                    .map(|ip| std::net::SocketAddr::new(*ip, 0))
                    .collect(),
                cert.clone(),
            ),
        };
        let w = worker::spawn(spec, placement.clone())
            .map_err(|e| format!("media worker {index} on {}: {e}", config.udp_bind(index)))?;
        ports.push(w.port);
        senders.push(w.commands);
    }
    let handle = Arc::new(SfuHandle::new(senders, placement));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sfu-http")
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let app = signal::router(handle, signal::RouterConfig::default());
        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .map_err(|e| format!("HTTP on {}: {e}", config.http))?;
        let local = listener.local_addr()?;
        info!(
            workers,
            udp_ports = ?ports,
            candidates = ?candidate_ips,
            "media ready"
        );
        let shown = if local.ip().is_unspecified() {
            format!("http://localhost:{}/", local.port())
        } else {
            format!("http://{local}/")
        };
        println!("SFU ready: open {shown} in two browser tabs and join the same room");
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
                info!("shutting down");
            })
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
