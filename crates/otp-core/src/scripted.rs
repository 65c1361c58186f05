//! The Redis store logic, written once: key layout, Lua scripts, and [`OtpStore`] +
//! [`TokenBlacklist`] on top of any client that can run a script ([`ScriptRunner`]).
//!
//! Backends (`otp-redis` on the `redis` crate, `otp-fred` on `fred`) only implement
//! [`ScriptRunner`]: EVALSHA with a reload on NOSCRIPT, timeouts, error classification.
//! Every operation is one call touching one cluster slot, so it is atomic and one round
//! trip on a single server and on a cluster alike: a script, except the access check of
//! protected requests, which is one plain `EXISTS`. On a cluster, where keys of different
//! slots cannot share a script, three operations take more than one call: `request-otp`
//! (the IP bucket), verify (the per-IP failure check and count) and verify-and-open
//! (`VERIFY`, then `SESSION_CREATE`, with `RESTORE` if that fails); on a single server each
//! is one script. Time comes from Redis (`TIME`
//! inside each script), so every app instance agrees on it.
//!
//! Keys (prefixes from `OTP_KEY_PREFIX` and `BLACKLIST_KEY_PREFIX`; hash tags in braces):
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `otp_{<address key>}` | hash | one field per pending flow `f<flow key>` (code MAC, expiry, failures, kind), the address-wide minute/hour/day request windows packed in `w`, one budget per known device `d<device key>`, unbound failures `fc`/`fs` and their lockout `lu`, when devices were forgotten `df`, last call `n` | when the last of those ends (the day window: a day; forgotten devices: `KNOWN_DEVICE_DAYS`) |
//! | `otp_ip:{<ip bucket>}` | string | requests in the current minute | with the window |
//! | `otp_vf:{<ip bucket>}` | string | failed verifications in the current hour | with the window |
//! | `<first key>:fence` | string | written after a durable script when replicas must acknowledge | a second |
//! | `blacklist_{<subject key>}:s:<member>` | string | session: `<current refresh jti> <parent jti, first 11 characters> <created, s>,<last authentication> <IP> <user agent>` (one string: a small one stays in one allocation) | with the session |
//! | `blacklist_{<subject key>}:j:<jti>` | string | a revoked access token | with the token |
//! | `blacklist_{<subject key>}:u` | sorted set | the subject's session members (a session id is `<subject key>.<member>`), scored by the last refresh or rotation (ms) | with its longest session |
//!
//! A session id starts with its subject key ([`crate::store::new_session_id`]), so a
//! subject's sessions, revocations and index share one slot: creating, rotating, ending
//! and listing sessions are each one single-slot script.
//!
//! No key or value holds a plain address or code: addresses and subjects appear as keyed
//! hashes, codes as truncated HMACs. Fields that are zero are not stored, which keeps a
//! pending login at one small hash.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

/// The database index a `redis://host:port/N` address selects, if it names one.
fn database_index(url: &str) -> Option<u32> {
    let rest = url.split_once("://")?.1;
    let path = rest.split(['?', '#']).next()?;
    let (_, db) = path.split_once('/')?;
    db.trim_end_matches('/').parse().ok()
}

/// `url` with its password replaced, for error messages about a Redis address (the same
/// redaction as `Config`'s `Debug`).
pub fn redact_url(url: &str) -> String {
    crate::config::redact_url(url)
}

use crate::code::{AddressKey, CodeMac, FlowKey};
use crate::config::RedisSettings;
use crate::store::{
    AccessStatus, AddressLimit, AddressOp, AddressStatus, HOUR, IssueOutcome, IssueRequest, Limits,
    Login, NewSession, OtpStore, Renewal, Revocation, RotateOutcome, Rotation, SessionAuth,
    SessionInfo, StoreError, TokenBlacklist, VerifyOutcome, VerifyRequest, session_subject_key,
    verify_then_open,
};

/// One Lua script of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// Its position in [`SCRIPTS`], for backends that keep prepared scripts in a table.
    pub id: usize,
    /// A short name for logs.
    pub name: &'static str,
    /// The Lua source.
    pub source: &'static str,
}

/// A reply from Redis, as much of RESP as the scripts use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nil.
    Nil,
    /// An integer.
    Int(i64),
    /// A bulk or simple string.
    Bulk(Vec<u8>),
    /// An array.
    Array(Vec<Reply>),
}

impl Reply {
    /// The error of a reply type no script gives (`what` describes it).
    pub fn unexpected_type(what: impl std::fmt::Debug) -> StoreError {
        StoreError::backend(format!(
            "unexpected reply type from a store script: {what:?}"
        ))
    }

    /// The script's reply out of the replies of `EVAL` + `WAIT`
    /// ([`ScriptRunner::run_replicated`]): an error when `WAIT` counted fewer than
    /// `replicas` acknowledgements.
    pub fn replicated(
        replies: impl IntoIterator<Item = Result<Reply, StoreError>>,
        replicas: u32,
    ) -> Result<Reply, StoreError> {
        let replies = replies.into_iter().collect::<Result<Vec<_>, _>>()?;
        let [reply, _fence, acked] = <[Reply; 3]>::try_from(replies).map_err(|r| {
            StoreError::backend(format!("a script and WAIT gave {} replies", r.len()))
        })?;
        let acked = acked.int()?;
        if acked >= i64::from(replicas) {
            Ok(reply)
        } else {
            Err(StoreError::unavailable(format!(
                "the write was acknowledged by {acked} of the {replicas} replicas {} requires",
                RedisSettings::VARS.min_replicas_ack
            )))
        }
    }

    fn int(&self) -> Result<i64, StoreError> {
        match self {
            Reply::Int(i) => Ok(*i),
            Reply::Bulk(b) => std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| unexpected(self)),
            _ => Err(unexpected(self)),
        }
    }

    fn array(&self) -> Result<&[Reply], StoreError> {
        match self {
            Reply::Array(a) => Ok(a),
            _ => Err(unexpected(self)),
        }
    }

    fn string(&self) -> Option<String> {
        match self {
            Reply::Bulk(b) => String::from_utf8(b.clone()).ok(),
            _ => None,
        }
    }
}

