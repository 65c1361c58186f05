//! The embedded default store: [`OtpStore`] and [`TokenBlacklist`] in process memory.
//!
//! Each operation runs under one mutex, which makes it atomic exactly as a Redis script is.
//! Expired entries are swept at most every few seconds by whichever call comes along, so
//! memory follows the live entries and no background task is needed. State dies with the
//! process and is not shared between instances: use a Redis backend for more than one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::code::{AddressKey, CodeMac};
use crate::store::{
    AccessStatus, IssueOutcome, IssueRequest, NewSession, OtpStore, Revocation, RotateOutcome,
    SessionInfo, StoreError, TokenBlacklist, VerifyOutcome, VerifyRequest,
};

const SWEEP_EVERY_MS: u64 = 5_000;

/// Milliseconds since the epoch; replaceable in tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// In-memory [`OtpStore`] and [`TokenBlacklist`]. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    codes: Mutex<Codes>,
    sessions: Mutex<Sessions>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, i) = self
            .inner
            .codes
            .lock()
            .map(|c| (c.addresses.len(), c.ips.len()))
            .unwrap_or_default();
        f.debug_struct("MemoryStore")
            .field("addresses", &a)
            .field("ips", &i)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Codes {
    addresses: HashMap<String, AddressEntry>,
    ips: HashMap<String, Window>,
    last_sweep: u64,
}

/// Everything about one address, as one Redis hash holds it.
#[derive(Default)]
struct AddressEntry {
    code: Option<(CodeMac, u64)>,
    requests: Window,
    failures: u32,
    failure_window_start: u64,
    locked_until: u64,
    /// When nothing in the entry matters any more (the key's TTL in Redis terms).
    forget_at: u64,
}

#[derive(Default, Clone, Copy)]
struct Window {
    start: u64,
    count: u32,
    forget_at: u64,
}

impl Window {
    /// Counts one request unless the limit is reached; returns the wait when it is.
    fn take(&mut self, now: u64, window_ms: u64, limit: u32) -> Result<(), u64> {
        if self.count == 0 || now >= self.start + window_ms {
            self.start = now;
            self.count = 0;
        }
        if self.count >= limit {
            return Err(self.start + window_ms - now);
        }
        self.count += 1;
        self.forget_at = self.start + window_ms;
        Ok(())
    }

    fn live_until(&self, window_ms: u64) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.start + window_ms
        }
    }
}

impl AddressEntry {
    /// Clears a lockout or failure window that has passed.
    fn expire_failures(&mut self, now: u64, lockout_ms: u64) {
        if self.locked_until != 0 && now >= self.locked_until {
            self.locked_until = 0;
            self.failures = 0;
        }
        if self.failures > 0 && now >= self.failure_window_start + lockout_ms {
            self.failures = 0;
        }
    }

    fn touch(&mut self, request_window_ms: u64, lockout_ms: u64) {
        self.forget_at = self.live_until(request_window_ms, lockout_ms);
    }

    fn live_until(&self, request_window_ms: u64, lockout_ms: u64) -> u64 {
        let code = self.code.map_or(0, |(_, exp)| exp);
        let fails = if self.failures > 0 {
            self.failure_window_start + lockout_ms
        } else {
            0
        };
        code.max(self.requests.live_until(request_window_ms))
            .max(fails)
            .max(self.locked_until)
    }
}

struct Session {
    subject_key: String,
    current_jti: String,
    created_at: u64,
    refreshed_at: u64,
    expires_at_ms: u64,
    user_agent: Option<String>,
    ip: Option<String>,
}

#[derive(Default)]
struct Sessions {
    sessions: HashMap<String, Session>,
    /// (sid, jti) → expiry in ms.
    revoked: HashMap<(String, String), u64>,
    by_subject: HashMap<String, HashSet<String>>,
    last_sweep: u64,
}

impl Sessions {
    fn end(&mut self, sid: &str) {
        if let Some(s) = self.sessions.remove(sid)
            && let Some(set) = self.by_subject.get_mut(&s.subject_key)
        {
            set.remove(sid);
            if set.is_empty() {
                self.by_subject.remove(&s.subject_key);
            }
        }
    }

