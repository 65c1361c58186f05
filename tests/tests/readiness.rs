//! `OtpAuth::check`: the store and the mail server asked at start-up, for real: a Redis
//! (both clients) and an SMTP server of the test's own, each up, down, and back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use otp_core::store::StoreError;
use otp_core::{Config, OtpAuth, mailer::CapturingMailer, mailer::MailError};
use otp_smtp::SmtpMailer;
use otp_tests::redis_proc::RedisProcess;
use otp_tests::smtp_server::{Behaviour, SmtpServer};
use otp_tests::test_config;

fn redis_config(url: &str) -> Config {
    let mut c = test_config();
    c.redis.url = url.to_owned();
    c.redis.timeout_ms = 500;
    c
}

async fn redis_engine(fred: bool, url: &str) -> OtpAuth {
    let config = redis_config(url);
    let builder = OtpAuth::builder(redis_config(url));
    let builder = if fred {
        builder.stores(otp_fred::connect(&config).await.unwrap())
    } else {
        builder.stores(otp_redis::connect(&config).await.unwrap())
    };
    builder.mailer(CapturingMailer::new()).build().unwrap()
}

async fn store_up_down_and_back(fred: bool) {
    let mut r = RedisProcess::start();
    let auth = redis_engine(fred, &r.url()).await;
    let ready = auth.check().await;
    assert!(ready.is_ready(), "{ready}");
    r.stop();
    let down = auth.check().await;
    assert!(
        matches!(down.store, Err(StoreError::Unavailable(_))),
        "{down}"
    );
    // Named by its variable and address.
    let text = down.to_string();
    assert!(
        text.contains(&format!("OTP_AUTH_REDIS_URL={}", r.url())),
        "{text}"
    );
    assert!(down.mail.is_ok(), "{down}");
    r.restart();
    let mut back = auth.check().await;
    for _ in 0..50 {
        if back.is_ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        back = auth.check().await;
    }
    assert!(back.is_ready(), "recovers by itself: {back}");
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn redis_store_up_down_and_back() {
    store_up_down_and_back(false).await;
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn fred_store_up_down_and_back() {
    store_up_down_and_back(true).await;
}

#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn a_database_index_the_server_lacks_is_not_ready() {
    let r = RedisProcess::start();
    let url = format!("{}/99", r.url());
    for fred in [false, true] {
        let config = redis_config(&url);
        let store: Result<Box<dyn std::fmt::Debug>, String> = if fred {
            otp_fred::connect(&config)
                .await
                .map(|s| Box::new(s) as _)
                .map_err(|e| e.to_string())
        } else {
            otp_redis::connect(&config)
                .await
                .map(|s| Box::new(s) as _)
                .map_err(|e| e.to_string())
        };
        match store {
            // Refused at connect: the error says why.
            Err(e) => assert!(e.to_ascii_lowercase().contains("db"), "fred={fred}: {e}"),
            // Or connected lazily: then the check is not ready.
            Ok(_) => {
                let auth = redis_engine(fred, &url).await;
                let ready = auth.check().await;
                assert!(ready.store.is_err(), "fred={fred}: {ready}");
                // redis-rs passes Redis' own reason on; fred retries the SELECT until its
                // timeout: the answer names the database index the address selects.
                let text = ready.to_string().to_ascii_lowercase();
                assert!(text.contains("database 99"), "fred={fred}: {ready}");
                if !fred {
                    assert!(text.contains("db"), "{ready}");
                }
            }
        }
    }
}

#[tokio::test]
async fn mail_server_up_and_down() {
    let server = SmtpServer::start(Behaviour::Accept).await;
    let mut config = test_config();
    config.smtp.server = "127.0.0.1".into();
    config.smtp.port = server.port;
    config.smtp.timeout_ms = 400;
    let auth = OtpAuth::builder(config.clone())
        .stores(otp_core::store::MemoryStore::new())
        .mailer(SmtpMailer::from_config(&config).unwrap())
        .build()
        .unwrap();
    let ready = auth.check().await;
    assert!(ready.is_ready(), "{ready}");
    assert!(server.received().is_empty(), "the check sends no mail");
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    config.smtp.port = closed.local_addr().unwrap().port();
    drop(closed);
    let auth = OtpAuth::builder(config.clone())
        .stores(otp_core::store::MemoryStore::new())
        .mailer(SmtpMailer::from_config(&config).unwrap())
        .build()
        .unwrap();
    let down = auth.check().await;
    assert!(matches!(down.mail, Err(MailError::Transient(_))), "{down}");
    let text = down.to_string();
    assert!(
        text.contains(&format!(
            "127.0.0.1:{} none (OTP_AUTH_SMTP_SERVER/OTP_AUTH_SMTP_PORT/OTP_AUTH_SMTP_TLS): connecting",
            config.smtp.port
        )),
        "{text}"
    );
    // Implicit TLS on a port that is not 465: the hint.
    config.smtp.tls = Some(otp_core::config::SmtpTls::Tls);
    let auth = OtpAuth::builder(config.clone())
        .stores(otp_core::store::MemoryStore::new())
        .mailer(SmtpMailer::from_config(&config).unwrap())
        .build()
        .unwrap();
    let text = auth.check().await.to_string();
    assert!(text.contains("does the server want starttls?"), "{text}");
}

/// A cluster that no longer serves every slot (a master without a replica killed) is not
/// ready, and says so (`cluster_state:fail`, read with `CLUSTER INFO` from the node of the
/// probe's slot) rather than only that its commands time out (CLUSTERDOWN, retried).
#[tokio::test]
#[cfg_attr(
    not(otp_test_redis_bin),
    ignore = "needs redis-server and redis-cli (OTP_TEST_REDIS_SERVER_BIN, OTP_TEST_REDIS_CLI_BIN): run `cargo xtask test`"
)]
async fn a_cluster_with_uncovered_slots_is_not_ready() {
    use otp_core::store::AddressKey;
    use otp_core::store::scripted::KeyLayout;
    use otp_tests::redis_proc::RedisCluster;
    let mut cluster = tokio::task::spawn_blocking(|| {
        let c = RedisCluster::create(0);
        c.wait_ok();
        c
    })
    .await
    .unwrap();
    let url = cluster.url();
    let redis = redis_engine(false, &url).await;
    let fred = redis_engine(true, &url).await;
    for auth in [&redis, &fred] {
        let ready = auth.check().await;
        assert!(ready.store.is_ok(), "{ready}");
    }
    // Kill a master that does not hold the probe's slot.
    let probe = KeyLayout::from_config(&redis_config(&url)).address(&AddressKey::probe());
    let victim = (cluster.nodes.iter())
        .position(|n| n.cli(&["get", &probe]).contains("MOVED"))
        .unwrap();
    cluster.nodes[victim].stop();
    let cluster = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !(cluster.nodes.iter().filter(|n| n.running()))
            .all(|n| n.cli(&["cluster", "info"]).contains("cluster_state:fail"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster did not fail"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    })
    .await
    .unwrap();
    let ready = redis.check().await.to_string();
    assert!(ready.contains("cluster_state:fail"), "{ready}");
    assert!(ready.contains("OTP_AUTH_REDIS_URL"), "{ready}");
    // fred holds every command, `CLUSTER INFO` to a live node too, while it reconnects to
    // a cluster that lost a node: not ready, but for the reason of a timeout only.
    let ready = fred.check().await;
    assert!(ready.store.is_err(), "{ready}");
    assert!(ready.to_string().contains("OTP_AUTH_REDIS_URL"), "{ready}");
    drop(cluster);
}

/// An address that is not a Redis address is refused at connect by both clients, naming
/// the variable (and never the password).
#[tokio::test]
async fn a_bad_redis_address_names_the_variable() {
    for url in ["http://user:hunter2@localhost:6379", "localhost:6379"] {
        let config = redis_config(url);
        let redis = otp_redis::connect(&config)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        let fred = otp_fred::connect(&config)
            .await
            .map(|_| ())
            .unwrap_err()
            .to_string();
        for (name, e) in [("redis", redis), ("fred", fred)] {
            assert!(e.contains("OTP_AUTH_REDIS_URL"), "{name} {url}: {e}");
            assert!(!e.contains("hunter2"), "{name} {url}: {e}");
        }
    }
}
