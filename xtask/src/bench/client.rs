//! The clients of the servers under test: `otp-bench load` (the load generator) and
//! postfix's `smtp-source` for the measured runs, a raw-socket HTTP POST and `redis-cli`
//! for the memory of a pending login and the flush before each app.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::results::{Load, Smtp};
use super::{Bench, SMTP_SOURCE_MESSAGES};
use crate::tools::find_program;

impl Bench<'_> {
    /// Runs one scenario of `otp-bench load` against `addr`, in a closed loop.
    pub(super) fn load(
        &self,
        addr: SocketAddr,
        scenario: &str,
        what: &str,
    ) -> Result<Load, String> {
        self.load_at(addr, scenario, None, what)
    }

    /// Runs one scenario of `otp-bench load` against `addr`: in a closed loop, or with
    /// `rate`, in an open loop at that many operations per second.
    pub(super) fn load_at(
        &self,
        addr: SocketAddr,
        scenario: &str,
        rate: Option<f64>,
        what: &str,
    ) -> Result<Load, String> {
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
        if let Some(rate) = rate {
            command.args(["--rate", &format!("{rate:.1}")]);
        }
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
    pub(super) fn smtp_source(&self, what: &str) -> Result<Smtp, String> {
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
    pub(super) fn pending_login_bytes(&self, addr: SocketAddr) -> Result<(String, u64), String> {
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

    /// Writes `n` live sessions into Redis, as the Redis stores lay them out (default
    /// prefixes, one session per subject, a week to live, refreshed once), through
    /// `redis-cli --pipe`; returns Redis' `used_memory` before and after.
    pub(super) fn preload_sessions(&self, n: u32) -> Result<(u64, u64), String> {
        let before = self.used_memory()?;
        let mut command = Command::new(&self.tools.redis_cli);
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.redis_port.to_string(),
                "--pipe",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let shown = crate::cmd::display(&command);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| format!("`{shown}`: no standard input"))?;
        let writer = std::thread::spawn(move || -> std::io::Result<()> {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, stdin);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let exp = (now + 7 * 86_400).to_string();
            let (created, score) = (now.to_string(), (now * 1000).to_string());
            for i in 0..n {
                // The shapes of real ids: a 22-character subject key, a 12-character
                // member, 22-character jtis.
                let subject = format!("preload{i:0>15}");
                let member = format!("m{i:0>11}");
                let session = format!("blacklist_{{{subject}}}:s:{member}");
                let index = format!("blacklist_{{{subject}}}:u");
                let value = format!("j{i:0>21} p{i:0>10} {created} 198.51.100.{} ", i % 250);
                resp(&mut out, &["SET", &session, &value, "EXAT", &exp])?;
                resp(&mut out, &["ZADD", &index, &score, &member])?;
                resp(&mut out, &["EXPIREAT", &index, &exp])?;
            }
            out.flush()
        });
        let output = child
            .wait_with_output()
            .map_err(|e| format!("`{shown}`: {e}"))?;
        writer
            .join()
            .map_err(|_| format!("`{shown}`: the writer panicked"))?
            .map_err(|e| format!("`{shown}`: writing the commands: {e}"))?;
        let report = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || !report.contains("errors: 0") {
            return Err(format!(
                "`{shown}` failed ({}): {}{}",
                output.status,
                report.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let after = self.used_memory()?;
        eprintln!(
            "xtask: bench: {n} sessions preloaded; Redis used_memory {before} -> {after} bytes"
        );
        Ok((before, after))
    }

    /// Redis' `used_memory` (`INFO memory`).
    fn used_memory(&self) -> Result<u64, String> {
        let info = self.redis_cli(&["INFO", "memory"])?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("no used_memory in INFO memory: {info:?}"))
    }

    /// Empties Redis, so each run starts from the same state.
    pub(super) fn flush_redis(&self) -> Result<(), String> {
        self.redis_cli(&["FLUSHALL"]).map(drop)
    }

    /// Runs `redis-cli` with `args` against the bench's Redis; its standard output, or an
    /// error if it failed or answered `ERR`.
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

/// One command in the Redis protocol.
fn resp(out: &mut impl std::io::Write, args: &[&str]) -> std::io::Result<()> {
    write!(out, "*{}\r\n", args.len())?;
    for a in args {
        write!(out, "${}\r\n{a}\r\n", a.len())?;
    }
    Ok(())
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
