//! Secrets at rest: what rapport keeps for others (OAuth access and refresh tokens) is
//! sealed with an AEAD before it reaches the database, so neither the SQLite file nor
//! a PostgreSQL dump holds it in the clear.
//!
//! A [`KeyRing`] holds one *primary* key, which seals everything new, and any number of
//! older keys, which still open what they sealed: rotating is adding a key in front and
//! re-sealing at leisure (`rapport secrets rotate`). A sealed value names its key, so
//! opening never guesses.
//!
//! The cipher is XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): 256-bit keys and
//! 192-bit nonces, drawn at random for every seal, which are safe to pick at random at
//! any volume. Each value is bound to its *context* (e.g. `connection:17:refresh`) as
//! associated data, so a sealed value copied into another row or field does not open.
//!
//! Key ring text (`RAPPORT_SECRET_KEY`, or a key file): entries `<id>:<base64 key>`,
//! separated by commas or new lines, the primary first; an id is 1 to 32 letters,
//! digits, `-` or `_`; a key is 32 random bytes, e.g. from [`KeyRing::generate_entry`].

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;

/// What every sealed value starts with: the format's version.
pub const SEALED_PREFIX: &str = "rs1";
/// Bytes of a key.
pub const KEY_BYTES: usize = 32;
/// Longest key id, in bytes.
pub const KEY_ID_BYTES_MAX: usize = 32;
const NONCE_BYTES: usize = 24;

/// Why a key ring or a sealed value was refused. Never carries key material or
/// plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The key ring's text is malformed.
    #[error("the secret key ring is malformed: {0}")]
    BadKeyRing(String),
    /// The value was sealed with a key the ring does not hold.
    #[error(
        "a secret was sealed with key `{0}`, which the configured key ring does not hold; add that key back (after the primary) to open it"
    )]
    UnknownKey(String),
    /// The value is not a sealed value, or was altered, or belongs to another context.
    #[error("a sealed secret does not open: it was altered, or belongs to another row")]
    Corrupt,
}

/// A sealed value: what may be stored. Only [`KeyRing::seal`] makes a new one (and a
/// store reading one back, with [`Sealed::from_stored`]), so plaintext cannot be
/// written where a sealed value belongs by mistake.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(String);

impl Sealed {
    /// A value read back from storage, as it was written.
    pub fn from_stored(text: String) -> Sealed {
        Sealed(text)
    }

    /// The text to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id of the key that sealed it, if it is well formed.
    pub fn key_id(&self) -> Option<&str> {
        split(&self.0).ok().map(|(key_id, _)| key_id)
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed(key {:?})", self.key_id().unwrap_or("?"))
    }
}

/// One key.
#[derive(Clone)]
struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The keys secrets are sealed and opened with. `Debug` shows key ids only.
#[derive(Clone)]
pub struct KeyRing {
    /// The first is the primary.
    keys: Vec<Key>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("primary", &self.primary_id())
            .field("keys", &self.keys.iter().map(|k| &k.id).collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// Parses key ring text (see the module docs).
    pub fn parse(text: &str) -> Result<KeyRing, SecretError> {
        let bad = |why: String| SecretError::BadKeyRing(why);
        let mut keys: Vec<Key> = Vec::new();
        for (index, entry) in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .enumerate()
        {
            let position = index + 1;
            let Some((id, encoded)) = entry.split_once(':') else {
                return Err(bad(format!("entry {position} is not `<id>:<base64 key>`")));
            };
            let id = id.trim();
            let id_ok = !id.is_empty()
                && id.len() <= KEY_ID_BYTES_MAX
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !id_ok {
                return Err(bad(format!(
                    "entry {position}'s id must be 1-{KEY_ID_BYTES_MAX} letters, digits, `-` or `_`"
                )));
            }
            if keys.iter().any(|key| key.id == id) {
                return Err(bad(format!("the key id `{id}` appears twice")));
            }
            let bytes = STANDARD
                .decode(encoded.trim())
                .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim()))
                .map_err(|_| bad(format!("key `{id}` is not base64")))?;
            if bytes.len() != KEY_BYTES {
                return Err(bad(format!(
                    "key `{id}` is {} bytes; a key is {KEY_BYTES} random bytes (`rapport secrets generate-key` makes one)",
                    bytes.len()
                )));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| bad(format!("key `{id}` is unusable")))?;
            keys.push(Key {
                id: id.to_owned(),
                cipher,
            });
        }
        if keys.is_empty() {
            return Err(bad("it holds no key".into()));
        }
        Ok(KeyRing { keys })
    }

    /// A new random key ring entry, `<id>:<base64 key>`.
    pub fn generate_entry(id: &str) -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        format!("{id}:{}", STANDARD.encode(key))
    }

    /// The id of the key new values are sealed with.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Every key's id, the primary first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(|key| key.id.as_str()).collect()
    }

    /// Whether the ring holds the key `id`.
    pub fn holds(&self, id: &str) -> bool {
        self.keys.iter().any(|key| key.id == id)
    }

    /// Seals `plaintext` for `context` with the primary key:
    /// `rs1.<key id>.<base64url(nonce ‖ ciphertext)>`.
    pub fn seal(&self, plaintext: &str, context: &str) -> Sealed {
        let key = &self.keys[0];
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = key
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any length a String can hold");
        let mut bytes = Vec::with_capacity(NONCE_BYTES + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        Sealed(format!(
            "{SEALED_PREFIX}.{}.{}",
            key.id,
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// Opens a value [`seal`](KeyRing::seal)ed for `context`, with whichever key of the
    /// ring sealed it.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<String, SecretError> {
        let (key_id, body) = split(&sealed.0)?;
        let key = self
            .keys
            .iter()
            .find(|key| key.id == key_id)
            .ok_or_else(|| SecretError::UnknownKey(key_id.to_owned()))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SecretError::Corrupt)?;
        if bytes.len() < NONCE_BYTES {
            return Err(SecretError::Corrupt);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SecretError::Corrupt)?;
        let plaintext = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plaintext).map_err(|_| SecretError::Corrupt)
    }

    /// Whether `sealed` is sealed with the primary key (rotation re-seals the rest).
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.key_id() == Some(self.primary_id())
    }
}

