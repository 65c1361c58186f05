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

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, Parameter, ParameterBuilder, ParameterIn,
};
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::schema::{KnownFormat, Object, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, Header, InfoBuilder, OpenApi, OpenApiBuilder, PathItem,
    Paths, Ref, RefOr, Required, Response, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::config::{Config, RefreshTransport};
use crate::engine::OtpAuth;
use crate::routes::{Endpoint, Method};
use crate::web::RefreshBody;

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

/// The document for the auth routes mounted at `mount` (e.g. `/auth`), with the cookie
/// name, code length and body limit of `auth`'s configuration: one operation per row of
/// the route table, in its order.
pub fn document(auth: &OtpAuth, mount: &str) -> OpenApi {
    let mount = mount.trim_end_matches('/');
    let mut spec = Spec {
        config: auth.config(),
        schemas: Vec::new(),
    };
    spec.register::<ProblemDetails>();
    let mut paths = Paths::new();
    for endpoint in Endpoint::ALL {
        let op = OperationBuilder::new()
            .tag("auth")
            .operation_id(Some(endpoint.name()));
        let op = crate::routes::operation(endpoint, &mut spec, op);
        let method = match endpoint.method() {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
            Method::Delete => HttpMethod::Delete,
        };
        paths.add_path_operation(format!("{mount}{}", endpoint.path()), vec![method], op);
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
                .schemas_from_iter(spec.schemas)
                .security_scheme(BEARER, bearer_scheme())
                .build(),
        ))
        .build();
    constrain_fields(&mut doc, auth.config().codes.length);
    doc
}

/// The exact shape of the bodies' codes and addresses, which the derived schemas cannot
/// state: every `otp` property is the configured number of digits, every `email` or
/// `*_email` property an address as `Email::parse` accepts it. Anything else is a 422.
fn constrain_fields(doc: &mut OpenApi, code_length: u8) {
    let digits = usize::from(code_length);
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for schema in components.schemas.values_mut() {
        let RefOr::T(Schema::Object(object)) = schema else {
            continue;
        };
        for (name, property) in object.properties.iter_mut() {
            let RefOr::T(Schema::Object(field)) = property else {
                continue;
            };
            if name == "otp" {
                field.pattern = Some(format!("^[0-9]{{{digits}}}$"));
                field.min_length = Some(digits);
                field.max_length = Some(digits);
            } else if name == "email" || name.ends_with("_email") {
                constrain_email(field);
            }
        }
    }
}

fn constrain_email(field: &mut Object) {
    field.format = Some(SchemaFormat::KnownFormat(KnownFormat::Email));
    field.min_length = Some(crate::email::MIN_EMAIL_CHARS);
    field.max_length = Some(crate::email::MAX_EMAIL_LEN);
    // RFC 2047 encoded-word syntax is refused (`EmailError::EncodedWord`).
    field.pattern = Some(NO_ENCODED_WORD.to_owned());
    let described = field.description.take().unwrap_or_default();
    field.description = Some(format!("{described} {EMAIL_RULES}").trim().to_owned());
}

/// No `=?` and no `?=` anywhere (the domain cannot hold either).
const NO_ENCODED_WORD: &str = r"^(?!.*=\?)(?!.*\?=)";

/// What an address field accepts beyond `format: email` and its lengths.
const EMAIL_RULES: &str = "An address of at most 254 characters as sent and 254 bytes once \
    normalized: surrounding spaces are trimmed; the local part is an ASCII dot-atom of at most \
    64 bytes (no quoted local parts, no comments); the domain is a host name of at least two \
    labels, internationalized names allowed (mapped to IDNA ASCII), with a top-level label \
    that is not all digits (no IP literals); no control, invisible or inner space characters; \
    no `=?` or `?=` (MIME encoded-word syntax). The local part is lowercased. Anything else is a 422.";

/// What the route table's operations are written with: the configuration they describe,
/// the parts they share, and the schemas they use (collected as the document's
/// components).
pub(crate) struct Spec<'c> {
    config: &'c Config,
    schemas: Vec<(String, RefOr<Schema>)>,
}

