//! The test servers: a standalone Redis, a three-master Redis Cluster and an
//! SMTP sink, each on a free loopback port with its own temporary directory.

use std::fs::File;
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::tools::{Tools, is_root};

/// Prefix of the temporary directories, followed by `<pid>-<nanos>`.
const DIR_PREFIX: &str = "otp-xtask-";

/// Cluster nodes also listen on their port + 10000 (the cluster bus).
const CLUSTER_BUS_OFFSET: u16 = 10_000;

const REDIS_TIMEOUT: Duration = Duration::from_secs(10);
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(20);
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Running servers. Dropping it kills and reaps every process and removes
/// the temporary directories.
///
/// If the runner dies without unwinding (Ctrl-C, kill), a detached watchdog
/// shell (on Unix) notices within a second and does the same cleanup.
#[derive(Debug)]
pub(crate) struct Servers {
    /// Directory holding one sub-directory per server.
    root: PathBuf,
    procs: Vec<Proc>,
    watchdog: Option<Child>,
    env: Vec<(&'static str, String)>,
}

/// One server process and the file that receives its output.
#[derive(Debug)]
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Servers {
    /// Starts every server and waits until each one answers.
    pub(crate) fn start(tools: &Tools) -> Result<Self, String> {
        sweep_stale_dirs();
        let root = unique_dir()?;
        let mut servers = Self {
            root,
            procs: Vec::new(),
            watchdog: None,
            env: Vec::new(),
        };
        // On error, `servers` is dropped here and stops what was started.
        servers.start_all(tools)?;
        Ok(servers)
    }

    /// Variables for the test processes (`OTP_TEST_*`).
    pub(crate) fn env(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.env.iter().map(|(name, value)| (*name, value.as_str()))
    }

    fn start_all(&mut self, tools: &Tools) -> Result<(), String> {
        let mut ports = PortPicker::default();
        let redis_port = ports.free_port()?;
        let cluster_ports = [
            ports.free_port_with_bus()?,
            ports.free_port_with_bus()?,
            ports.free_port_with_bus()?,
        ];
        let smtp_port = ports.free_port()?;
        // The servers bind these ports now.
        drop(ports);

        // Spawn the Redis processes first and wait for them together.
        let redis = self.spawn_redis(tools, "redis", redis_port, &[])?;
        let mut nodes = Vec::new();
        for (i, port) in cluster_ports.iter().enumerate() {
            let cluster_args = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "5000",
            ];
            nodes.push(self.spawn_redis(
                tools,
                &format!("cluster-{}", i + 1),
                *port,
                &cluster_args,
            )?);
        }
        let smtp = self.spawn_smtp_sink(tools, smtp_port)?;

        self.wait_ready(redis, REDIS_TIMEOUT, "PONG", || {
            redis_ping(tools, redis_port)
        })?;
        eprintln!("xtask: redis 127.0.0.1:{redis_port} up");

        for (&node, &port) in nodes.iter().zip(&cluster_ports) {
            self.wait_ready(node, REDIS_TIMEOUT, "PONG", || redis_ping(tools, port))?;
        }
        self.create_cluster(tools, &cluster_ports)?;
        for (&node, &port) in nodes.iter().zip(&cluster_ports) {
            self.wait_ready(node, CLUSTER_TIMEOUT, "cluster_state:ok", || {
                cluster_ok(tools, port)
            })?;
        }
        let cluster_nodes: Vec<String> = cluster_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        eprintln!("xtask: redis cluster {} up", cluster_nodes.join(","));

        let smtp_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, smtp_port));
        self.wait_ready(smtp, SMTP_TIMEOUT, "a TCP connection", || {
            TcpStream::connect_timeout(&smtp_addr, Duration::from_millis(500)).is_ok()
        })?;
        eprintln!("xtask: smtp-sink {smtp_addr} up");

        self.spawn_watchdog();

        let [first, rest @ ..] = cluster_nodes.as_slice() else {
            return Err("no cluster node".to_owned());
        };
        let query: Vec<String> = rest.iter().map(|node| format!("node={node}")).collect();
        self.env = vec![
            (
                "OTP_TEST_REDIS_URL",
                format!("redis://127.0.0.1:{redis_port}"),
            ),
            (
                "OTP_TEST_REDIS_CLUSTER_URL",
                format!("redis-cluster://{first}?{}", query.join("&")),
            ),
            ("OTP_TEST_REDIS_CLUSTER_NODES", cluster_nodes.join(",")),
            ("OTP_TEST_SMTP_SINK", smtp_addr.to_string()),
            (
                "OTP_TEST_REDIS_SERVER_BIN",
                tools.redis_server.to_string_lossy().into_owned(),
            ),
            (
                "OTP_TEST_REDIS_CLI_BIN",
                tools.redis_cli.to_string_lossy().into_owned(),
            ),
            (
                "OTP_TEST_CHROMIUM",
                tools.chromium.to_string_lossy().into_owned(),
            ),
            (
                "OTP_TEST_CHROMEDRIVER",
                tools.chromedriver.to_string_lossy().into_owned(),
            ),
            ("OTP_TEST_SERVERS", "1".to_owned()),
        ];
        Ok(())
    }

    /// Starts `redis-server` without persistence in its own directory;
    /// returns its index in `procs`.
    fn spawn_redis(
        &mut self,
        tools: &Tools,
        name: &str,
        port: u16,
        extra: &[&str],
    ) -> Result<usize, String> {
        let dir = self.server_dir(name)?;
        let mut command = Command::new(&tools.redis_server);
        command
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .args(extra);
        self.spawn(name, &dir, &mut command)
    }

    /// Starts `smtp-sink` (`-c`: count sessions on stdout, so in its log).
    ///
    /// As root, smtp-sink refuses to run unless told (`-u`) which user to
    /// switch to after binding its socket.
    fn spawn_smtp_sink(&mut self, tools: &Tools, port: u16) -> Result<usize, String> {
        let dir = self.server_dir("smtp-sink")?;
        let mut command = Command::new(&tools.smtp_sink);
        command.arg("-c");
        if is_root() {
            command.args(["-u", "nobody"]);
        }
        command.arg(format!("127.0.0.1:{port}")).arg("1000");
        self.spawn("smtp-sink", &dir, &mut command)
    }

    fn server_dir(&self, name: &str) -> Result<PathBuf, String> {
        let dir = self.root.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        Ok(dir)
    }

    /// Spawns a server with its output going to `<dir>/<name>.log`.
    fn spawn(&mut self, name: &str, dir: &Path, command: &mut Command) -> Result<usize, String> {
        let log = dir.join(format!("{name}.log"));
        let open =
            |log: &Path| File::create(log).map_err(|e| format!("creating {}: {e}", log.display()));
        let stdout = open(&log)?;
        let stderr = stdout
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let child = command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start `{}`: {e}", crate::cmd::display(command)))?;
        self.procs.push(Proc {
            name: name.to_owned(),
            child,
            log,
        });
        Ok(self.procs.len() - 1)
    }

    /// Waits until `ready` holds, failing early (with the server's log) if
    /// the process exits, and after `timeout`.
    fn wait_ready(
        &mut self,
        index: usize,
        timeout: Duration,
        what: &str,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let Some(proc) = self.procs.get_mut(index) else {
            return Err(format!("no server #{index}"));
        };
        let mut exited = None;
        let ok = wait_until(timeout, || {
            if let Ok(Some(status)) = proc.child.try_wait() {
                exited = Some(status);
                return true;
            }
            ready()
        });
        let failure = match (exited, ok) {
            (Some(status), _) => format!("{} exited ({status}) before answering {what}", proc.name),
            (None, false) => format!("{} did not answer {what} within {timeout:?}", proc.name),
            (None, true) => return Ok(()),
        };
        Err(format!("{failure}; its log:\n{}", log_tail(&proc.log)))
    }

    /// `redis-cli --cluster create` over the three nodes, without replicas.
    fn create_cluster(&self, tools: &Tools, ports: &[u16]) -> Result<(), String> {
        let mut command = Command::new(&tools.redis_cli);
        command.arg("--cluster").arg("create");
        for port in ports {
            command.arg(format!("127.0.0.1:{port}"));
        }
        command
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null());
        let shown = crate::cmd::display(&command);
        let output = command
            .output()
            .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        // Kept next to the node directories for debugging.
        let _ = std::fs::write(self.root.join("cluster-create.log"), &text);
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("`{shown}` failed ({}):\n{text}", output.status))
        }
    }

    /// Starts a shell that outlives us: once our process is gone it kills
    /// the servers and removes the directories. Ctrl-C reaches the whole
    /// foreground process group, so it ignores SIGINT (and SIGTERM/SIGHUP);
    /// our `Drop` kills it with SIGKILL before cleaning up itself.
    #[cfg(unix)]
    fn spawn_watchdog(&mut self) {
        const SCRIPT: &str = r#"trap '' HUP INT TERM
parent=$1 dir=$2
shift 2
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
kill "$@" 2>/dev/null
sleep 1
kill -9 "$@" 2>/dev/null
rm -rf "$dir""#;
        let mut command = Command::new("sh");
        command
            .args(["-c", SCRIPT, "xtask-watchdog"])
            .arg(std::process::id().to_string())
            .arg(&self.root)
            .args(self.procs.iter().map(|proc| proc.child.id().to_string()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match command.spawn() {
            Ok(child) => self.watchdog = Some(child),
            Err(e) => eprintln!(
                "xtask: no watchdog ({e}); after Ctrl-C, remove {} by hand",
                self.root.display()
            ),
        }
    }

    #[cfg(not(unix))]
    fn spawn_watchdog(&mut self) {}
}

impl Drop for Servers {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        for proc in self.procs.iter_mut().rev() {
            let _ = proc.child.kill();
            let _ = proc.child.wait();
        }
        if !self.procs.is_empty() {
            eprintln!("xtask: servers stopped");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            eprintln!("xtask: cannot remove {}: {e}", self.root.display());
        }
    }
}

