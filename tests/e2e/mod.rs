//! End-to-end tests across crates. They drive the same library code the `rapport`
//! binary runs, against real databases: SQLite always, PostgreSQL when
//! `RAPPORT_TEST_DATABASE_URL` is set (and required under `CI=true`).

mod browser;
mod demo;
