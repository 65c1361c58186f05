//! The engine: request a code, verify it, refresh, log out, authenticate.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ipnet::IpNet;
use rand::Rng;
use serde::de::{DeserializeOwned, Visitor};
use serde_json::{Map, Value};

use crate::audit::{AuditAddress, AuditEvent, AuditKind, LoginMethod};
use crate::code::{AddressKey, Code, CodeHasher, CodeMac, IpKey, Purpose};
use crate::config::{CodeSettings, Config, ConfigError};
use crate::email::Email;
use crate::error::{BoxError, Error, TokenRejection};
use crate::glob::glob_match;
#[cfg(feature = "links")]
use crate::link::{LinkError, LinkSealer, link_url};
use crate::mailer::{Mailer, Message, MessageKind};
use crate::memory::MemoryStore;
use crate::metrics;
use crate::primitives::now_secs;
use crate::store::{
    AccessStatus, CallId, IssueOutcome, IssueRequest, Limits, NewSession, OtpStore, Renewal,
    Revocation, RevokedAccess, RotateOutcome, Rotation, SessionAuth, SessionInfo, TokenBlacklist,
    VerifyOutcome, VerifyRequest, new_session_id, session_subject_key, verify_then_open,
};
use crate::template::{MailTemplates, NoticeValues, TemplateValues, Templates};
use crate::token::{Claims, RESERVED_CLAIMS, TokenCodec, TokenType};

/// Application policy around logins, all optional.
///
/// A hook returns the application's own error (any `std::error::Error`, boxed, as `?`
/// does with a database error): the request then fails with [`Error::Hook`] (500), which
/// keeps it as its source for the log.
///
/// ```
/// use otp_core::{BoxError, ClientInfo, Email, Hooks};
///
/// #[derive(Debug)]
/// struct CompanyOnly;
///
/// #[async_trait::async_trait]
/// impl Hooks for CompanyOnly {
///     async fn allow(&self, email: &Email, _client: &ClientInfo) -> Result<bool, BoxError> {
///         Ok(email.domain() == "example.com")
///     }
/// }
/// ```
#[async_trait]
pub trait Hooks: fmt::Debug + Send + Sync + 'static {
    /// Whether `email` may log in, asked at `/request-otp`, at verification and at every
    /// refresh, with the client of that request (its IP after trusted-proxy resolution,
    /// its user agent): an IP policy or a CAPTCHA check (a token the front end sent in a
    /// header the application's middleware read) fits here. A refused address gets the
    /// same answer as any other at `/request-otp` (no account enumeration) but no mail, and
    /// can never verify; at a refresh, its session ends.
    async fn allow(&self, _email: &Email, _client: &ClientInfo) -> Result<bool, BoxError> {
        Ok(true)
    }

    /// The token subject (`sub`) for `email`: a user id. Defaults to the address.
    async fn subject(&self, email: &Email) -> Result<String, BoxError> {
        Ok(email.as_str().to_owned())
    }

    /// Extra claims for the access token (asked again at every refresh). The library's own
    /// claims (`sub`, `email`, `type`, `jti`, `sid`, `iat`, `exp`, `nbf`, `iss`, `aud`)
    /// cannot be overridden: such keys are dropped.
    async fn claims(&self, _subject: &str, _email: &Email) -> Result<Map<String, Value>, BoxError> {
        Ok(Map::new())
    }

    /// Moves the user `subject` from address `old` to `new`, asked at
    /// `/verify-email-change` once the code sent to `new` has been checked: update the
    /// user record (so that [`Hooks::subject`] gives `subject` for `new` from now on) and
    /// answer [`EmailChange::Changed`].
    ///
    /// Answer [`EmailChange::Refused`] for an address the application will not take
    /// (another user's, or not allowed): the client gets one 403 whatever the reason, and
    /// only after proving it holds `new`, so nobody learns which addresses are taken. The
    /// default answers [`EmailChange::Unsupported`] (403 too): with the default
    /// [`Hooks::subject`] the subject *is* the address, and it cannot change.
    ///
    /// A store failure after this hook answered gives the code back, so the same change
    /// may be asked again: answer `Changed` when the record already has it.
    async fn change_email(
        &self,
        _subject: &str,
        _old: &Email,
        _new: &Email,
    ) -> Result<EmailChange, BoxError> {
        Ok(EmailChange::Unsupported)
    }

    /// Every event of consequence, as it happens ([`AuditEvent`]: code sent or refused,
    /// logins, failed verifications, lockouts, refreshes, reuse, logouts, ended and evicted
    /// sessions). Called on the request path after the event's own work is done, so it
    /// must return quickly: hand slow work (a database, a mail) to a channel or a task. An
    /// error or a panic is logged at warn level and changes nothing for the request.
    fn audit(&self, _event: &AuditEvent) -> Result<(), BoxError> {
        Ok(())
    }
}

/// The answer of [`Hooks::change_email`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmailChange {
    /// The user record now has the new address.
    Changed,
    /// The application will not take the new address: [`Error::EmailChangeRefused`] (403).
    Refused,
    /// The application does not offer email changes: [`Error::EmailChangeUnsupported`]
    /// (403). The default.
    Unsupported,
}

/// The address a verified token carries; one that no longer parses is an invalid token.
fn token_email(email: &str) -> Result<Email, Error> {
    Email::parse(email).map_err(|_| Error::Unauthorized(TokenRejection::Invalid))
}

/// The client of the application's own calls (no request).
const NO_CLIENT: ClientInfo = ClientInfo {
    ip: None,
    user_agent: None,
    accept_language: None,
};

/// What a builder method takes: a part by value, or an `Arc` of one that is already
/// shared (`Arc<MyStore>`, `Arc<dyn OtpStore>`). An `Arc` is kept as it is, never wrapped
/// again. One value for both stores goes to [`OtpAuthBuilder::stores`], which lets a store
/// that can ([`OtpStore::opens_sessions`]) make verify-otp a single store call.
pub trait IntoShared<T: ?Sized> {
    /// The part, shared.
    fn into_shared(self) -> Arc<T>;
}

/// `IntoShared` for a trait: its values, `Arc`s of them and the `Arc<dyn …>` itself.
macro_rules! into_shared {
    ($($tr:ident),*) => {$(
        impl<S: $tr> IntoShared<dyn $tr> for S {
            fn into_shared(self) -> Arc<dyn $tr> {
                Arc::new(self)
            }
        }
        impl<S: $tr> IntoShared<dyn $tr> for Arc<S> {
            fn into_shared(self) -> Arc<dyn $tr> {
                self
            }
        }
        impl IntoShared<dyn $tr> for Arc<dyn $tr> {
            fn into_shared(self) -> Arc<dyn $tr> {
                self
            }
        }
    )*};
}
into_shared!(OtpStore, TokenBlacklist, Mailer, Hooks);

/// What [`OtpAuthBuilder::stores`] takes: one value serving as both stores, by value or
/// as an `Arc` (kept as it is).
pub trait IntoSharedStores {
    /// Both halves, pointing at the one value.
    fn into_shared_stores(self) -> (Arc<dyn OtpStore>, Arc<dyn TokenBlacklist>);
}

impl<S: OtpStore + TokenBlacklist> IntoSharedStores for S {
    fn into_shared_stores(self) -> (Arc<dyn OtpStore>, Arc<dyn TokenBlacklist>) {
        Arc::new(self).into_shared_stores()
    }
}

impl<S: OtpStore + TokenBlacklist> IntoSharedStores for Arc<S> {
    fn into_shared_stores(self) -> (Arc<dyn OtpStore>, Arc<dyn TokenBlacklist>) {
        (self.clone(), self)
    }
}

/// The hooks used when none are given: everyone is allowed, the subject is the address.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultHooks;

impl Hooks for DefaultHooks {}

/// What the engine knows about the client making a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's IP, after trusted-proxy resolution.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
    /// The `Accept-Language` header, if any: it chooses the language of the login mail.
    pub accept_language: Option<String>,
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

    /// The claims the application's [`Hooks::claims`] added, as the application's own type
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

