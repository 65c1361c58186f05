//! The Redis store logic, written once: key layout, Lua scripts, and [`OtpStore`] +
//! [`TokenBlacklist`] on top of any client that can run a script ([`ScriptRunner`]).
//!
//! Backends (`otp-redis` on the `redis` crate, `otp-fred` on `fred`) only implement
//! [`ScriptRunner`]: EVALSHA with a reload on NOSCRIPT, timeouts, error classification.
//! Every operation is one call touching one cluster slot, so it is atomic and one round
//! trip on a single server and on a cluster alike: a script, except the access check of
//! protected requests, which is one plain `EXISTS`. (`request-otp` counts the client's IP
//! bucket in its own slot: on a cluster that is a second call; on a single server both go
//! in one script.) Time comes from Redis (`TIME`
//! inside each script), so every app instance agrees on it.
//!
//! Keys (prefixes from `OTP_KEY_PREFIX` and `BLACKLIST_KEY_PREFIX`; hash tags in braces):
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `otp_{<address key>}` | hash | code MAC `m`, its expiry `e`, the minute/hour/day request windows packed in `w`, failures `fc`/`fs`, lockout `lu`, last call `n` | when the last of those ends (the day window: a day) |
//! | `otp_ip:{<ip bucket>}` | string | requests in the current minute | with the window |
//! | `otp_vf:{<ip bucket>}` | string | failed verifications in the current hour | with the window |
//! | `<first key>:fence` | string | written after a durable script when replicas must acknowledge | a second |
//! | `blacklist_{<subject key>}:s:<sid>` | hash | session: subject key `sk`, current refresh `jti` `cj`, its parent `pj` and rotation time `rt`, times `ca`/`ra`, user agent, IP | with the session |
//! | `blacklist_{<subject key>}:j:<jti>` | string | a revoked access token | with the token |
//! | `blacklist_{<subject key>}:u` | sorted set | the subject's session ids, scored by last refresh (ms) | with its longest session |
//!
//! A session id starts with its subject key ([`crate::store::new_session_id`]), so a
//! subject's sessions, revocations and index share one slot: creating, rotating, ending
//! and listing sessions are each one single-slot script.
//!
//! No key or value holds a plain address or code: addresses and subjects appear as keyed
//! hashes, codes as truncated HMACs. Fields that are zero are not stored, which keeps a
//! pending login at one small hash.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;

