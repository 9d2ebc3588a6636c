//! The attacker: one misbehaving client that runs next to the bots, so that a run shows whether
//! one attacker can break a call.
//!
//! Each attack is a task that starts after `start_after`, stops by itself at the end of the run,
//! and bounds every loop in count as well as in time. Attacks that need to know the victims (their
//! server-side ICE ufrags, the media ports) read what the bots saw in their answers from
//! [`Intel`], as an observer on the path would see it in clear. The attacker is never one of the
//! bots: its observations go into the report's `attacks`, never into the victims' gates.
//!
//! TCP connections come from source addresses of their own, `127.0.{10 + attack}.{1..}`, and
//! forged UDP sources from `127.0.{100 + attack}.{1..}`, so that per-address limits of the server
//! hit the attacker and not the bots on 127.0.0.1.

mod flood;
mod http;
mod net;
mod session;
mod stun;
mod tally;
mod udp;
mod ws;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::bot::TokenSource;
pub use tally::AttackOutcome;
use tally::Tally;

/// One kind of attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Attack {
    /// Forged STUN binding requests naming the victims' server-side ufrags, with a bogus
    /// MESSAGE-INTEGRITY, from many forged source addresses and ports.
    StunFlood,
    /// A joined participant publishing hundreds of tracks at once, then withdrawing and
    /// republishing all of them with every re-offer.
    TrackFlood,
    /// TCP connections to the HTTP port that drip a header byte now and then, or stay silent.
    Slowloris,
    /// WebSockets that never join: some silent, some sending a refused `join` every 8 s.
    WsFlood,
    /// A joined participant sending malformed offers, answers and candidates at a high rate.
    BadSdp,
    /// Random datagrams, truncated STUN, fake RTP, RTCP and DTLS headers to the media ports.
    GarbageUdp,
    /// Messages just above the size limit and unfinished huge frames, joined and not joined.
    Oversize,
}

impl Attack {
    /// Every attack, in the order they are reported.
    pub const ALL: [Attack; 7] = [
        Attack::StunFlood,
        Attack::TrackFlood,
        Attack::Slowloris,
        Attack::WsFlood,
        Attack::BadSdp,
        Attack::GarbageUdp,
        Attack::Oversize,
    ];

    /// The name used on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Attack::StunFlood => "stun-flood",
            Attack::TrackFlood => "track-flood",
            Attack::Slowloris => "slowloris",
            Attack::WsFlood => "ws-flood",
            Attack::BadSdp => "bad-sdp",
            Attack::GarbageUdp => "garbage-udp",
            Attack::Oversize => "oversize",
        }
    }

    /// Its position in [`Attack::ALL`]: picks its source addresses.
    fn slot(self) -> u8 {
        Attack::ALL.iter().position(|a| *a == self).unwrap_or(0) as u8
    }
}

/// What the attacker does, and how hard.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackConfig {
    /// The attacks to run (none: no attacker).
    pub attacks: BTreeSet<Attack>,
    /// Time from the start of the run to the first attack.
    pub start_after: Duration,
    /// Source addresses each TCP attack spreads its connections over.
    pub sources: usize,
    /// `stun-flood`: requests per second, over all victims.
    pub stun_rate: f64,
    /// `stun-flood`: forged source sockets.
    pub stun_sockets: usize,
    /// `garbage-udp`: datagrams per second.
    pub garbage_rate: f64,
    /// `track-flood`: m-lines in the offer.
    pub flood_tracks: usize,
    /// `track-flood`: time between re-offers.
    pub reoffer_interval: Duration,
    /// `slowloris`: connections held.
    pub slowloris_conns: usize,
    /// `slowloris`: time between two header bytes.
    pub slowloris_drip: Duration,
    /// `ws-flood`: WebSockets held.
    pub ws_conns: usize,
    /// `bad-sdp`: messages per second.
    pub bad_sdp_rate: f64,
    /// `oversize`: sockets, each going through the oversize steps again and again.
    pub oversize_conns: usize,
    /// Open connections one source address should get at most (the server's per-address cap);
    /// more at once is reported as alarming.
    pub expect_per_ip: Option<u64>,
}

