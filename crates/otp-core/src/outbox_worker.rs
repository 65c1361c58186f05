//! The worker that empties the outbox: it runs inside each application instance (no extra
//! process), claims items, hands each to the [`Deliver`] of its kind, and acknowledges,
//! retries with exponential backoff and jitter, or gives up into the dead letters.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;

use crate::outbox::{Claimed, Outbox, OutboxItem, OutboxKind, OutboxLimits};
use crate::primitives::random_id;

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered: the item is acknowledged.
    Delivered,
    /// Failed for now (a timeout, a 5xx, a connection refused): try again later.
    Retry(String),
    /// Failed for good (a 4xx, a mail refused): no retry.
    GiveUp(String),
}

/// Delivers the items of one kind (a webhook sender, a mailer).
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    /// One attempt at `item`.
    async fn deliver(&self, item: &OutboxItem) -> Delivery;
}

/// How the worker retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay (doubled at each attempt).
    pub first: Duration,
    /// The longest delay between two attempts (`OTP_AUTH_WEBHOOK_MAX_BACKOFF_SECONDS`).
    pub max: Duration,
    /// How long after its first append an item is still tried; then it is given up.
    pub window: Duration,
}

impl RetryPolicy {
    /// The delay before attempt `attempts + 1`: `first × 2^attempts`, at most `max`, with
    /// "equal jitter" (between half of it and all of it).
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = self
            .first
            .saturating_mul(1u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX));
        let capped = exp.min(self.max);
        capped.mul_f64(rand::rng().random_range(0.5..=1.0))
    }

    /// Whether an item first appended at `created_ms` may be tried again after `delay`.
    pub fn within_window(&self, created_ms: u64, delay: Duration) -> bool {
        let next =
            super::now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        let end =
            created_ms.saturating_add(u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX));
        next <= end
    }
}

/// What one pass of the worker did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Items claimed.
    pub claimed: u32,
    /// Delivered and acknowledged.
    pub delivered: u32,
    /// Put back for a retry.
    pub retried: u32,
    /// Given up (dead letters).
    pub buried: u32,
}

/// Empties an outbox with the deliverers of each kind.
pub struct OutboxWorker {
    outbox: Arc<dyn Outbox>,
    limits: OutboxLimits,
    policy: RetryPolicy,
    consumer: String,
    events: Option<Arc<dyn Deliver>>,
    mail: Option<Arc<dyn Deliver>>,
    batch: usize,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("outbox", &self.outbox)
            .field("limits", &self.limits)
            .field("policy", &self.policy)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl OutboxWorker {
    /// A worker on `outbox`, under a consumer name of its own (one per instance).
    pub fn new(outbox: Arc<dyn Outbox>, limits: OutboxLimits, policy: RetryPolicy) -> Self {
        OutboxWorker {
            outbox,
            limits,
            policy,
            consumer: format!("worker-{}", random_id()),
            events: None,
            mail: None,
            batch: 16,
        }
    }

    /// Delivers events with `deliver`.
    pub fn events(mut self, deliver: Arc<dyn Deliver>) -> Self {
        self.events = Some(deliver);
        self
    }

    /// Delivers mail with `deliver`.
    pub fn mail(mut self, deliver: Arc<dyn Deliver>) -> Self {
        self.mail = Some(deliver);
        self
    }

    /// The consumer name it claims under.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// One pass: claims a batch and settles each item. A store error ends the pass (the
    /// items it claimed go back when their lease runs out).
    pub async fn run_once(&self) -> Result<Pass, crate::error::StoreError> {
        let claimed = self
            .outbox
            .claim(&self.consumer, self.batch, &self.limits)
            .await?;
        let mut pass = Pass {
            claimed: u32::try_from(claimed.len()).unwrap_or(u32::MAX),
            ..Pass::default()
        };
        for c in &claimed {
            let outcome = match self.settle(c).await? {
                Settled::Delivered => {
                    pass.delivered += 1;
                    "delivered"
                }
                Settled::Retried => {
                    pass.retried += 1;
                    "retried"
                }
                Settled::Buried => {
                    pass.buried += 1;
                    "dead"
                }
            };
            crate::event::metrics::outbox_delivery(c.item.kind, outcome);
        }
        let stats = self.outbox.stats().await?;
        crate::event::metrics::outbox_state(&stats, super::now_ms());
        Ok(pass)
    }

    async fn settle(&self, c: &Claimed) -> Result<Settled, crate::error::StoreError> {
        let deliver = match c.item.kind {
            OutboxKind::Event => self.events.as_ref(),
            OutboxKind::Mail => self.mail.as_ref(),
        };
        let Some(deliver) = deliver else {
            // Nothing here delivers this kind (yet): another instance may; try later.
            self.outbox.retry(c, self.policy.max).await?;
            return Ok(Settled::Retried);
        };
        match deliver.deliver(&c.item).await {
            Delivery::Delivered => {
                self.outbox.ack(c).await?;
                Ok(Settled::Delivered)
            }
            Delivery::Retry(why) => {
                let delay = self.policy.delay(c.item.attempts);
                if self.policy.within_window(c.item.created_ms, delay) {
                    tracing::debug!(id = %c.item.id, attempts = c.item.attempts + 1, error = %why, ?delay, "outbox delivery failed, retrying");
                    self.outbox.retry(c, delay).await?;
                    Ok(Settled::Retried)
                } else {
                    tracing::warn!(id = %c.item.id, attempts = c.item.attempts + 1, error = %why, "outbox delivery failed past its retry window: a dead letter");
                    self.outbox.bury(c, &self.limits).await?;
                    Ok(Settled::Buried)
                }
            }
            Delivery::GiveUp(why) => {
                tracing::warn!(id = %c.item.id, error = %why, "outbox delivery refused for good: a dead letter");
                self.outbox.bury(c, &self.limits).await?;
                Ok(Settled::Buried)
            }
        }
    }

    /// Runs passes until `stop` resolves: at once again after a full batch, else after
    /// `idle` (with jitter, so instances do not poll in step); a store error waits `idle`
    /// and tries again.
    pub async fn run(self, idle: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = match self.run_once().await {
                Ok(pass) if pass.claimed as usize >= self.batch => Duration::ZERO,
                Ok(_) => idle.mul_f64(rand::rng().random_range(0.8..=1.2)),
                Err(e) => {
                    tracing::warn!(error = %e, "the outbox could not be read; trying again");
                    idle
                }
            };
            if tokio::time::timeout(wait, &mut stop).await.is_ok() {
                return;
            }
        }
    }
}

