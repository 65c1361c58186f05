//! The poem example app as a library: [`app`] builds the endpoint the binary serves, so
//! tests can serve it in process too.

use otp_core::OtpAuth;
use otp_poem::CurrentUser;
use poem::web::Html;
use poem::{EndpointExt, Response, Route, get, handler};

#[handler]
fn protected(user: CurrentUser) -> Response {
    // poem's `Json` adds `; charset=utf-8`; answer exactly as the axum example does.
    Response::builder()
        .content_type("application/json")
        .body(example_common::protected_body(&user.email).to_string())
}

#[handler]
fn metrics() -> Response {
    Response::builder()
        .content_type(example_common::METRICS_CONTENT_TYPE)
        .body(example_common::metrics_text())
}

#[handler]
fn login_page() -> Html<&'static str> {
    Html(example_common::LOGIN_PAGE)
}

/// The app: the login page at `/`, the auth routes at `/auth`, `GET /protected`,
/// Prometheus metrics at `GET /metrics`, and the OpenAPI document at `/openapi.json` with
/// its docs page at `/docs`.
pub fn app(auth: OtpAuth) -> impl poem::Endpoint + 'static {
    let doc = example_common::openapi(&auth);
    Route::new()
        .at("/", get(login_page))
        .at("/protected", get(protected))
        .at("/metrics", get(metrics))
        .at("/openapi.json", otp_poem::openapi_json(&doc))
        .at("/docs", otp_poem::docs_page())
        .nest("/auth", otp_poem::routes(auth.clone()))
        .data(auth)
}
