//! `rapport plugin check`: load a connector plugin exactly as the server does and say
//! what it is and what it asks for — before an operator enables it. `rapport plugin
//! list` and `export`: the connectors that ship inside rapport. `rapport plugin test`:
//! run one against recorded responses.

use crate::PluginCheckArgs;
use anyhow::Context;
use rapport_plugin_host::{Auth, HostConfig, PluginHost, SUPPORTED_VERSIONS};
use std::borrow::Cow;
use std::io::Write;
use std::time::Instant;

/// A plugin named on the command line: a `.wasm` file, or `builtin:<name>`.
struct NamedPlugin {
    shown: String,
    bytes: Cow<'static, [u8]>,
}

impl NamedPlugin {
    fn read(spelled: &str) -> anyhow::Result<NamedPlugin> {
        if let Some(builtin) = rapport_connectors::resolve(spelled) {
            let builtin = builtin?;
            return Ok(NamedPlugin {
                shown: builtin.reference(),
                bytes: Cow::Borrowed(builtin.wasm),
            });
        }
        let bytes = std::fs::read(spelled).with_context(|| {
            format!("cannot read {spelled} (a .wasm file, or a built-in connector: `rapport plugin list`)")
        })?;
        Ok(NamedPlugin {
            shown: spelled.to_owned(),
            bytes: Cow::Owned(bytes),
        })
    }

    async fn load(&self, host: &PluginHost) -> anyhow::Result<rapport_plugin_host::Plugin> {
        host.load_bytes(&self.shown, &self.bytes)
            .await
            .with_context(|| {
                format!(
                    "{} is not a plugin this rapport can run (it supports contract {})",
                    self.shown,
                    SUPPORTED_VERSIONS.join(", ")
                )
            })
    }
}

/// `rapport plugin list`: the connectors rapport ships, with what each reads.
pub(crate) fn list(out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let width = rapport_connectors::BUILTINS
        .iter()
        .map(|builtin| builtin.reference().len())
        .max()
        .unwrap_or(0);
    for builtin in rapport_connectors::BUILTINS {
        writeln!(
            out,
            "{:<width$}  {:>6.1} MB  {}",
            builtin.reference(),
            builtin.wasm.len() as f64 / 1_048_576.0,
            builtin.summary
        )?;
    }
    writeln!(
        out,
        "Use one with `plugin = \"builtin:<name>\"` in a [[connector]]; `rapport plugin check builtin:<name>` shows its settings."
    )?;
    Ok(())
}

/// `rapport plugin export NAME`: writes a built-in connector out as a `.wasm` file.
pub(crate) fn export(
    args: &crate::PluginExportArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let name = args
        .name
        .strip_prefix(rapport_connectors::SCHEME)
        .unwrap_or(&args.name);
    let builtin =
        rapport_connectors::find(name).ok_or_else(|| rapport_connectors::UnknownBuiltin {
            name: name.to_owned(),
        })?;
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(format!("{}.wasm", builtin.name)));
    // Never overwrite: the file may be someone's own build of the connector.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot create {} (it must not exist yet; pick another with --output)",
                path.display()
            )
        })?;
    file.write_all(builtin.wasm)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(
        out,
        "Wrote {} ({} bytes) to {}.",
        builtin.reference(),
        builtin.wasm.len(),
        path.display()
    )?;
    Ok(())
}

/// How a plugin authenticates, for `plugin check --json`.
fn auth_json(auth: &Auth) -> serde_json::Value {
    match auth {
        Auth::None => serde_json::json!({"kind": "none"}),
        Auth::ApiKey(key) => serde_json::json!({
            "kind": "api_key",
            "secret": key.secret,
            "description": key.description,
        }),
        Auth::OAuth2(oauth) => serde_json::json!({
            "kind": "oauth2",
            "authorization_endpoint": oauth.authorization_endpoint,
            "token_endpoint": oauth.token_endpoint,
            "revocation_endpoint": oauth.revocation_endpoint,
            "scopes": oauth.scopes,
            "pkce": oauth.pkce,
            "extra_parameters": oauth.extra_parameters.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "token_hosts": oauth.token_hosts,
        }),
    }
}

/// How a plugin authenticates, in one line.
fn auth_line(auth: &Auth) -> String {
    match auth {
        Auth::None => "none beyond its settings".to_owned(),
        Auth::ApiKey(key) => format!("an API key, in the secret `{}`", key.secret),
        Auth::OAuth2(oauth) => format!(
            "OAuth 2.0{} at {}, scopes {}; token for {}",
            if oauth.pkce { " with PKCE" } else { "" },
            oauth.token_endpoint,
            if oauth.scopes.is_empty() {
                "none".to_owned()
            } else {
                oauth.scopes.join(" ")
            },
            oauth.token_hosts.join(", ")
        ),
    }
}

