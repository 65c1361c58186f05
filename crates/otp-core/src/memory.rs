//! The embedded default store, [`MemoryStore`].

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::code::{AddressKey, CodeMac, FlowKey};
use crate::store::policy::{AddressState, Recorded, RefreshState, Window};
use crate::store::{
    AccessStatus, AddressOp, AddressStatus, HOUR, IssueOutcome, IssueRequest, Limits, Login,
    NewSession, OtpStore, Renewal, Revocation, RotateOutcome, Rotation, SessionInfo, StoreError,
    TokenBlacklist, VerifyOutcome, VerifyRequest,
};

/// Expired entries each call drops at most, beyond those it touches itself.
const SWEEP_BUDGET: usize = 32;

/// Milliseconds since the epoch; replaceable in tests.
pub(crate) type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    })
}

/// The embedded default store: [`OtpStore`] and [`TokenBlacklist`] in process memory.
/// Cheap to clone; clones share state.
///
/// Each operation runs under a mutex, which makes it atomic exactly as a Redis script is
/// (verifying a code and opening its session take both locks, codes first). Every table
/// keeps a queue of expiry times, and each call drops at most a few entries whose time
/// has passed, so memory follows the live entries, no call ever walks the whole table
/// under a lock, and no background task is needed. Each table holds at most a capacity
/// of entries (default [`MemoryStore::DEFAULT_CAPACITY`]); when a new entry would pass it, the expired
/// ones go first, and if none has expired the call fails with
/// [`StoreError::Unavailable`] (503) rather than grow without bound.
///
/// State dies with the process and is not shared between instances: use a Redis backend
/// for more than one.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    capacity: usize,
    codes: Mutex<Codes>,
    sessions: Mutex<Sessions>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (a, i) = self
            .inner
            .codes
            .lock()
            .map(|c| (c.addresses.len(), c.ips.len() + c.ip_failures.len()))
            .unwrap_or_default();
        f.debug_struct("MemoryStore")
            .field("addresses", &a)
            .field("ips", &i)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

/// Something with a time after which it can be forgotten (milliseconds since the epoch).
trait Expires {
    fn forget_at(&self) -> u64;

    /// From when the entry may be dropped early to make room in a full table (0: now),
    /// or `None` if never: it holds something an attacker must not be able to flush
    /// (a pending code, a lockout) or something a user holds (a session).
    fn evictable_from(&self) -> Option<u64> {
        None
    }
}

/// Entries looked at, least recently used first, to find one to evict from a full table.
const EVICTION_SCAN: usize = 64;

/// Least time between two warnings that a table is full (ms).
const FULL_WARNING_EVERY_MS: u64 = 60_000;

/// The `Retry-After` of a full table when no entry says when it frees its place.
const FULL_RETRY_MS: u64 = 5_000;

/// A map whose entries are dropped once their [`Expires::forget_at`] has passed, through a
/// queue of expiry times: finding what has expired never walks the map.
///
/// A table that evicts (`evicts`) also keeps its entries' order of use, so that when
/// it is full the least recently used entry that [`Expires::evictable_from`] allows makes
/// room, and a new address is served instead of refused.
struct Expiring<V> {
    map: HashMap<String, Slot<V>>,
    /// (time, key): the time an entry is next looked at. An entry has one element that
    /// counts, the one at its `Slot::due`; others are stale and skipped.
    queue: BinaryHeap<Reverse<(u64, String)>>,
    /// The table's name in metrics and logs.
    name: &'static str,
    /// Whether a full table evicts (by [`Expires::evictable_from`]) rather than refuses.
    evicts: bool,
    /// (use, key): least recently used first. An entry has one element that counts, the
    /// one at its `Slot::used`; others are stale and skipped.
    lru: BinaryHeap<Reverse<(u64, String)>>,
    /// The last use handed out.
    uses: u64,
    /// When the last warning that the table is full was logged (ms).
    warned_at: Option<u64>,
}

struct Slot<V> {
    value: V,
    due: u64,
    used: u64,
}

impl<V> Expiring<V> {
    /// A table that refuses new entries when full, named `name` in metrics and logs.
    fn named(name: &'static str) -> Self {
        Expiring {
            map: HashMap::new(),
            queue: BinaryHeap::new(),
            name,
            evicts: false,
            lru: BinaryHeap::new(),
            uses: 0,
            warned_at: None,
        }
    }
}

