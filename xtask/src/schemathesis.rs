//! `cargo xtask schemathesis`: Schemathesis, a schema-aware API fuzzer from PyPI, against
//! the `/openapi.json` of both example apps, with every check, signed in.
//!
//! The fuzzer is installed at a pinned version in a virtual environment under the target
//! directory (`schemathesis-venv`), made with the machine's `python3`. Each app runs on the
//! embedded default (memory store, console mailer) in the magic-code mode, narrowed to the
//! addresses the hooks sign in with, with the limits raised so the run measures the
//! contract, not the limits. `tests/schemathesis/otp_hooks.py` signs every case in and
//! feeds the success paths; `tests/schemathesis/schemathesis.toml` makes any finding or
//! warning fail the run and records the one business rule (a wrong code is a 400).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Outcome;
use crate::cmd::{cargo, display, env_pairs, run, target_dir, workspace_root};
use crate::servers::{Proc, app_command, free_addr};

/// The Schemathesis release the run is pinned to.
const VERSION: &str = "4.32.5";

/// The runs: each example app in its default refresh token transport and in another one,
/// so the document of every transport is held to the server.
const RUNS: [(&str, &str); 4] = [
    ("axum-example", "cookie"),
    ("axum-example", "body"),
    ("poem-example", "cookie"),
    ("poem-example", "both"),
];

/// The settings of every run: the embedded defaults (memory store, console mailer, users
/// in memory), the magic-code mode for the addresses the hooks sign in with, one of them an
/// administrator (the admin router), the limits out of the way; and no metrics listener
/// (the public port is what is fuzzed).
const SETTINGS: &str = "OTP_AUTH_STORE=memory OTP_AUTH_MAILER=console OTP_AUTH_COOKIE_SECURE=false \
    OTP_AUTH_DISABLE_LOCAL_AUTH=true OTP_AUTH_MAGIC_OTP_EMAILS=schemathesis-*@example.com \
    OTP_AUTH_OTP_RATE_LIMIT_PER_MINUTE=1000000 OTP_AUTH_OTP_RATE_LIMIT_PER_HOUR=1000000 \
    OTP_AUTH_OTP_RATE_LIMIT_PER_DAY=1000000 OTP_AUTH_OTP_RATE_LIMIT_PER_IP_PER_MINUTE=1000000 \
    OTP_AUTH_VERIFY_FAILURES_PER_IP_PER_HOUR=1000000 OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS=100 \
    OTP_AUTH_OTP_LOCKOUT_SECONDS=1 APP_METRICS_ADDR=off NO_COLOR=1 RUST_LOG=info \
    APP_ADMINS=schemathesis-admin@example.com APP_USERS_DB=:memory:";

/// Builds the examples (`cargo build BUILD`) and runs Schemathesis against both; the exit
/// code of the first failing run, or 0.
pub(crate) fn run_all(build: &str) -> Outcome {
    let target = target_dir();
    let fuzzer = ensure_installed(&target.join("schemathesis-venv"))?;
    let code = run(&mut cargo(&format!("build {build}")))?;
    if code != 0 {
        return Ok(code);
    }
    let logs = target.join("schemathesis");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let hooks = workspace_root().join("tests/schemathesis");

    // Two runs at a time, one per core: each is a Python process and an app, and neither
    // keeps a core busy alone. Each run's report is printed when it ends.
    let mut failed = Vec::new();
    for pair in RUNS.chunks(2) {
        let results = std::thread::scope(|scope| {
            let runs: Vec<_> = (pair.iter())
                .map(|&(app, transport)| {
                    let (fuzzer, logs, hooks) = (&fuzzer, &logs, &hooks);
                    scope.spawn(move || one_run(fuzzer, logs, hooks, app, transport))
                })
                .collect();
            let joined = runs.into_iter().map(|r| r.join());
            joined
                .map(|r| r.unwrap_or_else(|_| Err("a run panicked".to_owned())))
                .collect::<Vec<_>>()
        });
        for result in results {
            let (name, code) = result?;
            if code != 0 {
                failed.push((name, code));
            }
        }
    }
    let Some(&(_, code)) = failed.first() else {
        eprintln!("xtask: schemathesis found nothing on {} runs", RUNS.len());
        return Ok(0);
    };
    let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!(
        "xtask: schemathesis failed on {} (logs in {})",
        names.join(", "),
        logs.display()
    );
    Ok(code)
}

