//! The sync engine's integration suite: the real example-feed plugin through the real
//! host against a loopback feed upstream, on SQLite and PostgreSQL; plus crash and
//! multi-node tests that kill real processes.

mod support;

mod connections;
mod containment;
mod engine;
