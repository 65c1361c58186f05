//! `otp-bench`: the two halves of `cargo xtask bench`.
//!
//! * `otp-bench ceiling --addr 127.0.0.1:PORT --redis redis://...` serves a bare axum app
//!   with the same routes and answer shapes as the example apps, each request doing exactly
//!   one Redis `EXISTS`: the most the machine allows for "one HTTP request, one Redis round
//!   trip", against which the library is measured.
//! * `otp-bench load --base http://127.0.0.1:PORT --scenario protected|flow|request-otp|refresh
//!   --concurrency N --seconds S [--warmup S] [--rate R]` runs N virtual users on keep-alive
//!   connections, in a closed loop or at R operations per second, and prints one JSON line
//!   with throughput, latency percentiles and errors.

mod ceiling;
mod load;

use std::process::ExitCode;

/// The allocator of the example apps, so the ceiling server stands on the same footing
/// (and the load generator spends less of the shared CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "\
Usage:
  otp-bench ceiling --addr 127.0.0.1:PORT --redis redis://HOST:PORT
  otp-bench load --base http://127.0.0.1:PORT --scenario protected|flow|request-otp|refresh
                 [--concurrency N (32)] [--seconds S (10)] [--warmup S (2)]
                 [--rate OPS_PER_S (0: closed loop)]
";

fn main() -> ExitCode {
    let mut args = pico_args::Arguments::from_env();
    let command = args.subcommand().ok().flatten().unwrap_or_default();
    let parsed = match command.as_str() {
        "ceiling" => ceiling::Args::parse(&mut args).map(Command::Ceiling),
        "load" => load::Args::parse(&mut args).map(Command::Load),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(format!("unknown command `{other}`")),
    };
    let rest = args.finish();
    let parsed = match parsed {
        Ok(_) if !rest.is_empty() => Err(format!("unexpected arguments {rest:?}")),
        parsed => parsed,
    };
    let command = match parsed {
        Ok(command) => command,
        Err(e) => {
            eprint!("otp-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The multi-threaded tokio runtime both commands run on (one worker per core).
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the tokio runtime: {e}"))
        .and_then(|runtime| match command {
            Command::Ceiling(args) => runtime.block_on(ceiling::serve(args)),
            Command::Load(args) => runtime.block_on(load::run(args)),
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("otp-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A command and its arguments.
#[derive(Debug)]
enum Command {
    Ceiling(ceiling::Args),
    Load(load::Args),
}
