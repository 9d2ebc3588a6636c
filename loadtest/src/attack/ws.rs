//! WebSocket attacks without a proper session: `ws-flood` and `oversize`.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::time::{sleep_until, timeout_at};

use super::net::{count_read, join, send, tcp_source, ws_from, AttackWs, Seen};
use super::tally::Tally;
use super::{Attack, Ctx, Rng};

/// Sockets opened per slot, the first included.
const MAX_OPENS: usize = 16;
/// Wait after a refused connection.
const RETRY: Duration = Duration::from_secs(1);
/// Time between two sockets being opened at the start.
const STAGGER: Duration = Duration::from_millis(4);
/// A refused `join` this often on the sockets that send them.
const BAD_JOIN_INTERVAL: Duration = Duration::from_secs(8);
/// The server's documented join deadline, and what a silent socket may get beyond it.
const JOIN_DEADLINE: Duration = Duration::from_secs(10);
const DEADLINE_SLACK: Duration = Duration::from_secs(3);
/// The largest client message the server handles (documented).
const MESSAGE_LIMIT: usize = 262_144;
/// Above this a frame makes the server drop the connection (documented).
const FRAME_LIMIT: u64 = 4 * 1024 * 1024;
/// How long an answer to one oversize step is waited for.
const STEP_WAIT: Duration = Duration::from_secs(3);
/// How long the server gets to drop a connection stuck in an unfinished frame.
const STUCK_WAIT: Duration = Duration::from_secs(6);
/// Rounds of the oversize steps per slot.
const OVERSIZE_ROUNDS: usize = 8;

