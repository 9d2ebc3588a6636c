use std::time::Duration;

use clap::Parser;

use super::*;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ServeArgs,
}

fn args(flags: &[&str]) -> ServeArgs {
    Cli::try_parse_from(std::iter::once("sfu").chain(flags.iter().copied()))
        .unwrap()
        .args
}

fn load(toml: &str, flags: &[&str]) -> Result<Config, ConfigError> {
    Config::from_toml(toml, &args(flags))
}

fn key_of(r: Result<Config, ConfigError>) -> String {
    r.unwrap_err().key
}

#[test]
fn defaults_are_valid_and_mean_development_mode() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.http, DEFAULT_DEV_HTTP);
    assert_eq!(c.http.to_string(), "127.0.0.1:8080");
    c.check_exposure().unwrap();
    assert!(!c.dev && !c.is_exposed_dev_mode());
    assert_eq!(c.udp_bind(2).port(), 50002);
    assert!(!c.candidate_ips().unwrap().is_empty());
    assert!(c.is_dev_mode());
    assert!(c.room.auto_create);
    assert_eq!(c.room.empty_timeout, Duration::from_secs(300));
    assert_eq!(c.webhook.max_attempts, 5);
}

#[test]
fn development_mode_listens_on_loopback_unless_told_otherwise() {
    // With keys the default address is every interface.
    let keyed = load(&format!("[keys]\nk1 = \"{SECRET}\"\n"), &[]).unwrap();
    assert_eq!(keyed.http, DEFAULT_HTTP);
    keyed.check_exposure().unwrap();
    let keyed = load("", &["--api-key", "k1", "--api-secret", SECRET]).unwrap();
    assert_eq!(keyed.http.to_string(), "0.0.0.0:8080");

    // Without keys a reachable address is refused, saying what to do.
    for flags in [
        &["--http", "0.0.0.0:8080"][..],
        &["--http", "[::]:8080"],
        &["--http", "192.0.2.10:8080"],
    ] {
        let c = load("", flags).unwrap();
        let e = c.check_exposure().unwrap_err();
        assert_eq!(e.key, "http", "{e}");
        for hint in ["no API keys", "--dev", "SFU_API_KEY", "sfu generate-keys"] {
            assert!(e.message.contains(hint), "{hint}: {e}");
        }
    }
    let e = load("http = \"0.0.0.0:9000\"", &[])
        .unwrap()
        .check_exposure()
        .unwrap_err();
    assert!(e.to_string().starts_with("http: 0.0.0.0:9000 "), "{e}");

    // Loopback addresses need nothing.
    for addr in ["127.0.0.1:9000", "127.0.0.2:9000", "[::1]:9000"] {
        load("", &["--http", addr])
            .unwrap()
            .check_exposure()
            .unwrap();
    }

    // --dev (or dev = true, SFU_DEV) allows it, and keeps the loopback default by itself.
    let c = load("", &["--dev", "--http", "0.0.0.0:8080"]).unwrap();
    c.check_exposure().unwrap();
    assert!(c.dev && c.is_exposed_dev_mode());
    let c = load("dev = true\nhttp = \"0.0.0.0:8080\"", &[]).unwrap();
    c.check_exposure().unwrap();
    assert_eq!(load("", &["--dev"]).unwrap().http, DEFAULT_DEV_HTTP);
    assert!(!load("", &["--dev=false"]).unwrap().dev);

    // --dev with keys contradicts itself.
    assert_eq!(
        key_of(load(
            "",
            &["--dev", "--api-key", "k1", "--api-secret", SECRET]
        )),
        "dev"
    );
}

#[test]
fn metrics_may_have_an_address_of_their_own() {
    assert_eq!(load("", &[]).unwrap().metrics, None);
    let c = load("metrics = \"127.0.0.1:9090\"", &[]).unwrap();
    assert_eq!(c.metrics.unwrap().to_string(), "127.0.0.1:9090");
    let c = load(
        "metrics = \"127.0.0.1:9090\"",
        &["--metrics", "0.0.0.0:9100"],
    )
    .unwrap();
    assert_eq!(c.metrics.unwrap().to_string(), "0.0.0.0:9100");
    assert_eq!(
        key_of(load(
            "",
            &["--http", "127.0.0.1:9000", "--metrics", "127.0.0.1:9000"]
        )),
        "metrics"
    );
    assert_eq!(key_of(load("metrics = \"nowhere\"", &[])), "metrics");
}

