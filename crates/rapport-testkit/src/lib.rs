//! Test support shared by the workspace's suites and benchmarks:
//! - the paths of the connectors in `plugins/`, built for wasm32-wasip2 by this crate's
//!   build script: `EXAMPLE_FEED` (a small, well-behaved connector), `HOSTILE` (one
//!   that misbehaves on purpose, to prove containment), and the reference connectors
//!   `BILLING_STRIPE`, `SUPPORT_ZENDESK` and `EMAIL_IMAP`;
//! - [`upstream::Upstream`], a loopback HTTP server that stands in for a third-party
//!   API and can misbehave the way real ones do (429, 5xx, slow, truncated bodies);
//! - [`feed::Feed`]: the upstream `example-feed` reads, with injectable faults;
//! - [`stripe::FakeStripe`] and [`zendesk::FakeZendesk`]: the APIs the reference
//!   connectors read, replaying the recorded objects in `tests/fixtures`;
//! - [`dovecot::Dovecot`]: a throw-away IMAP server for the email connector;
//! - [`database`]: a fresh database per test on SQLite and PostgreSQL
//!   ([`on_both_backends!`]).

pub mod database;
pub mod dovecot;
pub mod feed;
pub mod stripe;
pub mod upstream;
pub mod zendesk;

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
