//! The rapport plugin development kit: everything a Rust connector needs.
//!
//! A connector is a WebAssembly component that implements the contract in `wit/`
//! (`rapport:connector@0.1.0`). This crate gives it the generated bindings, an HTTP
//! client over `wasi:http`, logging into the host's log, time helpers and builders, so
//! that the connector itself is only its mapping.
//!
//! # A complete connector
//!
//! This one reads a JSON list of announcements from `{base_url}/announcements` and puts
//! each on the timeline of the client whose domain it names:
//!
//! ```no_run
//! use rapport_pdk::prelude::*;
//!
//! struct Announcements;
//!
//! #[derive(serde::Deserialize)]
//! struct Item { id: String, domain: String, title: String, published: String }
//!
//! impl Connector for Announcements {
//!     fn describe() -> Manifest {
//!         manifest("announcements", env!("CARGO_PKG_VERSION"), "Client announcements")
//!             .emits(&["announcement.published"])
//!             .setting("base_url", "Where the feed lives", true)
//!             .needs_host("feed.example.com")
//!             .into()
//!     }
//!
//!     fn check(config: Config) -> Result<(), ConnectorError> {
//!         http::get(&format!("{}/announcements", config.require("base_url")?)).send_ok()?;
//!         Ok(())
//!     }
//!
//!     fn sync(config: Config, _checkpoint: Option<String>) -> Result<Page, ConnectorError> {
//!         let url = format!("{}/announcements", config.require("base_url")?);
//!         let items: Vec<Item> = http::get(&url).send_ok()?.json()?;
//!         let mut events = Vec::new();
//!         for item in items {
//!             let at = time::parse_rfc3339(&item.published)?;
//!             events.push(event(&item.id, "announcement.published", at, &item.title)
//!                 .domain(&item.domain));
//!         }
//!         Ok(Page::done(events))
//!     }
//!
//!     fn handle_webhook(_: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
//!         Err(ConnectorError::Config("this connector has no webhooks".into()))
//!     }
//! }
//!
//! rapport_pdk::export_connector!(Announcements);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (a `cdylib` crate), and
//! enable the resulting `.wasm` in `rapport.toml`.
//!
//! # What the host enforces
//! Each call runs in a fresh sandbox with a memory cap and a deadline. The connector
//! sees no files and no environment variables; its network reaches only hosts that it
//! declares with [`ManifestBuilder::needs_host`] *and* the operator grants. Secrets
//! arrive in [`Config`] and must never be logged.

/// The generated bindings for `rapport:connector@0.1.0`.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.1.0",
        world: "connector",
        pub_export_macro: true,
        default_bindings_module: "rapport_pdk::bindings",
    });
}

mod builders;
pub mod checkpoint;
pub mod http;
pub mod limits;
pub mod log;
pub mod time;
pub mod webhook;

pub use bindings::exports::rapport::connector::plugin::Guest as Connector;
pub use bindings::rapport::connector::types::{
    AccountHints, Actor, Attribute, AttributeValue, Config, ConfigEntry, ConfigKey, ConnectorError,
    Event, ExternalId, Header, Manifest, Money, Page, RateLimit, Timestamp, WebhookRequest,
};
pub use builders::{ManifestBuilder, event, manifest, snippet};

/// Everything a connector usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        AttributeValue, Config, Connector, ConnectorError, Event, Manifest, Page, WebhookRequest,
        checkpoint, event, http, log, manifest, time, webhook,
    };
}

/// Exports a type implementing [`Connector`] as this component's connector.
#[macro_export]
macro_rules! export_connector {
    ($connector:ident) => {
        $crate::bindings::export!($connector with_types_in $crate::bindings);
    };
}
