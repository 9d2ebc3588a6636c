//! Webhook delivery. Events go into one bounded queue with [`Webhooks::emit`], which never waits:
//! when the queue is full the event is dropped and counted. A dispatcher task signs each event
//! once and hands it to one task per URL (each with its own bounded queue, same rule), which posts
//! events in order, retrying failures with exponential backoff a bounded number of times.
//!
//! Media workers and signalling only ever call `emit`; a slow or dead receiver costs them
//! nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use signal::auth::unix_now;
use signal::webhook::{sign, WebhookEvent, KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// How webhooks are delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Where events are posted. Empty: webhooks are off.
    pub urls: Vec<String>,
    /// The API key whose secret signs the posts (sent in [`KEY_HEADER`]).
    pub key: String,
    /// Its secret.
    pub secret: String,
    /// Events held before new ones are dropped (in the shared queue and in each URL's queue).
    pub queue_size: usize,
    /// Posts per event and URL, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff: Duration,
    /// The longest wait between retries.
    pub max_backoff: Duration,
    /// Time limit of one post.
    pub timeout: Duration,
}

impl WebhookConfig {
    /// Defaults for `urls`, signed with `key` and `secret`.
    pub fn new(urls: Vec<String>, key: String, secret: String) -> Self {
        WebhookConfig {
            urls,
            key,
            secret,
            queue_size: 1024,
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }

    /// The wait before attempt `attempt` (2 is the first retry).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(2).min(30);
        self.initial_backoff
            .saturating_mul(1 << doublings)
            .min(self.max_backoff)
    }
}

/// Delivery counters.
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Events dropped because a queue was full.
    pub dropped: AtomicU64,
    /// Posts answered with 2xx.
    pub delivered: AtomicU64,
    /// Events given up on after the last attempt (or refused with a 4xx).
    pub failed: AtomicU64,
    /// Retries made.
    pub retries: AtomicU64,
}

/// Where events are emitted. Cheap to clone; [`Webhooks::disabled`] drops everything silently.
#[derive(Clone, Default)]
pub struct Webhooks {
    tx: Option<mpsc::Sender<WebhookEvent>>,
    stats: Arc<WebhookStats>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("enabled", &self.tx.is_some())
            .finish()
    }
}

impl Webhooks {
    /// No webhooks.
    pub fn disabled() -> Self {
        Webhooks::default()
    }

    /// Events go to `tx` as they are, unsigned and never retried: for embedding the engine
    /// elsewhere, and for tests.
    pub fn to_channel(tx: mpsc::Sender<WebhookEvent>) -> Self {
        Webhooks {
            tx: Some(tx),
            stats: Arc::default(),
        }
    }

    /// Starts the dispatcher and one sender per URL on the current tokio runtime. With no URLs,
    /// the same as [`Webhooks::disabled`].
    pub fn start(config: WebhookConfig) -> Result<Self, reqwest::Error> {
        if config.urls.is_empty() {
            return Ok(Webhooks::disabled());
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("sfu-webhook/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let stats = Arc::new(WebhookStats::default());
        let config = Arc::new(config);
        let (tx, rx) = mpsc::channel(config.queue_size.max(1));
        let mut senders = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let (utx, urx) = mpsc::channel(config.queue_size.max(1));
            senders.push(utx);
            let sender = UrlSender {
                url: url.clone(),
                client: client.clone(),
                config: Arc::clone(&config),
                stats: Arc::clone(&stats),
            };
            tokio::spawn(sender.run(urx));
        }
        tokio::spawn(dispatch(
            rx,
            senders,
            Arc::clone(&config),
            Arc::clone(&stats),
        ));
        info!(urls = config.urls.len(), "webhooks on");
        Ok(Webhooks {
            tx: Some(tx),
            stats,
        })
    }

    /// Queues an event; never waits. Dropped (and counted) when the queue is full.
    pub fn emit(&self, event: WebhookEvent) {
        let Some(tx) = &self.tx else {
            return;
        };
        if tx.try_send(event).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("sfu_webhook_dropped_total").increment(1);
        }
    }

