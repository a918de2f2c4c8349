//! Loaded plugins and the connectors bound to them.

use crate::config::{AccessToken, Grants, TokenError, WebhookRequest};
use crate::contract::{self, current, v0_1_0, v0_2_0};
use crate::engine::{EPOCH_TICK_MS, PluginHost};
use crate::error::ConnectorError;
use crate::error::{PluginError, Result};
use crate::limits::*;
use crate::network::{HostPattern, HostTemplate, NameGrants, NetworkPolicy};
use crate::sandbox::Sandbox;
use rapport_core::timeline::{KindPattern, NewEvent, validate_connector_id};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::Component;
use wasmtime::{Store, Trap, UpdateDeadline};

/// Contract versions this build runs, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[v0_1_0::VERSION, v0_2_0::VERSION];

/// Grace the host allows past a call's deadline before abandoning it outright — for
/// a plugin blocked inside a host call (network I/O), which epochs cannot interrupt.
const HOST_TIMEOUT_GRACE_MS: u64 = 250;
/// What a refused webhook delivery is told to wait before trying again.
const BUSY_RETRY_AFTER_MS: u64 = 5_000;
/// How many deliveries may wait for one connector's call slots, per slot: beyond it
/// they are refused at once rather than held (with their bodies) in memory.
const WAITING_PER_SLOT_MAX: u32 = 4;

/// The contract version a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractVersion {
    /// `rapport:connector@0.1.0`.
    V0_1_0,
    /// `rapport:connector@0.2.0`: auth declared, access tokens from the host.
    V0_2_0,
}

impl ContractVersion {
    /// The version as text.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractVersion::V0_1_0 => v0_1_0::VERSION,
            ContractVersion::V0_2_0 => v0_2_0::VERSION,
        }
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Its name.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// One line about it.
    pub description: String,
    /// The event kinds it emits.
    pub event_kinds: Vec<String>,
    /// The settings and secrets it understands.
    pub config_keys: Vec<ConfigKey>,
    /// The hosts it needs (`*` when the operator chooses).
    pub hosts: Vec<String>,
    /// How it authenticates (0.1.0 plugins: [`Auth::None`]).
    pub auth: Auth,
}

/// How a plugin authenticates to its source.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// Nothing beyond its settings and secrets.
    #[default]
    None,
    /// A key, passed as one of its secrets.
    ApiKey(ApiKeyAuth),
    /// OAuth 2.0, authorization code grant; the host holds the tokens.
    OAuth2(OAuth2Auth),
}

/// An API key a plugin needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyAuth {
    /// The secret that carries it (one of the declared configuration keys).
    pub secret: String,
    /// What the person is asked for.
    pub description: String,
}

/// A plugin's OAuth 2.0 provider, as its manifest declares it. Endpoints may be
/// templates over settings, like hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Auth {
    /// Where the person is sent to grant access.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// RFC 7009 revocation, if the provider has it.
    pub revocation_endpoint: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Whether to use PKCE (S256).
    pub pkce: bool,
    /// Extra parameters of the authorization request.
    pub extra_parameters: Vec<(String, String)>,
    /// The hosts the access token is for (each one of the manifest's hosts).
    pub token_hosts: Vec<String>,
    /// Whether the plugin also runs without OAuth, on its settings and secrets: the
    /// operator chooses by registering a client for it, or not.
    pub optional: bool,
}

/// One configuration key a plugin understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Whether it must be given.
    pub required: bool,
    /// Whether it is a secret.
    pub secret: bool,
}

/// One page of a sync, converted and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncPage {
    /// The events, ready to match and store.
    pub events: Vec<NewEvent>,
    /// Source ids deleted at the source.
    pub deleted: Vec<String>,
    /// The checkpoint to store with this page.
    pub checkpoint: Option<String>,
    /// Whether to call `sync` again at once.
    pub more: bool,
}

/// A compiled plugin whose contract version and manifest are known. Cheap to clone.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<PluginInner>,
}

struct PluginInner {
    host: PluginHost,
    name: String,
    version: ContractVersion,
    bindings: Bindings,
    manifest: Manifest,
    /// The manifest's event kinds, parsed: what its events are checked against.
    kinds: Vec<KindPattern>,
    /// The manifest's hosts, parsed: filled in from each connector's settings.
    hosts: Vec<HostTemplate>,
}

/// A plugin's pre-instantiated component, typed by its contract version.
enum Bindings {
    V0_1_0(v0_1_0::ConnectorPre<Sandbox>),
    V0_2_0(v0_2_0::ConnectorPre<Sandbox>),
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("version", &self.inner.version)
            .field("manifest", &self.inner.manifest)
            .finish()
    }
}

/// Reads the contract version from the component's exports
/// (`rapport:connector/plugin@X.Y.Z`).
fn contract_version(
    host: &PluginHost,
    name: &str,
    component: &Component,
) -> Result<ContractVersion> {
    let engine = &host.inner.engine;
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(export, _)| export.to_owned())
        .collect();
    let prefix = format!("{}/plugin@", contract::PACKAGE);
    let Some(found) = exports
        .iter()
        .find_map(|export| export.strip_prefix(&prefix))
    else {
        return Err(PluginError::NotAConnector {
            name: name.to_owned(),
            exports,
        });
    };
    match found {
        v0_1_0::VERSION => Ok(ContractVersion::V0_1_0),
        v0_2_0::VERSION => Ok(ContractVersion::V0_2_0),
        other => Err(PluginError::UnsupportedVersion {
            name: name.to_owned(),
            found: other.to_owned(),
            supported: SUPPORTED_VERSIONS.iter().map(|v| v.to_string()).collect(),
        }),
    }
}

