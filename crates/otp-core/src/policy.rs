//! The decisions of a store, as plain data and functions: what a code request, a
//! verification or a refresh does to the state of one address or one session.
//!
//! The in-memory store is these types under a mutex; a store on a database that decides in
//! its own code (the SQLite example) loads a row into them, calls the same function, and
//! writes the row back in one transaction. The Redis scripts implement the same rules in
//! Lua, and the contract suite ([`crate::contract`]) holds every backend to them.
//!
//! Times are milliseconds since the epoch. Windows are fixed, not sliding: a window starts
//! at the first request counted in it; the failure window at the first failure; reaching
//! the cap locks the address for a full lockout from that moment, and the end of a lockout
//! clears the count.

use std::time::Duration;

use crate::code::CodeMac;
use crate::store::{
    AddressLimit, CallId, DAY, HOUR, IssueOutcome, IssueRequest, Limits, Renewal, RotateOutcome,
    Rotation, SessionAuth, VerifyOutcome, VerifyRequest,
};

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fixed-window counter: the window starts at the first request counted in it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// When the window started.
    pub start: u64,
    /// Requests counted in it.
    pub count: u32,
}

impl Window {
    /// The count, zero once the window of `length` ms has passed.
    pub fn current(&self, now: u64, length: u64) -> u32 {
        if self.count == 0 || now >= self.start.saturating_add(length) {
            0
        } else {
            self.count
        }
    }

    /// The wait until the window ends when its count has reached `limit`, else `None`.
    pub fn full(&self, now: u64, length: u64, limit: u32) -> Option<u64> {
        (self.current(now, length) >= limit)
            .then(|| self.start.saturating_add(length).saturating_sub(now))
    }

    /// Counts one request, starting a new window if the last one has passed.
    pub fn count(&mut self, now: u64, length: u64) {
        if self.current(now, length) == 0 {
            self.start = now;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
    }

    /// Until when the window matters (0 when it counts nothing).
    pub fn live_until(&self, length: u64) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.start.saturating_add(length)
        }
    }
}

/// What the last call that changed an address did, kept with its [`CallId`] so that the
/// same call resent gets the same answer and is not counted twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A code was issued.
    Issued,
    /// The code was verified and consumed.
    Verified,
    /// A wrong code was counted.
    Mismatch,
    /// A code was presented while none was pending, and counted as a failure.
    NoCode,
}

/// Everything about one address, as one Redis hash holds it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AddressState {
    /// The pending code's MAC and expiry.
    pub code: Option<(CodeMac, u64)>,
    /// Requests in the per-minute window ([`Limits::request_window`]).
    pub minute: Window,
    /// Requests in the hour window.
    pub hour: Window,
    /// Requests in the day window.
    pub day: Window,
    /// Failed verifications in the failure window.
    pub failures: u32,
    /// When the failure window started.
    pub failure_window_start: u64,
    /// The end of a lockout; 0 when not locked out.
    pub locked_until: u64,
    /// The last call that changed the state.
    pub last_call: Option<(CallId, Recorded)>,
}

impl AddressState {
    /// Clears a lockout, failure window or code that has passed.
    fn expire(&mut self, now: u64, lockout: u64) {
        if self.locked_until != 0 && now >= self.locked_until {
            self.locked_until = 0;
            self.failures = 0;
        }
        if self.failures > 0 && now >= self.failure_window_start.saturating_add(lockout) {
            self.failures = 0;
        }
        if self.code.is_some_and(|(_, exp)| now >= exp) {
            self.code = None;
        }
    }

    /// When nothing in the state matters any more (the key's expiry in Redis terms): the
    /// state can be forgotten after it.
    pub fn forget_at(&self, limits: &Limits) -> u64 {
        let code = self.code.map_or(0, |(_, exp)| exp);
        let failures = if self.failures > 0 {
            self.failure_window_start.saturating_add(ms(limits.lockout))
        } else {
            0
        };
        code.max(self.minute.live_until(ms(limits.request_window)))
            .max(self.hour.live_until(ms(HOUR)))
            .max(self.day.live_until(ms(DAY)))
            .max(failures)
            .max(self.locked_until)
    }

