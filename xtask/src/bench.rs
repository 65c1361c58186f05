//! `cargo xtask bench`: the example apps under load, measured against the ceiling this
//! machine allows.
//!
//! Builds the example apps and `otp-bench` in release mode, starts Redis and smtp-sink
//! (the `Servers` of `cargo xtask test`), then for each app (axum, poem) and store (redis,
//! fred) starts the app and runs the `protected`, `flow` and `request-otp` scenarios of
//! `otp-bench load` against it. The ceilings: `otp-bench ceiling` (the same routes doing one
//! Redis `EXISTS` each and nothing else) for `protected` and `flow`, and postfix's
//! `smtp-source` against the same smtp-sink for `request-otp`. Also measures the Redis
//! memory of one pending login. Prints a table and writes `target/bench/bench.json`.
//!
//! The load generator runs on the same cores as the server, with no pinning: every row,
//! the ceiling included, shares the CPU between client and server.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Outcome;
use crate::cmd::{cargo, exit_code, run, workspace_root};
use crate::servers::{Servers, wait_until};
use crate::tools::{Tools, find_program};

/// The example apps: package and binary name, short name.
const APPS: [(&str, &str); 2] = [("axum-example", "axum"), ("poem-example", "poem")];

/// The Redis stores (`OTP_AUTH_STORE`).
const STORES: [&str; 2] = ["redis", "fred"];

/// The scenarios of `otp-bench load` run against each app.
const SCENARIOS: [&str; 3] = ["protected", "flow", "request-otp"];

/// Any 64 hex digits: a strong enough key for the bench only.
pub(crate) const JWT_SECRET: &str =
    "3f9c1e7a5b2d4c8e6a0f1b3d5c7e9a2b4d6f8a0c2e4b6d8f1a3c5e7b9d0f2a4c";

/// Messages sent by `smtp-source` to measure what smtp-sink takes.
const SMTP_SOURCE_MESSAGES: u32 = 5000;

/// Targets: ratios to the ceiling, and bytes of Redis per pending login.
const TARGET_PROTECTED: f64 = 0.9;
const TARGET_FLOW: f64 = 0.7;
const TARGET_REQUEST_OTP: f64 = 0.4;
const TARGET_MEMORY_BYTES: u64 = 150;

/// How long an app gets to listen, and to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone, Copy)]
struct Options {
    seconds: u32,
    concurrency: u32,
    warmup: u32,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            seconds: 10,
            concurrency: 32,
            warmup: 2,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let slot = match arg.as_str() {
                "--seconds" => &mut options.seconds,
                "--concurrency" => &mut options.concurrency,
                "--warmup" => &mut options.warmup,
                other => {
                    return Err(format!(
                        "`bench` does not take `{other}`; options: --seconds N, \
                         --concurrency N, --warmup N"
                    ));
                }
            };
            let value = it.next().ok_or_else(|| format!("`{arg}` needs a value"))?;
            *slot = value
                .parse()
                .map_err(|e| format!("`{arg} {value}`: not a whole number ({e})"))?;
        }
        if options.seconds == 0 || options.concurrency == 0 {
            return Err("--seconds and --concurrency must be at least 1".to_owned());
        }
        Ok(options)
    }
}

/// The JSON line printed by `otp-bench load`, and the numbers read from it.
#[derive(Debug, Clone)]
struct Load {
    json: String,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    server_errors: u64,
}

impl Load {
    fn parse(json: &str) -> Result<Self, String> {
        let number =
            |key: &str| json_number(json, key).ok_or_else(|| format!("no `{key}` in `{json}`"));
        // Counts are whole numbers in the JSON; the casts only drop a `.0`.
        Ok(Self {
            json: json.to_owned(),
            ops_per_sec: number("ops_per_sec")?,
            p50_ms: number("p50_ms")?,
            p99_ms: number("p99_ms")?,
            errors: number("errors")? as u64,
            server_errors: number("server_errors")? as u64,
        })
    }
}

