//! axum adapter for [`otp_core`]: a [`Router`] serving the login endpoints and a
//! [`CurrentUser`] extractor for protected routes.
//!
//! ```no_run
//! use std::net::SocketAddr;
//! use std::sync::Arc;
//!
//! use axum::{Json, Router, routing::get};
//! use otp_axum::CurrentUser;
//! use otp_core::{Config, ConsoleMailer, MemoryStore, OtpAuth};
//!
//! async fn protected(user: CurrentUser) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "message": format!("Hello, {}!", user.email) }))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = OtpAuth::builder(Config::load()?)
//!     .stores(MemoryStore::new())
//!     .mailer(Arc::new(ConsoleMailer::new()))
//!     .build()?;
//! let app = Router::new()
//!     .route("/protected", get(protected))
//!     .nest("/auth", otp_axum::router(auth.clone()))
//!     .with_state(auth);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // The client IP (for the per-IP limit) comes from the connection: serve with connect info.
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! Everything but the translation between axum and plain request parts lives in
//! `otp-core` ([`OtpAuth::handle`]), so statuses, bodies, headers and cookies are those of
//! the contract, identical in every adapter.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::net::SocketAddr;
use std::ops::Deref;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{
    ConnectInfo, FromRef, FromRequestParts, OptionalFromRequestParts, Request, State,
};
use axum::http::header::{
    ACCEPT_LANGUAGE, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, ORIGIN, USER_AGENT,
};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use otp_core::{ApiResponse, Endpoint, Error, OtpAuth, RequestHeaders, Route};

/// The endpoints of the contract, to be nested where you want them (the examples use
/// `/auth`): `POST /request-otp`, `/verify-otp`, `/verify-link`, `/refresh`, `/logout`,
/// `/logout-all`, `/logout-others`; `GET /sessions`, `DELETE /sessions/{id}`;
/// `GET /magic` (the sign-in link's page) and `GET /jwks.json`.
///
/// Unknown paths under it answer 404 and other methods 405 (with `Allow`), both as
/// problem+json. Serve the app with `into_make_service_with_connect_info::<SocketAddr>()`:
/// the per-IP limit needs the peer address, and `/request-otp` refuses to run without it.
pub fn router<S>(auth: OtpAuth) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut r = Router::new();
    for endpoint in Endpoint::ALL {
        r = r.route(endpoint.path(), any(serve));
    }
    r.fallback(|| async { render(ApiResponse::not_found()) })
        .with_state(auth)
}

fn header(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn serve(State(auth): State<OtpAuth>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    // Nested routers see the path without the mount point.
    let route = match Route::resolve(parts.method.as_str(), parts.uri.path()) {
        Ok(route) => route,
        Err(refused) => return render(refused),
    };
    // `MockConnectInfo` is what axum's own testing layer provides (tower `oneshot`).
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
        .or_else(|| {
            parts
                .extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|m| m.0.ip())
        });
    let h = &parts.headers;
    // HTTP/2 carries the host in the request target, not in a header.
    let parts_authority = parts.uri.authority().map(|a| a.as_str());
    let all = |name: HeaderName| -> Vec<&str> {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    };
    let headers = RequestHeaders {
        content_length: header(h, CONTENT_LENGTH),
        content_type: header(h, CONTENT_TYPE),
        authorization: header(h, AUTHORIZATION),
        cookies: all(COOKIE),
        origin: header(h, ORIGIN),
        host: header(h, HOST).or(parts_authority),
        sec_fetch_site: header(h, HeaderName::from_static("sec-fetch-site")),
        user_agent: header(h, USER_AGENT),
        forwarded_for: all(HeaderName::from_static("x-forwarded-for")),
        accept_language: header(h, ACCEPT_LANGUAGE),
    };
    if let Err(refused) = auth.precheck(
        route.endpoint,
        &headers,
        peer,
        "serve the app with into_make_service_with_connect_info::<SocketAddr>()",
    ) {
        return render(refused);
    }
    let limit = auth.config().body_limit_bytes;
    let Ok(bytes) = to_bytes(body, limit).await else {
        // Over the limit while streaming (or the client went away: then nobody reads this).
        return render(ApiResponse::body_too_large(limit));
    };
    render(
        auth.handle_parts(route, &headers, parts.uri.query(), &bytes, peer)
            .await,
    )
}

/// Writes a framework-free response as an axum one.
pub fn render(resp: ApiResponse) -> Response {
    let mut out = Response::new(Body::from(resp.body));
    *out.status_mut() =
        StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(resp.content_type));
    for (name, value) in resp.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(HeaderName::from_static(name), v);
        }
    }
    out
}

/// The authenticated user of a request: `Authorization: Bearer <access token>`, checked for
/// signature, algorithm, type, expiry, issuer/audience and revocation.
///
/// Rejections follow the contract: 401 with `WWW-Authenticate: Bearer` (and
/// `error="invalid_token"` when a token was presented), 503 when the store cannot be asked
/// (fail closed). As `Option<CurrentUser>` it yields `None` when no bearer token is
/// presented and still rejects a presented token that is invalid.
///
/// The state must give an [`OtpAuth`] (`OtpAuth: FromRef<S>`).
#[derive(Debug, Clone)]
pub struct CurrentUser(pub otp_core::CurrentUser);

impl Deref for CurrentUser {
    type Target = otp_core::CurrentUser;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Why [`CurrentUser`] refused a request; renders as the contract's problem response.
#[derive(Debug)]
pub struct AuthRejection(pub Error);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        render(ApiResponse::error(&self.0))
    }
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    OtpAuth: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = OtpAuth::from_ref(state);
        auth.authenticate_header(header(&parts.headers, AUTHORIZATION))
            .await
            .map(CurrentUser)
            .map_err(AuthRejection)
    }
}

impl<S> OptionalFromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    OtpAuth: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let authorization = header(&parts.headers, AUTHORIZATION);
        if otp_core::bearer_token(authorization)
            .is_err_and(|e| matches!(e, Error::Unauthorized(otp_core::TokenRejection::Missing)))
        {
            return Ok(None);
        }
        let auth = OtpAuth::from_ref(state);
        auth.authenticate_header(authorization)
            .await
            .map(|u| Some(CurrentUser(u)))
            .map_err(AuthRejection)
    }
}

/// `GET /openapi.json` (the document) and `GET /docs` (the interactive page), to merge into
/// the app at its root: `app.merge(otp_axum::openapi_router(doc))`.
#[cfg(feature = "openapi")]
pub fn openapi_router<S>(doc: utoipa::openapi::OpenApi) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let json = serde_json::to_vec(&doc).unwrap_or_default();
    Router::new()
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let json = json.clone();
                async move { ([(CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .route(
            "/docs",
            axum::routing::get(|| async {
                (
                    [(CONTENT_TYPE, "text/html; charset=utf-8")],
                    otp_core::openapi::DOCS_PAGE,
                )
            }),
        )
}
