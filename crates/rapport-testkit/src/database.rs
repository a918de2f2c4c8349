//! A fresh database per test, on each backend: a SQLite file in a temporary directory,
//! and a new PostgreSQL database on the server `RAPPORT_TEST_DATABASE_URL` names
//! (dropped afterwards, even when the test fails). Without that variable the PostgreSQL
//! half says it was skipped — except under `CI=true`, where that is a failure.

use rapport_store::Store;
use sqlx::Connection;
use std::future::Future;

/// The environment variable naming a PostgreSQL server for the PG half of the suite.
pub const POSTGRES_URL_VAR: &str = "RAPPORT_TEST_DATABASE_URL";

/// Generates `sqlite` and `postgres` tests in a module named after each listed async
/// fn, which takes a fresh `Store`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::database::run_on_sqlite(super::$name).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    $crate::database::run_on_postgres(super::$name).await;
                }
            }
        )*
    };
}

/// [`on_both_backends!`] for tests that also need the database's URL (to write to it
/// behind the store's back, or to start processes on it): each listed async fn takes
/// a fresh `Store` and its URL.
#[macro_export]
macro_rules! on_both_backends_with_url {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    $crate::database::run_with_url(
                        $crate::database::TestDatabase::sqlite().await,
                        super::$name,
                    )
                    .await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(database) = $crate::database::TestDatabase::postgres().await {
                        $crate::database::run_with_url(database, super::$name).await;
                    }
                }
            }
        )*
    };
}

/// Runs `test` on `database`'s store and URL as its own task, then drops the database,
/// re-raising a failure.
pub async fn run_with_url<F, Fut>(database: TestDatabase, test: F)
where
    F: FnOnce(Store, String) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store = database.store.clone();
    let url = database.url.clone();
    let outcome = tokio::spawn(async move { test(store, url).await }).await;
    database.finish().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// Runs one SQL statement on the database at `url`, behind the store's back: how a
/// test plants a row an older build or a person might have written.
pub async fn execute_raw(url: &str, sql: &str) {
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url)
            .await
            .expect("open the SQLite file");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        connection.close().await.ok();
    } else {
        let mut connection = sqlx::PgConnection::connect(url)
            .await
            .expect("open the PostgreSQL database");
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        connection.close().await.ok();
    }
}

/// The one number a `SELECT COUNT(*) ...` returns on the database at `url`, read
/// behind the store's back: how a test checks rows the store's API does not show.
pub async fn count_raw(url: &str, sql: &str) -> i64 {
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(url)
            .await
            .expect("open the SQLite file");
        let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        connection.close().await.ok();
        count
    } else {
        let mut connection = sqlx::PgConnection::connect(url)
            .await
            .expect("open the PostgreSQL database");
        let count = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        connection.close().await.ok();
        count
    }
}

/// How many tables the PostgreSQL database at `url` holds in its public schema: how a
/// test tells that nothing created or migrated it.
pub async fn postgres_table_count(url: &str) -> i64 {
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .expect("open the PostgreSQL database");
    let count = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&mut connection)
    .await
    .expect("count the tables");
    connection.close().await.ok();
    count
}

/// The states (`active`, `idle in transaction`, ...) of the sessions connected as
/// `application_name` that are inside a transaction now: how a test finds a node in the
/// middle of a commit.
pub async fn postgres_sessions_in_transaction(url: &str, application_name: &str) -> Vec<String> {
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .expect("open the PostgreSQL database");
    let states = sqlx::query_scalar(
        "SELECT COALESCE(state, '') FROM pg_stat_activity
         WHERE application_name = $1 AND xact_start IS NOT NULL",
    )
    .bind(application_name)
    .fetch_all(&mut connection)
    .await
    .expect("read pg_stat_activity");
    connection.close().await.ok();
    states
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The store opened on it (migrated).
    pub store: Store,
    /// Its URL, to open more connections or processes on it.
    pub url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDatabase {
    /// A new SQLite file in a temporary directory.
    pub async fn sqlite() -> TestDatabase {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("rapport.db").display());
        let store = Store::connect(&url).await.expect("open SQLite store");
        TestDatabase {
            store,
            url,
            cleanup: Cleanup::Sqlite(dir),
        }
    }

    /// A new, empty PostgreSQL database on the server named by
    /// `RAPPORT_TEST_DATABASE_URL`, or `None` (with a note) when it is unset. Under
    /// `CI=true` an unset variable fails the test: CI must never skip silently.
    pub async fn postgres() -> Option<TestDatabase> {
        Some(TestDatabase::postgres_on(postgres_admin_url()?).await)
    }

    /// A new, empty PostgreSQL database on the server at `admin_url` (a user that may
    /// create databases), dropped by [`TestDatabase::finish`].
    pub async fn postgres_on(admin_url: String) -> TestDatabase {
        let name = format!("rapport_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL at {admin_url}: {error}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        let mut url = url::Url::parse(&admin_url).expect("valid PostgreSQL URL");
        url.set_path(&name);
        let url = url.to_string();
        let store = Store::connect(&url).await.expect("open PostgreSQL store");
        TestDatabase {
            store,
            url,
            cleanup: Cleanup::Postgres { admin_url, name },
        }
    }

    /// Closes the store and drops the database.
    pub async fn finish(self) {
        self.store.close().await;
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            drop_postgres_database(admin_url, name).await;
        }
    }
}

async fn drop_postgres_database(admin_url: &str, name: &str) {
    if let Ok(mut admin) = sqlx::PgConnection::connect(admin_url).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
        admin.close().await.ok();
    }
}

/// The PostgreSQL server URL, or `None` after saying the PG run is skipped. Panics under
/// `CI=true`.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!(
                    "{POSTGRES_URL_VAR} is not set but CI=true: the PostgreSQL half of the suite must run in CI"
                );
            }
            eprintln!("skipped: PostgreSQL run ({POSTGRES_URL_VAR} is not set)");
            None
        }
    }
}

/// Runs `test` on a fresh SQLite store.
pub async fn run_on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_on(TestDatabase::sqlite().await, test).await;
}

/// Runs `test` on a fresh PostgreSQL store, unless PostgreSQL is not configured.
pub async fn run_on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    if let Some(database) = TestDatabase::postgres().await {
        run_on(database, test).await;
    }
}

/// Runs the test as its own task so that a failing assertion still lets the database be
/// dropped, then re-raises the failure.
async fn run_on<F, Fut>(database: TestDatabase, test: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let store = database.store.clone();
    let outcome = tokio::spawn(async move { test(store).await }).await;
    database.finish().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
