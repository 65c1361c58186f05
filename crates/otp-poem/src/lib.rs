//! poem adapter for [`otp_core`]: an endpoint serving the login routes, a
//! [`CurrentUser`] extractor (with typed claims), a [`RequireUser`] middleware, and (feature
//! `poem-openapi`) the user as a poem-openapi security scheme.
//!
//! ```no_run
//!
//! use otp_core::{Config, OtpAuth, mailer::ConsoleMailer, store::MemoryStore};
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
//!     .mailer(ConsoleMailer::new())
//!     .build()?;
//! let app = Route::new()
//!     .at("/protected", get(protected))
//!     .nest("/auth", otp_poem::routes(auth.clone()))
//!     .data(auth);
//! // `Server` sets no deadline for a slow client's request head: facing clients directly,
//! // serve through hyper with a header-read timeout (as the example app does).
//! Server::new(TcpListener::bind("127.0.0.1:3000")).run(app).await?;
//! # Ok(()) }
//! ```
//!
//! Everything but finding the client's address and converting poem's request and
//! response to the `http` crate's lives in `otp-core` ([`otp_core::adapter::serve`]), so statuses,
//! bodies, headers and cookies are those of the contract, identical to `otp-axum`'s.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use bytes::Bytes;
use otp_core::adapter::{DeserializeOwned, Guard};
use otp_core::{Error, OtpAuth, token::TokenRejection};
use poem::{Endpoint, FromRequest, IntoResponse, Middleware, Request, RequestBody, Response};

/// The endpoints of the contract, to be nested where you want them (the examples use
/// `/auth`): every [`Endpoint`](otp_core::adapter::Endpoint) of the route table, at its
/// method and path.
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

/// poem's response of otp-core's.
fn to_poem(resp: http::Response<Bytes>) -> Response {
    let (parts, body) = resp.into_parts();
    let mut out = Response::builder().status(parts.status).body(body);
    *out.headers_mut() = parts.headers;
    out
}

impl Endpoint for AuthRoutes {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
        // The mount point: the original path less the one the nested endpoint sees.
        let mount = (req.original_uri().path())
            .strip_suffix(req.uri().path())
            .map(str::to_owned);
        // Nested endpoints see the path without the mount point, as otp-core expects.
        let mut req: http::Request<BoxBody> = req.into();
        if let Some(mount) = mount {
            req.extensions_mut().insert(otp_core::adapter::Mount(mount));
        }
        Ok(to_poem(
            otp_core::adapter::serve(&self.auth, req, peer).await,
        ))
    }
}

/// The admin endpoints ([`otp_core::adapter::serve_admin`]), to be nested where you want
/// them (the examples use `/admin`), behind `guard`: a [`RequireUser`] with the
/// application's check of who administers (401 without a valid access token, 403 for
/// everyone else). List and end a user's sessions, read, lock and unlock an address, mail
/// it a sign-in; each action is an audit event naming the administrator.
///
/// ```
/// use otp_core::OtpAuth;
/// use otp_poem::RequireUser;
/// use poem::Route;
///
/// #[derive(serde::Deserialize)]
/// struct Roles {
///     #[serde(default)]
///     roles: Vec<String>,
/// }
///
/// fn app(auth: OtpAuth) -> Route {
///     let admins = RequireUser::new(auth.clone())
///         .require_claims(|c: &Roles| c.roles.iter().any(|r| r == "admin"));
///     Route::new()
///         .nest("/auth", otp_poem::routes(auth))
///         .nest("/admin", otp_poem::admin_routes(admins))
/// }
/// ```
///
/// A guard without a check would let every signed-in user administer: such an endpoint
/// answers 500 to every request (and logs why).
pub fn admin_routes(guard: RequireUser) -> AdminRoutes {
    AdminRoutes { guard }
}

/// The endpoint returned by [`admin_routes`].
#[derive(Debug, Clone)]
pub struct AdminRoutes {
    guard: RequireUser,
}

impl Endpoint for AdminRoutes {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let req: http::Request<BoxBody> = req.into();
        Ok(to_poem(
            otp_core::adapter::serve_admin(&self.guard.auth, &self.guard.guard, req).await,
        ))
    }
}

/// The body type of poem's `http::Request`.
type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

