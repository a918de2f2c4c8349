//! `rapport plugin check`: load a connector plugin exactly as the server does and say
//! what it is and what it asks for — before an operator enables it.

use crate::PluginCheckArgs;
use anyhow::Context;
use rapport_plugin_host::{HostConfig, PluginHost, SUPPORTED_VERSIONS};
use std::io::Write;
use std::time::Instant;

pub(crate) async fn check(
    args: &PluginCheckArgs,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    let host = PluginHost::new(HostConfig::default()).context("starting the plugin host")?;
    let started = Instant::now();
    let plugin = host.load(&args.file).await.with_context(|| {
        format!(
            "{} is not a plugin this rapport can run (it supports contract {})",
            args.file.display(),
            SUPPORTED_VERSIONS.join(", ")
        )
    })?;
    let compiled = started.elapsed();
    let manifest = plugin.manifest();
    if args.json {
        let report = serde_json::json!({
            "file": args.file.display().to_string(),
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
