//! Settings: defaults, an optional TOML file and `OTP_AUTH_*` environment variables,
//! validated once at start-up with errors that name the variable to fix.
//!
//! [`Config`] holds one group per concern ([`CodeSettings`], [`LimitSettings`],
//! [`TokenSettings`], [`SessionSettings`], [`CookieSettings`], [`MailSettings`],
//! [`HttpSettings`], and the backends' [`RedisSettings`] and [`SmtpSettings`]). Each field
//! is read from one flat variable, named in its documentation and in the group's `VARS`
//! (`CookieSettings::VARS.name` is `"OTP_AUTH_COOKIE_NAME"`), which store and mailer
//! implementations can use in their own error messages. Each group checks its own bounds;
//! [`Config::validate`] adds the checks that span groups (the code key).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use figment::providers::Env;
#[cfg(feature = "toml")]
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use ipnet::IpNet;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::code::derive_code_secret;

/// The prefix of every environment variable the library reads.
pub(crate) const ENV_PREFIX: &str = "OTP_AUTH_";

/// Secrets that are known placeholders and must never sign a token.
const PLACEHOLDER_SECRETS: &[&str] = &[
    "your-secret-key",
    "your-secret-key-here",
    "your-super-secret-key",
    "change-me",
    "changeme",
    "change-this-secret",
    "secret",
    "supersecret",
    "your-jwt-secret",
    "jwt-secret",
    "please-change-me",
];

/// The minimum length of an HMAC key in bytes.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// `OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS` above this starts with a warning ([`Config::warnings`]).
const MAX_ATTEMPTS_WITHOUT_WARNING: u32 = 10;

/// JWT signing algorithm (`OTP_AUTH_JWT_ALGORITHM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[non_exhaustive]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256.
    #[default]
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSA PKCS#1 v1.5 with SHA-256 (needs `OTP_AUTH_JWT_PRIVATE_KEY_FILE`).
    RS256,
    /// ECDSA P-256 with SHA-256 (needs `OTP_AUTH_JWT_PRIVATE_KEY_FILE`).
    ES256,
    /// Ed25519 (needs `OTP_AUTH_JWT_PRIVATE_KEY_FILE`).
    EdDSA,
}

impl JwtAlgorithm {
    /// `true` for the HMAC algorithms, which take `OTP_AUTH_JWT_SECRET`.
    pub fn is_hmac(self) -> bool {
        matches!(
            self,
            JwtAlgorithm::HS256 | JwtAlgorithm::HS384 | JwtAlgorithm::HS512
        )
    }
}

/// `Deserialize` for a setting that is one word of a fixed list (any case, surrounding
/// spaces ignored); the error names every word.
macro_rules! word_enum {
    ($ty:ident { $($word:literal => $variant:ident),+ $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                match s.trim().to_ascii_lowercase().as_str() {
                    $($word => Ok($ty::$variant),)+
                    other => Err(serde::de::Error::custom(format!(
                        "expected {}, got {other:?}",
                        one_of(&[$($word),+])
                    ))),
                }
            }
        }
    };
}

/// `a, b or c`.
fn one_of(words: &[&str]) -> String {
    match words.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The cookie's `SameSite` attribute (`OTP_AUTH_COOKIE_SAMESITE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// `SameSite=Lax`: sent on top-level navigations, not on cross-site subrequests.
    #[default]
    Lax,
    /// `SameSite=Strict`: never sent cross-site.
    Strict,
    /// `SameSite=None`: sent cross-site; requires `Secure`.
    None,
}

impl SameSite {
    /// The attribute value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

word_enum!(SameSite { "lax" => Lax, "strict" => Strict, "none" => None });

/// Where the refresh token travels (`OTP_AUTH_REFRESH_TOKEN_TRANSPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RefreshTransport {
    /// In the HttpOnly cookie only (browsers): the JSON answers never show it.
    #[default]
    Cookie,
    /// In the JSON only (native and mobile apps): answers carry `refresh_token` and
    /// `refresh_expires_in` and set no cookie; `/refresh` and `/logout` read
    /// `{"refresh_token": "…"}` from the body.
    Body,
    /// Both: the cookie is set and the JSON carries the token; a request presents one or
    /// the other (both at once is a 400).
    Both,
}

impl RefreshTransport {
    /// Whether the refresh token is set in (and read from) the cookie.
    pub fn uses_cookie(self) -> bool {
        matches!(self, RefreshTransport::Cookie | RefreshTransport::Both)
    }

    /// Whether the refresh token is given in (and read from) the JSON bodies.
    pub fn uses_body(self) -> bool {
        matches!(self, RefreshTransport::Body | RefreshTransport::Both)
    }

    /// The setting's value: `cookie`, `body` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshTransport::Cookie => "cookie",
            RefreshTransport::Body => "body",
            RefreshTransport::Both => "both",
        }
    }
}

word_enum!(RefreshTransport { "cookie" => Cookie, "body" => Body, "both" => Both });

/// Whether a code works without the login flow it was sent for
/// (`OTP_AUTH_FLOW_BINDING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowBinding {
    /// A code works with its flow (the cookie, or `flow_id` in the body), and without one
    /// (curl, clients that ignore flows) against the address's most recent flow, under an
    /// address-wide failure budget that only unbound verification uses up.
    #[default]
    Optional,
    /// A code works only with its flow: an unbound verification is a 400 that compares
    /// and counts nothing, and the sign-in link's page offers nothing outside the browser
    /// that asked for the code.
    Required,
}

impl FlowBinding {
    /// The setting's value: `optional` or `required`.
    pub fn as_str(self) -> &'static str {
        match self {
            FlowBinding::Optional => "optional",
            FlowBinding::Required => "required",
        }
    }
}

word_enum!(FlowBinding { "optional" => Optional, "required" => Required });

/// The header the trusted proxies write the client's address in
/// (`OTP_AUTH_FORWARDED_HEADER`). Only that one is read: a client cannot slip an address
/// in through the header the proxy does not manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx, HAProxy, most load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:4711"` (Envoy,
    /// some CDNs). An element whose `for` is `unknown`, obfuscated or absent ends the
    /// chain like an address that does not parse.
    Forwarded,
}

word_enum!(ForwardedHeader { "x-forwarded-for" => XForwardedFor, "forwarded" => Forwarded });

/// How the SMTP connection is secured (`OTP_AUTH_SMTP_TLS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text; only sensible for a server on loopback.
    None,
    /// Plain connection upgraded with STARTTLS (required, not opportunistic).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

word_enum!(SmtpTls { "none" => None, "starttls" => Starttls, "tls" => Tls });

