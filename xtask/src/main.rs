//! Task runner of the workspace, invoked as `cargo xtask <command>`
//! (the alias lives in `.cargo/config.toml`).
//!
//! Commands:
//!
//! * `test [ARGS...]`: starts a standalone Redis, a three-master Redis
//!   Cluster and an SMTP sink (postfix's `smtp-sink`) on free loopback ports,
//!   exports their addresses to the tests through `OTP_TEST_*` variables and
//!   runs every test of the workspace (`cargo nextest` when installed, else
//!   `cargo test`; then the doc tests). `ARGS` go to the test runner.
//! * `servers`: starts the same servers, prints the `export` lines for a
//!   shell and keeps them running until Ctrl-C or end of standard input.
//! * `ci`: formatting check, clippy, rustdoc (warnings denied), the lean build (no
//!   default features), `package`, `deny`, then `test`, then `schemathesis`, then a short
//!   run of every fuzz target.
//! * `package`: what each published crate ships, then `cargo package` of them all.
//! * `deny`: `cargo deny check licenses bans sources` (deny.toml).
//! * `schemathesis`: Schemathesis (PyPI, pinned, in a venv under `target/`) against both
//!   example apps with every check, signed in; any finding or warning fails.
//! * `fuzz [SECONDS]`: every fuzz target for a bounded time.
//! * `soak [--minutes N] [--rate R]`: the login flow at a steady rate for a long time,
//!   watching 5xx and memory.
//! * `bench [--seconds N] [--concurrency N] [--warmup N] [--rounds N]
//!   [--only app/store,...] [--scenarios name,...]`: builds the example apps and
//!   `otp-bench` in release mode, starts the same servers and, over several rounds,
//!   measures each app and Redis store under load, each run paired with a run of the
//!   machine's ceiling just before it (see `bench.rs`); prints a table and writes
//!   `target/bench/bench.json`.
//!
//! Missing server binaries are installed with `apt-get` when running as root
//! on Debian; otherwise the runner names the packages to install.
//!
//! The runner depends on serde_json alone (for the bench's report), a crate the workspace
//! builds anyway, so it compiles in a few seconds.

mod bench;
mod cmd;
mod fuzz;
mod package;
mod schemathesis;
mod servers;
mod soak;
mod tools;

use std::io::{self, Read as _, Write as _};
use std::process::ExitCode;

use crate::cmd::{cargo, exit_code, run, workspace_root};
use crate::servers::Servers;
use crate::tools::Tools;

/// Result of a command: the process exit code on completion, or a message
/// for an error of the runner itself (missing tool, server not starting...).
type Outcome = Result<u8, String>;

const USAGE: &str = "\
Usage: cargo xtask <command> [args...]

Commands:
  test [ARGS...]  Start Redis, a 3-node Redis Cluster and an SMTP sink on free
                  loopback ports, then run every test of the workspace against
                  them (cargo nextest if installed, else cargo test; then the
                  doc tests). ARGS are passed to the test runner; when ARGS are
                  given the doc tests are skipped.
  servers         Start the same servers, print `export` lines for a shell and
                  keep them running until Ctrl-C or end of input (Ctrl-D).
  ci              cargo fmt --check, clippy -D warnings, rustdoc -D warnings,
                  the lean build (otp-core and the adapters without default
                  features: clippy, otp-core's unit tests, and a `cargo tree`
                  free of rsa, p256, p384 and ed25519-dalek), `package`, `deny`,
                  then `test`, then `schemathesis`, then 15 s of each fuzz
                  target; stops at the first failure.
  package         The published crates' file lists (sources, README and
                  licences only), then `cargo package` of them all, which
                  builds each crate from its packaged files alone.
  deny            cargo deny check licenses bans sources (deny.toml; installs
                  cargo-deny when missing): the checks that need no network.
  schemathesis    Schemathesis (from PyPI, pinned, in a venv under target/)
                  against /openapi.json of both examples (axum: cookie and
                  body transports; poem: cookie and both), every check,
                  each case signed in by the magic code; any finding or
                  warning fails (tests/schemathesis/).
  fuzz [SECONDS]  Run each cargo-fuzz target in tests/fuzz for SECONDS
                  (default 300), seeded with tests/fuzz/regressions.
  bench [--seconds N] [--concurrency N] [--warmup N] [--rounds N]
        [--only app/store[,app/store...]] [--scenarios name[,name...]]
                  Build the example apps and otp-bench (release), start Redis
                  and the SMTP sink, then, N rounds (3), load each app (axum,
                  poem) on each store (redis, fred) with the protected, flow
                  and request-otp scenarios (defaults: 10 s each after 2 s of
                  warm-up, 32 virtual users), each run right after the same
                  load on its ceiling: a bare axum + Redis server (started
                  once per round), or postfix's smtp-source for request-otp.
                  --only (e.g. axum/redis,poem/fred) and --scenarios narrow
                  the runs. Each row shows medians over the rounds and the
                  median of its paired ratios (app / ceiling run just
                  before), which decides PASS or MISS; the ceiling rows show
                  the spread of all their runs. Client and server share this
                  machine. Prints a table, writes target/bench/bench.json;
                  exits 1 on any 5xx answer. Not part of `test` or `ci`.
  soak [--minutes N] [--rate R] [--concurrency C]
                  The full login flow at R flows/s (50) for N minutes (10)
                  against axum-example on Redis: 5xx count, server RSS and
                  Redis memory (start, peak, end, after expiry).
  help            Show this text.

