//! The durable outbox: what must leave the process (audit events for webhooks, queued login
//! mail) is appended here and delivered by a worker inside each application instance,
//! however many there are, at least once and in the end exactly once per receiver that
//! deduplicates by [`OutboxItem::id`].
//!
//! The life of an item:
//!
//! 1. [`Outbox::append`]: it waits to be claimed (refused when the outbox holds
//!    [`OutboxLimits::capacity`] items: an outbox never grows without bound).
//! 2. [`Outbox::claim`]: an instance takes it for [`OutboxLimits::lease`]. An instance that
//!    dies holding it loses it when the lease ends: the next claim of any instance takes it
//!    over (Redis: `XAUTOCLAIM`).
//! 3. After the attempt, one of: [`Outbox::ack`] (delivered: gone), [`Outbox::retry`] (a
//!    temporary failure: claimable again after a delay, its attempts counted, its id
//!    kept), or [`Outbox::bury`] (given up: kept as a dead letter an operator can read with
//!    [`Outbox::dead_letters`] and put back with [`Outbox::replay_dead`]).
//!
//! [`MemoryOutbox`] is the embedded default (one process; lost with it). The Redis stores
//! implement it on a stream with a consumer group (`otp_core::store::scripted`): every
//! operation is one script on one slot, on a single server or a cluster.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::primitives::random_id;

#[path = "outbox_worker.rs"]
mod worker;
pub use worker::{Deliver, Delivery, OutboxWorker, Pass, RetryPolicy};

/// What an item carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// An audit event, for the webhook.
    Event,
    /// A login mail (queued delivery).
    Mail,
}

impl OutboxKind {
    /// `e` or `m`: its stored form.
    pub fn code(self) -> &'static str {
        match self {
            OutboxKind::Event => "e",
            OutboxKind::Mail => "m",
        }
    }

    /// The kind of a stored form.
    pub fn from_code(code: &str) -> Option<OutboxKind> {
        match code {
            "e" => Some(OutboxKind::Event),
            "m" => Some(OutboxKind::Mail),
            _ => None,
        }
    }
}

/// One item of the outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// What it carries.
    pub kind: OutboxKind,
    /// Its id, the same through every retry and replay (a webhook's `webhook-id`, a
    /// mail's delivery record).
    pub id: String,
    /// The bytes to deliver (a JSON event, a sealed mail).
    pub payload: Vec<u8>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// When it was first appended (ms since the epoch, the store's clock).
    pub created_ms: u64,
}

impl Debug for OutboxItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxItem")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("payload", &format_args!("{} bytes", self.payload.len()))
            .field("attempts", &self.attempts)
            .field("created_ms", &self.created_ms)
            .finish()
    }
}

/// An item claimed by an instance, with the handle that acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The claim's handle (Redis: the stream entry's id), for [`Outbox::ack`],
    /// [`Outbox::retry`] and [`Outbox::bury`].
    pub handle: String,
    /// The item.
    pub item: OutboxItem,
}

/// The outbox's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Items it holds at most, waiting, claimed or delayed (dead letters apart): an
    /// append past it is refused.
    pub capacity: u32,
    /// How long a claim holds: an item claimed longer ago (its instance died) goes to the
    /// next claim.
    pub lease: Duration,
    /// Dead letters kept at most; the oldest goes first.
    pub dead_capacity: u32,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            capacity: 100_000,
            lease: Duration::from_secs(30),
            dead_capacity: 10_000,
        }
    }
}

/// How full the outbox is, for its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Items not yet delivered: waiting, claimed or delayed for a retry.
    pub depth: u64,
    /// Of them, claimed by an instance now.
    pub claimed: u64,
    /// Of them, delayed for a retry.
    pub delayed: u64,
    /// Dead letters.
    pub dead: u64,
    /// When the oldest undelivered item was first appended (ms); `None` when empty.
    pub oldest_created_ms: Option<u64>,
}

/// The durable outbox (see the [module](self)).
#[async_trait]
pub trait Outbox: Debug + Send + Sync + 'static {
    /// Appends an item; `Ok(false)` when the outbox is full (nothing appended). `id` is
    /// the item's id for good (a fresh [`new_item_id`]).
    async fn append(
        &self,
        kind: OutboxKind,
        id: &str,
        payload: &[u8],
        limits: &OutboxLimits,
    ) -> Result<bool, StoreError>;

    /// Claims up to `max` items for `consumer` (an instance's name): first those whose
    /// lease ran out (their instance died), then those due for a retry, then new ones.
    async fn claim(
        &self,
        consumer: &str,
        max: usize,
        limits: &OutboxLimits,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Delivered: the item is gone. Acknowledging twice, or an item another instance took
    /// over and acknowledged, changes nothing.
    async fn ack(&self, claimed: &Claimed) -> Result<(), StoreError>;

    /// Not delivered this time: claimable again after `delay`, its attempts one more, its
    /// id kept.
    async fn retry(&self, claimed: &Claimed, delay: Duration) -> Result<(), StoreError>;

    /// Given up: kept as a dead letter (its attempts one more).
    async fn bury(&self, claimed: &Claimed, limits: &OutboxLimits) -> Result<(), StoreError>;

    /// Up to `max` dead letters, oldest first.
    async fn dead_letters(&self, max: usize) -> Result<Vec<OutboxItem>, StoreError>;

    /// Puts every dead letter back to be claimed, its attempts reset; how many.
    async fn replay_dead(&self) -> Result<u32, StoreError>;

    /// How full it is.
    async fn stats(&self) -> Result<OutboxStats, StoreError>;
}

