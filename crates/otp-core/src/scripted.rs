//! The Redis store logic, written once: key layout, Lua scripts, and [`OtpStore`] +
//! [`TokenBlacklist`] on top of any client that can run a script ([`ScriptRunner`]).
//!
//! Backends (`otp-redis` on the `redis` crate, `otp-fred` on `fred`) only implement
//! [`ScriptRunner`]: EVALSHA with a reload on NOSCRIPT, timeouts, error classification.
//! Every operation is one script call touching one cluster slot, so it is atomic and one
//! round trip on a single server and on a cluster alike. Time comes from Redis (`TIME`
//! inside each script), so every app instance agrees on it.
//!
//! Keys (prefixes from `OTP_KEY_PREFIX` and `BLACKLIST_KEY_PREFIX`; hash tags in braces):
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `otp_{<address key>}` | hash | code MAC `m`, its expiry `e`, request window `rs`/`rc`, failures `fc`/`fs`, lockout `lu` | when the last of those ends |
//! | `otp_ip:{<ip bucket>}` | string | requests in the current minute | with the window |
//! | `blacklist_{<sid>}` | hash | session: subject key, current refresh `jti`, times, user agent, IP | with the session |
//! | `blacklist_{<sid>}:<jti>` | string | a revoked access token | with the token |
//! | `blacklist_u:{<subject key>}` | set | the subject's session ids | with its longest session |
//!
//! No key or value holds a plain address or code: addresses and subjects appear as keyed
//! hashes, codes as truncated HMACs. Fields that are zero are not stored, which keeps a
//! pending login at one small hash.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::code::{AddressKey, CodeMac};
use crate::store::{
    AccessStatus, IssueOutcome, IssueRequest, NewSession, OtpStore, Revocation, RotateOutcome,
    SessionInfo, StoreError, TokenBlacklist, VerifyOutcome, VerifyRequest,
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
    StoreError::Backend(format!("unexpected reply from a store script: {r:?}"))
}

/// Runs a script: the one thing a Redis backend has to provide.
///
/// Implementations use EVALSHA and load the script on NOSCRIPT, bound every call by a
/// timeout, and map connection failures and timeouts to [`StoreError::Unavailable`].
#[async_trait]
pub trait ScriptRunner: Debug + Send + Sync + 'static {
    /// Runs `script` with `keys` (all in one cluster slot) and `args`.
    async fn run(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Reply, StoreError>;
}

