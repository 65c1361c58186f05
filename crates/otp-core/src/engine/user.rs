//! The values the flows take and give: the client, the tokens, the signed-in user.

use std::fmt;
use std::net::IpAddr;

use serde::de::{DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use crate::primitives::now_secs;

use crate::codec::Claims;
use crate::error::{Error, TokenRejection};

/// What the engine knows about the client making a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's IP, after trusted-proxy resolution.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// The `Accept-Language` header, if any: it chooses the language of the login mail.
    pub accept_language: Option<String>,
    /// The login flow the client presents (the flow cookie, or `flow_id` in the body): a
    /// code request with it is a resend to that flow, a verification with it is bound.
    pub flow: Option<String>,
    /// The client's known-device cookie, if any.
    pub device: Option<String>,
}

/// The tokens issued at login and at each refresh.
#[derive(Clone)]
pub struct TokenPair {
    /// The access token (bearer).
    pub access_token: String,
    /// The access token's lifetime in seconds.
    pub expires_in: u64,
    /// The refresh token (for the cookie).
    pub refresh_token: String,
    /// The refresh token's lifetime in seconds (the cookie's `Max-Age`).
    pub refresh_expires_in: u64,
    /// The access token's claims.
    pub claims: Claims,
    /// At login: the known-device cookie's new value (`None` at a refresh, or when
    /// `OTP_AUTH_KNOWN_DEVICE_DAYS` is 0).
    pub known_device: Option<String>,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("expires_in", &self.expires_in)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// An access token issued alone, on a session that keeps its refresh token (a
/// re-authentication).
#[derive(Clone)]
pub struct AccessToken {
    /// The access token (bearer).
    pub access_token: String,
    /// Its lifetime in seconds.
    pub expires_in: u64,
    /// Its claims.
    pub claims: Claims,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_in", &self.expires_in)
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// An authenticated user, as a protected route sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentUser {
    /// The subject (`sub`).
    pub subject: String,
    /// The normalized address.
    pub email: String,
    /// The session id.
    pub session_id: String,
    /// All claims of the access token.
    pub claims: Claims,
}

impl CurrentUser {
    /// When the user last proved the address (`auth_time`, seconds since the epoch): the
    /// login or the session's last re-authentication. `None` for a token from before
    /// tokens carried it.
    pub fn auth_time(&self) -> Option<u64> {
        self.claims.auth_time
    }

    /// How (`amr`, RFC 8176): `["otp"]` for a code, `["otp", "link"]` for a sign-in link;
    /// empty for a token from before tokens carried it.
    pub fn amr(&self) -> &[String] {
        self.claims.amr.as_deref().unwrap_or_default()
    }

    /// Whether the user proved the address within the last `max_age_secs` seconds.
    pub fn authenticated_within(&self, max_age_secs: u64) -> bool {
        self.auth_time()
            .is_some_and(|at| now_secs().saturating_sub(at) <= max_age_secs)
    }

    /// `Ok` when the user proved the address within the last `max_age_secs` seconds, else
    /// [`Error::InsufficientAuthentication`]: 401 with RFC 9470's
    /// `insufficient_user_authentication` challenge and `max_age`. The guard of a
    /// sensitive action; the adapters wrap it in an extractor.
    ///
    /// ```
    /// # fn demo(user: otp_core::CurrentUser) -> Result<(), otp_core::Error> {
    /// user.require_recent(300)?; // signed in or re-authenticated in the last 5 minutes
    /// # Ok(()) }
    /// ```
    pub fn require_recent(&self, max_age_secs: u64) -> Result<(), Error> {
        if self.authenticated_within(max_age_secs) {
            Ok(())
        } else {
            Err(Error::InsufficientAuthentication {
                max_age: max_age_secs,
            })
        }
    }

    /// The claims the application's [`Hooks::claims`](crate::Hooks::claims) added, as the application's own type
    /// (`()` reads none and always succeeds). A token whose claims do not deserialize into
    /// `C` is refused like a bad token (401), and the reason is logged at warn level: it
    /// was signed here, so the usual cause is a type that no longer matches the hook.
    ///
    /// ```
    /// # fn demo(user: otp_core::CurrentUser) -> Result<(), otp_core::Error> {
    /// #[derive(serde::Deserialize)]
    /// struct Roles {
    ///     roles: Vec<String>,
    /// }
    /// let roles: Roles = user.extra_claims()?;
    /// # Ok(()) }
    /// ```
    pub fn extra_claims<C: DeserializeOwned>(&self) -> Result<C, Error> {
        C::deserialize(ExtraClaims(&self.claims.extra)).map_err(|e| {
            tracing::warn!(
                error = %e,
                claims_type = std::any::type_name::<C>(),
                "an access token's own claims do not fit the application's type: refused (401)"
            );
            Error::Unauthorized(TokenRejection::Invalid)
        })
    }
}

/// The hooks' claims as a deserializer: the map, except that a unit type (`()`, a unit
/// struct) reads nothing from it, so `CurrentUser<()>` never fails on any claims.
struct ExtraClaims<'a>(&'a Map<String, Value>);

impl<'de> serde::Deserializer<'de> for ExtraClaims<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.0.deserialize_any(visitor)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_enum(name, variants, visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf seq tuple tuple_struct map identifier ignored_any
    }
}
