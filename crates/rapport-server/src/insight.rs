//! What the API and the web UI both read about an account: its health, its revenue,
//! when we last heard from the client, and how busy it has been. Health, current
//! revenue and last contact come from the account's insight, which the store keeps in
//! the transactions that write its events (`rapport_store::Store::insights`): one
//! indexed read per thousand accounts, however long their timelines. The revenue
//! history the account page charts is read off the timeline.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rapport_core::AccountId;
use rapport_core::account::Account;
use rapport_core::health::Health;
use rapport_core::insight::Meetings;
use rapport_core::revenue::{Revenue, revenue};
use rapport_core::timeline::TimelineEvent;
use rapport_store::{Reader, Result, Store, TIMELINE_PAGE_MAX, TimelineQuery};

/// Most subscription events the revenue history reads per account; older ones beyond
/// it are left out of the chart (current revenue comes from the insight, complete).
const REVENUE_EVENTS_MAX: usize = 5_000;

/// An account's health at `now`.
pub(crate) async fn health_of(
    store: &Store,
    account: AccountId,
    now: DateTime<Utc>,
) -> Result<Vitals> {
    let meetings = meetings_of(store, account, now).await?;
    let insight = store.insight(account).await?;
    Ok(Vitals {
        health: insight.health(now, &meetings),
        last_contact: insight.last_contact(&meetings),
        next_meeting: meetings.next,
    })
}

/// An account's health with the two dates it weighs most: when we were last in touch
/// with the client (mail either way or a meeting held), and when we next meet them.
pub(crate) struct Vitals {
    pub health: Health,
    pub last_contact: Option<DateTime<Utc>>,
    pub next_meeting: Option<DateTime<Utc>>,
}

/// What an account's calendar says at `now`: the latest meeting held, the next one.
pub(crate) async fn meetings_of(
    store: &Store,
    account: AccountId,
    now: DateTime<Utc>,
) -> Result<Meetings> {
    Ok(store
        .meetings(&[account], now)
        .await?
        .remove(&account)
        .unwrap_or_default())
}

/// An account's revenue history, from its subscription events, newest first up to
/// [`REVENUE_EVENTS_MAX`]. Read whole: billing events are no one's captured mail, and
/// the chart shows only sums.
pub(crate) async fn revenue_of(store: &Store, account: AccountId) -> Result<Revenue> {
    let mut query = TimelineQuery::account(account, Reader::Operator);
    query.kind_prefix = Some("billing.subscription".to_owned());
    query.limit = TIMELINE_PAGE_MAX;
    let mut events: Vec<TimelineEvent> = Vec::new();
    loop {
        let page = store.timeline(&query).await?;
        events.extend(page.events);
        match page.next {
            Some(next) if events.len() < REVENUE_EVENTS_MAX => query.after = Some(next),
            _ => break,
        }
    }
    Ok(revenue(&events))
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
) -> Result<Vec<(Vitals, Account)>> {
    let ids: Vec<AccountId> = accounts.iter().map(|account| account.id).collect();
    let insights = store.insights(&ids).await?;
    let meetings = store.meetings(&ids, now).await?;
    let mut scored: Vec<(Vitals, Account)> = accounts
        .into_iter()
        .filter_map(|account| {
            let calendar = meetings.get(&account.id).copied().unwrap_or_default();
            let insight = insights.get(&account.id)?;
            let vitals = Vitals {
                health: insight.health(now, &calendar),
                last_contact: insight.last_contact(&calendar),
                next_meeting: calendar.next,
            };
            Some((vitals, account))
        })
        .collect();
    scored.sort_by(|(a, x), (b, y)| {
        (a.health.score)
            .cmp(&b.health.score)
            .then(x.name.cmp(&y.name))
    });
    Ok(scored)
}
