//! Mount mistakes said in the log, where they were silent: the login router behind a
//! require-user guard (axum), and cookie paths that miss the login routes' mount (poem).
//! One test, one process: each is logged once per process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use otp_core::{Config, OtpAuth, mailer::CapturingMailer, store::MemoryStore};
use otp_tests::test_config;
use tower_service::Service as _;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn engine(config: Config) -> OtpAuth {
    OtpAuth::builder(config)
        .stores(MemoryStore::new())
        .mailer(CapturingMailer::new())
        .build()
        .unwrap()
}

#[tokio::test]
async fn mount_mistakes_are_logged() {
    let log = Captured::default();
    let writer = log.clone();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );

    // axum: the whole app behind the guard, the login router included.
    let auth = engine(test_config());
    let mut app = axum::Router::new()
        .nest("/auth", otp_axum::router(auth.clone()))
        .route_layer(otp_axum::RequireUserLayer::new(auth))
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let req = axum::http::Request::post("/auth/request-otp")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"email":"a@example.com"}"#))
        .unwrap();
    let resp = app.call(req).await.unwrap();
    assert_eq!(resp.status(), 401);
    let text = log.text();
    assert!(
        text.contains("the login router is behind the guard") && text.contains("/auth/request-otp"),
        "{text}"
    );

    // poem: the refresh cookie's path is /auth, the login routes are at /login.
    let mut config = test_config();
    config.cookie.path = "/auth".into();
    let app = poem::Route::new().nest("/login", otp_poem::routes(engine(config)));
    // Through poem's own server (which sets the original URI the mount is read from).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    let http = reqwest::Client::new();
    let refresh = || http.post(format!("http://{addr}/login/refresh")).send();
    let resp = refresh().await.unwrap();
    assert_eq!(resp.status(), 401);
    let text = log.text();
    assert!(
        text.contains("cookie paths do not cover the login routes at \"/login\"")
            && text.contains("OTP_AUTH_COOKIE_PATH=/auth"),
        "{text}"
    );
    // Once per process.
    refresh().await.unwrap();
    assert_eq!(log.text().matches("cookie paths do not cover").count(), 1);
}
