//! Settings: defaults, an optional TOML file and `OTP_AUTH_*` environment variables,
//! validated once at start-up with errors that name the variable to fix.

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
use serde::{Deserialize, Deserializer};

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

impl<'de> Deserialize<'de> for SameSite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "lax" => Ok(SameSite::Lax),
            "strict" => Ok(SameSite::Strict),
            "none" => Ok(SameSite::None),
            other => Err(serde::de::Error::custom(format!(
                "expected lax, strict or none, got {other:?}"
            ))),
        }
    }
}

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

impl<'de> Deserialize<'de> for SmtpTls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(SmtpTls::None),
            "starttls" => Ok(SmtpTls::Starttls),
            "tls" => Ok(SmtpTls::Tls),
            other => Err(serde::de::Error::custom(format!(
                "expected none, starttls or tls, got {other:?}"
            ))),
        }
    }
}

/// Every setting of the library. Field names are the environment variables' names after
/// `OTP_AUTH_`, lowercased (`jwt_secret` ← `OTP_AUTH_JWT_SECRET`).
///
/// ```no_run
/// let config = otp_core::Config::load()?;
/// config.validate()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Store address: `redis://`, `rediss://` or `redis-cluster://`.
    pub redis_url: String,
    /// Timeout of connecting to the store and of each store command, in milliseconds.
    pub redis_timeout_ms: u64,
    /// Replicas that must acknowledge a write that must not be lost (a consumed code, a
    /// lockout, a rotation, a revocation) before it is reported done (`WAIT`, in the same
    /// round trip); fewer within half the store timeout answer 503. 0: off (at most 16).
    pub redis_min_replicas_ack: u32,
    /// SMTP server host.
    pub smtp_server: String,
    /// SMTP server port.
    pub smtp_port: u16,
    /// SMTP user name; no AUTH when unset.
    pub smtp_username: Option<String>,
    /// SMTP password; no AUTH when unset.
    pub smtp_password: Option<SecretString>,
    /// SMTP transport security; see [`Config::smtp_tls_mode`] for the default.
    pub smtp_tls: Option<SmtpTls>,
    /// Timeout of each SMTP step (connect, each command), in milliseconds.
    pub smtp_timeout_ms: u64,
    /// Most SMTP connections kept open and reused.
    pub smtp_pool_size: u32,
    /// Sender address of the login mail.
    pub mail_from: String,
    /// Sender display name, also the application name in the mail.
    pub mail_from_name: String,
    /// Code lifetime in seconds (1 to 600).
    pub otp_expiry_seconds: u64,
    /// Digits per code (6 to 10).
    pub otp_length: u8,
    /// Prefix of every store key.
    pub otp_key_prefix: String,
    /// Code requests per address per minute.
    pub otp_rate_limit_per_minute: u32,
    /// Code requests per client IP per minute.
    pub otp_rate_limit_per_ip_per_minute: u32,
    /// Failed verifications per address per lockout window (1 to 100).
    pub otp_max_verify_attempts: u32,
    /// The lockout window in seconds.
    pub otp_lockout_seconds: u64,
    /// Code requests per address per hour (mail bombing).
    pub otp_rate_limit_per_hour: u32,
    /// Code requests per address per day (mail bombing).
    pub otp_rate_limit_per_day: u32,
    /// Least time between two codes to one address, in seconds (0: none; at most 3600).
    pub otp_resend_cooldown_seconds: u64,
    /// Wrong codes per client IP per hour, across all addresses (guessing spread over many
    /// pending codes).
    pub verify_failures_per_ip_per_hour: u32,
    /// Seconds after a rotation during which the immediate parent of the current refresh
    /// token still refreshes, on the same lineage (racing tabs, retries after a timeout);
    /// 0 is strict (at most 60).
    pub refresh_reuse_interval_seconds: u64,
    /// Live sessions per user (1 to 1000); opening one more ends the least recently
    /// refreshed.
    pub max_sessions_per_user: u32,
    /// Absolute session lifetime from login in days, which refreshing never extends
    /// (0: no limit beyond the refresh token's own).
    pub session_max_days: u64,
    /// HMAC key of the tokens (at least 32 bytes).
    pub jwt_secret: Option<SecretString>,
    /// Key of the code and address HMACs; derived from `jwt_secret` when unset.
    pub code_secret: Option<SecretString>,
    /// Signing algorithm.
    pub jwt_algorithm: JwtAlgorithm,
    /// PEM file of the signing key for `RS256`, `ES256` or `EdDSA` (PKCS#8; also PKCS#1
    /// for RSA and SEC1 for P-256). Required for those algorithms, refused for the HMAC
    /// ones.
    pub jwt_private_key_file: Option<String>,
    /// PEM files of earlier public keys, still accepted for verification (and published in
    /// the JWKS) during a key rotation.
    #[serde(deserialize_with = "string_list")]
    pub jwt_previous_public_key_files: Vec<String>,
    /// `iss` of issued tokens, checked on verification when set.
    pub jwt_issuer: Option<String>,
    /// `aud` of issued tokens, checked on verification when set.
    pub jwt_audience: Option<String>,
    /// Clock leeway in seconds when checking `exp` (default 0).
    pub jwt_leeway_seconds: u64,
    /// Access token lifetime in minutes.
    pub access_token_expire_minutes: u64,
    /// Refresh token lifetime in days.
    pub refresh_token_expire_days: u64,
    /// Prefix of revocation and session keys.
    pub blacklist_key_prefix: String,
    /// `Secure` attribute of the refresh cookie.
    pub cookie_secure: bool,
    /// Name of the refresh cookie.
    pub cookie_name: String,
    /// `SameSite` attribute of the refresh cookie.
    pub cookie_samesite: SameSite,
    /// `Path` attribute of the refresh cookie.
    pub cookie_path: String,
    /// Development mode: the all-zeros code is accepted and no mail is sent.
    pub disable_local_auth: bool,
    /// Glob patterns (`*`, `?`) narrowing the magic code to some addresses; empty: all.
    #[serde(deserialize_with = "string_list")]
    pub magic_otp_emails: Vec<String>,
    /// Proxies (IPs or CIDR networks) whose `X-Forwarded-For` is believed.
    #[serde(deserialize_with = "string_list")]
    pub trusted_proxies: Vec<String>,
    /// Origins allowed to call the endpoints; when set, any other `Origin` gets 403.
    #[serde(deserialize_with = "string_list")]
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body in bytes.
    pub body_limit_bytes: usize,
    /// The public URL the login routes are mounted at (for example
    /// `https://app.example.com/auth`). When set, the login mail also carries a sign-in
    /// link to `<public_url>/magic?token=…`.
    pub public_url: Option<String>,
    /// Language of the login mail when the request's `Accept-Language` names none of the
    /// configured template sets.
    pub mail_default_language: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            redis_url: "redis://localhost:6379/0".to_owned(),
            redis_timeout_ms: 1000,
            redis_min_replicas_ack: 0,
            smtp_server: "127.0.0.1".to_owned(),
            smtp_port: 1025,
            smtp_username: None,
            smtp_password: None,
            smtp_tls: None,
            smtp_timeout_ms: 10_000,
            smtp_pool_size: 4,
            mail_from: "no-reply@localhost".to_owned(),
            mail_from_name: "OTP Auth".to_owned(),
            otp_expiry_seconds: 300,
            otp_length: 6,
            otp_key_prefix: "otp_".to_owned(),
            otp_rate_limit_per_minute: 5,
            otp_rate_limit_per_ip_per_minute: 30,
            otp_max_verify_attempts: 5,
            otp_lockout_seconds: 900,
            otp_rate_limit_per_hour: 20,
            otp_rate_limit_per_day: 50,
            otp_resend_cooldown_seconds: 0,
            verify_failures_per_ip_per_hour: 100,
            refresh_reuse_interval_seconds: 10,
            max_sessions_per_user: 20,
            session_max_days: 0,
            jwt_secret: None,
            code_secret: None,
            jwt_algorithm: JwtAlgorithm::HS256,
            jwt_private_key_file: None,
            jwt_previous_public_key_files: Vec::new(),
            jwt_issuer: None,
            jwt_audience: None,
            jwt_leeway_seconds: 0,
            access_token_expire_minutes: 60,
            refresh_token_expire_days: 7,
            blacklist_key_prefix: "blacklist_".to_owned(),
            cookie_secure: true,
            cookie_name: "refresh_token".to_owned(),
            cookie_samesite: SameSite::Lax,
            cookie_path: "/".to_owned(),
            disable_local_auth: false,
            magic_otp_emails: Vec::new(),
            trusted_proxies: Vec::new(),
            allowed_origins: Vec::new(),
            body_limit_bytes: 16 * 1024,
            public_url: None,
            mail_default_language: "en".to_owned(),
        }
    }
}

