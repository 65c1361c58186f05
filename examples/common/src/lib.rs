//! What the example apps (`axum-example`, `poem-example`) share, so they read the same
//! settings and answer the same: store and mailer selection, the listen address, serving
//! with deadlines ([`serve`]), logging, graceful shutdown, the login page, the API docs page
//! and the Prometheus metrics on a listener of their own.
//!
//! Settings: `APP_ADDR` (default `127.0.0.1:3000`), `APP_METRICS_ADDR` (where `GET /metrics`
//! is served, default `127.0.0.1:9464`; an address other than loopback is logged as a
//! warning; `off`: no metrics listener), `APP_HEADER_READ_TIMEOUT_SECONDS` (the time a
//! client has to send a whole request head, default 10, 1 to 30), `APP_IDLE_TIMEOUT_SECONDS`
//! (a connection on which no byte moves for that long is closed, default 60, 1 to 3600),
//! `OTP_AUTH_STORE` (`memory`, `redis`,
//! `fred`; `redis` when `OTP_AUTH_REDIS_URL` is set, else `memory`), `OTP_AUTH_MAILER`
//! (`console`, `smtp`; `smtp` when `OTP_AUTH_SMTP_SERVER` is set, else `console`), `RUST_LOG`,
//! `APP_ADMINS` (addresses, comma-separated, whose tokens carry the `admin` role),
//! `APP_USERS_DB` (the SQLite file of the user directory, default `example-users.sqlite3`
//! in the working directory, shared by every instance; `:memory:`: this process only), and
//! every `OTP_AUTH_*` variable of otp-core. With none set: the embedded default (in-memory
//! store, codes in the log, a random JWT key).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use otp_core::mailer::Mailer;
use otp_core::store::scripted::redact_url;
use otp_core::{
    Config, Hooks, OtpAuth,
    hooks::{BoxError, Email, EmailChange},
    mailer::ConsoleMailer,
    store::MemoryStore,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tracing_subscriber::EnvFilter;

mod serve;
mod users;

pub use serve::{SHUTDOWN_GRACE, ServeLimits, metrics_answer, serve, start_metrics};
pub use users::{DEFAULT_USERS_DB, UserDirectory};

/// The examples' [`Hooks`]: the user directory and the app's own claims.
///
/// - **Users.** Each address that signs in gets a stable random user id (`user_…`), the
///   token subject, kept in SQLite ([`UserDirectory`]: the file of `APP_USERS_DB`, shared by
///   every instance and kept across restarts). An email change moves the id to the new
///   address; an address that is another user's is refused, with the same answer as any
///   refusal, and so is a change from an address the user no longer has (two changes
///   racing).
/// - **Claims.** Every access token carries the app's own `roles` claim, `["member"]`,
///   and `["member", "admin"]` for administrators (the addresses of `APP_ADMINS`, marked in
///   the directory at start; the role follows the user through an email change).
#[derive(Debug, Clone)]
pub struct ExampleHooks {
    users: UserDirectory,
}

/// `admins` trimmed, lowercased, without blanks.
fn admin_list<S: AsRef<str>>(admins: impl IntoIterator<Item = S>) -> Vec<String> {
    admins
        .into_iter()
        .map(|a| a.as_ref().trim().to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect()
}

impl ExampleHooks {
    /// The hooks on a private in-memory directory, with `admins` (addresses, any case) as
    /// administrators: for tests.
    pub fn new<S: AsRef<str>>(admins: impl IntoIterator<Item = S>) -> Self {
        let users = UserDirectory::lazy(":memory:", admin_list(admins));
        ExampleHooks {
            users: users.unwrap_or_else(|e| unreachable!("an in-memory database opens: {e}")),
        }
    }

    /// The hooks on `users`.
    pub fn with_directory(users: UserDirectory) -> Self {
        ExampleHooks { users }
    }

    /// The user id of `email`, if it has one.
    pub async fn user_of(&self, email: &str) -> Option<String> {
        let email = Email::parse(email).ok()?;
        self.users.user_of(&email).await.ok().flatten()
    }

    /// The hooks on the directory of `APP_USERS_DB` (default [`DEFAULT_USERS_DB`] in the
    /// working directory; `:memory:` for one of this process only), with the
    /// administrators of `APP_ADMINS`; an error names the variable.
    pub async fn from_env() -> Result<Self, String> {
        let path = std::env::var("APP_USERS_DB")
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_USERS_DB.to_owned());
        let admins = admin_list(std::env::var("APP_ADMINS").unwrap_or_default().split(','));
        let users = UserDirectory::open(&path, admins)
            .await
            .map_err(|e| format!("APP_USERS_DB={path:?}: the user directory: {e}"))?;
        tracing::info!(path = %path, "users: sqlite");
        Ok(ExampleHooks { users })
    }
}

#[async_trait::async_trait]
impl Hooks for ExampleHooks {
    async fn subject(&self, email: &Email) -> Result<String, BoxError> {
        Ok(self.users.subject(email).await?)
    }

    async fn change_email(
        &self,
        subject: &str,
        old: &Email,
        new: &Email,
    ) -> Result<EmailChange, BoxError> {
        Ok(self.users.change_email(subject, old, new).await?)
    }

    async fn claims(&self, subject: &str, _email: &Email) -> Result<Map<String, Value>, BoxError> {
        let mut roles = vec!["member"];
        if self.users.is_admin(subject).await? {
            roles.push("admin");
        }
        let mut claims = Map::new();
        claims.insert("roles".into(), json!(roles));
        Ok(claims)
    }
}

/// The app's own claims, as the handlers under `/app` read them (`CurrentUser<AppClaims>`).
#[derive(Debug, Clone, Deserialize)]
pub struct AppClaims {
    /// `member`, and `admin` for the addresses of `APP_ADMINS`.
    pub roles: Vec<String>,
}

/// Whether the claims carry the `admin` role (the addresses of `APP_ADMINS`): the guard of
/// the examples' `/admin` routes.
pub fn is_admin(claims: &AppClaims) -> bool {
    claims.roles.iter().any(|r| r == "admin")
}

/// The answer of `GET /app/me`: who the user is, their roles (typed claims), and the app's
/// own counter of calls to it.
pub fn me_body(email: &str, subject: &str, claims: &AppClaims, visits: u64) -> Value {
    json!({ "email": email, "subject": subject, "roles": claims.roles, "visits": visits })
}

/// The login page served at `GET /`: a static page, no build step.
pub const LOGIN_PAGE: &str = include_str!("../static/index.html");

/// The OpenAPI document of the example app: the auth routes at `/auth` and
/// `GET /protected`.
pub fn openapi(auth: &OtpAuth) -> otp_core::adapter::openapi::OpenApiDoc {
    let mut doc = otp_core::adapter::openapi::document(auth, "/auth");
    otp_core::adapter::openapi::add_protected_get(
        &mut doc,
        "/protected",
        "Greets the authenticated user: {\"message\": \"Hello, <email>!\"}",
    );
    otp_core::adapter::openapi::add_protected_get(
        &mut doc,
        "/app/me",
        "The signed-in user under the app's protected sub-router: {\"email\", \"subject\", \
         \"roles\" (the app's own claims), \"visits\" (the app's count of calls)}",
    );
    otp_core::adapter::openapi::add_admin(&mut doc, "/admin");
    doc
}

/// The methods a cross-origin front end uses on the contract (CORS preflight answers).
pub const CORS_METHODS: [&str; 3] = ["GET", "POST", "DELETE"];

/// The request headers a cross-origin front end sends (CORS preflight answers).
pub const CORS_REQUEST_HEADERS: [&str; 3] = ["authorization", "content-type", "accept-language"];

/// The response headers a cross-origin front end may read besides the safelisted ones.
pub const CORS_EXPOSED_HEADERS: [&str; 2] = ["retry-after", "www-authenticate"];

/// How long a browser may cache a preflight answer, in seconds.
pub const CORS_MAX_AGE_SECONDS: u64 = 600;

/// The content type of `GET /metrics` on the metrics listener (Prometheus text format 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the process's Prometheus recorder on first use (the `otp_*` metrics of
/// otp-core then land in it) and returns its handle.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Histograms with buckets (the exporter's default renders summaries).
        // (`set_buckets` refuses only an empty list.)
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Histograms keep their samples until an upkeep folds them in: do it every few
        // seconds even if nobody scrapes `/metrics`, so memory stays flat.
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no metrics upkeep thread: /metrics folds samples when read");
        }
        // Another recorder installed first (a test harness): this one then stays empty.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        handle
    })
}

