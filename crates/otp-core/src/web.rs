//! The HTTP contract in the vocabulary of the [`http`] crate: request and response bodies,
//! the refresh cookie, client IP resolution, and [`serve`], which answers every
//! endpoint from an `http::Request` with an `http::Response`. Adapters hand their
//! framework's request over and write the response back, and do nothing else, so every
//! adapter answers byte for byte the same.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::header::{
    ACCEPT_LANGUAGE, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, ORIGIN, USER_AGENT,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::config::{Config, CookieSettings, ForwardedHeader, SameSite};
use crate::engine::{ClientInfo, CurrentUser, OtpAuth};
use crate::error::{Error, TokenRejection};
use crate::problem::{NO_CLIENT_ADDRESS, PROBLEM_CONTENT_TYPE, Refusal};
use crate::routes::{Call, Endpoint, Method, Route};

/// Body of `POST /request-otp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct RequestOtpBody {
    /// The address to send a code to.
    #[cfg_attr(feature = "openapi", schema(example = "you@example.com"))]
    pub email: String,
    /// The login flow to send a new code to (a resend; native apps; browsers send the flow cookie instead): `flow_id` of
    /// the `/request-otp` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "x1Hq0v2vKXh3Yc9o6m5XzA",
            min_length = 16,
            max_length = 64,
            pattern = "^[A-Za-z0-9_-]+$"
        )
    )]
    pub flow_id: Option<String>,
}

/// The answer of `/request-otp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct RequestOtpResponse {
    /// `"OTP sent successfully"`.
    pub message: String,
    /// The login flow the code belongs to (also in the HttpOnly flow cookie): a native app
    /// sends it back with the code.
    pub flow_id: String,
}

/// Body of `POST /verify-otp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct VerifyOtpBody {
    /// The address the code was sent to.
    #[cfg_attr(feature = "openapi", schema(example = "you@example.com"))]
    pub email: String,
    /// The code.
    #[cfg_attr(feature = "openapi", schema(example = "123456"))]
    pub otp: String,
    /// The login flow (native apps; browsers send the flow cookie instead): `flow_id` of
    /// the `/request-otp` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "x1Hq0v2vKXh3Yc9o6m5XzA",
            min_length = 16,
            max_length = 64,
            pattern = "^[A-Za-z0-9_-]+$"
        )
    )]
    pub flow_id: Option<String>,
}

/// Body of `POST /verify-reauthentication`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct ReauthenticationBody {
    /// The code sent by `/reauthenticate`.
    #[cfg_attr(feature = "openapi", schema(example = "123456"))]
    pub otp: String,
}

/// Body of `POST /change-email`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct ChangeEmailBody {
    /// The address to move the account to: the code goes there.
    #[cfg_attr(feature = "openapi", schema(example = "new@example.com"))]
    pub new_email: String,
}

/// Body of `POST /verify-email-change`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct VerifyEmailChangeBody {
    /// The new address, as sent to `/change-email`.
    #[cfg_attr(feature = "openapi", schema(example = "new@example.com"))]
    pub new_email: String,
    /// The code sent to it.
    #[cfg_attr(feature = "openapi", schema(example = "123456"))]
    pub otp: String,
}

/// A response with only a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct MessageResponse {
    /// A human sentence.
    pub message: String,
}

/// The answer of `/verify-otp` (with `message`) and `/refresh` (without).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct TokenResponse {
    /// `"OTP verified successfully!"` at login; absent at refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The access token.
    pub access_token: String,
    /// Always `"bearer"`.
    pub token_type: String,
    /// The access token's lifetime in seconds.
    pub expires_in: u64,
    /// The refresh token, with `OTP_AUTH_REFRESH_TOKEN_TRANSPORT` = `body` or `both`
    /// (otherwise it is only in the HttpOnly cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The refresh token's lifetime in seconds, with `refresh_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<u64>,
}

/// Body of `POST /refresh` and `POST /logout` with `OTP_AUTH_REFRESH_TOKEN_TRANSPORT` =
/// `body` or `both` (optional: without it, the cookie is read in `both`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct RefreshBody {
    /// The refresh token of the last token answer.
    pub refresh_token: String,
}

/// Body of `POST /verify-link`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct VerifyLinkBody {
    /// The `token` of the sign-in link.
    pub token: String,
    /// The login flow (native apps; browsers send the flow cookie instead): `flow_id` of
    /// the `/request-otp` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "x1Hq0v2vKXh3Yc9o6m5XzA",
            min_length = 16,
            max_length = 64,
            pattern = "^[A-Za-z0-9_-]+$"
        )
    )]
    pub flow_id: Option<String>,
}

/// The answer of `/logout-others`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct LogoutOthersResponse {
    /// `"Other sessions logged out"`.
    pub message: String,
    /// How many sessions were ended.
    pub revoked: u32,
}

/// One session in the answer of `GET /sessions`: the [`SessionInfo`](crate::store::SessionInfo)
/// and whether it is the asking token's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct SessionView {
    /// The session.
    #[serde(flatten)]
    pub session: crate::store::SessionInfo,
    /// Whether this is the session of the access token that asked.
    pub current: bool,
}

/// The answer of `GET /sessions`: the current session first, then the most recently
/// refreshed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub(crate) struct SessionsResponse {
    /// The user's live sessions.
    pub sessions: Vec<SessionView>,
}

