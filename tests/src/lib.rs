//! Test tooling shared by the cross-crate tests: start an app on a loopback port through a
//! real router, talk to it over real HTTP, read the codes it mails.
//!
//! The scenarios are written against [`TestServer`] only, so each adapter and each store can
//! run the same ones; [`scenarios`] says which set runs where.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::routing::get;
use otp_axum::CurrentUser;
use otp_core::mailer::{MailError, Mailer};
use otp_core::store::scripted::{KeyLayout, ScriptedStore};
use otp_core::store::{OtpStore, TokenBlacklist};
use otp_core::{Config, OtpAuth, mailer::CapturingMailer, store::MemoryStore};
use serde_json::{Value, json};
use smtp_server::{Behaviour, SmtpServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// README's Rust blocks, compiled (and, unless marked `no_run`, run) as doc tests of this
/// crate, which depends on every crate they use.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

pub mod redis_proc;
pub mod scenarios;
pub mod smtp_server;
pub mod webdriver;

/// A fixed strong secret for tests.
pub const TEST_SECRET: &str = "c2f6e0a9b8d74e1f9a3b5c7d9e1f2a4b6c8d0e2f";

/// The configuration tests start from: the defaults plus a secret.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.tokens.secret = Some(TEST_SECRET.into());
    c
}

/// The path of a test-only PEM key of otp-core's fixtures (`ec-a.pem`, `ed25519-a.pem`,
/// `rsa-a.pem`, and `*.pub.pem` public keys).
pub fn test_key(file: &str) -> String {
    format!(
        "{}/../crates/otp-core/testdata/keys/{file}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Which framework serves the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// otp-axum.
    Axum,
    /// otp-poem.
    Poem,
}

/// Which store the app keeps its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// The in-memory store.
    Memory,
    /// otp-redis on the single test server.
    Redis,
    /// otp-fred on the single test server.
    Fred,
    /// otp-redis on the test cluster.
    RedisCluster,
    /// otp-fred on the test cluster.
    FredCluster,
}

impl Store {
    fn url_var(self) -> Option<&'static str> {
        match self {
            Store::Memory => None,
            Store::Redis | Store::Fred => Some("OTP_TEST_REDIS_URL"),
            Store::RedisCluster | Store::FredCluster => Some("OTP_TEST_REDIS_CLUSTER_URL"),
        }
    }
}

/// One combination under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub adapter: Adapter,
    pub store: Store,
}

/// The value of the environment variable `var`, which locates a test server.
///
/// Tests that call this are compiled as ignored unless the build saw the variable (see
/// `build.rs`), so reaching here without it means the run promised the server
/// (`OTP_TEST_SERVERS=1`) or asked for ignored tests: the test fails, naming the variable.
pub fn server(var: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{var} is not set: this test needs its server; `cargo xtask test` starts it"),
    }
}

/// The samples of one read of `GET /metrics` (Prometheus text format).
#[derive(Debug, Clone)]
pub struct Metrics(String);

