//! The end of a run: per-track results aggregated, totals, the timeline, server cost, the pass/fail
//! gates; written as JSON and as a table for people.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::attack::AttackOutcome;
use crate::bot::BotReport;
use crate::procfs::CpuWindow;
use crate::scenario::Scenario;
use crate::stats::{latency_histogram, pct, Kind, Percentiles, TrackReport};

/// One second of the run.
#[derive(Debug, Clone, Serialize)]
pub struct TimelinePoint {
    /// Seconds since the first join.
    pub t_s: f64,
    /// Bots connected.
    pub connected: u64,
    /// Tracks receiving.
    pub tracks: u64,
    /// Payload bitrate received by all bots, kbit/s.
    pub rx_kbps: f64,
    /// Payload bitrate sent by all publishers, kbit/s.
    pub tx_kbps: f64,
    /// RTP packets received per second.
    pub rx_pps: f64,
    /// Loss in this second, percent.
    pub loss_pct: f64,
    /// Latency in this second.
    pub latency: Percentiles,
    /// Server CPU, cores (1.0 = one core busy), if the server is known.
    pub server_cores: Option<f64>,
    /// This process's CPU, cores.
    pub loadtest_cores: Option<f64>,
}

/// One kind of track over all subscribers.
#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    /// Audio or video.
    pub kind: Kind,
    /// Tracks.
    pub tracks: usize,
    /// Packets.
    pub packets: u64,
    /// Mean bitrate per track, kbit/s.
    pub mean_kbps: f64,
    /// Lost packets.
    pub lost: u64,
    /// Loss in percent.
    pub loss_pct: f64,
    /// Latency over all packets.
    pub latency: Percentiles,
    /// Highest per-track jitter, ms.
    pub max_jitter_ms: f64,
    /// Freezes over all tracks.
    pub freezes: u64,
    /// Longest freeze, ms.
    pub longest_freeze_ms: f64,
    /// Time from subscription to the first complete frame over the tracks where both were seen.
    pub first_frame: Option<FirstFrame>,
    /// Packets per layer name.
    pub layers: Vec<(String, u64)>,
}

/// Server cost in the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct ServerCost {
    /// The process id measured.
    pub pid: u32,
    /// Its command name.
    pub command: Option<String>,
    /// How the process was found: `flag` or `port`.
    pub found_by: &'static str,
    /// CPU and memory over the measured window.
    pub window: CpuWindow,
    /// RTP packets the subscriber bots received in the window: a lower bound of what the server
    /// forwarded (packets lost on the way are not counted).
    pub forwarded_packets: u64,
    /// Forwarded packets per second.
    pub forwarded_pps: f64,
    /// Server CPU microseconds per forwarded packet (the server's whole CPU time, including
    /// receiving, RTCP, signalling and timers, divided by the lower bound above).
    pub cpu_us_per_forwarded_packet: Option<f64>,
    /// The share of the server's media workers' CPU time spent in their send system calls in
    /// the window (the kernel's work for the datagrams they send, on loopback also their
    /// delivery to the bots), from the server's `/metrics`; `None` where it has none.
    pub send_share: Option<f64>,
    /// That share of [`cpu_us_per_forwarded_packet`](Self::cpu_us_per_forwarded_packet): the
    /// kernel's sending per forwarded packet, and what lies above it the server's own work.
    pub send_us_per_forwarded_packet: Option<f64>,
}

/// A gate: a condition the run must meet.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
    /// Its name.
    pub name: &'static str,
    /// Whether it held.
    pub passed: bool,
    /// What was measured against what.
    pub detail: String,
}

