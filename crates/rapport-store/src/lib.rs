//! rapport's repositories over SQLite (the embedded default: one file, WAL) and
//! PostgreSQL (several nodes sharing one database).
//!
//! # Layout
//! - [`Store`]: opens a database from a URL, applies migrations, and carries every
//!   repository method; one module per concern: `staff`, `accounts`, `assignments`,
//!   `timeline`, `visibility`, `audit` (the audit trail), `insights` (each account's
//!   insight, kept in the transactions that write its events), `connections` (the
//!   credentials connectors run with, stored only sealed, and the lease that serialises
//!   their refresh across nodes).
//! - Every method is written once. The `with_backend!` macro expands its body for each
//!   backend, so the same code is compiled against `SqlitePool` and `PgPool` with
//!   concrete types, and the few statements that differ choose through [`Dialect`].
//!
//! # Invariants
//! - This is the only crate that knows SQL. Callers see `rapport-core` types only.
//! - Domain rules are decided by `rapport-core`; this crate loads the facts a rule
//!   needs inside the write transaction, asks core, and writes only if core agrees —
//!   so a refused change writes nothing.
//! - Instants are stored as integer microseconds (UTC) on both backends.
//! - The visibility queries implement `rapport_core::visibility` in SQL; the property
//!   tests in `tests/it/visibility.rs` prove they agree on both backends.

mod accounts;
mod assignments;
mod audit;
mod connections;
mod error;
mod health;
mod identity;
mod inbox;
mod insights;
mod keys;
mod lenient;
mod sessions;
mod sightings;
mod staff;
mod sync;
mod tasks;
mod time;
mod timeline;
mod tokens;
mod tx;
mod visibility;

pub use accounts::{AccountUpdate, SEARCH_TEXT_CHARS_MAX};
pub use audit::{
    AUDIT_DETAIL_BYTES_MAX, AUDIT_PAGE_MAX, AUDIT_TEXT_CHARS_MAX, AuditEntry, AuditQuery,
    NewAuditEntry,
};
pub use connections::{
    Connection, ConnectionId, ConnectionKey, ConnectionStatus, ConnectionTokens, GrantedTokens,
    OAuthFlow, RefreshedTokens,
};
pub use error::{Error, Result};
pub use health::{WRITE_FAILURE_MEMORY, WriteFailure};
pub use inbox::Learn;
pub use sessions::{IssuedSession, OidcSignIn, SESSION_PREFIX, SIGN_IN_LINK_PREFIX, WebSession};
pub use staff::StaffUpdate;
pub use sync::{
    CheckRecord, ConnectorState, ConnectorStatus, LastError, Lease, PageCommit, PageWrite,
    RunRecord,
};
pub use tasks::{NewTask, TASK_ASSIGNEE, TASK_DUE, TASK_STATUS};
pub use timeline::{
    FeedQuery, ROLLUP_ACCOUNTS_MAX, Reader, TIMELINE_PAGE_MAX, TimelinePage, TimelineQuery,
    UPSERT_BATCH_MAX, UpsertOutcome, UpsertSummary,
};
pub use tokens::{IssuedToken, LAST_USED_RESOLUTION_SECONDS};

use rapport_core::account::Domain;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");

/// The schema version this build migrates to: the newest migration it embeds (the
/// same on both backends).
pub fn schema_version_latest() -> i64 {
    SQLITE_MIGRATOR
        .iter()
        .map(|migration| migration.version)
        .max()
        .unwrap_or(0)
}

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;
/// How long to wait for a pooled connection before reporting the database as stuck.
const ACQUIRE_TIMEOUT_MS: u64 = 10_000;

/// Which SQL dialect a statement is written for, where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3.45+, as bundled.
    Sqlite,
    /// PostgreSQL 13+.
    Postgres,
}

impl std::fmt::Display for Dialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
        })
    }
}

