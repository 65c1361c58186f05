//! A custom store for `otp-core`: [`OtpStore`] and [`TokenBlacklist`] on SQLite through
//! `sqlx`, written the way you would write one for your own database.
//!
//! ```
//! use std::sync::Arc;
//!
//! use custom_store_example::SqliteStore;
//! use otp_core::{ClientInfo, Config, OtpAuth, mailer::CapturingMailer};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // A file would be `sqlite://otp.db?mode=rwc` (`rwc`: create it if missing).
//!     let store = SqliteStore::connect("sqlite::memory:").await?;
//!
//!     let mut config = Config::default();
//!     config.tokens.secret = Some("8d3c0e2b6a4f4f6e9b1d7c5a3e2f1a0b9c8d7e6f".into());
//!     let mailer = CapturingMailer::new(); // your real mailer here
//!     let auth = OtpAuth::builder(config)
//!         .stores(store) // one value serves as both the code store and the blacklist
//!         .mailer(mailer.clone())
//!         .build()?;
//!
//!     let client = ClientInfo::default();
//!     auth.request_code("ada@example.com", &client).await?;
//!     let code = mailer.last_code("ada@example.com").ok_or("no code was mailed")?;
//!     let tokens = auth.verify_code("ada@example.com", &code, &client).await?;
//!     let user = auth.authenticate(&tokens.access_token).await?;
//!     assert_eq!(user.email, "ada@example.com");
//!     Ok(())
//! }
//! ```
//!
//! # Writing a store
//!
//! The engine calls the traits with everything a store needs: the address and the subject
//! as keyed hashes ([`AddressKey`], subject keys), the code as a MAC ([`CodeMac`], kept here
//! as a `BLOB`), and the [`Limits`] with every call, so a store
//! holds no configuration. Store only what it is given: no plain address or code ever
//! reaches it. (The IP bucket of the request limit is the client's IPv4 address or IPv6
//! /64 as text, and a session keeps the user agent and IP it is listed with.)
//!
//! Every method here follows one pattern: open a transaction, load the row(s) into
//! [`otp_core::store::policy`]'s types, let their functions decide (the same ones the in-memory
//! store calls: the reference semantics), write the row(s) back, commit. Verifying a code
//! and opening its session happen in one transaction ([`OtpStore::verify_and_open`]). Times are milliseconds since the epoch from
//! the system clock; each row carries the instant after which nothing in it matters any
//! more (`forget_at`, or a session's expiry), and expired rows are deleted at most every
//! few seconds by the calls that add rows, so the tables follow the live entries without a
//! background task. Reads treat an expired row as absent whether or not it is deleted yet.
//!
//! # Atomicity
//!
//! Each operation must be atomic: 16 concurrent verifications of the right code give one
//! success, concurrent wrong guesses never count past the cap, concurrent rotations of one
//! refresh token rotate it at most once. See [`SqliteStore::connect`] for how this store
//! gets there.
//!
//! # Proving it: the contract suite
//!
//! `otp-core` ships the suite every backend of the project passes (every outcome of every
//! operation, expiry, and atomicity under concurrency). Run it against your store from an
//! integration test, with these dev-dependencies:
//!
//! ```toml
//! [dev-dependencies]
//! otp-core = { version = "0.1", features = ["test-util"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! and a `tests/contract.rs` like this crate's:
//!
//! ```ignore
//! use std::sync::Arc;
//! use my_crate::MyStore;
//!
//! otp_core::contract::otp_store_contract!(my_otp, async {
//!     Arc::new(MyStore::connect("...").await.unwrap())
//! });
//! otp_core::contract::blacklist_contract!(my_blacklist, async {
//!     Arc::new(MyStore::connect("...").await.unwrap())
//! });
//! ```
//!
//! plus `otp_core::contract::login_contract!`, whose expression gives the same store as both halves,
//! `(Arc<dyn OtpStore>, Arc<dyn TokenBlacklist>)` (see `tests/contract.rs`). Each macro
//! expands to a module of `#[tokio::test]`s, one per case; the first two take the store as
//! an `Arc`. Attributes before the module name go on every test (such as
//! `#[cfg_attr(not(my_server), ignore = "needs MY_SERVER_URL")]` for a store whose server
//! may be absent). Then `cargo test -p your-crate`. Some cases sleep a few seconds to
//! watch entries expire.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use otp_core::store::policy::{AddressState, Recorded, RefreshState, Window, packed};
use otp_core::store::{
    AccessStatus, AddressOp, AddressStatus, CallId, HOUR, IssueOutcome, IssueRequest, Limits,
    Login, NewSession, Renewal, Revocation, RotateOutcome, Rotation, SessionAuth, SessionInfo,
    VerifyOutcome, VerifyRequest,
};
use otp_core::store::{AddressKey, CodeMac, FlowKey, OtpStore, StoreError, TokenBlacklist};
use sqlx::error::DatabaseError;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{Row, Sqlite, Transaction};