impl Metrics {
    /// The value of `name` with exactly `labels` (`key="value",…`, or `""` for none), 0
    /// when absent.
    pub fn get(&self, name: &str, labels: &str) -> f64 {
        let key = if labels.is_empty() {
            name.to_owned()
        } else {
            format!("{name}{{{labels}}}")
        };
        self.0
            .lines()
            .find_map(|l| l.strip_prefix(&key)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}

/// Held by each test that counts metrics: the process has one recorder, shared by every
/// test of the binary.
pub async fn metrics_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Where the test reads the mail an app sends: a capturing mailer, or a real SMTP server
/// that the app's `SmtpMailer` delivers to.
#[derive(Debug, Clone)]
pub enum Mailbox {
    /// In memory, no SMTP.
    Captured(CapturingMailer),
    /// Over SMTP, to the in-process server.
    Smtp(Arc<SmtpServer>),
}

impl From<CapturingMailer> for Mailbox {
    fn from(m: CapturingMailer) -> Self {
        Mailbox::Captured(m)
    }
}

impl Mailbox {
    /// The code of the last mail to `email` (any spelling).
    pub fn last_code(&self, email: &str) -> Option<String> {
        match self {
            Mailbox::Captured(m) => m.last_code(email),
            Mailbox::Smtp(s) => s.last_code(email),
        }
    }

    /// Subject, plain text and HTML of the last mail to `email` (any spelling).
    pub fn last_mail(&self, email: &str) -> Option<(String, String, String)> {
        match self {
            Mailbox::Captured(m) => {
                let msg = m.last_message(email)?;
                Some((msg.subject, msg.text, msg.html))
            }
            Mailbox::Smtp(s) => s.last_mail(email),
        }
    }

    /// The sign-in link in the plain text of the last mail to `email`, if it has one.
    pub fn last_link(&self, email: &str) -> Option<String> {
        let (_, text, _) = self.last_mail(email)?;
        text.split_whitespace()
            .find(|w| w.contains("/magic?token="))
            .map(str::to_owned)
    }

    /// Mails delivered so far.
    pub fn count(&self) -> usize {
        match self {
            Mailbox::Captured(m) => m.count(),
            Mailbox::Smtp(s) => s.received().len(),
        }
    }

    /// Makes the next delivery fail: transient (SMTP 451) or permanent (SMTP 550).
    pub fn fail_next(&self, e: MailError) {
        match (self, e) {
            (Mailbox::Captured(m), e) => m.fail_next(e),
            (Mailbox::Smtp(s), MailError::Permanent(_)) => s.fail_next(Behaviour::Reject),
            (Mailbox::Smtp(s), _) => s.fail_next(Behaviour::TempFail),
        }
    }
}

/// The stores and mailer an app runs on.
#[derive(Debug, Clone)]
pub struct Backends {
    pub store: Arc<dyn OtpStore>,
    pub blacklist: Arc<dyn TokenBlacklist>,
    /// The mailer the engine uses.
    pub mailer: Arc<dyn Mailer>,
    /// Where the test reads what it sent.
    pub mailbox: Mailbox,
    /// When both stores are one value: gives it to a builder as one
    /// (`OtpAuthBuilder::stores`), as an application does.
    one: Option<OneValue>,
}

/// Gives a builder one value as both stores.
#[derive(Clone)]
struct OneValue(Arc<dyn Fn(otp_core::OtpAuthBuilder) -> otp_core::OtpAuthBuilder + Send + Sync>);

impl std::fmt::Debug for OneValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneValue")
    }
}

impl OneValue {
    fn of<S: OtpStore + TokenBlacklist>(store: Arc<S>) -> Option<OneValue> {
        Some(OneValue(Arc::new(move |b| b.stores(store.clone()))))
    }
}

impl Backends {
    /// The in-memory store and a capturing mailer.
    pub fn memory() -> Backends {
        let m = Arc::new(MemoryStore::new());
        Backends {
            one: OneValue::of(m.clone()),
            ..Backends::with_capture(m.clone(), m)
        }
    }

    /// These backends with `blacklist` as the session store: two stores from now on.
    pub fn with_blacklist(self, blacklist: Arc<dyn TokenBlacklist>) -> Backends {
        Backends {
            blacklist,
            one: None,
            ..self
        }
    }

    /// `builder` with these stores: as one value when they are one (a login is then one
    /// store operation where the store can), else as two.
    pub fn stores(&self, builder: otp_core::OtpAuthBuilder) -> otp_core::OtpAuthBuilder {
        match &self.one {
            Some(one) => (one.0)(builder),
            None => builder
                .store(self.store.clone())
                .blacklist(self.blacklist.clone()),
        }
    }

    /// The given stores and a capturing mailer.
    pub fn with_capture(store: Arc<dyn OtpStore>, blacklist: Arc<dyn TokenBlacklist>) -> Backends {
        let captured = CapturingMailer::new();
        Backends {
            store,
            blacklist,
            mailer: Arc::new(captured.clone()),
            mailbox: Mailbox::Captured(captured),
            one: None,
        }
    }

    /// `store` (under fresh key prefixes, so tests sharing a server never meet) with real
    /// mail: the in-memory store gets the capturing mailer, the Redis stores an
    /// `SmtpMailer` delivering to an SMTP server of the test's own.
    pub async fn for_store(store: Store) -> Backends {
        let Some(var) = store.url_var() else {
            return Backends::memory();
        };
        let url = server(var);
        let tag = otp_core::store::random_id().replace(['-', '_'], "x");
        let keys = KeyLayout::new(&format!("t{tag}_otp_"), &format!("t{tag}_bl_"));
        Self::for_url(store, &url, Duration::from_secs(2), keys).await
    }

    /// A Redis store (`store` picks the client: redis crate or fred) at `url`, with real
    /// mail to an SMTP server of the test's own.
    pub async fn for_url(store: Store, url: &str, timeout: Duration, keys: KeyLayout) -> Backends {
        Self::for_url_acked(store, url, timeout, keys, 0).await
    }