impl<V: Expires> Expiring<V> {
    /// A table that evicts when full, named `name` in metrics and logs.
    fn evicting(name: &'static str) -> Self {
        Expiring {
            evicts: true,
            ..Expiring::named(name)
        }
    }

    /// Marks `key` as used now (tables that evict only).
    fn touch(&mut self, key: &str) {
        if !self.evicts {
            return;
        }
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        self.uses += 1;
        slot.used = self.uses;
        self.lru.push(Reverse((self.uses, key.to_owned())));
        // Stale elements pile up with every use: rebuild once they outnumber the live ones.
        if self.lru.len() > 2 * self.map.len() + 1024 {
            self.lru = self
                .map
                .iter()
                .map(|(k, s)| Reverse((s.used, k.clone())))
                .collect();
        }
    }

    /// Makes room for one entry in a full table: drops the least recently used entry that
    /// may be evicted, among the [`EVICTION_SCAN`] least recently used. Those that may not
    /// go yet count as used now, so the next scan looks further. Otherwise returns the
    /// wait until something frees its place (ms).
    fn evict_one(&mut self, now: u64) -> Result<(), u64> {
        let mut pinned = Vec::new();
        let mut soonest = u64::MAX;
        let mut evicted = false;
        let mut looked = 0;
        while looked < EVICTION_SCAN {
            let Some(Reverse((used, key))) = self.lru.pop() else {
                break;
            };
            let Some(slot) = self.map.get(&key) else {
                continue;
            };
            if slot.used != used {
                continue; // stale element
            }
            looked += 1;
            match slot.value.evictable_from() {
                Some(at) if at <= now => {
                    self.map.remove(&key);
                    evicted = true;
                    break;
                }
                Some(at) => {
                    soonest = soonest.min(at);
                    pinned.push(key);
                }
                None => pinned.push(key),
            }
        }
        for key in pinned {
            self.touch(&key);
        }
        if evicted {
            return Ok(());
        }
        // The next expiry frees a place too.
        Err(self.wait_for_room(soonest, now))
    }

    /// The wait (ms, at least 1) until `soonest` or the next expiry, whichever comes first;
    /// [`FULL_RETRY_MS`] when neither is known.
    fn wait_for_room(&self, soonest: u64, now: u64) -> u64 {
        let next_expiry = self.queue.peek().map_or(u64::MAX, |Reverse((at, _))| *at);
        match soonest.min(next_expiry) {
            u64::MAX => FULL_RETRY_MS,
            at => at.saturating_sub(now).max(1),
        }
    }

    /// Logs that the table is full, at most once a minute.
    fn warn_full(&mut self, now: u64, capacity: usize, evicting: bool) {
        if self
            .warned_at
            .is_some_and(|at| now < at.saturating_add(FULL_WARNING_EVERY_MS))
        {
            return;
        }
        self.warned_at = Some(now);
        let table = self.name;
        if evicting {
            tracing::warn!(
                table,
                capacity,
                "the in-memory store is full: new entries replace the least recently used \
                 ones that hold no pending code and no lockout (a flood of requests, or too \
                 small a capacity; a Redis store has no such limit)"
            );
        } else {
            tracing::warn!(
                table,
                capacity,
                "the in-memory store is full of pending codes, lockouts or sessions: new \
                 entries are refused (503) until some expire"
            );
        }
    }
    fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry, if it has not expired.
    fn get(&self, key: &str, now: u64) -> Option<&V> {
        self.map
            .get(key)
            .map(|s| &s.value)
            .filter(|v| now < v.forget_at())
    }

