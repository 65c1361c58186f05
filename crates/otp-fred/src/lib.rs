//! Redis store for [`otp_core`] on [`fred`]: a connection pool to a single server, a Redis
//! Cluster or a Sentinel-managed primary.
//!
//! ```no_run
//! use otp_core::{Config, OtpAuth, mailer::ConsoleMailer};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::load()?;
//! let store = otp_fred::connect(&config).await?;
//! let auth = OtpAuth::builder(config)
//!     .stores(store)
//!     .mailer(ConsoleMailer::new())
//!     .build()?;
//! # Ok(()) }
//! ```
//!
//! Addresses are fred's: `redis://`, `rediss://`,
//! `redis-cluster://host:port?node=host:port&node=host:port` and
//! `redis-sentinel://host:port?sentinelServiceName=name&node=host:port`. Every command is
//! bounded by `OTP_AUTH_REDIS_TIMEOUT_MS`; while Redis is unreachable operations fail with
//! [`StoreError::Unavailable`] (503 at the HTTP layer)
//! and the pool reconnects by itself, forever, with a capped backoff.
//!
//! The store logic (scripts, key layout) is [`otp_core::store::scripted`], shared with `otp-redis`.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::prelude::{
    ClientLike, Config as FredConfig, ConnectionConfig, Error as FredError,
    ErrorKind as FredErrorKind, KeysInterface, PerformanceConfig, Pool, ReconnectPolicy,
};
use fred::types::scripts::Script as FredScript;
use fred::types::{ClusterHash, CustomCommand, Key, Value};
use otp_core::store::StoreError;
use otp_core::store::scripted::{
    ReplicaAck, Reply, SCRIPTS, ScriptCall, ScriptRunner, ScriptedStore, SetupError, bounded,
    fence_key, key_slot,
};

/// The store: [`otp_core::store::OtpStore`] and [`otp_core::store::TokenBlacklist`] on Redis via fred.
pub type FredStore = ScriptedStore<FredRunner>;

/// Clients in the pool. One: fred pipelines concurrent commands on a client's connection,
/// and `cargo xtask bench` measured one client ahead of four (0.86 against 0.63 of the
/// ceiling on protected requests), since every extra client adds a task hop and splits the
/// batches. [`FredRunner::connect`] takes any size.
pub const DEFAULT_POOL_SIZE: usize = 1;

/// Errors while setting up the pool.
pub type FredStoreError = SetupError;

/// Runs the store's scripts on a fred pool, with timeouts.
#[derive(Clone)]
pub struct FredRunner {
    pool: Pool,
    scripts: Vec<FredScript>,
    timeout: Duration,
}

impl std::fmt::Debug for FredRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FredRunner")
            .field("pool_size", &self.pool.size())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The address schemes fred takes.
const SCHEMES: [&str; 7] = [
    "redis",
    "redis+unix",
    "rediss",
    "redis-cluster",
    "rediss-cluster",
    "redis-sentinel",
    "rediss-sentinel",
];

impl FredRunner {
    /// Creates a pool of `size` clients for `url` and connects, waiting at most `timeout`
    /// for the first connection. While the server is unreachable, commands fail after
    /// `timeout` and the pool keeps reconnecting in the background.
    pub async fn connect(
        url: &str,
        timeout: Duration,
        size: usize,
    ) -> Result<FredRunner, FredStoreError> {
        // fred reads any scheme as a server address (`http://…` would connect to a Redis
        // at that host): only Redis' own are taken.
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
            return Err(SetupError::Url(format!(
                "{:?} is not a Redis address: use {}",
                otp_core::store::scripted::redact_url(url),
                SCHEMES.map(|s| format!("{s}://")).join(", ")
            )));
        }
        let mut config = FredConfig::from_url(url)
            .map_err(|e| SetupError::Url(otp_core::store::scripted::redact_url(e.details())))?;
        // With fred's default (`fail_fast`), a first connection that fails is never tried
        // again: the router task ends and every later command waits out its timeout,
        // forever. That is what a cluster still converging gives (nodes answering
        // `cluster_state:fail` for a second after `redis-cli --cluster create`), so the
        // first connection goes through the reconnect policy like any other.
        config.fail_fast = false;
        let perf = PerformanceConfig {
            // fred's own timeout fires before ours, so a command we gave up on is dropped
            // by fred too instead of being written late.
            default_command_timeout: timeout.mul_f32(0.9),
            ..PerformanceConfig::default()
        };
        let conn = ConnectionConfig {
            connection_timeout: timeout,
            internal_command_timeout: timeout,
            // The caller's timeout bounds the whole call; a second attempt covers a
            // reconnection or a cluster failover inside it. fred resends a command whose
            // connection dropped before its answer came, so a script may run twice: codes,
            // rotations and sessions are safe to repeat (call ids for codes, the new jti for
            // rotations); an IP bucket may count one request or failure twice.
            max_command_attempts: 2,
            ..ConnectionConfig::default()
        };
        // Reconnect forever, backing off from 50 ms to 1 s.
        let policy = ReconnectPolicy::new_exponential(0, 50, 1_000, 2);
        let pool = Pool::new(config, Some(perf), Some(conn), Some(policy), size.max(1))
            .map_err(|e| SetupError::client("fred", e))?;
        // The handle's task ends only when the pool is closed; reconnection is the policy's.
        drop(pool.connect());
        // Give the first connection (and a cluster's slot map) one timeout to arrive; if it
        // does not, start anyway and answer 503 until it does.
        match tokio::time::timeout(timeout, pool.wait_for_connect()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(
                error = %e,
                "the first connection to Redis failed; the pool keeps trying in the background"
            ),
            Err(_) => tracing::warn!(
                "Redis is not reachable yet; the pool keeps trying in the background"
            ),
        }
        Ok(FredRunner {
            pool,
            scripts: SCRIPTS
                .iter()
                .map(|s| FredScript::from_lua(s.source))
                .collect(),
            timeout,
        })
    }

    /// The pool, for callers that want to wait for the first connection
    /// (`pool().wait_for_connect()`) or close it.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Connects with the configuration's `OTP_AUTH_REDIS_URL`, timeout and key prefixes, with
