//! The examples' user directory in SQLite (through sqlx): each address's stable user id
//! (the token subject), email changes, and the administrators. One database file is shared
//! by every instance on the machine and survives restarts (`APP_USERS_DB`); a private
//! in-memory database serves tests.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use otp_core::hooks::{Email, EmailChange};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::OnceCell;

/// The default of `APP_USERS_DB`: a file in the working directory.
pub const DEFAULT_USERS_DB: &str = "example-users.sqlite3";

/// How long a connection waits for a lock held by another instance.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    id    TEXT    NOT NULL PRIMARY KEY,      -- the token subject, never reused
    email TEXT    NOT NULL UNIQUE,           -- the normalized address
    admin INTEGER NOT NULL DEFAULT 0         -- the `admin` role
) STRICT;
";

/// Users by address: a stable id each, moved by an email change; administrators.
///
/// Every operation is one statement or one transaction, so instances sharing the file
/// agree: two first logins of one address at once (on two instances) get one id.
#[derive(Debug, Clone)]
pub struct UserDirectory {
    pool: SqlitePool,
    /// The schema and the administrators, written once before the first use.
    ready: Arc<OnceCell<()>>,
    admins: Arc<Vec<String>>,
}

impl UserDirectory {
    /// The directory in the SQLite database at `path` (created if missing; `:memory:` for
    /// a private in-memory one), with `admins` (normalized addresses) as administrators.
    /// Nothing is opened until the first use ([`UserDirectory::open`] opens at once).
    pub fn lazy(path: &str, admins: Vec<String>) -> Result<UserDirectory, sqlx::Error> {
        let memory = path == ":memory:";
        let options = if memory {
            SqliteConnectOptions::from_str("sqlite::memory:")?
        } else {
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                // Readers do not wait for the writer; another instance's writes wait at
                // most the busy timeout.
                .journal_mode(SqliteJournalMode::Wal)
        }
        .busy_timeout(BUSY_TIMEOUT);
        let mut pool = SqlitePoolOptions::new().max_connections(if memory { 1 } else { 4 });
        if memory {
            // A recycled connection would lose the in-memory database.
            pool = pool
                .idle_timeout(None)
                .max_lifetime(None)
                .min_connections(1);
        }
        Ok(UserDirectory {
            pool: pool.connect_lazy_with(options),
            ready: Arc::default(),
            admins: Arc::new(admins),
        })
    }

    /// [`UserDirectory::lazy`], then opened: a database that cannot be opened or written is
    /// an error now rather than at the first login.
    pub async fn open(path: &str, admins: Vec<String>) -> Result<UserDirectory, sqlx::Error> {
        let d = Self::lazy(path, admins)?;
        // Instances starting together contend for the file's first write (the switch to
        // WAL, the schema): SQLite may answer "locked" at once rather than wait.
        for _ in 0..50 {
            match d.init().await {
                Err(e) if is_busy(&e) => tokio::time::sleep(Duration::from_millis(100)).await,
                other => return other.map(|()| d),
            }
        }
        d.init().await.map(|()| d)
    }