/// Loopback ports that are free now, held bound until the picker is dropped
/// so that no two picks collide.
#[derive(Debug, Default)]
struct PortPicker {
    held: Vec<TcpListener>,
}

impl PortPicker {
    /// A free loopback port chosen by the system.
    fn free_port(&mut self) -> Result<u16, String> {
        let listener = bind(0).map_err(|e| format!("cannot bind a loopback port: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("local address of a listener: {e}"))?
            .port();
        self.held.push(listener);
        Ok(port)
    }

    /// A free port whose cluster bus port (port + 10000) is free too.
    fn free_port_with_bus(&mut self) -> Result<u16, String> {
        for _ in 0..200 {
            let listener = bind(0).map_err(|e| format!("cannot bind a loopback port: {e}"))?;
            let Ok(addr) = listener.local_addr() else {
                continue;
            };
            let Some(bus_port) = addr.port().checked_add(CLUSTER_BUS_OFFSET) else {
                continue;
            };
            if let Ok(bus) = bind(bus_port) {
                self.held.push(listener);
                self.held.push(bus);
                return Ok(addr.port());
            }
        }
        Err("no free loopback port p with p + 10000 free too".to_owned())
    }
}

fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
}

/// Polls `condition` every 100 ms until it holds (true) or `timeout`
/// passes (false).
pub(crate) fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Output of `redis-cli -p PORT ARGS...`, if it ran successfully.
fn redis_cli(tools: &Tools, port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new(&tools.redis_cli)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn redis_ping(tools: &Tools, port: u16) -> bool {
    redis_cli(tools, port, &["ping"]).is_some_and(|out| out.trim() == "PONG")
}

fn cluster_ok(tools: &Tools, port: u16) -> bool {
    redis_cli(tools, port, &["cluster", "info"])
        .is_some_and(|out| out.lines().any(|line| line.trim() == "cluster_state:ok"))
}

/// Creates `<tmp>/otp-xtask-<pid>-<nanos>`.
fn unique_dir() -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Removes directories left by runs whose process is gone (killed together
/// with their watchdog). Only where `/proc` tells which processes live.
fn sweep_stale_dirs() {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|name| name.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The last lines of a server log, for error messages.
fn log_tail(path: &Path) -> String {
    let mut text = String::new();
    if File::open(path)
        .and_then(|mut file| file.read_to_string(&mut text))
        .is_err()
    {
        return format!("(cannot read {})", path.display());
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(20);
    lines[start..].join("\n")
}
