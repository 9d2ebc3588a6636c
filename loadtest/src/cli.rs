//! Command-line flags and named presets, turned into a [`Scenario`] and run settings.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};

use crate::attack::{Attack, AttackConfig};
use crate::bot::{JanusRoom, TokenSource};
use crate::report::Limits;
use crate::run::RunConfig;
use crate::scenario::{MediaConfig, Scenario};

/// Synthetic WebRTC participants that load the SFU through its real doors: WebSocket signalling,
/// ICE, DTLS and SRTP, with VP8-shaped simulcast video and Opus-shaped audio.
///
/// Exit status: 0 when every gate held, 1 when a gate failed, 2 when the run could not start.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadtest", version, about, long_about = None, after_help = ATTACKER_HELP)]
pub struct Args {
    /// The server's HTTP base URL; with --target janus, Janus's WebSocket (ws://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,

    /// The kind of server: this SFU; Janus's VideoRoom plugin through the Janus API over a
    /// WebSocket (each room is created by its first bot; a publisher that also receives uses a
    /// second peer connection there; not with --urls, --attack, --render-size or tokens); or
    /// any server with WHIP and WHEP endpoints (publishers over WHIP, viewers one WHEP session
    /// per publisher; not with --urls, --attack or --render-size).
    #[arg(long, value_enum, default_value_t = ServerTarget::Sfu)]
    pub target: ServerTarget,

    /// With --target whip-whep: the WHIP endpoint's path below --url.
    #[arg(long, default_value = "/whip")]
    pub whip_path: String,

    /// With --target whip-whep: the path below --url that plays one publisher over WHEP;
    /// `{room}` and `{name}` stand for the room and the publisher's identity (its bot name when
    /// tokens are minted with --api-key or there are none; read from its token with this
    /// server's development tokens).
    #[arg(long, default_value = "/whep/{name}")]
    pub whep_path: String,

    /// Several nodes of a cluster, comma-separated HTTP base URLs: bots join through them in
    /// turn (and follow the cluster's redirects). The first also stands for --url.
    #[arg(long, value_delimiter = ',', value_name = "URL,URL,...")]
    pub urls: Vec<String>,

    /// A named scenario; the flags below change it.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,

    /// Rooms, all alike, run at once. [default: 1]
    #[arg(long)]
    pub rooms: Option<usize>,

    /// Camera publishers per room (video, and audio unless --video-only). [default: 2]
    #[arg(long)]
    pub video_publishers: Option<usize>,

    /// Microphone-only publishers per room. [default: 0]
    #[arg(long)]
    pub audio_publishers: Option<usize>,

    /// Pure viewers per room (publishers also receive unless --publishers-subscribe false).
    /// [default: 2; livestream and audio-room presets: 50]
    #[arg(long)]
    pub subscribers: Option<usize>,

    /// Whether publishers receive the others' tracks, like a browser in a meeting.
    #[arg(long, action = clap::ArgAction::Set, default_value_t = true)]
    pub publishers_subscribe: bool,

    /// Camera publishers send no audio.
    #[arg(long)]
    pub video_only: bool,

    /// A subscriber measures at most this many tracks (the rest are received but not measured).
    #[arg(long)]
    pub max_tracks: Option<usize>,

    /// Measured time, after all joins and the warm-up (e.g. 20, 20s, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub duration: Duration,

    /// Time between the last join and the measured window.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub warmup: Duration,

    /// Joins per second over all rooms.
    #[arg(long, default_value_t = 20.0)]
    pub join_rate: f64,

    /// Publish three simulcast layers (rids q, h, f) or one.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub simulcast: OnOff,

    /// Layer bitrates in kbit/s, low to high; with simulcast off the last one is sent.
    #[arg(long, value_delimiter = ',', default_value = "150,500,1500")]
    pub layer_kbps: Vec<u32>,

    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,

    /// VP8 temporal layers per simulcast layer (1-3). [default: 3 with simulcast, 1 without]
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub temporal_layers: Option<u8>,

    /// A keyframe at least this often (also at start and on PLI/FIR).
    #[arg(long, value_parser = parse_duration, default_value = "4s")]
    pub keyframe_interval: Duration,

    /// Audio bitrate in kbit/s (50 packets/s).
    #[arg(long, default_value_t = 32)]
    pub audio_kbps: u32,

