//! Web UI passwords: what a usable one is, and how it is kept.
//!
//! A password is stored only as an argon2id PHC string (salt and parameters included),
//! so a stolen database costs an attacker a memory-hard guess per candidate. Length is
//! the one rule: 12 characters or more (NIST SP 800-63B; no composition rules), at most
//! 1,024 so a hash cannot be made to cost unbounded time.

use crate::DomainError;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Fewest characters a password may have.
pub const PASSWORD_CHARS_MIN: usize = 12;
/// Most characters a password may have.
pub const PASSWORD_CHARS_MAX: usize = 1024;

/// Refuses a password that is too short or too long, saying which.
pub fn validate(password: &str) -> Result<(), DomainError> {
    let chars = password.chars().count();
    let reason = if chars < PASSWORD_CHARS_MIN {
        format!("must have at least {PASSWORD_CHARS_MIN} characters (it has {chars})")
    } else if chars > PASSWORD_CHARS_MAX {
        format!("must have at most {PASSWORD_CHARS_MAX} characters (it has {chars})")
    } else {
        return Ok(());
    };
    Err(DomainError::InvalidField {
        field: "password",
        reason,
    })
}

/// The stored form of a valid password: an argon2id PHC string with a fresh salt.
pub fn hash(password: &str) -> Result<String, DomainError> {
    validate(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| DomainError::InvalidField {
            field: "password",
            reason: format!("could not be hashed: {error}"),
        })
}

/// Whether `password` is the one `stored` was made from. A malformed stored string
/// matches nothing.
pub fn verify(password: &str, stored: &str) -> bool {
    if password.chars().count() > PASSWORD_CHARS_MAX {
        return false;
    }
    PasswordHash::new(stored).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spends what [`verify`] spends, for a sign-in whose email matched nobody, so the
/// answer's timing does not tell which emails are staff.
pub fn verify_nobody(password: &str) {
    // A fixed hash of a random password; any password fails against it.
    const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$0ODWq0d1r1jCe0O8y8XoLA$1I6N8XH1BlEfw3JXWAgB4h+F0uVwFa6W0Jr3dYwCNmU";
    let _ = verify(password, DECOY);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_lengths_are_enforced() {
        let stored = hash("correct horse battery").unwrap();
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse battery", &stored));
        assert!(!verify("correct horse battery!", &stored));
        assert!(!verify("correct horse battery", "not a phc string"));
        assert_ne!(
            hash("correct horse battery").unwrap(),
            stored,
            "a fresh salt each time"
        );
        let short = hash("eleven char").unwrap_err().to_string();
        assert!(
            short.contains("at least 12") && short.contains("has 11"),
            "{short}"
        );
        assert!(hash(&"x".repeat(PASSWORD_CHARS_MAX + 1)).is_err());
        assert!(validate(&"é".repeat(12)).is_ok(), "characters, not bytes");
        verify_nobody("anything at all");
    }
}
