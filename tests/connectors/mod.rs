//! The reference connectors (`plugins/billing-stripe`, `plugins/support-zendesk`,
//! `plugins/email-imap`) built for wasm32-wasip2 and run by the real plugin host against
//! loopback upstreams that replay the recorded payloads in `tests/fixtures`; and all of
//! them together through the sync engine into a real store.

mod support;

mod gmail;
mod google_calendar;
mod imap;
mod microsoft;
mod server;
mod standins;
mod stripe;
mod together;
mod zendesk;
