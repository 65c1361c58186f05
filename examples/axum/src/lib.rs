//! The axum example app as a library: [`app`] builds the router the binary serves, so
//! tests can serve it in process too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use example_common::AppClaims;
use otp_axum::{CurrentUser, RequireUserLayer};
use otp_core::OtpAuth;
use serde_json::Value;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The app's state: the login engine beside something of the app's own.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The login engine, which `CurrentUser` finds through `FromRef`.
    pub auth: OtpAuth,
    /// Calls to `GET /app/me` since the start.
    pub visits: Arc<AtomicU64>,
}

impl FromRef<AppState> for OtpAuth {
    fn from_ref(state: &AppState) -> OtpAuth {
        state.auth.clone()
    }
}

async fn protected(user: CurrentUser) -> Json<Value> {
    Json(example_common::protected_body(&user.email))
}

/// Under the `RequireUserLayer`: the user is already checked, and the token's own claims
/// arrive typed.
async fn me(State(state): State<AppState>, user: CurrentUser<AppClaims>) -> Json<Value> {
    let visits = state.visits.fetch_add(1, Ordering::Relaxed) + 1;
    Json(example_common::me_body(
        &user.email,
        &user.subject,
        &user.extra,
        visits,
    ))
}

async fn login_page() -> Html<&'static str> {
    Html(example_common::LOGIN_PAGE)
}

/// The app: the login page at `/`, the auth routes at `/auth`, `GET /protected`, the
/// sub-router `/app` (every route of it requires a signed-in user: `GET /app/me`),
/// the admin endpoints under `/admin` (administrators only: the `admin` role of
/// `APP_ADMINS`; `otp_axum::admin_router`), and the OpenAPI document at `/openapi.json` with its docs page at `/docs`.
///
/// No `/metrics` here: the counters by outcome would tell anyone who is signing in. The
/// binary serves them on a listener of their own (`APP_METRICS_ADDR`, loopback by default;
/// `example_common::start_metrics`).
///
/// With `OTP_AUTH_ALLOWED_ORIGINS` set, those origins (and only those) also get CORS answers
/// with credentials: the same setting feeds otp-core's Origin check.
pub fn app(auth: OtpAuth) -> Router {
    let doc = example_common::openapi(&auth);
    let cors = cors(&auth.config().http.allowed_origins);
    let private = Router::new()
        .route("/me", get(me))
        .route_layer(RequireUserLayer::new(auth.clone()));
    let admins = RequireUserLayer::new(auth.clone()).require_claims(example_common::is_admin);
    let state = AppState {
        auth: auth.clone(),
        visits: Arc::default(),
    };
    let router = Router::new()
        .route("/", get(login_page))
        .route("/protected", get(protected))
        .nest("/app", private)
        .nest("/admin", otp_axum::admin_router(admins))
        .nest("/auth", otp_axum::router(auth))
        .merge(otp_axum::openapi_router(doc))
        .with_state(state);
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}

/// tower-http's CORS layer for `origins`, or none when the list is empty (same-origin only).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    // Config::validate has checked each entry is an origin; one that still is not a header
    // value is left out rather than failing the start.
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    let parse = |names: &[&str]| -> Vec<HeaderName> {
        names.iter().filter_map(|n| n.parse().ok()).collect()
    };
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods(
                example_common::CORS_METHODS
                    .iter()
                    .filter_map(|m| m.parse::<Method>().ok())
                    .collect::<Vec<_>>(),
            )
            .allow_headers(parse(&example_common::CORS_REQUEST_HEADERS))
            .expose_headers(parse(&example_common::CORS_EXPOSED_HEADERS))
            .max_age(Duration::from_secs(example_common::CORS_MAX_AGE_SECONDS)),
    )
}