impl SessionsResponse {
    /// Orders and shapes `sessions`, marking `current_sid`.
    pub(crate) fn new(
        sessions: Vec<crate::store::SessionInfo>,
        current_sid: &str,
    ) -> SessionsResponse {
        let mut sessions: Vec<SessionView> = sessions
            .into_iter()
            .map(|session| SessionView {
                current: session.sid == current_sid,
                session,
            })
            .collect();
        sessions.sort_by(|a, b| {
            let (x, y) = (&a.session, &b.session);
            b.current
                .cmp(&a.current)
                .then(y.refreshed_at.cmp(&x.refreshed_at))
                .then(y.created_at.cmp(&x.created_at))
                .then(x.sid.cmp(&y.sid))
        });
        SessionsResponse { sessions }
    }
}

/// The refresh cookie: name and attributes, shared by setting and clearing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookieSpec<'a> {
    /// Cookie name.
    name: &'a str,
    /// `Secure` attribute.
    secure: bool,
    /// `SameSite` attribute.
    same_site: SameSite,
    /// `Path` attribute.
    path: &'a str,
    /// `Max-Age` in seconds (the refresh token's lifetime).
    max_age: u64,
}

impl<'a> CookieSpec<'a> {
    /// The cookie as configured.
    pub(crate) fn from_config(c: &'a Config) -> CookieSpec<'a> {
        CookieSpec {
            name: &c.cookie.name,
            secure: c.cookie.secure,
            same_site: c.cookie.samesite,
            path: &c.cookie.path,
            max_age: c.tokens.refresh_expire_days * 86_400,
        }
    }

    /// The login flow's cookie: for the code's lifetime, at the login routes' `mount` (as
    /// the adapter saw it; else [`routes_path`]).
    pub(crate) fn flow(c: &'a Config, mount: Option<&'a str>) -> CookieSpec<'a> {
        CookieSpec {
            name: &c.flows.cookie_name,
            max_age: c.codes.expiry_seconds,
            path: cookie_path(c, mount),
            ..Self::from_config(c)
        }
    }

    /// The known-device cookie: for `OTP_AUTH_KNOWN_DEVICE_DAYS`, at the login routes'
    /// `mount`, as the flow cookie.
    pub(crate) fn device(c: &'a Config, mount: Option<&'a str>) -> CookieSpec<'a> {
        CookieSpec {
            name: &c.flows.device_cookie_name,
            max_age: c.flows.known_device_days * 86_400,
            path: cookie_path(c, mount),
            ..Self::from_config(c)
        }
    }

    fn attributes(&self, out: &mut String) {
        out.push_str("; Path=");
        out.push_str(self.path);
        out.push_str("; HttpOnly");
        if self.secure {
            out.push_str("; Secure");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site.as_str());
    }

    /// The `Set-Cookie` value that stores `token`.
    pub(crate) fn set(&self, token: &str) -> String {
        let mut s = format!("{}={token}; Max-Age={}", self.name, self.max_age);
        self.attributes(&mut s);
        s
    }

    /// The `Set-Cookie` value that deletes the cookie (same name, path and attributes).
    pub(crate) fn clear(&self) -> String {
        let mut s = format!(
            "{}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            self.name
        );
        self.attributes(&mut s);
        s
    }

    /// Finds this cookie's value in `Cookie` header values.
    pub(crate) fn find<'h>(
        &self,
        cookie_headers: impl IntoIterator<Item = &'h str>,
    ) -> Option<&'h str> {
        cookie_headers
            .into_iter()
            .flat_map(|h| h.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| *k == self.name)
            .map(|(_, v)| v.trim().trim_matches('"'))
            .filter(|v| !v.is_empty())
    }
}

/// The flow and device cookies' `Path`: where the login routes are mounted, as the adapter
/// saw it (`""`, the root, is `/`), else [`routes_path`].
fn cookie_path<'a>(c: &'a Config, mount: Option<&'a str>) -> &'a str {
    match mount {
        Some("") => "/",
        Some(m) if m.starts_with('/') && !m.contains([';', ' ', '?', '#']) => m,
        _ => routes_path(c),
    }
}

/// Where the login routes are mounted when the adapter did not say: the path of
/// `OTP_AUTH_PUBLIC_URL` when it is set, else the refresh cookie's path.
fn routes_path(c: &Config) -> &str {
    let from_url = c.http.public_url.as_deref().and_then(|u| {
        let rest = u.split_once("://").map_or(u, |(_, r)| r);
        rest.find('/').map(|i| rest[i..].trim_end_matches('/'))
    });
    match from_url {
        Some(p) if !p.is_empty() && !p.contains([';', ' ', '?', '#']) => p,
        _ => &c.cookie.path,
    }
}

/// Resolves the client IP: the socket `peer`, unless it is in `trusted`; then the rightmost
/// `X-Forwarded-For` entry that is not trusted (entries left of it could be forged by the
/// client). A peer outside `trusted` makes the header be ignored entirely.
pub(crate) fn resolve_client_ip(
    peer: Option<IpAddr>,
    forwarded_for: Option<&str>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    // A dual-stack socket shows IPv4 peers as `::ffff:a.b.c.d`: they are IPv4 addresses.
    let peer = peer?.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let Some(xff) = forwarded_for else {
        return Some(peer);
    };
    let mut last_trusted = peer;
    for entry in xff.rsplit(',') {
        let entry = entry.trim();
        if entry.is_empty() {
            // `a, , b` or a trailing comma: an empty element, not a hop.
            continue;
        }
        match node_ip(entry).map(|ip| ip.to_canonical()) {
            Some(ip) if is_trusted(&ip) => last_trusted = ip,
            Some(ip) => return Some(ip),
            // Garbage in the chain: stop at the last hop that is known good.
            None => return Some(last_trusted),
        }
    }
    Some(last_trusted)
}

