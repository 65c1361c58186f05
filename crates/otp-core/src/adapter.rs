//! What a web-framework adapter uses. An adapter hands each request under its mount
//! point to [`OtpAuth::serve`](crate::OtpAuth::serve) with the client's socket address and
//! writes the `http::Response` back; its current-user extractor calls
//! [`OtpAuth::current_user`](crate::OtpAuth::current_user) and answers a refusal with
//! [`error_response`]. Routers that register paths one by one take them from
//! [`Endpoint::ALL`]; [`user_extractor_type!`](crate::user_extractor_type) declares the
//! extractor's type. Nothing else: routing, limits, cookies and problem documents are the
//! engine's, so every adapter answers byte for byte alike.

pub use crate::web::{Endpoint, Method, error_response};

/// Declares an adapter's current-user type: a newtype around [`CurrentUser`](crate::CurrentUser)
/// (so the adapter can implement its framework's extractor trait on it) that derefs to it.
/// The doc comment and attributes written before the name go on the type.
///
/// ```
/// otp_core::user_extractor_type! {
///     /// The authenticated user of a request.
///     CurrentUser
/// }
/// # fn email(user: &CurrentUser) -> &str { &user.email }
/// ```
#[macro_export]
macro_rules! user_extractor_type {
    ($(#[$attr:meta])* $name:ident) => {
        $(#[$attr])*
        #[derive(Debug, Clone)]
        pub struct $name(pub $crate::CurrentUser);

        impl ::std::ops::Deref for $name {
            type Target = $crate::CurrentUser;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    };
}