    fn live(&self, sid: &str, now: u64) -> Option<&Session> {
        self.sessions.get(sid).filter(|s| now < s.expires_at_ms)
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Backend("memory store lock poisoned".to_owned())
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store on the system clock.
    pub fn new() -> MemoryStore {
        Self::with_clock(system_clock())
    }

    /// An empty store on `clock` (milliseconds since the epoch), for tests of expiry.
    pub fn with_clock(clock: Clock) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Inner {
                clock,
                codes: Mutex::new(Codes::default()),
                sessions: Mutex::new(Sessions::default()),
            }),
        }
    }

    /// Entries currently held (addresses, IP buckets, sessions, revoked tokens): for tests
    /// that memory does not grow without bound.
    pub fn len(&self) -> usize {
        let c = self
            .inner
            .codes
            .lock()
            .map(|c| c.addresses.len() + c.ips.len())
            .unwrap_or(0);
        let s = self
            .inner
            .sessions
            .lock()
            .map(|s| s.sessions.len() + s.revoked.len() + s.by_subject.len())
            .unwrap_or(0);
        c + s
    }

    /// `true` when [`MemoryStore::len`] is zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every expired entry now instead of at the next sweep.
    pub fn sweep(&self) {
        let now = (self.inner.clock)();
        if let Ok(mut c) = self.inner.codes.lock() {
            sweep_codes(&mut c, now, true);
        }
        if let Ok(mut s) = self.inner.sessions.lock() {
            sweep_sessions(&mut s, now, true);
        }
    }

    fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    fn codes(&self, now: u64) -> Result<MutexGuard<'_, Codes>, StoreError> {
        let mut c = self.inner.codes.lock().map_err(poisoned)?;
        sweep_codes(&mut c, now, false);
        Ok(c)
    }

    fn sessions(&self, now: u64) -> Result<MutexGuard<'_, Sessions>, StoreError> {
        let mut s = self.inner.sessions.lock().map_err(poisoned)?;
        sweep_sessions(&mut s, now, false);
        Ok(s)
    }
}

fn sweep_codes(c: &mut Codes, now: u64, force: bool) {
    if !force && now < c.last_sweep + SWEEP_EVERY_MS {
        return;
    }
    c.last_sweep = now;
    c.addresses.retain(|_, e| now < e.forget_at);
    c.ips.retain(|_, w| now < w.forget_at);
}

fn sweep_sessions(s: &mut Sessions, now: u64, force: bool) {
    if !force && now < s.last_sweep + SWEEP_EVERY_MS {
        return;
    }
    s.last_sweep = now;
    let dead: Vec<String> = s
        .sessions
        .iter()
        .filter(|(_, v)| now >= v.expires_at_ms)
        .map(|(k, _)| k.clone())
        .collect();
    for sid in dead {
        s.end(&sid);
    }
    s.revoked.retain(|_, exp| now < *exp);
}

#[async_trait]
impl OtpStore for MemoryStore {
    async fn issue(&self, req: &IssueRequest) -> Result<IssueOutcome, StoreError> {
        let now = self.now();
        let l = &req.limits;
        let window = ms(l.request_window);
        let lockout = ms(l.lockout);
        let mut c = self.codes(now)?;
        if let Some(ip) = &req.ip {
            let w = c.ips.entry(ip.as_str().to_owned()).or_default();
            if let Err(wait) = w.take(now, window, l.per_ip) {
                return Ok(IssueOutcome::IpLimited {
                    retry_after: Duration::from_millis(wait),
                });
            }
        }
        let e = c
            .addresses
            .entry(req.address.as_str().to_owned())
            .or_default();
        e.expire_failures(now, lockout);
        let outcome = if e.locked_until > now {
            IssueOutcome::LockedOut {
                retry_after: Duration::from_millis(e.locked_until - now),
            }
        } else if let Err(wait) = e.requests.take(now, window, l.per_address) {
            IssueOutcome::AddressLimited {
                retry_after: Duration::from_millis(wait),
            }
        } else {
            e.code = Some((req.code_mac, now + ms(req.code_ttl)));
            IssueOutcome::Issued
        };
        e.touch(window, lockout);
        Ok(outcome)
    }

    async fn verify(&self, req: &VerifyRequest) -> Result<VerifyOutcome, StoreError> {
        let now = self.now();
        let l = &req.limits;
        let lockout = ms(l.lockout);
        let mut c = self.codes(now)?;
        let Some(e) = c.addresses.get_mut(req.address.as_str()) else {
            return Ok(VerifyOutcome::NoCode);
        };
        let outcome = verify_entry(e, req, now);
        e.touch(ms(l.request_window), lockout);
        Ok(outcome)
    }

    async fn discard(&self, address: &AddressKey, code_mac: &CodeMac) -> Result<(), StoreError> {
        let now = self.now();
        let mut c = self.codes(now)?;
        if let Some(e) = c.addresses.get_mut(address.as_str())
            && e.code.is_some_and(|(m, _)| m.ct_eq(code_mac))
        {
            e.code = None;
        }
        Ok(())
    }
}