pub(crate) async fn check(
    args: &PluginCheckArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let named = NamedPlugin::read(&args.plugin)?;
    let size = named.bytes.len() as u64;
    let host = PluginHost::new(HostConfig::default()).context("starting the plugin host")?;
    let started = Instant::now();
    let plugin = named.load(&host).await?;
    let compiled = started.elapsed();
    let manifest = plugin.manifest();
    if args.json {
        let report = serde_json::json!({
            "file": named.shown,
            "bytes": size,
            "contract": format!("rapport:connector@{}", plugin.contract_version().as_str()),
            "name": manifest.name,
            "version": manifest.version,
            "description": manifest.description,
            "event_kinds": manifest.event_kinds,
            "config": manifest.config_keys.iter().map(|key| serde_json::json!({
                "name": key.name,
                "description": key.description,
                "required": key.required,
                "secret": key.secret,
            })).collect::<Vec<_>>(),
            "hosts": manifest.hosts,
            "auth": auth_json(&manifest.auth),
        });
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} {}: {}",
        manifest.name, manifest.version, manifest.description
    )?;
    writeln!(
        out,
        "  contract   rapport:connector@{} (supported)",
        plugin.contract_version().as_str()
    )?;
    writeln!(
        out,
        "  size       {:.1} MB, compiled in {:.2} s",
        size as f64 / 1_048_576.0,
        compiled.as_secs_f64()
    )?;
    writeln!(out, "  emits      {}", manifest.event_kinds.join(", "))?;
    writeln!(out, "  auth       {}", auth_line(&manifest.auth))?;
    if manifest.config_keys.is_empty() {
        writeln!(out, "  settings   none")?;
    } else {
        writeln!(out, "  settings")?;
        let width = manifest
            .config_keys
            .iter()
            .map(|key| key.name.len())
            .max()
            .unwrap_or(0);
        for key in &manifest.config_keys {
            let what = match (key.secret, key.required) {
                (true, true) => "secret, required",
                (true, false) => "secret",
                (false, true) => "required",
                (false, false) => "optional",
            };
            writeln!(
                out,
                "    {:<width$}  {:<16}  {}",
                key.name, what, key.description
            )?;
        }
    }
    let hosts = if manifest.hosts.iter().any(|host| host == "*") {
        "any host the operator grants (`allowed_hosts` in rapport.toml)".to_owned()
    } else if manifest.hosts.is_empty() {
        "none".to_owned()
    } else {
        manifest.hosts.join(", ")
    };
    writeln!(out, "  network    {hosts}")?;
    writeln!(
        out,
        "Secrets go in the environment, named from rapport.toml (`api_key = {{ env = \"...\" }}`)."
    )?;
    Ok(())
}

/// One recorded exchange: the request it answers and the response to give.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    request: RecordedRequest,
    response: RecordedResponse,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedRequest {
    #[serde(default = "get")]
    method: String,
    path: String,
    /// The exact query string; absent matches only requests without one.
    #[serde(default)]
    query: Option<String>,
}

fn get() -> String {
    "GET".to_owned()
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordedResponse {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// JSON, or a string sent as it is.
    #[serde(default)]
    body: serde_json::Value,
}

fn ok() -> u16 {
    200
}

/// Every `*.json` in `dir`, each a [`Fixture`]; a bad one is refused naming its file.
fn load_fixtures(dir: &std::path::Path) -> anyhow::Result<Vec<(String, Fixture)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the fixtures directory {}", dir.display()))?;
    let mut fixtures = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let fixture: Fixture = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a fixture: expected {{\"request\": {{\"method\", \"path\", \"query\"}}, \"response\": {{\"status\", \"headers\", \"body\"}}}}",
                path.display()
            )
        })?;
        fixtures.push((path.display().to_string(), fixture));
    }
    if fixtures.is_empty() {
        anyhow::bail!(
            "{} holds no fixtures (*.json): record at least the first page's response",
            dir.display()
        );
    }
    fixtures.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(fixtures)
}

/// What the fixtures server saw.
#[derive(Debug, Default)]
struct Traffic {
    served: Vec<String>,
    unmatched: Vec<String>,
}

fn pair(spelled: &str, what: &str) -> anyhow::Result<(String, String)> {
    spelled
        .split_once('=')
        .map(|(name, value)| (name.trim().to_owned(), value.to_owned()))
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| anyhow::anyhow!("--{what} `{spelled}` must be NAME=VALUE"))
}