impl Spec<'_> {
    /// The configuration described.
    pub(crate) fn config(&self) -> &Config {
        self.config
    }

    /// Adds `T`'s schema (and those it refers to) to the components; its `$ref`.
    fn register<T: ToSchema>(&mut self) -> Ref {
        let name = T::name().into_owned();
        if !self.schemas.iter().any(|(n, _)| *n == name) {
            self.schemas
                .push((name.clone(), <T as PartialSchema>::schema()));
            let mut nested = Vec::new();
            T::schemas(&mut nested);
            for (n, schema) in nested {
                if !self.schemas.iter().any(|(m, _)| *m == n) {
                    self.schemas.push((n, schema));
                }
            }
        }
        Ref::from_schema_name(name)
    }

    /// A required JSON body of type `T`.
    pub(crate) fn body<T: ToSchema>(&mut self) -> RequestBody {
        let schema = self.register::<T>();
        RequestBodyBuilder::new()
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(schema)).build(),
            )
            .required(Some(Required::True))
            .build()
    }

    /// A 200 with a JSON `T`.
    pub(crate) fn ok<T: ToSchema>(&mut self, description: &str) -> Response {
        let schema = self.register::<T>();
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(schema)).build(),
            )
            .build()
    }

    /// A 200 with a JSON `T` that sets the refresh cookie (when the transport uses it).
    pub(crate) fn ok_setting_cookie<T: ToSchema>(&mut self, description: &str) -> Response {
        let c = self.config;
        let set = format!(
            "`{}=<refresh token>; Max-Age={}; Path={}; HttpOnly{}; SameSite={}`",
            c.cookie.name,
            c.tokens.refresh_expire_days * 86_400,
            c.cookie.path,
            if c.cookie.secure { "; Secure" } else { "" },
            c.cookie.samesite.as_str()
        );
        let response = self.ok::<T>(description);
        self.with_cookie(response, set)
    }

    /// A 200 with a JSON `T` that clears the refresh cookie (when the transport uses it).
    pub(crate) fn ok_clearing_cookie<T: ToSchema>(&mut self, description: &str) -> Response {
        let cleared = format!(
            "`{}=; Max-Age=0; ...` (the cookie cleared)",
            self.config.cookie.name
        );
        let response = self.ok::<T>(description);
        self.with_cookie(response, cleared)
    }

    fn with_cookie(&self, mut response: Response, what: String) -> Response {
        if self.config.sessions.refresh_transport.uses_cookie() {
            let mut h = Header::new(ObjectBuilder::new().schema_type(Type::String));
            h.description = Some(what);
            response.headers.insert("Set-Cookie".to_owned(), h);
        }
        response
    }

    /// A 200 with any JSON object.
    pub(crate) fn json_object(&self, description: &str) -> Response {
        json_object(description)
    }

    /// An HTML page.
    pub(crate) fn html_page(&self, description: &str) -> Response {
        ResponseBuilder::new()
            .description(description)
            .content(
                "text/html; charset=utf-8",
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                    .build(),
            )
            .build()
    }

    /// A problem document.
    pub(crate) fn problem(&self, description: &str) -> Response {
        problem(description)
    }

    /// A problem document with `Retry-After`.
    pub(crate) fn retry_after(&self, description: &str) -> Response {
        retry_after(description)
    }

    /// The 401 with `WWW-Authenticate`.
    pub(crate) fn unauthorized(&self) -> Response {
        unauthorized()
    }

    /// The bearer token requirement.
    pub(crate) fn bearer(&self) -> SecurityRequirement {
        bearer()
    }

    /// A required string segment of the path.
    pub(crate) fn path_parameter(&self, name: &str, description: &str) -> Parameter {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .build()
    }

    /// A required, non-empty query parameter.
    pub(crate) fn query_parameter(&self, name: &str) -> Parameter {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::True)
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            ))
            .build()
    }

    /// The answers of every endpoint but the pages: 403 (cross-site) and 503.
    pub(crate) fn common(&self, op: OperationBuilder) -> OperationBuilder {
        op.response(
            "403",
            problem("`Origin` not among `OTP_AUTH_ALLOWED_ORIGINS`"),
        )
        .response(
            "503",
            retry_after("The store or the mail server is unavailable"),
        )
    }

    /// The refusals of a JSON body: 413, 415, 422.
    pub(crate) fn json_errors(&self, op: OperationBuilder) -> OperationBuilder {
        op.response(
            "413",
            problem(&format!(
                "Body over {} bytes",
                self.config.http.body_limit_bytes
            )),
        )
        .response("415", problem("Content type not JSON"))
        .response(
            "422",
            problem("Body not a JSON object of the expected shape, or an invalid address or code"),
        )
    }

    /// How `/refresh` and `/logout` take the refresh token, as the transport says: the
    /// cookie parameter, the optional body, and the refusals of a body.
    pub(crate) fn refresh_input(&mut self, op: OperationBuilder) -> OperationBuilder {
        let transport = self.config.sessions.refresh_transport;
        let op = if transport.uses_cookie() {
            op.parameter(
                ParameterBuilder::new()
                    .name(&self.config.cookie.name)
                    .parameter_in(ParameterIn::Cookie)
                    .required(Required::False)
                    .description(Some("The refresh token (HttpOnly cookie set at login)"))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            )
        } else {
            op
        };
        if !transport.uses_body() {
            return op;
        }
        let schema = self.register::<RefreshBody>();
        let optional_body = RequestBodyBuilder::new()
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(schema)).build(),
            )
            .required(Some(Required::False))
            .description(Some(if transport.uses_cookie() {
                "The refresh token, unless the cookie carries it (not both: 400)"
            } else {
                "The refresh token (a cookie beside it: 400)"
            }))
            .build();
        self.json_errors(op.request_body(Some(optional_body)))
            .response(
                "400",
                problem("A refresh token in both the body and the cookie"),
            )
    }

    /// `otp is exactly N ASCII digits.`
    pub(crate) fn code_shape(&self) -> String {
        format!(
            "`otp` is exactly {} ASCII digits.",
            self.config.codes.length
        )
    }

    /// Where the token answers put the refresh token.
    pub(crate) fn transport_note(&self) -> &'static str {
        match self.config.sessions.refresh_transport {
            RefreshTransport::Cookie => {
                "The refresh token is in the HttpOnly cookie only (`OTP_AUTH_REFRESH_TOKEN_TRANSPORT=cookie`)."
            }
            RefreshTransport::Body => {
                "The refresh token is in the JSON only (`OTP_AUTH_REFRESH_TOKEN_TRANSPORT=body`): \
                 `refresh_token` and `refresh_expires_in` in the answer, no cookie."
            }
            RefreshTransport::Both => {
                "The refresh token is in the HttpOnly cookie and in the JSON \
                 (`OTP_AUTH_REFRESH_TOKEN_TRANSPORT=both`)."
            }
        }
    }
}

