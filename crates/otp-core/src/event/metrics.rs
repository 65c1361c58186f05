//! Metrics, derived from the [events](super) (and the requests), through the [`metrics`](https://docs.rs/metrics) facade (the `metrics`
//! feature, on by default): install any recorder (for example
//! `metrics-exporter-prometheus`) and these appear; without one they cost next to nothing,
//! and without the feature nothing is recorded.
//!
//! Every name starts with `otp_`; counters end in `_total`. Labels hold only fixed words
//! (endpoint names, outcomes, statuses): never an address, a token, a session id or an IP.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `otp_codes_requested_total` | counter | code requests that passed the address check: sent, withheld (a refused address, the magic code), refused by a limit, or failed to mail |
//! | `otp_mails_sent_total` | counter | |
//! | `otp_mails_failed_total` | counter | `reason`: `unavailable`, `rejected` |
//! | `otp_verifications_total` | counter | `method`: `code`, `link`, `reauthentication`, `email_change`; `outcome`: `success`, `mismatch`, `no_code`, `locked_out`, `ip_limited`, `refused`, `invalid_link`, `expired_link` |
//! | `otp_lockouts_total` | counter | |
//! | `otp_rate_limited_total` | counter | `scope`: `address` (per minute), `address_hour`, `address_day`, `cooldown`, `ip` (code requests), `ip_failures` (wrong codes from one IP), `lockout` |
//! | `otp_refreshes_total` | counter | `outcome`: `success`, `reissued` (the parent within the reuse interval), `rejected`, `reused` |
//! | `otp_refresh_reuse_detected_total` | counter | |
//! | `otp_logouts_total` | counter | `scope`: `session` (each session `/logout` ended), `all` (`/logout-all`, an email change, or the application), `others`, `one` (by its user or the application) |
//! | `otp_sessions_evicted_total` | counter | sessions ended at login by `OTP_AUTH_MAX_SESSIONS_PER_USER` |
//! | `otp_admin_actions_total` | counter | `action`: `sessions_listed`, `sessions_ended`, `session_ended`, `address_read`, `locked`, `unlocked`, `sign_in_issued` |
//! | `otp_outbox_depth` | gauge | items not yet delivered (waiting, claimed, delayed), after each pass of the outbox worker |
//! | `otp_outbox_oldest_age_seconds` | gauge | the age of the oldest of them (0 when empty) |
//! | `otp_outbox_dead_letters` | gauge | dead letters |
//! | `otp_outbox_deliveries_total` | counter | `kind`: `event`, `mail`; `outcome`: `delivered`, `retried`, `dead` |
//! | `otp_request_duration_seconds` | histogram | `endpoint`, `status` |
//! | `otp_refused_requests_total` | counter | `status`: answers given before an endpoint ran (unknown path 404, wrong method 405, body over the limit 413, no client address 500) |
//! | `otp_memory_store_full_total` | counter | `table`: `addresses`, `ip_requests`, `ip_failures`, `sessions`, `revoked`; `outcome`: `evicted` (a least recently used entry without pending code or lockout made room), `refused` (503) |

use std::time::Duration;

use super::{Binding, Event, EventKind, Failure, Verification};
use crate::adapter::Endpoint;
use crate::error::MailError;
use crate::mailer::MessageKind;

#[cfg(feature = "metrics")]
use metrics::{counter, gauge, histogram};

/// Without the `metrics` feature every recording is a no-op (the arguments are still
/// evaluated, so both builds check the same code).
#[cfg(not(feature = "metrics"))]
mod off {
    /// Stands in for a counter or a histogram handle.
    pub(super) struct Noop;

    impl Noop {
        pub(super) fn increment(&self, _: u64) {}
        pub(super) fn record(&self, _: f64) {}
        pub(super) fn set(&self, _: f64) {}
    }

    macro_rules! counter {
        ($name:expr $(, $k:literal => $v:expr)* $(,)?) => {{
            let _ = ($name, $($v),*);
            $crate::event::metrics::off::Noop
        }};
    }
    pub(crate) use counter;
    pub(crate) use counter as histogram;
    pub(crate) use counter as gauge;
}
#[cfg(not(feature = "metrics"))]
use off::{counter, gauge, histogram};

/// `otp_codes_requested_total`
pub const CODES_REQUESTED: &str = "otp_codes_requested_total";
/// `otp_mails_sent_total`
pub const MAILS_SENT: &str = "otp_mails_sent_total";
/// `otp_mails_failed_total`
pub const MAILS_FAILED: &str = "otp_mails_failed_total";
/// `otp_verifications_total`
pub const VERIFICATIONS: &str = "otp_verifications_total";
/// `otp_lockouts_total`
pub const LOCKOUTS: &str = "otp_lockouts_total";
/// `otp_rate_limited_total`
pub const RATE_LIMITED: &str = "otp_rate_limited_total";
/// `otp_refreshes_total`
pub const REFRESHES: &str = "otp_refreshes_total";
/// `otp_refresh_reuse_detected_total`
pub const REUSE_DETECTED: &str = "otp_refresh_reuse_detected_total";
/// `otp_logouts_total`
pub const LOGOUTS: &str = "otp_logouts_total";
/// `otp_sessions_evicted_total`
pub const SESSIONS_EVICTED: &str = "otp_sessions_evicted_total";
/// `otp_admin_actions_total`
pub const ADMIN_ACTIONS: &str = "otp_admin_actions_total";
/// `otp_outbox_depth`
pub const OUTBOX_DEPTH: &str = "otp_outbox_depth";
/// `otp_outbox_oldest_age_seconds`
pub const OUTBOX_OLDEST_AGE: &str = "otp_outbox_oldest_age_seconds";
/// `otp_outbox_dead_letters`
pub const OUTBOX_DEAD: &str = "otp_outbox_dead_letters";
/// `otp_outbox_deliveries_total`
pub const OUTBOX_DELIVERIES: &str = "otp_outbox_deliveries_total";
/// `otp_request_duration_seconds`
pub const REQUEST_DURATION: &str = "otp_request_duration_seconds";
/// `otp_refused_requests_total`
pub const REFUSED: &str = "otp_refused_requests_total";
/// `otp_memory_store_full_total`
pub const MEMORY_STORE_FULL: &str = "otp_memory_store_full_total";