    /// Where the join token comes from: `dev` asks the server's development endpoint
    /// (`/api/dev/token`) for one per bot and joins without a token when the server has no such
    /// endpoint; `none` never sends one. --api-key wins over it.
    #[arg(long, value_enum, default_value_t = TokenFrom::Dev)]
    pub token_from: TokenFrom,

    /// A token to send in every join.
    #[arg(long)]
    pub token: Option<String>,

    /// An API key of the server (the same variable the server reads): each bot gets a token
    /// minted with it, with its own identity (its bot name). Needs --api-secret; wins over
    /// --token-from.
    #[arg(
        long,
        env = "SFU_API_KEY",
        value_name = "KEY",
        conflicts_with = "token"
    )]
    pub api_key: Option<String>,

    /// The secret of --api-key. Prefer the environment variable: command lines are visible to
    /// other users of the machine.
    #[arg(
        long,
        env = "SFU_API_SECRET",
        value_name = "SECRET",
        hide_env_values = true,
        conflicts_with = "token"
    )]
    pub api_secret: Option<String>,

    /// Announce this render size (WxH) for every received video with `track_settings`
    /// (needs a server that knows the message).
    #[arg(long, value_parser = parse_size)]
    pub render_size: Option<(u32, u32)>,

    /// Room names are PREFIX-0, PREFIX-1, ... [default: lt<time>]
    #[arg(long)]
    pub room_prefix: Option<String>,

    /// The IP the bots' UDP sockets bind to.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    pub bind_ip: IpAddr,

    /// Receive with UDP GRO: a run of datagrams a server sends as one GSO buffer reaches a bot
    /// whole, so that on loopback the server is not charged for cutting it up (a network card
    /// does that in hardware). `off` measures what it costs.
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub gro: OnOff,

    /// Allow a server and ICE candidates that are not on the loopback network.
    #[arg(long)]
    pub allow_remote: bool,

    /// ICE candidates with these addresses are used too, besides loopback ones (e.g. Janus's
    /// address in a network namespace of this machine: Janus never offers loopback candidates).
    #[arg(long, value_delimiter = ',', value_name = "IP,IP,...")]
    pub allow_ice_ip: Vec<IpAddr>,

    /// The server's process id, to measure its CPU and memory. Without it the process listening
    /// on the URL's port is looked for in /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Tokio worker threads for the bots. [default: number of cores]
    #[arg(long)]
    pub threads: Option<usize>,

    /// No live view; only the summary.
    #[arg(long, short)]
    pub quiet: bool,

    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,

    /// Write a timeline plot here (.svg or .png).
    #[arg(long)]
    pub plot: Option<PathBuf>,

    /// TrueType font for the plot. [default: a system font]
    #[arg(long)]
    pub plot_font: Option<PathBuf>,

    /// Fail when loss is above this, percent.
    #[arg(long)]
    pub max_loss: Option<f64>,

    /// Fail when the p95 latency is above this, ms.
    #[arg(long)]
    pub max_p95_ms: Option<f64>,

    /// Fail when the video tracks froze more often than this, all together (a freeze: no frame
    /// for more than 500 ms).
    #[arg(long)]
    pub max_freezes: Option<u64>,

    /// Log filter for diagnostics on stderr (tracing syntax).
    #[arg(long, default_value = "warn")]
    pub log: String,

    /// The attacker.
    #[command(flatten)]
    pub attacker: AttackArgs,
}

/// One misbehaving client next to the bots (see [`ATTACKER_HELP`]).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Attacker")]
pub struct AttackArgs {
    /// Attacks to run next to the bots, comma-separated, or `all`.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub attack: Vec<AttackChoice>,

    /// Time from the start of the run (the first join) to the first attack.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub attack_after: Duration,

    /// Source addresses each TCP attack spreads its connections over (1: one attacking host).
    #[arg(long, default_value_t = 1)]
    pub attack_sources: usize,

    /// stun-flood: forged binding requests per second, over all victims.
    #[arg(long, default_value_t = 300.0)]
    pub stun_flood_rate: f64,

    /// stun-flood: forged source sockets (one address each, up to 250).
    #[arg(long, default_value_t = 64)]
    pub stun_flood_sockets: usize,

    /// garbage-udp: datagrams per second.
    #[arg(long, default_value_t = 300.0)]
    pub garbage_udp_rate: f64,

    /// track-flood: send-only m-lines (tracks) in the attacker's offer.
    #[arg(long, default_value_t = 400)]
    pub track_flood_tracks: usize,

