//! `rapport plugin new <name>`: a connector crate that builds for wasm32-wasip2 and
//! loads on the first try — its source, fixtures for `rapport plugin test`, a README,
//! and the lock file rapport's own connectors build with (so the first build needs no
//! dependency resolution and works offline once the crates are fetched).

use crate::PluginNewArgs;
use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

const CARGO_TOML: &str = include_str!("../templates/connector/Cargo.toml.in");
const LIB_RS: &str = include_str!("../templates/connector/lib.rs.in");
const README: &str = include_str!("../templates/connector/README.md.in");
const FIRST_PAGE: &str = include_str!("../templates/connector/fixtures/first-page.json");
const SECOND_PAGE: &str = include_str!("../templates/connector/fixtures/second-page.json");
/// The versions rapport's reference connectors are built and tested with.
const LOCK: &str = include_str!("../../../plugins/Cargo.lock");

/// Whether `name` may name a connector crate.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        bail!(
            "`{name}` cannot name a connector: use lower-case letters, digits and single `-`, starting with a letter (e.g. `acme-crm`)"
        );
    }
    Ok(())
}

/// `acme-crm` → `AcmeCrm`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The rapport-pdk to build against: given, or found above the current directory.
fn find_pdk(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        let path = path
            .canonicalize()
            .with_context(|| format!("--pdk {}: no such directory", path.display()))?;
        if !path.join("Cargo.toml").exists() {
            bail!("--pdk {}: there is no Cargo.toml there", path.display());
        }
        return Ok(path);
    }
    let here = std::env::current_dir()?;
    for dir in here.ancestors() {
        let candidate = dir.join("crates/rapport-pdk");
        if candidate.join("Cargo.toml").exists() {
            return Ok(candidate.canonicalize()?);
        }
    }
    bail!(
        "cannot find rapport-pdk above {}: run this inside a checkout of rapport, or pass --pdk path/to/rapport/crates/rapport-pdk",
        here.display()
    )
}

/// `to` relative to `from` (both absolute), so the crate can move with its checkout.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for part in &to[common..] {
        path.push(part);
    }
    path
}

pub(crate) fn new_connector(
    args: &PluginNewArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    check_name(&args.name)?;
    let pdk = find_pdk(args.pdk.as_deref())?;
    let dir = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        bail!(
            "{} already exists: choose another --path, or remove it",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir.join("src"))
        .and_then(|()| std::fs::create_dir_all(dir.join("fixtures")))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let absolute = dir.canonicalize()?;
    let file = args.name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", &args.name)
            .replace("{{type}}", &type_name(&args.name))
            .replace("{{file}}", &file)
            .replace("{{env}}", &file.to_uppercase())
            .replace("{{pdk}}", &relative(&absolute, &pdk).display().to_string())
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("Cargo.lock", LOCK.to_owned()),
        ("src/lib.rs", fill(LIB_RS)),
        ("README.md", fill(README)),
        ("fixtures/first-page.json", FIRST_PAGE.to_owned()),
        ("fixtures/second-page.json", SECOND_PAGE.to_owned()),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (name, contents) in files {
        std::fs::write(dir.join(name), contents)
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    writeln!(
        out,
        "Created the connector {} in {}.",
        args.name,
        dir.display()
    )?;
    writeln!(out, "Build it and try it against its fixtures:")?;
    writeln!(out, "  cd {}", dir.display())?;
    writeln!(out, "  cargo build --release --target wasm32-wasip2")?;
    writeln!(
        out,
        "  rapport plugin test target/wasm32-wasip2/release/{file}.wasm --fixtures fixtures"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_types_and_relative_paths() {
        for good in ["acme", "acme-crm", "crm2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Acme", "2crm", "acme_crm", "acme-", "a--b", "acme crm"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(type_name("acme-crm"), "AcmeCrm");
        assert_eq!(
            relative(
                Path::new("/a/b/plugins/x"),
                Path::new("/a/b/crates/rapport-pdk")
            ),
            PathBuf::from("../../crates/rapport-pdk")
        );
    }
}
