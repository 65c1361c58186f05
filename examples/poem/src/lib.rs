//! The poem example app as a library: [`app`] builds the endpoint the binary serves, so
//! tests can serve it in process too.

use otp_core::OtpAuth;
use otp_poem::CurrentUser;
use poem::http::Method;
use poem::middleware::Cors;
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
///
/// With `OTP_AUTH_ALLOWED_ORIGINS` set, those origins (and only those) also get CORS answers
/// with credentials: the same setting feeds otp-core's Origin check.
pub fn app(auth: OtpAuth) -> impl poem::Endpoint + 'static {
    let doc = example_common::openapi(&auth);
    let origins = auth.config().http.allowed_origins.clone();
    let route = Route::new()
        .at("/", get(login_page))
        .at("/protected", get(protected))
        .at("/metrics", get(metrics))
        .at("/openapi.json", otp_poem::openapi_json(&doc))
        .at("/docs", otp_poem::docs_page())
        .nest("/auth", otp_poem::routes(auth.clone()))
        .data(auth);
    // poem's `Cors` with no origin allows every origin: with none configured, no CORS.
    let cors = (!origins.is_empty()).then(|| {
        Cors::new()
            .allow_origins(origins)
            .allow_credentials(true)
            .allow_methods(
                example_common::CORS_METHODS
                    .iter()
                    .filter_map(|m| m.parse::<Method>().ok()),
            )
            .allow_headers(example_common::CORS_REQUEST_HEADERS)
            .expose_headers(example_common::CORS_EXPOSED_HEADERS)
            .max_age(example_common::CORS_MAX_AGE_SECONDS as i32)
    });
    route.with_if(cors.is_some(), cors.unwrap_or_default())
}