/// How often, at most, the calls that add rows also delete the expired ones.
const SWEEP_EVERY_MS: u64 = 5_000;

/// How long a call waits for SQLite's write lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The tables. Every time is in milliseconds since the epoch unless its name says `_s`.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS otp_address (
    address              TEXT    NOT NULL PRIMARY KEY, -- AddressKey: a keyed hash
    flows                BLOB    NOT NULL,             -- the pending flows (policy::packed)
    minute_start         INTEGER NOT NULL,             -- the per-address request windows
    minute_count         INTEGER NOT NULL,
    hour_start           INTEGER NOT NULL,
    hour_count           INTEGER NOT NULL,
    day_start            INTEGER NOT NULL,
    day_count            INTEGER NOT NULL,
    devices              BLOB    NOT NULL,             -- known devices' budgets (packed)
    devices_forgotten_s  INTEGER NOT NULL,             -- when known devices were forgotten
    failures             INTEGER NOT NULL,             -- failed unbound verifications
    failure_window_start INTEGER NOT NULL,
    locked_until         INTEGER NOT NULL,             -- 0: not locked out
    admin_locked_until   INTEGER NOT NULL DEFAULT 0,   -- an administrator's lock; 0: none
    last_call            BLOB,                         -- the last call's id and what it did
    forget_at            INTEGER NOT NULL              -- nothing in the row matters after it
) STRICT;
CREATE INDEX IF NOT EXISTS otp_address_forget_at ON otp_address (forget_at);

CREATE TABLE IF NOT EXISTS otp_ip (
    ip             TEXT    NOT NULL,                   -- IpKey: an IP bucket
    kind           TEXT    NOT NULL,                   -- 'requests' or 'failures'
    requests_start INTEGER NOT NULL,
    requests_count INTEGER NOT NULL,
    forget_at      INTEGER NOT NULL,
    PRIMARY KEY (ip, kind)
) STRICT;
CREATE INDEX IF NOT EXISTS otp_ip_forget_at ON otp_ip (forget_at);

CREATE TABLE IF NOT EXISTS otp_session (
    sid            TEXT    NOT NULL PRIMARY KEY,
    subject_key    TEXT    NOT NULL,                   -- a keyed hash of the subject
    refresh_jti    TEXT    NOT NULL,                   -- the current refresh token's jti
    parent_jti     TEXT,                               -- the one it replaced, and when
    rotated_at     INTEGER NOT NULL,
    touched_at     INTEGER NOT NULL,                   -- created or last rotated
    created_at_s   INTEGER NOT NULL,
    refreshed_at_s INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    user_agent     TEXT,
    ip             TEXT,
    auth           TEXT    NOT NULL                    -- the last authentication (SessionAuth)
) STRICT;
CREATE INDEX IF NOT EXISTS otp_session_subject ON otp_session (subject_key);
CREATE INDEX IF NOT EXISTS otp_session_expires_at ON otp_session (expires_at);

CREATE TABLE IF NOT EXISTS otp_revoked_access (
    sid        TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,                       -- the token's own expiry
    PRIMARY KEY (sid, jti)
) STRICT;
CREATE INDEX IF NOT EXISTS otp_revoked_access_expires_at ON otp_revoked_access (expires_at);
";

/// [`OtpStore`] and [`TokenBlacklist`] in one SQLite database. Cheap to clone; clones share
/// the connection pool.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    last_sweep: Arc<LastSweep>,
}

