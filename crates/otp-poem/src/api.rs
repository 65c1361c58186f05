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
//! the middleware checked is taken as it is.

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
        registry.create_security_scheme(
            SECURITY_SCHEME,
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "The access token of /auth/verify-otp, /auth/verify-link or /auth/refresh, \
                     as `Authorization: Bearer <token>`.",
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
