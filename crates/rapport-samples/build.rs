//! Builds the connectors in `plugins/` for wasm32-wasip2 and writes their paths as
//! constants (the pattern of wasmtime's `test-programs/artifacts`). The guests have a
//! workspace and target directory of their own, so this nested cargo never waits on
//! the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every connector crate in `plugins/`, by package name.
const PLUGINS: &[&str] = &[
    "billing-stripe",
    "email-imap",
    "example-feed",
    "hostile",
    "hostile-manifest",
    "support-zendesk",
];
const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let plugins = root.join("plugins");
    for watched in ["plugins", "crates/rapport-pdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    // A stable directory so guest builds are incremental across outer rebuilds.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wasm-plugins");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&plugins)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for plugin in PLUGINS {
        command.args(["--package", plugin]);
    }
    // email-imap's TLS (ring) compiles C for wasm with clang. Without clang the suite
    // still builds, and the TLS tests say they were skipped (and fail under CI=true).
    let tls = has_clang();
    if !tls {
        println!(
            "cargo:warning=clang not found: email-imap is built without TLS and its TLS tests will be skipped (apt-get install clang)"
        );
        command.arg("--no-default-features");
    }
    println!("cargo:rerun-if-env-changed=PATH");
    // CI must build exactly what plugins/Cargo.lock records.
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        command.arg("--locked");
    }
    println!("cargo:rerun-if-env-changed=CI");
    // Do not let the outer build's settings (wrappers, flags, clippy) leak into the
    // guest build.
    for variable in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "CLIPPY_ARGS",
        "__CARGO_FIX_PLZ",
    ] {
        command.env_remove(variable);
    }
    let status = command.status().expect("run cargo for the guest plugins");
    if !status.success() {
        panic!(
            "building the plugins in {} for {TARGET} failed (see above). If the target is missing, install it with `rustup target add {TARGET}`; if ring cannot find clang (email-imap compiles TLS into the plugin), install clang (`apt-get install clang`).",
            plugins.display()
        );
    }

    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("plugins.rs");
    let mut constants = String::new();
    for plugin in PLUGINS {
        let file = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", plugin.replace('-', "_")));
        assert!(exists(&file), "expected {} after building", file.display());
        constants.push_str(&format!(
            "/// Path of the `{plugin}` component.\npub const {}: &str = {:?};\n",
            plugin.replace('-', "_").to_uppercase(),
            file.display().to_string()
        ));
    }
    constants.push_str(&format!(
        "/// Whether `EMAIL_IMAP` was built with TLS (clang was available).\npub const EMAIL_IMAP_TLS: bool = {tls};\n"
    ));
    std::fs::write(out, constants).expect("write plugins.rs");
}

fn exists(path: &Path) -> bool {
    path.is_file()
}

/// Whether a clang that ring's build can use is on the PATH (or one is named for the
/// target explicitly).
fn has_clang() -> bool {
    if std::env::var_os("CC_wasm32_wasip2").is_some() {
        return true;
    }
    Command::new("clang")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}
