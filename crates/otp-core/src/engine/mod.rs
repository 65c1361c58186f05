//! The engine, one module per flow over a small shared core (this module): codes and
//! login ([`login`], [`codes`]), tokens and sessions ([`tokens`], [`sessions`]), step-up
//! ([`step_up`]), email change ([`email_change`]) and administration ([`admin`]). Every
//! outcome is one [`Event`](crate::event::Event), emitted with [`OtpAuth::emit`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use ipnet::IpNet;

use crate::code::{Code, CodeHasher};
use crate::codec::{TokenCodec, TokenType};
use crate::config::Config;
use crate::email::Email;
use crate::error::{Error, TokenRejection};
use crate::event::{self, Event};
use crate::glob::glob_match;
#[cfg(feature = "links")]
use crate::link::LinkSealer;
use crate::mailer::Mailer;
use crate::mailer::template::MailTemplates;
use crate::store::{AccessStatus, Limits, OtpStore, TokenBlacklist};

mod admin;
mod builder;
mod codes;
mod email_change;
mod flows;
mod hooks;
mod login;
mod sessions;
mod step_up;
mod tokens;
mod user;

pub use admin::{
    Account, AddressReport, Admin, MAX_SIGN_IN_SECS, MIN_SIGN_IN_SECS, RequestCounts, SignIn,
};
pub use builder::{IntoShared, IntoSharedStores, OtpAuthBuilder};
pub use email_change::ChangeEmail;
pub(crate) use flows::is_id as is_flow_id;
pub use hooks::{DefaultHooks, EmailChange, Hooks};
pub use sessions::Sessions;
pub use step_up::StepUp;
pub use user::{AccessToken, ClientInfo, CurrentUser, TokenPair};

/// The address a verified token carries; one that no longer parses is an invalid token.
fn token_email(email: &str) -> Result<Email, Error> {
    Email::parse(email).map_err(|_| Error::Unauthorized(TokenRejection::Invalid))
}

/// The client of the application's own calls (no request).
const NO_CLIENT: ClientInfo = ClientInfo {
    ip: None,
    user_agent: None,
    accept_language: None,
    flow: None,
    device: None,
};

/// What [`OtpAuth::check`] found.
#[derive(Debug)]
#[non_exhaustive]
pub struct Readiness {
    /// Whether the store answered.
    pub store: Result<(), crate::store::StoreError>,
    /// Whether the mail server answered.
    pub mail: Result<(), crate::mailer::MailError>,
}

impl Readiness {
    /// Both answered.
    pub fn is_ready(&self) -> bool {
        self.store.is_ok() && self.mail.is_ok()
    }
}

/// `store: ok; mail server: ok`, or each failure's reason.
impl fmt::Display for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.store {
            Ok(()) => f.write_str("store: ok")?,
            Err(e) => write!(f, "store: {e}")?,
        }
        match &self.mail {
            Ok(()) => f.write_str("; mail server: ok"),
            Err(e) => write!(f, "; mail server: {e}"),
        }
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

impl OtpAuth {
    /// Starts building an engine on `config`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use otp_core::{Config, OtpAuth, mailer::CapturingMailer, store::MemoryStore};
    ///
    /// let mut config = Config::default();
    /// config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
    /// let auth = OtpAuth::builder(config)
    ///     .stores(MemoryStore::new())
    ///     .mailer(CapturingMailer::new())
    ///     .build()?;
    /// # Ok::<(), otp_core::config::ConfigError>(())
    /// ```
    pub fn builder(config: Config) -> OtpAuthBuilder {
        OtpAuthBuilder::new(config)
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The live sessions of the user of an access token: list them, end one, all, or all
    /// but the token's own.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions { auth: self }
    }

    /// Step-up: a fresh code for a signed-in user, which renews the session's
    /// `auth_time`.
    pub fn step_up(&self) -> StepUp<'_> {
        StepUp { auth: self }
    }

    /// A signed-in user's change of address, proved by a code sent to the new one.
    pub fn email_change(&self) -> ChangeEmail<'_> {
        ChangeEmail { auth: self }
    }

    /// The application's own administration of sessions, by subject or session id: no
    /// access token is involved, so call it only on behalf of someone allowed to.
    pub fn admin(&self) -> Admin<'_> {
        Admin {
            auth: self,
            actor: None,
        }
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

    /// Whether the store and the mail server answer now ([`OtpStore::ready`],
    /// [`Mailer::ready`]): call it at start-up, to learn of a wrong address before the first
    /// user does, and from a readiness probe. Nothing is written and no mail is sent.
    ///
    /// ```
    /// # async fn demo(auth: otp_core::OtpAuth) {
    /// let readiness = auth.check().await;
    /// if !readiness.is_ready() {
    ///     tracing::warn!("not ready: {readiness}");
    /// }
    /// # }
    /// ```
    pub async fn check(&self) -> Readiness {
        let i = &*self.inner;
        Readiness {
            store: i.store.ready().await,
            mail: i.mailer.ready().await,
        }
    }

    /// The trusted proxy networks (`OTP_AUTH_TRUSTED_PROXIES`, parsed).
    pub(crate) fn trusted_proxies(&self) -> &[IpNet] {
        &self.inner.trusted_proxies
    }

    /// Emits `event`: its metrics, its log line, and the application's
    /// [`Hooks::on_event`] (only hooks the application gave are asked).
    pub(crate) fn emit(&self, event: &Event) {
        let i = &*self.inner;
        event::emit(event, i.custom_hooks.then_some(&*i.hooks));
    }

    fn parse_email(raw: &str) -> Result<Email, Error> {
        Email::parse(raw).map_err(|e| Error::InvalidRequest(format!("Invalid email address: {e}.")))
    }

    fn parse_code(&self, code: &str) -> Result<Code, Error> {
        let length = self.inner.config.codes.length;
        Code::parse(code, length).ok_or_else(|| {
            Error::InvalidRequest(format!("The OTP must be exactly {length} digits."))
        })
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
}

#[cfg(test)]
pub(crate) mod tests;
