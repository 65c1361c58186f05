//! The route table: every endpoint of the contract once, with its method, path, name and
//! handler. [`Endpoint`], routing (404, 405 with `Allow`), dispatch, the metric label, the
//! OpenAPI document (its operations, in the table's order, which the docs page keeps) and
//! the adapters' routes are all derived from it.
//!
//! Adding an endpoint: a row in [`route_table!`]'s invocation below, a handler of the same
//! name in this file (and its OpenAPI operation, same name, in [`docs`]), the flow it calls
//! in `engine/`, and its test. A body type that is new goes beside the handler.

use serde::de::DeserializeOwned;

use crate::config::{FlowBinding, RefreshTransport};
use crate::engine::{ClientInfo, OtpAuth, TokenPair, is_flow_id};
use crate::error::{Error, TokenRejection};
use crate::problem::Refusal;
use crate::web::{
    ApiRequest, ApiResponse, ChangeEmailBody, CookieSpec, LogoutOthersResponse,
    ReauthenticationBody, RefreshBody, RequestOtpBody, RequestOtpResponse, SessionsResponse,
    TokenResponse, VerifyEmailChangeBody, VerifyLinkBody, VerifyOtpBody, bearer_token, parse_json,
};

/// The message of a successful `/request-otp`.
pub(crate) const MSG_OTP_SENT: &str = "OTP sent successfully";
/// The message of a successful `/verify-otp`.
pub(crate) const MSG_OTP_VERIFIED: &str = "OTP verified successfully!";
/// The message of a successful `/logout` and `/logout-all`.
pub(crate) const MSG_LOGGED_OUT: &str = "Successfully logged out";
/// The message of a successful `/logout-others`.
pub(crate) const MSG_OTHERS_LOGGED_OUT: &str = "Other sessions logged out";
/// The message of a successful `DELETE /sessions/{id}`.
pub(crate) const MSG_SESSION_REVOKED: &str = "Session revoked";
/// The message of a completed email change.
pub(crate) const MSG_EMAIL_CHANGED: &str = "Email address changed successfully!";

/// HTTP methods the endpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET` (and `HEAD`).
    Get,
    /// `POST`.
    Post,
    /// `DELETE`.
    Delete,
}

impl Method {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// The [`Method`] of a table row's method name.
macro_rules! method {
    (GET) => {
        Method::Get
    };
    (POST) => {
        Method::Post
    };
    (DELETE) => {
        Method::Delete
    };
}

/// Declares [`Endpoint`] and everything read off the table: a row is
/// `Variant = METHOD "/path" => handler;` under the variant's doc comment. The handler's
/// name is the endpoint's [`name`](Endpoint::name) (its OpenAPI `operationId` and metric
/// label), and names its OpenAPI operation in [`docs`].
macro_rules! route_table {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $method:ident $path:literal => $handler:ident;
    )+) => {
        /// The endpoints of the contract, in the order of a login (the docs page's order).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Endpoint {
            $(
                #[doc = concat!("`", stringify!($method), " ", $path, "`: ")]
                $(#[doc = $doc])+
                $variant,
            )+
        }

        impl Endpoint {
            /// Every endpoint, in the table's order.
            pub const ALL: [Endpoint; [$(Endpoint::$variant),+].len()] = [$(Endpoint::$variant),+];

            /// The path pattern under the mount point; `{…}` is one path segment.
            pub fn path(self) -> &'static str {
                match self {
                    $(Endpoint::$variant => $path,)+
                }
            }

            /// The method the endpoint answers.
            pub fn method(self) -> Method {
                match self {
                    $(Endpoint::$variant => method!($method),)+
                }
            }

            /// A short name for logs and metric labels (`request_otp`, `jwks`, …), also the
            /// OpenAPI `operationId`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Endpoint::$variant => stringify!($handler),)+
                }
            }
        }

        /// Runs the endpoint's handler.
        pub(crate) async fn dispatch(endpoint: Endpoint, c: &Call<'_>) -> Result<ApiResponse, Refusal> {
            match endpoint {
                $(Endpoint::$variant => $handler(c).await,)+
            }
        }

        /// The endpoint's OpenAPI operation.
        #[cfg(feature = "openapi")]
        pub(crate) fn operation(
            endpoint: Endpoint,
            spec: &mut crate::adapter::openapi::Spec<'_>,
            op: utoipa::openapi::path::OperationBuilder,
        ) -> utoipa::openapi::path::OperationBuilder {
            match endpoint {
                $(Endpoint::$variant => docs::$handler(spec, op),)+
            }
        }
    };
}

