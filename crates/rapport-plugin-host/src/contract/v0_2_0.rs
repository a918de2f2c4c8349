//! `rapport:connector@0.2.0`, the newest contract: its bindings, the `host` imports,
//! and the conversions from guest values into host types. Older versions' modules
//! upgrade their guests' values into this version's types, so everything a guest
//! returns is checked and converted here, once.

use crate::config::{ConnectionScope, Grants, TokenError, WebhookRequest};
use crate::error::{ConnectorError, PluginError};
use crate::plugin::{ApiKeyAuth, Auth, ConfigKey, Manifest, OAuth2Auth, SyncPage};
use crate::sandbox::Sandbox;
use chrono::DateTime;
use rapport_core::account::{Domain, EmailAddress, ExternalId};
use rapport_core::sharing::Sharing;
use rapport_core::timeline::{
    AccountHints, Actor, AttributeValue, Attributes, EventKind, KindPattern, Money, NewEvent,
    clean_text,
};
use wasmtime::component::{HasSelf, Linker};

wasmtime::component::bindgen!({
    path: "../../wit/v0.2.0",
    world: "connector",
    imports: { "rapport:connector/host.access-token": async },
    exports: { default: async },
    // The WASI imports are wasmtime's own, linked by the engine for every version.
    with: {
        "wasi:http": wasmtime_wasi_http::p2::bindings::http,
        "wasi": wasmtime_wasi::p2::bindings,
    },
});

use exports::rapport::connector::plugin as guest;
use rapport::connector::host as wit_host;
use rapport::connector::types as wit;

pub(crate) const VERSION: &str = "0.2.0";

pub(crate) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    rapport::connector::host::add_to_linker::<Sandbox, HasSelf<Sandbox>>(linker, |sandbox| sandbox)
}

impl wit_host::Host for Sandbox {
    fn log(&mut self, level: wit_host::LogLevel, message: String) {
        use wit_host::LogLevel;
        let level = match level {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        };
        Sandbox::log(self, level, &message);
    }

    async fn access_token(&mut self) -> Result<wit_host::Token, wit::ConnectorError> {
        match self.fetch_access_token().await {
            Ok(token) => Ok(wit_host::Token {
                token: token.token,
                token_type: token.token_type,
                expires_at: token.expires_at_micros,
            }),
            Err(None) => Err(wit::ConnectorError::Config(
                "this call has no OAuth 2.0 connection: the connector's manifest does not declare `oauth2` auth, or it runs outside a connection".into(),
            )),
            Err(Some(TokenError::NeedsReconnect(reason))) => Err(wit::ConnectorError::Auth(
                format!("the connection must be reconnected by its owner: {reason}"),
            )),
            Err(Some(TokenError::Unavailable(reason))) => {
                Err(wit::ConnectorError::Transient(format!("no access token right now: {reason}")))
            }
        }
    }
}

impl rapport::connector::types::Host for Sandbox {}