fn split(sealed: &str) -> Result<(&str, &str), SecretError> {
    let rest = sealed
        .strip_prefix(SEALED_PREFIX)
        .and_then(|rest| rest.strip_prefix('.'))
        .ok_or(SecretError::Corrupt)?;
    rest.split_once('.').ok_or(SecretError::Corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(text: &str) -> KeyRing {
        KeyRing::parse(text).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_in_its_context() {
        let keys = ring(&KeyRing::generate_entry("k1"));
        let sealed = keys.seal("1//refresh-token-value", "connection:7:refresh");
        assert!(sealed.as_str().starts_with("rs1.k1."), "{sealed:?}");
        assert!(!sealed.as_str().contains("refresh-token-value"));
        assert_eq!(
            keys.open(&sealed, "connection:7:refresh").unwrap(),
            "1//refresh-token-value"
        );
        // Copied into another row or field, it does not open.
        assert_eq!(
            keys.open(&sealed, "connection:8:refresh"),
            Err(SecretError::Corrupt)
        );
        assert_eq!(
            keys.open(&sealed, "connection:7:access"),
            Err(SecretError::Corrupt)
        );
        // Nor when altered anywhere.
        let mut altered = sealed.as_str().to_owned().into_bytes();
        let last = altered.len() - 2;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = Sealed::from_stored(String::from_utf8(altered).unwrap());
        assert_eq!(
            keys.open(&altered, "connection:7:refresh"),
            Err(SecretError::Corrupt)
        );
        // Two seals of one value differ (random nonces).
        assert_ne!(
            sealed,
            keys.seal("1//refresh-token-value", "connection:7:refresh")
        );
    }

    #[test]
    fn rotation_keeps_old_values_open_and_seals_new_ones_with_the_new_key() {
        let old_entry = KeyRing::generate_entry("2026-01");
        let old = ring(&old_entry);
        let sealed_before = old.seal("token-a", "c");
        let rotated = ring(&format!(
            "{},{old_entry}",
            KeyRing::generate_entry("2026-12")
        ));
        assert_eq!(rotated.primary_id(), "2026-12");
        assert_eq!(rotated.open(&sealed_before, "c").unwrap(), "token-a");
        assert!(!rotated.is_current(&sealed_before));
        let sealed_after = rotated.seal("token-b", "c");
        assert!(rotated.is_current(&sealed_after));
        assert_eq!(sealed_after.key_id(), Some("2026-12"));
        // The old ring alone cannot open what the new key sealed, and says which key.
        assert_eq!(
            old.open(&sealed_after, "c"),
            Err(SecretError::UnknownKey("2026-12".into()))
        );
    }

    #[test]
    fn malformed_key_rings_say_what_to_fix() {
        let refusal = |text: &str| KeyRing::parse(text).unwrap_err().to_string();
        assert!(refusal("").contains("holds no key"));
        assert!(refusal("justakey").contains("`<id>:<base64 key>`"));
        assert!(refusal("k1:c2hvcnQ=").contains("is 5 bytes"));
        assert!(refusal("k1:!!!").contains("not base64"));
        assert!(refusal("bad id:AAAA").contains("letters, digits"));
        let entry = KeyRing::generate_entry("k1");
        assert!(refusal(&format!("{entry}\n{entry}")).contains("appears twice"));
        // Refusals never echo key material.
        let key = entry.split_once(':').unwrap().1;
        assert!(!refusal(&format!("k1:{key}x")).contains(key));
        assert!(!format!("{:?}", ring(&entry)).contains(key));
    }
}
