//! Administration: the application's own calls on any subject's sessions.

use super::{NO_CLIENT, OtpAuth};
use crate::email::Email;
use crate::error::Error;
use crate::event::{Event, EventKind};
use crate::store::SessionInfo;

/// Whom an administrator means: a user by the address they sign in with, or by their
/// tokens' subject (`sub`).
///
/// ```
/// use otp_core::flow::Account;
///
/// // One account, however the address is written: it is normalized as at login.
/// assert_eq!(Account::email("Hank@Example.COM")?, Account::email(" hank@example.com")?);
/// let by_subject = Account::subject("user-42");
/// # Ok::<(), otp_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// By address, normalized (trimmed, lowercase, domain in IDNA ASCII) as every login is,
    /// then mapped to its subject by [`Hooks::subject`](crate::Hooks::subject), as a login
    /// does (the normalized address itself by default).
    Email(Email),
    /// By the tokens' `sub`, exactly as [`Hooks::subject`](crate::Hooks::subject) gave it.
    Subject(String),
}

impl Account {
    /// The account of an address, normalized; [`Error::InvalidRequest`] (422) when it is
    /// not a valid address.
    pub fn email(address: &str) -> Result<Account, Error> {
        OtpAuth::parse_email(address).map(Account::Email)
    }

    /// The account of a subject (`sub`).
    pub fn subject(subject: impl Into<String>) -> Account {
        Account::Subject(subject.into())
    }
}

impl From<Email> for Account {
    fn from(email: Email) -> Account {
        Account::Email(email)
    }
}

/// The application's administration of sessions: [`OtpAuth::admin`]. No access token is
/// involved, so call it only on behalf of someone allowed to.
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a> {
    pub(super) auth: &'a OtpAuth,
}

impl Admin<'_> {
    /// The subject of `account`.
    async fn subject_of(&self, account: &Account) -> Result<String, Error> {
        match account {
            Account::Subject(s) => Ok(s.clone()),
            Account::Email(email) => {
                (self.auth.inner.hooks.subject(email).await).map_err(Error::Hook)
            }
        }
    }

    /// The live sessions of `account`.
    pub async fn sessions_of(&self, account: &Account) -> Result<Vec<SessionInfo>, Error> {
        let subject = self.subject_of(account).await?;
        self.auth.sessions_of(&subject).await
    }

    /// Ends every session of `account` (a user banned, an account deleted); how many were
    /// live. Their refresh tokens stop working at once and their access tokens at their
    /// next check. By address, the address's known devices are forgotten too.
    pub async fn end_all_sessions_of(&self, account: &Account) -> Result<u32, Error> {
        let subject = self.subject_of(account).await?;
        if let Account::Email(email) = account {
            self.auth.forget_devices(email).await?;
        }
        self.auth.end_all_of(&subject, None, &NO_CLIENT).await
    }

    /// Ends the session `sid` (the `sid` claim, or [`SessionInfo::sid`]), whoever it
    /// belongs to. Returns whether it was live; an id that names no live session changes
    /// nothing.
    pub async fn end_session(&self, sid: &str) -> Result<bool, Error> {
        let ended = self.auth.end_live_session(sid).await?;
        if ended {
            let mut event = Event::new(EventKind::SessionEnded, &NO_CLIENT);
            event.session_id = Some(sid.to_owned());
            self.auth.emit(&event);
        }
        Ok(ended)
    }
}