fn unexpected(r: &Reply) -> StoreError {
    StoreError::backend(format!("unexpected reply from a store script: {r:?}"))
}

/// One script call: the script, its keys (all in one cluster slot, unless
/// [`ScriptRunner::single_node`]) and its arguments.
#[derive(Debug, Clone, Copy)]
pub struct ScriptCall<'a> {
    /// The script.
    pub script: &'a Script,
    /// Its `KEYS`.
    pub keys: &'a [&'a str],
    /// Its `ARGV`.
    pub args: &'a [&'a [u8]],
}

/// How many replicas must acknowledge a durable write, and how long `WAIT` may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAck {
    /// `OTP_AUTH_REDIS_MIN_REPLICAS_ACK`.
    pub replicas: u32,
    /// The longest wait.
    pub timeout: Duration,
}

/// Runs a script: the one thing a Redis backend has to provide.
///
/// Implementations use EVALSHA and load the script on NOSCRIPT, bound every call by a
/// timeout, and map connection failures and timeouts to [`StoreError::Unavailable`].
#[async_trait]
pub trait ScriptRunner: Debug + Send + Sync + 'static {
    /// Runs one script call.
    async fn run(&self, call: ScriptCall<'_>) -> Result<Reply, StoreError>;

    /// Whether every key lives on one server (not a cluster), so that one script may touch
    /// keys of different slots: `request-otp` then counts the IP bucket and stores the code
    /// in one call instead of two. Defaults to `false` (always correct).
    fn single_node(&self) -> bool {
        false
    }

    /// [`ScriptRunner::run`] followed, in the same round trip (a pipeline to the server of
    /// the keys' slot), by a write of [`fence_key`] and `WAIT replicas timeout`. The fence
    /// is always a write, so `WAIT` also covers a script that wrote nothing this time (the
    /// same call resent after its first run, whose writes came earlier in the replication
    /// stream): the write is acknowledged by at least
    /// `replicas` replicas, or the call fails with [`StoreError::Unavailable`] (the write
    /// stays on the master, but nobody is told it succeeded). Used for the writes that
    /// must not be lost when `OTP_AUTH_REDIS_MIN_REPLICAS_ACK` is set. The script goes as
    /// `EVAL` with its source, so no `NOSCRIPT` reload can come between it and the `WAIT`.
    /// The default refuses: a runner that cannot pipeline cannot offer it.
    async fn run_replicated(
        &self,
        call: ScriptCall<'_>,
        _: ReplicaAck,
    ) -> Result<Reply, StoreError> {
        Err(StoreError::backend(format!(
            "this store runner cannot wait for replicas (script {})",
            call.script.name
        )))
    }

    /// `CONFIG GET pattern` on every server that holds keys (each master of a cluster):
    /// one list of `(name, value)` per server, for the start-up check of
    /// [`check_eviction`]. The default answers an error: a runner that cannot send it (the
    /// check then warns).
    async fn config_get(&self, pattern: &str) -> Result<Vec<Vec<(String, String)>>, StoreError> {
        Err(StoreError::backend(format!(
            "this store runner cannot read CONFIG {pattern}"
        )))
    }

    /// `CLUSTER INFO` of the master of `slot` (its text: `cluster_state:ok`, …), for the
    /// readiness check; `None` on a single server. The default answers `None`.
    async fn cluster_info(&self, slot: u16) -> Result<Option<String>, StoreError> {
        let _ = slot;
        Ok(None)
    }

    /// `EXISTS keys…` (all in one slot): how many of `keys` exist, a key named twice
    /// counted twice. The access check of every protected request is this one command.
    /// The default runs it as a script; backends send the plain command, which is cheaper
    /// for Redis.
    async fn exists(&self, keys: &[&str]) -> Result<i64, StoreError> {
        self.run(ScriptCall {
            script: &EXISTS,
            keys,
            args: &[],
        })
        .await?
        .int()
    }
}