/// The login engine. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct OtpAuth {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    codec: TokenCodec,
    hasher: CodeHasher,
    limits: Limits,
    store: Arc<dyn OtpStore>,
    blacklist: Arc<dyn TokenBlacklist>,
    mailer: Arc<dyn Mailer>,
    hooks: Arc<dyn Hooks>,
    templates: MailTemplates,
    #[cfg(feature = "links")]
    link: LinkSealer,
    trusted_proxies: Vec<IpNet>,
    /// Smoothed mail delivery time in microseconds, to pace answers for refused addresses.
    mail_latency_us: AtomicU64,
    /// Whether the application gave its own hooks (which may have side effects, so they
    /// only ever see verified addresses).
    custom_hooks: bool,
    /// One value is both stores and says it opens a session with the code it consumes
    /// ([`OtpStore::opens_sessions`]): a login is one store operation.
    one_step_login: bool,
}

/// How long the answer for a refused address takes before any mail has been timed: about
/// what a remote SMTP submission takes, so that the first answers after a start are no
/// quicker for refused addresses than for real ones.
const PACING_FLOOR: Duration = Duration::from_millis(150);

/// The refresh token claim holding the session's absolute end (seconds since the epoch),
/// present when `OTP_AUTH_SESSION_MAX_DAYS` is set; carried from token to token.
pub(crate) const SESSION_END_CLAIM: &str = "sxp";

impl fmt::Debug for OtpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtpAuth")
            .field("config", &self.inner.config)
            .field("store", &self.inner.store)
            .field("blacklist", &self.inner.blacklist)
            .field("mailer", &self.inner.mailer)
            .finish_non_exhaustive()
    }
}

/// Builds an [`OtpAuth`]; see [`OtpAuth::builder`].
///
/// Every part is given the same way ([`IntoShared`]): by value, or as an `Arc` of one
/// (`Arc<MyStore>`, `Arc<dyn Mailer>`) when the application shares it too. A later
/// call replaces what an earlier one set, part by part, so the order of the calls does
/// not matter otherwise. A store and a mailer are required: the builder does not fall
/// back to the in-memory store, which forgets every session at restart and is not shared
/// between instances; choose it with [`OtpAuthBuilder::memory_store`].
#[derive(Debug)]
#[must_use]
pub struct OtpAuthBuilder {
    config: Config,
    store: Option<Arc<dyn OtpStore>>,
    blacklist: Option<Arc<dyn TokenBlacklist>>,
    mailer: Option<Arc<dyn Mailer>>,
    hooks: Option<Arc<dyn Hooks>>,
    templates: Option<MailTemplates>,
    english: Option<Templates>,
    /// Both stores came from one value ([`OtpAuthBuilder::stores`]).
    one_value: bool,
}

impl OtpAuthBuilder {
    /// The configuration the engine will be built with (to connect stores from it).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The code store (with [`OtpAuthBuilder::blacklist`], for stores kept apart).
    pub fn store(mut self, store: impl IntoShared<dyn OtpStore>) -> Self {
        self.store = Some(store.into_shared());
        self.one_value = false;
        self
    }

    /// The session store (with [`OtpAuthBuilder::store`], for stores kept apart).
    pub fn blacklist(mut self, blacklist: impl IntoShared<dyn TokenBlacklist>) -> Self {
        self.blacklist = Some(blacklist.into_shared());
        self.one_value = false;
        self
    }

    /// One value serving as both stores, as the in-memory and Redis stores do. A login
    /// is then one store operation when the store says it can
    /// ([`OtpStore::opens_sessions`]).
    pub fn stores(mut self, store: impl IntoSharedStores) -> Self {
        let (store, blacklist) = store.into_shared_stores();
        self.store = Some(store);
        self.blacklist = Some(blacklist);
        self.one_value = true;
        self
    }

    /// Both stores in this process's memory ([`MemoryStore`]): for development, tests and
    /// a single instance that may forget its sessions at restart.
    pub fn memory_store(self) -> Self {
        self.stores(MemoryStore::new())
    }

    /// The mailer.
    pub fn mailer(mut self, mailer: impl IntoShared<dyn Mailer>) -> Self {
        self.mailer = Some(mailer.into_shared());
        self
    }

    /// Application hooks (default: [`DefaultHooks`]).
    pub fn hooks(mut self, hooks: impl IntoShared<dyn Hooks>) -> Self {
        self.hooks = Some(hooks.into_shared());
        self
    }

    /// The English mail templates (the built-in default: [`Templates::default`]). With
    /// [`OtpAuthBuilder::mail_templates`] too, they replace the English set of those.
    pub fn templates(mut self, templates: Templates) -> Self {
        self.english = Some(templates);
        self
    }

    /// The mail templates of every language (default: [`MailTemplates::builtin`], English
    /// and German). `OTP_AUTH_MAIL_DEFAULT_LANGUAGE` must name one of them.
    pub fn mail_templates(mut self, templates: MailTemplates) -> Self {
        self.templates = Some(templates);
        self
    }

