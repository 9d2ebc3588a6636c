//! `bad-sdp`: a participant that joined properly and sends malformed negotiation messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinHandle;
use tokio::time::{interval, sleep_until, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;

use super::net::{count_read, join, tcp_source, AttackWs, Seen};
use super::tally::Tally;
use super::{Attack, Ctx, Rng};

/// Joins per attacker, the first included.
const MAX_JOINS: usize = 4;
/// Wait after a refused join.
const RETRY: Duration = Duration::from_secs(1);
/// `bad-sdp` sends in ticks of this length.
const TICK: Duration = Duration::from_millis(10);
/// A send that does not complete within this ends the session.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Counts everything the server sends until the socket ends or the run does.
fn spawn_reader(
    mut rx: SplitStream<AttackWs>,
    tally: Arc<Tally>,
    end: Instant,
) -> JoinHandle<Option<String>> {
    tokio::spawn(async move {
        // Each turn reads one frame; the end of the run bounds the loop.
        while Instant::now() < end {
            let Ok(r) = tokio::time::timeout_at(end.into(), rx.next()).await else {
                break;
            };
            if let Seen::End(how) = count_read(&tally, r) {
                return Some(how);
            }
        }
        None
    })
}

/// An offer of `tracks` send-only m-lines (one audio in four, the rest VP8 video), each with its
/// mid, msid and SSRC, and ICE and DTLS attributes that parse: the material bad offers are cut
/// from.
pub fn flood_offer(tracks: usize, session: u64, version: u64, rng: &mut Rng) -> String {
    use std::fmt::Write;
    let ufrag = rng.word(8);
    let pwd = rng.word(24);
    let fingerprint: Vec<String> = rng.bytes(32).iter().map(|b| format!("{b:02X}")).collect();
    let fingerprint = fingerprint.join(":");
    let cname = rng.word(12);
    let mut s = String::with_capacity(tracks * 460 + 256);
    let _ = write!(
        s,
        "v=0\r\no=- {session} {version} IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE"
    );
    for mid in 0..tracks {
        let _ = write!(s, " {mid}");
    }
    s.push_str("\r\na=msid-semantic: WMS *\r\n");
    for mid in 0..tracks {
        let audio = mid % 4 == 0;
        let (kind, pt, rtpmap) = if audio {
            ("audio", 111, "opus/48000/2")
        } else {
            ("video", 96, "VP8/90000")
        };
        let _ = write!(
            s,
            "m={kind} 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
             a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=ice-options:trickle\r\n\
             a=fingerprint:sha-256 {fingerprint}\r\na=setup:actpass\r\na=mid:{mid}\r\n\
             a=sendonly\r\na=msid:{cname} t{mid}\r\na=rtcp-mux\r\na=rtpmap:{pt} {rtpmap}\r\n"
        );
        if !audio {
            let _ = write!(s, "a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\n");
        }
        let _ = write!(s, "a=ssrc:{} cname:{cname}\r\n", rng.next() as u32 | 1);
    }
    s
}

#[cfg(test)]
fn offer_message(sdp: &str) -> String {
    serde_json::json!({"type": "offer", "sdp": sdp}).to_string()
}

/// One malformed message for `bad-sdp`: its JSON text and what kind it is.
pub fn bad_message(k: usize, rng: &mut Rng) -> (String, &'static str) {
    let offer = |sdp: String| serde_json::json!({"type": "offer", "sdp": sdp}).to_string();
    let answer = |sdp: String| serde_json::json!({"type": "answer", "sdp": sdp}).to_string();
    let candidate = |c: &str, mid: serde_json::Value, index: serde_json::Value| {
        serde_json::json!({"type": "candidate", "candidate": c, "sdpMid": mid, "sdpMLineIndex": index})
            .to_string()
    };
    let head = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    match k % 16 {
        0 => (offer(rng.word(40)), "offer: random text"),
        1 => {
            let good = flood_offer(2, 7, 2, rng);
            let cut = good.len() / 2 + rng.below(good.len() / 4);
            let cut = (0..=cut).rev().find(|i| good.is_char_boundary(*i)).unwrap_or(0);
            (offer(good[..cut].to_string()), "offer: cut short")
        }
        2 => (
            offer(format!(
                "{head}m=video 99999 UDP/TLS/RTP/SAVPF 999999\r\na=mid:0\r\na=rtpmap:999999 VP8/0\r\n"
            )),
            "offer: numbers out of range",
        ),
        3 => (
            offer(format!(
                "{head}m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n\
                 a=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"
            )),
            "offer: no ICE or DTLS attributes",
        ),
        4 => {
            let one = flood_offer(1, 9, 2, rng);
            let body = one.split_once("m=").map_or("", |(_, b)| b);
            (
                offer(format!("{one}m={body}")),
                "offer: the same mid twice",
            )
        }
        5 => (
            offer(flood_offer(1, 9, 2, rng).replace("VP8/90000", "H266/90000").replace("opus", "\u{fffd}\u{0}")),
            "offer: unknown codec, control characters",
        ),
        6 => (offer(String::new()), "offer: empty"),
        7 => (offer(head.to_string()), "offer: no m-lines"),
        8 => (answer(rng.word(30)), "answer: random text"),
        9 => (answer(flood_offer(1, 9, 3, rng)), "answer: without an offer"),
        10 => (
            candidate("candidate:garbage", "0".into(), 0.into()),
            "candidate: garbage",
        ),
        11 => (
            candidate(
                "candidate:1 1 udp 99999999999 127.0.0.1 70000 typ host",
                "0".into(),
                0.into(),
            ),
            "candidate: numbers out of range",
        ),
        12 => (
            candidate(
                "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
                "999".into(),
                65535.into(),
            ),
            "candidate: unknown mid",
        ),
        13 => (
            candidate("candidate:1 1 udp 1 \u{0}\u{7f}\u{fffd} 1 typ relay raddr", serde_json::Value::Null, serde_json::Value::Null),
            "candidate: control characters",
        ),
        14 => (
            r#"{"type":"offer","sdp":5}"#.to_string(),
            "offer: wrong JSON type",
        ),
        _ => ("{\"type\":\"answer\",\"sdp\":".to_string(), "not JSON"),
    }
}

/// `bad-sdp`: a joined participant sending malformed offers, answers and candidates at
/// `bad_sdp_rate` a second; every error text is checked for internal details.
pub async fn bad_sdp(ctx: &Arc<Ctx>, tally: &Arc<Tally>) {
    let Some(room) = ctx.rooms.first() else {
        return;
    };
    let source = tcp_source(ctx.server, Attack::BadSdp.slot(), 0, ctx.cfg.sources);
    let mut rng = Rng::new(5);
    let per_tick = ctx.cfg.bad_sdp_rate * TICK.as_secs_f64();
    let left = ctx.end.saturating_duration_since(Instant::now());
    let max = (ctx.cfg.bad_sdp_rate * left.as_secs_f64()) as usize + 100;
    let mut k = 0usize;
    for _ in 0..MAX_JOINS {
        if Instant::now() >= ctx.end || k >= max {
            return;
        }
        let Ok(ws) = join(ctx, tally, source, room, "malformed").await else {
            sleep_until((Instant::now() + RETRY).min(ctx.end).into()).await;
            continue;
        };
        let (mut tx, rx) = ws.split();
        let mut reader = spawn_reader(rx, tally.clone(), ctx.end);
        let mut timer = interval(TICK);
        timer.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut credit = 0.0;
        // Each turn sends what one tick allows; the end of the run and `max` bound the loop.
        let server_ended = loop {
            if Instant::now() >= ctx.end || k >= max {
                break false;
            }
            tokio::select! {
                _ = &mut reader => break true,
                _ = timer.tick() => {
                    credit = (credit + per_tick).min(per_tick * 4.0 + 1.0);
                    let mut gone = false;
                    while credit >= 1.0 && k < max {
                        credit -= 1.0;
                        let (text, kind) = bad_message(k, &mut rng);
                        k += 1;
                        let sent = tokio::time::timeout(
                            SEND_TIMEOUT,
                            tx.send(Message::Text(text.into())),
                        )
                        .await;
                        if !matches!(sent, Ok(Ok(()))) {
                            gone = true;
                            break;
                        }
                        tally.sent(kind, 1);
                    }
                    if gone {
                        tally.closed("message not sent");
                        break true;
                    }
                }
            }
        };
        if !server_ended {
            // Late errors still count.
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut reader).await;
        }
        reader.abort();
        if !server_ended {
            let _ = tokio::time::timeout(Duration::from_millis(500), tx.close()).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flood_offer_has_every_mid_and_fits_the_message_limit() {
        let mut rng = Rng::new(1);
        let sdp = flood_offer(400, 1, 2, &mut rng);
        assert_eq!(sdp.matches("\r\nm=").count(), 400);
        assert_eq!(sdp.matches("a=sendonly").count(), 400);
        assert!(sdp.contains("a=mid:399\r\n"));
        assert!(offer_message(&sdp).len() < 262_144, "{}", sdp.len());
    }

    #[test]
    fn bad_messages_are_json_where_meant() {
        let mut rng = Rng::new(1);
        let mut kinds = std::collections::BTreeSet::new();
        for k in 0..32 {
            let (text, kind) = bad_message(k, &mut rng);
            kinds.insert(kind);
            if kind != "not JSON" {
                assert!(
                    serde_json::from_str::<serde_json::Value>(&text).is_ok(),
                    "{kind}"
                );
            }
        }
        assert_eq!(kinds.len(), 16);
    }
}