enum Settled {
    Delivered,
    Retried,
    Buried,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;
    use crate::outbox::{MemoryOutbox, new_item_id};

    /// Answers from a script, recording each attempt's id.
    struct Scripted {
        answers: Mutex<Vec<Delivery>>,
        seen: Mutex<Vec<(String, u32)>>,
    }

    #[async_trait]
    impl Deliver for Scripted {
        async fn deliver(&self, item: &OutboxItem) -> Delivery {
            self.seen
                .lock()
                .unwrap()
                .push((item.id.clone(), item.attempts));
            let mut a = self.answers.lock().unwrap();
            if a.is_empty() {
                Delivery::Delivered
            } else {
                a.remove(0)
            }
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_millis(20),
            max: Duration::from_millis(40),
            window: Duration::from_secs(3600),
        }
    }

    #[test]
    fn delays_double_up_to_the_cap_with_jitter() {
        let p = RetryPolicy {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            window: Duration::from_secs(3600),
        };
        for (attempts, full) in [(0, 1), (1, 2), (3, 8), (5, 32), (6, 60), (40, 60)] {
            for _ in 0..50 {
                let d = p.delay(attempts);
                let full = Duration::from_secs(full);
                assert!(d >= full / 2 && d <= full, "{attempts}: {d:?}");
            }
        }
    }

    #[tokio::test]
    async fn retries_keep_the_id_then_deliver_and_refusals_are_buried() {
        let outbox = Arc::new(MemoryOutbox::new());
        let limits = OutboxLimits::default();
        let (a, b) = (new_item_id(), new_item_id());
        outbox
            .append(OutboxKind::Event, &a, b"a", &limits)
            .await
            .unwrap();
        outbox
            .append(OutboxKind::Event, &b, b"b", &limits)
            .await
            .unwrap();
        let deliver = Arc::new(Scripted {
            answers: Mutex::new(vec![
                Delivery::Retry("503".into()),
                Delivery::GiveUp("410".into()),
                Delivery::Retry("timeout".into()),
            ]),
            seen: Mutex::default(),
        });
        let worker = OutboxWorker::new(outbox.clone(), limits, policy()).events(deliver.clone());
        let first = worker.run_once().await.unwrap();
        assert_eq!((first.claimed, first.retried, first.buried), (2, 1, 1));
        let mut delivered = 0;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            delivered += worker.run_once().await.unwrap().delivered;
            if delivered == 1 {
                break;
            }
        }
        assert_eq!(delivered, 1);
        let seen = deliver.seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            vec![
                (a.clone(), 0),
                (b.clone(), 0),
                (a.clone(), 1),
                (a.clone(), 2)
            ],
            "the same id each time, its attempts counted"
        );
        let stats = outbox.stats().await.unwrap();
        assert_eq!((stats.depth, stats.dead), (0, 1));
        assert_eq!(outbox.dead_letters(5).await.unwrap()[0].id, b);
    }

    #[tokio::test]
    async fn an_item_past_its_window_is_buried() {
        let outbox = Arc::new(MemoryOutbox::new());
        let limits = OutboxLimits::default();
        outbox
            .append(OutboxKind::Event, "old", b"x", &limits)
            .await
            .unwrap();
        let deliver = Arc::new(Scripted {
            answers: Mutex::new(vec![Delivery::Retry("down".into())]),
            seen: Mutex::default(),
        });
        let short = RetryPolicy {
            window: Duration::ZERO,
            ..policy()
        };
        let worker = OutboxWorker::new(outbox.clone(), limits, short).events(deliver);
        assert_eq!(worker.run_once().await.unwrap().buried, 1);
        assert_eq!(outbox.stats().await.unwrap().dead, 1);
    }

    #[tokio::test]
    async fn the_loop_stops_and_a_kind_without_a_deliverer_waits() {
        let outbox = Arc::new(MemoryOutbox::new());
        let limits = OutboxLimits::default();
        outbox
            .append(OutboxKind::Mail, "mail", b"m", &limits)
            .await
            .unwrap();
        let worker = OutboxWorker::new(outbox.clone(), limits, policy());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(worker.run(Duration::from_millis(10), async {
            let _ = rx.await;
        }));
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send(()).unwrap();
        task.await.unwrap();
        let stats = outbox.stats().await.unwrap();
        assert_eq!(
            (stats.depth, stats.delayed, stats.dead),
            (1, 1, 0),
            "kept for a mailer"
        );
    }
}
