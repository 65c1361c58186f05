//! The OpenAPI 3.1 document of the HTTP contract (feature `openapi`), built from the same
//! types the endpoints use, and a self-contained interactive docs page.
//!
//! ```
//! # fn auth() -> otp_core::OtpAuth {
//! #     let mut config = otp_core::Config::default();
//! #     config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
//! #     otp_core::OtpAuth::builder(config).memory_store().mailer(otp_core::mailer::CapturingMailer::new()).build().unwrap()
//! # }
//! let mut doc = otp_core::adapter::openapi::document(&auth(), "/auth");
//! otp_core::adapter::openapi::add_protected_get(&mut doc, "/protected", "A route behind the extractor");
//! assert!(doc.paths.paths.contains_key("/auth/verify-otp"));
//! ```
//!
//! The adapters serve it (`otp_axum::openapi_router`; `otp_poem::openapi_json` and `otp_poem::docs_page`) at
//! `/openapi.json`, with [`DOCS_PAGE`] at `/docs`.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, Header, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
    Paths, Ref, Required, ResponseBuilder,
};

use crate::engine::OtpAuth;
use crate::web::{
    ChangeEmailBody, Endpoint, LogoutOthersResponse, MessageResponse, Method, ReauthenticationBody,
    RefreshBody, RequestOtpBody, SessionView, SessionsResponse, TokenResponse,
    VerifyEmailChangeBody, VerifyLinkBody, VerifyOtpBody,
};

/// The document type (utoipa's), re-exported so users need no direct utoipa dependency.
pub type OpenApiDoc = OpenApi;

/// The interactive docs page: renders `./openapi.json` and sends requests from the
/// browser. Self-contained (no CDN), so it works offline.
pub const DOCS_PAGE: &str = include_str!("docs.html");

/// An error body (RFC 9457), for the document.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used
pub struct ProblemDetails {
    /// Always `about:blank`.
    #[schema(rename = "type", example = "about:blank")]
    kind: String,
    /// The status's reason phrase.
    #[schema(example = "Too Many Requests")]
    title: String,
    /// The HTTP status.
    #[schema(example = 429)]
    status: u16,
    /// A human sentence.
    #[schema(example = "Too many code requests. Try again in 42 seconds.")]
    detail: String,
}

const BEARER: &str = "bearer";

fn json(schema: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(schema)))
        .build()
}

fn problem(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(crate::problem::PROBLEM_CONTENT_TYPE, json("ProblemDetails"))
        .build()
}

fn retry_after(description: &str) -> utoipa::openapi::Response {
    let mut r = problem(description);
    r.headers.insert(
        "Retry-After".to_owned(),
        seconds_header("Seconds until a request may succeed"),
    );
    r
}

fn seconds_header(description: &str) -> Header {
    let mut h = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
    h.description = Some(description.to_owned());
    h
}

fn unauthorized() -> utoipa::openapi::Response {
    let mut r = problem(
        "No valid token; `WWW-Authenticate: Bearer` (with `error=\"invalid_token\"` when one was presented)",
    );
    r.headers.insert(
        "WWW-Authenticate".to_owned(),
        Header::new(ObjectBuilder::new().schema_type(Type::String)),
    );
    r
}

fn ok(schema: &str, description: &str, sets_cookie: Option<&str>) -> utoipa::openapi::Response {
    let mut r = ResponseBuilder::new()
        .description(description)
        .content("application/json", json(schema))
        .build();
    if let Some(what) = sets_cookie {
        let mut h = Header::new(ObjectBuilder::new().schema_type(Type::String));
        h.description = Some(what.to_owned());
        r.headers.insert("Set-Cookie".to_owned(), h);
    }
    r
}

fn body(schema: &str) -> utoipa::openapi::request_body::RequestBody {
    RequestBodyBuilder::new()
        .content("application/json", json(schema))
        .required(Some(Required::True))
        .build()
}