/// The configuration handed to the plugin: its settings, its own secrets, and the
/// connection it runs for.
pub(crate) fn config(grants: &Grants) -> wit::Config {
    let entries = |map: &std::collections::BTreeMap<String, String>| {
        map.iter()
            .map(|(key, value)| wit::ConfigEntry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    };
    wit::Config {
        settings: entries(&grants.settings),
        secrets: entries(&grants.secrets),
        connection: grants
            .connection
            .as_ref()
            .map(|connection| wit::Connection {
                id: connection.id.clone(),
                scope: match connection.scope {
                    ConnectionScope::Org => wit::ConnectionScope::Org,
                    ConnectionScope::Person => wit::ConnectionScope::Person,
                },
                owner_email: connection.owner_email.clone(),
                provider_account: connection.provider_account.clone(),
                sharing: connection.sharing.map(|sharing| match sharing {
                    Sharing::Shared => wit::SharingLevel::Shared,
                    Sharing::Metadata => wit::SharingLevel::Metadata,
                    Sharing::Private => wit::SharingLevel::Private,
                }),
            }),
    }
}

pub(crate) fn webhook_request(request: WebhookRequest) -> wit::WebhookRequest {
    wit::WebhookRequest {
        method: request.method,
        path: request.path,
        query: request.query,
        headers: request
            .headers
            .into_iter()
            .map(|(name, value)| wit::Header { name, value })
            .collect(),
        body: request.body,
    }
}

pub(crate) fn manifest(manifest: wit::Manifest) -> Manifest {
    Manifest {
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        event_kinds: manifest.event_kinds,
        config_keys: manifest
            .config_keys
            .into_iter()
            .map(|key| ConfigKey {
                name: key.name,
                description: key.description,
                required: key.required,
                secret: key.secret,
            })
            .collect(),
        hosts: manifest.hosts,
        auth: match manifest.auth {
            wit::Auth::None => Auth::None,
            wit::Auth::ApiKey(key) => Auth::ApiKey(ApiKeyAuth {
                secret: key.secret,
                description: key.description,
            }),
            wit::Auth::Oauth2(oauth) => Auth::OAuth2(OAuth2Auth {
                authorization_endpoint: oauth.authorization_endpoint,
                token_endpoint: oauth.token_endpoint,
                revocation_endpoint: oauth.revocation_endpoint,
                scopes: oauth.scopes,
                pkce: oauth.pkce,
                extra_parameters: oauth
                    .extra_parameters
                    .into_iter()
                    .map(|entry| (entry.key, entry.value))
                    .collect(),
                token_hosts: oauth.token_hosts,
                optional: oauth.optional,
            }),
        },
    }
}

pub(crate) fn connector_error(error: guest::ConnectorError, sandbox: &Sandbox) -> ConnectorError {
    let message = |text: String| crate::contract::error_message(&sandbox.scrub(&text));
    match error {
        wit::ConnectorError::Config(text) => ConnectorError::Config(message(text)),
        wit::ConnectorError::Auth(text) => ConnectorError::Auth(message(text)),
        wit::ConnectorError::RateLimited(limit) => ConnectorError::RateLimited {
            retry_after_ms: limit.retry_after_ms,
            message: message(limit.message),
        },
        wit::ConnectorError::Transient(text) => ConnectorError::Transient(message(text)),
        wit::ConnectorError::Fatal(text) => ConnectorError::Fatal(message(text)),
    }
}

/// Bytes of text a list of events carries, for the returned-bytes cap.
pub(crate) fn text_bytes(events: &[wit::Event]) -> usize {
    events
        .iter()
        .map(|event| {
            let hints = &event.hints;
            event.source_id.len()
                + event.kind.len()
                + event.title.len()
                + event.summary.len()
                + event.url.as_ref().map_or(0, String::len)
                + event.actor.as_ref().map_or(0, |actor| {
                    actor.name.as_ref().map_or(0, String::len)
                        + actor.email.as_ref().map_or(0, String::len)
                })
                + hints
                    .external_ids
                    .iter()
                    .map(|id| id.system.len() + id.id.len())
                    .sum::<usize>()
                + hints.emails.iter().map(String::len).sum::<usize>()
                + hints.domains.iter().map(String::len).sum::<usize>()
                + event
                    .attributes
                    .iter()
                    .map(|attribute| {
                        attribute.name.len()
                            + match &attribute.value {
                                wit::AttributeValue::Text(text) => text.len(),
                                wit::AttributeValue::Money(money) => money.currency.len() + 8,
                                _ => 8,
                            }
                    })
                    .sum::<usize>()
        })
        .sum()
}

pub(crate) fn page(
    connector_id: &str,
    kinds: &[KindPattern],
    page: wit::Page,
) -> Result<SyncPage, PluginError> {
    Ok(SyncPage {
        events: events(connector_id, kinds, page.events)?,
        deleted: page.deleted,
        checkpoint: page.checkpoint,
        more: page.more,
    })
}

/// Converts guest events into the event model, validating each. Display text
/// (titles, summaries, names, text attributes) is cleaned of control characters; hints
/// that do not parse (a malformed address in an email header, say) are dropped, not
/// fatal: they only help matching. Anything else invalid — a kind the manifest does not
/// declare included — fails the call, naming the event.
pub(crate) fn events(
    connector_id: &str,
    kinds: &[KindPattern],
    events: Vec<wit::Event>,
) -> Result<Vec<NewEvent>, PluginError> {
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| convert_event(connector_id, kinds, index, event))
        .collect()
}

