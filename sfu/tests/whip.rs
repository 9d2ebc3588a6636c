//! WHIP ingest and WHEP egress against the real binary on 127.0.0.1: str0m peers publish with
//! `POST /whip` and play with `POST /whep/{identity}`; WebSocket participants in the same room
//! see them come and go and receive their media. Refusals, limits and CORS too.

mod server_process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use server_process::{call, connect, Server, KEY, SECRET, STEP};
use signal::auth::{Grants, KeySet, TokenSpec};

/// A token for `identity` in `room` with the grants named (`join,publish`).
fn token(room: &str, identity: &str, grants: &str) -> String {
    let keys = KeySet::single(KEY, SECRET).unwrap();
    let spec = TokenSpec {
        identity: identity.into(),
        name: None,
        room: Some(room.into()),
        grants: Grants::parse_list(grants).unwrap(),
        metadata: None,
        ttl: Duration::from_secs(600),
    };
    keys.mint(KEY, &spec).unwrap().0
}

/// A str0m peer on 127.0.0.1 that sends audio and VP8 video on its sending m-lines and counts
/// what it receives.
struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    connected: bool,
    sending: Vec<(Mid, MediaKind)>,
    opus: Pt,
    vp8: Pt,
    /// RTP packets received per SSRC.
    received: HashMap<Ssrc, u64>,
    first_rtp: Option<Instant>,
    next_audio: Instant,
    next_video: Instant,
    audio_seq: u64,
    frame: u64,
}

impl Peer {
    /// A peer with one m-line per `(kind, direction)`; returns it with its offer.
    async fn offer(lines: &[(MediaKind, Direction)]) -> (Peer, String, SdpPendingOffer) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let mut sending = Vec::new();
        for &(kind, dir) in lines {
            let mid = api.add_media(kind, dir, None, None, None);
            if dir == Direction::SendOnly {
                sending.push((mid, kind));
            }
        }
        let (offer, pending) = api.apply().unwrap();
        let pt = |codec| {
            rtc.codec_config()
                .find(|p| p.spec().codec == codec)
                .unwrap()
                .pt()
        };
        let (opus, vp8) = (pt(Codec::Opus), pt(Codec::Vp8));
        let now = Instant::now();
        let peer = Peer {
            rtc,
            socket,
            local,
            connected: false,
            sending,
            opus,
            vp8,
            received: HashMap::new(),
            first_rtp: None,
            next_audio: now,
            next_video: now,
            audio_seq: 0,
            frame: 0,
        };
        (peer, offer.to_sdp_string(), pending)
    }

    fn accept(&mut self, pending: SdpPendingOffer, answer: &str) {
        let answer = SdpAnswer::from_sdp_string(answer).expect("the answer parses");
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("the answer fits the offer");
    }

    fn total(&self) -> u64 {
        self.received.values().sum()
    }

    fn send_media(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        for (mid, kind) in self.sending.clone() {
            let mut api = self.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            match kind {
                MediaKind::Audio if now >= self.next_audio => {
                    let ts = (self.audio_seq * 960) as u32;
                    tx.write_rtp(RtpWrite::new(
                        self.opus,
                        self.audio_seq.into(),
                        ts,
                        now,
                        vec![0xfc; 60],
                    ));
                    self.audio_seq += 1;
                }
                MediaKind::Video if now >= self.next_video => {
                    let pic = (self.frame & 0x7fff) as u16;
                    let mut payload = vec![0x90, 0x80, 0x80 | (pic >> 8) as u8, pic as u8];
                    if self.frame.is_multiple_of(15) {
                        payload.extend_from_slice(&[0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a]);
                        payload.extend_from_slice(&640u16.to_le_bytes());
                        payload.extend_from_slice(&360u16.to_le_bytes());
                    } else {
                        payload.extend_from_slice(&[0x51, 0x42, 0x00]);
                    }
                    payload.resize(300, 0x55);
                    let ts = (self.frame * 3000) as u32;
                    tx.write_rtp(
                        RtpWrite::new(self.vp8, self.frame.into(), ts, now, payload)
                            .marker(true)
                            .nackable(true),
                    );
                    self.frame += 1;
                }
                _ => {}
            }
        }
        while self.next_audio <= now {
            self.next_audio += Duration::from_millis(20);
        }
        while self.next_video <= now {
            self.next_video += Duration::from_millis(33);
        }
    }

    /// Drives the peer until `done` holds or `limit` has passed. Whether `done` held.
    async fn run_until(&mut self, limit: Duration, done: impl Fn(&Peer) -> bool) -> bool {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 2048];
        loop {
            if done(self) {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            self.send_media(now);
            let deadline = loop {
                match self.rtc.poll_output().unwrap() {
                    Output::Transmit(t) => {
                        let _ = self.socket.send_to(&t.contents, t.destination).await;
                    }
                    Output::Timeout(t) => break t,
                    Output::Event(Event::Connected) => self.connected = true,
                    Output::Event(Event::RtpPacket(p)) => {
                        self.first_rtp.get_or_insert_with(Instant::now);
                        *self.received.entry(p.header.ssrc).or_default() += 1;
                    }
                    Output::Event(_) => {}
                }
            };
            let mut wake = deadline.min(end);
            if self.connected && !self.sending.is_empty() {
                wake = wake.min(self.next_audio).min(self.next_video);
            }
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake));
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => {
                    let (n, source) = r.unwrap();
                    if let Ok(r) = Receive::new(Protocol::Udp, source, self.local, &buf[..n]) {
                        self.rtc.handle_input(Input::Receive(Instant::now(), r)).unwrap();
                    }
                }
                _ = sleep => self.rtc.handle_input(Input::Timeout(Instant::now())).unwrap(),
            }
        }
    }
}