/// The body of `GET /metrics`: every metric in the Prometheus text format. Expose it only
/// where your monitoring can reach it, not to the public: the counters by outcome tell an
/// observer who is signing in and which addresses have no pending code. The examples serve
/// it on a listener of its own ([`start_metrics`], `APP_METRICS_ADDR`).
pub fn metrics_text() -> String {
    prometheus().render()
}

/// The answer of `GET /protected`.
pub fn protected_body(email: &str) -> Value {
    json!({ "message": format!("Hello, {email}!") })
}

/// Logs to stdout, filtered by `RUST_LOG` (default `info`), colored only on a terminal.
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
}

/// Picks a value for a backend setting: the variable, else a default that depends on
/// whether `trigger` (the backend's address variable) is set.
fn choice(var: &str, trigger: &str, when_set: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_ascii_lowercase(),
        _ if std::env::var_os(trigger).is_some() => when_set.to_owned(),
        _ => default.to_owned(),
    }
}

/// The default of `APP_METRICS_ADDR`: loopback, the port commonly used for a Prometheus
/// exporter beside an app (9464).
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9464";

/// The default of `APP_HEADER_READ_TIMEOUT_SECONDS`.
pub const DEFAULT_HEADER_READ_TIMEOUT_SECONDS: u64 = 10;

