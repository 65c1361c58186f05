//! The storage traits: pending codes with their limits ([`OtpStore`]) and sessions with
//! their revocations ([`TokenBlacklist`]).
//!
//! Each method is one atomic operation, shaped so a network store does it in one round
//! trip (a Redis backend: one script call; on a cluster the per-IP counters of
//! [`OtpStore::issue`] and [`OtpStore::verify`] live in their own slots and take more, and
//! [`OtpStore::verify_and_open`] is two steps). Outcomes are enums, not errors: an
//! error means the store could not answer.
//!
//! Addresses and subjects reach the store only as keyed hashes ([`AddressKey`], subject
//! keys) and codes only as MACs: no plain address, no code. Client IPs arrive as their
//! rate-limit bucket ([`IpKey`]: the IPv4 address or the IPv6 /64, in clear), and a
//! session keeps the IP and user agent seen at login, for listing.
//!
//! Time: windows are fixed, not sliding. The request window starts at the first request
//! counted in it; the failure window at the first failure; reaching the cap locks the
//! address for a full lockout from that moment, and the end of a lockout clears the count.

use std::fmt::Debug;
use std::time::Duration;

pub use crate::engine::{IntoShared, IntoSharedStores};
pub use crate::event::LoginMethod;
pub use crate::memory::MemoryStore;
pub use crate::primitives::{now_secs, random_id};
/// Re-exported for implementing the traits without a direct dependency.
pub use async_trait::async_trait;

#[path = "policy.rs"]
pub mod policy;
#[cfg(feature = "redis-scripts")]
#[path = "scripted.rs"]
pub mod scripted;

pub use crate::code::{AddressKey, CODE_MAC_LEN, CodeMac, DeviceKey, FlowKey, IpKey};
pub use crate::error::StoreError;

/// The limits that apply to an operation, passed with every call so that stores hold no
/// configuration of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Code requests per address per [`Limits::request_window`].
    pub per_address: u32,
    /// Code requests per address per hour ([`HOUR`]).
    pub per_address_hour: u32,
    /// Code requests per address per day ([`DAY`]).
    pub per_address_day: u32,
    /// Least time between two codes to one address (zero: none). Measured from when the
    /// pending code was issued, so it applies while a code is pending.
    pub resend_cooldown: Duration,
    /// Code requests per client IP bucket per [`Limits::request_window`].
    pub per_ip: u32,
    /// The window of the per-minute request limits (one minute).
    pub request_window: Duration,
    /// Failed verifications before the address is locked out.
    pub max_attempts: u32,
    /// How long a lockout lasts, and the window in which failures are counted.
    pub lockout: Duration,
    /// Failed verifications per client IP bucket per hour ([`HOUR`]), across addresses.
    pub ip_failures: u32,
    /// Pending flows per address (`OTP_AUTH_MAX_FLOWS_PER_ADDRESS`).
    pub max_flows: u32,
    /// How long a known-device cookie lives (`OTP_AUTH_KNOWN_DEVICE_DAYS`): an address
    /// whose devices were forgotten remembers it this long.
    pub known_device_lifetime: Duration,
}

/// The window of [`Limits::per_address_hour`] and [`Limits::ip_failures`].
pub const HOUR: Duration = Duration::from_secs(3600);

/// The window of [`Limits::per_address_day`].
pub const DAY: Duration = Duration::from_secs(86_400);

/// Identifies one call of [`OtpStore::issue`] or [`OtpStore::verify`], so that a store
/// recognizes the same call resent (a client library retrying after a timeout or a dropped
/// connection, when the first attempt did reach the server) and answers it again without
/// counting it twice. 64 random bits; a new one for every call the engine makes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallId(pub [u8; 8]);

impl CallId {
    /// A fresh random id.
    pub fn random() -> CallId {
        CallId(rand::random())
    }
}

impl std::fmt::Debug for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallId({:02x?})", self.0)
    }
}

