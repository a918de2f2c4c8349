//! The rapport plugin development kit: everything a Rust connector needs.
//!
//! A connector is a WebAssembly component that implements the contract in `wit/`
//! (`rapport:connector@0.2.0`). This crate gives it the generated bindings, an HTTP
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

/// The generated bindings for `rapport:connector@0.2.0`. The WASI interfaces its world
/// imports are the `wasip2` crate's, which [`http`] uses too.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/v0.2.0",
        world: "connector",
        pub_export_macro: true,
        default_bindings_module: "rapport_pdk::bindings",
        with: {
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:sockets/network@0.2.12": wasip2::sockets::network,
            "wasi:sockets/instance-network@0.2.12": wasip2::sockets::instance_network,
            "wasi:sockets/ip-name-lookup@0.2.12": wasip2::sockets::ip_name_lookup,
            "wasi:sockets/tcp@0.2.12": wasip2::sockets::tcp,
            "wasi:sockets/tcp-create-socket@0.2.12": wasip2::sockets::tcp_create_socket,
        },
    });
}

pub mod auth;
mod builders;
pub mod checkpoint;
pub mod http;
pub mod limits;
pub mod log;
pub mod people;
pub mod providers;
pub mod time;
pub mod webhook;

pub use bindings::exports::rapport::connector::plugin::Guest as Connector;
pub use bindings::rapport::connector::types::{
    AccountHints, Actor, ApiKeyAuth, Attribute, AttributeValue, Auth, Config, ConfigEntry,
    ConfigKey, Connection, ConnectionScope, ConnectorError, Event, ExternalId, Header, Manifest,
    Money, Oauth2Auth, Page, RateLimit, SharingLevel, Timestamp, WebhookRequest,
};
pub use builders::{ManifestBuilder, OAuth2Builder, event, manifest, oauth2, snippet};

/// Everything a connector usually needs, in one `use`.
pub mod prelude {
    pub use crate::{
        AttributeValue, Config, Connector, ConnectorError, Event, Manifest, Page, WebhookRequest,
        auth, checkpoint, event, http, log, manifest, oauth2, time, webhook,
    };
}

/// Exports a type implementing [`Connector`] as this component's connector.
#[macro_export]
macro_rules! export_connector {
    ($connector:ident) => {
        $crate::bindings::export!($connector with_types_in $crate::bindings);
    };
}
