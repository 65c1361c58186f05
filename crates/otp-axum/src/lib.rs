//! axum adapter for [`otp_core`]: a [`Router`] serving the login endpoints, a
//! [`CurrentUser`] extractor (with typed claims) and a [`RequireUserLayer`] for protected routes.
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::{Json, Router, routing::get};
//! use otp_axum::CurrentUser;
//! use otp_core::{Config, OtpAuth, mailer::ConsoleMailer, store::MemoryStore};
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
//! // `axum::serve` sets no deadline for a slow client's request head: facing clients
//! // directly, serve through hyper with a header-read timeout (as the example app does).
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
//!
//! Everything but finding the client's address lives in `otp-core` ([`otp_core::adapter::serve`],
//! which takes and gives the `http` crate's types, as axum does), so statuses, bodies,
//! headers and cookies are those of the contract, identical in every adapter.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, OptionalFromRequestParts, State};
use axum::http::Request;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use otp_core::adapter::Guard;
use otp_core::adapter::{AdminEndpoint, DeserializeOwned, Endpoint};
use otp_core::{Error, OtpAuth, token::TokenRejection};
use tower_layer::Layer;
use tower_service::Service;

/// The endpoints of the contract, to be nested where you want them (the examples use
/// `/auth`): every [`Endpoint`] of the route table, at its
/// method and path.
///
/// Unknown paths under it answer 404 and other methods 405 (with `Allow`), both as
/// problem+json. Serve the app with `into_make_service_with_connect_info::<SocketAddr>()`:
/// the per-IP limit needs the peer address, and `/request-otp` refuses to run without it.
pub fn router<S>(auth: OtpAuth) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut r = Router::new();
    let mut paths: Vec<&str> = Endpoint::ALL.iter().map(|e| e.path()).collect();
    paths.sort_unstable();
    paths.dedup(); // one route per path: otp-core tells the methods apart (405)
    for path in paths {
        r = r.route(path, any(serve));
    }
    // Unknown paths too: otp-core answers them (404).
    r.fallback(serve).with_state(auth)
}

/// The admin endpoints ([`otp_core::adapter::serve_admin`]), to be nested where you want
/// them (the examples use `/admin`), behind `guard`: a [`RequireUserLayer`] with the
/// application's check of who administers (401 without a valid access token, 403 for
/// everyone else). List and end a user's sessions, read, lock and unlock an address, mail
/// it a sign-in; each action is an audit event naming the administrator.
///
/// ```
/// use axum::Router;
/// use otp_axum::RequireUserLayer;
/// use otp_core::OtpAuth;
///
/// #[derive(serde::Deserialize)]
/// struct Roles {
///     #[serde(default)]
///     roles: Vec<String>,
/// }
///
/// fn app(auth: OtpAuth) -> Router {
///     let admins = RequireUserLayer::new(auth.clone())
///         .require_claims(|c: &Roles| c.roles.iter().any(|r| r == "admin"));
///     Router::new()
///         .nest("/auth", otp_axum::router(auth))
///         .nest("/admin", otp_axum::admin_router(admins))
/// }
/// ```
///
/// A guard without a check would let every signed-in user administer: such a router
/// answers 500 to every request (and logs why).
pub fn admin_router<S>(guard: RequireUserLayer) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let mut r = Router::new();
    let mut paths: Vec<&str> = AdminEndpoint::ALL.iter().map(|e| e.path()).collect();
    paths.sort_unstable();
    paths.dedup();
    for path in paths {
        r = r.route(path, any(serve_admin));
    }
    r.fallback(serve_admin).with_state(guard)
}

async fn serve_admin(State(guard): State<RequireUserLayer>, req: Request<Body>) -> Response {
    otp_core::adapter::serve_admin(&guard.auth, &guard.guard, req)
        .await
        .map(Body::from)
}

async fn serve(State(auth): State<OtpAuth>, mut req: Request<Body>) -> Response {
    // The mount point: the original path less the one the nested router sees.
    let mount = (req.extensions().get::<axum::extract::OriginalUri>())
        .and_then(|original| original.path().strip_suffix(req.uri().path()))
        .map(str::to_owned);
    if let Some(mount) = mount {
        req.extensions_mut().insert(otp_core::adapter::Mount(mount));
    }
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
    otp_core::adapter::serve(&auth, req, peer)
        .await
        .map(Body::from)
}

fn rejection(e: Error) -> Response {
    otp_core::adapter::error_response(e).map(Body::from)
}