/// One row of the table: a scenario against an app and store (or the ceiling).
#[derive(Debug)]
struct Row {
    scenario: &'static str,
    app: &'static str,
    store: &'static str,
    load: Load,
}

/// Memory of one pending login with one app and store.
#[derive(Debug)]
struct Memory {
    app: &'static str,
    store: &'static str,
    key: String,
    bytes: u64,
}

/// What the runs share: paths, server addresses, options.
#[derive(Debug)]
struct Bench<'a> {
    tools: &'a Tools,
    options: Options,
    release: PathBuf,
    logs: PathBuf,
    redis_url: String,
    redis_port: u16,
    smtp: SocketAddr,
}

/// `cargo xtask bench [--seconds N] [--concurrency N] [--warmup N]`.
pub(crate) fn bench(args: &[String]) -> Outcome {
    let options = Options::parse(args)?;

    let target = match build_release(&["axum-example", "poem-example", "otp-bench"])? {
        Ok(target) => target,
        Err(code) => return Ok(code),
    };
    let out = target.join("bench");
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;

    let tools = Tools::locate_or_install()?;
    let servers = Servers::start(&tools)?;
    let server_var = |name: &str| server_var(&servers, name);
    let redis_url = server_var("OTP_TEST_REDIS_URL")?;
    let redis_port = url_port(&redis_url)?;
    let smtp = server_var("OTP_TEST_SMTP_SINK")?;
    let smtp = smtp
        .parse()
        .map_err(|e| format!("OTP_TEST_SMTP_SINK={smtp}: {e}"))?;
    let bench = Bench {
        tools: &tools,
        options,
        release: target.join("release"),
        logs,
        redis_url,
        redis_port,
        smtp,
    };

    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    eprintln!(
        "xtask: bench: {} s per scenario after {} s of warm-up, {} virtual users; the load \
         generator and the servers share this machine's {cpus} CPUs (no pinning)",
        options.seconds, options.warmup, options.concurrency
    );

    let mut rows = Vec::new();
    let mut memory = Vec::new();
    for (package, app) in APPS {
        for store in STORES {
            let (app_rows, mem) = bench.app(package, app, store)?;
            rows.extend(app_rows);
            memory.push(mem);
        }
    }
    let ceiling = bench.ceiling()?;
    let (smtp_seconds, mails_per_sec) = bench.smtp_source()?;
    drop(servers);

    let report = Report {
        options,
        cpus,
        rows,
        ceiling,
        smtp_seconds,
        mails_per_sec,
        memory,
    };
    print!("{}", report.table());
    let json_path = out.join("bench.json");
    std::fs::write(&json_path, report.json())
        .map_err(|e| format!("writing {}: {e}", json_path.display()))?;
    eprintln!("xtask: bench: results in {}", json_path.display());

    let server_errors = report.server_errors();
    if server_errors > 0 {
        eprintln!(
            "xtask: bench: {server_errors} answers were 5xx (see the logs in target/bench/logs)"
        );
        return Ok(1);
    }
    Ok(0)
}

