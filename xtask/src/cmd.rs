//! Running commands: cargo in the workspace root, logging, exit codes, quoting.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// Root of the workspace: the parent of the xtask package directory.
pub(crate) fn workspace_root() -> Result<PathBuf, String> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} has no parent directory", manifest_dir.display()))
}

/// A cargo command (the cargo that runs xtask, else `cargo` from `PATH`)
/// to be run in the workspace root.
pub(crate) fn cargo() -> Result<Command, String> {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(program);
    command.current_dir(workspace_root()?);
    Ok(command)
}

/// Runs a command to completion with inherited stdio, logging it first.
///
/// An error means the command could not be started at all.
pub(crate) fn run(command: &mut Command) -> Result<ExitStatus, String> {
    let shown = display(command);
    eprintln!("xtask: running `{shown}`");
    command
        .status()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))
}

/// Exit code for the runner that mirrors a child's status
/// (128 + signal number for a child killed by a signal).
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    if let Some(code) = status.code() {
        return u8::try_from(code).unwrap_or(1);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(signal) = status.signal() {
            return u8::try_from(signal).map_or(1, |signal| 128_u8.saturating_add(signal));
        }
    }
    1
}

/// A command as a shell line (program name shortened to its file name).
pub(crate) fn display(command: &Command) -> String {
    let program = Path::new(command.get_program());
    let mut line = shell_quote(
        &program
            .file_name()
            .unwrap_or(program.as_os_str())
            .to_string_lossy(),
    );
    for arg in command.get_args() {
        line.push(' ');
        line.push_str(&shell_quote_os(arg));
    }
    line
}

fn shell_quote_os(value: &OsStr) -> String {
    shell_quote(&value.to_string_lossy())
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
    let mut probe = cargo()?;
    probe.args([subcommand, "--version"]);
    let found = probe.output().map(|o| o.status.success()).unwrap_or(false);
    if found {
        return Ok(());
    }
    eprintln!("xtask: {krate} missing, installing it with cargo install");
    let mut install = cargo()?;
    install.args(["install", krate, "--locked"]);
    match exit_code(run(&mut install)?) {
        0 => Ok(()),
        code => Err(format!("cargo install {krate} failed ({code})")),
    }
}