impl Plugin {
    pub(crate) async fn new(host: PluginHost, name: &str, component: Component) -> Result<Plugin> {
        let version = contract_version(&host, name, &component)?;
        let instantiate_error = |error: wasmtime::Error| PluginError::Instantiate {
            name: name.to_owned(),
            message: format!("{error:#}"),
        };
        let pre = host
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(instantiate_error)?;
        let bindings = match version {
            ContractVersion::V0_1_0 => {
                Bindings::V0_1_0(v0_1_0::ConnectorPre::new(pre).map_err(instantiate_error)?)
            }
            ContractVersion::V0_2_0 => {
                Bindings::V0_2_0(v0_2_0::ConnectorPre::new(pre).map_err(instantiate_error)?)
            }
        };
        let mut plugin = Plugin {
            inner: Arc::new(PluginInner {
                host,
                name: name.to_owned(),
                version,
                bindings,
                manifest: Manifest {
                    name: String::new(),
                    version: String::new(),
                    description: String::new(),
                    event_kinds: Vec::new(),
                    config_keys: Vec::new(),
                    hosts: Vec::new(),
                    auth: Auth::None,
                },
                kinds: Vec::new(),
                hosts: Vec::new(),
            }),
        };
        // `describe` runs like any call, in a sandbox with no network.
        let manifest = {
            let describer = Connector {
                plugin: plugin.clone(),
                grants: Arc::new(Grants {
                    connector_id: "describe".into(),
                    ..Grants::default()
                }),
                policy: Arc::new(NetworkPolicy::deny_all()),
                slots: Arc::new(CallSlots::new(1)),
            };
            match describer.run(Call::Describe).await? {
                Outcome::Manifest(manifest) => *manifest,
                _ => unreachable!("describe returns a manifest"),
            }
        };
        let (kinds, hosts) = validate_manifest(name, &manifest)?;
        let inner =
            Arc::get_mut(&mut plugin.inner).expect("the describer has finished with its clone");
        inner.manifest = manifest;
        inner.kinds = kinds;
        inner.hosts = hosts;
        Ok(plugin)
    }

    /// Where the plugin came from.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The contract version it implements.
    pub fn contract_version(&self) -> ContractVersion {
        self.inner.version
    }

    /// What it says about itself.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }

