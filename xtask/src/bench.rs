//! `cargo xtask bench`: the example apps under load, measured against the ceiling this
//! machine allows.
//!
//! Builds the example apps and `otp-bench` in release mode and starts Redis and smtp-sink
//! (the `Servers` of `cargo xtask test`). Then it runs `--rounds` rounds (3 by default).
//! Each round starts `otp-bench ceiling` (the same routes doing one Redis `EXISTS` each
//! and nothing else) and keeps it running, idle when not loaded, for the whole round; then
//! each app (axum, poem) on each store (redis, fred) is started afresh on an empty Redis
//! and measured in PAIRS, scenario by scenario:
//!
//! * `protected` and `flow`: `otp-bench load` against the ceiling server, then at once the
//!   same load (same options) against the app;
//! * `request-otp`: postfix's `smtp-source` against the same smtp-sink, then at once
//!   `otp-bench load` against the app.
//!
//! A pair's ratio is the app's ops/s over the ops/s of the ceiling run just before it, so
//! both sides of a ratio see the same background load, even on a shared machine where the
//! ceiling swings within a run. The flush before each app does not disturb the ceiling: it
//! only reads (`EXISTS` on `bench:*` keys that never exist) and keeps its connection.
//!
//! An app's row reports the median over the rounds of ops/s, p50 and p99 (errors and 5xx
//! summed), each round's paired ratio, and the median of those ratios, which decides PASS
//! or MISS against the target. A ceiling row (and the `smtp-source` row) summarizes every
//! ceiling run of its scenario in the run: median ops/s, p50 and p99, and the lowest and
//! highest ops/s, to show the noise. `--only app/store,...` and `--scenarios name,...`
//! narrow what is measured (no ceiling server without `protected` or `flow`, no
//! `smtp-source` without `request-otp`). The first round also measures the Redis memory of
//! one pending login with each app and store. Prints the table and writes
//! `target/bench/bench.json`, with each pair's raw results.
//!
//! The load generator runs on the same cores as the server, with no pinning: every run,
//! the ceiling's included, shares the CPU between client and server.

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

/// Messages sent by `smtp-source` (before each app's request-otp) to measure what
/// smtp-sink takes.
const SMTP_SOURCE_MESSAGES: u32 = 5000;

/// Targets: ratios to the ceiling, and bytes of Redis per pending login.
const TARGET_PROTECTED: f64 = 0.9;
const TARGET_FLOW: f64 = 0.7;
const TARGET_REQUEST_OTP: f64 = 0.4;
const TARGET_MEMORY_BYTES: u64 = 192;

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

/// One run of `smtp-source`: seconds taken, mails per second.
#[derive(Debug, Clone, Copy)]
struct Smtp {
    seconds: f64,
    mails_per_sec: f64,
}

impl Smtp {
    fn json(self) -> String {
        format!(
            "{{\"tool\": \"smtp-source\", \"mails\": {SMTP_SOURCE_MESSAGES}, \"seconds\": {:.3}, \
             \"mails_per_sec\": {:.1}}}",
            self.seconds, self.mails_per_sec
        )
    }
}

/// The ceiling run just before an app's run of the same scenario.
#[derive(Debug, Clone)]
enum Ceiling {
    /// `otp-bench load` against `otp-bench ceiling` (`protected`, `flow`).
    Server(Load),
    /// `smtp-source` against smtp-sink (`request-otp`).
    Smtp(Smtp),
}

impl Ceiling {
    /// Operations (or mails) per second.
    fn ops_per_sec(&self) -> f64 {
        match self {
            Self::Server(load) => load.ops_per_sec,
            Self::Smtp(smtp) => smtp.mails_per_sec,
        }
    }

    fn json(&self) -> String {
        match self {
            Self::Server(load) => load.json.clone(),
            Self::Smtp(smtp) => smtp.json(),
        }
    }
}

/// One app run and the ceiling run just before it, with the same scenario and options.
#[derive(Debug, Clone)]
struct Pair {
    ceiling: Ceiling,
    app: Load,
}

