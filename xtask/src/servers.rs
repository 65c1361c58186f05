//! The test servers (a standalone Redis, a three-master Redis Cluster and an SMTP sink, each
//! on a free loopback port with its own temporary directory), their binaries (installed
//! with apt-get when missing and running as root on Debian), and [`Proc`], the supervision
//! of every process the runner starts.

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::cmd::{display, output, run};

/// Prefix of the temporary directories, followed by `<pid>-<nanos>`.
/// The Standard Webhooks reference library (PyPI), pinned: the tests verify our webhook
/// signatures with it (`OTP_TEST_PYTHON`).
const STANDARD_WEBHOOKS: &str = "standardwebhooks==1.3.0";

const DIR_PREFIX: &str = "otp-xtask-";

/// The binaries, and the Debian package that provides each.
const PROGRAMS: [(&str, &str); 5] = [
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("smtp-sink", "postfix"),
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];

/// apt-get without questions (postfix's postinst asks which mail setup to use) and without
/// starting the packages' system services (a `policy-rc.d` denying them, while there is none).
const APT_INSTALL: &str = r#"set -e
printf '%s\n' 'postfix postfix/main_mailer_type select No configuration' \
  'postfix postfix/mailname string localhost' | debconf-set-selections
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ] && printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
then trap 'rm -f "$policy"' EXIT
fi
apt-get -q update
apt-get -q install -y --no-install-recommends "$@""#;

/// Paths of the server binaries (and of the browser the browser tests drive), by name.
pub(crate) type Tools = HashMap<&'static str, PathBuf>;

/// Finds the binaries, installing the missing ones when root on Debian.
pub(crate) fn tools() -> Result<Tools, String> {
    let missing = PROGRAMS
        .iter()
        .filter(|(program, _)| find_program(program).is_none());
    let missing: Vec<&str> = missing.map(|(_, package)| *package).collect();
    if !missing.is_empty() {
        install_packages(&missing)?;
    }
    let locate = |&(name, _): &(&'static str, &str)| match find_program(name) {
        Some(path) => Ok((name, path)),
        None => Err(format!("{name} still not found after installation")),
    };
    PROGRAMS.iter().map(locate).collect()
}

/// Searches `PATH`, then the system directories (a non-root `PATH` often lacks the `sbin`
/// ones, where Debian puts `smtp-sink`), for an executable file.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH").unwrap_or_default();
    let system = std::env::split_paths("/usr/sbin:/usr/local/sbin:/sbin:/usr/bin:/usr/local/bin");
    let executable = |m: std::fs::Metadata| m.is_file() && m.permissions().mode() & 0o111 != 0;
    (std::env::split_paths(&path).chain(system))
        .map(|dir| dir.join(name))
        .find(|p| p.metadata().is_ok_and(executable))
}

/// Whether we run as root (`id -u` prints 0).
fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|out| out.trim() == "0")
}

/// Installs Debian `packages` with apt-get when root on Debian, else says which to install.
pub(crate) fn install_packages(packages: &[&str]) -> Result<(), String> {
    let list = packages.join(" ");
    if !(is_root() && Path::new("/etc/debian_version").exists()) {
        return Err(format!(
            "missing the Debian packages {list}; install them \
             (`sudo apt-get install --no-install-recommends {list}`) \
             or run as root on Debian to let xtask install them"
        ));
    }
    eprintln!("xtask: installing {list} with apt-get");
    let mut install = Command::new("sh");
    install
        .args(["-c", APT_INSTALL, "xtask-apt-get"])
        .args(packages)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        // Keeps stdout for the `export` lines of `cargo xtask servers`.
        .stdout(std::io::stderr());
    match run(&mut install)? {
        0 => Ok(()),
        code => Err(format!("installing {list} with apt-get failed ({code})")),
    }
}

