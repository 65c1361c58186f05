//! [`Outbox`] on a Redis stream with a consumer group: every operation is one script on
//! the outbox's own slot (its keys share the hash tag `{<otp prefix>outbox}`), on a single
//! server or a cluster, through either client.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{otp_outbox}:s` | stream, group `g` | items waiting or claimed: kind, id, payload, attempts, created |
//! | `{otp_outbox}:z` | sorted set | ids of items delayed for a retry, by due time (ms) |
//! | `{otp_outbox}:d` | hash | those items, packed |
//! | `{otp_outbox}:x` | list | dead letters, packed, oldest first |

use std::time::Duration;

use async_trait::async_trait;

use super::{
    OUTBOX_ACK, OUTBOX_APPEND, OUTBOX_BURY, OUTBOX_CLAIM, OUTBOX_DEAD, OUTBOX_REPLAY, OUTBOX_RETRY,
    OUTBOX_STATS, Reply, ScriptRunner, ScriptedStore, unexpected,
};
use crate::error::StoreError;
use crate::outbox::{Claimed, Outbox, OutboxItem, OutboxKind, OutboxLimits, OutboxStats};

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

fn text(r: &Reply) -> Result<String, StoreError> {
    match r {
        Reply::Bulk(b) => String::from_utf8(b.clone()).map_err(|_| unexpected(r)),
        Reply::Int(i) => Ok(i.to_string()),
        _ => Err(unexpected(r)),
    }
}

fn bytes(r: &Reply) -> Result<Vec<u8>, StoreError> {
    match r {
        Reply::Bulk(b) => Ok(b.clone()),
        _ => Err(unexpected(r)),
    }
}

fn number(r: &Reply) -> Result<u64, StoreError> {
    text(r)?.parse().map_err(|_| unexpected(r))
}

/// An item out of `[kind, id, payload, attempts, created]`.
fn item(parts: &[Reply]) -> Result<OutboxItem, StoreError> {
    let [kind, id, payload, attempts, created] = parts else {
        return Err(StoreError::backend("an outbox item of the wrong shape"));
    };
    Ok(OutboxItem {
        kind: OutboxKind::from_code(&text(kind)?)
            .ok_or_else(|| StoreError::backend("an outbox item of an unknown kind"))?,
        id: text(id)?,
        payload: bytes(payload)?,
        attempts: u32::try_from(number(attempts)?).unwrap_or(u32::MAX),
        created_ms: number(created)?,
    })
}

impl<R: ScriptRunner> ScriptedStore<R> {
    fn outbox_keys(&self, parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| self.keys.outbox(p)).collect()
    }
}

#[async_trait]
impl<R: ScriptRunner> Outbox for ScriptedStore<R> {
    async fn append(
        &self,
        kind: OutboxKind,
        id: &str,
        payload: &[u8],
        limits: &OutboxLimits,
    ) -> Result<bool, StoreError> {
        let keys = self.outbox_keys(&["s", "z"]);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let capacity = limits.capacity.to_string();
        let args: [&[u8]; 4] = [
            capacity.as_bytes(),
            kind.code().as_bytes(),
            id.as_bytes(),
            payload,
        ];
        Ok(self.call(&OUTBOX_APPEND, &keys, &args).await?.int()? == 1)
    }

    async fn claim(
        &self,
        consumer: &str,
        max: usize,
        limits: &OutboxLimits,
    ) -> Result<Vec<Claimed>, StoreError> {
        let keys = self.outbox_keys(&["s", "z", "d"]);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let (max, lease) = (max.to_string(), ms(limits.lease));
        let args: [&[u8]; 3] = [consumer.as_bytes(), max.as_bytes(), lease.as_bytes()];
        let r = self.call(&OUTBOX_CLAIM, &keys, &args).await?;
        (r.array()?.iter())
            .map(|e| {
                let parts = e.array()?;
                let (handle, rest) = parts.split_first().ok_or_else(|| unexpected(e))?;
                Ok(Claimed {
                    handle: text(handle)?,
                    item: item(rest)?,
                })
            })
            .collect()
    }

    async fn ack(&self, claimed: &Claimed) -> Result<(), StoreError> {
        let key = self.keys.outbox("s");
        let args: [&[u8]; 1] = [claimed.handle.as_bytes()];
        self.call(&OUTBOX_ACK, &[&key], &args).await?;
        Ok(())
    }

    async fn retry(&self, claimed: &Claimed, delay: Duration) -> Result<(), StoreError> {
        let keys = self.outbox_keys(&["s", "z", "d"]);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let delay = ms(delay);
        let args: [&[u8]; 2] = [claimed.handle.as_bytes(), delay.as_bytes()];
        self.call(&OUTBOX_RETRY, &keys, &args).await?;
        Ok(())
    }

    async fn bury(&self, claimed: &Claimed, limits: &OutboxLimits) -> Result<(), StoreError> {
        let keys = self.outbox_keys(&["s", "x"]);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let cap = limits.dead_capacity.max(1).to_string();
        let args: [&[u8]; 2] = [claimed.handle.as_bytes(), cap.as_bytes()];
        self.call(&OUTBOX_BURY, &keys, &args).await?;
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<OutboxItem>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let key = self.keys.outbox("x");
        let max = max.to_string();
        let r = self.call(&OUTBOX_DEAD, &[&key], &[max.as_bytes()]).await?;
        (r.array()?.iter()).map(|e| item(e.array()?)).collect()
    }

    async fn replay_dead(&self) -> Result<u32, StoreError> {
        let keys = self.outbox_keys(&["s", "x"]);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let n = self.call(&OUTBOX_REPLAY, &keys, &[]).await?.int()?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn stats(&self) -> Result<OutboxStats, StoreError> {
        let keys = self.outbox_keys(&["s", "z", "d", "x"]);
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let r = self.call(&OUTBOX_STATS, &keys, &[]).await?;
        let [depth, claimed, delayed, dead, oldest] = r.array()? else {
            return Err(unexpected(&r));
        };
        let count = |x: &Reply| x.int().map(|v| u64::try_from(v).unwrap_or(0));
        let oldest: i64 = text(oldest)?.parse().map_err(|_| unexpected(&r))?;
        Ok(OutboxStats {
            depth: count(depth)?,
            claimed: count(claimed)?,
            delayed: count(delayed)?,
            dead: count(dead)?,
            oldest_created_ms: u64::try_from(oldest).ok(),
        })
    }
}
