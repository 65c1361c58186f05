//! `cargo xtask soak`: the full login flow at a steady rate for a long time against the
//! axum example on Redis, watching for 5xx and for memory that does not stay flat.
//!
//! Reports the server's resident memory (start, peak, end) and Redis' `used_memory`
//! (start, peak, end, and after the short-lived entries of the run have expired), writes
//! `target/soak/soak.json`, and exits 1 on any 5xx or transport error.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Outcome;
use crate::bench::{App, JWT_SECRET, build_release, free_addr, server_var, url_port};
use crate::servers::Servers;
use crate::tools::Tools;

/// Options of `cargo xtask soak`.
#[derive(Debug, Clone, Copy)]
struct Options {
    minutes: u32,
    rate: u32,
    concurrency: u32,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut o = Self {
            minutes: 10,
            rate: 50,
            concurrency: 8,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .ok_or_else(|| format!("`{flag}` needs a value"))?
                .parse::<u32>()
                .map_err(|_| format!("`{flag}` takes a positive whole number"))?;
            match flag.as_str() {
                "--minutes" => o.minutes = value,
                "--rate" => o.rate = value,
                "--concurrency" => o.concurrency = value,
                other => {
                    return Err(format!(
                        "unknown option `{other}` (--minutes, --rate, --concurrency)"
                    ));
                }
            }
        }
        if o.minutes == 0 || o.rate == 0 || o.concurrency == 0 {
            return Err("--minutes, --rate and --concurrency must be at least 1".to_owned());
        }
        Ok(o)
    }
}

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Redis' `used_memory` in bytes.
fn redis_used(tools: &Tools, port: u16) -> Option<u64> {
    let out = Command::new(&tools.redis_cli)
        .args(["-p", &port.to_string(), "info", "memory"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Start, peak and end of a series.
#[derive(Debug, Default, Clone, Copy)]
struct Track {
    start: u64,
    peak: u64,
    end: u64,
}

impl Track {
    fn see(&mut self, v: u64) {
        if self.start == 0 {
            self.start = v;
        }
        self.peak = self.peak.max(v);
        self.end = v;
    }
}

pub(crate) fn soak(args: &[String]) -> Outcome {
    let options = Options::parse(args)?;
    let target = match build_release(&["axum-example", "otp-bench"])? {
        Ok(target) => target,
        Err(code) => return Ok(code),
    };
    let release = target.join("release");
    let out = target.join("soak");
    std::fs::create_dir_all(&out).map_err(|e| format!("creating {}: {e}", out.display()))?;

    let tools = Tools::locate_or_install()?;
    let servers = Servers::start(&tools)?;
    let var = |name: &str| server_var(&servers, name);
    let redis_url = var("OTP_TEST_REDIS_URL")?;
    let redis_port = url_port(&redis_url)?;
    let smtp: SocketAddr = var("OTP_TEST_SMTP_SINK")?
        .parse()
        .map_err(|e| format!("OTP_TEST_SMTP_SINK: {e}"))?;

    let addr = free_addr()?;
    let mut command = Command::new(release.join("axum-example"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTP_AUTH_") {
            command.env_remove(name);
        }
    }
    // Short lifetimes, so that every entry of the run expires soon after it.
    command
        .env("APP_ADDR", addr.to_string())
        // Metrics recorded and served, as in production, on a loopback port of their own.
        .env("APP_METRICS_ADDR", free_addr()?.to_string())
        .env("OTP_AUTH_STORE", "redis")
        .env("OTP_AUTH_REDIS_URL", &redis_url)
        .env("OTP_AUTH_JWT_SECRET", JWT_SECRET)
        .env("OTP_AUTH_MAILER", "smtp")
        .env("OTP_AUTH_SMTP_SERVER", smtp.ip().to_string())
        .env("OTP_AUTH_SMTP_PORT", smtp.port().to_string())
        .env("OTP_AUTH_DISABLE_LOCAL_AUTH", "true")
        .env("OTP_AUTH_MAGIC_OTP_EMAILS", "*@magic.bench")
        .env("OTP_AUTH_OTP_RATE_LIMIT_PER_IP_PER_MINUTE", "100000000")
        .env("OTP_AUTH_OTP_EXPIRY_SECONDS", "30")
        .env("OTP_AUTH_ACCESS_TOKEN_EXPIRE_MINUTES", "1")
        .env("OTP_AUTH_REFRESH_TOKEN_EXPIRE_DAYS", "1")
        .env("RUST_LOG", "error");
    let server = App::start("soak-axum-redis", command, addr, &out)?;
    let pid = server.pid();

    let seconds = options.minutes * 60;
    eprintln!(
        "xtask: soak: {} flows/s for {} min ({} virtual users) against axum-example on Redis",
        options.rate, options.minutes, options.concurrency
    );
    let mut load = Command::new(release.join("otp-bench"));
    load.arg("load")
        .args(["--base", &format!("http://{addr}")])
        .args(["--scenario", "flow"])
        .args(["--concurrency", &options.concurrency.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--warmup", "0"])
        .args(["--rate", &options.rate.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = load
        .spawn()
        .map_err(|e| format!("cannot start otp-bench: {e}"))?;

    let (mut rss, mut redis) = (Track::default(), Track::default());
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        if let Some(v) = rss_kib(pid) {
            rss.see(v);
        }
        if let Some(v) = redis_used(&tools, redis_port) {
            redis.see(v);
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            eprintln!(
                "xtask: soak: {:>4} s: server RSS {} KiB (peak {}), Redis {} B (peak {})",
                started.elapsed().as_secs(),
                rss.end,
                rss.peak,
                redis.end,
                redis.peak
            );
        }
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let output = child
        .wait_with_output()
        .map_err(|e| format!("otp-bench: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("{}")
        .trim()
        .to_owned();
    let number = |key: &str| -> u64 {
        line.split(&format!("\"{key}\":"))
            .nth(1)
            .and_then(|rest| {
                rest.split([',', '}'])
                    .next()
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
            .map_or(0, |v| v as u64)
    };
    let (ops, errors, server_errors, transport_errors) = (
        number("ops"),
        number("errors"),
        number("server_errors"),
        number("transport_errors"),
    );

    eprintln!("xtask: soak: load done; waiting 75 s for codes, windows and revocations to expire");
    std::thread::sleep(Duration::from_secs(75));
    let redis_after = redis_used(&tools, redis_port).unwrap_or(0);
    let rss_after = rss_kib(pid).unwrap_or(0);
    server.stop()?;
    drop(servers);

    let summary = format!(
        "soak: {} min at {} flows/s: {ops} flows, {errors} errors, {server_errors} 5xx, \
         {transport_errors} transport errors\n\
         server RSS (KiB): start {} peak {} end {} after-expiry {rss_after}\n\
         Redis used_memory (B): start {} peak {} end {} after-expiry {redis_after}\n",
        options.minutes,
        options.rate,
        rss.start,
        rss.peak,
        rss.end,
        redis.start,
        redis.peak,
        redis.end
    );
    print!("{summary}");
    let json = format!(
        "{{\"minutes\":{},\"rate\":{},\"flows\":{ops},\"errors\":{errors},\
         \"server_errors\":{server_errors},\"transport_errors\":{transport_errors},\
         \"rss_kib\":{{\"start\":{},\"peak\":{},\"end\":{},\"after_expiry\":{rss_after}}},\
         \"redis_bytes\":{{\"start\":{},\"peak\":{},\"end\":{},\"after_expiry\":{redis_after}}}}}\n",
        options.minutes,
        options.rate,
        rss.start,
        rss.peak,
        rss.end,
        redis.start,
        redis.peak,
        redis.end
    );
    let path = out.join("soak.json");
    std::fs::write(&path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    eprintln!("xtask: soak: results in {}", path.display());
    Ok(u8::from(server_errors > 0 || transport_errors > 0))
}