    /// [`Backends::for_url`] with `OTP_AUTH_REDIS_MIN_REPLICAS_ACK` = `replicas` (waiting
    /// at most half of `timeout`).
    pub async fn for_url_acked(
        store: Store,
        url: &str,
        timeout: Duration,
        keys: KeyLayout,
        replicas: u32,
    ) -> Backends {
        let url = url.to_owned();
        let (store, blacklist, one): (Arc<dyn OtpStore>, Arc<dyn TokenBlacklist>, _) = match store {
            Store::Redis | Store::RedisCluster => {
                let s = Arc::new(
                    ScriptedStore::new(
                        otp_redis::RedisRunner::connect(&url, timeout)
                            .await
                            .unwrap(),
                        keys,
                    )
                    .with_min_replicas_ack(replicas, timeout / 2),
                );
                (s.clone(), s.clone(), OneValue::of(s))
            }
            _ => {
                let s = Arc::new(
                    ScriptedStore::new(
                        otp_fred::FredRunner::connect(&url, timeout, 2)
                            .await
                            .unwrap(),
                        keys,
                    )
                    .with_min_replicas_ack(replicas, timeout / 2),
                );
                (s.clone(), s.clone(), OneValue::of(s))
            }
        };
        let smtp = Arc::new(SmtpServer::start(Behaviour::Accept).await);
        let smtp_config = {
            let mut c = test_config();
            c.smtp.server = "127.0.0.1".into();
            c.smtp.port = smtp.port;
            c
        };
        Backends {
            store,
            blacklist,
            mailer: Arc::new(otp_smtp::SmtpMailer::from_config(&smtp_config).unwrap()),
            mailbox: Mailbox::Smtp(smtp),
            one,
        }
    }
}

/// A running app: the example's shape (auth at `/auth`, `GET /protected`, and `/app`
/// behind the adapter's require-user layer: `GET /app/me`, `GET /app/unfit`).
#[derive(Debug)]
pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    pub mailer: Mailbox,
    pub auth: OtpAuth,
    pub http: reqwest::Client,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn protected(user: CurrentUser) -> Json<Value> {
    Json(json!({ "message": format!("Hello, {}!", user.email) }))
}

/// The age limit of the test server's step-up routes (`/recent`, `/app-recent/me`), in
/// seconds: short, so that a test can outwait it.
pub const RECENT_SECS: u64 = 2;

async fn recent(user: otp_axum::RecentUser<RECENT_SECS>) -> Json<Value> {
    Json(json!({ "email": user.email, "auth_time": user.auth_time(), "amr": user.amr() }))
}

async fn recent_me(user: CurrentUser) -> Json<Value> {
    Json(json!({ "email": user.email, "auth_time": user.auth_time() }))
}

#[poem::handler]
fn poem_recent(user: otp_poem::RecentUser<RECENT_SECS>) -> poem::web::Json<Value> {
    poem::web::Json(
        json!({ "email": user.email, "auth_time": user.auth_time(), "amr": user.amr() }),
    )
}

#[poem::handler]
fn poem_recent_me(user: otp_poem::CurrentUser) -> poem::web::Json<Value> {
    poem::web::Json(json!({ "email": user.email, "auth_time": user.auth_time() }))
}

async fn metrics() -> String {
    example_common::metrics_text()
}

/// The `roles` claim of the examples' hooks, which a guard checks.
#[derive(Debug, serde::Deserialize)]
struct Roles {
    roles: Vec<String>,
}

fn is_admin(c: &Roles) -> bool {
    c.roles.iter().any(|r| r == "admin")
}

#[poem::handler]
fn poem_metrics() -> String {
    example_common::metrics_text()
}

async fn maybe_user(user: Option<CurrentUser>) -> Json<Value> {
    Json(json!({ "user": user.map(|u| u.email.clone()) }))
}

#[poem::handler]
fn poem_protected(user: otp_poem::CurrentUser) -> poem::web::Json<Value> {
    poem::web::Json(json!({ "message": format!("Hello, {}!", user.email) }))
}

#[poem::handler]
fn poem_maybe_user(user: otp_poem::MaybeUser) -> poem::web::Json<Value> {
    poem::web::Json(json!({ "user": user.0.map(|u| u.email.clone()) }))
}

/// The application's own claims, as the scenarios' hooks add them
/// ([`scenarios::guards::RolesHooks`]).
#[derive(Debug, serde::Deserialize)]
pub struct TestClaims {
    pub roles: Vec<String>,
    pub tier: u8,
}

/// Claims that the scenarios' hooks never fit (`roles` is a list there).
#[derive(Debug, serde::Deserialize)]
pub struct UnfitClaims {
    pub roles: u64,
}

fn me_body(user: &otp_core::CurrentUser, claims: &TestClaims) -> Value {
    json!({
        "email": user.email,
        "sid": user.session_id,
        "roles": claims.roles,
        "tier": claims.tier,
    })
}

