//! Redis store for [`otp_core`] on the [`redis`] crate: a single server through a
//! reconnecting `ConnectionManager`, or a Redis Cluster through the cluster-async client.
//!
//! ```no_run
//! use otp_core::{Config, OtpAuth, mailer::ConsoleMailer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load()?;
//! let store = otp_redis::connect(&config).await?;
//! let auth = OtpAuth::builder(config)
//!     .stores(store)
//!     .mailer(ConsoleMailer::new())
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! Addresses: `redis://[user:password@]host:port/db`, `rediss://…` (TLS, rustls), and
//! `redis-cluster://[user:password@]host:port?node=host:port&node=host:port`
//! (`rediss-cluster://` for TLS). Every command is bounded by `OTP_AUTH_REDIS_TIMEOUT_MS`;
//! while Redis is unreachable operations fail with
//! [`StoreError::Unavailable`] (503 at the HTTP layer)
//! and the client reconnects by itself.
//!
//! The store logic (scripts, key layout) is [`otp_core::store::scripted`], shared with `otp-fred`.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::time::Duration;

use async_trait::async_trait;
use otp_core::store::StoreError;
use otp_core::store::scripted::{
    ReplicaAck, Reply, SCRIPTS, ScriptCall, ScriptRunner, ScriptedStore, SetupError, bounded,
    fence_key, key_slot,
};
use redis::aio::ConnectionManager;
use redis::aio::ConnectionManagerConfig;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{
    MultipleNodeRoutingInfo, Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr,
};
use redis::{ErrorKind, RedisError, ServerErrorKind, Value};

/// The store: [`otp_core::store::OtpStore`] and [`otp_core::store::TokenBlacklist`] on Redis.
pub type RedisStore = ScriptedStore<RedisRunner>;

/// Errors while setting up the client (bad address, unreachable cluster at start).
pub type RedisStoreError = SetupError;

/// The setup error of a redis-rs error.
fn client_error(e: RedisError) -> SetupError {
    SetupError::client("redis", e)
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Runs the store's scripts on a single server or a cluster, with timeouts.
#[derive(Clone)]
pub struct RedisRunner {
    conn: Conn,
    scripts: Vec<redis::Script>,
    timeout: Duration,
}

impl std::fmt::Debug for RedisRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRunner")
            .field(
                "mode",
                &match self.conn {
                    Conn::Single(_) => "single",
                    Conn::Cluster(_) => "cluster",
                },
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Splits a `redis-cluster://` (or `rediss-cluster://`) address into one `redis://` (or
/// `rediss://`) address per node; `None` for any other scheme.
pub fn cluster_nodes(url: &str) -> Option<Result<Vec<String>, RedisStoreError>> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("redis-cluster://") {
        ("redis", r)
    } else if let Some(r) = url.strip_prefix("rediss-cluster://") {
        ("rediss", r)
    } else {
        return None;
    };
    Some(parse_cluster(scheme, rest))
}

fn parse_cluster(scheme: &str, rest: &str) -> Result<Vec<String>, RedisStoreError> {
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.trim_end_matches('/');
    let (creds, first) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let mut hosts = vec![first.to_owned()];
    for param in query.split('&').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some(("node", h)) if !h.is_empty() => hosts.push(h.to_owned()),
            // Other parameters are fred's (timeouts, etc.); this client takes its own.
            _ => {}
        }
    }
    if hosts.iter().any(|h| h.is_empty() || !h.contains(':')) {
        return Err(SetupError::Url(
            "every cluster node must be host:port (redis-cluster://host:port?node=host:port)"
                .to_owned(),
        ));
    }
    Ok(hosts
        .into_iter()
        .map(|h| match creds {
            Some(c) => format!("{scheme}://{c}@{h}"),
            None => format!("{scheme}://{h}"),
        })
        .collect())
}