otp_core::adapter::user_extractor_type! {
    /// The authenticated user of a request: `Authorization: Bearer <access token>`, checked for
    /// signature, algorithm, type, expiry, issuer/audience and revocation. Under
    /// [`RequireUserLayer`], the user the layer checked (no second check).
    ///
    /// `CurrentUser<C>` also reads the application's own claims (those its `Hooks::claims`
    /// added) into `C: DeserializeOwned`, as `user.extra`; claims that do not fit `C` are a
    /// 401, like a bad token. `CurrentUser` alone is `CurrentUser<()>`.
    ///
    /// Rejections follow the contract: 401 with `WWW-Authenticate: Bearer` (and
    /// `error="invalid_token"` when a token was presented), 503 when the store cannot be asked
    /// (fail closed). As `Option<CurrentUser>` it yields `None` when no bearer token is
    /// presented and still rejects a presented token that is invalid.
    ///
    /// The state must give an [`OtpAuth`] (`OtpAuth: FromRef<S>`): an application state of
    /// its own holds one and implements `FromRef` (or derives it with axum's `macros`).
    CurrentUser
}

/// An engine error as the contract's answer: an RFC 9457 problem document with the
/// contract's status and headers (`WWW-Authenticate`, `Retry-After`). It is what
/// [`CurrentUser`] and [`RequireUserLayer`] refuse with, and what a handler of the
/// application returns to answer an engine error: `?` converts one.
///
/// ```
/// use axum::{Json, extract::State};
/// use otp_axum::Problem;
/// use otp_core::OtpAuth;
/// use otp_core::flow::Account;
///
/// async fn sessions_of(
///     State(auth): State<OtpAuth>,
/// ) -> Result<Json<Vec<otp_core::store::SessionInfo>>, Problem> {
///     Ok(Json(auth.admin().sessions_of(&Account::subject("user-42")).await?))
/// }
/// ```
#[derive(Debug)]
pub struct Problem(pub Error);

impl From<Error> for Problem {
    fn from(e: Error) -> Problem {
        Problem(e)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        rejection(self.0)
    }
}

impl<S, C> FromRequestParts<S> for CurrentUser<C>
where
    S: Send + Sync,
    OtpAuth: FromRef<S>,
    C: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = OtpAuth::from_ref(state);
        match otp_core::adapter::request_user(&auth, &parts.headers, &parts.extensions).await {
            Ok(Some(user)) => CurrentUser::from_user(user).map_err(Problem),
            Ok(None) => Err(Problem(Error::Unauthorized(TokenRejection::Missing))),
            Err(e) => Err(Problem(e)),
        }
    }
}

impl<S, C> OptionalFromRequestParts<S> for CurrentUser<C>
where
    S: Send + Sync,
    OtpAuth: FromRef<S>,
    C: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let auth = OtpAuth::from_ref(state);
        match otp_core::adapter::request_user(&auth, &parts.headers, &parts.extensions).await {
            Ok(Some(user)) => CurrentUser::from_user(user).map(Some).map_err(Problem),
            Ok(None) => Ok(None),
            Err(e) => Err(Problem(e)),
        }
    }
}

/// [`CurrentUser`] who proved the address within the last `MAX_AGE_SECS` seconds (signed in
/// or re-authenticated: the token's `auth_time`): the guard of a sensitive action.
///
/// An older (or absent) `auth_time` is refused with RFC 9470's challenge: 401 with
/// `WWW-Authenticate: Bearer error="insufficient_user_authentication",
/// error_description="…", max_age=MAX_AGE_SECS`. The client then calls
/// `/reauthenticate` and `/verify-reauthentication`, and retries with the new access
/// token. Other refusals are [`CurrentUser`]'s.
///
/// ```
/// use otp_axum::RecentUser;
///
/// // Authenticated within the last 5 minutes.
/// async fn delete_account(user: RecentUser<300>) -> String {
///     format!("deleting {}", user.email)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RecentUser<const MAX_AGE_SECS: u64, C = ()>(pub CurrentUser<C>);

impl<const MAX_AGE_SECS: u64, C> std::ops::Deref for RecentUser<MAX_AGE_SECS, C> {
    type Target = CurrentUser<C>;
    fn deref(&self) -> &CurrentUser<C> {
        &self.0
    }
}