route_table! {
    /// Mails a login code.
    RequestOtp = POST "/request-otp" => request_otp;
    /// Trades the code for tokens.
    VerifyOtp = POST "/verify-otp" => verify_otp;
    /// The sign-in link's confirmation page (changes nothing).
    MagicPage = GET "/magic" => magic_page;
    /// Signs in with a sign-in link's token, like `/verify-otp`.
    VerifyLink = POST "/verify-link" => verify_link;
    /// Rotates the refresh token.
    Refresh = POST "/refresh" => refresh;
    /// Mails the signed-in user a fresh code.
    Reauthenticate = POST "/reauthenticate" => reauthenticate;
    /// Checks it; a new access token with `auth_time` now.
    VerifyReauthentication = POST "/verify-reauthentication" => verify_reauthentication;
    /// Mails a code to the signed-in user's new address.
    ChangeEmail = POST "/change-email" => change_email;
    /// Checks it; the account moves, new tokens.
    VerifyEmailChange = POST "/verify-email-change" => verify_email_change;
    /// The user's live sessions.
    Sessions = GET "/sessions" => sessions;
    /// Ends one of the user's sessions.
    RevokeSession = DELETE "/sessions/{id}" => revoke_session;
    /// Ends every session of the user but the current one.
    LogoutOthers = POST "/logout-others" => logout_others;
    /// Ends the session of the presented tokens.
    Logout = POST "/logout" => logout;
    /// Ends every session of the user.
    LogoutAll = POST "/logout-all" => logout_all;
    /// The public keys that verify access tokens.
    Jwks = GET "/jwks.json" => jwks;
}

/// A request matched to an endpoint, with its path parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route<'a> {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// The segment that matched the pattern's `{…}`, if it has one.
    pub param: Option<&'a str>,
}

impl<'a> Route<'a> {
    /// Matches a method and a path under the mount point against the table. An unknown
    /// path is a 404 and a known path with another method a 405 with `Allow`, both as
    /// problem+json. `HEAD` is answered like `GET`.
    pub(crate) fn resolve(method: &str, path: &'a str) -> Result<Route<'a>, ApiResponse> {
        let wanted = if method.eq_ignore_ascii_case("HEAD") {
            "GET"
        } else {
            method
        };
        let mut allow: Vec<&str> = Vec::new();
        for endpoint in Endpoint::ALL {
            let Some(param) = match_path(endpoint.path(), path) else {
                continue;
            };
            if endpoint.method().as_str().eq_ignore_ascii_case(wanted) {
                return Ok(Route { endpoint, param });
            }
            allow.push(match endpoint.method() {
                Method::Get => "GET, HEAD",
                m => m.as_str(),
            });
        }
        if allow.is_empty() {
            Err(ApiResponse::error(&Refusal::NotFound))
        } else {
            Err(ApiResponse::error(&Refusal::MethodNotAllowed)
                .with_header("allow", allow.join(", ")))
        }
    }
}

/// Whether `path` matches `pattern`, and the segment its `{…}` matched: a non-empty
/// segment without `/`.
pub(crate) fn match_path<'p>(pattern: &str, path: &'p str) -> Option<Option<&'p str>> {
    if !pattern.contains('{') {
        return (pattern == path).then_some(None);
    }
    let mut param = None;
    let (mut want, mut got) = (pattern.split('/'), path.split('/'));
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(param),
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') && !g.is_empty() => {
                param = Some(g);
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

/// One request to one endpoint: the engine and the request's parts, with what the
/// handlers share.
pub(crate) struct Call<'r> {
    /// The engine.
    pub(crate) auth: &'r OtpAuth,
    /// The request.
    pub(crate) req: &'r ApiRequest<'r>,
}

