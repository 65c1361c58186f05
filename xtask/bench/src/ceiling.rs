//! The ceiling server: the example apps' routes and answer shapes, with no login logic at
//! all. Each request does exactly one Redis `EXISTS` on a key taken from the request, so
//! what it measures is the cost of HTTP on axum plus one Redis round trip on this machine.

use std::net::SocketAddr;
use std::sync::LazyLock;

use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redis::aio::ConnectionManager;
use serde_json::{Value, json};

use crate::Flags;

/// Lifetime of the fake access token, as the real default (60 minutes).
const EXPIRES_IN: u64 = 3600;

/// The refresh cookie, with the attributes of the real default one.
const SET_REFRESH: &str = "refresh_token=bench-refresh-token; Max-Age=604800; Path=/; \
                           HttpOnly; Secure; SameSite=Lax";

/// The cookie-clearing header of `/auth/logout`.
const CLEAR_REFRESH: &str = "refresh_token=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; \
                             Path=/; HttpOnly; Secure; SameSite=Lax";

/// A fixed fake access token about as long as a real one (a JWT of ~400 characters), so
/// answers and the bearer header weigh what they weigh with the real app.
static ACCESS_TOKEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9.{}.{}",
        "e".repeat(330),
        "s".repeat(43)
    )
});

/// Arguments of `otp-bench ceiling`.
#[derive(Debug)]
pub(crate) struct Args {
    addr: SocketAddr,
    redis: String,
}

impl Args {
    /// `--addr` and `--redis`, both required.
    pub(crate) fn from_flags(flags: &Flags) -> Result<Self, String> {
        flags.only(&["addr", "redis"])?;
        let addr = flags.required("addr")?;
        let addr = addr
            .parse()
            .map_err(|e| format!("`--addr {addr}` is not a socket address: {e}"))?;
        Ok(Self {
            addr,
            redis: flags.required("redis")?.to_owned(),
        })
    }
}

/// Serves until SIGTERM or Ctrl-C.
pub(crate) async fn serve(args: Args) -> Result<(), String> {
    let client = redis::Client::open(args.redis.as_str())
        .map_err(|e| format!("`--redis {}`: {e}", args.redis))?;
    let redis = ConnectionManager::new(client)
        .await
        .map_err(|e| format!("connecting to Redis at {}: {e}", args.redis))?;
    let app = Router::new()
        .route("/protected", get(protected))
        .route("/auth/request-otp", post(request_otp))
        .route("/auth/verify-otp", post(verify_otp))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .with_state(redis);
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.addr))?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(|e| format!("serving on {}: {e}", args.addr))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}

/// The one Redis round trip of every request: `EXISTS bench:{key}`.
async fn exists(redis: &ConnectionManager, key: &str) -> Result<(), StatusCode> {
    let mut redis = redis.clone();
    redis::cmd("EXISTS")
        .arg(format!("bench:{key}"))
        .query_async::<i64>(&mut redis)
        .await
        .map(drop)
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)
}

/// A bodiless error answer with the real app's cache header.
fn problem(status: StatusCode) -> Response {
    (status, [(CACHE_CONTROL, "no-store")]).into_response()
}

/// The `email` field of a JSON body.
fn email(body: &Value) -> Result<&str, StatusCode> {
    body.get("email")
        .and_then(Value::as_str)
        .ok_or(StatusCode::UNPROCESSABLE_ENTITY)
}

async fn protected(State(redis): State<ConnectionManager>, headers: HeaderMap) -> Response {
    let Some(token) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return problem(StatusCode::UNAUTHORIZED);
    };
    if let Err(status) = exists(&redis, token).await {
        return problem(status);
    }
    Json(json!({ "message": "Hello, user@example.com!" })).into_response()
}

async fn request_otp(State(redis): State<ConnectionManager>, Json(body): Json<Value>) -> Response {
    let result = async {
        exists(&redis, email(&body)?).await?;
        Ok::<_, StatusCode>(
            (
                [(CACHE_CONTROL, "no-store")],
                Json(json!({ "message": "OTP sent successfully" })),
            )
                .into_response(),
        )
    };
    result.await.unwrap_or_else(problem)
}

async fn verify_otp(State(redis): State<ConnectionManager>, Json(body): Json<Value>) -> Response {
    let result = async {
        exists(&redis, email(&body)?).await?;
        Ok::<_, StatusCode>(
            (
                [(CACHE_CONTROL, "no-store"), (SET_COOKIE, SET_REFRESH)],
                Json(json!({
                    "message": "OTP verified successfully!",
                    "access_token": ACCESS_TOKEN.as_str(),
                    "token_type": "bearer",
                    "expires_in": EXPIRES_IN,
                })),
            )
                .into_response(),
        )
    };
    result.await.unwrap_or_else(problem)
}

/// The `Cookie` header, or `-` when there is none (still one `EXISTS`).
fn cookie(headers: &HeaderMap) -> &str {
    headers
        .get(COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
}

async fn refresh(State(redis): State<ConnectionManager>, headers: HeaderMap) -> Response {
    if let Err(status) = exists(&redis, cookie(&headers)).await {
        return problem(status);
    }
    (
        [(CACHE_CONTROL, "no-store"), (SET_COOKIE, SET_REFRESH)],
        Json(json!({
            "access_token": ACCESS_TOKEN.as_str(),
            "token_type": "bearer",
            "expires_in": EXPIRES_IN,
        })),
    )
        .into_response()
}

async fn logout(State(redis): State<ConnectionManager>, headers: HeaderMap) -> Response {
    if let Err(status) = exists(&redis, cookie(&headers)).await {
        return problem(status);
    }
    (
        [(CACHE_CONTROL, "no-store"), (SET_COOKIE, CLEAR_REFRESH)],
        Json(json!({ "message": "Successfully logged out" })),
    )
        .into_response()
}