    /// A code request for this address (the IP bucket is the caller's, counted first):
    /// checks the lockout, the minute, hour and day windows and the cooldown, then stores
    /// the code and counts the request in every window.
    pub fn issue(&mut self, req: &IssueRequest, now: u64) -> IssueOutcome {
        if self.last_call == Some((req.call, Recorded::Issued)) {
            return IssueOutcome::Issued; // the same call resent
        }
        let l = &req.limits;
        let window = ms(l.request_window);
        self.expire(now, ms(l.lockout));
        if self.locked_until > now {
            return IssueOutcome::LockedOut {
                retry_after: Duration::from_millis(self.locked_until - now),
            };
        }
        let cooldown = ms(l.resend_cooldown);
        let issued_at = self
            .code
            .map(|(_, exp)| exp.saturating_sub(ms(req.code_ttl)));
        let refused = [
            (
                self.minute.full(now, window, l.per_address),
                AddressLimit::Minute,
            ),
            (
                self.hour.full(now, ms(HOUR), l.per_address_hour),
                AddressLimit::Hour,
            ),
            (
                self.day.full(now, ms(DAY), l.per_address_day),
                AddressLimit::Day,
            ),
            (
                issued_at
                    .filter(|at| cooldown > 0 && now < at.saturating_add(cooldown))
                    .map(|at| at.saturating_add(cooldown) - now),
                AddressLimit::Cooldown,
            ),
        ]
        .into_iter()
        .filter_map(|(wait, limit)| wait.map(|w| (w, limit)))
        // The longest wait (retrying earlier would only be refused again); on a tie the
        // first limit named.
        .fold(None, |best: Option<(u64, AddressLimit)>, x| match best {
            Some(b) if b.0 >= x.0 => Some(b),
            _ => Some(x),
        });
        if let Some((wait, limit)) = refused {
            return IssueOutcome::AddressLimited {
                retry_after: Duration::from_millis(wait),
                limit,
            };
        }
        self.minute.count(now, window);
        self.hour.count(now, ms(HOUR));
        self.day.count(now, ms(DAY));
        self.code = Some((req.code_mac, now.saturating_add(ms(req.code_ttl))));
        self.last_call = Some((req.call, Recorded::Issued));
        IssueOutcome::Issued
    }

    /// A verification: checks the client IP's failures first (`ip_full`: the wait when its
    /// window is full, as [`Window::full`] says), so that a limited client learns nothing
    /// of the address; then the lockout; then compares in constant time and consumes the
    /// code, or counts the failure.
    ///
    /// A wrong code counts the same whether or not a code is pending
    /// ([`VerifyOutcome::NoCode`] is a failure like [`VerifyOutcome::Mismatch`]), so the
    /// answers to N wrong codes are the same for every address. The caller counts both
    /// against the IP's window, unless the call was a resend (`self.last_call` was
    /// already this call).
    pub fn verify(&mut self, req: &VerifyRequest, now: u64, ip_full: Option<u64>) -> VerifyOutcome {
        let l = &req.limits;
        match self.last_call {
            Some((call, Recorded::Verified)) if call == req.call => {
                return VerifyOutcome::Verified;
            }
            Some((call, Recorded::Mismatch)) if call == req.call => {
                let attempts_left = l.max_attempts.saturating_sub(self.failures);
                return VerifyOutcome::Mismatch { attempts_left };
            }
            Some((call, Recorded::NoCode)) if call == req.call => {
                let attempts_left = l.max_attempts.saturating_sub(self.failures);
                return VerifyOutcome::NoCode { attempts_left };
            }
            _ => {}
        }
        if let Some(wait) = ip_full {
            return VerifyOutcome::IpLimited {
                retry_after: Duration::from_millis(wait),
            };
        }
        let lockout = ms(l.lockout);
        self.expire(now, lockout);
        if self.locked_until > now {
            return VerifyOutcome::LockedOut {
                retry_after: Duration::from_millis(self.locked_until - now),
            };
        }
        let pending = self.code.map(|(mac, _)| mac);
        if pending.is_some_and(|mac| mac.ct_eq(&req.code_mac)) {
            self.code = None;
            self.failures = 0;
            self.last_call = Some((req.call, Recorded::Verified));
            return VerifyOutcome::Verified;
        }
        if self.failures == 0 {
            self.failure_window_start = now;
        }
        self.failures = self.failures.saturating_add(1);
        let attempts_left = l.max_attempts.saturating_sub(self.failures);
        if attempts_left == 0 {
            self.code = None;
            self.locked_until = now.saturating_add(lockout);
        }
        if pending.is_some() {
            self.last_call = Some((req.call, Recorded::Mismatch));
            VerifyOutcome::Mismatch { attempts_left }
        } else {
            self.last_call = Some((req.call, Recorded::NoCode));
            VerifyOutcome::NoCode { attempts_left }
        }
    }