/// Every metric name this crate records.
pub const ALL: [&str; 13] = [
    CODES_REQUESTED,
    MAILS_SENT,
    MAILS_FAILED,
    VERIFICATIONS,
    LOCKOUTS,
    RATE_LIMITED,
    REFRESHES,
    REUSE_DETECTED,
    LOGOUTS,
    SESSIONS_EVICTED,
    REQUEST_DURATION,
    REFUSED,
    MEMORY_STORE_FULL,
];

/// Counts an event: every counter but the request ones is derived from events here.
pub(crate) fn count(event: &Event) {
    let binding = event.binding.map_or("bound", Binding::as_str);
    let verified = |method: Verification, outcome: &'static str| {
        counter!(VERIFICATIONS, "method" => method.as_str(), "outcome" => outcome, "binding" => binding)
            .increment(1);
    };
    match &event.kind {
        EventKind::CodeSent => {
            counter!(CODES_REQUESTED).increment(1);
            counter!(MAILS_SENT).increment(1);
        }
        EventKind::CodeWithheld { .. } => counter!(CODES_REQUESTED).increment(1),
        EventKind::CodeRefused { limit } => {
            counter!(CODES_REQUESTED).increment(1);
            counter!(RATE_LIMITED, "scope" => limit.as_str()).increment(1);
        }
        EventKind::MailFailed { mail, error } => {
            if *mail != MessageKind::EmailChanged {
                counter!(CODES_REQUESTED).increment(1);
            }
            let reason = match error {
                MailError::Permanent(_) => "rejected",
                _ => "unavailable",
            };
            counter!(MAILS_FAILED, "reason" => reason).increment(1);
        }
        EventKind::NoticeSent => counter!(MAILS_SENT).increment(1),
        EventKind::LoginSucceeded { method } => verified(method.verification(), "success"),
        EventKind::Reauthenticated => verified(Verification::Reauthentication, "success"),
        EventKind::EmailChanged => verified(Verification::EmailChange, "success"),
        EventKind::VerificationFailed { method, reason, .. } => {
            verified(*method, reason.as_str());
            if *reason == Failure::IpLimited {
                counter!(RATE_LIMITED, "scope" => "ip_failures").increment(1);
            }
        }
        EventKind::LockedOut => counter!(LOCKOUTS).increment(1),
        EventKind::Refreshed => counter!(REFRESHES, "outcome" => "success").increment(1),
        EventKind::ReuseGranted => counter!(REFRESHES, "outcome" => "reissued").increment(1),
        EventKind::RefreshRefused => counter!(REFRESHES, "outcome" => "rejected").increment(1),
        EventKind::ReuseDetected => {
            counter!(REFRESHES, "outcome" => "reused").increment(1);
            counter!(REUSE_DETECTED).increment(1);
        }
        EventKind::LoggedOut => logout("session"),
        EventKind::LoggedOutAll { .. } => logout("all"),
        EventKind::LoggedOutOthers { .. } => logout("others"),
        EventKind::SessionEnded => logout("one"),
        EventKind::SessionsEvicted { count } => {
            counter!(SESSIONS_EVICTED).increment(u64::from(*count));
        }
        EventKind::AdminAction { action, .. } => {
            counter!(ADMIN_ACTIONS, "action" => action.as_str()).increment(1);
        }
    }
}

fn logout(scope: &'static str) {
    counter!(LOGOUTS, "scope" => scope).increment(1);
}

/// One request served by an endpoint.
pub(crate) fn request_done(endpoint: Endpoint, status: u16, elapsed: Duration) {
    histogram!(
        REQUEST_DURATION,
        "endpoint" => endpoint.name(),
        "status" => status_label(status),
    )
    .record(elapsed.as_secs_f64());
}

/// A full table of the in-memory store made room (`evicted`) or refused (503).
pub(crate) fn memory_store_full(table: &'static str, evicted: bool) {
    let outcome = if evicted { "evicted" } else { "refused" };
    counter!(MEMORY_STORE_FULL, "table" => table, "outcome" => outcome).increment(1);
}

/// A request answered before any endpoint ran.
pub(crate) fn refused(status: u16) {
    counter!(REFUSED, "status" => status_label(status)).increment(1);
}

// Fixed strings, so labels never allocate and never hold anything but a status.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        _ => "other",
    }
}

/// The outbox's state after a pass of its worker.
pub(crate) fn outbox_state(stats: &crate::outbox::OutboxStats, now_ms: u64) {
    gauge!(OUTBOX_DEPTH).set(stats.depth as f64);
    gauge!(OUTBOX_DEAD).set(stats.dead as f64);
    let age = stats
        .oldest_created_ms
        .map_or(0.0, |c| now_ms.saturating_sub(c) as f64 / 1000.0);
    gauge!(OUTBOX_OLDEST_AGE).set(age);
}

/// One settled delivery attempt.
pub(crate) fn outbox_delivery(kind: crate::outbox::OutboxKind, outcome: &'static str) {
    let kind = match kind {
        crate::outbox::OutboxKind::Event => "event",
        crate::outbox::OutboxKind::Mail => "mail",
    };
    counter!(OUTBOX_DELIVERIES, "kind" => kind, "outcome" => outcome).increment(1);
}
