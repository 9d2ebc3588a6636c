//! The `sfu` binary: `sfu token`, `sfu room ...` against a running server, configuration errors,
//! and serving in development mode and with keys. Everything listens on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use signal::auth::KeySet;
use tokio::sync::watch;

mod server_process;

const KEY: &str = "APIcli";
const SECRET: &str = "cli-secret-cli-secret-cli-secret-cli";

fn sfu(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfu"));
    cmd.args(args);
    for var in [
        "SFU_API_KEY",
        "SFU_API_SECRET",
        "SFU_CONFIG",
        "SFU_URL",
        "SFU_HTTP",
        "SFU_WEBHOOK_URLS",
        "SFU_DEV",
        "SFU_METRICS",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run sfu")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn keys_env() -> [(&'static str, &'static str); 2] {
    [("SFU_API_KEY", KEY), ("SFU_API_SECRET", SECRET)]
}

#[test]
fn token_mints_a_token_with_the_configured_key() {
    let out = sfu(
        &[
            "token",
            "--room",
            "r1",
            "--identity",
            "ann",
            "--name",
            "Ann",
            "--ttl",
            "1h",
            "--grants",
            "join,subscribe",
        ],
        &keys_env(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let claims = KeySet::single(KEY, SECRET)
        .unwrap()
        .authorize_join(Some(&token), "r1")
        .unwrap();
    assert_eq!(claims.sub, "ann");
    assert_eq!(claims.name.as_deref(), Some("Ann"));
    assert_eq!(claims.exp - claims.nbf, 3600);
    assert!(claims.grants.subscribe && !claims.grants.publish);

    // From a configuration file, with --admin.
    let dir = std::env::temp_dir().join(format!("sfu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sfu.toml");
    std::fs::write(&file, format!("[keys]\n{KEY} = \"{SECRET}\"\n")).unwrap();
    let out = sfu(
        &["token", "--admin", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let claims = KeySet::single(KEY, SECRET)
        .unwrap()
        .verify(text(&out.stdout).trim())
        .unwrap();
    assert!(claims.grants.room_admin && !claims.grants.join);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_refuses_what_it_cannot_do() {
    let out = sfu(&["token", "--room", "r", "--identity", "a"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no API key configured"),
        "{}",
        text(&out.stderr)
    );

    let out = sfu(&["token", "--identity", "a"], &keys_env());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--room"),
        "{}",
        text(&out.stderr)
    );

    let out = sfu(
        &["token", "--room", "r", "--identity", "a", "--grants", "fly"],
        &keys_env(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown grant"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_configuration_is_refused_naming_the_key() {
    let out = sfu(&["--room-max-participants", "100000"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("room.max_participants"), "{err}");

    let out = sfu(&["serve", "--config", "/nonexistent/sfu.toml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("config: cannot read"),
        "{}",
        text(&out.stderr)
    );

    let out = sfu(&[], &[("SFU_WEBHOOK_URLS", "ftp://example.com/")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("webhook.urls[0]"),
        "{}",
        text(&out.stderr)
    );
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    base: String,
    banner: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sfu` on free loopback ports and waits for its `SFU ready` line.
fn serve(env: &[(&str, &str)]) -> Server {
    serve_on("127.0.0.1:0", &[], env)
}

/// Starts `sfu` with `--http http` and `extra` flags and waits for its `SFU ready` line.
fn serve_on(http: &str, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sfu"));
    cmd.args(extra);
    cmd.args([
        "--http",
        http,
        "--udp-port",
        "0",
        "--advertise-ip",
        "127.0.0.1",
        "--workers",
        "1",
        "--log",
        "warn",
    ]);
    for var in [
        "SFU_API_KEY",
        "SFU_API_SECRET",
        "SFU_CONFIG",
        "SFU_DEV",
        "SFU_METRICS",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sfu");
    // From here on, dropping `server` stops the process.
    let mut server = Server {
        child,
        base: String::new(),
        banner: Vec::new(),
    };
    let stdout = server.child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the server did not say it was ready");
        server.banner.push(line.clone());
        if !line.starts_with("SFU ready") {
            continue;
        }
        if let Some(rest) = line.split("http://").nth(1) {
            let addr = rest.split('/').next().unwrap_or_default();
            server.base = format!("http://{addr}").replace("localhost", "127.0.0.1");
            return server;
        }
    }
}

fn get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::get(url).await.expect("GET");
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

#[test]
fn development_mode_prints_a_key_and_serves_dev_tokens() {
    let server = serve(&[]);
    let banner = server.banner.join("\n");
    assert!(banner.contains("DEVELOPMENT MODE"), "{banner}");
    assert!(banner.contains("Loopback only"), "{banner}");
    assert!(
        banner.contains("SFU ready (development mode, loopback only)"),
        "{banner}"
    );
    let key = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("API key:"))
        .expect("key printed")
        .trim()
        .to_owned();
    let secret = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("API secret:"))
        .expect("secret printed")
        .trim()
        .to_owned();
    let (status, body) = get(&format!("{}/api/dev/token?room=demo&name=Ann", server.base));
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    KeySet::single(&key, &secret)
        .unwrap()
        .authorize_join(token["token"].as_str(), "demo")
        .unwrap();

    // The printed key works for the client commands.
    let env = [
        ("SFU_API_KEY", key.as_str()),
        ("SFU_API_SECRET", secret.as_str()),
    ];
    let out = sfu(&["room", "list", "--url", &server.base], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn with_keys_there_is_no_dev_endpoint_and_room_commands_work() {
    let server = serve(&keys_env());
    assert!(!server.banner.join("\n").contains("DEVELOPMENT"));
    let (status, body) = get(&format!("{}/api/dev/token?room=demo&name=Ann", server.base));
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not_found"));

    let url = server.base.as_str();
    let out = sfu(
        &[
            "room",
            "create",
            "standup",
            "--max-participants",
            "8",
            "--empty-timeout",
            "10m",
            "--metadata",
            "daily",
            "--url",
            url,
            "--json",
        ],
        &keys_env(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let room: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(room["max_participants"], 8);
    assert_eq!(room["empty_timeout"], 600);

    let out = sfu(&["room", "create", "standup", "--url", url], &keys_env());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("conflict"),
        "{}",
        text(&out.stderr)
    );

    let out = sfu(&["room", "list", "--url", url], &keys_env());
    let table = text(&out.stdout);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("standup") && table.contains("10m") && table.contains("daily"));
    let out = sfu(&["room", "list", "--json", "--url", url], &keys_env());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["rooms"][0]["name"], "standup");

    let out = sfu(&["room", "create", "retro", "--url", url], &keys_env());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created = text(&out.stdout);
    assert!(
        created.starts_with("created room retro\nNAME") && created.contains("5m"),
        "{created}"
    );
    let out = sfu(
        &["room", "delete", "retro", "--json", "--url", url],
        &keys_env(),
    );
    let deleted: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        deleted,
        serde_json::json!({"room": "retro", "deleted": true})
    );

    let out = sfu(&["room", "delete", "standup", "--url", url], &keys_env());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "deleted room standup\n");
    let out = sfu(&["room", "delete", "standup", "--url", url], &keys_env());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not_found"),
        "{}",
        text(&out.stderr)
    );

    // A key the server does not know is refused.
    let other = [("SFU_API_KEY", "APIother"), ("SFU_API_SECRET", SECRET)];
    let out = sfu(&["room", "list", "--url", url], &other);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown API key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn development_mode_refuses_an_address_other_machines_reach_without_dev() {
    for (args, env) in [
        (&["--http", "0.0.0.0:0"][..], &[][..]),
        (&["serve", "--http", "0.0.0.0:0", "--check"], &[]),
        (&[], &[("SFU_HTTP", "0.0.0.0:0")]),
    ] {
        let out = sfu(args, env);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.starts_with("invalid configuration: http: 0.0.0.0:0 can be reached"),
            "{err}"
        );
        assert!(
            err.contains("--dev") && err.contains("SFU_API_KEY"),
            "{err}"
        );
        assert!(text(&out.stdout).is_empty(), "nothing started");
    }

    // --dev serves there on purpose, and says so.
    let server = serve_on("0.0.0.0:0", &["--dev"], &[]);
    let banner = server.banner.join("\n");
    assert!(banner.contains("EXPOSED (--dev)"), "{banner}");
    assert!(
        banner.contains("SFU ready (development mode, reachable from other machines)"),
        "{banner}"
    );
    let (status, _) = get(&format!("{}/api/dev/token?room=demo&name=Ann", server.base));
    assert_eq!(status, 200);
    drop(server);

    // With keys every interface is fine, and --dev is refused.
    let server = serve_on("0.0.0.0:0", &[], &keys_env());
    assert!(!server.banner.join("\n").contains("DEVELOPMENT"));
    drop(server);
    let out = sfu(&["--dev", "--check"], &keys_env());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("invalid configuration: dev:"),
        "{}",
        text(&out.stderr)
    );
}

/// The value of `NAME=value` in `text`.
fn env_line<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn generate_keys_prints_a_new_pair_the_server_accepts() {
    let out = sfu(&["generate-keys"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let key = env_line(&printed, "SFU_API_KEY").to_owned();
    let secret = env_line(&printed, "SFU_API_SECRET").to_owned();
    assert!(key.starts_with("API") && key.len() == 15, "{key}");
    assert_eq!(secret.len(), 48);
    assert!(
        secret.chars().all(|c| c.is_ascii_alphanumeric()),
        "{secret}"
    );
    assert!(
        printed.contains(&format!("[keys]\n{key} = \"{secret}\"\n")),
        "{printed}"
    );
    KeySet::single(&key, &secret).unwrap();

    // Every run makes another pair.
    let again = text(&sfu(&["generate-keys", "--format", "env"], &[]).stdout);
    assert_eq!(again.lines().count(), 2, "{again}");
    assert_ne!(env_line(&again, "SFU_API_KEY"), key);
    assert_ne!(env_line(&again, "SFU_API_SECRET"), secret);
    let json: serde_json::Value =
        serde_json::from_slice(&sfu(&["generate-keys", "--format", "json"], &[]).stdout).unwrap();
    assert!(json["api_key"].as_str().unwrap().starts_with("API"));
    assert_eq!(json["api_secret"].as_str().unwrap().len(), 48);

    // The configuration snippet is a valid configuration with that key, and the environment
    // variables work for the client commands.
    let dir = std::env::temp_dir().join(format!("sfu-cli-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sfu.toml");
    let toml = text(&sfu(&["generate-keys", "--format", "toml"], &[]).stdout);
    std::fs::write(&file, &toml).unwrap();
    let out = sfu(
        &["serve", "--config", file.to_str().unwrap(), "--check"],
        &[],
    );
    assert!(out.status.success(), "{toml}: {}", text(&out.stderr));
    let env = [
        ("SFU_API_KEY", key.as_str()),
        ("SFU_API_SECRET", secret.as_str()),
    ];
    let out = sfu(&["token", "--room", "r", "--identity", "ann"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    KeySet::single(&key, &secret)
        .unwrap()
        .authorize_join(Some(text(&out.stdout).trim()), "r")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn logs_have_no_colour_codes_when_stdout_is_not_a_terminal() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["--http", "127.0.0.1:0", "--udp-port", "0", "--workers", "1"])
        .args(["--advertise-ip", "127.0.0.1", "--log", "info"])
        .env_remove("SFU_API_KEY")
        .env_remove("SFU_API_SECRET")
        .env_remove("SFU_CONFIG")
        .env_remove("SFU_LOG_JSON")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sfu");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            if tx.send(std::mem::take(&mut line)).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("SFU ready") {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => seen.extend(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let output = String::from_utf8_lossy(&seen);
    assert!(output.contains("SFU ready"), "{output}");
    assert!(
        output.contains("INFO") && output.contains("media ready"),
        "a log line: {output}"
    );
    assert!(
        !seen.contains(&0x1b),
        "an ESC byte in piped logs: {output:?}"
    );
}

#[test]
fn client_commands_find_the_server_as_it_is_configured() {
    let server = serve(&keys_env());
    let port = server.base.rsplit(':').next().unwrap().to_owned();
    let list = |args: &[&str], env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.extend(keys_env());
        let out = sfu(&[&["room", "list"], args].concat(), &env);
        assert!(
            out.status.success(),
            "{args:?} {env:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stdout).starts_with("NAME"));
    };
    // --http, SFU_HTTP (a wildcard address is called on 127.0.0.1), the file, SFU_URL.
    list(&["--http", &format!("127.0.0.1:{port}")], &[]);
    list(&[], &[("SFU_HTTP", &format!("0.0.0.0:{port}"))]);
    let dir = std::env::temp_dir().join(format!("sfu-cli-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sfu.toml");
    std::fs::write(&file, format!("http = \"0.0.0.0:{port}\"\n")).unwrap();
    list(&["--config", file.to_str().unwrap()], &[]);
    list(&[], &[("SFU_URL", &server.base)]);
    // --url wins over the rest.
    list(
        &["--http", "127.0.0.1:1", "--url", &server.base],
        &[("SFU_HTTP", "127.0.0.1:1")],
    );
    let _ = std::fs::remove_dir_all(&dir);

    // Nothing listening: say so, and how to point elsewhere.
    let closed = server_process::free_port();
    for args in [
        vec!["room", "list", "--http", "0.0.0.0:PORT"],
        vec![
            "participant",
            "list",
            "r",
            "--json",
            "--url",
            "http://127.0.0.1:PORT",
        ],
    ] {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.replace("PORT", &closed.to_string()))
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = sfu(&args, &keys_env());
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            text(&out.stderr),
            format!(
                "error: connection refused, is the server running at http://127.0.0.1:{closed}? \
                 (--url)\n"
            ),
            "{args:?}"
        );
    }
}

/// `sfu` with `args` and `env` off the async runtime's threads.
async fn sfu_async(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        sfu(&args, &env)
    })
    .await
    .unwrap()
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participant_commands_list_mute_and_remove_on_a_real_server() {
    let server = server_process::Server::start(&[]).await;
    let env = [
        ("SFU_API_KEY", server_process::KEY),
        ("SFU_API_SECRET", server_process::SECRET),
    ];
    let http = server.http.to_string();
    let run = |args: &[&str]| {
        let args = [args, &["--http", &http]].concat();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            sfu_async(&args, &env).await
        }
    };

    let (stop, stopped) = watch::channel(false);
    let ann = tokio::spawn(server_process::call(
        server.ws_url(),
        "standup",
        "ann",
        Duration::from_secs(60),
        Arc::new(AtomicU64::new(0)),
        stopped,
    ));
    // Ann's microphone is published once her connection is up. Until her join made the room,
    // the list says `not_found`.
    let deadline = Instant::now() + server_process::STEP;
    let list = loop {
        let out = run(&["participant", "list", "standup", "--json"]).await;
        if out.status.success() {
            let list = json_of(&out);
            if list["participants"][0]["tracks"][0]["id"].is_string() {
                break list;
            }
        } else {
            assert!(
                text(&out.stderr).contains("not_found"),
                "{}",
                text(&out.stderr)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no track published: {}",
            text(&out.stdout)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let p = &list["participants"][0];
    assert_eq!(p["identity"], "ann");
    let id = p["id"].as_str().unwrap().to_owned();
    let track = p["tracks"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(p["tracks"][0]["kind"], "audio");

    let table = text(&run(&["participant", "list", "standup"]).await.stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains(&id) && table.contains("ann") && table.contains(&format!("audio:{track}")),
        "{table}"
    );

    // Mute by identity, all tracks: the answer is the muted track.
    let muted = json_of(&run(&["participant", "mute", "standup", "ann", "--json"]).await);
    assert_eq!(muted["participant"], id.as_str());
    assert_eq!(muted["tracks"][0]["id"], track.as_str());
    assert_eq!(muted["tracks"][0]["muted"], true);
    let table = text(&run(&["participant", "list", "standup"]).await.stdout);
    assert!(table.contains(&format!("audio:{track} (muted)")), "{table}");

    // By id and kind: she has no camera.
    let out = run(&["participant", "mute", "standup", &id, "--kind", "video"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("publishes no video track"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&[
        "participant",
        "mute",
        "standup",
        &id,
        "--track",
        &track,
        "--unmute",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("unmuted audio track {track} of {id} (ann)\n")
    );

    // Remove: someone who is not there, then Ann.
    let out = run(&["participant", "remove", "standup", "bob"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not_found"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["participant", "list", "nowhere"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not_found"),
        "{}",
        text(&out.stderr)
    );
    let removed = json_of(&run(&["participant", "remove", "standup", "ann", "--json"]).await);
    assert_eq!(removed["removed"], true);
    assert_eq!(removed["participant"]["id"], id.as_str());
    let deadline = Instant::now() + server_process::STEP;
    loop {
        let list = json_of(&run(&["participant", "list", "standup", "--json"]).await);
        if list["participants"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "still there: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send_replace(true);
    ann.await.unwrap();
}
