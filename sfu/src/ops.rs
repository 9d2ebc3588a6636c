//! What operators and orchestrators talk to: `/readyz`, `/metrics`, the shutdown signals and the
//! TLS settings of the HTTP listener. (`/healthz` is the signalling router's.)
//!
//! | route          | answer                                                              |
//! |----------------|---------------------------------------------------------------------|
//! | `GET /readyz`  | `200 ready` while joins are admitted; `503` when shutting down or at the node's limit |
//! | `GET /metrics` | Prometheus text format (see `docs/operations.md`); on the public listener unless `metrics` names an address of its own |

use std::io;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::TlsFiles;
use crate::io::handle::SfuHandle;

#[derive(Clone)]
struct OpsState {
    sfu: Arc<SfuHandle>,
    metrics: Option<PrometheusHandle>,
}

/// `/readyz`, and `/metrics` when `public_metrics` (otherwise [`metrics_router`] serves it on its
/// own address).
pub fn router(
    sfu: Arc<SfuHandle>,
    metrics: Option<PrometheusHandle>,
    public_metrics: bool,
) -> Router {
    let router = Router::new().route("/readyz", get(readyz));
    let router = if public_metrics {
        router.route("/metrics", get(render_metrics))
    } else {
        router
    };
    router.with_state(OpsState { sfu, metrics })
}

/// `/metrics` alone, for the `metrics` address.
pub fn metrics_router(sfu: Arc<SfuHandle>, metrics: Option<PrometheusHandle>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(OpsState { sfu, metrics })
}

/// Adds the other nodes of the cluster to the page's `connect-src`, so that the bundled client
/// can follow a `redirect` to another node's WebSocket.
pub fn allow_cluster_origins(
    mut response: Response,
    cluster: &crate::io::cluster::Cluster,
) -> Response {
    let others = cluster.connect_sources();
    if others.is_empty() {
        return response;
    }
    let header = axum::http::header::CONTENT_SECURITY_POLICY;
    let Some(csp) = response
        .headers()
        .get(&header)
        .and_then(|v| v.to_str().ok())
    else {
        return response;
    };
    let csp = csp.replacen(
        "connect-src 'self'",
        &format!("connect-src 'self'{others}"),
        1,
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header, value);
    }
    response
}

async fn readyz(State(s): State<OpsState>) -> Response {
    if s.sfu.accepting() {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn render_metrics(State(s): State<OpsState>) -> Response {
    let Some(handle) = s.metrics else {
        return (StatusCode::NOT_FOUND, "no metrics recorder").into_response();
    };
    let ready = if s.sfu.accepting() { 1.0 } else { 0.0 };
    metrics::gauge!("sfu_ready").set(ready);
    let load = s.sfu.load();
    for (worker, n) in load.iter().enumerate() {
        metrics::gauge!("sfu_worker_admitted", "worker" => worker.to_string()).set(*n as f64);
    }
    let mut text = handle.render();
    text.push_str(&crate::io::metrics::render_extra());
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The TLS settings of the HTTP listener from PEM files: HTTP/1.1 only (WebSocket upgrades need
/// it), rustls with the aws-lc-rs provider.
pub async fn tls_config(files: &TlsFiles) -> io::Result<RustlsConfig> {
    let loaded = RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "tls.cert {} / tls.key {}: {e}",
                    files.cert.display(),
                    files.key.display()
                ),
            )
        })?;
    let mut config = (*loaded.get_inner()).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(RustlsConfig::from_config(Arc::new(config)))
}
