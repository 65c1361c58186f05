//! `cargo xtask bench`: the example apps under load, measured against the ceiling this
//! machine allows.
//!
//! Builds the example apps and `otp-bench` in release mode and starts Redis and smtp-sink
//! (the `Servers` of `cargo xtask test`). Each of the `--rounds` rounds starts `otp-bench
//! ceiling` (the same routes doing one Redis `EXISTS` each and nothing else) and keeps it,
//! idle when not loaded, for the whole round; then each app (axum, poem) on each store
//! (redis, fred) is started afresh on an empty Redis and measured in PAIRS, scenario by
//! scenario: `otp-bench load` against the ceiling server (for `request-otp`: postfix's
//! `smtp-source` against the same smtp-sink), then at once the same load against the app.
//!
//! A pair's ratio is the app's ops/s over the ops/s of the ceiling run just before it, so
//! both sides of a ratio see the same background load, even on a shared machine where the
//! ceiling swings within a run. The flush before each app does not disturb the ceiling: it
//! only reads (`EXISTS` on `bench:*` keys that never exist) and keeps its connection. The
//! load generator runs on the same cores as the servers, with no pinning.
//!
//! The first round also measures the Redis memory of one pending login with each app and
//! store, and the open loop (`--open-loop`); every round with `--preload-sessions` runs
//! `protected` and `refresh` on the empty store, then again after writing sessions into
//! Redis. [`report`] sums it all up into the table and `target/bench/bench.json`.

mod report;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pico_args::Arguments;

use self::report::{Load, Memory, OpenLoop, Pair, Preloaded, Report, ratio_of};
use crate::Outcome;
use crate::cmd::{build_release, display, env_pairs, output, target_dir};
use crate::servers::{Proc, Servers, app_command, find_program, free_addr};

/// The example apps (package `<app>-example`) and the Redis stores (`OTP_AUTH_STORE`).
const APPS: [&str; 2] = ["axum", "poem"];
const STORES: [&str; 2] = ["redis", "fred"];

/// The scenarios of `otp-bench load`; all but `request-otp` are served by `otp-bench ceiling`.
const SCENARIOS: [&str; 4] = ["protected", "flow", "refresh", "request-otp"];

/// Any 64 hex digits: a strong enough key for the bench only.
const JWT_SECRET: &str = "3f9c1e7a5b2d4c8e6a0f1b3d5c7e9a2b4d6f8a0c2e4b6d8f1a3c5e7b9d0f2a4c";

/// Messages sent by `smtp-source` (before each app's request-otp).
const SMTP_SOURCE_MESSAGES: u32 = 5000;

/// One example app on one store.
type Target = (&'static str, &'static str);

/// Options of `cargo xtask bench` (defaults and meanings in `cargo xtask help`).
#[derive(Debug, Clone, Default)]
pub(super) struct Options {
    seconds: u32,
    /// Virtual users of `otp-bench load`, connections of `smtp-source`.
    concurrency: u32,
    warmup: u32,
    rounds: u32,
    /// The apps and stores measured, in the order of the table.
    targets: Vec<Target>,
    /// The scenarios run, in the order of [`SCENARIOS`].
    scenarios: Vec<&'static str>,
    /// Percentages of the closed loop's ops/s at which the first round reruns each
    /// `otp-bench` scenario in an open loop.
    open_loop: Vec<u32>,
    /// Sessions written into Redis before `protected` and `refresh` run again (0: not run).
    preload_sessions: u32,
}

impl Options {
    fn parse(args: Vec<String>) -> Result<Self, String> {
        let mut a = Arguments::from_vec(args.into_iter().map(Into::into).collect());
        let all = || {
            APPS.into_iter()
                .flat_map(|app| STORES.map(|store| (app, store)))
        };
        let target = |item: &str| {
            let (app, store) = item.split_once('/')?;
            all().find(|t| *t == (app.trim(), store.trim()))
        };
        let scenario = |item: &str| SCENARIOS.into_iter().find(|s| *s == item);
        let percent = |item: &str| item.parse().ok().filter(|p| (1..=100).contains(p));
        let chosen = list(&mut a, "--only", target)?.unwrap_or_else(|| all().collect());
        let targets = all().filter(|t| chosen.contains(t)).collect();
        let chosen = list(&mut a, "--scenarios", scenario)?.unwrap_or(SCENARIOS.to_vec());
        let scenarios = SCENARIOS
            .into_iter()
            .filter(|s| chosen.contains(s))
            .collect();
        let o = Self {
            seconds: opt(&mut a, "--seconds", 10)?,
            concurrency: opt(&mut a, "--concurrency", 32)?,
            warmup: opt(&mut a, "--warmup", 2)?,
            rounds: opt(&mut a, "--rounds", 3)?,
            targets,
            scenarios,
            open_loop: list(&mut a, "--open-loop", percent)?.unwrap_or_default(),
            preload_sessions: opt(&mut a, "--preload-sessions", 0)?,
        };
        let rest = a.finish();
        if !rest.is_empty() || o.seconds == 0 || o.concurrency == 0 || o.rounds == 0 {
            return Err(format!(
                "`bench` takes the options of `cargo xtask help` (got {rest:?}); --seconds, \
                 --concurrency and --rounds must be at least 1"
            ));
        }
        Ok(o)
    }