impl Dialect {
    /// The statement that opens a write transaction. SQLite takes the write lock up
    /// front (`IMMEDIATE`) so two writers queue on the busy timeout instead of failing
    /// when a read transaction tries to upgrade.
    fn begin_write(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// What follows a `SELECT` of one row to hold it until the transaction ends, so
    /// writers that check-then-insert under it take turns. SQLite's `IMMEDIATE`
    /// transaction already holds the one write lock.
    fn lock_rows(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// What follows a `SELECT` of one row to keep it from changing until the
    /// transaction ends while letting other readers do the same: a writer that stamps
    /// what it reads (a connection's sharing level) on the rows it writes then cannot
    /// interleave with one changing it. SQLite's writers already take turns.
    fn share_rows(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR SHARE",
        }
    }

    /// Makes a wide feed walk the whole timeline newest first (see `Store::feed`).
    /// SQLite is told (`INDEXED BY`): it cannot know how many accounts the visibility
    /// subquery yields, and by default reads and sorts them all. PostgreSQL's planner
    /// chooses for itself from its statistics.
    fn newest_first_index(self) -> &'static str {
        match self {
            Dialect::Sqlite => " INDEXED BY timeline_by_time",
            Dialect::Postgres => "",
        }
    }

    /// A wide feed's condition that a row's account is visible. PostgreSQL would turn
    /// a plain `IN (subquery)` into a semi-join and, misjudging the recursive query's
    /// size, run it as a nested loop comparing every row with every visible account
    /// (seconds for a director's feed 10,000 events deep over 1M events). Under
    /// `IS TRUE` the subquery stays a *hashed SubPlan*: one hash lookup per row
    /// (17 ms). SQLite already builds an index for `IN (subquery)`.
    fn visible_account_filter(self) -> &'static str {
        match self {
            Dialect::Sqlite => " WHERE account_id IN (SELECT id FROM visible)",
            Dialect::Postgres => " WHERE (account_id IN (SELECT id FROM visible)) IS TRUE",
        }
    }

    /// Case-insensitive LIKE.
    fn ilike(self) -> &'static str {
        match self {
            Dialect::Sqlite => "LIKE",
            Dialect::Postgres => "ILIKE",
        }
    }
}

/// Tuning for [`Store::connect_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most pooled connections.
    pub connections_max: u32,
    /// Domains identity resolution never matches by, beyond the built-in free-mail
    /// list: typically the company's own domains.
    pub ignored_domains: Vec<Domain>,
    /// How long PostgreSQL lets a connection sit idle inside a transaction before it
    /// ends that session, releasing its locks. A node frozen mid-commit (stopped,
    /// swapped out, partitioned) would otherwise hold its connector's state row locked
    /// for as long as it is frozen, and no other node could take the connector over.
    /// Set well below the sync lease's lifetime; rapport's transactions are never idle
    /// for long.
    pub idle_in_transaction_timeout: Duration,
    /// Whether to create a missing database (a SQLite file) and bring its schema up to
    /// date. Off for read-only commands, which must never create one: they refuse a
    /// database that is missing or behind, saying how to make it.
    pub create_and_migrate: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            connections_max: 8,
            ignored_domains: Vec::new(),
            idle_in_transaction_timeout: Duration::from_secs(30),
            create_and_migrate: true,
        }
    }
}

/// A description of the open database, from [`Store::info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreInfo {
    /// Which backend.
    pub dialect: Dialect,
    /// The newest applied migration.
    pub schema_version: i64,
    /// SQLite's journal mode (`wal`).
    pub journal_mode: Option<String>,
    /// Whether SQLite enforces foreign keys.
    pub foreign_keys: Option<bool>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle on rapport's database; cheap to clone (it wraps a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// See [`StoreOptions::ignored_domains`].
    ignored_domains: Arc<[Domain]>,
    /// Whether writes are failing in the storage itself (see `health`).
    health: Arc<health::WriteHealth>,
}

/// Expands `$body` once per backend with `$pool` bound to that backend's pool and
/// `$dialect` to its [`Dialect`]: one source, two concretely-typed compilations.
macro_rules! with_backend {
    ($store:expr, |$pool:ident, $dialect:ident| $body:expr) => {
        match &$store.backend {
            $crate::Backend::Sqlite(sqlite_pool) => {
                #[allow(unused_variables)]
                let $dialect = $crate::Dialect::Sqlite;
                let $pool = sqlite_pool;
                $body
            }
            $crate::Backend::Postgres(postgres_pool) => {
                #[allow(unused_variables)]
                let $dialect = $crate::Dialect::Postgres;
                let $pool = postgres_pool;
                $body
            }
        }
    };
}
pub(crate) use with_backend;

