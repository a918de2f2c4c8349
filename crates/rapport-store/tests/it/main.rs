//! The store's integration suite. Every test runs on SQLite, and on PostgreSQL when
//! `RAPPORT_TEST_DATABASE_URL` points at a server (see `support`).

mod support;

mod accounts;
mod assignments;
mod connections;
mod identity;
mod insights;
mod migrations;
mod sessions;
mod sightings;
mod staff;
mod sync;
mod timeline;
mod tokens;
mod visibility;
mod work;
