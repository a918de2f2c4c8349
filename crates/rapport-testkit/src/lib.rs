//! Test support shared by the workspace's suites and benchmarks:
//! - the paths of the connectors in `plugins/`, built for wasm32-wasip2 by this crate's
//!   build script (`EXAMPLE_FEED`, `BILLING_STRIPE`, `SUPPORT_ZENDESK`, `EMAIL_IMAP`,
//!   `EXAMPLE_OAUTH`, and the test-only `HOSTILE` and `HOSTILE_MANIFEST`, which misbehave on purpose to
//!   prove containment and never ship);
//! - re-exported from `rapport-samples`: [`upstream::Upstream`] (a loopback HTTP server
//!   that can misbehave the way real APIs do), and [`stripe::FakeStripe`] and
//!   [`zendesk::FakeZendesk`] (the APIs the reference connectors read, replaying the
//!   recorded objects in `tests/fixtures`);
//! - [`feed::Feed`]: the upstream `example-feed` reads, with injectable faults;
//! - [`dovecot::Dovecot`]: a throw-away IMAP server for the email connector;
//! - [`oauth::Provider`]: a real OAuth 2.0 / OpenID Connect provider (oidc-provider,
//!   from npm) on loopback, and a person signing in and consenting to it;
//! - [`database`]: a fresh database per test on SQLite and PostgreSQL
//!   ([`on_both_backends!`]).

pub mod database;
pub mod dovecot;
pub mod feed;
pub mod oauth;

pub use rapport_samples::{google, microsoft, stripe, upstream, zendesk};

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
