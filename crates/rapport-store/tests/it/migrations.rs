//! Opening databases: SQLite set up for an embedded server, migrations applied once,
//! foreign or newer schemas refused, bad URLs explained.

use crate::support::*;
use rapport_store::{Dialect, Error, Store};
use sqlx::Connection;

#[tokio::test]
async fn sqlite_is_set_up_for_an_embedded_server() {
    let database = TestDatabase::sqlite().await;
    let info = database.store.info().await.unwrap();
    assert_eq!(info.dialect, Dialect::Sqlite);
    assert_eq!(info.journal_mode.as_deref(), Some("wal"));
    assert_eq!(info.foreign_keys, Some(true));
    assert_eq!(info.schema_version, rapport_store::schema_version_latest());
    assert!(database.store.is_ready().await.unwrap());
    database.finish().await;
}

#[tokio::test]
async fn reopening_applies_nothing_twice_and_keeps_data() {
    let database = TestDatabase::sqlite().await;
    let org = small_org(&database.store).await;
    // A second process (or a restart) opening the same file migrates nothing.
    let again = Store::connect(&database.url).await.unwrap();
    assert_eq!(again.staff(org.vp.id).await.unwrap().name, "Vera");
    again.close().await;
    database.finish().await;
}

#[tokio::test]
async fn postgres_opens_and_reports_ready() {
    let Some(database) = TestDatabase::postgres().await else {
        return;
    };
    let info = database.store.info().await.unwrap();
    assert_eq!(
        (info.dialect, info.schema_version),
        (Dialect::Postgres, rapport_store::schema_version_latest())
    );
    assert!(database.store.is_ready().await.unwrap());
    // Several nodes starting at once all migrate safely (advisory lock).
    let (a, b) = tokio::join!(Store::connect(&database.url), Store::connect(&database.url));
    a.unwrap().close().await;
    b.unwrap().close().await;
    database.finish().await;
}

/// Simulates a database written by a newer rapport, then one whose applied migration
/// was edited afterwards; both must be refused with a sentence saying what to do.
async fn refuses_foreign_schemas(database: TestDatabase) {
    let url = database.url.clone();
    let tamper = |sql: &'static str| execute_raw(url.clone(), sql);
    tamper(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         SELECT 99990101, 'from the future', TRUE, checksum, 0 FROM _sqlx_migrations WHERE version = 1",
    )
    .await;
    let error = Store::connect(&url).await.unwrap_err();
    assert!(matches!(error, Error::SchemaTooNew(99990101)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "the database schema (migration 99990101) is newer than this build of rapport: upgrade rapport, or point it at another database"
    );
    tamper("DELETE FROM _sqlx_migrations WHERE version = 99990101").await;
    tamper("UPDATE _sqlx_migrations SET checksum = checksum || checksum WHERE version = 1").await;
    let error = Store::connect(&url).await.unwrap_err();
    assert!(matches!(error, Error::MigrationChanged(1)), "{error:?}");
    database.finish().await;
}

/// Runs one statement on the database behind the store's back.
async fn execute_raw(url: String, sql: &'static str) {
    if url.starts_with("sqlite:") {
        let mut connection = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query(sql).execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    } else {
        let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(sql).execute(&mut connection).await.unwrap();
        connection.close().await.unwrap();
    }
}

#[tokio::test]
async fn sqlite_refuses_foreign_schemas() {
    refuses_foreign_schemas(TestDatabase::sqlite().await).await;
}

#[tokio::test]
async fn postgres_refuses_foreign_schemas() {
    if let Some(database) = TestDatabase::postgres().await {
        refuses_foreign_schemas(database).await;
    }
}

#[tokio::test]
async fn bad_urls_say_what_to_fix() {
    let error = Store::connect("mysql://localhost/rapport")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "database URL `mysql://localhost/rapport` is not usable: it must start with `sqlite:` (e.g. `sqlite://rapport.db`) or `postgres://`"
    );
    // Nothing listens on port 1: the error names the server, says why once, and never
    // shows the password.
    let error = Store::connect("postgres://rapport:hunter2@127.0.0.1:1/rapport")
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot connect to PostgreSQL at 127.0.0.1:1 (database `rapport`): connection refused"
    );
    assert!(
        std::error::Error::source(&error).is_none(),
        "the cause is in the message, not repeated as a source"
    );
}