/// The largest `APP_HEADER_READ_TIMEOUT_SECONDS`.
pub const MAX_HEADER_READ_TIMEOUT_SECONDS: u64 = 30;

/// The default of `APP_IDLE_TIMEOUT_SECONDS`.
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: u64 = 60;

/// The largest `APP_IDLE_TIMEOUT_SECONDS`.
pub const MAX_IDLE_TIMEOUT_SECONDS: u64 = 3600;

/// How the examples serve, beside the listen address of [`build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeSettings {
    /// The connections' deadlines: `APP_HEADER_READ_TIMEOUT_SECONDS`,
    /// `APP_IDLE_TIMEOUT_SECONDS`.
    pub limits: ServeLimits,
    /// Where `GET /metrics` is served (`APP_METRICS_ADDR`); `None` for `off`.
    pub metrics_addr: Option<SocketAddr>,
}

impl ServeSettings {
    /// Reads `APP_METRICS_ADDR`, `APP_HEADER_READ_TIMEOUT_SECONDS` and
    /// `APP_IDLE_TIMEOUT_SECONDS`; unset or blank means the default. The error names the
    /// setting and what it accepts.
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// [`ServeSettings::from_env`] with the variables looked up by `var`.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let value = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let metrics_addr = match value("APP_METRICS_ADDR") {
            Some(v) if v.eq_ignore_ascii_case("off") => None,
            v => {
                let v = v.unwrap_or_else(|| DEFAULT_METRICS_ADDR.to_owned());
                Some(v.parse().map_err(|e| {
                    format!("APP_METRICS_ADDR={v:?} is not a socket address (or off): {e}")
                })?)
            }
        };
        let seconds = |name: &str, default: u64, max: u64| -> Result<Duration, String> {
            let Some(v) = value(name) else {
                return Ok(Duration::from_secs(default));
            };
            match v.parse::<u64>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Duration::from_secs(n)),
                _ => Err(format!(
                    "{name}={v:?} is not a whole number of seconds from 1 to {max}"
                )),
            }
        };
        Ok(ServeSettings {
            limits: ServeLimits {
                header_read_timeout: seconds(
                    "APP_HEADER_READ_TIMEOUT_SECONDS",
                    DEFAULT_HEADER_READ_TIMEOUT_SECONDS,
                    MAX_HEADER_READ_TIMEOUT_SECONDS,
                )?,
                idle_timeout: seconds(
                    "APP_IDLE_TIMEOUT_SECONDS",
                    DEFAULT_IDLE_TIMEOUT_SECONDS,
                    MAX_IDLE_TIMEOUT_SECONDS,
                )?,
            },
            metrics_addr,
        })
    }
}