impl<'r> Call<'r> {
    /// The JSON body as `T` (415, 413, 422 otherwise).
    fn json<T: DeserializeOwned>(&self) -> Result<T, Refusal> {
        parse_json(
            self.req.content_type,
            self.req.body,
            self.auth.config().http.body_limit_bytes,
        )
    }

    /// The bearer token of `Authorization`.
    fn bearer(&self) -> Result<&'r str, Error> {
        bearer_token(self.req.authorization)
    }

    fn transport(&self) -> RefreshTransport {
        self.auth.config().sessions.refresh_transport
    }

    /// The token answer: the refresh token in the cookie, the body or both, as the
    /// transport says.
    fn tokens(&self, pair: &TokenPair, message: Option<&str>) -> ApiResponse {
        let in_body = self.transport().uses_body();
        let resp = ApiResponse::json(&TokenResponse {
            message: message.map(str::to_owned),
            access_token: pair.access_token.clone(),
            token_type: "bearer".to_owned(),
            expires_in: pair.expires_in,
            refresh_token: in_body.then(|| pair.refresh_token.clone()),
            refresh_expires_in: in_body.then_some(pair.refresh_expires_in),
        });
        if self.transport().uses_cookie() {
            let cookie = CookieSpec::from_config(self.auth.config());
            resp.with_header("set-cookie", cookie.set(&pair.refresh_token))
        } else {
            resp
        }
    }

    /// The client, with the login flow of the body (`flow_id`, a native app's) in place of
    /// the flow cookie's; 422 for a `flow_id` that cannot be one.
    fn client(&self, flow_id: Option<String>) -> Result<ClientInfo, Refusal> {
        let mut client = self.req.client.clone();
        if let Some(id) = flow_id {
            if !is_flow_id(&id) {
                return Err(Error::InvalidRequest(
                    "flow_id must be the flow_id of a /request-otp answer.".to_owned(),
                )
                .into());
            }
            client.flow = Some(id);
        }
        Ok(client)
    }

    /// The answer of a login: the tokens, the known-device cookie, and the spent flow's
    /// cookie cleared (no cookies for the `body` transport).
    fn login(&self, pair: &TokenPair) -> ApiResponse {
        let config = self.auth.config();
        let resp = self.tokens(pair, Some(MSG_OTP_VERIFIED));
        if !self.transport().uses_cookie() {
            return resp;
        }
        let mut resp = resp.with_header(
            "set-cookie",
            CookieSpec::flow(config, self.req.mount).clear(),
        );
        if let Some(device) = &pair.known_device {
            resp = resp.with_header(
                "set-cookie",
                CookieSpec::device(config, self.req.mount).set(device),
            );
        }
        resp
    }

    /// `resp` clearing the refresh cookie, when the transport uses one.
    pub(crate) fn clearing(&self, resp: ApiResponse) -> ApiResponse {
        if self.transport().uses_cookie() {
            resp.with_header(
                "set-cookie",
                CookieSpec::from_config(self.auth.config()).clear(),
            )
        } else {
            resp
        }
    }

    /// The refresh token the request presents where the transport reads it: the JSON
    /// body (`{"refresh_token": "…"}`, when the transport uses the body and the body is
    /// not empty), else the cookie (when the transport uses it). A body token beside a
    /// cookie is a 400: the client's intent cannot be told.
    fn refresh_token(&self) -> Result<Option<String>, Refusal> {
        let transport = self.transport();
        let in_body = if transport.uses_body() && !self.req.body.iter().all(u8::is_ascii_whitespace)
        {
            Some(self.json::<RefreshBody>()?.refresh_token)
        } else {
            None
        };
        match (in_body, self.req.refresh_cookie) {
            (Some(_), Some(_)) => Err(Refusal::TwoRefreshTokens),
            (Some(token), None) => Ok(Some(token)),
            (None, cookie) => Ok(cookie
                .filter(|_| transport.uses_cookie())
                .map(str::to_owned)),
        }
    }
}