    /// track-flood: time between re-offers.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub track_flood_reoffer: Duration,

    /// slowloris: TCP connections held open.
    #[arg(long, default_value_t = 200)]
    pub slowloris_conns: usize,

    /// slowloris: time between two header bytes.
    #[arg(long, value_parser = parse_duration, default_value = "4s")]
    pub slowloris_drip: Duration,

    /// ws-flood: WebSockets held open without joining.
    #[arg(long, default_value_t = 500)]
    pub ws_flood_conns: usize,

    /// bad-sdp: malformed messages per second.
    #[arg(long, default_value_t = 200.0)]
    pub bad_sdp_rate: f64,

    /// oversize: sockets (half of them joined) repeating the oversize steps.
    #[arg(long, default_value_t = 4)]
    pub oversize_conns: usize,

    /// The server's per-address connection cap: the attacker reports it as alarming when one of
    /// its addresses gets more connections open at once.
    #[arg(long)]
    pub expect_per_ip_cap: Option<u64>,
}

/// An attack, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AttackChoice {
    /// Every attack below.
    All,
    /// Forged STUN binding requests naming the victims' server-side ICE ufrags (bogus
    /// MESSAGE-INTEGRITY) from many forged source addresses.
    StunFlood,
    /// A joined participant publishing --track-flood-tracks tracks at once, then withdrawing and
    /// republishing all of them every --track-flood-reoffer (it completes ICE and DTLS, since the
    /// server publishes tracks only then, but never sends media).
    TrackFlood,
    /// TCP connections to the HTTP port dripping a header byte now and then, or silent.
    Slowloris,
    /// WebSockets that never join: silent, or a refused join every 8 s.
    WsFlood,
    /// A joined participant sending malformed offers, answers and candidates; error texts are
    /// checked for internal details.
    BadSdp,
    /// Random bytes, truncated STUN, fake RTP, RTCP and DTLS to the media ports.
    GarbageUdp,
    /// Messages just above the 256 KiB limit and unfinished huge frames, joined and not.
    Oversize,
}

impl AttackArgs {
    /// The attacker's configuration (not yet validated).
    pub fn config(&self) -> AttackConfig {
        let mut attacks = std::collections::BTreeSet::new();
        for c in &self.attack {
            let one = match c {
                AttackChoice::All => {
                    attacks.extend(Attack::ALL);
                    continue;
                }
                AttackChoice::StunFlood => Attack::StunFlood,
                AttackChoice::TrackFlood => Attack::TrackFlood,
                AttackChoice::Slowloris => Attack::Slowloris,
                AttackChoice::WsFlood => Attack::WsFlood,
                AttackChoice::BadSdp => Attack::BadSdp,
                AttackChoice::GarbageUdp => Attack::GarbageUdp,
                AttackChoice::Oversize => Attack::Oversize,
            };
            attacks.insert(one);
        }
        AttackConfig {
            attacks,
            start_after: self.attack_after,
            sources: self.attack_sources,
            stun_rate: self.stun_flood_rate,
            stun_sockets: self.stun_flood_sockets,
            garbage_rate: self.garbage_udp_rate,
            flood_tracks: self.track_flood_tracks,
            reoffer_interval: self.track_flood_reoffer,
            slowloris_conns: self.slowloris_conns,
            slowloris_drip: self.slowloris_drip,
            ws_conns: self.ws_flood_conns,
            bad_sdp_rate: self.bad_sdp_rate,
            oversize_conns: self.oversize_conns,
            expect_per_ip: self.expect_per_ip_cap,
        }
    }
}

/// The attacker, after the flags.
const ATTACKER_HELP: &str = "\
Attacker: --attack LIST (or all) runs one misbehaving client next to the bots for the whole run;
every attack stops by itself at the end. Its TCP connections come from 127.0.{10+k}.x and its
forged UDP sources from 127.0.{100+k}.x (k: the attack's place in the list), never from the bots'
127.0.0.1, so that per-address caps of the server hit it and not the victims. It is not one of
the bots in the gates; what it sent and how the server answered (errors by code, closes,
refused connections) is in the summary and the report's `attacks`, and anything alarming
(internal text in errors, a forged STUN request answered with success, more connections per
address than --expect-per-ip-cap) fails the `attacker` gate. Loopback servers only.
Example: loadtest --video-publishers 2 --subscribers 4 --attack all --max-loss 1 --max-freezes 3";

/// The kind of server to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServerTarget {
    /// This SFU.
    Sfu,
    /// Janus (1.x) with its VideoRoom plugin.
    Janus,
    /// Any server with WHIP (RFC 9725) and WHEP endpoints.
    WhipWhep,
}

