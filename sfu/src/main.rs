//! The `sfu` binary: `sfu [serve]` runs the server; `sfu token`, `sfu generate-keys` and
//! `sfu room` are clients (see [`sfu::cli`]).

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing::error;
use tracing_subscriber::EnvFilter;

use sfu::cli::{self, Cli, Command};
use sfu::config::{Config, ServeArgs};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(&cli.serve),
        Some(Command::Serve(args)) => serve(&args),
        Some(Command::Token(args)) => report(cli::token(&args)),
        Some(Command::GenerateKeys(args)) => report(cli::generate_keys_command(&args)),
        Some(Command::Room { command }) => block_on(cli::room(command)),
        Some(Command::Participant { command }) => block_on(cli::participant(command)),
    }
}

/// Runs a REST client command on a small runtime of its own.
fn block_on(command: impl std::future::Future<Output = Result<(), cli::CliError>>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => report(rt.block_on(command)),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn report(r: Result<(), cli::CliError>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                cli::CliError::Config(_) | cli::CliError::Usage(_) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    let config = match Config::load(args).and_then(|c| c.check_exposure().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        println!("configuration ok");
        return ExitCode::SUCCESS;
    }
    init_logging(&config);
    match sfu::server::serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    // `Config::load` has checked the filter.
    let mut filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // str0m's SDP parser warns about every malformed m-line it meets, so one client could write
    // thousands of lines a second. The engine logs refused SDPs itself, at most once per 10 s,
    // unless the filter names the parser.
    if !config.log.contains("str0m::sdp") {
        if let Ok(quiet) = "str0m::sdp::parser=error".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    // Colour codes only for a person at a terminal: piped into a file, journald or a log
    // collector they would be noise in every line. NO_COLOR (any value) turns them off too.
    let ansi = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