async fn request_otp(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let body: RequestOtpBody = c.json()?;
    let client = c.client(body.flow_id)?;
    let flow_id = c.auth.request_code(&body.email, &client).await?;
    let cookie = CookieSpec::flow(c.auth.config(), c.req.mount).set(&flow_id);
    let resp = ApiResponse::json(&RequestOtpResponse {
        message: MSG_OTP_SENT.to_owned(),
        flow_id,
    });
    // A client of the `body` transport keeps no cookies: it sends `flow_id` back.
    if c.transport().uses_cookie() {
        Ok(resp.with_header("set-cookie", cookie))
    } else {
        Ok(resp)
    }
}

async fn verify_otp(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let body: VerifyOtpBody = c.json()?;
    let client = c.client(body.flow_id)?;
    let pair = c.auth.verify_code(&body.email, &body.otp, &client).await?;
    Ok(c.login(&pair))
}

async fn magic_page(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let token = c
        .req
        .query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap_or("");
    let account = c.auth.link_account(token);
    Ok(ApiResponse {
        // Without a token (a link cut short) the page says the link is invalid, as for
        // a forged one, but the status says the request lacked what it needs.
        status: if token.is_empty() { 400 } else { 200 },
        content_type: "text/html; charset=utf-8",
        headers: vec![
            ("cache-control", "no-store".to_owned()),
            (
                "content-security-policy",
                crate::pages::confirmation_page_csp().to_owned(),
            ),
            ("referrer-policy", "no-referrer".to_owned()),
            ("x-frame-options", "DENY".to_owned()),
            ("x-content-type-options", "nosniff".to_owned()),
        ],
        body: crate::pages::confirmation_page(
            token,
            &c.auth.config().mail.from_name,
            account.as_ref().map(|(masked, _)| masked.as_str()),
            c.req.client.flow.is_none()
                && !account.as_ref().is_some_and(|(_, own_flow)| *own_flow)
                && c.auth.config().flows.binding == FlowBinding::Required,
        )
        .into_bytes(),
    })
}

async fn verify_link(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let body: VerifyLinkBody = c.json()?;
    let client = c.client(body.flow_id)?;
    let pair = c.auth.verify_link(&body.token, &client).await?;
    Ok(c.login(&pair))
}

async fn refresh(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let token = c
        .refresh_token()?
        .ok_or(Error::Unauthorized(TokenRejection::Missing))?;
    let pair = c.auth.refresh(&token, &c.req.client).await?;
    Ok(c.tokens(&pair, None))
}

async fn reauthenticate(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    c.auth.step_up().request(c.bearer()?, &c.req.client).await?;
    Ok(ApiResponse::message(MSG_OTP_SENT))
}

async fn verify_reauthentication(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let token = c.bearer()?;
    let body: ReauthenticationBody = c.json()?;
    let access = c
        .auth
        .step_up()
        .verify(token, &body.otp, &c.req.client)
        .await?;
    Ok(ApiResponse::json(&TokenResponse {
        message: Some(MSG_OTP_VERIFIED.to_owned()),
        access_token: access.access_token,
        token_type: "bearer".to_owned(),
        expires_in: access.expires_in,
        refresh_token: None,
        refresh_expires_in: None,
    }))
}

async fn change_email(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let token = c.bearer()?;
    let body: ChangeEmailBody = c.json()?;
    c.auth
        .email_change()
        .request(token, &body.new_email, &c.req.client)
        .await?;
    Ok(ApiResponse::message(MSG_OTP_SENT))
}

async fn verify_email_change(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let token = c.bearer()?;
    let body: VerifyEmailChangeBody = c.json()?;
    let pair = c
        .auth
        .email_change()
        .verify(token, &body.new_email, &body.otp, &c.req.client)
        .await?;
    Ok(c.tokens(&pair, Some(MSG_EMAIL_CHANGED)))
}

async fn sessions(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let (user, sessions) = c.auth.sessions().list(c.bearer()?).await?;
    Ok(ApiResponse::json(&SessionsResponse::new(
        sessions,
        &user.session_id,
    )))
}