/// When the expired rows of each group of tables were last deleted (ms).
#[derive(Debug, Default)]
struct LastSweep {
    codes: AtomicU64,
    sessions: AtomicU64,
}

impl SqliteStore {
    /// Opens the database at `url` and creates the tables if they are missing.
    ///
    /// `url` is an sqlx SQLite URL: `sqlite::memory:` for a private in-memory database (it
    /// lives as long as the store and its clones; for tests and demos), or
    /// `sqlite://path/to/otp.db?mode=rwc` for a file, created if missing.
    ///
    /// # Atomicity
    ///
    /// The pool has a single connection, and every operation that reads before it writes
    /// runs in one transaction on it. Within the process that alone serializes the
    /// operations: a second call waits for the connection until the first has committed,
    /// so no two read-modify-write sequences interleave, which is exactly what the mutex of
    /// the in-memory store and a Lua script in Redis achieve. (It also keeps a
    /// `sqlite::memory:` database alive: the connection is never recycled.) SQLite allows
    /// one writer at a time anyway, so more connections would buy little.
    ///
    /// Transactions start with `BEGIN IMMEDIATE`, which takes the write lock before the
    /// first read, and connections wait up to a few seconds for a lock held elsewhere (the
    /// busy timeout). Neither matters for one connection; both are what keeps the
    /// operations atomic if you raise `max_connections` or open the same file from several
    /// processes. With a plain (deferred) `BEGIN` two transactions could both read the same
    /// row, and one would then fail with `SQLITE_BUSY` on its first write instead of
    /// waiting; without a busy timeout every lock conflict would be an error.
    pub async fn connect(url: &str) -> Result<SqliteStore, sqlx::Error> {
        let options = SqliteConnectOptions::from_str(url)?.busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A recycled connection would lose a `sqlite::memory:` database.
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(SqliteStore {
            pool,
            last_sweep: Arc::new(LastSweep::default()),
        })
    }

    /// The connection pool, e.g. to inspect the tables or to close the pool at shutdown.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Deletes every expired row now instead of at the next opportunity.
    pub async fn sweep(&self) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        sweep_codes(&mut tx, now).await?;
        sweep_sessions(&mut tx, now).await?;
        tx.commit().await.map_err(store_error)
    }

    /// A write transaction on the pool's connection.
    async fn begin(&self) -> Result<Tx, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)
    }
}

type Tx = Transaction<'static, Sqlite>;