/// The IP of one forwarded entry as proxies write it: `192.0.2.1`, `192.0.2.1:80`,
/// `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:443` (quotes allowed, as RFC 7239
/// writes them); `None` for anything else (`unknown`, an obfuscated `_name`, garbage).
/// A port is digits, or an obfuscated `_port` (RFC 7239 6.3); an IPv6 address with a
/// port must be bracketed.
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    let is_port = |p: &str| {
        (!p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
            || p.starts_with('_')
    };
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    let (ip, port) = node.rsplit_once(':')?;
    if !is_port(port) {
        return None;
    }
    ip.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// The chain of client addresses of every RFC 7239 `Forwarded` header, in order, as
/// [`resolve_client_ip`] reads it (`a, b, …`): each element's `for` address (quotes,
/// brackets and port removed), or `unknown` for an element with no usable one (`unknown`,
/// an obfuscated `_name`, no `for`), which ends the walk like any address that does not
/// parse.
pub(crate) fn forwarded_chain<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut chain: Vec<String> = Vec::new();
    for value in values {
        // Empty elements (`a, , b`, a trailing comma) are no hops.
        for element in value.split(',').filter(|e| !e.trim().is_empty()) {
            let address = element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, v)| node_ip(v));
            chain.push(address.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()));
        }
    }
    (!chain.is_empty()).then(|| chain.join(", "))
}

/// Joins the values of every `X-Forwarded-For` header, in order, into one list (a proxy
/// chain may send several), for [`resolve_client_ip`].
pub(crate) fn join_forwarded_for<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut values = values.into_iter();
    let first = values.next()?;
    Some(values.fold(first.to_owned(), |mut acc, v| {
        acc.push_str(", ");
        acc.push_str(v);
        acc
    }))
}

/// The parts of an HTTP request the endpoints read.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiRequest<'a> {
    /// `Content-Type` header.
    pub(crate) content_type: Option<&'a str>,
    /// The body, already limited by the adapter (see [`HttpSettings::body_limit_bytes`](crate::config::HttpSettings::body_limit_bytes)).
    pub(crate) body: &'a [u8],
    /// `Authorization` header.
    pub(crate) authorization: Option<&'a str>,
    /// The refresh cookie's value, found with [`CookieSpec::find`].
    pub(crate) refresh_cookie: Option<&'a str>,
    /// `Origin` header.
    pub(crate) origin: Option<&'a str>,
    /// `Host` header (or the HTTP/2 authority).
    pub(crate) host: Option<&'a str>,
    /// `Sec-Fetch-Site` header.
    pub(crate) sec_fetch_site: Option<&'a str>,
    /// The client, with its IP resolved by [`resolve_client_ip`].
    pub(crate) client: ClientInfo,
    /// The segment of the path that matched its pattern's `{…}` (the `{id}` of
    /// `/sessions/{id}`).
    pub(crate) param: Option<&'a str>,
    /// The query string (without `?`), read by `GET /magic`.
    pub(crate) query: Option<&'a str>,
    /// Where the login routes are mounted, when the adapter said ([`Mount`]).
    pub(crate) mount: Option<&'a str>,
}

/// The header values the endpoints read.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestHeaders<'a> {
    /// `Content-Length`.
    pub(crate) content_length: Option<&'a str>,
    /// `Content-Type`.
    pub(crate) content_type: Option<&'a str>,
    /// `Authorization`.
    pub(crate) authorization: Option<&'a str>,
    /// Every `Cookie` header.
    pub(crate) cookies: Vec<&'a str>,
    /// `Origin`.
    pub(crate) origin: Option<&'a str>,
    /// `Host`, or the authority of the request target (HTTP/2).
    pub(crate) host: Option<&'a str>,
    /// `Sec-Fetch-Site`.
    pub(crate) sec_fetch_site: Option<&'a str>,
    /// `User-Agent`.
    pub(crate) user_agent: Option<&'a str>,
    /// Every `X-Forwarded-For` header, in order.
    pub(crate) forwarded_for: Vec<&'a str>,
    /// Every RFC 7239 `Forwarded` header, in order.
    pub(crate) forwarded: Vec<&'a str>,
    /// `Accept-Language`.
    pub(crate) accept_language: Option<&'a str>,
}

/// A response of the contract, before it becomes an [`http::Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiResponse {
    /// Status code.
    pub(crate) status: u16,
    /// `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Other headers, in order (`Set-Cookie`, `Retry-After`, `WWW-Authenticate`,
    /// `Cache-Control`).
    pub(crate) headers: Vec<(&'static str, String)>,
    /// The JSON body.
    pub(crate) body: Vec<u8>,
}

impl ApiResponse {
    pub(crate) fn json<T: Serialize>(value: &T) -> ApiResponse {
        match serde_json::to_vec(value) {
            Ok(body) => ApiResponse {
                status: 200,
                content_type: "application/json",
                headers: vec![("cache-control", "no-store".to_owned())],
                body,
            },
            Err(e) => Self::error(&Error::Internal(format!("serializing a response: {e}")).into()),
        }
    }

    pub(crate) fn message(msg: &str) -> ApiResponse {
        Self::json(&MessageResponse {
            message: msg.to_owned(),
        })
    }

    /// The 413 of a body over `limit`.
    fn body_too_large(limit: usize) -> ApiResponse {
        Self::error(&Refusal::PayloadTooLarge { limit })
    }

