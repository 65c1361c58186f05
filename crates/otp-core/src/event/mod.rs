//! What happened: one [`Event`] per outcome of every flow (a code sent or refused, a login,
//! a failed verification, a lockout, a refresh, a logout, …).
//!
//! Each event is emitted once, and everything else is derived from it in this module: the
//! counters of [`metrics`], the log line, and the application's
//! [`Hooks::on_event`] (a security log, notifications, a SIEM).
//!
//! ```
//! use otp_core::event::{Event, EventKind};
//! use otp_core::Hooks;
//! use otp_core::hooks::BoxError;
//!
//! #[derive(Debug)]
//! struct SecurityLog(std::sync::mpsc::SyncSender<Event>);
//!
//! impl Hooks for SecurityLog {
//!     fn on_event(&self, event: &Event) -> Result<(), BoxError> {
//!         if matches!(event.kind, EventKind::ReuseDetected) {
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
use crate::engine::{ClientInfo, Hooks};
use crate::error::MailError;
use crate::mailer::MessageKind;

pub mod metrics;

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
        self.verification().as_str()
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

    /// The verification a login this way is.
    pub fn verification(self) -> Verification {
        match self {
            LoginMethod::Code => Verification::Code,
            LoginMethod::Link => Verification::Link,
        }
    }
}

/// Which check of a code a verification event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verification {
    /// A login code typed in (`/verify-otp`).
    Code,
    /// A sign-in link (`/verify-link`).
    Link,
    /// A signed-in user's re-authentication (`/verify-reauthentication`).
    Reauthentication,
    /// The code sent to the new address of an email change (`/verify-email-change`).
    EmailChange,
}

impl Verification {
    /// `code`, `link`, `reauthentication` or `email_change`: the `method` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Code => "code",
            Verification::Link => "link",
            Verification::Reauthentication => "reauthentication",
            Verification::EmailChange => "email_change",
        }
    }
}

/// Why a verification failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// No code was pending (none sent, expired or used): counted like a wrong one.
    NoCode,
    /// A wrong code, counted.
    Mismatch,
    /// The address is locked out.
    LockedOut,
    /// The client IP has had too many wrong codes.
    IpLimited,
    /// The code was right, but the `allow` hook refuses the address, or the application
    /// refused the email change.
    Refused,
    /// A sign-in link that is forged or altered.
    InvalidLink,
    /// A sign-in link past its code's lifetime.
    ExpiredLink,
}

impl Failure {
    /// The `outcome` label: `no_code`, `mismatch`, `locked_out`, `ip_limited`, `refused`,
    /// `invalid_link` or `expired_link`.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::NoCode => "no_code",
            Failure::Mismatch => "mismatch",
            Failure::LockedOut => "locked_out",
            Failure::IpLimited => "ip_limited",
            Failure::Refused => "refused",
            Failure::InvalidLink => "invalid_link",
            Failure::ExpiredLink => "expired_link",
        }
    }
}

/// The limit that refused a code request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// The address's requests per minute.
    Minute,
    /// The address's requests per hour.
    Hour,
    /// The address's requests per day.
    Day,
    /// The address's resend cooldown.
    Cooldown,
    /// The client IP's requests per minute.
    Ip,
    /// The address's pending flows, none of which a new one may end.
    Flows,
}

impl Limit {
    /// The `scope` label: `address` (per minute), `address_hour`, `address_day`,
    /// `cooldown`, `ip` or `flows`.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Minute => "address",
            Limit::Hour => "address_hour",
            Limit::Day => "address_day",
            Limit::Cooldown => "cooldown",
            Limit::Ip => "ip",
            Limit::Flows => "flows",
        }
    }
}

impl From<crate::store::AddressLimit> for Limit {
    fn from(l: crate::store::AddressLimit) -> Limit {
        use crate::store::AddressLimit as A;
        match l {
            A::Minute => Limit::Minute,
            A::Hour => Limit::Hour,
            A::Day => Limit::Day,
            A::Cooldown => Limit::Cooldown,
            A::Flows => Limit::Flows,
        }
    }
}

/// Whether a verification presented the login flow its code was sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Binding {
    /// With its flow (the cookie, `flow_id` in the body, or a signed-in user's session):
    /// only that flow's code was compared and its failures counted.
    Bound,
    /// Without a flow (`OTP_AUTH_FLOW_BINDING=optional`): the address's most recent flow,
    /// under the address-wide failure budget.
    Unbound,
}

impl Binding {
    /// `bound` or `unbound`: the `binding` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Binding::Bound => "bound",
            Binding::Unbound => "unbound",
        }
    }
}

/// Whether a code request came from a known device of the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Device {
    /// A device that logged in to the address before (its cookie): its own request budget.
    Known,
    /// Any other: the address-wide budget.
    New,
}

