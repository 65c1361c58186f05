//! The admin endpoints: an operator's view of users and addresses over HTTP, behind the
//! application's own guard ([`serve_admin`]). Mounted apart from the login routes (the
//! examples use `/admin`); every endpoint answers JSON, every refusal a problem document.
//!
//! | endpoint | does |
//! |---|---|
//! | `GET /sessions?email=…` or `?subject=…` | a user's live sessions |
//! | `DELETE /sessions?email=…` or `?subject=…` | ends them all |
//! | `DELETE /sessions/{id}` | ends one session |
//! | `GET /addresses/{email}` | an address's locks, failures, pending logins and request counts |
//! | `POST /addresses/{email}/lock` | locks it (body `{"seconds": n}`, optional: until unlocked) |
//! | `DELETE /addresses/{email}/lock` | unlocks it, its lockout of guesses too |
//! | `POST /addresses/{email}/sign-in` | mails it a sign-in (body `{"expires_in": n}`, optional: a day) |
//!
//! Addresses and subjects in the path or the query are percent-encoded (`%40` for `@`,
//! `%2B` for `+`: a `+` is taken as it is, not as a space). Every action emits an
//! [`EventKind::AdminAction`](crate::event::EventKind::AdminAction) naming the
//! administrator's `sub`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use crate::email::Email;
use crate::engine::{Account, Admin, OtpAuth};
use crate::error::Error;
use crate::problem::Refusal;
use crate::routes::MSG_SESSION_REVOKED;
use crate::store::SessionInfo;
use crate::web::{ApiResponse, Guard, parse_json};

/// The default lifetime of a sign-in sent through the admin endpoints: a day.
pub const DEFAULT_SIGN_IN_SECS: u64 = 86_400;

/// The endpoints of the admin router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminEndpoint {
    /// `GET /sessions?email=…|subject=…`: a user's live sessions.
    Sessions,
    /// `DELETE /sessions?email=…|subject=…`: ends every session of a user.
    EndSessions,
    /// `DELETE /sessions/{id}`: ends one session.
    EndSession,
    /// `GET /addresses/{email}`: an address's limit state.
    Address,
    /// `POST /addresses/{email}/lock`: locks an address.
    Lock,
    /// `DELETE /addresses/{email}/lock`: unlocks an address.
    Unlock,
    /// `POST /addresses/{email}/sign-in`: mails an address a sign-in.
    SignIn,
}

impl AdminEndpoint {
    /// Every admin endpoint.
    pub const ALL: [AdminEndpoint; 7] = [
        AdminEndpoint::Sessions,
        AdminEndpoint::EndSessions,
        AdminEndpoint::EndSession,
        AdminEndpoint::Address,
        AdminEndpoint::Lock,
        AdminEndpoint::Unlock,
        AdminEndpoint::SignIn,
    ];

    /// The path pattern under the admin mount; `{…}` is one segment.
    pub fn path(self) -> &'static str {
        match self {
            AdminEndpoint::Sessions | AdminEndpoint::EndSessions => "/sessions",
            AdminEndpoint::EndSession => "/sessions/{id}",
            AdminEndpoint::Address => "/addresses/{email}",
            AdminEndpoint::Lock | AdminEndpoint::Unlock => "/addresses/{email}/lock",
            AdminEndpoint::SignIn => "/addresses/{email}/sign-in",
        }
    }

    /// The method.
    pub fn method(self) -> crate::routes::Method {
        use crate::routes::Method;
        match self {
            AdminEndpoint::Sessions | AdminEndpoint::Address => Method::Get,
            AdminEndpoint::Lock | AdminEndpoint::SignIn => Method::Post,
            AdminEndpoint::EndSessions | AdminEndpoint::EndSession | AdminEndpoint::Unlock => {
                Method::Delete
            }
        }
    }

    /// Its name (the OpenAPI `operationId`).
    pub fn name(self) -> &'static str {
        match self {
            AdminEndpoint::Sessions => "admin_sessions",
            AdminEndpoint::EndSessions => "admin_end_sessions",
            AdminEndpoint::EndSession => "admin_end_session",
            AdminEndpoint::Address => "admin_address",
            AdminEndpoint::Lock => "admin_lock",
            AdminEndpoint::Unlock => "admin_unlock",
            AdminEndpoint::SignIn => "admin_sign_in",
        }
    }
}

/// A user's sessions, most recently refreshed first.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct AdminSessions {
    /// The live sessions.
    pub sessions: Vec<SessionInfo>,
}

/// How many sessions ended.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct EndedResponse {
    /// `Sessions ended`.
    pub message: String,
    /// How many were live.
    pub ended: u32,
}

/// The body of `POST /addresses/{email}/lock` (optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct LockBody {
    /// How long, in seconds (at least 1); absent or `null`: until unlocked.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, example = 3600))]
    pub seconds: Option<u64>,
}

/// The body of `POST /addresses/{email}/sign-in` (optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub(crate) struct SignInBody {
    /// The sign-in's lifetime in seconds, 60 to 604800 (7 days); a day when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 60, maximum = 604_800, example = 86_400)
    )]
    pub expires_in: Option<u64>,
}

