//! Through the real routers: a refused address is paced like a mail from the first request
//! after a start, and the embedded in-memory store stays bounded without keeping new
//! addresses out for long (it evicts what holds no pending code and no lockout).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use otp_core::{
    ClientInfo, Hooks, OtpAuth,
    hooks::{BoxError, Email, async_trait},
    mailer::CapturingMailer,
    store::MemoryStore,
};
use otp_tests::{Adapter, Backends, TestServer, test_config};

/// Only addresses at example.org may log in.
#[derive(Debug)]
struct OnlyExampleOrg;

#[async_trait]
impl Hooks for OnlyExampleOrg {
    async fn allow(&self, email: &Email, _client: &ClientInfo) -> Result<bool, BoxError> {
        Ok(email.domain() == "example.org")
    }
}

async fn paced_from_the_first_request(adapter: Adapter) {
    let mailer = CapturingMailer::new();
    let auth = OtpAuth::builder(test_config())
        .stores(MemoryStore::new())
        .mailer(mailer.clone())
        .hooks(OnlyExampleOrg)
        .build()
        .unwrap();
    let s = TestServer::start_auth(adapter, auth, mailer).await;
    // No mail has been sent since the start: a refused address still takes about what a
    // mail would (the floor of 150 ms, at most 15% less with its jitter).
    let started = Instant::now();
    let r = s.request_otp("stranger@example.com").await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert_eq!(s.mailer.count(), 0, "no mail for a refused address");
    assert!(
        took >= Duration::from_millis(127),
        "{adapter:?}: the refused address answered in {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_address_is_paced_from_the_first_request_axum() {
    paced_from_the_first_request(Adapter::Axum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_address_is_paced_from_the_first_request_poem() {
    paced_from_the_first_request(Adapter::Poem).await;
}

/// A flood of code requests from many client IPs fills a small store: while every entry
/// holds a live code, a new address gets 503 with the true wait (the oldest code's
/// lifetime); once those codes have expired, the entries that only hold request windows
/// make room and new addresses are served, while a lockout survives the flood.
async fn memory_store_full(adapter: Adapter) {
    const CAPACITY: usize = 20;
    let store = MemoryStore::with_capacity(CAPACITY);
    let backends = Backends::with_capture(Arc::new(store.clone()), Arc::new(store));
    let mut config = test_config();
    config.codes.expiry_seconds = 2;
    config.http.trusted_proxies = vec!["127.0.0.1".into()];
    let s = TestServer::start_with(adapter, config, backends).await;
    let _only_test_counting = otp_tests::metrics_lock().await;
    let before = s.metrics().await;
    let request = |email: String, client: String| {
        s.send(
            s.http
                .post(s.url("/auth/request-otp"))
                .header("x-forwarded-for", client)
                .json(&serde_json::json!({ "email": email })),
        )
    };
    // The victim's address is locked out before the flood.
    request("locked@example.com".into(), "198.51.100.1".into()).await;
    for _ in 0..5 {
        s.verify_otp("locked@example.com", "999999").await;
    }
    s.verify_otp("locked@example.com", "999999")
        .await
        .assert_problem(429);
    // The flood: one new address from each of many client IPs, until the table is full.
    let mut refused = None;
    for i in 0..CAPACITY {
        let r = request(format!("flood{i}@example.com"), format!("203.0.113.{i}")).await;
        if r.status == 503 {
            refused = Some(r);
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = refused.expect("the table filled up");
    let p = r.assert_problem(503);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=2).contains(&wait),
        "the oldest code's lifetime, not 5: {wait} {p}"
    );
    // The codes expire: the new address is served, and so are the next ones.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for i in 0..5 {
        let r = request(format!("newcomer{i}@example.com"), format!("192.0.2.{i}")).await;
        assert_eq!(r.status, 200, "newcomer {i}: {}", r.text());
    }
    // The lockout was kept.
    s.verify_otp("locked@example.com", "999999")
        .await
        .assert_problem(429);
    // (A lockout stops unbound guesses only: its owner still gets a code for a flow.)
    let r = request("locked@example.com".into(), "192.0.2.200".into()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let evicted = s
        .metric_since(
            &before,
            "otp_memory_store_full_total",
            "table=\"addresses\",outcome=\"evicted\"",
        )
        .await;
    assert!(evicted >= 5.0, "{evicted}");
    let refusals = s
        .metric_since(
            &before,
            "otp_memory_store_full_total",
            "table=\"addresses\",outcome=\"refused\"",
        )
        .await;
    assert_eq!(refusals, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_does_not_keep_new_addresses_out_of_the_memory_store_axum() {
    memory_store_full(Adapter::Axum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_does_not_keep_new_addresses_out_of_the_memory_store_poem() {
    memory_store_full(Adapter::Poem).await;
}