impl Bench<'_> {
    /// Starts one app on one store, runs the three scenarios, measures a pending login.
    fn app(
        &self,
        package: &str,
        app: &'static str,
        store: &'static str,
    ) -> Result<(Vec<Row>, Memory), String> {
        self.flush_redis()?;
        let addr = free_addr()?;
        let mut command = Command::new(self.release.join(package));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("OTP_AUTH_") {
                command.env_remove(name);
            }
        }
        command
            .env("APP_ADDR", addr.to_string())
            .env("OTP_AUTH_STORE", store)
            .env("OTP_AUTH_REDIS_URL", &self.redis_url)
            .env("OTP_AUTH_JWT_SECRET", JWT_SECRET)
            .env("OTP_AUTH_MAILER", "smtp")
            .env("OTP_AUTH_SMTP_SERVER", self.smtp.ip().to_string())
            .env("OTP_AUTH_SMTP_PORT", self.smtp.port().to_string())
            .env("OTP_AUTH_DISABLE_LOCAL_AUTH", "true")
            .env("OTP_AUTH_MAGIC_OTP_EMAILS", "*@magic.bench")
            .env("OTP_AUTH_OTP_RATE_LIMIT_PER_IP_PER_MINUTE", "100000000")
            .env("OTP_AUTH_OTP_RATE_LIMIT_PER_MINUTE", "1000")
            .env("OTP_AUTH_SMTP_POOL_SIZE", "16")
            .env("RUST_LOG", "warn");
        let server = App::start(&format!("{app}-{store}"), command, addr, &self.logs)?;
        let mut rows = Vec::new();
        for scenario in SCENARIOS {
            let load = self.load(addr, scenario, &format!("{app}/{store}"))?;
            rows.push(Row {
                scenario,
                app,
                store,
                load,
            });
        }
        let (key, bytes) = self.pending_login_bytes(addr)?;
        eprintln!("xtask: bench: {app}/{store}: one pending login: {key} takes {bytes} bytes");
        server.stop()?;
        let memory = Memory {
            app,
            store,
            key,
            bytes,
        };
        Ok((rows, memory))
    }

    /// `otp-bench ceiling` with the `protected` and `flow` scenarios.
    fn ceiling(&self) -> Result<Vec<Row>, String> {
        self.flush_redis()?;
        let addr = free_addr()?;
        let mut command = Command::new(self.release.join("otp-bench"));
        command
            .arg("ceiling")
            .args(["--addr", &addr.to_string()])
            .args(["--redis", &self.redis_url]);
        let server = App::start("ceiling", command, addr, &self.logs)?;
        let mut rows = Vec::new();
        for scenario in ["protected", "flow"] {
            let load = self.load(addr, scenario, "ceiling")?;
            rows.push(Row {
                scenario,
                app: "ceiling",
                store: "redis",
                load,
            });
        }
        server.stop()?;
        Ok(rows)
    }

    /// Runs one scenario of `otp-bench load` against `addr`.
    fn load(&self, addr: SocketAddr, scenario: &str, what: &str) -> Result<Load, String> {
        let options = self.options;
        let mut command = Command::new(self.release.join("otp-bench"));
        command
            .arg("load")
            .args(["--base", &format!("http://{addr}")])
            .args(["--scenario", scenario])
            .args(["--concurrency", &options.concurrency.to_string()])
            .args(["--seconds", &options.seconds.to_string()])
            .args(["--warmup", &options.warmup.to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        let shown = crate::cmd::display(&command);
        eprintln!("xtask: bench: {what}: `{shown}`");
        let output = command
            .output()
            .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
        if !output.status.success() {
            return Err(format!("`{shown}` failed ({})", output.status));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|line| line.trim_start().starts_with('{'))
            .ok_or_else(|| format!("`{shown}` printed no result"))?;
        eprintln!("xtask: bench: {what}: {line}");
        Load::parse(line.trim())
    }

    /// `smtp-source` against smtp-sink: seconds taken and mails per second.
    fn smtp_source(&self) -> Result<(f64, f64), String> {
        let program = self
            .tools
            .smtp_sink
            .parent()
            .map(|dir| dir.join("smtp-source"))
            .filter(|path| path.is_file())
            .or_else(|| find_program("smtp-source"))
            .ok_or("smtp-source (package postfix) not found next to smtp-sink")?;
        let mut command = Command::new(program);
        command
            .arg("-c")
            .args(["-s", &self.options.concurrency.to_string()])
            .args(["-m", &SMTP_SOURCE_MESSAGES.to_string()])
            .args(["-l", "1000"])
            .args(["-f", "from@bench", "-t", "to@bench"])
            .arg(self.smtp.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let shown = crate::cmd::display(&command);
        eprintln!("xtask: bench: smtp ceiling: `{shown}`");
        let started = Instant::now();
        let output = command
            .output()
            .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
        let seconds = started.elapsed().as_secs_f64();
        if !output.status.success() {
            return Err(format!(
                "`{shown}` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let rate = f64::from(SMTP_SOURCE_MESSAGES) / seconds;
        eprintln!("xtask: bench: smtp-source: {SMTP_SOURCE_MESSAGES} mails in {seconds:.2} s");
        Ok((seconds, rate))
    }

    /// One request-otp for a new `@magic.bench` address, then `MEMORY USAGE` of the code
    /// key it created (the `otp_{...}` key that was not there before).
    fn pending_login_bytes(&self, addr: SocketAddr) -> Result<(String, u64), String> {
        let before = self.otp_keys()?;
        let email = format!("memory-{}@magic.bench", std::process::id());
        let status = post_json(
            addr,
            "/auth/request-otp",
            &format!("{{\"email\":\"{email}\"}}"),
        )?;
        if status != 200 {
            return Err(format!("request-otp for {email} answered {status}"));
        }
        let after = self.otp_keys()?;
        let key = after
            .into_iter()
            .find(|key| !before.contains(key))
            .ok_or_else(|| format!("request-otp for {email} created no otp_{{...}} key"))?;
        let usage = self.redis_cli(&["MEMORY", "USAGE", &key, "SAMPLES", "0"])?;
        let bytes = usage
            .trim()
            .parse()
            .map_err(|e| format!("MEMORY USAGE {key} answered {usage:?}: {e}"))?;
        Ok((key, bytes))
    }

    /// The pending-code keys (`otp_{<address hash>}`) now in Redis.
    fn otp_keys(&self) -> Result<Vec<String>, String> {
        let keys = self.redis_cli(&["--scan", "--pattern", "otp_{*"])?;
        let mut keys: Vec<String> = keys.lines().map(str::to_owned).collect();
        keys.sort_unstable();
        Ok(keys)
    }

    /// Empties Redis, so each run starts from the same state.
    fn flush_redis(&self) -> Result<(), String> {
        self.redis_cli(&["FLUSHALL"]).map(drop)
    }

    fn redis_cli(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new(&self.tools.redis_cli);
        command
            .args(["-h", "127.0.0.1", "-p", &self.redis_port.to_string()])
            .args(args)
            .stdin(Stdio::null());
        let shown = crate::cmd::display(&command);
        let output = command
            .output()
            .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() || stdout.starts_with("ERR") {
            return Err(format!(
                "`{shown}` failed ({}): {}{}",
                output.status,
                stdout.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(stdout)
    }
}

/// A server under test, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub(crate) struct App {
    name: String,
    child: Child,
    log: PathBuf,
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
                eprintln!("xtask: bench: {name} listening on {addr}");
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

    /// SIGTERM (graceful shutdown), then SIGKILL if it lingers.
    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

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

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for App {
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

/// Sends a JSON POST over a fresh connection; returns the status code.
fn post_json(addr: SocketAddr, path: &str, body: &str) -> Result<u16, String> {
    let failed = |e: std::io::Error| format!("POST http://{addr}{path}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(failed)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(failed)?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(failed)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).map_err(failed)?;
    reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("POST http://{addr}{path}: not an HTTP answer: {reply:?}"))
}

/// The number after `"key":` in a flat JSON object.
fn json_number(json: &str, key: &str) -> Option<f64> {
    let start = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = json.get(start..)?.trim_start();
    let end = rest
        .find(|c: char| c == ',' || c == '}' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Everything measured, for the table and the JSON file.
#[derive(Debug)]
struct Report {
    options: Options,
    cpus: usize,
    rows: Vec<Row>,
    ceiling: Vec<Row>,
    smtp_seconds: f64,
    mails_per_sec: f64,
    memory: Vec<Memory>,
}

/// How a row compares with its ceiling.
#[derive(Debug)]
struct Verdict {
    ratio: Option<f64>,
    target: f64,
}

impl Verdict {
    fn pass(&self) -> bool {
        self.ratio.is_some_and(|ratio| ratio >= self.target)
    }
}

impl Report {
    fn ceiling_ops(&self, scenario: &str) -> Option<f64> {
        self.ceiling
            .iter()
            .find(|row| row.scenario == scenario)
            .map(|row| row.load.ops_per_sec)
    }

    fn verdict(&self, row: &Row) -> Verdict {
        let (ceiling, target) = match row.scenario {
            "protected" => (self.ceiling_ops("protected"), TARGET_PROTECTED),
            "flow" => (self.ceiling_ops("flow"), TARGET_FLOW),
            _ => (Some(self.mails_per_sec), TARGET_REQUEST_OTP),
        };
        let ratio = ceiling
            .filter(|c| *c > 0.0)
            .map(|c| row.load.ops_per_sec / c);
        Verdict { ratio, target }
    }

    fn server_errors(&self) -> u64 {
        self.rows
            .iter()
            .chain(&self.ceiling)
            .map(|row| row.load.server_errors)
            .sum()
    }

    fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "\nBench: {} virtual users, {} s per scenario after {} s of warm-up. The load \
             generator and the servers\nshare this machine's {} CPUs (no pinning): every \
             row, the ceiling included, spends part of the CPU on the client.\n",
            self.options.concurrency, self.options.seconds, self.options.warmup, self.cpus
        );
        let _ = writeln!(
            t,
            "{:<12} {:<8} {:<6} {:>10} {:>8} {:>8} {:>7} {:>5} {:>7}  target",
            "scenario", "app", "store", "ops/s", "p50 ms", "p99 ms", "errors", "5xx", "ratio"
        );
        let line = |t: &mut String, row: &Row, verdict: Option<Verdict>| {
            let (ratio, target) = match verdict {
                Some(v) => (
                    v.ratio
                        .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
                    format!(
                        ">= {:.1} {}",
                        v.target,
                        if v.pass() { "PASS" } else { "MISS" }
                    ),
                ),
                None => ("1.00".to_owned(), "(ceiling)".to_owned()),
            };
            let _ = writeln!(
                t,
                "{:<12} {:<8} {:<6} {:>10.1} {:>8.3} {:>8.3} {:>7} {:>5} {:>7}  {target}",
                row.scenario,
                row.app,
                row.store,
                row.load.ops_per_sec,
                row.load.p50_ms,
                row.load.p99_ms,
                row.load.errors,
                row.load.server_errors,
                ratio,
            );
        };
        for scenario in SCENARIOS {
            for row in self.ceiling.iter().filter(|row| row.scenario == scenario) {
                line(&mut t, row, None);
            }
            if scenario == "request-otp" {
                let _ = writeln!(
                    t,
                    "{:<12} {:<8} {:<6} {:>10.1} {:>8} {:>8} {:>7} {:>5} {:>7}  (ceiling: \
                     {SMTP_SOURCE_MESSAGES} mails in {:.2} s)",
                    "smtp-source",
                    "postfix",
                    "-",
                    self.mails_per_sec,
                    "-",
                    "-",
                    "-",
                    "-",
                    "1.00",
                    self.smtp_seconds
                );
            }
            for row in self.rows.iter().filter(|row| row.scenario == scenario) {
                line(&mut t, row, Some(self.verdict(row)));
            }
        }
        let _ = writeln!(
            t,
            "\nRedis memory per pending login (MEMORY USAGE of the code key after one \
             request-otp), target <= {TARGET_MEMORY_BYTES} bytes:"
        );
        for m in &self.memory {
            let verdict = if m.bytes <= TARGET_MEMORY_BYTES {
                "PASS"
            } else {
                "MISS"
            };
            let _ = writeln!(
                t,
                "  {:<5} {:<6} {:>5} bytes  {verdict}  ({})",
                m.app, m.store, m.bytes, m.key
            );
        }
        t
    }

    fn json(&self) -> String {
        let mut j = String::new();
        let _ = write!(
            j,
            "{{\n  \"machine\": {{\"cpus\": {}, \"client_and_server_share_the_machine\": true}},\n  \
             \"options\": {{\"seconds\": {}, \"concurrency\": {}, \"warmup\": {}}},\n  \
             \"targets\": {{\"protected\": {TARGET_PROTECTED}, \"flow\": {TARGET_FLOW}, \
             \"request_otp\": {TARGET_REQUEST_OTP}, \"memory_bytes\": {TARGET_MEMORY_BYTES}}},\n  \
             \"smtp_source\": {{\"mails\": {SMTP_SOURCE_MESSAGES}, \"seconds\": {:.3}, \
             \"mails_per_sec\": {:.1}}},\n",
            self.cpus,
            self.options.seconds,
            self.options.concurrency,
            self.options.warmup,
            self.smtp_seconds,
            self.mails_per_sec
        );
        j.push_str("  \"ceiling\": [\n");
        let ceiling: Vec<String> = self
            .ceiling
            .iter()
            .map(|row| {
                format!(
                    "    {{\"scenario\": {}, \"result\": {}}}",
                    quote(row.scenario),
                    row.load.json
                )
            })
            .collect();
        j.push_str(&ceiling.join(",\n"));
        j.push_str("\n  ],\n  \"runs\": [\n");
        let runs: Vec<String> = self
            .rows
            .iter()
            .map(|row| {
                let v = self.verdict(row);
                format!(
                    "    {{\"scenario\": {}, \"app\": {}, \"store\": {}, \"ratio\": {}, \
                     \"target\": {}, \"pass\": {}, \"result\": {}}}",
                    quote(row.scenario),
                    quote(row.app),
                    quote(row.store),
                    v.ratio
                        .map_or_else(|| "null".to_owned(), |r| format!("{r:.4}")),
                    v.target,
                    v.pass(),
                    row.load.json
                )
            })
            .collect();
        j.push_str(&runs.join(",\n"));
        j.push_str("\n  ],\n  \"memory_per_pending_login\": [\n");
        let memory: Vec<String> = self
            .memory
            .iter()
            .map(|m| {
                format!(
                    "    {{\"app\": {}, \"store\": {}, \"key\": {}, \"bytes\": {}, \"pass\": {}}}",
                    quote(m.app),
                    quote(m.store),
                    quote(&m.key),
                    m.bytes,
                    m.bytes <= TARGET_MEMORY_BYTES
                )
            })
            .collect();
        j.push_str(&memory.join(",\n"));
        let _ = write!(
            j,
            "\n  ],\n  \"server_errors\": {}\n}}\n",
            self.server_errors()
        );
        j
    }
}

/// A JSON string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_of_a_json_line() {
        let line = r#"{"errors":3,"ops_per_sec":1234.5,"p50_ms":0.25,"scenario":"flow"}"#;
        assert_eq!(json_number(line, "errors"), Some(3.0));
        assert_eq!(json_number(line, "ops_per_sec"), Some(1234.5));
        assert_eq!(json_number(line, "p50_ms"), Some(0.25));
        assert_eq!(json_number(line, "p99_ms"), None);
        assert_eq!(json_number(line, "scenario"), None);
    }

    #[test]
    fn options() {
        let args: Vec<String> = ["--seconds", "3", "--concurrency", "8"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let o = Options::parse(&args).unwrap();
        assert_eq!((o.seconds, o.concurrency, o.warmup), (3, 8, 2));
        assert!(Options::parse(&["--nope".to_owned()]).is_err());
        assert!(Options::parse(&["--seconds".to_owned(), "0".to_owned()]).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("otp_{ab\"c}"), "\"otp_{ab\\\"c}\"");
    }
}