    /// Validates the configuration and builds the engine. A store (or both halves) and a
    /// mailer are required.
    pub fn build(self) -> Result<OtpAuth, ConfigError> {
        let config = self.config;
        config.validate()?;
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let code_secret = config.code_key()?;
        let codec = TokenCodec::from_config(&config)?;
        #[cfg(not(feature = "links"))]
        if config.http.public_url.is_some() {
            tracing::warn!(
                "{} is set, but otp-core is built without its `links` feature: the login \
                 mail carries the code only",
                crate::config::HttpSettings::VARS.public_url
            );
        }
        let mut templates = self.templates.unwrap_or_default();
        if let Some(english) = self.english {
            templates = templates.with_language("en", english);
        }
        let templates = templates.with_default_language(&config.mail.default_language)?;
        let mailer = self.mailer.ok_or_else(|| {
            ConfigError::one(
                "no mailer given to OtpAuth::builder: add .mailer(...), such as \
                 otp_smtp::SmtpMailer or ConsoleMailer for development"
                    .to_owned(),
            )
        })?;
        let (store, blacklist) = match (self.store, self.blacklist) {
            (Some(s), Some(b)) => (s, b),
            (None, None) => {
                return Err(ConfigError::one(
                    "no store given to OtpAuth::builder: add .stores(...) with a Redis store \
                     (otp_redis::connect, otp_fred::connect) or your own, or choose the \
                     in-memory store explicitly with .memory_store() or \
                     .stores(MemoryStore::new()) (sessions are lost at restart and not shared \
                     between instances)"
                        .to_owned(),
                ));
            }
            (Some(_), None) => {
                return Err(ConfigError::one(
                    "OtpAuth::builder has a code store but no session store: add \
                     .blacklist(...), or give one value for both with .stores(...)"
                        .to_owned(),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::one(
                    "OtpAuth::builder has a session store but no code store: add \
                     .store(...), or give one value for both with .stores(...)"
                        .to_owned(),
                ));
            }
        };
        if config.codes.disable_local_auth && mailer.delivers_mail() {
            refuse_magic_code_for_everyone(&config)?;
        }
        if config.codes.disable_local_auth {
            let v = CodeSettings::VARS;
            tracing::warn!(
                patterns = ?config.codes.magic_emails,
                "{} is on: the code {} is accepted {} and no mail is sent for them. Never \
                 enable this in production.",
                v.disable_local_auth,
                Code::magic(config.codes.length).expose(),
                if config.codes.magic_emails.is_empty() {
                    "for every address".to_owned()
                } else {
                    format!("for the addresses matching {}", v.magic_emails)
                }
            );
        }
        let limits = Limits {
            per_address: config.limits.per_minute,
            per_address_hour: config.limits.per_hour,
            per_address_day: config.limits.per_day,
            resend_cooldown: Duration::from_secs(config.limits.resend_cooldown_seconds),
            per_ip: config.limits.per_ip_per_minute,
            request_window: Duration::from_secs(60),
            max_attempts: config.limits.max_verify_attempts,
            lockout: Duration::from_secs(config.limits.lockout_seconds),
            ip_failures: config.limits.verify_failures_per_ip_per_hour,
        };
        let one_step_login = self.one_value && store.opens_sessions();
        Ok(OtpAuth {
            inner: Arc::new(Inner {
                trusted_proxies: config.http.trusted_proxy_networks()?,
                hasher: CodeHasher::new(&code_secret),
                codec,
                limits,
                store,
                blacklist,
                mailer,
                custom_hooks: self.hooks.is_some(),
                one_step_login,
                hooks: self.hooks.unwrap_or_else(|| Arc::new(DefaultHooks)),
                templates,
                #[cfg(feature = "links")]
                link: LinkSealer::new(&code_secret),
                mail_latency_us: AtomicU64::new(0),
                config,
            }),
        })
    }
}

/// Next to a mailer that delivers mail, the magic code must be narrowed to test addresses
/// (patterns of a literal domain): otherwise anyone could sign in as anyone.
fn refuse_magic_code_for_everyone(config: &Config) -> Result<(), ConfigError> {
    let v = CodeSettings::VARS;
    let patterns = &config.codes.magic_emails;
    let broad: Vec<&String> = patterns
        .iter()
        .filter(|p| crate::glob::admits_every_domain(p))
        .collect();
    if !patterns.is_empty() && broad.is_empty() {
        return Ok(());
    }
    let why = if patterns.is_empty() {
        format!("{} is empty", v.magic_emails)
    } else {
        format!(
            "{} holds {broad:?}, which admits addresses of any domain",
            v.magic_emails
        )
    };
    Err(ConfigError::one(format!(
        "{} is on next to a mailer that delivers mail, and {why}: the code {} would sign \
         anyone in as anyone. Set {} to the test addresses it is for (patterns with a literal \
         domain, such as *@test.example.com), or turn {} off",
        v.disable_local_auth,
        Code::magic(config.codes.length).expose(),
        v.magic_emails,
        v.disable_local_auth,
    )))
}

impl OtpAuth {
    /// Starts building an engine on `config`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use otp_core::{CapturingMailer, Config, MemoryStore, OtpAuth};
    ///
    /// let mut config = Config::default();
    /// config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
    /// let auth = OtpAuth::builder(config)
    ///     .stores(MemoryStore::new())
    ///     .mailer(CapturingMailer::new())
    ///     .build()?;
    /// # Ok::<(), otp_core::ConfigError>(())
    /// ```
    pub fn builder(config: Config) -> OtpAuthBuilder {
        OtpAuthBuilder {
            config,
            store: None,
            blacklist: None,
            mailer: None,
            hooks: None,
            templates: None,
            english: None,
            one_value: false,
        }
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The trusted proxy networks (`OTP_AUTH_TRUSTED_PROXIES`, parsed).
    pub(crate) fn trusted_proxies(&self) -> &[IpNet] {
        &self.inner.trusted_proxies
    }

    fn parse_email(raw: &str) -> Result<Email, Error> {
        Email::parse(raw).map_err(|e| Error::InvalidRequest(format!("Invalid email address: {e}.")))
    }

    fn magic_applies(&self, email: &Email) -> bool {
        let c = &self.inner.config;
        c.codes.disable_local_auth
            && (c.codes.magic_emails.is_empty()
                || c.codes
                    .magic_emails
                    .iter()
                    .any(|p| glob_match(&p.to_ascii_lowercase(), email.as_str())))
    }

    /// Sends a new code to `email`, within the address and IP limits.
    ///
    /// Succeeds the same way whether or not the address is known or allowed. Fails with
    /// [`Error::RateLimited`] or [`Error::LockedOut`] (429), [`Error::StoreUnavailable`] or
    /// [`Error::MailUnavailable`] (503), [`Error::MailRejected`] (502).
    pub async fn request_code(&self, email: &str, client: &ClientInfo) -> Result<(), Error> {
        let email = Self::parse_email(email)?;
        self.send_code(&email, Purpose::Login, client).await
    }

    /// Sends a fresh code for a re-authentication to the address of the signed-in user of
    /// `access_token`, under the same limits as [`OtpAuth::request_code`] (one budget per
    /// address, whatever the purpose). A new code of any purpose replaces the address's
    /// pending one. Fails like `request_code`, and with [`Error::Unauthorized`] (401)
    /// without a valid access token.
    pub async fn request_reauthentication(
        &self,
        access_token: &str,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let user = self.authenticate(access_token).await?;
        let email = token_email(&user.email)?;
        let purpose = Purpose::Reauthentication {
            subject: &user.subject,
        };
        self.send_code(&email, purpose, client).await
    }

    /// Checks a re-authentication code of the signed-in user of `access_token` and, on
    /// success, records the authentication on the session (its `auth_time` is now) and
    /// signs a new access token on the same session that carries it. The refresh token is
    /// unchanged, and later refreshes keep the new `auth_time`.
    ///
    /// A login code (or one sent for another user) never passes. Fails with
    /// [`Error::InvalidCode`] (400), [`Error::LockedOut`] (429), [`Error::InvalidRequest`]
    /// (422) for a malformed code, [`Error::Unauthorized`] (401) without a valid access
    /// token.
    pub async fn verify_reauthentication(
        &self,
        access_token: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<AccessToken, Error> {
        let i = &*self.inner;
        let user = self.authenticate(access_token).await?;
        let code = self.parse_code(code)?;
        let email = token_email(&user.email)?;
        let method = "reauthentication";
        let purpose = Purpose::Reauthentication {
            subject: &user.subject,
        };
        let req = self
            .verify_signed_in(&email, purpose, &code, client, method)
            .await?;
        let auth = SessionAuth {
            at: now_secs(),
            method: LoginMethod::Code,
        };
        let renewed = async {
            let renewed = i
                .blacklist
                .renew_session(&Renewal {
                    sid: user.session_id.clone(),
                    auth,
                    expires_at: 0,
                })
                .await?;
            if !renewed {
                return Err(Error::Unauthorized(TokenRejection::Revoked));
            }
            // With an absolute session end the new token may not outlive the old one: the
            // end is not known here (only refresh tokens carry it).
            let cap = (i.config.sessions.max_days > 0).then_some(user.claims.exp);
            self.sign_access(&user.subject, &email, &user.session_id, cap, auth)
                .await
        };
        match renewed.await {
            Ok(access) => {
                metrics::verification(method, "success");
                tracing::info!(address = %req.address, "re-authentication verified");
                self.audit(AuditKind::Reauthenticated, client, |e| {
                    e.subject = Some(user.subject.clone());
                    e.session_id = Some(user.session_id.clone());
                });
                Ok(access)
            }
            Err(e) => {
                // A session that ended meanwhile keeps nothing to give back to.
                if !matches!(e, Error::Unauthorized(_))
                    && let Err(r) = i.store.restore(&req).await
                {
                    tracing::error!(
                        address = %req.address,
                        error = %r,
                        "a verified code could not be restored after its re-authentication failed"
                    );
                }
                Err(e)
            }
        }
    }

    /// Starts an email change for the signed-in user of `access_token`: sends a code to
    /// `new_email` (under that address's limits, like [`OtpAuth::request_code`]). The
    /// user must have authenticated within `OTP_AUTH_EMAIL_CHANGE_MAX_AGE_SECONDS`
    /// ([`Error::InsufficientAuthentication`], 401 with RFC 9470's challenge, otherwise:
    /// re-authenticate first).
    ///
    /// Succeeds the same way whether or not the new address is another user's: only
    /// [`OtpAuth::verify_email_change`] asks the application. Fails with
    /// [`Error::InvalidRequest`] (422) for a malformed address or the current one,
    /// [`Error::Unauthorized`] (401) without a valid access token, and like `request_code`.
    pub async fn request_email_change(
        &self,
        access_token: &str,
        new_email: &str,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let user = self.authenticate(access_token).await?;
        user.require_recent(self.inner.config.sessions.email_change_max_age_seconds)?;
        let new = Self::parse_email(new_email)?;
        if new.as_str() == user.email {
            return Err(Error::InvalidRequest(
                "The new address is the current one.".to_owned(),
            ));
        }
        let purpose = Purpose::EmailChange {
            subject: &user.subject,
        };
        self.send_code(&new, purpose, client).await
    }

    /// Completes an email change: checks the code [`OtpAuth::request_email_change`] sent to
    /// `new_email`, lets the application move its user ([`Hooks::change_email`]), mails the
    /// old address a notice (no code, no link; a failure to send it is logged and changes
    /// nothing for the request), and answers new tokens with the new `email` and the same
    /// `sub` (`auth_time` now: the code proved the new address).
    ///
    /// Every session of the user ends, the one of `access_token` included: all their
    /// tokens carry the old address. The new tokens open a session in its place, with the
    /// same absolute end under `OTP_AUTH_SESSION_MAX_DAYS`.
    ///
    /// A code of another purpose, or one sent for another user, never passes. Fails with
    /// [`Error::InvalidCode`] (400), [`Error::LockedOut`] (429), [`Error::InvalidRequest`]
    /// (422) for a malformed address or code, [`Error::Unauthorized`] (401) without a
    /// valid access token, [`Error::EmailChangeRefused`] or
    /// [`Error::EmailChangeUnsupported`] (403) as the hook answers. When the store fails
    /// (503) the code is given back, so the client can retry: the hook is then asked the
    /// same change again, and the old address told again.
    pub async fn verify_email_change(
        &self,
        access_token: &str,
        new_email: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, Error> {
        let i = &*self.inner;
        let user = self.authenticate(access_token).await?;
        let new = Self::parse_email(new_email)?;
        let code = self.parse_code(code)?;
        let old = token_email(&user.email)?;
        let method = "email_change";
        let purpose = Purpose::EmailChange {
            subject: &user.subject,
        };
        let req = self
            .verify_signed_in(&new, purpose, &code, client, method)
            .await?;
        let req = &req;
        let restore = |e: Error| async move {
            // A session that ended meanwhile keeps nothing to give back to.
            if !matches!(e, Error::Unauthorized(_))
                && let Err(r) = i.store.restore(req).await
            {
                tracing::error!(
                    address = %req.address,
                    error = %r,
                    "a verified code could not be restored after its email change failed"
                );
            }
            e
        };
        let session_end = match self.session_end_of(&user).await {
            Ok(end) => end,
            Err(e) => return Err(restore(e).await),
        };
        let decision = i
            .hooks
            .change_email(&user.subject, &old, &new)
            .await
            .map_err(Error::Hook);
        let refused = match decision {
            Ok(EmailChange::Changed) => None,
            Ok(EmailChange::Refused) => Some(Error::EmailChangeRefused),
            Ok(EmailChange::Unsupported) => Some(Error::EmailChangeUnsupported),
            Err(e) => return Err(restore(e).await),
        };
        if let Some(e) = refused {
            metrics::verification(method, "refused");
            self.audit_address(
                AuditKind::VerificationFailed {
                    method: LoginMethod::Code,
                    reason: "refused",
                },
                &req.address,
                &new,
                client,
            );
            tracing::info!(address = %req.address, "email change refused by the application");
            return Err(e);
        }
        // The application's record has moved: the old address is told and the event
        // recorded whatever happens to the tokens.
        metrics::verification(method, "success");
        tracing::info!(address = %req.address, "email changed");
        self.send_email_changed_notice(&old, &new, client).await;
        match self
            .reopen_for_new_address(&user, &new, session_end, client)
            .await
        {
            Ok((pair, ended)) => {
                self.audit(AuditKind::EmailChanged, client, |e| {
                    e.subject = Some(user.subject.clone());
                    e.session_id = Some(pair.claims.sid.clone());
                    e.address = Some(AuditAddress::new(req.address.to_string(), new.clone()));
                });
                if ended > 0 {
                    metrics::logout("all");
                    self.audit(AuditKind::LoggedOutAll { sessions: ended }, client, |e| {
                        e.subject = Some(user.subject.clone());
                        e.session_id = Some(user.session_id.clone());
                    });
                }
                Ok(pair)
            }
            Err(e) => Err(restore(e).await),
        }
    }

    /// The store's request to check `code` of `purpose` for `email`.
    fn verify_request(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        code: &Code,
        client: &ClientInfo,
    ) -> VerifyRequest {
        let i = &*self.inner;
        VerifyRequest {
            address: i.hasher.address_key(email),
            code_mac: i.hasher.code_mac(purpose, email, code),
            ip: client.ip.map(IpKey::new),
            limits: i.limits,
            code_ttl: Duration::from_secs(i.config.codes.expiry_seconds),
            call: CallId::random(),
        }
    }

    /// Checks a signed-in user's `code` of `purpose` for `email` (a re-authentication or an
    /// email change), counted and audited under `method`; the spent request on success. An
    /// address the allow hook refuses spends its code and gets [`Error::InvalidCode`].
    async fn verify_signed_in(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        code: &Code,
        client: &ClientInfo,
        method: &'static str,
    ) -> Result<VerifyRequest, Error> {
        let i = &*self.inner;
        let req = self.verify_request(email, purpose, code, client);
        let allowed = i.hooks.allow(email, client).await.map_err(Error::Hook)?;
        let outcome = i.store.verify(&req).await?;
        if outcome != VerifyOutcome::Verified {
            return Err(self.not_verified(outcome, method, &req, email, client));
        }
        if !allowed {
            metrics::verification(method, "refused");
            tracing::info!(address = %req.address, method, "refused by the allow hook");
            return Err(Error::InvalidCode);
        }
        Ok(req)
    }

    /// The absolute end of `user`'s session under `OTP_AUTH_SESSION_MAX_DAYS` (counted
    /// from its login), or `None` without one. Asks the store only when there is one; a
    /// session that is no longer live is a 401.
    async fn session_end_of(&self, user: &CurrentUser) -> Result<Option<u64>, Error> {
        let sessions = &self.inner.config.sessions;
        if sessions.max_days == 0 {
            return Ok(None);
        }
        let live = self.sessions_of(&user.subject).await?;
        let current = live
            .iter()
            .find(|s| s.sid == user.session_id)
            .ok_or(Error::Unauthorized(TokenRejection::Revoked))?;
        Ok(sessions.end_from(current.created_at))
    }

    /// Ends every session of `user` (all their tokens carry the old address) and opens one
    /// for `new`, ending by `session_end`; the new tokens, and how many sessions ended.
    async fn reopen_for_new_address(
        &self,
        user: &CurrentUser,
        new: &Email,
        session_end: Option<u64>,
        client: &ClientInfo,
    ) -> Result<(TokenPair, u32), Error> {
        let i = &*self.inner;
        let auth = SessionAuth {
            at: now_secs(),
            method: LoginMethod::Code,
        };
        let (pair, session) = self
            .new_session(&user.subject, new, session_end, auth, client)
            .await?;
        let ended = i.blacklist.revoke_all(&session.subject_key).await?;
        i.blacklist.create_session(&session).await?;
        Ok((pair, ended))
    }

    /// Mails `old` that the account moved to `new` (masked), in the request's language.
    /// A failure is logged: the change is done.
    async fn send_email_changed_notice(&self, old: &Email, new: &Email, client: &ClientInfo) {
        let i = &*self.inner;
        let (language, templates) = i.templates.select(client.accept_language.as_deref());
        let masked = new.masked();
        let rendered = templates.render_email_changed(&NoticeValues {
            app_name: &i.config.mail.from_name,
            email: old.as_str(),
            new_email: &masked,
        });
        let message = Message {
            to: old.clone(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            kind: MessageKind::EmailChanged,
            code: None,
            link: None,
            language: language.to_owned(),
        };
        let started = Instant::now();
        match i.mailer.send(&message).await {
            Ok(()) => {
                metrics::mail_sent();
                self.record_mail_latency(started.elapsed());
            }
            Err(e) => {
                metrics::mail_failed(match e {
                    crate::mailer::MailError::Permanent(_) => "rejected",
                    _ => "unavailable",
                });
                tracing::warn!(
                    address = %i.hasher.address_key(old),
                    error = %e.redacted(),
                    "the notice of an email change could not be sent to the old address"
                );
            }
        }
    }

    /// Sends a code for `purpose` to `email`, within its limits.
    async fn send_code(
        &self,
        email: &Email,
        purpose: Purpose<'_>,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let i = &*self.inner;
        metrics::code_requested();
        let address = i.hasher.address_key(email);
        let allowed = i.hooks.allow(email, client).await.map_err(Error::Hook)?;
        let magic = allowed && self.magic_applies(email);
        let code = if magic {
            Code::magic(i.config.codes.length)
        } else {
            Code::generate(i.config.codes.length)
        };
        // A refused address still goes through the limits, with a code nobody knows, so it
        // costs and answers like any other.
        let code_mac = if allowed {
            i.hasher.code_mac(purpose, email, &code)
        } else {
            CodeMac::unguessable()
        };
        let outcome = i
            .store
            .issue(&IssueRequest {
                address: address.clone(),
                ip: client.ip.map(IpKey::new),
                code_mac,
                code_ttl: Duration::from_secs(i.config.codes.expiry_seconds),
                limits: i.limits,
                call: CallId::random(),
            })
            .await?;
        match outcome {
            IssueOutcome::Issued => {}
            IssueOutcome::AddressLimited { retry_after, limit } => {
                metrics::rate_limited(limit.as_str());
                self.audit_address(
                    AuditKind::CodeRefused {
                        limit: limit.as_str(),
                    },
                    &address,
                    email,
                    client,
                );
                tracing::info!(
                    address = %address,
                    limit = limit.as_str(),
                    "code request refused: address limit"
                );
                return Err(Error::RateLimited { retry_after });
            }
            IssueOutcome::IpLimited { retry_after } => {
                metrics::rate_limited("ip");
                self.audit_address(
                    AuditKind::CodeRefused { limit: "ip" },
                    &address,
                    email,
                    client,
                );
                tracing::info!(ip = ?client.ip, "code request refused: IP limit");
                return Err(Error::RateLimited { retry_after });
            }
            IssueOutcome::LockedOut { retry_after } => {
                metrics::rate_limited("lockout");
                self.audit_address(
                    AuditKind::CodeRefused { limit: "lockout" },
                    &address,
                    email,
                    client,
                );
                tracing::info!(address = %address, "code request refused: locked out");
                return Err(Error::LockedOut { retry_after });
            }
        }
        if !allowed {
            tracing::info!(address = %address, "code request for a refused address: no mail");
            self.pace_like_a_mail().await;
            return Ok(());
        }
        if magic {
            tracing::warn!(
                address = %address,
                "{}: magic code issued, no mail sent",
                CodeSettings::VARS.disable_local_auth
            );
            return Ok(());
        }
        #[cfg(feature = "links")]
        let link = i
            .config
            .http
            .public_url
            .as_deref()
            .filter(|_| purpose == Purpose::Login)
            .map(|url| link_url(url, &i.link.seal(email, &code, now_secs())));
        #[cfg(not(feature = "links"))]
        let link: Option<String> = None;
        let (language, templates) = i.templates.select(client.accept_language.as_deref());
        let values = TemplateValues {
            code: code.expose(),
            minutes: i.config.codes.expiry_seconds.div_ceil(60),
            app_name: &i.config.mail.from_name,
            email: email.as_str(),
            link: link.as_deref(),
        };
        let rendered = match purpose {
            Purpose::EmailChange { .. } => templates.render_email_change(&values),
            _ => templates.render(&values),
        };
        let message = Message {
            to: email.clone(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            kind: match purpose {
                Purpose::Login => MessageKind::Login,
                Purpose::Reauthentication { .. } => MessageKind::Reauthentication,
                Purpose::EmailChange { .. } => MessageKind::EmailChange,
            },
            code: Some(code),
            link,
            language: language.to_owned(),
        };
        let started = Instant::now();
        match i.mailer.send(&message).await {
            Ok(()) => {
                metrics::mail_sent();
                self.record_mail_latency(started.elapsed());
                tracing::info!(address = %address, "login code sent");
                self.audit_address(AuditKind::CodeSent, &address, email, client);
                Ok(())
            }
            Err(e) => {
                metrics::mail_failed(match e {
                    crate::mailer::MailError::Permanent(_) => "rejected",
                    _ => "unavailable",
                });
                tracing::warn!(
                    address = %address,
                    error = %e.redacted(),
                    "login code could not be sent"
                );
                // A code whose mail never left must not stay usable.
                if let Err(se) = i.store.discard(&address, &code_mac).await {
                    tracing::warn!(address = %address, error = %se, "discarding the unsent code failed");
                }
                Err(e.into())
            }
        }
    }

    fn record_mail_latency(&self, d: Duration) {
        let sample = d.as_micros().min(u128::from(u32::MAX)) as u64;
        let old = self.inner.mail_latency_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old * 7 + sample) / 8
        };
        self.inner.mail_latency_us.store(new, Ordering::Relaxed);
    }

    async fn pace_like_a_mail(&self) {
        let us = match self.inner.mail_latency_us.load(Ordering::Relaxed) {
            0 => PACING_FLOOR.as_micros() as u64,
            us => us,
        };
        let jitter = rand::rng().random_range(0.85..1.15);
        tokio::time::sleep(Duration::from_micros((us as f64 * jitter) as u64)).await;
    }

    /// Checks `code` for `email` and, on success, opens a session and issues its tokens.
    ///
    /// A malformed code is refused with [`Error::InvalidRequest`] (422) and not counted.
    /// A wrong, expired or used code gives [`Error::InvalidCode`] (400); a locked-out
    /// address [`Error::LockedOut`] (429).
    pub async fn verify_code(
        &self,
        email: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, Error> {
        let email = Self::parse_email(email)?;
        let code = self.parse_code(code)?;
        self.verify_pending(&email, &code, client, "code").await
    }

    fn parse_code(&self, code: &str) -> Result<Code, Error> {
        let length = self.inner.config.codes.length;
        Code::parse(code, length).ok_or_else(|| {
            Error::InvalidRequest(format!("The OTP must be exactly {length} digits."))
        })
    }

    /// Signs in with the token of a sign-in link: the code it carries is checked exactly
    /// like [`OtpAuth::verify_code`] (same attempts and lockout; either way spends both).
    /// A forged, altered or expired token, or one whose code is no longer pending, gives
    /// [`Error::InvalidLink`] (400).
    pub async fn verify_link(&self, token: &str, client: &ClientInfo) -> Result<TokenPair, Error> {
        let (email, code) = match self.open_link(token) {
            Ok(v) => v,
            Err(outcome) => {
                metrics::verification("link", outcome);
                self.audit(
                    AuditKind::VerificationFailed {
                        method: LoginMethod::Link,
                        reason: outcome,
                    },
                    client,
                    |_| {},
                );
                tracing::info!(outcome, "sign-in link refused");
                return Err(Error::InvalidLink);
            }
        };
        match self.verify_pending(&email, &code, client, "link").await {
            Err(Error::InvalidCode) => Err(Error::InvalidLink),
            other => other,
        }
    }

    /// The masked address a sign-in link would sign in (for its confirmation page), or
    /// `None` for a forged, altered or expired token. Checks nothing in the store.
    pub(crate) fn link_account(&self, token: &str) -> Option<String> {
        self.open_link(token).ok().map(|(email, _)| email.masked())
    }

    /// The address and code a sign-in link's token carries, or why it carries none
    /// (`expired_link`, `invalid_link`: the outcome counted in the metrics).
    #[cfg(feature = "links")]
    fn open_link(&self, token: &str) -> Result<(Email, Code), &'static str> {
        let i = &*self.inner;
        i.link
            .open(
                token,
                now_secs(),
                i.config.codes.expiry_seconds,
                i.config.codes.length,
            )
            .map_err(|e| match e {
                LinkError::Expired => "expired_link",
                LinkError::Invalid => "invalid_link",
            })
    }

    /// Without the `links` feature no token opens.
    #[cfg(not(feature = "links"))]
    fn open_link(&self, _token: &str) -> Result<(Email, Code), &'static str> {
        Err("invalid_link")
    }

    async fn verify_pending(
        &self,
        email: &Email,
        code: &Code,
        client: &ClientInfo,
        method: &'static str,
    ) -> Result<TokenPair, Error> {
        let i = &*self.inner;
        let address = i.hasher.address_key(email);
        let req = self.verify_request(email, Purpose::Login, code, client);
        // The policy may have changed since the code was sent: a refused address is checked
        // like any other (and spends its code), but never opens a session.
        if !i.hooks.allow(email, client).await.map_err(Error::Hook)? {
            let outcome = i.store.verify(&req).await?;
            if outcome == VerifyOutcome::Verified {
                metrics::verification(method, "refused");
                self.audit_address(
                    AuditKind::VerificationFailed {
                        method: LoginMethod::from_name(method),
                        reason: "refused",
                    },
                    &address,
                    email,
                    client,
                );
                tracing::info!(address = %address, "verification refused by the allow hook");
                return Err(Error::InvalidCode);
            }
            return Err(self.not_verified(outcome, method, &req, email, client));
        }
        if i.custom_hooks {
            // The application's hooks see only verified addresses (a `subject` hook may
            // create the user): the code is checked first, and if the hooks or the session
            // write fail afterwards, the code is given back.
            let outcome = i.store.verify(&req).await?;
            if outcome != VerifyOutcome::Verified {
                return Err(self.not_verified(outcome, method, &req, email, client));
            }
            let opened = async {
                let (pair, session) = self.prepare_login(email, client, method).await?;
                let evicted = i.blacklist.create_session(&session).await?;
                Ok::<_, Error>((pair, evicted))
            };
            return match opened.await {
                Ok((pair, evicted)) => {
                    self.logged_in(email, method, evicted, &pair, client);
                    Ok(pair)
                }
                Err(e) => {
                    if let Err(r) = i.store.restore(&req).await {
                        tracing::error!(
                            address = %address,
                            error = %r,
                            "a verified code could not be restored after its login failed"
                        );
                    }
                    Err(e)
                }
            };
        }
        // The built-in hooks are pure: the tokens are signed first, and the store checks the
        // code and records the session in one operation.
        let (pair, session) = self.prepare_login(email, client, method).await?;
        let login = if i.one_step_login {
            i.store.verify_and_open(&req, &session).await?
        } else {
            verify_then_open(&*i.store, &req, &session, &*i.blacklist).await?
        };
        if login.outcome != VerifyOutcome::Verified {
            return Err(self.not_verified(login.outcome, method, &req, email, client));
        }
        self.logged_in(email, method, login.evicted, &pair, client);
        Ok(pair)
    }

    /// The tokens and the session record of a new login of `email`.
    async fn prepare_login(
        &self,
        email: &Email,
        client: &ClientInfo,
        method: &'static str,
    ) -> Result<(TokenPair, NewSession), Error> {
        let i = &*self.inner;
        let subject = i.hooks.subject(email).await.map_err(Error::Hook)?;
        let now = now_secs();
        let auth = SessionAuth {
            at: now,
            method: LoginMethod::from_name(method),
        };
        let session_end = i.config.sessions.end_from(now);
        self.new_session(&subject, email, session_end, auth, client)
            .await
    }

    /// A new session of `subject` for `email`, authenticated by `auth` and ending by
    /// `session_end`: its tokens and the record the store keeps.
    async fn new_session(
        &self,
        subject: &str,
        email: &Email,
        session_end: Option<u64>,
        auth: SessionAuth,
        client: &ClientInfo,
    ) -> Result<(TokenPair, NewSession), Error> {
        let i = &*self.inner;
        let subject_key = i.hasher.subject_key(subject);
        let sid = new_session_id(&subject_key);
        let (pair, refresh) = self
            .issue_pair(subject, email, &sid, session_end, auth)
            .await?;
        let session = NewSession {
            sid,
            subject_key,
            refresh_jti: refresh.jti,
            expires_at: refresh.exp.max(pair.claims.exp),
            user_agent: client
                .user_agent
                .as_deref()
                .map(|ua| truncate(ua, 256).to_owned()),
            ip: client.ip.map(|ip| ip.to_canonical().to_string()),
            max_sessions: i.config.sessions.max_per_user,
            auth,
        };
        Ok((pair, session))
    }

    /// Counts, logs and audits a login that opened its session.
    fn logged_in(
        &self,
        email: &Email,
        method: &'static str,
        evicted: u32,
        pair: &TokenPair,
        client: &ClientInfo,
    ) {
        let address = self.inner.hasher.address_key(email);
        if self.magic_applies(email) {
            tracing::warn!(
                address = %address,
                "{}: login with the magic code",
                CodeSettings::VARS.disable_local_auth
            );
        }
        metrics::sessions_evicted(evicted);
        metrics::verification(method, "success");
        tracing::info!(
            address = %address,
            sessions_ended = evicted,
            "login verified, session opened"
        );
        let of_session = |e: &mut AuditEvent| {
            e.subject = Some(pair.claims.sub.clone());
            e.session_id = Some(pair.claims.sid.clone());
        };
        self.audit(
            AuditKind::LoginSucceeded {
                method: LoginMethod::from_name(method),
            },
            client,
            of_session,
        );
        if evicted > 0 {
            self.audit(
                AuditKind::SessionsEvicted { count: evicted },
                client,
                of_session,
            );
        }
    }

    /// Gives `kind` to the application's [`Hooks::audit`] with the client of the request,
    /// after `fill` has set the rest. Nothing is built with the built-in hooks. An error
    /// or a panic of the hook is logged and goes no further.
    fn audit(&self, kind: AuditKind, client: &ClientInfo, fill: impl FnOnce(&mut AuditEvent)) {
        let i = &*self.inner;
        if !i.custom_hooks {
            return;
        }
        let mut event = AuditEvent::new(kind);
        event.ip = client.ip;
        event.user_agent = client.user_agent.clone();
        fill(&mut event);
        let delivered =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| i.hooks.audit(&event)));
        match delivered {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                event = event.kind.name(),
                error = %e,
                "the audit hook failed; the request goes on"
            ),
            Err(_) => tracing::warn!(
                event = event.kind.name(),
                "the audit hook panicked; the request goes on"
            ),
        }
    }