/// Declares one group of settings: the public struct with its defaults, its flat
/// environment names, and how it is read. Each line reads
/// `VARIABLE => field: Type = default,`; `VARIABLE` is the variable's name after
/// `OTP_AUTH_` and, lowercased, the key of the TOML file: the one place it is written.
macro_rules! settings {
    (
        $(#[$meta:meta])*
        pub struct $name:ident, names $vars:ident {
            $(
                $(#[doc = $doc:literal])*
                $(#[serde($($serde:tt)*)])?
                $var:ident => $field:ident: $ty:ty = $default:expr,
            )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name {
            $(
                $(#[doc = $doc])*
                #[doc = ""]
                #[doc = concat!("Variable `OTP_AUTH_", stringify!($var), "`.")]
                pub $field: $ty,
            )*
        }

        #[doc = concat!("The environment variable of each field of [`", stringify!($name), "`].")]
        #[derive(Debug, Clone, Copy)]
        pub struct $vars {
            $(
                #[doc = concat!("`OTP_AUTH_", stringify!($var), "`.")]
                pub $field: &'static str,
            )*
        }

        impl $name {
            /// The environment variable of each field, for messages that name the one to fix.
            pub const VARS: $vars = $vars {
                $($field: concat!("OTP_AUTH_", stringify!($var)),)*
            };

            /// Every variable of the group, in declaration order.
            const NAMES: &'static [&'static str] = &[$(concat!("OTP_AUTH_", stringify!($var)),)*];
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $($field: $default,)* }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                // The flat keys, as `Config::from_figment` hands them over (in capitals).
                #[allow(non_snake_case)]
                #[derive(Deserialize)]
                #[serde(default)]
                struct Flat {
                    $(
                        $(#[serde($($serde)*)])?
                        $var: $ty,
                    )*
                }
                impl Default for Flat {
                    fn default() -> Self {
                        let d = $name::default();
                        Flat { $($var: d.$field,)* }
                    }
                }
                let flat = Flat::deserialize(d)?;
                Ok($name { $($field: flat.$var,)* })
            }
        }
    };
}

settings! {
    /// The one-time codes (`OTP_AUTH_OTP_*`, the code key and the development mode).
    #[derive(Debug)]
    pub struct CodeSettings, names CodeVars {
        /// Code lifetime in seconds (1 to 600).
        OTP_EXPIRY_SECONDS => expiry_seconds: u64 = 300,
        /// Digits per code (6 to 10).
        OTP_LENGTH => length: u8 = 6,
        /// Prefix of every store key of a login.
        OTP_KEY_PREFIX => key_prefix: String = "otp_".to_owned(),
        /// Key of the code and address HMACs (at least 32 bytes); derived from the JWT
        /// secret when unset, required with an asymmetric JWT algorithm.
        CODE_SECRET => secret: Option<SecretString> = None,
        /// Development mode: the all-zeros code is accepted and no mail is sent.
        DISABLE_LOCAL_AUTH => disable_local_auth: bool = false,
        /// Glob patterns (`*`, `?`) narrowing the development mode's code to some
        /// addresses; empty: all.
        #[serde(deserialize_with = "string_list")]
        MAGIC_OTP_EMAILS => magic_emails: Vec<String> = Vec::new(),
    }
}

impl CodeSettings {
    fn check(&self, p: &mut Vec<String>) {
        let v = Self::VARS;
        in_range(p, v.expiry_seconds, self.expiry_seconds, 1, 600);
        in_range(p, v.length, self.length, 6, 10);
        key_prefix(p, v.key_prefix, &self.key_prefix);
        if let Some(s) = &self.secret
            && let Some(why) = weak_secret(s.expose_secret())
        {
            p.push(format!("{} {why}", v.secret));
        }
        for g in &self.magic_emails {
            if g.trim().is_empty() || g.chars().any(char::is_control) {
                p.push(format!("{}: {g:?} is not a valid pattern", v.magic_emails));
            }
        }
        if !self.magic_emails.is_empty() && !self.disable_local_auth {
            p.push(format!(
                "{} is set but {} is not: the patterns would have no effect",
                v.magic_emails, v.disable_local_auth
            ));
        }
    }
}

settings! {
    /// Rate limits and the lockout of wrong codes.
    #[derive(Debug)]
    pub struct LimitSettings, names LimitVars {
        /// Code requests per address per minute.
        OTP_RATE_LIMIT_PER_MINUTE => per_minute: u32 = 5,
        /// Code requests per address per hour (mail bombing).
        OTP_RATE_LIMIT_PER_HOUR => per_hour: u32 = 20,
        /// Code requests per address per day (mail bombing).
        OTP_RATE_LIMIT_PER_DAY => per_day: u32 = 50,
        /// Code requests per client IP per minute.
        OTP_RATE_LIMIT_PER_IP_PER_MINUTE => per_ip_per_minute: u32 = 30,
        /// Least time between two codes to one address, in seconds (0: none; at most 3600).
        OTP_RESEND_COOLDOWN_SECONDS => resend_cooldown_seconds: u64 = 0,
        /// Failed verifications per address per lockout window (1 to 100).
        OTP_MAX_VERIFY_ATTEMPTS => max_verify_attempts: u32 = 5,
        /// The lockout window in seconds (1 to 86400).
        OTP_LOCKOUT_SECONDS => lockout_seconds: u64 = 900,
        /// Wrong codes per client IP per hour, across all addresses (guessing spread over
        /// many pending codes).
        VERIFY_FAILURES_PER_IP_PER_HOUR => verify_failures_per_ip_per_hour: u32 = 100,
    }
}

impl LimitSettings {
    fn check(&self, p: &mut Vec<String>) {
        let v = Self::VARS;
        at_least_one(p, v.per_minute, self.per_minute);
        at_least_one(p, v.per_hour, self.per_hour);
        at_least_one(p, v.per_day, self.per_day);
        at_least_one(p, v.per_ip_per_minute, self.per_ip_per_minute);
        at_most(
            p,
            v.resend_cooldown_seconds,
            self.resend_cooldown_seconds,
            3600,
        );
        in_range(p, v.max_verify_attempts, self.max_verify_attempts, 1, 100);
        in_range(p, v.lockout_seconds, self.lockout_seconds, 1, 86_400);
        at_least_one(
            p,
            v.verify_failures_per_ip_per_hour,
            self.verify_failures_per_ip_per_hour,
        );
    }
}

settings! {
    /// The access and refresh tokens: algorithm, keys, claims and lifetimes.
    #[derive(Debug)]
    pub struct TokenSettings, names TokenVars {
        /// HMAC key of the tokens (at least 32 bytes), for the HMAC algorithms.
        JWT_SECRET => secret: Option<SecretString> = None,
        /// Signing algorithm.
        JWT_ALGORITHM => algorithm: JwtAlgorithm = JwtAlgorithm::HS256,
        /// PEM file of the signing key for `RS256`, `ES256` or `EdDSA` (PKCS#8; also PKCS#1
        /// for RSA and SEC1 for P-256). Required for those algorithms, refused for the
        /// HMAC ones.
        JWT_PRIVATE_KEY_FILE => private_key_file: Option<String> = None,
        /// PEM files of earlier public keys, still accepted for verification (and
        /// published in the JWKS) during a key rotation.
        #[serde(deserialize_with = "string_list")]
        JWT_PREVIOUS_PUBLIC_KEY_FILES => previous_public_key_files: Vec<String> = Vec::new(),
        /// `iss` of issued tokens, checked on verification when set.
        JWT_ISSUER => issuer: Option<String> = None,
        /// `aud` of issued tokens, checked on verification when set.
        JWT_AUDIENCE => audience: Option<String> = None,
        /// Clock leeway in seconds when checking `exp` (at most 300).
        JWT_LEEWAY_SECONDS => leeway_seconds: u64 = 0,
        /// Access token lifetime in minutes (1 to 10080).
        ACCESS_TOKEN_EXPIRE_MINUTES => access_expire_minutes: u64 = 60,
        /// Refresh token lifetime in days (1 to 365).
        REFRESH_TOKEN_EXPIRE_DAYS => refresh_expire_days: u64 = 7,
    }
}

impl TokenSettings {
    fn check(&self, p: &mut Vec<String>) {
        let v = Self::VARS;
        at_most(p, v.leeway_seconds, self.leeway_seconds, 300);
        in_range(
            p,
            v.access_expire_minutes,
            self.access_expire_minutes,
            1,
            60 * 24 * 7,
        );
        in_range(p, v.refresh_expire_days, self.refresh_expire_days, 1, 365);
        let alg = self.algorithm;
        if alg.is_hmac() {
            match &self.secret {
                None => p.push(format!(
                    "{} is not set: set a random key of at least 32 bytes (for example \
                     `openssl rand -hex 32`)",
                    v.secret
                )),
                Some(s) => {
                    if let Some(why) = weak_secret(s.expose_secret()) {
                        p.push(format!("{} {why}", v.secret));
                    }
                }
            }
            if self.private_key_file.is_some() {
                p.push(format!(
                    "{} is set but {} is {alg:?}, which signs with {}; choose RS256, ES256 or \
                     EdDSA",
                    v.private_key_file, v.algorithm, v.secret
                ));
            }
            if !self.previous_public_key_files.is_empty() {
                p.push(format!(
                    "{} needs an asymmetric {} (RS256, ES256 or EdDSA)",
                    v.previous_public_key_files, v.algorithm
                ));
            }
        } else {
            if self.private_key_file.as_deref().is_none_or(str::is_empty) {
                p.push(format!(
                    "{} is required with {} {alg:?} (a PEM file; for example `openssl genpkey \
                     -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out jwt.pem`)",
                    v.private_key_file, v.algorithm
                ));
            }
            if self.secret.is_some() {
                p.push(format!(
                    "{} is set, but {} {alg:?} signs with {} and would not use it: unset it \
                     (the code HMAC key is {})",
                    v.secret,
                    v.algorithm,
                    v.private_key_file,
                    CodeSettings::VARS.secret
                ));
            }
        }
    }
}

settings! {
    /// Sessions: the refresh token's lineage, its limits and its store keys.
    #[derive(Debug)]
    pub struct SessionSettings, names SessionVars {
        /// Seconds after a rotation during which the immediate parent of the current
        /// refresh token still refreshes, on the same lineage (racing tabs, retries after a
        /// timeout); 0 is strict (at most 60).
        REFRESH_REUSE_INTERVAL_SECONDS => reuse_interval_seconds: u64 = 10,
        /// Live sessions per user (1 to 1000); opening one more ends the least recently
        /// refreshed.
        MAX_SESSIONS_PER_USER => max_per_user: u32 = 20,
        /// Absolute session lifetime from login in days, which refreshing never extends
        /// (0: no limit beyond the refresh token's own; at most 3650).
        SESSION_MAX_DAYS => max_days: u64 = 0,
        /// Where the refresh token travels: `cookie` (the HttpOnly cookie, for browsers),
        /// `body` (the JSON answers and request bodies, for native apps) or `both`.
        REFRESH_TOKEN_TRANSPORT => refresh_transport: RefreshTransport = RefreshTransport::Cookie,
        /// How recent the last authentication must be, in seconds, to start an email change
        /// at `/change-email` (1 to 86400); an older one gets RFC 9470's challenge.
        EMAIL_CHANGE_MAX_AGE_SECONDS => email_change_max_age_seconds: u64 = 600,
        /// Prefix of revocation and session keys.
        BLACKLIST_KEY_PREFIX => key_prefix: String = "blacklist_".to_owned(),
    }
}

impl SessionSettings {
    /// The absolute end of a session whose clock starts at `now` (seconds since the
    /// epoch), when `max_days` sets one.
    pub(crate) fn end_from(&self, now: u64) -> Option<u64> {
        (self.max_days > 0).then(|| now + self.max_days * 86_400)
    }

    fn check(&self, p: &mut Vec<String>) {
        let v = Self::VARS;
        at_most(p, v.reuse_interval_seconds, self.reuse_interval_seconds, 60);
        in_range(p, v.max_per_user, self.max_per_user, 1, 1000);
        at_most(p, v.max_days, self.max_days, 3650);
        in_range(
            p,
            v.email_change_max_age_seconds,
            self.email_change_max_age_seconds,
            1,
            86_400,
        );
        key_prefix(p, v.key_prefix, &self.key_prefix);
    }
}

settings! {
    /// Login flows and known devices: a code belongs to the browser that asked for it.
    #[derive(Debug)]
    pub struct FlowSettings, names FlowVars {
        /// `optional` (a code works with or without its flow; unbound guesses are limited
        /// per address) or `required` (only with its flow).
        FLOW_BINDING => binding: FlowBinding = FlowBinding::Optional,
        /// The flow cookie's name (`Path` the login routes' mount; `Secure` and `SameSite`
        /// as the refresh cookie's).
        FLOW_COOKIE_NAME => cookie_name: String = "otp_flow".to_owned(),
        /// Pending flows per address (1 to 20); a new flow of an unknown device ends the
        /// least recently issued flow of an unknown device.
        MAX_FLOWS_PER_ADDRESS => max_per_address: u32 = 5,
        /// Lifetime in days of the known-device cookie a login sets (0: no known devices;
        /// at most 400).
        KNOWN_DEVICE_DAYS => known_device_days: u64 = 90,
        /// The known-device cookie's name.
        DEVICE_COOKIE_NAME => device_cookie_name: String = "otp_device".to_owned(),
    }
}

impl FlowSettings {
    fn check(&self, p: &mut Vec<String>, refresh_cookie: &str) {
        let v = Self::VARS;
        in_range(p, v.max_per_address, self.max_per_address, 1, 20);
        at_most(p, v.known_device_days, self.known_device_days, 400);
        let names = [
            (v.cookie_name, &self.cookie_name),
            (v.device_cookie_name, &self.device_cookie_name),
        ];
        for (var, name) in names {
            if name.is_empty() || !name.bytes().all(is_cookie_name_byte) {
                p.push(format!(
                    "{var} must be a cookie token (letters, digits, -_.), got {name:?}"
                ));
            }
        }
        if self.cookie_name == self.device_cookie_name
            || self.cookie_name == refresh_cookie
            || self.device_cookie_name == refresh_cookie
        {
            p.push(format!(
                "{}, {} and {} must differ",
                v.cookie_name,
                v.device_cookie_name,
                CookieSettings::VARS.name
            ));
        }
    }
}

settings! {
    /// The refresh cookie's attributes.
    #[derive(Debug)]
    pub struct CookieSettings, names CookieVars {
        /// `Secure` attribute.
        COOKIE_SECURE => secure: bool = true,
        /// Name of the cookie.
        COOKIE_NAME => name: String = "refresh_token".to_owned(),
        /// `SameSite` attribute.
        COOKIE_SAMESITE => samesite: SameSite = SameSite::Lax,
        /// `Path` attribute.
        COOKIE_PATH => path: String = "/".to_owned(),
    }
}

impl CookieSettings {
    fn check(&self, p: &mut Vec<String>) {
        let v = Self::VARS;
        if self.name.is_empty() || !self.name.bytes().all(is_cookie_name_byte) {
            p.push(format!(
                "{} must be a cookie token (letters, digits, -_.), got {:?}",
                v.name, self.name
            ));
        }
        if !self.path.starts_with('/')
            || self
                .path
                .bytes()
                .any(|b| b.is_ascii_control() || b == b';' || b == b' ')
        {
            p.push(format!(
                "{} must start with / and hold no ; or spaces, got {:?}",
                v.path, self.path
            ));
        }
        if self.samesite == SameSite::None && !self.secure {
            p.push(format!(
                "{}=none requires {}=true (browsers drop such cookies)",
                v.samesite, v.secure
            ));
        }
    }
}

settings! {
    /// The login mail.
    #[derive(Debug)]
    pub struct MailSettings, names MailVars {
        /// Sender address.
        MAIL_FROM => from: String = "no-reply@localhost".to_owned(),
        /// Sender display name, also the application name in the mail.
        MAIL_FROM_NAME => from_name: String = "OTP Auth".to_owned(),
        /// Language of the mail when the request's `Accept-Language` names none of the
        /// configured template sets.
        MAIL_DEFAULT_LANGUAGE => default_language: String = "en".to_owned(),
    }
}

impl MailSettings {
    fn check(&self, p: &mut Vec<String>) {
        let v = Self::VARS;
        if let Err(e) = crate::email::Email::parse(&self.from)
            && !is_local_sender(&self.from)
        {
            p.push(format!(
                "{} is not a valid address ({e}): {:?}",
                v.from, self.from
            ));
        }
        if self.from_name.chars().any(char::is_control) || self.from_name.len() > 100 {
            p.push(format!(
                "{} must be at most 100 bytes without control characters",
                v.from_name
            ));
        }
        let lang = &self.default_language;
        if lang.is_empty()
            || lang.len() > 35
            || !lang.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            p.push(format!(
                "{} must be a language tag such as en or de-CH, got {lang:?}",
                v.default_language
            ));
        }
    }
}

settings! {
    /// The HTTP side: proxies, origins, body size and the public address.
    #[derive(Debug)]
    pub struct HttpSettings, names HttpVars {
        /// Proxies (IPs or CIDR networks) whose `X-Forwarded-For` (or `Forwarded`) is believed.
        #[serde(deserialize_with = "string_list")]
        TRUSTED_PROXIES => trusted_proxies: Vec<String> = Vec::new(),
        /// The header those proxies write the client's address in: `x-forwarded-for` or
        /// `forwarded` (RFC 7239).
        FORWARDED_HEADER => forwarded_header: ForwardedHeader = ForwardedHeader::XForwardedFor,
        /// Origins allowed to call the endpoints; when set, any other `Origin` gets 403.
        #[serde(deserialize_with = "string_list")]
        ALLOWED_ORIGINS => allowed_origins: Vec<String> = Vec::new(),
        /// Largest accepted request body in bytes (256 to 1048576).
        BODY_LIMIT_BYTES => body_limit_bytes: usize = 16 * 1024,
        /// The public URL the login routes are mounted at (for example
        /// `https://app.example.com/auth`). When set, the login mail also carries a
        /// sign-in link to `<public_url>/magic?token=…`.
        PUBLIC_URL => public_url: Option<String> = None,
    }
}

impl HttpSettings {
    /// The trusted proxies, parsed. Plain addresses become single-host networks.
    pub fn trusted_proxy_networks(&self) -> Result<Vec<IpNet>, ConfigError> {
        let mut out = Vec::with_capacity(self.trusted_proxies.len());
        let mut problems = Vec::new();
        for p in &self.trusted_proxies {
            match p
                .parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
            {
                Ok(net) => out.push(net),
                Err(_) => problems.push(format!(
                    "{}: {p:?} is not an IP address or CIDR network",
                    Self::VARS.trusted_proxies
                )),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ConfigError { problems })
        }
    }

    fn check(&self, p: &mut Vec<String>) {
        let v = Self::VARS;
        if let Err(e) = self.trusted_proxy_networks() {
            p.extend(e.problems);
        }
        for o in &self.allowed_origins {
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                p.push(format!(
                    "{}: {o:?} is not an origin (scheme://host[:port], no trailing slash)",
                    v.allowed_origins
                ));
            }
        }
        in_range(
            p,
            v.body_limit_bytes,
            self.body_limit_bytes,
            256,
            1024 * 1024,
        );
        if let Some(u) = &self.public_url
            && (!(u.starts_with("http://") || u.starts_with("https://"))
                || u.ends_with('/')
                || u.contains(['?', '#'])
                || u.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            p.push(format!(
                "{} must be an http(s) URL without a trailing slash, query or fragment (where \
                 the login routes are mounted, e.g. https://app.example.com/auth), got {u:?}",
                v.public_url
            ));
        }
    }
}

settings! {
    /// The Redis store, read by `otp-redis` and `otp-fred`.
    pub struct RedisSettings, names RedisVars {
        /// Store address: `redis://`, `rediss://` or `redis-cluster://`.
        REDIS_URL => url: String = "redis://localhost:6379/0".to_owned(),
        /// Timeout of connecting to the store and of each store command, in milliseconds
        /// (10 to 60000).
        REDIS_TIMEOUT_MS => timeout_ms: u64 = 1000,
        /// Replicas that must acknowledge a write that must not be lost (a consumed code, a
        /// lockout, a rotation, a revocation) before it is reported done (`WAIT`, in the
        /// same round trip); fewer within half the store timeout answer 503. 0: off (at
        /// most 16).
        REDIS_MIN_REPLICAS_ACK => min_replicas_ack: u32 = 0,
        /// Refuse to start when Redis may evict keys (`maxmemory` set and a
        /// `maxmemory-policy` other than `noeviction`); otherwise that is logged as an
        /// error.
        REDIS_REQUIRE_NOEVICTION => require_noeviction: bool = false,
    }
}

// The address's password is never shown.
impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("timeout_ms", &self.timeout_ms)
            .field("min_replicas_ack", &self.min_replicas_ack)
            .field("require_noeviction", &self.require_noeviction)
            .finish()
    }
}

