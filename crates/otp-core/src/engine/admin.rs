//! Administration: the application's own calls on any subject's sessions.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{NO_CLIENT, OtpAuth};
use crate::code::{Code, Purpose};
use crate::email::Email;
use crate::error::Error;
use crate::event::{AdminAction, Event, EventKind};
use crate::store::{AddressOp, AddressStatus, SessionInfo};

/// The longest lifetime of an administrator's sign-in, in seconds (7 days).
pub const MAX_SIGN_IN_SECS: u64 = 7 * 86_400;

/// The shortest lifetime of an administrator's sign-in, in seconds.
pub const MIN_SIGN_IN_SECS: u64 = 60;

/// How long a lock without an end lasts in the store: a hundred years.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 86_400);

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

/// The request counts of an address, or their limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestCounts {
    /// In the current minute window (`OTP_AUTH_OTP_RATE_LIMIT_PER_MINUTE`).
    pub minute: u32,
    /// In the current hour window.
    pub hour: u32,
    /// In the current day window.
    pub day: u32,
}

/// What an administrator sees of an address ([`Admin::address`]): its locks, its failures,
/// its pending logins and its request counts against their limits. Times in seconds
/// since the epoch; serialized as the admin endpoints answer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct AddressReport {
    /// The normalized address.
    pub email: String,
    /// Whether an administrator locked it: no code is mailed to it, and its requests
    /// answer as usual (nobody learns of the lock).
    pub locked: bool,
    /// When the lock ends; `None` when it is not locked or locked until unlocked.
    pub locked_until: Option<u64>,
    /// When the lockout of unbound guesses ends (`OTP_AUTH_OTP_LOCKOUT_SECONDS`); `None`
    /// when not locked out.
    pub locked_out_until: Option<u64>,
    /// Wrong unbound guesses in the current failure window.
    pub failures: u32,
    /// Unbound guesses left before a lockout.
    pub attempts_left: u32,
    /// Logins in progress: codes that can still be used.
    pub pending_flows: u32,
    /// Code requests from unknown devices in the current windows.
    pub requests: RequestCounts,
    /// The limits of those windows.
    pub limits: RequestCounts,
    /// Known devices counting requests of their own.
    pub known_devices: u32,
    /// When its known devices were last forgotten; `None` when never.
    pub devices_forgotten_at: Option<u64>,
}