    /// [`OtpAuth::audit`] of an event before a login: the address, as its pseudonym `key`
    /// (the store's key, which the caller already holds).
    fn audit_address(&self, kind: AuditKind, key: &AddressKey, email: &Email, client: &ClientInfo) {
        self.audit(kind, client, |e| {
            e.address = Some(AuditAddress::new(key.to_string(), email.clone()));
        });
    }

    /// The error for a verification that did not succeed, counted and logged.
    fn not_verified(
        &self,
        outcome: VerifyOutcome,
        method: &'static str,
        req: &VerifyRequest,
        email: &Email,
        client: &ClientInfo,
    ) -> Error {
        let address = &req.address;
        let reason = match outcome {
            VerifyOutcome::Verified => {
                return Error::Internal("a verified code was refused".to_owned());
            }
            VerifyOutcome::NoCode { .. } => "no_code",
            VerifyOutcome::Mismatch { .. } => "mismatch",
            VerifyOutcome::LockedOut { .. } => "locked_out",
            VerifyOutcome::IpLimited { .. } => "ip_limited",
        };
        metrics::verification(method, reason);
        let failed = AuditKind::VerificationFailed {
            method: LoginMethod::from_name(method),
            reason,
        };
        self.audit_address(failed, address, email, client);
        match outcome {
            VerifyOutcome::Mismatch { attempts_left } | VerifyOutcome::NoCode { attempts_left } => {
                if attempts_left == 0 {
                    metrics::lockout();
                    self.audit_address(AuditKind::LockedOut, address, email, client);
                }
                tracing::info!(address = %address, reason, attempts_left, "verification failed");
                Error::InvalidCode
            }
            VerifyOutcome::LockedOut { retry_after } => {
                tracing::info!(address = %address, "verification refused: locked out");
                Error::LockedOut { retry_after }
            }
            VerifyOutcome::IpLimited { retry_after } => {
                metrics::rate_limited("ip_failures");
                tracing::info!(ip = ?req.ip, "verification refused: too many wrong codes from this IP");
                Error::RateLimited { retry_after }
            }
            VerifyOutcome::Verified => Error::Internal("a verified code was refused".to_owned()),
        }
    }