/// Totals over all tracks.
#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    /// Bots started.
    pub bots: usize,
    /// Bots that stopped with an error (those the server removed included).
    pub bots_failed: usize,
    /// Bots the server removed (`left` before the end), by reason (`slow_consumer`, `timeout`).
    pub bots_removed: BTreeMap<String, u64>,
    /// Tracks subscribers should have received.
    pub tracks_expected: usize,
    /// Tracks that received packets.
    pub tracks_received: usize,
    /// RTP packets received.
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Packets lost.
    pub lost: u64,
    /// Loss in percent.
    pub loss_pct: f64,
    /// Latency over all packets.
    pub latency: Percentiles,
    /// Freezes of video tracks.
    pub video_freezes: u64,
    /// Frames publishers sent late because this process fell behind.
    pub late_frames: u64,
    /// Keyframe requests publishers received.
    pub keyframe_requests: u64,
    /// Join time (WebSocket open to `joined`).
    pub join_ms: Percentiles,
    /// `joined` to connected.
    pub connect_ms: Percentiles,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario run.
    pub scenario: Scenario,
    /// The server's base URL.
    pub url: String,
    /// UNIX time the run started, s.
    pub started_unix_s: u64,
    /// Whether the server answered the simulcast offers with receive rids (count of video
    /// publishers that got it, of all video publishers).
    pub simulcast_accepted: (usize, usize),
    /// Totals.
    pub totals: Totals,
    /// `stream_state` messages the server sent, by state, over all bots.
    pub stream_states: BTreeMap<String, u64>,
    /// Per kind of track.
    pub by_kind: Vec<KindSummary>,
    /// Server cost, when the server process is known.
    pub server: Option<ServerCost>,
    /// This process's CPU over the measured window.
    pub loadtest_cpu: Option<CpuWindow>,
    /// The gates.
    pub gates: Vec<Gate>,
    /// All gates held.
    pub passed: bool,
    /// Notes for the reader.
    pub notes: Vec<String>,
    /// One point per second.
    pub timeline: Vec<TimelinePoint>,
    /// Per bot.
    pub bots: Vec<BotReport>,
    /// Per received track.
    pub tracks: Vec<TrackReport>,
    /// What the attacker did and saw, per attack (empty without attacks).
    pub attacks: Vec<AttackOutcome>,
}

/// Limits that fail a run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Highest loss, percent.
    pub max_loss_pct: Option<f64>,
    /// Highest p95 latency, ms.
    pub max_p95_ms: Option<f64>,
    /// Most video freezes, all tracks together.
    pub max_freezes: Option<u64>,
}

fn percentiles_of(values: impl Iterator<Item = f64>) -> Percentiles {
    let mut h = latency_histogram();
    for v in values {
        crate::stats::record_latency(&mut h, (v * 1000.0) as u64);
    }
    Percentiles::of(&h)
}

/// Aggregates tracks of one kind; `hist` holds the merged latency of all their packets.
fn kind_summary(kind: Kind, tracks: &[&TrackReport], hist: &Histogram<u64>) -> KindSummary {
    let packets: u64 = tracks.iter().map(|t| t.packets).sum();
    let expected: u64 = tracks.iter().map(|t| t.expected).sum();
    let lost: u64 = tracks.iter().map(|t| t.lost).sum();
    let mut layers: Vec<(String, u64)> = Vec::new();
    for t in tracks {
        for (name, n) in &t.layers {
            match layers.iter_mut().find(|(l, _)| l == name) {
                Some((_, c)) => *c += n,
                None => layers.push((name.clone(), *n)),
            }
        }
    }
    KindSummary {
        kind,
        tracks: tracks.len(),
        packets,
        mean_kbps: if tracks.is_empty() {
            0.0
        } else {
            tracks.iter().map(|t| t.kbps).sum::<f64>() / tracks.len() as f64
        },
        lost,
        loss_pct: pct(lost, expected),
        latency: Percentiles::of(hist),
        max_jitter_ms: tracks.iter().map(|t| t.jitter_ms).fold(0.0, f64::max),
        freezes: tracks.iter().map(|t| t.freezes).sum(),
        longest_freeze_ms: tracks
            .iter()
            .map(|t| t.longest_freeze_ms)
            .fold(0.0, f64::max),
        first_frame: FirstFrame::of(tracks.iter().filter_map(|t| t.first_frame_ms)),
        layers,
    }
}