/// A fresh item id: 128 random bits, URL-safe.
pub fn new_item_id() -> String {
    random_id()
}

/// The outbox in this process's memory: the embedded default. Items are lost with the
/// process.
#[derive(Debug, Default)]
pub struct MemoryOutbox {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    next_handle: u64,
    /// Waiting to be claimed, in order.
    waiting: VecDeque<OutboxItem>,
    /// Claimed: handle → (item, claimed at ms).
    claimed: BTreeMap<u64, (OutboxItem, u64)>,
    /// Delayed: (due ms, sequence) → item.
    delayed: BTreeMap<(u64, u64), OutboxItem>,
    /// Dead letters, oldest first.
    dead: VecDeque<OutboxItem>,
}

impl MemoryOutbox {
    /// An empty outbox.
    pub fn new() -> MemoryOutbox {
        MemoryOutbox::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, MemoryInner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::backend("the memory outbox's lock was poisoned"))
    }
}

pub(crate) fn now_ms() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl MemoryInner {
    fn depth(&self) -> usize {
        self.waiting.len() + self.claimed.len() + self.delayed.len()
    }

    /// Takes `item` out of the claimed set by `handle`, if it is still claimed there.
    fn release(&mut self, handle: &str) -> Option<OutboxItem> {
        let h: u64 = handle.parse().ok()?;
        self.claimed.remove(&h).map(|(item, _)| item)
    }

    fn hand_out(&mut self, item: OutboxItem, now: u64) -> Claimed {
        self.next_handle += 1;
        let h = self.next_handle;
        self.claimed.insert(h, (item.clone(), now));
        Claimed {
            handle: h.to_string(),
            item,
        }
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn append(
        &self,
        kind: OutboxKind,
        id: &str,
        payload: &[u8],
        limits: &OutboxLimits,
    ) -> Result<bool, StoreError> {
        let mut o = self.lock()?;
        if o.depth() >= limits.capacity as usize {
            return Ok(false);
        }
        o.waiting.push_back(OutboxItem {
            kind,
            id: id.to_owned(),
            payload: payload.to_vec(),
            attempts: 0,
            created_ms: now_ms(),
        });
        Ok(true)
    }

    async fn claim(
        &self,
        _consumer: &str,
        max: usize,
        limits: &OutboxLimits,
    ) -> Result<Vec<Claimed>, StoreError> {
        let now = now_ms();
        let mut o = self.lock()?;
        let mut out = Vec::new();
        // Leases that ran out.
        let lease = ms(limits.lease);
        let stale: Vec<u64> = (o.claimed.iter())
            .filter(|(_, (_, at))| now.saturating_sub(*at) >= lease)
            .map(|(h, _)| *h)
            .take(max)
            .collect();
        for h in stale {
            if let Some((item, _)) = o.claimed.remove(&h) {
                out.push(o.hand_out(item, now));
            }
        }
        // Retries that are due.
        while out.len() < max {
            let Some(entry) = o.delayed.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let item = entry.remove();
            out.push(o.hand_out(item, now));
        }
        while out.len() < max {
            let Some(item) = o.waiting.pop_front() else {
                break;
            };
            out.push(o.hand_out(item, now));
        }
        Ok(out)
    }

    async fn ack(&self, claimed: &Claimed) -> Result<(), StoreError> {
        self.lock()?.release(&claimed.handle);
        Ok(())
    }

    async fn retry(&self, claimed: &Claimed, delay: Duration) -> Result<(), StoreError> {
        let mut o = self.lock()?;
        if let Some(mut item) = o.release(&claimed.handle) {
            item.attempts = item.attempts.saturating_add(1);
            o.next_handle += 1;
            let seq = o.next_handle;
            o.delayed
                .insert((now_ms().saturating_add(ms(delay)), seq), item);
        }
        Ok(())
    }

    async fn bury(&self, claimed: &Claimed, limits: &OutboxLimits) -> Result<(), StoreError> {
        let mut o = self.lock()?;
        if let Some(mut item) = o.release(&claimed.handle) {
            item.attempts = item.attempts.saturating_add(1);
            o.dead.push_back(item);
            while o.dead.len() > limits.dead_capacity as usize {
                o.dead.pop_front();
            }
        }
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<OutboxItem>, StoreError> {
        Ok(self.lock()?.dead.iter().take(max).cloned().collect())
    }

    async fn replay_dead(&self) -> Result<u32, StoreError> {
        let mut o = self.lock()?;
        let dead: Vec<OutboxItem> = o.dead.drain(..).collect();
        let n = u32::try_from(dead.len()).unwrap_or(u32::MAX);
        for mut item in dead {
            item.attempts = 0;
            o.waiting.push_back(item);
        }
        Ok(n)
    }

    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        let o = self.lock()?;
        let oldest = (o.waiting.iter())
            .chain(o.claimed.values().map(|(i, _)| i))
            .chain(o.delayed.values())
            .map(|i| i.created_ms)
            .min();
        Ok(OutboxStats {
            depth: o.depth() as u64,
            claimed: o.claimed.len() as u64,
            delayed: o.delayed.len() as u64,
            dead: o.dead.len() as u64,
            oldest_created_ms: oldest,
        })
    }
}

#[cfg(test)]
mod tests {
    crate::outbox_contract!(memory_outbox, async {
        std::sync::Arc::new(crate::outbox::MemoryOutbox::new())
            as std::sync::Arc<dyn crate::outbox::Outbox>
    });
}
