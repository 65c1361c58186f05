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
//!
//! The modules, by concern:
//!
//! * this one: the entry point, and the rounds of runs;
//! * [`options`]: the options of the command and the apps and stores they select;
//! * [`process`]: building, starting and stopping the servers under test;
//! * [`client`]: the load generators and the other clients of those servers;
//! * [`results`]: what a run measures, the pairs and rows they make up;
//! * [`stats`]: medians, ranges, paired ratios and verdicts against the targets;
//! * [`report`]: the table and the JSON file.

mod client;
#[cfg(test)]
mod fixtures;
mod options;
mod process;
mod report;
mod results;
mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use self::options::{Options, Target};
use self::report::Report;
use self::results::{Ceiling, Load, Memory, OpenLoop, Pair, Preloaded, Row};
use crate::Outcome;
use crate::servers::Servers;
use crate::tools::Tools;

pub(crate) use self::process::{App, build_release, free_addr, server_var, url_port};

/// The example apps: package and binary name, short name.
const APPS: [(&str, &str); 2] = [("axum-example", "axum"), ("poem-example", "poem")];

/// The Redis stores (`OTP_AUTH_STORE`).
const STORES: [&str; 2] = ["redis", "fred"];

/// The scenarios of `otp-bench load` run against each app.
const SCENARIOS: [&str; 4] = ["protected", "flow", "refresh", "request-otp"];

/// The scenarios that `otp-bench ceiling` serves (`request-otp` has `smtp-source`).
const CEILING_SCENARIOS: [&str; 3] = ["protected", "flow", "refresh"];

/// The scenarios run again on a store preloaded with sessions (`--preload-sessions`).
const PRELOAD_SCENARIOS: [&str; 2] = ["protected", "refresh"];

/// Any 64 hex digits: a strong enough key for the bench only.
pub(crate) const JWT_SECRET: &str =
    "3f9c1e7a5b2d4c8e6a0f1b3d5c7e9a2b4d6f8a0c2e4b6d8f1a3c5e7b9d0f2a4c";

/// Messages sent by `smtp-source` (before each app's request-otp) to measure what
/// smtp-sink takes.
const SMTP_SOURCE_MESSAGES: u32 = 5000;

/// What the runs share: paths, server addresses, options.
#[derive(Debug)]
struct Bench<'a> {
    /// Where `redis-cli` and smtp-sink (next to `smtp-source`) are.
    tools: &'a Tools,
    /// The options of the run.
    options: Options,
    /// `target/release`, where the apps and `otp-bench` are.
    release: PathBuf,
    /// `target/bench/logs`, the servers' logs.
    logs: PathBuf,
    /// `OTP_TEST_REDIS_URL`.
    redis_url: String,
    /// The port of that Redis.
    redis_port: u16,
    /// The smtp-sink (`OTP_TEST_SMTP_SINK`).
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
    let mut extra = Extra::default();
    for round in 1..=options.rounds {
        eprintln!("xtask: bench: round {round}/{}", options.rounds);
        // One ceiling server for the whole round, idle between its runs.
        let mut ceiling = if options.ceiling_scenarios().is_empty() {
            None
        } else {
            Some(bench.start_ceiling(round)?)
        };
        for (i, t) in options.targets.iter().enumerate() {
            let (pairs, mem) = bench.app(*t, round, ceiling.as_mut(), &mut extra)?;
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
        open_loop: extra.open_loop,
        preloaded: extra.preloaded,
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

/// The runs beyond the pairs: the open loop (first round) and the preloaded store (every
/// round).
#[derive(Debug, Default)]
struct Extra {
    open_loop: Vec<OpenLoop>,
    preloaded: Vec<Preloaded>,
}

impl Bench<'_> {
    /// Starts one app on one store on an empty Redis and runs the selected scenarios, in
    /// the order of `options.scenarios`, each paired with a ceiling run just before it (on
    /// `ceiling`, which the `otp-bench` scenarios need); in the first round, also measures a
    /// pending login and the open loop (`--open-loop`); in every round with
    /// `--preload-sessions`, `protected` and `refresh` on the empty store and again after the
    /// preload, back to back; into `extra`.
    fn app(
        &self,
        t: Target,
        round: u32,
        mut ceiling: Option<&mut CeilingServer>,
        extra: &mut Extra,
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
            // The metrics are recorded all the same; no listener to collide with another.
            .env("APP_METRICS_ADDR", "off")
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
        if round == 1 {
            let runs = self.options.scenarios.iter().zip(&pairs);
            for (&scenario, pair) in runs.filter(|(s, _)| **s != "request-otp") {
                for &percent in &self.options.open_loop {
                    let rate = pair.app.ops_per_sec * f64::from(percent) / 100.0;
                    let what = format!("{what}: open loop at {percent}%");
                    let load = self.load_at(addr, scenario, Some(rate), &what)?;
                    extra.open_loop.push(OpenLoop {
                        scenario,
                        app,
                        store,
                        percent,
                        rate,
                        load,
                    });
                }
            }
        }
        let n = self.options.preload_sessions;
        if n > 0 {
            // The empty store's runs (the ceiling's, then the app's) just before, then the
            // preload, then the same runs.
            let mut empty = Vec::new();
            for &scenario in PRELOAD_SCENARIOS.iter().filter(|s| self.options.runs(s)) {
                let what = format!("{what}: empty store, before the preload");
                let ceiling = self.preload_ceiling(scenario, ceiling.as_deref_mut(), &what)?;
                empty.push((scenario, ceiling, self.load(addr, scenario, &what)?));
            }
            let used_memory = self.preload_sessions(n)?;
            for (scenario, ceiling_empty, empty) in empty {
                let what = format!("{what}: {n} sessions preloaded");
                let ceiling_preloaded =
                    self.preload_ceiling(scenario, ceiling.as_deref_mut(), &what)?;
                let preloaded = self.load(addr, scenario, &what)?;
                extra.preloaded.push(Preloaded {
                    scenario,
                    app,
                    store,
                    sessions: n,
                    used_memory,
                    empty,
                    preloaded,
                    ceiling: ceiling_empty.zip(ceiling_preloaded),
                });
            }
        }
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

    /// The ceiling server's run of `scenario` on the store as it is (empty or preloaded), if
    /// the round has a ceiling server.
    fn preload_ceiling(
        &self,
        scenario: &str,
        ceiling: Option<&mut CeilingServer>,
        what: &str,
    ) -> Result<Option<Load>, String> {
        match ceiling {
            Some(c) => {
                c.server.check_running()?;
                let what = format!("{what}: ceiling");
                self.load(c.addr, scenario, &what).map(Some)
            }
            None => Ok(None),
        }
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
}

/// `otp-bench ceiling`, running for a whole round.
#[derive(Debug)]
struct CeilingServer {
    /// The running server.
    server: App,
    /// Where it listens.
    addr: SocketAddr,
}
