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

/// The refresh cookie, with the attributes of the real default one.
const SET_REFRESH: &str = "refresh_token=bench-refresh-token; Max-Age=604800; Path=/; \
                           HttpOnly; Secure; SameSite=Lax";

/// The cookie-clearing header of `/auth/logout`.
const CLEAR_REFRESH: &str = "refresh_token=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; \
                             Path=/; HttpOnly; Secure; SameSite=Lax";

/// A fixed fake access token about as long as a real one (a JWT of ~400 characters), so
/// answers and the bearer header weigh what they weigh with the real app; it lives as long
/// as the real default (3600 s).
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
    pub(crate) fn parse(args: &mut pico_args::Arguments) -> Result<Self, String> {
        let addr = args.value_from_str("--addr").map_err(|e| e.to_string())?;
        let redis = args.value_from_str("--redis").map_err(|e| e.to_string())?;
        Ok(Self { addr, redis })
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
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    let stop = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = terminate.recv() => {},
        }
    };
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    let serve = axum::serve(listener, service).with_graceful_shutdown(stop);
    serve
        .await
        .map_err(|e| format!("serving on {}: {e}", args.addr))
}

/// The one Redis round trip of every request, `EXISTS bench:{key}`, then `answer`; a
/// bodiless error with the real app's cache header when there is no key or Redis fails.
async fn exists_then(
    mut redis: ConnectionManager,
    key: Result<&str, StatusCode>,
    answer: impl IntoResponse,
) -> Response {
    let exists = match key {
        Ok(key) => (redis::cmd("EXISTS").arg(format!("bench:{key}")))
            .query_async::<i64>(&mut redis)
            .await
            .map_err(|_| StatusCode::SERVICE_UNAVAILABLE),
        Err(status) => Err(status),
    };
    match exists {
        Ok(_) => answer.into_response(),
        Err(status) => (status, [(CACHE_CONTROL, "no-store")]).into_response(),
    }
}

/// The `email` field of a JSON body.
fn email(body: &Value) -> Result<&str, StatusCode> {
    body["email"]
        .as_str()
        .ok_or(StatusCode::UNPROCESSABLE_ENTITY)
}

/// The `Cookie` header, or `-` when there is none (still one `EXISTS`).
fn cookie(headers: &HeaderMap) -> Result<&str, StatusCode> {
    Ok(headers
        .get(COOKIE)
        .map_or("-", |v| v.to_str().unwrap_or("-")))
}

/// The answer of verify-otp and refresh: a token and a refresh cookie.
fn tokens(message: Option<&str>) -> impl IntoResponse {
    let token = ACCESS_TOKEN.as_str();
    let mut body = json!({"access_token": token, "token_type": "bearer", "expires_in": 3600});
    if let Some(message) = message {
        body["message"] = json!(message);
    }
    let headers = [(CACHE_CONTROL, "no-store"), (SET_COOKIE, SET_REFRESH)];
    (headers, Json(body))
}

type Redis = State<ConnectionManager>;

async fn protected(State(redis): Redis, headers: HeaderMap) -> Response {
    let token = (headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()))
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(StatusCode::UNAUTHORIZED);
    let answer = json!({ "message": "Hello, user@example.com!" });
    exists_then(redis, token, Json(answer)).await
}

async fn request_otp(State(redis): Redis, Json(body): Json<Value>) -> Response {
    let answer = (
        [(CACHE_CONTROL, "no-store")],
        Json(json!({ "message": "OTP sent successfully" })),
    );
    exists_then(redis, email(&body), answer).await
}

async fn verify_otp(State(redis): Redis, Json(body): Json<Value>) -> Response {
    let answer = tokens(Some("OTP verified successfully!"));
    exists_then(redis, email(&body), answer).await
}

async fn refresh(State(redis): Redis, headers: HeaderMap) -> Response {
    exists_then(redis, cookie(&headers), tokens(None)).await
}

async fn logout(State(redis): Redis, headers: HeaderMap) -> Response {
    let answer = json!({ "message": "Successfully logged out" });
    let clear = [(CACHE_CONTROL, "no-store"), (SET_COOKIE, CLEAR_REFRESH)];
    exists_then(redis, cookie(&headers), (clear, Json(answer))).await
}
