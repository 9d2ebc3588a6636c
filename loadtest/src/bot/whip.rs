//! Publishing over WHIP (RFC 9725) and playing over WHEP, for the same media loop ([`Bot`]) as
//! against this server's WebSocket protocol: any server that speaks the two standards can be
//! loaded and measured.
//!
//! A publisher is one peer connection: its offer goes to the WHIP endpoint with `POST`, the `201`
//! carries the answer and the session's `Location`, which gets a `DELETE` at the end. WHEP plays
//! one stream per session, so a viewer opens one peer connection per publisher of its room (a
//! receive-only offer with one audio and one video m-line), `POST`ed to the WHEP endpoint of that
//! publisher. A publisher that also receives (a meeting) runs both and is reported as one bot.
//!
//! Nothing is renegotiated: the media must be in the first answer, and no signalling goes either
//! way afterwards.
//!
//! Who plays whom: the WHEP endpoint is a template with `{room}` and `{name}`; `{name}` is the
//! publisher's identity. With tokens minted per bot (an API key) or no tokens, that is the
//! publisher's bot name; with this server's development tokens (random identities) it is read
//! from the publisher's token, and viewers wait until their publisher has one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use base64::Engine as _;
use parking_lot::Mutex;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{StatusCode, Url};
use signal::protocol::ServerMessage;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout};

use super::signalling::{Incoming, INCOMING_QUEUE, SIGNAL_TIMEOUT};
use super::socket::BotSocket;
use super::{ms, Bot, BotError, BotReport, Env, SignalOut, TokenSource, CONNECT_TIMEOUT};
use crate::scenario::{BotSpec, Publish};

/// How long a viewer tries again while the server does not know its publisher yet (`404`).
const PUBLISHER_WAIT: Duration = CONNECT_TIMEOUT;
/// Pause between two tries.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// How long the `DELETE` of a session may take at the end.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// An answer's body at most (an SDP answer is a few kilobytes).
const MAX_ANSWER: usize = 256 * 1024;
/// Characters of an error body kept in a message.
const MAX_ERROR_TEXT: usize = 200;

/// Where the sessions go, and what viewers need to find their publishers.
#[derive(Debug)]
pub struct WhipWhep {
    /// The WHIP endpoint.
    whip: Url,
    /// The WHEP endpoint of one publisher: an absolute URL with `{room}` and `{name}`.
    whep: String,
    /// Per room, its publishers' bot names and how many tracks each publishes, in join order.
    publishers: HashMap<String, Vec<(String, usize)>>,
    /// Identities learnt from the publishers' tokens, by bot name (development tokens only).
    identities: Mutex<HashMap<String, String>>,
    http: reqwest::Client,
}

/// One session the server accepted.
struct Session {
    answer: String,
    /// Where to `DELETE` it (none when the server gave no `Location`).
    location: Option<Url>,
}

impl WhipWhep {
    /// Endpoints from the base URL and the two paths (the WHEP one with `{room}` and `{name}`);
    /// `bots` are the run's bots, for the viewers to know their publishers.
    pub fn new(
        base: &str,
        whip_path: &str,
        whep_path: &str,
        bots: &[BotSpec],
    ) -> Result<Self, String> {
        let base = base.trim_end_matches('/');
        let whip = Url::parse(&format!("{base}{whip_path}"))
            .map_err(|e| format!("WHIP endpoint {base}{whip_path}: {e}"))?;
        let whep = format!("{base}{whep_path}");
        Url::parse(&whep.replace("{room}", "r").replace("{name}", "n"))
            .map_err(|e| format!("WHEP endpoint {whep}: {e}"))?;
        let mut publishers: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        for b in bots.iter().filter(|b| b.publish != Publish::Nothing) {
            publishers
                .entry(b.room.clone())
                .or_default()
                .push((b.name.clone(), b.publish.tracks()));
        }
        let http = reqwest::Client::builder()
            .timeout(SIGNAL_TIMEOUT)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(WhipWhep {
            whip,
            whep,
            publishers,
            identities: Mutex::new(HashMap::new()),
            http,
        })
    }

    /// The WHEP endpoint that plays `identity` of `room`.
    fn whep_url(&self, room: &str, identity: &str) -> Result<Url, BotError> {
        let text = self
            .whep
            .replace("{room}", &path_escape(room))
            .replace("{name}", &path_escape(identity));
        Url::parse(&text).map_err(|e| BotError::Connect(format!("WHEP endpoint {text}: {e}")))
    }