    /// The hosts this plugin declares, filled in from `settings`: what a connector
    /// configured with them may reach (before the operator's grants narrow it).
    /// Declarations whose settings are not set are left out.
    pub fn declared_hosts(
        &self,
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<HostPattern>, String> {
        let mut declared = Vec::new();
        for template in &self.inner.hosts {
            if let Some(pattern) = template.resolve(settings)? {
                declared.push(pattern);
            }
        }
        Ok(declared)
    }

    /// The plugin's OAuth 2.0 declaration with its endpoints filled in from
    /// `settings` (`{base_url}/oauth/token`, `{tenant|common}`), or `None` when it does
    /// not authenticate with OAuth 2.0. An endpoint whose setting is missing, or that
    /// does not come out an http(s) URL, is an error naming it.
    pub fn oauth_endpoints(
        &self,
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<OAuth2Auth>, String> {
        let Auth::OAuth2(declared) = &self.inner.manifest.auth else {
            return Ok(None);
        };
        let fill = |what: &str, template: &str| -> Result<String, String> {
            let filled = fill_template(template, settings).map_err(|setting| {
                format!("its OAuth {what} `{template}` needs the setting `{setting}`")
            })?;
            if !(filled.starts_with("https://") || filled.starts_with("http://")) {
                return Err(format!(
                    "its OAuth {what} `{template}` comes out as `{filled}`, which is not an http(s) URL"
                ));
            }
            Ok(filled)
        };
        Ok(Some(OAuth2Auth {
            authorization_endpoint: fill(
                "authorization endpoint",
                &declared.authorization_endpoint,
            )?,
            token_endpoint: fill("token endpoint", &declared.token_endpoint)?,
            revocation_endpoint: declared
                .revocation_endpoint
                .as_deref()
                .map(|endpoint| fill("revocation endpoint", endpoint))
                .transpose()?,
            scopes: fill_scopes(&declared.scopes, settings)?,
            ..declared.clone()
        }))
    }

    /// Binds the plugin to one configured connector.
    pub fn connector(&self, grants: Grants) -> Result<Connector> {
        validate_connector_id(&grants.connector_id).map_err(|error| {
            PluginError::InvalidManifest {
                name: self.inner.name.clone(),
                reason: error.to_string(),
            }
        })?;
        let invalid = |reason: String| PluginError::InvalidManifest {
            name: format!("connector `{}`", grants.connector_id),
            reason,
        };
        if grants.tokens.is_some() && !matches!(self.inner.manifest.auth, Auth::OAuth2(_)) {
            return Err(invalid(format!(
                "it is given OAuth 2.0 tokens, but its plugin `{}` does not declare OAuth 2.0 auth",
                self.inner.manifest.name
            )));
        }
        let declared = self.declared_hosts(&grants.settings).map_err(invalid)?;
        let policy = NetworkPolicy::new(
            declared,
            &grants.allowed_hosts,
            grants.allow_private_networks,
        )
        .map_err(invalid)?;
        let slots = self.inner.host.inner.config.connector_calls_max.max(1);
        Ok(Connector {
            plugin: self.clone(),
            grants: Arc::new(grants),
            policy: Arc::new(policy),
            slots: Arc::new(CallSlots::new(slots)),
        })
    }
}

/// Checks a manifest against the contract's rules and limits; returns its kinds and
/// hosts, parsed.
fn validate_manifest(
    name: &str,
    manifest: &Manifest,
) -> Result<(Vec<KindPattern>, Vec<HostTemplate>)> {
    let invalid = |reason: String| PluginError::InvalidManifest {
        name: name.to_owned(),
        reason,
    };
    let text = |field: &str, value: &str, chars_max: usize| {
        let chars = value.chars().count();
        if chars > chars_max {
            return Err(invalid(format!(
                "its {field} has {chars} characters; at most {chars_max} are allowed"
            )));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid(format!("its {field} contains control characters")));
        }
        Ok(())
    };
    if manifest.name.trim().is_empty() {
        return Err(invalid("its name is empty".into()));
    }
    text("name", &manifest.name, MANIFEST_NAME_CHARS_MAX)?;
    text("version", &manifest.version, MANIFEST_VERSION_CHARS_MAX)?;
    text(
        "description",
        &manifest.description,
        MANIFEST_DESCRIPTION_CHARS_MAX,
    )?;
    let count = |field: &str, count: usize, max: usize| {
        if count > max {
            return Err(invalid(format!(
                "it declares {count} {field}; at most {max} are allowed"
            )));
        }
        Ok(())
    };
    count(
        "event kinds",
        manifest.event_kinds.len(),
        MANIFEST_KINDS_MAX,
    )?;
    count(
        "configuration keys",
        manifest.config_keys.len(),
        MANIFEST_CONFIG_KEYS_MAX,
    )?;
    count("hosts", manifest.hosts.len(), MANIFEST_HOSTS_MAX)?;
    let kinds = manifest
        .event_kinds
        .iter()
        .map(|kind| KindPattern::parse(kind).map_err(|error| invalid(error.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let mut keys = BTreeSet::new();
    for key in &manifest.config_keys {
        let name_ok = !key.name.is_empty()
            && key.name.len() <= CONFIG_KEY_NAME_BYTES_MAX
            && key
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(invalid(format!(
                "configuration key `{}` must be 1-{CONFIG_KEY_NAME_BYTES_MAX} lower-case letters, digits or `_`",
                key.name.chars().take(80).collect::<String>().escape_debug()
            )));
        }
        if !keys.insert(key.name.as_str()) {
            return Err(invalid(format!(
                "configuration key `{}` is declared twice",
                key.name
            )));
        }
        text(
            &format!("description of `{}`", key.name),
            &key.description,
            CONFIG_KEY_DESCRIPTION_CHARS_MAX,
        )?;
    }
    let mut hosts = Vec::new();
    for spelled in &manifest.hosts {
        let template = HostTemplate::parse(spelled).map_err(invalid)?;
        for setting in template.settings() {
            match manifest.config_keys.iter().find(|key| key.name == setting) {
                Some(key) if !key.secret => {}
                Some(_) => {
                    return Err(invalid(format!(
                        "host `{spelled}` reads `{setting}`, which is a secret; hosts may only be templated from settings"
                    )));
                }
                None => {
                    return Err(invalid(format!(
                        "host `{spelled}` reads the setting `{setting}`, which it does not declare"
                    )));
                }
            }
        }
        hosts.push(template);
    }
    validate_auth(manifest).map_err(invalid)?;
    Ok((kinds, hosts))
}

/// Parameters of an authorization request that the host sets itself: a manifest may
/// not override them.
const OAUTH_RESERVED_PARAMETERS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

/// `template` with each `{setting}` (or `{setting|default}`) replaced by its value;
/// the name of a setting that is missing (and has no default) otherwise.
fn fill_template(
    template: &str,
    settings: &std::collections::BTreeMap<String, String>,
) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(rest[open..].to_owned());
        };
        let inside = &rest[open + 1..open + close];
        let (name, default) = match inside.split_once('|') {
            Some((name, default)) => (name, Some(default)),
            None => (inside, None),
        };
        match settings
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
            .or(default)
        {
            Some(value) => out.push_str(value.trim_end_matches('/')),
            None => return Err(name.to_owned()),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a manifest's `auth` against the contract.
fn validate_auth(manifest: &Manifest) -> std::result::Result<(), String> {
    match &manifest.auth {
        Auth::None => Ok(()),
        Auth::ApiKey(key) => {
            match manifest.config_keys.iter().find(|k| k.name == key.secret) {
                Some(declared) if declared.secret => {}
                Some(_) => {
                    return Err(format!(
                        "its API key is read from `{}`, which is a setting; declare it with `secret: true`",
                        key.secret
                    ));
                }
                None => {
                    return Err(format!(
                        "its API key is read from the secret `{}`, which it does not declare",
                        key.secret
                            .chars()
                            .take(80)
                            .collect::<String>()
                            .escape_debug()
                    ));
                }
            }
            let chars = key.description.chars().count();
            if chars > CONFIG_KEY_DESCRIPTION_CHARS_MAX
                || key.description.chars().any(char::is_control)
            {
                return Err(format!(
                    "its API key's description must be at most {CONFIG_KEY_DESCRIPTION_CHARS_MAX} characters without control characters"
                ));
            }
            Ok(())
        }
        Auth::OAuth2(oauth) => {
            let endpoints = [
                (
                    "authorization endpoint",
                    Some(&oauth.authorization_endpoint),
                ),
                ("token endpoint", Some(&oauth.token_endpoint)),
                ("revocation endpoint", oauth.revocation_endpoint.as_ref()),
            ];
            for (what, endpoint) in endpoints {
                if let Some(endpoint) = endpoint {
                    validate_endpoint(manifest, what, endpoint)?;
                }
            }
            if oauth.scopes.len() > OAUTH_SCOPES_MAX {
                return Err(format!(
                    "it asks for {} OAuth scopes; at most {OAUTH_SCOPES_MAX} are allowed",
                    oauth.scopes.len()
                ));
            }
            for scope in &oauth.scopes {
                if let Some(setting) = scope_setting(scope) {
                    match manifest.config_keys.iter().find(|key| key.name == setting) {
                        Some(key) if !key.secret => continue,
                        _ => {
                            return Err(format!(
                                "its OAuth scope `{scope}` stands for the setting `{setting}`, which it does not declare as a setting"
                            ));
                        }
                    }
                }
                if !is_scope_token(scope) {
                    return Err(format!(
                        "OAuth scope `{}` must be 1-{OAUTH_SCOPE_BYTES_MAX} printable ASCII characters without spaces, quotes or backslashes (RFC 6749, section 3.3)",
                        scope.chars().take(80).collect::<String>().escape_debug()
                    ));
                }
            }
            if oauth.extra_parameters.len() > OAUTH_EXTRA_PARAMETERS_MAX {
                return Err(format!(
                    "it sets {} extra authorization parameters; at most {OAUTH_EXTRA_PARAMETERS_MAX} are allowed",
                    oauth.extra_parameters.len()
                ));
            }
            for (key, value) in &oauth.extra_parameters {
                if key.is_empty() || key.len() > 64 || value.len() > 512 {
                    return Err(
                        "an extra authorization parameter must have a name of 1-64 bytes and a value of at most 512".into(),
                    );
                }
                if OAUTH_RESERVED_PARAMETERS.contains(&key.as_str()) {
                    return Err(format!(
                        "the extra authorization parameter `{key}` is set by the host; remove it from the manifest"
                    ));
                }
            }
            if oauth.token_hosts.is_empty() {
                return Err(
                    "its OAuth access token is for no host: list in `token-hosts` the hosts it is sent to".into(),
                );
            }
            if oauth.token_hosts.len() > OAUTH_TOKEN_HOSTS_MAX {
                return Err(format!(
                    "its OAuth access token is for {} hosts; at most {OAUTH_TOKEN_HOSTS_MAX} are allowed",
                    oauth.token_hosts.len()
                ));
            }
            for host in &oauth.token_hosts {
                if !manifest.hosts.contains(host) {
                    return Err(format!(
                        "its OAuth access token is for `{}`, which is not one of the hosts it declares ({}); the token may go only where the connector may",
                        host.chars().take(300).collect::<String>().escape_debug(),
                        manifest.hosts.join(", ")
                    ));
                }
            }
            Ok(())
        }
    }
}

/// `scopes` with each whole-setting scope (`{oauth_scopes}`) replaced by the
/// space-separated scopes its setting holds (none, if the setting is unset).
fn fill_scopes(
    scopes: &[String],
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let mut filled = Vec::with_capacity(scopes.len());
    for scope in scopes {
        match scope_setting(scope) {
            Some(setting) => {
                for token in settings
                    .get(setting)
                    .map(String::as_str)
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    if !is_scope_token(token) {
                        return Err(format!(
                            "the setting `{setting}` holds the OAuth scope `{}`, which must be printable ASCII without quotes or backslashes (RFC 6749, section 3.3)",
                            token.chars().take(80).collect::<String>().escape_debug()
                        ));
                    }
                    filled.push(token.to_owned());
                }
            }
            None => filled.push(scope.clone()),
        }
    }
    Ok(filled)
}

/// The setting a whole-setting scope (`{oauth_scopes}`) names.
fn scope_setting(scope: &str) -> Option<&str> {
    scope
        .strip_prefix('{')?
        .strip_suffix('}')
        .filter(|name| !name.is_empty() && !name.contains(['{', '}', '|']))
}

/// RFC 6749 section 3.3: a scope token is printable ASCII without space, `"` or `\`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= OAUTH_SCOPE_BYTES_MAX
        && scope
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// An OAuth endpoint is an https URL, or a template whose `{placeholders}` are declared
/// settings (`{base_url}/oauth/token`, for a provider whose address is configured).
fn validate_endpoint(
    manifest: &Manifest,
    what: &str,
    endpoint: &str,
) -> std::result::Result<(), String> {
    if endpoint.len() > OAUTH_ENDPOINT_BYTES_MAX
        || endpoint.chars().any(|c| c.is_control() || c == ' ')
    {
        return Err(format!(
            "its OAuth {what} must be at most {OAUTH_ENDPOINT_BYTES_MAX} bytes without spaces or control characters"
        ));
    }
    let mut rest = endpoint;
    let mut placeholders = Vec::new();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(format!(
                "its OAuth {what} `{endpoint}` has an unclosed `{{`"
            ));
        };
        let inside = &rest[open + 1..open + close];
        placeholders.push(inside.split('|').next().unwrap_or_default().to_owned());
        rest = &rest[open + close + 1..];
    }
    for setting in &placeholders {
        match manifest.config_keys.iter().find(|key| &key.name == setting) {
            Some(key) if !key.secret => {}
            Some(_) => {
                return Err(format!(
                    "its OAuth {what} reads `{setting}`, which is a secret; endpoints may only be templated from settings"
                ));
            }
            None => {
                return Err(format!(
                    "its OAuth {what} reads the setting `{setting}`, which it does not declare"
                ));
            }
        }
    }
    if !endpoint.starts_with("https://") && !endpoint.starts_with('{') {
        return Err(format!(
            "its OAuth {what} `{endpoint}` must be an https URL (or start with a setting that holds one)"
        ));
    }
    Ok(())
}

