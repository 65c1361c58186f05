//! `cargo xtask bench`: the example apps under load, measured against the ceiling this
//! machine allows.
//!
//! Builds the example apps and `otp-bench` in release mode and starts Redis and smtp-sink
//! (the `Servers` of `cargo xtask test`). Then it runs `--rounds` rounds (3 by default);
//! each round measures, in this order:
//!
//! 1. the ceiling: `otp-bench ceiling` (the same routes doing one Redis `EXISTS` each and
//!    nothing else) under the `protected` and `flow` scenarios of `otp-bench load`;
//! 2. each app (axum, poem) on each store (redis, fred), started afresh on an empty Redis,
//!    under the `protected`, `flow` and `request-otp` scenarios;
//! 3. postfix's `smtp-source` against the same smtp-sink, the ceiling of `request-otp`.
//!
//! `--only app/store,...` and `--scenarios name,...` narrow what is measured (no ceiling
//! server without `protected` or `flow`, no `smtp-source` without `request-otp`). The first
//! round also measures the Redis memory of one pending login with each app and store.
//!
//! The ceiling moves from run to run on a shared machine, so each app is compared with the
//! ceiling measured in the same round: a row reports the median over the rounds of ops/s,
//! p50 and p99 (errors and 5xx summed), and its ratio is the median of its per-round ratios
//! (app / ceiling of that round), which decides PASS or MISS against the target. The table
//! also lists the per-round ratios, to show the noise. Prints the table and writes
//! `target/bench/bench.json`.
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

/// The scenarios that `otp-bench ceiling` serves (`request-otp` has `smtp-source`).
const CEILING_SCENARIOS: [&str; 2] = ["protected", "flow"];

/// Any 64 hex digits: a strong enough key for the bench only.
pub(crate) const JWT_SECRET: &str =
    "3f9c1e7a5b2d4c8e6a0f1b3d5c7e9a2b4d6f8a0c2e4b6d8f1a3c5e7b9d0f2a4c";

/// Messages sent by `smtp-source` (each round) to measure what smtp-sink takes.
const SMTP_SOURCE_MESSAGES: u32 = 5000;

/// Targets: ratios to the ceiling, and bytes of Redis per pending login.
const TARGET_PROTECTED: f64 = 0.9;
const TARGET_FLOW: f64 = 0.7;
const TARGET_REQUEST_OTP: f64 = 0.4;
const TARGET_MEMORY_BYTES: u64 = 150;

/// How long an app gets to listen, and to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The options of `cargo xtask bench`, as the error message and the help list them.
const OPTIONS_HELP: &str = "--seconds N (10), --concurrency N (32), --warmup N (2), \
     --rounds N (3), --only app/store[,app/store...] (every app on every store; apps: axum, poem; \
     stores: redis, fred), --scenarios name[,name...] (all: protected,flow,request-otp)";

/// One example app on one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    /// Package and binary name.
    package: &'static str,
    /// Short name of the app.
    app: &'static str,
    /// `OTP_AUTH_STORE`.
    store: &'static str,
}

impl Target {
    /// Every app on every store, in the order of the table.
    fn all() -> Vec<Self> {
        APPS.iter()
            .flat_map(|&(package, app)| {
                STORES.iter().map(move |&store| Self {
                    package,
                    app,
                    store,
                })
            })
            .collect()
    }
}

