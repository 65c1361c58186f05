//! The router under axum's own testing tools: `tower::ServiceExt::oneshot` with
//! `MockConnectInfo` standing in for the connection (found by the `request` fuzz target:
//! the router used to answer 500 there, missing the client address).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use otp_core::{Config, OtpAuth, mailer::CapturingMailer, store::MemoryStore};
use tower::ServiceExt;

#[tokio::test]
async fn mock_connect_info_gives_the_client_address() {
    let mailer = CapturingMailer::new();
    let auth = OtpAuth::builder({
        let mut c = Config::default();
        c.tokens.secret = Some("c2f6e0a9b8d74e1f9a3b5c7d9e1f2a4b6c8d0e2f".into());
        c.limits.per_ip_per_minute = 1;
        c
    })
    .stores(MemoryStore::new())
    .mailer(mailer.clone())
    .build()
    .unwrap();
    let app = axum::Router::new()
        .nest("/auth", otp_axum::router(auth))
        .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 1], 4000))));
    let req = |email: &str| {
        Request::post("/auth/request-otp")
            .header("content-type", "application/json")
            .body(Body::from(format!("{{\"email\":\"{email}\"}}")))
            .unwrap()
    };
    let r = app.clone().oneshot(req("a@example.com")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(mailer.count(), 1);
    // The mocked address is the IP the limit counts (1 per minute here).
    let r = app.oneshot(req("b@example.com")).await.unwrap();
    assert_eq!(r.status(), 429);
}

#[tokio::test]
async fn without_any_connect_info_request_otp_refuses_to_guess() {
    let auth = OtpAuth::builder({
        let mut c = Config::default();
        c.tokens.secret = Some("c2f6e0a9b8d74e1f9a3b5c7d9e1f2a4b6c8d0e2f".into());
        c
    })
    .stores(MemoryStore::new())
    .mailer(CapturingMailer::new())
    .build()
    .unwrap();
    let app = axum::Router::new().nest("/auth", otp_axum::router(auth));
    let r = app
        .oneshot(
            Request::post("/auth/request-otp")
                .header("content-type", "application/json")
                .body(Body::from("{\"email\":\"a@example.com\"}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        500,
        "no client address: the per-IP limit cannot work"
    );
    // A problem document that says how to fix the deployment.
    let body = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let detail = problem["detail"].as_str().unwrap();
    for fix in [
        "into_make_service_with_connect_info",
        "MockConnectInfo",
        "otp_core::adapter::ClientIp",
    ] {
        assert!(detail.contains(fix), "{detail}");
    }
}

#[tokio::test]
async fn client_ip_in_the_extensions_gives_the_client_address() {
    let mailer = CapturingMailer::new();
    let auth = OtpAuth::builder({
        let mut c = Config::default();
        c.tokens.secret = Some("c2f6e0a9b8d74e1f9a3b5c7d9e1f2a4b6c8d0e2f".into());
        c.limits.per_ip_per_minute = 1;
        c
    })
    .memory_store()
    .mailer(mailer.clone())
    .build()
    .unwrap();
    // No connect info at all: the application's own address (as a client-IP crate, a
    // Lambda adapter or a Unix-socket server would give it) is what counts.
    let app = axum::Router::new().nest("/auth", otp_axum::router(auth));
    let req = |email: &str, ip: [u8; 4]| {
        let mut r = Request::post("/auth/request-otp")
            .header("content-type", "application/json")
            .body(Body::from(format!("{{\"email\":\"{email}\"}}")))
            .unwrap();
        r.extensions_mut()
            .insert(otp_core::adapter::ClientIp(ip.into()));
        r
    };
    let r = app
        .clone()
        .oneshot(req("a@example.com", [198, 51, 100, 1]))
        .await;
    assert_eq!(r.unwrap().status(), 200);
    let r = app
        .clone()
        .oneshot(req("b@example.com", [198, 51, 100, 1]))
        .await;
    assert_eq!(r.unwrap().status(), 429);
    let r = app.oneshot(req("c@example.com", [198, 51, 100, 2])).await;
    assert_eq!(r.unwrap().status(), 200);
    assert_eq!(mailer.count(), 2);
}