    /// The problem+json response of `error`.
    pub(crate) fn error(error: &Refusal) -> ApiResponse {
        if let Refusal::Engine(e) = error
            && e.status() >= 500
            && !e.is_unavailable()
        {
            // The chain too: a hook's or a store's own error says what went wrong.
            tracing::error!(error = %e, source = ?std::error::Error::source(e), "request failed");
        }
        let p = error.to_problem();
        let mut headers = p.headers;
        headers.push(("cache-control", "no-store".to_owned()));
        ApiResponse {
            status: p.status,
            content_type: PROBLEM_CONTENT_TYPE,
            headers,
            body: p.body,
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> ApiResponse {
        self.headers.push((name, value));
        self
    }

    /// The response as an [`http::Response`]. Every header value this crate writes is
    /// valid (the cookie's name and path are checked by [`Config::validate`], tokens are
    /// base64url); should one ever not be, the answer is a 500, never a response with a
    /// header silently left out.
    pub(crate) fn into_http(self) -> http::Response<Bytes> {
        let mut headers = HeaderMap::with_capacity(self.headers.len() + 1);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        for (name, value) in self.headers {
            match HeaderValue::try_from(value) {
                Ok(v) => {
                    headers.append(HeaderName::from_static(name), v);
                }
                Err(_) => {
                    let e = Error::Internal(format!("an invalid value for the {name} header"));
                    return ApiResponse::error(&e.into()).into_http();
                }
            }
        }
        let mut out = http::Response::new(Bytes::from(self.body));
        *out.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        *out.headers_mut() = headers;
        out
    }
}

impl<'a> RequestHeaders<'a> {
    /// The values the endpoints read from `headers`; `authority` is the request target's
    /// (HTTP/2 carries the host there, not in a header). Values that are not visible ASCII
    /// count as absent.
    fn from_map(headers: &'a HeaderMap, authority: Option<&'a str>) -> RequestHeaders<'a> {
        let one = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let all = |name: HeaderName| -> Vec<&'a str> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        };
        RequestHeaders {
            content_length: one(CONTENT_LENGTH),
            content_type: one(CONTENT_TYPE),
            authorization: one(AUTHORIZATION),
            cookies: all(COOKIE),
            origin: one(ORIGIN),
            host: one(HOST).or(authority),
            sec_fetch_site: one(HeaderName::from_static("sec-fetch-site")),
            user_agent: one(USER_AGENT),
            forwarded_for: all(HeaderName::from_static("x-forwarded-for")),
            forwarded: all(HeaderName::from_static("forwarded")),
            accept_language: one(ACCEPT_LANGUAGE),
        }
    }
}

/// The contract's problem+json response of `error`, for an adapter's rejections (the
/// current-user extractor).
pub fn error_response(error: Error) -> http::Response<Bytes> {
    ApiResponse::error(&error.into()).into_http()
}

/// Parses a JSON body: `Content-Type` must be JSON (415), the body within `limit` (413),
/// and the JSON must match `T` (422, with the serde message, which never echoes values).
pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(
    content_type: Option<&str>,
    body: &[u8],
    limit: usize,
) -> Result<T, Refusal> {
    if !is_json_content_type(content_type) {
        return Err(Refusal::UnsupportedMediaType);
    }
    if body.len() > limit {
        return Err(Refusal::PayloadTooLarge { limit });
    }
    // serde would also read a struct from a JSON array; the contract's bodies are objects.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Error::InvalidRequest(
            "Invalid request body: expected a JSON object.".to_owned(),
        )
        .into());
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let what = match e.classify() {
            // "missing field `email`" names the field without echoing any value.
            serde_json::error::Category::Data if msg.starts_with("missing field") => {
                msg.split(" at line").next().unwrap_or("a field is missing")
            }
            serde_json::error::Category::Data => "a field is missing or has the wrong type",
            serde_json::error::Category::Eof => "the JSON body is incomplete",
            _ => "the body is not valid JSON",
        };
        Error::InvalidRequest(format!(
            "Invalid request body: {what} (line {}, column {}).",
            e.line(),
            e.column()
        ))
        .into()
    })
}

/// `application/json`, or any `application/*+json`, with optional parameters.
pub(crate) fn is_json_content_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim();
    let Some((ty, sub)) = essence.split_once('/') else {
        return false;
    };
    ty.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json")
            || sub.len() > 5 && sub[sub.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// The client's address as the application determined it, in a request's extensions:
/// [`serve`](crate::adapter::serve) (and so both adapters) takes it as the client IP as it is, ahead of
/// the socket peer and without reading `X-Forwarded-For`.
///
/// For a server without a TCP peer (a Unix socket, AWS Lambda), a client-IP crate such as
/// axum-client-ip, or tests:
///
/// ```
/// # let mut req = http::Request::new(());
/// req.extensions_mut()
///     .insert(otp_core::adapter::ClientIp("203.0.113.7".parse().unwrap()));
/// ```
///
/// Only put an address here that the client cannot choose: the per-IP limits count by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub IpAddr);

/// Whether the missing client address has been logged (once per process).
static NO_CLIENT_ADDRESS_LOGGED: AtomicBool = AtomicBool::new(false);

/// Whether a guard in front of the login routes has been logged (once per process).
static GUARDED_LOGIN_ROUTE_LOGGED: AtomicBool = AtomicBool::new(false);

/// Whether cookie paths that miss the login routes' mount have been logged (once).
static COOKIE_PATH_LOGGED: AtomicBool = AtomicBool::new(false);

/// The login routes that take no access token.
const OPEN_LOGIN_ROUTES: [&str; 6] = [
    "/request-otp",
    "/verify-otp",
    "/magic",
    "/verify-link",
    "/refresh",
    "/jwks.json",
];

/// Whether `path` (as a guard sees it, perhaps under a mount) is a login route that takes
/// no access token.
pub(crate) fn is_open_login_route(path: &str) -> bool {
    OPEN_LOGIN_ROUTES.iter().any(|r| path.ends_with(r))
}

/// Where the login routes are mounted (`/auth`), as the adapter saw it: put in the
/// request's extensions by the adapter. The flow and device cookies take it as their
/// `Path`, and [`serve`] checks that the refresh cookie's path covers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount(pub String);

/// `OTP_AUTH_COOKIE_PATH=<path>` when it does not cover `mount`: browsers would never send
/// the refresh cookie to the login routes (every refresh a 401). `None` when it does.
pub(crate) fn cookie_path_missing(config: &Config, mount: &str) -> Option<String> {
    let mount = if mount.is_empty() { "/" } else { mount };
    let path = config.cookie.path.trim_end_matches('/');
    let covers = path.is_empty()
        || mount == path
        || mount
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('/'));
    (!covers).then(|| format!("{}={}", CookieSettings::VARS.path, config.cookie.path))
}

