//! axum adapter for [`otp_core`]: a [`Router`] serving the login endpoints and a
//! [`CurrentUser`] extractor for protected routes.
//!
//! ```no_run
//! use std::net::SocketAddr;
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
//!     .mailer(ConsoleMailer::new())
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
//! Everything but finding the client's address lives in `otp-core` ([`OtpAuth::serve`],
//! which takes and gives the `http` crate's types, as axum does), so statuses, bodies,
//! headers and cookies are those of the contract, identical in every adapter.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{
    ConnectInfo, FromRef, FromRequestParts, OptionalFromRequestParts, Request, State,
};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use otp_core::adapter::Endpoint;
use otp_core::{Error, OtpAuth, TokenRejection};

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
    // Unknown paths too: otp-core answers them (404).
    r.fallback(serve).with_state(auth)
}

async fn serve(State(auth): State<OtpAuth>, req: Request) -> Response {
    // `MockConnectInfo` is what axum's own testing layer provides (tower `oneshot`).
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ci| ci.0.ip())
        .or_else(|| {
            req.extensions()
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|m| m.0.ip())
        });
    // Nested routers see the path without the mount point, as otp-core expects.
    auth.serve(req, peer).await.map(Body::from)
}

fn rejection(e: Error) -> Response {
    otp_core::adapter::error_response(e).map(Body::from)
}

otp_core::user_extractor_type! {
    /// The authenticated user of a request: `Authorization: Bearer <access token>`, checked for
    /// signature, algorithm, type, expiry, issuer/audience and revocation.
    ///
    /// Rejections follow the contract: 401 with `WWW-Authenticate: Bearer` (and
    /// `error="invalid_token"` when a token was presented), 503 when the store cannot be asked
    /// (fail closed). As `Option<CurrentUser>` it yields `None` when no bearer token is
    /// presented and still rejects a presented token that is invalid.
    ///
    /// The state must give an [`OtpAuth`] (`OtpAuth: FromRef<S>`).
    CurrentUser
}

/// Why [`CurrentUser`] refused a request; renders as the contract's problem response.
#[derive(Debug)]
pub struct AuthRejection(pub Error);

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        rejection(self.0)
    }
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: Send + Sync,
    OtpAuth: FromRef<S>,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match OtpAuth::from_ref(state).current_user(&parts.headers).await {
            Ok(Some(user)) => Ok(CurrentUser(user)),
            Ok(None) => Err(AuthRejection(Error::Unauthorized(TokenRejection::Missing))),
            Err(e) => Err(AuthRejection(e)),
        }
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
        OtpAuth::from_ref(state)
            .current_user(&parts.headers)
            .await
            .map(|user| user.map(CurrentUser))
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
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        json,
                    )
                }
            }),
        )
        .route(
            "/docs",
            axum::routing::get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    otp_core::openapi::DOCS_PAGE,
                )
            }),
        )
}
