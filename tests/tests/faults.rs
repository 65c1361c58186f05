//! Faults, through the real routers on real servers: Redis stopped and restarted under a
//! running app (both adapters, both Redis clients), the app restarted on a live Redis,
//! and a slow client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use otp_core::Config;
use otp_core::store::scripted::KeyLayout;
use otp_tests::redis_proc::RedisProcess;
use otp_tests::{Adapter, Backends, Store, TestServer, test_config};

const TIMEOUT: Duration = Duration::from_millis(500);

fn config() -> Config {
    let mut c = test_config();
    c.redis.timeout_ms = TIMEOUT.as_millis() as u64;
    c
}

async fn app(adapter: Adapter, store: Store, redis: &RedisProcess) -> TestServer {
    let backends = Backends::for_url(
        store,
        &redis.url(),
        TIMEOUT,
        KeyLayout::new("otp_", "blacklist_"),
    )
    .await;
    TestServer::start_with(adapter, config(), backends).await
}

/// Redis dies under a running app: every endpoint answers 503 problem+json within the
/// timeout, protected routes fail closed, nothing panics; Redis returns and the same app,
/// with the same clients, serves again within seconds.
async fn redis_outage(adapter: Adapter, store: Store) {
    let mut redis = RedisProcess::start();
    let s = app(adapter, store, &redis).await;
    let before = s.login("outage@example.com").await;

    redis.stop();
    let started = Instant::now();
    let r = s.request_otp("during@example.com").await;
    let p = r.assert_problem(503);
    assert!(r.header("retry-after").is_some(), "{p}");
    s.verify_otp("outage@example.com", "123456")
        .await
        .assert_problem(503);
    s.protected(Some(&before.access)).await.assert_problem(503);
    s.refresh(Some(&before.refresh)).await.assert_problem(503);
    let logout = s
        .send(
            s.http
                .post(s.url("/auth/logout"))
                .bearer_auth(&before.access),
        )
        .await;
    logout.assert_problem(503);
    let took = started.elapsed();
    assert!(
        took < TIMEOUT * 5 * 3,
        "five requests against a dead Redis took {took:?}"
    );

    redis.restart();
    let back = Instant::now();
    loop {
        let r = s.request_otp("after@example.com").await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(back.elapsed() < Duration::from_secs(15), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "{adapter:?}/{store:?}: serving again {:?} after Redis returned",
        back.elapsed()
    );
    let code = s.mailer.last_code("after@example.com").unwrap();
    let r = s.verify_otp("after@example.com", &code).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(s.protected(Some(&token)).await.status, 200);
    // That Redis came back empty: the old session is gone and its token refused, not waved
    // through.
    s.protected(Some(&before.access)).await.assert_problem(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn redis_outage_axum_redis() {
    redis_outage(Adapter::Axum, Store::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn redis_outage_axum_fred() {
    redis_outage(Adapter::Axum, Store::Fred).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn redis_outage_poem_redis() {
    redis_outage(Adapter::Poem, Store::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn redis_outage_poem_fred() {
    redis_outage(Adapter::Poem, Store::Fred).await;
}

/// The app restarts (a new process: new engine, new clients) on the same Redis: sessions
/// and revocations survive.
async fn app_restart(store: Store) {
    let redis = RedisProcess::start();
    let first = app(Adapter::Axum, store, &redis).await;
    let kept = first.login("kept@example.com").await;
    let gone = first.login("gone@example.com").await;
    let r = first
        .send(
            first
                .http
                .post(first.url("/auth/logout"))
                .bearer_auth(&gone.access)
                .header("cookie", format!("refresh_token={}", gone.refresh)),
        )
        .await;
    assert_eq!(r.status, 200);
    drop(first);

    let second = app(Adapter::Poem, store, &redis).await;
    assert_eq!(second.protected(Some(&kept.access)).await.status, 200);
    second
        .protected(Some(&gone.access))
        .await
        .assert_problem(401);
    second
        .refresh(Some(&gone.refresh))
        .await
        .assert_problem(401);
    let r = second.refresh(Some(&kept.refresh)).await;
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn sessions_and_revocations_survive_an_app_restart_redis() {
    app_restart(Store::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn sessions_and_revocations_survive_an_app_restart_fred() {
    app_restart(Store::Fred).await;
}

/// A client that trickles its request byte by byte does not hold up anyone else.
async fn slow_client(adapter: Adapter) {
    let s = TestServer::start(
        otp_tests::Target {
            adapter,
            store: Store::Memory,
        },
        test_config(),
    )
    .await;
    let addr = s.addr;
    let slow = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = b"POST /auth/request-otp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 30\r\n\r\n{\"email\":\"slow@example.com\"}  ";
        for b in req {
            if c.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..20 {
        let started = Instant::now();
        let r = s.request_otp(&format!("fast{i}@example.com")).await;
        assert_eq!(r.status, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "blocked behind the slow client"
        );
    }
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_blocks_no_one_axum() {
    slow_client(Adapter::Axum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_blocks_no_one_poem() {
    slow_client(Adapter::Poem).await;
}

/// A Redis Cluster master hands over to its replica (`CLUSTER FAILOVER`) while logins run:
/// errors only during the switch, and only 503; afterwards logins work; no code was ever
/// accepted twice; no logged-out token is accepted again.
async fn cluster_failover(store: Store) {
    use otp_tests::redis_proc::RedisCluster;
    use std::sync::{Arc, Mutex};
    let cluster = RedisCluster::start();
    let backends = Backends::for_url(
        store,
        &cluster.url(),
        Duration::from_secs(1),
        KeyLayout::new("otp_", "blacklist_"),
    )
    .await;
    // All the load comes from 127.0.0.1: lift the per-IP limit for this test.
    let cfg = {
        let mut c = config();
        c.limits.per_ip_per_minute = 1_000_000;
        // Replaying every consumed code afterwards counts a failure each (a code presented
        // with none pending): lift the IP's budget too, so each replay is compared.
        c.limits.verify_failures_per_ip_per_hour = 1_000_000;
        c
    };
    let s = Arc::new(TestServer::start_with(Adapter::Axum, cfg, backends).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let workers = login_load(s.clone(), 4, stop.clone(), seen.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let master = cluster.masters()[0];
    let started = Instant::now();
    let promoted = tokio::task::spawn_blocking(move || {
        let p = cluster.failover(master);
        (cluster, p)
    })
    .await
    .unwrap();
    let (cluster, new_master) = promoted;
    eprintln!(
        "{store:?}: failover {master} -> {new_master} took {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let errors = seen.statuses.iter().filter(|s| **s != 200).count();
    eprintln!(
        "{store:?}: {} requests during the run, {errors} answered 503, {} logins",
        seen.statuses.len(),
        seen.codes.len()
    );
    let other: Vec<u16> = seen
        .statuses
        .iter()
        .copied()
        .filter(|s| *s != 200 && *s != 503)
        .take(10)
        .collect();
    assert!(other.is_empty(), "only 200 and 503, but saw {other:?}");
    assert!(seen.codes.len() > 10, "logins ran during the test");
    // After the switch: logins work.
    s.login("after-failover@example.com").await;
    for (email, code) in &seen.codes {
        s.verify_otp(email, code).await.assert_problem(400);
    }
    for token in &seen.revoked {
        s.protected(Some(token)).await.assert_problem(401);
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn cluster_failover_during_logins_redis() {
    cluster_failover(Store::RedisCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn cluster_failover_during_logins_fred() {
    cluster_failover(Store::FredCluster).await;
}

/// A cluster formed and the app started at once, as compose or Kubernetes start them: the
/// nodes are still converging (`cluster_state:fail` for up to a second after `redis-cli
/// --cluster create` returns), yet the app serves within a few seconds, without a restart.
/// Ten fresh clusters in a row.
async fn cluster_started_with_the_app(store: Store) {
    use otp_tests::redis_proc::RedisCluster;
    const RUNS: usize = 10;
    let mut took = Vec::new();
    for run in 0..RUNS {
        let cluster = RedisCluster::create(0);
        let started = Instant::now();
        let backends = Backends::for_url(
            store,
            &cluster.url(),
            TIMEOUT,
            KeyLayout::new("otp_", "blacklist_"),
        )
        .await;
        let s = TestServer::start_with(Adapter::Axum, config(), backends).await;
        let deadline = started + Duration::from_secs(8);
        let last = loop {
            let status = s
                .request_otp(&format!("start{run}@example.com"))
                .await
                .status;
            if status == 200 || Instant::now() > deadline {
                break status;
            }
            assert_eq!(status, 503, "only 503 while the cluster converges");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            last, 200,
            "{store:?}, run {run}: no 200 within 8 s of forming the cluster"
        );
        took.push(started.elapsed());
        drop(s);
        drop(cluster);
    }
    eprintln!("{store:?}: first 200 after forming the cluster, {RUNS} runs: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn cluster_started_with_the_app_redis() {
    cluster_started_with_the_app(Store::RedisCluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn cluster_started_with_the_app_fred() {
    cluster_started_with_the_app(Store::FredCluster).await;
}

/// Redis stalls past the client timeout in the middle of a rotation (`CLIENT PAUSE 1500
/// WRITE`): the refresh answers 503 while Redis still runs the rotation once the pause
/// ends; the client retries with the cookie it has, within the reuse interval, and gets
/// 200 on the same lineage; the session lives on. Ten stalls per client.
async fn rotation_through_a_stall(store: Store) {
    let redis = RedisProcess::start();
    let s = app(Adapter::Axum, store, &redis).await;
    const RUNS: usize = 10;
    for run in 0..RUNS {
        let session = s.login(&format!("stall{run}@example.com")).await;
        assert_eq!(
            redis.cli(&["client", "pause", "1500", "write"]).trim(),
            "OK"
        );
        let paused = Instant::now();
        let r = s.refresh(Some(&session.refresh)).await;
        r.assert_problem(503);
        // The pause ends and Redis runs the rotation the app gave up on.
        tokio::time::sleep(Duration::from_millis(1700).saturating_sub(paused.elapsed())).await;
        let retry = s.refresh(Some(&session.refresh)).await;
        assert_eq!(
            retry.status,
            200,
            "{store:?}, run {run}: the retry after the stall: {}",
            retry.text()
        );
        let access = retry.json()["access_token"].as_str().unwrap().to_owned();
        assert_eq!(s.protected(Some(&access)).await.status, 200);
        let next = s.refresh(Some(&retry.refresh_cookie().unwrap())).await;
        assert_eq!(
            next.status,
            200,
            "the lineage refreshes on: {}",
            next.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn rotation_through_a_stall_redis() {
    rotation_through_a_stall(Store::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn rotation_through_a_stall_fred() {
    rotation_through_a_stall(Store::Fred).await;
}

/// What a load run saw, and what it must never see again.
#[derive(Default)]
struct Seen {
    statuses: Vec<u16>,
    /// Codes that signed in (consumed).
    codes: Vec<(String, String)>,
    /// Access tokens logged out.
    revoked: Vec<String>,
}

/// Logins, protected requests and logouts from `workers` tasks until `stop`.
fn login_load(
    s: std::sync::Arc<TestServer>,
    workers: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|w| {
            let (s, stop, seen) = (s.clone(), stop.clone(), seen.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let email = format!("k{w}n{n}@example.com");
                    let r = s.request_otp(&email).await;
                    seen.lock().unwrap().statuses.push(r.status);
                    let Some(code) = s.mailer.last_code(&email).filter(|_| r.status == 200) else {
                        continue;
                    };
                    let r = s.verify_otp(&email, &code).await;
                    seen.lock().unwrap().statuses.push(r.status);
                    if r.status != 200 {
                        continue;
                    }
                    seen.lock().unwrap().codes.push((email.clone(), code));
                    let access = r.json()["access_token"].as_str().unwrap().to_owned();
                    let r = s.protected(Some(&access)).await;
                    seen.lock().unwrap().statuses.push(r.status);
                    let r = s
                        .send(s.http.post(s.url("/auth/logout")).bearer_auth(&access))
                        .await;
                    seen.lock().unwrap().statuses.push(r.status);
                    if r.status == 200 {
                        seen.lock().unwrap().revoked.push(access);
                    }
                }
            })
        })
        .collect()
}

/// A master that has a replica is killed (`kill -9`) while logins run: requests for its
/// slots answer 503 until the cluster promotes the replica (node timeout 1 s), then the
/// same app serves again, without a restart. Redis replicates asynchronously, so writes
/// the master acknowledged just before it died may be lost: the test counts consumed codes
/// that work again and logged-out tokens that work again, and reports them.
async fn master_killed(store: Store, replicas_ack: u32) {
    use otp_tests::redis_proc::RedisCluster;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let cluster = RedisCluster::start();
    let backends = Backends::for_url_acked(
        store,
        &cluster.url(),
        Duration::from_secs(1),
        KeyLayout::new("otp_", "blacklist_"),
        replicas_ack,
    )
    .await;
    let cfg = {
        let mut c = config();
        c.limits.per_ip_per_minute = 1_000_000;
        // Replaying every consumed code afterwards counts a failure each (a code presented
        // with none pending): lift the IP's budget too, so each replay is compared.
        c.limits.verify_failures_per_ip_per_hour = 1_000_000;
        c.limits.verify_failures_per_ip_per_hour = 1_000_000;
        c
    };
    let s = Arc::new(TestServer::start_with(Adapter::Axum, cfg, backends).await);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_replicas_synced();
        cluster
    })
    .await
    .unwrap();
    let mut cluster = cluster;
    let workers = login_load(s.clone(), 4, stop.clone(), seen.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = cluster.masters()[0];
    let killed = Instant::now();
    cluster
        .nodes
        .iter_mut()
        .find(|n| n.port == victim)
        .unwrap()
        .stop();
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_promoted(victim);
        cluster
    })
    .await
    .unwrap();
    let promoted_after = killed.elapsed();
    // Serving again: a login goes through, within seconds.
    let back = loop {
        let email = format!("back{}@example.com", killed.elapsed().as_millis());
        let r = s.request_otp(&email).await;
        if r.status == 200
            && let Some(code) = s.mailer.last_code(&email)
        {
            let v = s.verify_otp(&email, &code).await;
            if v.status == 200 {
                break killed.elapsed();
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(20),
            "{store:?}: no login within 20 s of killing a master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    // The killed node comes back, as the promoted master's replica (so that writes which
    // wait for a replica can be acknowledged again while the test checks).
    let mut cluster = cluster;
    let cluster = tokio::task::spawn_blocking(move || {
        let node = cluster.nodes.iter_mut().find(|n| n.port == victim).unwrap();
        node.restart();
        cluster.wait_ok();
        cluster.wait_replicas_synced();
        cluster
    })
    .await
    .unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let count = |st: u16| seen.statuses.iter().filter(|s| **s == st).count();
    let unexpected: Vec<u16> = seen
        .statuses
        .iter()
        .copied()
        .filter(|s| ![200, 400, 401, 503].contains(s))
        .take(10)
        .collect();
    assert!(unexpected.is_empty(), "{store:?}: answers {unexpected:?}");
    let mut codes_lost = 0;
    for (email, code) in &seen.codes {
        if s.verify_otp(email, code).await.status == 200 {
            codes_lost += 1;
        }
    }
    let mut revocations_lost = 0;
    for token in &seen.revoked {
        if s.protected(Some(token)).await.status == 200 {
            revocations_lost += 1;
        }
    }
    eprintln!(
        "{store:?}, REDIS_MIN_REPLICAS_ACK={replicas_ack}: master {victim} killed; replica promoted after {promoted_after:?}, \
         logins again after {back:?}; {} requests: {} × 200, {} × 503, {} × 400, {} × 401; \
         {} consumed codes, {codes_lost} usable again; {} revocations, {revocations_lost} \
         lost",
        seen.statuses.len(),
        count(200),
        count(503),
        count(400),
        count(401),
        seen.codes.len(),
        seen.revoked.len(),
    );
    assert!(seen.codes.len() > 10, "logins ran during the test");
    if replicas_ack > 0 {
        // Every acknowledged consumption and revocation reached a replica first.
        assert_eq!(codes_lost, 0, "{store:?}: consumed codes usable again");
        assert_eq!(revocations_lost, 0, "{store:?}: revocations lost");
    }
    drop(cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn master_killed_during_logins_redis() {
    master_killed(Store::RedisCluster, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn master_killed_during_logins_with_replica_acks_redis() {
    master_killed(Store::RedisCluster, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn master_killed_during_logins_fred() {
    master_killed(Store::FredCluster, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn master_killed_during_logins_with_replica_acks_fred() {
    master_killed(Store::FredCluster, 1).await;
}

/// An app on otp-fred behind a real Sentinel (`redis-sentinel://`): the master is killed
/// (`kill -9`) while logins run; requests answer 503 (never another 5xx, never a panic)
/// until the Sentinel promotes the replica and fred follows it, then logins go through
/// again on the same app. The old master comes back empty once the replica is promoted
/// (as its supervisor would start it), and the Sentinel makes it the new master's replica.
/// With `replicas_ack` = 1 every consumed code and every revocation
/// reached the replica before it was acknowledged: none works again afterwards.
async fn sentinel_failover(replicas_ack: u32) {
    use otp_tests::redis_proc::SentinelGroup;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let group = tokio::task::spawn_blocking(SentinelGroup::start)
        .await
        .unwrap();
    let backends = Backends::for_url_acked(
        Store::Fred,
        &group.url(),
        Duration::from_secs(1),
        KeyLayout::new("otp_", "blacklist_"),
        replicas_ack,
    )
    .await;
    let cfg = {
        let mut c = config();
        c.limits.per_ip_per_minute = 1_000_000;
        c.limits.verify_failures_per_ip_per_hour = 1_000_000;
        c
    };
    let s = Arc::new(TestServer::start_with(Adapter::Axum, cfg, backends).await);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let workers = login_load(s.clone(), 4, stop.clone(), seen.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = group.master.port;
    let mut group = group;
    let killed = Instant::now();
    group.master.stop();
    let mut group = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while group.master_port() != group.replica.port {
            assert!(
                Instant::now() < deadline,
                "the Sentinel did not promote the replica"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        group
    })
    .await
    .unwrap();
    let promoted_after = killed.elapsed();
    // The old master's supervisor starts it again (empty): the Sentinel makes it the new
    // master's replica, so that writes waiting for a replica can be acknowledged again.
    let group = tokio::task::spawn_blocking(move || {
        group.master.restart();
        group
    })
    .await
    .unwrap();
    let back = loop {
        let email = format!("back{}@example.com", killed.elapsed().as_millis());
        let r = s.request_otp(&email).await;
        if r.status == 200
            && let Some(code) = s.mailer.last_code(&email)
            && s.verify_otp(&email, &code).await.status == 200
        {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no login within 30 s of killing the master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let group = tokio::task::spawn_blocking(move || {
        group.wait_synced();
        group
    })
    .await
    .unwrap();
    // Under load (CI runs tests side by side) the Sentinel may see the promoted replica
    // miss its 1 s and fail over again, to the restarted old master once it has synced:
    // a second switch, which the checks below cover as well.
    let master_now = group.master_port();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let count = |st: u16| seen.statuses.iter().filter(|s| **s == st).count();
    let unexpected: Vec<u16> = (seen.statuses.iter().copied())
        .filter(|s| ![200, 400, 401, 503].contains(s))
        .take(10)
        .collect();
    assert!(unexpected.is_empty(), "answers {unexpected:?}");
    let mut codes_lost = 0;
    for (email, code) in &seen.codes {
        if s.verify_otp(email, code).await.status == 200 {
            codes_lost += 1;
        }
    }
    let mut revocations_lost = 0;
    for token in &seen.revoked {
        if s.protected(Some(token)).await.status == 200 {
            revocations_lost += 1;
        }
    }
    eprintln!(
        "Sentinel, fred, REDIS_MIN_REPLICAS_ACK={replicas_ack}: master {first} killed; replica \
         promoted after {promoted_after:?}, logins again after {back:?}; master at the end \
         {master_now}; {} requests: {} × 200, \
         {} × 503, {} × 400, {} × 401; {} consumed codes, {codes_lost} usable again; {} \
         revocations, {revocations_lost} lost",
        seen.statuses.len(),
        count(200),
        count(503),
        count(400),
        count(401),
        seen.codes.len(),
        seen.revoked.len(),
    );
    assert!(seen.codes.len() > 10, "logins ran during the test");
    assert!(count(503) > 0, "the switch was seen as 503s");
    if replicas_ack > 0 {
        assert_eq!(codes_lost, 0, "consumed codes usable again");
        assert_eq!(revocations_lost, 0, "revocations lost");
    }
    drop(group);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn sentinel_failover_during_logins_fred() {
    sentinel_failover(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn sentinel_failover_during_logins_with_replica_acks_fred() {
    sentinel_failover(1).await;
}

/// With `OTP_AUTH_REDIS_MIN_REPLICAS_ACK=1` on a server without replicas, a write that must
/// not be lost is never reported done: verify-otp, refresh and logout answer 503, while
/// requesting a code (not such a write) works; with 0 everything works.
async fn replica_acks_required(store: Store) {
    let redis = RedisProcess::start();
    let plain = Backends::for_url(store, &redis.url(), TIMEOUT, KeyLayout::new("a_", "ab_")).await;
    let plain = TestServer::start_with(Adapter::Axum, config(), plain).await;
    let session = plain.login("acks@example.com").await;
    let acked =
        Backends::for_url_acked(store, &redis.url(), TIMEOUT, KeyLayout::new("a_", "ab_"), 1).await;
    let acked = TestServer::start_with(Adapter::Axum, config(), acked).await;
    assert_eq!(acked.request_otp("acks2@example.com").await.status, 200);
    let code = acked.mailer.last_code("acks2@example.com").unwrap();
    let r = acked.verify_otp("acks2@example.com", &code).await;
    let p = r.assert_problem(503);
    assert!(
        !p.to_string().contains("replicas"),
        "no internals in the body: {p}"
    );
    acked
        .refresh(Some(&session.refresh))
        .await
        .assert_problem(503);
    // The protected route reads only: it works.
    assert_eq!(acked.protected(Some(&session.access)).await.status, 200);
    // Logout revokes: 503 too (the revocation reached the master; nobody was told).
    let r = acked
        .send(
            acked
                .http
                .post(acked.url("/auth/logout"))
                .bearer_auth(&session.access)
                .header("cookie", format!("refresh_token={}", session.refresh)),
        )
        .await;
    r.assert_problem(503);
    // With 0 every one of those writes works.
    let other = plain.login("acks3@example.com").await;
    let r = plain.refresh(Some(&other.refresh)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = plain
        .send(
            plain
                .http
                .post(plain.url("/auth/logout"))
                .bearer_auth(&other.access),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    plain
        .protected(Some(&other.access))
        .await
        .assert_problem(401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn replica_acks_required_redis() {
    replica_acks_required(Store::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn replica_acks_required_fred() {
    replica_acks_required(Store::Fred).await;
}
