//! The plain HTTP routes, called in memory with `oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{Request, StatusCode};
use axum::response::Response;
use signal::router::ConfigError;
use signal::{
    router, ClientSignal, ErrorCode, JoinRequest, MediaBackend, RouterConfig, Session, SignalError,
};
use tower::ServiceExt;

/// A media side that admits nobody; these tests never open a WebSocket.
struct NoMedia;

impl MediaBackend for NoMedia {
    async fn join(&self, _req: JoinRequest) -> Result<Session, SignalError> {
        Err(SignalError::new(ErrorCode::ServerBusy, "no media here"))
    }

    fn signal(&self, _participant_id: &str, _signal: ClientSignal) -> Result<(), SignalError> {
        Err(SignalError::new(ErrorCode::NotJoined, "no media here"))
    }

    fn leave(&self, _participant_id: &str, _reason: &str) {}
}

async fn get(path: &str) -> Response {
    let app = router(Arc::new(NoMedia), RouterConfig::default());
    let request = Request::get(path).body(Body::empty()).expect("request");
    app.oneshot(request).await.expect("infallible")
}

async fn body_text(response: Response) -> String {
    let bytes = axum::body::to_bytes(response.into_body(), 1024 * 1024)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8 body")
}

fn header<'a>(response: &'a Response, name: &axum::http::HeaderName) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn static_files_are_served_with_their_types_and_no_cache() {
    for (path, content_type, body) in [
        ("/", "text/html", include_str!("../static/index.html")),
        (
            "/client.js",
            "text/javascript",
            include_str!("../../client/src/sfu-client.js"),
        ),
        (
            "/demo.js",
            "text/javascript",
            include_str!("../static/demo.js"),
        ),
        ("/demo.css", "text/css", include_str!("../static/demo.css")),
    ] {
        let response = get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            header(&response, &CONTENT_TYPE).starts_with(content_type),
            "{path}: {:?}",
            response.headers().get(CONTENT_TYPE)
        );
        assert_eq!(header(&response, &CACHE_CONTROL), "no-cache", "{path}");
        assert_eq!(body_text(response).await, body, "{path}");
    }
}

#[tokio::test]
async fn healthz_says_ok() {
    let response = get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(header(&response, &CONTENT_TYPE).starts_with("text/plain"));
    assert_eq!(body_text(response).await, "ok");
}

#[tokio::test]
async fn unknown_paths_are_404() {
    for path in [
        "/nope",
        "/static/index.html",
        "/client.js/x",
        "/../Cargo.toml",
    ] {
        assert_eq!(get(path).await.status(), StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    use axum::http::header::{
        CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
    };
    for path in ["/", "/client.js", "/demo.css", "/healthz", "/nope", "/ws"] {
        let response = get(path).await;
        let csp = header(&response, &CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header(&response, &X_FRAME_OPTIONS), "DENY", "{path}");
        assert_eq!(header(&response, &X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(&response, &REFERRER_POLICY), "no-referrer");
    }
    // The demo page runs under it: no inline script or style, scripts from this origin only.
    let page = include_str!("../static/index.html");
    assert!(!page.contains("<script>") && !page.contains("style=") && !page.contains("<style"));
    assert!(!has_inline_handler(page));
}

/// Whether an HTML text has an inline event handler attribute (`onclick=` and the like).
fn has_inline_handler(html: &str) -> bool {
    html.split(|c: char| c.is_whitespace()).any(|word| {
        word.strip_prefix("on")
            .and_then(|rest| rest.split_once('='))
            .is_some_and(|(name, _)| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase())
            })
    })
}

#[tokio::test]
async fn ws_without_an_upgrade_is_refused() {
    let status = get("/ws").await.status();
    assert!(status.is_client_error(), "{status}");
}

#[test]
fn config_defaults_are_valid_and_nonsense_is_refused() {
    assert_eq!(RouterConfig::default().validate(), Ok(()));

    let mut zero = RouterConfig::default();
    zero.join_timeout = std::time::Duration::ZERO;
    assert!(matches!(
        zero.validate(),
        Err(ConfigError::DurationOutOfRange {
            field: "join_timeout",
            ..
        })
    ));

    let mut ping_late = RouterConfig::default();
    ping_late.ping_interval = ping_late.idle_timeout;
    assert!(matches!(
        ping_late.validate(),
        Err(ConfigError::PingNotBeforeIdle { .. })
    ));

    let mut small_cap = RouterConfig::default();
    small_cap.max_frame_bytes = signal::protocol::MAX_MESSAGE_BYTES;
    assert!(matches!(
        small_cap.validate(),
        Err(ConfigError::FrameCapTooSmall(_))
    ));
}
