//! Builds the connectors that ship with rapport and embeds them: `builtins.rs` holds
//! each one's bytes (`include_bytes!`), so an installed `rapport` needs no build tree.

include!("guests.rs");

/// The connectors rapport ships, by package name. The hostile test plugins are not
/// among them: rapport-testkit builds those.
const SHIPPED: &[&str] = &[
    "billing-stripe",
    "email-imap",
    "example-feed",
    "gmail",
    "google-calendar",
    "outlook-calendar",
    "outlook-mail",
    "support-zendesk",
];

fn main() {
    let built = build_guests(SHIPPED);
    let mut constants = String::new();
    for (plugin, file) in &built {
        constants.push_str(&format!(
            "/// The `{plugin}` component.\npub(crate) const {}: &[u8] = include_bytes!({:?});\n",
            constant_name(plugin),
            file.display().to_string()
        ));
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"))
        .join("builtins.rs");
    std::fs::write(out, constants).expect("write builtins.rs");
}
