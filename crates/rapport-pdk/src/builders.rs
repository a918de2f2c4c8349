//! Constructors and small conveniences over the generated types.

use crate::{
    AccountHints, Actor, ApiKeyAuth, Attribute, AttributeValue, Auth, Config, ConfigEntry,
    ConfigKey, ConnectorError, Event, ExternalId, Manifest, Money, Oauth2Auth, Page, Timestamp,
};

/// Starts an event with the fields every event needs; everything else is empty. The
/// title is cut to [`TITLE_CHARS_MAX`](crate::limits::TITLE_CHARS_MAX).
pub fn event(source_id: &str, kind: &str, occurred_at: Timestamp, title: &str) -> Event {
    Event {
        source_id: source_id.to_owned(),
        source_version: 0,
        kind: kind.to_owned(),
        occurred_at,
        title: crate::limits::cut_chars(title, crate::limits::TITLE_CHARS_MAX),
        summary: String::new(),
        url: None,
        actor: None,
        hints: AccountHints {
            external_ids: Vec::new(),
            emails: Vec::new(),
            domains: Vec::new(),
        },
        attributes: Vec::new(),
    }
}

impl Event {
    /// Sets the source version (higher replaces lower).
    pub fn version(mut self, version: i64) -> Self {
        self.source_version = version;
        self
    }

    /// Sets the plain-text summary, cut to
    /// [`SUMMARY_CHARS_MAX`](crate::limits::SUMMARY_CHARS_MAX).
    pub fn summary(mut self, summary: &str) -> Self {
        self.summary = crate::limits::cut_chars(summary, crate::limits::SUMMARY_CHARS_MAX);
        self
    }

    /// Sets the link back to the source.
    pub fn url(mut self, url: &str) -> Self {
        self.url = Some(url.to_owned());
        self
    }

    /// Sets who did it.
    pub fn actor(mut self, name: Option<&str>, email: Option<&str>) -> Self {
        self.actor = Some(Actor {
            name: name.map(str::to_owned),
            email: email.map(str::to_owned),
        });
        self
    }

    /// Adds an external-id hint, e.g. `("stripe", "cus_123")`.
    pub fn external_id(mut self, system: &str, id: &str) -> Self {
        self.hints.external_ids.push(ExternalId {
            system: system.to_owned(),
            id: id.to_owned(),
        });
        self
    }

    /// Adds an email hint.
    pub fn email(mut self, email: &str) -> Self {
        self.hints.emails.push(email.to_owned());
        self
    }

    /// Adds a domain hint.
    pub fn domain(mut self, domain: &str) -> Self {
        self.hints.domains.push(domain.to_owned());
        self
    }

    /// Adds a typed attribute.
    pub fn attribute(mut self, name: &str, value: AttributeValue) -> Self {
        self.attributes.push(Attribute {
            name: name.to_owned(),
            value,
        });
        self
    }

    /// Adds a text attribute, cut to
    /// [`ATTRIBUTE_TEXT_BYTES_MAX`](crate::limits::ATTRIBUTE_TEXT_BYTES_MAX).
    pub fn text(self, name: &str, value: &str) -> Self {
        self.attribute(
            name,
            AttributeValue::Text(crate::limits::cut_bytes(
                value,
                crate::limits::ATTRIBUTE_TEXT_BYTES_MAX,
            )),
        )
    }

    /// Adds a money attribute.
    pub fn money(self, name: &str, minor_units: i64, currency: &str) -> Self {
        self.attribute(
            name,
            AttributeValue::Money(Money {
                minor_units,
                currency: currency.to_uppercase(),
            }),
        )
    }
}

impl Page {
    /// A final page: these events, nothing more pending, no checkpoint change.
    pub fn done(events: Vec<Event>) -> Page {
        Page {
            events,
            deleted: Vec::new(),
            checkpoint: None,
            more: false,
        }
    }

    /// A page that moves the checkpoint, and says whether more is pending.
    pub fn with_checkpoint(events: Vec<Event>, checkpoint: String, more: bool) -> Page {
        Page {
            events,
            deleted: Vec::new(),
            checkpoint: Some(checkpoint),
            more,
        }
    }
}