/// Time from subscription to first frame over several tracks.
#[derive(Debug, Clone, Serialize)]
pub struct FirstFrame {
    /// Tracks measured.
    pub tracks: usize,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

impl FirstFrame {
    /// Nearest-rank percentiles of `times`; `None` when there are none.
    pub fn of(times: impl Iterator<Item = f64>) -> Option<FirstFrame> {
        let mut v: Vec<f64> = times.collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(FirstFrame {
            tracks: v.len(),
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            max_ms: v[v.len() - 1],
        })
    }
}

/// The reason of a bot's error that says the server removed it.
fn removal_reason(error: &str) -> Option<&str> {
    if error == "websocket: server closed the socket" {
        return Some("closed without left");
    }
    error.strip_prefix("removed by the server: ")
}

/// Everything the run produced, for [`Report::build`].
pub struct RunOutput {
    /// The scenario.
    pub scenario: Scenario,
    /// Base URL.
    pub url: String,
    /// UNIX start time.
    pub started_unix_s: u64,
    /// Bots' reports, tracks inside.
    pub bots: Vec<BotReport>,
    /// Merged latency histograms per kind (audio, video).
    pub latency: [Histogram<u64>; 2],
    /// The timeline.
    pub timeline: Vec<TimelinePoint>,
    /// Server cost.
    pub server: Option<ServerCost>,
    /// This process's CPU.
    pub loadtest_cpu: Option<CpuWindow>,
    /// Frames sent late.
    pub late_frames: u64,
    /// Notes.
    pub notes: Vec<String>,
    /// What the attacker did and saw (empty without attacks).
    pub attacks: Vec<AttackOutcome>,
}

impl Report {
    /// Aggregates and checks the gates.
    pub fn build(mut out: RunOutput, limits: Limits) -> Report {
        let tracks: Vec<TrackReport> = out
            .bots
            .iter_mut()
            .flat_map(|b| std::mem::take(&mut b.tracks))
            .collect();
        let audio: Vec<&TrackReport> = tracks.iter().filter(|t| t.kind == Kind::Audio).collect();
        let video: Vec<&TrackReport> = tracks.iter().filter(|t| t.kind == Kind::Video).collect();
        let mut by_kind = Vec::new();
        if !audio.is_empty() {
            by_kind.push(kind_summary(Kind::Audio, &audio, &out.latency[0]));
        }
        if !video.is_empty() {
            by_kind.push(kind_summary(Kind::Video, &video, &out.latency[1]));
        }
        let mut all = latency_histogram();
        for h in &out.latency {
            // Same bounds on both sides: adding cannot fail.
            let _ = all.add(h);
        }
        let expected: usize = out.bots.iter().map(|b| b.expected_tracks).sum();
        let received: usize = out.bots.iter().map(|b| b.received_tracks).sum();
        let failed = out.bots.iter().filter(|b| b.error.is_some()).count();
        let mut bots_removed = BTreeMap::new();
        for b in &out.bots {
            if let Some(reason) = b.error.as_deref().and_then(removal_reason) {
                *bots_removed.entry(reason.to_string()).or_insert(0) += 1;
            }
        }
        let exp_packets: u64 = tracks.iter().map(|t| t.expected).sum();
        let lost: u64 = tracks.iter().map(|t| t.lost).sum();
        let totals = Totals {
            bots: out.bots.len(),
            bots_failed: failed,
            bots_removed,
            tracks_expected: expected,
            tracks_received: received,
            packets: tracks.iter().map(|t| t.packets).sum(),
            bytes: tracks.iter().map(|t| t.bytes).sum(),
            lost,
            loss_pct: pct(lost, exp_packets),
            latency: Percentiles::of(&all),
            video_freezes: video.iter().map(|t| t.freezes).sum(),
            late_frames: out.late_frames,
            keyframe_requests: out.bots.iter().map(|b| b.keyframe_requests).sum(),
            join_ms: percentiles_of(out.bots.iter().filter_map(|b| b.join_ms)),
            connect_ms: percentiles_of(out.bots.iter().filter_map(|b| b.connect_ms)),
        };
        let video_pubs: Vec<bool> = out
            .bots
            .iter()
            .filter_map(|b| b.simulcast_accepted)
            .collect();
        let mut stream_states = BTreeMap::new();
        for b in &out.bots {
            for (k, v) in &b.stream_states {
                *stream_states.entry(k.clone()).or_insert(0) += v;
            }
        }
        let simulcast_accepted = (video_pubs.iter().filter(|a| **a).count(), video_pubs.len());

        let mut gates = vec![
            Gate {
                name: "bots",
                passed: failed == 0,
                detail: if totals.bots_removed.is_empty() {
                    format!("{failed} of {} bots failed", out.bots.len())
                } else {
                    let removed: Vec<String> = totals
                        .bots_removed
                        .iter()
                        .map(|(r, n)| format!("{n} {r}"))
                        .collect();
                    format!(
                        "{failed} of {} bots failed; removed by the server: {}",
                        out.bots.len(),
                        removed.join(", ")
                    )
                },
            },
            Gate {
                name: "tracks",
                passed: expected == received,
                detail: format!("{received} of {expected} expected tracks received"),
            },
        ];
        if let Some(max) = limits.max_loss_pct {
            gates.push(Gate {
                name: "loss",
                passed: totals.loss_pct <= max,
                detail: format!("loss {:.3}% (limit {max}%)", totals.loss_pct),
            });
        }
        if let Some(max) = limits.max_p95_ms {
            gates.push(Gate {
                name: "p95",
                passed: totals.latency.p95_ms <= max,
                detail: format!(
                    "p95 latency {:.1} ms (limit {max} ms)",
                    totals.latency.p95_ms
                ),
            });
        }
        if let Some(max) = limits.max_freezes {
            gates.push(Gate {
                name: "freezes",
                passed: totals.video_freezes <= max,
                detail: format!("{} video freezes (limit {max})", totals.video_freezes),
            });
        }
        if !out.attacks.is_empty() {
            let alarms: usize = out.attacks.iter().map(|a| a.alarms.len()).sum();
            let names: Vec<&str> = out.attacks.iter().map(|a| a.attack).collect();
            gates.push(Gate {
                name: "attacker",
                passed: alarms == 0,
                detail: format!(
                    "{alarms} alarming observations by the attacker ({})",
                    names.join(", ")
                ),
            });
        }
        if out.late_frames > 0 {
            out.notes.push(format!(
                "{} frames were sent late: the load-test process itself fell behind, so results \
                 understate what the server can do",
                out.late_frames
            ));
        }
        let passed = gates.iter().all(|g| g.passed);
        Report {
            scenario: out.scenario,
            url: out.url,
            started_unix_s: out.started_unix_s,
            simulcast_accepted,
            totals,
            stream_states,
            by_kind,
            server: out.server,
            loadtest_cpu: out.loadtest_cpu,
            gates,
            passed,
            notes: out.notes,
            timeline: out.timeline,
            bots: out.bots,
            tracks,
            attacks: out.attacks,
        }
    }

