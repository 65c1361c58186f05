//! `cargo xtask soak`: the full login flow at a steady rate for a long time against the
//! axum example on Redis, watching for 5xx and for memory that does not stay flat.
//!
//! Reports the server's resident memory (start, peak, end) and Redis' `used_memory`
//! (start, peak, end, and after the short-lived entries of the run have expired), writes
//! `target/soak/soak.json`, and exits 1 on any 5xx or transport error.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::Outcome;
use crate::bench::{opt, redis_app, release, result_line};
use crate::cmd::{build_release, env_pairs, target_dir};
use crate::servers::{Proc, Servers, free_addr};

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Start, peak and end of a series.
#[derive(Debug, Default, Clone, Copy)]
struct Track {
    start: u64,
    peak: u64,
    end: u64,
}

impl Track {
    fn see(&mut self, v: Option<u64>) {
        let Some(v) = v else { return };
        if self.start == 0 {
            self.start = v;
        }
        self.peak = self.peak.max(v);
        self.end = v;
    }

    /// The series and `after` (its value after expiry), as JSON and as text.
    fn show(self, after: u64) -> (Value, String) {
        let Self { start, peak, end } = self;
        let json = json!({"start": start, "peak": peak, "end": end, "after_expiry": after});
        (
            json,
            format!("start {start} peak {peak} end {end} after-expiry {after}"),
        )
    }
}

/// `cargo xtask soak [--minutes N] [--rate R] [--concurrency C]`.
pub(crate) fn soak(args: Vec<String>) -> Outcome {
    let mut a = pico_args::Arguments::from_vec(args.into_iter().map(Into::into).collect());
    let minutes = opt(&mut a, "--minutes", 10)?;
    let rate = opt(&mut a, "--rate", 50)?;
    let concurrency = opt(&mut a, "--concurrency", 8)?;
    let rest = a.finish();
    if !rest.is_empty() || minutes == 0 || rate == 0 || concurrency == 0 {
        return Err(format!(
            "`soak` takes --minutes, --rate and --concurrency, each at least 1 (got {rest:?})"
        ));
    }
    let code = build_release(&["axum-example", "otp-bench"])?;
    if code != 0 {
        return Ok(code);
    }
    let out = target_dir().join("soak");
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let servers = Servers::start()?;

    let addr = free_addr()?;
    let program = release("axum-example");
    let mut command = redis_app(&program, addr, &servers, "redis");
    // Metrics recorded and served, as in production, on a loopback port of their own; short
    // lifetimes, so that every entry of the run expires soon after it.
    let metrics = free_addr()?;
    let vars = format!(
        "APP_METRICS_ADDR={metrics} OTP_AUTH_OTP_EXPIRY_SECONDS=30 RUST_LOG=error \
         OTP_AUTH_ACCESS_TOKEN_EXPIRE_MINUTES=1 OTP_AUTH_REFRESH_TOKEN_EXPIRE_DAYS=1"
    );
    command.envs(env_pairs(&vars));
    let server = Proc::listening("soak-axum-redis", command, addr, &out)?;
    let pid = server.pid();

    eprintln!(
        "xtask: soak: {rate} flows/s for {minutes} min ({concurrency} virtual users) against \
         axum-example on Redis"
    );
    let seconds = minutes * 60;
    let args = format!(
        "load --base http://{addr} --scenario flow --concurrency {concurrency} \
         --seconds {seconds} --warmup 0 --rate {rate}"
    );
    let mut load = Command::new(release("otp-bench"));
    load.args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut child = load
        .spawn()
        .map_err(|e| format!("cannot start otp-bench: {e}"))?;

    let (mut rss, mut redis) = (Track::default(), Track::default());
    let (started, mut last_report) = (Instant::now(), Instant::now());
    while child.try_wait().map_err(|e| e.to_string())?.is_none() {
        rss.see(rss_kib(pid));
        redis.see(servers.used_memory().ok());
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            let s = started.elapsed().as_secs();
            let (rss, rss_peak, redis, redis_peak) = (rss.end, rss.peak, redis.end, redis.peak);
            eprintln!(
                "xtask: soak: {s:>4} s: server RSS {rss} KiB (peak {rss_peak}), \
                 Redis {redis} B (peak {redis_peak})"
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("otp-bench: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result = result_line(&stdout).and_then(|l| serde_json::from_str(l).ok());
    let result: Value = result.unwrap_or_default();
    let count = |key: &str| result[key].as_u64().unwrap_or(0);
    let (flows, errors) = (count("ops"), count("errors"));
    let (server_errors, transport_errors) = (count("server_errors"), count("transport_errors"));

    eprintln!("xtask: soak: load done; waiting 75 s for codes, windows and revocations to expire");
    std::thread::sleep(Duration::from_secs(75));
    let (rss_kib, rss) = rss.show(rss_kib(pid).unwrap_or(0));
    let (redis_bytes, redis) = redis.show(servers.used_memory().unwrap_or(0));
    server.stop()?;
    drop(servers);

    print!(
        "soak: {minutes} min at {rate} flows/s: {flows} flows, {errors} errors, {server_errors} \
         5xx, {transport_errors} transport errors\nserver RSS (KiB): {rss}\n\
         Redis used_memory (B): {redis}\n"
    );
    let json = json!({"minutes": minutes, "rate": rate, "flows": flows, "errors": errors,
        "server_errors": server_errors, "transport_errors": transport_errors,
        "rss_kib": rss_kib, "redis_bytes": redis_bytes});
    let path = out.join("soak.json");
    std::fs::write(&path, format!("{json}\n"))
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("xtask: soak: results in {}", path.display());
    Ok(u8::from(server_errors > 0 || transport_errors > 0))
}
