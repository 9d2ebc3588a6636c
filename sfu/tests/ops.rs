//! Operations, against the real `sfu` binary on 127.0.0.1: metrics move when media flows,
//! readiness and the drain on SIGTERM, admission control, and a WSS join over TLS with a
//! self-signed certificate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

mod server_process;

use server_process::{call, connect, Server, Ws, STEP};

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_when_media_flows() {
    let server = Server::start(&[]).await;
    let before = server.metrics().await;
    let audio_in = |t: &str| metric(t, "sfu_rtp_packets_in_total", &[r#"kind="audio""#]);
    let audio_out = |t: &str| metric(t, "sfu_rtp_packets_out_total", &[r#"kind="audio""#]);

    let (stop, stopped) = watch::channel(false);
    let (got_a, got_b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let a = tokio::spawn(call(
        server.ws_url(),
        "call",
        "ann",
        3 * STEP,
        Arc::clone(&got_a),
        stopped.clone(),
    ));
    let b = tokio::spawn(call(
        server.ws_url(),
        "call",
        "bob",
        3 * STEP,
        Arc::clone(&got_b),
        stopped,
    ));
    let in_call = |t: &str| {
        metric(t, "sfu_participants", &[]) == 2.0
            && metric(t, "sfu_rooms", &[]) == 1.0
            && metric(t, "sfu_tracks", &[]) == 2.0
    };
    let during = server.metrics_until(STEP, in_call).await;
    // Workers publish once a second: the call goes on until the media has gone both ways and
    // the server's counts of it are out.
    let counted = |t: &str| {
        audio_in(t) - audio_in(&before) > 50.0
            && audio_out(t) - audio_out(&before) > 20.0
            && metric(t, "sfu_forwarding_delay_seconds_count", &[]) > 20.0
    };
    let received = || (got_a.load(Ordering::Relaxed), got_b.load(Ordering::Relaxed));
    server
        .metrics_until(STEP, |t| {
            let (a, b) = received();
            a > 10 && b > 10 && counted(t)
        })
        .await;
    stop.send_replace(true);
    a.await.unwrap();
    b.await.unwrap();
    let (got_a, got_b) = received();
    assert!(got_a > 10 && got_b > 10, "media arrived: {got_a}, {got_b}");
    let after = server.metrics_until(STEP, counted).await;

    assert_eq!(metric(&during, "sfu_participants", &[]), 2.0, "{during}");
    assert_eq!(metric(&during, "sfu_rooms", &[]), 1.0);
    assert_eq!(metric(&during, "sfu_tracks", &[]), 2.0);
    assert!(audio_in(&after) - audio_in(&before) > 50.0, "{after}");
    assert!(audio_out(&after) - audio_out(&before) > 20.0, "{after}");
    let bytes = |t: &str| metric(t, "sfu_rtp_bytes_out_total", &[r#"kind="audio""#]);
    assert!(bytes(&after) - bytes(&before) > 20.0 * 60.0);
    assert!(
        metric(&after, "sfu_datagrams_in_total", &[])
            > metric(&before, "sfu_datagrams_in_total", &[])
    );
    assert!(metric(&after, "sfu_forwarding_delay_seconds_count", &[]) > 20.0);
    assert!(
        metric(
            &after,
            "sfu_forwarding_delay_seconds_bucket",
            &[r#"le="+Inf""#]
        ) > 20.0
    );
    assert_eq!(metric(&after, "sfu_joins_total", &[r#"result="ok""#]), 2.0);
    assert_eq!(metric(&after, "sfu_join_duration_seconds_count", &[]), 2.0);
    assert!(
        after.contains("sfu_dropped_packets_total{"),
        "every drop reason is listed"
    );
    assert!(after.contains("sfu_worker_cpu_seconds_total{worker=\"0\"}"));
    // The send calls' part of the worker's time: some, and not more than the whole.
    let send_cpu = metric(&after, "sfu_worker_send_cpu_seconds_total", &[]);
    assert!(
        send_cpu > 0.0 && send_cpu < metric(&after, "sfu_worker_cpu_seconds_total", &[]),
        "{after}"
    );
    assert_eq!(metric(&after, "sfu_ready", &[]), 1.0);

    // A real histogram: cumulative buckets, their +Inf bucket equal to the count, and a sum.
    let le = |bound: &str| {
        metric(
            &after,
            "sfu_forwarding_delay_seconds_bucket",
            &[&format!("le=\"{bound}\"")],
        )
    };
    let count = metric(&after, "sfu_forwarding_delay_seconds_count", &[]);
    assert_eq!(le("+Inf"), count, "{after}");
    assert!(le("0.00005") <= le("0.001") && le("0.001") <= le("0.5") && le("0.5") <= count);
    assert!(metric(&after, "sfu_forwarding_delay_seconds_sum", &[]) > 0.0);
    assert!(after.contains("# TYPE sfu_forwarding_delay_seconds histogram"));
    assert!(after.contains("# TYPE sfu_worker_cpu_seconds_total counter"));
    promtool_check_metrics(&after);
    metrics_are_documented(&after);
}

/// `promtool check metrics` on `text`: the exposition format and Prometheus' naming rules
/// (counters end in `_total`, histograms have buckets, every metric has help). Without promtool
/// the check is skipped with a note, except in CI (`CI` set), where `.ci/run` installs it.
fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var_os("CI").is_none(),
                "promtool is missing in CI: .ci/run installs the Debian package prometheus"
            );
            eprintln!(
                "SKIPPED promtool check metrics: promtool not found (apt-get install prometheus)"
            );
            return;
        }
        Err(e) => panic!("promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\n{text}"
    );
}

/// Every metric family of `text` is in the table of `docs/operations.md` with its type, and every
/// metric of the table is a name the source uses.
fn metrics_are_documented(text: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let doc = std::fs::read_to_string(format!("{root}/docs/operations.md")).unwrap();
    let section = doc
        .split("### Metrics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap();
    let mut documented = std::collections::BTreeMap::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        for name in cells[1].split(", ") {
            documented.insert(name.trim_matches('`').to_owned(), cells[2].to_owned());
        }
    }
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(
                documented.get(name).map(String::as_str),
                Some(kind),
                "docs/operations.md lists {name} as a {kind}"
            );
        }
    }
    // Every source file of the server, in any folder.
    let mut source = String::new();
    let mut dirs: Vec<std::path::PathBuf> = ["sfu/src", "signal/src"]
        .iter()
        .map(|d| std::path::Path::new(root).join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                source.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    for name in documented.keys() {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "docs/operations.md lists {name}, which the server does not have"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_their_own_address_are_off_the_public_port() {
    let port = server_process::free_port();
    let addr = format!("127.0.0.1:{port}");
    let server = Server::start(&["--metrics", &addr]).await;
    let (status, _) = server.get("/metrics").await;
    assert_eq!(status, 404, "not on the public port");
    assert_eq!(server.get("/readyz").await.0, 200, "readiness stays there");

    let url = format!("http://{addr}/metrics");
    let deadline = Instant::now() + STEP;
    let text = loop {
        // Workers publish once a second: wait for their first round.
        if let Ok(r) = reqwest::get(&url).await {
            assert_eq!(r.status(), 200);
            let text = r.text().await.unwrap();
            if text.contains("sfu_worker_cpu_seconds_total") || Instant::now() > deadline {
                break text;
            }
        }
        assert!(Instant::now() < deadline, "no metrics on {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_threads",
        "process_start_time_seconds",
        "sfu_ready",
        "sfu_forwarding_delay_seconds_count",
        "sfu_worker_cpu_seconds_total",
    ] {
        assert!(
            metric(&text, name, &[]) > 0.0 || name.starts_with("sfu_forwarding"),
            "{name}: {text}"
        );
    }
    let started = metric(&text, "process_start_time_seconds", &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        started <= now + 1.0 && started > now - 120.0,
        "{started} vs {now}"
    );
    assert!(metric(&text, "process_threads", &[]) >= 3.0, "{text}");
    promtool_check_metrics(&text);
    metrics_are_documented(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_fails_readiness_tells_clients_drains_and_exits_zero() {
    let mut server = Server::start(&["--shutdown-drain-timeout", "3s"]).await;
    assert_eq!(server.get("/readyz").await.0, 200);
    let mut ann = connect(&server.ws_url()).await;
    assert_eq!(ann.join("r", "ann").await["type"], "joined");

    server.sigterm();
    let notice = ann.until("shutting_down").await;
    assert_eq!(notice["drain_seconds"], 3);
    // The drain has started, so readiness fails from now on.
    assert_eq!(server.get("/readyz").await.0, 503);
    assert_eq!(server.get("/healthz").await.0, 200, "alive while draining");

    let mut late = connect(&server.ws_url()).await;
    let refused = late.join("r", "late").await;
    assert_eq!(refused["code"], "server_busy", "{refused}");

    let left = ann.until("left").await;
    assert_eq!(left["reason"], "server_shutdown");
    let status = server.exit_within(Duration::from_secs(8)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_the_drain_but_still_tells_clients_and_closes_cleanly() {
    let mut server = Server::start(&["--shutdown-drain-timeout", "60s"]).await;
    let mut ann = connect(&server.ws_url()).await;
    assert_eq!(ann.join("r", "ann").await["type"], "joined");

    server.sigterm();
    ann.until("shutting_down").await;
    let second = Instant::now();
    server.sigterm();
    let left = ann.until("left").await;
    assert_eq!(left["reason"], "server_shutdown");
    // A close frame, not a reset.
    let close = loop {
        match timeout(STEP, ann.0.next()).await.expect("no close in time") {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1000));
    let status = server.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    assert!(
        second.elapsed() < Duration::from_secs(10),
        "the drain went on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_beyond_the_node_limit_are_refused_as_busy() {
    let server = Server::start(&["--limits-max-participants", "1"]).await;
    let mut ann = connect(&server.ws_url()).await;
    assert_eq!(ann.join("r", "ann").await["type"], "joined");
    assert_eq!(server.get("/readyz").await.0, 503, "full");

    let mut bob = connect(&server.ws_url()).await;
    let refused = bob.join("other", "bob").await;
    assert_eq!(refused["code"], "server_busy", "{refused}");
    let m = server.metrics().await;
    assert_eq!(
        metric(&m, "sfu_joins_total", &[r#"result="server_busy""#]),
        1.0
    );

    ann.send(json!({"type": "leave"})).await;
    ann.until("left").await;
    let deadline = Instant::now() + STEP;
    while server.get("/readyz").await.0 != 200 {
        assert!(Instant::now() < deadline, "readyz never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bob.join("other", "bob").await["type"], "joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_join_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let dir = std::env::temp_dir().join(format!("sfu-ops-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path): (PathBuf, PathBuf) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let args = [
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ];
    let server = Server::start_with(&args, client, "https").await;
    assert_eq!(server.get("/readyz").await.0, 200);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let url = format!("wss://localhost:{}/ws", server.http.port());
    let (ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    let mut ws = Ws(ws);
    let joined = ws.join("secure", "ann").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["room"], "secure");

    // Plain HTTP on the TLS port is refused.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/healthz", server.http.port())).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The HTTP and signalling threads are woken without preempting a media worker (Linux's
/// `SCHED_BATCH`); the media workers keep the default policy.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signalling_threads_do_not_preempt_the_media_workers() {
    let server = Server::start(&[]).await;
    let pid = server.child.id();
    let mut policies: Vec<(String, i32)> = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap();
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let tid: libc::pid_t = task.file_name().to_string_lossy().parse().unwrap();
        // SAFETY: only reads the policy of a thread id; a gone thread gives -1.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        policies.push((comm.trim().to_owned(), policy));
    }
    let of = |prefix: &str| -> Vec<i32> {
        policies
            .iter()
            .filter(|(c, _)| c.starts_with(prefix))
            .map(|(_, p)| *p)
            .collect()
    };
    let http = of("sfu-http");
    let media = of("sfu-worker");
    assert!(!http.is_empty() && !media.is_empty(), "{policies:?}");
    assert!(http.iter().all(|p| *p == libc::SCHED_BATCH), "{policies:?}");
    assert!(
        media.iter().all(|p| *p == libc::SCHED_OTHER),
        "{policies:?}"
    );
}