/// The answer of `POST /addresses/{email}/sign-in`: never the code or the link.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct SignInResponse {
    /// `Sign-in sent`.
    pub message: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Serves one request to the admin endpoints, its path relative to their mount
/// (`/sessions`, `/addresses/{email}/lock`, …): the `guard` first (401 without a valid
/// access token, 403 when its check refuses), then routing (404, 405 with `Allow`), the
/// body limit (413) and the endpoint. The administrator's `sub` is the actor of the audit
/// events.
///
/// Only a guard with a check makes sense here (`Guard::default().check(…)`, or
/// [`Guard::require_claims`]): one without lets every signed-in user administer. An
/// unchecked guard is refused with a 500 (and logged) rather than served.
pub async fn serve_admin<B>(
    auth: &OtpAuth,
    guard: &Guard,
    req: http::Request<B>,
) -> http::Response<Bytes>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    if !guard.has_check() {
        tracing::error!(
            "the admin router's guard has no check: every signed-in user could administer; \
             give it one (Guard::check, Guard::require_claims)"
        );
        let e = Error::Internal("the admin router's guard has no check".to_owned());
        return ApiResponse::error(&e.into()).into_http();
    }
    let path = parts.uri.path();
    let user = match guard.admit(auth, &parts.headers, path).await {
        Ok(user) => user,
        Err(e) => return ApiResponse::error(&e.into()).into_http(),
    };
    let (endpoint, param) = match resolve(parts.method.as_str(), path) {
        Ok(found) => found,
        Err(refused) => return refused.into_http(),
    };
    let limit = auth.config().http.body_limit_bytes;
    let body = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return ApiResponse::error(&Refusal::PayloadTooLarge { limit }).into_http();
        }
    };
    let content_type =
        (parts.headers.get(http::header::CONTENT_TYPE)).and_then(|v| v.to_str().ok());
    let call = AdminCall {
        auth,
        admin: auth.admin().by(&user.claims.sub),
        param,
        query: parts.uri.query(),
        content_type,
        body: &body,
    };
    match dispatch(endpoint, &call).await {
        Ok(resp) => resp,
        Err(refusal) => ApiResponse::error(&refusal),
    }
    .into_http()
}

/// A request matched to an admin endpoint, with what the handlers read.
struct AdminCall<'a> {
    auth: &'a OtpAuth,
    admin: Admin<'a>,
    param: Option<String>,
    query: Option<&'a str>,
    content_type: Option<&'a str>,
    body: &'a [u8],
}

impl AdminCall<'_> {
    /// The address of the path (`/addresses/{email}`), normalized; 422 when it is not one.
    fn email(&self) -> Result<Email, Refusal> {
        match Account::email(self.param.as_deref().unwrap_or(""))? {
            Account::Email(email) => Ok(email),
            Account::Subject(_) => {
                Err(Error::Internal("an address read as a subject".into()).into())
            }
        }
    }

    /// The account of the query: `email=…` or `subject=…`, exactly one; 422 otherwise.
    fn account(&self) -> Result<Account, Refusal> {
        let mut email = None;
        let mut subject = None;
        for pair in self.query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match key {
                "email" => &mut email,
                "subject" => &mut subject,
                _ => continue,
            };
            let value = percent_decode(value).ok_or_else(|| {
                Error::InvalidRequest(format!("The {key} parameter is not percent-encoded UTF-8."))
            })?;
            if slot.replace(value).is_some() {
                return Err(Error::InvalidRequest(format!("Give {key} once.")).into());
            }
        }
        match (email, subject) {
            (Some(e), None) => Ok(Account::email(&e)?),
            (None, Some(s)) if !s.is_empty() => Ok(Account::subject(s)),
            _ => Err(Error::InvalidRequest(
                "Name the user with exactly one of the email or subject parameters.".to_owned(),
            )
            .into()),
        }
    }

    /// The optional JSON body as `T`: its default when the body is empty.
    fn optional_json<T: Default + for<'de> Deserialize<'de>>(&self) -> Result<T, Refusal> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        parse_json(
            self.content_type,
            self.body,
            self.auth.config().http.body_limit_bytes,
        )
    }
}