/// Runs a plugin's sync against recorded responses and prints what it emits.
pub(crate) async fn test(
    args: &crate::PluginTestArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    use rapport_samples::upstream::{Reply, Upstream};
    use std::sync::{Arc, Mutex};

    let fixtures = Arc::new(load_fixtures(&args.fixtures)?);
    let host = PluginHost::new(HostConfig::default()).context("starting the plugin host")?;
    let plugin = NamedPlugin::read(&args.plugin)?.load(&host).await?;
    let manifest = plugin.manifest().clone();

    // The recorded upstream, on a loopback port of its own.
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let server = {
        let fixtures = Arc::clone(&fixtures);
        let traffic = Arc::clone(&traffic);
        Upstream::start_with_heads(move |head, target| {
            let method = head.split_whitespace().next().unwrap_or("GET");
            let (path, query) = match target.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (target, None),
            };
            let asked = format!("{method} {target}");
            let found = fixtures.iter().find(|(_, fixture)| {
                fixture.request.method.eq_ignore_ascii_case(method)
                    && fixture.request.path == path
                    && fixture.request.query.as_deref() == query
            });
            let Some((file, fixture)) = found else {
                traffic.lock().unwrap().unmatched.push(asked.clone());
                return Reply::status(
                    404,
                    &format!("rapport plugin test: no fixture answers {asked}"),
                );
            };
            traffic
                .lock()
                .unwrap()
                .served
                .push(format!("{asked} ← {file}"));
            let body = match &fixture.response.body {
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            let mut reply = Reply::status(fixture.response.status, &body);
            for (name, value) in &fixture.response.headers {
                // The server writes its own length and connection headers.
                if !name.eq_ignore_ascii_case("content-length")
                    && !name.eq_ignore_ascii_case("connection")
                {
                    reply = reply.header(name, value);
                }
            }
            reply
        })
        .await
    };
    let upstream = server.url();

    let mut settings = std::collections::BTreeMap::new();
    for spelled in &args.settings {
        let (name, value) = pair(spelled, "setting")?;
        settings.insert(name, value.replace("{upstream}", &upstream));
    }
    if manifest
        .config_keys
        .iter()
        .any(|key| key.name == "base_url" && !key.secret)
    {
        settings
            .entry("base_url".to_owned())
            .or_insert_with(|| upstream.clone());
    }
    let mut secrets = std::collections::BTreeMap::new();
    for spelled in &args.secrets {
        let (name, value) = pair(spelled, "secret")?;
        secrets.insert(name, value);
    }
    let connector_id: String = manifest
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let connector = plugin.connector(rapport_plugin_host::Grants {
        connector_id,
        settings,
        secrets,
        allowed_hosts: vec![server.grant()],
        allow_private_networks: true,
        ..Default::default()
    })?;

    let mut checkpoint = args.checkpoint.clone();
    let mut pages = Vec::new();
    let mut failure = None;
    for number in 1..=args.pages.max(1) {
        match connector.sync(checkpoint.as_deref()).await {
            Ok(page) => {
                let more = page.more;
                checkpoint = page.checkpoint.clone().or(checkpoint);
                pages.push(page);
                if !more {
                    break;
                }
            }
            Err(error) => {
                failure = Some(format!("page {number} failed: {error}"));
                break;
            }
        }
    }
    drop(server);
    let traffic = std::mem::take(&mut *traffic.lock().unwrap());
    let events: usize = pages.iter().map(|page| page.events.len()).sum();
    if args.json {
        let report = serde_json::json!({
            "plugin": manifest.name,
            "contract": plugin.contract_version().as_str(),
            "pages": pages.iter().map(|page| serde_json::json!({
                "events": page.events,
                "deleted": page.deleted,
                "checkpoint": page.checkpoint,
                "more": page.more,
            })).collect::<Vec<_>>(),
            "requests": traffic.served,
            "unmatched_requests": traffic.unmatched,
            "error": failure,
        });
        serde_json::to_writer_pretty(&mut *out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{} against {} ({} fixtures) at {upstream}",
            manifest.name,
            args.fixtures.display(),
            fixtures.len()
        )?;
        for (index, page) in pages.iter().enumerate() {
            writeln!(
                out,
                "page {}: {} events{}, checkpoint {}{}",
                index + 1,
                page.events.len(),
                if page.deleted.is_empty() {
                    String::new()
                } else {
                    format!(", {} deleted", page.deleted.len())
                },
                page.checkpoint
                    .as_deref()
                    .map_or("(none)".to_owned(), |c| format!("`{c}`")),
                if page.more { ", more to come" } else { "" }
            )?;
            for event in &page.events {
                let mut hints: Vec<String> = event
                    .hints
                    .external_ids
                    .iter()
                    .map(|id| id.to_string())
                    .collect();
                hints.extend(event.hints.emails.iter().map(|e| e.to_string()));
                hints.extend(event.hints.domains.iter().map(|d| d.to_string()));
                writeln!(
                    out,
                    "  {}  {:<28} {}  [{}]",
                    event.occurred_at.format("%Y-%m-%d %H:%M"),
                    event.kind.as_str(),
                    event.title,
                    if hints.is_empty() {
                        "no hints: it would wait in the inbox".to_owned()
                    } else {
                        hints.join(", ")
                    }
                )?;
            }
        }
        for request in &traffic.unmatched {
            writeln!(out, "no fixture answered {request}")?;
        }
        writeln!(
            out,
            "{events} events in {} page{} from {} requests.",
            pages.len(),
            if pages.len() == 1 { "" } else { "s" },
            traffic.served.len() + traffic.unmatched.len()
        )?;
    }
    if let Some(failure) = failure {
        anyhow::bail!(
            "{failure}{}",
            if traffic.unmatched.is_empty() {
                String::new()
            } else {
                format!(
                    " (no fixture answered: {}; record one)",
                    traffic.unmatched.join(", ")
                )
            }
        );
    }
    Ok(())
}