/// Options of `cargo xtask bench`.
#[derive(Debug, Clone)]
struct Options {
    seconds: u32,
    concurrency: u32,
    warmup: u32,
    rounds: u32,
    /// The apps and stores measured (`--only`), in the order of [`Target::all`].
    targets: Vec<Target>,
    /// The scenarios run (`--scenarios`), in the order of [`SCENARIOS`].
    scenarios: Vec<&'static str>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Self {
            seconds: 10,
            concurrency: 32,
            warmup: 2,
            rounds: 3,
            targets: Target::all(),
            scenarios: SCENARIOS.to_vec(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .map(String::as_str)
                    .ok_or_else(|| format!("`{arg}` needs a value"))
            };
            match arg.as_str() {
                "--seconds" => options.seconds = whole_number(arg, value()?)?,
                "--concurrency" => options.concurrency = whole_number(arg, value()?)?,
                "--warmup" => options.warmup = whole_number(arg, value()?)?,
                "--rounds" => options.rounds = whole_number(arg, value()?)?,
                "--only" => options.targets = parse_only(value()?)?,
                "--scenarios" => options.scenarios = parse_scenarios(value()?)?,
                other => {
                    return Err(format!(
                        "`bench` does not take `{other}`; options (defaults): {OPTIONS_HELP}"
                    ));
                }
            }
        }
        if options.seconds == 0 || options.concurrency == 0 || options.rounds == 0 {
            return Err("--seconds, --concurrency and --rounds must be at least 1".to_owned());
        }
        Ok(options)
    }

    /// Whether `scenario` is among the selected ones.
    fn runs(&self, scenario: &str) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// The selected scenarios that the ceiling server measures.
    fn ceiling_scenarios(&self) -> Vec<&'static str> {
        CEILING_SCENARIOS
            .into_iter()
            .filter(|scenario| self.runs(scenario))
            .collect()
    }
}

/// The value of a numeric option.
fn whole_number(arg: &str, value: &str) -> Result<u32, String> {
    value
        .parse()
        .map_err(|e| format!("`{arg} {value}`: not a whole number ({e})"))
}

/// The items of a comma-separated option value, trimmed; an error for an empty item.
fn items<'v>(arg: &str, value: &'v str) -> Result<Vec<&'v str>, String> {
    value
        .split(',')
        .map(str::trim)
        .map(|item| {
            if item.is_empty() {
                Err(format!("`{arg} {value}`: empty item"))
            } else {
                Ok(item)
            }
        })
        .collect()
}

/// `--only axum/redis,poem/fred`: the selected targets, in the order of [`Target::all`].
fn parse_only(value: &str) -> Result<Vec<Target>, String> {
    let apps = APPS.map(|(_, app)| app).join(", ");
    let stores = STORES.join(", ");
    let mut chosen = Vec::new();
    for item in items("--only", value)? {
        let (app, store) = item
            .split_once('/')
            .ok_or_else(|| format!("`--only {item}`: expected app/store, such as axum/redis"))?;
        let (app, store) = (app.trim(), store.trim());
        if !APPS.iter().any(|&(_, name)| name == app) {
            return Err(format!(
                "`--only {item}`: unknown app `{app}` (apps: {apps})"
            ));
        }
        if !STORES.contains(&store) {
            return Err(format!(
                "`--only {item}`: unknown store `{store}` (stores: {stores})"
            ));
        }
        chosen.push((app, store));
    }
    Ok(Target::all()
        .into_iter()
        .filter(|t| chosen.contains(&(t.app, t.store)))
        .collect())
}

/// `--scenarios protected,flow`: the selected scenarios, in the order of [`SCENARIOS`].
fn parse_scenarios(value: &str) -> Result<Vec<&'static str>, String> {
    let chosen = items("--scenarios", value)?;
    if let Some(unknown) = chosen.iter().find(|name| !SCENARIOS.contains(name)) {
        return Err(format!(
            "`--scenarios {value}`: unknown scenario `{unknown}` (scenarios: {})",
            SCENARIOS.join(", ")
        ));
    }
    Ok(SCENARIOS
        .into_iter()
        .filter(|scenario| chosen.contains(scenario))
        .collect())
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

/// One row of the table: a scenario against an app and store (or the ceiling), with one
/// result per round.
#[derive(Debug)]
struct Row {
    scenario: &'static str,
    app: &'static str,
    store: &'static str,
    /// Round by round.
    loads: Vec<Load>,
}

impl Row {
    /// The median over the rounds of one number of the results.
    fn median(&self, number: impl Fn(&Load) -> f64) -> f64 {
        let values: Vec<f64> = self.loads.iter().map(number).collect();
        median(&values).unwrap_or(0.0)
    }

    fn errors(&self) -> u64 {
        self.loads.iter().map(|load| load.errors).sum()
    }

    fn server_errors(&self) -> u64 {
        self.loads.iter().map(|load| load.server_errors).sum()
    }
}