async fn revoke_session(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let token = c.bearer()?;
    let sid = c.req.param.ok_or(Refusal::NotFound)?;
    let was_current = c.auth.sessions().end(token, sid, &c.req.client).await?;
    let resp = ApiResponse::message(MSG_SESSION_REVOKED);
    // Ending the session this browser is in also ends its refresh cookie.
    Ok(if was_current { c.clearing(resp) } else { resp })
}

async fn logout_others(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let revoked = c
        .auth
        .sessions()
        .end_others(c.bearer()?, &c.req.client)
        .await?;
    Ok(ApiResponse::json(&LogoutOthersResponse {
        message: MSG_OTHERS_LOGGED_OUT.to_owned(),
        revoked,
    }))
}

async fn logout(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let refresh = c.refresh_token()?;
    let access = c.bearer().ok();
    c.auth
        .logout(access, refresh.as_deref(), &c.req.client)
        .await?;
    Ok(c.clearing(ApiResponse::message(MSG_LOGGED_OUT)))
}

async fn logout_all(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    c.auth
        .sessions()
        .end_all(c.bearer()?, &c.req.client)
        .await?;
    Ok(c.clearing(ApiResponse::message(MSG_LOGGED_OUT)))
}

async fn jwks(c: &Call<'_>) -> Result<ApiResponse, Refusal> {
    let mut resp = ApiResponse::json(&c.auth.jwks());
    resp.headers = vec![("cache-control", "public, max-age=300".to_owned())];
    Ok(resp)
}

/// Each endpoint's OpenAPI operation, named like its handler.
#[cfg(feature = "openapi")]
mod docs {
    use utoipa::openapi::path::OperationBuilder as Op;

    use crate::adapter::openapi::Spec;
    use crate::web::{
        ChangeEmailBody, LogoutOthersResponse, MessageResponse, ReauthenticationBody,
        RequestOtpBody, RequestOtpResponse, SessionsResponse, TokenResponse, VerifyEmailChangeBody,
        VerifyLinkBody, VerifyOtpBody,
    };

    const MAILED: &str =
        "Too many requests for this address or client IP, or the address is locked out";
    const FAILED: &str = "Too many failed attempts for this address";
    const REFUSED_MAIL: &str = "The mail server refused the message";

    pub(super) fn request_otp(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Send a login code by mail"))
            .description(Some(
                "The same answer for every address (no account enumeration). The code belongs to a login flow: the one the request carries (the flow cookie or `flow_id`: a resend) if it is still pending, else a new one, answered as `flow_id` and set as the HttpOnly flow cookie.",
            ))
            .request_body(Some(s.body::<RequestOtpBody>()))
            .response(
                "200",
                s.ok::<RequestOtpResponse>(
                    "Code sent (or silently not, for a refused address); the flow cookie is set",
                ),
            )
            .response("429", s.retry_after(MAILED))
            .response("502", s.problem(REFUSED_MAIL));
        s.json_errors(s.common(op))
    }

    pub(super) fn verify_otp(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Trade the code for tokens"))
            .description(Some(format!("{} {}", s.code_shape(), s.transport_note())))
            .request_body(Some(s.body::<VerifyOtpBody>()))
            .response("200", s.ok_setting_cookie::<TokenResponse>("Logged in"))
            .response(
                "400",
                s.problem("No code pending (for the flow presented, the cookie or `flow_id`), or the code expired, was used, or is wrong; or no flow where `OTP_AUTH_FLOW_BINDING=required`"),
            )
            .response("429", s.retry_after(FAILED));
        s.json_errors(s.common(op))
    }

    pub(super) fn magic_page(s: &mut Spec<'_>, op: Op) -> Op {
        op.summary(Some("The sign-in link's confirmation page"))
            .description(Some("An HTML page whose button posts the token to `/verify-link`. Opening it changes nothing, so mail scanners that follow links spend nothing."))
            .parameter(s.query_parameter("token"))
            .response("200", s.html_page("The page (for a forged or expired token, one that says so)"))
            .response("400", s.html_page("No token: the page says the link is invalid"))
    }