    /// Deletes the pending code if it is `code_mac`.
    pub fn discard(&mut self, code_mac: &CodeMac) {
        if self.code.is_some_and(|(m, _)| m.ct_eq(code_mac)) {
            self.code = None;
        }
    }

    /// Makes `code_mac` pending again for `ttl`, unless another code is pending.
    pub fn restore(&mut self, code_mac: &CodeMac, ttl: Duration, now: u64) {
        if self.code.is_none_or(|(_, exp)| now >= exp) {
            self.code = Some((*code_mac, now.saturating_add(ms(ttl))));
            self.last_call = None;
        }
    }
}

/// The refresh state of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// The current refresh token's `jti`.
    pub current_jti: String,
    /// The `jti` the current one replaced, and when (ms): the only token the reuse
    /// interval accepts besides the current one.
    pub parent: Option<(String, u64)>,
    /// The session's last authentication.
    pub auth: SessionAuth,
}

impl RefreshState {
    /// The state of a new session.
    pub fn new(jti: &str, auth: SessionAuth) -> RefreshState {
        RefreshState {
            current_jti: jti.to_owned(),
            parent: None,
            auth,
        }
    }

    /// A fresh authentication ([`crate::store::TokenBlacklist::renew_session`]): recorded.
    pub fn renew(&mut self, r: &Renewal) {
        self.auth = r.auth;
    }

    /// A rotation: the current token rotates (the same rotation resent answers the same);
    /// the immediate parent within the reuse interval gets [`RotateOutcome::Reissued`];
    /// anything else is [`RotateOutcome::Reused`], and the caller ends the session. On
    /// [`RotateOutcome::Rotated`] the caller also records the refresh time and the new
    /// expiry.
    pub fn rotate(&mut self, r: &Rotation, now: u64) -> RotateOutcome {
        if self.current_jti == r.presented_jti {
            let parent = std::mem::replace(&mut self.current_jti, r.new_jti.clone());
            self.parent = Some((parent, now));
            return RotateOutcome::Rotated { auth: self.auth };
        }
        match &self.parent {
            Some((parent, _)) if *parent == r.presented_jti && self.current_jti == r.new_jti => {
                RotateOutcome::Rotated { auth: self.auth }
            }
            Some((parent, at))
                if *parent == r.presented_jti
                    && !r.reuse_interval.is_zero()
                    && now.saturating_sub(*at) <= ms(r.reuse_interval) =>
            {
                RotateOutcome::Reissued {
                    current_jti: self.current_jti.clone(),
                    auth: self.auth,
                }
            }
            _ => RotateOutcome::Reused,
        }
    }
}
