//! `rapport:connector@0.1.0`, frozen: its bindings, and the upgrade of what its guests
//! return into the newest version's types, where it is checked and converted like
//! anything else (`super::current`). 0.2.0 only added to 0.1.0 (auth, the connection,
//! `access-token`), so an upgrade is a field-by-field copy with the additions empty.

use super::current::{self, rapport::connector::host as current_host};
use crate::config::{Grants, WebhookRequest};
use crate::sandbox::Sandbox;
use current::rapport::connector::types as new;
use wasmtime::component::{HasSelf, Linker};

wasmtime::component::bindgen!({
    path: "../../wit/v0.1.0",
    world: "connector",
    exports: { default: async },
});

use rapport::connector::types as old;

pub(crate) const VERSION: &str = "0.1.0";

pub(crate) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    rapport::connector::host::add_to_linker::<Sandbox, HasSelf<Sandbox>>(linker, |sandbox| sandbox)
}

impl rapport::connector::host::Host for Sandbox {
    fn log(&mut self, level: rapport::connector::host::LogLevel, message: String) {
        use current_host::LogLevel as New;
        use rapport::connector::host::LogLevel as Old;
        let level = match level {
            Old::Trace => New::Trace,
            Old::Debug => New::Debug,
            Old::Info => New::Info,
            Old::Warn => New::Warn,
            Old::Error => New::Error,
        };
        current_host::Host::log(self, level, message);
    }
}

impl rapport::connector::types::Host for Sandbox {}

/// The configuration handed to a 0.1.0 plugin: its settings and its own secrets (it
/// knows nothing of connections).
pub(crate) fn config(grants: &Grants) -> old::Config {
    let current = current::config(grants);
    let entries = |entries: Vec<new::ConfigEntry>| {
        entries
            .into_iter()
            .map(|entry| old::ConfigEntry {
                key: entry.key,
                value: entry.value,
            })
            .collect()
    };
    old::Config {
        settings: entries(current.settings),
        secrets: entries(current.secrets),
    }
}

pub(crate) fn webhook_request(request: WebhookRequest) -> old::WebhookRequest {
    old::WebhookRequest {
        method: request.method,
        path: request.path,
        query: request.query,
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| old::Header { name, value })
            .collect(),
        body: request.body,
    }
}

pub(crate) fn manifest(manifest: old::Manifest) -> new::Manifest {
    new::Manifest {
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        event_kinds: manifest.event_kinds,
        config_keys: manifest
            .config_keys
            .into_iter()
            .map(|key| new::ConfigKey {
                name: key.name,
                description: key.description,
                required: key.required,
                secret: key.secret,
            })
            .collect(),
        hosts: manifest.hosts,
        auth: new::Auth::None,
    }
}

pub(crate) fn connector_error(error: old::ConnectorError) -> new::ConnectorError {
    match error {
        old::ConnectorError::Config(text) => new::ConnectorError::Config(text),
        old::ConnectorError::Auth(text) => new::ConnectorError::Auth(text),
        old::ConnectorError::RateLimited(limit) => {
            new::ConnectorError::RateLimited(new::RateLimit {
                retry_after_ms: limit.retry_after_ms,
                message: limit.message,
            })
        }
        old::ConnectorError::Transient(text) => new::ConnectorError::Transient(text),
        old::ConnectorError::Fatal(text) => new::ConnectorError::Fatal(text),
    }
}

pub(crate) fn result<T, U>(
    result: Result<T, old::ConnectorError>,
    upgrade: impl FnOnce(T) -> U,
) -> Result<U, new::ConnectorError> {
    result.map(upgrade).map_err(connector_error)
}

pub(crate) fn page(page: old::Page) -> new::Page {
    new::Page {
        events: events(page.events),
        deleted: page.deleted,
        checkpoint: page.checkpoint,
        more: page.more,
    }
}

pub(crate) fn events(events: Vec<old::Event>) -> Vec<new::Event> {
    events.into_iter().map(event).collect()
}

fn event(event: old::Event) -> new::Event {
    new::Event {
        source_id: event.source_id,
        source_version: event.source_version,
        kind: event.kind,
        occurred_at: event.occurred_at,
        title: event.title,
        summary: event.summary,
        url: event.url,
        actor: event.actor.map(|actor| new::Actor {
            name: actor.name,
            email: actor.email,
        }),
        hints: new::AccountHints {
            external_ids: event
                .hints
                .external_ids
                .into_iter()
                .map(|id| new::ExternalId {
                    system: id.system,
                    id: id.id,
                })
                .collect(),
            emails: event.hints.emails,
            domains: event.hints.domains,
        },
        attributes: event
            .attributes
            .into_iter()
            .map(|attribute| new::Attribute {
                name: attribute.name,
                value: match attribute.value {
                    old::AttributeValue::Text(text) => new::AttributeValue::Text(text),
                    old::AttributeValue::Integer(number) => new::AttributeValue::Integer(number),
                    old::AttributeValue::Float(number) => new::AttributeValue::Float(number),
                    old::AttributeValue::Boolean(flag) => new::AttributeValue::Boolean(flag),
                    old::AttributeValue::Timestamp(micros) => {
                        new::AttributeValue::Timestamp(micros)
                    }
                    old::AttributeValue::Money(money) => new::AttributeValue::Money(new::Money {
                        minor_units: money.minor_units,
                        currency: money.currency,
                    }),
                },
            })
            .collect(),
    }
}