    /// The entry, expired or not (the caller resets what has passed).
    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.map.get_mut(key).map(|s| &mut s.value)
    }

    /// The entry for `key`, made with `make` if absent; fails when that would pass
    /// `capacity` even after dropping every expired entry.
    fn get_or_insert(
        &mut self,
        key: &str,
        now: u64,
        capacity: usize,
        make: impl FnOnce() -> V,
    ) -> Result<&mut V, StoreError> {
        if !self.map.contains_key(key) {
            if self.map.len() >= capacity {
                self.sweep(now, usize::MAX);
            }
            if self.map.len() >= capacity {
                self.make_room(now, capacity)?;
            }
            self.map.insert(
                key.to_owned(),
                Slot {
                    value: make(),
                    due: u64::MAX,
                    used: 0,
                },
            );
        }
        self.touch(key);
        Ok(self
            .map
            .get_mut(key)
            .map(|s| &mut s.value)
            .unwrap_or_else(|| unreachable!("inserted above")))
    }

    /// In a full table: evicts one entry, or fails with the wait until one can go.
    fn make_room(&mut self, now: u64, capacity: usize) -> Result<(), StoreError> {
        let table = self.name;
        let outcome = if self.evicts {
            self.evict_one(now)
        } else {
            Err(self.wait_for_room(u64::MAX, now))
        };
        match outcome {
            Ok(()) => {
                crate::event::metrics::memory_store_full(table, true);
                self.warn_full(now, capacity, true);
                Ok(())
            }
            Err(wait) => {
                crate::event::metrics::memory_store_full(table, false);
                self.warn_full(now, capacity, false);
                Err(full(capacity, Duration::from_millis(wait)))
            }
        }
    }

    /// Call after changing an entry: queues it for its (new) expiry time, or drops it when
    /// that has passed.
    fn schedule(&mut self, key: &str, now: u64) {
        let Some(slot) = self.map.get_mut(key) else {
            return;
        };
        let at = slot.value.forget_at();
        if at <= now {
            self.map.remove(key);
        } else if at < slot.due {
            // A later element may remain in the queue; it is skipped when it comes up.
            slot.due = at;
            self.queue.push(Reverse((at, key.to_owned())));
        }
        // A later expiry keeps the earlier element, which re-queues the entry when due.
    }

    fn remove(&mut self, key: &str) -> Option<V> {
        self.map.remove(key).map(|s| s.value)
    }

    /// Drops up to `budget` entries whose time has passed; returns them.
    fn sweep(&mut self, now: u64, budget: usize) -> Vec<(String, V)> {
        let mut dropped = Vec::new();
        let mut looked = 0;
        while looked < budget {
            match self.queue.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => break,
            }
            let Some(Reverse((at, key))) = self.queue.pop() else {
                break;
            };
            looked += 1;
            let Some(slot) = self.map.get_mut(&key) else {
                continue;
            };
            if slot.due != at {
                continue; // stale element
            }
            let forget = slot.value.forget_at();
            if forget <= now {
                if let Some(s) = self.map.remove(&key) {
                    dropped.push((key, s.value));
                }
            } else {
                slot.due = forget;
                self.queue.push(Reverse((forget, key)));
            }
        }
        dropped
    }
}

fn full(capacity: usize, retry_after: Duration) -> StoreError {
    StoreError::Full {
        retry_after,
        source: format!(
            "the in-memory store is full ({capacity} live entries in one table that cannot \
             be evicted); use a Redis store, or a larger MemoryStore::with_capacity"
        )
        .into(),
    }
}

struct Codes {
    addresses: Expiring<Address>,
    ips: Expiring<Bucket>,
    ip_failures: Expiring<Bucket>,
}

impl Default for Codes {
    fn default() -> Self {
        Codes {
            addresses: Expiring::evicting("addresses"),
            ips: Expiring::evicting("ip_requests"),
            ip_failures: Expiring::evicting("ip_failures"),
        }
    }
}

/// One address's state with the time it can be forgotten.
#[derive(Default)]
struct Address {
    state: AddressState,
    forget_at: u64,
}

impl Expires for Address {
    fn forget_at(&self) -> u64 {
        self.forget_at
    }

    /// Once no flow is pending and no lockout runs: request windows and failure counts
    /// may go first, a pending flow or a lockout never.
    fn evictable_from(&self) -> Option<u64> {
        let flows = self
            .state
            .flows
            .iter()
            .map(|f| f.expires)
            .max()
            .unwrap_or(0);
        Some(
            flows
                .max(self.state.locked_until)
                .max(self.state.admin_locked_until),
        )
    }
}

/// An IP's window, with its length for its expiry.
#[derive(Default)]
struct Bucket {
    window: Window,
    length: u64,
}

