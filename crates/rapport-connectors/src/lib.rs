//! The connectors that ship with rapport, compiled into the binary: a configuration
//! names one as `plugin = "builtin:billing-stripe"`, `rapport plugin list` shows them
//! and `rapport plugin export NAME` writes one out as a `.wasm` file to inspect or
//! adapt. The build script compiles them from `plugins/` for wasm32-wasip2.
//!
//! This crate is data only: loading and running a component is the plugin host's.

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}

/// How a configuration names a connector that ships with rapport.
pub const SCHEME: &str = "builtin:";

/// A connector compiled into rapport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Builtin {
    /// Its name, as its manifest gives it and a configuration spells it after
    /// `builtin:`.
    pub name: &'static str,
    /// What it reads, in a line.
    pub summary: &'static str,
    /// The component.
    pub wasm: &'static [u8],
}

impl Builtin {
    /// How a configuration names it: `builtin:<name>`.
    pub fn reference(&self) -> String {
        format!("{SCHEME}{}", self.name)
    }
}

/// Every connector that ships with rapport, by name.
pub const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "billing-stripe",
        summary: "Stripe: subscriptions, invoices and payments, by pull and by webhook",
        wasm: embedded::BILLING_STRIPE,
    },
    Builtin {
        name: "email-imap",
        summary: "Email over IMAP (TLS, STARTTLS): mail from and to clients, by participants",
        wasm: embedded::EMAIL_IMAP,
    },
    Builtin {
        name: "example-feed",
        summary: "A small JSON feed: the template for writing a connector",
        wasm: embedded::EXAMPLE_FEED,
    },
    Builtin {
        name: "gmail",
        summary: "Gmail (OAuth, per person): mail from and to clients, as IMAP gives it, incremental by history",
        wasm: embedded::GMAIL,
    },
    Builtin {
        name: "google-calendar",
        summary: "Google Calendar (OAuth, per person): meetings with clients, recurring ones expanded",
        wasm: embedded::GOOGLE_CALENDAR,
    },
    Builtin {
        name: "outlook-calendar",
        summary: "Outlook calendar (Microsoft 365, OAuth, per person): meetings with clients, by calendarView delta",
        wasm: embedded::OUTLOOK_CALENDAR,
    },
    Builtin {
        name: "outlook-mail",
        summary: "Outlook mail (Microsoft 365, OAuth, per person): mail from and to clients, as IMAP gives it, by delta per folder",
        wasm: embedded::OUTLOOK_MAIL,
    },
    Builtin {
        name: "support-zendesk",
        summary: "Zendesk: tickets, replies, status and priority changes, by pull and by webhook",
        wasm: embedded::SUPPORT_ZENDESK,
    },
];

/// The built-in connector called `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|builtin| builtin.name == name)
}

/// What a `plugin` value names, when it uses the `builtin:` scheme: `None` for a
/// file path, `Some(Err)` for an unknown name (with the names there are).
pub fn resolve(spelled: &str) -> Option<Result<&'static Builtin, UnknownBuiltin>> {
    let name = spelled.strip_prefix(SCHEME)?;
    Some(find(name).ok_or_else(|| UnknownBuiltin {
        name: name.to_owned(),
    }))
}

/// A `builtin:` name that no shipped connector has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{SCHEME}{name}` is not a connector rapport ships; the built-in ones are {}",
    names()
)]
pub struct UnknownBuiltin {
    /// The name asked for.
    pub name: String,
}

fn names() -> String {
    BUILTINS
        .iter()
        .map(|builtin| format!("`{}`", builtin.reference()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_unknown_names_list_the_real_ones() {
        assert_eq!(resolve("plugins/x.wasm"), None);
        assert_eq!(
            resolve("builtin:billing-stripe").unwrap().unwrap().name,
            "billing-stripe"
        );
        let error = resolve("builtin:stripe").unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            "`builtin:stripe` is not a connector rapport ships; the built-in ones are `builtin:billing-stripe`, `builtin:email-imap`, `builtin:example-feed`, `builtin:gmail`, `builtin:google-calendar`, `builtin:outlook-calendar`, `builtin:outlook-mail`, `builtin:support-zendesk`"
        );
    }

    #[test]
    fn every_builtin_is_a_component() {
        for builtin in BUILTINS {
            // The component-model preamble: magic, then version 0x0d and layer 1.
            assert_eq!(
                &builtin.wasm[..8],
                b"\0asm\x0d\0\x01\0",
                "{} is not a component",
                builtin.name
            );
        }
    }
}