impl Store {
    /// Opens the database at `url` (`sqlite://path.db`, `sqlite::memory:`,
    /// `postgres://...`) and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Store> {
        Store::connect_with(url, StoreOptions::default()).await
    }

    /// Opens an existing database without creating or migrating anything, for
    /// commands that only read: a missing SQLite file, or a schema this build must
    /// first migrate, is refused with what to run.
    pub async fn open_existing(url: &str) -> Result<Store> {
        Store::connect_with(
            url,
            StoreOptions {
                create_and_migrate: false,
                ..StoreOptions::default()
            },
        )
        .await
    }

    /// [`Store::connect`] with explicit tuning.
    pub async fn connect_with(url: &str, options: StoreOptions) -> Result<Store> {
        let shown = redact(url);
        let backend = if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|source| Error::InvalidUrl {
                    url: shown.clone(),
                    reason: source.to_string(),
                })?
                .create_if_missing(options.create_and_migrate)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS));
            // An in-memory database lives and dies with its one connection.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let file = connect.get_filename().to_path_buf();
            if !options.create_and_migrate && !in_memory && !file.exists() {
                return Err(Error::Connect {
                    what: format!("the SQLite database {}", file.display()),
                    reason: "it does not exist; create it with `rapport migrate --database ...` or by starting `rapport serve`".into(),
                });
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(if in_memory {
                    1
                } else {
                    options.connections_max
                })
                .min_connections(if in_memory { 1 } else { 0 })
                .idle_timeout(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(600))
                })
                .max_lifetime(if in_memory {
                    None
                } else {
                    Some(Duration::from_secs(3600))
                })
                .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
                .before_acquire(|connection, _| Box::pin(outside_transaction(connection)))
                .connect_with(connect)
                .await
                .map_err(|source| Error::Connect {
                    what: format!("the SQLite database {}", file.display()),
                    reason: format!(
                        "{}; check that its directory exists and is writable",
                        driver_reason(&source)
                    ),
                })?;
            Backend::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let idle_ms = options.idle_in_transaction_timeout.as_millis().max(1);
            let connect = PgConnectOptions::from_str(url)
                .map_err(|source| Error::InvalidUrl {
                    url: shown.clone(),
                    reason: source.to_string(),
                })?
                // Short queries only: PostgreSQL 15 JIT-compiles any plan whose cost
                // estimate is high (a feed's estimate is, though it reads one page),
                // which cost ~40 ms per feed query in the scale benchmark.
                .options([
                    ("jit", "off".to_owned()),
                    (
                        "idle_in_transaction_session_timeout",
                        format!("{idle_ms}ms"),
                    ),
                ]);
            let what = format!(
                "PostgreSQL at {}:{}{}",
                connect.get_host(),
                connect.get_port(),
                connect
                    .get_database()
                    .map(|database| format!(" (database `{database}`)"))
                    .unwrap_or_default()
            );
            // One connection first, so an unreachable server or a refused login is
            // reported as itself, once, not as a pool that timed out.
            let probe = tokio::time::timeout(
                Duration::from_millis(ACQUIRE_TIMEOUT_MS),
                sqlx::ConnectOptions::connect(&connect),
            )
            .await;
            match probe {
                Ok(Ok(connection)) => {
                    let _ = sqlx::Connection::close(connection).await;
                }
                Ok(Err(source)) => {
                    return Err(Error::Connect {
                        what,
                        reason: driver_reason(&source),
                    });
                }
                Err(_) => {
                    return Err(Error::Connect {
                        what,
                        reason: format!("no answer within {} s", ACQUIRE_TIMEOUT_MS / 1000),
                    });
                }
            }
            let pool = PgPoolOptions::new()
                .max_connections(options.connections_max)
                .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
                .before_acquire(|connection, _| Box::pin(outside_transaction(connection)))
                .connect_with(connect)
                .await
                .map_err(|source| Error::Connect {
                    what,
                    reason: driver_reason(&source),
                })?;
            Backend::Postgres(pool)
        } else {
            return Err(Error::InvalidUrl {
                url: shown,
                reason:
                    "it must start with `sqlite:` (e.g. `sqlite://rapport.db`) or `postgres://`"
                        .into(),
            });
        };
        let store = Store {
            backend,
            ignored_domains: options.ignored_domains.into(),
            health: Arc::default(),
        };
        if options.create_and_migrate {
            store.migrate().await?;
        } else {
            store.require_current_schema(&shown).await?;
        }
        Ok(store)
    }

    /// Refuses a database whose schema is not this build's, saying what to run.
    async fn require_current_schema(&self, shown: &str) -> Result<()> {
        let latest = schema_version_latest();
        let applied: std::result::Result<Option<i64>, sqlx::Error> =
            with_backend!(self, |pool, dialect| {
                sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(pool)
                    .await
            });
        match applied {
            Ok(Some(version)) if version == latest => Ok(()),
            Ok(Some(version)) if version > latest => Err(Error::SchemaTooNew(version)),
            Ok(version) => Err(Error::SchemaBehind {
                url: shown.to_owned(),
                version: version.unwrap_or(0),
                latest,
            }),
            // No migrations table: not a rapport database (yet).
            Err(sqlx::Error::Database(_)) => Err(Error::SchemaBehind {
                url: shown.to_owned(),
                version: 0,
                latest,
            }),
            Err(other) => Err(other.into()),
        }
    }

    /// Applies pending migrations. Safe to run from several nodes at once (PostgreSQL
    /// takes an advisory lock) and on every start (applied migrations are skipped, and
    /// an applied migration whose file changed is refused rather than re-run).
    pub async fn migrate(&self) -> Result<()> {
        let outcome = match &self.backend {
            Backend::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
            Backend::Postgres(pool) => POSTGRES_MIGRATOR.run(pool).await,
        };
        outcome.map_err(Error::from_migrate)?;
        self.rebuild_stale_insights().await?;
        Ok(())
    }

    /// Which backend this store talks to.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Whether the database answers and every migration this build knows is applied.
    pub async fn is_ready(&self) -> Result<bool> {
        let expected = match self.dialect() {
            Dialect::Sqlite => SQLITE_MIGRATOR.iter().count(),
            Dialect::Postgres => POSTGRES_MIGRATOR.iter().count(),
        } as i64;
        let applied: i64 = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await?
        });
        Ok(applied >= expected)
    }

    /// What an operator wants to know about the database: backend, schema version and,
    /// on SQLite, the settings rapport relies on.
    pub async fn info(&self) -> Result<StoreInfo> {
        let schema_version: Option<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await?
        });
        let (journal_mode, foreign_keys) = match &self.backend {
            Backend::Sqlite(pool) => {
                // Both pragmas are read on one connection: foreign_keys is per connection.
                let mut connection = pool.acquire().await?;
                let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&mut *connection)
                    .await?;
                let foreign_keys: bool = sqlx::query_scalar("PRAGMA foreign_keys")
                    .fetch_one(&mut *connection)
                    .await?;
                (Some(journal_mode), Some(foreign_keys))
            }
            Backend::Postgres(_) => (None, None),
        };
        Ok(StoreInfo {
            dialect: self.dialect(),
            schema_version: schema_version.unwrap_or(0),
            journal_mode,
            foreign_keys,
        })
    }

    /// Closes every pooled connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// Run before a pooled connection is handed out: one left inside a transaction (its