Missing redis-server, redis-cli or smtp-sink are installed with apt-get when
running as root on Debian (packages redis-server, redis-tools, postfix).
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let rest: Vec<String> = args.collect();
    let outcome = match command.as_deref() {
        Some("test") => test(&rest),
        Some("servers") => no_args("servers", &rest).and_then(|()| servers()),
        Some("ci") => no_args("ci", &rest).and_then(|()| ci()),
        Some("fuzz") => fuzz_command(&rest),
        Some("package") => no_args("package", &rest).and_then(|()| package::check()),
        Some("deny") => no_args("deny", &rest).and_then(|()| deny()),
        Some("schemathesis") => {
            no_args("schemathesis", &rest).and_then(|()| schemathesis::schemathesis())
        }
        Some("soak") => soak::soak(&rest),
        Some("bench") => bench::bench(&rest),
        Some("help" | "-h" | "--help") => {
            print!("{USAGE}");
            Ok(0)
        }
        Some(other) => {
            eprintln!("xtask: unknown command `{other}`\n");
            eprint!("{USAGE}");
            Ok(2)
        }
        None => {
            eprint!("{USAGE}");
            Ok(2)
        }
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Rejects arguments given to a command that takes none.
fn no_args(command: &str, args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`{command}` takes no arguments (got {}); see `cargo xtask help`",
            args.join(" ")
        ))
    }
}

/// `cargo xtask test`: servers up, every test, servers down.
fn test(extra: &[String]) -> Outcome {
    let tools = Tools::locate_or_install()?;
    let servers = Servers::start(&tools)?;
    let code = run_tests(&servers, extra);
    drop(servers);
    code
}

/// Runs the test suites with the server addresses in the environment.
///
/// Returns the exit code of the first failing run, or 0.
fn run_tests(servers: &Servers, extra: &[String]) -> Outcome {
    let mut tests = cargo()?;
    if has_nextest()? {
        tests.args([
            "nextest",
            "run",
            "--workspace",
            "--all-targets",
            "--no-fail-fast",
        ]);
    } else {
        eprintln!("xtask: cargo-nextest not found, using cargo test");
        tests.args(["test", "--workspace", "--all-targets", "--no-fail-fast"]);
    }
    tests.args(extra).envs(servers.env());
    let code = exit_code(run(&mut tests)?);

    if !extra.is_empty() {
        eprintln!(
            "xtask: arguments given to the test runner, doc tests skipped \
             (`cargo xtask test` without arguments runs them)"
        );
        return Ok(code);
    }

    // `--all-targets` leaves the doc tests out (and nextest cannot run them).
    let mut doc = cargo()?;
    doc.args(["test", "--workspace", "--doc"])
        .envs(servers.env());
    let doc_code = exit_code(run(&mut doc)?);
    Ok(if code != 0 { code } else { doc_code })
}

