//! A whole run: check the server, start bots at the join rate, sample the counters each second,
//! measure the server's CPU over the measured window, collect the bots' reports.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout};

use crate::attack::{self, AttackConfig, AttackOutcome, Intel};
use crate::bot::{self, BotReport, Env, JanusRoom, ServerKind, TokenSource, WhipWhep};
use crate::live::{Clock, Live, Snapshot};
use crate::procfs::{self, CpuWindow, ProcSample};
use crate::report::{RunOutput, ServerCost, TimelinePoint};
use crate::scenario::Scenario;
use crate::stats::{latency_histogram, pct, Percentiles};
use crate::view::View;

/// How long bots get to leave and report after the end.
const FINISH_GRACE: Duration = Duration::from_secs(8);
/// The timeline's resolution.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The URL is not `http://host:port[/prefix]`.
    #[error("bad --url {0:?}: {1}")]
    Url(String, String),
    /// The URL names a host off this machine and `--allow-remote` was not given.
    #[error("{0} is not a loopback address; pass --allow-remote to load a server elsewhere")]
    NotLoopback(String),
    /// `/healthz` did not answer 200.
    #[error("server not healthy at {0}: {1}")]
    Unhealthy(String, String),
}

/// The server's address, split from `--url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`.
    pub authority: String,
    /// Path prefix without a trailing slash (usually empty).
    pub prefix: String,
}

impl Target {
    /// Parses `http://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Target, RunError> {
        Self::parse_scheme(url, "http://")
    }

    /// Parses `ws://host[:port][/path]` (a Janus WebSocket).
    pub fn parse_ws(url: &str) -> Result<Target, RunError> {
        Self::parse_scheme(url, "ws://")
    }

    fn parse_scheme(url: &str, scheme: &str) -> Result<Target, RunError> {
        let bad = |why: &str| RunError::Url(url.to_string(), why.to_string());
        let rest = url
            .strip_prefix(scheme)
            .ok_or_else(|| bad(&format!("only {scheme} is supported")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("no host"));
        }
        let has_port = if authority.starts_with('[') {
            authority.contains("]:")
        } else {
            authority.contains(':')
        };
        let authority = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The WebSocket URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}{}/ws", self.authority, self.prefix)
    }

    /// The port.
    pub fn port(&self) -> Option<u16> {
        self.authority.rsplit(':').next()?.parse().ok()
    }
}

/// Resolves the target and refuses addresses off this machine unless allowed.
async fn resolve(target: &Target, allow_remote: bool) -> Result<SocketAddr, RunError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target.authority.as_str())
        .await
        .map_err(|e| RunError::Url(target.authority.clone(), e.to_string()))?
        .collect();
    let Some(first) = addrs.first().copied() else {
        return Err(RunError::Url(target.authority.clone(), "no address".into()));
    };
    if !allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(RunError::NotLoopback(target.authority.clone()));
    }
    Ok(first)
}

/// `GET {prefix}/healthz`, expecting `200`.
async fn health(addr: SocketAddr, target: &Target) -> Result<(), String> {
    let check = async {
        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let req = format!(
            "GET {}/healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            target.prefix, target.authority
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
        let head = String::from_utf8_lossy(&buf[..n]);
        if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(format!(
                "answered {:?}",
                head.lines().next().unwrap_or_default()
            ))
        }
    };
    timeout(Duration::from_secs(3), check)
        .await
        .map_err(|_| "no answer within 3 s".to_string())?
}

/// Longest `/metrics` answer read.
const METRICS_MAX: usize = 8 << 20;
/// How long a `/metrics` answer may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET {url}/metrics`: the server's workers' CPU seconds and the part of them in their send
/// calls, summed over the workers. `None` when the answer is not there within `wait`, is not a
/// 200, is longer than [`METRICS_MAX`], or lacks either metric (metrics on an address of their
/// own, another server).
async fn send_cpu_sample(url: &str, wait: Duration) -> Option<(f64, f64)> {
    let fetch = async {
        let client = reqwest::Client::builder().build().ok()?;
        let mut r = client.get(format!("{url}/metrics")).send().await.ok()?;
        if r.status() != reqwest::StatusCode::OK {
            return None;
        }
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.ok()? {
            if body.len() + chunk.len() > METRICS_MAX {
                return None;
            }
            body.extend_from_slice(&chunk);
        }
        Some(body)
    };
    let body = timeout(wait, fetch).await.ok()??;
    worker_send_cpu(&String::from_utf8_lossy(&body))
}

