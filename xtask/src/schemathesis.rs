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
use crate::bench::{App, free_addr};
use crate::cmd::{cargo, exit_code, run, workspace_root};

/// The Schemathesis release the run is pinned to.
const VERSION: &str = "4.32.5";

/// Examples per operation and phase.
const MAX_EXAMPLES: &str = "100";

/// The runs: each example app in its default refresh token transport and in another one,
/// so the document of every transport is held to the server.
const RUNS: [(&str, &str); 4] = [
    ("axum-example", "cookie"),
    ("axum-example", "body"),
    ("poem-example", "cookie"),
    ("poem-example", "both"),
];

/// The settings of every run (after the `OTP_AUTH_` prefix).
const SETTINGS: [(&str, &str); 11] = [
    ("DISABLE_LOCAL_AUTH", "true"),
    ("MAGIC_OTP_EMAILS", "schemathesis-*@example.com"),
    ("COOKIE_SECURE", "false"),
    ("OTP_RATE_LIMIT_PER_MINUTE", "1000000"),
    ("OTP_RATE_LIMIT_PER_HOUR", "1000000"),
    ("OTP_RATE_LIMIT_PER_DAY", "1000000"),
    ("OTP_RATE_LIMIT_PER_IP_PER_MINUTE", "1000000"),
    ("VERIFY_FAILURES_PER_IP_PER_HOUR", "1000000"),
    ("OTP_MAX_VERIFY_ATTEMPTS", "100"),
    ("OTP_LOCKOUT_SECONDS", "1"),
    ("STORE", "memory"),
];

/// Runs Schemathesis against both examples; the exit code of the first failing run, or 0.
pub(crate) fn schemathesis() -> Outcome {
    let root = workspace_root()?;
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    let fuzzer = ensure_installed(&target.join("schemathesis-venv"))?;

    let mut build = cargo()?;
    build.args(["build", "-p", "axum-example", "-p", "poem-example"]);
    let code = exit_code(run(&mut build)?);
    if code != 0 {
        return Ok(code);
    }
    let logs = target.join("schemathesis");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let hooks = root.join("tests/schemathesis");

    let mut failed = Vec::new();
    for (app, transport) in RUNS {
        let name = format!("{app}-{transport}");
        let addr = free_addr()?;
        let base = format!("http://{addr}");
        let mut command = Command::new(target.join("debug").join(app));
        for (var, _) in std::env::vars_os() {
            if var.to_string_lossy().starts_with("OTP_AUTH_") {
                command.env_remove(var);
            }
        }
        for (setting, value) in SETTINGS {
            command.env(format!("OTP_AUTH_{setting}"), value);
        }
        command
            .env("OTP_AUTH_MAILER", "console")
            .env("OTP_AUTH_REFRESH_TOKEN_TRANSPORT", transport)
            .env("OTP_AUTH_PUBLIC_URL", format!("{base}/auth"))
            .env("APP_ADDR", addr.to_string())
            // The public port is what is fuzzed; no metrics listener to collide with another.
            .env("APP_METRICS_ADDR", "off")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info");
        let server = App::start(&name, command, addr, &logs)?;

        eprintln!("xtask: schemathesis {VERSION} against {name} ({base})");
        let mut st = Command::new(&fuzzer);
        st.arg("--config-file")
            .arg(hooks.join("schemathesis.toml"))
            .arg("run")
            .arg(format!("{base}/openapi.json"))
            .args(["--checks", "all", "--max-examples", MAX_EXAMPLES])
            .env("SCHEMATHESIS_HOOKS", "otp_hooks")
            .env("PYTHONPATH", &hooks)
            .env("OTP_SCHEMATHESIS_BASE", &base)
            .env("OTP_SCHEMATHESIS_APP_LOG", logs.join(format!("{name}.log")))
            .stdin(Stdio::null());
        let code = exit_code(run(&mut st)?);
        server.stop()?;
        if code != 0 {
            failed.push((name, code));
        }
    }
    match failed.first() {
        None => {
            eprintln!("xtask: schemathesis found nothing on {} runs", RUNS.len());
            Ok(0)
        }
        Some((_, code)) => {
            let names: Vec<&str> = failed.iter().map(|(n, _)| n.as_str()).collect();
            eprintln!(
                "xtask: schemathesis failed on {} (logs in {})",
                names.join(", "),
                logs.display()
            );
            Ok(*code)
        }
    }
}

/// The `schemathesis` program of the virtual environment `venv`, made and filled with the
/// pinned release when it is missing or another version.
fn ensure_installed(venv: &Path) -> Result<PathBuf, String> {
    let program = venv.join("bin").join("schemathesis");
    let installed = Command::new(&program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(VERSION)
        });
    if installed {
        return Ok(program);
    }
    eprintln!(
        "xtask: installing schemathesis {VERSION} in {}",
        venv.display()
    );
    let python = crate::tools::find_program("python3")
        .ok_or("python3 not found: install Python 3.9 or later (Debian: python3 python3-venv)")?;
    let make_venv = |python: &Path| -> Result<bool, String> {
        let mut venv_cmd = Command::new(python);
        venv_cmd
            .args(["-m", "venv", "--clear"])
            .arg(venv)
            .stdin(Stdio::null());
        Ok(run(&mut venv_cmd)?.success())
    };
    if !make_venv(&python)? {
        // Debian's python3 keeps the venv module in a package of its own.
        crate::tools::install_packages(&["python3-venv"])?;
        if !make_venv(&python)? {
            return Err(format!("`python3 -m venv {}` failed", venv.display()));
        }
    }
    let mut pip = Command::new(venv.join("bin").join("pip"));
    pip.args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("schemathesis=={VERSION}"),
    ])
    .stdin(Stdio::null());
    if !run(&mut pip)?.success() {
        return Err(format!("`{}` failed", crate::cmd::display(&pip)));
    }
    Ok(program)
}
