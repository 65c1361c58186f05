//! What the contract suite does not see: expired rows are deleted, and a file database
//! keeps its state across reconnects and holds no plain address.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use custom_store_example::SqliteStore;
use otp_core::contract::{Fixture, limits, random_ip};
use otp_core::store::{
    Limits, LoginMethod, NewSession, Revocation, RevokedAccess, SessionAuth, new_session_id,
};
use otp_core::store::{OtpStore, TokenBlacklist};
use otp_core::store::{now_secs, random_id};

async fn rows(store: &SqliteStore) -> i64 {
    let mut n = 0;
    for table in ["otp_address", "otp_ip", "otp_session", "otp_revoked_access"] {
        let c: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(store.pool())
            .await
            .unwrap();
        n += c;
    }
    n
}

#[tokio::test]
async fn expired_rows_are_deleted() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let short = Limits {
        request_window: Duration::from_secs(1),
        lockout: Duration::from_secs(1),
        ..limits()
    };
    for _ in 0..3 {
        let f = Fixture::new();
        let mut req = f.issue("123456", Some(&random_ip()), short);
        req.code_ttl = Duration::from_secs(1);
        assert_eq!(store.issue(&req).await.unwrap(), otp_core::contract::ISSUED);
    }
    let subject = random_id();
    let sid = new_session_id(&subject);
    store
        .create_session(&NewSession {
            sid: sid.clone(),
            subject_key: subject,
            refresh_jti: random_id(),
            expires_at: now_secs() + 1,
            user_agent: None,
            ip: None,
            max_sessions: 20,
            auth: SessionAuth {
                at: now_secs(),
                method: LoginMethod::Code,
            },
        })
        .await
        .unwrap();
    store
        .revoke(&Revocation {
            access: Some(RevokedAccess {
                sid,
                jti: random_id(),
                expires_at: now_secs() + 1,
            }),
            sessions: vec![],
        })
        .await
        .unwrap();
    assert_eq!(rows(&store).await, 3 + 3 + 1 + 1);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    store.sweep().await.unwrap();
    // What is left: the three address rows, which hold their day's request count (the
    // daily cap) until the day window ends, and no longer.
    assert_eq!(rows(&store).await, 3, "expired rows left behind");
    let latest: i64 = sqlx::query_scalar("SELECT MAX(forget_at) FROM otp_address")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let day_from_now = i64::try_from((now_secs() + 86_400) * 1000).unwrap();
    assert!(
        latest <= day_from_now,
        "an address row outlives its day window"
    );
}

#[tokio::test]
async fn file_database_survives_a_reconnect_and_holds_no_plain_address() {
    let path = std::env::temp_dir().join(format!("otp-custom-store-{}.db", random_id()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let f = Fixture::new();
    {
        let store = SqliteStore::connect(&url).await.unwrap();
        store
            .issue(&f.issue("123456", Some("192.0.2.7"), limits()))
            .await
            .unwrap();
        store.pool().close().await;
    }
    let store = SqliteStore::connect(&url).await.unwrap();
    assert_eq!(
        store.verify(&f.verify("123456", limits())).await.unwrap(),
        otp_core::store::VerifyOutcome::Verified
    );
    store.pool().close().await;

    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.contains("contract.example.com"),
        "plain address in the database file"
    );
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
