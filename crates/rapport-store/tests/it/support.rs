//! The test harness: a fresh database per test on each backend, and helpers to build an
//! org quickly.

use chrono::{DateTime, Duration, TimeZone, Utc};
use rapport_core::account::{Contact, Domain, EmailAddress, ExternalId, Lifecycle, NewAccount};
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::{Level, NewStaff, Staff};
use rapport_core::{AccountId, StaffId};
use rapport_store::Store;

pub use rapport_testkit::database::{TestDatabase, postgres_admin_url};
pub(crate) use rapport_testkit::{on_both_backends, on_both_backends_with_url};

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
    store
        .create_account(Operator, new, None, t0())
        .await
        .unwrap()
        .id
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

/// Opens the database a property-test case runs on (`None`: skip).
pub type TestDatabaseFuture = std::pin::Pin<Box<dyn std::future::Future<Output = TestDatabase>>>;

/// `PROPTEST_CASES`, or `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(default)
}

/// Runs a property over `strategy`, each case on a fresh database from `open`, and
/// panics with `what` and the minimal failing case.
pub fn run_property<S: proptest::strategy::Strategy>(
    what: &str,
    cases: u32,
    strategy: S,
    open: impl Fn() -> Option<TestDatabaseFuture>,
    check: impl AsyncFn(&Store, &S::Value) -> Result<(), proptest::test_runner::TestCaseError>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    });
    let result = runner.run(&strategy, |value| {
        runtime.block_on(async {
            let Some(database) = open() else {
                return Ok(());
            };
            let database = database.await;
            let outcome = check(&database.store, &value).await;
            database.finish().await;
            outcome
        })
    });
    if let Err(error) = result {
        panic!("{what}: {error}");
    }
}

/// A fresh PostgreSQL database per case, when PostgreSQL is configured.
pub fn postgres_case() -> Option<TestDatabaseFuture> {
    postgres_admin_url()?;
    Some(Box::pin(async {
        TestDatabase::postgres().await.expect("checked above")
    }))
}

/// A fresh SQLite database per case.
pub fn sqlite_case() -> Option<TestDatabaseFuture> {
    Some(Box::pin(TestDatabase::sqlite()))
}