/// Reads Redis' clock into `now` (milliseconds).
macro_rules! lua_now {
    () => {
        "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    };
}

/// Reads the address hash, with the shared helpers of ISSUE and VERIFY.
macro_rules! lua_address_prelude {
    () => {
        r#"
local h = redis.call('HMGET', KEYS[1], 'm', 'e', 'rs', 'rc', 'fc', 'fs', 'lu')
local s = { m = h[1], e = tonumber(h[2]) or 0, rs = tonumber(h[3]) or 0, rc = tonumber(h[4]) or 0,
            fc = tonumber(h[5]) or 0, fs = tonumber(h[6]) or 0, lu = tonumber(h[7]) or 0 }
local function expire_failures(lockout)
  if s.lu > 0 and now >= s.lu then s.lu = 0; s.fc = 0 end
  if s.fc > 0 and now >= s.fs + lockout then s.fc = 0 end
  if s.fc == 0 then s.fs = 0 end
end
local function save(window, lockout)
  if s.m == false or s.m == nil or now >= s.e then s.m = nil; s.e = 0 end
  local set, del = {}, {}
  local function put(f, v)
    if v ~= nil and v ~= 0 then
      set[#set + 1] = f
      if type(v) == 'number' then set[#set + 1] = string.format('%d', v) else set[#set + 1] = v end
    else
      del[#del + 1] = f
    end
  end
  put('m', s.m); put('e', s.e); put('rs', s.rs); put('rc', s.rc)
  put('fc', s.fc); put('fs', s.fs); put('lu', s.lu)
  local live = s.e
  if s.rc > 0 then live = math.max(live, s.rs + window) end
  if s.fc > 0 then live = math.max(live, s.fs + lockout) end
  live = math.max(live, s.lu)
  if live <= now or #set == 0 then
    redis.call('DEL', KEYS[1])
    return
  end
  if #del > 0 then redis.call('HDEL', KEYS[1], unpack(del)) end
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('PEXPIRE', KEYS[1], string.format('%d', live - now))
end
"#
    };
}

/// ISSUE: KEYS[1] address; ARGV mac, ttl_ms, per_address, window_ms, lockout_ms.
/// Returns {0} issued, {1, wait} address limited, {3, wait} locked out.
macro_rules! lua_issue_body {
    () => {
        r#"
local ttl, limit, window, lockout = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
expire_failures(lockout)
if s.lu > now then return {3, s.lu - now} end
if s.rc == 0 or now >= s.rs + window then s.rs = now; s.rc = 0 end
if s.rc >= limit then return {1, s.rs + window - now} end
s.rc = s.rc + 1
s.m = ARGV[1]
s.e = now + ttl
save(window, lockout)
return {0, 0}
"#
    };
}

/// VERIFY: KEYS[1] address; ARGV mac, max_attempts, window_ms, lockout_ms.
/// Returns {0} verified, {1} no code, {2, left} mismatch, {3, wait} locked out.
macro_rules! lua_verify_body {
    () => {
        r#"
local max, window, lockout = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if h[1] == false and h[2] == false and h[3] == false and h[5] == false and h[7] == false then return {1, 0} end
expire_failures(lockout)
if s.lu > now then return {3, s.lu - now} end
if s.m == false or s.m == nil or now >= s.e then
  save(window, lockout)
  return {1, 0}
end
if s.m == ARGV[1] then
  s.m = nil; s.fc = 0; s.fs = 0
  save(window, lockout)
  return {0, 0}
end
if s.fc == 0 then s.fs = now end
s.fc = s.fc + 1
if s.fc >= max then
  s.m = nil
  s.lu = now + lockout
  save(window, lockout)
  return {2, 0}
end
save(window, lockout)
return {2, max - s.fc}
"#
    };
}

/// DISCARD: KEYS[1] address; ARGV mac. Deletes the code if it is still this one.
const DISCARD_SRC: &str = r#"
if redis.call('HGET', KEYS[1], 'm') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'm', 'e')
  if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
end
return 0
"#;

/// IP_TAKE: KEYS[1] ip counter; ARGV limit, window_ms. Returns {0} or {1, wait}.
const IP_TAKE_SRC: &str = r#"
local c = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if c == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
if c > tonumber(ARGV[1]) then return {1, ttl} end
return {0, 0}
"#;

/// SESSION_CREATE: KEYS[1] session, KEYS[2] unused; ARGV subject key, refresh jti,
/// expires_at (s), user agent, ip.
macro_rules! lua_session_create_body {
    () => {
        r#"
local secs = string.format('%d', math.floor(now / 1000))
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'sk', ARGV[1], 'cj', ARGV[2], 'ca', secs, 'ra', secs)
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'ua', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'ip', ARGV[5]) end
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return 0
"#
    };
}

/// INDEX_ADD: KEYS[1] subject index; ARGV sid, expires_at (s).
const INDEX_ADD_SRC: &str = r#"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
else
  redis.call('EXPIREAT', KEYS[1], ARGV[2], 'GT')
end
return 0
"#;

/// ROTATE: KEYS[1] session; ARGV presented jti, new jti, new expires_at (s).
/// Returns 0 rotated, 1 reused (session deleted), 2 unknown.
macro_rules! lua_rotate_body {
    () => {
        r#"
local cj = redis.call('HGET', KEYS[1], 'cj')
if not cj then return 2 end
if cj ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'cj', ARGV[2], 'ra', string.format('%d', math.floor(now / 1000)))
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return 0
"#
    };
}

/// CHECK: KEYS[1] session, KEYS[2] revoked jti. Returns 1 active, 0 revoked.
const CHECK_SRC: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('EXISTS', KEYS[1])
"#;

/// REVOKE_ACCESS: KEYS[1] session (unused but names the slot), KEYS[2] revoked jti;
/// ARGV expires_at (s). Only while the token could still be valid.
macro_rules! lua_revoke_access_body {
    () => {
        r#"
local exp = tonumber(ARGV[1])
if exp * 1000 > now then redis.call('SET', KEYS[2], '1', 'EXAT', ARGV[1]) end
return 0
"#
    };
}