/// The sums of `sfu_worker_cpu_seconds_total` and `sfu_worker_send_cpu_seconds_total` over their
/// workers in a Prometheus text exposition; `None` unless both are there.
fn worker_send_cpu(text: &str) -> Option<(f64, f64)> {
    let sum = |name: &str| {
        let mut found = false;
        let mut total = 0.0;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                continue;
            }
            if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
                found = true;
                total += v;
            }
        }
        found.then_some(total)
    };
    Some((
        sum("sfu_worker_cpu_seconds_total")?,
        sum("sfu_worker_send_cpu_seconds_total")?,
    ))
}

/// Whether a TCP connection to `addr` opens (Janus has no health endpoint).
async fn reachable(addr: SocketAddr) -> Result<(), String> {
    match timeout(Duration::from_secs(3), TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".into()),
    }
}

/// Settings of a run besides the scenario.
pub struct RunConfig {
    /// The scenario.
    pub scenario: Scenario,
    /// `--url` as given (or the first of `--urls`).
    pub url: String,
    /// The other nodes of `--urls`: bots join through all of them in turn.
    pub more_urls: Vec<String>,
    /// A fixed token for `join`.
    pub token: Option<String>,
    /// Fetch a development token per bot.
    pub dev_token: bool,
    /// Mint a token per bot with an API key ([`TokenSource::Keys`]).
    pub keys: Option<TokenSource>,
    /// UDP bind address of the bots.
    pub bind_ip: IpAddr,
    /// Bots receive with UDP GRO.
    pub gro: bool,
    /// Allow a server that is not on this machine.
    pub allow_remote: bool,
    /// `--allow-ice-ip`.
    pub allow_ips: Vec<IpAddr>,
    /// Render size announced for received videos.
    pub render_size: Option<(u32, u32)>,
    /// `--server-pid`.
    pub server_pid: Option<u32>,
    /// The attacker (no attacks: none).
    pub attack: AttackConfig,
    /// Load Janus's VideoRoom (with rooms made like this) instead of this server; `url` is
    /// then Janus's WebSocket, `ws://host:port`.
    pub janus: Option<JanusRoom>,
    /// Publish over WHIP and play over WHEP instead of this server's WebSocket protocol: the
    /// WHIP endpoint's path and the WHEP one's (with `{room}` and `{name}`), below `url`.
    pub whip_whep: Option<(String, String)>,
}

/// The server process being measured.
struct ServerProc {
    pid: u32,
    found_by: &'static str,
}

fn find_server(cfg: &RunConfig, target: &Target) -> Option<ServerProc> {
    if let Some(pid) = cfg.server_pid {
        return Some(ServerProc {
            pid,
            found_by: "flag",
        });
    }
    let port = target.port()?;
    procfs::find_listener(port).map(|pid| ServerProc {
        pid,
        found_by: "port",
    })
}

fn cores_between(a: Option<&ProcSample>, b: Option<&ProcSample>) -> Option<f64> {
    Some(CpuWindow::between(a?, b?).cores)
}