/// What a `POST` answered.
struct Created {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Created {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

fn base(server: &Server) -> String {
    format!("http://127.0.0.1:{}", server.http.port())
}

async fn post_sdp(server: &Server, path: &str, token: Option<&str>, body: &str) -> Created {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", base(server)))
        .header(CONTENT_TYPE, "application/sdp")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    let r = tokio::time::timeout(STEP, req.send())
        .await
        .expect("no answer in time")
        .unwrap();
    Created {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

async fn request(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Created {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", base(server)))
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = tokio::time::timeout(STEP, req.send())
        .await
        .expect("no answer in time")
        .unwrap();
    Created {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publisher_reaches_the_room_and_leaves_on_delete() {
    let server = Server::start(&[]).await;
    let mut watcher = connect(&server.ws_url()).await;
    assert_eq!(watcher.join("stage", "watcher").await["type"], "joined");

    // A WebSocket participant that counts the RTP it receives.
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop) = watch::channel(false);
    let viewer = tokio::spawn(call(
        server.ws_url(),
        "stage",
        "viewer",
        Duration::from_secs(30),
        Arc::clone(&received),
        stop,
    ));
    watcher.until("participant_joined").await;

    let (mut obs, offer, pending) = Peer::offer(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ])
    .await;
    let posted = Instant::now();
    let created = post_sdp(
        &server,
        "/whip",
        Some(&token("stage", "obs", "join,publish")),
        &offer,
    )
    .await;
    let answered = posted.elapsed();
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("content-type"), "application/sdp");
    let location = created.location().to_owned();
    assert!(
        location.starts_with("/whip/") && location.len() >= 6 + 22,
        "{location}"
    );
    assert!(created.header("etag").starts_with('"'));
    assert_eq!(
        created.header("accept-patch"),
        "application/trickle-ice-sdpfrag"
    );
    assert_eq!(created.header("access-control-allow-origin"), "*");
    assert!(created
        .header("access-control-expose-headers")
        .contains("Location"));
    obs.accept(pending, &created.body);

    let joined = watcher.until("participant_joined").await;
    assert_eq!(joined["participant"]["identity"], "obs");
    assert_eq!(joined["participant"]["name"], "obs");
    let obs_id = joined["participant"]["id"].as_str().unwrap().to_owned();

    // The viewer receives the WHIP publisher's media (and its own audio goes nowhere near the
    // WHIP participant, which subscribes to nothing).
    let before = received.load(Ordering::Relaxed);
    let got = obs
        .run_until(3 * STEP, |_| received.load(Ordering::Relaxed) > before)
        .await;
    let first = posted.elapsed();
    assert!(got, "the viewer got nothing");
    let got = obs
        .run_until(3 * STEP, |_| {
            received.load(Ordering::Relaxed) > before + 100
        })
        .await;
    assert!(
        got,
        "the viewer got {} packets",
        received.load(Ordering::Relaxed)
    );
    assert_eq!(obs.total(), 0, "the WHIP participant received media");
    println!("WHIP: POST answered in {answered:?}; first RTP forwarded {first:?} after the POST");

    // Trickle: a candidate is taken; a stale ETag is refused.
    let frag = format!(
        "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
         a=candidate:1 1 udp 2130706431 127.0.0.1 {} typ host\r\n",
        obs.local.port()
    );
    let ufrag = created
        .body
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap();
    assert!(!ufrag.is_empty());
    let our_ufrag = offer
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .to_owned();
    let trickle = frag.replace("a=ice-ufrag:x", &format!("a=ice-ufrag:{our_ufrag}"));
    let etag = created.header("etag").to_owned();
    let patch = |headers: Vec<(&'static str, String)>, body: String| {
        let server = &server;
        let location = location.clone();
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(server, reqwest::Method::PATCH, &location, &headers, &body).await
        }
    };
    let ct = ("content-type", "application/trickle-ice-sdpfrag".to_owned());
    let r = patch(
        vec![ct.clone(), ("if-match", etag.clone())],
        trickle.clone(),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = patch(vec![ct.clone(), ("if-match", "\"stale\"".into())], trickle).await;
    assert_eq!(r.status, 412, "{}", r.body);
    let r = patch(vec![("content-type", "text/plain".into())], "x".into()).await;
    assert_eq!(r.status, 415, "{}", r.body);

    // Media keeps flowing after the trickle.
    let now = received.load(Ordering::Relaxed);
    assert!(
        obs.run_until(STEP, |_| received.load(Ordering::Relaxed) > now + 20)
            .await
    );

    // An ICE restart: new credentials in, the server's new ones out, a new ETag.
    let restart = frag.replace("a=ice-ufrag:x", "a=ice-ufrag:restart1");
    let r = patch(vec![ct.clone(), ("if-match", "*".into())], restart).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), "application/trickle-ice-sdpfrag");
    let new_ufrag = r
        .body
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .expect("the fragment names the server's ufrag");
    assert_ne!(new_ufrag, ufrag);
    assert!(r.body.contains("a=candidate:"), "{}", r.body);
    assert_ne!(r.header("etag"), etag);

    // DELETE: the room sees the participant leave; the session is gone.
    let r = request(&server, reqwest::Method::DELETE, &location, &[], "").await;
    assert_eq!(r.status, 204, "{}", r.body);
    let left = watcher.until("participant_left").await;
    assert_eq!(left["participant_id"], obs_id.as_str());
    assert_eq!(left["reason"], "left");
    let r = request(&server, reqwest::Method::DELETE, &location, &[], "").await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("not_found"), "{}", r.body);

