//! The poem example app as a library: [`app`] builds the endpoint the binary serves, so
//! tests can serve it in process too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use example_common::AppClaims;
use otp_core::OtpAuth;
use otp_poem::api::BearerUser;
use otp_poem::{CurrentUser, RequireUser};
use poem::http::Method;
use poem::middleware::Cors;
use poem::web::{Data, Html};
use poem::{Endpoint, EndpointExt, IntoEndpoint, Response, Route, get, handler};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, OpenApiService};
use serde_json::Value;

/// The app's own API, documented by poem-openapi: its operations take the user as a
/// security scheme, so the generated document shows the bearer requirement.
#[derive(Debug)]
pub struct AppApi;

/// The answer of `GET /protected`.
#[derive(ApiResponse)]
enum Greeting {
    /// `{"message": "Hello, <email>!"}`.
    // poem-openapi's `Json` says `; charset=utf-8`; answer exactly as the axum example does.
    #[oai(status = 200, content_type = "application/json")]
    Ok(Json<Value>),
}

#[OpenApi]
impl AppApi {
    /// Greets the authenticated user.
    #[oai(path = "/protected", method = "get")]
    async fn protected(&self, user: BearerUser) -> Greeting {
        Greeting::Ok(Json(example_common::protected_body(&user.email)))
    }
}

/// Calls to `GET /app/me` since the start: the app's own data, beside the engine.
#[derive(Debug, Clone, Default)]
pub struct Visits(pub Arc<AtomicU64>);

/// Under the `RequireUser` middleware: the user is already checked, and the token's own
/// claims arrive typed.
#[handler]
fn me(user: CurrentUser<AppClaims>, visits: Data<&Visits>) -> Response {
    let visits = visits.0.0.fetch_add(1, Ordering::Relaxed) + 1;
    Response::builder()
        .content_type("application/json")
        .body(example_common::me_body(&user.email, &user.subject, &user.extra, visits).to_string())
}

#[handler]
fn login_page() -> Html<&'static str> {
    Html(example_common::LOGIN_PAGE)
}

/// The app's own routes all take `GET` (and, through poem, `HEAD`): their 405 answers say
/// so in `Allow`, as RFC 9110 requires (poem's router leaves it out).
fn get_only<E: Endpoint + 'static>(ep: E) -> impl Endpoint<Output = Response> {
    otp_poem::with_allow(ep, "GET, HEAD")
}

/// The app: the login page at `/`, the auth routes at `/auth`, `GET /protected` (a
/// poem-openapi operation, its own document at `GET /api.json`), the routes under `/app`
/// (every one requires a signed-in user: `GET /app/me`), the admin endpoints under `/admin`
/// (administrators only: the `admin` role of `APP_ADMINS`; `otp_poem::admin_routes`), and
/// the OpenAPI document at
/// `/openapi.json` with its docs page at `/docs`.
///
/// No `/metrics` here: the counters by outcome would tell anyone who is signing in. The
/// binary serves them on a listener of their own (`APP_METRICS_ADDR`, loopback by default;
/// `example_common::start_metrics`).
///
/// With `OTP_AUTH_ALLOWED_ORIGINS` set, those origins (and only those) also get CORS answers
/// with credentials: the same setting feeds otp-core's Origin check.
pub fn app(auth: OtpAuth) -> impl poem::Endpoint + 'static {
    let doc = example_common::openapi(&auth);
    let origins = auth.config().http.allowed_origins.clone();
    let api = OpenApiService::new(AppApi, "poem-example", env!("CARGO_PKG_VERSION"));
    let private = Route::new()
        .at("/me", get_only(get(me)))
        .with(RequireUser::new(auth.clone()));
    let admins = RequireUser::new(auth.clone()).require_claims(example_common::is_admin);
    let route = Route::new()
        .at("/", get_only(get(login_page)))
        .at("/api.json", get_only(api.spec_endpoint()))
        .at("/protected", get_only(api.into_endpoint()))
        .at("/openapi.json", otp_poem::openapi_json(&doc))
        .at("/docs", otp_poem::docs_page())
        .nest("/app", private)
        .nest("/admin", otp_poem::admin_routes(admins))
        .nest("/auth", otp_poem::routes(auth.clone()))
        .data(auth)
        .data(Visits::default());
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
