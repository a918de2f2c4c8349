//! What `rapport demo` connects to and the tests replay: sample upstreams on loopback,
//! each serving recorded data the way the real service does: [`stripe::FakeStripe`] and
//! [`zendesk::FakeZendesk`] (replaying the objects in `tests/fixtures`), on
//! [`upstream::Upstream`], an HTTP server that can also misbehave the way real APIs
//! do; and [`mailbox::SampleMailbox`], a small read-only IMAP server holding a list of
//! messages.
//!
//! They stand in for someone else's service, never for rapport's own code.

pub mod mailbox;
pub mod stripe;
pub mod upstream;
pub mod zendesk;
