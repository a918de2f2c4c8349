//! Tamper-proof pagination cursors. A cursor is the page position (JSON, base64url)
//! plus an HMAC-SHA256 tag over it and the listing it belongs to (route, account,
//! viewer). A client cannot forge a position or replay one listing's cursor on another:
//! both are refused as invalid (422) before any query runs. The key is shared by all
//! nodes through the database (`Store::server_key`).

use crate::api::error::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;
use std::sync::Arc;

/// Bytes of the HMAC tag kept in a cursor (128 bits).
const TAG_BYTES: usize = 16;
/// Longest cursor accepted; real ones are well under 200 characters.
const CURSOR_CHARS_MAX: usize = 512;

/// Signs and checks cursors with the deployment's key.
#[derive(Clone)]
pub struct CursorSigner {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for CursorSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSigner(..)")
    }
}

impl CursorSigner {
    /// A signer with `key` (the `cursor` server key).
    pub fn new(key: &str) -> CursorSigner {
        CursorSigner {
            key: key.as_bytes().into(),
        }
    }

    fn tag(&self, listing: &str, payload: &str) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(listing.as_bytes());
        mac.update(b"\n");
        mac.update(payload.as_bytes());
        mac.finalize().into_bytes()[..TAG_BYTES].to_vec()
    }

    /// The cursor for `position` in `listing`.
    pub fn sign<T: Serialize>(&self, listing: &str, position: &T) -> String {
        let json = serde_json::to_vec(position).expect("cursor positions serialize");
        let payload = URL_SAFE_NO_PAD.encode(json);
        let tag = URL_SAFE_NO_PAD.encode(self.tag(listing, &payload));
        format!("{payload}.{tag}")
    }

    /// The position in a cursor this server signed for `listing`.
    pub fn verify<T: DeserializeOwned>(&self, listing: &str, cursor: &str) -> Result<T, ApiError> {
        let invalid = || {
            ApiError::Invalid(
                "the cursor is not one this listing handed out: pass the `next` value of the previous page unchanged, or leave it out to start at the top".to_owned(),
            )
        };
        if cursor.len() > CURSOR_CHARS_MAX {
            return Err(invalid());
        }
        let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        if tag.len() != TAG_BYTES {
            return Err(invalid());
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(listing.as_bytes());
        mac.update(b"\n");
        mac.update(payload.as_bytes());
        // `verify_truncated_left` compares in constant time.
        mac.verify_truncated_left(&tag).map_err(|_| invalid())?;
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        serde_json::from_slice(&json).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_only_in_their_own_listing() {
        let signer = CursorSigner::new("key");
        let cursor = signer.sign("timeline:1:7", &(42_i64, 7_i64));
        assert_eq!(
            signer
                .verify::<(i64, i64)>("timeline:1:7", &cursor)
                .unwrap(),
            (42, 7)
        );
        assert!(
            signer
                .verify::<(i64, i64)>("timeline:2:7", &cursor)
                .is_err()
        );
        assert!(
            CursorSigner::new("other key")
                .verify::<(i64, i64)>("timeline:1:7", &cursor)
                .is_err()
        );
        // A forged position with the old tag, a cut tag, and garbage are refused.
        let (_, tag) = cursor.split_once('.').unwrap();
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(b"[1,1]"));
        assert!(
            signer
                .verify::<(i64, i64)>("timeline:1:7", &forged)
                .is_err()
        );
        let cut = &cursor[..cursor.len() - 3];
        assert!(signer.verify::<(i64, i64)>("timeline:1:7", cut).is_err());
        assert!(
            signer
                .verify::<(i64, i64)>("timeline:1:7", "garbage")
                .is_err()
        );
        assert!(signer.verify::<(i64, i64)>("timeline:1:7", "").is_err());
    }
}
