//! The engine's own work per forwarded packet, counted in instructions.
//!
//! Runs one of the reference scenarios on the test bed (str0m clients, a virtual clock, an
//! in-memory network) and, after a warm-up, meters a window: under
//! `valgrind --tool=callgrind --collect-atstart=no`, only the instructions of calls into the
//! engine are counted. Prints the RTP datagrams the engine sent in the window; the count divided
//! by them is the engine's instructions per forwarded packet. Unlike CPU time, the count does not
//! move with the host's load, so changes of a percent show. It leaves out the kernel, and cache
//! misses cost no more than hits. `loadtest/scripts/instructions.sh` runs it and prints the
//! table.
//!
//! ```text
//! cargo bench -p sfu --bench engine_cost -- single --viewers 40 --warmup 6 --seconds 4
//! ```

#[path = "../tests/virtual_net/mod.rs"]
mod virtual_net;

use std::process::ExitCode;

use virtual_net::{rtp_sent, secs, set_metering, Scenario};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let (mut viewers, mut warmup, mut seconds) = (None, 6.0, 4.0);
    while let Some(arg) = args.next() {
        let mut value = |what: &str| {
            args.next()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match arg.as_str() {
            "--viewers" => viewers = Some(value("--viewers") as usize),
            "--warmup" => warmup = value("--warmup"),
            "--seconds" => seconds = value("--seconds"),
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            name => match Scenario::from_name(name) {
                Some(s) => scenario = Some(s),
                None => {
                    eprintln!(
                        "usage: engine_cost cameras|single|meeting|audio \
                         [--viewers N] [--warmup SECONDS] [--seconds SECONDS]"
                    );
                    return ExitCode::from(2);
                }
            },
        }
    }
    let Some(scenario) = scenario else {
        eprintln!("engine_cost: name a scenario: cameras, single, meeting or audio");
        return ExitCode::from(2);
    };
    let viewers = viewers.unwrap_or(scenario.default_viewers());
    let mut bed = scenario.bed(viewers);
    bed.run(secs(warmup));
    let before: usize = rtp_sent(&bed).values().sum();
    set_metering(true);
    bed.run(secs(seconds));
    set_metering(false);
    let after: usize = rtp_sent(&bed).values().sum();
    let sent = after - before;
    if sent == 0 {
        eprintln!("engine_cost: the engine sent no RTP in the window");
        return ExitCode::FAILURE;
    }
    println!(
        "scenario={} viewers={viewers} warmup_s={warmup} window_s={seconds} rtp_sent={sent}",
        scenario.name()
    );
    ExitCode::SUCCESS
}