    /// Whether events go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// The counters.
    pub fn stats(&self) -> &WebhookStats {
        &self.stats
    }
}

/// An event serialized and signed once, shared by the URL senders.
struct Signed {
    id: String,
    kind: &'static str,
    body: Bytes,
    signature: String,
}

async fn dispatch(
    mut rx: mpsc::Receiver<WebhookEvent>,
    senders: Vec<mpsc::Sender<Arc<Signed>>>,
    config: Arc<WebhookConfig>,
    stats: Arc<WebhookStats>,
) {
    while let Some(event) = rx.recv().await {
        let body = match serde_json::to_vec(&event) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                warn!("webhook event did not serialize: {e}");
                continue;
            }
        };
        let signed = Arc::new(Signed {
            signature: sign(&config.secret, &body),
            id: event.id,
            kind: event.event.as_str(),
            body,
        });
        for tx in &senders {
            if tx.try_send(Arc::clone(&signed)).is_err() {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("sfu_webhook_dropped_total").increment(1);
            }
        }
    }
}

struct UrlSender {
    url: String,
    client: reqwest::Client,
    config: Arc<WebhookConfig>,
    stats: Arc<WebhookStats>,
}

/// What one post achieved.
enum Outcome {
    Delivered,
    /// Worth another try (network error, timeout, 408, 429, 5xx).
    Retry(String),
    /// The receiver refused it for good (other 4xx).
    Refused(String),
}

impl UrlSender {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Signed>>) {
        while let Some(event) = rx.recv().await {
            self.deliver(&event).await;
        }
    }

    async fn deliver(&self, event: &Signed) {
        let max = self.config.max_attempts.max(1);
        for attempt in 1..=max {
            if attempt > 1 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(self.config.backoff(attempt)).await;
            }
            match self.post(event).await {
                Outcome::Delivered => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("sfu_webhook_delivered_total").increment(1);
                    debug!(url = %self.url, id = %event.id, event = event.kind, attempt, "webhook delivered");
                    return;
                }
                Outcome::Retry(why) if attempt < max => {
                    debug!(url = %self.url, id = %event.id, attempt, "webhook failed, will retry: {why}");
                }
                Outcome::Retry(why) | Outcome::Refused(why) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("sfu_webhook_failed_total").increment(1);
                    warn!(url = %self.url, id = %event.id, event = event.kind, attempt, "webhook not delivered: {why}");
                    return;
                }
            }
        }
    }

    async fn post(&self, event: &Signed) -> Outcome {
        let request = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, &event.signature)
            .header(TIMESTAMP_HEADER, unix_now().to_string())
            .header(KEY_HEADER, &self.config.key)
            .body(event.body.clone());
        match request.send().await {
            Ok(r) if r.status().is_success() => Outcome::Delivered,
            Ok(r) => {
                let s = r.status();
                let why = format!("HTTP {s}");
                if s.is_server_error() || s.as_u16() == 408 || s.as_u16() == 429 {
                    Outcome::Retry(why)
                } else {
                    Outcome::Refused(why)
                }
            }
            Err(e) => Outcome::Retry(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut c = WebhookConfig::new(vec![], "k".into(), "s".into());
        c.initial_backoff = Duration::from_millis(100);
        c.max_backoff = Duration::from_millis(350);
        let waits: Vec<u128> = (2..=6).map(|a| c.backoff(a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350, 350]);
    }

    #[test]
    fn a_disabled_sink_takes_events_silently() {
        let w = Webhooks::disabled();
        w.emit(WebhookEvent::new(
            signal::webhook::EventKind::RoomStarted,
            "r",
        ));
        assert!(!w.is_enabled());
        assert_eq!(w.stats().dropped.load(Ordering::Relaxed), 0);
    }
}