fn json_object(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                .build(),
        )
        .build()
}

/// The `bearer` scheme: `Authorization: Bearer <JWT>`.
fn bearer_scheme() -> SecurityScheme {
    SecurityScheme::Http(
        HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build(),
    )
}

fn bearer() -> SecurityRequirement {
    SecurityRequirement::new(BEARER, Vec::<String>::new())
}

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            crate::problem::PROBLEM_CONTENT_TYPE,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ProblemDetails")))
                .build(),
        )
        .build()
}

fn retry_after(description: &str) -> Response {
    let mut r = problem(description);
    let mut h = Header::new(ObjectBuilder::new().schema_type(Type::Integer));
    h.description = Some("Seconds until a request may succeed".to_owned());
    r.headers.insert("Retry-After".to_owned(), h);
    r
}

fn unauthorized() -> Response {
    let mut r = problem(
        "No valid token; `WWW-Authenticate: Bearer` (with `error=\"invalid_token\"` when one was presented)",
    );
    r.headers.insert(
        "WWW-Authenticate".to_owned(),
        Header::new(ObjectBuilder::new().schema_type(Type::String)),
    );
    r
}

/// Adds a `GET` route protected by the `CurrentUser` extractor: bearer security, 200 with
/// a JSON object, 401 and 503 problems.
pub fn add_protected_get(doc: &mut OpenApi, path: &str, summary: &str) {
    let op = OperationBuilder::new()
        .summary(Some(summary))
        .security(bearer())
        .response("200", json_object("The user is authenticated"))
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

/// Adds the admin endpoints ([`serve_admin`](crate::adapter::serve_admin)) mounted at
/// `mount` (e.g. `/admin`), tagged `admin`, with their schemas: every one takes the
/// administrator's bearer token (401 without a valid one, 403 when the application's check
/// refuses).
///
/// ```
/// # fn auth() -> otp_core::OtpAuth {
/// #     let mut config = otp_core::Config::default();
/// #     config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
/// #     otp_core::OtpAuth::builder(config).memory_store().mailer(otp_core::mailer::CapturingMailer::new()).build().unwrap()
/// # }
/// let mut doc = otp_core::adapter::openapi::document(&auth(), "/auth");
/// otp_core::adapter::openapi::add_admin(&mut doc, "/admin");
/// assert!(doc.paths.paths.contains_key("/admin/addresses/{email}/lock"));
/// ```
pub fn add_admin(doc: &mut OpenApi, mount: &str) {
    use crate::adapter::AdminEndpoint as A;
    use crate::admin_http::{AdminSessions, EndedResponse, LockBody, SignInBody, SignInResponse};
    use crate::engine::AddressReport;
    use crate::web::MessageResponse;

    let mount = mount.trim_end_matches('/');
    let config = Config::default();
    let mut spec = Spec {
        config: &config,
        schemas: Vec::new(),
    };
    spec.register::<ProblemDetails>();
    let optional = |mut body: RequestBody| {
        body.required = Some(Required::False);
        body
    };
    let account = |op: OperationBuilder| {
        let param = |name: &str, what: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Query)
                .required(Required::False)
                .description(Some(what))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1)),
                ))
                .build()
        };
        op.parameter(param(
            "email",
            "The user's address, percent-encoded (exactly one of email and subject)",
        ))
        .parameter(param("subject", "The user's `sub`, percent-encoded"))
    };
    let email = spec.path_parameter("email", "The address, percent-encoded (`%40` for `@`)");
    for endpoint in A::ALL {
        let op = OperationBuilder::new()
            .tag("admin")
            .operation_id(Some(endpoint.name()))
            .security(bearer())
            .response("401", unauthorized())
            .response(
                "403",
                problem("The application's check refused the administrator"),
            )
            .response("422", problem("The address, subject or body is not valid"))
            .response(
                "503",
                retry_after("The store or the mail server is unavailable"),
            );
        let op = match endpoint {
            A::Sessions => account(op)
                .summary(Some("A user's live sessions, most recently refreshed first"))
                .response("200", spec.ok::<AdminSessions>("The sessions")),
            A::EndSessions => account(op)
                .summary(Some("Ends every session of a user (by address: its known devices are forgotten too)"))
                .response("200", spec.ok::<EndedResponse>("How many were live")),
            A::EndSession => op
                .summary(Some("Ends one session"))
                .parameter(spec.path_parameter("id", "The session's id (`sid`)"))
                .response("200", spec.ok::<MessageResponse>("Ended"))
                .response("404", problem("No live session has this id")),
            A::Address => op
                .summary(Some("An address's locks, failures, pending logins and request counts"))
                .parameter(email.clone())
                .response("200", spec.ok::<AddressReport>("The address's state")),
            A::Lock => op
                .summary(Some(
                    "Locks an address: no code is mailed to it (its requests answer as usual) and its pending codes stop working",
                ))
                .parameter(email.clone())
                .request_body(Some(optional(spec.body::<LockBody>())))
                .response("200", spec.ok::<AddressReport>("The address's state")),
            A::Unlock => op
                .summary(Some("Unlocks an address, ending its lockout of unbound guesses too"))
                .parameter(email.clone())
                .response("200", spec.ok::<AddressReport>("The address's state")),
            A::SignIn => op
                .summary(Some(
                    "Mails an address a sign-in (code and link) with its own lifetime, outside its request limits; the answer holds neither",
                ))
                .parameter(email.clone())
                .request_body(Some(optional(spec.body::<SignInBody>())))
                .response("202", spec.ok::<SignInResponse>("Sent"))
                .response("502", problem("The mail server refused the message")),
        };
        let method = match endpoint.method() {
            Method::Get => HttpMethod::Get,
            Method::Post => HttpMethod::Post,
            Method::Delete => HttpMethod::Delete,
        };
        let path = format!("{mount}{}", endpoint.path());
        let op = op.build();
        match doc.paths.paths.get_mut(&path) {
            Some(item) => item.merge_operations(PathItem::new(method, op)),
            None => {
                doc.paths.paths.insert(path, PathItem::new(method, op));
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    for (name, schema) in spec.schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    if !components.security_schemes.contains_key(BEARER) {
        components.add_security_scheme(BEARER, bearer_scheme());
    }
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
                let pattern = email["pattern"].as_str().unwrap();
                assert_eq!(pattern, NO_ENCODED_WORD, "{body}");
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