async fn app_me(user: CurrentUser<TestClaims>) -> Json<Value> {
    Json(me_body(&user, &user.extra))
}

async fn app_unfit(user: CurrentUser<UnfitClaims>) -> Json<Value> {
    Json(json!({ "roles": user.extra.roles }))
}

#[poem::handler]
fn poem_app_me(user: otp_poem::CurrentUser<TestClaims>) -> poem::web::Json<Value> {
    poem::web::Json(me_body(&user, &user.extra))
}

#[poem::handler]
fn poem_app_unfit(user: otp_poem::CurrentUser<UnfitClaims>) -> poem::web::Json<Value> {
    poem::web::Json(json!({ "roles": user.extra.roles }))
}

impl TestServer {
    /// Starts `target` with `config`.
    pub async fn start(target: Target, config: Config) -> TestServer {
        let backends = Backends::for_store(target.store).await;
        Self::start_with(target.adapter, config, backends).await
    }

    /// Starts `adapter` with `config` on `backends`.
    pub async fn start_with(adapter: Adapter, config: Config, backends: Backends) -> TestServer {
        let auth = backends
            .stores(OtpAuth::builder(config))
            .mailer(backends.mailer)
            .build()
            .expect("test configuration builds");
        Self::start_auth(adapter, auth, backends.mailbox).await
    }

    /// Starts `adapter` around an engine built by the caller.
    pub async fn start_auth(
        adapter: Adapter,
        auth: OtpAuth,
        mailer: impl Into<Mailbox>,
    ) -> TestServer {
        Self::start_auth_at(adapter, auth, mailer, "127.0.0.1:0").await
    }