impl RedisSettings {
    fn check(&self, p: &mut Vec<String>) {
        let v = Self::VARS;
        in_range(p, v.timeout_ms, self.timeout_ms, 10, 60_000);
        at_most(p, v.min_replicas_ack, self.min_replicas_ack, 16);
    }
}

settings! {
    /// The SMTP server, read by `otp-smtp`.
    #[derive(Debug)]
    pub struct SmtpSettings, names SmtpVars {
        /// Server host.
        SMTP_SERVER => server: String = "127.0.0.1".to_owned(),
        /// Server port.
        SMTP_PORT => port: u16 = 1025,
        /// User name; no AUTH when unset.
        SMTP_USERNAME => username: Option<String> = None,
        /// Password; no AUTH when unset.
        SMTP_PASSWORD => password: Option<SecretString> = None,
        /// Transport security; see [`SmtpSettings::tls_mode`] for the default.
        SMTP_TLS => tls: Option<SmtpTls> = None,
        /// Timeout of each SMTP step (connect, each command), in milliseconds (100 to
        /// 120000).
        SMTP_TIMEOUT_MS => timeout_ms: u64 = 10_000,
        /// Most connections kept open and reused (1 to 64).
        SMTP_POOL_SIZE => pool_size: u32 = 4,
    }
}