impl Expires for Bucket {
    fn forget_at(&self) -> u64 {
        self.window.live_until(self.length)
    }

    /// An IP's window may go (the per-address limits and lockouts still hold).
    fn evictable_from(&self) -> Option<u64> {
        Some(0)
    }
}

impl Bucket {
    fn count(&mut self, now: u64, length: u64) {
        self.window.count(now, length);
        self.length = length;
    }
}

struct Session {
    subject_key: String,
    refresh: RefreshState,
    created_at: u64,
    refreshed_at: u64,
    /// When it was created or last rotated (ms): the order of the session cap.
    touched_ms: u64,
    expires_at_ms: u64,
    user_agent: Option<String>,
    ip: Option<String>,
}

impl Expires for Session {
    fn forget_at(&self) -> u64 {
        self.expires_at_ms
    }
}

struct Revoked(u64);

impl Expires for Revoked {
    fn forget_at(&self) -> u64 {
        self.0
    }
}

struct Sessions {
    sessions: Expiring<Session>,
    /// "sid jti" → expiry in ms.
    revoked: Expiring<Revoked>,
    by_subject: HashMap<String, HashSet<String>>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            sessions: Expiring::named("sessions"),
            revoked: Expiring::named("revoked"),
            by_subject: HashMap::new(),
        }
    }
}

impl Sessions {
    fn unindex(&mut self, sid: &str, subject_key: &str) {
        if let Some(set) = self.by_subject.get_mut(subject_key) {
            set.remove(sid);
            if set.is_empty() {
                self.by_subject.remove(subject_key);
            }
        }
    }

    fn end(&mut self, sid: &str) -> bool {
        match self.sessions.remove(sid) {
            Some(s) => {
                self.unindex(sid, &s.subject_key);
                true
            }
            None => false,
        }
    }

    fn live(&self, sid: &str, now: u64) -> Option<&Session> {
        self.sessions.get(sid, now)
    }

    fn sweep(&mut self, now: u64, budget: usize) {
        for (sid, s) in self.sessions.sweep(now, budget) {
            self.unindex(&sid, &s.subject_key);
        }
        self.revoked.sweep(now, budget);
    }