use crate::code::{AddressKey, CodeMac};
use crate::store::{
    AccessStatus, AddressLimit, HOUR, IssueOutcome, IssueRequest, Login, NewSession, OtpStore,
    Revocation, RotateOutcome, Rotation, SessionInfo, StoreError, TokenBlacklist, VerifyOutcome,
    VerifyRequest, same_store, session_subject_key, verify_then_open,
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
    /// The script's reply out of the replies of `EVAL` + `WAIT`
    /// ([`ScriptRunner::run_replicated`]): an error when `WAIT` counted fewer than
    /// `replicas` acknowledgements.
    pub fn replicated(replies: Vec<Reply>, replicas: u32) -> Result<Reply, StoreError> {
        let [reply, _fence, acked] = <[Reply; 3]>::try_from(replies).map_err(|r| {
            StoreError::Backend(format!("a script and WAIT gave {} replies", r.len()))
        })?;
        let acked = acked.int()?;
        if acked >= i64::from(replicas) {
            Ok(reply)
        } else {
            Err(StoreError::Unavailable(format!(
                "the write was acknowledged by {acked} of the {replicas} replicas \
                 OTP_AUTH_REDIS_MIN_REPLICAS_ACK requires"
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
    StoreError::Backend(format!("unexpected reply from a store script: {r:?}"))
}

/// Runs a script: the one thing a Redis backend has to provide.
///
/// Implementations use EVALSHA and load the script on NOSCRIPT, bound every call by a
/// timeout, and map connection failures and timeouts to [`StoreError::Unavailable`].
#[async_trait]
pub trait ScriptRunner: Debug + Send + Sync + 'static {
    /// Runs `script` with `keys` (all in one cluster slot, unless
    /// [`ScriptRunner::single_node`]) and `args`.
    async fn run(
        &self,
        script: &Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<Reply, StoreError>;

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
        script: &Script,
        _keys: &[&str],
        _args: &[&[u8]],
        _replicas: u32,
        _timeout: Duration,
    ) -> Result<Reply, StoreError> {
        Err(StoreError::Backend(format!(
            "this store runner cannot wait for replicas (script {})",
            script.name
        )))
    }

    /// `EXISTS keys…` (all in one slot): how many of `keys` exist, a key named twice
    /// counted twice. The access check of every protected request is this one command.
    /// The default runs it as a script; backends send the plain command, which is cheaper
    /// for Redis.
    async fn exists(&self, keys: &[&str]) -> Result<i64, StoreError> {
        self.run(&EXISTS, keys, &[]).await?.int()
    }
}

/// Reads Redis' clock into `now` (milliseconds).
macro_rules! lua_now {
    () => {
        "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    };
}

/// Reads the address hash, with the shared helpers of ISSUE and VERIFY.
///
/// Fields: code MAC `m` and its expiry `e` (ms); `w`, the minute, hour and day request
/// windows packed as little-endian (start ms as a double, count as a u32) × 3, which keeps
/// a pending login small; failures `fc` since `fs`; lockout end `lu`; `n`, the last call
/// that changed the hash (its 8-byte id and `i`, `v` or `m` for issued, verified,
/// mismatch), so that the same call resent is answered again without counting twice. Zero
/// fields are not stored.
macro_rules! lua_address_prelude {
    () => {
        r#"
local HOUR, DAY = 3600000, 86400000
local F = {'m', 'e', 'w', 'fc', 'fs', 'lu', 'n'}
local h = redis.call('HMGET', KEYS[1], unpack(F))
local exists = false
for i = 1, #F do if h[i] then exists = true end end
local s = { m = h[1], e = tonumber(h[2]) or 0, rs = 0, rc = 0, hs = 0, hc = 0, ds = 0, dc = 0,
            fc = tonumber(h[4]) or 0, fs = tonumber(h[5]) or 0, lu = tonumber(h[6]) or 0, n = h[7] }
if h[3] and #h[3] == 36 then
  s.rs, s.rc, s.hs, s.hc, s.ds, s.dc = struct.unpack('<dI4dI4dI4', h[3])
end
local function expire_failures(lockout)
  if s.lu > 0 and now >= s.lu then s.lu = 0; s.fc = 0 end
  if s.fc > 0 and now >= s.fs + lockout then s.fc = 0 end
  if s.fc == 0 then s.fs = 0 end
end
-- The wait until a window ends when its count has reached the limit, else nil.
local function full(start, count, length, limit)
  if count == 0 or now >= start + length then return nil end
  if count >= limit then return start + length - now end
  return nil
end
local function counted(start, count, length)
  if count == 0 or now >= start + length then return now, 1 end
  return start, count + 1
end
local function save(window, lockout)
  if not s.m or now >= s.e then s.m = nil; s.e = 0 end
  if s.rc > 0 and now >= s.rs + window then s.rs = 0; s.rc = 0 end
  if s.hc > 0 and now >= s.hs + HOUR then s.hs = 0; s.hc = 0 end
  if s.dc > 0 and now >= s.ds + DAY then s.ds = 0; s.dc = 0 end
  local w = nil
  if s.rc > 0 or s.hc > 0 or s.dc > 0 then
    w = struct.pack('<dI4dI4dI4', s.rs, s.rc, s.hs, s.hc, s.ds, s.dc)
  end
  local v = {s.m, s.e, w, s.fc, s.fs, s.lu, s.n}
  local set, del = {}, {}
  for i = 1, #F do
    local x = v[i]
    if x ~= nil and x ~= 0 then
      if type(x) == 'number' then x = string.format('%d', x) end
      if x ~= h[i] then set[#set + 1] = F[i]; set[#set + 1] = x end
    elseif h[i] then
      del[#del + 1] = F[i]
    end
  end
  local live = s.e
  if s.rc > 0 then live = math.max(live, s.rs + window) end
  if s.hc > 0 then live = math.max(live, s.hs + HOUR) end
  if s.dc > 0 then live = math.max(live, s.ds + DAY) end
  if s.fc > 0 then live = math.max(live, s.fs + lockout) end
  live = math.max(live, s.lu)
  if live <= now then
    if exists then redis.call('DEL', KEYS[1]) end
    return
  end
  if #del > 0 then redis.call('HDEL', KEYS[1], unpack(del)) end
  if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
  redis.call('PEXPIRE', KEYS[1], string.format('%d', live - now))
end
"#
    };
}

/// ISSUE, first part: KEYS[1] address; ARGV mac, ttl_ms, per_minute, window_ms, lockout_ms,
/// per_hour, per_day, cooldown_ms, call id (and for ISSUE_IP the IP limit). The same call
/// resent answers `{0}` again.
macro_rules! lua_issue_head {
    () => {
        r#"
local ttl, limit, window, lockout = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local per_hour, per_day, cooldown = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local call = ARGV[9] .. 'i'
if s.n == call then return {0, 0} end
"#
    };
}

/// ISSUE, second part. Returns {0} issued, {1, wait, limit} address limited (limit 1
/// minute, 2 hour, 3 day, 4 cooldown), {3, wait} locked out.
macro_rules! lua_issue_body {
    () => {
        r#"
expire_failures(lockout)
if s.lu > now then return {3, s.lu - now} end
local wait, which = 0, 0
-- The longest wait; on a tie the first limit named (as otp_core::state does).
local function consider(w, k) if w and w > wait then wait = w; which = k end end
consider(full(s.rs, s.rc, window, limit), 1)
consider(full(s.hs, s.hc, HOUR, per_hour), 2)
consider(full(s.ds, s.dc, DAY, per_day), 3)
if cooldown > 0 and s.m and now < s.e then
  local at = s.e - ttl
  if now < at + cooldown then consider(at + cooldown - now, 4) end
end
if which > 0 then return {1, wait, which} end
s.rs, s.rc = counted(s.rs, s.rc, window)
s.hs, s.hc = counted(s.hs, s.hc, HOUR)
s.ds, s.dc = counted(s.ds, s.dc, DAY)
s.m = ARGV[1]
s.e = now + ttl
s.n = call
save(window, lockout)
return {0, 0}
"#
    };
}

/// The verification step, as a function of the IP failure key (nil: no per-IP limit):
/// ARGV mac, max_attempts, window_ms, lockout_ms, call id, IP failure limit. Returns {0}
/// verified, {1} no code, {2, left} mismatch, {3, wait} locked out, {4, wait} IP limited.
macro_rules! lua_verify_fn {
    () => {
        r#"
local max, window, lockout, iplimit = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
local function verify(ipk)
  if not exists then return {1, 0} end
  if s.n == ARGV[5] .. 'v' then return {0, 0} end
  if s.n == ARGV[5] .. 'm' then return {2, math.max(max - s.fc, 0)} end
  expire_failures(lockout)
  if s.lu > now then return {3, s.lu - now} end
  if not s.m or now >= s.e then
    save(window, lockout)
    return {1, 0}
  end
  if ipk and tonumber(redis.call('GET', ipk) or '0') >= iplimit then
    return {4, math.max(redis.call('PTTL', ipk), 0)}
  end
  if s.m == ARGV[1] then
    s.m = nil; s.fc = 0; s.fs = 0; s.n = ARGV[5] .. 'v'
    save(window, lockout)
    return {0, 0}
  end
  if s.fc == 0 then s.fs = now end
  s.fc = s.fc + 1
  s.n = ARGV[5] .. 'm'
  local left = max - s.fc
  if left <= 0 then s.m = nil; s.lu = now + lockout; left = 0 end
  save(window, lockout)
  if ipk and redis.call('INCR', ipk) == 1 then redis.call('PEXPIRE', ipk, HOUR) end
  return {2, left}
end
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

/// RESTORE: KEYS[1] address; ARGV mac, ttl_ms. Makes the code pending again unless
/// another one is, forgetting the last call (so its resend is a new attempt).
macro_rules! lua_restore_body {
    () => {
        r#"
local h = redis.call('HMGET', KEYS[1], 'm', 'e')
if h[1] and now < (tonumber(h[2]) or 0) then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'm', ARGV[1], 'e', string.format('%d', now + ttl))
redis.call('HDEL', KEYS[1], 'n')
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"#
    };
}

/// Counts the request in the IP bucket KEYS[2] (ARGV[10] limit, ARGV[4] window) before the
/// address is looked at: ISSUE_IP, on a single server.
macro_rules! lua_ip_take_first {
    () => {
        r#"
local ipc = redis.call('INCR', KEYS[2])
local ipttl = redis.call('PTTL', KEYS[2])
if ipc == 1 or ipttl < 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  ipttl = tonumber(ARGV[4])
end
if ipc > tonumber(ARGV[10]) then return {2, ipttl} end
"#
    };
}

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

/// IP_FAILURES_FULL: KEYS[1] an IP's failure counter; ARGV limit. Returns {0} or {1, wait}
/// (a cluster, where the counter is in its own slot).
const IP_FAILURES_FULL_SRC: &str = r#"
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
  return {1, math.max(redis.call('PTTL', KEYS[1]), 0)}
end
return {0, 0}
"#;

/// IP_FAILURE_COUNT: KEYS[1] an IP's failure counter; ARGV window_ms. Counts one failure.
const IP_FAILURE_COUNT_SRC: &str = r#"
if redis.call('INCR', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0
"#;

/// Session creation, as a function: the session hash `sess`, its subject's index `idx`
/// (a sorted set of session ids scored by their last refresh in ms, same slot), subject key, first refresh
/// jti, expiry (s), user agent, IP, sid, most sessions. Ends the least recently
/// refreshed sessions beyond the most; returns how many. The same session again changes
/// nothing.
macro_rules! lua_session_create_fn {
    () => {
        r#"
local function create_session(sess, idx, sk, jti, exp, ua, ip, sid, most)
  if redis.call('HEXISTS', sess, 'cj') == 1 then return 0 end
  local secs = string.format('%d', math.floor(now / 1000))
  redis.call('HSET', sess, 'sk', sk, 'cj', jti, 'ca', secs, 'ra', secs)
  if ua ~= '' then redis.call('HSET', sess, 'ua', ua) end
  if ip ~= '' then redis.call('HSET', sess, 'ip', ip) end
  redis.call('EXPIREAT', sess, exp)
  redis.call('ZADD', idx, string.format('%d', now), sid)
  if redis.call('TTL', idx) == -1 then
    redis.call('EXPIREAT', idx, exp)
  else
    redis.call('EXPIREAT', idx, exp, 'GT')
  end
  if redis.call('ZCARD', idx) <= most then return 0 end
  -- Over the cap: forget ended sessions, then end the least recently refreshed.
  local prefix = string.sub(sess, 1, #sess - #sid)
  local live = {}
  for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
    if m == sid or redis.call('HEXISTS', prefix .. m, 'cj') == 1 then
      live[#live + 1] = m
    else
      redis.call('ZREM', idx, m)
    end
  end
  local over, ended = #live - most, 0
  for _, m in ipairs(live) do
    if over <= 0 then break end
    if m ~= sid then
      redis.call('DEL', prefix .. m)
      redis.call('ZREM', idx, m)
      over = over - 1
      ended = ended + 1
    end
  end
  return ended
end
"#
    };
}

/// ROTATE: KEYS[1] session, KEYS[2] subject index; ARGV presented jti, new jti, new
/// expires_at (s), sid, reuse interval (ms). Returns {0} rotated (also for the same
/// rotation resent), {1} reused (session ended), {2} unknown, {3, current jti} reissue.
macro_rules! lua_rotate_body {
    () => {
        r#"
local h = redis.call('HMGET', KEYS[1], 'cj', 'pj', 'rt')
local cj = h[1]
if not cj then return {2} end
if cj == ARGV[1] then
  local secs = string.format('%d', math.floor(now / 1000))
  redis.call('HSET', KEYS[1], 'cj', ARGV[2], 'pj', ARGV[1], 'rt', string.format('%d', now), 'ra', secs)
  redis.call('EXPIREAT', KEYS[1], ARGV[3])
  redis.call('ZADD', KEYS[2], string.format('%d', now), ARGV[4])
  redis.call('EXPIREAT', KEYS[2], ARGV[3], 'GT')
  return {0}
end
if h[2] == ARGV[1] then
  if cj == ARGV[2] then return {0} end
  local interval = tonumber(ARGV[5])
  if interval > 0 and now - (tonumber(h[3]) or 0) <= interval then
    redis.call('EXPIREAT', KEYS[1], ARGV[3], 'GT')
    redis.call('EXPIREAT', KEYS[2], ARGV[3], 'GT')
    return {3, cj}
  end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[4])
return {1}
"#
    };
}

/// END: KEYS[1] session, KEYS[2] subject index, optionally KEYS[3] a revoked jti; ARGV sid,
/// `1` to end the session (else `0`), and with KEYS[3] the token's expiry (s).
macro_rules! lua_end_body {
    () => {
        r#"
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[1])
end
if KEYS[3] and tonumber(ARGV[3]) * 1000 > now then
  redis.call('SET', KEYS[3], '1', 'EXAT', ARGV[3])
end
return 0
"#
    };
}

/// INDEX_LIST: KEYS[1] subject index. Returns its members.
const INDEX_LIST_SRC: &str = "return redis.call('ZRANGE', KEYS[1], 0, -1)\n";

/// END_ALL: KEYS[1] subject index, KEYS[2..] its sessions; ARGV their sids. Returns how
/// many sessions were live.
const END_ALL_SRC: &str = r#"
local n = 0
for i = 2, #KEYS do n = n + redis.call('DEL', KEYS[i]) end
if #ARGV > 0 then redis.call('ZREM', KEYS[1], unpack(ARGV)) end
return n
"#;

/// SESSIONS_GET: KEYS[1] subject index, KEYS[2..] its sessions; ARGV their sids. Returns
/// {sid, created, refreshed, ttl_s, ua, ip} per live session and drops ended ones from
/// the index.
const SESSIONS_GET_SRC: &str = r#"
local out, gone = {}, {}
for i = 2, #KEYS do
  local h = redis.call('HMGET', KEYS[i], 'cj', 'ca', 'ra', 'ua', 'ip')
  if h[1] then
    out[#out + 1] = {ARGV[i - 1], h[2], h[3], redis.call('TTL', KEYS[i]), h[4] or '', h[5] or ''}
  else
    gone[#gone + 1] = ARGV[i - 1]
  end
end
if #gone > 0 then redis.call('ZREM', KEYS[1], unpack(gone)) end
return out
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
    ISSUE = 0, "issue", concat!(lua_now!(), lua_address_prelude!(), lua_issue_head!(), lua_issue_body!());
    /// Check lockout (and on a single server the IP's failures), compare, consume or count:
    /// `KEYS[1]` address, optionally `KEYS[2]` the IP's failure counter.
    VERIFY = 1, "verify", concat!(lua_now!(), lua_address_prelude!(), lua_verify_fn!(), "return verify(KEYS[2])\n");
    /// Delete an unsent code.
    DISCARD = 2, "discard", DISCARD_SRC;
    /// Count a request against an IP bucket.
    IP_TAKE = 3, "ip_take", IP_TAKE_SRC;
    /// Record a session in its subject's index: `KEYS[1]` session, `KEYS[2]` index; `ARGV`
    /// subject key, refresh jti, expires_at (s), user agent, IP, sid, most sessions.
    SESSION_CREATE = 4, "session_create", concat!(lua_now!(), lua_session_create_fn!(),
        "return create_session(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7]))\n");
    /// Rotate a refresh token, detecting reuse.
    ROTATE = 5, "rotate", concat!(lua_now!(), lua_rotate_body!());
    /// End a session, revoking an access token of it.
    END = 6, "end", concat!(lua_now!(), lua_end_body!());
    /// Read a subject's index.
    INDEX_LIST = 7, "index_list", INDEX_LIST_SRC;
    /// End every session of a subject.
    END_ALL = 8, "end_all", END_ALL_SRC;
    /// Read a subject's sessions.
    SESSIONS_GET = 9, "sessions_get", SESSIONS_GET_SRC;
    /// `EXISTS` as a script, for runners without the plain command.
    EXISTS = 10, "exists", "return redis.call('EXISTS', unpack(KEYS))\n";
    /// ISSUE with the IP bucket counted first in the same call (single server only):
    /// `KEYS[1]` address, `KEYS[2]` IP bucket; `ARGV` as ISSUE, then the IP limit. Returns
    /// ISSUE's answers or `{2, wait}` when the IP is limited.
    ISSUE_IP = 11, "issue_ip", concat!(lua_now!(), lua_address_prelude!(), lua_issue_head!(), lua_ip_take_first!(), lua_issue_body!());
    /// VERIFY and, on success, the session's creation in one call (single server only):
    /// `KEYS[1]` address, `KEYS[2]` session, `KEYS[3]` index, optionally `KEYS[4]` the IP's
    /// failure counter; `ARGV` as VERIFY, then SESSION_CREATE's. Returns VERIFY's answers,
    /// with the number of sessions ended as the second value of `{0, ended}`.
    VERIFY_OPEN = 12, "verify_open", concat!(lua_now!(), lua_address_prelude!(), lua_verify_fn!(), lua_session_create_fn!(), r#"
local r = verify(KEYS[4])
if r[1] ~= 0 or s.n ~= ARGV[5] .. 'v' or h[7] == s.n then return r end
return {0, create_session(KEYS[2], KEYS[3], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], tonumber(ARGV[13]))}
"#);
    /// Make a consumed code pending again (its session could not be recorded).
    RESTORE = 13, "restore", concat!(lua_now!(), lua_restore_body!());
    /// Whether an IP has used up its failed verifications (a cluster).
    IP_FAILURES_FULL = 14, "ip_failures_full", IP_FAILURES_FULL_SRC;
    /// Count a failed verification against an IP (a cluster).
    IP_FAILURE_COUNT = 15, "ip_failure_count", IP_FAILURE_COUNT_SRC;
}

impl Script {
    /// Whether the script makes a write that must not be lost (consuming a code, a
    /// lockout, a rotation, a revocation): with `OTP_AUTH_REDIS_MIN_REPLICAS_ACK` set, it
    /// runs through [`ScriptRunner::run_replicated`].
    pub fn durable(&self) -> bool {
        [VERIFY.id, VERIFY_OPEN.id, ROTATE.id, END.id, END_ALL.id].contains(&self.id)
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

    /// The failed-verification counter of one IP bucket (same slot as its request
    /// counter).
    pub fn ip_failures(&self, ip: &crate::code::IpKey) -> String {
        format!("{}vf:{{{}}}", self.otp_prefix, ip.as_str())
    }

    /// A session, in its subject's slot.
    pub fn session(&self, sid: &str) -> String {
        format!(
            "{}{{{}}}:s:{sid}",
            self.blacklist_prefix,
            session_subject_key(sid)
        )
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
}

impl<R: ScriptRunner> ScriptedStore<R> {
    /// A store running its scripts on `runner`, with key names from `keys`.
    pub fn new(runner: R, keys: KeyLayout) -> ScriptedStore<R> {
        ScriptedStore {
            runner,
            keys,
            replicas: None,
        }
    }

    /// A store as `config` sets it up: its key prefixes and
    /// `OTP_AUTH_REDIS_MIN_REPLICAS_ACK` (waiting at most half of `OTP_AUTH_REDIS_TIMEOUT_MS`
    /// for the replicas).
    pub fn from_config(runner: R, config: &crate::Config) -> ScriptedStore<R> {
        Self::new(runner, KeyLayout::from_config(config)).with_min_replicas_ack(
            config.redis_min_replicas_ack,
            Duration::from_millis(config.redis_timeout_ms / 2),
        )
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
        match self.replicas {
            Some((n, timeout)) if script.durable() => {
                self.runner
                    .run_replicated(script, keys, args, n, timeout)
                    .await
            }
            _ => self.runner.run(script, keys, args).await,
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
        (1, _) => VerifyOutcome::NoCode,
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
}

impl VerifyArgs {
    fn new(req: &VerifyRequest) -> VerifyArgs {
        let l = &req.limits;
        VerifyArgs {
            max: l.max_attempts.to_string(),
            window: ms(l.request_window),
            lockout: ms(l.lockout),
            ip_failures: l.ip_failures.to_string(),
        }
    }

    fn argv<'a>(&'a self, req: &'a VerifyRequest) -> [&'a [u8]; 6] {
        [
            &req.code_mac.0,
            self.max.as_bytes(),
            self.window.as_bytes(),
            self.lockout.as_bytes(),
            &req.call.0,
            self.ip_failures.as_bytes(),
        ]
    }
}

/// SESSION_CREATE's arguments, in order.
struct SessionArgs {
    exp: String,
    most: String,
}

impl SessionArgs {
    fn new(s: &NewSession) -> SessionArgs {
        SessionArgs {
            exp: s.expires_at.to_string(),
            most: s.max_sessions.max(1).to_string(),
        }
    }

    fn argv<'a>(&'a self, s: &'a NewSession) -> [&'a [u8]; 7] {
        [
            s.subject_key.as_bytes(),
            s.refresh_jti.as_bytes(),
            self.exp.as_bytes(),
            s.user_agent.as_deref().unwrap_or("").as_bytes(),
            s.ip.as_deref().unwrap_or("").as_bytes(),
            s.sid.as_bytes(),
            self.most.as_bytes(),
        ]
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
        let per_ip = l.per_ip.to_string();
        let args: [&[u8]; 10] = [
            &req.code_mac.0,
            ttl.as_bytes(),
            per_address.as_bytes(),
            window.as_bytes(),
            lockout.as_bytes(),
            per_hour.as_bytes(),
            per_day.as_bytes(),
            cooldown.as_bytes(),
            &req.call.0,
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
                self.call(&ISSUE, &[&key], &args[..9]).await?
            }
            None => self.call(&ISSUE, &[&key], &args[..9]).await?,
        };
        let limit = |r: &Reply| match r.array().ok().and_then(|a| a.get(2)).map(Reply::int) {
            Some(Ok(2)) => AddressLimit::Hour,
            Some(Ok(3)) => AddressLimit::Day,
            Some(Ok(4)) => AddressLimit::Cooldown,
            _ => AddressLimit::Minute,
        };
        Ok(match pair(&r)? {
            (0, _) => IssueOutcome::Issued,
            (1, v) => IssueOutcome::AddressLimited {
                retry_after: wait(v),
                limit: limit(&r),
            },
            (2, v) => IssueOutcome::IpLimited {
                retry_after: wait(v),
            },
            (3, v) => IssueOutcome::LockedOut {
                retry_after: wait(v),
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
                if let VerifyOutcome::Mismatch { .. } = outcome {
                    self.call(&IP_FAILURE_COUNT, &[ipk], &[ms(HOUR).as_bytes()])
                        .await?;
                }
                Ok(outcome)
            }
            None => verify_outcome(&self.call(&VERIFY, &[&key], &argv).await?),
        }
    }

    async fn discard(&self, address: &AddressKey, code_mac: &CodeMac) -> Result<(), StoreError> {
        let key = self.keys.address(address);
        self.call(&DISCARD, &[&key], &[&code_mac.0]).await?;
        Ok(())
    }

    async fn restore(
        &self,
        address: &AddressKey,
        code_mac: &CodeMac,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.keys.address(address);
        self.call(&RESTORE, &[&key], &[&code_mac.0, ms(ttl).as_bytes()])
            .await?;
        Ok(())
    }

    async fn verify_and_open(
        &self,
        req: &VerifyRequest,
        session: &NewSession,
        sessions: &dyn TokenBlacklist,
    ) -> Result<Login, StoreError> {
        if !(self.runner.single_node() && same_store(self, sessions)) {
            // A cluster (the code and the session live in two slots) or sessions kept
            // elsewhere: two steps, the code restored if the second fails.
            return verify_then_open(self, req, session, sessions).await;
        }
        let key = self.keys.address(&req.address);
        let skey = self.keys.session(&session.sid);
        let index = self.keys.index_of(&session.sid);
        let ip_key = req.ip.as_ref().map(|ip| self.keys.ip_failures(ip));
        let va = VerifyArgs::new(req);
        let sa = SessionArgs::new(session);
        let mut argv: Vec<&[u8]> = Vec::with_capacity(13);
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
                    rot.sid.as_bytes(),
                    ms(rot.reuse_interval).as_bytes(),
                ],
            )
            .await?;
        let a = r.array()?;
        Ok(match a.first().map(Reply::int).transpose()? {
            Some(0) => RotateOutcome::Rotated,
            Some(1) => RotateOutcome::Reused,
            Some(2) => RotateOutcome::Unknown,
            Some(3) => RotateOutcome::Reissued {
                current_jti: a
                    .get(1)
                    .and_then(Reply::string)
                    .ok_or_else(|| unexpected(&r))?,
            },
            _ => return Err(unexpected(&r)),
        })
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
                        &[sid.as_bytes(), end, exp.as_bytes()],
                    )
                    .await
                }
                None => {
                    self.call(&END, &[&session, &index], &[sid.as_bytes(), end])
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
        let index = self.keys.index(subject_key);
        let sids = strings(&self.call(&INDEX_LIST, &[&index], &[]).await?)?;
        if sids.is_empty() {
            return Ok(0);
        }
        let sessions: Vec<String> = sids.iter().map(|s| self.keys.session(s)).collect();
        let keys: Vec<&str> = std::iter::once(index.as_str())
            .chain(sessions.iter().map(String::as_str))
            .collect();
        let args: Vec<&[u8]> = sids.iter().map(|s| s.as_bytes()).collect();
        let n = self.call(&END_ALL, &keys, &args).await?.int()?;
        Ok(u32::try_from(n).unwrap_or(0))
    }

    async fn list_sessions(&self, subject_key: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let index = self.keys.index(subject_key);
        let sids = strings(&self.call(&INDEX_LIST, &[&index], &[]).await?)?;
        if sids.is_empty() {
            return Ok(Vec::new());
        }
        let sessions: Vec<String> = sids.iter().map(|s| self.keys.session(s)).collect();
        let keys: Vec<&str> = std::iter::once(index.as_str())
            .chain(sessions.iter().map(String::as_str))
            .collect();
        let args: Vec<&[u8]> = sids.iter().map(|s| s.as_bytes()).collect();
        let r = self.call(&SESSIONS_GET, &keys, &args).await?;
        let now = crate::token::now_secs();
        let mut out = Vec::new();
        for row in r.array()? {
            let f = row.array()?;
            let num = |i: usize| f.get(i).and_then(|v| v.int().ok()).unwrap_or(0).max(0) as u64;
            let text = |i: usize| f.get(i).and_then(Reply::string).filter(|s| !s.is_empty());
            out.push(SessionInfo {
                sid: text(0).unwrap_or_default(),
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
        assert_eq!(key_slot("{}foo"), key_slot("{}foo"));
        assert_ne!(key_slot("{}foo"), key_slot("foo"));
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
            ["verify", "rotate", "end", "end_all", "verify_open"]
        );
    }
}