/// On or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// On.
    On,
    /// Off.
    Off,
}

/// Where a join token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenFrom {
    /// No token.
    None,
    /// A development token per bot from the server, if it hands them out.
    Dev,
}

/// Named scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// One room, 10 camera publishers who all watch each other.
    #[value(name = "meeting-10x10")]
    Meeting10x10,
    /// One room, 50 camera publishers who all watch each other.
    #[value(name = "meeting-50x50")]
    Meeting50x50,
    /// One camera publisher, --subscribers viewers.
    #[value(name = "livestream-1xN")]
    Livestream1xN,
    /// Ten microphones, --subscribers listeners.
    #[value(name = "audio-room-10xN")]
    AudioRoom10xN,
}

impl Preset {
    fn name(self) -> &'static str {
        match self {
            Preset::Meeting10x10 => "meeting-10x10",
            Preset::Meeting50x50 => "meeting-50x50",
            Preset::Livestream1xN => "livestream-1xN",
            Preset::AudioRoom10xN => "audio-room-10xN",
        }
    }

    /// (video publishers, audio publishers, subscribers) of the preset.
    fn counts(self) -> (usize, usize, usize) {
        match self {
            Preset::Meeting10x10 => (10, 0, 0),
            Preset::Meeting50x50 => (50, 0, 0),
            Preset::Livestream1xN => (1, 0, 50),
            Preset::AudioRoom10xN => (0, 10, 50),
        }
    }
}

/// A duration: a plain number of seconds (`20`, `1.5`) or what `humantime` reads (`500ms`,
/// `20s`, `1.5s`, `2m`, `1m 30s`, `1h`); at most 24 h.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let d = match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::from_secs_f64(secs.min(1e9)),
        _ => humantime::parse_duration(s).map_err(|e| format!("not a duration: {s:?} ({e})"))?,
    };
    if d > Duration::from_secs(86_400) {
        return Err(format!("{s:?} is out of range (0 to 24 h)"));
    }
    Ok(d)
}

/// `640x360`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected WxH, got {s:?}"))?;
    let w = w
        .trim()
        .parse()
        .map_err(|_| format!("bad width in {s:?}"))?;
    let h = h
        .trim()
        .parse()
        .map_err(|_| format!("bad height in {s:?}"))?;
    Ok((w, h))
}

impl Args {
    /// The scenario the flags describe; an error for combinations that cannot run.
    pub fn scenario(&self) -> Result<Scenario, String> {
        let (pv, pa, ps) = self.preset.map_or((2, 0, 2), Preset::counts);
        let simulcast = self.simulcast == OnOff::On;
        if self.layer_kbps.is_empty() || self.layer_kbps.len() > 3 {
            return Err("--layer-kbps takes 1 to 3 bitrates".into());
        }
        if self.layer_kbps.contains(&0) || self.fps == 0 || self.fps > 120 {
            return Err("bitrates must be above 0 and --fps within 1..=120".into());
        }
        if !(self.join_rate > 0.0 && self.join_rate <= 1000.0) {
            return Err("--join-rate must be within (0, 1000]".into());
        }
        let mut media = MediaConfig::new(simulcast, &self.layer_kbps);
        media.fps = self.fps;
        if let Some(t) = self.temporal_layers {
            media.temporal_layers = t;
        }
        media.keyframe_interval = self.keyframe_interval.max(Duration::from_millis(500));
        media.audio_kbps = self.audio_kbps.clamp(6, 510);
        let prefix = self.room_prefix.clone().unwrap_or_else(|| {
            let t = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            format!("lt{}", t % 1_000_000)
        });
        let scenario = Scenario {
            name: self.preset.map_or("custom", Preset::name).to_string(),
            rooms: self.rooms.unwrap_or(1),
            video_publishers: self.video_publishers.unwrap_or(pv),
            audio_publishers: self.audio_publishers.unwrap_or(pa),
            subscribers: self.subscribers.unwrap_or(ps),
            publishers_subscribe: self.publishers_subscribe,
            video_with_audio: !self.video_only,
            max_tracks: self.max_tracks,
            duration: self.duration,
            warmup: self.warmup,
            join_rate: self.join_rate,
            room_prefix: prefix,
            media,
        };
        if scenario.rooms == 0 || scenario.bots_per_room() == 0 {
            return Err("nothing to run: no rooms or no bots".into());
        }
        if scenario.bot_count() > 5000 {
            return Err(format!(
                "{} bots is more than one process should run (5000)",
                scenario.bot_count()
            ));
        }
        self.attacker.config().validate()?;
        self.token_source_keys()?;
        match self.target {
            ServerTarget::Janus => self.janus_flags()?,
            ServerTarget::WhipWhep => self.whip_whep_flags()?,
            ServerTarget::Sfu => {}
        }
        if signal::protocol::validate_room_name(&format!("{}-{}", scenario.room_prefix, 0)).is_err()
        {
            return Err("--room-prefix: letters, digits, '-', '_' or '.' only".into());
        }
        Ok(scenario)
    }