    /// The summary for people.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let t = &self.totals;
        let sc = &self.scenario;
        let _ = writeln!(
            s,
            "scenario {}: {} room(s) x ({} video pub, {} audio pub, {} viewers), simulcast {}, {:.0} s measured",
            sc.name,
            sc.rooms,
            sc.video_publishers,
            sc.audio_publishers,
            sc.subscribers,
            if sc.media.simulcast { "on" } else { "off" },
            sc.duration.as_secs_f64()
        );
        if self.simulcast_accepted.1 > 0 && sc.media.simulcast {
            let _ = writeln!(
                s,
                "simulcast accepted by the server for {} of {} video publishers",
                self.simulcast_accepted.0, self.simulcast_accepted.1
            );
        }
        let _ = writeln!(
            s,
            "bots {} (failed {}), join p50 {:.0} ms p95 {:.0} ms, connect p50 {:.0} ms p95 {:.0} ms",
            t.bots,
            t.bots_failed,
            t.join_ms.p50_ms,
            t.join_ms.p95_ms,
            t.connect_ms.p50_ms,
            t.connect_ms.p95_ms
        );
        let _ = writeln!(
            s,
            "\n{:<6} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  layers",
            "kind",
            "tracks",
            "packets",
            "kbps/trk",
            "loss%",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "jit ms",
            "freezes",
            "longest"
        );
        for k in &self.by_kind {
            let layers: Vec<String> = k.layers.iter().map(|(n, c)| format!("{n}:{c}")).collect();
            let _ = writeln!(
                s,
                "{:<6} {:>7} {:>10} {:>9.0} {:>8.3} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8} {:>7.0}ms  {}",
                match k.kind {
                    Kind::Audio => "audio",
                    Kind::Video => "video",
                },
                k.tracks,
                k.packets,
                k.mean_kbps,
                k.loss_pct,
                k.latency.p50_ms,
                k.latency.p95_ms,
                k.latency.p99_ms,
                k.max_jitter_ms,
                k.freezes,
                k.longest_freeze_ms,
                layers.join(" ")
            );
        }
        let _ = writeln!(
            s,
            "{:<6} {:>7} {:>10} {:>9} {:>8.3} {:>8.1} {:>8.1} {:>8.1}",
            "all",
            t.tracks_received,
            t.packets,
            "",
            t.loss_pct,
            t.latency.p50_ms,
            t.latency.p95_ms,
            t.latency.p99_ms
        );
        for k in &self.by_kind {
            if let Some(f) = &k.first_frame {
                let _ = writeln!(
                    s,
                    "{} first frame after subscribing: p50 {:.0} ms, p95 {:.0} ms, slowest {:.0} ms ({} tracks)",
                    match k.kind {
                        Kind::Audio => "audio",
                        Kind::Video => "video",
                    },
                    f.p50_ms,
                    f.p95_ms,
                    f.max_ms,
                    f.tracks
                );
            }
        }
        if !self.stream_states.is_empty() {
            let states: Vec<String> = self
                .stream_states
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(s, "stream_state from the server: {}", states.join(", "));
        }
        if let Some(c) = &self.server {
            let _ = writeln!(
                s,
                "\nserver pid {} ({}): {:.2} cores over {:.1} s, RSS {:.0} -> {:.0} MiB",
                c.pid,
                c.command.as_deref().unwrap_or("?"),
                c.window.cores,
                c.window.wall_s,
                c.window.rss_start_mib,
                c.window.rss_end_mib
            );
            let _ = writeln!(
                s,
                "forwarded {:.0} packets/s (received by bots: a lower bound); server CPU {} per forwarded packet",
                c.forwarded_pps,
                c.cpu_us_per_forwarded_packet
                    .map_or("n/a".to_string(), |v| format!("{v:.2} µs"))
            );
            if let (Some(share), Some(us)) = (c.send_share, c.send_us_per_forwarded_packet) {
                let _ = writeln!(
                    s,
                    "of which send system calls {us:.2} µs ({:.0} % of the workers' CPU)",
                    share * 100.0
                );
            }
        }
        if let Some(c) = &self.loadtest_cpu {
            let _ = writeln!(
                s,
                "load tester: {:.2} cores, RSS {:.0} MiB",
                c.cores, c.rss_end_mib
            );
        }
        if !self.attacks.is_empty() {
            let _ = writeln!(s, "\nattacker (not one of the bots above):");
            for a in &self.attacks {
                s.push_str(&a.summary());
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let failed: Vec<&Gate> = self.gates.iter().filter(|g| !g.passed).collect();
        let _ = writeln!(s);
        for g in &self.gates {
            let _ = writeln!(
                s,
                "gate {:<7} {}  {}",
                g.name,
                if g.passed { "ok  " } else { "FAIL" },
                g.detail
            );
        }
        for b in self.bots.iter().filter(|b| b.error.is_some()).take(5) {
            let _ = writeln!(
                s,
                "  {} ({}): {}",
                b.name,
                b.room,
                b.error.as_deref().unwrap_or("")
            );
        }
        let _ = writeln!(
            s,
            "{}",
            if failed.is_empty() {
                "PASS".to_string()
            } else {
                format!(
                    "FAIL: {}",
                    failed.iter().map(|g| g.name).collect::<Vec<_>>().join(", ")
                )
            }
        );
        s
    }
}

#[cfg(test)]
mod first_frame_tests {
    use super::FirstFrame;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert!(FirstFrame::of(std::iter::empty()).is_none());
        let f = FirstFrame::of((1..=20).map(f64::from)).unwrap();
        assert_eq!(
            (f.tracks, f.p50_ms, f.p95_ms, f.max_ms),
            (20, 10.0, 19.0, 20.0)
        );
        let one = FirstFrame::of([7.0].into_iter()).unwrap();
        assert_eq!((one.p50_ms, one.p95_ms), (7.0, 7.0));
    }
}
