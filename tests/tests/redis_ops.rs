//! Against a Redis of the test's own: store round trips per operation (`INFO
//! commandstats`), memory per pending login and per live session (`MEMORY USAGE`), what the
//! keys hold, and a restart of Redis under a running engine.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use otp_core::store::TokenBlacklist;
use otp_core::store::scripted::{KeyLayout, ScriptedStore};
use otp_core::{ClientInfo, Error, OtpAuth, mailer::CapturingMailer};
use otp_tests::redis_proc::RedisProcess;
use otp_tests::test_config;

#[derive(Debug, Clone, Copy)]
enum Backend {
    Redis,
    Fred,
}

async fn engine(backend: Backend, url: &str, mailer: &CapturingMailer) -> OtpAuth {
    engine_with(backend, url, mailer, None).await
}

/// [`engine`] with the examples' user directory as hooks, when given.
async fn engine_with(
    backend: Backend,
    url: &str,
    mailer: &CapturingMailer,
    hooks: Option<example_common::ExampleHooks>,
) -> OtpAuth {
    let timeout = Duration::from_millis(500);
    let keys = KeyLayout::new("otp_", "blacklist_");
    // One value for both stores, as an application gives it: verify-otp is then one
    // script on a single server.
    let builder = OtpAuth::builder(test_config()).mailer(mailer.clone());
    let builder = match backend {
        Backend::Redis => builder.stores(ScriptedStore::new(
            otp_redis::RedisRunner::connect(url, timeout).await.unwrap(),
            keys,
        )),
        Backend::Fred => builder.stores(ScriptedStore::new(
            otp_fred::FredRunner::connect(url, timeout, 2)
                .await
                .unwrap(),
            keys,
        )),
    };
    match hooks {
        Some(h) => builder.hooks(h),
        None => builder,
    }
    .build()
    .unwrap()
}

/// The access checks (plain `EXISTS`) among `calls`.
fn plain(calls: &[(String, u64)]) -> u64 {
    calls
        .iter()
        .filter(|(n, _)| n == "exists")
        .map(|(_, k)| k)
        .sum()
}

