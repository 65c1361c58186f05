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

async fn login_page() -> Html<&'static str> {
    Html(example_common::LOGIN_PAGE)
}

/// The app: the login page at `/`, the auth router at `/auth` and `GET /protected`.
pub fn app(auth: OtpAuth) -> Router {
    Router::new()
        .route("/", get(login_page))
        .route("/protected", get(protected))
        .nest("/auth", otp_axum::router(auth.clone()))
        .with_state(auth)
}