/// A device that presented a valid known-device cookie of the address (its MAC checked
/// by the engine). The store still decides: a device whose cookie was set before the
/// address's devices were last forgotten ([`OtpStore::forget_devices`]) is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownDevice {
    /// The device.
    pub key: DeviceKey,
    /// When its cookie was set (seconds since the epoch).
    pub since: u64,
}

/// Store a new code for an address, after checking its limits.
#[derive(Debug, Clone)]
pub struct IssueRequest {
    /// The address's store key.
    pub address: AddressKey,
    /// The client's IP bucket; `None` skips the per-IP limit.
    pub ip: Option<IpKey>,
    /// The MAC of the new code.
    pub code_mac: CodeMac,
    /// The flow the client presented: when it is pending for this address, the code
    /// replaces that flow's code (a resend) and its failures are kept.
    pub resend: Option<FlowKey>,
    /// The key of the flow to start when `resend` names no pending flow.
    pub flow: FlowKey,
    /// The known device asking, whose own budget the request counts against.
    pub device: Option<KnownDevice>,
    /// A signed-in user's code (step-up, email change), whose flow is the session: never
    /// verified unbound, and never ended for a flow of an unknown device.
    pub signed_in: bool,
    /// The code's lifetime.
    pub code_ttl: Duration,
    /// The limits to check.
    pub limits: Limits,
    /// This call's id: the same request resent is answered without counting twice.
    pub call: CallId,
}

/// Which per-address limit refused a code request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressLimit {
    /// [`Limits::per_address`] in the minute window.
    Minute,
    /// [`Limits::per_address_hour`].
    Hour,
    /// [`Limits::per_address_day`].
    Day,
    /// [`Limits::resend_cooldown`].
    Cooldown,
    /// [`Limits::max_flows`] flows are pending and none may be ended for this one.
    Flows,
}

/// What [`OtpStore::issue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueOutcome {
    /// The code was stored and counted against its budget (the IP bucket is counted
    /// first, so a request refused for its address still uses up one request of its IP).
    Issued {
        /// It replaced the code of the presented flow ([`IssueRequest::resend`]); otherwise
        /// it started the flow [`IssueRequest::flow`].
        resent: bool,
        /// The request came from a known device of the address and counted against that
        /// device's own budget.
        known_device: bool,
    },
    /// The address (or the known device) has used up its requests for a window, is in its
    /// resend cooldown, or has no room for a new flow; nothing was stored.
    AddressLimited {
        /// Until the window (or the cooldown) ends.
        retry_after: Duration,
        /// The limit that refused.
        limit: AddressLimit,
    },
    /// The client IP has used up its requests for this window; nothing was stored.
    IpLimited {
        /// Until the window ends.
        retry_after: Duration,
    },
    /// An administrator locked the address ([`AddressOp::Lock`]): the request went through
    /// the limits and was counted like any other, and its flow was stored with a code
    /// nobody can present (so limits, cooldown and flows answer exactly as for any
    /// address); nothing is to be mailed.
    Locked {
        /// As for [`IssueOutcome::Issued`].
        resent: bool,
    },
}

/// What an administrator does to an address ([`OtpStore::administer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressOp {
    /// Reads its state; changes nothing.
    Read,
    /// Locks it for `duration`: no code is issued to it meanwhile (a request gets
    /// [`IssueOutcome::Locked`]), and its pending flows end.
    Lock {
        /// How long, from the store's clock.
        duration: Duration,
    },
    /// Ends an administrator's lock and the lockout of unbound guesses, with their
    /// failures.
    Unlock,
    /// Starts a flow with the application's own code and lifetime (an invitation, a
    /// support sign-in), outside the request windows; not issued while the address is
    /// locked. The flow counts as a known device's (no unknown device's request ends it)
    /// and is verified bound only (its link, or its flow id).
    Issue {
        /// The new flow.
        flow: FlowKey,
        /// The code's MAC.
        code_mac: CodeMac,
        /// Its lifetime.
        ttl: Duration,
    },
}

