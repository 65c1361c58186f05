//! Building an [`OtpAuth`]: its parts, checked once.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use super::{DefaultHooks, Hooks, Inner, OtpAuth};
use crate::code::{Code, CodeHasher};
use crate::codec::TokenCodec;
use crate::config::{CodeSettings, Config, ConfigError};
#[cfg(feature = "links")]
use crate::link::LinkSealer;
use crate::mailer::Mailer;
use crate::mailer::template::{MailTemplates, Templates};
use crate::memory::MemoryStore;
use crate::store::{Limits, OtpStore, TokenBlacklist};

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
    pub(super) fn new(config: Config) -> Self {
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
        let (store, blacklist) = both_stores(self.store, self.blacklist)?;
        check_magic_code(&config, &*mailer)?;
        let one_step_login = self.one_value && store.opens_sessions();
        Ok(OtpAuth {
            inner: Arc::new(Inner {
                trusted_proxies: config.http.trusted_proxy_networks()?,
                hasher: CodeHasher::new(&code_secret),
                codec,
                limits: limits_of(&config),
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

/// The code store and the session store.
type StorePair = (Arc<dyn OtpStore>, Arc<dyn TokenBlacklist>);

/// Both halves of the store, or the error that says which is missing.
fn both_stores(
    store: Option<Arc<dyn OtpStore>>,
    blacklist: Option<Arc<dyn TokenBlacklist>>,
) -> Result<StorePair, ConfigError> {
    match (store, blacklist) {
        (Some(s), Some(b)) => Ok((s, b)),
        (None, None) => Err(ConfigError::one(
            "no store given to OtpAuth::builder: add .stores(...) with a Redis store \
                 (otp_redis::connect, otp_fred::connect) or your own, or choose the \
                 in-memory store explicitly with .memory_store() or \
                 .stores(MemoryStore::new()) (sessions are lost at restart and not shared \
                 between instances)"
                .to_owned(),
        )),
        (Some(_), None) => Err(ConfigError::one(
            "OtpAuth::builder has a code store but no session store: add \
                 .blacklist(...), or give one value for both with .stores(...)"
                .to_owned(),
        )),
        (None, Some(_)) => Err(ConfigError::one(
            "OtpAuth::builder has a session store but no code store: add \
                 .store(...), or give one value for both with .stores(...)"
                .to_owned(),
        )),
    }
}

/// The magic code: refused next to a mailer that delivers mail unless narrowed to test
/// addresses, and a warning whenever it is on.
fn check_magic_code(config: &Config, mailer: &dyn Mailer) -> Result<(), ConfigError> {
    if !config.codes.disable_local_auth {
        return Ok(());
    }
    if mailer.delivers_mail() {
        refuse_magic_code_for_everyone(config)?;
    }
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
    Ok(())
}

/// The store's limits, from the configuration.
fn limits_of(config: &Config) -> Limits {
    Limits {
        per_address: config.limits.per_minute,
        per_address_hour: config.limits.per_hour,
        per_address_day: config.limits.per_day,
        resend_cooldown: Duration::from_secs(config.limits.resend_cooldown_seconds),
        per_ip: config.limits.per_ip_per_minute,
        request_window: Duration::from_secs(60),
        max_attempts: config.limits.max_verify_attempts,
        lockout: Duration::from_secs(config.limits.lockout_seconds),
        ip_failures: config.limits.verify_failures_per_ip_per_hour,
        max_flows: config.flows.max_per_address,
        known_device_lifetime: Duration::from_secs(config.flows.known_device_days * 86_400),
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