/// One run of `smtp-source`: seconds taken, mails per second.
#[derive(Debug, Clone, Copy)]
struct Smtp {
    seconds: f64,
    mails_per_sec: f64,
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

/// `cargo xtask bench [--seconds N] [--concurrency N] [--warmup N] [--rounds N]
/// [--only app/store,...] [--scenarios name,...]`.
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
        options: options.clone(),
        release: target.join("release"),
        logs,
        redis_url,
        redis_port,
        smtp,
    };

    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let targets: Vec<String> = options
        .targets
        .iter()
        .map(|t| format!("{}/{}", t.app, t.store))
        .collect();
    eprintln!(
        "xtask: bench: {} round(s) of {} on {}; {} s per scenario after {} s of warm-up, {} \
         virtual users; the load generator and the servers share this machine's {cpus} CPUs \
         (no pinning)",
        options.rounds,
        options.scenarios.join(", "),
        targets.join(", "),
        options.seconds,
        options.warmup,
        options.concurrency
    );

    let ceiling_scenarios = options.ceiling_scenarios();
    let mut ceiling: Vec<Row> = ceiling_scenarios
        .iter()
        .map(|&scenario| Row {
            scenario,
            app: "ceiling",
            store: "redis",
            loads: Vec::new(),
        })
        .collect();
    let mut rows: Vec<Row> = options
        .targets
        .iter()
        .flat_map(|t| {
            options.scenarios.iter().map(|&scenario| Row {
                scenario,
                app: t.app,
                store: t.store,
                loads: Vec::new(),
            })
        })
        .collect();
    let mut smtp = Vec::new();
    let mut memory = Vec::new();
    for round in 1..=options.rounds {
        let label = format!("round {round}/{}", options.rounds);
        eprintln!("xtask: bench: {label}");
        if !ceiling_scenarios.is_empty() {
            let loads = bench.ceiling(&ceiling_scenarios, round)?;
            for (row, load) in ceiling.iter_mut().zip(loads) {
                row.loads.push(load);
            }
        }
        for (i, t) in options.targets.iter().enumerate() {
            let (loads, mem) = bench.app(*t, round)?;
            let app_rows = rows.iter_mut().skip(i * options.scenarios.len());
            for (row, load) in app_rows.zip(loads) {
                row.loads.push(load);
            }
            memory.extend(mem);
        }
        if options.runs("request-otp") {
            smtp.push(bench.smtp_source(&label)?);
        }
    }
    drop(servers);

    let report = Report {
        options,
        cpus,
        rows,
        ceiling,
        smtp,
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
    /// Starts one app on one store on an empty Redis and runs the selected scenarios, in
    /// the order of `options.scenarios`; in the first round, also measures a pending login.
    fn app(&self, t: Target, round: u32) -> Result<(Vec<Load>, Option<Memory>), String> {
        let Target {
            package,
            app,
            store,
        } = t;
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
        let name = format!("{app}-{store}-round{round}");
        let server = App::start(&name, command, addr, &self.logs)?;
        let what = format!("round {round}/{}: {app}/{store}", self.options.rounds);
        let mut loads = Vec::new();
        for &scenario in &self.options.scenarios {
            loads.push(self.load(addr, scenario, &what)?);
        }
        let memory = if round == 1 {
            let (key, bytes) = self.pending_login_bytes(addr)?;
            eprintln!("xtask: bench: {app}/{store}: one pending login: {key} takes {bytes} bytes");
            Some(Memory {
                app,
                store,
                key,
                bytes,
            })
        } else {
            None
        };
        server.stop()?;
        Ok((loads, memory))
    }

    /// `otp-bench ceiling` under `scenarios` (some of [`CEILING_SCENARIOS`]), in order.
    fn ceiling(&self, scenarios: &[&str], round: u32) -> Result<Vec<Load>, String> {
        self.flush_redis()?;
        let addr = free_addr()?;
        let mut command = Command::new(self.release.join("otp-bench"));
        command
            .arg("ceiling")
            .args(["--addr", &addr.to_string()])
            .args(["--redis", &self.redis_url]);
        let server = App::start(&format!("ceiling-round{round}"), command, addr, &self.logs)?;
        let what = format!("round {round}/{}: ceiling", self.options.rounds);
        let mut loads = Vec::new();
        for scenario in scenarios {
            loads.push(self.load(addr, scenario, &what)?);
        }
        server.stop()?;
        Ok(loads)
    }

    /// Runs one scenario of `otp-bench load` against `addr`.
    fn load(&self, addr: SocketAddr, scenario: &str, what: &str) -> Result<Load, String> {
        let options = &self.options;
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
    fn smtp_source(&self, what: &str) -> Result<Smtp, String> {
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
        eprintln!("xtask: bench: {what}: smtp ceiling: `{shown}`");
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
        let mails_per_sec = f64::from(SMTP_SOURCE_MESSAGES) / seconds;
        eprintln!(
            "xtask: bench: {what}: smtp-source: {SMTP_SOURCE_MESSAGES} mails in {seconds:.2} s"
        );
        Ok(Smtp {
            seconds,
            mails_per_sec,
        })
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

/// The median of `values` (with an even count, the mean of the middle two); `None` when
/// there are none.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The ratio to its ceiling that a scenario aims at.
fn target_ratio(scenario: &str) -> f64 {
    match scenario {
        "protected" => TARGET_PROTECTED,
        "flow" => TARGET_FLOW,
        _ => TARGET_REQUEST_OTP,
    }
}

/// Everything measured, for the table and the JSON file.
#[derive(Debug)]
struct Report {
    options: Options,
    cpus: usize,
    /// The apps' rows, app/store by app/store, scenario by scenario.
    rows: Vec<Row>,
    /// The ceiling's rows, one per selected scenario among [`CEILING_SCENARIOS`].
    ceiling: Vec<Row>,
    /// `smtp-source`, round by round (none without `request-otp`).
    smtp: Vec<Smtp>,
    /// One per app/store, measured in the first round.
    memory: Vec<Memory>,
}

/// How a row compares with its ceiling.
#[derive(Debug)]
struct Verdict {
    /// Round by round: the app's ops/s over the ceiling of the same round (`None` if that
    /// ceiling is missing or zero).
    ratios: Vec<Option<f64>>,
    /// The median of `ratios`.
    ratio: Option<f64>,
    target: f64,
}

impl Verdict {
    fn pass(&self) -> bool {
        self.ratio.is_some_and(|ratio| ratio >= self.target)
    }

    /// The per-round ratios, such as `0.81 0.86 0.79`.
    fn ratios_text(&self) -> String {
        let ratios: Vec<String> = self
            .ratios
            .iter()
            .map(|r| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")))
            .collect();
        ratios.join(" ")
    }
}

impl Report {
    /// The ceiling of `scenario`, round by round: `otp-bench ceiling` ops/s, or
    /// `smtp-source` mails/s for `request-otp`.
    fn ceiling_per_round(&self, scenario: &str) -> Vec<f64> {
        if scenario == "request-otp" {
            return self.smtp.iter().map(|s| s.mails_per_sec).collect();
        }
        self.ceiling
            .iter()
            .find(|row| row.scenario == scenario)
            .map(|row| row.loads.iter().map(|load| load.ops_per_sec).collect())
            .unwrap_or_default()
    }

    fn verdict(&self, row: &Row) -> Verdict {
        let ceiling = self.ceiling_per_round(row.scenario);
        let ratios: Vec<Option<f64>> = row
            .loads
            .iter()
            .zip(ceiling.iter().map(Some).chain(std::iter::repeat(None)))
            .map(|(load, ceiling)| ceiling.filter(|c| **c > 0.0).map(|c| load.ops_per_sec / c))
            .collect();
        let known: Vec<f64> = ratios.iter().flatten().copied().collect();
        Verdict {
            ratio: median(&known),
            ratios,
            target: target_ratio(row.scenario),
        }
    }

    fn server_errors(&self) -> u64 {
        self.rows
            .iter()
            .chain(&self.ceiling)
            .map(Row::server_errors)
            .sum()
    }

    /// The median seconds and mails/s of `smtp-source`.
    fn smtp_medians(&self) -> (f64, f64) {
        let seconds: Vec<f64> = self.smtp.iter().map(|s| s.seconds).collect();
        let rates: Vec<f64> = self.smtp.iter().map(|s| s.mails_per_sec).collect();
        (
            median(&seconds).unwrap_or(0.0),
            median(&rates).unwrap_or(0.0),
        )
    }

    fn table(&self) -> String {
        let o = &self.options;
        let mut t = String::new();
        let rounds = match o.rounds {
            1 => "1 round".to_owned(),
            n => format!("{n} rounds"),
        };
        let mut steps = Vec::new();
        if !self.ceiling.is_empty() {
            steps.push("the ceiling".to_owned());
        }
        steps.push("each app/store (started afresh)".to_owned());
        if !self.smtp.is_empty() {
            steps.push(format!("smtp-source ({SMTP_SOURCE_MESSAGES} mails)"));
        }
        let _ = writeln!(
            t,
            "\nBench: {rounds} of: {}.\n{} virtual users, {} s per scenario after {} s of \
             warm-up.\nops/s, p50 and p99: medians over the rounds; errors and 5xx: sums. \
             ratio: the median of the\nsame-round ratios (app ops/s / ceiling ops/s of the \
             same round; request-otp: / smtp-source\nmails/s of the same round), which decides \
             PASS or MISS; ratios: each round's, in order.\nThe load generator and the servers \
             share this machine's {} CPUs (no pinning): every row, the\nceiling included, \
             spends part of the CPU on the client.\n",
            steps.join(", "),
            o.concurrency,
            o.seconds,
            o.warmup,
            self.cpus
        );
        let _ = writeln!(
            t,
            "{:<12} {:<8} {:<6} {:>10} {:>8} {:>8} {:>7} {:>5} {:>6}  {:<11}  ratios",
            "scenario",
            "app",
            "store",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "5xx",
            "ratio",
            "target"
        );
        let per_round = |unit: &str, values: &mut dyn Iterator<Item = f64>| {
            let values: Vec<String> = values.map(|v| format!("{v:.0}")).collect();
            format!("{unit}: {}", values.join(" "))
        };
        let line = |t: &mut String, row: &Row, verdict: Option<Verdict>| {
            let (ratio, target, ratios) = match verdict {
                Some(v) => (
                    v.ratio
                        .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
                    format!(
                        ">= {:.1} {}",
                        v.target,
                        if v.pass() { "PASS" } else { "MISS" }
                    ),
                    v.ratios_text(),
                ),
                None => (
                    "1.00".to_owned(),
                    "(ceiling)".to_owned(),
                    per_round("ops/s", &mut row.loads.iter().map(|l| l.ops_per_sec)),
                ),
            };
            let _ = writeln!(
                t,
                "{:<12} {:<8} {:<6} {:>10.1} {:>8.3} {:>8.3} {:>7} {:>5} {:>6}  {target:<11}  \
                 {ratios}",
                row.scenario,
                row.app,
                row.store,
                row.median(|l| l.ops_per_sec),
                row.median(|l| l.p50_ms),
                row.median(|l| l.p99_ms),
                row.errors(),
                row.server_errors(),
                ratio,
            );
        };
        for &scenario in &o.scenarios {
            for row in self.ceiling.iter().filter(|row| row.scenario == scenario) {
                line(&mut t, row, None);
            }
            if scenario == "request-otp" {
                let (_, mails_per_sec) = self.smtp_medians();
                let _ = writeln!(
                    t,
                    "{:<12} {:<8} {:<6} {:>10.1} {:>8} {:>8} {:>7} {:>5} {:>6}  {:<11}  {}",
                    "smtp-source",
                    "postfix",
                    "-",
                    mails_per_sec,
                    "-",
                    "-",
                    "-",
                    "-",
                    "1.00",
                    "(ceiling)",
                    per_round("mails/s", &mut self.smtp.iter().map(|s| s.mails_per_sec)),
                );
            }
            for row in self.rows.iter().filter(|row| row.scenario == scenario) {
                line(&mut t, row, Some(self.verdict(row)));
            }
        }
        let _ = writeln!(
            t,
            "\nRedis memory per pending login (MEMORY USAGE of the code key after one \
             request-otp, first round),\ntarget <= {TARGET_MEMORY_BYTES} bytes:"
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
        let o = &self.options;
        let only: Vec<String> = o
            .targets
            .iter()
            .map(|t| quote(&format!("{}/{}", t.app, t.store)))
            .collect();
        let scenarios: Vec<String> = o.scenarios.iter().map(|s| quote(s)).collect();
        let smtp_source = if self.smtp.is_empty() {
            "null".to_owned()
        } else {
            let (seconds, mails_per_sec) = self.smtp_medians();
            let rounds: Vec<String> = self
                .smtp
                .iter()
                .map(|s| {
                    format!(
                        "{{\"seconds\": {:.3}, \"mails_per_sec\": {:.1}}}",
                        s.seconds, s.mails_per_sec
                    )
                })
                .collect();
            format!(
                "{{\"mails\": {SMTP_SOURCE_MESSAGES}, \"seconds\": {seconds:.3}, \
                 \"mails_per_sec\": {mails_per_sec:.1}, \"rounds\": [{}]}}",
                rounds.join(", ")
            )
        };
        let mut j = String::new();
        let _ = write!(
            j,
            "{{\n  \"machine\": {{\"cpus\": {}, \"client_and_server_share_the_machine\": true}},\n  \
             \"options\": {{\"seconds\": {}, \"concurrency\": {}, \"warmup\": {}, \"rounds\": {}, \
             \"only\": [{}], \"scenarios\": [{}]}},\n  \
             \"targets\": {{\"protected\": {TARGET_PROTECTED}, \"flow\": {TARGET_FLOW}, \
             \"request_otp\": {TARGET_REQUEST_OTP}, \"memory_bytes\": {TARGET_MEMORY_BYTES}}},\n  \
             \"smtp_source\": {smtp_source},\n",
            self.cpus,
            o.seconds,
            o.concurrency,
            o.warmup,
            o.rounds,
            only.join(", "),
            scenarios.join(", "),
        );
        // The medians and sums over the rounds, then each round's result.
        let measured = |row: &Row| {
            let results: Vec<&str> = row.loads.iter().map(|l| l.json.as_str()).collect();
            format!(
                "\"median\": {{\"ops_per_sec\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}, \
                 \"errors\": {}, \"server_errors\": {}, \"results\": [{}]",
                row.median(|l| l.ops_per_sec),
                row.median(|l| l.p50_ms),
                row.median(|l| l.p99_ms),
                row.errors(),
                row.server_errors(),
                results.join(", ")
            )
        };
        j.push_str("  \"ceiling\": [\n");
        let ceiling: Vec<String> = self
            .ceiling
            .iter()
            .map(|row| {
                format!(
                    "    {{\"scenario\": {}, {}}}",
                    quote(row.scenario),
                    measured(row)
                )
            })
            .collect();
        j.push_str(&ceiling.join(",\n"));
        j.push_str("\n  ],\n  \"runs\": [\n");
        let number = |r: Option<f64>| r.map_or_else(|| "null".to_owned(), |r| format!("{r:.4}"));
        let runs: Vec<String> = self
            .rows
            .iter()
            .map(|row| {
                let v = self.verdict(row);
                let ratios: Vec<String> = v.ratios.iter().map(|r| number(*r)).collect();
                format!(
                    "    {{\"scenario\": {}, \"app\": {}, \"store\": {}, \"ratio\": {}, \
                     \"ratios\": [{}], \"target\": {}, \"pass\": {}, {}}}",
                    quote(row.scenario),
                    quote(row.app),
                    quote(row.store),
                    number(v.ratio),
                    ratios.join(", "),
                    v.target,
                    v.pass(),
                    measured(row)
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

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

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
        let o = Options::parse(&args(&["--seconds", "3", "--concurrency", "8"])).unwrap();
        assert_eq!((o.seconds, o.concurrency, o.warmup, o.rounds), (3, 8, 2, 3));
        assert_eq!(o.targets, Target::all());
        assert_eq!(o.scenarios, SCENARIOS);
        assert!(Options::parse(&args(&["--nope"])).is_err());
        assert!(Options::parse(&args(&["--seconds", "0"])).is_err());
        assert!(Options::parse(&args(&["--rounds", "0"])).is_err());
        assert!(Options::parse(&args(&["--rounds"])).is_err());
    }

    #[test]
    fn only_and_scenarios() {
        let o = Options::parse(&args(&[
            "--only",
            "poem/fred, axum/redis,axum/redis",
            "--scenarios",
            "request-otp,protected",
            "--rounds",
            "5",
        ]))
        .unwrap();
        let chosen: Vec<(&str, &str)> = o.targets.iter().map(|t| (t.app, t.store)).collect();
        assert_eq!(chosen, [("axum", "redis"), ("poem", "fred")]);
        assert_eq!(o.targets[1].package, "poem-example");
        assert_eq!(o.scenarios, ["protected", "request-otp"]);
        assert_eq!(o.ceiling_scenarios(), ["protected"]);
        assert_eq!(o.rounds, 5);
        for bad in ["axum", "actix/redis", "axum/postgres", "axum/redis,", ""] {
            let e = Options::parse(&args(&["--only", bad])).unwrap_err();
            assert!(e.contains("--only"), "{e}");
        }
        let e = Options::parse(&args(&["--only", "axum/mongo"])).unwrap_err();
        assert!(e.contains("redis, fred"), "{e}");
        let e = Options::parse(&args(&["--scenarios", "flow,login"])).unwrap_err();
        assert!(e.contains("`login`"), "{e}");
        let o = Options::parse(&args(&["--scenarios", "request-otp"])).unwrap();
        assert!(o.ceiling_scenarios().is_empty());
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0]), Some(3.0));
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    fn load(ops: f64, server_errors: u64) -> Load {
        Load::parse(&format!(
            "{{\"ops_per_sec\":{ops},\"p50_ms\":1.5,\"p99_ms\":9,\"errors\":1,\
             \"server_errors\":{server_errors}}}"
        ))
        .unwrap()
    }

    fn row(scenario: &'static str, app: &'static str, ops: &[f64]) -> Row {
        Row {
            scenario,
            app,
            store: "redis",
            loads: ops.iter().map(|&ops| load(ops, 0)).collect(),
        }
    }

    /// Three rounds where the ceiling moves: each round's app is divided by that round's
    /// ceiling, and the verdict is on the median of those ratios.
    fn report() -> Report {
        let options = Options::parse(&args(&["--only", "axum/redis"])).unwrap();
        Report {
            options,
            cpus: 2,
            rows: vec![
                row("protected", "axum", &[90.0, 150.0, 140.0]),
                row("flow", "axum", &[60.0, 70.0, 80.0]),
                Row {
                    scenario: "request-otp",
                    app: "axum",
                    store: "redis",
                    loads: vec![load(40.0, 0), load(50.0, 2), load(10.0, 0)],
                },
            ],
            ceiling: vec![
                row("protected", "ceiling", &[100.0, 200.0, 150.0]),
                row("flow", "ceiling", &[100.0, 100.0, 100.0]),
            ],
            smtp: [100.0, 100.0, 100.0]
                .iter()
                .map(|&mails_per_sec| Smtp {
                    seconds: 50.0,
                    mails_per_sec,
                })
                .collect(),
            memory: Vec::new(),
        }
    }

    #[test]
    fn verdicts_on_same_round_ratios() {
        let report = report();
        let protected = report.verdict(&report.rows[0]);
        assert_eq!(protected.ratios_text(), "0.90 0.75 0.93");
        assert_eq!(protected.ratio, Some(0.9));
        assert!(protected.pass());
        let flow = report.verdict(&report.rows[1]);
        assert_eq!(flow.ratio, Some(0.7));
        assert!(flow.pass());
        let request_otp = report.verdict(&report.rows[2]);
        assert_eq!(request_otp.ratio, Some(0.4));
        assert_eq!(report.server_errors(), 2);
        assert_eq!(report.rows[2].errors(), 3);
        let table = report.table();
        assert!(table.contains("3 rounds"), "{table}");
        assert!(table.contains("ops/s: 100 200 150"), "{table}");
        assert!(table.lines().all(|line| line.len() <= 130), "{table}");
        let json = report.json();
        assert!(json.contains("\"rounds\": 3"), "{json}");
        assert!(
            json.contains("\"ratios\": [0.9000, 0.7500, 0.9333]"),
            "{json}"
        );
        assert!(!json.contains(",\n  ]") && !json.contains(", ]"), "{json}");
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("otp_{ab\"c}"), "\"otp_{ab\\\"c}\"");
    }
}