// Secrets are shown as set or unset, never their value.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn secret(s: &Option<SecretString>) -> &'static str {
            if s.is_some() { "[set]" } else { "[unset]" }
        }
        f.debug_struct("Config")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("redis_min_replicas_ack", &self.redis_min_replicas_ack)
            .field("smtp_server", &self.smtp_server)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_username", &self.smtp_username)
            .field("smtp_password", &secret(&self.smtp_password))
            .field("smtp_tls", &self.smtp_tls_mode())
            .field("smtp_timeout_ms", &self.smtp_timeout_ms)
            .field("smtp_pool_size", &self.smtp_pool_size)
            .field("mail_from", &self.mail_from)
            .field("mail_from_name", &self.mail_from_name)
            .field("otp_expiry_seconds", &self.otp_expiry_seconds)
            .field("otp_length", &self.otp_length)
            .field("otp_key_prefix", &self.otp_key_prefix)
            .field("otp_rate_limit_per_minute", &self.otp_rate_limit_per_minute)
            .field(
                "otp_rate_limit_per_ip_per_minute",
                &self.otp_rate_limit_per_ip_per_minute,
            )
            .field("otp_max_verify_attempts", &self.otp_max_verify_attempts)
            .field("otp_lockout_seconds", &self.otp_lockout_seconds)
            .field("otp_rate_limit_per_hour", &self.otp_rate_limit_per_hour)
            .field("otp_rate_limit_per_day", &self.otp_rate_limit_per_day)
            .field(
                "otp_resend_cooldown_seconds",
                &self.otp_resend_cooldown_seconds,
            )
            .field(
                "verify_failures_per_ip_per_hour",
                &self.verify_failures_per_ip_per_hour,
            )
            .field(
                "refresh_reuse_interval_seconds",
                &self.refresh_reuse_interval_seconds,
            )
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .field("session_max_days", &self.session_max_days)
            .field("jwt_secret", &secret(&self.jwt_secret))
            .field("code_secret", &secret(&self.code_secret))
            .field("jwt_algorithm", &self.jwt_algorithm)
            .field("jwt_private_key_file", &self.jwt_private_key_file)
            .field(
                "jwt_previous_public_key_files",
                &self.jwt_previous_public_key_files,
            )
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_leeway_seconds", &self.jwt_leeway_seconds)
            .field(
                "access_token_expire_minutes",
                &self.access_token_expire_minutes,
            )
            .field("refresh_token_expire_days", &self.refresh_token_expire_days)
            .field("blacklist_key_prefix", &self.blacklist_key_prefix)
            .field("cookie_secure", &self.cookie_secure)
            .field("cookie_name", &self.cookie_name)
            .field("cookie_samesite", &self.cookie_samesite)
            .field("cookie_path", &self.cookie_path)
            .field("disable_local_auth", &self.disable_local_auth)
            .field("magic_otp_emails", &self.magic_otp_emails)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("allowed_origins", &self.allowed_origins)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("public_url", &self.public_url)
            .field("mail_default_language", &self.mail_default_language)
            .finish()
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
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// elsewhere.
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
    pub fn load() -> Result<Config, ConfigError> {
        Self::from_figment(&Self::figment())
    }

    /// Reads the configuration from `figment`, with defaults for what it does not set.
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
        figment.extract_lossy().map_err(|e| ConfigError {
            problems: e.into_iter().map(|e| describe_figment_error(&e)).collect(),
        })
    }

    /// Sets a random JWT secret when none is configured, with a warning: tokens then die
    /// with the process. For development only; the example apps use it for their embedded
    /// default.
    pub fn with_ephemeral_jwt_secret(mut self) -> Config {
        if self.jwt_secret.is_none() && self.jwt_algorithm.is_hmac() {
            let bytes: [u8; 32] = rand::rng().random();
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            tracing::warn!(
                "OTP_AUTH_JWT_SECRET is not set: using a random key for this process only; \
                 tokens will not survive a restart. Set OTP_AUTH_JWT_SECRET in production."
            );
            self.jwt_secret = Some(SecretString::from(hex));
        }
        self
    }

    /// The TLS mode in effect: the configured one, else `none` for a loopback server and
    /// `starttls` for any other.
    pub fn smtp_tls_mode(&self) -> SmtpTls {
        self.smtp_tls.unwrap_or_else(|| {
            let host = self
                .smtp_server
                .trim_start_matches('[')
                .trim_end_matches(']');
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if loopback {
                SmtpTls::None
            } else {
                SmtpTls::Starttls
            }
        })
    }

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
                    "OTP_AUTH_TRUSTED_PROXIES: {p:?} is not an IP address or CIDR network"
                )),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Checks every bound and secret; the error lists every problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Vec::new();
        if !(1..=600).contains(&self.otp_expiry_seconds) {
            p.push(format!(
                "OTP_AUTH_OTP_EXPIRY_SECONDS must be between 1 and 600, got {}",
                self.otp_expiry_seconds
            ));
        }
        if !(6..=10).contains(&self.otp_length) {
            p.push(format!(
                "OTP_AUTH_OTP_LENGTH must be between 6 and 10, got {}",
                self.otp_length
            ));
        }
        if !(1..=100).contains(&self.otp_max_verify_attempts) {
            p.push(format!(
                "OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS must be between 1 and 100, got {}",
                self.otp_max_verify_attempts
            ));
        }
        if !(1..=86_400).contains(&self.otp_lockout_seconds) {
            p.push(format!(
                "OTP_AUTH_OTP_LOCKOUT_SECONDS must be between 1 and 86400, got {}",
                self.otp_lockout_seconds
            ));
        }
        if self.otp_rate_limit_per_minute == 0 {
            p.push("OTP_AUTH_OTP_RATE_LIMIT_PER_MINUTE must be at least 1".to_owned());
        }
        if self.otp_rate_limit_per_ip_per_minute == 0 {
            p.push("OTP_AUTH_OTP_RATE_LIMIT_PER_IP_PER_MINUTE must be at least 1".to_owned());
        }
        if self.otp_rate_limit_per_hour == 0 {
            p.push("OTP_AUTH_OTP_RATE_LIMIT_PER_HOUR must be at least 1".to_owned());
        }
        if self.otp_rate_limit_per_day == 0 {
            p.push("OTP_AUTH_OTP_RATE_LIMIT_PER_DAY must be at least 1".to_owned());
        }
        if self.otp_resend_cooldown_seconds > 3600 {
            p.push(format!(
                "OTP_AUTH_OTP_RESEND_COOLDOWN_SECONDS must be at most 3600, got {}",
                self.otp_resend_cooldown_seconds
            ));
        }
        if self.verify_failures_per_ip_per_hour == 0 {
            p.push("OTP_AUTH_VERIFY_FAILURES_PER_IP_PER_HOUR must be at least 1".to_owned());
        }
        if self.refresh_reuse_interval_seconds > 60 {
            p.push(format!(
                "OTP_AUTH_REFRESH_REUSE_INTERVAL_SECONDS must be at most 60, got {}",
                self.refresh_reuse_interval_seconds
            ));
        }
        if !(1..=1000).contains(&self.max_sessions_per_user) {
            p.push(format!(
                "OTP_AUTH_MAX_SESSIONS_PER_USER must be between 1 and 1000, got {}",
                self.max_sessions_per_user
            ));
        }
        if self.redis_min_replicas_ack > 16 {
            p.push(format!(
                "OTP_AUTH_REDIS_MIN_REPLICAS_ACK must be at most 16, got {}",
                self.redis_min_replicas_ack
            ));
        }
        if self.session_max_days > 3650 {
            p.push(format!(
                "OTP_AUTH_SESSION_MAX_DAYS must be at most 3650, got {}",
                self.session_max_days
            ));
        }
        if !(1..=60 * 24 * 7).contains(&self.access_token_expire_minutes) {
            p.push(format!(
                "OTP_AUTH_ACCESS_TOKEN_EXPIRE_MINUTES must be between 1 and 10080, got {}",
                self.access_token_expire_minutes
            ));
        }
        if !(1..=365).contains(&self.refresh_token_expire_days) {
            p.push(format!(
                "OTP_AUTH_REFRESH_TOKEN_EXPIRE_DAYS must be between 1 and 365, got {}",
                self.refresh_token_expire_days
            ));
        }
        if self.jwt_leeway_seconds > 300 {
            p.push(format!(
                "OTP_AUTH_JWT_LEEWAY_SECONDS must be at most 300, got {}",
                self.jwt_leeway_seconds
            ));
        }
        if !(10..=60_000).contains(&self.redis_timeout_ms) {
            p.push(format!(
                "OTP_AUTH_REDIS_TIMEOUT_MS must be between 10 and 60000, got {}",
                self.redis_timeout_ms
            ));
        }
        if !(100..=120_000).contains(&self.smtp_timeout_ms) {
            p.push(format!(
                "OTP_AUTH_SMTP_TIMEOUT_MS must be between 100 and 120000, got {}",
                self.smtp_timeout_ms
            ));
        }
        if !(1..=64).contains(&self.smtp_pool_size) {
            p.push(format!(
                "OTP_AUTH_SMTP_POOL_SIZE must be between 1 and 64, got {}",
                self.smtp_pool_size
            ));
        }
        if !(256..=1024 * 1024).contains(&self.body_limit_bytes) {
            p.push(format!(
                "OTP_AUTH_BODY_LIMIT_BYTES must be between 256 and 1048576, got {}",
                self.body_limit_bytes
            ));
        }
        if self.jwt_algorithm.is_hmac() {
            match &self.jwt_secret {
                None => p.push(
                    "OTP_AUTH_JWT_SECRET is not set: set a random key of at least 32 bytes \
                     (for example `openssl rand -hex 32`)"
                        .to_owned(),
                ),
                Some(s) => {
                    if let Some(why) = weak_secret(s.expose_secret()) {
                        p.push(format!("OTP_AUTH_JWT_SECRET {why}"));
                    }
                }
            }
            if self.jwt_private_key_file.is_some() {
                p.push(format!(
                    "OTP_AUTH_JWT_PRIVATE_KEY_FILE is set but OTP_AUTH_JWT_ALGORITHM is {:?}, \
                     which signs with OTP_AUTH_JWT_SECRET; choose RS256, ES256 or EdDSA",
                    self.jwt_algorithm
                ));
            }
            if !self.jwt_previous_public_key_files.is_empty() {
                p.push(
                    "OTP_AUTH_JWT_PREVIOUS_PUBLIC_KEY_FILES needs an asymmetric \
                     OTP_AUTH_JWT_ALGORITHM (RS256, ES256 or EdDSA)"
                        .to_owned(),
                );
            }
        } else {
            if self
                .jwt_private_key_file
                .as_deref()
                .is_none_or(str::is_empty)
            {
                p.push(format!(
                    "OTP_AUTH_JWT_PRIVATE_KEY_FILE is required with OTP_AUTH_JWT_ALGORITHM \
                     {:?} (a PEM file; for example `openssl genpkey -algorithm EC -pkeyopt \
                     ec_paramgen_curve:P-256 -out jwt.pem`)",
                    self.jwt_algorithm
                ));
            }
            if self.jwt_secret.is_some() {
                p.push(format!(
                    "OTP_AUTH_JWT_SECRET is set, but OTP_AUTH_JWT_ALGORITHM {:?} signs with \
                     OTP_AUTH_JWT_PRIVATE_KEY_FILE and would not use it: unset it (the code \
                     HMAC key is OTP_AUTH_CODE_SECRET)",
                    self.jwt_algorithm
                ));
            }
        }
        match &self.code_secret {
            Some(s) => {
                if let Some(why) = weak_secret(s.expose_secret()) {
                    p.push(format!("OTP_AUTH_CODE_SECRET {why}"));
                }
            }
            None if !self.jwt_algorithm.is_hmac() => p.push(format!(
                "OTP_AUTH_CODE_SECRET is required with OTP_AUTH_JWT_ALGORITHM {:?} (the code \
                 HMAC key cannot come from a private key)",
                self.jwt_algorithm
            )),
            None if self.jwt_secret.is_none() => p.push(
                "OTP_AUTH_CODE_SECRET is required when OTP_AUTH_JWT_SECRET is not set".to_owned(),
            ),
            None => {}
        }
        if self.otp_key_prefix.is_empty() || !is_key_prefix(&self.otp_key_prefix) {
            p.push(format!(
                "OTP_AUTH_OTP_KEY_PREFIX must be non-empty printable ASCII without spaces or \
                 braces, got {:?}",
                self.otp_key_prefix
            ));
        }
        if self.blacklist_key_prefix.is_empty() || !is_key_prefix(&self.blacklist_key_prefix) {
            p.push(format!(
                "OTP_AUTH_BLACKLIST_KEY_PREFIX must be non-empty printable ASCII without spaces \
                 or braces, got {:?}",
                self.blacklist_key_prefix
            ));
        }
        if self.cookie_name.is_empty() || !self.cookie_name.bytes().all(is_cookie_name_byte) {
            p.push(format!(
                "OTP_AUTH_COOKIE_NAME must be a cookie token (letters, digits, -_.), got {:?}",
                self.cookie_name
            ));
        }
        if !self.cookie_path.starts_with('/')
            || self
                .cookie_path
                .bytes()
                .any(|b| b.is_ascii_control() || b == b';' || b == b' ')
        {
            p.push(format!(
                "OTP_AUTH_COOKIE_PATH must start with / and hold no ; or spaces, got {:?}",
                self.cookie_path
            ));
        }
        if self.cookie_samesite == SameSite::None && !self.cookie_secure {
            p.push(
                "OTP_AUTH_COOKIE_SAMESITE=none requires OTP_AUTH_COOKIE_SECURE=true (browsers \
                 drop such cookies)"
                    .to_owned(),
            );
        }
        if let Err(e) = crate::email::Email::parse(&self.mail_from)
            && !is_local_sender(&self.mail_from)
        {
            p.push(format!(
                "OTP_AUTH_MAIL_FROM is not a valid address ({e}): {:?}",
                self.mail_from
            ));
        }
        if self.mail_from_name.chars().any(char::is_control) || self.mail_from_name.len() > 100 {
            p.push(
                "OTP_AUTH_MAIL_FROM_NAME must be at most 100 bytes without control characters"
                    .to_owned(),
            );
        }
        if let Err(e) = self.trusted_proxy_networks() {
            p.extend(e.problems);
        }
        for o in &self.allowed_origins {
            if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/') {
                p.push(format!(
                    "OTP_AUTH_ALLOWED_ORIGINS: {o:?} is not an origin (scheme://host[:port], \
                     no trailing slash)"
                ));
            }
        }
        for g in &self.magic_otp_emails {
            if g.trim().is_empty() || g.chars().any(char::is_control) {
                p.push(format!(
                    "OTP_AUTH_MAGIC_OTP_EMAILS: {g:?} is not a valid pattern"
                ));
            }
        }
        if !self.magic_otp_emails.is_empty() && !self.disable_local_auth {
            p.push(
                "OTP_AUTH_MAGIC_OTP_EMAILS is set but OTP_AUTH_DISABLE_LOCAL_AUTH is not: \
                 the patterns would have no effect"
                    .to_owned(),
            );
        }
        if let Some(u) = &self.public_url
            && (!(u.starts_with("http://") || u.starts_with("https://"))
                || u.ends_with('/')
                || u.contains(['?', '#'])
                || u.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            p.push(format!(
                "OTP_AUTH_PUBLIC_URL must be an http(s) URL without a trailing slash, query or \
                 fragment (where the login routes are mounted, e.g. \
                 https://app.example.com/auth), got {u:?}"
            ));
        }
        let lang = &self.mail_default_language;
        if lang.is_empty()
            || lang.len() > 35
            || !lang.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            p.push(format!(
                "OTP_AUTH_MAIL_DEFAULT_LANGUAGE must be a language tag such as en or de-CH, \
                 got {lang:?}"
            ));
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems: p })
        }
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

    fn valid() -> Config {
        Config {
            jwt_secret: Some(GOOD.into()),
            ..Config::default()
        }
    }

    #[test]
    fn defaults_match_the_settings_table() {
        let c = Config::default();
        assert_eq!(c.redis_url, "redis://localhost:6379/0");
        assert_eq!(c.redis_timeout_ms, 1000);
        assert_eq!(c.redis_min_replicas_ack, 0);
        assert_eq!((c.smtp_server.as_str(), c.smtp_port), ("127.0.0.1", 1025));
        assert_eq!(c.smtp_tls_mode(), SmtpTls::None);
        assert_eq!((c.smtp_timeout_ms, c.smtp_pool_size), (10_000, 4));
        assert_eq!(c.mail_from, "no-reply@localhost");
        assert_eq!(c.mail_from_name, "OTP Auth");
        assert_eq!(c.otp_expiry_seconds, 300);
        assert_eq!(c.otp_length, 6);
        assert_eq!(c.otp_key_prefix, "otp_");
        assert_eq!(c.otp_rate_limit_per_minute, 5);
        assert_eq!(c.otp_rate_limit_per_ip_per_minute, 30);
        assert_eq!(c.otp_max_verify_attempts, 5);
        assert_eq!(c.otp_lockout_seconds, 900);
        assert_eq!(
            (c.otp_rate_limit_per_hour, c.otp_rate_limit_per_day),
            (20, 50)
        );
        assert_eq!(c.otp_resend_cooldown_seconds, 0);
        assert_eq!(c.verify_failures_per_ip_per_hour, 100);
        assert_eq!(c.refresh_reuse_interval_seconds, 10);
        assert_eq!((c.max_sessions_per_user, c.session_max_days), (20, 0));
        assert_eq!(c.jwt_algorithm, JwtAlgorithm::HS256);
        assert_eq!(c.access_token_expire_minutes, 60);
        assert_eq!(c.refresh_token_expire_days, 7);
        assert_eq!(c.blacklist_key_prefix, "blacklist_");
        assert!(c.cookie_secure);
        assert_eq!(c.cookie_name, "refresh_token");
        assert_eq!(c.cookie_samesite, SameSite::Lax);
        assert_eq!(c.cookie_path, "/");
        assert!(!c.disable_local_auth);
        assert_eq!(c.jwt_leeway_seconds, 0);
        assert_eq!(c.body_limit_bytes, 16384);
        assert_eq!(c.jwt_private_key_file, None);
        assert!(c.jwt_previous_public_key_files.is_empty());
        assert_eq!(c.public_url, None);
        assert_eq!(c.mail_default_language, "en");
    }

    #[test]
    fn smtp_tls_default_depends_on_the_host() {
        let mut c = Config {
            smtp_server: "smtp.example.com".into(),
            ..Config::default()
        };
        assert_eq!(c.smtp_tls_mode(), SmtpTls::Starttls);
        c.smtp_server = "localhost".into();
        assert_eq!(c.smtp_tls_mode(), SmtpTls::None);
        c.smtp_tls = Some(SmtpTls::Tls);
        assert_eq!(c.smtp_tls_mode(), SmtpTls::Tls);
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
            jail.set_env("OTP_AUTH_JWT_SECRET", "01234567890123456789012345678901234");
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
                c.public_url.as_deref(),
                Some("https://app.example.com/auth")
            );
            assert_eq!(c.mail_default_language, "de");
            assert_eq!(c.jwt_private_key_file.as_deref(), Some("/etc/keys/jwt.pem"));
            assert_eq!(
                c.jwt_previous_public_key_files,
                ["/etc/keys/old1.pem", "/etc/keys/old2.pem"]
            );
            assert_eq!(
                c.redis_url,
                "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7000"
            );
            assert_eq!(c.smtp_server, "smtp.example.com");
            assert_eq!(c.smtp_port, 587);
            assert_eq!(c.smtp_username.as_deref(), Some("mailer"));
            assert_eq!(
                c.smtp_password.as_ref().map(|s| s.expose_secret()),
                Some("12345678")
            );
            assert_eq!(c.smtp_tls_mode(), SmtpTls::Tls);
            assert_eq!(c.mail_from, "login@example.com");
            assert_eq!(c.mail_from_name, "Example App");
            assert_eq!(c.otp_expiry_seconds, 120);
            assert_eq!(c.otp_length, 8);
            assert_eq!(c.otp_key_prefix, "app1_otp_");
            assert_eq!(c.otp_rate_limit_per_minute, 3);
            assert_eq!(c.otp_rate_limit_per_ip_per_minute, 10);
            assert_eq!(c.otp_max_verify_attempts, 4);
            assert_eq!(c.otp_lockout_seconds, 60);
            assert_eq!(
                (c.otp_rate_limit_per_hour, c.otp_rate_limit_per_day),
                (11, 22)
            );
            assert_eq!(c.otp_resend_cooldown_seconds, 30);
            assert_eq!(c.verify_failures_per_ip_per_hour, 40);
            assert_eq!(c.refresh_reuse_interval_seconds, 5);
            assert_eq!((c.max_sessions_per_user, c.session_max_days), (3, 90));
            assert_eq!(c.redis_min_replicas_ack, 1);
            assert_eq!(
                c.jwt_secret.as_ref().map(|s| s.expose_secret()),
                Some("01234567890123456789012345678901234")
            );
            assert_eq!(c.jwt_algorithm, JwtAlgorithm::HS512);
            assert_eq!(c.jwt_issuer.as_deref(), Some("https://auth.example.com"));
            assert_eq!(c.jwt_audience.as_deref(), Some("example-api"));
            assert_eq!(c.access_token_expire_minutes, 15);
            assert_eq!(c.refresh_token_expire_days, 30);
            assert_eq!(c.blacklist_key_prefix, "app1_bl_");
            assert!(!c.cookie_secure);
            assert_eq!(c.cookie_name, "rt");
            assert_eq!(c.cookie_samesite, SameSite::Strict);
            assert_eq!(c.cookie_path, "/auth");
            assert!(c.disable_local_auth);
            assert_eq!(
                c.magic_otp_emails,
                ["*@test.example.com", "qa+*@example.com"]
            );
            assert_eq!(c.trusted_proxies, ["10.0.0.0/8", "192.0.2.7"]);
            assert_eq!(c.allowed_origins, ["https://app.example.com"]);
            // Key files belong to the asymmetric algorithms; the rest is valid with HS512.
            Config {
                jwt_private_key_file: None,
                jwt_previous_public_key_files: Vec::new(),
                ..c.clone()
            }
            .validate()
            .expect("valid");
            assert_eq!(c.trusted_proxy_networks().unwrap().len(), 2);
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
            assert_eq!(c.otp_length, 7);
            assert_eq!(c.allowed_origins, ["https://a.example"]);
            assert_eq!(c.cookie_name, "from_env");
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
            assert_eq!(c.otp_length, Config::default().otp_length);
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
                Config {
                    otp_expiry_seconds: 601,
                    ..valid()
                },
                "OTP_AUTH_OTP_EXPIRY_SECONDS",
            ),
            (
                Config {
                    otp_expiry_seconds: 0,
                    ..valid()
                },
                "OTP_AUTH_OTP_EXPIRY_SECONDS",
            ),
            (
                Config {
                    otp_length: 5,
                    ..valid()
                },
                "OTP_AUTH_OTP_LENGTH",
            ),
            (
                Config {
                    otp_length: 11,
                    ..valid()
                },
                "OTP_AUTH_OTP_LENGTH",
            ),
            (
                Config {
                    otp_max_verify_attempts: 0,
                    ..valid()
                },
                "OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS",
            ),
            (
                Config {
                    otp_max_verify_attempts: 101,
                    ..valid()
                },
                "OTP_AUTH_OTP_MAX_VERIFY_ATTEMPTS",
            ),
            (
                Config {
                    otp_rate_limit_per_minute: 0,
                    ..valid()
                },
                "OTP_AUTH_OTP_RATE_LIMIT_PER_MINUTE",
            ),
            (
                Config {
                    otp_rate_limit_per_hour: 0,
                    ..valid()
                },
                "OTP_AUTH_OTP_RATE_LIMIT_PER_HOUR",
            ),
            (
                Config {
                    otp_rate_limit_per_day: 0,
                    ..valid()
                },
                "OTP_AUTH_OTP_RATE_LIMIT_PER_DAY",
            ),
            (
                Config {
                    otp_resend_cooldown_seconds: 3601,
                    ..valid()
                },
                "OTP_AUTH_OTP_RESEND_COOLDOWN_SECONDS",
            ),
            (
                Config {
                    verify_failures_per_ip_per_hour: 0,
                    ..valid()
                },
                "OTP_AUTH_VERIFY_FAILURES_PER_IP_PER_HOUR",
            ),
            (
                Config {
                    refresh_reuse_interval_seconds: 61,
                    ..valid()
                },
                "OTP_AUTH_REFRESH_REUSE_INTERVAL_SECONDS",
            ),
            (
                Config {
                    max_sessions_per_user: 0,
                    ..valid()
                },
                "OTP_AUTH_MAX_SESSIONS_PER_USER",
            ),
            (
                Config {
                    max_sessions_per_user: 1001,
                    ..valid()
                },
                "OTP_AUTH_MAX_SESSIONS_PER_USER",
            ),
            (
                Config {
                    redis_min_replicas_ack: 17,
                    ..valid()
                },
                "OTP_AUTH_REDIS_MIN_REPLICAS_ACK",
            ),
            (
                Config {
                    session_max_days: 3651,
                    ..valid()
                },
                "OTP_AUTH_SESSION_MAX_DAYS",
            ),
            (
                Config {
                    cookie_name: "bad name".into(),
                    ..valid()
                },
                "OTP_AUTH_COOKIE_NAME",
            ),
            (
                Config {
                    cookie_path: "auth".into(),
                    ..valid()
                },
                "OTP_AUTH_COOKIE_PATH",
            ),
            (
                Config {
                    cookie_samesite: SameSite::None,
                    cookie_secure: false,
                    ..valid()
                },
                "OTP_AUTH_COOKIE_SAMESITE",
            ),
            (
                Config {
                    trusted_proxies: vec!["nope".into()],
                    ..valid()
                },
                "OTP_AUTH_TRUSTED_PROXIES",
            ),
            (
                Config {
                    allowed_origins: vec!["app.example.com".into()],
                    ..valid()
                },
                "OTP_AUTH_ALLOWED_ORIGINS",
            ),
            (
                Config {
                    mail_from: "not an address".into(),
                    ..valid()
                },
                "OTP_AUTH_MAIL_FROM",
            ),
            (
                Config {
                    jwt_algorithm: JwtAlgorithm::RS256,
                    ..valid()
                },
                "OTP_AUTH_JWT_PRIVATE_KEY_FILE",
            ),
            (
                // The private key alone: the secret would be unused, the code key missing.
                Config {
                    jwt_algorithm: JwtAlgorithm::ES256,
                    jwt_private_key_file: Some("jwt.pem".into()),
                    ..valid()
                },
                "OTP_AUTH_JWT_SECRET is set, but",
            ),
            (
                Config {
                    jwt_algorithm: JwtAlgorithm::EdDSA,
                    jwt_private_key_file: Some("jwt.pem".into()),
                    jwt_secret: None,
                    ..valid()
                },
                "OTP_AUTH_CODE_SECRET is required with OTP_AUTH_JWT_ALGORITHM EdDSA",
            ),
            (
                Config {
                    public_url: Some("https://app.example.com/auth/".into()),
                    ..valid()
                },
                "OTP_AUTH_PUBLIC_URL",
            ),
            (
                Config {
                    mail_default_language: "en_US".into(),
                    ..valid()
                },
                "OTP_AUTH_MAIL_DEFAULT_LANGUAGE",
            ),
            (
                Config {
                    jwt_previous_public_key_files: vec!["old.pem".into()],
                    ..valid()
                },
                "OTP_AUTH_JWT_PREVIOUS_PUBLIC_KEY_FILES",
            ),
            (
                Config {
                    otp_key_prefix: String::new(),
                    ..valid()
                },
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
    fn weak_and_placeholder_secrets_refuse_to_start() {
        for bad in [
            "short",
            "your-secret-key",
            "your-secret-key-here-change-it-please!!",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "abababababababababababababababababababab",
        ] {
            let c = Config {
                jwt_secret: Some(bad.into()),
                ..Config::default()
            };
            let e = c.validate().expect_err(bad);
            assert!(e.to_string().contains("OTP_AUTH_JWT_SECRET"), "{e}");
        }
        let e = Config::default().validate().unwrap_err();
        assert!(
            e.to_string().contains("OTP_AUTH_JWT_SECRET is not set"),
            "{e}"
        );
        let c = Config {
            code_secret: Some("tiny".into()),
            ..valid()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("OTP_AUTH_CODE_SECRET")
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let c = Config {
            smtp_password: Some("hunter2-smtp-password".into()),
            code_secret: Some("code-secret-0123456789abcdefghijklmnop".into()),
            redis_url: "redis://user:redispass@host:6379".into(),
            ..valid()
        };
        let shown = format!("{c:?}");
        for secret in [GOOD, "hunter2", "code-secret", "redispass"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("[set]"));
    }

    #[test]
    fn ephemeral_secret_is_strong() {
        let c = Config::default().with_ephemeral_jwt_secret();
        c.validate().expect("the random key passes validation");
        let d = Config::default().with_ephemeral_jwt_secret();
        assert_ne!(
            c.jwt_secret.as_ref().map(|s| s.expose_secret().to_owned()),
            d.jwt_secret.as_ref().map(|s| s.expose_secret().to_owned())
        );
    }
}
