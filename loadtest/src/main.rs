//! `loadtest`: synthetic participants for the SFU. See `docs/benchmarks.md` for scenarios and
//! measured results, and `loadtest --help` for the flags.

mod attack;
mod bot;
mod cli;
mod live;
mod media;
mod plot;
mod procfs;
mod report;
mod run;
mod scenario;
mod stats;
mod view;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::Args;
use report::Report;
use view::View;

/// Exit status when a gate failed.
const EXIT_GATE_FAILED: u8 = 1;
/// Exit status when the run could not start or its output could not be written.
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let scenario = match args.scenario() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .clamp(1, 64);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("loadtest")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadtest: tokio runtime: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let total = scenario.join_time() + scenario.warmup + scenario.duration;
    let mut view = View::new(args.quiet, total);
    let config = args.run_config(scenario);
    let output = rt.block_on(run::run(config, &mut view));
    view.finish();
    let output = match output {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let report = Report::build(output, args.limits());
    print!("{}", report.summary());
    let mut status = if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_GATE_FAILED)
    };
    if let Some(path) = &args.report {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!("loadtest: writing {}: {e}", path.display());
            status = ExitCode::from(EXIT_ERROR);
        }
    }
    if let Some(path) = &args.plot {
        let title = format!(
            "{} - {} room(s), simulcast {}",
            report.scenario.name,
            report.scenario.rooms,
            if report.scenario.media.simulcast {
                "on"
            } else {
                "off"
            }
        );
        if let Err(e) = plot::write(path, &title, &report.timeline, args.plot_font.as_deref()) {
            eprintln!("loadtest: plot {}: {e}", path.display());
            status = ExitCode::from(EXIT_ERROR);
        }
    }
    // Bots that did not stop in time must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    status
}
