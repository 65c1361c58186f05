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
//!
//! Arguments are parsed by hand; every error is reported on stderr with exit status 1
//! (2 for a usage error).

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let flags = match Flags::parse(rest) {
        Ok(flags) => flags,
        Err(e) => return usage_error(&e),
    };
    let outcome = match command.as_str() {
        "ceiling" => ceiling::Args::from_flags(&flags)
            .map_err(Failure::Usage)
            .and_then(|args| {
                runtime()?
                    .block_on(ceiling::serve(args))
                    .map_err(Failure::Run)
            }),
        "load" => load::Args::from_flags(&flags)
            .map_err(Failure::Usage)
            .and_then(|args| runtime()?.block_on(load::run(args)).map_err(Failure::Run)),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => Err(Failure::Usage(format!("unknown command `{other}`"))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(e)) => usage_error(&e),
        Err(Failure::Run(e)) => {
            eprintln!("otp-bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why a command failed: bad arguments (exit 2) or a failure while running (exit 1).
#[derive(Debug)]
enum Failure {
    Usage(String),
    Run(String),
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("otp-bench: {message}\n");
    eprint!("{USAGE}");
    ExitCode::from(2)
}

/// The multi-threaded tokio runtime both commands run on (one worker per core).
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Run(format!("cannot start the tokio runtime: {e}")))
}

/// `--name value` pairs, in order.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    pairs: Vec<(String, String)>,
}

impl Flags {
    /// Reads `--name value` pairs; anything else is an error.
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut pairs = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument `{arg}`"));
            };
            let value = it
                .next()
                .ok_or_else(|| format!("`--{name}` needs a value"))?;
            pairs.push((name.to_owned(), value.clone()));
        }
        Ok(Self { pairs })
    }

    /// The value of `--name`, the last one when given twice.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a required `--name`.
    pub(crate) fn required(&self, name: &str) -> Result<&str, String> {
        self.get(name)
            .ok_or_else(|| format!("`--{name}` is required"))
    }

    /// Fails on a flag not in `known`.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), String> {
        match self
            .pairs
            .iter()
            .find(|(n, _)| !known.contains(&n.as_str()))
        {
            Some((name, _)) => Err(format!("unknown option `--{name}`")),
            None => Ok(()),
        }
    }

    /// `--name` parsed as `T`, or `default` when absent.
    pub(crate) fn parsed<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|e| format!("`--{name} {v}` is not valid: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Flags;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_are_pairs() {
        let flags = Flags::parse(&strings(&["--a", "1", "--b", "x", "--a", "2"])).unwrap();
        assert_eq!(flags.get("a"), Some("2"));
        assert_eq!(flags.get("b"), Some("x"));
        assert_eq!(flags.parsed("a", 0_u32).unwrap(), 2);
        assert_eq!(flags.parsed("c", 7_u32).unwrap(), 7);
        assert!(flags.only(&["a"]).is_err());
        assert!(Flags::parse(&strings(&["--a"])).is_err());
        assert!(Flags::parse(&strings(&["a"])).is_err());
    }
}