#[test]
fn the_old_flags_still_work() {
    let c = load(
        "",
        &[
            "--http",
            "127.0.0.1:9000",
            "--udp-port",
            "40000",
            "--advertise-ip",
            "127.0.0.1",
            "--workers",
            "2",
            "--log",
            "debug",
            "--log-json",
        ],
    )
    .unwrap();
    assert_eq!(c.http.to_string(), "127.0.0.1:9000");
    assert_eq!(c.udp_bind(1).port(), 40001);
    assert_eq!(
        c.candidate_ips().unwrap(),
        ["127.0.0.1".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(c.worker_count(), 2);
    assert!(c.log_json);
    assert_eq!(
        load("", &["--udp-port", "0"]).unwrap().udp_bind(3).port(),
        0
    );
}

#[test]
fn flags_win_over_the_file() {
    let toml = format!(
        r#"
http = "127.0.0.1:7000"
workers = 3
log_json = true

[keys]
k1 = "{SECRET}"
k2 = "{SECRET}"

[room]
auto_create = false
max_participants = 10
empty_timeout = "2m"

[webhook]
urls = ["http://127.0.0.1:9/hook"]
api_key = "k2"
initial_backoff = 1
"#
    );
    let c = load(&toml, &[]).unwrap();
    assert_eq!(c.http.port(), 7000);
    assert!(!c.is_dev_mode());
    assert_eq!(c.keys.names().collect::<Vec<_>>(), ["k1", "k2"]);
    assert_eq!(c.client_key.as_deref(), Some("k1"));
    assert_eq!(c.room.max_participants, 10);
    assert_eq!(c.room.empty_timeout, Duration::from_secs(120));
    assert_eq!(c.webhook.initial_backoff, Duration::from_secs(1));
    let w = c.webhook_config(&c.keys);
    assert_eq!((w.key.as_str(), w.secret.as_str()), ("k2", SECRET));

    let c = load(
        &toml,
        &[
            "--http",
            "127.0.0.1:7001",
            "--log-json=false",
            "--room-auto-create",
            "--room-max-participants",
            "4",
            "--webhook-url",
            "https://example.com/a,https://example.com/b",
            "--api-key",
            "k2",
        ],
    )
    .unwrap();
    assert_eq!(c.http.port(), 7001);
    assert!(!c.log_json);
    assert!(c.room.auto_create);
    assert_eq!(c.room.max_participants, 4);
    assert_eq!(c.webhook.urls.len(), 2);
    assert_eq!(c.client_key.as_deref(), Some("k2"));
}

#[test]
fn errors_name_the_key() {
    assert_eq!(key_of(load("", &["--workers", "0"])), "workers");
    assert_eq!(
        key_of(load("", &["--advertise-ip", "0.0.0.0"])),
        "advertise_ip"
    );
    assert_eq!(
        key_of(load("", &["--udp-port", "65535", "--workers", "2"])),
        "udp_port"
    );
    assert_eq!(key_of(load("[keys]\nk1 = \"short\"", &[])), "keys.k1");
    assert_eq!(
        key_of(load("[room]\nmax_participants = 100000", &[])),
        "room.max_participants"
    );
    assert_eq!(
        key_of(load("[room]\nempty_timeout = \"0s\"", &[])),
        "room.empty_timeout"
    );
    assert_eq!(
        key_of(load("[webhook]\nurls = [\"http://a/\", \"ftp://x\"]", &[])),
        "webhook.urls[1]"
    );
    assert_eq!(
        key_of(load("[webhook]\napi_key = \"nope\"", &[])),
        "webhook.api_key"
    );
    assert_eq!(key_of(load("", &["--api-key", "k9"])), "api_secret");
    assert_eq!(key_of(load("", &["--api-secret", SECRET])), "api_key");
    assert_eq!(key_of(load("", &["--log", "a=b=c"])), "log");

    let e = load("workers = 2\n\n[room]\nmax_participant = 3", &[]).unwrap_err();
    assert_eq!(e.key, "room.max_participant", "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
    assert!(e.message.contains("line 4"), "{e}");
    let e = load("[room]\nmax_participants = \"many\"", &[]).unwrap_err();
    assert_eq!(e.key, "room.max_participants", "{e}");
    assert_eq!(key_of(load("udp_port = 70000", &[])), "udp_port");
    assert_eq!(key_of(load("[nope]\nx = 1", &[])), "config");
}

#[test]
fn the_configuration_doc_lists_every_key() {
    let doc = include_str!("../../../docs/configuration.md");
    for key in KEYS {
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/configuration.md lacks `{key}`"
        );
    }
}

#[test]
fn limits_shutdown_and_tls_come_from_file_and_flags() {
    let text = "[limits]\nmax_participants = 10\nmax_participants_per_worker = 4\n\
                [shutdown]\ndrain_timeout = \"5s\"\n\
                [tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\n";
    let c = load(text, &["--limits-max-participants", "12"]).unwrap();
    assert_eq!(c.limits.max_participants, 12);
    assert_eq!(c.limits.max_participants_per_worker, 4);
    assert_eq!(c.drain_timeout, Duration::from_secs(5));
    let tls = c.tls.unwrap();
    assert_eq!(
        (tls.cert.to_str(), tls.key.to_str()),
        (Some("/c.pem"), Some("/k.pem"))
    );
    assert_eq!(Config::default().drain_timeout, Duration::from_secs(30));
    assert_eq!(Config::default().max_input_age, Duration::from_millis(100));
    let c = load("[limits]\nmax_input_age = \"250ms\"\n", &[]).unwrap();
    assert_eq!(c.max_input_age, Duration::from_millis(250));
    let c = load("", &["--limits-max-input-age", "0s"]).unwrap();
    assert_eq!(c.max_input_age, Duration::ZERO);
    for bad in ["5ms", "11s"] {
        let text = format!("[limits]\nmax_input_age = \"{bad}\"\n");
        assert_eq!(key_of(load(&text, &[])), "limits.max_input_age", "{bad}");
    }
    assert!(Config::default().tls.is_none());
    assert_eq!(key_of(load("[tls]\ncert = \"/c.pem\"", &[])), "tls.key");
    assert_eq!(key_of(load("", &["--tls-key", "/k.pem"])), "tls.cert");
    assert_eq!(
        key_of(load("[shutdown]\ndrain_timeout = \"2h\"", &[])),
        "shutdown.drain_timeout"
    );
}

#[test]
fn participant_limits_come_from_file_and_flags_and_are_checked() {
    let c = load("", &[]).unwrap();
    assert_eq!(c.participant, ParticipantLimits::default());
    let text = "[participant]\nmax_tracks = 4\nmax_screen_shares = 2\noffer_burst = 3\noffers_per_second = 0.5\n";
    let c = load(text, &["--participant-max-tracks", "6"]).unwrap();
    assert_eq!(c.participant.max_tracks, 6);
    assert_eq!(c.participant.max_screen_shares, 2);
    assert_eq!(c.participant.offer_burst, 3.0);
    assert_eq!(c.participant.offers_per_second, 0.5);
    let c = load("", &["--participant-max-screen-shares", "0"]).unwrap();
    assert_eq!(c.participant.max_screen_shares, 0);
    for (text, key) in [
        ("[participant]\nmax_tracks = 0\n", "participant.max_tracks"),
        ("[participant]\nmax_tracks = 65\n", "participant.max_tracks"),
        (
            "[participant]\nmax_screen_shares = 9\n",
            "participant.max_screen_shares",
        ),
        (
            "[participant]\noffer_burst = 0.5\n",
            "participant.offer_burst",
        ),
        (
            "[participant]\noffers_per_second = 0\n",
            "participant.offers_per_second",
        ),
    ] {
        assert_eq!(load(text, &[]).unwrap_err().key, key, "{text}");
    }
}

#[test]
fn the_room_video_codecs_come_from_file_and_flags_and_are_checked() {
    use crate::core::codecs::VideoCodecs;
    assert!(load("", &[]).unwrap().room.video_codecs.is_any());
    let c = load("[room]\nvideo_codecs = [\"H264\", \"vp8\"]\n", &[]).unwrap();
    assert_eq!(c.room.video_codecs.names(), ["h264", "vp8"]);
    let c = load(
        "[room]\nvideo_codecs = [\"h264\"]\n",
        &["--room-video-codecs", "vp8"],
    )
    .unwrap();
    assert_eq!(c.room.video_codecs, VideoCodecs::parse(&["vp8"]).unwrap());
    let c = load("[room]\nvideo_codecs = [\"vp9\", \"vp8\"]\n", &[]).unwrap();
    assert_eq!(c.room.video_codecs.names(), ["vp9", "vp8"]);
    assert_eq!(
        key_of(load("[room]\nvideo_codecs = [\"h265\"]\n", &[])),
        "room.video_codecs"
    );
    let e = load("", &["--room-video-codecs", "vp8,vp8"]).unwrap_err();
    assert_eq!(e.key, "room.video_codecs");
    assert!(e.message.contains("twice"), "{e}");
}

#[test]
fn the_cluster_secret_and_room_spreading_come_from_file_and_flags() {
    let redis = "[cluster]\nredis_url = \"redis://127.0.0.1:6379/0\"\n";
    let c = load(redis, &[]).unwrap().cluster.unwrap();
    assert_eq!(c.secret, None, "rooms span nodes only with a secret");
    assert_eq!(
        c.room_participants_per_node,
        DEFAULT_ROOM_PARTICIPANTS_PER_NODE
    );
    let file = format!(
        "{redis}secret = \"{}\"\nroom_participants_per_node = 50\n",
        "s".repeat(32)
    );
    let c = load(&file, &[]).unwrap().cluster.unwrap();
    assert_eq!(c.secret.as_deref().map(str::len), Some(32));
    assert_eq!(c.room_participants_per_node, 50);
    let c = load(&file, &["--cluster-room-participants-per-node", "0"])
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(c.room_participants_per_node, 0, "the flag wins");
    assert_eq!(c.max_cpu_percent, 0, "no CPU limit by default");
    let c = load(&format!("{file}max_cpu_percent = 150\n"), &[])
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(c.max_cpu_percent, 150);
    let c = load(&file, &["--cluster-max-cpu-percent", "80"])
        .unwrap()
        .cluster
        .unwrap();
    assert_eq!(c.max_cpu_percent, 80);
    assert_eq!(
        key_of(load(redis, &["--cluster-max-cpu-percent", "200000"])),
        "cluster.max_cpu_percent"
    );
    assert_eq!(
        key_of(load(redis, &["--cluster-secret", "too-short"])),
        "cluster.secret"
    );
}
