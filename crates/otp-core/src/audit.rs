//! Audit events: every event of consequence, given to [`Hooks::audit`](crate::Hooks::audit)
//! as it happens, for a security log, notifications, or a SIEM.
//!
//! ```
//! use otp_core::audit::{AuditEvent, AuditKind};
//! use otp_core::{BoxError, Hooks};
//!
//! #[derive(Debug)]
//! struct AuditLog(std::sync::mpsc::SyncSender<AuditEvent>);
//!
//! impl Hooks for AuditLog {
//!     fn audit(&self, event: &AuditEvent) -> Result<(), BoxError> {
//!         if matches!(event.kind, AuditKind::ReuseDetected) {
//!             eprintln!("refresh token reuse: session {:?}", event.session_id);
//!         }
//!         // Hand slow work (a database, a mail) to a task of the application's own: the
//!         // hook runs on the request path.
//!         Ok(self.0.try_send(event.clone())?)
//!     }
//! }
//! ```

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use crate::email::Email;

/// How a login proved the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginMethod {
    /// The code typed in.
    Code,
    /// The sign-in link of the mail.
    Link,
}

impl LoginMethod {
    /// `code` or `link`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginMethod::Code => "code",
            LoginMethod::Link => "link",
        }
    }

    /// The access token's `amr` (RFC 8176) for a login this way: `["otp"]` for the code,
    /// `["otp", "link"]` for the link (it carries the same one-time code; `link` is this
    /// library's own value, outside RFC 8176's registry, saying how the code came back).
    pub fn amr(self) -> &'static [&'static str] {
        match self {
            LoginMethod::Code => &["otp"],
            LoginMethod::Link => &["otp", "link"],
        }
    }

    pub(crate) fn from_name(name: &str) -> LoginMethod {
        if name == "link" {
            LoginMethod::Link
        } else {
            LoginMethod::Code
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// A login code was mailed (not for an address the `allow` hook refuses: no mail goes
    /// there, and no event either).
    CodeSent,
    /// A code request was refused by a limit: `minute`, `hour`, `day`, `cooldown` (the
    /// address), `ip` (the client IP) or `lockout`.
    CodeRefused {
        /// The limit that refused.
        limit: &'static str,
    },
    /// A login succeeded and opened the event's session.
    LoginSucceeded {
        /// Code or link.
        method: LoginMethod,
    },
    /// A verification failed: `no_code` (nothing pending, expired or used), `mismatch` (a
    /// wrong code, counted), `locked_out`, `ip_limited`, `refused` (the `allow` hook),
    /// `invalid_link` or `expired_link`.
    VerificationFailed {
        /// Code or link.
        method: LoginMethod,
        /// Why.
        reason: &'static str,
    },
    /// The wrong code that used the address's last attempt: it is locked out now.
    LockedOut,
    /// A refresh token was rotated.
    Refreshed,
    /// The parent of the current refresh token was presented within the reuse interval:
    /// the current one was re-issued (racing tabs, a retry).
    ReuseGranted,
    /// A signed-in user proved the address again (`/verify-reauthentication`): the
    /// session's `auth_time` is now.
    Reauthenticated,
    /// A signed-in user changed their address (`/verify-email-change`): the event's
    /// address is the new one, its session the one the change opened (the subject's
    /// sessions of the old address then end: a [`AuditKind::LoggedOutAll`] event).
    EmailChanged,
    /// A spent refresh token was presented: its whole session is revoked.
    ReuseDetected,
    /// `/logout`: the event's session ended.
    LoggedOut,
    /// Every session of the subject ended: `/logout-all`, or
    /// [`OtpAuth::end_all_sessions_of`](crate::OtpAuth::end_all_sessions_of).
    LoggedOutAll {
        /// How many were live.
        sessions: u32,
    },
    /// Every session of the subject but the event's ended (`/logout-others`).
    LoggedOutOthers {
        /// How many.
        sessions: u32,
    },
    /// One session ended by its user (`DELETE /sessions/{id}`) or by the application
    /// ([`OtpAuth::end_session`](crate::OtpAuth::end_session)).
    SessionEnded,
    /// A login pushed the subject past `OTP_AUTH_MAX_SESSIONS_PER_USER`: the least
    /// recently refreshed sessions ended.
    SessionsEvicted {
        /// How many.
        count: u32,
    },
}

impl AuditKind {
    /// A fixed name for logs and metrics: `code_sent`, `code_refused`, `login_succeeded`,
    /// `verification_failed`, `locked_out`, `refreshed`, `reuse_granted`, `reauthenticated`, `email_changed`,
    /// `reuse_detected`, `logged_out`, `logged_out_all`, `logged_out_others`, `session_ended`,
    /// `sessions_evicted`.
    pub fn name(&self) -> &'static str {
        match self {
            AuditKind::CodeSent => "code_sent",
            AuditKind::CodeRefused { .. } => "code_refused",
            AuditKind::LoginSucceeded { .. } => "login_succeeded",
            AuditKind::VerificationFailed { .. } => "verification_failed",
            AuditKind::LockedOut => "locked_out",
            AuditKind::Refreshed => "refreshed",
            AuditKind::ReuseGranted => "reuse_granted",
            AuditKind::Reauthenticated => "reauthenticated",
            AuditKind::EmailChanged => "email_changed",
            AuditKind::ReuseDetected => "reuse_detected",
            AuditKind::LoggedOut => "logged_out",
            AuditKind::LoggedOutAll { .. } => "logged_out_all",
            AuditKind::LoggedOutOthers { .. } => "logged_out_others",
            AuditKind::SessionEnded => "session_ended",
            AuditKind::SessionsEvicted { .. } => "sessions_evicted",
        }
    }
}

/// The address of an event that happened before a login (a code sent or refused, a failed
/// verification, a lockout): a pseudonym by default, the address itself only on request.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditAddress {
    pseudonym: String,
    email: Email,
}

impl AuditAddress {
    pub(crate) fn new(pseudonym: String, email: Email) -> Self {
        AuditAddress { pseudonym, email }
    }

    /// A stable keyed hash of the address (the one the store and the logs use): the same
    /// address gives the same pseudonym on every instance with the same key, and it cannot
    /// be turned back into the address.
    pub fn pseudonym(&self) -> &str {
        &self.pseudonym
    }

    /// The normalized address itself, for an application that maps it (to its user id, or
    /// to warn the user): keep it out of logs that should hold no personal data.
    pub fn email(&self) -> &Email {
        &self.email
    }
}

impl fmt::Debug for AuditAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditAddress")
            .field("pseudonym", &self.pseudonym)
            .field("email", &self.email)
            .finish()
    }
}

/// One event: what, who, which session, from where, when.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// The token subject (`sub`), once the user is known: logins, refreshes, logouts,
    /// ended sessions. `None` before a login.
    pub subject: Option<String>,
    /// The address of an event before a login ([`AuditAddress`]); `None` after.
    pub address: Option<AuditAddress>,
    /// The session the event is about, when there is one.
    pub session_id: Option<String>,
    /// The client's IP (after trusted-proxy resolution), when the event came from a
    /// request; `None` for the application's own calls.
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent`, when the event came from a request.
    pub user_agent: Option<String>,
    /// When.
    pub at: SystemTime,
}

impl AuditEvent {
    pub(crate) fn new(kind: AuditKind) -> Self {
        AuditEvent {
            kind,
            subject: None,
            address: None,
            session_id: None,
            ip: None,
            user_agent: None,
            at: SystemTime::now(),
        }
    }
}