    /// Whether `scenario` is among the selected ones.
    fn runs(&self, scenario: &str) -> bool {
        self.scenarios.contains(&scenario)
    }

    /// The selected scenarios that the ceiling server measures.
    fn ceiling_scenarios(&self) -> Vec<&'static str> {
        let scenarios = self.scenarios.iter().copied();
        scenarios.filter(|s| *s != "request-otp").collect()
    }
}

/// The numeric option `name`, else `default` (shared with `cargo xtask soak`).
pub(crate) fn opt(a: &mut Arguments, name: &'static str, default: u32) -> Result<u32, String> {
    Ok(a.opt_value_from_str(name)
        .map_err(|e| e.to_string())?
        .unwrap_or(default))
}

/// The list option `name`: its comma-separated items, each mapped by `known`; an error
/// names an unknown one.
fn list<T>(
    a: &mut Arguments,
    name: &'static str,
    known: impl Fn(&str) -> Option<T>,
) -> Result<Option<Vec<T>>, String> {
    let value: Option<String> = a.opt_value_from_str(name).map_err(|e| e.to_string())?;
    let Some(value) = value else {
        return Ok(None);
    };
    let item = |item: &str| {
        known(item.trim()).ok_or_else(|| format!("`{name} {value}`: what is `{item}`?"))
    };
    value
        .split(',')
        .map(item)
        .collect::<Result<_, _>>()
        .map(Some)
}

/// An example app on the test servers' Redis and smtp-sink, with the login limits out of
/// the way of the load (shared with `cargo xtask soak`).
pub(crate) fn redis_app(
    program: &Path,
    addr: SocketAddr,
    servers: &Servers,
    store: &str,
) -> Command {
    let (redis, smtp) = (servers.redis_url(), servers.smtp);
    let (smtp_ip, smtp_port) = (smtp.ip(), smtp.port());
    let vars = format!(
        "OTP_AUTH_STORE={store} OTP_AUTH_REDIS_URL={redis} OTP_AUTH_JWT_SECRET={JWT_SECRET} \
         OTP_AUTH_MAILER=smtp OTP_AUTH_SMTP_SERVER={smtp_ip} OTP_AUTH_SMTP_PORT={smtp_port} \
         OTP_AUTH_DISABLE_LOCAL_AUTH=true OTP_AUTH_MAGIC_OTP_EMAILS=*@magic.bench \
         OTP_AUTH_OTP_RATE_LIMIT_PER_IP_PER_MINUTE=100000000"
    );
    let mut command = app_command(program, addr);
    command.envs(env_pairs(&vars));
    command
}

/// The last line of `otp-bench load`'s output, its JSON result.
pub(crate) fn result_line(stdout: &str) -> Option<&str> {
    stdout.lines().rev().find(|l| l.starts_with('{'))
}

/// What the runs share.
#[derive(Debug)]
struct Bench<'a> {
    servers: &'a Servers,
    o: &'a Options,
    /// `target/bench/logs`, the servers' logs.
    logs: PathBuf,
}

/// The release build of `program`.
pub(crate) fn release(program: &str) -> PathBuf {
    target_dir().join("release").join(program)
}

/// `otp-bench ceiling`, running for a whole round, and its address.
type CeilingServer = (Proc, SocketAddr);

