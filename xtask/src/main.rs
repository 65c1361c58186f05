//! Task runner of the workspace, invoked as `cargo xtask <command>` (the alias lives in
//! `.cargo/config.toml`); [`USAGE`] lists the commands.
//!
//! Missing server binaries are installed with `apt-get` when running as root on Debian;
//! otherwise the runner names the packages to install. Its dependencies are pico-args and,
//! for the bench's report, serde and serde_json (which the workspace builds anyway), so it
//! compiles in a few seconds.

mod bench;
mod cmd;
mod package;
mod schemathesis;
mod servers;
mod soak;

use std::io::{self, Write as _};
use std::process::ExitCode;

use crate::cmd::{cargo, run};
use crate::servers::Servers;

/// Result of a command: the process exit code on completion, or a message for an error of
/// the runner itself (missing tool, server not starting...).
type Outcome = Result<u8, String>;

const USAGE: &str = "\
Usage: cargo xtask <command> [args...]

Commands:
  test [ARGS...]  Start Redis, a 3-node Redis Cluster and an SMTP sink on free loopback
                  ports, then run every test against them (cargo nextest if installed,
                  else cargo test; then the doc tests, skipped when ARGS, which go to the
                  test runner, are given).
  servers         Start the same servers, print `export` lines for a shell and keep them
                  running until Ctrl-C or end of input (Ctrl-D).
  ci              fmt --check, clippy and rustdoc with warnings denied, the lean build
                  (no default features: clippy, otp-core's unit tests, a `cargo tree` free
                  of rsa, p256, p384, ed25519-dalek, the backends' free of rustls, ring,
                  webpki-roots), package, deny, test (which replays
                  the fuzz targets' saved inputs and mutations of them), schemathesis;
                  stops at the first failure. Coverage-guided fuzzing is `fuzz`.
  package         The published crates' file lists (sources, README and licences only),
                  then `cargo package` of them all.
  deny            cargo deny check licenses bans sources (deny.toml).
  schemathesis    Schemathesis (PyPI, pinned, in a venv under target/) against both
                  examples' /openapi.json, every check, signed in (tests/schemathesis/).
  fuzz [SECONDS]  Each cargo-fuzz target in tests/fuzz for SECONDS (300), seeded with
                  tests/fuzz/regressions.
  bench [--seconds N] [--concurrency N] [--warmup N] [--rounds N] [--only app/store,...]
        [--scenarios name,...] [--open-loop P,...] [--preload-sessions N]
                  Each app (axum, poem) on each store (redis, fred), built in release
                  mode, under otp-bench's load (protected, flow, refresh, request-otp;
                  10 s after 2 s of warm-up, 32 users, 3 rounds), each run paired with a
                  run on its ceiling just before it; see README.md. Writes
                  target/bench/bench.json; exits 1 on any 5xx answer.
  soak [--minutes N] [--rate R] [--concurrency C]
                  The login flow at R flows/s (50) for N minutes (10) against
                  axum-example on Redis: 5xx, server RSS and Redis memory.

Missing redis-server, redis-cli or smtp-sink are installed with apt-get when running as
root on Debian (packages redis-server, redis-tools, postfix).
";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let outcome = match (command.as_str(), rest.as_slice()) {
        ("test", _) => test(&rest),
        ("servers", []) => servers(),
        ("ci", []) => ci(),
        ("package", []) => package::check(),
        ("deny", []) => deny(),
        ("schemathesis", []) => schemathesis::run_all("-p axum-example -p poem-example"),
        ("fuzz", []) => fuzz(300),
        ("fuzz", [seconds]) => seconds
            .parse()
            .map_err(|_| format!("`fuzz` takes a number of seconds, got {seconds:?}"))
            .and_then(fuzz),
        ("bench", _) => bench::bench(rest),
        ("soak", _) => soak::soak(rest),
        ("help" | "-h" | "--help", _) => {
            print!("{USAGE}");
            Ok(0)
        }
        ("servers" | "ci" | "package" | "deny" | "schemathesis" | "fuzz", _) => Err(format!(
            "`{command}` does not take `{}`; see `cargo xtask help`",
            rest.join(" ")
        )),
        (other, _) => {
            if !other.is_empty() {
                eprintln!("xtask: unknown command `{other}`\n");
            }
            eprint!("{USAGE}");
            Ok(2)
        }
    };
    outcome
        .unwrap_or_else(|message| {
            eprintln!("xtask: error: {message}");
            1
        })
        .into()
}

/// `cargo xtask test`: servers up, every test, servers down. Returns the exit code of the
/// first failing run, or 0.
fn test(extra: &[String]) -> Outcome {
    let servers = Servers::start()?;
    let nextest = cmd::output(&mut cargo("nextest --version")).is_ok();
    if !nextest {
        eprintln!("xtask: cargo-nextest not found, using cargo test");
    }
    let runner = if nextest { "nextest run" } else { "test" };
    let tests = format!("{runner} --workspace --all-targets --no-fail-fast");
    let mut tests = cargo(&tests);
    let code = run(tests.args(extra).envs(servers.env()))?;
    if !extra.is_empty() {
        eprintln!(
            "xtask: arguments given to the test runner, doc tests skipped \
             (`cargo xtask test` without arguments runs them)"
        );
        return Ok(code);
    }
    // `--all-targets` leaves the doc tests out (and nextest cannot run them).
    let doc_code = run(cargo("test --workspace --doc").envs(servers.env()))?;
    Ok(if code != 0 { code } else { doc_code })
}