/// One run of Schemathesis against `app` with the refresh token's `transport`: the run's
/// name and exit code; its report in `<logs>/<name>.out`, printed at the end.
fn one_run(
    fuzzer: &Path,
    logs: &Path,
    hooks: &Path,
    app: &str,
    transport: &str,
) -> Result<(String, u8), String> {
    let name = format!("{app}-{transport}");
    let addr = free_addr()?;
    let base = format!("http://{addr}");
    let mut command = app_command(&target_dir().join("debug").join(app), addr);
    command
        .envs(env_pairs(SETTINGS))
        .env("OTP_AUTH_REFRESH_TOKEN_TRANSPORT", transport)
        .env("OTP_AUTH_PUBLIC_URL", format!("{base}/auth"));
    let server = Proc::listening(&name, command, addr, logs)?;
    eprintln!("xtask: schemathesis {VERSION} against {name} ({base})");
    let report = logs.join(format!("{name}.out"));
    let file = std::fs::File::create(&report).map_err(|e| format!("{}: {e}", report.display()))?;
    let mut st = Command::new(fuzzer);
    st.arg("--config-file")
        .arg(hooks.join("schemathesis.toml"))
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["--checks", "all", "--max-examples", "100"])
        .env("SCHEMATHESIS_HOOKS", "otp_hooks")
        .env("PYTHONPATH", hooks)
        .env("OTP_SCHEMATHESIS_BASE", &base)
        .env("OTP_SCHEMATHESIS_APP_LOG", logs.join(format!("{name}.log")))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stderr(file.try_clone().map_err(|e| e.to_string())?)
        .stdout(file);
    let code = run(&mut st)?;
    server.stop()?;
    let text = std::fs::read_to_string(&report).unwrap_or_default();
    eprintln!("xtask: schemathesis against {name} (exit {code}):\n{text}");
    Ok((name, code))
}

/// The `schemathesis` program of the virtual environment `venv`, made and filled with the
/// pinned release when it is missing or another version.
fn ensure_installed(venv: &Path) -> Result<PathBuf, String> {
    let program = venv.join("bin/schemathesis");
    let installed = crate::cmd::output(Command::new(&program).arg("--version"))
        .is_ok_and(|out| out.contains(VERSION));
    if !installed {
        python_venv(venv, &format!("schemathesis=={VERSION}"))?;
    }
    Ok(program)
}

/// The Python of the virtual environment `venv`, made and filled with `requirement`
/// (`name==version`) when that is not installed there yet.
pub(crate) fn python_venv(venv: &Path, requirement: &str) -> Result<PathBuf, String> {
    let python = venv.join("bin/python");
    let (name, version) = requirement.split_once("==").unwrap_or((requirement, ""));
    let installed = crate::cmd::output(Command::new(venv.join("bin/pip")).args(["show", name]))
        .is_ok_and(|out| {
            out.lines()
                .any(|l| l.trim() == format!("Version: {version}"))
        });
    if installed {
        return Ok(python);
    }
    eprintln!("xtask: installing {requirement} in {}", venv.display());
    let system = crate::servers::find_program("python3")
        .ok_or("python3 not found: install Python 3.9 or later (Debian: python3 python3-venv)")?;
    let mut make_venv = Command::new(system);
    make_venv
        .args(["-m", "venv", "--clear"])
        .arg(venv)
        .stdin(Stdio::null());
    if run(&mut make_venv)? != 0 {
        // Debian's python3 keeps the venv module in a package of its own.
        crate::servers::install_packages(&["python3-venv"])?;
        if run(&mut make_venv)? != 0 {
            return Err(format!("`python3 -m venv {}` failed", venv.display()));
        }
    }
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(requirement)
        .stdin(Stdio::null());
    if run(&mut pip)? != 0 {
        return Err(format!("`{}` failed", display(&pip)));
    }
    Ok(python)
}