/// `cargo xtask bench [options]`.
pub(crate) fn bench(args: Vec<String>) -> Outcome {
    let o = Options::parse(args)?;
    let code = build_release(&["axum-example", "poem-example", "otp-bench"])?;
    if code != 0 {
        return Ok(code);
    }
    let out = target_dir().join("bench");
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("creating {}: {e}", logs.display()))?;
    let servers = Servers::start()?;
    let (servers, o) = (&servers, &o);
    let bench = Bench { servers, o, logs };

    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let mut report = Report::new(o.clone(), cpus);
    let (scenarios, targets) = (o.scenarios.join(", "), report.only().join(", "));
    eprintln!(
        "xtask: bench: {} round(s) of {scenarios} on {targets}",
        o.rounds
    );
    for round in 1..=o.rounds {
        eprintln!("xtask: bench: round {round}/{}", o.rounds);
        // One ceiling server for the whole round, idle between its runs.
        let mut ceiling = None;
        if !o.ceiling_scenarios().is_empty() {
            let addr = free_addr()?;
            let mut command = Command::new(release("otp-bench"));
            let args = format!("ceiling --addr {addr} --redis {}", servers.redis_url());
            command.args(args.split_whitespace());
            let name = format!("ceiling-round{round}");
            ceiling = Some((Proc::listening(&name, command, addr, &bench.logs)?, addr));
        }
        for (i, &t) in o.targets.iter().enumerate() {
            let pairs = bench.app(t, round, ceiling.as_mut(), &mut report)?;
            let rows = report.rows.iter_mut().skip(i * o.scenarios.len());
            for (row, pair) in rows.zip(pairs) {
                row.pairs.push(pair);
            }
        }
        if let Some((server, _)) = ceiling {
            server.stop()?;
        }
    }

    print!("{}", report.table());
    let path = out.join("bench.json");
    std::fs::write(&path, report.json()).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("xtask: bench: results in {}", path.display());
    let server_errors = report.server_errors();
    if server_errors > 0 {
        eprintln!("xtask: bench: {server_errors} answers were 5xx (logs in target/bench/logs)");
    }
    Ok(u8::from(server_errors > 0))
}

