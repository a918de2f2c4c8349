//! `rapport secrets` (the key ring that seals connection tokens at rest: make a key,
//! see which keys the stored tokens need, rotate) and `rapport connection` (list and
//! revoke connections).

use crate::tokens::{open_existing, staff_by_email, staff_emails};
use crate::{ConnectionCommand, SecretsCommand};
use anyhow::Context as _;
use chrono::Utc;
use rapport_core::secret::KeyRing;
use rapport_server::secrets::{self, SECRET_KEY_ENV, SECRET_KEY_FILE_ENV};
use rapport_store::{ConnectionId, ConnectionStatus};
use std::io::Write;

pub(crate) async fn run(
    command: SecretsCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        SecretsCommand::GenerateKey { id } => {
            let id = id.unwrap_or_else(|| Utc::now().format("%Y-%m-%d").to_string());
            let entry = KeyRing::generate_entry(&id);
            KeyRing::parse(&entry).with_context(|| format!("the key id `{id}`"))?;
            writeln!(out, "{entry}")?;
            Ok(())
        }
        SecretsCommand::Status { database } => {
            let store = open_existing(&database.url()?).await?;
            let keys = configured_keys()?;
            let by_key = store.sealed_secrets_by_key().await?;
            match &keys {
                Some(keys) => writeln!(
                    out,
                    "key ring: {} (primary `{}`)",
                    keys.ids().join(", "),
                    keys.primary_id()
                )?,
                None => writeln!(
                    out,
                    "key ring: none configured ({SECRET_KEY_ENV} or {SECRET_KEY_FILE_ENV})"
                )?,
            }
            if by_key.is_empty() {
                writeln!(out, "sealed tokens: none")?;
            }
            for (id, count) in &by_key {
                let state = match &keys {
                    Some(keys) if keys.primary_id() == id => "current",
                    Some(keys) if keys.holds(id) => {
                        "older key: `rapport secrets rotate` re-seals these"
                    }
                    _ => "MISSING from the key ring: these cannot be opened",
                };
                writeln!(out, "sealed tokens under `{id}`: {count} ({state})")?;
            }
            let usable = secrets::require_keys(&store, keys.as_ref()).await;
            store.close().await;
            usable
        }
        SecretsCommand::Rotate { database } => {
            let keys = configured_keys()?.with_context(|| {
                format!("set {SECRET_KEY_ENV} (or {SECRET_KEY_FILE_ENV}) to the new key ring: the new key first, then the old ones")
            })?;
            let store = open_existing(&database.url()?).await?;
            let rotation = secrets::rotate(&store, &keys).await?;
            writeln!(
                out,
                "re-sealed {} token(s) under `{}`; {} already were; {} connection(s) changed meanwhile and were sealed anew",
                rotation.resealed,
                keys.primary_id(),
                rotation.current,
                rotation.skipped
            )?;
            store.close().await;
            Ok(())
        }
    }
}

fn configured_keys() -> anyhow::Result<Option<KeyRing>> {
    secrets::key_ring_from(&|name| std::env::var(name).ok()).map_err(anyhow::Error::msg)
}

pub(crate) async fn connections(
    command: ConnectionCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        ConnectionCommand::List {
            staff,
            database,
            json,
        } => {
            let store = open_existing(&database.url()?).await?;
            let owner = match &staff {
                Some(spelled) => Some(staff_by_email(&store, spelled).await?.id),
                None => None,
            };
            let connections = store.connections(None, owner).await?;
            let emails = staff_emails(&store).await?;
            let owner_of = |owner: Option<rapport_core::StaffId>| match owner {
                None => "(organisation)".to_owned(),
                Some(id) => emails.get(&id).cloned().unwrap_or_else(|| id.to_string()),
            };
            // What `rapport sync` and `rapport status` call it.
            let syncs_as = |c: &rapport_store::Connection| match c.key.owner {
                None => c.key.connector.clone(),
                Some(owner) => rapport_core::sharing::person_connector_id(&c.key.connector, owner),
            };
            if json {
                let rows: Vec<_> = connections
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "id": c.id.0,
                            "connector": c.key.connector,
                            "syncs_as": syncs_as(c),
                            "owner": c.key.owner.map(|_| owner_of(c.key.owner)),
                            "status": c.status.as_str(),
                            "status_reason": c.status_reason,
                            "provider_account": c.provider_account,
                            "scopes": c.scopes,
                            "access_expires_at": c.access_expires_at,
                            "refreshed_at": c.refreshed_at,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else if connections.is_empty() {
                writeln!(out, "No connections.")?;
            } else {
                writeln!(
                    out,
                    "{:>4}  {:<20} {:<28} {:<16} REFRESHED",
                    "ID", "SYNCS AS", "OWNER", "STATUS"
                )?;
                for c in &connections {
                    writeln!(
                        out,
                        "{:>4}  {:<20} {:<28} {:<16} {}{}",
                        c.id.0,
                        syncs_as(c),
                        owner_of(c.key.owner),
                        c.status.as_str(),
                        c.refreshed_at
                            .map(|at| at.format("%Y-%m-%d %H:%M").to_string())
                            .unwrap_or_else(|| "never".into()),
                        c.status_reason
                            .as_deref()
                            .map(|reason| format!("  ({reason})"))
                            .unwrap_or_default()
                    )?;
                }
            }
            store.close().await;
            Ok(())
        }
        ConnectionCommand::Refresh { id, config } => {
            let config = rapport_server::Config::load(&config.config)?;
            // The provider's endpoints come from its plugin's manifest: load the plugins
            // (from the compile cache) as a node would, without starting one.
            let host = rapport_plugin_host::PluginHost::new(
                config
                    .plugins
                    .host_config(Some(config.plugin_cache_dir.clone())),
            )
            .context("starting the plugin host")?;
            let specs = config.bind_connectors(&host).await?;
            let connections =
                rapport_server::connections::Connections::from_config(&config, &specs)?;
            let store = open_existing(&config.database).await?;
            rapport_server::secrets::require_keys(&store, config.secret_keys.as_ref()).await?;
            let node = format!("rapport-connection-refresh-{}", std::process::id());
            let refreshed = connections
                .refresh_now(&store, ConnectionId(id), &node)
                .await
                .map_err(|error| anyhow::anyhow!("connection {id}: {error}"))?;
            writeln!(
                out,
                "connection {id} ({}) refreshed: its access token now expires {}",
                refreshed.key.connector,
                refreshed
                    .access_expires_at
                    .map(|at| at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                    .unwrap_or_else(|| "when the provider decides".into())
            )?;
            store.close().await;
            Ok(())
        }
        ConnectionCommand::Revoke { id, database } => {
            let store = open_existing(&database.url()?).await?;
            let Some(connection) = store.connection(ConnectionId(id)).await? else {
                anyhow::bail!("there is no connection {id}: `rapport connection list` shows them");
            };
            if connection.status == ConnectionStatus::Revoked {
                writeln!(out, "connection {id} was already revoked")?;
            } else {
                store
                    .disconnect(
                        ConnectionId(id),
                        "revoked with `rapport connection revoke`",
                        Utc::now(),
                    )
                    .await?;
                writeln!(
                    out,
                    "connection {id} ({}) revoked: its tokens are deleted",
                    connection.key.connector
                )?;
            }
            store.close().await;
            Ok(())
        }
    }
}