/// Round trips of an email change, the second one (the first loads the scripts).
async fn email_change_round_trips(backend: Backend) {
    let r = RedisProcess::start();
    let mailer = CapturingMailer::new();
    let hooks = example_common::ExampleHooks::new::<&str>([]);
    let auth = engine_with(backend, &r.url(), &mailer, Some(hooks)).await;
    let mut access = {
        auth.request_code("a@example.com", &client()).await.unwrap();
        let code = mailer.last_code("a@example.com").unwrap();
        let pair = auth
            .verify_code("a@example.com", &code, &client())
            .await
            .unwrap();
        pair.access_token
    };
    for (round, to) in ["b@example.com", "c@example.com"].into_iter().enumerate() {
        let c = count(&r, async {
            auth.email_change()
                .request(&access, to, &client())
                .await
                .unwrap();
        })
        .await;
        if round == 1 {
            assert_eq!(
                (plain(&c), total(&c)),
                (1, 1),
                "change-email: the access check, then the code in one script: {c:?}"
            );
        }
        let code = mailer.last_code(to).unwrap();
        let mut moved = None;
        let c = count(&r, async {
            moved = Some(
                auth.email_change()
                    .verify(&access, to, &code, &client())
                    .await
                    .unwrap(),
            );
        })
        .await;
        if round == 1 {
            // (The access check is a plain EXISTS; the scripts run EXISTS inside too, so it
            // is not told apart here.)
            assert_eq!(
                total(&c),
                5,
                "verify-email-change: after the access check, the code, the user's sessions \
                 (their index, then their end), the old address's known devices forgotten, \
                 the new session: {c:?}"
            );
        }
        access = moved.unwrap().access_token;
    }
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn round_trips_per_email_change_redis() {
    email_change_round_trips(Backend::Redis).await;
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn round_trips_per_email_change_fred() {
    email_change_round_trips(Backend::Fred).await;
}

fn client() -> ClientInfo {
    ClientInfo {
        ip: Some("198.51.100.20".parse().unwrap()),
        user_agent: Some("ops-test".into()),
        ..ClientInfo::default()
    }
}

/// Runs `op` after a reset of the statistics; returns the commands Redis executed.
async fn count<F: std::future::Future<Output = ()>>(r: &RedisProcess, op: F) -> Vec<(String, u64)> {
    r.reset_stats();
    op.await;
    r.command_calls()
}

/// Scripts sent by the client. (`INFO commandstats` also counts the commands a script runs
/// inside the server; those are not round trips. The access check, the one plain command,
/// is counted on its own below.)
fn total(calls: &[(String, u64)]) -> u64 {
    calls
        .iter()
        .filter(|(n, _)| {
            n == "evalsha" || n == "eval" || n.starts_with("script") || n.starts_with("fcall")
        })
        .map(|(_, n)| n)
        .sum()
}

async fn round_trips(backend: Backend) {
    let r = RedisProcess::start();
    let mailer = CapturingMailer::new();
    let auth = engine(backend, &r.url(), &mailer).await;
    // Warm up: load every script once, so NOSCRIPT reloads do not count below.
    auth.request_code("warm-no-ip@example.com", &ClientInfo::default())
        .await
        .unwrap();
    auth.request_code("warm@example.com", &client())
        .await
        .unwrap();
    let code = mailer.last_code("warm@example.com").unwrap();
    let warm = auth
        .verify_code("warm@example.com", &code, &client())
        .await
        .unwrap();
    auth.authenticate(&warm.access_token).await.unwrap();
    auth.step_up()
        .request(&warm.access_token, &client())
        .await
        .unwrap();
    let code = mailer.last_code("warm@example.com").unwrap();
    auth.step_up()
        .verify(&warm.access_token, &code, &client())
        .await
        .unwrap();
    let warm2 = auth
        .refresh(&warm.refresh_token, &ClientInfo::default())
        .await
        .unwrap();
    auth.logout(
        Some(&warm2.access_token),
        Some(&warm2.refresh_token),
        &ClientInfo::default(),
    )
    .await
    .unwrap();

    let c = count(&r, async {
        auth.request_code("ops@example.com", &client())
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        total(&c),
        1,
        "request-otp with a client IP (IP bucket + address in one script): {c:?}"
    );
    let c = count(&r, async {
        auth.request_code("ops2@example.com", &ClientInfo::default())
            .await
            .unwrap();
    })
    .await;
    assert_eq!(total(&c), 1, "request-otp without a client IP: {c:?}");
    let code = mailer.last_code("ops@example.com").unwrap();
    let mut pair = None;
    let c = count(&r, async {
        pair = Some(
            auth.verify_code("ops@example.com", &code, &client())
                .await
                .unwrap(),
        );
    })
    .await;
    assert_eq!(
        total(&c),
        1,
        "verify-otp (the code checked and the session opened in one script): {c:?}"
    );
    let pair = pair.unwrap();
    let c = count(&r, async {
        auth.authenticate(&pair.access_token).await.unwrap();
    })
    .await;
    assert_eq!(
        (total(&c), c.iter().map(|(_, k)| k).sum::<u64>()),
        (0, 1),
        "an authenticated request is one plain command and no script: {c:?}"
    );
    assert!(
        c.iter().any(|(n, k)| n == "exists" && *k == 1),
        "the access check is one plain EXISTS: {c:?}"
    );
    let mut next = None;
    let c = count(&r, async {
        next = Some(
            auth.refresh(&pair.refresh_token, &ClientInfo::default())
                .await
                .unwrap(),
        );
    })
    .await;
    assert_eq!(total(&c), 1, "refresh: {c:?}");
    let next = next.unwrap();
    let c = count(&r, async {
        auth.step_up()
            .request(&next.access_token, &client())
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        (plain(&c), total(&c)),
        (1, 1),
        "reauthenticate: the access check, then the code in one script: {c:?}"
    );
    let code = mailer.last_code("ops@example.com").unwrap();
    let c = count(&r, async {
        auth.step_up()
            .verify(&next.access_token, &code, &client())
            .await
            .unwrap();
    })
    .await;
    assert_eq!(
        (plain(&c), total(&c)),
        (1, 2),
        "verify-reauthentication: the access check, the code, the session's renewal: {c:?}"
    );
    let c = count(&r, async {
        auth.logout(
            Some(&next.access_token),
            Some(&next.refresh_token),
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    })
    .await;
    assert_eq!(total(&c), 1, "logout: {c:?}");
    assert!(c.iter().any(|(n, _)| n == "evalsha"), "script calls: {c:?}");
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn round_trips_per_operation_redis() {
    round_trips(Backend::Redis).await;
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn round_trips_per_operation_fred() {
    round_trips(Backend::Fred).await;
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn one_small_key_per_pending_login_holding_no_address_or_code() {
    let r = RedisProcess::start();
    let mailer = CapturingMailer::new();
    let auth = engine(Backend::Redis, &r.url(), &mailer).await;
    auth.request_code("Someone.Private@Example.com", &ClientInfo::default())
        .await
        .unwrap();
    let code = mailer.last_code("someone.private@example.com").unwrap();
    let keys: Vec<String> = r.cli(&["--scan"]).lines().map(str::to_owned).collect();
    assert_eq!(keys.len(), 1, "one key per pending login: {keys:?}");
    let key = &keys[0];
    assert!(key.starts_with("otp_{") && key.ends_with('}'), "{key}");
    assert!(!key.to_lowercase().contains("someone"), "{key}");
    let bytes: u64 = r.cli(&["memory", "usage", key]).trim().parse().unwrap();
    eprintln!("MEMORY USAGE of a pending login: {bytes} bytes");
    // The code's MAC and expiry, the minute, hour and day windows and the last call's id.
    assert!(bytes <= 192, "a pending login takes {bytes} bytes");
    let dump = r.cli(&["hgetall", key]);
    assert!(!dump.to_lowercase().contains("someone"), "{dump}");
    assert!(
        !dump.lines().any(|l| l.trim() == code),
        "the code is stored in clear: {dump}"
    );
    let ttl: i64 = r.cli(&["pttl", key]).trim().parse().unwrap();
    // The day window of the daily cap is what keeps it longest.
    assert!(ttl > 0 && ttl <= 86_400_000, "every key expires: {ttl}");

    // Four more browsers ask (four more flows in the same hash): each flow's own share.
    let other = "other.private@example.com";
    for _ in 0..5 {
        auth.request_code(other, &ClientInfo::default())
            .await
            .unwrap();
    }
    let keys: Vec<String> = r.cli(&["--scan"]).lines().map(str::to_owned).collect();
    let other_key = keys.iter().find(|k| *k != key).unwrap();
    let five: u64 = r
        .cli(&["memory", "usage", other_key])
        .trim()
        .parse()
        .unwrap();
    let one = bytes;
    let per_flow = (five - one) / 4;
    eprintln!(
        "MEMORY USAGE of 5 pending flows of one address: {five} bytes ({} each; each flow \
         past the first {per_flow})",
        five / 5
    );
    assert!(five / 5 <= 192, "a pending flow takes {} bytes", five / 5);
    assert!(per_flow <= 64, "each further flow takes {per_flow} bytes");
    let fields: Vec<String> = r
        .cli(&["hkeys", other_key])
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        fields
            .iter()
            .filter(|f| f.starts_with('f') && f.len() == 13)
            .count(),
        5,
        "one field per flow: {fields:?}"
    );

    // A live session: its hash and its share of the subject's index.
    auth.verify_code("someone.private@example.com", &code, &ClientInfo::default())
        .await
        .unwrap();
    let keys: Vec<String> = r.cli(&["--scan"]).lines().map(str::to_owned).collect();
    let usage = |k: &str| -> u64 { r.cli(&["memory", "usage", k]).trim().parse().unwrap() };
    let session = keys.iter().find(|k| k.contains(":s:")).unwrap();
    let index = keys.iter().find(|k| k.ends_with(":u")).unwrap();
    eprintln!(
        "MEMORY USAGE of a session: {} bytes (hash) + {} bytes (index of one)",
        usage(session),
        usage(index)
    );
    for k in [session, index] {
        let ttl: i64 = r.cli(&["pttl", k]).trim().parse().unwrap();
        assert!(ttl > 0, "{k} expires");
    }
}

/// Redis bytes per live session: each session's key plus its share of the subject's
/// index, every session refreshed once (so the parent kept for the reuse interval is in
/// place), `subjects` users with `each` sessions, the given client.
async fn bytes_per_session(
    r: &RedisProcess,
    subjects: usize,
    each: usize,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> u64 {
    r.cli(&["flushall"]);
    let store = ScriptedStore::new(
        otp_redis::RedisRunner::connect(&r.url(), Duration::from_millis(500))
            .await
            .unwrap(),
        KeyLayout::new("otp_", "blacklist_"),
    );
    let exp = otp_core::store::now_secs() + 7 * 86_400;
    let auth = otp_core::store::SessionAuth {
        at: otp_core::store::now_secs(),
        method: otp_core::store::LoginMethod::Code,
    };
    for u in 0..subjects {
        // A subject key as the engine makes it: 22 characters of a keyed hash.
        let subject_key = format!("{u:0>22}");
        for _ in 0..each {
            let sid = otp_core::store::new_session_id(&subject_key);
            let first = otp_core::store::random_id();
            let mut s = otp_core::store::NewSession {
                sid: sid.clone(),
                subject_key: subject_key.clone(),
                refresh_jti: first.clone(),
                expires_at: exp,
                user_agent: user_agent.map(str::to_owned),
                ip: ip.map(str::to_owned),
                max_sessions: 1000,
                auth,
            };
            store.create_session(&s).await.unwrap();
            s.refresh_jti = otp_core::store::random_id();
            let rot = otp_core::store::Rotation {
                sid,
                presented_jti: first,
                new_jti: s.refresh_jti.clone(),
                new_expires_at: exp,
                reuse_interval: Duration::from_secs(10),
            };
            let out = store.rotate_refresh(&rot).await.unwrap();
            assert_eq!(out, otp_core::store::RotateOutcome::Rotated { auth });
        }
    }
    let keys: Vec<String> = r.cli(&["--scan"]).lines().map(str::to_owned).collect();
    assert_eq!(
        keys.len(),
        subjects * (each + 1),
        "a key per session and per index"
    );
    let total: u64 = keys
        .iter()
        .map(|k| {
            r.cli(&["memory", "usage", k])
                .trim()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    total / (subjects * each) as u64
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn a_live_session_takes_at_most_300_bytes_with_its_index() {
    let r = RedisProcess::start();
    const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      Chrome/131.0.0.0 Safari/537.36";
    let ip = Some("203.0.113.77");
    let mut rows = Vec::new();
    for (subjects, each, ip, ua, label) in [
        (1, 1, None, None, "1 user x 1 session, no IP or user agent"),
        (1, 1, ip, None, "1 user x 1 session, IPv4"),
        (50, 1, ip, None, "50 users x 1 session, IPv4"),
        (
            10,
            20,
            ip,
            None,
            "10 users x 20 sessions (the default cap), IPv4",
        ),
        (
            1,
            1000,
            ip,
            None,
            "1 user x 1000 sessions (the largest cap), IPv4",
        ),
        (
            50,
            1,
            ip,
            Some(UA),
            "50 users x 1 session, IPv4, a 111-byte user agent",
        ),
    ] {
        let bytes = bytes_per_session(&r, subjects, each, ip, ua).await;
        eprintln!("MEMORY USAGE per live session, {label}: {bytes} bytes");
        rows.push((label, ua.is_some(), bytes));
    }
    for (label, with_ua, bytes) in rows {
        // The user agent is the client's to choose (at most 256 bytes): its length comes
        // on top, rounded up to the allocator's size class (32 bytes apart here).
        let limit = if with_ua {
            300 + UA.len().next_multiple_of(32) as u64
        } else {
            300
        };
        assert!(bytes <= limit, "{label}: {bytes} bytes per session");
    }
}

async fn restart(backend: Backend) {
    let mut r = RedisProcess::start();
    let mailer = CapturingMailer::new();
    let auth = engine(backend, &r.url(), &mailer).await;
    auth.request_code("before@example.com", &client())
        .await
        .unwrap();
    let code = mailer.last_code("before@example.com").unwrap();
    let pair = auth
        .verify_code("before@example.com", &code, &client())
        .await
        .unwrap();

    r.stop();
    let started = Instant::now();
    let e = auth
        .request_code("during@example.com", &client())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::StoreUnavailable(_)), "{e:?}");
    // Protected routes fail closed, not open.
    let e = auth.authenticate(&pair.access_token).await.unwrap_err();
    assert_eq!(e.status(), 503, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "no hang: {:?}",
        started.elapsed()
    );

    r.restart();
    let back = Instant::now();
    loop {
        match auth.request_code("after@example.com", &client()).await {
            Ok(_) => break,
            Err(e) => {
                assert!(
                    back.elapsed() < Duration::from_secs(15),
                    "no recovery: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    eprintln!(
        "{backend:?}: recovered {:?} after Redis returned",
        back.elapsed()
    );
    let code = mailer.last_code("after@example.com").unwrap();
    auth.verify_code("after@example.com", &code, &client())
        .await
        .unwrap();
    // The restarted Redis is empty (no persistence here): the old session is gone, and
    // its token is refused rather than waved through.
    let e = auth.authenticate(&pair.access_token).await.unwrap_err();
    assert_eq!(e.status(), 401);
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn redis_restart_gives_503_then_recovers_redis() {
    restart(Backend::Redis).await;
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn redis_restart_gives_503_then_recovers_fred() {
    restart(Backend::Fred).await;
}

/// Every store script, as composed from `crates/otp-core/src/lua/`, compiles in Redis.
#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn every_script_compiles_in_redis() {
    let r = RedisProcess::start();
    for script in otp_core::store::scripted::SCRIPTS {
        let sha = r.cli(&["script", "load", script.source]);
        assert_eq!(sha.trim().len(), 40, "{}: {sha}", script.name);
    }
}

/// Log lines written while `f` runs on this thread.
async fn logged<F: std::future::Future<Output = T>, T>(f: F) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);
    let out = f.await;
    drop(guard);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

/// Connects `backend` to `url` with `require_noeviction`; the error message, if it
/// refused, and the log.
async fn connect_logged(backend: Backend, url: &str, require: bool) -> (Option<String>, String) {
    let mut config = test_config();
    config.redis.url = url.to_owned();
    config.redis.require_noeviction = require;
    logged(async {
        match backend {
            Backend::Redis => otp_redis::connect(&config)
                .await
                .err()
                .map(|e| e.to_string()),
            Backend::Fred => otp_fred::connect(&config)
                .await
                .err()
                .map(|e| e.to_string()),
        }
    })
    .await
}

/// A Redis that may evict (`maxmemory` with `volatile-lru`, a managed Redis's usual
/// default) is named at start: an error line naming `noeviction`, or a refusal with
/// `OTP_AUTH_REDIS_REQUIRE_NOEVICTION=true`; `noeviction`, or no `maxmemory`, is silent.
async fn evicting_redis_is_named_at_start(backend: Backend) {
    let redis =
        RedisProcess::start_with(&["--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru"]);
    let (refused, log) = connect_logged(backend, &redis.url(), false).await;
    assert_eq!(refused, None, "{backend:?}");
    let line = log
        .lines()
        .find(|l| l.contains("Redis may evict keys"))
        .unwrap_or_else(|| panic!("{backend:?}: no eviction error in {log}"));
    assert!(line.contains("ERROR"), "{line}");
    assert!(
        line.contains("volatile-lru") && line.contains("noeviction"),
        "{line}"
    );
    assert!(line.contains("OTP_AUTH_REDIS_REQUIRE_NOEVICTION"), "{line}");

    let (refused, _) = connect_logged(backend, &redis.url(), true).await;
    let refused = refused.unwrap_or_else(|| panic!("{backend:?}: started anyway"));
    assert!(
        refused.contains("OTP_AUTH_REDIS_REQUIRE_NOEVICTION") && refused.contains("noeviction"),
        "{refused}"
    );

    for settings in [["maxmemory-policy", "noeviction"], ["maxmemory", "0"]] {
        if settings[0] == "maxmemory" {
            redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
        }
        redis.cli(&["CONFIG", "SET", settings[0], settings[1]]);
        let (refused, log) = connect_logged(backend, &redis.url(), true).await;
        assert_eq!(refused, None, "{backend:?} {settings:?}");
        assert!(!log.contains("evict"), "{backend:?} {settings:?}: {log}");
    }
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn evicting_redis_is_named_at_start_redis() {
    evicting_redis_is_named_at_start(Backend::Redis).await;
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn evicting_redis_is_named_at_start_fred() {
    evicting_redis_is_named_at_start(Backend::Fred).await;
}

/// On a cluster every master is asked: one evicting master of three is found by both
/// backends, every time.
#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn one_evicting_master_of_a_cluster_is_named_at_start() {
    let cluster = otp_tests::redis_proc::RedisCluster::create(0);
    cluster.wait_ok();
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    for port in masters {
        let node = cluster.nodes.iter().find(|n| n.port == port).unwrap();
        node.cli(&["CONFIG", "SET", "maxmemory", "64mb"]);
        node.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
        for backend in [Backend::Redis, Backend::Fred] {
            let (refused, _) = connect_logged(backend, &cluster.url(), true).await;
            let refused = refused.unwrap_or_else(|| panic!("{backend:?}: master {port} missed"));
            assert!(refused.contains("allkeys-lru"), "{refused}");
        }
        node.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    }
    // Each server decides for its own keys: a policy that would evict on a master without
    // a limit, beside masters with a limit that never evict, evicts nothing.
    let first = cluster.masters()[0];
    let node = cluster.nodes.iter().find(|n| n.port == first).unwrap();
    node.cli(&["CONFIG", "SET", "maxmemory", "0"]);
    node.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    for backend in [Backend::Redis, Backend::Fred] {
        let (refused, log) = connect_logged(backend, &cluster.url(), true).await;
        assert_eq!(refused, None, "{backend:?}: {log}");
        assert!(!log.contains("evict"), "{backend:?}: {log}");
    }
}
