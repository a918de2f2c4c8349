//! `Stripe-Signature` verification, as Stripe documents it: the header is
//! `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`; each `v1` is HMAC-SHA256 under the
//! endpoint's secret over `"{t}.{raw body}"`. Any `v1` matching under any configured
//! secret passes (Stripe signs with both the old and new secret while one rotates);
//! `v0` (test-mode legacy) is never accepted.

use rapport_pdk::prelude::*;
use rapport_pdk::{Timestamp, webhook};

/// Verifies `header` for `body`, received at `now`.
pub fn verify(
    header: &str,
    body: &[u8],
    secrets: &[&str],
    now: Timestamp,
    tolerance_seconds: i64,
) -> Result<(), ConnectorError> {
    let mut signed_at = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => signed_at = value.parse::<i64>().ok(),
            "v1" => candidates.push(value),
            _ => {}
        }
    }
    let signed_at = signed_at.ok_or_else(|| {
        ConnectorError::Auth("Stripe-Signature has no valid `t=` timestamp".into())
    })?;
    if candidates.is_empty() {
        return Err(ConnectorError::Auth(
            "Stripe-Signature has no `v1=` signature".into(),
        ));
    }
    let timestamp = signed_at.to_string();
    let matched = secrets.iter().any(|secret| {
        let expected = webhook::to_hex(&webhook::hmac_sha256(
            secret.as_bytes(),
            &[timestamp.as_bytes(), b".", body],
        ));
        candidates
            .iter()
            .any(|candidate| webhook::constant_time_eq(candidate.as_bytes(), expected.as_bytes()))
    });
    if !matched {
        return Err(ConnectorError::Auth(
            "no Stripe-Signature v1 signature matches the configured webhook_secret".into(),
        ));
    }
    // Checked after the signature, so an attacker cannot learn our clock from errors.
    webhook::check_freshness(signed_at, now, tolerance_seconds)
}

/// The header Stripe would send for `body` signed with `secret` at `t` (for tests and
/// for replaying deliveries).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mac = webhook::hmac_sha256(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]);
    format!("t={t},v1={}", webhook::to_hex(&mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

    fn at(seconds: i64) -> Timestamp {
        time::from_unix_seconds(seconds)
    }

    #[test]
    fn a_fresh_valid_signature_verifies() {
        let header = sign("whsec_a", NOW - 10, BODY);
        verify(&header, BODY, &["whsec_a"], at(NOW), 300).unwrap();
    }

    #[test]
    fn any_secret_and_any_v1_during_rotation() {
        let old = sign("whsec_old", NOW, BODY);
        let new = sign("whsec_new", NOW, BODY);
        let both = format!("{old},{}", new.split_once(',').unwrap().1);
        verify(&both, BODY, &["whsec_new"], at(NOW), 300).unwrap();
        verify(&both, BODY, &["whsec_old"], at(NOW), 300).unwrap();
        verify(&old, BODY, &["whsec_new", "whsec_old"], at(NOW), 300).unwrap();
    }

    #[test]
    fn tampered_stale_missing_and_wrong_secret_are_refused() {
        let header = sign("whsec_a", NOW, BODY);
        let refused = |header: &str, body: &[u8], secrets: &[&str], now: i64| match verify(
            header,
            body,
            secrets,
            at(now),
            300,
        ) {
            Err(ConnectorError::Auth(message)) => message,
            other => panic!("expected an auth refusal, got {other:?}"),
        };
        assert!(refused(&header, b"{\"id\":\"evt_2\"}", &["whsec_a"], NOW).contains("matches"));
        assert!(refused(&header, BODY, &["whsec_b"], NOW).contains("matches"));
        assert!(refused(&header, BODY, &["whsec_a"], NOW + 301).contains("tolerance"));
        assert!(refused(&header, BODY, &["whsec_a"], NOW - 301).contains("tolerance"));
        assert!(refused("", BODY, &["whsec_a"], NOW).contains("t="));
        assert!(refused(&format!("t={NOW}"), BODY, &["whsec_a"], NOW).contains("v1"));
        // A legacy v0 signature with the right value is still not accepted.
        let v0 = header.replace("v1=", "v0=");
        assert!(refused(&v0, BODY, &["whsec_a"], NOW).contains("v1"));
    }
}