impl Device {
    /// `known` or `new`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Known => "known",
            Device::New => "new",
        }
    }
}

/// Why a code request got no mail although it passed the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Withheld {
    /// The `allow` hook refuses the address: it answers like any other, with no mail.
    Refused,
    /// The development magic code (`OTP_AUTH_DISABLE_LOCAL_AUTH`) was issued instead.
    MagicCode,
    /// An administrator locked the address: it answers like any other, with no mail and no
    /// code stored.
    Locked,
}

impl Withheld {
    /// `refused`, `magic_code` or `locked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Withheld::Refused => "refused",
            Withheld::MagicCode => "magic_code",
            Withheld::Locked => "locked",
        }
    }
}

/// What an administrator did ([`EventKind::AdminAction`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdminAction {
    /// Read a user's sessions.
    SessionsListed,
    /// Ended every session of a user.
    SessionsEnded {
        /// How many were live.
        count: u32,
    },
    /// Ended one session (the event's).
    SessionEnded,
    /// Read an address's limit state.
    AddressRead,
    /// Locked an address.
    Locked {
        /// Until when (seconds since the epoch); `None` until unlocked.
        until: Option<u64>,
    },
    /// Unlocked an address (its lockout of unbound guesses too).
    Unlocked,
    /// Issued a sign-in for an address.
    SignInIssued {
        /// Its lifetime in seconds.
        expires_in: u64,
        /// Whether it was mailed (else handed to the application).
        mailed: bool,
    },
}

impl AdminAction {
    /// `sessions_listed`, `sessions_ended`, `session_ended`, `address_read`, `locked`,
    /// `unlocked`, `sign_in_issued`.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminAction::SessionsListed => "sessions_listed",
            AdminAction::SessionsEnded { .. } => "sessions_ended",
            AdminAction::SessionEnded => "session_ended",
            AdminAction::AddressRead => "address_read",
            AdminAction::Locked { .. } => "locked",
            AdminAction::Unlocked => "unlocked",
            AdminAction::SignInIssued { .. } => "sign_in_issued",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A code was mailed (a login, a re-authentication or an email change).
    CodeSent,
    /// A code request passed the limits but no mail went out (the event's address is the
    /// requested one; the client got the same answer as for a sent code).
    CodeWithheld {
        /// Why.
        reason: Withheld,
    },
    /// A code request was refused by a limit.
    CodeRefused {
        /// The limit that refused.
        limit: Limit,
    },
    /// A mail could not be sent: a code (which is then discarded) or the notice of an
    /// email change.
    MailFailed {
        /// Which mail.
        mail: MessageKind,
        /// The mailer's error, with addresses redacted.
        error: MailError,
    },
    /// The notice of an email change was mailed to the old address.
    NoticeSent,
    /// A login succeeded and opened the event's session.
    LoginSucceeded {
        /// Code or link.
        method: LoginMethod,
    },
    /// A verification failed.
    VerificationFailed {
        /// Which check.
        method: Verification,
        /// Why.
        reason: Failure,
        /// Wrong codes the address has left before a lockout, when the failure counted.
        attempts_left: Option<u32>,
    },
    /// The wrong code that used the address's last attempt: it is locked out now.
    LockedOut,
    /// A refresh token was rotated.
    Refreshed,
    /// The parent of the current refresh token was presented within the reuse interval:
    /// the current one was re-issued (racing tabs, a retry).
    ReuseGranted,
    /// A spent refresh token was presented: its whole session is revoked.
    ReuseDetected,
    /// A refresh token was refused: invalid, expired, revoked, or its address no longer
    /// allowed (then its session ends).
    RefreshRefused,
    /// A signed-in user proved the address again (`/verify-reauthentication`): the
    /// session's `auth_time` is now.
    Reauthenticated,
    /// A signed-in user changed their address (`/verify-email-change`): the event's
    /// address is the new one, its session the one the change opened (the subject's
    /// sessions of the old address then end: a [`EventKind::LoggedOutAll`] event).
    EmailChanged,
    /// `/logout`: the event's session ended.
    LoggedOut,
    /// Every session of the subject ended: `/logout-all`, an email change, or
    /// [`Admin::end_all_sessions_of`](crate::engine::Admin::end_all_sessions_of).
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
    /// ([`Admin::end_session`](crate::engine::Admin::end_session)).
    SessionEnded,
    /// A login pushed the subject past `OTP_AUTH_MAX_SESSIONS_PER_USER`: the least
    /// recently refreshed sessions ended.
    SessionsEvicted {
        /// How many.
        count: u32,
    },
    /// An administrator's action ([`Admin`](crate::engine::Admin)), for the audit trail:
    /// its account in the event's subject or address, its session in `session_id`.
    AdminAction {
        /// What was done.
        action: AdminAction,
        /// Who did it ([`Admin::by`](crate::engine::Admin::by)): the admin router gives the
        /// administrator's `sub`; `None` for the application's own calls.
        actor: Option<String>,
    },
}