impl Config {
    /// A setting, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|entry| entry.key == key)
            .map(|entry| entry.value.as_str())
    }

    /// A setting that must be present, or a config error naming it.
    pub fn require(&self, key: &str) -> Result<&str, ConnectorError> {
        self.get(key)
            .filter(|value| !value.trim().is_empty())
            .ok_or_else(|| ConnectorError::Config(format!("the setting `{key}` is required")))
    }

    /// A whole-number setting within `range`, `default` when absent, or a config error
    /// that names the setting and the range.
    pub fn number(
        &self,
        key: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConnectorError> {
        match self.get(key) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|value| range.contains(value))
                .ok_or_else(|| {
                    ConnectorError::Config(format!(
                        "the setting `{key}` is `{text}`; it must be a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ))
                }),
        }
    }

    /// A secret, if present. Never log it.
    pub fn secret(&self, key: &str) -> Option<&str> {
        self.secrets
            .iter()
            .find(|entry| entry.key == key)
            .map(|entry| entry.value.as_str())
    }

    /// A secret that must be present, or a config error naming it (not its value).
    pub fn require_secret(&self, key: &str) -> Result<&str, ConnectorError> {
        self.secret(key)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ConnectorError::Config(format!("the secret `{key}` is required")))
    }
}

/// Builds a [`Manifest`].
#[derive(Debug)]
pub struct ManifestBuilder(Manifest);

/// Starts a manifest with the connector's name, version and one-line description.
pub fn manifest(name: &str, version: &str, description: &str) -> ManifestBuilder {
    ManifestBuilder(Manifest {
        name: name.to_owned(),
        version: version.to_owned(),
        description: description.to_owned(),
        event_kinds: Vec::new(),
        config_keys: Vec::new(),
        hosts: Vec::new(),
        auth: Auth::None,
    })
}

impl ManifestBuilder {
    /// Declares the event kinds the connector emits.
    pub fn emits(mut self, kinds: &[&str]) -> Self {
        self.0
            .event_kinds
            .extend(kinds.iter().map(|kind| (*kind).to_owned()));
        self
    }

    /// Declares a setting.
    pub fn setting(mut self, name: &str, description: &str, required: bool) -> Self {
        self.0.config_keys.push(ConfigKey {
            name: name.to_owned(),
            description: description.to_owned(),
            required,
            secret: false,
        });
        self
    }

    /// Declares a secret.
    pub fn secret(mut self, name: &str, description: &str, required: bool) -> Self {
        self.0.config_keys.push(ConfigKey {
            name: name.to_owned(),
            description: description.to_owned(),
            required,
            secret: true,
        });
        self
    }

    /// Declares a host the connector needs: `host` (port 443), `host:port`, `host:*`
    /// (any port), `*.example.com` (any name under it), or `*` when the host is the
    /// operator's choice alone. A declaration may be filled in from the connector's
    /// settings: `{subdomain}.zendesk.com`, `{host}:{port|993}` (`|` gives a default),
    /// or `{base_url}` for a setting holding a URL (its host and port). The host allows
    /// a connection only if it matches both a declaration here and a grant by the
    /// operator; declare exactly what the connector reaches.
    pub fn needs_host(mut self, host: &str) -> Self {
        self.0.hosts.push(host.to_owned());
        self
    }
}

impl ManifestBuilder {
    /// Declares that the connector authenticates with an API key, read from the secret
    /// `secret` (declare it with [`ManifestBuilder::secret`] too).
    pub fn api_key(mut self, secret: &str, description: &str) -> Self {
        self.0.auth = Auth::ApiKey(ApiKeyAuth {
            secret: secret.to_owned(),
            description: description.to_owned(),
        });
        self
    }

    /// Declares that the connector authenticates with OAuth 2.0: the host runs the
    /// authorization flow and keeps the tokens; the connector asks for a current access
    /// token with [`crate::auth::access_token`] (or [`crate::http::Request::oauth`]).
    pub fn oauth2(mut self, oauth: OAuth2Builder) -> Self {
        self.0.auth = Auth::Oauth2(oauth.0);
        self
    }
}

/// Builds an [`Oauth2Auth`] declaration.
#[derive(Debug)]
pub struct OAuth2Builder(Oauth2Auth);

/// Starts an OAuth 2.0 declaration with the provider's authorization and token
/// endpoints (https URLs, or templates over settings: `{base_url}/oauth/token`).
pub fn oauth2(authorization_endpoint: &str, token_endpoint: &str) -> OAuth2Builder {
    OAuth2Builder(Oauth2Auth {
        authorization_endpoint: authorization_endpoint.to_owned(),
        token_endpoint: token_endpoint.to_owned(),
        revocation_endpoint: None,
        scopes: Vec::new(),
        pkce: false,
        extra_parameters: Vec::new(),
        token_hosts: Vec::new(),
        optional: false,
    })
}