/// Builds the engine from the environment and reads the listen address.
pub async fn build() -> Result<(OtpAuth, SocketAddr), String> {
    prometheus();
    // The examples' own variables, read below: not taken for typos of settings.
    let config = Config::load_for(&["OTP_AUTH_STORE", "OTP_AUTH_MAILER"])
        .map_err(|e| e.to_string())?
        .with_ephemeral_jwt_secret();
    let store = choice("OTP_AUTH_STORE", "OTP_AUTH_REDIS_URL", "redis", "memory");
    let mailer = choice("OTP_AUTH_MAILER", "OTP_AUTH_SMTP_SERVER", "smtp", "console");
    let builder = OtpAuth::builder(config);
    let builder = match store.as_str() {
        "memory" => builder.stores(MemoryStore::new()),
        "redis" => {
            let store = otp_redis::connect(builder.config())
                .await
                .map_err(|e| format!("OTP_AUTH_STORE=redis: {e}"))?;
            tracing::info!(url = %redact_url(&builder.config().redis.url), "store: redis");
            builder.stores(store)
        }
        "fred" => {
            let store = otp_fred::connect(builder.config())
                .await
                .map_err(|e| format!("OTP_AUTH_STORE=fred: {e}"))?;
            tracing::info!(url = %redact_url(&builder.config().redis.url), "store: fred");
            builder.stores(store)
        }
        other => {
            return Err(format!(
                "OTP_AUTH_STORE={other:?} is not a store: use memory, redis or fred"
            ));
        }
    };
    let mailer: Arc<dyn Mailer> = match mailer.as_str() {
        "console" => Arc::new(ConsoleMailer::new()),
        "smtp" => {
            let config = builder.config();
            let smtp = otp_smtp::SmtpMailer::from_config(config)
                .map_err(|e| format!("OTP_AUTH_MAILER=smtp: {e}"))?;
            tracing::info!(
                server = %format!("{}:{}", config.smtp.server, config.smtp.port),
                tls = ?config.smtp.tls_mode(),
                "mailer: smtp"
            );
            Arc::new(smtp)
        }
        other => {
            return Err(format!(
                "OTP_AUTH_MAILER={other:?} is not a mailer: use console or smtp"
            ));
        }
    };
    let auth = builder
        .mailer(mailer)
        .hooks(ExampleHooks::from_env().await?)
        .build()
        .map_err(|e| e.to_string())?;
    let addr = std::env::var("APP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let addr = addr
        .parse()
        .map_err(|e| format!("APP_ADDR={addr:?} is not a socket address: {e}"))?;
    Ok((auth, addr))
}

/// Asks the store and the mail server once at start-up and logs the answer (which names
/// the addresses and variables, with a hint for a TLS mismatch): a wrong address shows at
/// start rather than at the first login. A server that is down is not fatal: the service
/// answers 503 and recovers by itself.
async fn report_readiness(auth: &OtpAuth) {
    let readiness = auth.check().await;
    if readiness.is_ready() {
        tracing::info!("ready: {readiness}");
    } else {
        tracing::warn!("not ready at start, answering 503 until it is: {readiness}");
    }
}

/// What both binaries have once started: the engine, the bound public listener and the
/// connection deadlines (the metrics listener already runs).
#[derive(Debug)]
pub struct Started {
    /// The engine, built from the environment.
    pub auth: OtpAuth,
    /// The public listener, at `APP_ADDR`.
    pub listener: tokio::net::TcpListener,
    /// The address it is bound to.
    pub addr: SocketAddr,
    /// The deadlines to serve it with.
    pub limits: ServeLimits,
}

/// Everything a binary does before serving: logging, the settings, the engine, the public
/// listener and the metrics listener, then the "listening on" line. On failure it says why
/// (naming `app`) and gives the exit status: 2 for bad settings, 1 for a port it cannot
/// bind.
pub async fn start(app: &str) -> Result<Started, ExitCode> {
    init_tracing();
    let settings = ServeSettings::from_env().map_err(|e| start_failed(app, &e))?;
    let (auth, addr) = build().await.map_err(|e| start_failed(app, &e))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        eprintln!("{app}: cannot listen on {addr}: {e}");
        ExitCode::from(1)
    })?;
    report_readiness(&auth).await;
    start_metrics(settings.metrics_addr, settings.limits, auth.clone())
        .await
        .map_err(|e| {
            eprintln!("{app}: {e}");
            ExitCode::from(1)
        })?;
    let limits = settings.limits;
    let addr = listener.local_addr().unwrap_or(addr);
    tracing::info!(
        header_read_timeout = ?limits.header_read_timeout,
        idle_timeout = ?limits.idle_timeout,
        "listening on http://{addr}"
    );
    Ok(Started {
        auth,
        listener,
        addr,
        limits,
    })
}