    /// An error naming what --target janus cannot do with the flags given.
    fn janus_flags(&self) -> Result<(), String> {
        let refused = [
            (self.urls.len() > 1, "--urls with several nodes"),
            (!self.attacker.attack.is_empty(), "--attack"),
            (self.render_size.is_some(), "--render-size"),
            (
                self.token.is_some() || self.api_key.is_some(),
                "--token or --api-key",
            ),
        ];
        if let Some((_, flag)) = refused.iter().find(|(bad, _)| *bad) {
            return Err(format!(
                "--target janus does not support {flag}; it supports --rooms, \
                 --video-publishers, --audio-publishers, --subscribers, --publishers-subscribe, \
                 --video-only, --max-tracks, the media flags and the gates"
            ));
        }
        let url = self.urls.first().unwrap_or(&self.url);
        if !url.starts_with("ws://") {
            return Err(format!(
                "--target janus needs Janus's WebSocket as --url, e.g. ws://127.0.0.1:8188 \
                 (got {url})"
            ));
        }
        Ok(())
    }

    /// An error naming what --target whip-whep cannot do with the flags given.
    fn whip_whep_flags(&self) -> Result<(), String> {
        let refused = [
            (self.urls.len() > 1, "--urls with several nodes"),
            (!self.attacker.attack.is_empty(), "--attack"),
            (self.render_size.is_some(), "--render-size"),
        ];
        if let Some((_, flag)) = refused.iter().find(|(bad, _)| *bad) {
            return Err(format!(
                "--target whip-whep does not support {flag}: WHEP plays one publisher per \
                 session and takes no messages after the answer"
            ));
        }
        let url = self.urls.first().unwrap_or(&self.url);
        if !url.starts_with("http://") {
            return Err(format!(
                "--target whip-whep needs the server's HTTP base URL as --url, e.g. \
                 http://127.0.0.1:8080 (got {url})"
            ));
        }
        if !self.whip_path.starts_with('/') || !self.whep_path.starts_with('/') {
            return Err("--whip-path and --whep-path start with /".into());
        }
        if !self.whep_path.contains("{name}") {
            return Err(
                "--whep-path needs {name} (the publisher's identity), e.g. /whep/{name}".into(),
            );
        }
        Ok(())
    }

    /// How rooms are created on Janus: room for every bot as a publisher (viewers join as
    /// publishers that never publish, to hear of new feeds), a bitrate cap above what a
    /// publisher sends, and no periodic keyframe requests (the publishers send one every
    /// --keyframe-interval anyway, as against this server).
    fn janus_room(&self, scenario: &Scenario) -> JanusRoom {
        let video_kbps: u64 = scenario
            .media
            .layers
            .iter()
            .map(|l| u64::from(l.kbps))
            .sum();
        let kbps = video_kbps + u64::from(scenario.media.audio_kbps);
        JanusRoom {
            publishers: 2 * scenario.bots_per_room() + 1,
            bitrate_bps: kbps * 1000 * 5 / 4,
            fir_freq_s: 0,
        }
    }

    /// The minting source of --api-key and --api-secret; `None` without them, an error with
    /// only one of them or a key the server would refuse.
    fn token_source_keys(&self) -> Result<Option<TokenSource>, String> {
        match (&self.api_key, &self.api_secret) {
            (Some(key), Some(secret)) => TokenSource::keys(key, secret).map(Some),
            (None, None) => Ok(None),
            (Some(_), None) => Err("--api-key needs --api-secret (or SFU_API_SECRET)".into()),
            (None, Some(_)) => Err("--api-secret needs --api-key (or SFU_API_KEY)".into()),
        }
    }