impl RedisRunner {
    /// Connects to `url` with `timeout` on connecting and on every command.
    ///
    /// A single server is connected lazily (the app starts while Redis is down and
    /// serves 503 until it is up); a cluster must answer at start to learn its slots.
    pub async fn connect(url: &str, timeout: Duration) -> Result<RedisRunner, RedisStoreError> {
        let conn = match cluster_nodes(url) {
            Some(nodes) => {
                let client = ClusterClient::builder(nodes?)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .retries(2)
                    .build()
                    .map_err(client_error)?;
                Conn::Cluster(client.get_async_connection().await.map_err(client_error)?)
            }
            None => {
                let client = redis::Client::open(url)
                    .map_err(|e| SetupError::Url(redact(&e.to_string())))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Conn::Single(
                    ConnectionManager::new_lazy_with_config(client, config)
                        .map_err(client_error)?,
                )
            }
        };
        Ok(RedisRunner {
            conn,
            scripts: SCRIPTS
                .iter()
                .map(|s| redis::Script::new(s.source))
                .collect(),
            timeout,
        })
    }
}

fn redact(s: &str) -> String {
    otp_core::store::scripted::redact_url(s)
}

/// Connects with the configuration's `OTP_AUTH_REDIS_URL`, timeout and key prefixes.
pub async fn connect(config: &otp_core::Config) -> Result<RedisStore, RedisStoreError> {
    let runner = RedisRunner::connect(
        &config.redis.url,
        Duration::from_millis(config.redis.timeout_ms),
    )
    .await?;
    otp_core::store::scripted::check_eviction(&runner, &config.redis).await?;
    Ok(ScriptedStore::from_config(runner, config))
}

/// redis-rs errors of parsing, of an unexpected reply type and of the server's refusals
/// (a script error, cross-slot keys, `EXECABORT`, `NOPERM`) are a bug or foreign data
/// (500); the rest is worth a retry (503).
fn is_backend(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Parse
            | ErrorKind::UnexpectedReturnType
            | ErrorKind::Server(
                ServerErrorKind::ResponseError
                    | ServerErrorKind::CrossSlot
                    | ServerErrorKind::ExecAbort
                    | ServerErrorKind::NoPerm
            )
    )
}

fn to_reply(v: Value) -> Result<Reply, StoreError> {
    Ok(match v {
        Value::Nil => Reply::Nil,
        Value::Int(i) => Reply::Int(i),
        Value::BulkString(b) => Reply::Bulk(b),
        Value::SimpleString(s) => Reply::Bulk(s.into_bytes()),
        Value::Okay => Reply::Bulk(b"OK".to_vec()),
        Value::Boolean(b) => Reply::Int(i64::from(b)),
        Value::Array(a) | Value::Set(a) => {
            Reply::Array(a.into_iter().map(to_reply).collect::<Result<_, _>>()?)
        }
        Value::ServerError(e) => return Err(StoreError::backend(e.to_string())),
        other => return Err(Reply::unexpected_type(other)),
    })
}

#[async_trait]
impl ScriptRunner for RedisRunner {
    async fn run(&self, call: ScriptCall<'_>) -> Result<Reply, StoreError> {
        let ScriptCall { script, keys, args } = call;
        let mut inv = script.prepared(&self.scripts)?.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        // EVALSHA, and on NOSCRIPT (a restarted or new server) SCRIPT LOAD and again.
        let invoked = async {
            match &self.conn {
                Conn::Single(c) => inv.invoke_async::<Value>(&mut c.clone()).await,
                Conn::Cluster(c) => inv.invoke_async::<Value>(&mut c.clone()).await,
            }
        };
        self.bounded(script.name, invoked).await.and_then(to_reply)
    }

    async fn run_replicated(
        &self,
        call: ScriptCall<'_>,
        ack: ReplicaAck,
    ) -> Result<Reply, StoreError> {
        let ScriptCall { script, keys, args } = call;
        let ReplicaAck { replicas, timeout } = ack;
        let mut pipe = redis::pipe();
        let eval = pipe.cmd("EVAL").arg(script.source).arg(keys.len());
        for k in keys {
            eval.arg(*k);
        }
        for a in args {
            eval.arg(*a);
        }
        let fence = fence_key(keys.first().copied().unwrap_or_default());
        pipe.cmd("SET").arg(&fence).arg(1).arg("PX").arg(1000);
        pipe.cmd("WAIT")
            .arg(replicas)
            .arg(timeout.as_millis() as u64);
        let sent = async {
            match &self.conn {
                Conn::Single(c) => pipe.query_async::<Vec<Value>>(&mut c.clone()).await,
                Conn::Cluster(c) => {
                    // All to the master of the keys' slot, on one connection.
                    let slot = keys.first().map_or(0, |k| key_slot(k));
                    let route =
                        SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                    c.clone().route_pipeline(pipe, 0, 3, route).await
                }
            }
        };
        let replies = self.bounded(script.name, sent).await?;
        Reply::replicated(replies.into_iter().map(to_reply), replicas)
    }