/// The state of an address as an administrator sees it ([`OtpStore::administer`]), after
/// the operation; times in milliseconds since the epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressStatus {
    /// The end of an administrator's lock; `None` when not locked.
    pub admin_locked_until: Option<u64>,
    /// The end of the lockout of unbound guesses; `None` when not locked out.
    pub locked_out_until: Option<u64>,
    /// Failed unbound verifications in the current failure window.
    pub failures: u32,
    /// Pending flows (codes that can still be used).
    pub flows: u32,
    /// Code requests from unknown devices in the minute window.
    pub minute: u32,
    /// In the hour window.
    pub hour: u32,
    /// In the day window.
    pub day: u32,
    /// Known devices counting requests of their own.
    pub known_devices: u32,
    /// When the address last forgot its known devices (seconds); `None` when never.
    pub devices_forgotten_at: Option<u64>,
    /// For [`AddressOp::Issue`]: whether the flow was started (not when locked).
    pub issued: bool,
}

/// Check a presented code.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// The address's store key.
    pub address: AddressKey,
    /// The MAC of the presented code.
    pub code_mac: CodeMac,
    /// The flow presented with it (bound: only its code is compared, only its failures
    /// counted), or `None` (unbound: the address's most recent flow, under the
    /// address-wide failures and lockout).
    pub flow: Option<FlowKey>,
    /// The client's IP bucket, for the per-IP failure limit; `None` skips it.
    pub ip: Option<IpKey>,
    /// The limits to apply.
    pub limits: Limits,
    /// The code lifetime, for [`OtpStore::restore`] when the session of a verified code
    /// could not be recorded.
    pub code_ttl: Duration,
    /// This call's id: the same request resent is answered again, not counted twice.
    pub call: CallId,
}

/// What [`OtpStore::verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The code matched; it is consumed and the failure count reset.
    Verified,
    /// No code is pending (never sent, expired, or used; for a bound verification: the
    /// flow is not pending). Counted as a failure like [`VerifyOutcome::Mismatch`] (against
    /// the IP, and unbound against the address), so that nobody learns from the answers
    /// whether an address has a login in progress. Unbound, at zero attempts left the
    /// address is locked out for unbound verification.
    NoCode {
        /// Failures left before the lockout.
        attempts_left: u32,
    },
    /// The code did not match; the failure was counted (against the flow when bound, the
    /// address when not). Bound, at zero attempts left the flow ends; unbound, the address
    /// is locked out for unbound verification.
    Mismatch {
        /// Failures left before the lockout.
        attempts_left: u32,
    },
    /// The address is locked out for unbound verification; nothing was compared.
    LockedOut {
        /// Until the lockout ends.
        retry_after: Duration,
    },
    /// The client IP has used up its failed verifications for the hour; nothing was
    /// compared.
    IpLimited {
        /// Until the IP's window ends.
        retry_after: Duration,
    },
}

impl VerifyOutcome {
    /// Whether this outcome counted a failed verification ([`VerifyOutcome::NoCode`] or
    /// [`VerifyOutcome::Mismatch`]): the caller also counts it against the client IP.
    pub fn is_failure(&self) -> bool {
        matches!(
            self,
            VerifyOutcome::NoCode { .. } | VerifyOutcome::Mismatch { .. }
        )
    }

    /// The failures left before the lockout, for a counted failure.
    pub fn attempts_left(&self) -> Option<u32> {
        match *self {
            VerifyOutcome::NoCode { attempts_left } | VerifyOutcome::Mismatch { attempts_left } => {
                Some(attempts_left)
            }
            _ => None,
        }
    }
}

/// What [`OtpStore::verify_and_open`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Login {
    /// The verification's outcome; the session was recorded exactly when it is
    /// [`VerifyOutcome::Verified`].
    pub outcome: VerifyOutcome,
    /// Older sessions of the subject ended to stay within
    /// [`NewSession::max_sessions`].
    pub evicted: u32,
}