fn point(
    t_s: f64,
    prev: &Snapshot,
    now: &Snapshot,
    dt: f64,
    latency: &hdrhistogram::Histogram<u64>,
    server_cores: Option<f64>,
    loadtest_cores: Option<f64>,
) -> TimelinePoint {
    let dt = dt.max(1e-3);
    let rx = now.rx_packets.saturating_sub(prev.rx_packets);
    let lost = (now.lost - prev.lost).max(0) as u64;
    TimelinePoint {
        t_s,
        connected: now.connected,
        tracks: now.tracks_receiving,
        rx_kbps: now.rx_bytes.saturating_sub(prev.rx_bytes) as f64 * 8.0 / 1000.0 / dt,
        tx_kbps: now.tx_bytes.saturating_sub(prev.tx_bytes) as f64 * 8.0 / 1000.0 / dt,
        rx_pps: rx as f64 / dt,
        loss_pct: pct(lost, rx + lost),
        latency: Percentiles::of(latency),
        server_cores,
        loadtest_cores,
    }
}

/// Runs the scenario to its end.
pub async fn run(cfg: RunConfig, view: &mut View) -> Result<RunOutput, RunError> {
    let target = match cfg.janus {
        Some(_) => Target::parse_ws(&cfg.url)?,
        None => Target::parse(&cfg.url)?,
    };
    let addr = resolve(&target, cfg.allow_remote).await?;
    match (&cfg.janus, &cfg.whip_whep) {
        (None, None) => health(addr, &target).await,
        // Neither Janus nor every WHIP server has this server's health endpoint.
        _ => reachable(addr).await,
    }
    .map_err(|e| RunError::Unhealthy(cfg.url.clone(), e))?;
    let attacking = !cfg.attack.attacks.is_empty();
    if attacking && !addr.ip().is_loopback() {
        // The attacker's traffic stays on this machine, whatever --allow-remote says.
        return Err(RunError::NotLoopback(target.authority.clone()));
    }
    let server = find_server(&cfg, &target);
    let mut notes = Vec::new();
    match &server {
        Some(s) => view.note(&format!(
            "measuring server pid {} ({}) found by {}",
            s.pid,
            procfs::command_name(s.pid).unwrap_or_default(),
            s.found_by
        )),
        None => notes.push(
            "server process not found (pass --server-pid): no server CPU figures".to_string(),
        ),
    }

    let scenario = cfg.scenario.clone();
    let specs = scenario.bots();
    let total_bots = specs.len();
    let tracks_expected = scenario.tracks_expected();
    let live = Arc::new(Live::default());
    let start = Instant::now();
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let join_time = scenario.join_time();
    let window_start = start + join_time + scenario.warmup;
    let end = window_start + scenario.duration;
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| RunError::Unhealthy(cfg.url.clone(), "no DTLS certificate".into()))?;
    let mut ws_urls = vec![match cfg.janus {
        Some(_) => cfg.url.clone(),
        None => target.ws_url(),
    }];
    for url in &cfg.more_urls {
        let t = Target::parse(url)?;
        let a = resolve(&t, cfg.allow_remote).await?;
        health(a, &t)
            .await
            .map_err(|e| RunError::Unhealthy(url.clone(), e))?;
        ws_urls.push(t.ws_url());
    }
    let server_kind = match (&cfg.janus, &cfg.whip_whep) {
        (Some(room), _) => ServerKind::Janus(room.clone()),
        (None, Some((whip, whep))) => ServerKind::WhipWhep(Arc::new(
            WhipWhep::new(&cfg.url, whip, whep, &specs)
                .map_err(|e| RunError::Url(cfg.url.clone(), e))?,
        )),
        (None, None) => ServerKind::Sfu,
    };
    let env = Arc::new(Env {
        server: server_kind,
        ws_urls,
        token: match (&cfg.token, &cfg.keys, cfg.dev_token) {
            _ if cfg.janus.is_some() => TokenSource::None,
            (Some(t), _, _) => TokenSource::Fixed(t.clone()),
            (None, Some(keys), _) => keys.clone(),
            (None, None, true) => TokenSource::Dev {
                authority: target.authority.clone(),
                prefix: target.prefix.clone(),
            },
            (None, None, false) => TokenSource::None,
        },
        bind_ip: cfg.bind_ip,
        gro: cfg.gro,
        allow_remote: cfg.allow_remote,
        allow_ips: cfg.allow_ips.clone(),
        media: Arc::new(scenario.media.clone()),
        cert,
        clock: Clock::new(),
        live: live.clone(),
        end,
        render_size: cfg.render_size,
        intel: attacking.then(|| Arc::new(Intel::default())),
    });
    let attacker: Option<JoinHandle<Vec<AttackOutcome>>> = env.intel.clone().map(|intel| {
        let names: Vec<&str> = cfg.attack.attacks.iter().map(|a| a.name()).collect();
        view.note(&format!("attacker: {}", names.join(", ")));
        let ctx = attack::Ctx {
            cfg: cfg.attack.clone(),
            server: addr,
            authority: target.authority.clone(),
            prefix: target.prefix.clone(),
            ws_url: target.ws_url(),
            token: env.token.clone(),
            rooms: (0..scenario.rooms)
                .map(|r| format!("{}-{r}", scenario.room_prefix))
                .collect(),
            intel,
            start: start + cfg.attack.start_after,
            end,
        };
        tokio::spawn(attack::run(ctx))
    });

    // Joins at the join rate, in their own task so sampling goes on meanwhile.
    let rate = scenario.join_rate.max(0.001);
    let spawner: JoinHandle<Vec<JoinHandle<BotReport>>> = {
        let env = env.clone();
        tokio::spawn(async move {
            let mut handles = Vec::with_capacity(specs.len());
            for (i, spec) in specs.into_iter().enumerate() {
                let at = start + Duration::from_secs_f64(i as f64 / rate);
                if at >= env.end {
                    break;
                }
                sleep_until(at.into()).await;
                handles.push(tokio::spawn(bot::run(spec, env.clone(), i)));
            }
            handles
        })
    };

    let server_sample = || {
        server
            .as_ref()
            .and_then(|s| procfs::sample(&s.pid.to_string()))
    };
    let total = end - start;
    let mut timeline = Vec::new();
    let mut prev = live.snapshot();
    let mut prev_at = start;
    let mut prev_server = server_sample();
    let mut prev_self = procfs::sample("self");
    let mut window: Option<(Snapshot, Option<ProcSample>, Option<ProcSample>)> = None;
    // This server's workers say how much of their time their send calls take.
    let scrape_sends = server.is_some() && cfg.janus.is_none() && cfg.whip_whep.is_none();
    let mut window_sends = None;
    let metrics_url = format!("http://{}{}", target.authority, target.prefix);
    let mut next_tick = start + SAMPLE_INTERVAL;
    // One turn per second until the end (bounded by `end`).
    loop {
        let wake = if window.is_none() {
            next_tick.min(window_start)
        } else {
            next_tick.min(end)
        };
        sleep_until(wake.into()).await;
        let now = Instant::now();
        if window.is_none() && now >= window_start {
            window = Some((live.snapshot(), server_sample(), procfs::sample("self")));
            if scrape_sends {
                window_sends = send_cpu_sample(&metrics_url, METRICS_TIMEOUT).await;
            }
        }
        if now < next_tick && now < end {
            continue;
        }
        let snap = live.snapshot();
        let srv = server_sample();
        let me = procfs::sample("self");
        let latency = live.take_interval();
        let p = point(
            (now - start).as_secs_f64(),
            &prev,
            &snap,
            (now - prev_at).as_secs_f64(),
            &latency,
            cores_between(prev_server.as_ref(), srv.as_ref()),
            cores_between(prev_self.as_ref(), me.as_ref()),
        );
        // A last sliver of a second says little and batching makes its rates noisy.
        let partial = now >= end && (now - prev_at) < SAMPLE_INTERVAL / 2;
        let phase = if now < start + join_time {
            format!("joining {}/{total_bots}", snap.started)
        } else if now < window_start {
            "warming up".to_string()
        } else {
            "measuring".to_string()
        };
        view.update(
            (now - start).as_secs().min(total.as_secs()),
            &phase,
            total_bots,
            tracks_expected,
            &snap,
            &p,
        );
        if !partial {
            timeline.push(p);
        }
        prev = snap;
        prev_at = now;
        prev_server = srv;
        prev_self = me;
        next_tick += SAMPLE_INTERVAL;
        if now >= end {
            break;
        }
    }
    let end_snap = live.snapshot();
    let end_server = server_sample();
    let end_self = procfs::sample("self");
    let end_sends = if scrape_sends {
        send_cpu_sample(&metrics_url, METRICS_TIMEOUT).await
    } else {
        None
    };
    tracing::info!(?end_snap, "end of the measured window");
    view.note("leaving...");

    let handles = spawner.await.unwrap_or_default();
    let deadline = tokio::time::Instant::from(end + FINISH_GRACE);
    let mut bots = Vec::with_capacity(handles.len());
    for h in handles {
        let abort = h.abort_handle();
        match tokio::time::timeout_at(deadline, h).await {
            Ok(Ok(r)) => bots.push(r),
            Ok(Err(e)) => notes.push(format!("a bot task ended abnormally: {e}")),
            Err(_) => {
                abort.abort();
                notes.push("a bot did not finish in time and was stopped".into());
            }
        }
    }
    if bots.len() < total_bots {
        notes.push(format!(
            "{} of {total_bots} bots were started and reported",
            bots.len()
        ));
    }

    let attacks = match attacker {
        // The attacks stop at the end by themselves; this only bounds a stuck one.
        Some(h) => match tokio::time::timeout(FINISH_GRACE, h).await {
            Ok(Ok(a)) => a,
            _ => {
                notes.push("the attacker did not report".into());
                Vec::new()
            }
        },
        None => Vec::new(),
    };

    let mut latency = [latency_histogram(), latency_histogram()];
    for b in &mut bots {
        if let Some(l) = b.latency.take() {
            for (into, from) in latency.iter_mut().zip(l.iter()) {
                // Same bounds on both sides: adding cannot fail.
                let _ = into.add(from);
            }
        }
    }

    let (win_snap, win_server, win_self) = window.unwrap_or((prev, None, None));
    let forwarded = end_snap.rx_packets.saturating_sub(win_snap.rx_packets);
    // Both counters come from one publication of each worker: their ratio is exact even though
    // the published values lag the scrape by up to a second.
    let send_share = match (window_sends, end_sends) {
        (Some((cpu_a, send_a)), Some((cpu_b, send_b))) if cpu_b > cpu_a => {
            Some(((send_b - send_a) / (cpu_b - cpu_a)).max(0.0))
        }
        _ => None,
    };
    let server_cost = match (&server, win_server, end_server) {
        (Some(s), Some(a), Some(b)) => {
            let w = CpuWindow::between(&a, &b);
            let cpu_us = b.cpu_us.saturating_sub(a.cpu_us) as f64;
            Some(ServerCost {
                pid: s.pid,
                command: procfs::command_name(s.pid),
                found_by: s.found_by,
                forwarded_packets: forwarded,
                forwarded_pps: if w.wall_s > 0.0 {
                    forwarded as f64 / w.wall_s
                } else {
                    0.0
                },
                cpu_us_per_forwarded_packet: (forwarded > 0).then(|| cpu_us / forwarded as f64),
                send_share,
                send_us_per_forwarded_packet: send_share
                    .filter(|_| forwarded > 0)
                    .map(|share| share * cpu_us / forwarded as f64),
                window: w,
            })
        }
        _ => None,
    };
    if server_cost.is_some() {
        notes.push(
            "forwarded packets = RTP packets received by all bots in the window, a lower bound of \
             what the server sent; CPU per packet is the server's whole CPU time over that count"
                .into(),
        );
    }
    let loadtest_cpu = match (win_self, end_self) {
        (Some(a), Some(b)) => Some(CpuWindow::between(&a, &b)),
        _ => None,
    };
    Ok(RunOutput {
        scenario,
        url: cfg.url,
        started_unix_s,
        bots,
        latency,
        timeline,
        server: server_cost,
        loadtest_cpu,
        late_frames: end_snap.late_frames,
        notes,
        attacks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on a free loopback port that answers one request with `answer`, or with nothing
    /// at all (it holds the connection open until the test's runtime ends); returns its URL.
    async fn answering(answer: Option<Vec<u8>>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = s.read(&mut request).await;
            match answer {
                Some(a) => {
                    let _ = s.write_all(&a).await;
                }
                None => std::future::pending::<()>().await,
            }
        });
        url
    }

    fn http_answer(status: &str, body: &[u8]) -> Vec<u8> {
        let mut a = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        a.extend_from_slice(body);
        a
    }

    /// The server's metrics are read over HTTP; an error, an answer too long and no answer in
    /// time give nothing, and quickly.
    #[tokio::test]
    async fn the_send_time_comes_from_the_server_s_metrics_or_not_at_all() {
        let wait = Duration::from_millis(300);
        let metrics = b"sfu_worker_cpu_seconds_total{worker=\"0\"} 3\n\
sfu_worker_send_cpu_seconds_total{worker=\"0\"} 1.25\n";
        let url = answering(Some(http_answer("200 OK", metrics))).await;
        assert_eq!(send_cpu_sample(&url, wait).await, Some((3.0, 1.25)));

        let url = answering(Some(http_answer("404 Not Found", metrics))).await;
        assert_eq!(send_cpu_sample(&url, wait).await, None, "not a 200");

        let mut long = metrics.to_vec();
        long.resize(METRICS_MAX + 1, b'#');
        let url = answering(Some(http_answer("200 OK", &long))).await;
        assert_eq!(
            send_cpu_sample(&url, wait).await,
            None,
            "longer than the cap"
        );

        let url = answering(None).await;
        let started = Instant::now();
        assert_eq!(send_cpu_sample(&url, wait).await, None, "no answer");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "gave up after {wait:?}"
        );
    }

    #[test]
    fn the_workers_send_time_is_read_from_the_metrics() {
        let text = "\
# HELP sfu_worker_cpu_seconds_total CPU time used by the worker's thread.
# TYPE sfu_worker_cpu_seconds_total counter
sfu_worker_cpu_seconds_total{worker=\"0\"} 2.5
sfu_worker_cpu_seconds_total{worker=\"1\"} 1.5
sfu_worker_cpu_seconds_total_other 100
sfu_worker_send_cpu_seconds_total{worker=\"0\"} 1
sfu_worker_send_cpu_seconds_total{worker=\"1\"} 0.5
sfu_rtp_packets_out_total{worker=\"0\",kind=\"audio\"} 7
";
        assert_eq!(worker_send_cpu(text), Some((4.0, 1.5)));
        let without: String = text
            .lines()
            .filter(|l| !l.starts_with("sfu_worker_send"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(
            worker_send_cpu(&without),
            None,
            "a server without the metric"
        );
        assert_eq!(worker_send_cpu(""), None);
        assert_eq!(worker_send_cpu("<html>not metrics</html>"), None);
    }

    #[test]
    fn urls() {
        let table = [
            ("http://127.0.0.1:8080", Some(("127.0.0.1:8080", ""))),
            ("http://127.0.0.1:8080/", Some(("127.0.0.1:8080", ""))),
            ("http://localhost", Some(("localhost:80", ""))),
            ("http://localhost:9/sfu/", Some(("localhost:9", "/sfu"))),
            ("http://[::1]:8080", Some(("[::1]:8080", ""))),
            ("http://[::1]", Some(("[::1]:80", ""))),
            ("https://x", None),
            ("http://", None),
        ];
        for (url, want) in table {
            let got = Target::parse(url).ok();
            assert_eq!(
                got.as_ref()
                    .map(|t| (t.authority.as_str(), t.prefix.as_str())),
                want,
                "{url}"
            );
        }
        let t = Target::parse_ws("ws://127.0.0.1:8188").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.port()),
            ("127.0.0.1:8188", Some(8188))
        );
        assert!(Target::parse_ws("http://127.0.0.1:8188").is_err());
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(t.ws_url(), "ws://127.0.0.1:8080/ws");
        assert_eq!(t.port(), Some(8080));
    }
}