otp_core::adapter::user_extractor_type! {
    /// The authenticated user of a request: `Authorization: Bearer <access token>`, checked for
    /// signature, algorithm, type, expiry, issuer/audience and revocation. Under
    /// [`RequireUser`], the user the middleware checked (no second check).
    ///
    /// `CurrentUser<C>` also reads the application's own claims (those its `Hooks::claims`
    /// added) into `C: DeserializeOwned`, as `user.extra`; claims that do not fit `C` are a
    /// 401, like a bad token. `CurrentUser` alone is `CurrentUser<()>`.
    ///
    /// Rejections follow the contract: 401 with `WWW-Authenticate: Bearer` (and
    /// `error="invalid_token"` when a token was presented), 503 when the store cannot be asked
    /// (fail closed). The app must carry the engine as data (`.data(auth)`).
    ///
    /// poem's own `Option<T>` extractor turns every rejection into `None`; use
    /// [`MaybeUser`] for `None` only when no bearer token is presented (a bad token still gets
    /// 401), which is what `Option<CurrentUser>` means in `otp-axum`.
    CurrentUser
}

fn engine(req: &Request) -> poem::Result<&OtpAuth> {
    req.data::<OtpAuth>().ok_or_else(|| {
        tracing::error!("CurrentUser needs the engine as data: add `.data(auth)` to the app");
        rejection(Error::Internal(
            "OtpAuth missing from the app data".to_owned(),
        ))
    })
}

fn rejection(e: Error) -> poem::Error {
    poem::Error::from_response(to_poem(otp_core::adapter::error_response(e)))
}

/// An engine error as the contract's answer: an RFC 9457 problem document with the
/// contract's status and headers (`WWW-Authenticate`, `Retry-After`). A handler of the
/// application returns `Result<_, Problem>` to answer an engine error: `?` converts one,
/// and poem turns it into the response.
///
/// ```
/// use otp_core::OtpAuth;
/// use otp_core::flow::Account;
/// use otp_poem::Problem;
/// use poem::handler;
/// use poem::web::{Data, Json};
///
/// #[handler]
/// async fn sessions_of(
///     Data(auth): Data<&OtpAuth>,
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

impl From<Problem> for poem::Error {
    fn from(p: Problem) -> poem::Error {
        rejection(p.0)
    }
}

/// The request's user: the one [`RequireUser`] left, else its bearer token checked.
async fn request_user(req: &Request) -> poem::Result<Option<otp_core::CurrentUser>> {
    if let Some(user) = req.extensions().get::<otp_core::CurrentUser>() {
        return Ok(Some(user.clone()));
    }
    otp_core::adapter::current_user(engine(req)?, req.headers())
        .await
        .map_err(rejection)
}

impl<'a, C: DeserializeOwned + Send> FromRequest<'a> for CurrentUser<C> {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        match request_user(req).await? {
            Some(user) => CurrentUser::from_user(user).map_err(rejection),
            None => Err(rejection(Error::Unauthorized(TokenRejection::Missing))),
        }
    }
}

/// `Some(user)` with a valid bearer token, `None` without one; a presented token that is
/// invalid, expired or revoked is rejected (401), as is an unreachable store (503).
#[derive(Debug, Clone)]
pub struct MaybeUser<C = ()>(pub Option<CurrentUser<C>>);

impl<'a, C: DeserializeOwned + Send> FromRequest<'a> for MaybeUser<C> {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        match request_user(req).await? {
            Some(user) => CurrentUser::from_user(user)
                .map(|u| MaybeUser(Some(u)))
                .map_err(rejection),
            None => Ok(MaybeUser(None)),
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
/// use otp_poem::RecentUser;
/// use poem::handler;
///
/// // Authenticated within the last 5 minutes.
/// #[handler]
/// fn delete_account(user: RecentUser<300>) -> String {
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

impl<'a, C: DeserializeOwned + Send, const MAX_AGE_SECS: u64> FromRequest<'a>
    for RecentUser<MAX_AGE_SECS, C>
{
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let user = CurrentUser::<C>::from_request(req, body).await?;
        user.require_recent(MAX_AGE_SECS).map_err(rejection)?;
        Ok(RecentUser(user))
    }
}

/// A middleware that lets through only requests with a signed-in user: every endpoint it
/// wraps is protected. It answers 401 (with `WWW-Authenticate: Bearer`) without a valid
/// access token and 503 when the store cannot be asked, as [`CurrentUser`] does, and
/// leaves the user ([`otp_core::CurrentUser`]) in the request's extensions, where
/// [`CurrentUser`] finds it without checking the token or asking the store again.
///
/// ```
/// use otp_poem::{CurrentUser, RequireUser};
/// use poem::{EndpointExt, Route, get, handler};
/// # fn demo(auth: otp_core::OtpAuth) -> impl poem::Endpoint {
/// #[handler]
/// fn account(user: CurrentUser) -> String {
///     user.email.clone()
/// }
/// let private = Route::new()
///     .at("/account", get(account))
///     .with(RequireUser::new(auth.clone()));
/// Route::new().nest("/app", private).data(auth)
/// # }
/// ```
///
/// [`RequireUser::max_age`] also demands a recent authentication, as [`RecentUser`] does,
/// and [`RequireUser::require_claims`] (or [`RequireUser::check`]) a role, answering 403:
///
/// ```
/// use otp_poem::RequireUser;
/// use poem::{EndpointExt, Route, get, handler};
/// use serde::Deserialize;
/// # fn demo(auth: otp_core::OtpAuth) -> impl poem::Endpoint {
/// #[derive(Deserialize)]
/// struct Roles {
///     roles: Vec<String>,
/// }
/// #[handler]
/// fn stats() -> &'static str {
///     "…"
/// }
/// let admin = Route::new().at("/stats", get(stats)).with(
///     RequireUser::new(auth.clone()).require_claims(|c: &Roles| c.roles.iter().any(|r| r == "admin")),
/// );
/// Route::new().nest("/admin", admin).data(auth)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RequireUser {
    auth: OtpAuth,
    guard: Guard,
}