impl Bench<'_> {
    /// Starts one app on one store on an empty Redis and runs the selected scenarios, each
    /// paired with a ceiling run just before it; the first round adds the memory of a
    /// pending login and the open loop, `--preload-sessions` the preloaded runs (into `r`).
    fn app(
        &self,
        (app, store): Target,
        round: u32,
        mut ceiling: Option<&mut CeilingServer>,
        r: &mut Report,
    ) -> Result<Vec<Pair>, String> {
        self.servers.redis(&["FLUSHALL"])?;
        let addr = free_addr()?;
        let program = release(&format!("{app}-example"));
        let mut command = redis_app(&program, addr, self.servers, store);
        // The metrics are recorded all the same; no listener to collide with another.
        let vars = "APP_METRICS_ADDR=off OTP_AUTH_OTP_RATE_LIMIT_PER_MINUTE=1000 \
                    OTP_AUTH_SMTP_POOL_SIZE=16 RUST_LOG=warn";
        command.envs(env_pairs(vars));
        let name = format!("{app}-{store}-round{round}");
        let server = Proc::listening(&name, command, addr, &self.logs)?;
        let what = format!("round {round}/{}: {app}/{store}", self.o.rounds);
        let mut pairs = Vec::new();
        for &scenario in &self.o.scenarios {
            let ceiling = match scenario {
                "request-otp" => self.smtp_source(&format!("{what}: ceiling"))?,
                _ => (self.ceiling_load(ceiling.as_deref_mut(), scenario, &what)?)
                    .ok_or_else(|| format!("{what}: no ceiling server for {scenario}"))?,
            };
            let cpu = cpu_ticks(server.pid());
            let mut app = self.load(addr, scenario, None, &what)?;
            app.add_server_cpu(
                cpu_ticks(server.pid()) - cpu,
                self.o.seconds + self.o.warmup,
            );
            pairs.push(Pair { ceiling, app });
        }
        if round == 1 {
            let (key, bytes) = self.pending_login_bytes(addr)?;
            eprintln!("xtask: bench: {app}/{store}: one pending login: {key} takes {bytes} bytes");
            let pass = bytes <= report::TARGET_MEMORY_BYTES;
            r.memory.push(Memory {
                app,
                store,
                key,
                bytes,
                pass,
            });
            let runs = self.o.scenarios.iter().zip(&pairs);
            for (&scenario, pair) in runs.filter(|(s, _)| **s != "request-otp") {
                for &percent in &self.o.open_loop {
                    let rate = report::round(pair.app.ops() * f64::from(percent) / 100.0, 1);
                    let what = format!("{what}: open loop at {percent}%");
                    let run = self.load(addr, scenario, Some(rate), &what)?;
                    r.open_loop.push(OpenLoop {
                        scenario,
                        app,
                        store,
                        percent,
                        rate,
                        run,
                    });
                }
            }
        }
        let sessions = self.o.preload_sessions;
        if sessions > 0 {
            // The empty store's runs (the ceiling's, then the app's), the preload, then the
            // same runs again.
            let scenarios = ["protected", "refresh"]
                .into_iter()
                .filter(|s| self.o.runs(s));
            let mut runs = Vec::new();
            for scenario in scenarios.clone() {
                let what = format!("{what}: empty store, before the preload");
                let ceiling = self.ceiling_load(ceiling.as_deref_mut(), scenario, &what)?;
                runs.push((ceiling, self.load(addr, scenario, None, &what)?));
            }
            let (before, after) = self.preload_sessions(sessions)?;
            for (scenario, (ceiling_empty, empty)) in scenarios.zip(runs) {
                let what = format!("{what}: {sessions} sessions preloaded");
                let ceiling_preloaded =
                    self.ceiling_load(ceiling.as_deref_mut(), scenario, &what)?;
                let preloaded = self.load(addr, scenario, None, &what)?;
                r.preloaded.push(Preloaded {
                    scenario,
                    app,
                    store,
                    sessions,
                    used_memory_before: before,
                    used_memory_after: after,
                    bytes_per_session: after.saturating_sub(before) / u64::from(sessions),
                    ratio: report::round(ratio_of(&preloaded, &empty).unwrap_or(0.0), 4),
                    empty,
                    preloaded,
                    ceiling_empty,
                    ceiling_preloaded,
                });
            }
        }
        server.stop()?;
        Ok(pairs)
    }

    /// The ceiling server's run of `scenario`, if the round has a ceiling server.
    fn ceiling_load(
        &self,
        ceiling: Option<&mut CeilingServer>,
        scenario: &str,
        what: &str,
    ) -> Result<Option<Load>, String> {
        let Some((server, addr)) = ceiling else {
            return Ok(None);
        };
        server.check_running()?;
        let what = format!("{what}: ceiling");
        self.load(*addr, scenario, None, &what).map(Some)
    }

    /// One scenario of `otp-bench load` against `addr`: in a closed loop, or with `rate`, in
    /// an open loop at that many operations per second.
    fn load(
        &self,
        addr: SocketAddr,
        scenario: &str,
        rate: Option<f64>,
        what: &str,
    ) -> Result<Load, String> {
        let (c, s, w) = (self.o.concurrency, self.o.seconds, self.o.warmup);
        let rate = rate.map_or(String::new(), |rate| format!("--rate {rate:.1}"));
        let args = format!(
            "load --base http://{addr} --scenario {scenario} --concurrency {c} --seconds {s} \
             --warmup {w} {rate}"
        );
        let mut command = Command::new(release("otp-bench"));
        command
            .args(args.split_whitespace())
            .stderr(Stdio::inherit());
        let shown = display(&command);
        eprintln!("xtask: bench: {what}: `{shown}`");
        let stdout = output(&mut command)?;
        let line = result_line(&stdout).ok_or_else(|| format!("`{shown}` printed no result"))?;
        eprintln!("xtask: bench: {what}: {line}");
        Load::parse(line)
    }

    /// `smtp-source` against smtp-sink, as a ceiling run.
    fn smtp_source(&self, what: &str) -> Result<Load, String> {
        let program = Some(self.servers.tools["smtp-sink"].with_file_name("smtp-source"))
            .filter(|p| p.is_file())
            .or_else(|| find_program("smtp-source"))
            .ok_or("smtp-source (package postfix) not found next to smtp-sink")?;
        let (c, n, smtp) = (self.o.concurrency, SMTP_SOURCE_MESSAGES, self.servers.smtp);
        let args = format!("-c -s {c} -m {n} -l 1000 -f from@bench -t to@bench {smtp}");
        let mut command = Command::new(program);
        command.args(args.split_whitespace()).stdout(Stdio::null());
        eprintln!("xtask: bench: {what}: `{}`", display(&command));
        let started = Instant::now();
        output(&mut command)?;
        let seconds = started.elapsed().as_secs_f64();
        eprintln!("xtask: bench: {what}: smtp-source: {n} mails in {seconds:.2} s");
        Ok(Load::smtp(seconds))
    }

    /// One request-otp for a new `@magic.bench` address, then `MEMORY USAGE` of the code
    /// key it created (the `otp_{...}` key that was not there before).
    fn pending_login_bytes(&self, addr: SocketAddr) -> Result<(String, u64), String> {
        let keys = || self.servers.redis(&["--scan", "--pattern", "otp_{*"]);
        let before = keys()?;
        let email = format!("memory-{}@magic.bench", std::process::id());
        let body = format!("{{\"email\":\"{email}\"}}");
        let status = post_json(addr, "/auth/request-otp", &body)?;
        if status != 200 {
            return Err(format!("request-otp for {email} answered {status}"));
        }
        let after = keys()?;
        let key = (after.lines())
            .find(|key| !before.lines().any(|k| k == *key))
            .ok_or_else(|| format!("request-otp for {email} created no otp_{{...}} key"))?;
        let usage = self
            .servers
            .redis(&["MEMORY", "USAGE", key, "SAMPLES", "0"])?;
        let bytes = (usage.trim().parse())
            .map_err(|e| format!("MEMORY USAGE {key} answered {usage:?}: {e}"))?;
        Ok((key.to_owned(), bytes))
    }

    /// Writes `n` live sessions into Redis, as the Redis stores lay them out (default
    /// prefixes, one session per subject, a week to live, refreshed once), with the shapes
    /// of real ids (a 22-character subject key, a 12-character member, 22-character jtis);
    /// returns Redis' `used_memory` before and after.
    fn preload_sessions(&self, n: u32) -> Result<(u64, u64), String> {
        const SCRIPT: &str = "local now = tonumber(ARGV[2])
for i = 0, tonumber(ARGV[1]) - 1 do
  local subject, member = string.format('preload%015d', i), string.format('m%011d', i)
  local index = 'blacklist_{' .. subject .. '}:u'
  local value = string.format('j%021d p%010d %d 198.51.100.%d ', i, i, now, i % 250)
  redis.call('SET', 'blacklist_{' .. subject .. '}:s:' .. member, value, 'EXAT', ARGV[3])
  redis.call('ZADD', index, ARGV[4], member)
  redis.call('EXPIREAT', index, ARGV[3])
end";
        let before = self.servers.used_memory()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (n, exp, score) = (n.to_string(), now + 7 * 86_400, now * 1000);
        let (now, exp, score) = (now.to_string(), exp.to_string(), score.to_string());
        self.servers
            .redis(&["EVAL", SCRIPT, "0", &n, &now, &exp, &score])?;
        let after = self.servers.used_memory()?;
        eprintln!("xtask: bench: {n} sessions preloaded; Redis used_memory {before} -> {after}");
        Ok((before, after))
    }
}

