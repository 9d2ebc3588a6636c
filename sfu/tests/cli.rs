//! The `sfu` binary: `sfu token`, `sfu room ...` against a running server, configuration errors,
//! and serving in development mode and with keys. Everything listens on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use signal::auth::KeySet;

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

    let out = sfu(&["room", "delete", "standup", "--url", url], &keys_env());
    assert!(out.status.success(), "{}", text(&out.stderr));
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