macro_rules! scripts {
    ($($(#[$doc:meta])* $name:ident = $id:expr, $label:expr, $src:expr;)*) => {
        $( $(#[$doc])* pub const $name: Script = Script { id: $id, name: $label, source: $src }; )*
        /// Every script, indexed by [`Script::id`].
        pub const SCRIPTS: &[Script] = &[$($name),*];
    };
}

/// The Lua source of the named files in `src/lua/`, joined in order: fragments (`now`,
/// `address` with its helpers, the `*_fn` functions) and the body that uses them.
macro_rules! lua {
    ($($file:literal),+) => {
        concat!($(include_str!(concat!("lua/", $file, ".lua"))),+)
    };
}

scripts! {
    /// Check limits and lockout, store a code.
    ISSUE = 0, "issue", lua!("now", "address", "issue_head", "issue_body");
    /// Check lockout (and on a single server the IP's failures), compare, consume or count:
    /// `KEYS[1]` address, optionally `KEYS[2]` the IP's failure counter.
    VERIFY = 1, "verify", lua!("now", "address", "verify_fn", "verify_main");
    /// Delete an unsent code.
    DISCARD = 2, "discard", lua!("discard");
    /// Count a request against an IP bucket.
    IP_TAKE = 3, "ip_take", lua!("ip_take_fn", "ip_take");
    /// Record a session in its subject's index: `KEYS[1]` session, `KEYS[2]` index; `ARGV`
    /// refresh jti, expires_at (s), user agent, IP, the session's member, most sessions.
    SESSION_CREATE = 4, "session_create", lua!("now", "session_create_fn", "session_create_main");
    /// Rotate a refresh token, detecting reuse.
    ROTATE = 5, "rotate", lua!("now", "rotate");
    /// End a session, revoking an access token of it.
    END = 6, "end", lua!("now", "end");
    /// Read a subject's index.
    INDEX_LIST = 7, "index_list", lua!("index_list");
    /// End every session of a subject.
    END_ALL = 8, "end_all", lua!("end_all");
    /// Read a subject's sessions.
    SESSIONS_GET = 9, "sessions_get", lua!("sessions_get");
    /// `EXISTS` as a script, for runners without the plain command.
    EXISTS = 10, "exists", lua!("exists");
    /// ISSUE with the IP bucket counted first in the same call (single server only):
    /// `KEYS[1]` address, `KEYS[2]` IP bucket; `ARGV` as ISSUE, then the IP limit. Returns
    /// ISSUE's answers or `{2, wait}` when the IP is limited.
    ISSUE_IP = 11, "issue_ip", lua!("now", "address", "issue_head", "ip_take_fn", "ip_take_first", "issue_body");
    /// VERIFY and, on success, the session's creation in one call (single server only):
    /// `KEYS[1]` address, `KEYS[2]` session, `KEYS[3]` index, optionally `KEYS[4]` the IP's
    /// failure counter; `ARGV` as VERIFY, then SESSION_CREATE's. Returns VERIFY's answers,
    /// with the number of sessions ended as the second value of `{0, ended}`.
    VERIFY_OPEN = 12, "verify_open", lua!("now", "address", "verify_fn", "session_create_fn", "verify_open_main");
    /// Make a consumed code pending again (its session could not be recorded).
    RESTORE = 13, "restore", lua!("now", "restore");
    /// Whether an IP has used up its failed verifications (a cluster).
    IP_FAILURES_FULL = 14, "ip_failures_full", lua!("ip_failures_full");
    /// Count a failed verification against an IP (a cluster).
    IP_FAILURE_COUNT = 15, "ip_failure_count", lua!("ip_failure_count");
    /// Record a fresh authentication on a session, perhaps replacing its refresh token.
    RENEW = 16, "renew", lua!("renew");
    /// Forget an address's known devices.
    FORGET_DEVICES = 17, "forget_devices", lua!("now", "address", "forget_devices");
    /// Read or change an address for an administrator (lock, unlock, a sign-in).
    ADMIN = 18, "admin", lua!("now", "address", "admin");
    /// Append an item to the outbox, unless it is full.
    OUTBOX_APPEND = 19, "outbox_append", lua!("now", "outbox_fn", "outbox_append");
    /// Claim outbox items: leases run out, due retries, new ones.
    OUTBOX_CLAIM = 20, "outbox_claim", lua!("now", "outbox_fn", "outbox_claim");
    /// Acknowledge a delivered outbox item.
    OUTBOX_ACK = 21, "outbox_ack", lua!("outbox_ack");
    /// Delay an outbox item for a retry.
    OUTBOX_RETRY = 22, "outbox_retry", lua!("now", "outbox_fn", "outbox_retry");
    /// Make an outbox item a dead letter.
    OUTBOX_BURY = 23, "outbox_bury", lua!("outbox_fn", "outbox_bury");
    /// Read the outbox's dead letters.
    OUTBOX_DEAD = 24, "outbox_dead", lua!("outbox_dead");
    /// Put the outbox's dead letters back.
    OUTBOX_REPLAY = 25, "outbox_replay", lua!("outbox_fn", "outbox_replay");
    /// How full the outbox is.
    OUTBOX_STATS = 26, "outbox_stats", lua!("outbox_fn", "outbox_stats");
}

impl Script {
    /// The runner's prepared form of this script in `prepared` (one per [`SCRIPTS`] entry,
    /// in order).
    pub fn prepared<'a, T>(&self, prepared: &'a [T]) -> Result<&'a T, StoreError> {
        prepared
            .get(self.id)
            .ok_or_else(|| StoreError::backend(format!("unknown script {}", self.name)))
    }

    /// Whether the script makes a write that must not be lost (consuming a code, a
    /// lockout, a rotation, a revocation): with `OTP_AUTH_REDIS_MIN_REPLICAS_ACK` set, it
    /// runs through [`ScriptRunner::run_replicated`].
    pub fn durable(&self) -> bool {
        [
            VERIFY.id,
            VERIFY_OPEN.id,
            ROTATE.id,
            END.id,
            END_ALL.id,
            RENEW.id,
            FORGET_DEVICES.id,
            ADMIN.id,
            OUTBOX_APPEND.id,
            OUTBOX_RETRY.id,
            OUTBOX_BURY.id,
        ]
        .contains(&self.id)
    }
}

/// Checks at start-up that Redis never evicts our keys: every key has a TTL, so under
/// `maxmemory` with an evicting policy (`volatile-lru`, a managed Redis's usual default, or
/// any `allkeys-*`/`volatile-*`) a flood of requests makes Redis drop lockouts, failure
/// counters and sessions, and guesses start counting from zero again.
///
/// With an evicting policy and `maxmemory` set it logs an error naming `noeviction`, or,
/// with `OTP_AUTH_REDIS_REQUIRE_NOEVICTION=true`, refuses
/// ([`SetupError::Eviction`]). A policy it cannot read (`CONFIG` renamed or refused, as
/// managed services do, or Redis not reachable yet) is a warning. Both backends' `connect`
/// call it.
pub async fn check_eviction<R: ScriptRunner + ?Sized>(
    runner: &R,
    settings: &RedisSettings,
) -> Result<(), SetupError> {
    // One round trip per server: `maxmemory*` holds both settings.
    let read = match runner.config_get("maxmemory*").await {
        Ok(servers) if servers.is_empty() => Err("no server answered".to_owned()),
        Ok(servers) => Ok(servers),
        Err(e) => Err(e.to_string()),
    };
    let servers = match read {
        Ok(servers) => servers,
        Err(why) => {
            tracing::warn!(
                error = %why,
                "could not read Redis' maxmemory-policy: make sure it is noeviction, or \
                 Redis may drop lockouts, failure counters and sessions under memory pressure"
            );
            return Ok(());
        }
    };
    // A server evicts when it has a limit (maxmemory 0 means none) and a policy other
    // than noeviction; each server of a cluster decides for its own keys.
    let evicting = servers.iter().find_map(|settings| {
        let get = |name: &str| {
            settings
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim())
        };
        let policy = get("maxmemory-policy")?;
        let limit = get("maxmemory")?;
        (limit != "0" && !policy.eq_ignore_ascii_case("noeviction"))
            .then(|| (policy.to_owned(), limit.to_owned()))
    });
    let Some((policy, limit)) = evicting else {
        return Ok(());
    };
    let message = format!(
        "Redis may evict keys (maxmemory-policy {policy}, maxmemory {limit}): under memory \
         pressure it drops lockouts, failure counters and sessions, and an attacker can flood \
         it to get more guesses. Set maxmemory-policy noeviction (a full Redis then refuses \
         writes and the service answers 503 instead of forgetting)"
    );
    if settings.require_noeviction {
        return Err(SetupError::Eviction(format!(
            "{}=true: {message}",
            RedisSettings::VARS.require_noeviction
        )));
    }
    tracing::error!(
        "{message}; {}=true refuses to start instead",
        RedisSettings::VARS.require_noeviction
    );
    Ok(())
}

/// Why a Redis backend could not be set up: shared by `otp-redis` and `otp-fred`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// Redis may evict keys and `OTP_AUTH_REDIS_REQUIRE_NOEVICTION` is set
    /// ([`check_eviction`]).
    #[error("{0}")]
    Eviction(String),
    /// The address cannot be used (the message never holds a password).
    #[error("{var}: {0}", var = RedisSettings::VARS.url)]
    Url(String),
    /// The client could not be created or could not reach Redis at start.
    #[error("{client}: {source}")]
    Client {
        /// The client library (`redis`, `fred`).
        client: &'static str,
        /// Its error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SetupError {
    /// A client library's error.
    pub fn client(
        client: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> SetupError {
        SetupError::Client {
            client,
            source: Box::new(source),
        }
    }
}

/// Awaits one store call of a backend within `timeout`: a failure is logged with the call's
/// name and sorted by `is_backend` into [`StoreError::Backend`] (a bug or foreign data) or
/// [`StoreError::Unavailable`] (try again later), with the client's error as its source; no
/// answer in time is [`StoreError::Unavailable`]. Both backends bound every call with it.
pub async fn bounded<T, E: std::error::Error + Send + Sync + 'static>(
    timeout: Duration,
    what: &'static str,
    call: impl Future<Output = Result<T, E>>,
    is_backend: impl FnOnce(&E) -> bool,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            tracing::warn!(call = what, error = %e, "store call failed");
            Err(if is_backend(&e) {
                StoreError::backend(e)
            } else {
                StoreError::unavailable(e)
            })
        }
        Err(_) => {
            tracing::warn!(call = what, "store call timed out");
            Err(StoreError::unavailable(format!(
                "no answer from Redis within {timeout:?}"
            )))
        }
    }
}