    /// Records a session and ends the least recently refreshed others beyond `max`.
    fn create(&mut self, s: &NewSession, now: u64, capacity: usize) -> Result<u32, StoreError> {
        let fresh = Session {
            subject_key: s.subject_key.clone(),
            refresh: RefreshState::new(&s.refresh_jti, s.auth),
            created_at: s.auth.at,
            refreshed_at: s.auth.at,
            touched_ms: now,
            expires_at_ms: s.expires_at.saturating_mul(1000),
            user_agent: s.user_agent.clone(),
            ip: s.ip.clone(),
        };
        // The same session again (a resent call) is left as it is.
        self.sessions
            .get_or_insert(&s.sid, now, capacity, || fresh)?;
        self.sessions.schedule(&s.sid, now);
        let set = self.by_subject.entry(s.subject_key.clone()).or_default();
        set.insert(s.sid.clone());
        // Ended sessions still in the index do not count; the oldest others go first.
        let mut others: Vec<(u64, String)> = set
            .iter()
            .filter(|sid| **sid != s.sid)
            .filter_map(|sid| {
                self.sessions
                    .get(sid, now)
                    .map(|v| (v.touched_ms, sid.clone()))
            })
            .collect();
        let keep = s.max_sessions.max(1) as usize - 1;
        let mut evicted = 0;
        if others.len() > keep {
            others.sort();
            let excess = others.len() - keep;
            for (_, sid) in others.into_iter().take(excess) {
                self.end(&sid);
                evicted += 1;
            }
        }
        Ok(evicted)
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::backend("memory store lock poisoned")
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// Entries per table (addresses, IP buckets, sessions, revoked tokens) when no
    /// capacity is given.
    pub const DEFAULT_CAPACITY: usize = 100_000;

    /// An empty store on the system clock, with [`MemoryStore::DEFAULT_CAPACITY`].
    pub fn new() -> MemoryStore {
        Self::with_clock_and_capacity(system_clock(), Self::DEFAULT_CAPACITY)
    }

    /// An empty store holding at most `capacity` live entries per table.
    pub fn with_capacity(capacity: usize) -> MemoryStore {
        Self::with_clock_and_capacity(system_clock(), capacity)
    }

    /// An empty store on `clock` (milliseconds since the epoch), for tests of expiry.
    pub fn with_clock(clock: Clock) -> MemoryStore {
        Self::with_clock_and_capacity(clock, Self::DEFAULT_CAPACITY)
    }

    /// An empty store on `clock` holding at most `capacity` live entries per table.
    pub fn with_clock_and_capacity(clock: Clock, capacity: usize) -> MemoryStore {
        MemoryStore {
            inner: Arc::new(Inner {
                clock,
                capacity: capacity.max(1),
                codes: Mutex::new(Codes::default()),
                sessions: Mutex::new(Sessions::default()),
            }),
        }
    }

    /// Entries currently held (addresses, IP buckets, sessions, revoked tokens, subject
    /// indexes): for tests that memory does not grow without bound.
    pub fn len(&self) -> usize {
        let c = self
            .inner
            .codes
            .lock()
            .map(|c| c.addresses.len() + c.ips.len() + c.ip_failures.len())
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

    /// Drops every expired entry now instead of a few at each call.
    pub fn sweep(&self) {
        let now = self.now();
        if let Ok(mut c) = self.inner.codes.lock() {
            c.addresses.sweep(now, usize::MAX);
            c.ips.sweep(now, usize::MAX);
            c.ip_failures.sweep(now, usize::MAX);
        }
        if let Ok(mut s) = self.inner.sessions.lock() {
            s.sweep(now, usize::MAX);
        }
    }

    fn now(&self) -> u64 {
        (self.inner.clock)()
    }

    fn codes(&self, now: u64) -> Result<MutexGuard<'_, Codes>, StoreError> {
        let mut c = self.inner.codes.lock().map_err(poisoned)?;
        c.addresses.sweep(now, SWEEP_BUDGET);
        c.ips.sweep(now, SWEEP_BUDGET);
        c.ip_failures.sweep(now, SWEEP_BUDGET);
        Ok(c)
    }

    fn sessions(&self, now: u64) -> Result<MutexGuard<'_, Sessions>, StoreError> {
        let mut s = self.inner.sessions.lock().map_err(poisoned)?;
        s.sweep(now, SWEEP_BUDGET);
        Ok(s)
    }
}

impl Codes {
    fn issue(
        &mut self,
        req: &IssueRequest,
        now: u64,
        capacity: usize,
    ) -> Result<IssueOutcome, StoreError> {
        let l = &req.limits;
        let key = req.address.as_str();
        let resent = self.addresses.get(key, now).is_some_and(
            |a| matches!(a.state.last_call, Some((c, Recorded::Issued { .. })) if c == req.call),
        );
        // The IP bucket first: a request counts against it even when the address then
        // refuses it.
        if let (Some(ip), false) = (&req.ip, resent) {
            let window = ms(l.request_window);
            let b = self
                .ips
                .get_or_insert(ip.as_str(), now, capacity, Bucket::default)?;
            if let Some(wait) = b.window.full(now, window, l.per_ip) {
                return Ok(IssueOutcome::IpLimited {
                    retry_after: Duration::from_millis(wait),
                });
            }
            b.count(now, window);
            self.ips.schedule(ip.as_str(), now);
        }
        let a = self
            .addresses
            .get_or_insert(key, now, capacity, Address::default)?;
        let outcome = a.state.issue(req, now);
        a.forget_at = a.state.forget_at(l);
        self.addresses.schedule(key, now);
        Ok(outcome)
    }

