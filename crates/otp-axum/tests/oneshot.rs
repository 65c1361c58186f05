//! The router under axum's own testing tools: `tower::ServiceExt::oneshot` with
//! `MockConnectInfo` standing in for the connection (found by the `request` fuzz target:
//! the router used to answer 500 there, missing the client address).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use otp_core::{CapturingMailer, Config, MemoryStore, OtpAuth};
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
    .mailer(Arc::new(mailer.clone()))
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
    .mailer(Arc::new(CapturingMailer::new()))
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
}