fn ip_of(source: Option<IpAddr>) -> IpAddr {
    source.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// `ws-flood`: `ws_conns` WebSockets that never join; even ones are silent, odd ones send a
/// refused `join` (wrong version, bad token) every 8 s. Closed sockets are opened again (at most
/// [`MAX_OPENS`] times per slot).
pub async fn flood(ctx: &Arc<Ctx>, tally: &Arc<Tally>) {
    let n = ctx.cfg.ws_conns;
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (c, t) = (ctx.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(STAGGER * i as u32).await;
            flood_slot(&c, &t, i).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn bad_join(ctx: &Ctx, k: usize) -> String {
    let room = ctx.rooms.first().map_or("r", String::as_str);
    let msg = if k.is_multiple_of(2) {
        serde_json::json!({"type": "join", "version": 99, "room": room, "name": "intruder"})
    } else {
        serde_json::json!({"type": "join", "version": signal::protocol::PROTOCOL_VERSION,
            "room": room, "name": "intruder", "token": "eyJhbGciOiJIUzI1NiJ9.e30.forged"})
    };
    msg.to_string()
}

async fn flood_slot(ctx: &Ctx, tally: &Arc<Tally>, i: usize) {
    let source = tcp_source(ctx.server, Attack::WsFlood.slot(), i, ctx.cfg.sources);
    let talker = i % 2 == 1;
    for _ in 0..MAX_OPENS {
        if Instant::now() >= ctx.end {
            return;
        }
        let mut ws = match ws_from(ctx, source).await {
            Ok(ws) => ws,
            Err(e) => {
                tally.refused(&e);
                sleep_until((Instant::now() + RETRY).min(ctx.end).into()).await;
                continue;
            }
        };
        let _open = tally.opened(ip_of(source));
        let opened = Instant::now();
        tally.sent(
            if talker {
                "sockets sending bad joins"
            } else {
                "silent sockets"
            },
            1,
        );
        let mut next_join = if talker { opened } else { ctx.end };
        let mut k = 0;
        // Each turn reads a frame or sends a join; the end of the run bounds the loop.
        let ended = loop {
            if Instant::now() >= ctx.end {
                break false;
            }
            tokio::select! {
                r = ws.next() => if let Seen::End(_) = count_read(tally, r) {
                    break true;
                },
                _ = sleep_until(next_join.min(ctx.end).into()) => {
                    if talker && Instant::now() < ctx.end {
                        if send(&mut ws, bad_join(ctx, k)).await {
                            tally.sent("bad joins", 1);
                        }
                        k += 1;
                    }
                    next_join += BAD_JOIN_INTERVAL;
                }
            }
        };
        let life = opened.elapsed();
        tally.lived(life);
        if !talker && life > JOIN_DEADLINE + DEADLINE_SLACK {
            tally.alarm(format!(
                "a silent socket that never joined stayed open {:.0} s (join deadline {} s)",
                life.as_secs_f64(),
                JOIN_DEADLINE.as_secs()
            ));
        }
        if !ended {
            tally.answer("still open at the end");
            return;
        }
    }
}

/// `oversize`: sockets, half of them joined, that send a message just above the limit, check
/// that the session goes on, then start a frame far above the frame limit (or one just below it)
/// and never finish it.
pub async fn oversize(ctx: &Arc<Ctx>, tally: &Arc<Tally>) {
    let n = ctx.cfg.oversize_conns;
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (c, t) = (ctx.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            oversize_slot(&c, &t, i).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// A `ping` padded to exactly `size` bytes (the server ignores unknown fields in `ping`).
fn padded_ping(size: usize) -> String {
    let shell = r#"{"type":"ping","pad":""}"#;
    let pad = "x".repeat(size.saturating_sub(shell.len()));
    format!(r#"{{"type":"ping","pad":"{pad}"}}"#)
}

/// The head of a masked client text frame announcing `len` payload bytes, and `part` bytes of
/// that payload.
fn unfinished_frame(len: u64, part: usize, rng: &mut Rng) -> Vec<u8> {
    let mask = (rng.next() as u32).to_be_bytes();
    let mut f = vec![0x81, 0x80 | 127];
    f.extend_from_slice(&len.to_be_bytes());
    f.extend_from_slice(&mask);
    f.extend((0..part).map(|i| b'x' ^ mask[i % 4]));
    f
}

/// Reads until `want` is seen, the socket ends, or `wait` passes; whether `want` was seen, and
/// whether the socket ended.
async fn await_message(
    tally: &Tally,
    ws: &mut AttackWs,
    want: &str,
    wait: Duration,
) -> (bool, bool) {
    let deadline = Instant::now() + wait;
    // Each turn reads one frame; the deadline bounds the loop.
    loop {
        let Ok(r) = timeout_at(deadline.into(), ws.next()).await else {
            return (false, false);
        };
        match count_read(tally, r) {
            Seen::Message(m) if m == want => return (true, false),
            Seen::End(_) => return (false, true),
            _ => {}
        }
    }
}

async fn oversize_slot(ctx: &Ctx, tally: &Arc<Tally>, i: usize) {
    let source = tcp_source(ctx.server, Attack::Oversize.slot(), i, ctx.cfg.sources);
    let joined = i % 2 == 1;
    let mut rng = Rng::new(7 + i as u64);
    for round in 0..OVERSIZE_ROUNDS {
        if Instant::now() >= ctx.end {
            return;
        }
        let ws = if joined {
            let room = ctx.rooms.first().map_or("r", String::as_str);
            join(ctx, tally, source, room, &format!("oversize-{i}")).await
        } else {
            ws_from(ctx, source).await.inspect_err(|e| tally.refused(e))
        };
        let Ok(mut ws) = ws else {
            sleep_until((Instant::now() + RETRY).min(ctx.end).into()).await;
            continue;
        };
        let _open = tally.opened(ip_of(source));
        let opened = Instant::now();
        let who = if joined { "joined" } else { "unjoined" };
        // 1. One byte above the message limit: `message_too_large`, and the session goes on.
        if !send(&mut ws, padded_ping(MESSAGE_LIMIT + 1)).await {
            tally.closed("dropped while sending");
            continue;
        }
        tally.sent(&format!("{who}: messages of limit + 1 bytes"), 1);
        let (too_large, ended) =
            await_message(tally, &mut ws, "error:message_too_large", STEP_WAIT).await;
        if ended {
            tally.note(format!(
                "a {who} socket was closed for a message of limit + 1 bytes"
            ));
            continue;
        }
        if !too_large {
            tally.note(format!(
                "no message_too_large for a {who} message of limit + 1 bytes"
            ));
        }
        if send(&mut ws, r#"{"type":"ping"}"#.into()).await {
            tally.sent("pings after it", 1);
        }
        let (pong, ended) = await_message(tally, &mut ws, "pong", STEP_WAIT).await;
        if ended || !pong {
            tally.note(format!(
                "a {who} session did not go on after a too large message"
            ));
            continue;
        }
        // 2. A frame that never ends: far above the frame limit, or just below it.
        let (len, kind) = if round.is_multiple_of(2) {
            (
                FRAME_LIMIT + 1024 * 1024,
                "unfinished frames above the frame limit",
            )
        } else {
            (
                FRAME_LIMIT - 1024,
                "unfinished frames below the frame limit",
            )
        };
        let frame = unfinished_frame(len, 64 * 1024, &mut rng);
        let stuck = Instant::now();
        if ws.get_mut().write_all(&frame).await.is_err() {
            tally.closed("dropped while sending");
            continue;
        }
        tally.sent(&format!("{who}: {kind}"), 1);
        let wait = STUCK_WAIT.min(ctx.end.saturating_duration_since(Instant::now()));
        let (_, ended) = await_message(tally, &mut ws, "", wait).await;
        tally.lived(opened.elapsed());
        if ended {
            tally.note(format!(
                "{who}, {kind}: dropped after {:.1} s",
                stuck.elapsed().as_secs_f64()
            ));
        } else if len > FRAME_LIMIT && wait >= STUCK_WAIT {
            tally.alarm(format!(
                "a {who} socket in a frame announcing {} MiB (above the 4 MiB limit) was still \
                 open after {} s",
                len >> 20,
                STUCK_WAIT.as_secs()
            ));
        } else {
            tally.answer("stuck frame still open when given up");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let p = padded_ping(MESSAGE_LIMIT + 1);
        assert_eq!(p.len(), MESSAGE_LIMIT + 1);
        assert!(serde_json::from_str::<serde_json::Value>(&p).is_ok());
        let f = unfinished_frame(5 << 20, 10, &mut Rng::new(1));
        assert_eq!(f.len(), 2 + 8 + 4 + 10);
        assert_eq!(&f[..2], &[0x81, 0xFF]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 5 << 20);
    }
}