/// Where a request's client address comes from: the socket and the application.
#[derive(Debug, Clone, Copy)]
struct ClientAddress {
    peer: Option<IpAddr>,
    given: Option<IpAddr>,
}

/// Serves one request to the endpoints of the contract, its path relative to where
/// they are mounted (`/request-otp`, `/sessions/{id}`, …), from the socket address of
/// the client `peer`: routing (404, 405 with `Allow`), the body limit (413, from the
/// declared length before reading and while reading), client IP resolution, the
/// refresh cookie, the endpoint, and the request metrics.
///
/// This is all an adapter calls: it hands over the request and writes the response
/// back. A [`ClientIp`] in the request's extensions is the client's address ahead of
/// `peer`. Without either, `/request-otp` refuses to run (500, a problem document that
/// says how to fix the deployment, logged once): the per-IP limit cannot work.
pub async fn serve<B>(
    auth: &OtpAuth,
    req: http::Request<B>,
    peer: Option<IpAddr>,
) -> http::Response<Bytes>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let route = match Route::resolve(parts.method.as_str(), parts.uri.path()) {
        Ok(route) => route,
        Err(refused) => return refused_early(refused),
    };
    let headers =
        RequestHeaders::from_map(&parts.headers, parts.uri.authority().map(|a| a.as_str()));
    let limit = auth.config().http.body_limit_bytes;
    let declared = headers
        .content_length
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refused_early(ApiResponse::body_too_large(limit));
    }
    let mount = parts.extensions.get::<Mount>().map(|m| m.0.as_str());
    if let Some(mount) = mount
        && !COOKIE_PATH_LOGGED.load(Ordering::Relaxed)
        && let Some(missing) = cookie_path_missing(auth.config(), mount)
        && !COOKIE_PATH_LOGGED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(
            mount = %mount,
            "cookie paths do not cover the login routes at {mount:?}: {missing}; browsers \
             never send the refresh cookie there, and every refresh answers 401 (logged once)"
        );
    }
    let given = parts.extensions.get::<ClientIp>().map(|c| c.0);
    if peer.is_none() && given.is_none() && route.endpoint == Endpoint::RequestOtp {
        if !NO_CLIENT_ADDRESS_LOGGED.swap(true, Ordering::Relaxed) {
            tracing::error!(
                "no client address on a request to /request-otp, answered 500 (logged \
                 once): {NO_CLIENT_ADDRESS}"
            );
        }
        return refused_early(ApiResponse::error(&Refusal::NoClientAddress));
    }
    // Over the limit while streaming (or the client went away: then nobody reads this).
    let body = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return refused_early(ApiResponse::body_too_large(limit)),
    };
    let client = ClientAddress { peer, given };
    handle_parts(
        auth,
        route,
        &headers,
        (parts.uri.query(), mount),
        &body,
        client,
    )
    .await
    .into_http()
}

/// The user of a request's `Authorization: Bearer` header, for an adapter's
/// current-user extractor: `Ok(None)` when the request presents no bearer token; a
/// presented token is checked like [`OtpAuth::authenticate`] does (401 when invalid,
/// expired or revoked; 503 when the store cannot be asked).
pub async fn current_user(
    auth: &OtpAuth,
    headers: &HeaderMap,
) -> Result<Option<CurrentUser>, Error> {
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    match bearer_token(authorization) {
        Err(Error::Unauthorized(TokenRejection::Missing)) => Ok(None),
        Err(e) => Err(e),
        Ok(token) => auth.authenticate(token).await.map(Some),
    }
}

/// The user of a request for an adapter's extractor: the one a layer has already
/// authenticated (an [`CurrentUser`] in `extensions`, put there by
/// [`require_user`]'s caller), otherwise [`current_user`] on the
/// headers. Under a layer, the token and the store are not asked a second time.
pub async fn request_user(
    auth: &OtpAuth,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Result<Option<CurrentUser>, Error> {
    if let Some(user) = extensions.get::<CurrentUser>() {
        return Ok(Some(user.clone()));
    }
    current_user(auth, headers).await
}

/// The check of a [`Guard`].
type UserCheck = std::sync::Arc<dyn Fn(&CurrentUser) -> bool + Send + Sync>;

/// What an adapter's guard (a layer, a middleware) demands of a request's user beyond a
/// valid access token: a recent authentication ([`Guard::max_age`]) and the application's
/// own check, such as a role ([`Guard::check`], [`Guard::require_claims`]). A user who fails
/// the check gets 403 ([`Error::Forbidden`]).
#[derive(Clone, Default)]
pub struct Guard {
    max_age: Option<u64>,
    check: Option<UserCheck>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("max_age", &self.max_age)
            .field(
                "check",
                &self.check.as_ref().map(|_| "Fn(&CurrentUser) -> bool"),
            )
            .finish()
    }
}

impl Guard {
    /// Whether the guard has a check ([`Guard::check`], [`Guard::require_claims`]).
    pub fn has_check(&self) -> bool {
        self.check.is_some()
    }

    /// Demands an authentication within the last `seconds` (RFC 9470's challenge, 401,
    /// otherwise).
    pub fn max_age(mut self, seconds: u64) -> Guard {
        self.max_age = Some(seconds);
        self
    }

