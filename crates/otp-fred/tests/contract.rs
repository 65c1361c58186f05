//! The backend contract against real Redis: a single server and a 3-master cluster, both
//! started by `cargo xtask test`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use otp_core::contract::test_server;
use otp_core::scripted::{KeyLayout, ScriptedStore};
use otp_fred::{FredRunner, FredStore};

async fn store(var: &str) -> Option<Arc<FredStore>> {
    let url = test_server(var)?;
    let runner = FredRunner::connect(&url, Duration::from_secs(2), 2)
        .await
        .expect("creates the pool");
    Some(Arc::new(ScriptedStore::new(
        runner,
        KeyLayout::new("otp_", "blacklist_"),
    )))
}

otp_core::otp_store_contract!(single_otp, store("OTP_TEST_REDIS_URL"));
otp_core::blacklist_contract!(single_blacklist, store("OTP_TEST_REDIS_URL"));
otp_core::otp_store_contract!(cluster_otp, store("OTP_TEST_REDIS_CLUSTER_URL"));
otp_core::blacklist_contract!(cluster_blacklist, store("OTP_TEST_REDIS_CLUSTER_URL"));

/// The same store as both halves of a login, as an application builds it.
async fn login_pair(
    var: &str,
) -> Option<(
    Arc<dyn otp_core::OtpStore>,
    Arc<dyn otp_core::TokenBlacklist>,
)> {
    let s = store(var).await?;
    Some((s.clone(), s))
}

otp_core::login_contract!(single_login, login_pair("OTP_TEST_REDIS_URL"));
otp_core::login_contract!(cluster_login, login_pair("OTP_TEST_REDIS_CLUSTER_URL"));