/// Whether a sweep is due, claiming it if so (only one caller wins).
fn sweep_due(last: &AtomicU64, now: u64) -> bool {
    let prev = last.load(Ordering::Relaxed);
    now >= prev.saturating_add(SWEEP_EVERY_MS)
        && last
            .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

async fn sweep_codes(tx: &mut Tx, now: u64) -> Result<(), StoreError> {
    for delete in [
        "DELETE FROM otp_address WHERE forget_at <= ?1",
        "DELETE FROM otp_ip WHERE forget_at <= ?1",
    ] {
        sqlx::query(delete)
            .bind(db(now))
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

async fn sweep_sessions(tx: &mut Tx, now: u64) -> Result<(), StoreError> {
    for delete in [
        "DELETE FROM otp_session WHERE expires_at <= ?1",
        "DELETE FROM otp_revoked_access WHERE expires_at <= ?1",
    ] {
        sqlx::query(delete)
            .bind(db(now))
            .execute(&mut **tx)
            .await
            .map_err(store_error)?;
    }
    Ok(())
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// SQLite integers are signed 64-bit: clamp (a time that far out means "never").
fn db(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Unavailable: the database could not be reached or stayed locked (retrying may work).
/// Backend: anything else (a bug, a broken schema, foreign data).
fn store_error(e: sqlx::Error) -> StoreError {
    let unavailable = match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => is_busy(db.as_ref()),
        _ => false,
    };
    if unavailable {
        StoreError::unavailable(e.to_string())
    } else {
        StoreError::backend(e.to_string())
    }
}

/// `SQLITE_BUSY` or `SQLITE_LOCKED`, possibly extended: the lock was held past the busy
/// timeout.
fn is_busy(e: &dyn DatabaseError) -> bool {
    e.code()
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

fn get_u64(row: &SqliteRow, col: &str) -> Result<u64, StoreError> {
    let v: i64 = row.try_get(col).map_err(store_error)?;
    u64::try_from(v).map_err(|_| StoreError::backend(format!("negative {col} in the store: {v}")))
}

/// The refresh state of the live session `sid`, read in `tx`; `None` when there is none.
async fn refresh_state(
    tx: &mut Tx,
    sid: &str,
    now: u64,
) -> Result<Option<RefreshState>, StoreError> {
    let row = sqlx::query(
        "SELECT refresh_jti, parent_jti, rotated_at, auth FROM otp_session
         WHERE sid = ?1 AND expires_at > ?2",
    )
    .bind(sid)
    .bind(db(now))
    .fetch_optional(&mut **tx)
    .await
    .map_err(store_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let parent: Option<String> = row.try_get("parent_jti").map_err(store_error)?;
    Ok(Some(RefreshState {
        current_jti: row.try_get("refresh_jti").map_err(store_error)?,
        parent: match parent {
            Some(p) => Some((p, get_u64(&row, "rotated_at")?)),
            None => None,
        },
        auth: get_auth(&row)?,
    }))
}

fn get_auth(row: &SqliteRow) -> Result<SessionAuth, StoreError> {
    let v: String = row.try_get("auth").map_err(store_error)?;
    SessionAuth::decode(&v)
        .ok_or_else(|| StoreError::backend(format!("bad auth in the store: {v}")))
}

fn get_u32(row: &SqliteRow, col: &str) -> Result<u32, StoreError> {
    let v: i64 = row.try_get(col).map_err(store_error)?;
    u32::try_from(v).map_err(|_| StoreError::backend(format!("{col} out of range: {v}")))
}

// ---------------------------------------------------------------------------------------
// Codes: one row per address holding `otp_core::store::policy::AddressState`, whose functions make
// every decision (the same ones the in-memory store makes).

/// `last_call` as stored: the call id, then [`Recorded::encode`]'s form.
fn encode_call(c: Option<(CallId, Recorded)>) -> Option<Vec<u8>> {
    c.map(|(id, what)| [&id.0[..], &what.encode()].concat())
}

fn decode_call(v: Option<Vec<u8>>) -> Option<(CallId, Recorded)> {
    let v = v?;
    let (id, what) = v.split_at_checked(8)?;
    Some((CallId(id.try_into().ok()?), Recorded::decode(what)?))
}

fn window(row: &SqliteRow, name: &str) -> Result<Window, StoreError> {
    Ok(Window {
        start: get_u64(row, &format!("{name}_start"))?,
        count: get_u32(row, &format!("{name}_count"))?,
    })
}

async fn load_address(
    tx: &mut Tx,
    address: &AddressKey,
) -> Result<Option<AddressState>, StoreError> {
    let row = sqlx::query("SELECT * FROM otp_address WHERE address = ?1")
        .bind(address.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(store_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let blob = |col: &str| -> Result<Vec<u8>, StoreError> { row.try_get(col).map_err(store_error) };
    let flows = packed::read_flows(&blob("flows")?)
        .ok_or_else(|| StoreError::backend("unreadable flows column"))?;
    let devices = packed::read_devices(&blob("devices")?)
        .ok_or_else(|| StoreError::backend("unreadable devices column"))?;
    Ok(Some(AddressState {
        flows,
        minute: window(&row, "minute")?,
        hour: window(&row, "hour")?,
        day: window(&row, "day")?,
        devices,
        devices_forgotten_at: get_u64(&row, "devices_forgotten_s")?,
        failures: get_u32(&row, "failures")?,
        failure_window_start: get_u64(&row, "failure_window_start")?,
        locked_until: get_u64(&row, "locked_until")?,
        admin_locked_until: get_u64(&row, "admin_locked_until")?,
        last_call: decode_call(row.try_get("last_call").map_err(store_error)?),
    }))
}

async fn save_address(
    tx: &mut Tx,
    address: &AddressKey,
    e: &AddressState,
    limits: &Limits,
) -> Result<(), StoreError> {
    write_address(tx, address, e, e.forget_at(limits)).await
}

/// Writes the row, to be forgotten at `forget_at`.
async fn write_address(
    tx: &mut Tx,
    address: &AddressKey,
    e: &AddressState,
    forget_at: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO otp_address (address, flows, minute_start, minute_count,
             hour_start, hour_count, day_start, day_count, devices, devices_forgotten_s,
             failures, failure_window_start, locked_until, last_call, forget_at,
             admin_locked_until)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (address) DO UPDATE SET
             flows = excluded.flows,
             minute_start = excluded.minute_start,
             minute_count = excluded.minute_count,
             hour_start = excluded.hour_start,
             hour_count = excluded.hour_count,
             day_start = excluded.day_start,
             day_count = excluded.day_count,
             devices = excluded.devices,
             devices_forgotten_s = excluded.devices_forgotten_s,
             failures = excluded.failures,
             failure_window_start = excluded.failure_window_start,
             locked_until = excluded.locked_until,
             last_call = excluded.last_call,
             forget_at = excluded.forget_at,
             admin_locked_until = excluded.admin_locked_until",
    )
    .bind(address.as_str())
    .bind(packed::flows(&e.flows))
    .bind(db(e.minute.start))
    .bind(i64::from(e.minute.count))
    .bind(db(e.hour.start))
    .bind(i64::from(e.hour.count))
    .bind(db(e.day.start))
    .bind(i64::from(e.day.count))
    .bind(packed::devices(&e.devices))
    .bind(db(e.devices_forgotten_at))
    .bind(i64::from(e.failures))
    .bind(db(e.failure_window_start))
    .bind(db(e.locked_until))
    .bind(encode_call(e.last_call))
    .bind(db(forget_at))
    .bind(db(e.admin_locked_until))
    .execute(&mut **tx)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// The two kinds of IP window: code requests per minute, failed verifications per hour.
#[derive(Clone, Copy)]
enum IpKind {
    Requests,
    Failures,
}

impl IpKind {
    fn as_str(self) -> &'static str {
        match self {
            IpKind::Requests => "requests",
            IpKind::Failures => "failures",
        }
    }
}

async fn load_ip(tx: &mut Tx, ip: &str, kind: IpKind) -> Result<Window, StoreError> {
    let row = sqlx::query("SELECT * FROM otp_ip WHERE ip = ?1 AND kind = ?2")
        .bind(ip)
        .bind(kind.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(store_error)?;
    match row {
        None => Ok(Window::default()),
        Some(row) => window(&row, "requests"),
    }
}

async fn save_ip(
    tx: &mut Tx,
    ip: &str,
    kind: IpKind,
    w: &Window,
    length: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO otp_ip (ip, kind, requests_start, requests_count, forget_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (ip, kind) DO UPDATE SET
             requests_start = excluded.requests_start,
             requests_count = excluded.requests_count,
             forget_at = excluded.forget_at",
    )
    .bind(ip)
    .bind(kind.as_str())
    .bind(db(w.start))
    .bind(i64::from(w.count))
    .bind(db(w.live_until(length)))
    .execute(&mut **tx)
    .await
    .map_err(store_error)?;
    Ok(())
}

/// The verification inside an open transaction (shared by `verify` and `verify_and_open`).
async fn verify_in(
    tx: &mut Tx,
    req: &VerifyRequest,
    now: u64,
) -> Result<VerifyOutcome, StoreError> {
    let l = &req.limits;
    let ip_window = match &req.ip {
        Some(ip) => Some(load_ip(tx, ip.as_str(), IpKind::Failures).await?),
        None => None,
    };
    let hour = ms(HOUR);
    let ip_full = ip_window.and_then(|w| w.full(now, hour, l.ip_failures));
    let loaded = load_address(tx, &req.address).await?;
    let resent = loaded
        .as_ref()
        .is_some_and(|e| e.last_call.is_some_and(|(c, _)| c == req.call));
    if let (Some(wait), false) = (ip_full, resent) {
        // A client past its budget: nothing of the address is written.
        return Ok(VerifyOutcome::IpLimited {
            retry_after: Duration::from_millis(wait),
        });
    }
    // An address never seen gets a row: a guess counts whether or not a code is pending.
    let mut e = loaded.unwrap_or_default();
    let outcome = e.verify(req, now, ip_full);
    save_address(tx, &req.address, &e, l).await?;
    if let (true, Some(ip), Some(mut w), false) = (outcome.is_failure(), &req.ip, ip_window, resent)
    {
        w.count(now, hour);
        save_ip(tx, ip.as_str(), IpKind::Failures, &w, hour).await?;
    }
    Ok(outcome)
}

impl SqliteStore {
    /// Loads an address's row, applies `change` at the current time, and writes it back,
    /// kept until its old end or `keep`, whichever is later (one transaction).
    async fn change_address(
        &self,
        address: &AddressKey,
        change: impl FnOnce(&mut AddressState, u64),
        keep: Option<u64>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let forget_at: Option<i64> =
            sqlx::query_scalar("SELECT forget_at FROM otp_address WHERE address = ?1")
                .bind(address.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(store_error)?;
        let mut e = load_address(&mut tx, address).await?.unwrap_or_default();
        change(&mut e, now);
        let at = forget_at
            .map_or(0, |v| v.max(0) as u64)
            .max(keep.unwrap_or(0));
        if at > now {
            write_address(&mut tx, address, &e, at).await?;
        }
        tx.commit().await.map_err(store_error)
    }
}

#[async_trait::async_trait]
impl OtpStore for SqliteStore {
    async fn issue(&self, req: &IssueRequest) -> Result<IssueOutcome, StoreError> {
        let now = now_ms();
        let l = &req.limits;
        let mut tx = self.begin().await?;
        if sweep_due(&self.last_sweep.codes, now) {
            sweep_codes(&mut tx, now).await?;
        }
        let mut e = load_address(&mut tx, &req.address)
            .await?
            .unwrap_or_default();
        let resent = matches!(e.last_call, Some((c, Recorded::Issued { .. })) if c == req.call);
        // The IP bucket first: a request counts against it even when the address then
        // refuses it (as in the in-memory and Redis stores).
        if let (Some(ip), false) = (&req.ip, resent) {
            let window = ms(l.request_window);
            let mut w = load_ip(&mut tx, ip.as_str(), IpKind::Requests).await?;
            if let Some(wait) = w.full(now, window, l.per_ip) {
                tx.commit().await.map_err(store_error)?;
                return Ok(IssueOutcome::IpLimited {
                    retry_after: Duration::from_millis(wait),
                });
            }
            w.count(now, window);
            save_ip(&mut tx, ip.as_str(), IpKind::Requests, &w, window).await?;
        }
        let outcome = e.issue(req, now);
        save_address(&mut tx, &req.address, &e, l).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(outcome)
    }

    async fn verify(&self, req: &VerifyRequest) -> Result<VerifyOutcome, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let outcome = verify_in(&mut tx, req, now).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(outcome)
    }

    async fn discard(
        &self,
        address: &AddressKey,
        flow: &FlowKey,
        code_mac: &CodeMac,
    ) -> Result<(), StoreError> {
        self.change_address(address, |e, _| e.discard(flow, code_mac), None)
            .await
    }

    async fn restore(&self, req: &VerifyRequest) -> Result<(), StoreError> {
        // The row lives at least as long as the code given back.
        let keep = now_ms() + ms(req.code_ttl);
        self.change_address(&req.address, |e, now| e.restore(req, now), Some(keep))
            .await
    }

    async fn forget_devices(
        &self,
        address: &AddressKey,
        limits: &Limits,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        let mut e = load_address(&mut tx, address).await?.unwrap_or_default();
        e.forget_devices(now_ms());
        save_address(&mut tx, address, &e, limits).await?;
        tx.commit().await.map_err(store_error)
    }

    async fn administer(
        &self,
        address: &AddressKey,
        op: &AddressOp,
        limits: &Limits,
    ) -> Result<AddressStatus, StoreError> {
        let mut tx = self.begin().await?;
        let mut e = load_address(&mut tx, address).await?.unwrap_or_default();
        let status = e.administer(op, now_ms(), limits);
        if *op != AddressOp::Read {
            save_address(&mut tx, address, &e, limits).await?;
        }
        tx.commit().await.map_err(store_error)?;
        Ok(status)
    }

    /// Codes and sessions are tables of one database: a login is one transaction.
    fn opens_sessions(&self) -> bool {
        true
    }

    async fn verify_and_open(
        &self,
        req: &VerifyRequest,
        session: &NewSession,
    ) -> Result<Login, StoreError> {
        // One transaction: the code is consumed exactly when the session is recorded.
        let now = now_ms();
        let mut tx = self.begin().await?;
        let outcome = verify_in(&mut tx, req, now).await?;
        let evicted = if outcome == VerifyOutcome::Verified {
            create_session_in(&mut tx, session, now).await?
        } else {
            0
        };
        tx.commit().await.map_err(store_error)?;
        Ok(Login { outcome, evicted })
    }
}

/// Records a session (the same one again changes nothing) and ends the least recently
/// refreshed others beyond its cap; returns how many it ended.
async fn create_session_in(tx: &mut Tx, s: &NewSession, now: u64) -> Result<u32, StoreError> {
    sqlx::query(
        "INSERT INTO otp_session (sid, subject_key, refresh_jti, parent_jti, rotated_at,
             touched_at, created_at_s, refreshed_at_s, expires_at, user_agent, ip, auth)
         VALUES (?1, ?2, ?3, NULL, 0, ?8, ?4, ?4, ?5, ?6, ?7, ?9)
         ON CONFLICT (sid) DO NOTHING",
    )
    .bind(&s.sid)
    .bind(&s.subject_key)
    .bind(&s.refresh_jti)
    .bind(db(s.auth.at))
    .bind(db(s.expires_at.saturating_mul(1000)))
    .bind(s.user_agent.as_deref())
    .bind(s.ip.as_deref())
    .bind(db(now))
    .bind(s.auth.encode())
    .execute(&mut **tx)
    .await
    .map_err(store_error)?;
    // Every live session of the subject beyond the cap, least recently refreshed first;
    // the new one stays.
    let ended = sqlx::query(
        "DELETE FROM otp_session WHERE sid IN (
             SELECT sid FROM otp_session
             WHERE subject_key = ?1 AND expires_at > ?2 AND sid <> ?3
             ORDER BY touched_at DESC, rowid DESC
             LIMIT -1 OFFSET ?4)",
    )
    .bind(&s.subject_key)
    .bind(db(now))
    .bind(&s.sid)
    .bind(i64::from(s.max_sessions.max(1)) - 1)
    .execute(&mut **tx)
    .await
    .map_err(store_error)?
    .rows_affected();
    u32::try_from(ended).map_err(|_| StoreError::backend(format!("{ended} sessions ended")))
}

// ---------------------------------------------------------------------------------------
// Sessions and revocations.

#[async_trait::async_trait]
impl TokenBlacklist for SqliteStore {
    async fn create_session(&self, s: &NewSession) -> Result<u32, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        if sweep_due(&self.last_sweep.sessions, now) {
            sweep_sessions(&mut tx, now).await?;
        }
        let ended = create_session_in(&mut tx, s, now).await?;
        tx.commit().await.map_err(store_error)?;
        Ok(ended)
    }

    async fn rotate_refresh(&self, r: &Rotation) -> Result<RotateOutcome, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let Some(mut state) = refresh_state(&mut tx, &r.sid, now).await? else {
            tx.commit().await.map_err(store_error)?;
            return Ok(RotateOutcome::Unknown);
        };
        let outcome = state.rotate(r, now);
        let new_end = db(r.new_expires_at.saturating_mul(1000));
        match &outcome {
            // A spent refresh token came back: someone else may hold the chain. End the
            // session, which also refuses its access tokens.
            RotateOutcome::Reused => sqlx::query("DELETE FROM otp_session WHERE sid = ?1")
                .bind(&r.sid)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?,
            RotateOutcome::Rotated { .. } => sqlx::query(
                "UPDATE otp_session SET refresh_jti = ?2, parent_jti = ?3, rotated_at = ?4,
                     touched_at = ?4, refreshed_at_s = ?5, expires_at = ?6
                 WHERE sid = ?1",
            )
            .bind(&r.sid)
            .bind(&state.current_jti)
            .bind(state.parent.as_ref().map(|(p, _)| p.as_str()))
            .bind(db(state.parent.as_ref().map_or(0, |(_, at)| *at)))
            .bind(db(now / 1000))
            .bind(new_end)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?,
            RotateOutcome::Reissued { .. } | RotateOutcome::Unknown => sqlx::query(
                "UPDATE otp_session SET expires_at = MAX(expires_at, ?2) WHERE sid = ?1",
            )
            .bind(&r.sid)
            .bind(new_end)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?,
        };
        tx.commit().await.map_err(store_error)?;
        Ok(outcome)
    }

    async fn renew_session(&self, r: &Renewal) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let Some(mut state) = refresh_state(&mut tx, &r.sid, now).await? else {
            tx.commit().await.map_err(store_error)?;
            return Ok(false);
        };
        state.renew(r);
        sqlx::query(
            "UPDATE otp_session SET refresh_jti = ?2, parent_jti = ?3, auth = ?4,
                 expires_at = MAX(expires_at, ?5)
             WHERE sid = ?1",
        )
        .bind(&r.sid)
        .bind(&state.current_jti)
        .bind(state.parent.as_ref().map(|(p, _)| p.as_str()))
        .bind(state.auth.encode())
        .bind(db(r.expires_at.saturating_mul(1000)))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        Ok(true)
    }

    async fn check_access(&self, sid: &str, jti: &str) -> Result<AccessStatus, StoreError> {
        // One statement: a consistent read without a transaction.
        let row = sqlx::query(
            "SELECT
                 EXISTS (SELECT 1 FROM otp_revoked_access
                         WHERE sid = ?1 AND jti = ?2 AND expires_at > ?3) AS revoked,
                 EXISTS (SELECT 1 FROM otp_session WHERE sid = ?1 AND expires_at > ?3) AS live",
        )
        .bind(sid)
        .bind(jti)
        .bind(db(now_ms()))
        .fetch_one(&self.pool)
        .await
        .map_err(store_error)?;
        let revoked: bool = row.try_get("revoked").map_err(store_error)?;
        let live: bool = row.try_get("live").map_err(store_error)?;
        Ok(if revoked || !live {
            AccessStatus::Revoked
        } else {
            AccessStatus::Active
        })
    }

    async fn revoke(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        if sweep_due(&self.last_sweep.sessions, now) {
            sweep_sessions(&mut tx, now).await?;
        }
        if let Some(a) = &revocation.access {
            let exp = a.expires_at.saturating_mul(1000);
            // A token that has already expired needs no entry: its signature check fails.
            if exp > now {
                sqlx::query(
                    "INSERT INTO otp_revoked_access (sid, jti, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (sid, jti) DO UPDATE SET expires_at = excluded.expires_at",
                )
                .bind(&a.sid)
                .bind(&a.jti)
                .bind(db(exp))
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
            }
        }
        for sid in &revocation.sessions {
            sqlx::query("DELETE FROM otp_session WHERE sid = ?1")
                .bind(sid)
                .execute(&mut *tx)
                .await
                .map_err(store_error)?;
        }
        tx.commit().await.map_err(store_error)
    }

    async fn revoke_all(&self, subject_key: &str) -> Result<u32, StoreError> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        // Counts the live sessions, and ends expired ones too.
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM otp_session WHERE subject_key = ?1 AND expires_at > ?2",
        )
        .bind(subject_key)
        .bind(db(now))
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?;
        sqlx::query("DELETE FROM otp_session WHERE subject_key = ?1")
            .bind(subject_key)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        u32::try_from(live).map_err(|_| StoreError::backend(format!("session count {live}")))
    }

    async fn list_sessions(&self, subject_key: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT sid, created_at_s, refreshed_at_s, expires_at, user_agent, ip
             FROM otp_session WHERE subject_key = ?1 AND expires_at > ?2
             ORDER BY created_at_s, sid",
        )
        .bind(subject_key)
        .bind(db(now_ms()))
        .fetch_all(&self.pool)
        .await
        .map_err(store_error)?;
        rows.iter()
            .map(|row| {
                Ok(SessionInfo {
                    sid: row.try_get("sid").map_err(store_error)?,
                    created_at: get_u64(row, "created_at_s")?,
                    refreshed_at: get_u64(row, "refreshed_at_s")?,
                    expires_at: get_u64(row, "expires_at")? / 1000,
                    user_agent: row.try_get("user_agent").map_err(store_error)?,
                    ip: row.try_get("ip").map_err(store_error)?,
                })
            })
            .collect()
    }
}
