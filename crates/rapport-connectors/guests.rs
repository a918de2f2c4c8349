// Shared by the build scripts of rapport-connectors (the connectors that ship in the
// binary) and rapport-testkit (those plus the test-only hostile ones), with `include!`:
// builds connectors in `plugins/` for wasm32-wasip2 (the pattern of wasmtime's
// `test-programs/artifacts`). The guests have a workspace and target directory of
// their own, so this nested cargo never waits on the outer build's lock; the two
// build scripts share that directory, so whichever runs second finds the work done.

/// The target connectors are built for.
const TARGET: &str = "wasm32-wasip2";

/// Builds `plugins` (package names) in release mode and returns each one's `.wasm`.
fn build_guests(plugins: &[&str]) -> Vec<(String, std::path::PathBuf)> {
    use std::path::PathBuf;
    use std::process::Command;

    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let root = manifest_dir
        .join("../..")
        .canonicalize()
        .expect("workspace root");
    let workspace = root.join("plugins");
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
        .current_dir(&workspace)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(&target_dir);
    for plugin in plugins {
        command.args(["--package", plugin]);
    }
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
            "building the connectors in {} for {TARGET} failed (see above). If the target is missing, install it with `rustup target add {TARGET}`.",
            workspace.display()
        );
    }
    plugins
        .iter()
        .map(|plugin| {
            let file = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{}.wasm", plugin.replace('-', "_")));
            assert!(file.is_file(), "expected {} after building", file.display());
            ((*plugin).to_owned(), file)
        })
        .collect()
}

/// `billing-stripe` → `BILLING_STRIPE`.
fn constant_name(plugin: &str) -> String {
    plugin.replace('-', "_").to_uppercase()
}