/// Pending codes and their limits.
///
/// Implementations must make each method atomic: N concurrent `verify` calls with the right
/// code give exactly one [`VerifyOutcome::Verified`], and concurrent wrong guesses never
/// count past the cap. The contract is tested by the same suite for every backend.
#[async_trait]
pub trait OtpStore: Debug + Send + Sync + 'static {
    /// Checks the IP limit, then the limits of the request's budget (its known device's,
    /// else the address's) and the room for a new flow, then stores the code's MAC in the
    /// presented flow (a resend, failures kept) or a new one, as
    /// [`policy::AddressState::issue`] decides.
    async fn issue(&self, req: &IssueRequest) -> Result<IssueOutcome, StoreError>;

    /// Checks the client IP's failures (before anything of the address: a limited client
    /// gets the same answer for every address), then compares the MAC (in constant time
    /// where the store can) with the presented flow's code, or unbound with the most recent
    /// flow's under the address's lockout, then consumes the flow or counts the failure,
    /// also when no code is pending ([`VerifyOutcome::NoCode`]), as
    /// [`policy::AddressState::verify`] decides.
    async fn verify(&self, req: &VerifyRequest) -> Result<VerifyOutcome, StoreError>;

    /// Deletes the pending code of `flow` if it is still the one with `code_mac` (used
    /// when the mail with that code could not be sent). Limits and counts are kept.
    async fn discard(
        &self,
        address: &AddressKey,
        flow: &FlowKey,
        code_mac: &CodeMac,
    ) -> Result<(), StoreError>;

    /// Gives the flow that `req` consumed back: its code `req.code_mac` is pending again
    /// for `req.code_ttl`, unless that flow is pending again (a newer request wins). The
    /// flow is `req.flow`, or unbound the one the same call consumed. Limits and counts
    /// are kept. The compensating step of a two-step login ([`verify_then_open`]) when the
    /// session could not be recorded.
    async fn restore(&self, req: &VerifyRequest) -> Result<(), StoreError>;

    /// Forgets every known device of `address`: a device cookie set before now no longer
    /// counts against its own budget (`/logout-all`, an email change). The address
    /// remembers it for [`Limits::known_device_lifetime`].
    async fn forget_devices(&self, address: &AddressKey, limits: &Limits)
    -> Result<(), StoreError>;

    /// Reads or changes `address` on an administrator's behalf ([`AddressOp`]), in one
    /// atomic step: its state after the operation. The default refuses (a store written
    /// before administration existed keeps compiling; its admin endpoints answer 500).
    async fn administer(
        &self,
        address: &AddressKey,
        op: &AddressOp,
        limits: &Limits,
    ) -> Result<AddressStatus, StoreError> {
        let _ = (address, op, limits);
        Err(StoreError::backend(
            "this store does not support administration (OtpStore::administer)",
        ))
    }

    /// Whether the store answers now (Redis: a round trip to the server of a key, which
    /// also proves the database index and, on a cluster, the slot routing), for a readiness
    /// check at start-up ([`OtpAuth::check`](crate::OtpAuth::check)). The default answers
    /// `Ok(())`.
    async fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether this store also keeps the sessions (it is a [`TokenBlacklist`] on the same
    /// data) and consumes a code and records its session in one atomic operation
    /// ([`OtpStore::verify_and_open`]), as the in-memory store, the Redis stores on a
    /// single server and the SQLite example do. The engine asks only when one value was
    /// given for both halves (`OtpAuthBuilder::stores`); otherwise, or when this answers
    /// `false` (the default), a login takes two steps ([`verify_then_open`]).
    fn opens_sessions(&self) -> bool {
        false
    }

    /// [`OtpStore::verify`], and on success records `session` among this store's own
    /// sessions: both happen or neither, so a consumed code always has its session. Called
    /// only when [`OtpStore::opens_sessions`] answers `true`; the default refuses.
    async fn verify_and_open(
        &self,
        req: &VerifyRequest,
        session: &NewSession,
    ) -> Result<Login, StoreError> {
        let _ = (req, session);
        Err(StoreError::backend(
            "this store does not open sessions (OtpStore::opens_sessions is false)",
        ))
    }
}