/// Whether `cargo nextest` is installed.
fn has_nextest() -> Result<bool, String> {
    let mut probe = cargo()?;
    probe
        .args(["nextest", "--version"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    Ok(probe.status().is_ok_and(|status| status.success()))
}

/// `cargo xtask servers`: servers up until Ctrl-C or end of input.
fn servers() -> Outcome {
    let tools = Tools::locate_or_install()?;
    let servers = Servers::start(&tools)?;
    let mut out = io::stdout().lock();
    for (name, value) in servers.env() {
        writeln!(out, "export {name}={}", cmd::shell_quote(value))
            .map_err(|e| format!("writing to stdout: {e}"))?;
    }
    out.flush().map_err(|e| format!("writing to stdout: {e}"))?;
    drop(out);
    eprintln!("xtask: servers running; stop them with Ctrl-C or end of input (Ctrl-D)");
    // Standard input is only watched for its end; whatever is typed is dropped.
    let mut sink = [0_u8; 256];
    let mut stdin = io::stdin().lock();
    loop {
        match stdin.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading stdin: {e}")),
        }
    }
    drop(servers);
    Ok(0)
}

/// `cargo xtask ci`: fmt, clippy, doc, then the tests; stops at the first failure.
fn ci() -> Outcome {
    let root = workspace_root()?;
    eprintln!("xtask: ci in {}", root.display());

    let mut fmt = cargo()?;
    fmt.args(["fmt", "--all", "--", "--check"]);
    let mut clippy = cargo()?;
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    let mut doc = cargo()?;
    doc.args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings");

    // The lean build: otp-core and the adapters without their default features.
    let mut lean_clippy = cargo()?;
    lean_clippy.args([
        "clippy",
        "-p",
        "otp-core",
        "-p",
        "otp-axum",
        "-p",
        "otp-poem",
        "--no-default-features",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    let mut lean_test = cargo()?;
    lean_test.args(["test", "-p", "otp-core", "--no-default-features", "--lib"]);

    for step in [
        &mut fmt,
        &mut clippy,
        &mut doc,
        &mut lean_clippy,
        &mut lean_test,
    ] {
        let code = exit_code(run(step)?);
        if code != 0 {
            eprintln!("xtask: ci failed at `{}`", cmd::display(step));
            return Ok(code);
        }
    }
    lean_tree()?;
    let code = package::check()?;
    if code != 0 {
        eprintln!("xtask: ci failed in `package`");
        return Ok(code);
    }
    let code = deny()?;
    if code != 0 {
        eprintln!("xtask: ci failed in `deny`");
        return Ok(code);
    }
    let code = test(&[])?;
    if code != 0 {
        eprintln!("xtask: ci failed in the tests");
        return Ok(code);
    }
    let code = schemathesis::schemathesis()?;
    if code != 0 {
        eprintln!("xtask: ci failed in the schemathesis runs");
        return Ok(code);
    }
    let code = fuzz::fuzz(fuzz::CI_SECONDS)?;
    if code != 0 {
        eprintln!("xtask: ci failed in the fuzz runs");
    }
    Ok(code)
}

/// `cargo deny check licenses bans sources` (deny.toml): the checks that need no network.
/// Installs cargo-deny when it is missing.
fn deny() -> Outcome {
    cmd::ensure_cargo_tool("deny", "cargo-deny")?;
    let mut check = cargo()?;
    check.args(["deny", "check", "licenses", "bans", "sources"]);
    Ok(exit_code(run(&mut check)?))
}

/// The crates an HS256 build of otp-core must not compile.
const NOT_IN_LEAN_BUILD: [&str; 4] = ["rsa", "p256", "p384", "ed25519-dalek"];

/// Fails unless `cargo tree -p otp-core --no-default-features -e normal` is free of
/// [`NOT_IN_LEAN_BUILD`].
fn lean_tree() -> Result<(), String> {
    let mut tree = cargo()?;
    tree.args([
        "tree",
        "-p",
        "otp-core",
        "--no-default-features",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]);
    let out = tree
        .output()
        .map_err(|e| format!("running `{}`: {e}", cmd::display(&tree)))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            cmd::display(&tree),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let listing = String::from_utf8_lossy(&out.stdout);
    let found: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| NOT_IN_LEAN_BUILD.contains(name))
        .collect();
    if found.is_empty() {
        eprintln!(
            "xtask: otp-core without default features compiles none of {NOT_IN_LEAN_BUILD:?}"
        );
        Ok(())
    } else {
        Err(format!(
            "otp-core without default features still depends on {found:?}"
        ))
    }
}

/// `cargo xtask fuzz [SECONDS]`.
fn fuzz_command(args: &[String]) -> Outcome {
    let seconds = match args {
        [] => fuzz::DEFAULT_SECONDS,
        [s] => s
            .parse()
            .map_err(|_| format!("`fuzz` takes a number of seconds, got {s:?}"))?,
        _ => return Err("`fuzz` takes at most one argument (seconds per target)".to_owned()),
    };
    fuzz::fuzz(seconds)
}