impl SmtpSettings {
    /// The TLS mode in effect: the configured one, else `none` for a loopback server and
    /// `starttls` for any other.
    pub fn tls_mode(&self) -> SmtpTls {
        self.tls.unwrap_or_else(|| {
            let host = self.server.trim_start_matches('[').trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                SmtpTls::None
            } else {
                SmtpTls::Starttls
            }
        })
    }

    fn check(&self, p: &mut Vec<String>) {
        let v = Self::VARS;
        in_range(p, v.timeout_ms, self.timeout_ms, 100, 120_000);
        in_range(p, v.pool_size, self.pool_size, 1, 64);
    }
}

/// Every setting of the library, in groups. Each field is read from one flat
/// `OTP_AUTH_*` variable (its documentation names it), or from the same name lowercased
/// in the TOML file that `OTP_AUTH_CONFIG_FILE` names.
///
/// ```no_run
/// let config = otp_core::Config::load()?;
/// config.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// In code, start from the defaults and set what differs:
///
/// ```
/// let mut config = otp_core::Config::default();
/// config.tokens.secret = Some("3f9a1c77e0b24d5e8a6b9c0d1e2f3a4b5c6d7e8f".into());
/// config.limits.per_minute = 3;
/// config.validate()?;
/// # Ok::<(), otp_core::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The one-time codes.
    pub codes: CodeSettings,
    /// Rate limits and the lockout.
    pub limits: LimitSettings,
    /// The access and refresh tokens.
    pub tokens: TokenSettings,
    /// Sessions.
    pub sessions: SessionSettings,
    /// Login flows and known devices.
    pub flows: FlowSettings,
    /// The refresh cookie.
    pub cookie: CookieSettings,
    /// The login mail.
    pub mail: MailSettings,
    /// The HTTP side.
    pub http: HttpSettings,
    /// The Redis store (read by the Redis backends only).
    pub redis: RedisSettings,
    /// The SMTP server (read by `otp-smtp` only).
    pub smtp: SmtpSettings,
}

impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Hides the password of a `scheme://user:password@host` address.
pub(crate) fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.rsplit_once('@')
    {
        let user = creds.split_once(':').map_or(creds, |(u, _)| u);
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

/// A configuration that cannot be used: every problem found, each naming its variable.
///
/// `Debug` prints what `Display` does, so that a `main` returning `Result<(), Box<dyn
/// Error>>` (which prints its error with `Debug`) shows the sentences, not the struct.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: {}", .problems.join("; "))]
pub struct ConfigError {
    /// One sentence per problem, starting with the variable's name.
    pub problems: Vec<String>,
}

impl ConfigError {
    /// The error of one problem (for mailers and stores that read the configuration too).
    pub fn new(problem: impl Into<String>) -> ConfigError {
        ConfigError::one(problem.into())
    }

    /// The error of one problem.
    pub(crate) fn one(problem: String) -> ConfigError {
        ConfigError {
            problems: vec![problem],
        }
    }
}

/// The file named by `OTP_AUTH_CONFIG_FILE`, when set and not empty.
fn config_file() -> Option<String> {
    std::env::var("OTP_AUTH_CONFIG_FILE")
        .ok()
        .filter(|f| !f.is_empty())
}

impl Config {
    /// The figment the configuration is read from: defaults, then the TOML file named by
    /// `OTP_AUTH_CONFIG_FILE` when it is set (the `toml` feature; no file is read
    /// otherwise), then `OTP_AUTH_*` variables. Add providers to it to read settings from
    /// elsewhere; keys are the variables' names after `OTP_AUTH_`, in any case.
    pub fn figment() -> Figment {
        let figment = Figment::new();
        #[cfg(feature = "toml")]
        let figment = match config_file() {
            Some(file) => figment.merge(Toml::file_exact(file)),
            None => figment,
        };
        // Variables this struct does not know (an application's own `OTP_AUTH_*`) are
        // left alone.
        figment.merge(RawEnv(Env::prefixed(ENV_PREFIX).ignore(&["config_file"])))
    }

    /// Reads the configuration from [`Config::figment`]. Call [`Config::validate`] next
    /// (the engine does so too).
    ///
    /// The library owns the `OTP_AUTH_` prefix: every other `OTP_AUTH_*` variable of the
    /// environment is warned about as a likely typo, with the closest setting's name
    /// (`OTP_AUTH_REDIS_ULR`: did you mean `OTP_AUTH_REDIS_URL`?), and so is a setting's
    /// name set without the prefix (`REDIS_URL`) while the prefixed one is not. An
    /// application that reads `OTP_AUTH_*` variables of its own names them with
    /// [`Config::load_for`].
    pub fn load() -> Result<Config, ConfigError> {
        Self::load_for(&[])
    }

    /// [`Config::load`], with `app_variables`, the application's own `OTP_AUTH_*`
    /// variables, not warned about.
    pub fn load_for(app_variables: &[&str]) -> Result<Config, ConfigError> {
        for v in unknown_variables(std::env::vars().map(|(k, _)| k), app_variables) {
            tracing::warn!("{v}; it is ignored");
        }
        Self::from_figment(&Self::figment())
    }

    /// Reads the configuration from `figment`, with defaults for what it does not set.
    /// Every value of the wrong type is reported, each naming its variable.
    pub fn from_figment(figment: &Figment) -> Result<Config, ConfigError> {
        if let Some(path) = config_file() {
            if cfg!(not(feature = "toml")) {
                return Err(ConfigError::one(format!(
                    "OTP_AUTH_CONFIG_FILE names {path:?}, but otp-core is built without its \
                     `toml` feature"
                )));
            }
            if !Path::new(&path).exists() {
                return Err(ConfigError::one(format!(
                    "OTP_AUTH_CONFIG_FILE names {path:?}, which does not exist"
                )));
            }
        }
        let flat = Figment::from(Capitals(figment)).select(figment.profile().clone());
        let mut problems = Vec::new();
        let config = Config {
            codes: group(&flat, &mut problems),
            limits: group(&flat, &mut problems),
            tokens: group(&flat, &mut problems),
            sessions: group(&flat, &mut problems),
            flows: group(&flat, &mut problems),
            cookie: group(&flat, &mut problems),
            mail: group(&flat, &mut problems),
            http: group(&flat, &mut problems),
            redis: group(&flat, &mut problems),
            smtp: group(&flat, &mut problems),
        };
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Every variable the configuration reads (`OTP_AUTH_OTP_LENGTH`, …), group by group;
    /// `OTP_AUTH_CONFIG_FILE` aside.
    pub fn variables() -> impl Iterator<Item = &'static str> {
        [
            CodeSettings::NAMES,
            LimitSettings::NAMES,
            TokenSettings::NAMES,
            SessionSettings::NAMES,
            FlowSettings::NAMES,
            CookieSettings::NAMES,
            MailSettings::NAMES,
            HttpSettings::NAMES,
            RedisSettings::NAMES,
            SmtpSettings::NAMES,
        ]
        .into_iter()
        .flatten()
        .copied()
    }

    /// Sets a random JWT secret when none is configured, with a warning: tokens then die
    /// with the process. For development only; the example apps use it for their embedded
    /// default.
    pub fn with_ephemeral_jwt_secret(mut self) -> Config {
        if self.tokens.secret.is_none() && self.tokens.algorithm.is_hmac() {
            let bytes: [u8; 32] = rand::rng().random();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            tracing::warn!(
                "{var} is not set: using a random key for this process only; tokens will not \
                 survive a restart. Set {var} in production.",
                var = TokenSettings::VARS.secret
            );
            self.tokens.secret = Some(SecretString::from(hex));
        }
        self
    }

    /// The settings that start but put users at risk, one sentence each naming its
    /// variable: trusted proxies that cover (nearly) every address, an insecure refresh
    /// cookie next to an `https` public URL, far more verification attempts than the
    /// default. The engine logs each as a warning when it is built.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let h = HttpSettings::VARS;
        if let Ok(nets) = self.http.trusted_proxy_networks() {
            for net in nets {
                let broad = match net {
                    IpNet::V4(n) => n.prefix_len() < 8,
                    // fc00::/7 (unique local) is a private range like 10.0.0.0/8.
                    IpNet::V6(n) => n.prefix_len() < 7,
                };
                if broad {
                    w.push(format!(
                        "{}: {net} covers a large part of the internet: a client in it can \
                         write its own X-Forwarded-For and escape the per-IP limits. List \
                         only your proxies' addresses.",
                        h.trusted_proxies
                    ));
                }
            }
        }
        if !self.cookie.secure
            && self
                .http
                .public_url
                .as_deref()
                .is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("https://"))
        {
            w.push(format!(
                "{} is false while {} is https: browsers get the refresh cookie without \
                 Secure, so it may travel over plain HTTP.",
                CookieSettings::VARS.secure,
                h.public_url
            ));
        }
        let attempts = self.limits.max_verify_attempts;
        if attempts > MAX_ATTEMPTS_WITHOUT_WARNING {
            w.push(format!(
                "{} is {attempts}, far above the default 5: each pending code may be guessed \
                 {attempts} times per lockout window.",
                LimitSettings::VARS.max_verify_attempts
            ));
        }
        w
    }

    /// Checks every bound and secret; the error lists every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        self.codes.check(&mut p);
        self.limits.check(&mut p);
        self.tokens.check(&mut p);
        self.sessions.check(&mut p);
        self.flows.check(&mut p, &self.cookie.name);
        self.cookie.check(&mut p);
        self.mail.check(&mut p);
        self.http.check(&mut p);
        self.redis.check(&mut p);
        self.smtp.check(&mut p);
        // With an HMAC algorithm and no JWT secret, the JWT secret's own line says what to
        // set: the code key derives from it, and a second line about the code key would
        // only mislead.
        let jwt_missing = self.tokens.algorithm.is_hmac() && self.tokens.secret.is_none();
        if let Err(e) = self.code_key()
            && !jwt_missing
        {
            p.extend(e.problems);
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p })
        }
    }

    /// The key of the code and address HMACs: the code secret, else one derived from the
    /// JWT secret. The one place that decides it, for [`Config::validate`] and the engine.
    pub(crate) fn code_key(&self) -> Result<Vec<u8>, ConfigError> {
        let (code, jwt) = (CodeSettings::VARS.secret, TokenSettings::VARS);
        match (&self.codes.secret, &self.tokens.secret) {
            (Some(s), _) => Ok(s.expose_secret().as_bytes().to_vec()),
            (None, _) if !self.tokens.algorithm.is_hmac() => Err(ConfigError::one(format!(
                "{code} is required with {} {:?} (the code HMAC key cannot come from a \
                 private key)",
                jwt.algorithm, self.tokens.algorithm
            ))),
            (None, Some(s)) => Ok(derive_code_secret(s.expose_secret().as_bytes())),
            (None, None) => Err(ConfigError::one(format!(
                "{code} is required when {} is not set",
                jwt.secret
            ))),
        }
    }
}

