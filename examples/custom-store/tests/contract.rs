//! The backend contract suite of `otp-core` against [`SqliteStore`], each test on its own
//! in-memory database. No server needed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use custom_store_example::SqliteStore;

otp_core::contract::otp_store_contract!(sqlite_otp, async {
    Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap())
});

otp_core::contract::blacklist_contract!(sqlite_blacklist, async {
    Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap())
});

otp_core::contract::login_contract!(sqlite_login, async {
    let store = Arc::new(SqliteStore::connect("sqlite::memory:").await.unwrap());
    (
        store.clone() as Arc<dyn otp_core::store::OtpStore>,
        store as Arc<dyn otp_core::store::TokenBlacklist>,
    )
});
