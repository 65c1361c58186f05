//! The axum example app as a library: [`app`] builds the router the binary serves, so
//! tests can serve it in process too.

use axum::response::Html;
use axum::routing::get;
use axum::{Json, Router};
use otp_axum::CurrentUser;
use otp_core::OtpAuth;
use serde_json::Value;

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
pub fn app(auth: OtpAuth) -> Router {
    let doc = example_common::openapi(&auth);
    Router::new()
        .route("/", get(login_page))
        .route("/protected", get(protected))
        .route("/metrics", get(metrics))
        .nest("/auth", otp_axum::router(auth.clone()))
        .merge(otp_axum::openapi_router(doc))
        .with_state(auth)
}
