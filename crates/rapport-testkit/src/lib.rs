//! Test support shared by the workspace's suites and benchmarks:
//! - re-exported from `rapport-samples`: the paths of the connectors in `plugins/`
//!   built for wasm32-wasip2 (`EXAMPLE_FEED`, `HOSTILE`, `BILLING_STRIPE`,
//!   `SUPPORT_ZENDESK`, `EMAIL_IMAP`), [`upstream::Upstream`] (a loopback HTTP server
//!   that can misbehave the way real APIs do), and [`stripe::FakeStripe`] and
//!   [`zendesk::FakeZendesk`] (the APIs the reference connectors read, replaying the
//!   recorded objects in `tests/fixtures`);
//! - [`feed::Feed`]: the upstream `example-feed` reads, with injectable faults;
//! - [`dovecot::Dovecot`]: a throw-away IMAP server for the email connector;
//! - [`database`]: a fresh database per test on SQLite and PostgreSQL
//!   ([`on_both_backends!`]).

pub mod database;
pub mod dovecot;
pub mod feed;

pub use rapport_samples::{
    BILLING_STRIPE, EMAIL_IMAP, EMAIL_IMAP_TLS, EXAMPLE_FEED, HOSTILE, HOSTILE_MANIFEST,
    SUPPORT_ZENDESK, stripe, upstream, zendesk,
};
