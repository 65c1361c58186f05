//! The application's policy around logins: [`Hooks`].

use std::fmt;

use async_trait::async_trait;
use serde_json::{Map, Value};

use super::ClientInfo;
use crate::email::Email;
use crate::error::BoxError;
use crate::event::Event;

/// Application policy around logins, all optional.
///
/// A hook returns the application's own error (any `std::error::Error`, boxed, as `?`
/// does with a database error): the request then fails with [`Error::Hook`](crate::Error::Hook) (500), which
/// keeps it as its source for the log.
///
/// ```
/// use otp_core::{ClientInfo, Hooks, hooks::Email};
/// use otp_core::hooks::BoxError;
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

    /// Every event, as it happens ([`Event`]: codes sent, withheld or refused, mail
    /// failures, logins, failed verifications, lockouts, refreshes, reuse, logouts, ended
    /// and evicted sessions): the same stream the metrics and the log lines come from.
    /// Called on the request path after the event's own work is done, so it must return
    /// quickly: hand slow work (a database, a mail) to a channel or a task. An error or a
    /// panic is logged at warn level and changes nothing for the request.
    fn on_event(&self, _event: &Event) -> Result<(), BoxError> {
        Ok(())
    }
}

/// The answer of [`Hooks::change_email`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmailChange {
    /// The user record now has the new address.
    Changed,
    /// The application will not take the new address: [`Error::EmailChangeRefused`](crate::Error::EmailChangeRefused) (403).
    Refused,
    /// The application does not offer email changes: [`Error::EmailChangeUnsupported`](crate::Error::EmailChangeUnsupported)
    /// (403). The default.
    Unsupported,
}

/// The hooks of an application that gave none: every address allowed, the address as
/// subject, no extra claims, no email changes, events only counted and logged.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultHooks;

impl Hooks for DefaultHooks {}