#[cfg(any(test, feature = "mock"))]
mockall::mock! {
    /// A mockall mock of [`OtpStore`] (the `mock` feature), for unit tests of code that
    /// calls a store.
    pub OtpStore {}
    #[async_trait]
    impl OtpStore for OtpStore {
        async fn issue(&self, req: &IssueRequest) -> Result<IssueOutcome, StoreError>;
        async fn verify(&self, req: &VerifyRequest) -> Result<VerifyOutcome, StoreError>;
        async fn discard(&self, address: &AddressKey, flow: &FlowKey, code_mac: &CodeMac) -> Result<(), StoreError>;
        async fn restore(&self, req: &VerifyRequest) -> Result<(), StoreError>;
        async fn forget_devices(&self, address: &AddressKey, limits: &Limits) -> Result<(), StoreError>;
        async fn administer(&self, address: &AddressKey, op: &AddressOp, limits: &Limits) -> Result<AddressStatus, StoreError>;
        async fn ready(&self) -> Result<(), StoreError>;
        fn opens_sessions(&self) -> bool;
        async fn verify_and_open(
            &self,
            req: &VerifyRequest,
            session: &NewSession,
        ) -> Result<Login, StoreError>;
    }
}

// A trait bound of the trait; mockall's mocks do not derive it.
#[cfg(any(test, feature = "mock"))]
impl Debug for MockOtpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockOtpStore")
    }
}

/// A login in two steps, for stores whose sessions live elsewhere (or that cannot do both
/// in one operation): verifies with `codes`, then creates the session in `sessions`; when that fails,
/// restores the code ([`OtpStore::restore`]) and returns the error.
pub async fn verify_then_open<S: OtpStore + ?Sized>(
    codes: &S,
    req: &VerifyRequest,
    session: &NewSession,
    sessions: &dyn TokenBlacklist,
) -> Result<Login, StoreError> {
    let outcome = codes.verify(req).await?;
    if outcome != VerifyOutcome::Verified {
        return Ok(Login {
            outcome,
            evicted: 0,
        });
    }
    match sessions.create_session(session).await {
        Ok(evicted) => Ok(Login { outcome, evicted }),
        Err(e) => {
            // The session write failed (perhaps only its answer was lost): give the code
            // back so the user can try again.
            if let Err(restore) = codes.restore(req).await {
                tracing::error!(
                    address = %req.address,
                    error = %restore,
                    "a verified code could not be restored after its session failed"
                );
            }
            Err(e)
        }
    }
}

/// A new session id for a subject: `<subject key>.<72 random bits>` (12 base64url
/// characters).
///
/// The prefix lets a store keep all of a subject's sessions together (one Redis Cluster
/// slot), so creating, listing and ending them are single-slot operations. The random
/// part only has to tell a subject's sessions apart (at most 1000 live at once): a session
/// id is no secret, every token that carries one is signed. Kept short, it keeps a
/// session's Redis key and its index entry in the smaller allocation classes.
pub fn new_session_id(subject_key: &str) -> String {
    format!("{subject_key}.{}", crate::primitives::short_random_id())
}

/// The subject key a session id starts with (the whole id if it has no `.`).
pub fn session_subject_key(sid: &str) -> &str {
    sid.split_once('.').map_or(sid, |(k, _)| k)
}