    /// Lets through only users for whom `check` answers `true`; 403 for the others. A
    /// second check replaces the first.
    pub fn check(mut self, check: impl Fn(&CurrentUser) -> bool + Send + Sync + 'static) -> Guard {
        self.check = Some(std::sync::Arc::new(check));
        self
    }

    /// [`Guard::check`] on the application's own claims (those its
    /// [`Hooks::claims`](crate::Hooks::claims) added) read as `C`: 403 when they do not fit
    /// `C` or `check` answers `false`. Claims are as fresh as the access token: a role
    /// taken away holds until the token expires (`OTP_AUTH_ACCESS_TOKEN_EXPIRE_MINUTES`)
    /// unless the user's sessions are ended.
    pub fn require_claims<C: DeserializeOwned>(
        self,
        check: impl Fn(&C) -> bool + Send + Sync + 'static,
    ) -> Guard {
        self.check(move |user| user.extra_claims::<C>().is_ok_and(|c| check(&c)))
    }

    /// The user of a request to `path` with `headers` if they pass: [`require_user`],
    /// then the recent authentication, then the check. A 401 at one of the login routes
    /// that take no token (the login router mounted behind the guard, where it can only
    /// ever refuse) is logged once, saying so.
    pub async fn admit(
        &self,
        auth: &OtpAuth,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<CurrentUser, Error> {
        let user = match require_user(auth, headers).await {
            Ok(user) => user,
            Err(e) => {
                if matches!(e, Error::Unauthorized(_))
                    && is_open_login_route(path)
                    && !GUARDED_LOGIN_ROUTE_LOGGED.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        path,
                        "a require-user guard answered 401 at a login route, which takes no \
                         access token: the login router is behind the guard; mount it beside \
                         the protected routes (logged once)"
                    );
                }
                return Err(e);
            }
        };
        if let Some(max_age) = self.max_age {
            user.require_recent(max_age)?;
        }
        match &self.check {
            Some(check) if !check(&user) => Err(Error::Forbidden),
            _ => Ok(user),
        }
    }
}

/// The user a request must have, for an adapter's layer: a missing bearer token is
/// 401 ([`TokenRejection::Missing`]), like an invalid one; 503 when the store cannot
/// be asked. The layer puts the user in the request's extensions for
/// [`request_user`].
pub async fn require_user(auth: &OtpAuth, headers: &HeaderMap) -> Result<CurrentUser, Error> {
    current_user(auth, headers)
        .await?
        .ok_or(Error::Unauthorized(TokenRejection::Missing))
}

/// Serves one request from its route, headers, query, body and socket peer: client IP
/// resolution, the refresh cookie, then the endpoint.
async fn handle_parts(
    auth: &OtpAuth,
    route: Route<'_>,
    headers: &RequestHeaders<'_>,
    (query, mount): (Option<&str>, Option<&str>),
    body: &[u8],
    client: ClientAddress,
) -> ApiResponse {
    let ip = match client.given {
        // The application's own answer: no proxy headers are read.
        Some(ip) => Some(ip.to_canonical()),
        None => {
            let forwarded_for = match auth.config().http.forwarded_header {
                ForwardedHeader::XForwardedFor => {
                    join_forwarded_for(headers.forwarded_for.iter().copied())
                }
                ForwardedHeader::Forwarded => forwarded_chain(headers.forwarded.iter().copied()),
            };
            resolve_client_ip(
                client.peer,
                forwarded_for.as_deref(),
                auth.trusted_proxies(),
            )
        }
    };
    let cookies = || headers.cookies.iter().copied();
    let config = auth.config();
    let api = ApiRequest {
        content_type: headers.content_type,
        body,
        authorization: headers.authorization,
        refresh_cookie: CookieSpec::from_config(config).find(cookies()),
        origin: headers.origin,
        host: headers.host,
        sec_fetch_site: headers.sec_fetch_site,
        client: ClientInfo {
            ip,
            user_agent: headers.user_agent.map(str::to_owned),
            accept_language: headers.accept_language.map(str::to_owned),
            flow: CookieSpec::flow(config, None)
                .find(cookies())
                .map(str::to_owned),
            device: CookieSpec::device(config, None)
                .find(cookies())
                .map(str::to_owned),
        },
        param: route.param,
        query,
        mount,
    };
    handle(auth, route.endpoint, api).await
}

/// Serves one endpoint of the contract from plain request parts.
pub(crate) async fn handle(auth: &OtpAuth, endpoint: Endpoint, req: ApiRequest<'_>) -> ApiResponse {
    let started = std::time::Instant::now();
    let call = Call { auth, req: &req };
    let result = match check(auth, endpoint, &req) {
        Ok(()) => crate::routes::dispatch(endpoint, &call).await,
        Err(refused) => Err(refused),
    };
    let resp = match (endpoint, result) {
        (_, Ok(resp)) => resp,
        // A refresh cookie that no longer works is of no use to the browser.
        (Endpoint::Refresh, Err(e @ Refusal::Engine(Error::Unauthorized(_)))) => {
            call.clearing(ApiResponse::error(&e))
        }
        (_, Err(e)) => ApiResponse::error(&e),
    };
    crate::event::metrics::request_done(endpoint, resp.status, started.elapsed());
    resp
}

/// What every endpoint checks first: a state-changing request's origin, and the body's
/// size (an adapter may have read it without the limit).
fn check(auth: &OtpAuth, endpoint: Endpoint, req: &ApiRequest<'_>) -> Result<(), Refusal> {
    // Reading the keys or the confirmation page changes nothing, and other services
    // fetch the keys from anywhere.
    if endpoint.method() != Method::Get {
        check_cross_site(auth, req)?;
    }
    let limit = auth.config().http.body_limit_bytes;
    if req.body.len() > limit {
        return Err(Refusal::PayloadTooLarge { limit });
    }
    Ok(())
}

