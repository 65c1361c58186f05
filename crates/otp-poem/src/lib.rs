//! poem adapter for [`otp_core`]: an endpoint serving the login routes and a
//! [`CurrentUser`] extractor for protected handlers.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use otp_core::{Config, ConsoleMailer, MemoryStore, OtpAuth};
//! use otp_poem::CurrentUser;
//! use poem::{EndpointExt, Route, Server, get, handler, listener::TcpListener, web::Json};
//!
//! #[handler]
//! fn protected(user: CurrentUser) -> Json<serde_json::Value> {
//!     Json(serde_json::json!({ "message": format!("Hello, {}!", user.email) }))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let auth = OtpAuth::builder(Config::load()?)
//!     .stores(MemoryStore::new())
//!     .mailer(Arc::new(ConsoleMailer::new()))
//!     .build()?;
//! let app = Route::new()
//!     .at("/protected", get(protected))
//!     .nest("/auth", otp_poem::routes(auth.clone()))
//!     .data(auth);
//! Server::new(TcpListener::bind("127.0.0.1:3000")).run(app).await?;
//! # Ok(()) }
//! ```
//!
//! Everything but the translation between poem and plain request parts lives in
//! `otp-core` ([`OtpAuth::handle`]), so statuses, bodies, headers and cookies are those of
//! the contract, identical to `otp-axum`'s.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::ops::Deref;

use otp_core::{ApiResponse, Error, OtpAuth, RequestHeaders, Route};
#[cfg(feature = "openapi")]
use poem::EndpointExt;
use poem::http::header::{
    ACCEPT_LANGUAGE, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, ORIGIN, USER_AGENT,
};
use poem::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use poem::{Endpoint, FromRequest, Request, RequestBody, Response};

/// The endpoints of the contract, to be nested where you want them (the examples use
/// `/auth`): `POST /request-otp`, `/verify-otp`, `/verify-link`, `/refresh`, `/logout`,
/// `/logout-all`, `/logout-others`; `GET /sessions`, `DELETE /sessions/{id}`;
/// `GET /magic` (the sign-in link's page) and `GET /jwks.json`.
///
/// Unknown paths under it answer 404 and other methods 405 (with `Allow`), both as
/// problem+json, exactly like `otp-axum`.
pub fn routes(auth: OtpAuth) -> AuthRoutes {
    AuthRoutes { auth }
}

/// The endpoint returned by [`routes`].
#[derive(Debug, Clone)]
pub struct AuthRoutes {
    auth: OtpAuth,
}

fn header(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Writes a framework-free response as a poem one.
pub fn render(resp: ApiResponse) -> Response {
    let mut out = Response::builder()
        .status(StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(CONTENT_TYPE, resp.content_type)
        .body(resp.body);
    let headers = out.headers_mut();
    for (name, value) in resp.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(HeaderName::from_static(name), v);
        }
    }
    out
}

impl AuthRoutes {
    async fn serve(&self, route: Route<'_>, mut req: Request) -> Response {
        let auth = &self.auth;
        let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
        let body = req.take_body();
        let h = req.headers();
        // HTTP/2 carries the host in the request target, not in a header.
        let parts_authority = req.uri().authority().map(|a| a.as_str());
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
            "serve the app on a TCP listener (poem::listener::TcpListener)",
        ) {
            return render(refused);
        }
        let limit = auth.config().body_limit_bytes;
        let Ok(bytes) = body.into_bytes_limit(limit).await else {
            return render(ApiResponse::body_too_large(limit));
        };
        render(
            auth.handle_parts(route, &headers, req.uri().query(), &bytes, peer)
                .await,
        )
    }
}

impl Endpoint for AuthRoutes {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        // The path is owned here: the route borrows it while the request is consumed.
        let path = req.uri().path().to_owned();
        match Route::resolve(req.method().as_str(), &path) {
            Ok(route) => Ok(self.serve(route, req).await),
            Err(refused) => Ok(render(refused)),
        }
    }
}

/// The authenticated user of a request: `Authorization: Bearer <access token>`, checked for
/// signature, algorithm, type, expiry, issuer/audience and revocation.
///
/// Rejections follow the contract: 401 with `WWW-Authenticate: Bearer` (and
/// `error="invalid_token"` when a token was presented), 503 when the store cannot be asked
/// (fail closed). The app must carry the engine as data (`.data(auth)`).
///
/// poem's own `Option<T>` extractor turns every rejection into `None`; use
/// [`MaybeUser`] for `None` only when no bearer token is presented (a bad token still gets
/// 401), which is what `Option<CurrentUser>` means in `otp-axum`.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub otp_core::CurrentUser);

impl Deref for CurrentUser {
    type Target = otp_core::CurrentUser;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

fn engine(req: &Request) -> poem::Result<&OtpAuth> {
    req.data::<OtpAuth>().ok_or_else(|| {
        tracing::error!("CurrentUser needs the engine as data: add `.data(auth)` to the app");
        poem::Error::from_response(render(ApiResponse::error(&Error::Internal(
            "OtpAuth missing from the app data".to_owned(),
        ))))
    })
}

fn rejection(e: &Error) -> poem::Error {
    poem::Error::from_response(render(ApiResponse::error(e)))
}

impl<'a> FromRequest<'a> for CurrentUser {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let auth = engine(req)?;
        auth.authenticate_header(header(req.headers(), AUTHORIZATION))
            .await
            .map(CurrentUser)
            .map_err(|e| rejection(&e))
    }
}

/// `Some(user)` with a valid bearer token, `None` without one; a presented token that is
/// invalid, expired or revoked is rejected (401), as is an unreachable store (503).
#[derive(Debug, Clone)]
pub struct MaybeUser(pub Option<CurrentUser>);

impl<'a> FromRequest<'a> for MaybeUser {
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let authorization = header(req.headers(), AUTHORIZATION);
        if otp_core::bearer_token(authorization)
            .is_err_and(|e| matches!(e, Error::Unauthorized(otp_core::TokenRejection::Missing)))
        {
            return Ok(MaybeUser(None));
        }
        CurrentUser::from_request(req, body)
            .await
            .map(|u| MaybeUser(Some(u)))
    }
}

/// The endpoint of `GET /openapi.json`: the document as JSON.
/// Mount it with `.at("/openapi.json", otp_poem::openapi_json(&doc))`.
#[cfg(feature = "openapi")]
pub fn openapi_json(doc: &utoipa::openapi::OpenApi) -> impl Endpoint<Output = Response> + use<> {
    let json = serde_json::to_vec(doc).unwrap_or_default();
    poem::get(poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(json.clone())
    }))
    .map_to_response()
}

/// The endpoint of `GET /docs`: the interactive docs page, which reads `./openapi.json`.
#[cfg(feature = "openapi")]
pub fn docs_page() -> impl Endpoint<Output = Response> + use<> {
    poem::get(poem::endpoint::make_sync(|_| {
        Response::builder()
            .content_type("text/html; charset=utf-8")
            .body(otp_core::openapi::DOCS_PAGE)
    }))
    .map_to_response()
}
