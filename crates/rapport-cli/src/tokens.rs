//! `rapport token create|list|revoke`: staff API tokens from the command line.

use crate::{TokenCommand, TokenCreateArgs, TokenListArgs, TokenRevokeArgs};
use anyhow::{Context, bail};
use chrono::Utc;
use rapport_core::account::EmailAddress;
use rapport_core::staff::Staff;
use rapport_store::Store;
use std::io::Write;

pub(crate) async fn run(command: TokenCommand, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => create(&args, out).await,
        TokenCommand::List(args) => list(&args, out).await,
        TokenCommand::Revoke(args) => revoke(&args, out).await,
    }
}

pub(crate) async fn open(database: &str) -> anyhow::Result<Store> {
    Store::connect(database)
        .await
        .context("failed to open the database")
}

/// Opens a database for a command that only reads: never creates or migrates one.
pub(crate) async fn open_existing(database: &str) -> anyhow::Result<Store> {
    Store::open_existing(database)
        .await
        .context("failed to open the database")
}

/// Every staff member's work email by id: people are shown by their email, not their
/// row id.
pub(crate) async fn staff_emails(
    store: &Store,
) -> anyhow::Result<std::collections::BTreeMap<rapport_core::StaffId, String>> {
    Ok(store
        .list_staff()
        .await?
        .into_iter()
        .map(|staff| (staff.id, staff.email.to_string()))
        .collect())
}

pub(crate) async fn staff_by_email(store: &Store, spelled: &str) -> anyhow::Result<Staff> {
    let email = EmailAddress::parse(spelled).with_context(|| format!("--staff `{spelled}`"))?;
    match store.staff_by_email(&email).await? {
        Some(staff) => Ok(staff),
        None => bail!("no staff member has the email {email}; check the address"),
    }
}

/// Puts a token change made from the command line on the audit trail. The CLI acts
/// with the database's own rights, so there is no actor: the entry says `cli`, and
/// the operating system's user, where known, is in the detail.
async fn cli_audit(
    store: &rapport_store::Store,
    action: &str,
    command: &str,
    mut detail: serde_json::Value,
) -> anyhow::Result<()> {
    if let (Some(object), Ok(user)) = (detail.as_object_mut(), std::env::var("USER")) {
        object.insert("os_user".to_owned(), serde_json::Value::String(user));
    }
    store
        .record_audit(
            &rapport_store::NewAuditEntry {
                actor: None,
                action: action.to_owned(),
                surface: "cli".to_owned(),
                target: Some(command.to_owned()),
                address: None,
                status: None,
                detail: Some(detail),
            },
            Utc::now(),
        )
        .await
        .context("recording the token change on the audit trail")?;
    Ok(())
}

async fn create(args: &TokenCreateArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let now = Utc::now();
    let expires_at = match &args.expires_in {
        Some(spelled) => {
            let lasts = rapport_sync::parse_duration(spelled)
                .map_err(|reason| anyhow::anyhow!("--expires-in `{spelled}`: {reason}"))?;
            Some(now + chrono::Duration::from_std(lasts).context("--expires-in is too long")?)
        }
        None => None,
    };
    let store = open(&args.database.url()?).await?;
    let staff = staff_by_email(&store, &args.staff).await?;
    let issued = store
        .create_api_token(staff.id, &args.name, expires_at, now)
        .await?;
    cli_audit(
        &store,
        "token.created",
        "rapport token create",
        serde_json::json!({
            "token": issued.token.id,
            "name": issued.token.name,
            "for": staff.id.0,
            "prefix": issued.token.display_prefix,
        }),
    )
    .await?;
    writeln!(
        out,
        "Token {} for {} ({}), {}:",
        issued.token.id,
        staff.name,
        staff.email,
        match issued.token.expires_at {
            Some(at) => format!("expires {}", at.format("%Y-%m-%d %H:%M UTC")),
            None => "does not expire".to_owned(),
        }
    )?;
    writeln!(out, "{}", issued.secret)?;
    writeln!(
        out,
        "Store it now: it is not shown again. Send it as `Authorization: Bearer <token>`; revoke it with `rapport token revoke {}`.",
        issued.token.id
    )?;
    store.close().await;
    Ok(())
}

async fn list(args: &TokenListArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let store = open_existing(&args.database.url()?).await?;
    let only = match &args.staff {
        Some(spelled) => Some(staff_by_email(&store, spelled).await?.id),
        None => None,
    };
    let tokens = store.api_tokens(only).await?;
    let now = Utc::now();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&tokens)?)?;
    } else if tokens.is_empty() {
        writeln!(out, "No API tokens.")?;
    } else {
        let emails = staff_emails(&store).await?;
        let staff_width = tokens
            .iter()
            .filter_map(|token| emails.get(&token.staff).map(String::len))
            .max()
            .unwrap_or(5)
            .max(5);
        writeln!(
            out,
            "{:>4}  {:<14} {:<staff_width$} {:<8} {:<24} LAST USED",
            "ID", "TOKEN", "STAFF", "STATE", "NAME"
        )?;
        for token in &tokens {
            let state = match (token.revoked_at, token.is_usable(now)) {
                (Some(_), _) => "revoked",
                (None, false) => "expired",
                (None, true) => "active",
            };
            let staff = emails
                .get(&token.staff)
                .cloned()
                .unwrap_or_else(|| token.staff.to_string());
            writeln!(
                out,
                "{:>4}  {:<14} {:<staff_width$} {:<8} {:<24} {}",
                token.id,
                format!("{}…", token.display_prefix),
                staff,
                state,
                token.name,
                token
                    .last_used_at
                    .map(|at| at.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_else(|| "never".into())
            )?;
        }
    }
    store.close().await;
    Ok(())
}

async fn revoke(args: &TokenRevokeArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let store = open(&args.database.url()?).await?;
    let token = store.revoke_api_token(args.id, Utc::now()).await?;
    cli_audit(
        &store,
        "token.revoked",
        "rapport token revoke",
        serde_json::json!({
            "token": token.id,
            "name": token.name,
            "for": token.staff.0,
            "prefix": token.display_prefix,
        }),
    )
    .await?;
    writeln!(
        out,
        "Revoked token {} ({}…, \"{}\"); it no longer works.",
        token.id, token.display_prefix, token.name
    )?;
    store.close().await;
    Ok(())
}