/// The document for the auth routes mounted at `mount` (e.g. `/auth`), with the cookie
/// name, code length and body limit of `auth`'s configuration.
pub fn document(auth: &OtpAuth, mount: &str) -> OpenApi {
    let c = auth.config();
    let mount = mount.trim_end_matches('/');
    let cookie = || {
        ParameterBuilder::new()
            .name(&c.cookie.name)
            .parameter_in(ParameterIn::Cookie)
            .required(Required::False)
            .description(Some("The refresh token (HttpOnly cookie set at login)"))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()
    };
    let common = |op: OperationBuilder| {
        op.response(
            "403",
            problem("`Origin` not among `OTP_AUTH_ALLOWED_ORIGINS`"),
        )
        .response(
            "503",
            retry_after("The store or the mail server is unavailable"),
        )
    };
    let json_errors = |op: OperationBuilder| {
        op.response(
            "413",
            problem(&format!("Body over {} bytes", c.http.body_limit_bytes)),
        )
        .response("415", problem("Content type not JSON"))
        .response(
            "422",
            problem("Body not a JSON object of the expected shape, or an invalid address or code"),
        )
    };
    let cookie_set = format!(
        "`{}=<refresh token>; Max-Age={}; Path={}; HttpOnly{}; SameSite={}`",
        c.cookie.name,
        c.tokens.refresh_expire_days * 86_400,
        c.cookie.path,
        if c.cookie.secure { "; Secure" } else { "" },
        c.cookie.samesite.as_str()
    );
    let cookie_cleared = format!("`{}=; Max-Age=0; ...` (the cookie cleared)", c.cookie.name);
    // The refresh token's transport decides the cookie headers and the refresh bodies.
    let transport = c.sessions.refresh_transport;
    let (cookie_set, cookie_cleared) = if transport.uses_cookie() {
        (Some(cookie_set), Some(cookie_cleared))
    } else {
        (None, None)
    };
    let transport_note = match transport {
        crate::config::RefreshTransport::Cookie => {
            "The refresh token is in the HttpOnly cookie only (`OTP_AUTH_REFRESH_TOKEN_TRANSPORT=cookie`)."
        }
        crate::config::RefreshTransport::Body => {
            "The refresh token is in the JSON only (`OTP_AUTH_REFRESH_TOKEN_TRANSPORT=body`): \
             `refresh_token` and `refresh_expires_in` in the answer, no cookie."
        }
        crate::config::RefreshTransport::Both => {
            "The refresh token is in the HttpOnly cookie and in the JSON \
             (`OTP_AUTH_REFRESH_TOKEN_TRANSPORT=both`)."
        }
    };
    // How /refresh and /logout take the refresh token: the cookie parameter, the optional
    // body, and the refusals of a body.
    let refresh_input = |op: OperationBuilder| {
        let op = if transport.uses_cookie() {
            op.parameter(cookie())
        } else {
            op
        };
        if !transport.uses_body() {
            return op;
        }
        let optional_body = RequestBodyBuilder::new()
            .content("application/json", json("RefreshBody"))
            .required(Some(Required::False))
            .description(Some(if transport.uses_cookie() {
                "The refresh token, unless the cookie carries it (not both: 400)"
            } else {
                "The refresh token (a cookie beside it: 400)"
            }))
            .build();
        json_errors(op.request_body(Some(optional_body))).response(
            "400",
            problem("A refresh token in both the body and the cookie"),
        )
    };
    let html_page = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "text/html; charset=utf-8",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            )
            .build()
    };
    let mut paths = Paths::new();
    for endpoint in Endpoint::ALL {
        let op = OperationBuilder::new()
            .tag("auth")
            .operation_id(Some(endpoint.name()));
        let bearer = || SecurityRequirement::new(BEARER, Vec::<String>::new());
        let op = match endpoint {
            Endpoint::RequestOtp => json_errors(common(
                op.summary(Some("Send a login code by mail"))
                    .description(Some("The same answer for every address (no account enumeration)."))
                    .request_body(Some(body("RequestOtpBody")))
                    .response("200", ok("MessageResponse", "Code sent (or silently not, for a refused address)", None))
                    .response("429", retry_after("Too many requests for this address or client IP, or the address is locked out"))
                    .response("502", problem("The mail server refused the message")),
            )),
            Endpoint::VerifyOtp => json_errors(common(
                op.summary(Some("Trade the code for tokens"))
                    .description(Some(format!(
                        "`otp` is exactly {} ASCII digits. {transport_note}",
                        c.codes.length
                    )))
                    .request_body(Some(body("VerifyOtpBody")))
                    .response("200", ok("TokenResponse", "Logged in", cookie_set.as_deref()))
                    .response("400", problem("No code pending, or the code expired, was used, or is wrong"))
                    .response("429", retry_after("Too many failed attempts for this address")),
            )),
            Endpoint::Refresh => common(refresh_input(
                op.summary(Some("Rotate the refresh token"))
                    .description(Some(format!("The presented refresh token is spent; presenting it again revokes its session. {transport_note}")))
                    .response("200", ok("TokenResponse", "New tokens", cookie_set.as_deref()))
                    .response("401", unauthorized()),
            )),
            Endpoint::Logout => common(refresh_input(
                op.summary(Some("Log out"))
                    .description(Some("Revokes the access token and the sessions of both tokens; always 200 unless the store is down."))
                    .security(SecurityRequirement::default())
                    .security(SecurityRequirement::new(BEARER, Vec::<String>::new()))
                    .response("200", ok("MessageResponse", "Logged out", cookie_cleared.as_deref())),
            )),
            Endpoint::LogoutAll => common(
                op.summary(Some("Log out everywhere"))
                    .description(Some("Ends every session of the user."))
                    .security(SecurityRequirement::new(BEARER, Vec::<String>::new()))
                    .response("200", ok("MessageResponse", "Every session ended", cookie_cleared.as_deref()))
                    .response("401", unauthorized()),
            ),
            Endpoint::LogoutOthers => common(
                op.summary(Some("Log out every other session"))
                    .description(Some("Ends every session of the user but the one of this access token."))
                    .security(bearer())
                    .response("200", ok("LogoutOthersResponse", "The other sessions ended", None))
                    .response("401", unauthorized()),
            ),
            Endpoint::Sessions => common(
                op.summary(Some("List the user's sessions"))
                    .description(Some("Each live session with its login time, last refresh, and the user agent and IP seen at login; the current one first."))
                    .security(bearer())
                    .response("200", ok("SessionsResponse", "The sessions", None))
                    .response("401", unauthorized()),
            ),
            Endpoint::RevokeSession => common(
                op.summary(Some("End one of the user's sessions"))
                    .description(Some("Ending the current session also clears the refresh cookie."))
                    .security(bearer())
                    .parameter(
                        ParameterBuilder::new()
                            .name("id")
                            .parameter_in(ParameterIn::Path)
                            .required(Required::True)
                            .description(Some("A session id from `GET /sessions`"))
                            .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
                    )
                    .response("200", ok("MessageResponse", "The session ended", None))
                    .response("401", unauthorized())
                    .response("404", problem("Not one of the user's live sessions")),
            ),
            Endpoint::MagicPage => op
                .summary(Some("The sign-in link's confirmation page"))
                .description(Some("An HTML page whose button posts the token to `/verify-link`. Opening it changes nothing, so mail scanners that follow links spend nothing."))
                .parameter(
                    ParameterBuilder::new()
                        .name("token")
                        .parameter_in(ParameterIn::Query)
                        .required(Required::True)
                        .schema(Some(
                            ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)),
                        )),
                )
                .response("200", html_page("The page (for a forged or expired token, one that says so)"))
                .response("400", html_page("No token: the page says the link is invalid")),
            Endpoint::VerifyLink => json_errors(common(
                op.summary(Some("Trade a sign-in link's token for tokens"))
                    .description(Some(format!("Answers exactly like `/verify-otp`: the link carries the same code, so using either spends both, with the same attempts and lockout. {transport_note}")))
                    .request_body(Some(body("VerifyLinkBody")))
                    .response("200", ok("TokenResponse", "Logged in", cookie_set.as_deref()))
                    .response("400", problem("The link is invalid, expired or already used"))
                    .response("429", retry_after("Too many failed attempts for this address")),
            )),
            Endpoint::Reauthenticate => common(
                op.summary(Some("Mail the signed-in user a code to confirm it is them"))
                    .description(Some("Step-up authentication (RFC 9470): a fresh code to the address of the access token's user, under the limits of `/request-otp` (one budget per address). It replaces any pending code of the address; a login code never passes for it, nor it for a login."))
                    .security(bearer())
                    .response("200", ok("MessageResponse", "Code sent", None))
                    .response("401", unauthorized())
                    .response("429", retry_after("Too many requests for this address or client IP, or the address is locked out"))
                    .response("502", problem("The mail server refused the message")),
            ),
            Endpoint::VerifyReauthentication => json_errors(common(
                op.summary(Some("Trade the re-authentication code for a fresh access token"))
                    .description(Some(format!(
                        "`otp` is exactly {} ASCII digits. A new access token on the same session with `auth_time` now; the session keeps it through refreshes. The refresh token is unchanged (no cookie).",
                        c.codes.length
                    )))
                    .security(bearer())
                    .request_body(Some(body("ReauthenticationBody")))
                    .response("200", ok("TokenResponse", "Re-authenticated", None))
                    .response("400", problem("No re-authentication code pending, or the code expired, was used, or is wrong"))
                    .response("401", unauthorized())
                    .response("429", retry_after("Too many failed attempts for this address")),
            )),
            Endpoint::ChangeEmail => json_errors(common(
                op.summary(Some("Mail a code to the address the user moves to"))
                    .description(Some(format!(
                        "Needs an authentication within the last {} seconds (`OTP_AUTH_EMAIL_CHANGE_MAX_AGE_SECONDS`); an older one gets 401 with RFC 9470's `insufficient_user_authentication` challenge (re-authenticate first). The same answer whether or not the new address is another user's, under the limits of `/request-otp` for the new address.",
                        c.sessions.email_change_max_age_seconds
                    )))
                    .security(bearer())
                    .request_body(Some(body("ChangeEmailBody")))
                    .response("200", ok("MessageResponse", "Code sent to the new address", None))
                    .response("401", unauthorized())
                    .response("429", retry_after("Too many requests for the new address or client IP, or it is locked out"))
                    .response("502", problem("The mail server refused the message")),
            )),
            Endpoint::VerifyEmailChange => json_errors(common(
                op.summary(Some("Trade the new address's code for tokens that carry it"))
                    .description(Some(format!(
                        "`otp` is exactly {} ASCII digits. The application moves its user (a hook) and the old address gets a notice. Every session of the user ends (all their tokens carry the old address); the answer has new tokens on a new session with the new `email` and the same `sub`. {transport_note}",
                        c.codes.length
                    )))
                    .security(bearer())
                    .request_body(Some(body("VerifyEmailChangeBody")))
                    .response("200", ok("TokenResponse", "Address changed", cookie_set.as_deref()))
                    .response("400", problem("No email-change code pending for this address, or the code expired, was used, or is wrong"))
                    .response("401", unauthorized())
                    .response("403", problem("The application refused the address, or offers no email change (one answer whatever the reason)"))
                    .response("429", retry_after("Too many failed attempts for this address")),
            )),
            Endpoint::Jwks => op
                .summary(Some("The public keys that verify access tokens"))
                .description(Some("A JSON Web Key Set (RFC 7517); empty with an HMAC algorithm."))
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description("The key set")
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                                .build(),
                        )
                        .build(),
                ),
        };
        let method = match endpoint.method() {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
            Method::Delete => HttpMethod::Delete,
        };
        paths.paths.insert(
            format!("{mount}{}", endpoint.path()),
            PathItem::new(method, op.build()),
        );
    }
    let mut doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Passwordless login")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Login by a one-time code sent by email: a JWT access token in the body, \
                     a rotating refresh token in an HttpOnly cookie.",
                ))
                .build(),
        )
        .paths(paths)
        .components(Some(
            ComponentsBuilder::new()
                .schema_from::<RequestOtpBody>()
                .schema_from::<VerifyOtpBody>()
                .schema_from::<MessageResponse>()
                .schema_from::<TokenResponse>()
                .schema_from::<VerifyLinkBody>()
                .schema_from::<ReauthenticationBody>()
                .schema_from::<ChangeEmailBody>()
                .schema_from::<VerifyEmailChangeBody>()
                .schema_from::<RefreshBody>()
                .schema_from::<LogoutOthersResponse>()
                .schema_from::<SessionView>()
                .schema_from::<SessionsResponse>()
                .schema_from::<ProblemDetails>()
                .security_scheme(
                    BEARER,
                    SecurityScheme::Http(
                        HttpBuilder::new()
                            .scheme(HttpAuthScheme::Bearer)
                            .bearer_format("JWT")
                            .build(),
                    ),
                )
                .build(),
        ))
        .build();
    // The codes' exact shape, from the configured length: anything else is a 422.
    let digits = usize::from(c.codes.length);
    for body in [
        "VerifyOtpBody",
        "ReauthenticationBody",
        "VerifyEmailChangeBody",
    ] {
        constrain_string(&mut doc, body, "otp", |o| {
            o.pattern = Some(format!("^[0-9]{{{digits}}}$"));
            o.min_length = Some(digits);
            o.max_length = Some(digits);
        });
    }
    // Every address field: what `Email::parse` can accept, bounded as it is bounded.
    for (body, field) in [
        ("RequestOtpBody", "email"),
        ("VerifyOtpBody", "email"),
        ("ChangeEmailBody", "new_email"),
        ("VerifyEmailChangeBody", "new_email"),
    ] {
        constrain_string(&mut doc, body, field, |o| {
            use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
            o.format = Some(SchemaFormat::KnownFormat(KnownFormat::Email));
            o.min_length = Some(crate::email::MIN_EMAIL_CHARS);
            o.max_length = Some(crate::email::MAX_EMAIL_LEN);
            let described = o.description.take().unwrap_or_default();
            o.description = Some(format!("{described} {EMAIL_RULES}").trim().to_owned());
        });
    }
    doc
}