/// The key a durable call writes after its script ([`ScriptRunner::run_replicated`]): in
/// the slot of `first_key`, gone after a second.
pub fn fence_key(first_key: &str) -> String {
    format!("{first_key}:fence")
}

/// The Redis Cluster hash slot of `key` (CRC16/XMODEM of its hash tag, modulo 16384), for
/// runners that route a command by slot.
pub fn key_slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let tagged = b.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = &b[open + 1..];
        rest.iter()
            .position(|&c| c == b'}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    let mut crc: u16 = 0;
    for &byte in tagged.unwrap_or(b) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// Key names, from the configured prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    otp_prefix: String,
    blacklist_prefix: String,
}

impl KeyLayout {
    /// A layout with `OTP_KEY_PREFIX` and `BLACKLIST_KEY_PREFIX`.
    pub fn new(otp_prefix: &str, blacklist_prefix: &str) -> KeyLayout {
        KeyLayout {
            otp_prefix: otp_prefix.to_owned(),
            blacklist_prefix: blacklist_prefix.to_owned(),
        }
    }

    /// From a configuration's prefixes.
    pub fn from_config(c: &crate::Config) -> KeyLayout {
        Self::new(&c.codes.key_prefix, &c.sessions.key_prefix)
    }

    /// The hash of one address.
    pub fn address(&self, a: &AddressKey) -> String {
        format!("{}{{{}}}", self.otp_prefix, a.as_str())
    }

    /// The request counter of one IP bucket.
    pub fn ip(&self, ip: &crate::code::IpKey) -> String {
        format!("{}ip:{{{}}}", self.otp_prefix, ip.as_str())
    }

    /// The failed-verification counter of one IP bucket (same slot as its request
    /// counter).
    pub fn ip_failures(&self, ip: &crate::code::IpKey) -> String {
        format!("{}vf:{{{}}}", self.otp_prefix, ip.as_str())
    }

    /// A key of the outbox (`s` its stream, `z` and `d` its delayed items, `x` its dead
    /// letters): all in one slot, the outbox's own.
    pub fn outbox(&self, part: &str) -> String {
        format!("{{{}outbox}}:{part}", self.otp_prefix)
    }

    /// A session, in its subject's slot: the id's subject key is the hash tag, and the
    /// rest of the id (its member in the subject's index) ends the key.
    pub fn session(&self, sid: &str) -> String {
        self.session_member(session_subject_key(sid), member(sid))
    }

    /// The session of a subject whose index holds `member`.
    pub fn session_member(&self, subject_key: &str, member: &str) -> String {
        format!("{}{{{subject_key}}}:s:{member}", self.blacklist_prefix)
    }

    /// A revoked access token of a session, in the same slot.
    pub fn revoked(&self, sid: &str, jti: &str) -> String {
        format!(
            "{}{{{}}}:j:{jti}",
            self.blacklist_prefix,
            session_subject_key(sid)
        )
    }

    /// A subject's session index, in the same slot as its sessions.
    pub fn index(&self, subject_key: &str) -> String {
        format!("{}{{{subject_key}}}:u", self.blacklist_prefix)
    }

    /// The index of the subject a session belongs to.
    pub fn index_of(&self, sid: &str) -> String {
        self.index(session_subject_key(sid))
    }
}

