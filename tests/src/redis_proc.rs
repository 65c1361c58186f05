//! A `redis-server` of a test's own, to count its commands or to stop and restart it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port; for a cluster node, one whose bus port (the port + 10000) is free
/// too and at most 65535, as redis-server requires (ports above 55535 make it refuse to
/// start, and the ephemeral range reaches 60999).
fn free_port(cluster: bool) -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !cluster {
            return port;
        }
        if port <= 55535 && std::net::TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// A private Redis on a free loopback port.
#[derive(Debug)]
pub struct RedisProcess {
    pub port: u16,
    server_bin: String,
    cli_bin: String,
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl RedisProcess {
    /// Starts one from the binaries in `OTP_TEST_REDIS_SERVER_BIN` and
    /// `OTP_TEST_REDIS_CLI_BIN` (see [`crate::server`]).
    pub fn start() -> RedisProcess {
        Self::start_with(&[])
    }

    /// Like [`RedisProcess::start`], with extra `redis-server` arguments.
    pub fn start_with(extra: &[&str]) -> RedisProcess {
        let server_bin = crate::server("OTP_TEST_REDIS_SERVER_BIN");
        let cli_bin = crate::server("OTP_TEST_REDIS_CLI_BIN");
        let cluster = extra.contains(&"--cluster-enabled");
        let port = free_port(cluster);
        let dir =
            std::env::temp_dir().join(format!("otp-test-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = RedisProcess {
            port,
            server_bin,
            cli_bin,
            dir,
            child: None,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        p.launch();
        p
    }

    fn launch(&mut self) {
        let child = Command::new(&self.server_bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
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

    /// Whether the process is running.
    pub fn running(&self) -> bool {
        self.child.is_some()
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

/// A Redis Cluster of the test's own: three masters, each with one replica.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisProcess>,
}

impl RedisCluster {
    /// Starts six cluster nodes and joins them (3 masters + 3 replicas).
    pub fn start() -> RedisCluster {
        let c = Self::create(1);
        c.wait_ok();
        c
    }

    /// Starts 3 masters with `replicas` replicas each and joins them with `redis-cli
    /// --cluster create`, returning as soon as that command does: the nodes may still be
    /// converging (`cluster_state:fail` for a moment), as when an application is started
    /// together with its cluster.
    pub fn create(replicas: usize) -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..3 * (1 + replicas) {
            nodes.push(RedisProcess::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                // A replica's first sync waits 5 s by default (for others to join it); a
                // replica that never synced cannot be promoted.
                "--repl-diskless-sync-delay",
                "0",
            ]));
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend([
            "--cluster-replicas".into(),
            replicas.to_string(),
            "--cluster-yes".into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes[0].cli(&args);
        RedisCluster { nodes }
    }

    /// Waits until every live node reports `cluster_state:ok` and agrees on 3 masters.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.nodes.iter().filter(|n| n.running()).all(|n| {
                n.cli(&["cluster", "info"]).contains("cluster_state:ok")
                    && n.cli(&["cluster", "nodes"])
                        .lines()
                        .filter(|l| l.contains("master") && !l.contains("fail"))
                        .count()
                        == 3
            });
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster did not settle");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every live replica's link to its master is up (it has synced once, so
    /// it can be promoted) and every live master has its replica.
    pub fn wait_replicas_synced(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for n in self.nodes.iter().filter(|n| n.running()) {
            loop {
                let info = n.cli(&["info", "replication"]);
                let synced = info.lines().any(|l| l.trim() == "master_link_status:up");
                let served = info.contains("role:master")
                    && info.contains("state=online")
                    && !info.lines().any(|l| l.trim() == "connected_slaves:0");
                if synced || served {
                    break;
                }
                assert!(Instant::now() < deadline, "a replica did not sync");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Waits until the master on `port` is seen failed and another node serves its slots.
    pub fn wait_promoted(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let nodes = self
                .nodes
                .iter()
                .find(|n| n.running())
                .map(|n| n.cli(&["cluster", "nodes"]))
                .unwrap_or_default();
            let gone = nodes.lines().any(|l| {
                l.contains(&format!(":{port}@")) && l.contains("fail") && !l.contains("pfail")
            });
            if gone && self.masters().len() == 3 {
                self.wait_ok();
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replica of {port} was not promoted"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `redis-cluster://` address of the cluster.
    pub fn url(&self) -> String {
        let first = &self.nodes[0];
        let rest: Vec<String> = self.nodes[1..]
            .iter()
            .map(|n| format!("node=127.0.0.1:{}", n.port))
            .collect();
        format!(
            "redis-cluster://127.0.0.1:{}?{}",
            first.port,
            rest.join("&")
        )
    }

    /// Ports of the current masters.
    pub fn masters(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .find(|n| n.running())
            .map(|n| n.cli(&["cluster", "nodes"]))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| {
                let addr = l.split_whitespace().nth(1)?;
                addr.split(['@', ':']).nth(1)?.parse().ok()
            })
            .collect()
    }

    /// Gracefully hands the master role of `master_port`'s slots to its replica
    /// (`CLUSTER FAILOVER` on the replica: it catches up first, so no write is lost).
    /// Returns the new master's port.
    pub fn failover(&self, master_port: u16) -> u16 {
        let master = self.nodes.iter().find(|n| n.port == master_port).unwrap();
        let id = master.cli(&["cluster", "myid"]).trim().to_owned();
        let replica = self
            .nodes
            .iter()
            .find(|n| {
                n.cli(&["cluster", "nodes"]).lines().any(|l| {
                    l.contains("myself")
                        && (l.contains("slave") || l.contains("replica"))
                        && l.contains(&id)
                })
            })
            .map(|n| n.port)
            .expect("the master has a replica");
        let r = self.nodes.iter().find(|n| n.port == replica).unwrap();
        assert_eq!(r.cli(&["cluster", "failover"]).trim(), "OK");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.masters().contains(&replica) {
            assert!(Instant::now() < deadline, "the replica was not promoted");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_ok();
        replica
    }
}

/// A master with one replica, watched by one Sentinel (quorum 1, the master down after
/// 1 s): the Sentinel promotes the replica when the master dies. Run by `redis-server
/// --sentinel`, the Sentinel that Debian's `redis-sentinel` is.
#[derive(Debug)]
pub struct SentinelGroup {
    /// The first master.
    pub master: RedisProcess,
    /// Its replica.
    pub replica: RedisProcess,
    /// The Sentinel's port.
    pub sentinel_port: u16,
    sentinel: Option<Child>,
    dir: PathBuf,
    cli_bin: String,
}

/// The name the Sentinel monitors the master under.
pub const SENTINEL_SERVICE: &str = "otpmaster";

impl SentinelGroup {
    /// Starts the master, its replica (synced) and the Sentinel (which knows both).
    pub fn start() -> SentinelGroup {
        let master = RedisProcess::start();
        let master_port = master.port.to_string();
        let replica = RedisProcess::start_with(&["--replicaof", "127.0.0.1", &master_port]);
        let port = free_port(false);
        let dir =
            std::env::temp_dir().join(format!("otp-test-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                 sentinel failover-timeout {SENTINEL_SERVICE} 4000\n\
                 sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                dir.display()
            ),
        )
        .unwrap();
        let sentinel = Command::new(&master.server_bin)
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let g = SentinelGroup {
            cli_bin: master.cli_bin.clone(),
            master,
            replica,
            sentinel_port: port,
            sentinel: Some(sentinel),
            dir,
        };
        g.wait_synced();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !g
            .sentinel(&["sentinel", "replicas", SENTINEL_SERVICE])
            .contains("slave")
        {
            assert!(
                Instant::now() < deadline,
                "the Sentinel did not find the replica"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        g
    }

    /// `redis-sentinel://127.0.0.1:<sentinel>/0?sentinelServiceName=…`, as otp-fred takes it.
    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={SENTINEL_SERVICE}",
            self.sentinel_port
        )
    }

    /// Runs `redis-cli` against the Sentinel.
    pub fn sentinel(&self, args: &[&str]) -> String {
        let out = Command::new(&self.cli_bin)
            .args(["-p", &self.sentinel_port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The port of the master the Sentinel names now.
    pub fn master_port(&self) -> u16 {
        let out = self.sentinel(&["sentinel", "get-master-addr-by-name", SENTINEL_SERVICE]);
        out.lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the current master has a replica in sync (link up, offsets equal).
    pub fn wait_synced(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (master, replica) = if self.master_port() == self.replica.port {
                (&self.replica, &self.master)
            } else {
                (&self.master, &self.replica)
            };
            let offset = |p: &RedisProcess, field: &str| -> Option<String> {
                p.cli(&["info", "replication"])
                    .lines()
                    .find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_owned()))
            };
            let up = replica
                .cli(&["info", "replication"])
                .contains("master_link_status:up");
            if up
                && offset(master, "master_repl_offset:").is_some()
                && offset(master, "master_repl_offset:") == offset(replica, "slave_repl_offset:")
            {
                return;
            }
            assert!(Instant::now() < deadline, "the replica did not sync");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        if let Some(mut c) = self.sentinel.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