/// A variable of the environment that looks meant for the configuration but is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownVariable {
    /// An `OTP_AUTH_*` name that is no setting, with the closest setting's name when one
    /// is near (a typo).
    Unknown {
        /// The variable.
        name: String,
        /// The setting it likely means.
        closest: Option<&'static str>,
    },
    /// A setting's name without the prefix (`REDIS_URL`), the prefixed one unset.
    Unprefixed {
        /// The variable.
        name: String,
        /// The setting that is read instead.
        setting: &'static str,
    },
}

impl fmt::Display for UnknownVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnknownVariable::Unknown {
                name,
                closest: Some(c),
            } => write!(f, "{name} is not a setting: did you mean {c}?"),
            UnknownVariable::Unknown {
                name,
                closest: None,
            } => write!(f, "{name} is not a setting (see the settings table)"),
            UnknownVariable::Unprefixed { name, setting } => {
                write!(f, "{name} is set, but the setting is read from {setting}")
            }
        }
    }
}

/// The variables among `names` (an environment's) that look meant for the configuration
/// but are not read: unknown `OTP_AUTH_*` names other than `app_variables`, and settings'
/// names without the prefix whose prefixed variable is not among `names`.
pub fn unknown_variables(
    names: impl IntoIterator<Item = String>,
    app_variables: &[&str],
) -> Vec<UnknownVariable> {
    let names: Vec<String> = names.into_iter().collect();
    let known: Vec<&'static str> = Config::variables().collect();
    let is_known = |n: &str| known.contains(&n) || n == "OTP_AUTH_CONFIG_FILE";
    let mut out = Vec::new();
    for name in &names {
        if name.starts_with(ENV_PREFIX) {
            if !is_known(name) && !app_variables.contains(&name.as_str()) {
                // A setting the name abbreviates (`…_JWT_ALGO`), else one a few edits away.
                let closest = (known.iter().filter(|k| k.starts_with(name.as_str())))
                    .min_by_key(|k| k.len())
                    .or_else(|| {
                        (known.iter())
                            .map(|k| (edit_distance(name, k), k))
                            .filter(|(d, _)| *d <= 3)
                            .min()
                            .map(|(_, k)| k)
                    })
                    .copied();
                out.push(UnknownVariable::Unknown {
                    name: name.clone(),
                    closest,
                });
            }
        } else if let Some(setting) = known
            .iter()
            .find(|k| k.strip_prefix(ENV_PREFIX) == Some(name))
            && !names.iter().any(|n| n == setting)
        {
            out.push(UnknownVariable::Unprefixed {
                name: name.clone(),
                setting,
            });
        }
    }
    out.sort_by_key(ToString::to_string);
    out
}

/// The Levenshtein distance of two ASCII names.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Reads one group from the flat figment; a group that does not read adds its problems
/// and stands at its defaults, so every bad variable is reported at once.
fn group<T: DeserializeOwned + Default>(figment: &Figment, problems: &mut Vec<String>) -> T {
    figment.extract_lossy().unwrap_or_else(|e| {
        problems.extend(e.into_iter().map(|e| describe_figment_error(&e)));
        T::default()
    })
}

/// The figment's top-level keys in capitals, the names the groups read.
struct Capitals<'a>(&'a Figment);

impl Provider for Capitals<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named("OTP_AUTH_* settings")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(self
            .0
            .data()?
            .into_iter()
            .map(|(profile, dict)| {
                let dict = dict
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_uppercase(), v))
                    .collect();
                (profile, dict)
            })
            .collect())
    }
}

fn in_range<T: PartialOrd + fmt::Display>(p: &mut Vec<String>, var: &str, v: T, lo: T, hi: T) {
    if v < lo || v > hi {
        p.push(format!("{var} must be between {lo} and {hi}, got {v}"));
    }
}

fn at_most<T: PartialOrd + fmt::Display>(p: &mut Vec<String>, var: &str, v: T, hi: T) {
    if v > hi {
        p.push(format!("{var} must be at most {hi}, got {v}"));
    }
}

fn at_least_one(p: &mut Vec<String>, var: &str, v: u32) {
    if v == 0 {
        p.push(format!("{var} must be at least 1"));
    }
}

fn key_prefix(p: &mut Vec<String>, var: &str, prefix: &str) {
    if prefix.is_empty() || !is_key_prefix(prefix) {
        p.push(format!(
            "{var} must be non-empty printable ASCII without spaces or braces, got {prefix:?}"
        ));
    }
}

