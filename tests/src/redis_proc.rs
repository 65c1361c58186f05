//! A `redis-server` of a test's own, to count its commands or to stop and restart it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private Redis on a free loopback port.
#[derive(Debug)]
pub struct RedisProcess {
    pub port: u16,
    server_bin: String,
    cli_bin: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts one, or `None` (test skipped) when the binaries are not known; see
    /// [`otp_core::contract::test_server`].
    pub fn start() -> Option<RedisProcess> {
        let server_bin = otp_core::contract::test_server("OTP_TEST_REDIS_SERVER_BIN")?;
        let cli_bin = otp_core::contract::test_server("OTP_TEST_REDIS_CLI_BIN")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("otp-test-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = RedisProcess {
            port,
            server_bin,
            cli_bin,
            dir,
            child: None,
        };
        p.launch();
        Some(p)
    }

    fn launch(&mut self) {
        let child = Command::new(&self.server_bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["ping"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-cli` against it and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(&self.cli_bin)
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Calls per command since the last `CONFIG RESETSTAT`, from `INFO commandstats`,
    /// leaving out the commands of the measurement itself.
    pub fn command_calls(&self) -> Vec<(String, u64)> {
        self.cli(&["info", "commandstats"])
            .lines()
            .filter_map(|l| {
                let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
                let calls = rest.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_owned(), calls.parse().ok()?))
            })
            .filter(|(n, _)| !matches!(n.as_str(), "info" | "config|resetstat" | "ping"))
            .collect()
    }

    /// Resets the command statistics.
    pub fn reset_stats(&self) {
        assert_eq!(self.cli(&["config", "resetstat"]).trim(), "OK");
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
