//! The errors of the engine's operations. The HTTP layer renders them as problem
//! documents (RFC 9457), the same whichever framework serves them.

use std::time::Duration;

/// Why a bearer or refresh token was refused. Never shown to clients in detail beyond a
/// sentence; kept for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRejection {
    /// No token was presented.
    Missing,
    /// The token does not parse, its signature or algorithm is wrong, or a claim is invalid.
    Invalid,
    /// The token's `exp` has passed.
    Expired,
    /// The token is an access token where a refresh token was expected, or the reverse.
    WrongType,
    /// The token or its session was revoked.
    Revoked,
    /// A refresh token that was already spent was presented again: its session is now revoked.
    Reused,
}

/// A boxed error of any kind: the source of a store, mail or hook failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every failure an operation of the engine can end in.
///
/// Each variant maps to exactly one HTTP status of the contract (see [`Error::status`]).
/// Start-up failures are [`ConfigError`](crate::config::ConfigError)s, and the refusals of the
/// HTTP layer alone (unknown path, wrong method, body too large, not JSON, cross-site)
/// never reach the engine, so they are not here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request or a field of it is malformed (422).
    #[error("{0}")]
    InvalidRequest(String),
    /// Too many code requests for this address or client IP (429).
    #[error("too many requests, retry after {} seconds", retry_after_secs(*retry_after))]
    RateLimited {
        /// How long until a request may succeed again.
        retry_after: Duration,
    },
    /// The address has used up its failed verification attempts (429).
    #[error("too many failed attempts, retry after {} seconds", retry_after_secs(*retry_after))]
    LockedOut {
        /// How long until the lockout window has passed.
        retry_after: Duration,
    },
    /// No code is pending for the address, or it expired, was used, or is wrong (400).
    #[error("invalid or expired code")]
    InvalidCode,
    /// A sign-in link's token is malformed, forged or expired, or its code is no longer
    /// pending (400).
    #[error("invalid or expired sign-in link")]
    InvalidLink,
    /// `OTP_AUTH_FLOW_BINDING=required` and the verification presented no login flow
    /// (neither the flow cookie nor `flow_id`): nothing was compared or counted (400).
    #[error("the login flow is required")]
    FlowRequired,
    /// Authentication failed (401, with `WWW-Authenticate: Bearer`).
    #[error("unauthorized: {0:?}")]
    Unauthorized(TokenRejection),
    /// The access token is valid, but its `auth_time` is older than the route demands (or
    /// absent): 401 with RFC 9470's `insufficient_user_authentication` challenge and
    /// `max_age`. The client re-authenticates (`/reauthenticate`) and retries.
    #[error("a more recent authentication is required (within {max_age} seconds)")]
    InsufficientAuthentication {
        /// The most seconds since the last authentication the route accepts.
        max_age: u64,
    },
    /// The application's [`Hooks::change_email`](crate::Hooks::change_email) refused the
    /// new address: another user's, or not allowed (403). One answer whatever the reason,
    /// so nobody learns which addresses are taken.
    #[error("the email change was refused")]
    EmailChangeRefused,
    /// The application does not offer email changes: its hooks keep the default
    /// [`Hooks::change_email`](crate::Hooks::change_email) (403).
    #[error("email change is not enabled")]
    EmailChangeUnsupported,
    /// The signed-in user is not allowed this: a guard's check of the user (a role) failed
    /// (403).
    #[error("forbidden")]
    Forbidden,
    /// The session asked for is not one of the caller's live sessions (404).
    #[error("not found")]
    NotFound,
    /// The store is unreachable or timed out (503).
    #[error("{0}")]
    StoreUnavailable(#[source] StoreError),
    /// The store answered something this library cannot use (500).
    #[error("{0}")]
    StoreFailed(#[source] StoreError),
    /// The mail server is unreachable, timed out or answered with a transient failure
    /// (503). The mail error's text has its addresses redacted.
    #[error("{0}")]
    MailUnavailable(#[source] MailError),
    /// The mail server refused the message permanently (502). The mail error's text has
    /// its addresses redacted.
    #[error("{0}")]
    MailRejected(#[source] MailError),
    /// An application hook ([`Hooks`](crate::Hooks)) failed (500): its error is the source.
    #[error("a login hook failed: {0}")]
    Hook(#[source] BoxError),
    /// A bug or an unexpected state (500). Details go to the log, never to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Seconds to wait, rounded up, at least 1 (`Retry-After`).
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    // Round up so a client that waits exactly this long is not refused again.
    d.as_millis().div_ceil(1000).max(1) as u64
}

impl Error {
    /// The HTTP status this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            Error::InvalidRequest(_) => 422,
            Error::RateLimited { .. } | Error::LockedOut { .. } => 429,
            Error::InvalidCode | Error::InvalidLink | Error::FlowRequired => 400,
            Error::Unauthorized(_) | Error::InsufficientAuthentication { .. } => 401,
            Error::EmailChangeRefused | Error::EmailChangeUnsupported | Error::Forbidden => 403,
            Error::NotFound => 404,
            Error::StoreUnavailable(_) | Error::MailUnavailable(_) => 503,
            Error::MailRejected(_) => 502,
            Error::StoreFailed(_) | Error::Hook(_) | Error::Internal(_) => 500,
        }
    }

    /// `true` for errors caused by an unavailable dependency (store or mail server).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::StoreUnavailable(_) | Error::MailUnavailable(_))
    }
}

/// The store could not answer. Backends convert their own errors into this, keeping
/// them as the source (a message is an error too: `StoreError::unavailable("timed out")`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Unreachable, timed out, or refusing connections: retrying later may work (503).
    #[error("store unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The store answered something this library cannot use (a bug or foreign data; 500).
    #[error("store error: {0}")]
    Backend(#[source] BoxError),
    /// The store has no room for a new entry until `retry_after` has passed (the in-memory
    /// store, full of entries it must keep): 503 with that `Retry-After`.
    #[error("store full for {}s: {source}", retry_after_secs(*retry_after))]
    Full {
        /// Until an entry frees its place.
        retry_after: Duration,
        /// Why.
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// [`StoreError::Unavailable`] of `source`.
    pub fn unavailable(source: impl Into<BoxError>) -> StoreError {
        StoreError::Unavailable(source.into())
    }

    /// [`StoreError::Backend`] of `source`.
    pub fn backend(source: impl Into<BoxError>) -> StoreError {
        StoreError::Backend(source.into())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            e @ (StoreError::Unavailable(_) | StoreError::Full { .. }) => {
                Error::StoreUnavailable(e)
            }
            e => Error::StoreFailed(e),
        }
    }
}

/// `text` with every mail address in it replaced by `[address]`: mail servers quote the
/// recipient in their replies (`550 5.1.1 <ada@example.com>: User unknown`), and such text
/// goes into logs and errors. Anything with an `@` between two non-blank characters counts
/// as an address.
///
/// ```
/// use otp_core::mailer::redact_addresses;
///
/// assert_eq!(
///     redact_addresses("550 5.1.1 <ada@example.com>: User unknown"),
///     "550 5.1.1 <[address]>: User unknown"
/// );
/// ```
pub fn redact_addresses(text: &str) -> String {
    // Characters that end an address as mail servers quote it.
    let stop = |c: char| {
        c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '"' | ',' | ';' | '[' | ']')
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('@') {
        let start = rest[..at].rfind(stop).map_or(0, |i| i + 1);
        let end = rest[at + 1..].find(stop).map_or(rest.len(), |i| at + 1 + i);
        out.push_str(&rest[..start]);
        if start < at && at + 1 < end {
            out.push_str("[address]");
        } else {
            out.push_str(&rest[start..end]);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

impl MailError {
    /// The same error with every mail address in its text redacted
    /// ([`redact_addresses`]): what the engine logs and turns into an [`Error`].
    pub fn redacted(&self) -> MailError {
        match self {
            MailError::Transient(m) => MailError::Transient(redact_addresses(m)),
            MailError::Permanent(m) => MailError::Permanent(redact_addresses(m)),
        }
    }
}

/// Why a message could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// Worth retrying later: connection refused, timeout, a 4xx reply (503 to the client).
    #[error("transient mail failure: {0}")]
    Transient(String),
    /// Will not work by retrying: a 5xx reply, a refused recipient (502 to the client).
    #[error("permanent mail failure: {0}")]
    Permanent(String),
}

impl From<MailError> for Error {
    fn from(e: MailError) -> Self {
        match e.redacted() {
            e @ MailError::Transient(_) => Error::MailUnavailable(e),
            e @ MailError::Permanent(_) => Error::MailRejected(e),
        }
    }
}