/// a pool of [`DEFAULT_POOL_SIZE`] clients.
pub async fn connect(config: &otp_core::Config) -> Result<FredStore, FredStoreError> {
    let runner = FredRunner::connect(
        &config.redis.url,
        Duration::from_millis(config.redis.timeout_ms),
        DEFAULT_POOL_SIZE,
    )
    .await?;
    otp_core::store::scripted::check_eviction(&runner, &config.redis).await?;
    Ok(ScriptedStore::from_config(runner, config))
}

/// fred's parse, protocol and argument errors, and Redis `ERR` replies other than
/// `CLUSTERDOWN`, are a bug or foreign data (500); the rest is worth a retry (503).
fn is_backend(e: &FredError) -> bool {
    let kind = e.kind();
    matches!(
        kind,
        FredErrorKind::Parse
            | FredErrorKind::Protocol
            | FredErrorKind::InvalidArgument
            | FredErrorKind::InvalidCommand
    ) || (e.details().starts_with("ERR") && !e.details().contains("CLUSTERDOWN"))
}

fn to_reply(v: Value) -> Result<Reply, StoreError> {
    Ok(match v {
        Value::Null => Reply::Nil,
        Value::Integer(i) => Reply::Int(i),
        Value::Boolean(b) => Reply::Int(i64::from(b)),
        Value::String(s) => Reply::Bulk(s.as_bytes().to_vec()),
        Value::Bytes(b) => Reply::Bulk(b.to_vec()),
        Value::Array(a) => Reply::Array(a.into_iter().map(to_reply).collect::<Result<_, _>>()?),
        other => return Err(Reply::unexpected_type(other.kind())),
    })
}

#[async_trait]
impl ScriptRunner for FredRunner {
    async fn run(&self, call: ScriptCall<'_>) -> Result<Reply, StoreError> {
        let ScriptCall { script, keys, args } = call;
        let prepared = script.prepared(&self.scripts)?;
        let keys: Vec<Key> = keys.iter().map(|k| Key::from(*k)).collect();
        let args: Vec<Value> = args
            .iter()
            .map(|a| Value::Bytes(Bytes::copy_from_slice(a)))
            .collect();
        // EVALSHA, and on NOSCRIPT SCRIPT LOAD (on every cluster node) and again.
        let evaluated =
            prepared.evalsha_with_reload::<Value, _, _>(self.pool.next_connected(), keys, args);
        self.bounded(script.name, evaluated)
            .await
            .and_then(to_reply)
    }

