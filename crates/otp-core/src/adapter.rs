//! What a web-framework adapter uses. An adapter hands each request under its mount
//! point to [`serve`] with the client's socket address (and the mount itself as a
//! [`Mount`] extension, so the cookies' paths are checked against it) and writes the
//! `http::Response` back; its current-user extractor calls [`request_user`] (or
//! [`current_user`]), its layer a [`Guard`] (or [`require_user`]), and both answer a
//! refusal with [`error_response`]. Routers that register paths one by one take them from
//! [`Endpoint::ALL`]; [`user_extractor_type!`](crate::adapter::user_extractor_type) declares the
//! extractor's type. Nothing else: routing, limits, cookies and problem documents are the
//! engine's, so every adapter answers byte for byte alike.

pub use crate::admin_http::{AdminEndpoint, DEFAULT_SIGN_IN_SECS, serve_admin};
pub use crate::routes::{Endpoint, Method};
#[doc(inline)]
pub use crate::user_extractor_type;
pub use crate::web::{
    ClientIp, Guard, Mount, bearer_token, current_user, error_response, request_user, require_user,
    serve,
};

#[cfg(feature = "openapi")]
#[path = "openapi.rs"]
pub mod openapi;

/// What [`user_extractor_type!`](crate::adapter::user_extractor_type)'s types require of their
/// claims type, re-exported so the macro works in crates that do not name serde.
pub use serde::de::DeserializeOwned;

/// Declares an adapter's current-user type: `Name<C = ()>`, the [`CurrentUser`](crate::CurrentUser)
/// (which it derefs to) with the application's own claims typed as `C` (so the adapter can
/// implement its framework's extractor trait on it). The doc comment and attributes
/// written before the name go on the type.
///
/// ```
/// otp_core::adapter::user_extractor_type! {
///     /// The authenticated user of a request.
///     CurrentUser
/// }
/// # fn email(user: &CurrentUser) -> &str { &user.email }
/// # fn typed(user: otp_core::CurrentUser) -> Result<CurrentUser<serde_json::Value>, otp_core::Error> {
/// #     CurrentUser::from_user(user)
/// # }
/// ```
#[doc(hidden)] // shown in this module (`adapter::user_extractor_type!`)
#[macro_export]
macro_rules! user_extractor_type {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub struct $name<C = ()> {
            /// The user: subject, address, session id and every claim of the token.
            pub user: $crate::CurrentUser,
            /// The application's own claims (those its `Hooks::claims` added), typed.
            pub extra: C,
        }

        impl<C: $crate::adapter::DeserializeOwned> $name<C> {
            /// `user` with its own claims read as `C`: a 401 error when they do not fit
            /// ([`CurrentUser::extra_claims`]($crate::CurrentUser::extra_claims)).
            pub fn from_user(user: $crate::CurrentUser) -> ::std::result::Result<Self, $crate::Error> {
                let extra = user.extra_claims()?;
                ::std::result::Result::Ok(Self { user, extra })
            }
        }

        impl<C> ::std::ops::Deref for $name<C> {
            type Target = $crate::CurrentUser;
            fn deref(&self) -> &Self::Target {
                &self.user
            }
        }
    };
}