/// One connector's share of the host's call slots: at most `max` of its calls run at
/// once, and a bounded number of webhook deliveries may wait for one.
#[derive(Debug)]
struct CallSlots {
    max: u32,
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
}

impl CallSlots {
    fn new(max: u32) -> CallSlots {
        CallSlots {
            max,
            slots: Arc::new(Semaphore::new(max as usize)),
            waiting: AtomicU32::new(0),
        }
    }
}

/// A plugin bound to one connector's grants. Cheap to clone; every call is isolated.
#[derive(Clone)]
pub struct Connector {
    plugin: Plugin,
    grants: Arc<Grants>,
    policy: Arc<NetworkPolicy>,
    slots: Arc<CallSlots>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("plugin", &self.plugin.inner.name)
            .field("grants", &self.grants)
            .finish()
    }
}

#[derive(Clone)]
enum Call {
    Describe,
    Check,
    Sync(Option<String>),
    Webhook(WebhookRequest),
}

enum Outcome {
    Manifest(Box<Manifest>),
    Checked,
    Page(SyncPage),
    Events(WebhookEvents),
}

/// What a webhook delivery turned into: the events that hold to the event model, and
/// those that do not, each refused on its own — a delivery is the sender's, so one bad
/// event must not cost the others or make the sender retry what would fail again.
#[derive(Debug, Clone, Default)]
pub struct WebhookEvents {
    /// The valid events, in the order the plugin returned them.
    pub events: Vec<NewEvent>,
    /// The refused ones.
    pub refused: Vec<RefusedEvent>,
}

