//! Prometheus metrics. The engine counts on the hot path in plain integers ([`EngineStats`]);
//! each worker publishes the differences once a second ([`WorkerMetrics`]), with a `worker`
//! label. Nothing goes through the `metrics` macros per packet.
//!
//! The forwarding delay (a datagram's arrival to the end of the send that follows its receive
//! batch) is gathered per worker in a fixed-bucket [`Histogram`] for one publishing interval,
//! then handed to the recorder's `sfu_forwarding_delay_seconds` histogram, whose buckets are the
//! same: the samples of each bucket as that many samples of their mean, so bucket counts and sum
//! are exact. Values that the `metrics` facade cannot express (fractional counters: CPU
//! seconds) are rendered by [`render_extra`]. `docs/operations.md` lists every metric.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;

use crate::core::forward::DropReason;
use crate::core::stats::{EngineStats, Histogram, KIND_NAMES};
use crate::core::Engine;

use super::udp::thread_cpu_time;

/// How often workers publish.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Join time buckets, seconds.
const JOIN_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// Bandwidth estimate buckets, bits per second.
const BWE_BUCKETS: [f64; 10] = [100e3, 250e3, 500e3, 1e6, 1.5e6, 2.5e6, 4e6, 6e6, 10e6, 25e6];

/// Installs the Prometheus recorder for the process and describes the metrics. Render with
/// [`PrometheusHandle::render`].
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("sfu_join_duration_seconds".into()),
            &JOIN_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("sfu_bandwidth_estimate_bps".into()),
            &BWE_BUCKETS,
        )?
        .set_buckets_for_metric(
            Matcher::Full("sfu_forwarding_delay_seconds".into()),
            &Histogram::BOUNDS,
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    describe_gauge!("sfu_rooms", "Rooms with participants, per worker.");
    describe_gauge!("sfu_participants", "Participants, per worker.");
    describe_gauge!("sfu_tracks", "Published tracks, per worker.");
    describe_gauge!(
        "sfu_worker_admitted",
        "Participants placed on each worker, joins in progress included (admission control counts these)."
    );
    describe_gauge!(
        "sfu_ready",
        "1 while the server admits new participants (what /readyz says)."
    );
    describe_counter!(
        "sfu_rtp_packets_in_total",
        "RTP packets received from publishers, by kind."
    );
    describe_counter!("sfu_rtp_bytes_in_total", "Their RTP payload bytes.");
    describe_counter!(
        "sfu_rtp_packets_out_total",
        "RTP packets forwarded to subscribers, by kind (retransmissions not included)."
    );
    describe_counter!("sfu_rtp_bytes_out_total", "Their RTP payload bytes.");
    describe_counter!(
        "sfu_datagrams_in_total",
        "UDP and ICE-TCP packets received."
    );
    describe_counter!("sfu_datagrams_out_total", "Packets handed to the sockets.");
    describe_counter!(
        "sfu_datagrams_unknown_total",
        "Packets from addresses no participant owns."
    );
    describe_counter!(
        "sfu_stun_forged_total",
        "STUN requests from new addresses that named a participant but failed the integrity check."
    );
    describe_counter!(
        "sfu_sessions_detached_total",
        "Participants whose WebSocket dropped without leave and who were held for resume."
    );
    describe_counter!(
        "sfu_resumes_total",
        "Resume requests, by result (ok or refused)."
    );
    describe_counter!(
        "sfu_participants_left_total",
        "Participants that left, by reason (left, disconnected, timeout, slow_consumer, ...)."
    );
    describe_counter!(
        "sfu_signals_refused_total",
        "Offers, answers and candidates refused (malformed, over a limit, out of order)."
    );
    describe_counter!(
        "sfu_datagrams_rejected_total",
        "Packets the WebRTC stack refused (malformed, failed decryption)."
    );
    describe_counter!(
        "sfu_dropped_packets_total",
        "RTP packets not forwarded to a subscriber, by reason."
    );
    describe_counter!(
        "sfu_keyframe_requests_in_total",
        "Keyframe requests (PLI, FIR) received from subscribers."
    );
    describe_counter!(
        "sfu_nacks_received_total",
        "NACKs received from subscribers, answered from the retransmission cache."
    );
    describe_counter!(
        "sfu_nacks_sent_total",
        "NACKs sent to publishers for packets lost on the way in."
    );
    describe_counter!(
        "sfu_datagrams_stale_total",
        "RTP datagrams dropped unread because they waited in the socket longer than limits.max_input_age."
    );
    describe_counter!(
        "sfu_relayed_packets_total",
        "RTP packets handed between workers that share a room, by direction (out: handed over; in: received)."
    );
    describe_counter!(
        "sfu_shard_messages_dropped_total",
        "Messages for another worker sharing a room that its full queue could not take."
    );
    describe_gauge!(
        "sfu_worker_load_factor",
        "Scale of every subscriber's bandwidth budget on the worker: 1 while it keeps up, lower while it sheds load."
    );
    describe_gauge!(
        "sfu_worker_input_wait_seconds",
        "The least time a datagram waited in the worker's socket over the last 100 ms interval with input (a standing queue)."
    );
    describe_gauge!(
        "sfu_pacer_oldest_seconds",
        "How long the oldest packet still queued towards any subscriber of the worker has waited in its pacer."
    );
    describe_counter!(
        "sfu_rtc_timeouts_total",
        "Full timeouts handed to connections: one per due deadline other than the pacer's."
    );
    describe_counter!(
        "sfu_rtc_releases_total",
        "Pacing-only timeouts: one per connection a batch wrote to, and one per deadline its pacer asked for."
    );
    describe_counter!(
        "sfu_keyframe_requests_out_total",
        "Keyframe requests (PLI) sent to publishers."
    );
    describe_counter!(
        "sfu_layer_switches_total",
        "Simulcast layer switches of subscriptions."
    );
    describe_counter!(
        "sfu_red_packets_in_total",
        "Redundant-audio (RED) packets received from publishers."
    );
    describe_counter!(
        "sfu_red_packets_forwarded_total",
        "RED packets forwarded as they came, to subscribers whose link loses packets."
    );
    describe_counter!(
        "sfu_red_packets_stripped_total",
        "RED packets sent as plain Opus (their primary block)."
    );
    describe_counter!(
        "sfu_red_packets_added_total",
        "RED packets made from a plain Opus publisher's packets, for subscribers on lossy links."
    );
    describe_counter!(
        "sfu_data_messages_total",
        "Data-channel messages: relayed (per recipient), refused, dropped."
    );
    describe_counter!("sfu_speaker_changes_total", "Changes of who is speaking.");
    describe_histogram!(
        "sfu_forwarding_delay_seconds",
        "Forwarded RTP packets: arrival to the end of the send after their receive batch."
    );
    describe_histogram!(
        "sfu_bandwidth_estimate_bps",
        "Bandwidth estimates towards subscribers, sampled once a second per participant."
    );
    describe_histogram!(
        "sfu_join_duration_seconds",
        "Join requests admitted: from the request to the worker's answer."
    );
    describe_counter!(
        "sfu_joins_total",
        "Join requests, by result (ok or error code)."
    );
    describe_gauge!(
        "sfu_http_connections",
        "Open connections to the HTTP listener, WebSockets included."
    );
    describe_counter!(
        "sfu_http_connections_refused_total",
        "Connections closed at accept, over the total (total) or per-address (per_ip) cap."
    );
    describe_counter!(
        "sfu_ws_refused_total",
        "WebSocket upgrades answered 503: too many sockets that have not joined (total, per_ip)."
    );
    describe_counter!(
        "sfu_ws_messages_rate_limited_total",
        "Signalling messages dropped over a socket's rate limit."
    );
    describe_counter!(
        "sfu_webhook_delivered_total",
        "Webhook posts a receiver accepted."
    );
    describe_counter!(
        "sfu_webhook_failed_total",
        "Webhook events given up on for a URL after their last attempt."
    );
    describe_counter!(
        "sfu_webhook_dropped_total",
        "Webhook events dropped because a queue was full."
    );
}