impl Default for AttackConfig {
    fn default() -> Self {
        AttackConfig {
            attacks: BTreeSet::new(),
            start_after: Duration::ZERO,
            sources: 1,
            stun_rate: 300.0,
            stun_sockets: 64,
            garbage_rate: 300.0,
            flood_tracks: 400,
            reoffer_interval: Duration::from_secs(2),
            slowloris_conns: 200,
            slowloris_drip: Duration::from_secs(4),
            ws_conns: 500,
            bad_sdp_rate: 200.0,
            oversize_conns: 4,
            expect_per_ip: None,
        }
    }
}

impl AttackConfig {
    /// Checks the knobs once; an error names the flag.
    pub fn validate(&self) -> Result<(), String> {
        let rate = |name: &str, r: f64| {
            if r > 0.0 && r <= 100_000.0 {
                Ok(())
            } else {
                Err(format!("{name} must be within (0, 100000]"))
            }
        };
        rate("--stun-flood-rate", self.stun_rate)?;
        rate("--garbage-udp-rate", self.garbage_rate)?;
        rate("--bad-sdp-rate", self.bad_sdp_rate)?;
        let count = |name: &str, n: usize, max: usize| {
            if (1..=max).contains(&n) {
                Ok(())
            } else {
                Err(format!("{name} must be within 1..={max}"))
            }
        };
        count("--attack-sources", self.sources, 250)?;
        count("--stun-flood-sockets", self.stun_sockets, 1000)?;
        count("--track-flood-tracks", self.flood_tracks, 2000)?;
        count("--slowloris-conns", self.slowloris_conns, 5000)?;
        count("--ws-flood-conns", self.ws_conns, 5000)?;
        count("--oversize-conns", self.oversize_conns, 100)?;
        if self.reoffer_interval < Duration::from_millis(100) {
            return Err("--track-flood-reoffer must be at least 100ms".into());
        }
        if self.slowloris_drip < Duration::from_millis(100) {
            return Err("--slowloris-drip must be at least 100ms".into());
        }
        Ok(())
    }
}

/// A victim as an observer on the path sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Victim {
    /// Room.
    pub room: String,
    /// The server's ICE ufrag for this victim (from the answer).
    pub server_ufrag: String,
    /// The victim's own ufrag (from its offer), when known.
    pub client_ufrag: Option<String>,
    /// The server's UDP candidates for this victim.
    pub media: Vec<SocketAddr>,
}

/// Most victims remembered.
const MAX_VICTIMS: usize = 10_000;

/// What the bots saw of the server, for the attacker.
#[derive(Debug, Default)]
pub struct Intel {
    victims: Mutex<Vec<Victim>>,
}

impl Intel {
    /// A bot in `room` whose own ufrag is `client_ufrag` got `answer` (SDP text).
    pub fn observe(&self, room: &str, client_ufrag: Option<&str>, answer: &str) {
        let Some(server_ufrag) = sdp_ufrag(answer) else {
            return;
        };
        let victim = Victim {
            room: room.to_string(),
            server_ufrag,
            client_ufrag: client_ufrag.map(String::from),
            media: sdp_udp_candidates(answer),
        };
        let mut v = self.victims.lock();
        if v.len() < MAX_VICTIMS && !v.iter().any(|o| o.server_ufrag == victim.server_ufrag) {
            v.push(victim);
        }
    }

    /// The victims seen so far.
    pub fn victims(&self) -> Vec<Victim> {
        self.victims.lock().clone()
    }

    /// Every media address seen so far (loopback only).
    pub fn media(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for v in self.victims.lock().iter() {
            for a in &v.media {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
        out
    }
}

/// The first `a=ice-ufrag` of an SDP.
pub fn sdp_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:"))
        .map(|u| u.chars().take(256).collect())
}

/// The loopback UDP candidate addresses of an SDP.
pub fn sdp_udp_candidates(sdp: &str) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in sdp.lines() {
        let Some(rest) = line.trim_end().strip_prefix("a=candidate:") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let (Some(proto), Some(ip), Some(port)) = (f.get(2), f.get(4), f.get(5)) else {
            continue;
        };
        let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), port.parse::<u16>()) else {
            continue;
        };
        let addr = SocketAddr::new(ip, port);
        if proto.eq_ignore_ascii_case("udp") && ip.is_loopback() && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// Everything an attack needs to know.