    /// Signs a new access + refresh pair for `sid`; returns the pair and the refresh claims.
    /// Both end by `session_end` (the session's absolute end) when there is one.
    async fn issue_pair(
        &self,
        subject: &str,
        email: &Email,
        sid: &str,
        session_end: Option<u64>,
        auth: SessionAuth,
    ) -> Result<(TokenPair, Claims), Error> {
        let access = self
            .sign_access(subject, email, sid, session_end, auth)
            .await?;
        let refresh = self.sign_refresh(subject, email, sid, None, session_end)?;
        Ok((Self::pair(access, &refresh), refresh.claims))
    }

    fn pair(access: AccessToken, refresh: &crate::token::SignedToken) -> TokenPair {
        TokenPair {
            access_token: access.access_token,
            expires_in: access.expires_in,
            refresh_token: refresh.token.clone(),
            refresh_expires_in: refresh.claims.exp.saturating_sub(refresh.claims.iat),
            claims: access.claims,
        }
    }

    /// The application's claims for a new access token ([`Hooks::claims`]), the library's
    /// own dropped.
    async fn hook_claims(&self, subject: &str, email: &Email) -> Result<Map<String, Value>, Error> {
        let mut extra = self
            .inner
            .hooks
            .claims(subject, email)
            .await
            .map_err(Error::Hook)?;
        extra.retain(|k, _| !RESERVED_CLAIMS.contains(&k.as_str()));
        Ok(extra)
    }