    pub(super) fn verify_link(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Trade a sign-in link's token for tokens"))
            .description(Some(format!("Answers exactly like `/verify-otp`: the link carries the same code, so using either spends both, with the same attempts and lockout. {}", s.transport_note())))
            .request_body(Some(s.body::<VerifyLinkBody>()))
            .response("200", s.ok_setting_cookie::<TokenResponse>("Logged in"))
            .response("400", s.problem("The link is invalid, expired or already used; or no flow where `OTP_AUTH_FLOW_BINDING=required`"))
            .response("429", s.retry_after(FAILED));
        s.json_errors(s.common(op))
    }

    pub(super) fn refresh(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Rotate the refresh token"))
            .description(Some(format!(
                "The presented refresh token is spent; presenting it again revokes its session. {}",
                s.transport_note()
            )))
            .response("200", s.ok_setting_cookie::<TokenResponse>("New tokens"))
            .response("401", s.unauthorized());
        let op = s.refresh_input(op);
        s.common(op)
    }

    pub(super) fn reauthenticate(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Mail the signed-in user a code to confirm it is them"))
            .description(Some("Step-up authentication (RFC 9470): a fresh code to the address of the access token's user, under the limits of `/request-otp` (one budget per address). It replaces any pending code of the address; a login code never passes for it, nor it for a login."))
            .security(s.bearer())
            .response("200", s.ok::<MessageResponse>("Code sent"))
            .response("401", s.unauthorized())
            .response("429", s.retry_after(MAILED))
            .response("502", s.problem(REFUSED_MAIL));
        s.common(op)
    }

    pub(super) fn verify_reauthentication(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Trade the re-authentication code for a fresh access token"))
            .description(Some(format!(
                "{} A new access token on the same session with `auth_time` now; the session keeps it through refreshes. The refresh token is unchanged (no cookie).",
                s.code_shape()
            )))
            .security(s.bearer())
            .request_body(Some(s.body::<ReauthenticationBody>()))
            .response("200", s.ok::<TokenResponse>("Re-authenticated"))
            .response("400", s.problem("No re-authentication code pending, or the code expired, was used, or is wrong"))
            .response("401", s.unauthorized())
            .response("429", s.retry_after(FAILED));
        s.json_errors(s.common(op))
    }

    pub(super) fn change_email(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Mail a code to the address the user moves to"))
            .description(Some(format!(
                "Needs an authentication within the last {} seconds (`OTP_AUTH_EMAIL_CHANGE_MAX_AGE_SECONDS`); an older one gets 401 with RFC 9470's `insufficient_user_authentication` challenge (re-authenticate first). The same answer whether or not the new address is another user's, under the limits of `/request-otp` for the new address.",
                s.config().sessions.email_change_max_age_seconds
            )))
            .security(s.bearer())
            .request_body(Some(s.body::<ChangeEmailBody>()))
            .response("200", s.ok::<MessageResponse>("Code sent to the new address"))
            .response("401", s.unauthorized())
            .response("429", s.retry_after("Too many requests for the new address or client IP, or it is locked out"))
            .response("502", s.problem(REFUSED_MAIL));
        s.json_errors(s.common(op))
    }

    pub(super) fn verify_email_change(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Trade the new address's code for tokens that carry it"))
            .description(Some(format!(
                "{} The application moves its user (a hook) and the old address gets a notice. Every session of the user ends (all their tokens carry the old address); the answer has new tokens on a new session with the new `email` and the same `sub`. {}",
                s.code_shape(),
                s.transport_note()
            )))
            .security(s.bearer())
            .request_body(Some(s.body::<VerifyEmailChangeBody>()))
            .response("200", s.ok_setting_cookie::<TokenResponse>("Address changed"))
            .response("400", s.problem("No email-change code pending for this address, or the code expired, was used, or is wrong"))
            .response("401", s.unauthorized())
            .response("403", s.problem("The application refused the address, or offers no email change (one answer whatever the reason)"))
            .response("429", s.retry_after(FAILED));
        s.json_errors(s.common(op))
    }