/// An administrator's sign-in for an address ([`Admin::send_sign_in`],
/// [`Admin::create_sign_in`]): a login flow with its own lifetime, whose code and link
/// sign the address in once.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SignIn {
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The flow's id: the code works with it (`flow_id` of `/verify-otp`), never without.
    #[serde(skip)]
    pub flow_id: String,
    /// The code, when the application asked for it ([`Admin::create_sign_in`]); `None`
    /// when it was mailed.
    #[serde(skip)]
    pub code: Option<Code>,
    /// The sign-in link (with `OTP_AUTH_PUBLIC_URL`), when the application asked for it;
    /// `None` when it was mailed.
    #[serde(skip)]
    pub link: Option<String>,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn")
            .field("expires_in", &self.expires_in)
            .field("code", &self.code.as_ref().map(|_| "***"))
            .field("link", &self.link.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// The application's administration: [`OtpAuth::admin`]. No access token is involved, so
/// call it only on behalf of someone allowed to (the admin routers of the adapters check
/// the application's guard first). Every call emits an [`EventKind::AdminAction`] for the
/// audit trail, naming the actor given to [`Admin::by`].
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a> {
    pub(super) auth: &'a OtpAuth,
    pub(super) actor: Option<&'a str>,
}

impl<'a> Admin<'a> {
    /// The same administration, done by `actor` (an administrator's `sub`): its events
    /// name them.
    pub fn by(self, actor: &'a str) -> Admin<'a> {
        Admin {
            actor: Some(actor),
            ..self
        }
    }

    /// Emits the audit event of `action` on `account` (or the session `sid`).
    fn audit(&self, action: AdminAction, account: Option<&Account>, sid: Option<&str>) {
        let kind = EventKind::AdminAction {
            action,
            actor: self.actor.map(str::to_owned),
        };
        let mut event = Event::new(kind, &NO_CLIENT);
        match account {
            Some(Account::Subject(s)) => event.subject = Some(s.clone()),
            Some(Account::Email(email)) => {
                let address = self.auth.inner.hasher.address_key(email);
                event = event.of_address(&address, email);
            }
            None => {}
        }
        event.session_id = sid.map(str::to_owned);
        self.auth.emit(&event);
    }

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
        let sessions = self.auth.sessions_of(&subject).await?;
        self.audit(AdminAction::SessionsListed, Some(account), None);
        Ok(sessions)
    }

    /// Ends every session of `account` (a user banned, an account deleted); how many were
    /// live. Their refresh tokens stop working at once and their access tokens at their
    /// next check. By address, the address's known devices are forgotten too.
    pub async fn end_all_sessions_of(&self, account: &Account) -> Result<u32, Error> {
        let subject = self.subject_of(account).await?;
        if let Account::Email(email) = account {
            self.auth.forget_devices(email).await?;
        }
        let count = self.auth.end_all_of(&subject, None, &NO_CLIENT).await?;
        self.audit(AdminAction::SessionsEnded { count }, Some(account), None);
        Ok(count)
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
            self.audit(AdminAction::SessionEnded, None, Some(sid));
        }
        Ok(ended)
    }

    /// The limit state of `email`: locks, failures, pending logins, request counts.
    pub async fn address(&self, email: &Email) -> Result<AddressReport, Error> {
        let status = self.administer(email, &AddressOp::Read).await?;
        self.audit(AdminAction::AddressRead, Some(&email.clone().into()), None);
        Ok(self.report(email, &status))
    }

    /// Locks `email` for `duration` (`None`: until [`Admin::unlock`]): no code is mailed
    /// to it, and its pending codes stop working. Its requests still answer as usual, so
    /// nobody learns of the lock. Its sessions are left as they are
    /// ([`Admin::end_all_sessions_of`] ends them).
    pub async fn lock(
        &self,
        email: &Email,
        duration: Option<Duration>,
    ) -> Result<AddressReport, Error> {
        let duration = duration.unwrap_or(FOREVER).min(FOREVER);
        let status = self
            .administer(email, &AddressOp::Lock { duration })
            .await?;
        let report = self.report(email, &status);
        let until = report.locked_until;
        self.audit(
            AdminAction::Locked { until },
            Some(&email.clone().into()),
            None,
        );
        Ok(report)
    }

    /// Ends an administrator's lock of `email` and its lockout of unbound guesses, with
    /// their failures: a user locked out by someone guessing can sign in again at once.
    pub async fn unlock(&self, email: &Email) -> Result<AddressReport, Error> {
        let status = self.administer(email, &AddressOp::Unlock).await?;
        self.audit(AdminAction::Unlocked, Some(&email.clone().into()), None);
        Ok(self.report(email, &status))
    }

    /// Mails `email` a sign-in valid for `lifetime` (an invitation, a support request;
    /// clamped to [`MIN_SIGN_IN_SECS`]..=[`MAX_SIGN_IN_SECS`]): the login mail, with its
    /// link (with `OTP_AUTH_PUBLIC_URL`), outside the address's request limits. The link
    /// signs in from any browser; the code works only with its flow (not unbound). The
    /// answer holds neither. [`Error::InvalidRequest`] (422) when the address is locked;
    /// the mailer's errors as for a login (the sign-in is then withdrawn).
    pub async fn send_sign_in(&self, email: &Email, lifetime: Duration) -> Result<SignIn, Error> {
        let (mut sign_in, code, mac) = self.issue_sign_in(email, lifetime).await?;
        let i = &*self.auth.inner;
        let secs = sign_in.expires_in;
        let message = (self.auth).code_message(
            email,
            Purpose::Login,
            code,
            &NO_CLIENT,
            Some((&sign_in.flow_id, secs)),
        );
        let started = Instant::now();
        if let Err(e) = i.mailer.send(&message).await {
            let error = e.redacted();
            let address = i.hasher.address_key(email);
            let flow = i.hasher.flow_key(&sign_in.flow_id);
            if let Err(se) = i.store.discard(&address, &flow, &mac).await {
                tracing::warn!(address = %address, error = %se, "withdrawing the unsent sign-in failed");
            }
            return Err(error.into());
        }
        self.auth.record_mail_latency(started.elapsed());
        let action = AdminAction::SignInIssued {
            expires_in: secs,
            mailed: true,
        };
        self.audit(action, Some(&email.clone().into()), None);
        sign_in.flow_id.clear();
        Ok(sign_in)
    }

    /// [`Admin::send_sign_in`] without the mail: the code, the link (with
    /// `OTP_AUTH_PUBLIC_URL`) and the flow id go to the application, to deliver its own
    /// way (its own invitation mail). Treat them as the password they are.
    pub async fn create_sign_in(&self, email: &Email, lifetime: Duration) -> Result<SignIn, Error> {
        let (mut sign_in, code, _) = self.issue_sign_in(email, lifetime).await?;
        let secs = sign_in.expires_in;
        sign_in.link =
            (self.auth).sign_in_link(email, Purpose::Login, &code, Some((&sign_in.flow_id, secs)));
        sign_in.code = Some(code);
        let action = AdminAction::SignInIssued {
            expires_in: secs,
            mailed: false,
        };
        self.audit(action, Some(&email.clone().into()), None);
        Ok(sign_in)
    }

    /// Stores a new sign-in flow for `email`: the sign-in (no code or link yet), its code
    /// and the code's MAC.
    async fn issue_sign_in(
        &self,
        email: &Email,
        lifetime: Duration,
    ) -> Result<(SignIn, Code, crate::code::CodeMac), Error> {
        let i = &*self.auth.inner;
        let secs = lifetime.as_secs().clamp(MIN_SIGN_IN_SECS, MAX_SIGN_IN_SECS);
        let code = Code::generate(i.config.codes.length);
        let mac = i.hasher.code_mac(Purpose::Login, email, &code);
        let (flow_id, flow) = self.auth.new_flow();
        let op = AddressOp::Issue {
            flow,
            code_mac: mac,
            ttl: Duration::from_secs(secs),
        };
        let status = self.administer(email, &op).await?;
        if !status.issued {
            return Err(Error::InvalidRequest(
                "The address is locked; unlock it before issuing a sign-in.".to_owned(),
            ));
        }
        let sign_in = SignIn {
            expires_in: secs,
            flow_id,
            code: None,
            link: None,
        };
        Ok((sign_in, code, mac))
    }

    async fn administer(&self, email: &Email, op: &AddressOp) -> Result<AddressStatus, Error> {
        let i = &*self.auth.inner;
        let address = i.hasher.address_key(email);
        Ok(i.store.administer(&address, op, &i.limits).await?)
    }

    /// The report of `status`: milliseconds to seconds, a lock without an end as `None`.
    fn report(&self, email: &Email, status: &AddressStatus) -> AddressReport {
        let l = &self.auth.inner.limits;
        let secs = |ms: u64| ms.div_ceil(1000);
        let now_ms = crate::primitives::now_secs().saturating_mul(1000);
        let forever_from = now_ms.saturating_add((FOREVER / 2).as_millis() as u64);
        AddressReport {
            email: email.as_str().to_owned(),
            locked: status.admin_locked_until.is_some(),
            locked_until: (status.admin_locked_until)
                .filter(|&t| t < forever_from)
                .map(secs),
            locked_out_until: status.locked_out_until.map(secs),
            failures: status.failures,
            attempts_left: l.max_attempts.saturating_sub(status.failures),
            pending_flows: status.flows,
            requests: RequestCounts {
                minute: status.minute,
                hour: status.hour,
                day: status.day,
            },
            limits: RequestCounts {
                minute: l.per_address,
                hour: l.per_address_hour,
                day: l.per_address_day,
            },
            known_devices: status.known_devices,
            devices_forgotten_at: status.devices_forgotten_at,
        }
    }
}
