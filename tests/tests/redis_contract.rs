//! The backend contract against real Redis, through both clients (otp-redis and
//! otp-fred): a single server and a 3-master cluster, both started by `cargo xtask test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use otp_core::store::scripted::{KeyLayout, ScriptRunner, ScriptedStore};
use otp_core::store::{OtpStore, TokenBlacklist};

/// The store of `runner`, with the default key layout.
fn store<R: ScriptRunner>(runner: R) -> Arc<ScriptedStore<R>> {
    Arc::new(ScriptedStore::new(
        runner,
        KeyLayout::new("otp_", "blacklist_"),
    ))
}

/// An outbox of its own (keys under a fresh prefix) on `runner`.
fn outbox<R: ScriptRunner>(runner: R) -> Arc<dyn otp_core::outbox::Outbox> {
    let prefix = format!(
        "o{}_",
        otp_core::store::random_id().replace(['-', '_'], "x")
    );
    Arc::new(ScriptedStore::new(runner, KeyLayout::new(&prefix, "ob_")))
}

/// The same store as both halves of a login, as an application builds it.
fn pair<R: ScriptRunner>(runner: R) -> (Arc<dyn OtpStore>, Arc<dyn TokenBlacklist>) {
    let s = store(runner);
    (s.clone(), s)
}

async fn redis(var: &str) -> otp_redis::RedisRunner {
    otp_redis::RedisRunner::connect(&otp_tests::server(var), Duration::from_secs(2))
        .await
        .expect("connects to the test server")
}

async fn fred(var: &str) -> otp_fred::FredRunner {
    otp_fred::FredRunner::connect(&otp_tests::server(var), Duration::from_secs(2), 2)
        .await
        .expect("creates the pool")
}

/// The four suites for one client on one server.
macro_rules! suites {
    ($(#[$attr:meta])* $module:ident, $connect:ident, $var:literal) => {
        mod $module {
            use super::*;
            otp_core::contract::otp_store_contract!($(#[$attr])* otp, async { store($connect($var).await) });
            otp_core::contract::blacklist_contract!($(#[$attr])* blacklist, async { store($connect($var).await) });
            otp_core::contract::login_contract!($(#[$attr])* login, async { pair($connect($var).await) });
            otp_core::contract::outbox_contract!($(#[$attr])* outbox, async { outbox($connect($var).await) });
        }
    };
}

suites!(
    #[cfg_attr(
        not(otp_test_redis),
        ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
    )]
    redis_single,
    redis,
    "OTP_TEST_REDIS_URL"
);
suites!(
    #[cfg_attr(
        not(otp_test_cluster),
        ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
    )]
    redis_cluster,
    redis,
    "OTP_TEST_REDIS_CLUSTER_URL"
);
suites!(
    #[cfg_attr(
        not(otp_test_redis),
        ignore = "needs a Redis server at OTP_TEST_REDIS_URL: run `cargo xtask test`"
    )]
    fred_single,
    fred,
    "OTP_TEST_REDIS_URL"
);
suites!(
    #[cfg_attr(
        not(otp_test_cluster),
        ignore = "needs a Redis Cluster at OTP_TEST_REDIS_CLUSTER_URL: run `cargo xtask test`"
    )]
    fred_cluster,
    fred,
    "OTP_TEST_REDIS_CLUSTER_URL"
);