    pub(super) fn sessions(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("List the user's sessions"))
            .description(Some("Each live session with its login time, last refresh, and the user agent and IP seen at login; the current one first."))
            .security(s.bearer())
            .response("200", s.ok::<SessionsResponse>("The sessions"))
            .response("401", s.unauthorized());
        s.common(op)
    }

    pub(super) fn revoke_session(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("End one of the user's sessions"))
            .description(Some(
                "Ending the current session also clears the refresh cookie.",
            ))
            .security(s.bearer())
            .parameter(s.path_parameter("id", "A session id from `GET /sessions`"))
            .response("200", s.ok::<MessageResponse>("The session ended"))
            .response("401", s.unauthorized())
            .response("404", s.problem("Not one of the user's live sessions"));
        s.common(op)
    }

    pub(super) fn logout_others(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Log out every other session"))
            .description(Some(
                "Ends every session of the user but the one of this access token.",
            ))
            .security(s.bearer())
            .response(
                "200",
                s.ok::<LogoutOthersResponse>("The other sessions ended"),
            )
            .response("401", s.unauthorized());
        s.common(op)
    }

    pub(super) fn logout(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Log out"))
            .description(Some("Revokes the access token and the sessions of both tokens; always 200 unless the store is down."))
            .security(utoipa::openapi::security::SecurityRequirement::default())
            .security(s.bearer())
            .response("200", s.ok_clearing_cookie::<MessageResponse>("Logged out"));
        let op = s.refresh_input(op);
        s.common(op)
    }

    pub(super) fn logout_all(s: &mut Spec<'_>, op: Op) -> Op {
        let op = op
            .summary(Some("Log out everywhere"))
            .description(Some("Ends every session of the user."))
            .security(s.bearer())
            .response(
                "200",
                s.ok_clearing_cookie::<MessageResponse>("Every session ended"),
            )
            .response("401", s.unauthorized());
        s.common(op)
    }

    pub(super) fn jwks(s: &mut Spec<'_>, op: Op) -> Op {
        op.summary(Some("The public keys that verify access tokens"))
            .description(Some(
                "A JSON Web Key Set (RFC 7517); empty with an HMAC algorithm.",
            ))
            .response("200", s.json_object("The key set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_their_patterns_and_nothing_else() {
        assert_eq!(match_path("/sessions", "/sessions"), Some(None));
        assert_eq!(match_path("/sessions", "/sessions/"), None);
        assert_eq!(
            match_path("/sessions/{id}", "/sessions/abc"),
            Some(Some("abc"))
        );
        assert_eq!(match_path("/sessions/{id}", "/sessions/"), None);
        assert_eq!(match_path("/sessions/{id}", "/sessions/a/b"), None);
        assert_eq!(match_path("/sessions/{id}", "/sessions"), None);
        assert_eq!(match_path("/sessions/{id}", "/other/abc"), None);
    }

    #[test]
    fn the_table_has_one_row_per_method_and_path_and_unique_names() {
        let mut seen = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for e in Endpoint::ALL {
            assert!(seen.insert((e.method(), e.path())), "{e:?} twice");
            assert!(names.insert(e.name()), "{} twice", e.name());
            let path = e.path().replace("{id}", "x");
            let route = Route::resolve(e.method().as_str(), &path)
                .unwrap_or_else(|_| panic!("{e:?} does not resolve"));
            assert_eq!(route.endpoint, e);
        }
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405_with_allow() {
        let refused = |m, p| Route::resolve(m, p).expect_err("refused");
        assert_eq!(refused("GET", "/nope").status, 404);
        let r = refused("GET", "/request-otp");
        assert_eq!(r.status, 405);
        assert!(r.headers.contains(&("allow", "POST".to_owned())));
        let r = refused("POST", "/jwks.json");
        assert!(r.headers.contains(&("allow", "GET, HEAD".to_owned())));
        // A pattern's Allow names every method of its rows.
        let methods: Vec<&str> = Endpoint::ALL
            .iter()
            .filter(|e| e.path() == "/sessions/{id}")
            .map(|e| match e.method() {
                Method::Get => "GET, HEAD",
                m => m.as_str(),
            })
            .collect();
        let r = refused("POST", "/sessions/abc");
        assert!(r.headers.contains(&("allow", methods.join(", "))));
        assert_eq!(
            Route::resolve("HEAD", "/jwks.json").map(|r| r.endpoint),
            Ok(Endpoint::Jwks)
        );
    }
}
