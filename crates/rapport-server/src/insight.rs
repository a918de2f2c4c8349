//! What the API and the web UI both read off an account's timeline: its health, its
//! revenue, when we last heard from the client, and how busy it has been — computed on
//! request by the rules in `rapport_core::health` and `rapport_core::revenue`.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rapport_core::AccountId;
use rapport_core::account::Account;
use rapport_core::health::{HEALTH_KINDS, HEALTH_WINDOW_DAYS, Health, assess};
use rapport_core::revenue::{Revenue, revenue};
use rapport_core::timeline::TimelineEvent;
use rapport_store::{Result, Store, TIMELINE_PAGE_MAX, TimelineQuery};

/// Most events of one family health reads per account; older ones beyond it are
/// ignored (the newest matter most).
const EVENTS_PER_FAMILY_MAX: usize = 5_000;

/// An account's events of `prefix` since `since`, newest first, up to the cap.
async fn events_of(
    store: &Store,
    account: AccountId,
    prefix: &str,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<TimelineEvent>> {
    let mut query = TimelineQuery::account(account);
    query.kind_prefix = Some(prefix.to_owned());
    query.from = since;
    query.limit = TIMELINE_PAGE_MAX;
    let mut events = Vec::new();
    loop {
        let page = store.timeline(&query).await?;
        events.extend(page.events);
        match page.next {
            Some(next) if events.len() < EVENTS_PER_FAMILY_MAX => query.after = Some(next),
            _ => break,
        }
    }
    Ok(events)
}

/// An account's health at `now`.
pub(crate) async fn health_of(
    store: &Store,
    account: AccountId,
    now: DateTime<Utc>,
) -> Result<Health> {
    let since = now - Duration::days(HEALTH_WINDOW_DAYS);
    let mut events = Vec::new();
    for prefix in HEALTH_KINDS {
        // An open ticket matters however old it is.
        let window = (prefix != "support.ticket.created").then_some(since);
        events.extend(events_of(store, account, prefix, window).await?);
    }
    Ok(assess(&events, now))
}

/// An account's revenue, from its subscription events.
pub(crate) async fn revenue_of(store: &Store, account: AccountId) -> Result<Revenue> {
    let events = events_of(store, account, "billing.subscription", None).await?;
    Ok(revenue(&events))
}

/// When the client last wrote, or we last wrote to them: the newest email event.
pub(crate) async fn last_contact(
    store: &Store,
    account: AccountId,
) -> Result<Option<DateTime<Utc>>> {
    let mut query = TimelineQuery::account(account);
    query.kind_prefix = Some("email".to_owned());
    query.limit = 1;
    let page = store.timeline(&query).await?;
    Ok(page.events.first().map(|event| event.event.occurred_at))
}

/// Events per week for the `weeks` weeks up to `now`, oldest first; each entry is the
/// week's first day and its count.
pub(crate) async fn weekly_activity(
    store: &Store,
    account: AccountId,
    include_children: bool,
    weeks: u32,
    now: DateTime<Utc>,
) -> Result<Vec<(NaiveDate, i64)>> {
    let today = now.date_naive();
    let first = today - Duration::days(7 * i64::from(weeks) - 1);
    let from = first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let days = store
        .activity_by_day(account, include_children, from, now + Duration::seconds(1))
        .await?;
    let mut buckets: Vec<(NaiveDate, i64)> = (0..weeks)
        .map(|week| (first + Duration::days(7 * i64::from(week)), 0))
        .collect();
    for (day, count) in days {
        let week = (day - first).num_days().div_euclid(7);
        if let Some(bucket) = usize::try_from(week).ok().and_then(|w| buckets.get_mut(w)) {
            bucket.1 = bucket.1.saturating_add(count);
        }
    }
    Ok(buckets)
}

/// `accounts` scored at `now`, lowest health first (ties by name): what needs attention.
pub(crate) async fn by_attention(
    store: &Store,
    accounts: Vec<Account>,
    now: DateTime<Utc>,
) -> Result<Vec<(Health, Account)>> {
    let mut scored = Vec::with_capacity(accounts.len());
    for account in accounts {
        let health = health_of(store, account.id, now).await?;
        scored.push((health, account));
    }
    scored.sort_by(|(a, x), (b, y)| a.score.cmp(&b.score).then(x.name.cmp(&y.name)));
    Ok(scored)
}