/// A new session, recorded when a code is verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    /// The session id, made by [`new_session_id`] from `subject_key`.
    pub sid: String,
    /// The keyed hash of the subject, to list and revoke a user's sessions.
    pub subject_key: String,
    /// The `jti` of the session's first refresh token.
    pub refresh_jti: String,
    /// When the session ends unless refreshed (seconds since the epoch).
    pub expires_at: u64,
    /// The client's user agent at login, if known (at most 256 bytes).
    pub user_agent: Option<String>,
    /// The client's IP at login, if known.
    pub ip: Option<String>,
    /// The most live sessions the subject may have: creating this one ends the least
    /// recently refreshed others beyond it, in the same operation (1 to 1000).
    pub max_sessions: u32,
    /// The login's authentication; its time is the session's creation time
    /// ([`SessionInfo::created_at`]).
    pub auth: SessionAuth,
}

/// The last time the user of a session proved their address, and how: what access tokens
/// carry as `auth_time` and `amr`. A session keeps it from login, a re-authentication
/// replaces it ([`TokenBlacklist::renew_session`]), and every rotation returns it, so
/// that a refreshed access token keeps the session's `auth_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionAuth {
    /// When (seconds since the epoch).
    pub at: u64,
    /// By the code typed in or by the sign-in link.
    pub method: LoginMethod,
}

impl SessionAuth {
    /// The compact form a text store keeps: `<at>` for a code, `<at>l` for a link.
    pub fn encode(self) -> String {
        match self.method {
            LoginMethod::Code => self.at.to_string(),
            LoginMethod::Link => format!("{}l", self.at),
        }
    }

    /// Reads [`SessionAuth::encode`]'s form back; `None` when it is not one.
    pub fn decode(s: &str) -> Option<SessionAuth> {
        let (digits, method) = match s.strip_suffix('l') {
            Some(d) => (d, LoginMethod::Link),
            None => (s, LoginMethod::Code),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(SessionAuth {
            at: digits.parse().ok()?,
            method,
        })
    }
}

/// A fresh authentication recorded on a live session ([`TokenBlacklist::renew_session`]):
/// a re-authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewal {
    /// The session.
    pub sid: String,
    /// The new authentication.
    pub auth: SessionAuth,
    /// The session's end is extended to this if later (seconds since the epoch).
    pub expires_at: u64,
}

/// A refresh token presented for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Its session.
    pub sid: String,
    /// Its `jti`.
    pub presented_jti: String,
    /// The `jti` of the token that replaces it.
    pub new_jti: String,
    /// The session's new end (seconds since the epoch).
    pub new_expires_at: u64,
    /// How long after a rotation the immediate parent of the current token is still
    /// accepted ([`RotateOutcome::Reissued`]); zero is strict.
    pub reuse_interval: Duration,
}

/// What [`TokenBlacklist::rotate_refresh`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotateOutcome {
    /// The presented token was current; it is spent and the new `jti` is current. Also the
    /// answer to the same rotation resent (same presented and new `jti`).
    Rotated {
        /// The session's authentication, for the new access token.
        auth: SessionAuth,
    },
    /// The presented token is the immediate parent of the current one and the last
    /// rotation is within the reuse interval: nothing changed, and the caller re-issues
    /// the current token (`current_jti`) instead of starting a second lineage.
    Reissued {
        /// The `jti` of the session's current refresh token.
        current_jti: String,
        /// The session's authentication, for the new access token.
        auth: SessionAuth,
    },
    /// The presented token was spent (an older ancestor, or the parent after the
    /// interval): the whole session is now revoked.
    Reused,
    /// No such session (revoked, logged out or expired).
    Unknown,
}

/// Whether an access token may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessStatus {
    /// Neither the token nor its session is revoked.
    Active,
    /// The token or its session is revoked (or the session ended).
    Revoked,
}

/// What to revoke at logout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocation {
    /// An access token to revoke: its session id, `jti` and `exp`.
    pub access: Option<RevokedAccess>,
    /// Sessions to end (the access token's and the refresh token's).
    pub sessions: Vec<String>,
}