/// Converts a webhook delivery's events as [`events`] does, but refuses each invalid
/// event on its own instead of failing the call.
pub(crate) fn webhook_events(
    connector_id: &str,
    kinds: &[KindPattern],
    events: Vec<wit::Event>,
) -> crate::plugin::WebhookEvents {
    let mut delivery = crate::plugin::WebhookEvents::default();
    for (index, event) in events.into_iter().enumerate() {
        match convert_event(connector_id, kinds, index, event) {
            Ok(event) => delivery.events.push(event),
            Err(PluginError::InvalidEvent {
                index,
                source_id,
                reason,
            }) => delivery.refused.push(crate::plugin::RefusedEvent {
                index,
                source_id,
                reason,
            }),
            Err(other) => delivery.refused.push(crate::plugin::RefusedEvent {
                index,
                source_id: String::new(),
                reason: other.to_string(),
            }),
        }
    }
    delivery
}

fn convert_event(
    connector_id: &str,
    kinds: &[KindPattern],
    index: usize,
    event: wit::Event,
) -> Result<NewEvent, PluginError> {
    let source_id = event.source_id.clone();
    let invalid = |reason: String| PluginError::InvalidEvent {
        index,
        source_id: crate::contract::shown_id(&source_id),
        reason,
    };
    let kind = EventKind::parse(&event.kind).map_err(|error| invalid(error.to_string()))?;
    if !kinds.iter().any(|declared| declared.covers(&kind)) {
        return Err(invalid(format!(
            "its kind `{kind}` is not among the kinds the connector declares ({}); a connector may emit only what its manifest lists",
            if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    let occurred_at = DateTime::from_timestamp_micros(event.occurred_at)
        .ok_or_else(|| invalid(format!("occurred-at {} is out of range", event.occurred_at)))?;
    let mut converted = NewEvent::new(
        connector_id,
        event.source_id,
        kind,
        occurred_at,
        clean_text(event.title),
    );
    converted.source_version = event.source_version;
    converted.summary = clean_text(event.summary);
    converted.url = event.url;
    converted.actor = event.actor.map(|actor| Actor {
        name: actor.name.map(clean_text),
        email: actor
            .email
            .and_then(|email| EmailAddress::parse(&email).ok()),
        staff: None,
    });
    converted.hints = AccountHints {
        external_ids: event
            .hints
            .external_ids
            .iter()
            .filter_map(|id| ExternalId::new(&id.system, &id.id).ok())
            .collect(),
        emails: event
            .hints
            .emails
            .iter()
            .filter_map(|email| EmailAddress::parse(email).ok())
            .collect(),
        domains: event
            .hints
            .domains
            .iter()
            .filter_map(|domain| Domain::parse(domain).ok())
            .collect(),
    };
    let mut attributes = Attributes::new();
    for attribute in event.attributes {
        let value = match attribute.value {
            wit::AttributeValue::Text(text) => AttributeValue::Text(clean_text(text)),
            wit::AttributeValue::Integer(number) => AttributeValue::Integer(number),
            wit::AttributeValue::Float(number) => AttributeValue::Float(number),
            wit::AttributeValue::Boolean(flag) => AttributeValue::Bool(flag),
            wit::AttributeValue::Timestamp(micros) => AttributeValue::Timestamp(
                DateTime::from_timestamp_micros(micros).ok_or_else(|| {
                    invalid(format!(
                        "attribute `{}` holds an out-of-range time",
                        attribute.name
                    ))
                })?,
            ),
            wit::AttributeValue::Money(money) => AttributeValue::Money(Money {
                minor_units: money.minor_units,
                currency: money.currency.to_uppercase(),
            }),
        };
        attributes.insert(attribute.name, value);
    }
    converted.attributes = attributes;
    converted
        .validate()
        .map_err(|error| invalid(error.to_string()))?;
    Ok(converted)
}