    fn verify(
        &mut self,
        req: &VerifyRequest,
        now: u64,
        capacity: usize,
    ) -> Result<VerifyOutcome, StoreError> {
        let l = &req.limits;
        let key = req.address.as_str();
        let ip_full = req.ip.as_ref().and_then(|ip| {
            self.ip_failures
                .get(ip.as_str(), now)
                .and_then(|b| b.window.full(now, ms(HOUR), l.ip_failures))
        });
        if let Some(wait) = ip_full {
            // Nothing of the address is looked at for a client past its budget.
            let resent = self
                .addresses
                .get(key, now)
                .is_some_and(|a| a.state.last_call.is_some_and(|(c, _)| c == req.call));
            if !resent {
                return Ok(VerifyOutcome::IpLimited {
                    retry_after: Duration::from_millis(wait),
                });
            }
        }
        let a = self
            .addresses
            .get_or_insert(key, now, capacity, Address::default)?;
        let resent = a.state.last_call.is_some_and(|(c, _)| c == req.call);
        let outcome = a.state.verify(req, now, ip_full);
        a.forget_at = a.state.forget_at(l);
        self.addresses.schedule(key, now);
        if let (true, Some(ip), false) = (outcome.is_failure(), &req.ip, resent) {
            let b = self
                .ip_failures
                .get_or_insert(ip.as_str(), now, capacity, Bucket::default)?;
            b.count(now, ms(HOUR));
            self.ip_failures.schedule(ip.as_str(), now);
        }
        Ok(outcome)
    }

    /// Gives a consumed flow back; the entry lives at least as long as its code.
    fn restore(
        &mut self,
        req: &VerifyRequest,
        now: u64,
        capacity: usize,
    ) -> Result<(), StoreError> {
        let key = req.address.as_str();
        let a = self
            .addresses
            .get_or_insert(key, now, capacity, Address::default)?;
        a.state.restore(req, now);
        a.forget_at = a.forget_at.max(now.saturating_add(ms(req.code_ttl)));
        self.addresses.schedule(key, now);
        Ok(())
    }
}

#[async_trait]
impl OtpStore for MemoryStore {
    async fn issue(&self, req: &IssueRequest) -> Result<IssueOutcome, StoreError> {
        let now = self.now();
        self.codes(now)?.issue(req, now, self.inner.capacity)
    }

    async fn verify(&self, req: &VerifyRequest) -> Result<VerifyOutcome, StoreError> {
        let now = self.now();
        self.codes(now)?.verify(req, now, self.inner.capacity)
    }

    async fn discard(
        &self,
        address: &AddressKey,
        flow: &FlowKey,
        code_mac: &CodeMac,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let mut c = self.codes(now)?;
        if let Some(a) = c.addresses.get_mut(address.as_str()) {
            a.state.discard(flow, code_mac);
        }
        Ok(())
    }

    async fn restore(&self, req: &VerifyRequest) -> Result<(), StoreError> {
        let now = self.now();
        self.codes(now)?.restore(req, now, self.inner.capacity)
    }

    async fn forget_devices(
        &self,
        address: &AddressKey,
        limits: &Limits,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let mut c = self.codes(now)?;
        let key = address.as_str();
        let a = c
            .addresses
            .get_or_insert(key, now, self.inner.capacity, Address::default)?;
        a.state.forget_devices(now);
        a.forget_at = a.state.forget_at(limits);
        c.addresses.schedule(key, now);
        Ok(())
    }

    async fn administer(
        &self,
        address: &AddressKey,
        op: &AddressOp,
        limits: &Limits,
    ) -> Result<AddressStatus, StoreError> {
        let now = self.now();
        let mut c = self.codes(now)?;
        let key = address.as_str();
        if *op == AddressOp::Read {
            let mut state =
                (c.addresses.get(key, now)).map_or_else(AddressState::default, |a| a.state.clone());
            return Ok(state.administer(op, now, limits));
        }
        let a = c
            .addresses
            .get_or_insert(key, now, self.inner.capacity, Address::default)?;
        let status = a.state.administer(op, now, limits);
        a.forget_at = a.state.forget_at(limits);
        c.addresses.schedule(key, now);
        Ok(status)
    }

    /// Codes and sessions live in this one value: a login is one operation.
    fn opens_sessions(&self) -> bool {
        true
    }