    fn single_node(&self) -> bool {
        matches!(self.conn, Conn::Single(_))
    }

    async fn config_get(&self, pattern: &str) -> Result<Vec<Vec<(String, String)>>, StoreError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg(pattern);
        let reply = match &self.conn {
            Conn::Single(c) => {
                let mut c = c.clone();
                vec![
                    self.bounded("config_get", cmd.query_async::<Value>(&mut c))
                        .await?,
                ]
            }
            // Every master: each holds keys, each has its own settings. Without a response
            // policy the answers come as a map of node address to answer.
            Conn::Cluster(c) => {
                let all = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
                let mut c = c.clone();
                match self
                    .bounded("config_get", c.route_command(cmd, all))
                    .await?
                {
                    Value::Map(by_node) => by_node.into_iter().map(|(_, v)| v).collect(),
                    other => return Err(Reply::unexpected_type(other)),
                }
            }
        };
        reply.into_iter().map(config_pairs).collect()
    }

    async fn cluster_info(&self, slot: u16) -> Result<Option<String>, StoreError> {
        let Conn::Cluster(c) = &self.conn else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("INFO");
        let one = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            slot,
            SlotAddr::Master,
        )));
        let mut c = c.clone();
        match self
            .bounded("cluster_info", c.route_command(cmd, one))
            .await?
        {
            Value::BulkString(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
            Value::VerbatimString { text, .. } => Ok(Some(text)),
            other => Err(Reply::unexpected_type(other)),
        }
    }

    async fn exists(&self, keys: &[&str]) -> Result<i64, StoreError> {
        let mut cmd = redis::cmd("EXISTS");
        for k in keys {
            cmd.arg(*k);
        }
        let call = async {
            match &self.conn {
                Conn::Single(c) => cmd.query_async::<i64>(&mut c.clone()).await,
                Conn::Cluster(c) => cmd.query_async::<i64>(&mut c.clone()).await,
            }
        };
        self.bounded("exists", call).await
    }
}

/// The `(name, value)` pairs of one server's `CONFIG GET` answer: a flat array (RESP2) or
/// a map (RESP3).
fn config_pairs(reply: Value) -> Result<Vec<(String, String)>, StoreError> {
    let text = |v: Value| match v {
        Value::BulkString(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Value::SimpleString(s) => Ok(s),
        other => Err(Reply::unexpected_type(other)),
    };
    match reply {
        Value::Array(flat) => {
            let mut items = flat.into_iter();
            let mut pairs = Vec::new();
            while let (Some(name), Some(value)) = (items.next(), items.next()) {
                pairs.push((text(name)?, text(value)?));
            }
            Ok(pairs)
        }
        Value::Map(map) => map
            .into_iter()
            .map(|(k, v)| Ok((text(k)?, text(v)?)))
            .collect(),
        other => Err(Reply::unexpected_type(other)),
    }
}

impl RedisRunner {
    /// Awaits `call` within the timeout, classifying its failures.
    async fn bounded<T>(
        &self,
        what: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        bounded(self.timeout, what, call, is_backend).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_urls() {
        assert!(cluster_nodes("redis://localhost:6379").is_none());
        let n =
            cluster_nodes("redis-cluster://10.0.0.1:7000?node=10.0.0.2:7001&node=10.0.0.3:7002")
                .unwrap()
                .unwrap();
        assert_eq!(
            n,
            [
                "redis://10.0.0.1:7000",
                "redis://10.0.0.2:7001",
                "redis://10.0.0.3:7002"
            ]
        );
        let n = cluster_nodes("rediss-cluster://u:p@h1:7000?node=h2:7000")
            .unwrap()
            .unwrap();
        assert_eq!(n, ["rediss://u:p@h1:7000", "rediss://u:p@h2:7000"]);
        assert!(
            cluster_nodes("redis-cluster://h1?node=h2:1")
                .unwrap()
                .is_err()
        );
    }
}

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