    /// Settings for [`crate::run::run`].
    pub fn run_config(&self, scenario: Scenario) -> RunConfig {
        let keys = self.token_source_keys().ok().flatten();
        let janus = (self.target == ServerTarget::Janus).then(|| self.janus_room(&scenario));
        let whip_whep = (self.target == ServerTarget::WhipWhep)
            .then(|| (self.whip_path.clone(), self.whep_path.clone()));
        RunConfig {
            janus,
            whip_whep,
            scenario,
            url: self
                .urls
                .first()
                .unwrap_or(&self.url)
                .trim_end_matches('/')
                .to_string(),
            more_urls: self
                .urls
                .iter()
                .skip(1)
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            token: self.token.clone(),
            dev_token: self.token.is_none() && keys.is_none() && self.token_from == TokenFrom::Dev,
            keys,
            bind_ip: self.bind_ip,
            gro: self.gro == OnOff::On,
            allow_remote: self.allow_remote,
            allow_ips: self.allow_ice_ip.clone(),
            render_size: self.render_size,
            server_pid: self.server_pid,
            attack: self.attacker.config(),
        }
    }

    /// The gates' limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_loss_pct: self.max_loss,
            max_p95_ms: self.max_p95_ms,
            max_freezes: self.max_freezes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("loadtest").chain(a.iter().copied())).unwrap()
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5h"), Ok(Duration::from_secs(5 * 3600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("25h").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("inf").is_err());
        assert_eq!(parse_size("640x360"), Ok((640, 360)));
        assert!(parse_size("640").is_err());
    }

    #[test]
    fn presets_and_overrides() {
        let s = args(&["--preset", "meeting-10x10"]).scenario().unwrap();
        assert_eq!(
            (s.video_publishers, s.audio_publishers, s.subscribers),
            (10, 0, 0)
        );
        assert_eq!(s.tracks_expected(), 10 * 18);
        let s = args(&["--preset", "livestream-1xN", "--subscribers", "7"])
            .scenario()
            .unwrap();
        assert_eq!((s.video_publishers, s.subscribers), (1, 7));
        let s = args(&["--preset", "audio-room-10xN", "--rooms", "3"])
            .scenario()
            .unwrap();
        assert_eq!((s.audio_publishers, s.subscribers, s.rooms), (10, 50, 3));
        let s = args(&["--simulcast", "off", "--video-publishers", "2"])
            .scenario()
            .unwrap();
        assert!(!s.media.simulcast);
        assert_eq!(s.media.layers.len(), 1);
        assert_eq!(s.media.temporal_layers, 1);
        assert!(args(&["--rooms", "0"]).scenario().is_err());
        assert!(args(&["--layer-kbps", "1,2,3,4"]).scenario().is_err());
        assert!(args(&["--room-prefix", "a b"]).scenario().is_err());
    }

    #[test]
    fn token_sources() {
        let sc = || args(&[]).scenario().unwrap();
        let c = args(&[]).run_config(sc());
        assert!(c.dev_token && c.token.is_none());
        let c = args(&["--token-from", "none"]).run_config(sc());
        assert!(!c.dev_token && c.token.is_none());
        let c = args(&["--token", "abc"]).run_config(sc());
        assert!(!c.dev_token && c.token.as_deref() == Some("abc"));

        let secret = "a-load-test-secret-of-32-characters!";
        let keyed = args(&["--api-key", "APIlt", "--api-secret", secret]);
        keyed.scenario().unwrap();
        let c = keyed.run_config(sc());
        assert!(!c.dev_token && c.token.is_none());
        let keys = c.keys.unwrap();
        let ann = keys.mint("r-0", "ann").unwrap().unwrap();
        let bob = keys.mint("r-0", "bob").unwrap().unwrap();
        let verify = signal::auth::KeySet::single("APIlt", secret).unwrap();
        assert_eq!(verify.authorize_join(Some(&ann), "r-0").unwrap().sub, "ann");
        assert_eq!(verify.authorize_join(Some(&bob), "r-0").unwrap().sub, "bob");
        assert!(verify.authorize_join(Some(&ann), "r-1").is_err());
        assert!(TokenSource::None.mint("r", "a").is_none());

        assert!(args(&["--api-key", "APIlt"]).scenario().is_err());
        assert!(args(&["--api-secret", secret]).scenario().is_err());
        assert!(args(&["--api-key", "APIlt", "--api-secret", "short"])
            .scenario()
            .is_err());
        assert!(Args::try_parse_from([
            "loadtest",
            "--token",
            "t",
            "--api-key",
            "k",
            "--api-secret",
            secret
        ])
        .is_err());
    }

    #[test]
    fn janus_target_takes_a_websocket_url_and_refuses_what_it_cannot_do() {
        let janus = ["--target", "janus", "--url", "ws://127.0.0.1:8188"];
        let a = args(&janus);
        let sc = a.scenario().unwrap();
        let c = a.run_config(sc);
        let room = c.janus.expect("janus room settings");
        assert_eq!(room.fir_freq_s, 0);
        assert!(room.publishers >= 4);
        assert!(room.bitrate_bps >= 2_150_000);
        assert!(args(&[])
            .run_config(args(&[]).scenario().unwrap())
            .janus
            .is_none());
        assert!(args(&["--target", "janus"]).scenario().is_err());
        for extra in [
            &["--attack", "all"][..],
            &["--render-size", "640x360"],
            &["--token", "t"],
        ] {
            let all: Vec<&str> = janus.iter().chain(extra).copied().collect();
            let e = args(&all).scenario().unwrap_err();
            assert!(e.contains("--target janus does not support"), "{e}");
        }
        // Meetings are supported (a second peer connection per publisher).
        let mut all = janus.to_vec();
        all.extend(["--preset", "meeting-10x10"]);
        assert!(args(&all).scenario().is_ok());
    }

    #[test]
    fn whip_whep_target_takes_an_http_url_and_endpoint_paths() {
        let ww = ["--target", "whip-whep", "--url", "http://127.0.0.1:8080"];
        let a = args(&ww);
        let c = a.run_config(a.scenario().unwrap());
        assert_eq!(c.whip_whep, Some(("/whip".into(), "/whep/{name}".into())));
        assert!(c.janus.is_none());
        assert!(args(&[])
            .run_config(args(&[]).scenario().unwrap())
            .whip_whep
            .is_none());
        let mut other = ww.to_vec();
        other.extend([
            "--whip-path",
            "/api/whip",
            "--whep-path",
            "/api/{room}/play/{name}",
        ]);
        let a = args(&other);
        assert_eq!(
            a.run_config(a.scenario().unwrap()).whip_whep,
            Some(("/api/whip".into(), "/api/{room}/play/{name}".into()))
        );
        for (extra, why) in [
            (&["--attack", "all"][..], "does not support --attack"),
            (
                &["--render-size", "640x360"],
                "does not support --render-size",
            ),
            (&["--whep-path", "/whep"], "needs {name}"),
            (&["--whip-path", "whip"], "start with /"),
        ] {
            let all: Vec<&str> = ww.iter().chain(extra).copied().collect();
            let e = args(&all).scenario().unwrap_err();
            assert!(e.contains(why), "{extra:?}: {e}");
        }
        let e = args(&["--target", "whip-whep", "--url", "ws://127.0.0.1:8188"])
            .scenario()
            .unwrap_err();
        assert!(e.contains("HTTP base URL"), "{e}");
        // Tokens and meetings are fine.
        let mut all = ww.to_vec();
        all.extend(["--preset", "meeting-10x10", "--token", "t"]);
        assert!(args(&all).scenario().is_ok());
    }

    #[test]
    fn attacks_are_chosen_by_name_or_all() {
        assert!(args(&[]).attacker.config().attacks.is_empty());
        let c = args(&["--attack", "stun-flood,bad-sdp"]).attacker.config();
        assert_eq!(
            c.attacks.into_iter().collect::<Vec<_>>(),
            [Attack::StunFlood, Attack::BadSdp]
        );
        let c = args(&["--attack", "all", "--stun-flood-rate", "50"])
            .attacker
            .config();
        assert_eq!(c.attacks.len(), Attack::ALL.len());
        assert_eq!(c.stun_rate, 50.0);
        assert!(Args::try_parse_from(["loadtest", "--attack", "nope"]).is_err());
        assert!(args(&["--attack", "all", "--ws-flood-conns", "0"])
            .scenario()
            .is_err());
    }
}