    /// [`TestServer::start_auth`] listening on `bind` (`[::]:0`: a dual-stack socket, on
    /// which IPv4 clients arrive as `::ffff:a.b.c.d`); the test still connects to
    /// 127.0.0.1.
    pub async fn start_auth_at(
        adapter: Adapter,
        auth: OtpAuth,
        mailer: impl Into<Mailbox>,
        bind: &str,
    ) -> TestServer {
        // The process's metrics recorder, before the first request records anything.
        example_common::prometheus();
        let mailer = mailer.into();
        let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], listener.local_addr().unwrap().port()));
        let task = match adapter {
            Adapter::Axum => {
                // `/app`: a sub-router behind the layer, its handlers reading typed claims.
                let private = axum::Router::new()
                    .route("/me", get(app_me))
                    .route("/unfit", get(app_unfit))
                    .route_layer(otp_axum::RequireUserLayer::new(auth.clone()));
                // `/app-recent`: the layer demanding a recent authentication.
                let recent_router = axum::Router::new()
                    .route("/me", get(recent_me))
                    .route_layer(
                        otp_axum::RequireUserLayer::new(auth.clone())
                            .max_age(Duration::from_secs(RECENT_SECS)),
                    );
                // `/admin`: the admin router behind the check of the `roles` claim.
                let admins = otp_axum::RequireUserLayer::new(auth.clone()).require_claims(is_admin);
                let app = axum::Router::new()
                    .nest("/admin", otp_axum::admin_router(admins))
                    .route("/protected", get(protected))
                    .route("/recent", get(recent))
                    .nest("/app-recent", recent_router)
                    .route("/maybe-user", get(maybe_user))
                    .route("/metrics", get(metrics))
                    .nest("/app", private)
                    .nest("/auth", otp_axum::router(auth.clone()))
                    .with_state(auth.clone());
                tokio::spawn(async move {
                    axum::serve(
                        listener,
                        app.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .await
                    .unwrap();
                })
            }
            Adapter::Poem => {
                use poem::EndpointExt;
                let private = poem::Route::new()
                    .at("/me", poem::get(poem_app_me))
                    .at("/unfit", poem::get(poem_app_unfit))
                    .with(otp_poem::RequireUser::new(auth.clone()));
                let recent_route = poem::Route::new()
                    .at("/me", poem::get(poem_recent_me))
                    .with(
                        otp_poem::RequireUser::new(auth.clone())
                            .max_age(Duration::from_secs(RECENT_SECS)),
                    );
                let admins = otp_poem::RequireUser::new(auth.clone()).require_claims(is_admin);
                let app = poem::Route::new()
                    .nest("/admin", otp_poem::admin_routes(admins))
                    .at("/protected", poem::get(poem_protected))
                    .at("/recent", poem::get(poem_recent))
                    .nest("/app-recent", recent_route)
                    .at("/maybe-user", poem::get(poem_maybe_user))
                    .at("/metrics", poem::get(poem_metrics))
                    .nest("/app", private)
                    .nest("/auth", otp_poem::routes(auth.clone()))
                    .data(auth.clone());
                let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).unwrap();
                tokio::spawn(async move {
                    poem::Server::new_with_acceptor(acceptor)
                        .run(app)
                        .await
                        .unwrap();
                })
            }
        };
        TestServer {
            base: format!("http://{addr}"),
            addr,
            mailer,
            auth,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            task,
        }
    }

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST path` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    /// `POST /auth/request-otp` for `email`.
    pub async fn request_otp(&self, email: &str) -> Reply {
        self.post_json("/auth/request-otp", &json!({ "email": email }))
            .await
    }

    /// `POST /auth/verify-otp`.
    pub async fn verify_otp(&self, email: &str, otp: &str) -> Reply {
        self.post_json("/auth/verify-otp", &json!({ "email": email, "otp": otp }))
            .await
    }

    /// `POST /auth/refresh` with `cookie` as the refresh cookie (if any).
    pub async fn refresh(&self, cookie: Option<&str>) -> Reply {
        let mut r = self.http.post(self.url("/auth/refresh"));
        if let Some(c) = cookie {
            r = r.header("cookie", format!("refresh_token={c}"));
        }
        self.send(r).await
    }

    /// How much the metric line `name{labels}` (labels as rendered, sorted by name; `""`
    /// for none) of `GET /metrics` grew since `before`.
    pub async fn metric_since(&self, before: &Metrics, name: &str, labels: &str) -> f64 {
        self.metrics().await.get(name, labels) - before.get(name, labels)
    }

    /// The samples of `GET /metrics` now.
    pub async fn metrics(&self) -> Metrics {
        Metrics(self.send(self.http.get(self.url("/metrics"))).await.text())
    }

    /// `GET /protected` with `token` as bearer (if any).
    pub async fn protected(&self, token: Option<&str>) -> Reply {
        let mut r = self.http.get(self.url("/protected"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        self.send(r).await
    }

    /// Sends a request and collects the reply.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap().to_vec();
        Reply {
            status,
            headers,
            body: bytes,
        }
    }

    /// Requests a code, reads it from the mailer, verifies it: a logged-in session.
    pub async fn login(&self, email: &str) -> Session {
        let r = self.request_otp(email).await;
        assert_eq!(r.status, 200, "request-otp: {}", r.text());
        let code = self.mailer.last_code(email).expect("a code was mailed");
        let r = self.verify_otp(email, &code).await;
        assert_eq!(r.status, 200, "verify-otp: {}", r.text());
        Session {
            access: r.json()["access_token"].as_str().unwrap().to_owned(),
            refresh: r.refresh_cookie().expect("refresh cookie set"),
        }
    }

    /// [`TestServer::login`] with the refresh token taken from the JSON answer
    /// (`OTP_AUTH_REFRESH_TOKEN_TRANSPORT` = `body` or `both`).
    pub async fn login_body(&self, email: &str) -> Session {
        let r = self.request_otp(email).await;
        assert_eq!(r.status, 200, "request-otp: {}", r.text());
        let code = self.mailer.last_code(email).expect("a code was mailed");
        let r = self.verify_otp(email, &code).await;
        assert_eq!(r.status, 200, "verify-otp: {}", r.text());
        let v = r.json();
        Session {
            access: v["access_token"].as_str().unwrap().to_owned(),
            refresh: v["refresh_token"]
                .as_str()
                .expect("refresh token in the body")
                .to_owned(),
        }
    }
}

/// The tokens of a logged-in client.
#[derive(Debug, Clone)]
pub struct Session {
    pub access: String,
    pub refresh: String,
}

/// A collected HTTP reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie` value.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    /// The refresh token set by this reply, if it sets a non-empty one.
    pub fn refresh_cookie(&self) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let v = c.strip_prefix("refresh_token=")?.split(';').next()?;
            (!v.is_empty()).then(|| v.to_owned())
        })
    }

    /// Asserts the reply is a problem+json error with `status` and a `detail` sentence.
    #[track_caller]
    pub fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "status; body: {}", self.text());
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content type of a {status}"
        );
        let v = self.json();
        assert_eq!(v["status"], status);
        assert!(v["type"].is_string() && v["title"].is_string());
        let detail = v["detail"].as_str().expect("detail is a string");
        assert!(!detail.is_empty());
        v
    }
}

/// Sends raw bytes to `addr` and returns everything the server answers until it closes
/// the connection (or 5 s pass): for requests an HTTP client library will not make.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before reading everything: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}
