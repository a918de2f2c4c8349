//! Test support shared by the workspace's suites and benchmarks:
//! - the paths of the connectors in `plugins/`, built for wasm32-wasip2 by this crate's
//!   build script: `EXAMPLE_FEED` (a small, well-behaved connector) and `HOSTILE` (one
//!   that misbehaves on purpose, to prove containment);
//! - [`upstream::Upstream`], a loopback HTTP server that stands in for a third-party
//!   API and can misbehave the way real ones do (429, 5xx, slow, truncated bodies);
//! - [`feed::Feed`]: the upstream `example-feed` reads, with injectable faults;
//! - [`database`]: a fresh database per test on SQLite and PostgreSQL
//!   ([`on_both_backends!`]).

pub mod database;
pub mod feed;
pub mod upstream;

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