    /// `POST`s an offer; a `201` is the session, anything else an error naming the status.
    async fn post(&self, url: Url, token: Option<&str>, offer: String) -> Result<Session, Refusal> {
        let mut req = self
            .http
            .post(url)
            .header(CONTENT_TYPE, "application/sdp")
            .body(offer);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Refusal::Other(http_error(e)))?;
        let status = resp.status();
        // Relative to where the request ended up (WHIP servers may redirect).
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| resp.url().join(l).ok());
        // Read up to the bound, never more: a server may send an endless body.
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| Refusal::Other(http_error(e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(Refusal::Other(BotError::Ws(format!(
                    "an answer of more than {MAX_ANSWER} bytes"
                ))));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        match status {
            StatusCode::CREATED => Ok(Session {
                answer: text,
                location,
            }),
            StatusCode::NOT_FOUND => Err(Refusal::NotFound(refusal(status, &text))),
            _ => Err(Refusal::Other(refusal(status, &text))),
        }
    }

    /// Ends a session; errors do not matter any more.
    async fn delete(&self, session: &Session) {
        if let Some(url) = &session.location {
            let _ = timeout(DELETE_TIMEOUT, self.http.delete(url.clone()).send()).await;
        }
    }

    /// The identity a publisher's token gave it, once it has one (development tokens), else its
    /// bot name.
    async fn publisher_identity(&self, env: &Env, name: &str) -> Result<String, BotError> {
        if !matches!(env.token, TokenSource::Dev { .. }) {
            return Ok(name.to_owned());
        }
        let give_up = Instant::now() + PUBLISHER_WAIT;
        loop {
            if let Some(id) = self.identities.lock().get(name) {
                return Ok(id.clone());
            }
            if Instant::now() >= give_up || Instant::now() >= env.end {
                return Err(BotError::Timeout("publisher identity"));
            }
            sleep(RETRY_INTERVAL).await;
        }
    }
}

/// Why a `POST` did not make a session.
enum Refusal {
    /// `404`: for WHEP, the publisher is not (yet) known.
    NotFound(BotError),
    /// Anything else.
    Other(BotError),
}

impl Refusal {
    fn into_error(self) -> BotError {
        match self {
            Refusal::NotFound(e) | Refusal::Other(e) => e,
        }
    }
}

fn http_error(e: reqwest::Error) -> BotError {
    if e.is_timeout() {
        BotError::Timeout("WHIP/WHEP request")
    } else {
        BotError::Connect(e.to_string())
    }
}