impl Pair {
    /// The app's ops/s over the ceiling's (`None` if the ceiling did nothing).
    fn ratio(&self) -> Option<f64> {
        let ceiling = self.ceiling.ops_per_sec();
        (ceiling > 0.0).then(|| self.app.ops_per_sec / ceiling)
    }
}

/// One row of the table: a scenario against an app and store, with one pair per round.
#[derive(Debug)]
struct Row {
    scenario: &'static str,
    app: &'static str,
    store: &'static str,
    /// Round by round.
    pairs: Vec<Pair>,
}

impl Row {
    /// The app's side of the pairs.
    fn summary(&self) -> Summary {
        Summary::of(self.pairs.iter().map(|pair| &pair.app))
    }

    /// The paired ratios, round by round, their median and the target.
    fn verdict(&self) -> Verdict {
        let ratios: Vec<Option<f64>> = self.pairs.iter().map(Pair::ratio).collect();
        let known: Vec<f64> = ratios.iter().flatten().copied().collect();
        Verdict {
            ratio: median(&known),
            ratios,
            target: target_ratio(self.scenario),
        }
    }
}

/// Runs of `otp-bench load` summed up: medians, range of ops/s, errors and 5xx summed.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    runs: usize,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The lowest and highest ops/s.
    min_ops_per_sec: f64,
    max_ops_per_sec: f64,
    errors: u64,
    server_errors: u64,
}

