//! `cargo xtask fuzz`: the cargo-fuzz targets in `tests/fuzz`, each for a bounded time,
//! seeded with the regression inputs kept in `tests/fuzz/regressions/<target>`.

use std::process::Command;

use crate::cmd::{cargo, exit_code, run, workspace_root};

/// The fuzz targets.
pub(crate) const TARGETS: [&str; 4] = ["email", "code", "jwt", "request"];

/// Seconds per target when none are given.
pub(crate) const DEFAULT_SECONDS: u64 = 300;

/// Seconds per target inside `cargo xtask ci`.
pub(crate) const CI_SECONDS: u64 = 15;

/// Runs every target for `seconds`; returns the first failing exit code, or 0.
pub(crate) fn fuzz(seconds: u64) -> Result<u8, String> {
    crate::cmd::ensure_cargo_tool("fuzz", "cargo-fuzz")?;
    let root = workspace_root()?;
    let fuzz_dir = root.join("tests/fuzz");
    for target in TARGETS {
        let corpus = fuzz_dir.join("corpus").join(target);
        let regressions = fuzz_dir.join("regressions").join(target);
        std::fs::create_dir_all(&corpus)
            .map_err(|e| format!("creating {}: {e}", corpus.display()))?;
        let mut command: Command = cargo()?;
        command
            // cargo-fuzz needs nightly flags (sanitizers); the stable toolchain takes them
            // with RUSTC_BOOTSTRAP.
            .env("RUSTC_BOOTSTRAP", "1")
            .arg("fuzz")
            .arg("run")
            .arg("--fuzz-dir")
            .arg(&fuzz_dir)
            .arg(target)
            .arg(&corpus)
            .arg(&regressions)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1");
        let code = exit_code(run(&mut command)?);
        if code != 0 {
            eprintln!(
                "xtask: fuzz target `{target}` failed; a crashing input, if one was found, is under \
                 tests/fuzz/artifacts/{target}: copy it to tests/fuzz/regressions/{target} \
                 and fix the bug"
            );
            return Ok(code);
        }
    }
    Ok(0)
}