/// An access token to put on the blacklist until it would expire anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedAccess {
    /// Its session.
    pub sid: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp` (seconds since the epoch); the entry is dropped after it.
    pub expires_at: u64,
}

/// A session as listed for its user. Serialized with the field names of `GET /sessions`
/// (`id`, `created_at`, `last_refreshed_at`, `expires_at`, `user_agent`, `ip`), so an
/// application's own pages and endpoints answer it as the contract does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// The session id (for `DELETE /sessions/{id}`).
    #[serde(rename = "id")]
    pub sid: String,
    /// Created at (seconds since the epoch): the login.
    pub created_at: u64,
    /// Last refreshed at (seconds since the epoch); equals `created_at` before any refresh.
    #[serde(rename = "last_refreshed_at")]
    pub refreshed_at: u64,
    /// Ends at unless refreshed (seconds since the epoch).
    pub expires_at: u64,
    /// User agent at login.
    pub user_agent: Option<String>,
    /// IP at login.
    pub ip: Option<String>,
}

/// Sessions, refresh rotation and revocations.
///
/// Every entry expires: a session when its last refresh token would, a revoked `jti` when
/// its token would.
#[async_trait]
pub trait TokenBlacklist: Debug + Send + Sync + 'static {
    /// Records a new session with its first refresh `jti` (the same session again, as a
    /// resent call would, changes nothing), and ends the subject's least recently
    /// refreshed sessions beyond [`NewSession::max_sessions`]. Returns how many it ended.
    /// One atomic operation.
    async fn create_session(&self, session: &NewSession) -> Result<u32, StoreError>;

    /// Spends the presented token and makes the new `jti` current, if the presented one is
    /// current. If it is the immediate parent of the current one, within the reuse
    /// interval of the last rotation, answers [`RotateOutcome::Reissued`] and changes
    /// nothing else; the same rotation resent answers [`RotateOutcome::Rotated`] again.
    /// Any other `jti` revokes the session. One atomic operation; the session's end
    /// becomes [`Rotation::new_expires_at`] (on a reissue it is only ever extended).
    async fn rotate_refresh(&self, rotation: &Rotation) -> Result<RotateOutcome, StoreError>;

    /// Records a fresh authentication on a live session, changing nothing else of it but
    /// its end ([`Renewal::expires_at`], only ever extended). `false` when there is no such
    /// session. One atomic operation.
    async fn renew_session(&self, renewal: &Renewal) -> Result<bool, StoreError>;

    /// Whether the access token `jti` of session `sid` is usable: the `jti` is not revoked
    /// and the session exists. One operation.
    async fn check_access(&self, sid: &str, jti: &str) -> Result<AccessStatus, StoreError>;

    /// Revokes an access token and ends sessions.
    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError>;

    /// Ends every session of a subject; returns how many were live.
    async fn revoke_all(&self, subject_key: &str) -> Result<u32, StoreError>;

    /// Lists the live sessions of a subject.
    async fn list_sessions(&self, subject_key: &str) -> Result<Vec<SessionInfo>, StoreError>;
}

#[cfg(any(test, feature = "mock"))]
mockall::mock! {
    /// A mockall mock of [`TokenBlacklist`] (the `mock` feature).
    pub TokenBlacklist {}
    #[async_trait]
    impl TokenBlacklist for TokenBlacklist {
        async fn create_session(&self, session: &NewSession) -> Result<u32, StoreError>;
        async fn rotate_refresh(&self, rotation: &Rotation) -> Result<RotateOutcome, StoreError>;
        async fn renew_session(&self, renewal: &Renewal) -> Result<bool, StoreError>;
        async fn check_access(&self, sid: &str, jti: &str) -> Result<AccessStatus, StoreError>;
        async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError>;
        async fn revoke_all(&self, subject_key: &str) -> Result<u32, StoreError>;
        async fn list_sessions(&self, subject_key: &str) -> Result<Vec<SessionInfo>, StoreError>;
    }
}

// A trait bound of the trait; mockall's mocks do not derive it.
#[cfg(any(test, feature = "mock"))]
impl Debug for MockTokenBlacklist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MockTokenBlacklist")
    }
}