/// `cargo xtask servers`: servers up until Ctrl-C or end of input.
fn servers() -> Outcome {
    let servers = Servers::start()?;
    let mut out = io::stdout().lock();
    for (name, value) in servers.env() {
        writeln!(out, "export {name}={}", cmd::shell_quote(value))
            .and_then(|()| out.flush())
            .map_err(|e| format!("writing to stdout: {e}"))?;
    }
    drop(out);
    eprintln!("xtask: servers running; stop them with Ctrl-C or end of input (Ctrl-D)");
    // Standard input is only watched for its end; whatever is typed is dropped.
    io::copy(&mut io::stdin().lock(), &mut io::sink())
        .map_err(|e| format!("reading stdin: {e}"))?;
    Ok(0)
}

/// `cargo xtask ci`: every check in turn; stops at the first failure.
fn ci() -> Outcome {
    eprintln!("xtask: ci in {}", cmd::workspace_root().display());
    // The published crates' docs (what docs.rs shows); the other members' items are
    // checked by clippy's `missing_docs`.
    let mut doc = cargo(&format!(
        "doc --no-deps --all-features -p {}",
        package::PUBLISHED.join(" -p ")
    ));
    doc.env("RUSTDOCFLAGS", "-D warnings");
    // The lean build: the published crates without their default features (no TLS in
    // the backends).
    let lean = "-p otp-core -p otp-axum -p otp-poem -p otp-redis -p otp-fred -p otp-smtp \
                --no-default-features";
    let steps = [
        cargo("fmt --all -- --check"),
        cargo("clippy --workspace --all-targets --all-features -- -D warnings"),
        doc,
        cargo(&format!("clippy {lean} --all-targets -- -D warnings")),
        cargo("test -p otp-core -p otp-smtp --no-default-features --lib"),
    ];
    for mut step in steps {
        let code = run(&mut step)?;
        if code != 0 {
            eprintln!("xtask: ci failed at `{}`", cmd::display(&step));
            return Ok(code);
        }
    }
    lean_tree()?;
    lean_backends()?;
    let later = [
        ("`package`", package::check as fn() -> Outcome),
        ("`deny`", deny),
        ("the tests", || test(&[])),
        // After the tests: the examples as the test build built them, nothing to compile.
        ("the schemathesis runs", || {
            schemathesis::run_all("--workspace --all-targets")
        }),
    ];
    for (what, step) in later {
        let code = step()?;
        if code != 0 {
            eprintln!("xtask: ci failed in {what}");
            return Ok(code);
        }
    }
    Ok(0)
}

/// `cargo deny check licenses bans sources` (deny.toml): the checks that need no network.
fn deny() -> Outcome {
    cmd::ensure_cargo_tool("deny", "cargo-deny")?;
    run(&mut cargo("deny check licenses bans sources"))
}

/// Fails unless otp-core without default features is free of the crates an HS256 build
/// must not compile.
fn lean_tree() -> Result<(), String> {
    const NOT_IN_LEAN_BUILD: [&str; 4] = ["rsa", "p256", "p384", "ed25519-dalek"];
    let tree = "tree -p otp-core --no-default-features -e normal --prefix none";
    let listing = cmd::output(&mut cargo(tree))?;
    let found: Vec<&str> = (listing.lines())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| NOT_IN_LEAN_BUILD.contains(name))
        .collect();
    let lean = "otp-core without default features";
    if !found.is_empty() {
        return Err(format!("{lean} still depends on {found:?}"));
    }
    eprintln!("xtask: {lean} compiles none of {NOT_IN_LEAN_BUILD:?}");
    Ok(())
}

/// Fails unless the backends without default features compile no TLS stack.
fn lean_backends() -> Result<(), String> {
    const NO_TLS: [&str; 3] = ["rustls", "ring", "webpki-roots"];
    for backend in ["otp-redis", "otp-fred", "otp-smtp"] {
        let tree = format!("tree -p {backend} --no-default-features -e normal --prefix none");
        let listing = cmd::output(&mut cargo(&tree))?;
        let found: Vec<&str> = (listing.lines())
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| NO_TLS.contains(name))
            .collect();
        if !found.is_empty() {
            return Err(format!(
                "{backend} without default features still depends on {found:?}"
            ));
        }
    }
    eprintln!("xtask: the backends without default features compile none of {NO_TLS:?}");
    Ok(())
}

/// `cargo xtask fuzz`: every cargo-fuzz target in `tests/fuzz` for `seconds`, seeded with
/// the regression inputs in `tests/fuzz/regressions/<target>`; the first failing exit code.
fn fuzz(seconds: u64) -> Outcome {
    cmd::ensure_cargo_tool("fuzz", "cargo-fuzz")?;
    let dir = cmd::workspace_root().join("tests/fuzz");
    for target in ["email", "code", "jwt", "request"] {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("creating {}: {e}", corpus.display()))?;
        let mut command = cargo("fuzz run --fuzz-dir");
        command
            // cargo-fuzz needs nightly flags (sanitizers); stable takes them with RUSTC_BOOTSTRAP.
            .env("RUSTC_BOOTSTRAP", "1")
            .args([dir.as_os_str(), target.as_ref(), corpus.as_os_str()])
            .arg(dir.join("regressions").join(target))
            .args(format!("-- -max_total_time={seconds} -print_final_stats=1").split(' '));
        let code = run(&mut command)?;
        if code != 0 {
            eprintln!(
                "xtask: fuzz target `{target}` failed; a crashing input, if one was found, is \
                 under tests/fuzz/artifacts/{target}: copy it to tests/fuzz/regressions/{target} \
                 and fix the bug"
            );
            return Ok(code);
        }
    }
    Ok(0)
}
