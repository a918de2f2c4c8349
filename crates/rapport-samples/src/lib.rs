//! What `rapport demo` connects to and the tests replay: sample upstreams on loopback,
//! each serving recorded data the way the real service does: [`stripe::FakeStripe`] and
//! [`zendesk::FakeZendesk`] (replaying the objects in `tests/fixtures`), on
//! [`upstream::Upstream`], an HTTP server that can also misbehave the way real APIs
//! do; and [`mailbox::SampleMailbox`], a small read-only IMAP server holding a list of
//! messages.
//!
//! They stand in for someone else's service, never for rapport's own code.

pub mod google;
pub mod mailbox;
pub mod microsoft;
pub mod stripe;
pub mod upstream;
pub mod zendesk;

/// `text` percent-encoded for a query value.
pub(crate) fn percent(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// A percent-encoded path segment, decoded.
pub(crate) fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default()
}

/// The PKCE S256 challenge of `verifier` (RFC 7636): base64url(SHA-256), no padding.
pub(crate) fn pkce_s256(verifier: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}