    /// The schema, and the administrators' rows with the role (new ids for addresses
    /// that never signed in).
    async fn init(&self) -> Result<(), sqlx::Error> {
        self.ready
            .get_or_try_init(|| async {
                sqlx::raw_sql(SCHEMA).execute(&self.pool).await?;
                for email in self.admins.iter() {
                    let id = new_id();
                    sqlx::query(
                        "INSERT INTO users (id, email, admin) VALUES (?1, ?2, 1)
                         ON CONFLICT (email) DO UPDATE SET admin = 1",
                    )
                    .bind(&id)
                    .bind(email)
                    .execute(&self.pool)
                    .await?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// The user id of `email`, created on first use. Two instances creating it at once
    /// agree: the first insert wins and both read it.
    pub async fn subject(&self, email: &Email) -> Result<String, sqlx::Error> {
        self.init().await?;
        let row = sqlx::query(
            "INSERT INTO users (id, email) VALUES (?1, ?2)
             ON CONFLICT (email) DO UPDATE SET email = excluded.email
             RETURNING id",
        )
        .bind(new_id())
        .bind(email.as_str())
        .fetch_one(&self.pool)
        .await?;
        row.try_get("id")
    }

    /// The user id of `email`, if it has one.
    pub async fn user_of(&self, email: &Email) -> Result<Option<String>, sqlx::Error> {
        self.init().await?;
        let row = sqlx::query("SELECT id FROM users WHERE email = ?1")
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("id")).transpose()
    }

    /// Whether the user `subject` has the `admin` role.
    pub async fn is_admin(&self, subject: &str) -> Result<bool, sqlx::Error> {
        self.init().await?;
        let row = sqlx::query("SELECT admin FROM users WHERE id = ?1")
            .bind(subject)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>("admin")? != 0,
            None => false,
        })
    }

    /// Moves the user `subject` from `old` to `new`, in one transaction: refused when `new`
    /// is another user's, or when `old` is no longer the user's (two changes racing);
    /// done again (the same answer) when it is already done.
    pub async fn change_email(
        &self,
        subject: &str,
        old: &Email,
        new: &Email,
    ) -> Result<EmailChange, sqlx::Error> {
        self.init().await?;
        let mut tx: Transaction<'_, Sqlite> = self.pool.begin().await?;
        // Take the write lock first, so the reads below see the latest state.
        sqlx::query("UPDATE users SET email = email WHERE id = ?1")
            .bind(subject)
            .execute(&mut *tx)
            .await?;
        let owner = |email: &Email| {
            sqlx::query("SELECT id FROM users WHERE email = ?1").bind(email.as_str().to_owned())
        };
        let new_owner: Option<String> = (owner(new).fetch_optional(&mut *tx).await?)
            .map(|r| r.try_get("id"))
            .transpose()?;
        match new_owner.as_deref() {
            Some(id) if id == subject => return Ok(EmailChange::Changed),
            Some(_) => return Ok(EmailChange::Refused),
            None => {}
        }
        let moved = sqlx::query("UPDATE users SET email = ?1 WHERE id = ?2 AND email = ?3")
            .bind(new.as_str())
            .bind(subject)
            .bind(old.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(if moved == 1 {
            EmailChange::Changed
        } else {
            EmailChange::Refused
        })
    }
}

/// Whether `e` is SQLite's "busy" or "locked".
fn is_busy(e: &sqlx::Error) -> bool {
    // The primary code (the low byte of an extended one: SQLITE_BUSY_SNAPSHOT is 517).
    let primary = |d: &dyn sqlx::error::DatabaseError| {
        d.code()
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6))
    };
    match e {
        sqlx::Error::Database(d) => primary(d.as_ref()),
        other => {
            let text = other.to_string().to_ascii_lowercase();
            text.contains("database is locked") || text.contains("busy")
        }
    }
}

/// A new user id: `user_` and 64 random bits in hex.
fn new_id() -> String {
    format!("user_{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Two directories on one file (two instances), forty first logins of one address at
    /// once: one id. The administrator's role and an email change seen by the other.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn instances_on_one_file_agree() {
        let dir = std::env::temp_dir().join(format!("users-{}", new_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.sqlite3").to_string_lossy().into_owned();
        let admins = vec!["boss@example.com".to_owned()];
        // Opened at once, as instances starting together do.
        let (a, b) = tokio::join!(
            UserDirectory::open(&path, admins.clone()),
            UserDirectory::open(&path, admins)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let email = Email::parse("racer@example.com").unwrap();
        let mut tasks = Vec::new();
        for i in 0..40 {
            let d = if i % 2 == 0 { a.clone() } else { b.clone() };
            let email = email.clone();
            tasks.push(tokio::spawn(
                async move { d.subject(&email).await.unwrap() },
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for t in tasks {
            ids.insert(t.await.unwrap());
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
        let id = ids.into_iter().next().unwrap();
        assert!(!a.is_admin(&id).await.unwrap());
        let boss = b
            .subject(&Email::parse("boss@example.com").unwrap())
            .await
            .unwrap();
        assert!(a.is_admin(&boss).await.unwrap());
        // An email change on one is seen by the other; a taken address is refused.
        let new = Email::parse("racer2@example.com").unwrap();
        assert_eq!(
            a.change_email(&id, &email, &new).await.unwrap(),
            EmailChange::Changed
        );
        assert_eq!(b.user_of(&new).await.unwrap(), Some(id.clone()));
        assert_eq!(b.user_of(&email).await.unwrap(), None);
        assert_eq!(
            b.change_email(&id, &email, &new).await.unwrap(),
            EmailChange::Changed,
            "again"
        );
        let boss_email = Email::parse("boss@example.com").unwrap();
        assert_eq!(
            b.change_email(&id, &new, &boss_email).await.unwrap(),
            EmailChange::Refused
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