/// Cross-site protection of the state-changing endpoints (the algorithm of Go's
/// `net/http.CrossOriginProtection`): an origin in `OTP_AUTH_ALLOWED_ORIGINS` passes;
/// else a browser's `Sec-Fetch-Site` must say `same-origin` or `none`; without it, an
/// `Origin` must name the request's own host or `OTP_AUTH_PUBLIC_URL`'s origin.
/// Requests with neither header (curl, servers, native apps) pass: they carry no
/// ambient browser credentials to abuse.
fn check_cross_site(auth: &OtpAuth, req: &ApiRequest<'_>) -> Result<(), Refusal> {
    let config = auth.config();
    if let Some(o) = req.origin
        && config
            .http
            .allowed_origins
            .iter()
            .any(|a| a.eq_ignore_ascii_case(o))
    {
        return Ok(());
    }
    if let Some(site) = req.sec_fetch_site {
        let site = site.trim();
        return if site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none") {
            Ok(())
        } else {
            Err(Refusal::ForbiddenOrigin)
        };
    }
    let Some(origin) = req.origin else {
        return Ok(());
    };
    let own_host = origin
        .split_once("://")
        .map(|(_, host)| host)
        .zip(req.host)
        .is_some_and(|(o, h)| o.eq_ignore_ascii_case(h.trim()));
    let public = config
        .http
        .public_url
        .as_deref()
        .and_then(url_origin)
        .is_some_and(|p| p.eq_ignore_ascii_case(origin));
    if own_host || public {
        Ok(())
    } else {
        Err(Refusal::ForbiddenOrigin)
    }
}

/// Extracts the token of an `Authorization: Bearer <token>` header (scheme
/// case-insensitive). No header or another scheme → [`TokenRejection::Missing`] (no bearer
/// token was presented, RFC 6750 3.1); an empty token → [`TokenRejection::Invalid`].
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, Error> {
    let h = authorization
        .ok_or(Error::Unauthorized(TokenRejection::Missing))?
        .trim();
    let (scheme, token) = h.split_once(' ').unwrap_or((h, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Error::Unauthorized(TokenRejection::Missing));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(Error::Unauthorized(TokenRejection::Invalid));
    }
    Ok(token)
}

/// A response given before any endpoint ran, counted in `otp_refused_requests_total`.
fn refused_early(resp: ApiResponse) -> http::Response<Bytes> {
    crate::event::metrics::refused(resp.status);
    resp.into_http()
}