impl RequireUser {
    /// The middleware, checking users with `auth`.
    pub fn new(auth: OtpAuth) -> Self {
        RequireUser {
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

impl<E: Endpoint> Middleware<E> for RequireUser {
    type Output = RequireUserEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequireUserEndpoint {
            auth: self.auth.clone(),
            guard: self.guard.clone(),
            inner,
        }
    }
}

/// The endpoint of [`RequireUser`].
#[derive(Debug, Clone)]
pub struct RequireUserEndpoint<E> {
    auth: OtpAuth,
    guard: Guard,
    inner: E,
}

impl<E: Endpoint> Endpoint for RequireUserEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let admitted = self
            .guard
            .admit(&self.auth, req.headers(), req.uri().path())
            .await;
        match admitted {
            Ok(user) => {
                req.extensions_mut().insert(user);
                self.inner.call(req).await.map(IntoResponse::into_response)
            }
            Err(e) => Ok(to_poem(otp_core::adapter::error_response(e))),
        }
    }
}

#[cfg(feature = "poem-openapi")]
pub mod api;

/// The endpoint of `GET /openapi.json`: the document as JSON.
/// Mount it with `.at("/openapi.json", otp_poem::openapi_json(&doc))`.
#[cfg(feature = "openapi")]
pub fn openapi_json(doc: &utoipa::openapi::OpenApi) -> impl Endpoint<Output = Response> + use<> {
    let json = serde_json::to_vec(doc).unwrap_or_default();
    let ep = poem::get(poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(json.clone())
    }));
    with_allow(ep, "GET, HEAD")
}

/// `ep` with `Allow: <allow>` on its 405 answers that lack one.
///
/// poem answers a method a route does not take with 405 and no `Allow`, which RFC 9110
/// requires; the auth routes of [`routes`] set it themselves, and this sets it on an
/// application's own routes:
///
/// ```
/// use poem::{Route, get, handler};
///
/// #[handler]
/// fn hello() -> &'static str {
///     "hello"
/// }
///
/// let app = Route::new().at("/hello", otp_poem::with_allow(get(hello), "GET, HEAD"));
/// # let _ = app;
/// ```
pub fn with_allow<E: Endpoint + 'static>(
    ep: E,
    allow: &'static str,
) -> impl Endpoint<Output = Response> {
    poem::EndpointExt::after(ep, move |res| async move {
        let mut resp = match res {
            Ok(resp) => resp.into_response(),
            Err(e) => e.into_response(),
        };
        if resp.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
            && !resp.headers().contains_key(poem::http::header::ALLOW)
        {
            resp.headers_mut().insert(
                poem::http::header::ALLOW,
                poem::http::HeaderValue::from_static(allow),
            );
        }
        Ok::<_, poem::Error>(resp)
    })
}

/// The endpoint of `GET /docs`: the interactive docs page, which reads `./openapi.json`.
#[cfg(feature = "openapi")]
pub fn docs_page() -> impl Endpoint<Output = Response> + use<> {
    let ep = poem::get(poem::endpoint::make_sync(|_| {
        Response::builder()
            .content_type("text/html; charset=utf-8")
            .body(otp_core::adapter::openapi::DOCS_PAGE)
    }));
    with_allow(ep, "GET, HEAD")
}

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
