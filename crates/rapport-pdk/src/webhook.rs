//! What verifying a webhook delivery takes: reading its headers, HMAC-SHA256 over the
//! exact bytes the provider signed, and comparing signatures in constant time.
//!
//! Providers differ in what they sign (Stripe: `"{t}.{body}"`, hex; Zendesk:
//! `"{timestamp}{body}"`, base64), so a connector assembles the signed parts and the
//! encoding itself; the primitives here are the parts that are easy to get subtly wrong.

use crate::{ConnectorError, Timestamp, WebhookRequest};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first value of header `name` (case-insensitive), if present and UTF-8.
pub fn header<'r>(request: &'r WebhookRequest, name: &str) -> Option<&'r str> {
    request
        .headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case(name))
        .and_then(|header| std::str::from_utf8(&header.value).ok())
}

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // An HMAC key may have any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `a == b`, taking the same time wherever they differ (lengths are not
/// secret: a signature's length is public).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// Refuses a delivery signed at `signed_at` (Unix seconds) more than `tolerance_seconds`
/// away from `now`, so a captured request cannot be replayed later.
pub fn check_freshness(
    signed_at: i64,
    now: Timestamp,
    tolerance_seconds: i64,
) -> Result<(), ConnectorError> {
    let age = now.div_euclid(1_000_000).saturating_sub(signed_at);
    if age.saturating_abs() > tolerance_seconds {
        let when = if age > 0 {
            format!("{age} s ago")
        } else {
            format!("{} s in the future", age.saturating_neg())
        };
        return Err(ConnectorError::Auth(format!(
            "the delivery was signed {when}, outside the {tolerance_seconds} s tolerance (a replay, or a clock that is off)"
        )));
    }
    Ok(())
}

/// How far a signature's time may be from now: the `webhook_tolerance_seconds` setting
/// (1 s to 1 day), or the provider's customary 300 s.
pub fn tolerance_seconds(config: &crate::Config) -> Result<i64, ConnectorError> {
    let seconds = config.number("webhook_tolerance_seconds", 300, 1..=86_400)?;
    Ok(i64::try_from(seconds).unwrap_or(300))
}

/// The secrets configured under `key`: one, or several separated by commas or
/// whitespace while a provider's signing secret is being rotated.
pub fn secrets<'c>(config: &'c crate::Config, key: &str) -> Result<Vec<&'c str>, ConnectorError> {
    let secrets: Vec<&str> = config
        .require_secret(key)?
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|secret| !secret.is_empty())
        .collect();
    if secrets.is_empty() {
        return Err(ConnectorError::Config(format!("secret `{key}` is empty")));
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            to_hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn equality_and_freshness() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        let now = 1_000 * 1_000_000;
        assert!(check_freshness(1_000 - 300, now, 300).is_ok());
        assert!(check_freshness(1_000 + 300, now, 300).is_ok());
        assert!(matches!(
            check_freshness(1_000 - 301, now, 300),
            Err(ConnectorError::Auth(_))
        ));
    }

    #[test]
    fn a_stale_delivery_is_said_to_be_old_and_an_early_one_to_be_ahead() {
        let now = 10_000 * 1_000_000;
        let message = |signed_at| match check_freshness(signed_at, now, 300) {
            Err(ConnectorError::Auth(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(
            message(10_000 - 400).contains("signed 400 s ago"),
            "{}",
            message(9_600)
        );
        assert!(
            message(10_000 + 400).contains("signed 400 s in the future"),
            "{}",
            message(10_400)
        );
        // Absurd stamps do not overflow.
        assert!(message(i64::MIN).contains("ago"));
        assert!(message(i64::MAX).contains("in the future"));
    }
}