/// `scheme://host[:port]` of an absolute URL.
fn url_origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').unwrap_or(rest.len());
    Some(&url[..scheme.len() + 3 + end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7239_forwarded_becomes_the_chain_of_for_addresses() {
        let chain = |values: &[&str]| forwarded_chain(values.iter().copied());
        assert_eq!(
            chain(&["for=192.0.2.60;proto=http;by=203.0.113.43"]).as_deref(),
            Some("192.0.2.60")
        );
        assert_eq!(
            chain(&[r#"for="[2001:db8:cafe::17]:4711", For=198.51.100.7:80"#]).as_deref(),
            Some("2001:db8:cafe::17, 198.51.100.7")
        );
        // Several headers, in order; an unusable `for` (or none) is a stop sign.
        assert_eq!(
            chain(&["for=unknown", "proto=https, for=_hidden", r#"for="[::1]""#]).as_deref(),
            Some("unknown, unknown, unknown, ::1")
        );
        assert_eq!(chain(&[]), None);
        // Through the resolver: the rightmost address that is not a trusted proxy.
        let t = nets(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let resolve = |v: &str| resolve_client_ip(Some(proxy), chain(&[v]).as_deref(), &t);
        assert_eq!(
            resolve("for=6.6.6.6, for=198.51.100.7;proto=https"),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            resolve("for=198.51.100.7, for=10.0.0.3"),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            resolve("for=198.51.100.7, for=_gateway"),
            Some(proxy),
            "an obfuscated hop: the last known-good one"
        );
    }

    #[test]
    fn forwarded_entries_are_read_as_proxies_write_them() {
        let t = nets(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let resolve = |xff: &str| resolve_client_ip(Some(proxy), Some(xff), &t);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // One test per form: IPv4 with a port (Azure Application Gateway), bracketed IPv6
        // with and without a port, bare IPv6, quotes, whitespace, empty elements.
        assert_eq!(resolve("198.51.100.10:1234"), ip("198.51.100.10"));
        assert_eq!(resolve("[2001:db8::5]:443"), ip("2001:db8::5"));
        assert_eq!(resolve("[2001:db8::5]"), ip("2001:db8::5"));
        assert_eq!(resolve("2001:db8::5"), ip("2001:db8::5"));
        assert_eq!(resolve("\"198.51.100.10:80\""), ip("198.51.100.10"));
        assert_eq!(resolve("  198.51.100.10  "), ip("198.51.100.10"));
        assert_eq!(
            resolve("198.51.100.10,"),
            ip("198.51.100.10"),
            "trailing comma"
        );
        assert_eq!(resolve("198.51.100.10, ,10.0.0.7"), ip("198.51.100.10"));
        assert_eq!(
            resolve(",, 198.51.100.10:9, 10.0.0.7:80 ,"),
            ip("198.51.100.10")
        );
        assert_eq!(resolve("::ffff:198.51.100.10"), ip("198.51.100.10"));
        // Garbage still stops the walk at the last known-good hop.
        for bad in [
            "198.51.100.10:port",
            "[2001:db8::5]x",
            "2001:db8::5]:443",
            "unknown",
        ] {
            assert_eq!(resolve(bad), Some(proxy), "{bad}");
        }
        // RFC 7239 `Forwarded`: the same forms, and empty elements.
        let chain = |v: &str| forwarded_chain([v]);
        assert_eq!(
            chain("for=198.51.100.10:1234, ,for=\"[2001:db8::5]:443\",").as_deref(),
            Some("198.51.100.10, 2001:db8::5")
        );
        assert_eq!(
            chain(" for = 198.51.100.10 ").as_deref(),
            Some("198.51.100.10")
        );
    }

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn xff_is_ignored_from_untrusted_peers() {
        let peer: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            resolve_client_ip(Some(peer), Some("1.2.3.4"), &nets(&["10.0.0.0/8"])),
            Some(peer)
        );
        assert_eq!(
            resolve_client_ip(Some(peer), Some("1.2.3.4"), &[]),
            Some(peer)
        );
    }

    #[test]
    fn xff_is_read_right_to_left_behind_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let t = nets(&["10.0.0.0/8"]);
        // The client forged the leftmost entry; the proxy appended the real one.
        assert_eq!(
            resolve_client_ip(Some(proxy), Some("6.6.6.6, 198.51.100.7"), &t),
            Some("198.51.100.7".parse().unwrap())
        );
        // Two proxy hops.
        assert_eq!(
            resolve_client_ip(Some(proxy), Some("198.51.100.7, 10.0.0.3"), &t),
            Some("198.51.100.7".parse().unwrap())
        );
        // No header: the proxy itself.
        assert_eq!(resolve_client_ip(Some(proxy), None, &t), Some(proxy));
        // Garbage: stop at the last good hop.
        assert_eq!(
            resolve_client_ip(Some(proxy), Some("198.51.100.7, garbage"), &t),
            Some(proxy)
        );
    }

    #[test]
    fn login_routes_that_take_no_token_are_known_under_any_mount() {
        for p in [
            "/auth/request-otp",
            "/request-otp",
            "/x/y/refresh",
            "/auth/jwks.json",
        ] {
            assert!(is_open_login_route(p), "{p}");
        }
        for p in [
            "/auth/sessions",
            "/auth/logout-all",
            "/app/me",
            "/auth/reauthenticate",
        ] {
            assert!(!is_open_login_route(p), "{p}");
        }
    }

    #[test]
    fn the_refresh_cookie_path_must_cover_the_mount() {
        let mut c = Config::default();
        for mount in ["", "/auth", "/a/b"] {
            assert_eq!(
                cookie_path_missing(&c, mount),
                None,
                "Path=/ covers {mount:?}"
            );
        }
        c.cookie.path = "/auth".into();
        assert_eq!(cookie_path_missing(&c, "/auth"), None);
        assert_eq!(cookie_path_missing(&c, "/auth/v1"), None);
        assert_eq!(
            cookie_path_missing(&c, "/login").as_deref(),
            Some("OTP_AUTH_COOKIE_PATH=/auth")
        );
        assert!(
            cookie_path_missing(&c, "/authx").is_some(),
            "a prefix of the name only"
        );
    }

    #[test]
    fn flow_and_device_cookies_live_at_the_mount() {
        let mut c = Config::default();
        c.cookie.path = "/elsewhere".into();
        let path = |mount| CookieSpec::flow(&c, mount).set("x");
        assert!(
            path(Some("/auth")).contains("; Path=/auth;"),
            "{}",
            path(Some("/auth"))
        );
        assert!(path(Some("")).contains("; Path=/;"));
        assert!(
            CookieSpec::device(&c, Some("/login"))
                .set("x")
                .contains("; Path=/login;")
        );
        // No mount from the adapter: the public URL's path, else the refresh cookie's.
        assert!(path(None).contains("; Path=/elsewhere;"));
        c.http.public_url = Some("https://app.example.com/sign".into());
        assert!(
            CookieSpec::flow(&c, None)
                .set("x")
                .contains("; Path=/sign;")
        );
    }

    #[test]
    fn cookie_set_and_clear_share_attributes() {
        let c = CookieSpec {
            name: "refresh_token",
            secure: true,
            same_site: SameSite::Lax,
            path: "/",
            max_age: 604_800,
        };
        assert_eq!(
            c.set("abc"),
            "refresh_token=abc; Max-Age=604800; Path=/; HttpOnly; Secure; SameSite=Lax"
        );
        assert_eq!(
            c.clear(),
            "refresh_token=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Path=/; HttpOnly; Secure; SameSite=Lax"
        );
        assert_eq!(c.find(["a=1; refresh_token=xyz; b=2"]), Some("xyz"));
        assert_eq!(c.find(["a=1", "refresh_token=xyz"]), Some("xyz"));
        assert_eq!(c.find(["refresh_token_other=1"]), None);
        assert_eq!(c.find(["refresh_token="]), None);
    }

    #[test]
    fn json_content_types() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json_content_type(Some(ok)), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "application/jsonx",
            "",
        ] {
            assert!(!is_json_content_type(Some(bad)), "{bad}");
        }
        assert!(!is_json_content_type(None));
    }

    #[test]
    fn parse_json_errors() {
        let r: Result<RequestOtpBody, _> = parse_json(Some("text/plain"), b"{}", 100);
        assert!(matches!(r, Err(Refusal::UnsupportedMediaType)));
        let r: Result<RequestOtpBody, _> = parse_json(Some("application/json"), &[b' '; 101], 100);
        assert!(matches!(r, Err(Refusal::PayloadTooLarge { limit: 100 })));
        for bad in [
            &b"{"[..],
            b"{}",
            b"{\"email\": 5}",
            b"[]",
            b"[\"a@example.com\"]",
            b"\xff\xfe",
            b"null",
            b"",
        ] {
            let r: Result<RequestOtpBody, _> = parse_json(Some("application/json"), bad, 100);
            assert!(
                matches!(r, Err(Refusal::Engine(Error::InvalidRequest(_)))),
                "{bad:?}"
            );
        }
    }
}