/// A refused `POST` as an error: the status, and the server's error code and message when its
/// body is this server's JSON error, else the start of the body.
fn refusal(status: StatusCode, body: &str) -> BotError {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |k: &str| {
        json.as_ref()
            .and_then(|v| v.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let message = field("message").unwrap_or_else(|| body.chars().take(MAX_ERROR_TEXT).collect());
    BotError::Server {
        code: field("code").map_or_else(
            || status.as_u16().to_string(),
            |c| format!("{} {c}", status.as_u16()),
        ),
        message,
    }
}

/// Escapes what may not stand in a URL path segment.
fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The identity (`sub`) of a JWT, read without checking it: the server checks it.
fn token_identity(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("sub")?.as_str().map(str::to_owned)
}

/// Runs one bot over WHIP and WHEP until the end of the run.
pub async fn run(
    spec: &BotSpec,
    env: &Env,
    ww: &WhipWhep,
    report: &mut BotReport,
) -> Result<(), BotError> {
    let publishing = spec.publish != Publish::Nothing;
    let viewing = BotSpec {
        publish: Publish::Nothing,
        ..spec.clone()
    };
    if !spec.subscribe {
        return publish(spec, env, ww, report).await;
    }
    if !publishing {
        return watch(&viewing, env, ww, report, true).await;
    }
    let publishing_spec = BotSpec {
        subscribe: false,
        ..spec.clone()
    };
    let mut viewer_report = BotReport::new(&viewing);
    let (p, v) = tokio::join!(
        publish(&publishing_spec, env, ww, report),
        watch(&viewing, env, ww, &mut viewer_report, false),
    );
    report.expected_tracks = viewer_report.expected_tracks;
    report.absorb(viewer_report);
    p?;
    v.map_err(|e| BotError::Rtc(format!("receiving: {e}")))
}

/// The publishing connection: WHIP.
async fn publish(
    spec: &BotSpec,
    env: &Env,
    ww: &WhipWhep,
    report: &mut BotReport,
) -> Result<(), BotError> {
    // Each session needs an identity of its own: a server keeps one per identity and room.
    let token = env.token.token_for(&spec.room, &spec.name).await?;
    let identity = match (&env.token, &token) {
        (TokenSource::Dev { .. }, Some(t)) => token_identity(t)
            .ok_or_else(|| BotError::Connect("the development token names no identity".into()))?,
        _ => spec.name.clone(),
    };
    // Known now: viewers need not wait for the outcome of the POST to try theirs.
    ww.identities
        .lock()
        .insert(spec.name.clone(), identity.clone());
    let opened = Instant::now();
    let socket = BotSocket::bind(SocketAddr::new(env.bind_ip, 0), env.gro)?;
    let mut bot = Bot::new(spec, env, socket.local_addr()?, opened)?;
    let offer = bot.first_offer()?;
    let session = ww
        .post(ww.whip.clone(), token.as_deref(), offer)
        .await
        .map_err(Refusal::into_error)?;
    let joined = Established {
        opened,
        identity,
        counted: true,
    };
    joined
        .run(&mut bot, &socket, ww, &session, env, report)
        .await
}

/// The receiving connections: one WHEP session per publisher of the room but the bot itself
/// (as many as --max-tracks lets in). `counted`: the bot counts as joined and connected through
/// them (a pure viewer).
async fn watch(
    spec: &BotSpec,
    env: &Env,
    ww: &WhipWhep,
    report: &mut BotReport,
    counted: bool,
) -> Result<(), BotError> {
    let mut chosen = Vec::new();
    let mut tracks = 0;
    for (name, n) in ww.publishers.get(&spec.room).into_iter().flatten() {
        if *name == spec.name {
            continue;
        }
        if spec.max_tracks.is_some_and(|max| tracks + n > max) {
            break;
        }
        tracks += n;
        chosen.push(name.as_str());
    }
    report.expected_tracks = tracks;
    let opened = Instant::now();
    let plays = chosen.iter().enumerate().map(|(i, publisher)| async move {
        let mut part = BotReport::new(spec);
        let r = play(
            spec,
            env,
            ww,
            publisher,
            counted && i == 0,
            opened,
            &mut part,
        )
        .await;
        (r, part)
    });
    let results = futures_util::future::join_all(plays).await;
    let mut first_error = None;
    for (r, part) in results {
        if report.join_ms.is_none() {
            report.join_ms = part.join_ms;
            report.participant_id = part.participant_id.clone();
        }
        report.absorb(part);
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// One WHEP session playing `publisher` (a bot name) to a bot.
async fn play(
    spec: &BotSpec,
    env: &Env,
    ww: &WhipWhep,
    publisher: &str,
    counted: bool,
    opened: Instant,
    report: &mut BotReport,
) -> Result<(), BotError> {
    let own = format!("{}-sees-{publisher}", spec.name);
    let token = env.token.token_for(&spec.room, &own).await?;
    let target = ww.publisher_identity(env, publisher).await?;
    let url = ww.whep_url(&spec.room, &target)?;
    let socket = BotSocket::bind(SocketAddr::new(env.bind_ip, 0), env.gro)?;
    let mut bot = Bot::new(spec, env, socket.local_addr()?, opened)?;
    bot.counted = counted;
    bot.whep_offer = true;
    let offer = bot.first_offer()?;
    let give_up = Instant::now() + PUBLISHER_WAIT;
    // The publisher may not have reached the server yet: a 404 is tried again for a while.
    let session = loop {
        match ww.post(url.clone(), token.as_deref(), offer.clone()).await {
            Ok(s) => break s,
            Err(Refusal::NotFound(e)) => {
                if Instant::now() + RETRY_INTERVAL >= give_up.min(env.end) {
                    return Err(e);
                }
                sleep(RETRY_INTERVAL).await;
            }
            Err(Refusal::Other(e)) => return Err(e),
        }
    };
    let joined = Established {
        opened,
        identity: own,
        counted,
    };
    joined
        .run(&mut bot, &socket, ww, &session, env, report)
        .await
}

/// A WHIP or WHEP session whose answer arrived, as the report and counters record it.
struct Established {
    /// When its connection was opened.
    opened: Instant,
    /// The identity it has in the room.
    identity: String,
    /// It counts in the shared join counter.
    counted: bool,
}

impl Established {
    /// Records the join, runs the media until the end, then ends the session with `DELETE`.
    async fn run(
        self,
        bot: &mut Bot<'_>,
        socket: &BotSocket,
        ww: &WhipWhep,
        session: &Session,
        env: &Env,
        report: &mut BotReport,
    ) -> Result<(), BotError> {
        let joined = Instant::now();
        report.join_ms = Some(ms(joined - self.opened));
        report.participant_id = Some(self.identity);
        if self.counted {
            env.live.joined.fetch_add(1, Relaxed);
        }
        bot.joined = joined;
        let result = media(bot, socket, session.answer.clone(), report).await;
        bot.finish(report);
        ww.delete(session).await;
        result
    }
}

/// Runs a connection whose answer arrived: nothing more is signalled either way.
async fn media(
    bot: &mut Bot<'_>,
    socket: &BotSocket,
    answer: String,
    report: &mut BotReport,
) -> Result<(), BotError> {
    // The answer goes in as if signalled; the sender stays open so that the loop does not take
    // the end of signalling for a closed socket.
    let (tx, mut incoming) = mpsc::channel(INCOMING_QUEUE);
    tx.try_send(Ok(Some(Incoming::Known(ServerMessage::Answer {
        sdp: answer,
    }))))
    .map_err(|_| BotError::Ws("signalling queue".into()))?;
    let result = bot
        .run(socket, &mut SignalOut::Nowhere, &mut incoming, report)
        .await;
    drop(tx);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The default scenario's bots.
    fn default_bots() -> Vec<BotSpec> {
        let args = crate::cli::Args::try_parse_from(["loadtest"]).unwrap();
        args.scenario().unwrap().bots()
    }

    #[test]
    fn identities_are_read_from_tokens() {
        let keys = TokenSource::keys("APIk", "a-secret-for-the-load-test-of-40-chars!!").unwrap();
        let token = keys.mint("room-1", "vpub0-r0").unwrap().unwrap();
        assert_eq!(token_identity(&token).as_deref(), Some("vpub0-r0"));
        assert_eq!(token_identity("not a token"), None);
        assert_eq!(token_identity("a.!!!.c"), None);
        assert_eq!(token_identity("a.e30.c"), None, "{{}} has no sub");
    }

    #[test]
    fn endpoints_are_built_from_the_base_url_and_escaped() {
        let bots = default_bots();
        let ww = WhipWhep::new("http://127.0.0.1:8080/", "/whip", "/whep/{name}", &bots).unwrap();
        assert_eq!(ww.whip.as_str(), "http://127.0.0.1:8080/whip");
        assert_eq!(
            ww.whep_url("room", "a b/c").unwrap().as_str(),
            "http://127.0.0.1:8080/whep/a%20b%2Fc"
        );
        let ww = WhipWhep::new("http://h:1", "/w", "/play/{room}/{name}", &bots).unwrap();
        assert_eq!(
            ww.whep_url("r-0", "vpub0-r0").unwrap().as_str(),
            "http://h:1/play/r-0/vpub0-r0"
        );
        assert!(WhipWhep::new("not a url", "/whip", "/whep/{name}", &bots).is_err());
    }

    #[test]
    fn viewers_know_the_publishers_of_their_room() {
        let bots = default_bots();
        let ww = WhipWhep::new("http://h:1", "/whip", "/whep/{name}", &bots).unwrap();
        let room = &bots[0].room;
        let names: Vec<&str> = ww.publishers[room]
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        let expected: Vec<&str> = bots
            .iter()
            .filter(|b| b.room == *room && b.publish != Publish::Nothing)
            .map(|b| b.name.as_str())
            .collect();
        assert!(!names.is_empty());
        assert_eq!(names, expected);
    }

    #[tokio::test]
    async fn an_answer_over_the_bound_is_refused_without_reading_it_all() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = listener.local_addr().unwrap();
        // A server that answers 201 with a body far over the bound, and would send more.
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\n\
                        Content-Length: 100000000\r\n\r\n";
            let _ = s.write_all(head.as_bytes()).await;
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..100 {
                if s.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
        let ww = WhipWhep::new(
            &format!("http://{at}"),
            "/whip",
            "/whep/{name}",
            &default_bots(),
        )
        .unwrap();
        match ww.post(ww.whip.clone(), None, "v=0\r\n".into()).await {
            Err(Refusal::Other(e)) => assert!(e.to_string().contains("more than"), "{e}"),
            Ok(_) => panic!("a 100 MB answer was taken"),
            Err(Refusal::NotFound(e)) => panic!("{e}"),
        }
    }

    #[test]
    fn refusals_name_the_status_and_the_server_code() {
        let e = refusal(
            StatusCode::NOT_FOUND,
            r#"{"code":"not_found","message":"no participant with identity \"x\""}"#,
        );
        let text = e.to_string();
        assert!(text.contains("404 not_found"), "{text}");
        assert!(text.contains("no participant"), "{text}");
        let e = refusal(StatusCode::BAD_GATEWAY, "<html>proxy error</html>");
        assert!(e.to_string().contains("502"), "{e}");
        assert!(e.to_string().contains("proxy error"), "{e}");
    }
}