impl OAuth2Builder {
    /// The scopes to ask for.
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.0
            .scopes
            .extend(scopes.iter().map(|scope| (*scope).to_owned()));
        self
    }

    /// The provider takes PKCE (S256).
    pub fn pkce(mut self) -> Self {
        self.0.pkce = true;
        self
    }

    /// Where tokens are revoked (RFC 7009) when a connection is removed.
    pub fn revocation(mut self, endpoint: &str) -> Self {
        self.0.revocation_endpoint = Some(endpoint.to_owned());
        self
    }

    /// An extra parameter of the authorization request (`access_type=offline`).
    pub fn parameter(mut self, key: &str, value: &str) -> Self {
        self.0.extra_parameters.push(ConfigEntry {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        self
    }

    /// A host the access token is sent to: one of the manifest's hosts.
    pub fn token_for(mut self, host: &str) -> Self {
        self.0.token_hosts.push(host.to_owned());
        self
    }

    /// The connector also runs without OAuth, on its settings and secrets (a server
    /// that takes a password): it uses OAuth when a call has a connection
    /// ([`crate::Config::connection`]), which the operator decides by registering a
    /// client for it.
    pub fn optional(mut self) -> Self {
        self.0.optional = true;
        self
    }
}

impl From<ManifestBuilder> for Manifest {
    fn from(builder: ManifestBuilder) -> Manifest {
        builder.0
    }
}

/// The start of `text` as one line (whitespace runs collapsed) of at most `chars_max`
/// characters, ending in `…` when cut: a summary from a ticket, a comment or a mail body.
pub fn snippet(text: &str, chars_max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= chars_max {
        return flat;
    }
    let mut cut: String = flat.chars().take(chars_max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ConfigEntry;

    #[test]
    fn numbers_default_parse_and_name_their_range() {
        let config = Config {
            settings: vec![
                ConfigEntry {
                    key: "page_size".into(),
                    value: " 50 ".into(),
                },
                ConfigEntry {
                    key: "too_big".into(),
                    value: "5000".into(),
                },
            ],
            secrets: Vec::new(),
            connection: None,
        };
        assert_eq!(config.number("page_size", 100, 1..=100).unwrap(), 50);
        assert_eq!(config.number("absent", 7, 1..=100).unwrap(), 7);
        match config.number("too_big", 1, 1..=1000) {
            Err(ConnectorError::Config(message)) => {
                assert!(message.contains("`too_big` is `5000`"), "{message}");
                assert!(message.contains("from 1 to 1000"), "{message}");
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn snippets_are_one_bounded_line() {
        assert_eq!(snippet("  a\r\n\r\n b\tc ", 10), "a b c");
        let cut = snippet(&"word ".repeat(100), 20);
        assert_eq!(cut.chars().count(), 20);
        assert!(cut.ends_with('…'));
        assert_eq!(snippet("ééé", 3), "ééé");
    }

    #[test]
    fn events_build_up() {
        let built = event(
            "evt_1",
            "billing.invoice.paid",
            1_700_000_000_000_000,
            "Paid",
        )
        .version(3)
        .external_id("stripe", "cus_1")
        .email("ap@acme.example")
        .money("amount", 1999, "usd");
        assert_eq!(built.source_version, 3);
        assert_eq!(built.hints.external_ids[0].id, "cus_1");
        assert!(matches!(
            &built.attributes[0].value,
            AttributeValue::Money(Money { minor_units: 1999, currency }) if currency == "USD"
        ));
    }

    #[test]
    fn config_lookups_name_what_is_missing() {
        let config = Config {
            settings: vec![ConfigEntry {
                key: "base_url".into(),
                value: "http://127.0.0.1:9".into(),
            }],
            secrets: vec![ConfigEntry {
                key: "api_key".into(),
                value: "sk_live_hidden".into(),
            }],
            connection: None,
        };
        assert_eq!(config.require("base_url").unwrap(), "http://127.0.0.1:9");
        assert_eq!(config.require_secret("api_key").unwrap(), "sk_live_hidden");
        let missing = config.require("account").unwrap_err();
        assert!(
            matches!(&missing, ConnectorError::Config(message) if message == "the setting `account` is required")
        );
        assert!(!format!("{:?}", config.require_secret("nope").unwrap_err()).contains("sk_live"));
    }

    #[test]
    fn manifests_declare_what_they_need() {
        let manifest: Manifest = manifest("x", "1.0.0", "X")
            .emits(&["note"])
            .setting("base_url", "where", true)
            .secret("api_key", "key", true)
            .needs_host("api.example.com")
            .into();
        assert_eq!(manifest.hosts, ["api.example.com"]);
        assert!(manifest.config_keys[1].secret);
    }
}
