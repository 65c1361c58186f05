//! Point 10 of the deployment hardening, through the real routers: a refused address is
//! paced like a mail from the first request after a start, and the embedded in-memory
//! store answers 503 past its capacity instead of growing without bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use otp_core::{
    BoxError, CapturingMailer, ClientInfo, Email, Hooks, MemoryStore, OtpAuth, async_trait,
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

async fn memory_store_full(adapter: Adapter) {
    let store = MemoryStore::with_capacity(3);
    let backends = Backends::with_capture(Arc::new(store.clone()), Arc::new(store));
    let s = TestServer::start_with(adapter, test_config(), backends).await;
    // Three addresses fit (the client IP's bucket is a table of its own).
    for i in 0..3 {
        let r = s.request_otp(&format!("fits{i}@example.com")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = s.request_otp("fourth@example.com").await;
    let p = r.assert_problem(503);
    assert!(r.header("retry-after").is_some(), "{p}");
    // The addresses already in keep working.
    let code = s.mailer.last_code("fits0@example.com").unwrap();
    assert_eq!(s.verify_otp("fits0@example.com", &code).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_answers_503_past_its_capacity_axum() {
    memory_store_full(Adapter::Axum).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_answers_503_past_its_capacity_poem() {
    memory_store_full(Adapter::Poem).await;
}