/// A process with its output in `<dir>/<name>.log`, killed and reaped when dropped.
#[derive(Debug)]
pub(crate) struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `command` in `dir`, its output in `<dir>/<name>.log`.
    pub(crate) fn spawn(name: &str, command: &mut Command, dir: &Path) -> Result<Self, String> {
        let log = dir.join(format!("{name}.log"));
        let failed = |e: std::io::Error| format!("{}: {e}", log.display());
        let file = File::create(&log).map_err(failed)?;
        let stderr = file.try_clone().map_err(failed)?;
        let child = (command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr))
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", display(command)))?;
        let name = name.to_owned();
        Ok(Self { name, child, log })
    }

    /// Spawns a server and waits (30 s at most) until `addr` accepts connections.
    pub(crate) fn listening(
        name: &str,
        mut command: Command,
        addr: SocketAddr,
        dir: &Path,
    ) -> Result<Self, String> {
        let mut server = Self::spawn(name, &mut command, dir)?;
        server.wait_for(30, &format!("on {addr}"), || connects(addr))?;
        eprintln!("xtask: {name} listening on {addr}");
        Ok(server)
    }

    /// Polls `ready` until it holds; an error with the end of the log if the process exits
    /// first or `seconds` pass.
    pub(crate) fn wait_for(
        &mut self,
        seconds: u64,
        what: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        while !ready() {
            self.check_running()?;
            if start.elapsed() >= Duration::from_secs(seconds) {
                return Err(self.failure(&format!("did not answer {what} within {seconds} s")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// An error, with the end of the log, if the process has exited.
    pub(crate) fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.failure(&format!("exited ({status})"))),
            Err(e) => Err(format!("{}: cannot check its process: {e}", self.name)),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (a graceful shutdown, which must succeed), then SIGKILL after 10 s.
    pub(crate) fn stop(mut self) -> Result<(), String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(self.failure(&format!("exited ({status}) on SIGTERM")));
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        Err(format!("{} did not stop within 10 s of SIGTERM", self.name))
    }

    /// `<name> <what>; its log:` and the last 20 lines of the log.
    fn failure(&self, what: &str) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("{} {what}; its log:\n{tail}", self.name)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A no-op for a process already reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `addr` accepts a TCP connection.
fn connects(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// An example app listening on `addr`, with none of the runner's own `OTP_AUTH_*` variables.
pub(crate) fn app_command(program: &Path, addr: SocketAddr) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTP_AUTH_") {
            command.env_remove(name);
        }
    }
    command.env("APP_ADDR", addr.to_string());
    command
}

/// A loopback address with a port that is free now.
pub(crate) fn free_addr() -> Result<SocketAddr, String> {
    (TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|listener| listener.local_addr()))
        .map_err(|e| format!("cannot bind a loopback port: {e}"))
}