/// A session's member in its subject's index: the id after its subject key (the whole id
/// if it has none).
fn member(sid: &str) -> &str {
    sid.split_once('.').map_or(sid, |(_, m)| m)
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

fn pair(r: &Reply) -> Result<(i64, i64), StoreError> {
    let a = r.array()?;
    match a {
        [c, v, ..] => Ok((c.int()?, v.int()?)),
        [c] => Ok((c.int()?, 0)),
        _ => Err(unexpected(r)),
    }
}

fn wait(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

fn strings(r: &Reply) -> Result<Vec<String>, StoreError> {
    Ok(r.array()?.iter().filter_map(Reply::string).collect())
}

/// [`OtpStore`] and [`TokenBlacklist`] on Redis through a [`ScriptRunner`].
#[derive(Debug, Clone)]
pub struct ScriptedStore<R> {
    runner: R,
    keys: KeyLayout,
    /// Replicas that must acknowledge a durable write, and how long to wait for them.
    replicas: Option<(u32, Duration)>,
    /// `OTP_AUTH_REDIS_URL`, its password hidden, for the readiness check's answer.
    address: Option<String>,
}

impl<R: ScriptRunner> ScriptedStore<R> {
    /// A store running its scripts on `runner`, with key names from `keys`.
    pub fn new(runner: R, keys: KeyLayout) -> ScriptedStore<R> {
        ScriptedStore {
            runner,
            keys,
            replicas: None,
            address: None,
        }
    }

    /// A store as `config` sets it up: its key prefixes and
    /// `OTP_AUTH_REDIS_MIN_REPLICAS_ACK` (waiting at most half of `OTP_AUTH_REDIS_TIMEOUT_MS`
    /// for the replicas).
    pub fn from_config(runner: R, config: &crate::Config) -> ScriptedStore<R> {
        let mut store = Self::new(runner, KeyLayout::from_config(config)).with_min_replicas_ack(
            config.redis.min_replicas_ack,
            Duration::from_millis(config.redis.timeout_ms / 2),
        );
        store.address = Some(redact_url(&config.redis.url));
        store
    }

    /// Makes every write that must not be lost ([`Script::durable`]) wait until `replicas`
    /// replicas acknowledged it, at most `timeout`, failing as unavailable otherwise
    /// (`OTP_AUTH_REDIS_MIN_REPLICAS_ACK`; 0 turns it off).
    pub fn with_min_replicas_ack(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replicas = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// One script call, through `WAIT` when it is durable and replicas are required.
    async fn call(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Reply, StoreError> {
        let call = ScriptCall { script, keys, args };
        match self.replicas {
            Some((replicas, timeout)) if script.durable() => {
                self.runner
                    .run_replicated(call, ReplicaAck { replicas, timeout })
                    .await
            }
            _ => self.runner.run(call).await,
        }
    }

    /// The script runner (the backend's client).
    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// The key layout.
    pub fn keys(&self) -> &KeyLayout {
        &self.keys
    }
}

/// Polls a set of futures concurrently (no extra dependency for `join_all`).
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

fn verify_outcome(r: &Reply) -> Result<VerifyOutcome, StoreError> {
    Ok(match pair(r)? {
        (0, _) => VerifyOutcome::Verified,
        (1, left) => VerifyOutcome::NoCode {
            attempts_left: u32::try_from(left).unwrap_or(0),
        },
        (2, left) => VerifyOutcome::Mismatch {
            attempts_left: u32::try_from(left).unwrap_or(0),
        },
        (3, v) => VerifyOutcome::LockedOut {
            retry_after: wait(v),
        },
        (4, v) => VerifyOutcome::IpLimited {
            retry_after: wait(v),
        },
        _ => return Err(unexpected(r)),
    })
}

/// VERIFY's arguments, in order.
struct VerifyArgs {
    max: String,
    window: String,
    lockout: String,
    ip_failures: String,
    device_ms: String,
}

impl VerifyArgs {
    fn new(req: &VerifyRequest) -> VerifyArgs {
        let l = &req.limits;
        VerifyArgs {
            max: l.max_attempts.to_string(),
            window: ms(l.request_window),
            lockout: ms(l.lockout),
            ip_failures: l.ip_failures.to_string(),
            device_ms: ms(l.known_device_lifetime),
        }
    }

    fn argv<'a>(&'a self, req: &'a VerifyRequest) -> [&'a [u8]; 8] {
        [
            &req.code_mac.0,
            self.max.as_bytes(),
            self.window.as_bytes(),
            self.lockout.as_bytes(),
            &req.call.0,
            self.ip_failures.as_bytes(),
            req.flow
                .as_ref()
                .map_or(&b""[..], |f| f.as_str().as_bytes()),
            self.device_ms.as_bytes(),
        ]
    }
}

/// SESSION_CREATE's arguments, in order.
struct SessionArgs {
    exp: String,
    most: String,
    auth: String,
}

impl SessionArgs {
    fn new(s: &NewSession) -> SessionArgs {
        SessionArgs {
            exp: s.expires_at.to_string(),
            most: s.max_sessions.max(1).to_string(),
            auth: s.auth.encode(),
        }
    }

    fn argv<'a>(&'a self, s: &'a NewSession) -> [&'a [u8]; 7] {
        [
            s.refresh_jti.as_bytes(),
            self.exp.as_bytes(),
            s.user_agent.as_deref().unwrap_or("").as_bytes(),
            s.ip.as_deref().unwrap_or("").as_bytes(),
            member(&s.sid).as_bytes(),
            self.most.as_bytes(),
            self.auth.as_bytes(),
        ]
    }
}

/// A subject's index and the sessions it names: the keys and arguments of END_ALL and
/// SESSIONS_GET.
struct SubjectSessions {
    index: String,
    members: Vec<String>,
    sessions: Vec<String>,
}

impl SubjectSessions {
    /// The index, then every session.
    fn keys(&self) -> Vec<&str> {
        std::iter::once(self.index.as_str())
            .chain(self.sessions.iter().map(String::as_str))
            .collect()
    }

    /// The sessions' members, in the order of [`SubjectSessions::keys`].
    fn args(&self) -> Vec<&[u8]> {
        self.members.iter().map(|m| m.as_bytes()).collect()
    }
}

impl<R: ScriptRunner> ScriptedStore<R> {
    /// The subject's index, read; `None` when it names no session.
    async fn subject_sessions(
        &self,
        subject_key: &str,
    ) -> Result<Option<SubjectSessions>, StoreError> {
        let index = self.keys.index(subject_key);
        let members = strings(&self.call(&INDEX_LIST, &[&index], &[]).await?)?;
        if members.is_empty() {
            return Ok(None);
        }
        let sessions = members
            .iter()
            .map(|m| self.keys.session_member(subject_key, m))
            .collect();
        Ok(Some(SubjectSessions {
            index,
            members,
            sessions,
        }))
    }
}

#[async_trait]
impl<R: ScriptRunner> OtpStore for ScriptedStore<R> {
    async fn issue(&self, req: &IssueRequest) -> Result<IssueOutcome, StoreError> {
        let l = &req.limits;
        let key = self.keys.address(&req.address);
        let ttl = ms(req.code_ttl);
        let per_address = l.per_address.to_string();
        let window = ms(l.request_window);
        let lockout = ms(l.lockout);
        let per_hour = l.per_address_hour.to_string();
        let per_day = l.per_address_day.to_string();
        let cooldown = ms(l.resend_cooldown);
        let max_flows = l.max_flows.to_string();
        let device_ms = ms(l.known_device_lifetime);
        let since = req.device.map_or(0, |d| d.since).to_string();
        let per_ip = l.per_ip.to_string();
        let args: [&[u8]; 17] = [
            &req.code_mac.0,
            ttl.as_bytes(),
            per_address.as_bytes(),
            window.as_bytes(),
            lockout.as_bytes(),
            per_hour.as_bytes(),
            per_day.as_bytes(),
            cooldown.as_bytes(),
            &req.call.0,
            max_flows.as_bytes(),
            device_ms.as_bytes(),
            req.resend
                .as_ref()
                .map_or(&b""[..], |f| f.as_str().as_bytes()),
            req.flow.as_str().as_bytes(),
            req.device
                .as_ref()
                .map_or(&b""[..], |d| d.key.as_str().as_bytes()),
            since.as_bytes(),
            if req.signed_in { b"1" } else { b"0" },
            per_ip.as_bytes(),
        ];
        let r = match &req.ip {
            // One server: the IP bucket and the address in one call.
            Some(ip) if self.runner.single_node() => {
                let ip_key = self.keys.ip(ip);
                self.call(&ISSUE_IP, &[&key, &ip_key], &args).await?
            }
            Some(ip) => {
                // A cluster: the IP counter lives in its own slot, so its own call first.
                let ip_key = self.keys.ip(ip);
                let r = self
                    .call(
                        &IP_TAKE,
                        &[&ip_key],
                        &[per_ip.as_bytes(), window.as_bytes()],
                    )
                    .await?;
                if let (1, v) = pair(&r)? {
                    return Ok(IssueOutcome::IpLimited {
                        retry_after: wait(v),
                    });
                }
                self.call(&ISSUE, &[&key], &args[..16]).await?
            }
            None => self.call(&ISSUE, &[&key], &args[..16]).await?,
        };
        let third = |i: usize| match r.array().ok().and_then(|a| a.get(i)).map(Reply::int) {
            Some(Ok(v)) => v,
            _ => 0,
        };
        Ok(match pair(&r)? {
            (0, _) => IssueOutcome::Issued {
                resent: third(2) == 1,
                known_device: third(3) == 1,
            },
            (1, v) => IssueOutcome::AddressLimited {
                retry_after: wait(v),
                limit: match third(2) {
                    2 => AddressLimit::Hour,
                    3 => AddressLimit::Day,
                    4 => AddressLimit::Cooldown,
                    5 => AddressLimit::Flows,
                    _ => AddressLimit::Minute,
                },
            },
            (2, v) => IssueOutcome::IpLimited {
                retry_after: wait(v),
            },
            (3, _) => IssueOutcome::Locked {
                resent: third(2) == 1,
            },
            _ => return Err(unexpected(&r)),
        })
    }

    async fn verify(&self, req: &VerifyRequest) -> Result<VerifyOutcome, StoreError> {
        let key = self.keys.address(&req.address);
        let va = VerifyArgs::new(req);
        let argv = va.argv(req);
        let ip_key = req.ip.as_ref().map(|ip| self.keys.ip_failures(ip));
        match &ip_key {
            // One server: the IP's failures are read and counted inside VERIFY.
            Some(ipk) if self.runner.single_node() => {
                verify_outcome(&self.call(&VERIFY, &[&key, ipk], &argv).await?)
            }
            Some(ipk) => {
                // A cluster: the counter has its own slot, read before and counted after.
                let r = self
                    .call(&IP_FAILURES_FULL, &[ipk], &[va.ip_failures.as_bytes()])
                    .await?;
                if let (1, v) = pair(&r)? {
                    return Ok(VerifyOutcome::IpLimited {
                        retry_after: wait(v),
                    });
                }
                let outcome = verify_outcome(&self.call(&VERIFY, &[&key], &argv).await?)?;
                if outcome.is_failure() {
                    self.call(&IP_FAILURE_COUNT, &[ipk], &[ms(HOUR).as_bytes()])
                        .await?;
                }
                Ok(outcome)
            }
            None => verify_outcome(&self.call(&VERIFY, &[&key], &argv).await?),
        }
    }

    async fn discard(
        &self,
        address: &AddressKey,
        flow: &FlowKey,
        code_mac: &CodeMac,
    ) -> Result<(), StoreError> {
        let key = self.keys.address(address);
        self.call(&DISCARD, &[&key], &[&code_mac.0, flow.as_str().as_bytes()])
            .await?;
        Ok(())
    }

    async fn restore(&self, req: &VerifyRequest) -> Result<(), StoreError> {
        let key = self.keys.address(&req.address);
        let ttl = ms(req.code_ttl);
        let flow = req
            .flow
            .as_ref()
            .map_or(&b""[..], |f| f.as_str().as_bytes());
        self.call(
            &RESTORE,
            &[&key],
            &[&req.code_mac.0, ttl.as_bytes(), flow, &req.call.0],
        )
        .await?;
        Ok(())
    }

    /// `EXISTS` of a key nobody writes: one round trip, as every access check makes. A
    /// failure names `OTP_AUTH_REDIS_URL` (its password hidden), with a hint when a TLS
    /// address times out.
    async fn ready(&self) -> Result<(), StoreError> {
        let key = self.keys.address(&AddressKey::probe());
        // A cluster that does not serve every slot refuses every command (CLUSTERDOWN,
        // retried until the timeout) or, without full coverage required, answers for some
        // slots only: its own `cluster_state` says why, so it is read first.
        let probed = match self.runner.cluster_info(key_slot(&key)).await {
            Ok(Some(info)) if !info.contains("cluster_state:ok") => {
                Err(StoreError::unavailable(format!(
                    "the cluster does not serve every slot ({})",
                    (info.lines())
                        .find(|l| l.starts_with("cluster_state:"))
                        .unwrap_or("no cluster_state")
                        .trim()
                )))
            }
            _ => self.runner.exists(&[&key]).await.map(|_| ()),
        };
        let Err(e) = probed else {
            return Ok(());
        };
        let Some(address) = &self.address else {
            return Err(e);
        };
        let hint = if address.starts_with("rediss") {
            " (a TLS address: does the server speak TLS on that port?)".to_owned()
        } else if let Some(db) = database_index(address).filter(|&db| db > 0) {
            // redis-rs passes the server's refusal of SELECT on; fred retries it until its
            // timeout and says only that.
            format!(
                " (the address selects database {db}: a server with fewer databases,                  `databases` is 16 by default, refuses it)"
            )
        } else {
            String::new()
        };
        let what = format!("{}={address}: {e}{hint}", RedisSettings::VARS.url);
        Err(match e {
            StoreError::Backend(_) => StoreError::backend(what),
            _ => StoreError::unavailable(what),
        })
    }

    async fn forget_devices(
        &self,
        address: &AddressKey,
        limits: &Limits,
    ) -> Result<(), StoreError> {
        let key = self.keys.address(address);
        let args = [
            ms(limits.request_window),
            ms(limits.lockout),
            ms(limits.known_device_lifetime),
        ];
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call(&FORGET_DEVICES, &[&key], &argv).await?;
        Ok(())
    }

    async fn administer(
        &self,
        address: &AddressKey,
        op: &AddressOp,
        limits: &Limits,
    ) -> Result<AddressStatus, StoreError> {
        let key = self.keys.address(address);
        let (code, span, flow, mac): (&[u8], Duration, &[u8], &[u8]) = match op {
            AddressOp::Read => (b"r", Duration::ZERO, b"", b""),
            AddressOp::Lock { duration } => (b"l", *duration, b"", b""),
            AddressOp::Unlock => (b"u", Duration::ZERO, b"", b""),
            AddressOp::Issue {
                flow,
                code_mac,
                ttl,
            } => (b"i", *ttl, flow.as_str().as_bytes(), &code_mac.0),
        };
        let nums = [
            ms(limits.request_window),
            ms(limits.lockout),
            ms(limits.known_device_lifetime),
            limits.max_flows.to_string(),
            ms(span),
        ];
        let mut argv: Vec<&[u8]> = vec![code];
        argv.extend(nums.iter().map(|n| n.as_bytes()));
        argv.extend([flow, mac]);
        let r = self.call(&ADMIN, &[&key], &argv).await?;
        let a = r.array()?;
        let n = |i: usize| -> Result<u64, StoreError> {
            let v = a.get(i).ok_or_else(|| unexpected(&r))?.int()?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let count = |i: usize| n(i).map(|v| u32::try_from(v).unwrap_or(u32::MAX));
        let some = |v: u64| Some(v).filter(|&v| v > 0);
        Ok(AddressStatus {
            admin_locked_until: some(n(0)?),
            locked_out_until: some(n(1)?),
            failures: count(2)?,
            flows: count(3)?,
            minute: count(4)?,
            hour: count(5)?,
            day: count(6)?,
            known_devices: count(7)?,
            devices_forgotten_at: some(n(8)?),
            issued: n(9)? == 1,
        })
    }

    /// On a single server one script consumes the code and records the session; on a
    /// cluster the two live in different slots.
    fn opens_sessions(&self) -> bool {
        self.runner.single_node()
    }

    async fn verify_and_open(
        &self,
        req: &VerifyRequest,
        session: &NewSession,
    ) -> Result<Login, StoreError> {
        if !self.runner.single_node() {
            // A cluster: two steps in this store's own sessions, the code restored if the
            // second fails.
            return verify_then_open(self, req, session, self).await;
        }
        let key = self.keys.address(&req.address);
        let skey = self.keys.session(&session.sid);
        let index = self.keys.index_of(&session.sid);
        let ip_key = req.ip.as_ref().map(|ip| self.keys.ip_failures(ip));
        let va = VerifyArgs::new(req);
        let sa = SessionArgs::new(session);
        let mut argv: Vec<&[u8]> = Vec::with_capacity(15);
        argv.extend_from_slice(&va.argv(req));
        argv.extend_from_slice(&sa.argv(session));
        let mut keys: Vec<&str> = vec![&key, &skey, &index];
        if let Some(ipk) = &ip_key {
            keys.push(ipk);
        }
        let r = self.call(&VERIFY_OPEN, &keys, &argv).await?;
        let outcome = verify_outcome(&r)?;
        let evicted = match outcome {
            VerifyOutcome::Verified => u32::try_from(pair(&r)?.1).unwrap_or(0),
            _ => 0,
        };
        Ok(Login { outcome, evicted })
    }
}

#[async_trait]
impl<R: ScriptRunner> TokenBlacklist for ScriptedStore<R> {
    async fn create_session(&self, s: &NewSession) -> Result<u32, StoreError> {
        let session = self.keys.session(&s.sid);
        let index = self.keys.index_of(&s.sid);
        let sa = SessionArgs::new(s);
        let r = self
            .call(&SESSION_CREATE, &[&session, &index], &sa.argv(s))
            .await?;
        Ok(u32::try_from(r.int()?).unwrap_or(0))
    }

    async fn rotate_refresh(&self, rot: &Rotation) -> Result<RotateOutcome, StoreError> {
        let session = self.keys.session(&rot.sid);
        let index = self.keys.index_of(&rot.sid);
        let r = self
            .call(
                &ROTATE,
                &[&session, &index],
                &[
                    rot.presented_jti.as_bytes(),
                    rot.new_jti.as_bytes(),
                    rot.new_expires_at.to_string().as_bytes(),
                    member(&rot.sid).as_bytes(),
                    ms(rot.reuse_interval).as_bytes(),
                ],
            )
            .await?;
        let a = r.array()?;
        let auth = |i: usize| {
            a.get(i)
                .and_then(Reply::string)
                .as_deref()
                .and_then(SessionAuth::decode)
                .ok_or_else(|| unexpected(&r))
        };
        Ok(match a.first().map(Reply::int).transpose()? {
            Some(0) => RotateOutcome::Rotated { auth: auth(1)? },
            Some(1) => RotateOutcome::Reused,
            Some(2) => RotateOutcome::Unknown,
            Some(3) => RotateOutcome::Reissued {
                current_jti: a
                    .get(1)
                    .and_then(Reply::string)
                    .ok_or_else(|| unexpected(&r))?,
                auth: auth(2)?,
            },
            _ => return Err(unexpected(&r)),
        })
    }

    async fn renew_session(&self, renewal: &Renewal) -> Result<bool, StoreError> {
        let session = self.keys.session(&renewal.sid);
        let index = self.keys.index_of(&renewal.sid);
        let r = self
            .call(
                &RENEW,
                &[&session, &index],
                &[
                    renewal.auth.encode().as_bytes(),
                    renewal.expires_at.to_string().as_bytes(),
                    member(&renewal.sid).as_bytes(),
                ],
            )
            .await?;
        Ok(r.int()? == 1)
    }

    async fn check_access(&self, sid: &str, jti: &str) -> Result<AccessStatus, StoreError> {
        let session = self.keys.session(sid);
        let revoked = self.keys.revoked(sid, jti);
        // One plain command: the session named twice and the revocation once count 2
        // exactly when the session exists and the token is not revoked.
        let n = self.runner.exists(&[&session, &session, &revoked]).await?;
        Ok(if n == 2 {
            AccessStatus::Active
        } else {
            AccessStatus::Revoked
        })
    }

    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        // One call per session, the access token riding with its own session's call (at
        // logout both tokens usually share one session: one call in all).
        let ends = |sid: &str| revocation.sessions.iter().any(|s| s == sid);
        let mut calls: Vec<(&str, bool, Option<(&str, u64)>)> = Vec::new();
        if let Some(a) = &revocation.access {
            calls.push((&a.sid, ends(&a.sid), Some((&a.jti, a.expires_at))));
        }
        for sid in &revocation.sessions {
            if !calls.iter().any(|(s, _, _)| s == sid) {
                calls.push((sid, true, None));
            }
        }
        let runs = calls.iter().map(|&(sid, end, access)| async move {
            let session = self.keys.session(sid);
            let index = self.keys.index_of(sid);
            let end: &[u8] = if end { b"1" } else { b"0" };
            match access {
                Some((jti, exp)) => {
                    let revoked = self.keys.revoked(sid, jti);
                    let exp = exp.to_string();
                    self.call(
                        &END,
                        &[&session, &index, &revoked],
                        &[member(sid).as_bytes(), end, exp.as_bytes()],
                    )
                    .await
                }
                None => {
                    self.call(&END, &[&session, &index], &[member(sid).as_bytes(), end])
                        .await
                }
            }
        });
        for r in join_all(runs).await {
            r?;
        }
        Ok(())
    }

    async fn revoke_all(&self, subject_key: &str) -> Result<u32, StoreError> {
        let Some(s) = self.subject_sessions(subject_key).await? else {
            return Ok(0);
        };
        let n = self.call(&END_ALL, &s.keys(), &s.args()).await?.int()?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn list_sessions(&self, subject_key: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let Some(s) = self.subject_sessions(subject_key).await? else {
            return Ok(Vec::new());
        };
        let r = self.call(&SESSIONS_GET, &s.keys(), &s.args()).await?;
        let now = crate::primitives::now_secs();
        let mut out = Vec::new();
        for row in r.array()? {
            let f = row.array()?;
            let num = |i: usize| f.get(i).and_then(|v| v.int().ok()).unwrap_or(0).max(0) as u64;
            let text = |i: usize| f.get(i).and_then(Reply::string).filter(|s| !s.is_empty());
            out.push(SessionInfo {
                sid: text(0)
                    .map(|m| format!("{subject_key}.{m}"))
                    .unwrap_or_default(),
                created_at: num(1),
                refreshed_at: num(2),
                expires_at: now + num(3),
                user_agent: text(4),
                ip: text(5),
            });
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.sid.cmp(&b.sid)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis() {
        // `CLUSTER KEYSLOT` of these keys.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("bar"), 5061);
        assert_eq!(key_slot("somekey"), 11058);
        // Only the hash tag counts; an empty tag does not make one.
        assert_eq!(key_slot("otp_{foo}"), 12182);
        assert_eq!(key_slot("{foo}:s:x"), key_slot("blacklist_{foo}:u"));
        // An empty tag hashes the whole key; only the first tag counts.
        assert_eq!(key_slot("{}foo"), 9500);
        assert_eq!(key_slot("a{}{b}"), 15033);
        assert_eq!(key_slot("{a}{b}"), 15495);
    }

    #[test]
    fn durable_scripts_are_the_writes_that_must_not_be_lost() {
        let durable: Vec<&str> = SCRIPTS
            .iter()
            .filter(|s| s.durable())
            .map(|s| s.name)
            .collect();
        assert_eq!(
            durable,
            [
                "verify",
                "rotate",
                "end",
                "end_all",
                "verify_open",
                "renew",
                "forget_devices",
                "admin",
                "outbox_append",
                "outbox_retry",
                "outbox_bury"
            ]
        );
    }
}

#[path = "scripted_outbox.rs"]
mod outbox_impl;