    /// Signs an access token for `sid` carrying `auth`, ending by `end` when there is one.
    async fn sign_access(
        &self,
        subject: &str,
        email: &Email,
        sid: &str,
        end: Option<u64>,
        auth: SessionAuth,
    ) -> Result<AccessToken, Error> {
        let extra = self.hook_claims(subject, email).await?;
        self.sign_access_with(subject, email, sid, end, auth, extra)
    }

    fn sign_access_with(
        &self,
        subject: &str,
        email: &Email,
        sid: &str,
        end: Option<u64>,
        auth: SessionAuth,
        extra: Map<String, Value>,
    ) -> Result<AccessToken, Error> {
        let i = &*self.inner;
        let access_secs = i.config.tokens.access_expire_minutes * 60;
        let mut claims = i.codec.claims(
            TokenType::Access,
            subject,
            email.as_str(),
            sid,
            access_secs,
            extra,
        );
        if let Some(end) = end {
            claims.exp = claims.exp.min(end);
        }
        claims.auth_time = Some(auth.at);
        claims.amr = Some(auth.method.amr().iter().map(|m| (*m).to_owned()).collect());
        let expires_in = claims.exp.saturating_sub(claims.iat);
        let access = i.codec.sign(claims)?;
        Ok(AccessToken {
            access_token: access.token,
            expires_in,
            claims: access.claims,
        })
    }

