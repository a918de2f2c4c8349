//! The test harness: a fresh database per test on each backend, and helpers to build an
//! org quickly.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rapport_core::account::{Contact, Domain, EmailAddress, ExternalId, Lifecycle, NewAccount};
use rapport_core::staff::{Level, NewStaff, Staff};
use rapport_core::{AccountId, StaffId};
use rapport_store::Store;
use sqlx::Connection;
use std::future::Future;

/// The environment variable naming a PostgreSQL server for the PG half of the suite.
pub const POSTGRES_URL_VAR: &str = "RAPPORT_TEST_DATABASE_URL";

/// Generates `sqlite` and `postgres` tests in a module named after each listed async
/// fn, which takes a fresh `Store`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    crate::support::run_on_sqlite(super::$name).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    crate::support::run_on_postgres(super::$name).await;
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;

/// A database that exists for one test.
pub struct TestDatabase {
    pub store: Store,
    pub url: String,
    cleanup: Cleanup,
}

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
        let admin_url = postgres_admin_url()?;
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
        Some(TestDatabase {
            store,
            url,
            cleanup: Cleanup::Postgres { admin_url, name },
        })
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
                    "{POSTGRES_URL_VAR} is not set but CI=true: the PostgreSQL half of the store suite must run in CI"
                );
            }
            eprintln!("skipped: PostgreSQL run ({POSTGRES_URL_VAR} is not set)");
            None
        }
    }
}

pub async fn run_on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    run_on(TestDatabase::sqlite().await, test).await;
}

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

/// A fixed instant to build histories from.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 5, 9, 0, 0).unwrap()
}

/// `t0` plus `hours`.
pub fn hours(hours: i64) -> DateTime<Utc> {
    t0() + Duration::hours(hours)
}

pub fn email(address: &str) -> EmailAddress {
    EmailAddress::parse(address).unwrap()
}

pub fn domain(name: &str) -> Domain {
    Domain::parse(name).unwrap()
}

pub async fn hire(store: &Store, name: &str, level: Level, reports_to: Option<StaffId>) -> Staff {
    let address = format!("{}@rapport.test", name.to_lowercase().replace(' ', "."));
    store
        .create_staff(
            NewStaff {
                name: name.into(),
                email: email(&address),
                level,
                reports_to,
                is_admin: false,
            },
            t0(),
        )
        .await
        .unwrap_or_else(|error| panic!("hire {name}: {error}"))
}

pub fn new_account(name: &str, owner: StaffId) -> NewAccount {
    NewAccount {
        name: name.into(),
        parent: None,
        lifecycle: Lifecycle::Active,
        renewal_date: None,
        domains: Vec::new(),
        external_ids: Vec::new(),
        contacts: Vec::new(),
        owner,
    }
}

pub async fn open_account(
    store: &Store,
    name: &str,
    owner: StaffId,
    parent: Option<AccountId>,
) -> AccountId {
    let mut new = new_account(name, owner);
    new.parent = parent;
    store.create_account(new, None, t0()).await.unwrap().id
}

pub fn contact(address: &str, name: &str) -> Contact {
    Contact {
        name: Some(name.into()),
        email: email(address),
        title: None,
    }
}

pub fn external(spelled: &str) -> ExternalId {
    spelled.parse().unwrap()
}

/// A small org used by several tests:
/// VP Vera; director Dan; managers Mia and Max under Dan; associate Ava under Mia.
pub struct Org {
    pub vp: Staff,
    pub director: Staff,
    pub mia: Staff,
    pub max: Staff,
    pub ava: Staff,
}

pub async fn small_org(store: &Store) -> Org {
    let vp = hire(store, "Vera", Level::Vp, None).await;
    let director = hire(store, "Dan", Level::Director, Some(vp.id)).await;
    let mia = hire(store, "Mia", Level::Manager, Some(director.id)).await;
    let max = hire(store, "Max", Level::Manager, Some(director.id)).await;
    let ava = hire(store, "Ava", Level::Associate, Some(mia.id)).await;
    Org {
        vp,
        director,
        mia,
        max,
        ava,
    }
}