/// END_SESSION: KEYS[1] session. Returns 1 if it existed and was live.
const END_SESSION_SRC: &str = "return redis.call('DEL', KEYS[1])\n";

/// INDEX_TAKE: KEYS[1] subject index. Returns its members and deletes it.
const INDEX_TAKE_SRC: &str = r#"
local m = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return m
"#;

/// INDEX_LIST: KEYS[1] subject index. Returns its members.
const INDEX_LIST_SRC: &str = "return redis.call('SMEMBERS', KEYS[1])\n";

/// INDEX_PRUNE: KEYS[1] subject index; ARGV sids to remove.
const INDEX_PRUNE_SRC: &str = r#"
if #ARGV > 0 then redis.call('SREM', KEYS[1], unpack(ARGV)) end
return 0
"#;

/// SESSION_GET: KEYS[1] session. Returns {ca, ra, ttl_s, ua, ip} or nil.
const SESSION_GET_SRC: &str = r#"
local h = redis.call('HMGET', KEYS[1], 'cj', 'ca', 'ra', 'ua', 'ip')
if not h[1] then return false end
return {h[2], h[3], redis.call('TTL', KEYS[1]), h[4] or '', h[5] or ''}
"#;

macro_rules! scripts {
    ($($(#[$doc:meta])* $name:ident = $id:expr, $label:expr, $src:expr;)*) => {
        $( $(#[$doc])* pub const $name: Script = Script { id: $id, name: $label, source: $src }; )*
        /// Every script, indexed by [`Script::id`].
        pub const SCRIPTS: &[Script] = &[$($name),*];
    };
}

scripts! {
    /// Check limits and lockout, store a code.
    ISSUE = 0, "issue", concat!(lua_now!(), lua_address_prelude!(), lua_issue_body!());
    /// Check lockout, compare, consume or count.
    VERIFY = 1, "verify", concat!(lua_now!(), lua_address_prelude!(), lua_verify_body!());
    /// Delete an unsent code.
    DISCARD = 2, "discard", DISCARD_SRC;
    /// Count a request against an IP bucket.
    IP_TAKE = 3, "ip_take", IP_TAKE_SRC;
    /// Record a session.
    SESSION_CREATE = 4, "session_create", concat!(lua_now!(), lua_session_create_body!());
    /// Add a session to its subject's index.
    INDEX_ADD = 5, "index_add", INDEX_ADD_SRC;
    /// Rotate a refresh token, detecting reuse.
    ROTATE = 6, "rotate", concat!(lua_now!(), lua_rotate_body!());
    /// The access check.
    CHECK = 7, "check", CHECK_SRC;
    /// Revoke one access token.
    REVOKE_ACCESS = 8, "revoke_access", concat!(lua_now!(), lua_revoke_access_body!());
    /// End a session.
    END_SESSION = 9, "end_session", END_SESSION_SRC;
    /// Take (read and delete) a subject's index.
    INDEX_TAKE = 10, "index_take", INDEX_TAKE_SRC;
    /// Read a subject's index.
    INDEX_LIST = 11, "index_list", INDEX_LIST_SRC;
    /// Drop ended sessions from an index.
    INDEX_PRUNE = 12, "index_prune", INDEX_PRUNE_SRC;
    /// Read a session for listing.
    SESSION_GET = 13, "session_get", SESSION_GET_SRC;
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
        Self::new(&c.otp_key_prefix, &c.blacklist_key_prefix)
    }

    /// The hash of one address.
    pub fn address(&self, a: &AddressKey) -> String {
        format!("{}{{{}}}", self.otp_prefix, a.as_str())
    }

    /// The request counter of one IP bucket.
    pub fn ip(&self, ip: &crate::code::IpKey) -> String {
        format!("{}ip:{{{}}}", self.otp_prefix, ip.as_str())
    }

    /// A session.
    pub fn session(&self, sid: &str) -> String {
        format!("{}{{{sid}}}", self.blacklist_prefix)
    }

    /// A revoked access token of a session (same slot as the session).
    pub fn revoked(&self, sid: &str, jti: &str) -> String {
        format!("{}{{{sid}}}:{jti}", self.blacklist_prefix)
    }

    /// A subject's session index.
    pub fn index(&self, subject_key: &str) -> String {
        format!("{}u:{{{subject_key}}}", self.blacklist_prefix)
    }
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
}

impl<R: ScriptRunner> ScriptedStore<R> {
    /// A store running its scripts on `runner`, with key names from `keys`.
    pub fn new(runner: R, keys: KeyLayout) -> ScriptedStore<R> {
        ScriptedStore { runner, keys }
    }

    /// The script runner (the backend's client).
    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// The key layout.
    pub fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    async fn end_sessions(&self, sids: &[String]) -> Result<u32, StoreError> {
        let keys: Vec<String> = sids.iter().map(|s| self.keys.session(s)).collect();
        // Different slots: one call each, all in flight together.
        let calls = keys
            .iter()
            .map(|k| async move { self.runner.run(&END_SESSION, &[k.as_str()], &[]).await });
        let mut ended = 0;
        for r in join_all(calls).await {
            ended += u32::from(r?.int()? > 0);
        }
        Ok(ended)
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

#[async_trait]
impl<R: ScriptRunner> OtpStore for ScriptedStore<R> {
    async fn issue(&self, req: &IssueRequest) -> Result<IssueOutcome, StoreError> {
        let l = &req.limits;
        if let Some(ip) = &req.ip {
            // The IP counter lives in its own slot: its own call, before the address's.
            let key = self.keys.ip(ip);
            let r = self
                .runner
                .run(
                    &IP_TAKE,
                    &[&key],
                    &[
                        l.per_ip.to_string().as_bytes(),
                        ms(l.request_window).as_bytes(),
                    ],
                )
                .await?;
            if let (1, v) = pair(&r)? {
                return Ok(IssueOutcome::IpLimited {
                    retry_after: wait(v),
                });
            }
        }
        let key = self.keys.address(&req.address);
        let r = self
            .runner
            .run(
                &ISSUE,
                &[&key],
                &[
                    &req.code_mac.0,
                    ms(req.code_ttl).as_bytes(),
                    l.per_address.to_string().as_bytes(),
                    ms(l.request_window).as_bytes(),
                    ms(l.lockout).as_bytes(),
                ],
            )
            .await?;
        Ok(match pair(&r)? {
            (0, _) => IssueOutcome::Issued,
            (1, v) => IssueOutcome::AddressLimited {
                retry_after: wait(v),
            },
            (3, v) => IssueOutcome::LockedOut {
                retry_after: wait(v),
            },
            _ => return Err(unexpected(&r)),
        })
    }

    async fn verify(&self, req: &VerifyRequest) -> Result<VerifyOutcome, StoreError> {
        let l = &req.limits;
        let key = self.keys.address(&req.address);
        let r = self
            .runner
            .run(
                &VERIFY,
                &[&key],
                &[
                    &req.code_mac.0,
                    l.max_attempts.to_string().as_bytes(),
                    ms(l.request_window).as_bytes(),
                    ms(l.lockout).as_bytes(),
                ],
            )
            .await?;
        Ok(match pair(&r)? {
            (0, _) => VerifyOutcome::Verified,
            (1, _) => VerifyOutcome::NoCode,
            (2, left) => VerifyOutcome::Mismatch {
                attempts_left: u32::try_from(left).unwrap_or(0),
            },
            (3, v) => VerifyOutcome::LockedOut {
                retry_after: wait(v),
            },
            _ => return Err(unexpected(&r)),
        })
    }

    async fn discard(&self, address: &AddressKey, code_mac: &CodeMac) -> Result<(), StoreError> {
        let key = self.keys.address(address);
        self.runner.run(&DISCARD, &[&key], &[&code_mac.0]).await?;
        Ok(())
    }
}

#[async_trait]
impl<R: ScriptRunner> TokenBlacklist for ScriptedStore<R> {
    async fn create_session(&self, s: &NewSession) -> Result<(), StoreError> {
        let session = self.keys.session(&s.sid);
        let index = self.keys.index(&s.subject_key);
        let exp = s.expires_at.to_string();
        // Two slots, two calls, sent together: one round trip on a multiplexed connection.
        let create_keys = [session.as_str()];
        let create_args = [
            s.subject_key.as_bytes(),
            s.refresh_jti.as_bytes(),
            exp.as_bytes(),
            s.user_agent.as_deref().unwrap_or("").as_bytes(),
            s.ip.as_deref().unwrap_or("").as_bytes(),
        ];
        let add_keys = [index.as_str()];
        let add_args = [s.sid.as_bytes(), exp.as_bytes()];
        let create = self.runner.run(&SESSION_CREATE, &create_keys, &create_args);
        let add = self.runner.run(&INDEX_ADD, &add_keys, &add_args);
        let (a, b) = join2(create, add).await;
        a?;
        b?;
        Ok(())
    }

    async fn rotate_refresh(
        &self,
        sid: &str,
        presented_jti: &str,
        new_jti: &str,
        new_expires_at: u64,
    ) -> Result<RotateOutcome, StoreError> {
        let key = self.keys.session(sid);
        let r = self
            .runner
            .run(
                &ROTATE,
                &[&key],
                &[
                    presented_jti.as_bytes(),
                    new_jti.as_bytes(),
                    new_expires_at.to_string().as_bytes(),
                ],
            )
            .await?;
        Ok(match r.int()? {
            0 => RotateOutcome::Rotated,
            1 => RotateOutcome::Reused,
            2 => RotateOutcome::Unknown,
            _ => return Err(unexpected(&r)),
        })
    }

    async fn check_access(&self, sid: &str, jti: &str) -> Result<AccessStatus, StoreError> {
        let session = self.keys.session(sid);
        let revoked = self.keys.revoked(sid, jti);
        let r = self.runner.run(&CHECK, &[&session, &revoked], &[]).await?;
        Ok(if r.int()? == 1 {
            AccessStatus::Active
        } else {
            AccessStatus::Revoked
        })
    }

    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let access = revocation.access.as_ref().map(|a| {
            (
                self.keys.session(&a.sid),
                self.keys.revoked(&a.sid, &a.jti),
                a.expires_at.to_string(),
            )
        });
        let revoke_access = async {
            match &access {
                Some((s, r, exp)) => self
                    .runner
                    .run(&REVOKE_ACCESS, &[s, r], &[exp.as_bytes()])
                    .await
                    .map(|_| ()),
                None => Ok(()),
            }
        };
        let (a, b) = join2(revoke_access, self.end_sessions(&revocation.sessions)).await;
        a?;
        b?;
        Ok(())
    }

    async fn revoke_all(&self, subject_key: &str) -> Result<u32, StoreError> {
        let index = self.keys.index(subject_key);
        let sids = strings(&self.runner.run(&INDEX_TAKE, &[&index], &[]).await?)?;
        self.end_sessions(&sids).await
    }

    async fn list_sessions(&self, subject_key: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let index = self.keys.index(subject_key);
        let sids = strings(&self.runner.run(&INDEX_LIST, &[&index], &[]).await?)?;
        let keys: Vec<String> = sids.iter().map(|s| self.keys.session(s)).collect();
        let replies = join_all(
            keys.iter()
                .map(|k| async move { self.runner.run(&SESSION_GET, &[k.as_str()], &[]).await }),
        )
        .await;
        let now = crate::token::now_secs();
        let mut out = Vec::new();
        let mut gone = Vec::new();
        for (sid, r) in sids.into_iter().zip(replies) {
            let r = r?;
            let Reply::Array(f) = &r else {
                gone.push(sid);
                continue;
            };
            let num = |i: usize| f.get(i).and_then(|v| v.int().ok()).unwrap_or(0).max(0) as u64;
            let text = |i: usize| f.get(i).and_then(Reply::string).filter(|s| !s.is_empty());
            out.push(SessionInfo {
                sid,
                created_at: num(0),
                refreshed_at: num(1),
                expires_at: now + num(2),
                user_agent: text(3),
                ip: text(4),
            });
        }
        if !gone.is_empty() {
            let args: Vec<&[u8]> = gone.iter().map(|s| s.as_bytes()).collect();
            self.runner.run(&INDEX_PRUNE, &[&index], &args).await?;
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.sid.cmp(&b.sid)));
        Ok(out)
    }
}

async fn join2<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none()
            && let std::task::Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let std::task::Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    match (ra, rb) {
        (Some(a), Some(b)) => (a, b),
        _ => unreachable!("both futures completed"),
    }
}
