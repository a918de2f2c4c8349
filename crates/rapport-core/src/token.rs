//! Per-staff API tokens: what one is, how it is recognised, and when it may be used.
//!
//! A token is `rpt_` followed by 64 hex digits of OS randomness, shown once when it is
//! created. Only its SHA-256 is stored: a token has far more entropy than a password,
//! so a fast hash cannot be brute-forced, and a stolen database yields no usable token.
//! Its first 12 characters are kept in the clear so people can tell tokens apart.

use crate::StaffId;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What every token starts with (so secret scanners and people recognise one).
pub const TOKEN_PREFIX: &str = "rpt_";
/// The length of a token: the prefix and 64 hex digits.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + 64;
/// How many leading characters are kept in the clear to tell tokens apart.
/// Most live (unrevoked, unexpired) API tokens one person may hold: enough for every
/// script and machine they run, few enough that a leak or a runaway script is bounded.
pub const TOKENS_PER_PERSON_MAX: usize = 25;
/// Characters shown of a token in listings.
pub const DISPLAY_PREFIX_LEN: usize = 12;

/// A token's record (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// Its id, for listing and revoking.
    pub id: i64,
    /// Whom it acts as.
    pub staff: StaffId,
    /// What it is for, e.g. "reporting script".
    pub name: String,
    /// Its first characters (`rpt_1a2b3c4d`).
    pub display_prefix: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working by itself, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was last presented successfully.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiToken {
    /// Whether it may be used at `now`: not revoked, not expired.
    pub fn is_usable(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|expires| now < expires)
    }
}

/// Whether `presented` has a token's shape (checked before any lookup).
pub fn looks_like_token(presented: &str) -> bool {
    presented.len() == TOKEN_LEN
        && presented.starts_with(TOKEN_PREFIX)
        && presented[TOKEN_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The stored form of a token: lower-case hex SHA-256.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The part of a token kept in the clear.
pub fn display_prefix(token: &str) -> String {
    token.chars().take(DISPLAY_PREFIX_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_hashes_and_usability() {
        let token = format!("{TOKEN_PREFIX}{}", "0123456789abcdef".repeat(4));
        assert!(looks_like_token(&token));
        assert!(!looks_like_token(&token.to_uppercase()));
        assert!(!looks_like_token(&token[..TOKEN_LEN - 1]));
        assert!(!looks_like_token(&format!("xyz_{}", &token[4..])));
        assert_eq!(token_hash(&token).len(), 64);
        assert_ne!(token_hash(&token), token_hash(&token.replace('f', "e")));
        assert_eq!(display_prefix(&token), "rpt_01234567");

        let now = Utc::now();
        let mut record = ApiToken {
            id: 1,
            staff: StaffId(1),
            name: "script".into(),
            display_prefix: display_prefix(&token),
            created_at: now,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        assert!(record.is_usable(now));
        record.expires_at = Some(now);
        assert!(!record.is_usable(now), "expired at that instant");
        record.expires_at = None;
        record.revoked_at = Some(now);
        assert!(!record.is_usable(now));
    }
}
