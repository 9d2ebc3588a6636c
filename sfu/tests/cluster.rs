//! Several `sfu` processes on loopback as one cluster, with a real `redis-server` as the shared
//! state: joins of one room through any node reach the node that owns it (`redirect`), a room
//! is owned by one node under concurrent first joins, a killed node's rooms are free again
//! within the time to live, Redis stopping and coming back is survived, the REST API of any node
//! answers for the cluster, and WHEP players are sent to their publisher's node.
//!
//! Needs Debian's `redis-server` (installed with `apt-get` when missing and running as root).

mod server_process;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use server_process::{connect, free_port, token, Server};

/// A `redis-server` on a free loopback port, without persistence; killed when dropped.
struct Redis {
    child: Child,
    port: u16,
}

fn redis_binary() -> &'static str {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        return "redis-server";
    }
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-q", "redis-server"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    assert!(
        Command::new("redis-server")
            .arg("--version")
            .output()
            .is_ok(),
        "these tests need Debian's redis-server (apt-get install redis-server)"
    );
    "redis-server"
}

impl Redis {
    fn start() -> Redis {
        Redis::start_on(free_port())
    }

    fn start_on(port: u16) -> Redis {
        let child = Command::new(redis_binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    async fn get(&self, key: &str) -> Option<String> {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("GET")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn node(redis: &Redis, id: &str) -> Server {
    Server::start(&["--redis", &redis.url(), "--node-id", id]).await
}

/// Waits until every node's `/readyz` says ready (each has reached Redis).
async fn all_ready(nodes: &[&Server]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in nodes {
        while n.get("/readyz").await.0 != 200 {
            assert!(Instant::now() < deadline, "a node never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every node has read every other one's entry: the demo page's Content-Security-Policy lists
    // the origins of the nodes a node knows.
    let http = reqwest::Client::new();
    for n in nodes {
        let others: Vec<String> = nodes
            .iter()
            .filter(|o| o.http != n.http)
            .map(|o| format!("http://{}", o.http))
            .collect();
        loop {
            let csp = match http.get(format!("http://{}/", n.http)).send().await {
                Ok(r) => r
                    .headers()
                    .get("content-security-policy")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                Err(_) => String::new(),
            };
            if others.iter().all(|o| csp.contains(o.as_str())) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never learnt of the others: {csp}",
                n.http
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Polls `probe` every 50 ms until it gives `Some`, for at most 10 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A joined participant: its socket, id and the URL it ended up on.
struct Joined<S> {
    ws: server_process::Ws<S>,
    id: String,
    url: String,
    redirects: usize,
}

/// Joins `room` as `identity` through `url`, following `redirect`s as the browser client does.
async fn join_via(
    url: &str,
    room: &str,
    identity: &str,
) -> Joined<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> {
    match try_join_via(url, room, identity).await {
        Ok(joined) => joined,
        Err(m) => panic!("join of {room} as {identity} through {url}: {m}"),
    }
}

/// [`join_via`], or the message that refused the join.
async fn try_join_via(
    url: &str,
    room: &str,
    identity: &str,
) -> Result<Joined<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>, Value> {
    let mut url = url.to_owned();
    for redirects in 0..4 {
        let mut ws = connect(&url).await;
        ws.send(json!({
            "type": "join", "version": 1, "room": room, "name": identity,
            "token": token(room, identity),
        }))
        .await;
        let m = ws.recv().await.expect("an answer to join");
        match m["type"].as_str() {
            Some("joined") => {
                return Ok(Joined {
                    ws,
                    id: m["participant_id"].as_str().unwrap().to_owned(),
                    url,
                    redirects,
                })
            }
            Some("redirect") => url = m["url"].as_str().unwrap().to_owned(),
            _ => return Err(m),
        }
    }
    panic!("too many redirects");
}

/// The first answer to a join through `url`, without following it.
async fn first_answer(url: &str, room: &str, identity: &str) -> Value {
    let mut ws = connect(url).await;
    ws.send(json!({
        "type": "join", "version": 1, "room": room, "name": identity,
        "token": token(room, identity),
    }))
    .await;
    ws.recv().await.expect("an answer to join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_through_any_node_reach_the_node_that_owns_the_room() {
    let redis = Redis::start();
    let (n1, n2, n3) = (
        node(&redis, "n1").await,
        node(&redis, "n2").await,
        node(&redis, "n3").await,
    );
    all_ready(&[&n1, &n2, &n3]).await;

    let started = Instant::now();
    let mut ann = join_via(&n1.ws_url(), "r", "ann").await;
    let first = started.elapsed();
    assert_eq!(
        ann.redirects, 0,
        "the first join places the room where it arrives (all idle)"
    );
    let owner = redis.get("sfu:room:r").await;
    assert_eq!(owner.as_deref(), Some("n1"));

    let started = Instant::now();
    let bob = join_via(&n2.ws_url(), "r", "bob").await;
    let redirected = started.elapsed();
    assert_eq!(bob.redirects, 1);
    assert_eq!(bob.url, n1.ws_url(), "bob was sent to the room's node");
    let carl = join_via(&n3.ws_url(), "r", "carl").await;
    assert_eq!(carl.url, n1.ws_url());

    // One room: ann hears of both.
    let b = ann.ws.until("participant_joined").await;
    let c = ann.ws.until("participant_joined").await;
    let mut seen = vec![
        b["participant"]["id"].as_str().unwrap().to_owned(),
        c["participant"]["id"].as_str().unwrap().to_owned(),
    ];
    seen.sort();
    let mut expected = vec![bob.id.clone(), carl.id.clone()];
    expected.sort();
    assert_eq!(seen, expected);
    println!("join through the owning node {first:?}, through another node (one redirect) {redirected:?}");

    // Another room: the least loaded node gets it (n1 has three participants now).
    let other = first_answer(&n1.ws_url(), "s", "dora").await;
    assert_eq!(other["type"], "redirect", "{other}");
    assert_ne!(other["url"], n1.ws_url().as_str());

    // The registry entry: where clients reach the node, and its load (once refreshed).
    let entry: Value = eventually("n1's entry counts its three participants", || async {
        let entry: Value = serde_json::from_str(&redis.get("sfu:node:n1").await?).ok()?;
        (entry["participants"] == 3).then_some(entry)
    })
    .await;
    assert_eq!(
        entry["url"],
        format!("http://{}", n1.http).as_str(),
        "{entry}"
    );
    assert_eq!(entry["participants"], 3, "{entry}");
    assert_eq!(entry["rooms"], 1, "{entry}");
    assert_eq!(entry["draining"], false);
    let media = entry["media"].as_array().expect("media addresses");
    assert!(
        !media.is_empty()
            && media
                .iter()
                .all(|a| a.as_str().is_some_and(|a| a.starts_with("127.0.0.1:"))),
        "{entry}"
    );
    assert!(entry["cpu"].as_f64().is_some_and(|c| c >= 0.0), "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_joins_through_three_nodes_land_on_one_node() {
    let redis = Redis::start();
    let nodes = [
        node(&redis, "n1").await,
        node(&redis, "n2").await,
        node(&redis, "n3").await,
    ];
    all_ready(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    let urls: Vec<String> = nodes.iter().map(Server::ws_url).collect();
    let joins = (0..50).map(|i| {
        let url = urls[i % 3].clone();
        tokio::spawn(async move {
            let j = join_via(&url, "race", &format!("p{i}")).await;
            (j.url, j.ws)
        })
    });
    let mut landed = Vec::new();
    let mut sockets = Vec::new();
    for j in joins {
        let (url, ws) = j.await.unwrap();
        landed.push(url);
        sockets.push(ws);
    }
    landed.sort();
    landed.dedup();
    assert_eq!(
        landed.len(),
        1,
        "the room is on more than one node: {landed:?}"
    );
    let owner = redis.get("sfu:room:race").await.expect("the room is owned");
    let index = urls.iter().position(|u| *u == landed[0]).unwrap();
    assert_eq!(owner, format!("n{}", index + 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_s_rooms_are_free_again_within_the_time_to_live() {
    let redis = Redis::start();
    let mut n1 = node(&redis, "n1").await;
    let n2 = node(&redis, "n2").await;
    all_ready(&[&n1, &n2]).await;
    let _ann = join_via(&n1.ws_url(), "r", "ann").await;
    assert_eq!(redis.get("sfu:room:r").await.as_deref(), Some("n1"));
    let answer = first_answer(&n2.ws_url(), "r", "bob").await;
    assert_eq!(answer["type"], "redirect", "{answer}");

    n1.child.kill().unwrap();
    let killed = Instant::now();
    let _ = n1.child.wait();
    // Joins through n2 are sent to n1 (which no longer answers) until its entry expires, then
    // n2 takes the room.
    let deadline = killed + Duration::from_secs(10);
    let bob = loop {
        let answer = first_answer(&n2.ws_url(), "r", "bob").await;
        if answer["type"] == "joined" {
            break answer;
        }
        assert_eq!(answer["type"], "redirect", "{answer}");
        assert_eq!(answer["url"], n1.ws_url().as_str());
        assert!(
            Instant::now() < deadline,
            "the room still points at the dead node"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let free = killed.elapsed();
    assert_eq!(redis.get("sfu:room:r").await.as_deref(), Some("n2"));
    assert!(free < Duration::from_secs(8), "took {free:?}");
    assert!(
        redis.get("sfu:node:n1").await.is_none(),
        "the dead node's entry expired"
    );
    println!("room claimable {free:?} after SIGKILL of its node");
    drop(bob);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_makes_nodes_unready_and_running_rooms_go_on() {
    let redis = Redis::start();
    let port = redis.port;
    let n1 = node(&redis, "n1").await;
    all_ready(&[&n1]).await;
    let mut ann = join_via(&n1.ws_url(), "a", "ann").await;

    drop(redis);
    let deadline = Instant::now() + Duration::from_secs(8);
    while n1.get("/readyz").await.0 != 503 {
        assert!(Instant::now() < deadline, "still ready without Redis");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new room needs the cluster: a clear refusal, not a hang.
    let started = Instant::now();
    let refused = first_answer(&n1.ws_url(), "b", "bob").await;
    assert_eq!(refused["code"], "server_busy", "{refused}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The running room takes joins and its participants stay.
    let carl = join_via(&n1.ws_url(), "a", "carl").await;
    assert_eq!(carl.url, n1.ws_url());
    let joined = ann.ws.until("participant_joined").await;
    assert_eq!(joined["participant"]["id"], carl.id.as_str());

    let redis = Redis::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while n1.get("/readyz").await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "not ready again after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dora = join_via(&n1.ws_url(), "b", "dora").await;
    assert_eq!(dora.url, n1.ws_url());
    // Its rooms are registered again.
    let owner = eventually("room a registered again", || async {
        redis.get("sfu:room:a").await
    })
    .await;
    assert_eq!(owner, "n1");
}

/// Webhook posts received, in order.
#[derive(Clone, Default)]
struct Hooks(std::sync::Arc<parking_lot::Mutex<Vec<Value>>>);

impl Hooks {
    /// A webhook receiver on a free loopback port; returns its URL.
    async fn start(&self) -> String {
        let hooks = self.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(event): axum::Json<Value>| {
                let hooks = hooks.clone();
                async move {
                    hooks.0.lock().push(event);
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    /// Waits for the first `event` about `room`, then as long again as a second copy sent by
    /// another node would take to come (a webhook goes out within a second of its event): the
    /// counts read after this are the ones the cluster sent. The wait proves an absence, so it
    /// is time, not a condition.
    async fn settled_after(&self, event: &str, room: &str) {
        eventually(&format!("{event} for {room}"), || async {
            (self.count(event, room) > 0).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    /// How many `event`s about `room` arrived.
    fn count(&self, event: &str, room: &str) -> usize {
        let events = self.0.lock();
        events
            .iter()
            .filter(|e| e["event"] == event && e["room"] == room)
            .count()
    }
}

/// An admin token for the REST API, or one scoped to `room`.
fn admin_token(room: Option<&str>) -> String {
    let keys = signal::KeySet::single(server_process::KEY, server_process::SECRET).unwrap();
    let spec = signal::auth::TokenSpec {
        identity: "ops".into(),
        name: None,
        room: room.map(str::to_owned),
        grants: signal::Grants::admin(),
        metadata: None,
        ttl: Duration::from_secs(600),
    };
    keys.mint(server_process::KEY, &spec).unwrap().0
}

/// A REST call to `node` with `token`: status and JSON body (`Null` when empty).
async fn rest(
    node: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{}{path}", node.http);
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b.to_string());
    }
    let res = req.send().await.expect("the node answers");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_of_any_node_answers_for_the_whole_cluster() {
    let redis = Redis::start();
    let hooks = Hooks::default();
    let hook_url = hooks.start().await;
    let start = |id: &'static str| {
        let (redis, hook_url) = (redis.url(), hook_url.clone());
        async move {
            Server::start(&[
                "--redis",
                &redis,
                "--node-id",
                id,
                "--webhook-url",
                &hook_url,
            ])
            .await
        }
    };
    let (n1, n2, n3) = (start("n1").await, start("n2").await, start("n3").await);
    all_ready(&[&n1, &n2, &n3]).await;
    let admin = admin_token(None);
    use reqwest::Method;

    // Created through n3, placed like a first join: on the least loaded node (all idle: n1).
    let (status, room) = rest(
        &n3,
        Method::POST,
        "/api/rooms",
        Some(&admin),
        Some(json!({"name": "r", "metadata": "m1"})),
    )
    .await;
    assert_eq!(status, 201, "{room}");
    assert_eq!(room["name"], "r");
    assert_eq!(redis.get("sfu:room:r").await.as_deref(), Some("n1"));
    let (status, again) = rest(
        &n2,
        Method::POST,
        "/api/rooms",
        Some(&admin),
        Some(json!({"name": "r"})),
    )
    .await;
    assert_eq!((status, &again["code"]), (409, &json!("conflict")));

    // ann joins r through n2 and is sent to n1; bob's first join places s somewhere.
    let mut ann = join_via(&n2.ws_url(), "r", "ann").await;
    assert_eq!(ann.url, n1.ws_url());
    let mut bob = join_via(&n2.ws_url(), "s", "bob").await;
    let s_node = redis.get("sfu:room:s").await.expect("s is placed");
    let nodes = [("n1", &n1), ("n2", &n2), ("n3", &n3)];
    let not_s = nodes.iter().find(|(id, _)| *id != s_node).unwrap().1;

    // Any node lists both rooms, once each, with their node.
    for n in [&n1, &n2, &n3] {
        let (status, list) = rest(n, Method::GET, "/api/rooms", Some(&admin), None).await;
        assert_eq!(status, 200, "{list}");
        let rooms: Vec<(String, String, u64)> = list["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_owned(),
                    r["node"].as_str().unwrap().to_owned(),
                    r["num_participants"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rooms,
            [
                ("r".into(), "n1".into(), 1),
                ("s".into(), s_node.clone(), 1)
            ]
        );
    }
    // So does the CLI, pointed at any node.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["room", "list", "--json", "--url"])
        .arg(format!("http://{}", n3.http))
        .env("SFU_API_KEY", server_process::KEY)
        .env("SFU_API_SECRET", server_process::SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list["rooms"].as_array().unwrap().len(), 2, "{list}");

    // What passing a call on costs: the same read through the room's node and through another,
    // interleaved, on kept-alive connections; medians.
    let http = reqwest::Client::new();
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..40 {
        for (i, via) in [&n1, &n3].into_iter().enumerate() {
            let started = Instant::now();
            let res = http
                .get(format!("http://{}/api/rooms/r", via.http))
                .bearer_auth(&admin)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.bytes().await.unwrap();
            times[i].push(started.elapsed());
        }
    }
    for t in &mut times {
        t.sort();
    }
    println!(
        "GET /api/rooms/r, median of 40: {:?} through the room's node, {:?} through another node",
        times[0][20], times[1][20]
    );

    // A room's participants, a change and a removal, each through a node that does not have it.
    let (status, people) = rest(
        &n3,
        Method::GET,
        "/api/rooms/r/participants",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{people}");
    assert_eq!(people["participants"][0]["id"], ann.id.as_str());
    let (status, updated) = rest(
        not_s,
        Method::PATCH,
        "/api/rooms/s",
        Some(&admin),
        Some(json!({"metadata": "m2"})),
    )
    .await;
    assert_eq!((status, &updated["metadata"]), (200, &json!("m2")));
    assert_eq!(bob.ws.until("room_updated").await["metadata"], "m2");
    let (status, _) = rest(
        &n3,
        Method::DELETE,
        &format!("/api/rooms/r/participants/{}", ann.id),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(ann.ws.until("left").await["reason"], "removed");
    // A token scoped to one room reaches it through any node, and no other room.
    let scoped = admin_token(Some("s"));
    let (status, _) = rest(&n3, Method::GET, "/api/rooms/s", Some(&scoped), None).await;
    assert_eq!(status, 200);
    let (status, _) = rest(&n3, Method::GET, "/api/rooms/r", Some(&scoped), None).await;
    assert_eq!(status, 403);

    // Calls without a valid admin token are refused where they arrive.
    let (status, _) = rest(&n3, Method::GET, "/api/rooms/r", None, None).await;
    assert_eq!(status, 401);
    let participant = token("r", "eve");
    let (status, _) = rest(&n3, Method::GET, "/api/rooms", Some(&participant), None).await;
    assert_eq!(status, 403);

    // A caller who sets the header nodes use between themselves gets one node's view, nothing
    // more: still checked, and n3 has no room of its own.
    let forged = |path: &str, token: Option<&str>| {
        let mut req = reqwest::Client::new()
            .get(format!("http://{}{path}", n3.http))
            .header("sfu-forwarded", "n1");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }
    };
    assert_eq!(forged("/api/rooms", None).await.0, 401);
    let (status, body) = forged("/api/rooms", Some(&admin)).await;
    assert_eq!((status, body.as_str()), (200, r#"{"rooms":[]}"#));
    assert_eq!(forged("/api/rooms/r", Some(&admin)).await.0, 404);

    // Each event reached the webhook once, from the room's node, however many nodes there are.
    let (status, _) = rest(&n2, Method::DELETE, "/api/rooms/r", Some(&admin), None).await;
    assert_eq!(status, 204);
    hooks.settled_after("room_finished", "r").await;
    assert_eq!(hooks.count("room_started", "r"), 1);
    assert_eq!(hooks.count("room_started", "s"), 1);
    assert_eq!(hooks.count("participant_joined", "r"), 1);
    assert_eq!(hooks.count("participant_left", "r"), 1);
    assert_eq!(hooks.count("room_finished", "r"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_join_naming_a_region_places_the_room_there() {
    let redis = Redis::start();
    let url = redis.url();
    let eu = Server::start(&["--redis", &url, "--node-id", "eu1", "--region", "eu"]).await;
    let us = Server::start(&["--redis", &url, "--node-id", "us1", "--region", "us"]).await;
    all_ready(&[&eu, &us]).await;
    let join = |room: &str, region: Option<&str>| {
        let mut msg = json!({
            "type": "join", "version": 1, "room": room, "name": "ann",
            "token": token(room, "ann"),
        });
        if let Some(r) = region {
            msg["region"] = json!(r);
        }
        msg
    };
    // Through the eu node, from a client in the us: the room goes to the us node.
    let mut ws = connect(&eu.ws_url()).await;
    ws.send(join("r", Some("us"))).await;
    let m = ws.recv().await.unwrap();
    assert_eq!(m["type"], "redirect", "{m}");
    assert_eq!(m["url"], us.ws_url().as_str());
    assert_eq!(redis.get("sfu:room:r").await.as_deref(), Some("us1"));
    // A region no node is in: any node (here the one joined, all idle and eu1 first by id).
    let mut ws = connect(&eu.ws_url()).await;
    ws.send(join("s", Some("ap"))).await;
    assert_eq!(ws.recv().await.unwrap()["type"], "joined");
    // A room created through the REST API of the eu node for the us region lands there too.
    let admin = admin_token(None);
    let (status, room) = rest(
        &eu,
        reqwest::Method::POST,
        "/api/rooms",
        Some(&admin),
        Some(json!({"name": "u", "region": "us"})),
    )
    .await;
    assert_eq!(status, 201, "{room}");
    assert_eq!(redis.get("sfu:room:u").await.as_deref(), Some("us1"));
    let (status, bad) = rest(
        &eu,
        reqwest::Method::POST,
        "/api/rooms",
        Some(&admin),
        Some(json!({"name": "v", "region": "a b"})),
    )
    .await;
    assert_eq!((status, &bad["field"]), (400, &json!("region")), "{bad}");
    // A malformed region in a join is refused, not ignored.
    let mut ws = connect(&eu.ws_url()).await;
    ws.send(join("t", Some("no spaces"))).await;
    let m = ws.recv().await.unwrap();
    assert_eq!(
        (m["type"].as_str(), m["code"].as_str()),
        (Some("error"), Some("bad_message")),
        "{m}"
    );
}

/// A WHEP player's offer: one receive-only audio and one receive-only video m-line.
fn whep_offer() -> String {
    use str0m::media::{Direction, MediaKind};
    let mut rtc = str0m::RtcConfig::new().build(Instant::now());
    let candidate = str0m::Candidate::host("127.0.0.1:9".parse().unwrap(), "udp").unwrap();
    rtc.add_local_candidate(candidate);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

/// `POST`s a WHEP offer to `url` without following redirects: status, `Location`, body.
async fn post_whep(url: &str, token: &str) -> (u16, Option<String>, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http
        .post(url)
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(whep_offer())
        .send()
        .await
        .expect("the node answers");
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, location, res.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whep_player_is_sent_to_the_node_of_its_publisher() {
    let redis = Redis::start();
    let n1 = node(&redis, "n1").await;
    let n2 = node(&redis, "n2").await;
    all_ready(&[&n1, &n2]).await;
    // The publisher is on n1 (its room was placed there by its join).
    let cam = join_via(&n1.ws_url(), "stage", "cam").await;
    assert_eq!(cam.url, n1.ws_url());
    let viewer = token("stage", "viewer");

    // Through n2: sent to n1, as a WHIP publisher would be.
    let (status, location, body) =
        post_whep(&format!("http://{}/whep/cam", n2.http), &viewer).await;
    assert_eq!(status, 307, "{body}");
    let location = location.expect("a Location");
    assert_eq!(location, format!("http://{}/whep/cam", n1.http));
    // And n1 plays it.
    let (status, resource, body) = post_whep(&location, &viewer).await;
    assert_eq!(status, 201, "{body}");
    assert!(resource.unwrap().starts_with("/whep/resource/"));
    assert!(body.starts_with("v=0"), "{body}");

    // A publisher nobody has: n2 sends the player to the room's node, which says 404.
    let (status, location, _) = post_whep(
        &format!("http://{}/whep/nobody", n2.http),
        &token("stage", "v2"),
    )
    .await;
    assert_eq!(status, 307);
    let (status, _, body) = post_whep(&location.unwrap(), &token("stage", "v2")).await;
    assert_eq!(status, 404, "{body}");
    // A room no node serves: 404 where the player asks, and no room is made for it.
    let (status, _, body) = post_whep(
        &format!("http://{}/whep/cam", n2.http),
        &token("empty", "v3"),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(redis.get("sfu:room:empty").await, None);
    drop(cam);
}

const CLUSTER_SECRET: &str = "a-cluster-secret-of-at-least-32-characters";

/// A node that lets rooms span nodes, taking `per_node` participants of a room.
async fn relay_node(redis: &Redis, id: &str, per_node: usize) -> Server {
    relay_node_with(redis, id, per_node, &[]).await
}

/// The same, with more arguments.
async fn relay_node_with(redis: &Redis, id: &str, per_node: usize, more: &[&str]) -> Server {
    let (redis, per_node) = (redis.url(), per_node.to_string());
    let mut args = vec![
        "--redis",
        &redis,
        "--node-id",
        id,
        "--cluster-secret",
        CLUSTER_SECRET,
        "--cluster-room-participants-per-node",
        &per_node,
    ];
    args.extend_from_slice(more);
    Server::start(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_spans_two_nodes_and_outlives_the_loss_of_one() {
    let redis = Redis::start();
    let n1 = relay_node(&redis, "n1", 1).await;
    let n2 = relay_node(&redis, "n2", 1).await;
    all_ready(&[&n1, &n2]).await;

    let mut ann = join_via(&n1.ws_url(), "big", "ann").await;
    assert_eq!(ann.url, n1.ws_url());
    // n1 holds its one participant of the room: the next join goes to n2, which relays.
    let started = Instant::now();
    let mut bob = join_via(&n1.ws_url(), "big", "bob").await;
    assert_eq!(bob.url, n2.ws_url(), "bob was sent to the other node");
    let members: Vec<(String, String)> = {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("HGETALL")
            .arg("sfu:room:big:nodes")
            .query_async(&mut conn)
            .await
            .unwrap()
    };
    let mut ids: Vec<&str> = members
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| !id.starts_with('#'))
        .collect();
    ids.sort();
    assert_eq!(ids, ["n1", "n2"], "both nodes serve the room: {members:?}");

    // One participant list: each hears of the other through the relay.
    let joined = ann.ws.until("participant_joined").await;
    assert_eq!(joined["participant"]["id"], bob.id.as_str());
    let seen_by_ann = started.elapsed();
    let joined = bob.ws.until("participant_joined").await;
    assert_eq!(joined["participant"]["id"], ann.id.as_str());
    println!("ann heard of bob on the other node {seen_by_ann:?} after bob's join began");

    // n2 dies: n1's relay goes silent, and bob leaves ann's room (he would join again).
    let killed = Instant::now();
    drop(n2);
    let left = ann.ws.until("participant_left").await;
    assert_eq!(left["participant_id"], bob.id.as_str(), "{left}");
    println!(
        "bob left ann's view {:?} after his node died",
        killed.elapsed()
    );
    assert!(killed.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_api_removes_participants_and_closes_rooms_on_every_node_of_a_relayed_room() {
    use reqwest::Method;
    let redis = Redis::start();
    let n1 = relay_node(&redis, "n1", 2).await;
    let n2 = relay_node(&redis, "n2", 2).await;
    all_ready(&[&n1, &n2]).await;
    // ann and bob on n1 (the owner, which takes two of the room), cat and dan on n2.
    let mut ann = join_via(&n1.ws_url(), "big", "ann").await;
    let mut bob = join_via(&n1.ws_url(), "big", "bob").await;
    let mut cat = join_via(&n1.ws_url(), "big", "cat").await;
    let mut dan = join_via(&n1.ws_url(), "big", "dan").await;
    let on: Vec<bool> = [&ann.url, &bob.url, &cat.url, &dan.url]
        .iter()
        .map(|u| **u == n2.ws_url())
        .collect();
    assert_eq!(on, [false, false, true, true], "n2 holds cat and dan");
    for _ in 0..3 {
        ann.ws.until("participant_joined").await;
    }
    let admin = admin_token(None);
    // Through either node, whichever holds the participant removes it: n1 owns the room but
    // holds not cat, and n2 passes the call on to n1, which holds bob.
    for (via, who) in [(&n1, &mut cat), (&n2, &mut bob)] {
        let path = format!("/api/rooms/big/participants/{}", who.id);
        let (status, body) = rest(via, Method::DELETE, &path, Some(&admin), None).await;
        assert_eq!(status, 204, "{body}");
        let left = who.ws.until("left").await;
        assert_eq!(left["reason"], "removed", "{left}");
        let gone = ann.ws.until("participant_left").await;
        assert_eq!(gone["participant_id"], who.id.as_str(), "{gone}");
    }
    let (status, body) = rest(
        &n2,
        Method::DELETE,
        "/api/rooms/big/participants/nobody",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 404, "a participant no node holds: {body}");

    // Closing the room reaches every node serving it.
    let (status, body) = rest(&n2, Method::DELETE, "/api/rooms/big", Some(&admin), None).await;
    assert!((200..300).contains(&status), "{status} {body}");
    for who in [&mut ann, &mut dan] {
        let left = who.ws.until("left").await;
        assert_eq!(left["reason"], "room_deleted", "{left}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_a_room_takes_the_owner_s_settings() {
    use reqwest::Method;
    let redis = Redis::start();
    let hooks = Hooks::default();
    let hook_url = hooks.start().await;
    let webhook = ["--webhook-url", hook_url.as_str()];
    let n1 = relay_node_with(&redis, "n1", 1, &webhook).await;
    let n2 = relay_node_with(&redis, "n2", 1, &webhook).await;
    all_ready(&[&n1, &n2]).await;
    let admin = admin_token(None);
    let settings = json!({
        "name": "big", "metadata": "the agenda", "max_participants": 50,
        "empty_timeout": 90, "video_codecs": ["vp8"],
    });
    let (status, created) = rest(
        &n1,
        Method::POST,
        "/api/rooms",
        Some(&admin),
        Some(settings),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {created}");
    let _ann = join_via(&n1.ws_url(), "big", "ann").await;
    let mut bob = join_via(&n1.ws_url(), "big", "bob").await;
    assert_eq!(
        bob.url,
        n2.ws_url(),
        "bob is on the node that joined the room"
    );
    let updated = bob.ws.until("room_updated").await;
    assert_eq!(updated["metadata"], "the agenda", "{updated}");
    // n2's own copy of the room (a call marked as passed on is answered from n2's rooms only).
    let url = format!("http://{}/api/rooms/big", n2.http);
    let local: Value = reqwest::Client::new()
        .get(url)
        .bearer_auth(&admin)
        .header("sfu-forwarded", "n1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .map(|t| serde_json::from_str(&t).unwrap_or(Value::Null))
        .unwrap();
    for field in [
        "metadata",
        "max_participants",
        "empty_timeout",
        "video_codecs",
    ] {
        assert_eq!(local[field], created[field], "{field}: {local}");
    }

    // One room: it starts and finishes once, told by its owner, though both nodes served it.
    let (status, _) = rest(&n2, Method::DELETE, "/api/rooms/big", Some(&admin), None).await;
    assert_eq!(status, 204);
    bob.ws.until("left").await;
    hooks.settled_after("room_finished", "big").await;
    assert_eq!(hooks.count("room_started", "big"), 1);
    assert_eq!(hooks.count("room_finished", "big"), 1);
    assert_eq!(hooks.count("participant_joined", "big"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_s_participant_limit_holds_across_its_nodes() {
    use reqwest::Method;
    let redis = Redis::start();
    let n1 = relay_node(&redis, "n1", 1).await;
    let n2 = relay_node(&redis, "n2", 1).await;
    let n3 = relay_node(&redis, "n3", 1).await;
    all_ready(&[&n1, &n2, &n3]).await;
    let admin = admin_token(None);
    let settings = json!({ "name": "big", "max_participants": 2 });
    let (status, body) = rest(
        &n1,
        Method::POST,
        "/api/rooms",
        Some(&admin),
        Some(settings),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let ann = join_via(&n1.ws_url(), "big", "ann").await;
    let mut bob = join_via(&n1.ws_url(), "big", "bob").await;
    assert_ne!(
        ann.url, bob.url,
        "each node takes one participant of the room"
    );
    // Two participants on two nodes: the room is full, through whichever node a join comes,
    // though the third node has room for it.
    for via in [&n1, &n2, &n3] {
        let m = first_answer(&via.ws_url(), "big", "cat").await;
        assert_eq!(m["type"], "error", "through {}: {m}", via.ws_url());
        assert_eq!(m["code"], "room_full", "{m}");
    }
    // Raising the limit through any node lets one more in, on the third node. A join sent
    // there counts at once, so that concurrent joins see it: dan is sent to n3 and goes away
    // instead; until n3 has seen he never came, the room is full.
    let (status, body) = rest(
        &n3,
        Method::PATCH,
        "/api/rooms/big",
        Some(&admin),
        Some(json!({ "max_participants": 3 })),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let m = first_answer(&n1.ws_url(), "big", "dan").await;
    assert_eq!(m["type"], "redirect", "{m}");
    assert_eq!(m["url"], n3.ws_url().as_str(), "{m}");
    let m = first_answer(&n2.ws_url(), "big", "cat").await;
    assert_eq!(m["code"], "room_full", "dan's place is taken for now: {m}");
    let cat = eventually("cat takes the place dan never took", || async {
        try_join_via(&n1.ws_url(), "big", "cat").await.ok()
    })
    .await;
    assert_eq!(cat.url, n3.ws_url(), "cat is on the third node");
    let m = first_answer(&n2.ws_url(), "big", "eve").await;
    assert_eq!(m["code"], "room_full", "three of three: {m}");

    // A participant who leaves makes room.
    bob.ws.send(json!({"type": "leave"})).await;
    bob.ws.until("left").await;
    let eve = eventually("eve joins once bob has left", || async {
        try_join_via(&n1.ws_url(), "big", "eve").await.ok()
    })
    .await;
    drop((ann, cat, eve));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_requests_without_the_cluster_secret_are_refused() {
    use sfu::io::relay::{sign, AUTH_HEADER};
    let redis = Redis::start();
    let n1 = relay_node(&redis, "n1", 10).await;
    let plain = node(&redis, "n2").await;
    all_ready(&[&n1, &plain]).await;
    let _ann = join_via(&n1.ws_url(), "r", "ann").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let post = |node: &Server, auth: Option<String>, body: String| {
        let url = format!("http://{}/cluster/relay", node.http);
        async move {
            let mut req = reqwest::Client::new().post(url).body(body);
            if let Some(a) = auth {
                req = req.header(AUTH_HEADER, a);
            }
            let res = req.send().await.expect("the node answers");
            let status = res.status().as_u16();
            (status, res.text().await.unwrap_or_default())
        }
    };
    let body = json!({"from": "n2", "room": "r", "offer": "v=0"}).to_string();
    let cases = [
        (None, 401, "unsigned"),
        (
            Some(sign(
                b"some-other-secret-of-at-least-32-chars",
                now,
                body.as_bytes(),
            )),
            401,
            "another secret",
        ),
        (
            Some(sign(CLUSTER_SECRET.as_bytes(), now - 120, body.as_bytes())),
            401,
            "an old signature",
        ),
        (Some("garbage".to_owned()), 401, "garbage"),
    ];
    for (auth, status, what) in cases {
        let (got, text) = post(&n1, auth, body.clone()).await;
        assert_eq!(got, status, "{what}: {text}");
    }
    // Signed, but not a relay request, or from a node that is not live, or for a room not here.
    let signed = |b: &str| Some(sign(CLUSTER_SECRET.as_bytes(), now, b.as_bytes()));
    let bad = "{\"from\":";
    assert_eq!(post(&n1, signed(bad), bad.to_owned()).await.0, 400);
    let ghost = json!({"from": "ghost", "room": "r", "offer": "v=0"}).to_string();
    assert_eq!(post(&n1, signed(&ghost), ghost.clone()).await.0, 404);
    let elsewhere = json!({"from": "n2", "room": "nowhere", "offer": "v=0"}).to_string();
    assert_eq!(
        post(&n1, signed(&elsewhere), elsewhere.clone()).await.0,
        404
    );
    let once = signed(&body);
    let (got, text) = post(&n1, once.clone(), body.clone()).await;
    assert_eq!(got, 400, "a signed request with a bad offer: {text}");
    let (got, text) = post(&n1, once, body.clone()).await;
    assert_eq!(got, 401, "the same request again (replayed): {text}");
    // A body over the limit is refused before it is read as a request.
    let huge = "x".repeat(100 * 1024);
    let (got, _) = post(&n1, signed(&huge), huge.clone()).await;
    assert_eq!(got, 413, "a body over 64 KiB");
    // A node without a cluster secret has no relay at all.
    assert_eq!(post(&plain, signed(&body), body.clone()).await.0, 404);
    // A room's settings are given only to a request signed with the secret.
    let ask = |auth: Option<String>, body: String| {
        let url = format!("http://{}/cluster/room", n1.http);
        async move {
            let mut req = reqwest::Client::new().post(url).body(body);
            if let Some(a) = auth {
                req = req.header(AUTH_HEADER, a);
            }
            req.send()
                .await
                .expect("the node answers")
                .status()
                .as_u16()
        }
    };
    let room = json!({"from": "n2", "room": "r"}).to_string();
    assert_eq!(ask(None, room.clone()).await, 401, "unsigned");
    assert_eq!(ask(signed(&room), room.clone()).await, 200);
    let nowhere = json!({"from": "n2", "room": "nowhere"}).to_string();
    assert_eq!(ask(signed(&nowhere), nowhere.clone()).await, 404);
    let refused = n1.metrics().await;
    assert!(
        refused.contains("sfu_relay_refused_total{reason=\"unauthenticated\"} 5"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_from_another_region_joins_a_node_there_which_relays_the_room() {
    let redis = Redis::start();
    let url = redis.url();
    let node = |id: &'static str, region: &'static str| {
        let url = url.clone();
        async move {
            Server::start(&[
                "--redis",
                &url,
                "--node-id",
                id,
                "--region",
                region,
                "--cluster-secret",
                CLUSTER_SECRET,
            ])
            .await
        }
    };
    let eu = node("eu1", "eu").await;
    let us = node("us1", "us").await;
    all_ready(&[&eu, &us]).await;
    let join = |identity: &str, region: &str| {
        json!({
            "type": "join", "version": 1, "room": "r", "name": identity,
            "token": token("r", identity), "region": region,
        })
    };
    let mut ann = connect(&eu.ws_url()).await;
    ann.send(join("ann", "eu")).await;
    let joined = ann.until("joined").await;
    let ann_id = joined["participant_id"].as_str().unwrap().to_owned();
    // Far under the owner's limit, a client in the us is still sent to the us node...
    let mut ws = connect(&eu.ws_url()).await;
    ws.send(join("bob", "us")).await;
    let m = ws.recv().await.unwrap();
    assert_eq!(m["type"], "redirect", "{m}");
    assert_eq!(m["url"], us.ws_url().as_str());
    let mut bob = connect(&us.ws_url()).await;
    bob.send(join("bob", "us")).await;
    let joined = bob.until("joined").await;
    let bob_id = joined["participant_id"].as_str().unwrap().to_owned();
    // ...and the two nodes relay one room: each participant hears of the other.
    let m = ann.until("participant_joined").await;
    assert_eq!(m["participant"]["id"], bob_id.as_str());
    let m = bob.until("participant_joined").await;
    assert_eq!(m["participant"]["id"], ann_id.as_str());
    // A client in the eu, through the us node, goes to the eu node.
    let mut ws = connect(&us.ws_url()).await;
    ws.send(join("cat", "eu")).await;
    let m = ws.recv().await.unwrap();
    assert_eq!(m["type"], "redirect", "{m}");
    assert_eq!(m["url"], eu.ws_url().as_str());
}
