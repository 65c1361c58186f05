//! The axum example app as a library: [`app`] builds the router the binary serves, so
//! tests can serve it in process too.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use otp_axum::CurrentUser;
use otp_core::OtpAuth;
use serde_json::Value;
use tower_http::cors::{AllowOrigin, CorsLayer};

async fn protected(user: CurrentUser) -> Json<Value> {
    Json(example_common::protected_body(&user.email))
}

async fn metrics() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            example_common::METRICS_CONTENT_TYPE,
        )],
        example_common::metrics_text(),
    )
}

async fn login_page() -> Html<&'static str> {
    Html(example_common::LOGIN_PAGE)
}

/// The app: the login page at `/`, the auth routes at `/auth`, `GET /protected`,
/// Prometheus metrics at `GET /metrics`, and the OpenAPI document at `/openapi.json` with
/// its docs page at `/docs`.
///
/// With `OTP_AUTH_ALLOWED_ORIGINS` set, those origins (and only those) also get CORS answers
/// with credentials: the same setting feeds otp-core's Origin check.
pub fn app(auth: OtpAuth) -> Router {
    let doc = example_common::openapi(&auth);
    let cors = cors(&auth.config().http.allowed_origins);
    let router = Router::new()
        .route("/", get(login_page))
        .route("/protected", get(protected))
        .route("/metrics", get(metrics))
        .nest("/auth", otp_axum::router(auth.clone()))
        .merge(otp_axum::openapi_router(doc))
        .with_state(auth);
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