/// An event a plugin returned from a webhook delivery that the host refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedEvent {
    /// Its position in what the plugin returned.
    pub index: usize,
    /// Its source id (shortened and cleaned for showing).
    pub source_id: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Connector {
    /// The connector id.
    pub fn id(&self) -> &str {
        &self.grants.connector_id
    }

    /// The plugin it runs.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// The connection its calls run for, if any.
    pub fn connection(&self) -> Option<&crate::config::Connection> {
        self.grants.connection.as_ref()
    }

    /// Verifies configuration and credentials.
    #[tracing::instrument(skip(self), fields(connector = %self.grants.connector_id))]
    pub async fn check(&self) -> Result<()> {
        self.run(Call::Check).await.map(|_| ())
    }

    /// Fetches the page after `checkpoint`.
    #[tracing::instrument(skip(self), fields(connector = %self.grants.connector_id))]
    pub async fn sync(&self, checkpoint: Option<&str>) -> Result<SyncPage> {
        match self.run(Call::Sync(checkpoint.map(str::to_owned))).await? {
            Outcome::Page(page) => Ok(page),
            _ => unreachable!("sync returns a page"),
        }
    }

    /// Verifies and converts a webhook delivery. The call fails as a whole only when the
    /// plugin fails or breaks the contract's limits; events that break the event model
    /// are refused one by one, in [`WebhookEvents::refused`].
    #[tracing::instrument(skip(self, request), fields(connector = %self.grants.connector_id))]
    pub async fn handle_webhook(&self, request: WebhookRequest) -> Result<WebhookEvents> {
        match self.run(Call::Webhook(request)).await? {
            Outcome::Events(events) => Ok(events),
            _ => unreachable!("handle-webhook returns events"),
        }
    }

    /// Takes one of this connector's call slots and one of the host's. A sync or a
    /// check waits its turn; a webhook delivery waits at most `webhook_wait_ms`, and
    /// is refused at once when too many already wait, so a flood at one connector
    /// costs that connector alone.
    async fn admit(&self, call: &Call) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit)> {
        let host = &self.plugin.inner.host.inner;
        let slots = &self.slots;
        let busy = || PluginError::Busy {
            connector: self.grants.connector_id.clone(),
            running: slots.max,
            retry_after_ms: BUSY_RETRY_AFTER_MS,
        };
        let closed = |_| PluginError::Host("the plugin host is shutting down".into());
        if !matches!(call, Call::Webhook(_)) {
            let mine = slots.slots.clone().acquire_owned().await.map_err(closed)?;
            let hosts = host.calls.clone().acquire_owned().await.map_err(closed)?;
            return Ok((mine, hosts));
        }
        if let Ok(mine) = slots.slots.clone().try_acquire_owned()
            && let Ok(hosts) = host.calls.clone().try_acquire_owned()
        {
            return Ok((mine, hosts));
        }
        if slots.waiting.fetch_add(1, Ordering::AcqRel) >= slots.max * WAITING_PER_SLOT_MAX {
            slots.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(busy());
        }
        let wait = Duration::from_millis(host.config.webhook_wait_ms);
        let admitted = tokio::time::timeout(wait, async {
            let mine = slots.slots.clone().acquire_owned().await.map_err(closed)?;
            let hosts = host.calls.clone().acquire_owned().await.map_err(closed)?;
            Ok((mine, hosts))
        })
        .await;
        slots.waiting.fetch_sub(1, Ordering::AcqRel);
        admitted.unwrap_or_else(|_elapsed| Err(busy()))
    }

    /// Runs one call. When it fails with `auth` after the plugin took an access token,
    /// the token is reported refused (its source refreshes it) and the call runs once
    /// more: a token revoked or expired early costs one retry, not a failed sync.
    async fn run(&self, call: Call) -> Result<Outcome> {
        let Some(tokens) = self.grants.tokens.as_ref() else {
            return self.run_once(call).await.0;
        };
        let again = call.clone();
        match self.run_once(call).await {
            (Err(PluginError::Connector(ConnectorError::Auth(message))), Some(token)) => {
                tracing::info!(connector = %self.grants.connector_id, "the source refused the access token; refreshing it and trying once more");
                match tokens.refused(&token).await {
                    Ok(()) => self.run_once(again).await.0,
                    Err(TokenError::NeedsReconnect(reason)) => Err(ConnectorError::Auth(format!(
                        "{message}; refreshing the token failed, so the connection must be reconnected: {reason}"
                    ))
                    .into()),
                    Err(TokenError::Unavailable(reason)) => Err(ConnectorError::Transient(
                        format!("{message}; the token could not be refreshed now: {reason}"),
                    )
                    .into()),
                }
            }
            (outcome, _) => outcome,
        }
    }

    /// Runs one call in a fresh sandbox and store; returns what it gave and the access
    /// token it was handed, if any.
    async fn run_once(&self, call: Call) -> (Result<Outcome>, Option<AccessToken>) {
        let _admitted = match self.admit(&call).await {
            Ok(admitted) => admitted,
            Err(error) => return (Err(error), None),
        };
        let inner = &self.plugin.inner;
        let host = &inner.host.inner;
        let limits = host.config.limits.clone();
        let connector_id = self.grants.connector_id.clone();
        let names = match call {
            Call::Describe => NameGrants::default(),
            _ => self.policy.resolve_names().await,
        };
        let sandbox = Sandbox::new(
            &connector_id,
            self.policy.clone(),
            names,
            self.grants.secrets.values().cloned().collect(),
            self.grants.tokens.clone(),
            &limits,
            host.budget.clone(),
        );
        let mut store = Store::new(&host.engine, sandbox);
        store.limiter(|sandbox| &mut sandbox.limiter);
        // Every tick the guest yields to the executor, so a CPU-bound plugin shares its
        // thread with other tasks instead of starving them; past the deadline it traps.
        let hard_deadline = Instant::now() + Duration::from_millis(limits.deadline_ms);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= hard_deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        let config = current::config(&self.grants);
        let started = Instant::now();
        let host_timeout =
            Duration::from_millis(limits.deadline_ms + 2 * EPOCH_TICK_MS + HOST_TIMEOUT_GRACE_MS);
        let called = tokio::time::timeout(host_timeout, async {
            wasmtime::Result::Ok(match &inner.bindings {
                Bindings::V0_2_0(bindings) => {
                    let instance = bindings.instantiate_async(&mut store).await?;
                    let plugin = instance.rapport_connector_plugin();
                    match call {
                        Call::Describe => {
                            Raw::Manifest(Box::new(plugin.call_describe(&mut store).await?))
                        }
                        Call::Check => Raw::Checked(plugin.call_check(&mut store, &config).await?),
                        Call::Sync(checkpoint) => Raw::Page(
                            plugin
                                .call_sync(&mut store, &config, checkpoint.as_deref())
                                .await?,
                        ),
                        Call::Webhook(request) => Raw::Events(
                            plugin
                                .call_handle_webhook(
                                    &mut store,
                                    &config,
                                    &current::webhook_request(request),
                                )
                                .await?,
                        ),
                    }
                }
                Bindings::V0_1_0(bindings) => {
                    let config = v0_1_0::config(&self.grants);
                    let instance = bindings.instantiate_async(&mut store).await?;
                    let plugin = instance.rapport_connector_plugin();
                    match call {
                        Call::Describe => Raw::Manifest(Box::new(v0_1_0::manifest(
                            plugin.call_describe(&mut store).await?,
                        ))),
                        Call::Check => Raw::Checked(v0_1_0::result(
                            plugin.call_check(&mut store, &config).await?,
                            |()| (),
                        )),
                        Call::Sync(checkpoint) => Raw::Page(v0_1_0::result(
                            plugin
                                .call_sync(&mut store, &config, checkpoint.as_deref())
                                .await?,
                            v0_1_0::page,
                        )),
                        Call::Webhook(request) => Raw::Events(v0_1_0::result(
                            plugin
                                .call_handle_webhook(
                                    &mut store,
                                    &config,
                                    &v0_1_0::webhook_request(request),
                                )
                                .await?,
                            v0_1_0::events,
                        )),
                    }
                }
            })
        })
        .await;
        let elapsed_ms = started.elapsed().as_millis();
        let sandbox = store.data();
        sandbox.finish_log();
        let handed = sandbox.handed_token.clone();
        let outcome = (|| {
            // A forbidden destination fails the call whatever the plugin made of the
            // refusal.
            if let Some(denial) = sandbox
                .denials
                .lock()
                .expect("denials lock")
                .first()
                .cloned()
            {
                tracing::warn!(connector = %connector_id, target = %denial.target, "plugin tried to reach a forbidden destination");
                return Err(PluginError::ForbiddenNetwork {
                    target: denial.target,
                    reason: denial.reason,
                });
            }
            let raw = match called {
                Err(_elapsed) => {
                    return Err(PluginError::Timeout {
                        deadline_ms: limits.deadline_ms,
                    });
                }
                Ok(Err(error)) => {
                    let failure = classify(error, sandbox, &limits, host.budget.limit_bytes());
                    tracing::warn!(connector = %connector_id, elapsed_ms, error = %failure, "plugin call failed");
                    return Err(failure);
                }
                Ok(Ok(raw)) => raw,
            };
            tracing::debug!(connector = %connector_id, elapsed_ms, "plugin call finished");
            let kinds = &inner.kinds;
            let failed = |error| PluginError::from(current::connector_error(error, sandbox));
            match raw {
                Raw::Manifest(manifest) => {
                    Ok(Outcome::Manifest(Box::new(current::manifest(*manifest))))
                }
                Raw::Checked(result) => result.map(|()| Outcome::Checked).map_err(failed),
                Raw::Page(result) => {
                    let page = result.map_err(failed)?;
                    check_output(&page.events, &limits)?;
                    check_page(page.checkpoint.as_deref(), &page.deleted)?;
                    current::page(&connector_id, kinds, page).map(Outcome::Page)
                }
                Raw::Events(result) => {
                    let events = result.map_err(failed)?;
                    check_output(&events, &limits)?;
                    Ok(Outcome::Events(current::webhook_events(
                        &connector_id,
                        kinds,
                        events,
                    )))
                }
            }
        })();
        (outcome, handed)
    }
}

