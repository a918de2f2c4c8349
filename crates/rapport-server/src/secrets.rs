//! The key ring that seals secrets at rest (connection tokens), from the environment:
//! `RAPPORT_SECRET_KEY` holds the ring itself, or `RAPPORT_SECRET_KEY_FILE` names a
//! file that does (see `rapport_core::secret` for the format). A node refuses to start
//! when the database holds sealed secrets its ring cannot open, rather than failing
//! later, connection by connection.

use anyhow::Context as _;
use rapport_core::secret::{KeyRing, Sealed};
use rapport_store::{ConnectionKey, Store};

/// The variable holding the key ring.
pub const SECRET_KEY_ENV: &str = "RAPPORT_SECRET_KEY";
/// The variable naming a file holding the key ring.
pub const SECRET_KEY_FILE_ENV: &str = "RAPPORT_SECRET_KEY_FILE";

/// The configured key ring, if any. A ring that is set but malformed is an error that
/// says which variable to fix (never what it holds).
pub fn key_ring_from(env: &dyn Fn(&str) -> Option<String>) -> Result<Option<KeyRing>, String> {
    let (text, from) = match (env(SECRET_KEY_ENV), env(SECRET_KEY_FILE_ENV)) {
        (Some(_), Some(_)) => {
            return Err(format!(
                "both {SECRET_KEY_ENV} and {SECRET_KEY_FILE_ENV} are set; set one"
            ));
        }
        (Some(text), None) => (text, SECRET_KEY_ENV.to_owned()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|error| {
                format!("{SECRET_KEY_FILE_ENV} names {path}, which cannot be read: {error}")
            })?;
            (text, format!("the key file {path}"))
        }
        (None, None) => return Ok(None),
    };
    KeyRing::parse(&text)
        .map(Some)
        .map_err(|error| format!("{from}: {error}"))
}

/// Refuses to go on when the database holds sealed secrets that `keys` cannot open:
/// no ring at all, or one without a key they were sealed with.
pub async fn require_keys(store: &Store, keys: Option<&KeyRing>) -> anyhow::Result<()> {
    let by_key = store
        .sealed_secrets_by_key()
        .await
        .context("reading which keys sealed the stored secrets")?;
    if by_key.is_empty() {
        return Ok(());
    }
    let total: u64 = by_key.values().sum();
    let Some(keys) = keys else {
        anyhow::bail!(
            "the database holds {total} sealed connection token(s), but no secret key is configured: set {SECRET_KEY_ENV} (or {SECRET_KEY_FILE_ENV}) to the key ring they were sealed with ({})",
            key_list(&by_key)
        );
    };
    let missing: Vec<&String> = by_key
        .keys()
        .filter(|id| !keys.holds(id.as_str()))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "the configured secret key ring ({}) lacks key(s) {} that sealed stored connection tokens; add them after the primary key",
            keys.ids().join(", "),
            missing
                .iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn key_list(by_key: &std::collections::BTreeMap<String, u64>) -> String {
    by_key
        .iter()
        .map(|(id, count)| format!("key `{id}`: {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What [`rotate`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Tokens re-sealed under the primary key.
    pub resealed: u64,
    /// Tokens already under it.
    pub current: u64,
    /// Connections whose tokens changed while rotating (already sealed anew).
    pub skipped: u64,
}

/// Re-seals every stored token that is not under the ring's primary key, so older
/// keys can then be retired.
pub async fn rotate(store: &Store, keys: &KeyRing) -> anyhow::Result<Rotation> {
    require_keys(store, Some(keys)).await?;
    let mut rotation = Rotation::default();
    for connection in store.connections(None, None).await? {
        let Some(tokens) = store.connection_tokens(connection.id).await? else {
            continue;
        };
        let stale = |sealed: &Option<Sealed>| sealed.as_ref().is_some_and(|s| !keys.is_current(s));
        if !stale(&tokens.access) && !stale(&tokens.refresh) {
            rotation.current += [&tokens.access, &tokens.refresh]
                .iter()
                .filter(|sealed| sealed.is_some())
                .count() as u64;
            continue;
        }
        let reseal = |sealed: &Option<Sealed>, field: &str| -> anyhow::Result<Option<Sealed>> {
            sealed
                .as_ref()
                .map(|sealed| reseal_one(keys, &tokens.key, sealed, field))
                .transpose()
        };
        let access = reseal(&tokens.access, "access")?;
        let refresh = reseal(&tokens.refresh, "refresh")?;
        let count = [&access, &refresh].iter().filter(|s| s.is_some()).count() as u64;
        if store
            .reseal_connection_tokens(connection.id, tokens.token_version, access, refresh)
            .await?
        {
            rotation.resealed += count;
        } else {
            rotation.skipped += 1;
        }
    }
    Ok(rotation)
}

fn reseal_one(
    keys: &KeyRing,
    key: &ConnectionKey,
    sealed: &Sealed,
    field: &str,
) -> anyhow::Result<Sealed> {
    let context = key.seal_context(field);
    let plain = keys
        .open(sealed, &context)
        .with_context(|| format!("opening the {field} token of connector `{}`", key.connector))?;
    Ok(keys.seal(&plain, &context))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_comes_from_one_variable_or_a_file() {
        let entry = KeyRing::generate_entry("k1");
        let none = |_: &str| None;
        assert!(key_ring_from(&none).unwrap().is_none());
        let direct = |name: &str| (name == SECRET_KEY_ENV).then(|| entry.clone());
        assert_eq!(key_ring_from(&direct).unwrap().unwrap().primary_id(), "k1");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(
            &file,
            format!("{}\n{entry}\n", KeyRing::generate_entry("k2")),
        )
        .unwrap();
        let path = file.display().to_string();
        let from_file = |name: &str| (name == SECRET_KEY_FILE_ENV).then(|| path.clone());
        assert_eq!(
            key_ring_from(&from_file).unwrap().unwrap().primary_id(),
            "k2"
        );

        let both = |_: &str| Some(entry.clone());
        assert!(key_ring_from(&both).unwrap_err().contains("set one"));
        let bad = |name: &str| (name == SECRET_KEY_ENV).then(|| "k1:short".to_owned());
        let error = key_ring_from(&bad).unwrap_err();
        assert!(error.starts_with("RAPPORT_SECRET_KEY: "), "{error}");
        let missing =
            |name: &str| (name == SECRET_KEY_FILE_ENV).then(|| "/nonexistent/keys".to_owned());
        assert!(
            key_ring_from(&missing)
                .unwrap_err()
                .contains("cannot be read")
        );
    }
}