/// COMMIT failed, as on a full disk, and the rollback did not take) is closed instead
/// of reused, so the next write starts clean and the node recovers by itself. The ping
/// first lets a rollback queued when the failed transaction was dropped finish.
async fn outside_transaction<C: sqlx::Connection>(
    connection: &mut C,
) -> std::result::Result<bool, sqlx::Error> {
    connection.ping().await?;
    let clean = !connection.is_in_transaction();
    if !clean {
        tracing::warn!("a database connection was left inside a failed transaction; closing it");
    }
    Ok(clean)
}

/// What a driver error says, without the pool's wording around it.
fn driver_reason(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::TimedOut => "the connection timed out".into(),
            _ => io.to_string(),
        },
        sqlx::Error::Database(database) => database.message().to_owned(),
        sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
        sqlx::Error::PoolTimedOut => "no connection could be opened in time".into(),
        other => other.to_string(),
    }
}

/// The URL with any password replaced, for messages and logs.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            super::redact("postgres://rapport:hunter2@db:5432/rapport"),
            "postgres://rapport:***@db:5432/rapport"
        );
        assert_eq!(super::redact("sqlite://rapport.db"), "sqlite://rapport.db");
    }

    #[test]
    fn both_backends_have_the_same_migrations() {
        let versions = |migrator: &sqlx::migrate::Migrator| {
            migrator
                .iter()
                .map(|migration| (migration.version, migration.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            versions(&super::SQLITE_MIGRATOR),
            versions(&super::POSTGRES_MIGRATOR)
        );
        assert_eq!(
            super::schema_version_latest(),
            super::POSTGRES_MIGRATOR
                .iter()
                .map(|m| m.version)
                .max()
                .unwrap()
        );
    }
}
