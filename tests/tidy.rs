//! The architecture, checked (as rust-analyzer's `xtask/src/tidy.rs` checks its own):
//! what ARCHITECTURE.md says about where things live is held here, so a change that
//! breaks it fails the suite instead of waiting for a reviewer to notice.
//!
//! - every Rust source file opens with a `//!` header saying what it is for;
//! - each heavy dependency has one home among the product crates: sqlx in the store,
//!   wasmtime in the plugin host, axum and hyper in the server (the harness crates —
//!   bench, testkit, these tests — may use them to measure and to stand in for
//!   upstreams);
//! - limits are named with their unit or bound last (`_MAX`, `_MIN`, `_MS`, `_BYTES`);
//! - each crate has at most one integration test binary, so the suite links once per
//!   crate.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace is above tests/")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != ".git" && name != "node_modules" {
                rust_files(&path, found);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let root = workspace();
    let mut found = Vec::new();
    for dir in ["crates", "tests", "plugins"] {
        rust_files(&root.join(dir), &mut found);
    }
    found.sort();
    assert!(
        found.len() > 100,
        "found only {} sources: is the walk broken?",
        found.len()
    );
    found
}

fn shown(path: &Path) -> String {
    path.strip_prefix(workspace())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Files that cannot have an inner header, and why.
const HEADERLESS: [(&str, &str); 1] = [(
    "crates/rapport-connectors/guests.rs",
    "it is pasted into build scripts with `include!`, where `//!` cannot stand; its `//` header says what it is",
)];

#[test]
fn every_source_file_opens_with_a_header() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|path| !HEADERLESS.iter().any(|(file, _)| shown(path) == *file))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| shown(&path))
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` header saying what they are for:\n{}",
        missing.join("\n")
    );
}

/// The product crates and the heavy dependencies only one of them may have.
#[test]
fn heavy_dependencies_have_one_home() {
    const HOMES: [(&str, &str); 6] = [
        ("sqlx", "rapport-store"),
        ("wasmtime", "rapport-plugin-host"),
        ("wasmtime-wasi", "rapport-plugin-host"),
        ("wasmtime-wasi-http", "rapport-plugin-host"),
        ("axum", "rapport-server"),
        ("hyper", "rapport-server"),
    ];
    // Crates that measure or stand in for the outside world, not the product.
    const HARNESSES: [&str; 3] = ["rapport-bench", "rapport-testkit", "rapport-e2e"];
    let root = workspace();
    let mut wrong = Vec::new();
    let mut crates = 0;
    for entry in std::fs::read_dir(root.join("crates")).unwrap().flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        crates += 1;
        let name = package_name(&text);
        if HARNESSES.contains(&name.as_str()) {
            continue;
        }
        for dependency in dependencies(&text) {
            for (heavy, home) in HOMES {
                if dependency == heavy && name != home {
                    wrong.push(format!(
                        "{name} depends on {heavy}, which belongs in {home}"
                    ));
                }
            }
        }
        // And no source names one without depending on it (through a re-export).
        let mut files = Vec::new();
        rust_files(&entry.path().join("src"), &mut files);
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap_or_default();
            for (heavy, home) in HOMES {
                let path = format!("{}::", heavy.replace('-', "_"));
                if name != home && source.contains(&path) {
                    wrong.push(format!(
                        "{} uses {heavy}, which belongs in {home}",
                        shown(&file)
                    ));
                }
            }
        }
    }
    assert!(crates >= 8, "found only {crates} crates");
    wrong.sort();
    wrong.dedup();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn package_name(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|line| line.strip_prefix("name = "))
        .map(|name| name.trim_matches('"').to_owned())
        .expect("a [package] name")
}

/// The names under `[dependencies]` (not dev- or build-dependencies: a product crate
/// may test against anything).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && let Some((name, _)) = line.split_once('=') {
            let name = name.trim();
            if !name.is_empty() && !name.starts_with('#') {
                names.push(name.split('.').next().unwrap().to_owned());
            }
        }
    }
    names
}

/// Words in a constant's name that make it a limit, and the endings that say its unit.
#[test]
fn limits_are_named_with_their_unit_last() {
    const TIME_WORDS: [&str; 7] = [
        "TIMEOUT", "DEADLINE", "INTERVAL", "DELAY", "TTL", "GRACE", "BACKOFF",
    ];
    const TIME_UNITS: [&str; 6] = ["_US", "_MS", "_SECONDS", "_MINUTES", "_HOURS", "_DAYS"];
    const INTEGERS: [&str; 10] = [
        "u8", "u16", "u32", "u64", "usize", "i8", "i16", "i32", "i64", "isize",
    ];
    let mut wrong = Vec::new();
    for path in sources() {
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        for (number, line) in source.lines().enumerate() {
            let Some((name, kind)) = constant(line) else {
                continue;
            };
            let words: Vec<&str> = name.split('_').collect();
            let at = format!("{}:{}", shown(&path), number + 1);
            // A bound is the last word: `EVENT_BYTES_MAX`, not `MAX_EVENT_BYTES`.
            for bound in ["MAX", "MIN"] {
                if words.contains(&bound) && words.last() != Some(&bound) {
                    wrong.push(format!(
                        "{at}: `{name}` is a limit: end it with `_{bound}` (e.g. `{}_{bound}`)",
                        words
                            .iter()
                            .filter(|word| **word != bound)
                            .copied()
                            .collect::<Vec<_>>()
                            .join("_")
                    ));
                }
            }
            // A bare number of time says its unit; a `Duration` carries its own.
            let bare = INTEGERS.contains(&kind);
            if bare
                && words.iter().any(|word| TIME_WORDS.contains(word))
                && !TIME_UNITS
                    .iter()
                    .any(|unit| name.ends_with(unit) || name.contains(&format!("{unit}_")))
            {
                wrong.push(format!(
                    "{at}: `{name}` is a number of time: end it with its unit (`_MS`, `_SECONDS`, ...)"
                ));
            }
            if bare && words.contains(&"SIZE") {
                wrong.push(format!(
                    "{at}: `{name}`: say what the size counts (`_BYTES`, or the items, e.g. `_EVENTS`)"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The name and type of a `const` or `static` declared on `line`, if any.
fn constant(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let line = line
        .strip_prefix("pub(crate) ")
        .or_else(|| line.strip_prefix("pub(super) "))
        .or_else(|| line.strip_prefix("pub "))
        .unwrap_or(line);
    let rest = line
        .strip_prefix("const ")
        .or_else(|| line.strip_prefix("static "))?;
    let (name, rest) = rest.split_once(':')?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return None;
    }
    let kind = rest.split('=').next()?.trim();
    Some((name, kind))
}

#[test]
fn each_crate_has_one_integration_test_binary() {
    let root = workspace();
    let mut packages: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    packages.push(root.join("tests"));
    let mut wrong = Vec::new();
    for package in packages {
        let Ok(manifest) = std::fs::read_to_string(package.join("Cargo.toml")) else {
            continue;
        };
        let declared = manifest.matches("[[test]]").count();
        // Cargo's own discovery: each `tests/*.rs` and each `tests/*/main.rs`.
        let mut discovered = 0;
        if let Ok(entries) = std::fs::read_dir(package.join("tests")) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "rs") || path.join("main.rs").is_file()
                {
                    discovered += 1;
                }
            }
        }
        let binaries = if manifest.contains("autotests = false") {
            declared
        } else {
            declared + discovered
        };
        if binaries > 1 {
            wrong.push(format!(
                "{} has {binaries} integration test binaries: make them modules of one (`tests/it/main.rs`)",
                shown(&package)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