async fn dispatch(endpoint: AdminEndpoint, c: &AdminCall<'_>) -> Result<ApiResponse, Refusal> {
    match endpoint {
        AdminEndpoint::Sessions => {
            let mut sessions = c.admin.sessions_of(&c.account()?).await?;
            sessions.sort_by_key(|s| std::cmp::Reverse(s.refreshed_at));
            Ok(ApiResponse::json(&AdminSessions { sessions }))
        }
        AdminEndpoint::EndSessions => {
            let ended = c.admin.end_all_sessions_of(&c.account()?).await?;
            Ok(ApiResponse::json(&EndedResponse {
                message: "Sessions ended".to_owned(),
                ended,
            }))
        }
        AdminEndpoint::EndSession => {
            let sid = c.param.as_deref().unwrap_or("");
            if c.admin.end_session(sid).await? {
                Ok(ApiResponse::message(MSG_SESSION_REVOKED))
            } else {
                Err(Refusal::NotFound)
            }
        }
        AdminEndpoint::Address => Ok(ApiResponse::json(&c.admin.address(&c.email()?).await?)),
        AdminEndpoint::Lock => {
            let email = c.email()?;
            let body: LockBody = c.optional_json()?;
            if body.seconds == Some(0) {
                return Err(Error::InvalidRequest("seconds must be at least 1.".to_owned()).into());
            }
            let report = c
                .admin
                .lock(&email, body.seconds.map(Duration::from_secs))
                .await?;
            Ok(ApiResponse::json(&report))
        }
        AdminEndpoint::Unlock => Ok(ApiResponse::json(&c.admin.unlock(&c.email()?).await?)),
        AdminEndpoint::SignIn => {
            let email = c.email()?;
            let body: SignInBody = c.optional_json()?;
            let secs = body.expires_in.unwrap_or(DEFAULT_SIGN_IN_SECS);
            if !(crate::engine::MIN_SIGN_IN_SECS..=crate::engine::MAX_SIGN_IN_SECS).contains(&secs)
            {
                return Err(Error::InvalidRequest(format!(
                    "expires_in must be between {} and {} seconds.",
                    crate::engine::MIN_SIGN_IN_SECS,
                    crate::engine::MAX_SIGN_IN_SECS
                ))
                .into());
            }
            let sent = c
                .admin
                .send_sign_in(&email, Duration::from_secs(secs))
                .await?;
            let mut resp = ApiResponse::json(&SignInResponse {
                message: "Sign-in sent".to_owned(),
                expires_in: sent.expires_in,
            });
            resp.status = 202;
            Ok(resp)
        }
    }
}

/// The endpoint of `method` and `path`, with its decoded path parameter; 404 or 405
/// (with `Allow`) otherwise.
fn resolve(method: &str, path: &str) -> Result<(AdminEndpoint, Option<String>), ApiResponse> {
    let wanted = if method.eq_ignore_ascii_case("HEAD") {
        "GET"
    } else {
        method
    };
    let mut allow: Vec<&str> = Vec::new();
    for endpoint in AdminEndpoint::ALL {
        let Some(param) = crate::routes::match_path(endpoint.path(), path) else {
            continue;
        };
        if endpoint.method().as_str().eq_ignore_ascii_case(wanted) {
            let param = match param {
                Some(raw) => Some(percent_decode(raw).ok_or_else(|| {
                    ApiResponse::error(
                        &Error::InvalidRequest(
                            "The path segment is not percent-encoded UTF-8.".to_owned(),
                        )
                        .into(),
                    )
                })?),
                None => None,
            };
            return Ok((endpoint, param));
        }
        allow.push(match endpoint.method() {
            crate::routes::Method::Get => "GET, HEAD",
            m => m.as_str(),
        });
    }
    if allow.is_empty() {
        Err(ApiResponse::error(&Refusal::NotFound))
    } else {
        Err(ApiResponse::error(&Refusal::MethodNotAllowed).with_header("allow", allow.join(", ")))
    }
}

/// `%XX` sequences decoded (`+` stays a `+`); `None` for a malformed escape or bytes that
/// are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%40b.c").as_deref(), Some("a@b.c"));
        assert_eq!(percent_decode("a+tag%2Bx").as_deref(), Some("a+tag+x"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
    }

    #[tokio::test]
    async fn a_guard_without_a_check_serves_nobody() {
        let mut config = crate::Config::default();
        config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
        let auth = OtpAuth::builder(config)
            .memory_store()
            .mailer(crate::mailer::CapturingMailer::new())
            .build()
            .unwrap();
        let req = || {
            http::Request::get("/sessions?subject=x")
                .body(http_body_util::Empty::<Bytes>::new())
                .unwrap()
        };
        let open = serve_admin(&auth, &Guard::default(), req()).await;
        assert_eq!(open.status(), 500);
        let checked = Guard::default().check(|_| true);
        let refused = serve_admin(&auth, &checked, req()).await;
        assert_eq!(refused.status(), 401, "a checked guard asks for a token");
    }

    #[test]
    fn routing() {
        let found = |m, p| resolve(m, p).ok();
        assert_eq!(
            found("GET", "/addresses/a%40b.example"),
            Some((AdminEndpoint::Address, Some("a@b.example".to_owned())))
        );
        assert_eq!(
            found("DELETE", "/addresses/x/lock").map(|f| f.0),
            Some(AdminEndpoint::Unlock)
        );
        assert_eq!(
            found("DELETE", "/sessions").map(|f| f.0),
            Some(AdminEndpoint::EndSessions)
        );
        assert_eq!(
            found("HEAD", "/sessions").map(|f| f.0),
            Some(AdminEndpoint::Sessions)
        );
        let refused = resolve("PUT", "/addresses/x/lock").unwrap_err();
        assert_eq!(refused.status, 405);
        assert!(
            refused
                .headers
                .iter()
                .any(|(n, v)| *n == "allow" && v == "POST, DELETE")
        );
        assert_eq!(resolve("GET", "/nope").unwrap_err().status, 404);
    }
}
