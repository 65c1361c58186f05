//! [poem-openapi](https://docs.rs/poem-openapi) integration (feature `poem-openapi`): the
//! current user as a security scheme, so that an operation of an `#[OpenApi]` impl takes
//! it as a parameter and the generated document shows the bearer requirement.
//!
//! ```
//! use otp_poem::api::BearerUser;
//! use poem_openapi::{OpenApi, OpenApiService, payload::PlainText};
//!
//! struct Api;
//!
//! #[OpenApi]
//! impl Api {
//!     /// The signed-in user's address.
//!     #[oai(path = "/me", method = "get")]
//!     async fn me(&self, user: BearerUser) -> PlainText<String> {
//!         PlainText(user.email.clone())
//!     }
//! }
//!
//! let service = OpenApiService::new(Api, "My app", "1.0");
//! let document = service.spec();
//! assert!(document.contains("\"bearer\""));
//! ```
//!
//! The app must carry the engine as data (`.data(auth)`), as for
//! [`CurrentUser`]; under [`RequireUser`](crate::RequireUser), the user
//! the middleware checked is taken as it is. [`RecentBearerUser`] also demands a recent
//! authentication (RFC 9470), as [`RecentUser`](crate::RecentUser) does.

use std::ops::Deref;

use otp_core::adapter::DeserializeOwned;
use poem::{Request, RequestBody};
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::CurrentUser;

/// The name of the security scheme in the generated document: the same as in the login
/// contract's document (otp-core's `openapi` feature), so the two can sit side by side.
pub const SECURITY_SCHEME: &str = "bearer";

/// The authenticated user as a poem-openapi security scheme (`type: http`,
/// `scheme: bearer`, `bearerFormat: JWT`): everything [`CurrentUser`] is and checks,
/// including the application's own claims typed as `C`. A refusal answers the contract's
/// problem document (401 with `WWW-Authenticate`, 503 when the store cannot be asked).
#[derive(Debug, Clone)]
pub struct BearerUser<C = ()>(pub CurrentUser<C>);

impl<C> Deref for BearerUser<C> {
    type Target = CurrentUser<C>;

    fn deref(&self) -> &CurrentUser<C> {
        &self.0
    }
}

impl<'a, C: DeserializeOwned + Send> ApiExtractor<'a> for BearerUser<C> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_scheme(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SECURITY_SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        <CurrentUser<C> as poem::FromRequest<'a>>::from_request(request, body)
            .await
            .map(BearerUser)
    }
}

fn register_scheme(registry: &mut Registry) {
    registry.create_security_scheme(
        SECURITY_SCHEME,
        MetaSecurityScheme {
            ty: "http",
            description: Some(
                "The access token of /auth/verify-otp, /auth/verify-link or /auth/refresh, as \
                 `Authorization: Bearer <token>`.",
            ),
            name: None,
            key_in: None,
            scheme: Some("bearer"),
            bearer_format: Some("JWT"),
            flows: None,
            openid_connect_url: None,
        },
    );
}

/// A [`BearerUser`] who proved the address within the last `MAX_AGE_SECS` seconds (by the
/// token's `auth_time`: signed in or re-authenticated). An older or absent `auth_time` is
/// answered 401 with RFC 9470's `insufficient_user_authentication` challenge and
/// `max_age`, as [`RecentUser`](crate::RecentUser) answers.
///
/// ```
/// use otp_poem::api::RecentBearerUser;
/// use poem_openapi::{OpenApi, payload::PlainText};
///
/// struct Api;
///
/// #[OpenApi]
/// impl Api {
///     /// Deletes the account: signed in or re-authenticated in the last 5 minutes.
///     #[oai(path = "/account/delete", method = "post")]
///     async fn delete(&self, user: RecentBearerUser<300>) -> PlainText<String> {
///         PlainText(format!("deleting {}", user.subject))
///     }
/// }
/// ```
#[derive(Debug, Clone)]
pub struct RecentBearerUser<const MAX_AGE_SECS: u64, C = ()>(pub CurrentUser<C>);

impl<const MAX_AGE_SECS: u64, C> Deref for RecentBearerUser<MAX_AGE_SECS, C> {
    type Target = CurrentUser<C>;

    fn deref(&self) -> &CurrentUser<C> {
        &self.0
    }
}

impl<'a, C: DeserializeOwned + Send, const MAX_AGE_SECS: u64> ApiExtractor<'a>
    for RecentBearerUser<MAX_AGE_SECS, C>
{
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        register_scheme(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SECURITY_SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let user = <crate::RecentUser<MAX_AGE_SECS, C> as poem::FromRequest<'a>>::from_request(
            request, body,
        )
        .await?;
        Ok(RecentBearerUser(user.0))
    }
}