/// Reports a start-up failure on stderr and the log; exit status 2.
pub fn start_failed(app: &str, e: &str) -> ExitCode {
    tracing::error!("{e}");
    eprintln!("{app}: {e}");
    ExitCode::from(2)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;

    fn settings(vars: &[(&str, &str)]) -> Result<ServeSettings, String> {
        ServeSettings::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn serve_settings_default_to_loopback_metrics_and_10_and_60_seconds() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(s.limits, ServeLimits::default());
        assert_eq!(s.limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(60));
        // Blank is unset.
        assert_eq!(settings(&[("APP_IDLE_TIMEOUT_SECONDS", " ")]).unwrap(), s);
    }

    #[test]
    fn serve_settings_read_their_variables() {
        let s = settings(&[
            ("APP_METRICS_ADDR", "[::1]:9000"),
            ("APP_HEADER_READ_TIMEOUT_SECONDS", "30"),
            ("APP_IDLE_TIMEOUT_SECONDS", " 5 "),
        ])
        .unwrap();
        assert_eq!(s.metrics_addr, Some("[::1]:9000".parse().unwrap()));
        assert_eq!(s.limits.header_read_timeout, Duration::from_secs(30));
        assert_eq!(s.limits.idle_timeout, Duration::from_secs(5));
        for off in ["off", "OFF"] {
            let s = settings(&[("APP_METRICS_ADDR", off)]).unwrap();
            assert_eq!(s.metrics_addr, None);
        }
    }

    #[test]
    fn serve_settings_refuse_bad_values_by_name() {
        for (name, value, expect) in [
            ("APP_METRICS_ADDR", "9464", "is not a socket address"),
            ("APP_HEADER_READ_TIMEOUT_SECONDS", "31", "from 1 to 30"),
            ("APP_HEADER_READ_TIMEOUT_SECONDS", "0", "from 1 to 30"),
            ("APP_HEADER_READ_TIMEOUT_SECONDS", "2.5", "whole number"),
            ("APP_IDLE_TIMEOUT_SECONDS", "0", "from 1 to 3600"),
            ("APP_IDLE_TIMEOUT_SECONDS", "-1", "from 1 to 3600"),
        ] {
            let e = settings(&[(name, value)]).unwrap_err();
            assert!(e.starts_with(&format!("{name}=")), "{e}");
            assert!(e.contains(expect), "{e}");
        }
    }

    #[test]
    fn the_metrics_listener_serves_only_get_metrics() {
        let req = |method: Method, path: &str| {
            let mut req = hyper::Request::new(());
            *req.method_mut() = method;
            *req.uri_mut() = path.parse().unwrap();
            metrics_answer(&req)
        };
        let ok = req(Method::GET, "/metrics");
        assert_eq!(ok.status(), 200);
        assert_eq!(
            ok.headers()[hyper::header::CONTENT_TYPE],
            METRICS_CONTENT_TYPE
        );
        assert_eq!(req(Method::HEAD, "/metrics").status(), 200);
        let post = req(Method::POST, "/metrics");
        assert_eq!(post.status(), 405);
        assert_eq!(post.headers()[hyper::header::ALLOW], "GET, HEAD");
        assert_eq!(req(Method::GET, "/").status(), 404);
        assert_eq!(req(Method::GET, "/metrics/x").status(), 404);
    }
}