pub struct Ctx {
    /// Knobs.
    pub cfg: AttackConfig,
    /// The server's HTTP address (loopback).
    pub server: SocketAddr,
    /// `host:port` for `Host` headers.
    pub authority: String,
    /// Path prefix.
    pub prefix: String,
    /// `ws://host:port/ws`.
    pub ws_url: String,
    /// How the attacker gets a token to join (like the bots).
    pub token: TokenSource,
    /// The victims' rooms.
    pub rooms: Vec<String>,
    /// What the bots saw.
    pub intel: Arc<Intel>,
    /// When the attacks begin.
    pub start: Instant,
    /// When every attack stops.
    pub end: Instant,
}

/// A small xorshift generator: attack traffic needs variety, not quality.
pub struct Rng(u64);

impl Rng {
    /// Seeded from the clock and `salt`.
    pub fn new(salt: u64) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng((t ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    /// `n` random letters and digits.
    pub fn word(&mut self, n: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..n)
            .map(|_| CHARS[self.below(CHARS.len())] as char)
            .collect()
    }
}

/// Time an attack gets after the end to close its sockets and report.
const ATTACK_GRACE: Duration = Duration::from_secs(3);

/// Runs the configured attacks until `ctx.end`; their outcomes, in [`Attack::ALL`] order.
pub async fn run(ctx: Ctx) -> Vec<AttackOutcome> {
    let ctx = Arc::new(ctx);
    let mut tasks = Vec::new();
    for attack in ctx.cfg.attacks.iter().copied() {
        let tally = Arc::new(Tally::new(attack, ctx.cfg.expect_per_ip));
        let c = ctx.clone();
        let t = tally.clone();
        let handle = tokio::spawn(async move {
            tokio::time::sleep_until(c.start.into()).await;
            match attack {
                Attack::StunFlood => udp::stun_flood(&c, &t).await,
                Attack::GarbageUdp => udp::garbage_udp(&c, &t).await,
                Attack::Slowloris => http::slowloris(&c, &t).await,
                Attack::WsFlood => ws::flood(&c, &t).await,
                Attack::Oversize => ws::oversize(&c, &t).await,
                Attack::TrackFlood => flood::track_flood(&c, &t).await,
                Attack::BadSdp => session::bad_sdp(&c, &t).await,
            }
        });
        tasks.push((tally, handle));
    }
    let deadline = tokio::time::Instant::from(ctx.end + ATTACK_GRACE);
    let mut out = Vec::new();
    for (tally, handle) in tasks {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tally.note(format!("the attack task ended abnormally: {e}")),
            Err(_) => {
                abort.abort();
                tally.note("the attack did not stop in time and was stopped".into());
            }
        }
        out.push(tally.outcome());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\no=x 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:SrvA\r\na=ice-pwd:p\r\n\
        a=candidate:1 1 udp 2130706175 127.0.0.1 50000 typ host\r\n\
        a=candidate:2 1 tcp 2130706175 127.0.0.1 50000 typ host tcptype passive\r\n\
        a=candidate:3 1 udp 2130706175 10.0.0.1 50000 typ host\r\n\
        a=candidate:4 1 udp 2130706175 127.0.0.1 50001 typ host\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:SrvA\r\n\
        a=candidate:1 1 udp 2130706175 127.0.0.1 50000 typ host\r\n";

    #[test]
    fn answers_give_ufrags_and_loopback_udp_candidates() {
        assert_eq!(sdp_ufrag(ANSWER).as_deref(), Some("SrvA"));
        assert_eq!(sdp_ufrag("v=0\r\n"), None);
        let c = sdp_udp_candidates(ANSWER);
        assert_eq!(
            c,
            [
                "127.0.0.1:50000".parse().unwrap(),
                "127.0.0.1:50001".parse().unwrap()
            ]
        );
        assert!(
            sdp_udp_candidates("a=candidate:x\r\na=candidate:1 1 udp 1 ::1 x typ host").is_empty()
        );
    }

    #[test]
    fn intel_keeps_each_victim_once() {
        let intel = Intel::default();
        intel.observe("r", Some("Cli"), ANSWER);
        intel.observe("r", None, ANSWER);
        intel.observe("r", None, "v=0\r\n");
        let v = intel.victims();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].client_ufrag.as_deref(), Some("Cli"));
        assert_eq!(intel.media().len(), 2);
    }

    #[test]
    fn config_bounds() {
        let mut c = AttackConfig::default();
        assert_eq!(c.validate(), Ok(()));
        c.stun_rate = 0.0;
        assert!(c.validate().is_err());
        let c = AttackConfig {
            sources: 251,
            ..AttackConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