/// What an address field accepts beyond `format: email` and its lengths.
const EMAIL_RULES: &str = "An address of at most 254 characters as sent and 254 bytes once \
    normalized: surrounding spaces are trimmed; the local part is an ASCII dot-atom of at most \
    64 bytes (no quoted local parts, no comments); the domain is a host name of at least two \
    labels, internationalized names allowed (mapped to IDNA ASCII), with a top-level label \
    that is not all digits (no IP literals); no control, invisible or inner space characters. \
    The local part is lowercased. Anything else is a 422.";

/// Applies `f` to the string property `property` of the component schema `schema`.
fn constrain_string(
    doc: &mut OpenApi,
    schema: &str,
    property: &str,
    f: impl Fn(&mut utoipa::openapi::schema::Object),
) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    let component = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut(schema));
    if let Some(RefOr::T(Schema::Object(object))) = component
        && let Some(RefOr::T(Schema::Object(field))) = object.properties.get_mut(property)
    {
        f(field);
    }
}

/// Adds a `GET` route protected by the `CurrentUser` extractor: bearer security, 200 with
/// a JSON object, 401 and 503 problems.
pub fn add_protected_get(doc: &mut OpenApi, path: &str, summary: &str) {
    let ok = ResponseBuilder::new()
        .description("The user is authenticated")
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .build(),
        )
        .build();
    let op = OperationBuilder::new()
        .summary(Some(summary))
        .security(SecurityRequirement::new(BEARER, Vec::<String>::new()))
        .response("200", ok)
        .response("401", unauthorized())
        .response(
            "503",
            retry_after("Revocation cannot be checked: fail closed"),
        )
        .build();
    doc.paths
        .paths
        .insert(path.to_owned(), PathItem::new(HttpMethod::Get, op));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RefreshTransport;

    fn doc(transport: RefreshTransport) -> serde_json::Value {
        doc_with(transport, 6)
    }

    fn doc_with(transport: RefreshTransport, code_length: u8) -> serde_json::Value {
        let mut config = crate::Config::default();
        config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
        config.sessions.refresh_transport = transport;
        config.codes.length = code_length;
        let auth = OtpAuth::builder(config)
            .memory_store()
            .mailer(crate::mailer::CapturingMailer::new())
            .build()
            .unwrap();
        serde_json::to_value(document(&auth, "/auth")).unwrap()
    }

    /// Each transport is described as served: the cookie parameter and `Set-Cookie` only
    /// where the cookie is used, the optional `RefreshBody` and its 400 only where the body is.
    #[test]
    fn the_document_describes_the_refresh_token_transport() {
        for (transport, cookie, body) in [
            (RefreshTransport::Cookie, true, false),
            (RefreshTransport::Body, false, true),
            (RefreshTransport::Both, true, true),
        ] {
            let d = doc(transport);
            let refresh = &d["paths"]["/auth/refresh"]["post"];
            let has_cookie_param = refresh["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "cookie"));
            assert_eq!(has_cookie_param, cookie, "{transport:?}: cookie parameter");
            let sets_cookie = refresh["responses"]["200"]["headers"]
                .get("Set-Cookie")
                .is_some();
            assert_eq!(sets_cookie, cookie, "{transport:?}: Set-Cookie");
            let body_ref = &refresh["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(
                body_ref == "#/components/schemas/RefreshBody",
                body,
                "{transport:?}: request body {body_ref}"
            );
            if body {
                assert_eq!(refresh["requestBody"]["required"], false);
                assert!(refresh["responses"].get("400").is_some());
                assert!(d["paths"]["/auth/logout"]["post"]["requestBody"].is_object());
            }
            let props = &d["components"]["schemas"]["TokenResponse"]["properties"];
            assert!(
                props.get("refresh_token").is_some() && props.get("refresh_expires_in").is_some()
            );
        }
    }

    /// Every `otp` field states the configured code's exact shape, every address field its
    /// format and lengths, and `/magic` its required, non-empty token and the 400 without one.
    #[test]
    fn the_document_states_the_code_shape_and_the_magic_token() {
        for length in [6u8, 8] {
            let d = doc_with(RefreshTransport::Cookie, length);
            for body in [
                "VerifyOtpBody",
                "ReauthenticationBody",
                "VerifyEmailChangeBody",
            ] {
                let otp = &d["components"]["schemas"][body]["properties"]["otp"];
                assert_eq!(otp["pattern"], format!("^[0-9]{{{length}}}$"), "{body}");
                assert_eq!(otp["minLength"], length, "{body}");
                assert_eq!(otp["maxLength"], length, "{body}");
            }
            for (body, field) in [
                ("RequestOtpBody", "email"),
                ("VerifyOtpBody", "email"),
                ("ChangeEmailBody", "new_email"),
                ("VerifyEmailChangeBody", "new_email"),
            ] {
                let email = &d["components"]["schemas"][body]["properties"][field];
                assert_eq!(email["format"], "email", "{body}");
                assert_eq!(email["minLength"], 5, "{body}");
                assert_eq!(email["maxLength"], 254, "{body}");
                assert!(
                    email["description"].as_str().unwrap().contains("dot-atom"),
                    "{body}"
                );
            }
            let magic = &d["paths"]["/auth/magic"]["get"];
            assert_eq!(magic["parameters"][0]["required"], true);
            assert_eq!(magic["parameters"][0]["schema"]["minLength"], 1);
            assert!(magic["responses"].get("400").is_some());
        }
    }
}