/// The CPU time of each worker's thread by its `worker` label, as last published: the whole
/// of it, and the part in its media socket's send calls.
static WORKER_CPU: Mutex<BTreeMap<String, (f64, f64)>> = Mutex::new(BTreeMap::new());

/// The metrics the recorder cannot hold, in the Prometheus text format: the workers' CPU time
/// (a counter of fractional seconds) and the process metrics read from `/proc`.
pub fn render_extra() -> String {
    let mut out = String::new();
    {
        let cpu = WORKER_CPU.lock();
        if !cpu.is_empty() {
            family(
                &mut out,
                "sfu_worker_cpu_seconds_total",
                "counter",
                "CPU time used by the worker's thread (rate() of it is the worker's load, 0 to 1).",
            );
            for (worker, (seconds, _)) in cpu.iter() {
                let _ = writeln!(
                    out,
                    "sfu_worker_cpu_seconds_total{{worker=\"{worker}\"}} {seconds}"
                );
            }
            out.push('\n');
            family(
                &mut out,
                "sfu_worker_send_cpu_seconds_total",
                "counter",
                "Part of the worker's CPU time spent in its send system calls, the kernel's work \
                 for the datagrams it sends (estimated from one call in eight, picked at random).",
            );
            for (worker, (_, seconds)) in cpu.iter() {
                let _ = writeln!(
                    out,
                    "sfu_worker_send_cpu_seconds_total{{worker=\"{worker}\"}} {seconds}"
                );
            }
            out.push('\n');
        }
    }
    if let Some(p) = super::process::ProcessStats::read() {
        for (name, kind, help, value) in p.samples() {
            family(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {value}\n");
        }
    }
    out
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// What one worker publishes, and what it published last.
pub struct WorkerMetrics {
    worker: String,
    last: EngineStats,
    /// Forwarding delay since the last publish.
    delay: Histogram,
    /// The start of the current receive turn and the forwarded count then.
    turn: Option<(Instant, u64)>,
    tick: tokio::time::Interval,
}

impl WorkerMetrics {
    /// Metrics of worker `index`. Call from the worker's runtime.
    pub fn new(index: usize) -> Self {
        let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        WorkerMetrics {
            worker: index.to_string(),
            last: EngineStats::default(),
            delay: Histogram::default(),
            turn: None,
            tick,
        }
    }

    /// The worker's load control (its factor and standing queue), and the oldest packet waiting
    /// in a subscriber's pacer.
    pub fn publish_load(&self, load: &super::overload::LoadControl, oldest_queued: Duration) {
        let w = || ("worker", self.worker.clone());
        gauge!("sfu_worker_load_factor", &[w()]).set(load.factor());
        gauge!("sfu_worker_input_wait_seconds", &[w()]).set(load.standing().as_secs_f64());
        gauge!("sfu_pacer_oldest_seconds", &[w()]).set(oldest_queued.as_secs_f64());
    }

    /// Resolves when it is time to [`publish`](Self::publish).
    pub async fn tick(&mut self) {
        self.tick.tick().await;
    }

    /// Datagrams are about to be received (and forwarded).
    pub fn start_turn(&mut self, stats: &EngineStats) {
        if self.turn.is_none() {
            self.turn = Some((Instant::now(), stats.rtp_forwarded));
        }
    }

    /// The datagrams of the turn are sent: the packets forwarded since
    /// [`start_turn`](Self::start_turn) took this long.
    pub fn end_turn(&mut self, stats: &EngineStats) {
        if let Some((start, before)) = self.turn.take() {
            let n = stats.rtp_forwarded.saturating_sub(before);
            if n > 0 {
                self.delay.add(start.elapsed(), n);
            }
        }
    }

    /// Publishes gauges and the counters' increments since the last call. `participants`: the
    /// ids of the participants on this worker, for their bandwidth estimates.
    pub fn publish<'a>(
        &mut self,
        engine: &Engine,
        participants: impl Iterator<Item = &'a String>,
        send_cpu: Duration,
    ) {
        let w = || ("worker", self.worker.clone());
        gauge!("sfu_rooms", &[w()]).set(engine.room_count() as f64);
        gauge!("sfu_participants", &[w()]).set(engine.participant_count() as f64);
        gauge!("sfu_tracks", &[w()]).set(engine.track_count() as f64);

        let s = engine.stats();
        let l = &self.last;
        let add = |name: &'static str, now: u64, before: u64| {
            counter!(name, &[w()]).increment(now.saturating_sub(before));
        };
        let add_labeled =
            |name: &'static str, label: (&'static str, &'static str), now: u64, before: u64| {
                counter!(name, &[w(), (label.0, label.1.to_owned())])
                    .increment(now.saturating_sub(before));
            };
        add("sfu_datagrams_in_total", s.datagrams_in, l.datagrams_in);
        add("sfu_datagrams_out_total", s.datagrams_out, l.datagrams_out);
        add(
            "sfu_datagrams_unknown_total",
            s.datagrams_unknown,
            l.datagrams_unknown,
        );
        add(
            "sfu_datagrams_rejected_total",
            s.datagrams_rejected,
            l.datagrams_rejected,
        );
        add("sfu_stun_forged_total", s.stun_forged, l.stun_forged);
        add(
            "sfu_signals_refused_total",
            s.signals_refused,
            l.signals_refused,
        );
        add(
            "sfu_keyframe_requests_in_total",
            s.keyframe_requests_in,
            l.keyframe_requests_in,
        );
        add("sfu_nacks_received_total", s.nacks_in, l.nacks_in);
        add("sfu_nacks_sent_total", s.nacks_out, l.nacks_out);
        add("sfu_rtc_timeouts_total", s.rtc_timeouts, l.rtc_timeouts);
        add("sfu_rtc_releases_total", s.rtc_releases, l.rtc_releases);
        add(
            "sfu_datagrams_stale_total",
            s.datagrams_stale,
            l.datagrams_stale,
        );
        add_labeled(
            "sfu_relayed_packets_total",
            ("direction", "out"),
            s.relayed_out,
            l.relayed_out,
        );
        add_labeled(
            "sfu_relayed_packets_total",
            ("direction", "in"),
            s.relayed_in,
            l.relayed_in,
        );
        add(
            "sfu_shard_messages_dropped_total",
            s.shard_dropped,
            l.shard_dropped,
        );
        add(
            "sfu_keyframe_requests_out_total",
            s.keyframe_requests,
            l.keyframe_requests,
        );
        add(
            "sfu_layer_switches_total",
            s.layer_switches,
            l.layer_switches,
        );
        add("sfu_red_packets_in_total", s.red_in, l.red_in);
        add(
            "sfu_red_packets_forwarded_total",
            s.red_forwarded,
            l.red_forwarded,
        );
        add(
            "sfu_red_packets_stripped_total",
            s.red_stripped,
            l.red_stripped,
        );
        add("sfu_red_packets_added_total", s.red_added, l.red_added);
        add(
            "sfu_speaker_changes_total",
            s.speaker_changes,
            l.speaker_changes,
        );
        for (k, kind) in KIND_NAMES.iter().enumerate() {
            let labels = [w(), ("kind", (*kind).to_owned())];
            for (name, now, before) in [
                (
                    "sfu_rtp_packets_in_total",
                    s.rtp_in_by_kind[k],
                    l.rtp_in_by_kind[k],
                ),
                (
                    "sfu_rtp_bytes_in_total",
                    s.rtp_in_bytes_by_kind[k],
                    l.rtp_in_bytes_by_kind[k],
                ),
                (
                    "sfu_rtp_packets_out_total",
                    s.rtp_out_by_kind[k],
                    l.rtp_out_by_kind[k],
                ),
                (
                    "sfu_rtp_bytes_out_total",
                    s.rtp_out_bytes_by_kind[k],
                    l.rtp_out_bytes_by_kind[k],
                ),
            ] {
                counter!(name, &labels).increment(now.saturating_sub(before));
            }
        }
        for r in DropReason::ALL {
            let labels = [w(), ("reason", r.as_str().to_owned())];
            let i = r.index();
            counter!("sfu_dropped_packets_total", &labels)
                .increment(s.dropped[i].saturating_sub(l.dropped[i]));
        }
        for (outcome, now, before) in [
            ("relayed", s.data_relayed, l.data_relayed),
            ("refused", s.data_refused, l.data_refused),
            ("dropped", s.data_dropped, l.data_dropped),
        ] {
            let labels = [w(), ("outcome", outcome.to_owned())];
            counter!("sfu_data_messages_total", &labels).increment(now.saturating_sub(before));
        }
        self.last = s.clone();

        let delay = histogram!("sfu_forwarding_delay_seconds", &[w()]);
        for (mean, n) in std::mem::take(&mut self.delay).means() {
            delay.record_many(mean, usize::try_from(n).unwrap_or(usize::MAX));
        }

        let estimates = histogram!("sfu_bandwidth_estimate_bps", &[w()]);
        for id in participants {
            if let Some(bps) = engine.estimate_of(id) {
                estimates.record(bps as f64);
            }
        }
        if let Some(cpu) = thread_cpu_time() {
            WORKER_CPU.lock().insert(
                self.worker.clone(),
                (cpu.as_secs_f64(), send_cpu.as_secs_f64()),
            );
        }
    }
}
