//! Process supervision: building the binaries under test, starting and stopping them, and
//! finding the addresses they and the test servers listen on.
//!
//! `cargo xtask soak` uses these too, through the re-exports of [`super`].

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cmd::{cargo, exit_code, run, workspace_root};
use crate::servers::{Servers, wait_until};

/// How long an app gets to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an app gets to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A server under test, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub(crate) struct App {
    /// Name in messages, and of the log file.
    name: String,
    /// The running server.
    child: Child,
    /// `<logs>/<name>.log`: standard output and error of the server.
    log: PathBuf,
    /// Whether the process is known to have exited (nothing left to kill on drop).
    stopped: bool,
}

impl App {
    /// Spawns the server with its output in `<logs>/<name>.log` and waits until `addr`
    /// accepts connections.
    pub(crate) fn start(
        name: &str,
        mut command: Command,
        addr: SocketAddr,
        logs: &Path,
    ) -> Result<Self, String> {
        let log = logs.join(format!("{name}.log"));
        let file =
            std::fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let stderr = file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let shown = crate::cmd::display(&command);
        let child = command
            .current_dir(logs)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start `{shown}`: {e}"))?;
        let mut app = Self {
            name: name.to_owned(),
            child,
            log,
            stopped: false,
        };
        let mut exited = None;
        let up = wait_until(START_TIMEOUT, || {
            if let Ok(Some(status)) = app.child.try_wait() {
                exited = Some(status);
                return true;
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        match (exited, up) {
            (None, true) => {
                eprintln!("xtask: {name} listening on {addr}");
                Ok(app)
            }
            (Some(status), _) => {
                app.stopped = true;
                Err(format!(
                    "{name} exited ({status}); its log:\n{}",
                    app.log_tail()
                ))
            }
            (None, false) => Err(format!(
                "{name} did not listen on {addr} within {START_TIMEOUT:?}; its log:\n{}",
                app.log_tail()
            )),
        }
    }

    /// An error (with the end of its log) if the server has exited.
    pub(super) fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                self.stopped = true;
                Err(format!(
                    "{} exited ({status}); its log:\n{}",
                    self.name,
                    self.log_tail()
                ))
            }
            Err(e) => Err(format!("{}: cannot check its process: {e}", self.name)),
        }
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (graceful shutdown), then SIGKILL if it lingers.
    pub(crate) fn stop(mut self) -> Result<(), String> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        let mut status = None;
        if sent {
            wait_until(STOP_TIMEOUT, || {
                status = self.child.try_wait().ok().flatten();
                status.is_some()
            });
        }
        self.stopped = true;
        match status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!(
                "{} exited with {status} on SIGTERM; its log:\n{}",
                self.name,
                self.log_tail()
            )),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(format!(
                    "{} did not stop within {STOP_TIMEOUT:?} of SIGTERM",
                    self.name
                ))
            }
        }
    }

    /// The last 20 lines of the server's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for App {
    /// Kills the server unless it was stopped or has exited.
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Builds `packages` in release mode; the target directory, or the exit code of the
/// failed build.
pub(crate) fn build_release(packages: &[&str]) -> Result<Result<PathBuf, u8>, String> {
    let root = workspace_root()?;
    let mut build = cargo()?;
    build.args(["build", "--release"]);
    for p in packages {
        build.args(["-p", p]);
    }
    let code = exit_code(run(&mut build)?);
    if code != 0 {
        return Ok(Err(code));
    }
    Ok(Ok(match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }))
}

/// A value exported by the test servers (`OTP_TEST_*`).
pub(crate) fn server_var(servers: &Servers, name: &str) -> Result<String, String> {
    servers
        .env()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
        .ok_or_else(|| format!("the test servers did not set {name}"))
}

/// The port at the end of an address such as `redis://127.0.0.1:6379`.
pub(crate) fn url_port(url: &str) -> Result<u16, String> {
    url.rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .ok_or_else(|| format!("no port in {url}"))
}

/// A loopback address with a port that is free now.
pub(crate) fn free_addr() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
    listener
        .local_addr()
        .map_err(|e| format!("local address of a listener: {e}"))
}