/// A free loopback port, held bound in `held` so that no two picks collide; with `bus`, a
/// port whose cluster bus port (port + 10000) is free too.
fn free_port(held: &mut Vec<TcpListener>, bus: bool) -> Result<u16, String> {
    let bind = |port| TcpListener::bind((Ipv4Addr::LOCALHOST, port));
    for _ in 0..200 {
        let listener = bind(0).map_err(|e| format!("cannot bind a loopback port: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        if bus {
            match port.checked_add(10_000).map(bind) {
                Some(Ok(bus)) => held.push(bus),
                _ => continue,
            }
        }
        held.push(listener);
        return Ok(port);
    }
    Err("no free loopback port p with p + 10000 free too".to_owned())
}

/// Running servers. Dropping it stops every process and removes the temporary directories.
///
/// If the runner dies without unwinding (Ctrl-C, kill), a detached watchdog shell notices
/// within a second and does the same cleanup.
#[derive(Debug)]
pub(crate) struct Servers {
    /// The binaries.
    pub(crate) tools: Tools,
    root: PathBuf,
    procs: Vec<Proc>,
    watchdog: Option<Child>,
    env: Vec<(&'static str, String)>,
    /// The standalone Redis.
    pub(crate) redis_port: u16,
    /// The SMTP sink.
    pub(crate) smtp: SocketAddr,
}

impl Servers {
    /// Starts every server and waits until each one answers.
    pub(crate) fn start() -> Result<Self, String> {
        let tools = tools()?;
        sweep_stale_dirs();
        let nanos = UNIX_EPOCH.elapsed().map_or(0, |d| d.subsec_nanos());
        let dir = format!("{DIR_PREFIX}{}-{nanos}", std::process::id());
        let root = std::env::temp_dir().join(dir);
        std::fs::create_dir(&root).map_err(|e| format!("creating {}: {e}", root.display()))?;
        let mut held = Vec::new();
        let redis_port = free_port(&mut held, false)?;
        let mut node = || free_port(&mut held, true);
        let cluster = [node()?, node()?, node()?];
        let smtp = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port(&mut held, false)?));
        drop(held);
        let (procs, watchdog, env) = (Vec::new(), None, Vec::new());
        // On error, `servers` is dropped and stops what was started.
        let mut servers = Self {
            tools: tools.clone(),
            root,
            procs,
            watchdog,
            env,
            redis_port,
            smtp,
        };

        let cluster_args = "--cluster-enabled yes --cluster-config-file nodes.conf \
                            --cluster-node-timeout 5000";
        for (i, port) in [redis_port].into_iter().chain(cluster).enumerate() {
            let (name, extra) = match i {
                0 => ("redis".to_owned(), ""),
                i => (format!("cluster-{i}"), cluster_args),
            };
            let mut command = Command::new(&tools["redis-server"]);
            let args = format!("--port {port} --bind 127.0.0.1 --appendonly no --dir . {extra}");
            // Without persistence (`--save ""`).
            command.args(args.split_whitespace()).args(["--save", ""]);
            servers.spawn(&name, &mut command)?;
        }
        // As root, smtp-sink refuses to run unless told (`-u`) which user to become after
        // binding its socket. `-c`: count sessions on stdout, so in its log.
        let mut sink = Command::new(&tools["smtp-sink"]);
        sink.arg("-c");
        if is_root() {
            sink.args(["-u", "nobody"]);
        }
        servers.spawn("smtp-sink", sink.args([&smtp.to_string(), "1000"]))?;

        // The Redis processes started together; now each must answer.
        let ports = [redis_port].into_iter().chain(cluster);
        for (proc, port) in servers.procs.iter_mut().zip(ports) {
            let pong = || redis_cli(&tools, port, &["ping"]).is_ok_and(|out| out.trim() == "PONG");
            proc.wait_for(10, "PONG", pong)?;
        }
        eprintln!("xtask: redis 127.0.0.1:{redis_port} up");
        let nodes = cluster.map(|port| format!("127.0.0.1:{port}"));
        let mut create = Command::new(&tools["redis-cli"]);
        create.args(["--cluster", "create"]).args(&nodes);
        output(create.args(["--cluster-replicas", "0", "--cluster-yes"]))?;
        for (proc, port) in servers.procs[1..4].iter_mut().zip(cluster) {
            let info = || redis_cli(&tools, port, &["cluster", "info"]);
            let ok = || info().is_ok_and(|out| out.lines().any(|l| l.trim() == "cluster_state:ok"));
            proc.wait_for(20, "cluster_state:ok", ok)?;
        }
        eprintln!("xtask: redis cluster {} up", nodes.join(","));
        servers.procs[4].wait_for(10, "a TCP connection", || connects(smtp))?;
        eprintln!("xtask: smtp-sink {smtp} up");
        servers.spawn_watchdog();

        // The Standard Webhooks reference implementation, which checks our signatures.
        let python = crate::schemathesis::python_venv(
            &crate::cmd::target_dir().join("webhooks-venv"),
            STANDARD_WEBHOOKS,
        )?;
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let [n1, n2, n3] = &nodes;
        let cluster_url = format!("redis-cluster://{n1}?node={n2}&node={n3}");
        servers.env = vec![
            ("OTP_TEST_REDIS_URL", servers.redis_url()),
            ("OTP_TEST_REDIS_CLUSTER_URL", cluster_url),
            ("OTP_TEST_REDIS_CLUSTER_NODES", nodes.join(",")),
            ("OTP_TEST_SMTP_SINK", smtp.to_string()),
            ("OTP_TEST_REDIS_SERVER_BIN", path(&tools["redis-server"])),
            ("OTP_TEST_REDIS_CLI_BIN", path(&tools["redis-cli"])),
            ("OTP_TEST_CHROMIUM", path(&tools["chromium"])),
            ("OTP_TEST_CHROMEDRIVER", path(&tools["chromedriver"])),
            ("OTP_TEST_PYTHON", path(&python)),
            ("OTP_TEST_SERVERS", "1".to_owned()),
        ];
        Ok(servers)
    }

    /// Variables for the test processes (`OTP_TEST_*`).
    pub(crate) fn env(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.env.iter().map(|(name, value)| (*name, value.as_str()))
    }

    /// `redis-cli ARGS` against the standalone Redis.
    pub(crate) fn redis(&self, args: &[&str]) -> Result<String, String> {
        redis_cli(&self.tools, self.redis_port, args)
    }

    /// The standalone Redis' `used_memory` (`INFO memory`), in bytes.
    pub(crate) fn used_memory(&self) -> Result<u64, String> {
        let info = self.redis(&["INFO", "memory"])?;
        (info.lines().find_map(|l| l.strip_prefix("used_memory:")))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no used_memory in INFO memory: {info:?}"))
    }

    /// The standalone Redis' URL.
    pub(crate) fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.redis_port)
    }

    /// Spawns a server in `<root>/<name>/`.
    fn spawn(&mut self, name: &str, command: &mut Command) -> Result<(), String> {
        let dir = self.root.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        self.procs.push(Proc::spawn(name, command, &dir)?);
        Ok(())
    }

    /// Starts a shell that outlives us: once our process is gone it kills the servers and
    /// removes the directories. Ctrl-C reaches the whole foreground process group, so it
    /// ignores SIGINT (and SIGTERM/SIGHUP); our `Drop` kills it with SIGKILL.
    fn spawn_watchdog(&mut self) {
        const SCRIPT: &str = r#"trap '' HUP INT TERM
parent=$1 dir=$2
shift 2
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
kill "$@" 2>/dev/null
sleep 1
kill -9 "$@" 2>/dev/null
rm -rf "$dir""#;
        let spawned = Command::new("sh")
            .args([
                "-c",
                SCRIPT,
                "xtask-watchdog",
                &std::process::id().to_string(),
            ])
            .arg(&self.root)
            .args(self.procs.iter().map(|proc| proc.pid().to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => self.watchdog = Some(child),
            Err(e) => eprintln!(
                "xtask: no watchdog ({e}); after Ctrl-C, remove {} by hand",
                self.root.display()
            ),
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        if !self.procs.is_empty() {
            self.procs.clear();
            eprintln!("xtask: servers stopped");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            eprintln!("xtask: cannot remove {}: {e}", self.root.display());
        }
    }
}

/// The output of `redis-cli -p PORT ARGS...`; an error if it failed or answered `ERR`.
fn redis_cli(tools: &Tools, port: u16, args: &[&str]) -> Result<String, String> {
    let mut command = Command::new(&tools["redis-cli"]);
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    match output(&mut command)? {
        out if out.starts_with("ERR") => Err(format!("`{}`: {}", display(&command), out.trim())),
        out => Ok(out),
    }
}

/// Removes directories left by runs whose process is gone (killed together with their
/// watchdog).
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = (name.to_str().and_then(|name| name.strip_prefix(DIR_PREFIX)))
            .and_then(|rest| rest.split('-').next()?.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