    /// Signs a refresh token for `sid`: a new `jti`, or `jti` (the current token of the
    /// session, re-issued within the reuse interval).
    fn sign_refresh(
        &self,
        subject: &str,
        email: &Email,
        sid: &str,
        jti: Option<&str>,
        session_end: Option<u64>,
    ) -> Result<crate::token::SignedToken, Error> {
        let i = &*self.inner;
        let mut claims = i.codec.claims(
            TokenType::Refresh,
            subject,
            email.as_str(),
            sid,
            i.config.tokens.refresh_expire_days * 86_400,
            Map::new(),
        );
        if let Some(jti) = jti {
            claims.jti = jti.to_owned();
        }
        if let Some(end) = session_end {
            claims.exp = claims.exp.min(end);
            claims
                .extra
                .insert(SESSION_END_CLAIM.to_owned(), Value::from(end));
        }
        i.codec.sign(claims)
    }

    /// Exchanges a refresh token for a new pair, spending it (rotation). A spent token
    /// presented again revokes its whole session, except the immediate parent of the
    /// current token within `OTP_AUTH_REFRESH_REUSE_INTERVAL_SECONDS` of the rotation
    /// (racing tabs, a retry after a timeout): that gets the current token re-issued.
    ///
    /// `client` is the request's (for [`Hooks::allow`] and the audit events);
    /// `&ClientInfo::default()` when there is none.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<TokenPair, Error> {
        let result = self.refresh_inner(refresh_token, client).await;
        match &result {
            Ok((pair, reissued)) => {
                metrics::refresh(if *reissued { "reissued" } else { "success" });
                let kind = if *reissued {
                    AuditKind::ReuseGranted
                } else {
                    AuditKind::Refreshed
                };
                self.audit(kind, client, |e| {
                    e.subject = Some(pair.claims.sub.clone());
                    e.session_id = Some(pair.claims.sid.clone());
                });
            }
            Err(Error::Unauthorized(TokenRejection::Reused)) => metrics::refresh("reused"),
            Err(Error::Unauthorized(_)) => metrics::refresh("rejected"),
            Err(_) => {}
        }
        result.map(|(pair, _)| pair)
    }

    /// The new pair, and whether it re-issued the current token (reuse interval).
    async fn refresh_inner(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<(TokenPair, bool), Error> {
        let i = &*self.inner;
        let claims = i
            .codec
            .verify(refresh_token, TokenType::Refresh)
            .map_err(Error::Unauthorized)?;
        let email = token_email(&claims.email)?;
        if !i.hooks.allow(&email, client).await.map_err(Error::Hook)? {
            i.blacklist
                .revoke(&Revocation {
                    access: None,
                    sessions: vec![claims.sid.clone()],
                })
                .await?;
            return Err(Error::Unauthorized(TokenRejection::Revoked));
        }
        // A session from before OTP_AUTH_SESSION_MAX_DAYS was set starts its clock now.
        let session_end = claims
            .extra
            .get(SESSION_END_CLAIM)
            .and_then(Value::as_u64)
            .or_else(|| i.config.sessions.end_from(now_secs()));
        if session_end.is_some_and(|end| end <= now_secs()) {
            return Err(Error::Unauthorized(TokenRejection::Revoked));
        }
        // The application's claims first (a failing hook spends nothing), then the
        // rotation, which answers the session's last authentication for the access token.
        let extra = self.hook_claims(&claims.sub, &email).await?;
        let new_refresh = self.sign_refresh(&claims.sub, &email, &claims.sid, None, session_end)?;
        let access_secs = i.config.tokens.access_expire_minutes * 60;
        let access_end = session_end.map_or(now_secs() + access_secs, |end| {
            end.min(now_secs() + access_secs)
        });
        let outcome = i
            .blacklist
            .rotate_refresh(&Rotation {
                sid: claims.sid.clone(),
                presented_jti: claims.jti.clone(),
                new_jti: new_refresh.claims.jti.clone(),
                new_expires_at: new_refresh.claims.exp.max(access_end),
                reuse_interval: Duration::from_secs(i.config.sessions.reuse_interval_seconds),
            })
            .await?;
        let access = |auth| {
            self.sign_access_with(&claims.sub, &email, &claims.sid, session_end, auth, extra)
        };
        match outcome {
            RotateOutcome::Rotated { auth } => Ok((Self::pair(access(auth)?, &new_refresh), false)),
            RotateOutcome::Reissued { current_jti, auth } => {
                // The same lineage: the current token again, never a second branch.
                let current = self.sign_refresh(
                    &claims.sub,
                    &email,
                    &claims.sid,
                    Some(&current_jti),
                    session_end,
                )?;
                tracing::info!("refresh within the reuse interval: current token re-issued");
                Ok((Self::pair(access(auth)?, &current), true))
            }
            RotateOutcome::Reused => {
                tracing::warn!(
                    sid = %claims.sid,
                    "refresh token reuse detected: session revoked"
                );
                self.audit(AuditKind::ReuseDetected, client, |e| {
                    e.subject = Some(claims.sub.clone());
                    e.session_id = Some(claims.sid.clone());
                });
                Err(Error::Unauthorized(TokenRejection::Reused))
            }
            RotateOutcome::Unknown => Err(Error::Unauthorized(TokenRejection::Revoked)),
        }
    }

    /// Revokes the access token and ends the sessions of both tokens. Invalid, expired or
    /// missing tokens are skipped: logging out always succeeds unless the store is down.
    pub async fn logout(
        &self,
        access_token: Option<&str>,
        refresh_token: Option<&str>,
        client: &ClientInfo,
    ) -> Result<(), Error> {
        let i = &*self.inner;
        let mut revocation = Revocation::default();
        let mut subjects = Vec::new();
        if let Some(Ok(c)) = access_token.map(|t| i.codec.verify(t, TokenType::Access)) {
            subjects.push(c.sub.clone());
            revocation.sessions.push(c.sid.clone());
            revocation.access = Some(RevokedAccess {
                sid: c.sid,
                jti: c.jti,
                expires_at: c.exp,
            });
        }
        if let Some(Ok(c)) = refresh_token.map(|t| i.codec.verify(t, TokenType::Refresh))
            && !revocation.sessions.contains(&c.sid)
        {
            subjects.push(c.sub);
            revocation.sessions.push(c.sid);
        }
        if revocation != Revocation::default() {
            i.blacklist.revoke(&revocation).await?;
        }
        metrics::logout("session");
        for (sid, sub) in revocation.sessions.iter().zip(subjects) {
            self.audit(AuditKind::LoggedOut, client, |e| {
                e.subject = Some(sub);
                e.session_id = Some(sid.clone());
            });
        }
        Ok(())
    }

    /// Ends every session of the user of `access_token` (all devices).
    pub async fn logout_all(&self, access_token: &str, client: &ClientInfo) -> Result<u32, Error> {
        let user = self.authenticate(access_token).await?;
        let n = self
            .revoke_all_of(&user.subject, Some(&user.session_id), client)
            .await?;
        metrics::logout("all");
        tracing::info!(sessions = n, "logged out everywhere");
        Ok(n)
    }

    /// The live sessions of the user of `access_token`, with that user.
    pub async fn sessions(
        &self,
        access_token: &str,
    ) -> Result<(CurrentUser, Vec<SessionInfo>), Error> {
        let user = self.authenticate(access_token).await?;
        let sessions = self.sessions_of(&user.subject).await?;
        Ok((user, sessions))
    }

    /// Ends one session of the user of `access_token`. A session that is not one of the
    /// user's live sessions is [`Error::NotFound`] (404), whoever it belongs to. Returns
    /// whether it was the token's own session.
    pub async fn revoke_session(
        &self,
        access_token: &str,
        sid: &str,
        client: &ClientInfo,
    ) -> Result<bool, Error> {
        let user = self.authenticate(access_token).await?;
        if session_subject_key(sid) != self.inner.hasher.subject_key(&user.subject) {
            return Err(Error::NotFound);
        }
        if !self.end_live_session(sid).await? {
            return Err(Error::NotFound);
        }
        self.audit(AuditKind::SessionEnded, client, |e| {
            e.subject = Some(user.subject.clone());
            e.session_id = Some(sid.to_owned());
        });
        metrics::logout("one");
        tracing::info!("session ended by its user");
        Ok(sid == user.session_id)
    }

    /// The live sessions of `subject` (the token's `sub`, as [`Hooks::subject`] gave it), for
    /// the application's own administration: no access token is involved, so call it only
    /// on behalf of someone allowed to see them.
    pub async fn sessions_of(&self, subject: &str) -> Result<Vec<SessionInfo>, Error> {
        let key = self.inner.hasher.subject_key(subject);
        Ok(self.inner.blacklist.list_sessions(&key).await?)
    }

    /// Ends every session of `subject` (a user banned, an account deleted), for the
    /// application's own administration; returns how many were live. Their refresh tokens
    /// stop working at once and their access tokens at their next check.
    pub async fn end_all_sessions_of(&self, subject: &str) -> Result<u32, Error> {
        let n = self.revoke_all_of(subject, None, &NO_CLIENT).await?;
        tracing::info!(sessions = n, "every session of a subject ended");
        Ok(n)
    }

    /// Ends every session of `subject`; how many were live. Each caller logs its own event;
    /// the audit event is this one's (with the session of the request, if any).
    async fn revoke_all_of(
        &self,
        subject: &str,
        sid: Option<&str>,
        client: &ClientInfo,
    ) -> Result<u32, Error> {
        let key = self.inner.hasher.subject_key(subject);
        let n = self.inner.blacklist.revoke_all(&key).await?;
        self.audit(AuditKind::LoggedOutAll { sessions: n }, client, |e| {
            e.subject = Some(subject.to_owned());
            e.session_id = sid.map(str::to_owned);
        });
        Ok(n)
    }

    /// Ends the session `sid` (the `sid` claim, or [`SessionInfo::sid`]), whoever it belongs
    /// to, for the application's own administration. Returns whether it was live; an id
    /// that names no live session changes nothing.
    pub async fn end_session(&self, sid: &str) -> Result<bool, Error> {
        let ended = self.end_live_session(sid).await?;
        if ended {
            tracing::info!("a session ended by the application");
            self.audit(AuditKind::SessionEnded, &NO_CLIENT, |e| {
                e.session_id = Some(sid.to_owned());
            });
        }
        Ok(ended)
    }

    /// Ends `sid` if it is one of its subject's live sessions; whether it was.
    async fn end_live_session(&self, sid: &str) -> Result<bool, Error> {
        let subject_key = session_subject_key(sid);
        if subject_key.is_empty() {
            return Ok(false);
        }
        let live = self.inner.blacklist.list_sessions(subject_key).await?;
        if !live.iter().any(|s| s.sid == sid) {
            return Ok(false);
        }
        self.inner
            .blacklist
            .revoke(&Revocation {
                access: None,
                sessions: vec![sid.to_owned()],
            })
            .await?;
        Ok(true)
    }

    /// Ends every session of the user of `access_token` except its own; returns how many.
    pub async fn logout_others(
        &self,
        access_token: &str,
        client: &ClientInfo,
    ) -> Result<u32, Error> {
        let (user, sessions) = self.sessions(access_token).await?;
        let others: Vec<String> = sessions
            .into_iter()
            .map(|s| s.sid)
            .filter(|sid| *sid != user.session_id)
            .collect();
        let n = others.len() as u32;
        if n > 0 {
            self.inner
                .blacklist
                .revoke(&Revocation {
                    access: None,
                    sessions: others,
                })
                .await?;
        }
        metrics::logout("others");
        tracing::info!(sessions = n, "logged out other sessions");
        self.audit(AuditKind::LoggedOutOthers { sessions: n }, client, |e| {
            e.subject = Some(user.subject.clone());
            e.session_id = Some(user.session_id.clone());
        });
        Ok(n)
    }

    /// The JSON Web Key Set of the public keys that verify access tokens (`{"keys": []}`
    /// for the HMAC algorithms: a shared secret is never published).
    pub fn jwks(&self) -> serde_json::Value {
        self.inner.codec.jwks()
    }

    /// Checks an access token: signature, algorithm, type, expiry, issuer/audience, and
    /// revocation (one store call). Fails closed: an unreachable store is an error.
    pub async fn authenticate(&self, access_token: &str) -> Result<CurrentUser, Error> {
        let claims = self
            .inner
            .codec
            .verify(access_token, TokenType::Access)
            .map_err(Error::Unauthorized)?;
        match self
            .inner
            .blacklist
            .check_access(&claims.sid, &claims.jti)
            .await?
        {
            AccessStatus::Active => Ok(CurrentUser {
                subject: claims.sub.clone(),
                email: claims.email.clone(),
                session_id: claims.sid.clone(),
                claims,
            }),
            AccessStatus::Revoked => Err(Error::Unauthorized(TokenRejection::Revoked)),
        }
    }

    /// [`OtpAuth::authenticate`] on an `Authorization` header value (`Bearer <token>`).
    pub async fn authenticate_header(
        &self,
        authorization: Option<&str>,
    ) -> Result<CurrentUser, Error> {
        let token = bearer_token(authorization)?;
        self.authenticate(token).await
    }
}

/// Extracts the token of an `Authorization: Bearer <token>` header (scheme
/// case-insensitive). No header or another scheme → [`TokenRejection::Missing`] (no bearer
/// token was presented, RFC 6750 3.1); an empty token → [`TokenRejection::Invalid`].
pub(crate) fn bearer_token(authorization: Option<&str>) -> Result<&str, Error> {
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

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[path = "engine_tests.rs"]
pub(crate) mod tests;