/// What came back from the guest, upgraded to the newest contract's types but not yet
/// checked or converted.
enum Raw {
    Manifest(Box<current::rapport::connector::types::Manifest>),
    Checked(std::result::Result<(), current::rapport::connector::types::ConnectorError>),
    Page(
        std::result::Result<
            current::rapport::connector::types::Page,
            current::rapport::connector::types::ConnectorError,
        >,
    ),
    Events(
        std::result::Result<
            Vec<current::rapport::connector::types::Event>,
            current::rapport::connector::types::ConnectorError,
        >,
    ),
}

fn check_output(
    events: &[current::rapport::connector::types::Event],
    limits: &crate::config::CallLimits,
) -> Result<()> {
    if events.len() > limits.events_max {
        return Err(PluginError::TooManyEvents {
            count: events.len(),
            max: limits.events_max,
        });
    }
    let bytes = current::text_bytes(events);
    if bytes > limits.returned_bytes_max {
        return Err(PluginError::TooLarge {
            bytes,
            max: limits.returned_bytes_max,
        });
    }
    Ok(())
}

/// Checks what a page carries besides its events: the checkpoint's size and text,
/// and the deletes' count and ids.
fn check_page(checkpoint: Option<&str>, deleted: &[String]) -> Result<()> {
    let invalid = |reason: String| PluginError::InvalidPage { reason };
    if let Some(checkpoint) = checkpoint {
        if checkpoint.len() > CHECKPOINT_BYTES_MAX {
            return Err(invalid(format!(
                "its checkpoint is {} bytes; at most {CHECKPOINT_BYTES_MAX} are allowed (a checkpoint says where the sync is, it does not hold data)",
                checkpoint.len()
            )));
        }
        if let Some(c) = checkpoint
            .chars()
            .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        {
            return Err(invalid(format!(
                "its checkpoint contains the control character U+{:04X}; encode binary state (base64, JSON escapes)",
                u32::from(c)
            )));
        }
    }
    if deleted.len() > DELETES_MAX {
        return Err(invalid(format!(
            "it deletes {} source ids; at most {DELETES_MAX} are allowed per page",
            deleted.len()
        )));
    }
    let id_max = rapport_core::timeline::limits::SOURCE_ID_BYTES_MAX;
    if let Some(bad) = deleted
        .iter()
        .find(|id| id.is_empty() || id.len() > id_max || id.chars().any(char::is_control))
    {
        return Err(invalid(format!(
            "it deletes the source id `{}`, which is not 1 to {id_max} bytes without control characters",
            bad.chars().take(80).collect::<String>().escape_debug()
        )));
    }
    Ok(())
}