impl Summary {
    fn of<'l>(loads: impl IntoIterator<Item = &'l Load>) -> Self {
        let loads: Vec<&Load> = loads.into_iter().collect();
        let values = |number: fn(&Load) -> f64| -> Vec<f64> {
            loads.iter().map(|load| number(load)).collect()
        };
        let ops = values(|l| l.ops_per_sec);
        let (min_ops_per_sec, max_ops_per_sec) = range(&ops).unwrap_or((0.0, 0.0));
        Self {
            runs: loads.len(),
            ops_per_sec: median(&ops).unwrap_or(0.0),
            p50_ms: median(&values(|l| l.p50_ms)).unwrap_or(0.0),
            p99_ms: median(&values(|l| l.p99_ms)).unwrap_or(0.0),
            min_ops_per_sec,
            max_ops_per_sec,
            errors: loads.iter().map(|l| l.errors).sum(),
            server_errors: loads.iter().map(|l| l.server_errors).sum(),
        }
    }

    /// The medians, errors and 5xx, as JSON members.
    fn json(&self) -> String {
        format!(
            "\"median\": {{\"ops_per_sec\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}}}, \
             \"errors\": {}, \"server_errors\": {}",
            self.ops_per_sec, self.p50_ms, self.p99_ms, self.errors, self.server_errors
        )
    }
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
        "xtask: bench: {} round(s) of {} on {}, each app run paired with a ceiling run just \
         before it; {} s per run after {} s of warm-up, {} virtual users; the load generator \
         and the servers share this machine's {cpus} CPUs (no pinning)",
        options.rounds,
        options.scenarios.join(", "),
        targets.join(", "),
        options.seconds,
        options.warmup,
        options.concurrency
    );

    let mut rows: Vec<Row> = options
        .targets
        .iter()
        .flat_map(|t| {
            options.scenarios.iter().map(|&scenario| Row {
                scenario,
                app: t.app,
                store: t.store,
                pairs: Vec::new(),
            })
        })
        .collect();
    let mut memory = Vec::new();
    for round in 1..=options.rounds {
        eprintln!("xtask: bench: round {round}/{}", options.rounds);
        // One ceiling server for the whole round, idle between its runs.
        let mut ceiling = if options.ceiling_scenarios().is_empty() {
            None
        } else {
            Some(bench.start_ceiling(round)?)
        };
        for (i, t) in options.targets.iter().enumerate() {
            let (pairs, mem) = bench.app(*t, round, ceiling.as_mut())?;
            let app_rows = rows.iter_mut().skip(i * options.scenarios.len());
            for (row, pair) in app_rows.zip(pairs) {
                row.pairs.push(pair);
            }
            memory.extend(mem);
        }
        if let Some(ceiling) = ceiling {
            ceiling.server.stop()?;
        }
    }
    drop(servers);

    let report = Report {
        options,
        cpus,
        rows,
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
    /// the order of `options.scenarios`, each paired with a ceiling run just before it (on
    /// `ceiling`, which `protected` and `flow` need); in the first round, also measures a
    /// pending login.
    fn app(
        &self,
        t: Target,
        round: u32,
        mut ceiling: Option<&mut CeilingServer>,
    ) -> Result<(Vec<Pair>, Option<Memory>), String> {
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
        let mut pairs = Vec::new();
        for &scenario in &self.options.scenarios {
            let ceiling = self.ceiling_run(scenario, ceiling.as_deref_mut(), &what)?;
            let app = self.load(addr, scenario, &what)?;
            pairs.push(Pair { ceiling, app });
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
        Ok((pairs, memory))
    }

    /// Starts `otp-bench ceiling`, to run for a whole round. It only reads Redis (`EXISTS`
    /// on `bench:*` keys, which nothing writes) over one connection, so the `FLUSHALL`
    /// before each app neither changes its answers nor cuts it off.
    fn start_ceiling(&self, round: u32) -> Result<CeilingServer, String> {
        let addr = free_addr()?;
        let mut command = Command::new(self.release.join("otp-bench"));
        command
            .arg("ceiling")
            .args(["--addr", &addr.to_string()])
            .args(["--redis", &self.redis_url]);
        let server = App::start(&format!("ceiling-round{round}"), command, addr, &self.logs)?;
        Ok(CeilingServer { server, addr })
    }

    /// The ceiling of `scenario`, measured just before the app's run: `otp-bench load`
    /// against the ceiling server, or `smtp-source` for `request-otp`.
    fn ceiling_run(
        &self,
        scenario: &str,
        ceiling: Option<&mut CeilingServer>,
        what: &str,
    ) -> Result<Ceiling, String> {
        let what = format!("{what}: paired ceiling");
        if scenario == "request-otp" {
            return self.smtp_source(&what).map(Ceiling::Smtp);
        }
        let ceiling = ceiling.ok_or_else(|| format!("{what}: no ceiling server for {scenario}"))?;
        ceiling.server.check_running()?;
        self.load(ceiling.addr, scenario, &what)
            .map(Ceiling::Server)
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
        eprintln!("xtask: bench: {what}: `{shown}`");
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

/// `otp-bench ceiling`, running for a whole round.
#[derive(Debug)]
struct CeilingServer {
    server: App,
    addr: SocketAddr,
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

    /// An error (with the end of its log) if the server has exited.
    fn check_running(&mut self) -> Result<(), String> {
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

/// The lowest and highest of `values`; `None` when there are none.
fn range(values: &[f64]) -> Option<(f64, f64)> {
    let min = values.iter().copied().reduce(f64::min)?;
    let max = values.iter().copied().reduce(f64::max)?;
    Some((min, max))
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
    /// The apps' rows, app/store by app/store, scenario by scenario; each pair holds the
    /// ceiling run just before the app's.
    rows: Vec<Row>,
    /// One per app/store, measured in the first round.
    memory: Vec<Memory>,
}

/// How a row compares with its ceiling.
#[derive(Debug)]
struct Verdict {
    /// Round by round: the app's ops/s over the ceiling run just before it (`None` if that
    /// ceiling did nothing).
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

/// Every `smtp-source` run summed up: median seconds and mails/s, lowest and highest
/// mails/s.
#[derive(Debug, Clone, Copy, PartialEq)]
struct SmtpSummary {
    runs: usize,
    seconds: f64,
    mails_per_sec: f64,
    min_mails_per_sec: f64,
    max_mails_per_sec: f64,
}

/// `unit: low–high (n runs)`, the spread of a ceiling's runs.
fn spread_text(unit: &str, runs: usize, min: f64, max: f64) -> String {
    let runs = match runs {
        1 => "1 run".to_owned(),
        n => format!("{n} runs"),
    };
    format!("{unit}: {min:.0}–{max:.0} ({runs})")
}

impl Report {
    /// Every pair of `scenario`, all apps and rounds.
    fn pairs(&self, scenario: &str) -> impl Iterator<Item = &Pair> {
        self.rows
            .iter()
            .filter(move |row| row.scenario == scenario)
            .flat_map(|row| &row.pairs)
    }

    /// Every `otp-bench ceiling` run of `scenario` in the run, in order (none for
    /// `request-otp`).
    fn ceiling_loads(&self, scenario: &str) -> Vec<&Load> {
        self.pairs(scenario)
            .filter_map(|pair| match &pair.ceiling {
                Ceiling::Server(load) => Some(load),
                Ceiling::Smtp(_) => None,
            })
            .collect()
    }

    /// Every `smtp-source` run in the run, in order.
    fn smtp_runs(&self) -> Vec<Smtp> {
        self.pairs("request-otp")
            .filter_map(|pair| match pair.ceiling {
                Ceiling::Smtp(smtp) => Some(smtp),
                Ceiling::Server(_) => None,
            })
            .collect()
    }

    /// The ceiling row of `scenario` (`protected`, `flow`), if it ran.
    fn ceiling_summary(&self, scenario: &str) -> Option<Summary> {
        let loads = self.ceiling_loads(scenario);
        (!loads.is_empty()).then(|| Summary::of(loads))
    }

    /// The `smtp-source` row, if it ran.
    fn smtp_summary(&self) -> Option<SmtpSummary> {
        let runs = self.smtp_runs();
        let seconds: Vec<f64> = runs.iter().map(|s| s.seconds).collect();
        let rates: Vec<f64> = runs.iter().map(|s| s.mails_per_sec).collect();
        let (min_mails_per_sec, max_mails_per_sec) = range(&rates)?;
        Some(SmtpSummary {
            runs: runs.len(),
            seconds: median(&seconds)?,
            mails_per_sec: median(&rates)?,
            min_mails_per_sec,
            max_mails_per_sec,
        })
    }

    /// The 5xx answers of every run, the ceiling's included.
    fn server_errors(&self) -> u64 {
        self.rows
            .iter()
            .map(|row| row.summary().server_errors)
            .chain(
                CEILING_SCENARIOS
                    .iter()
                    .filter_map(|scenario| self.ceiling_summary(scenario))
                    .map(|summary| summary.server_errors),
            )
            .sum()
    }

    fn table(&self) -> String {
        let o = &self.options;
        let mut t = String::new();
        let rounds = match o.rounds {
            1 => "1 round".to_owned(),
            n => format!("{n} rounds"),
        };
        let mut ceilings = Vec::new();
        if !o.ceiling_scenarios().is_empty() {
            ceilings.push(format!(
                "otp-bench ceiling for {} (one server per round, idle between runs)",
                o.ceiling_scenarios().join(", ")
            ));
        }
        if o.runs("request-otp") {
            ceilings.push(format!(
                "smtp-source ({SMTP_SOURCE_MESSAGES} mails) for request-otp"
            ));
        }
        let _ = writeln!(
            t,
            "\nBench: {rounds}; each starts every app/store afresh on an empty Redis and runs \
             each scenario\nas a pair: the ceiling's run, then at once the app's, with the same \
             options.\nCeilings: {}.\n{} virtual users, {} s per run after {} s of warm-up.\n\
             App rows: ops/s, p50 and p99: medians over the rounds; errors and 5xx: sums. ratio: \
             the median of the\npaired ratios (app ops/s / ops/s of the ceiling run just before \
             it), which decides PASS or MISS;\nratios: each round's, in order. Ceiling rows: \
             medians and sums over all the ceiling runs of the\nscenario; ratios: their lowest \
             and highest ops/s, to show the noise.\nThe load generator and the servers share \
             this machine's {} CPUs (no pinning): every run, the\nceiling's included, spends \
             part of the CPU on the client.\n",
            ceilings.join(";\n"),
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
        let line = |t: &mut String, names: [&str; 3], s: &Summary, ratio: &str, rest: &str| {
            let _ = writeln!(
                t,
                "{:<12} {:<8} {:<6} {:>10.1} {:>8.3} {:>8.3} {:>7} {:>5} {ratio:>6}  {rest}",
                names[0],
                names[1],
                names[2],
                s.ops_per_sec,
                s.p50_ms,
                s.p99_ms,
                s.errors,
                s.server_errors,
            );
        };
        for &scenario in &o.scenarios {
            if let Some(s) = self.ceiling_summary(scenario) {
                let spread = spread_text("ops/s", s.runs, s.min_ops_per_sec, s.max_ops_per_sec);
                let rest = format!("{:<11}  {spread}", "(ceiling)");
                line(&mut t, [scenario, "ceiling", "redis"], &s, "1.00", &rest);
            }
            if scenario == "request-otp"
                && let Some(s) = self.smtp_summary()
            {
                let _ = writeln!(
                    t,
                    "{:<12} {:<8} {:<6} {:>10.1} {:>8} {:>8} {:>7} {:>5} {:>6}  {:<11}  {}",
                    "smtp-source",
                    "postfix",
                    "-",
                    s.mails_per_sec,
                    "-",
                    "-",
                    "-",
                    "-",
                    "1.00",
                    "(ceiling)",
                    spread_text("mails/s", s.runs, s.min_mails_per_sec, s.max_mails_per_sec),
                );
            }
            for row in self.rows.iter().filter(|row| row.scenario == scenario) {
                let v = row.verdict();
                let ratio = v
                    .ratio
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
                let target = format!(
                    ">= {:.1} {}",
                    v.target,
                    if v.pass() { "PASS" } else { "MISS" }
                );
                let rest = format!("{target:<11}  {}", v.ratios_text());
                line(
                    &mut t,
                    [row.scenario, row.app, row.store],
                    &row.summary(),
                    &ratio,
                    &rest,
                );
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
        let smtp_source = self.smtp_summary().map_or_else(
            || "null".to_owned(),
            |s| {
                format!(
                    "{{\"mails\": {SMTP_SOURCE_MESSAGES}, \"runs\": {}, \"median\": \
                     {{\"seconds\": {:.3}, \"mails_per_sec\": {:.1}}}, \"min_mails_per_sec\": \
                     {:.1}, \"max_mails_per_sec\": {:.1}}}",
                    s.runs, s.seconds, s.mails_per_sec, s.min_mails_per_sec, s.max_mails_per_sec
                )
            },
        );
        let mut j = String::new();
        let _ = write!(
            j,
            "{{\n  \"machine\": {{\"cpus\": {}, \"client_and_server_share_the_machine\": true}},\n  \
             \"options\": {{\"seconds\": {}, \"concurrency\": {}, \"warmup\": {}, \"rounds\": {}, \
             \"only\": [{}], \"scenarios\": [{}]}},\n  \
             \"method\": {},\n  \
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
            quote(
                "paired: each app run follows at once a ceiling run of the same scenario \
                 (otp-bench ceiling; request-otp: smtp-source); ratio = median over the rounds \
                 of app ops/s / that ceiling's ops/s"
            ),
        );
        // Every ceiling run of each scenario summed up; the runs are in the pairs below.
        j.push_str("  \"ceiling\": [\n");
        let ceiling: Vec<String> = o
            .ceiling_scenarios()
            .into_iter()
            .filter_map(|scenario| {
                let s = self.ceiling_summary(scenario)?;
                Some(format!(
                    "    {{\"scenario\": {}, \"runs\": {}, {}, \"min_ops_per_sec\": {:.1}, \
                     \"max_ops_per_sec\": {:.1}}}",
                    quote(scenario),
                    s.runs,
                    s.json(),
                    s.min_ops_per_sec,
                    s.max_ops_per_sec
                ))
            })
            .collect();
        j.push_str(&ceiling.join(",\n"));
        j.push_str("\n  ],\n  \"runs\": [\n");
        let number = |r: Option<f64>| r.map_or_else(|| "null".to_owned(), |r| format!("{r:.4}"));
        let runs: Vec<String> = self
            .rows
            .iter()
            .map(|row| {
                let v = row.verdict();
                let ratios: Vec<String> = v.ratios.iter().map(|r| number(*r)).collect();
                let pairs: Vec<String> = row
                    .pairs
                    .iter()
                    .zip(1..)
                    .map(|(pair, round)| {
                        format!(
                            "      {{\"round\": {round}, \"ratio\": {}, \"ceiling\": {}, \
                             \"app\": {}}}",
                            number(pair.ratio()),
                            pair.ceiling.json(),
                            pair.app.json
                        )
                    })
                    .collect();
                format!(
                    "    {{\"scenario\": {}, \"app\": {}, \"store\": {}, \"ratio\": {}, \
                     \"ratios\": [{}], \"target\": {}, \"pass\": {}, {}, \"pairs\": [\n{}\n    ]}}",
                    quote(row.scenario),
                    quote(row.app),
                    quote(row.store),
                    number(v.ratio),
                    ratios.join(", "),
                    v.target,
                    v.pass(),
                    row.summary().json(),
                    pairs.join(",\n")
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

    /// Round by round, `(ceiling ops/s, app ops/s)` for an `otp-bench ceiling` scenario.
    fn row(scenario: &'static str, app: &'static str, pairs: &[(f64, f64)]) -> Row {
        Row {
            scenario,
            app,
            store: "redis",
            pairs: pairs
                .iter()
                .map(|&(ceiling, app)| Pair {
                    ceiling: Ceiling::Server(load(ceiling, 0)),
                    app: load(app, 0),
                })
                .collect(),
        }
    }

    fn smtp(mails_per_sec: f64) -> Ceiling {
        Ceiling::Smtp(Smtp {
            seconds: f64::from(SMTP_SOURCE_MESSAGES) / mails_per_sec,
            mails_per_sec,
        })
    }

    /// Three rounds of axum and poem on Redis where the ceiling moves from run to run: each
    /// app run is divided by the ceiling run just before it, and the verdict is on the
    /// median of those ratios.
    fn report() -> Report {
        let options = Options::parse(&args(&["--only", "axum/redis,poem/redis"])).unwrap();
        Report {
            options,
            cpus: 2,
            rows: vec![
                row(
                    "protected",
                    "axum",
                    &[(100.0, 90.0), (200.0, 150.0), (150.0, 140.0)],
                ),
                row(
                    "flow",
                    "axum",
                    &[(100.0, 60.0), (100.0, 70.0), (100.0, 80.0)],
                ),
                Row {
                    scenario: "request-otp",
                    app: "axum",
                    store: "redis",
                    pairs: vec![
                        Pair {
                            ceiling: smtp(100.0),
                            app: load(40.0, 0),
                        },
                        Pair {
                            ceiling: smtp(125.0),
                            app: load(50.0, 2),
                        },
                        Pair {
                            ceiling: smtp(50.0),
                            app: load(10.0, 0),
                        },
                    ],
                },
                row(
                    "protected",
                    "poem",
                    &[(400.0, 300.0), (50.0, 45.0), (120.0, 60.0)],
                ),
                row("flow", "poem", &[(0.0, 10.0), (90.0, 45.0), (80.0, 60.0)]),
                Row {
                    scenario: "request-otp",
                    app: "poem",
                    store: "redis",
                    pairs: vec![
                        Pair {
                            ceiling: smtp(75.0),
                            app: load(30.0, 0),
                        },
                        Pair {
                            ceiling: smtp(100.0),
                            app: load(20.0, 0),
                        },
                        Pair {
                            ceiling: Ceiling::Smtp(Smtp {
                                seconds: 40.0,
                                mails_per_sec: 125.0,
                            }),
                            app: load(25.0, 0),
                        },
                    ],
                },
            ],
            memory: Vec::new(),
        }
    }

    #[test]
    fn verdicts_on_paired_ratios() {
        let report = report();
        let protected = report.rows[0].verdict();
        assert_eq!(protected.ratios_text(), "0.90 0.75 0.93");
        assert_eq!(protected.ratio, Some(0.9));
        assert!(protected.pass());
        let flow = report.rows[1].verdict();
        assert_eq!(flow.ratio, Some(0.7));
        assert!(flow.pass());
        // request-otp is divided by the smtp-source run just before it: 0.4 0.4 0.2.
        let request_otp = report.rows[2].verdict();
        assert_eq!(request_otp.ratios_text(), "0.40 0.40 0.20");
        assert_eq!(request_otp.ratio, Some(0.4));
        assert!(request_otp.pass());
        // Pairs with the ceiling far apart: 0.75 0.90 0.50, median 0.75.
        let poem = report.rows[3].verdict();
        assert_eq!(poem.ratio, Some(0.75));
        assert!(!poem.pass());
        // A ceiling run that did nothing gives no ratio; the median is of the others.
        let poem_flow = report.rows[4].verdict();
        assert_eq!(poem_flow.ratios_text(), "- 0.50 0.75");
        assert_eq!(poem_flow.ratio, Some(0.625));
        assert!(!poem_flow.pass());
        // The app side of the row: medians over the rounds, errors and 5xx summed.
        let summary = report.rows[2].summary();
        assert_eq!(summary.runs, 3);
        assert_eq!(summary.ops_per_sec, 40.0);
        assert_eq!((summary.errors, summary.server_errors), (3, 2));
        assert_eq!(report.server_errors(), 2);
    }

    #[test]
    fn ceiling_rows_summarize_every_paired_run() {
        let report = report();
        let loads: Vec<f64> = report
            .ceiling_loads("protected")
            .iter()
            .map(|l| l.ops_per_sec)
            .collect();
        assert_eq!(loads, [100.0, 200.0, 150.0, 400.0, 50.0, 120.0]);
        assert!(report.ceiling_loads("request-otp").is_empty());
        let protected = report.ceiling_summary("protected").unwrap();
        assert_eq!(protected.runs, 6);
        assert_eq!(protected.ops_per_sec, 135.0);
        assert_eq!(
            (protected.min_ops_per_sec, protected.max_ops_per_sec),
            (50.0, 400.0)
        );
        assert_eq!((protected.p50_ms, protected.p99_ms), (1.5, 9.0));
        assert_eq!(protected.errors, 6);
        let flow = report.ceiling_summary("flow").unwrap();
        assert_eq!((flow.min_ops_per_sec, flow.max_ops_per_sec), (0.0, 100.0));
        assert_eq!(report.ceiling_summary("request-otp"), None);
        let smtp = report.smtp_summary().unwrap();
        assert_eq!(smtp.runs, 6);
        assert_eq!(smtp.mails_per_sec, 100.0);
        assert_eq!(smtp.seconds, 50.0);
        assert_eq!(
            (smtp.min_mails_per_sec, smtp.max_mails_per_sec),
            (50.0, 125.0)
        );
        assert_eq!(range(&[]), None);
        assert_eq!(range(&[2.0, -1.0, 5.0]), Some((-1.0, 5.0)));
    }

    #[test]
    fn table_and_json() {
        let report = report();
        let table = report.table();
        assert!(table.contains("3 rounds"), "{table}");
        assert!(table.contains("paired ratios"), "{table}");
        assert!(table.contains("ops/s: 50–400 (6 runs)"), "{table}");
        assert!(table.contains("mails/s: 50–125 (6 runs)"), "{table}");
        assert!(table.contains("0.90 0.75 0.93"), "{table}");
        assert!(table.contains(">= 0.9 MISS  0.75 0.90 0.50"), "{table}");
        assert!(
            table.lines().all(|line| line.chars().count() <= 130),
            "{table}"
        );
        // Ceiling, then smtp-source, then the apps, scenario by scenario.
        let first = |prefix: &str| table.lines().position(|l| l.starts_with(prefix)).unwrap();
        assert!(first("protected    ceiling") < first("protected    axum"));
        assert!(first("flow         axum") > first("flow         ceiling"));
        assert!(first("smtp-source") < first("request-otp  axum"));
        let json = report.json();
        assert_eq!(valid_json(&json), Ok(()), "{json}");
        assert!(json.contains("\"rounds\": 3"), "{json}");
        assert!(
            json.contains("\"ratios\": [0.9000, 0.7500, 0.9333]"),
            "{json}"
        );
        assert!(
            json.contains("\"ratios\": [null, 0.5000, 0.7500]"),
            "{json}"
        );
        assert!(json.contains("\"round\": 3, \"ratio\": 0.2000"), "{json}");
        assert!(json.contains("\"tool\": \"smtp-source\""), "{json}");
        assert_eq!(json.matches("\"round\": ").count(), 18, "{json}");

        // Without the ceiling scenarios or request-otp, their rows and sections are empty.
        let mut only_request_otp = report;
        only_request_otp.options.scenarios = vec!["request-otp"];
        only_request_otp
            .rows
            .retain(|row| row.scenario == "request-otp");
        let table = only_request_otp.table();
        assert!(!table.contains("otp-bench ceiling"), "{table}");
        assert!(table.contains("smtp-source ("), "{table}");
        let json = only_request_otp.json();
        assert_eq!(valid_json(&json), Ok(()), "{json}");
        assert!(json.contains("\"ceiling\": [\n\n  ]"), "{json}");
    }

    /// Checks that `text` is one JSON value (RFC 8259 grammar; strings not unescaped).
    fn valid_json(text: &str) -> Result<(), String> {
        fn ws(b: &[u8], i: &mut usize) {
            while b.get(*i).is_some_and(|c| b" \t\r\n".contains(c)) {
                *i += 1;
            }
        }
        fn expect(b: &[u8], i: &mut usize, c: u8) -> Result<(), String> {
            ws(b, i);
            if b.get(*i) == Some(&c) {
                *i += 1;
                Ok(())
            } else {
                Err(format!("expected `{}` at byte {i}", char::from(c)))
            }
        }
        fn string(b: &[u8], i: &mut usize) -> Result<(), String> {
            expect(b, i, b'"')?;
            loop {
                match b.get(*i) {
                    None => return Err("unterminated string".to_owned()),
                    Some(b'"') => break,
                    Some(b'\\') => *i += 2,
                    Some(c) if *c < 0x20 => return Err(format!("control in string at {i}")),
                    Some(_) => *i += 1,
                }
            }
            *i += 1;
            Ok(())
        }
        fn value(b: &[u8], i: &mut usize) -> Result<(), String> {
            ws(b, i);
            let (open, close) = match b.get(*i) {
                Some(b'{') => (b'{', b'}'),
                Some(b'[') => (b'[', b']'),
                Some(b'"') => return string(b, i),
                _ => {
                    let start = *i;
                    while b
                        .get(*i)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
                    {
                        *i += 1;
                    }
                    let word = std::str::from_utf8(&b[start..*i]).unwrap();
                    let number = word.parse::<f64>().is_ok_and(f64::is_finite)
                        && !word.starts_with(['+', '.'])
                        && !word.contains("inf")
                        && !word.contains("NaN");
                    return if number || ["true", "false", "null"].contains(&word) {
                        Ok(())
                    } else {
                        Err(format!("bad value `{word}` at byte {start}"))
                    };
                }
            };
            *i += 1;
            ws(b, i);
            if b.get(*i) == Some(&close) {
                *i += 1;
                return Ok(());
            }
            loop {
                if open == b'{' {
                    ws(b, i);
                    string(b, i)?;
                    expect(b, i, b':')?;
                }
                value(b, i)?;
                ws(b, i);
                match b.get(*i) {
                    Some(b',') => *i += 1,
                    Some(c) if *c == close => {
                        *i += 1;
                        return Ok(());
                    }
                    _ => {
                        return Err(format!(
                            "expected `,` or `{}` at byte {i}",
                            char::from(close)
                        ));
                    }
                }
            }
        }
        let b = text.as_bytes();
        let mut i = 0;
        value(b, &mut i)?;
        ws(b, &mut i);
        if i == b.len() {
            Ok(())
        } else {
            Err(format!("trailing text at byte {i}"))
        }
    }

    #[test]
    fn json_checker() {
        assert_eq!(
            valid_json(r#"{"a": [1, -2.5e3, null, "x\"y"], "b": {}}"#),
            Ok(())
        );
        for bad in [
            "{\"a\": 1,}",
            "[1 2]",
            "{\"a\" 1}",
            "[NaN]",
            "[inf]",
            "{} x",
            "[.5]",
        ] {
            assert!(valid_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("otp_{ab\"c}"), "\"otp_{ab\\\"c}\"");
    }
}