impl<S, C, const MAX_AGE_SECS: u64> FromRequestParts<S> for RecentUser<MAX_AGE_SECS, C>
where
    S: Send + Sync,
    OtpAuth: FromRef<S>,
    C: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user =
            <CurrentUser<C> as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        user.require_recent(MAX_AGE_SECS).map_err(Problem)?;
        Ok(RecentUser(user))
    }
}

/// A tower layer that lets through only requests with a signed-in user: every route of the
/// router it wraps is protected. It answers 401 (with `WWW-Authenticate: Bearer`) without
/// a valid access token and 503 when the store cannot be asked, as [`CurrentUser`] does,
/// and leaves the user ([`otp_core::CurrentUser`]) in the request's extensions, where
/// [`CurrentUser`] finds it without checking the token or asking the store again.
///
/// ```
/// use axum::{Router, routing::get};
/// use otp_axum::{CurrentUser, RequireUserLayer};
/// # fn demo(auth: otp_core::OtpAuth) -> Router {
/// async fn account(user: CurrentUser) -> String {
///     user.email.clone()
/// }
/// let private = Router::new()
///     .route("/account", get(account))
///     .route_layer(RequireUserLayer::new(auth.clone()));
/// Router::new().nest("/app", private).with_state(auth)
/// # }
/// ```
///
/// Use `route_layer` so that unknown paths under it still answer 404 rather than 401.
/// [`RequireUserLayer::max_age`] also demands a recent authentication, as [`RecentUser`]
/// does, and [`RequireUserLayer::require_claims`] (or [`RequireUserLayer::check`]) a role:
///
/// ```
/// use axum::{Router, routing::get};
/// use otp_axum::RequireUserLayer;
/// use serde::Deserialize;
/// # fn demo(auth: otp_core::OtpAuth) -> Router {
/// #[derive(Deserialize)]
/// struct Roles {
///     roles: Vec<String>,
/// }
/// // 403 for users whose token's `roles` claim (added by the app's `Hooks::claims`) lacks
/// // `admin`.
/// let admin = Router::new()
///     .route("/stats", get(|| async { "…" }))
///     .route_layer(RequireUserLayer::new(auth.clone())
///         .require_claims(|c: &Roles| c.roles.iter().any(|r| r == "admin")));
/// Router::new().nest("/admin", admin).with_state(auth)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RequireUserLayer {
    auth: OtpAuth,
    guard: Guard,
}

impl RequireUserLayer {
    /// The layer, checking users with `auth`.
    pub fn new(auth: OtpAuth) -> Self {
        RequireUserLayer {
            auth,
            guard: Guard::default(),
        }
    }

    /// Lets through only users who proved the address within the last `max_age` (signed
    /// in or re-authenticated); others get RFC 9470's `insufficient_user_authentication`
    /// challenge (401), as [`RecentUser`] answers.
    pub fn max_age(mut self, max_age: std::time::Duration) -> Self {
        self.guard = self.guard.max_age(max_age.as_secs());
        self
    }

    /// Lets through only users for whom `check` answers `true`; the others get 403
    /// ([`Guard::check`]).
    pub fn check(
        mut self,
        check: impl Fn(&otp_core::CurrentUser) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.guard = self.guard.check(check);
        self
    }

    /// Lets through only users whose own claims, read as `C`, pass `check`; the others
    /// (claims that do not fit `C` included) get 403 ([`Guard::require_claims`]). Claims are
    /// as fresh as the access token.
    pub fn require_claims<C: DeserializeOwned>(
        mut self,
        check: impl Fn(&C) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.guard = self.guard.require_claims(check);
        self
    }
}

impl<S> Layer<S> for RequireUserLayer {
    type Service = RequireUser<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireUser {
            auth: self.auth.clone(),
            guard: self.guard.clone(),
            inner,
        }
    }
}

/// The service of [`RequireUserLayer`].
#[derive(Debug, Clone)]
pub struct RequireUser<S> {
    auth: OtpAuth,
    guard: Guard,
    inner: S,
}

impl<S, B> Service<Request<B>> for RequireUser<S>
where
    S: Service<Request<B>> + Clone + Send + 'static,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone that was driven to readiness serves this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let guard = self.guard.clone();
        Box::pin(async move {
            let admitted = guard.admit(&auth, req.headers(), req.uri().path()).await;
            match admitted {
                Ok(user) => {
                    req.extensions_mut().insert(user);
                    inner.call(req).await.map(IntoResponse::into_response)
                }
                Err(e) => Ok(rejection(e)),
            }
        })
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
                    otp_core::adapter::openapi::DOCS_PAGE,
                )
            }),
        )
}

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