/// Turns a wasmtime failure into what happened, using what the sandbox observed.
fn classify(
    error: wasmtime::Error,
    sandbox: &Sandbox,
    limits: &crate::config::CallLimits,
    budget_bytes: usize,
) -> PluginError {
    if sandbox.limiter.exceeded {
        return PluginError::MemoryExceeded {
            limit_bytes: limits.memory_bytes_max,
        };
    }
    if sandbox.limiter.budget_exhausted {
        return PluginError::MemoryBudgetExhausted { budget_bytes };
    }
    // What the plugin last wrote to stderr (a panic's message) comes first, then the
    // trap's first line, all cut to the length a status shows.
    let stderr = sandbox.captured_stderr();
    let with_output = |message: String| {
        let message = sandbox.scrub(&message);
        let first_line = message.lines().next().unwrap_or_default();
        crate::contract::error_message(&if stderr.is_empty() {
            message.clone()
        } else {
            format!("{stderr} ({first_line})")
        })
    };
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout {
            deadline_ms: limits.deadline_ms,
        },
        Some(Trap::StackOverflow) => PluginError::StackOverflow,
        Some(Trap::UnreachableCodeReached) => PluginError::Crashed {
            message: with_output(format!("{error}")),
        },
        Some(trap) => PluginError::Trapped {
            message: with_output(format!("{trap}")),
        },
        None => PluginError::Trapped {
            message: with_output(format!("{error:#}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth() -> OAuth2Auth {
        OAuth2Auth {
            authorization_endpoint: "https://accounts.example.com/o/oauth2/auth".into(),
            token_endpoint: "{base_url}/token".into(),
            revocation_endpoint: None,
            scopes: vec!["https://www.googleapis.com/auth/gmail.readonly".into()],
            pkce: true,
            extra_parameters: vec![("access_type".into(), "offline".into())],
            token_hosts: vec!["gmail.googleapis.com".into()],
            optional: false,
        }
    }

    fn manifest(auth: Auth) -> Manifest {
        Manifest {
            name: "m".into(),
            version: "1".into(),
            description: String::new(),
            event_kinds: vec!["email.*".into()],
            config_keys: vec![
                ConfigKey {
                    name: "base_url".into(),
                    description: String::new(),
                    required: true,
                    secret: false,
                },
                ConfigKey {
                    name: "api_key".into(),
                    description: String::new(),
                    required: true,
                    secret: true,
                },
            ],
            hosts: vec!["gmail.googleapis.com".into(), "{base_url}".into()],
            auth,
        }
    }

    fn refusal(auth: Auth) -> String {
        validate_auth(&manifest(auth)).unwrap_err()
    }

    #[test]
    fn a_well_formed_declaration_is_accepted() {
        validate_auth(&manifest(Auth::None)).unwrap();
        validate_auth(&manifest(Auth::OAuth2(oauth()))).unwrap();
        validate_auth(&manifest(Auth::ApiKey(ApiKeyAuth {
            secret: "api_key".into(),
            description: "A key from Settings".into(),
        })))
        .unwrap();
    }

    #[test]
    fn the_token_goes_only_where_the_connector_may() {
        let mut elsewhere = oauth();
        elsewhere.token_hosts = vec!["collector.example.net".into()];
        assert!(refusal(Auth::OAuth2(elsewhere)).contains("not one of the hosts it declares"));
        let mut nowhere = oauth();
        nowhere.token_hosts.clear();
        assert!(refusal(Auth::OAuth2(nowhere)).contains("for no host"));
    }

    #[test]
    fn endpoints_are_https_or_templates_over_declared_settings() {
        let mut plain = oauth();
        plain.token_endpoint = "http://accounts.example.com/token".into();
        assert!(refusal(Auth::OAuth2(plain)).contains("must be an https URL"));
        let mut undeclared = oauth();
        undeclared.authorization_endpoint = "https://{tenant}.example.com/authorize".into();
        assert!(refusal(Auth::OAuth2(undeclared)).contains("does not declare"));
        let mut secret = oauth();
        secret.revocation_endpoint = Some("{api_key}/revoke".into());
        assert!(refusal(Auth::OAuth2(secret)).contains("which is a secret"));
        let mut unclosed = oauth();
        unclosed.token_endpoint = "{base_url/token".into();
        assert!(refusal(Auth::OAuth2(unclosed)).contains("unclosed"));
    }

    #[test]
    fn scopes_and_parameters_follow_rfc_6749() {
        let mut spaced = oauth();
        spaced.scopes = vec!["mail.read calendars.read".into()];
        assert!(refusal(Auth::OAuth2(spaced)).contains("section 3.3"));
        let mut reserved = oauth();
        reserved
            .extra_parameters
            .push(("redirect_uri".into(), "https://evil.example/cb".into()));
        assert!(refusal(Auth::OAuth2(reserved)).contains("set by the host"));
        let mut many = oauth();
        many.scopes = (0..=OAUTH_SCOPES_MAX).map(|n| format!("s{n}")).collect();
        assert!(refusal(Auth::OAuth2(many)).contains("at most 64"));
    }

    #[test]
    fn endpoint_templates_fill_from_settings() {
        let settings: std::collections::BTreeMap<String, String> =
            [("base_url".to_owned(), "https://api.example.com/".to_owned())].into();
        assert_eq!(
            fill_template("{base_url}/oauth/token", &settings).unwrap(),
            "https://api.example.com/oauth/token"
        );
        assert_eq!(
            fill_template(
                "https://login.microsoftonline.com/{tenant|common}/oauth2/v2.0/token",
                &settings
            )
            .unwrap(),
            "https://login.microsoftonline.com/common/oauth2/v2.0/token"
        );
        assert_eq!(
            fill_template("{tenant}/x", &settings).unwrap_err(),
            "tenant"
        );
    }

    #[test]
    fn an_api_key_must_be_a_declared_secret() {
        let key = |secret: &str| {
            Auth::ApiKey(ApiKeyAuth {
                secret: secret.into(),
                description: String::new(),
            })
        };
        assert!(refusal(key("base_url")).contains("declare it with `secret: true`"));
        assert!(refusal(key("token")).contains("does not declare"));
    }
}