    stop_tx.send(true).unwrap();
    let _ = tokio::time::timeout(STEP, viewer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_plays_one_publisher_in_the_first_answer() {
    let server = Server::start(&[]).await;
    // A bystander publishing audio: its track must not reach the player.
    let (stop_tx, stop) = watch::channel(false);
    let bystander = tokio::spawn(call(
        server.ws_url(),
        "show",
        "bystander",
        Duration::from_secs(30),
        Arc::new(AtomicU64::new(0)),
        stop,
    ));

    let (mut publisher, offer, pending) = Peer::offer(&[
        (MediaKind::Audio, Direction::SendOnly),
        (MediaKind::Video, Direction::SendOnly),
    ])
    .await;
    let created = post_sdp(
        &server,
        "/whip",
        Some(&token("show", "cam", "join,publish")),
        &offer,
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    publisher.accept(pending, &created.body);
    assert!(
        publisher.run_until(STEP, |p| p.connected).await,
        "the publisher did not connect"
    );
    let publishing = tokio::spawn(async move {
        publisher
            .run_until(Duration::from_secs(40), |_| false)
            .await;
    });
    // Its tracks are published once its connection is up: wait until the room lists both.
    let admin = token("show", "ops", "room_admin");
    let auth = format!("Bearer {admin}");
    let deadline = Instant::now() + STEP;
    loop {
        let r = request(
            &server,
            reqwest::Method::GET,
            "/api/rooms/show/participants",
            &[("authorization", &auth)],
            "",
        )
        .await;
        let list: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
        let tracks = list["participants"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["identity"] == "cam"))
            .and_then(|p| p["tracks"].as_array())
            .map_or(0, Vec::len);
        if tracks == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cam's tracks never appeared: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let viewer_token = token("show", "player", "join,subscribe");
    // Nobody called "ghost" is in the room.
    let (_, offer, _) = Peer::offer(&[(MediaKind::Video, Direction::RecvOnly)]).await;
    let r = post_sdp(&server, "/whep/ghost", Some(&viewer_token), &offer).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("ghost"), "{}", r.body);

    let (mut player, offer, pending) = Peer::offer(&[
        (MediaKind::Audio, Direction::RecvOnly),
        (MediaKind::Video, Direction::RecvOnly),
    ])
    .await;
    let posted = Instant::now();
    let created = post_sdp(&server, "/whep/cam", Some(&viewer_token), &offer).await;
    let answered = posted.elapsed();
    assert_eq!(created.status, 201, "{}", created.body);
    let location = created.location().to_owned();
    assert!(location.starts_with("/whep/resource/"), "{location}");
    assert_eq!(
        created.body.matches("a=sendonly").count(),
        2,
        "{}",
        created.body
    );
    player.accept(pending, &created.body);
    let both = player
        .run_until(3 * STEP, |p| {
            p.received.len() == 2 && p.received.values().all(|n| *n > 20)
        })
        .await;
    assert!(both, "the player got {:?}", player.received);
    let first = player.first_rtp.unwrap() - posted;
    println!("WHEP: POST answered in {answered:?}; first RTP {first:?} after the POST");

    let r = request(&server, reqwest::Method::DELETE, &location, &[], "").await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = request(&server, reqwest::Method::DELETE, &location, &[], "").await;
    assert_eq!(r.status, 404);

    publishing.abort();
    stop_tx.send(true).unwrap();
    let _ = tokio::time::timeout(STEP, bystander).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_limits_and_cors() {
    let server = Server::start(&["--http-limits-max-whip-sessions-per-ip", "1"]).await;
    let (_peer, offer, _) = Peer::offer(&[(MediaKind::Audio, Direction::SendOnly)]).await;

    // Tokens.
    let r = post_sdp(&server, "/whip", None, &offer).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.header("www-authenticate"), "Bearer");
    assert!(r.body.contains("an access token is required"), "{}", r.body);
    let r = post_sdp(&server, "/whip", Some("not-a-token"), &offer).await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = post_sdp(&server, "/whip", Some(&token("r", "a", "join")), &offer).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("does not grant publish"), "{}", r.body);
    let r = post_sdp(&server, "/whep/a", Some(&token("r", "b", "join")), &offer).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = post_sdp(&server, "/whip", Some(&token("r", "a", "publish")), &offer).await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Bodies.
    let good = token("r", "a", "join,publish");
    let r = post_sdp(&server, "/whip", Some(&good), "hello").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("invalid_sdp") && r.body.contains("v=0"),
        "{}",
        r.body
    );
    let broken = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n";
    let r = post_sdp(&server, "/whip", Some(&good), broken).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid_sdp"), "{}", r.body);
    let (_, recv_only, _) = Peer::offer(&[(MediaKind::Audio, Direction::RecvOnly)]).await;
    let r = post_sdp(&server, "/whip", Some(&good), &recv_only).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("sends nothing"), "{}", r.body);
    let huge = format!("{offer}{}", "a=x\r\n".repeat(20_000));
    let r = post_sdp(&server, "/whip", Some(&good), &huge).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let r = request(
        &server,
        reqwest::Method::POST,
        "/whip",
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {good}")),
        ],
        "{}",
    )
    .await;
    assert_eq!(r.status, 415, "{}", r.body);

    // Unknown sessions and methods.
    for path in ["/whip/nope", "/whep/resource/nope"] {
        let r = request(&server, reqwest::Method::DELETE, path, &[], "").await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    let r = request(&server, reqwest::Method::GET, "/whip", &[], "").await;
    assert_eq!(r.status, 405, "{}", r.body);

    // CORS preflight.
    let r = request(
        &server,
        reqwest::Method::OPTIONS,
        "/whip",
        &[
            ("origin", "https://studio.example"),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization, content-type",
            ),
        ],
        "",
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(r.header("access-control-allow-origin"), "*");
    let allowed = r.header("access-control-allow-headers").to_lowercase();
    for h in ["authorization", "content-type", "if-match"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert!(r.header("access-control-allow-methods").contains("PATCH"));
    let exposed = r.header("access-control-expose-headers");
    for h in ["Location", "ETag", "Link"] {
        assert!(exposed.contains(h), "{exposed}");
    }

    // One session per address here: the second waits for the first to end.
    let r = post_sdp(&server, "/whip", Some(&good), &offer).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let first = r.location().to_owned();
    let (_, offer2, _) = Peer::offer(&[(MediaKind::Audio, Direction::SendOnly)]).await;
    let other = token("r", "b", "join,publish");
    let r = post_sdp(&server, "/whip", Some(&other), &offer2).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.header("retry-after"), "5");
    let r = request(&server, reqwest::Method::DELETE, &first, &[], "").await;
    assert_eq!(r.status, 204);
    let r = post_sdp(&server, "/whip", Some(&other), &offer2).await;
    assert_eq!(r.status, 201, "{}", r.body);
}