impl EventKind {
    /// A fixed name for logs: `code_sent`, `code_withheld`, `code_refused`, `mail_failed`,
    /// `notice_sent`, `login_succeeded`, `verification_failed`, `locked_out`, `refreshed`,
    /// `reuse_granted`, `reuse_detected`, `refresh_refused`, `reauthenticated`,
    /// `email_changed`, `logged_out`, `logged_out_all`, `logged_out_others`,
    /// `session_ended`, `sessions_evicted`, `admin_action`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::CodeSent => "code_sent",
            EventKind::CodeWithheld { .. } => "code_withheld",
            EventKind::CodeRefused { .. } => "code_refused",
            EventKind::MailFailed { .. } => "mail_failed",
            EventKind::NoticeSent => "notice_sent",
            EventKind::LoginSucceeded { .. } => "login_succeeded",
            EventKind::VerificationFailed { .. } => "verification_failed",
            EventKind::LockedOut => "locked_out",
            EventKind::Refreshed => "refreshed",
            EventKind::ReuseGranted => "reuse_granted",
            EventKind::ReuseDetected => "reuse_detected",
            EventKind::RefreshRefused => "refresh_refused",
            EventKind::Reauthenticated => "reauthenticated",
            EventKind::EmailChanged => "email_changed",
            EventKind::LoggedOut => "logged_out",
            EventKind::LoggedOutAll { .. } => "logged_out_all",
            EventKind::LoggedOutOthers { .. } => "logged_out_others",
            EventKind::SessionEnded => "session_ended",
            EventKind::SessionsEvicted { .. } => "sessions_evicted",
            EventKind::AdminAction { .. } => "admin_action",
        }
    }

    /// The log line's sentence.
    fn message(&self) -> &'static str {
        match self {
            EventKind::CodeSent => "login code sent",
            EventKind::CodeWithheld {
                reason: Withheld::Refused,
            } => "code request for a refused address: no mail",
            EventKind::CodeWithheld {
                reason: Withheld::MagicCode,
            } => "magic code issued, no mail sent",
            EventKind::CodeWithheld {
                reason: Withheld::Locked,
            } => "code request for a locked address: no mail",
            EventKind::CodeRefused { .. } => "code request refused",
            EventKind::MailFailed {
                mail: MessageKind::EmailChanged,
                ..
            } => "the notice of an email change could not be sent to the old address",
            EventKind::MailFailed { .. } => "login code could not be sent",
            EventKind::NoticeSent => "email change notice sent",
            EventKind::LoginSucceeded { .. } => "login verified, session opened",
            EventKind::VerificationFailed { reason, .. } => match reason {
                Failure::NoCode | Failure::Mismatch => "verification failed",
                Failure::LockedOut => "verification refused: locked out",
                Failure::IpLimited => "verification refused: too many wrong codes from this IP",
                Failure::Refused => "verification refused by the application",
                Failure::InvalidLink | Failure::ExpiredLink => "sign-in link refused",
            },
            EventKind::LockedOut => "address locked out",
            EventKind::Refreshed => "refresh token rotated",
            EventKind::ReuseGranted => "refresh within the reuse interval: current token re-issued",
            EventKind::ReuseDetected => "refresh token reuse detected: session revoked",
            EventKind::RefreshRefused => "refresh token refused",
            EventKind::Reauthenticated => "re-authentication verified",
            EventKind::EmailChanged => "email changed",
            EventKind::LoggedOut => "logged out",
            EventKind::LoggedOutAll { .. } => "every session of a subject ended",
            EventKind::LoggedOutOthers { .. } => "logged out other sessions",
            EventKind::SessionEnded => "session ended",
            EventKind::SessionsEvicted { .. } => "sessions ended by the per-user cap",
            EventKind::AdminAction { .. } => "administrator action",
        }
    }

    /// Whether the log line is a warning (an attack or an outage is likely).
    fn is_warning(&self) -> bool {
        matches!(
            self,
            EventKind::ReuseDetected
                | EventKind::MailFailed { .. }
                | EventKind::CodeWithheld {
                    reason: Withheld::MagicCode
                }
        )
    }
}