/// The verification step on one entry; the caller records the entry's new lifetime.
fn verify_entry(e: &mut AddressEntry, req: &VerifyRequest, now: u64) -> VerifyOutcome {
    let l = &req.limits;
    let lockout = ms(l.lockout);
    e.expire_failures(now, lockout);
    if e.locked_until > now {
        return VerifyOutcome::LockedOut {
            retry_after: Duration::from_millis(e.locked_until - now),
        };
    }
    let Some((mac, exp)) = e.code else {
        return VerifyOutcome::NoCode;
    };
    if now >= exp {
        e.code = None;
        return VerifyOutcome::NoCode;
    }
    if mac.ct_eq(&req.code_mac) {
        e.code = None;
        e.failures = 0;
        return VerifyOutcome::Verified;
    }
    if e.failures == 0 {
        e.failure_window_start = now;
    }
    e.failures += 1;
    if e.failures >= l.max_attempts {
        e.code = None;
        e.locked_until = now + lockout;
        return VerifyOutcome::Mismatch { attempts_left: 0 };
    }
    VerifyOutcome::Mismatch {
        attempts_left: l.max_attempts - e.failures,
    }
}

#[async_trait]
impl TokenBlacklist for MemoryStore {
    async fn create_session(&self, session: &NewSession) -> Result<(), StoreError> {
        let now = self.now();
        let mut s = self.sessions(now)?;
        s.sessions.insert(
            session.sid.clone(),
            Session {
                subject_key: session.subject_key.clone(),
                current_jti: session.refresh_jti.clone(),
                created_at: now / 1000,
                refreshed_at: now / 1000,
                expires_at_ms: session.expires_at.saturating_mul(1000),
                user_agent: session.user_agent.clone(),
                ip: session.ip.clone(),
            },
        );
        s.by_subject
            .entry(session.subject_key.clone())
            .or_default()
            .insert(session.sid.clone());
        Ok(())
    }

    async fn rotate_refresh(
        &self,
        sid: &str,
        presented_jti: &str,
        new_jti: &str,
        new_expires_at: u64,
    ) -> Result<RotateOutcome, StoreError> {
        let now = self.now();
        let mut s = self.sessions(now)?;
        let current = match s.live(sid, now) {
            None => return Ok(RotateOutcome::Unknown),
            Some(sess) => sess.current_jti == presented_jti,
        };
        if !current {
            s.end(sid);
            return Ok(RotateOutcome::Reused);
        }
        if let Some(sess) = s.sessions.get_mut(sid) {
            sess.current_jti = new_jti.to_owned();
            sess.refreshed_at = now / 1000;
            sess.expires_at_ms = new_expires_at.saturating_mul(1000);
        }
        Ok(RotateOutcome::Rotated)
    }

    async fn check_access(&self, sid: &str, jti: &str) -> Result<AccessStatus, StoreError> {
        let now = self.now();
        let s = self.sessions(now)?;
        let revoked = s
            .revoked
            .get(&(sid.to_owned(), jti.to_owned()))
            .is_some_and(|exp| now < *exp);
        Ok(if revoked || s.live(sid, now).is_none() {
            AccessStatus::Revoked
        } else {
            AccessStatus::Active
        })
    }

    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let now = self.now();
        let mut s = self.sessions(now)?;
        if let Some(a) = &revocation.access {
            let exp = a.expires_at.saturating_mul(1000);
            if exp > now {
                s.revoked.insert((a.sid.clone(), a.jti.clone()), exp);
            }
        }
        for sid in &revocation.sessions {
            s.end(sid);
        }
        Ok(())
    }

    async fn revoke_all(&self, subject_key: &str) -> Result<u32, StoreError> {
        let now = self.now();
        let mut s = self.sessions(now)?;
        let sids: Vec<String> = s
            .by_subject
            .get(subject_key)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        let n = sids.iter().filter(|sid| s.live(sid, now).is_some()).count();
        for sid in &sids {
            s.end(sid);
        }
        Ok(n as u32)
    }

    async fn list_sessions(&self, subject_key: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let now = self.now();
        let s = self.sessions(now)?;
        let mut out: Vec<SessionInfo> = s
            .by_subject
            .get(subject_key)
            .into_iter()
            .flatten()
            .filter_map(|sid| {
                s.live(sid, now).map(|v| SessionInfo {
                    sid: sid.clone(),
                    created_at: v.created_at,
                    refreshed_at: v.refreshed_at,
                    expires_at: v.expires_at_ms / 1000,
                    user_agent: v.user_agent.clone(),
                    ip: v.ip.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.sid.cmp(&b.sid)));
        Ok(out)
    }
}
