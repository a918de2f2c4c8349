//! `rapport timeline <account>`: an account's unified timeline in the terminal (or as
//! JSON), read straight from the database, newest first.

use crate::TimelineArgs;
use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use rapport_core::AccountId;
use rapport_core::timeline::TimelineEvent;
use rapport_store::{Reader, Store, TIMELINE_PAGE_MAX, TimelineQuery};
use std::collections::BTreeMap;
use std::io::Write;

/// Finds the account `spelled` names: an id, or text matching one account's name or
/// domain (an exact name wins over partial matches).
async fn resolve(store: &Store, spelled: &str) -> anyhow::Result<AccountId> {
    if let Ok(id) = spelled.trim().trim_start_matches('#').parse::<i64>() {
        store
            .account_exists(AccountId(id))
            .await
            .with_context(|| format!("no account has id {id}"))?;
        return Ok(AccountId(id));
    }
    let all: Vec<AccountId> = store
        .account_tree()
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let found = store
        .accounts(&store.search_accounts(spelled, &all).await?)
        .await?;
    let exact: Vec<_> = found
        .iter()
        .filter(|account| account.name.eq_ignore_ascii_case(spelled.trim()))
        .collect();
    match (exact.as_slice(), found.as_slice()) {
        ([one], _) => Ok(one.id),
        (_, [one]) => Ok(one.id),
        (_, []) => bail!("no account's name or domain matches `{spelled}`; pass its id instead"),
        (_, many) => bail!(
            "`{spelled}` matches {} accounts; pass one's id:\n{}",
            many.len(),
            many.iter()
                .map(|account| format!("  {:>5}  {}", account.id.0, account.name))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// `--since`: a date (midnight UTC) or an RFC 3339 instant.
fn parse_since(spelled: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(date) = spelled.parse::<NaiveDate>() {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc());
    }
    DateTime::parse_from_rfc3339(spelled)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| {
            anyhow::anyhow!("--since `{spelled}`: write a date (2026-11-01) or an instant (2026-11-01T09:00:00Z)")
        })
}

/// One event as a terminal line: when, where from, what, and on which account when
/// subsidiaries are rolled up.
pub(crate) fn event_line(
    event: &TimelineEvent,
    names: Option<&BTreeMap<AccountId, String>>,
) -> String {
    let account = names.map(|names| {
        event
            .event
            .placement
            .as_ref()
            .and_then(|placement| names.get(&placement.account))
            .map_or("-", String::as_str)
    });
    let unreadable = event
        .unreadable
        .as_ref()
        .map(|why| format!("  (unreadable: {why})"))
        .unwrap_or_default();
    format!(
        "  {}  {:<9} {:<28} {}{}{unreadable}",
        event.event.occurred_at.format("%Y-%m-%d %H:%M"),
        event.event.key.connector,
        event.event.kind.as_str(),
        account.map(|name| format!("[{name}] ")).unwrap_or_default(),
        event.event.title.replace(char::is_control, " "),
    )
}

pub(crate) async fn run(args: &TimelineArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let store = crate::tokens::open_existing(&args.database.url()?).await?;
    let account_id = resolve(&store, &args.account).await?;
    let account = store.account(account_id).await?;
    let mut query = TimelineQuery::account(account_id, Reader::Operator);
    query.include_children = args.children;
    query.connectors = args
        .source
        .iter()
        .flat_map(|sources| sources.split(','))
        .map(str::trim)
        .filter(|source| !source.is_empty())
        .map(str::to_owned)
        .collect();
    query.kind_prefix = args.kind.clone();
    query.from = args.since.as_deref().map(parse_since).transpose()?;
    // Page through until `limit` events (the store caps each page).
    let limit = args.limit as usize;
    let mut events = Vec::new();
    let mut more = false;
    loop {
        query.limit = (limit - events.len()).min(TIMELINE_PAGE_MAX as usize) as u32;
        let page = store.timeline(&query).await?;
        events.extend(page.events);
        match page.next {
            Some(next) if events.len() < limit => query.after = Some(next),
            Some(_) => {
                more = true;
                break;
            }
            None => break,
        }
    }
    if args.json {
        serde_json::to_writer_pretty(&mut *out, &events)?;
        writeln!(out)?;
        store.close().await;
        return Ok(());
    }
    let staff: BTreeMap<_, _> = store
        .list_staff()
        .await?
        .into_iter()
        .map(|person| (person.id, person.name))
        .collect();
    let owner = account
        .owner
        .and_then(|id| staff.get(&id))
        .map_or("nobody", String::as_str);
    writeln!(
        out,
        "{} (#{}), owner {owner}{}",
        account.name,
        account.id.0,
        if account.domains.is_empty() {
            String::new()
        } else {
            format!(
                ", {}",
                account
                    .domains
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    )?;
    let names = if args.children {
        let ids: Vec<AccountId> = events
            .iter()
            .filter_map(|event| event.event.placement.as_ref().map(|p| p.account))
            .collect();
        Some(
            store
                .accounts(&ids)
                .await?
                .into_iter()
                .map(|account| (account.id, account.name))
                .collect::<BTreeMap<_, _>>(),
        )
    } else {
        None
    };
    if events.is_empty() {
        writeln!(out, "  No events match.")?;
    }
    for event in &events {
        writeln!(out, "{}", event_line(event, names.as_ref()))?;
    }
    if more {
        writeln!(
            out,
            "  … older events follow: raise --limit, or narrow with --since, --source or --kind"
        )?;
    }
    store.close().await;
    Ok(())
}