    async fn run_replicated(
        &self,
        call: ScriptCall<'_>,
        ack: ReplicaAck,
    ) -> Result<Reply, StoreError> {
        let (ScriptCall { script, keys, args }, ReplicaAck { replicas, timeout }) = (call, ack);
        // All to the master of the keys' slot, in one pipeline on one connection.
        let slot = keys.first().map_or(0, |k| key_slot(k));
        let mut eval: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
        eval.push(Value::from(script.source));
        eval.push(Value::Integer(keys.len() as i64));
        eval.extend(keys.iter().map(|k| Value::from(*k)));
        eval.extend(args.iter().map(|a| Value::Bytes(Bytes::copy_from_slice(a))));
        let client = self.pool.next_connected();
        let pipe = client.pipeline();
        let call = async {
            pipe.custom::<(), Value>(
                CustomCommand::new_static("EVAL", ClusterHash::Custom(slot), false),
                eval,
            )
            .await?;
            pipe.custom::<(), Value>(
                CustomCommand::new_static("SET", ClusterHash::Custom(slot), false),
                vec![
                    Value::from(fence_key(keys.first().copied().unwrap_or_default())),
                    Value::Integer(1),
                    Value::from("PX"),
                    Value::Integer(1000),
                ],
            )
            .await?;
            pipe.custom::<(), Value>(
                CustomCommand::new_static("WAIT", ClusterHash::Custom(slot), false),
                vec![
                    Value::Integer(i64::from(replicas)),
                    Value::Integer(timeout.as_millis() as i64),
                ],
            )
            .await?;
            pipe.all::<Vec<Value>>().await
        };
        let replies = self.bounded(script.name, call).await?;
        Reply::replicated(replies.into_iter().map(to_reply), replicas)
    }

    fn single_node(&self) -> bool {
        !self.pool.next().is_clustered()
    }

    async fn config_get(&self, pattern: &str) -> Result<Vec<Vec<(String, String)>>, StoreError> {
        let client = self.pool.next_connected();
        let get = |target: Option<fred::types::config::Server>| {
            let args = vec![Value::from("GET"), Value::from(pattern.to_owned())];
            let command = CustomCommand::new_static("CONFIG", ClusterHash::Random, false);
            async move {
                match target {
                    Some(server) => {
                        client
                            .with_cluster_node(server)
                            .custom::<Value, Value>(command, args)
                            .await
                    }
                    None => client.custom::<Value, Value>(command, args).await,
                }
            }
        };
        let mut servers = Vec::new();
        let targets: Vec<Option<_>> = if client.is_clustered() {
            // Every master: each holds keys, each has its own settings.
            client.active_connections().into_iter().map(Some).collect()
        } else {
            vec![None]
        };
        for target in targets {
            let reply = self.bounded("config_get", get(target)).await?;
            // A flat array of names and values (RESP2) or a map (RESP3).
            let text = |v: &Value| {
                v.as_string()
                    .ok_or_else(|| Reply::unexpected_type(v.kind()))
            };
            let pairs = match reply {
                Value::Array(flat) => flat
                    .chunks_exact(2)
                    .map(|p| Ok((text(&p[0])?, text(&p[1])?)))
                    .collect::<Result<Vec<_>, StoreError>>()?,
                Value::Map(map) => map
                    .inner()
                    .into_iter()
                    .map(|(k, v)| Ok((k.as_str().unwrap_or_default().to_owned(), text(&v)?)))
                    .collect::<Result<Vec<_>, StoreError>>()?,
                other => return Err(Reply::unexpected_type(other.kind())),
            };
            servers.push(pairs);
        }
        Ok(servers)
    }

    async fn cluster_info(&self, slot: u16) -> Result<Option<String>, StoreError> {
        let client = self.pool.next_connected();
        if !client.is_clustered() {
            return Ok(None);
        }
        // Straight to each connected node in turn: a command routed by slot waits while
        // fred follows a cluster that is down. Every node reports the same state.
        let _ = slot;
        let nodes = client.active_connections();
        let mut last = None;
        for node in nodes {
            let command = CustomCommand::new_static("CLUSTER", ClusterHash::Random, false);
            let on_node = client.with_cluster_node(node);
            let call = on_node.custom::<Value, Value>(command, vec![Value::from("INFO")]);
            match self.bounded("cluster_info", call).await {
                Ok(reply) => {
                    return (reply.as_string())
                        .map(Some)
                        .ok_or_else(|| Reply::unexpected_type(reply.kind()));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| StoreError::unavailable("no cluster node is connected")))
    }

    async fn exists(&self, keys: &[&str]) -> Result<i64, StoreError> {
        // fred's own `EXISTS` (routed by its first key), not a custom command: fred flushes
        // the socket after every custom command and script, but feeds its own commands
        // without a flush while more are queued. `cargo xtask bench` measured /protected at
        // 0.66 of the ceiling with the custom command and 0.90 with this. TCP_NODELAY stays
        // off (fred's default): with it, the writes fred flushes one by one went out as one
        // segment each, and /protected fell to 0.63.
        let keys: Vec<Key> = keys.iter().map(|k| Key::from(*k)).collect();
        self.bounded("exists", self.pool.next_connected().exists::<i64, _>(keys))
            .await
    }
}

impl FredRunner {
    /// Awaits `call` within the timeout, classifying its failures.
    async fn bounded<T>(
        &self,
        what: &'static str,
        call: impl std::future::Future<Output = Result<T, FredError>>,
    ) -> Result<T, StoreError> {
        bounded(self.timeout, what, call, is_backend).await
    }
}

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