/// The CPU time a process has used (user and system), in clock ticks of 10 ms
/// (`/proc/<pid>/stat`); 0 when it cannot be read.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command name in parentheses: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick(11) + tick(12)
}

/// Sends a JSON POST over a fresh connection; returns the status code.
fn post_json(addr: SocketAddr, path: &str, body: &str) -> Result<u16, String> {
    let mut reply = String::new();
    TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(30)))?;
            write!(
                stream,
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
            stream.read_to_string(&mut reply)
        })
        .map_err(|e| format!("POST http://{addr}{path}: {e}"))?;
    (reply.split(' ').nth(1).and_then(|code| code.parse().ok()))
        .ok_or_else(|| format!("POST http://{addr}{path}: not an HTTP answer: {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::Options;

    fn parse(args: &str) -> Result<Options, String> {
        Options::parse(args.split_whitespace().map(str::to_owned).collect())
    }

    /// Defaults; `--only` and `--scenarios` select in the order of the table; the errors
    /// name what is wrong.
    #[test]
    fn options() {
        let o = parse("--seconds 3 --concurrency 8 --open-loop 50,80").unwrap();
        assert_eq!((o.seconds, o.concurrency, o.warmup, o.rounds), (3, 8, 2, 3));
        assert_eq!(
            (o.targets.len(), o.scenarios.len(), o.open_loop),
            (4, 4, vec![50, 80])
        );
        let o = parse("--only poem/fred,axum/redis --scenarios request-otp,protected").unwrap();
        assert_eq!(o.targets, [("axum", "redis"), ("poem", "fred")]);
        assert_eq!(
            (&o.scenarios[..], &o.ceiling_scenarios()[..]),
            (&["protected", "request-otp"][..], &["protected"][..])
        );
        for bad in ["axum", "actix/redis", "axum/redis,"] {
            assert!(
                parse(&format!("--only {bad}"))
                    .unwrap_err()
                    .contains("--only"),
                "{bad}"
            );
        }
        assert!(
            parse("--scenarios flow,login")
                .unwrap_err()
                .contains("`login`")
        );
        for bad in ["--nope", "--seconds 0", "--rounds", "--open-loop 101"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