/// The details of an event's log line (`limit=ip`, `attempts_left=2`, …).
impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self {
            EventKind::CodeRefused { limit } => write!(f, " limit={}", limit.as_str()),
            EventKind::MailFailed { mail, error } => {
                write!(f, " mail={} error=\"{error}\"", mail.as_str())
            }
            EventKind::LoginSucceeded { method } => write!(f, " method={}", method.as_str()),
            EventKind::VerificationFailed {
                method,
                reason,
                attempts_left,
            } => {
                write!(f, " method={} reason={}", method.as_str(), reason.as_str())?;
                match attempts_left {
                    Some(n) => write!(f, " attempts_left={n}"),
                    None => Ok(()),
                }
            }
            EventKind::LoggedOutAll { sessions } | EventKind::LoggedOutOthers { sessions } => {
                write!(f, " sessions={sessions}")
            }
            EventKind::SessionsEvicted { count } => write!(f, " sessions={count}"),
            EventKind::AdminAction { action, actor } => {
                write!(f, " action={}", action.as_str())?;
                match action {
                    AdminAction::SessionsEnded { count } => write!(f, " sessions={count}")?,
                    AdminAction::Locked { until: Some(t) } => write!(f, " until={t}")?,
                    AdminAction::SignInIssued { expires_in, mailed } => {
                        write!(f, " expires_in={expires_in} mailed={mailed}")?;
                    }
                    _ => {}
                }
                match actor {
                    Some(a) => write!(f, " actor={a:?}"),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

/// The address of an event that happened before a login (a code sent or refused, a failed
/// verification, a lockout): a pseudonym by default, the address itself only on request.
#[derive(Clone, PartialEq, Eq)]
pub struct EventAddress {
    pseudonym: String,
    email: Email,
}

impl EventAddress {
    pub(crate) fn new(pseudonym: String, email: Email) -> Self {
        EventAddress { pseudonym, email }
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

impl fmt::Debug for EventAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventAddress")
            .field("pseudonym", &self.pseudonym)
            .field("email", &self.email)
            .finish()
    }
}

/// One event: what, who, which session, from where, when.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The token subject (`sub`), once the user is known: logins, refreshes, logouts,
    /// ended sessions. `None` before a login.
    pub subject: Option<String>,
    /// The address of an event before a login ([`EventAddress`]); `None` after.
    pub address: Option<EventAddress>,
    /// The session the event is about, when there is one.
    pub session_id: Option<String>,
    /// The client's IP (after trusted-proxy resolution), when the event came from a
    /// request; `None` for the application's own calls.
    pub ip: Option<IpAddr>,
    /// The client's `User-Agent`, when the event came from a request.
    pub user_agent: Option<String>,
    /// For a verification or a login: whether it presented its login flow.
    pub binding: Option<Binding>,
    /// For a code request that passed the limits: whether it came from a known device.
    pub device: Option<Device>,
    /// When.
    pub at: SystemTime,
}

impl Event {
    /// `kind`, from `client`, about nobody yet.
    pub(crate) fn new(kind: EventKind, client: &ClientInfo) -> Self {
        Event {
            kind,
            subject: None,
            address: None,
            session_id: None,
            ip: client.ip,
            user_agent: client.user_agent.clone(),
            binding: None,
            device: None,
            at: SystemTime::now(),
        }
    }

    /// With whether its verification presented its flow.
    pub(crate) fn bound(mut self, binding: Binding) -> Self {
        self.binding = Some(binding);
        self
    }

    /// With whether its code request came from a known device.
    pub(crate) fn on_device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// With the subject and session it is about.
    pub(crate) fn of_session(mut self, subject: &str, session_id: &str) -> Self {
        self.subject = Some(subject.to_owned());
        self.session_id = Some(session_id.to_owned());
        self
    }

    /// With the address it is about, as its pseudonym `key` (the store's key).
    pub(crate) fn of_address(mut self, key: &impl fmt::Display, email: &Email) -> Self {
        self.address = Some(EventAddress::new(key.to_string(), email.clone()));
        self
    }
}

/// Emits `event`: counts it, logs it, and hands it to `hooks` (the application's, when it
/// gave some). An error or a panic of the hook is logged and goes no further.
pub(crate) fn emit(event: &Event, hooks: Option<&dyn Hooks>) {
    metrics::count(event);
    log(event);
    let Some(hooks) = hooks else { return };
    let delivered =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hooks.on_event(event)));
    match delivered {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(
            event = event.kind.name(),
            error = %e,
            "the event hook failed; the request goes on"
        ),
        Err(_) => tracing::warn!(
            event = event.kind.name(),
            "the event hook panicked; the request goes on"
        ),
    }
}

/// The event's log line: its sentence, what happened with its details, and the address's
/// pseudonym (never the address, the subject or a token).
fn log(event: &Event) {
    let address = event.address.as_ref().map_or("-", EventAddress::pseudonym);
    let kind = &event.kind;
    let binding = event.binding.map_or("-", Binding::as_str);
    let device = event.device.map_or("-", Device::as_str);
    if kind.is_warning() {
        tracing::warn!(event = %kind, address, binding, device, "{}", kind.message());
    } else {
        tracing::info!(event = %kind, address, binding, device, "{}", kind.message());
    }
}
