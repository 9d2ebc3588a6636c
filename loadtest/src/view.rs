//! What a person watching the run sees: a progress bar and a small table refreshed each second on
//! a terminal, a line every few seconds otherwise, nothing with `--quiet`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::live::Snapshot;
use crate::report::TimelinePoint;

/// Lines of the live table under the bar.
const TABLE_LINES: usize = 3;
/// Without a terminal, a status line this often.
const PLAIN_EVERY_S: u64 = 5;

/// The live view.
pub struct View {
    mode: Mode,
}

enum Mode {
    Quiet,
    Plain {
        last_s: u64,
    },
    Terminal {
        _multi: MultiProgress,
        bar: ProgressBar,
        lines: Vec<ProgressBar>,
    },
}

impl View {
    /// A view for a run of `total` seconds.
    pub fn new(quiet: bool, total: Duration) -> Self {
        if quiet {
            return View { mode: Mode::Quiet };
        }
        if !std::io::stderr().is_terminal() {
            return View {
                mode: Mode::Plain { last_s: 0 },
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4));
        let bar = multi.add(ProgressBar::new(total.as_secs().max(1)));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>9} [{bar:40.cyan/blue}] {pos:>4}/{len} s  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix("loadtest");
        let line_style =
            ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
        let lines = (0..TABLE_LINES)
            .map(|_| {
                let l = multi.add(ProgressBar::new(1));
                l.set_style(line_style.clone());
                l
            })
            .collect();
        View {
            mode: Mode::Terminal {
                _multi: multi,
                bar,
                lines,
            },
        }
    }

    /// Shows the state after `elapsed_s` seconds; `phase` says what is going on.
    pub fn update(
        &mut self,
        elapsed_s: u64,
        phase: &str,
        total_bots: usize,
        tracks_expected: usize,
        s: &Snapshot,
        p: &TimelinePoint,
    ) {
        let table = [
            format!(
                "  bots     started {:>5}/{total_bots}  joined {:>5}  connected {:>5}  failed {:>3}  done {:>5}",
                s.started, s.joined, s.connected, s.failed, s.done
            ),
            format!(
                "  media    rx {:>8.2} Mbit/s {:>8.0} pkt/s   tx {:>7.2} Mbit/s   tracks {:>5}/{tracks_expected}   keyframe req {:>5}",
                p.rx_kbps / 1000.0,
                p.rx_pps,
                p.tx_kbps / 1000.0,
                s.tracks_receiving,
                s.keyframe_requests
            ),
            format!(
                "  quality  loss {:>6.3}%   latency p50 {:>6.1} p95 {:>6.1} p99 {:>6.1} ms   cpu server {} loadtest {}",
                p.loss_pct,
                p.latency.p50_ms,
                p.latency.p95_ms,
                p.latency.p99_ms,
                cores(p.server_cores),
                cores(p.loadtest_cores)
            ),
        ];
        match &mut self.mode {
            Mode::Quiet => {}
            Mode::Plain { last_s } => {
                if elapsed_s >= *last_s + PLAIN_EVERY_S {
                    *last_s = elapsed_s;
                    eprintln!("[{elapsed_s:>4} s] {phase}");
                    for l in &table {
                        eprintln!("{l}");
                    }
                }
            }
            Mode::Terminal { bar, lines, .. } => {
                bar.set_position(elapsed_s);
                bar.set_message(phase.to_string());
                for (l, text) in lines.iter().zip(table) {
                    l.set_message(text);
                }
            }
        }
    }

    /// Removes the live view before the summary is printed.
    pub fn finish(&mut self) {
        if let Mode::Terminal { bar, lines, .. } = &self.mode {
            bar.finish_and_clear();
            for l in lines {
                l.finish_and_clear();
            }
        }
    }

    /// A message above the live view.
    pub fn note(&self, msg: &str) {
        match &self.mode {
            Mode::Quiet => {}
            Mode::Plain { .. } => eprintln!("{msg}"),
            Mode::Terminal { bar, .. } => bar.println(msg),
        }
    }
}

fn cores(c: Option<f64>) -> String {
    c.map_or("n/a".into(), |c| format!("{c:.2}"))
}
