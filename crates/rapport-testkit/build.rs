//! Builds every connector in `plugins/` — the shipped ones and the test-only hostile
//! ones — and writes their paths as constants (`plugins.rs`), for tests that load a
//! connector from a file as an operator's configuration would.

include!("../rapport-connectors/guests.rs");

/// Every connector crate in `plugins/`, by package name.
const PLUGINS: &[&str] = &[
    "billing-stripe",
    "email-imap",
    "example-feed",
    "gmail",
    "example-oauth",
    "google-calendar",
    "outlook-calendar",
    "outlook-mail",
    "hostile",
    "hostile-manifest",
    "support-zendesk",
];

fn main() {
    let mut constants = String::new();
    for (plugin, file) in build_guests(PLUGINS) {
        constants.push_str(&format!(
            "/// Path of the `{plugin}` component.\npub const {}: &str = {:?};\n",
            constant_name(&plugin),
            file.display().to_string()
        ));
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"))
        .join("plugins.rs");
    std::fs::write(out, constants).expect("write plugins.rs");
}