    async fn verify_and_open(
        &self,
        req: &VerifyRequest,
        session: &NewSession,
    ) -> Result<Login, StoreError> {
        let now = self.now();
        let capacity = self.inner.capacity;
        // Both locks, codes first (the only place that takes two), so the code is consumed
        // exactly when the session is recorded.
        let mut c = self.codes(now)?;
        let mut s = self.sessions(now)?;
        let outcome = c.verify(req, now, capacity)?;
        if outcome != VerifyOutcome::Verified {
            return Ok(Login {
                outcome,
                evicted: 0,
            });
        }
        match s.create(session, now, capacity) {
            Ok(evicted) => Ok(Login { outcome, evicted }),
            Err(e) => {
                c.restore(req, now, capacity)?;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl TokenBlacklist for MemoryStore {
    async fn create_session(&self, session: &NewSession) -> Result<u32, StoreError> {
        let now = self.now();
        self.sessions(now)?
            .create(session, now, self.inner.capacity)
    }

    async fn rotate_refresh(&self, r: &Rotation) -> Result<RotateOutcome, StoreError> {
        let now = self.now();
        let mut s = self.sessions(now)?;
        if s.live(&r.sid, now).is_none() {
            return Ok(RotateOutcome::Unknown);
        }
        let Some(sess) = s.sessions.get_mut(&r.sid) else {
            return Ok(RotateOutcome::Unknown);
        };
        let new_end = r.new_expires_at.saturating_mul(1000);
        let outcome = sess.refresh.rotate(r, now);
        match &outcome {
            RotateOutcome::Rotated { .. } => {
                sess.refreshed_at = now / 1000;
                sess.touched_ms = now;
                sess.expires_at_ms = new_end;
            }
            RotateOutcome::Reissued { .. } => {
                sess.expires_at_ms = sess.expires_at_ms.max(new_end);
            }
            RotateOutcome::Reused | RotateOutcome::Unknown => {}
        }
        if outcome == RotateOutcome::Reused {
            s.end(&r.sid);
        } else {
            s.sessions.schedule(&r.sid, now);
        }
        Ok(outcome)
    }

    async fn renew_session(&self, r: &Renewal) -> Result<bool, StoreError> {
        let now = self.now();
        let mut s = self.sessions(now)?;
        if s.live(&r.sid, now).is_none() {
            return Ok(false);
        }
        let Some(sess) = s.sessions.get_mut(&r.sid) else {
            return Ok(false);
        };
        sess.refresh.renew(r);
        sess.expires_at_ms = sess.expires_at_ms.max(r.expires_at.saturating_mul(1000));
        s.sessions.schedule(&r.sid, now);
        Ok(true)
    }

    async fn check_access(&self, sid: &str, jti: &str) -> Result<AccessStatus, StoreError> {
        let now = self.now();
        let s = self.sessions(now)?;
        let revoked = s.revoked.get(&revoked_key(sid, jti), now).is_some();
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
                let key = revoked_key(&a.sid, &a.jti);
                let r = s
                    .revoked
                    .get_or_insert(&key, now, self.inner.capacity, || Revoked(exp))?;
                r.0 = r.0.max(exp);
                s.revoked.schedule(&key, now);
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

fn revoked_key(sid: &str, jti: &str) -> String {
    format!("{sid} {jti}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::contract::{Fixture, limits};
    use crate::store::DAY;

    fn clocked() -> (MemoryStore, Arc<AtomicU64>) {
        let t = Arc::new(AtomicU64::new(1_000_000));
        let c = t.clone();
        let store =
            MemoryStore::with_clock_and_capacity(Arc::new(move || c.load(Ordering::SeqCst)), 4);
        (store, t)
    }

    #[tokio::test]
    async fn a_table_full_of_pending_codes_is_a_503_for_as_long_as_the_oldest_code() {
        let (store, t) = clocked();
        let l = limits();
        let mut first = None;
        for i in 0..4 {
            let f = Fixture::new();
            let out = store.issue(&f.issue("123456", None, l)).await.unwrap();
            assert!(matches!(out, IssueOutcome::Issued { .. }));
            if i == 0 {
                first = Some(f);
            }
            t.fetch_add(1000, Ordering::SeqCst);
        }
        let f = Fixture::new();
        let err = store.issue(&f.issue("123456", None, l)).await.unwrap_err();
        // The first code (issued 4 s ago, 300 s lifetime) frees its place in 296 s.
        match &err {
            StoreError::Full { retry_after, .. } => {
                assert_eq!(*retry_after, Duration::from_secs(296), "{err:?}");
            }
            other => panic!("{other:?}"),
        }
        // Once that code has expired, its entry (request windows only) makes room.
        t.fetch_add(296_000, Ordering::SeqCst);
        assert_eq!(
            store.issue(&f.issue("123456", None, l)).await.unwrap(),
            crate::contract::ISSUED
        );
        assert_eq!(store.len(), 4, "one entry was evicted for the new one");
        // The evicted one was the least recently used: the first address, whose request
        // windows are forgotten (a new code for it fits in the minute window again).
        let first = first.unwrap();
        let again = store.issue(&first.issue("654321", None, l)).await;
        assert!(
            matches!(again, Err(StoreError::Full { .. })),
            "the table is full of live codes again: {again:?}"
        );
    }

    #[tokio::test]
    async fn a_full_table_evicts_request_windows_and_keeps_codes_and_lockouts() {
        let (store, t) = clocked();
        let l = limits();
        // A lockout, a pending code, and two addresses whose codes were used.
        let locked = Fixture::new();
        store.issue(&locked.issue("111111", None, l)).await.unwrap();
        for _ in 0..l.max_attempts {
            store.verify(&locked.verify("000000", l)).await.unwrap();
        }
        let pending = Fixture::new();
        store
            .issue(&pending.issue("222222", None, l))
            .await
            .unwrap();
        for _ in 0..2 {
            let used = Fixture::new();
            store.issue(&used.issue("333333", None, l)).await.unwrap();
            store.verify(&used.verify("333333", l)).await.unwrap();
        }
        t.fetch_add(1000, Ordering::SeqCst);
        // New addresses keep coming: each replaces a used one, never the others.
        for _ in 0..10 {
            let f = Fixture::new();
            let out = store.issue(&f.issue("444444", None, l)).await.unwrap();
            assert!(matches!(out, IssueOutcome::Issued { .. }));
            store.verify(&f.verify("444444", l)).await.unwrap();
        }
        assert!(matches!(
            store.verify(&locked.verify("111111", l)).await.unwrap(),
            VerifyOutcome::LockedOut { .. }
        ));
        assert_eq!(
            store.verify(&pending.verify("222222", l)).await.unwrap(),
            VerifyOutcome::Verified
        );
    }

    #[test]
    fn a_full_table_warns_once_a_minute() {
        let (store, t) = clocked();
        let logs = crate::engine::tests::capture_logs(|| async move {
            let l = limits();
            for _ in 0..10 {
                let f = Fixture::new();
                store.issue(&f.issue("123456", None, l)).await.unwrap();
                store.verify(&f.verify("123456", l)).await.unwrap();
            }
            t.fetch_add(61_000, Ordering::SeqCst);
            // Four evictions, then a table full of pending codes refuses: one warning.
            for _ in 0..10 {
                let f = Fixture::new();
                let _ = store.issue(&f.issue("123456", None, l)).await;
            }
        });
        let warnings = logs.matches("the in-memory store is full").count();
        assert_eq!(warnings, 2, "{logs}");
        assert!(logs.contains("table=\"addresses\""), "{logs}");
    }

    #[tokio::test]
    async fn expired_entries_go_a_few_at_a_time_without_a_full_scan() {
        let t = Arc::new(AtomicU64::new(1_000_000));
        let c = t.clone();
        let store = MemoryStore::with_clock(Arc::new(move || c.load(Ordering::SeqCst)));
        let l = limits();
        for _ in 0..200 {
            store
                .issue(&Fixture::new().issue("123456", None, l))
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 200);
        t.fetch_add(ms(DAY) + 1, Ordering::SeqCst);
        // One call drops at most the sweep budget (plus what it touches itself).
        store
            .issue(&Fixture::new().issue("123456", None, l))
            .await
            .unwrap();
        let left = store.len();
        assert_eq!(left, 200 + 1 - SWEEP_BUDGET, "one call's sweep");
        store.sweep();
        assert_eq!(store.len(), 1);
    }
}

#[cfg(test)]
mod memory_contract {
    use super::MemoryStore;

    crate::otp_store_contract!(otp_store, async { std::sync::Arc::new(MemoryStore::new()) });
    crate::blacklist_contract!(blacklist, async { std::sync::Arc::new(MemoryStore::new()) });
    crate::login_contract!(login, async {
        let store = std::sync::Arc::new(MemoryStore::new());
        (
            store.clone() as std::sync::Arc<dyn crate::store::OtpStore>,
            store as std::sync::Arc<dyn crate::store::TokenBlacklist>,
        )
    });
}