// `no-reply@localhost`, the default sender, has no dot in its domain: fine as a sender.
fn is_local_sender(addr: &str) -> bool {
    addr.rsplit_once('@').is_some_and(|(l, d)| {
        !l.is_empty()
            && d.eq_ignore_ascii_case("localhost")
            && crate::email::Email::parse(&format!("{l}@localhost.localdomain")).is_ok()
    })
}

fn is_key_prefix(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
}

fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`|~".contains(&b)
}

/// Why a secret is too weak, or `None` when it is fine.
fn weak_secret(s: &str) -> Option<String> {
    if s.len() < MIN_SECRET_LEN {
        return Some(format!(
            "is {} bytes long; it must be at least {MIN_SECRET_LEN} random bytes",
            s.len()
        ));
    }
    let lower = s.to_ascii_lowercase();
    if PLACEHOLDER_SECRETS.iter().any(|ph| {
        lower.trim_matches(|c: char| !c.is_ascii_alphanumeric()) == *ph
            || lower.starts_with(ph) && lower.len() < 48
    }) {
        return Some("is a placeholder from documentation; generate a random key".to_owned());
    }
    let mut distinct = s.bytes().collect::<Vec<_>>();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 8 {
        return Some("has too little variety to be a random key".to_owned());
    }
    if let Some(pattern) = patterned(s.as_bytes()) {
        return Some(format!("is {pattern}, not a random key"));
    }
    None
}

/// Whether a secret is made by a rule rather than at random: a unit repeated
/// (`0123456789abcdef0123456789abcdef`) or a run of consecutive characters
/// (`abcdefghijklmnopqrstuvwxyz012345`, mostly).
fn patterned(b: &[u8]) -> Option<&'static str> {
    // The smallest period: the unit that, repeated, makes the whole.
    let period = (1..b.len()).find(|&p| b[p..].iter().zip(b).all(|(x, y)| x == y));
    if period.is_some_and(|p| p * 2 <= b.len()) {
        return Some("a short unit repeated");
    }
    let steps = b.windows(2).filter(|w| w[1].abs_diff(w[0]) == 1).count();
    if steps * 4 >= (b.len() - 1) * 3 {
        return Some("a run of consecutive characters");
    }
    None
}

/// `OTP_AUTH_*` variables as plain strings. figment's own `Env` parses values, which
/// turns a secret like `0123…` into the number 123…; numbers and booleans are read from
/// the strings by `extract_lossy` instead.
struct RawEnv(Env);

impl Provider for RawEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("OTP_AUTH_* environment variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict: Dict = self
            .0
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), Value::from(v)))
            .collect();
        Ok(Profile::Default.collect(dict))
    }
}

fn describe_figment_error(e: &figment::Error) -> String {
    let var = e
        .path
        .first()
        .map(|f| format!("{ENV_PREFIX}{}", f.to_ascii_uppercase()))
        .unwrap_or_else(|| "configuration".to_owned());
    format!("{var}: {}", e.kind)
}

/// Accepts a list as a sequence (TOML) or as one comma-separated string (environment).
fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return its large error
mod tests {
    use super::*;
    use figment::Jail;

    const GOOD: &str = "3f9a1c77e0b24d5e8a6b9c0d1e2f3a4b5c6d7e8f90a1b2c3";

    /// The valid base case, changed by `f`.
    fn with(f: impl FnOnce(&mut Config)) -> Config {
        let mut c = valid();
        f(&mut c);
        c
    }

    fn valid() -> Config {
        let mut c = Config::default();
        c.tokens.secret = Some(GOOD.into());
        c
    }

    #[test]
    fn defaults_match_the_settings_table() {
        let c = Config::default();
        assert_eq!(c.redis.url, "redis://localhost:6379/0");
        assert_eq!(c.redis.timeout_ms, 1000);
        assert_eq!(c.redis.min_replicas_ack, 0);
        assert_eq!((c.smtp.server.as_str(), c.smtp.port), ("127.0.0.1", 1025));
        assert_eq!(c.smtp.tls_mode(), SmtpTls::None);
        assert_eq!((c.smtp.timeout_ms, c.smtp.pool_size), (10_000, 4));
        assert_eq!(c.mail.from, "no-reply@localhost");
        assert_eq!(c.mail.from_name, "OTP Auth");
        assert_eq!(c.codes.expiry_seconds, 300);
        assert_eq!(c.codes.length, 6);
        assert_eq!(c.codes.key_prefix, "otp_");
        assert_eq!(c.limits.per_minute, 5);
        assert_eq!(c.limits.per_ip_per_minute, 30);
        assert_eq!(c.limits.max_verify_attempts, 5);
        assert_eq!(c.limits.lockout_seconds, 900);
        assert_eq!((c.limits.per_hour, c.limits.per_day), (20, 50));
        assert_eq!(c.limits.resend_cooldown_seconds, 0);
        assert_eq!(c.limits.verify_failures_per_ip_per_hour, 100);
        assert_eq!(c.sessions.reuse_interval_seconds, 10);
        assert_eq!((c.sessions.max_per_user, c.sessions.max_days), (20, 0));
        assert_eq!(c.tokens.algorithm, JwtAlgorithm::HS256);
        assert_eq!(c.tokens.access_expire_minutes, 60);
        assert_eq!(c.tokens.refresh_expire_days, 7);
        assert_eq!(c.sessions.key_prefix, "blacklist_");
        assert!(c.cookie.secure);
        assert_eq!(c.cookie.name, "refresh_token");
        assert_eq!(c.cookie.samesite, SameSite::Lax);
        assert_eq!(c.cookie.path, "/");
        assert!(!c.codes.disable_local_auth);
        assert_eq!(c.tokens.leeway_seconds, 0);
        assert_eq!(c.http.body_limit_bytes, 16384);
        assert_eq!(c.tokens.private_key_file, None);
        assert!(c.tokens.previous_public_key_files.is_empty());
        assert_eq!(c.http.public_url, None);
        assert_eq!(c.mail.default_language, "en");
    }

    #[test]
    fn smtp_tls_default_depends_on_the_host() {
        let mut c = {
            let mut c = Config::default();
            c.smtp.server = "smtp.example.com".into();
            c
        };
        assert_eq!(c.smtp.tls_mode(), SmtpTls::Starttls);
        c.smtp.server = "localhost".into();
        assert_eq!(c.smtp.tls_mode(), SmtpTls::None);
        c.smtp.tls = Some(SmtpTls::Tls);
        assert_eq!(c.smtp.tls_mode(), SmtpTls::Tls);
    }

    #[test]
    fn reads_every_variable_from_the_environment() {
        Jail::expect_with(|jail| {
            jail.set_env(
                "OTP_AUTH_REDIS_URL",
                "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7000",
            );
            jail.set_env("OTP_AUTH_SMTP_SERVER", "smtp.example.com");
            jail.set_env("OTP_AUTH_SMTP_PORT", "587");
            jail.set_env("OTP_AUTH_SMTP_USERNAME", "mailer");
            jail.set_env("OTP_AUTH_SMTP_PASSWORD", "12345678");
            jail.set_env("OTP_AUTH_SMTP_TLS", "TLS");
            jail.set_env("OTP_AUTH_MAIL_FROM", "login@example.com");
            jail.set_env("OTP_AUTH_MAIL_FROM_NAME", "Example App");
            jail.set_env("OTP_AUTH_OTP_EXPIRY_SECONDS", "120");
            jail.set_env("OTP_AUTH_OTP_LENGTH", "8");
            jail.set_env("OTP_AUTH_OTP_KEY_PREFIX", "app1_otp_");
            jail.set_env("OTP_AUTH_OTP_RATE_LIMIT_PER_MINUTE", "3");
            jail.set_env("OTP_AUTH_OTP_RATE_LIMIT_PER_IP_PER_MINUTE", "10");
            jail.set_env("OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS", "4");
            jail.set_env("OTP_AUTH_OTP_LOCKOUT_SECONDS", "60");
            jail.set_env("OTP_AUTH_OTP_RATE_LIMIT_PER_HOUR", "11");
            jail.set_env("OTP_AUTH_OTP_RATE_LIMIT_PER_DAY", "22");
            jail.set_env("OTP_AUTH_OTP_RESEND_COOLDOWN_SECONDS", "30");
            jail.set_env("OTP_AUTH_VERIFY_FAILURES_PER_IP_PER_HOUR", "40");
            jail.set_env("OTP_AUTH_REFRESH_REUSE_INTERVAL_SECONDS", "5");
            jail.set_env("OTP_AUTH_MAX_SESSIONS_PER_USER", "3");
            jail.set_env("OTP_AUTH_SESSION_MAX_DAYS", "90");
            jail.set_env("OTP_AUTH_REDIS_MIN_REPLICAS_ACK", "1");
            // All digits with a leading zero: must stay the exact string.
            jail.set_env("OTP_AUTH_JWT_SECRET", "07394185260736918245093817462051837");
            jail.set_env("OTP_AUTH_CODE_SECRET", GOOD);
            jail.set_env("OTP_AUTH_JWT_ALGORITHM", "HS512");
            jail.set_env("OTP_AUTH_JWT_ISSUER", "https://auth.example.com");
            jail.set_env("OTP_AUTH_JWT_AUDIENCE", "example-api");
            jail.set_env("OTP_AUTH_ACCESS_TOKEN_EXPIRE_MINUTES", "15");
            jail.set_env("OTP_AUTH_REFRESH_TOKEN_EXPIRE_DAYS", "30");
            jail.set_env("OTP_AUTH_BLACKLIST_KEY_PREFIX", "app1_bl_");
            jail.set_env("OTP_AUTH_COOKIE_SECURE", "false");
            jail.set_env("OTP_AUTH_COOKIE_NAME", "rt");
            jail.set_env("OTP_AUTH_COOKIE_SAMESITE", "Strict");
            jail.set_env("OTP_AUTH_COOKIE_PATH", "/auth");
            jail.set_env("OTP_AUTH_DISABLE_LOCAL_AUTH", "true");
            jail.set_env(
                "OTP_AUTH_MAGIC_OTP_EMAILS",
                "*@test.example.com, qa+*@example.com",
            );
            jail.set_env("OTP_AUTH_TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.7");
            jail.set_env("OTP_AUTH_ALLOWED_ORIGINS", "https://app.example.com");
            jail.set_env("OTP_AUTH_STORE", "redis");
            jail.set_env("OTP_AUTH_PUBLIC_URL", "https://app.example.com/auth");
            jail.set_env("OTP_AUTH_MAIL_DEFAULT_LANGUAGE", "de");
            jail.set_env("OTP_AUTH_JWT_PRIVATE_KEY_FILE", "/etc/keys/jwt.pem");
            jail.set_env(
                "OTP_AUTH_JWT_PREVIOUS_PUBLIC_KEY_FILES",
                "/etc/keys/old1.pem, /etc/keys/old2.pem",
            );
            let c = Config::load().expect("loads");
            assert_eq!(
                c.http.public_url.as_deref(),
                Some("https://app.example.com/auth")
            );
            assert_eq!(c.mail.default_language, "de");
            assert_eq!(
                c.tokens.private_key_file.as_deref(),
                Some("/etc/keys/jwt.pem")
            );
            assert_eq!(
                c.tokens.previous_public_key_files,
                ["/etc/keys/old1.pem", "/etc/keys/old2.pem"]
            );
            assert_eq!(
                c.redis.url,
                "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7000"
            );
            assert_eq!(c.smtp.server, "smtp.example.com");
            assert_eq!(c.smtp.port, 587);
            assert_eq!(c.smtp.username.as_deref(), Some("mailer"));
            assert_eq!(
                c.smtp.password.as_ref().map(|s| s.expose_secret()),
                Some("12345678")
            );
            assert_eq!(c.smtp.tls_mode(), SmtpTls::Tls);
            assert_eq!(c.mail.from, "login@example.com");
            assert_eq!(c.mail.from_name, "Example App");
            assert_eq!(c.codes.expiry_seconds, 120);
            assert_eq!(c.codes.length, 8);
            assert_eq!(c.codes.key_prefix, "app1_otp_");
            assert_eq!(c.limits.per_minute, 3);
            assert_eq!(c.limits.per_ip_per_minute, 10);
            assert_eq!(c.limits.max_verify_attempts, 4);
            assert_eq!(c.limits.lockout_seconds, 60);
            assert_eq!((c.limits.per_hour, c.limits.per_day), (11, 22));
            assert_eq!(c.limits.resend_cooldown_seconds, 30);
            assert_eq!(c.limits.verify_failures_per_ip_per_hour, 40);
            assert_eq!(c.sessions.reuse_interval_seconds, 5);
            assert_eq!((c.sessions.max_per_user, c.sessions.max_days), (3, 90));
            assert_eq!(c.redis.min_replicas_ack, 1);
            assert_eq!(
                c.tokens.secret.as_ref().map(|s| s.expose_secret()),
                Some("07394185260736918245093817462051837")
            );
            assert_eq!(c.tokens.algorithm, JwtAlgorithm::HS512);
            assert_eq!(c.tokens.issuer.as_deref(), Some("https://auth.example.com"));
            assert_eq!(c.tokens.audience.as_deref(), Some("example-api"));
            assert_eq!(c.tokens.access_expire_minutes, 15);
            assert_eq!(c.tokens.refresh_expire_days, 30);
            assert_eq!(c.sessions.key_prefix, "app1_bl_");
            assert!(!c.cookie.secure);
            assert_eq!(c.cookie.name, "rt");
            assert_eq!(c.cookie.samesite, SameSite::Strict);
            assert_eq!(c.cookie.path, "/auth");
            assert!(c.codes.disable_local_auth);
            assert_eq!(
                c.codes.magic_emails,
                ["*@test.example.com", "qa+*@example.com"]
            );
            assert_eq!(c.http.trusted_proxies, ["10.0.0.0/8", "192.0.2.7"]);
            assert_eq!(c.http.allowed_origins, ["https://app.example.com"]);
            // Key files belong to the asymmetric algorithms; the rest is valid with HS512.
            {
                let mut c = c.clone();
                c.tokens.private_key_file = None;
                c.tokens.previous_public_key_files = Vec::new();
                c
            }
            .validate()
            .expect("valid");
            assert_eq!(c.http.trusted_proxy_networks().unwrap().len(), 2);
            Ok(())
        });
    }

    #[test]
    #[cfg(feature = "toml")]
    fn reads_a_toml_file_under_the_environment() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "otp-auth.toml",
                "otp_length = 7\nallowed_origins = [\"https://a.example\"]\ncookie_name = \"from_file\"\n",
            )?;
            jail.set_env("OTP_AUTH_CONFIG_FILE", "otp-auth.toml");
            jail.set_env("OTP_AUTH_COOKIE_NAME", "from_env");
            let c = Config::load().expect("loads");
            assert_eq!(c.codes.length, 7);
            assert_eq!(c.http.allowed_origins, ["https://a.example"]);
            assert_eq!(c.cookie.name, "from_env");
            Ok(())
        });
    }

    #[test]
    #[cfg(not(feature = "toml"))]
    fn a_named_file_needs_the_toml_feature() {
        Jail::expect_with(|jail| {
            jail.create_file("otp-auth.toml", "otp_length = 7\n")?;
            jail.set_env("OTP_AUTH_CONFIG_FILE", "otp-auth.toml");
            let e = Config::load().unwrap_err();
            assert!(e.to_string().contains("`toml` feature"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn no_file_is_read_unless_named() {
        Jail::expect_with(|jail| {
            jail.create_file("otp-auth.toml", "otp_length = 7\n")?;
            let c = Config::load().expect("loads");
            assert_eq!(c.codes.length, Config::default().codes.length);
            Ok(())
        });
    }

    #[test]
    fn type_errors_name_the_variable() {
        Jail::expect_with(|jail| {
            jail.set_env("OTP_AUTH_OTP_LENGTH", "six");
            let e = Config::load().unwrap_err();
            assert!(e.to_string().contains("OTP_AUTH_OTP_LENGTH"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn missing_named_config_file_is_an_error() {
        Jail::expect_with(|jail| {
            jail.set_env("OTP_AUTH_CONFIG_FILE", "nope.toml");
            let e = Config::load().unwrap_err();
            assert!(e.to_string().contains("OTP_AUTH_CONFIG_FILE"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn bounds_are_enforced_with_the_variable_named() {
        let cases: Vec<(Config, &str)> = vec![
            (
                with(|c| c.codes.expiry_seconds = 601),
                "OTP_AUTH_OTP_EXPIRY_SECONDS",
            ),
            (
                with(|c| c.codes.expiry_seconds = 0),
                "OTP_AUTH_OTP_EXPIRY_SECONDS",
            ),
            (with(|c| c.codes.length = 5), "OTP_AUTH_OTP_LENGTH"),
            (with(|c| c.codes.length = 11), "OTP_AUTH_OTP_LENGTH"),
            (
                with(|c| c.limits.max_verify_attempts = 0),
                "OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS",
            ),
            (
                with(|c| c.limits.max_verify_attempts = 101),
                "OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS",
            ),
            (
                with(|c| c.limits.per_minute = 0),
                "OTP_AUTH_OTP_RATE_LIMIT_PER_MINUTE",
            ),
            (
                with(|c| c.limits.per_hour = 0),
                "OTP_AUTH_OTP_RATE_LIMIT_PER_HOUR",
            ),
            (
                with(|c| c.limits.per_day = 0),
                "OTP_AUTH_OTP_RATE_LIMIT_PER_DAY",
            ),
            (
                with(|c| c.limits.resend_cooldown_seconds = 3601),
                "OTP_AUTH_OTP_RESEND_COOLDOWN_SECONDS",
            ),
            (
                with(|c| c.limits.verify_failures_per_ip_per_hour = 0),
                "OTP_AUTH_VERIFY_FAILURES_PER_IP_PER_HOUR",
            ),
            (
                with(|c| c.sessions.reuse_interval_seconds = 61),
                "OTP_AUTH_REFRESH_REUSE_INTERVAL_SECONDS",
            ),
            (
                with(|c| c.sessions.max_per_user = 0),
                "OTP_AUTH_MAX_SESSIONS_PER_USER",
            ),
            (
                with(|c| c.sessions.max_per_user = 1001),
                "OTP_AUTH_MAX_SESSIONS_PER_USER",
            ),
            (
                with(|c| c.redis.min_replicas_ack = 17),
                "OTP_AUTH_REDIS_MIN_REPLICAS_ACK",
            ),
            (
                with(|c| c.sessions.max_days = 3651),
                "OTP_AUTH_SESSION_MAX_DAYS",
            ),
            (
                with(|c| c.cookie.name = "bad name".into()),
                "OTP_AUTH_COOKIE_NAME",
            ),
            (
                with(|c| c.cookie.path = "auth".into()),
                "OTP_AUTH_COOKIE_PATH",
            ),
            (
                with(|c| {
                    c.cookie.samesite = SameSite::None;
                    c.cookie.secure = false;
                }),
                "OTP_AUTH_COOKIE_SAMESITE",
            ),
            (
                with(|c| c.http.trusted_proxies = vec!["nope".into()]),
                "OTP_AUTH_TRUSTED_PROXIES",
            ),
            (
                with(|c| c.http.allowed_origins = vec!["app.example.com".into()]),
                "OTP_AUTH_ALLOWED_ORIGINS",
            ),
            (
                with(|c| c.mail.from = "not an address".into()),
                "OTP_AUTH_MAIL_FROM",
            ),
            (
                with(|c| c.tokens.algorithm = JwtAlgorithm::RS256),
                "OTP_AUTH_JWT_PRIVATE_KEY_FILE",
            ),
            (
                // The private key alone: the secret would be unused, the code key missing.
                with(|c| {
                    c.tokens.algorithm = JwtAlgorithm::ES256;
                    c.tokens.private_key_file = Some("jwt.pem".into());
                }),
                "OTP_AUTH_JWT_SECRET is set, but",
            ),
            (
                with(|c| {
                    c.tokens.algorithm = JwtAlgorithm::EdDSA;
                    c.tokens.private_key_file = Some("jwt.pem".into());
                    c.tokens.secret = None;
                }),
                "OTP_AUTH_CODE_SECRET is required with OTP_AUTH_JWT_ALGORITHM EdDSA",
            ),
            (
                with(|c| c.http.public_url = Some("https://app.example.com/auth/".into())),
                "OTP_AUTH_PUBLIC_URL",
            ),
            (
                with(|c| c.mail.default_language = "en_US".into()),
                "OTP_AUTH_MAIL_DEFAULT_LANGUAGE",
            ),
            (
                with(|c| c.tokens.previous_public_key_files = vec!["old.pem".into()]),
                "OTP_AUTH_JWT_PREVIOUS_PUBLIC_KEY_FILES",
            ),
            (
                with(|c| c.codes.key_prefix = String::new()),
                "OTP_AUTH_OTP_KEY_PREFIX",
            ),
        ];
        for (c, var) in cases {
            let e = c.validate().expect_err(var);
            assert!(e.to_string().contains(var), "{e} does not name {var}");
        }
        valid().validate().expect("the base case is valid");
    }

    #[test]
    fn random_looking_secrets_pass_the_pattern_check() {
        for good in [
            "c2f6e0a9b8d74e1f9a3b5c7d9e1f2a4b6c8d0e2f",
            "8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f",
            "q7W!x2Lp9#Zr4Tn8Vb1Mc6Hs3Jd5Kf0G",
        ] {
            assert_eq!(weak_secret(good), None, "{good}");
        }
    }

    #[test]
    fn risky_settings_warn_by_name() {
        assert!(Config::default().warnings().is_empty());
        let c = with(|c| {
            c.http.trusted_proxies = vec!["10.0.0.0/8".into(), "fc00::/7".into()];
            c.cookie.secure = false;
            c.limits.max_verify_attempts = 10;
        });
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let c = with(|c| {
            c.http.trusted_proxies = vec!["0.0.0.0/0".into(), "::/0".into(), "10.0.0.1".into()];
            c.cookie.secure = false;
            c.http.public_url = Some("HTTPS://app.example.com/auth".into());
            c.limits.max_verify_attempts = 50;
        });
        let w = c.warnings();
        assert_eq!(w.len(), 4, "{w:?}");
        assert!(
            w[0].starts_with("OTP_AUTH_TRUSTED_PROXIES: 0.0.0.0/0"),
            "{w:?}"
        );
        assert!(w[1].starts_with("OTP_AUTH_TRUSTED_PROXIES: ::/0"), "{w:?}");
        assert!(w[2].starts_with("OTP_AUTH_COOKIE_SECURE is false"), "{w:?}");
        assert!(
            w[3].starts_with("OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS is 50"),
            "{w:?}"
        );
    }

    #[test]
    fn weak_and_placeholder_secrets_refuse_to_start() {
        for bad in [
            "short",
            "your-secret-key",
            "your-secret-key-here-change-it-please!!",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababababababababababab",
            // Patterned: a unit repeated, a run of consecutive characters.
            "0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0123",
            "abcdefghijklmnopqrstuvwxyz0123456789",
            "zyxwvutsrqponmlkjihgfedcba9876543210",
            "Secret-Key-2024!Secret-Key-2024!",
        ] {
            let c = {
                let mut c = Config::default();
                c.tokens.secret = Some(bad.into());
                c
            };
            let e = c.validate().expect_err(bad);
            assert!(e.to_string().contains("OTP_AUTH_JWT_SECRET"), "{e}");
        }
        let e = Config::default().validate().unwrap_err();
        assert!(
            e.to_string().contains("OTP_AUTH_JWT_SECRET is not set"),
            "{e}"
        );
        let c = with(|c| c.codes.secret = Some("tiny".into()));
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("OTP_AUTH_CODE_SECRET")
        );
    }

    #[test]
    fn misspelled_and_unprefixed_variables_are_named_with_the_setting_they_mean() {
        let env = [
            "OTP_AUTH_REDIS_ULR",
            "OTP_AUTH_JWT_ALGO",
            "OTP_AUTH_STORE",
            "OTP_AUTH_SOMETHING_ELSE_ENTIRELY",
            "OTP_AUTH_OTP_LENGTH",
            "OTP_AUTH_CONFIG_FILE",
            "REDIS_URL",
            "SMTP_PORT",
            "OTP_AUTH_SMTP_PORT",
            "PATH",
        ]
        .map(String::from);
        let found = unknown_variables(env, &["OTP_AUTH_STORE"]);
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "OTP_AUTH_JWT_ALGO is not a setting: did you mean OTP_AUTH_JWT_ALGORITHM?",
                "OTP_AUTH_REDIS_ULR is not a setting: did you mean OTP_AUTH_REDIS_URL?",
                "OTP_AUTH_SOMETHING_ELSE_ENTIRELY is not a setting (see the settings table)",
                "REDIS_URL is set, but the setting is read from OTP_AUTH_REDIS_URL",
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn an_unset_hmac_secret_is_one_problem() {
        let e = Config::default().validate().unwrap_err();
        let secret_lines: Vec<&String> = (e.problems.iter())
            .filter(|p| p.contains("SECRET"))
            .collect();
        assert_eq!(secret_lines.len(), 1, "{:?}", e.problems);
        assert!(
            secret_lines[0].starts_with("OTP_AUTH_JWT_SECRET is not set"),
            "{secret_lines:?}"
        );
    }

    #[test]
    fn config_errors_debug_as_their_sentences() {
        // What `main() -> Result<(), Box<dyn Error>>` prints on a bad configuration.
        let e: Box<dyn std::error::Error> = Box::new(ConfigError {
            problems: vec![
                "OTP_AUTH_OTP_LENGTH must be 6 to 10, got 3".into(),
                "b".into(),
            ],
        });
        assert_eq!(
            format!("{e:?}"),
            "invalid configuration: OTP_AUTH_OTP_LENGTH must be 6 to 10, got 3; b"
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let c = with(|c| {
            c.smtp.password = Some("hunter2-smtp-password".into());
            c.codes.secret = Some("code-secret-0123456789abcdefghijklmnop".into());
            c.redis.url = "redis://user:redispass@host:6379".into();
        });
        let shown = format!("{c:?}");
        for secret in [GOOD, "hunter2", "code-secret", "redispass"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn ephemeral_secret_is_strong() {
        let c = Config::default().with_ephemeral_jwt_secret();
        c.validate().expect("the random key passes validation");
        let d = Config::default().with_ephemeral_jwt_secret();
        assert_ne!(
            c.tokens
                .secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned()),
            d.tokens
                .secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned())
        );
    }
}
