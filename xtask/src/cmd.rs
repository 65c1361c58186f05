//! Running commands: cargo in the workspace root, logging, exit codes, quoting.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use crate::Outcome;

/// Root of the workspace: the parent of the xtask package directory.
pub(crate) fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The target directory: `CARGO_TARGET_DIR`, else `target/` in the workspace.
pub(crate) fn target_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    workspace_root().join(dir)
}

/// `cargo ARGS` (split at whitespace) in the workspace root, with the cargo that runs xtask
/// (else the one on `PATH`).
pub(crate) fn cargo(args: &str) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .current_dir(workspace_root())
        .args(args.split_whitespace());
    command
}

/// The `NAME=value` pairs of `vars`, separated by whitespace, for [`Command::envs`].
pub(crate) fn env_pairs(vars: &str) -> impl Iterator<Item = (&str, &str)> {
    vars.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
}

/// Runs a command with inherited stdio, logging it first; its exit code (128 + the signal
/// number for a child killed by a signal). An error means it could not be started.
pub(crate) fn run(command: &mut Command) -> Outcome {
    let shown = display(command);
    eprintln!("xtask: running `{shown}`");
    let status = command
        .status()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    Ok(exit_code(status))
}

fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(signal).map_or(1, |s| 128_u8.saturating_add(s)),
        (None, None) => 1,
    }
}

/// The standard output of a command that must succeed; the error holds both outputs.
pub(crate) fn output(command: &mut Command) -> Result<String, String> {
    let shown = display(command);
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        return Ok(stdout);
    }
    let (status, stderr) = (out.status, String::from_utf8_lossy(&out.stderr));
    Err(format!(
        "`{shown}` failed ({status}): {}{}",
        stdout.trim(),
        stderr.trim()
    ))
}

/// `cargo build --release -p …` of `packages`; the exit code of the build.
pub(crate) fn build_release(packages: &[&str]) -> Outcome {
    run(&mut cargo(&format!(
        "build --release -p {}",
        packages.join(" -p ")
    )))
}

/// A command as a shell line (program name shortened to its file name).
pub(crate) fn display(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let name = program.file_name().unwrap_or(program.as_os_str());
    std::iter::once(name)
        .chain(command.get_args())
        .map(|arg| shell_quote(&arg.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes a value for a POSIX shell when it holds anything but plain characters.
pub(crate) fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Installs the cargo subcommand `subcommand` (crate `krate`, `cargo install --locked`)
/// when `cargo <subcommand> --version` does not run.
pub(crate) fn ensure_cargo_tool(subcommand: &str, krate: &str) -> Result<(), String> {
    if output(&mut cargo(&format!("{subcommand} --version"))).is_ok() {
        return Ok(());
    }
    // A debug build: the tools run for seconds here, and their release profiles (fat LTO,
    // one codegen unit) take several times as long to compile.
    eprintln!("xtask: {krate} missing, installing it with cargo install --debug");
    match run(&mut cargo(&format!("install {krate} --locked --debug")))? {
        0 => Ok(()),
        code => Err(format!("cargo install {krate} failed ({code})")),
    }
}
