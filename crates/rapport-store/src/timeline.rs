//! The timeline repository: idempotent, versioned upserts and keyset-paginated reads.

use crate::insights::{Changes, KeyedFactRow, stored_facts};
use crate::lenient::{Lenient, Unreadable};
use crate::sightings::Seen;
use crate::sync::PageCommit;
use crate::time::{from_us, to_us};
use crate::tx::require_account;
use crate::{Dialect, Error, Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::account::ACCOUNT_DEPTH_MAX;
use rapport_core::account::Domain;
use rapport_core::assignment::Role;
use rapport_core::permission::Authority;
use rapport_core::sharing::{Access, Capture, Sharing, person_connection_of, withhold_content};
use rapport_core::sighting::shared_identity;
use rapport_core::staff::Staff;
use rapport_core::timeline::{
    AccountHints, Actor, AttributeValue, Attributes, DedupeKey, EventKind, INTERNAL_CONNECTOR,
    MatchReason, NewEvent, Placement, TimelineCursor, TimelineEvent,
};
use rapport_core::{AccountId, DomainError, EventId, StaffId};
use sqlx::types::Json;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};
use std::collections::{BTreeMap, HashMap};

/// Most events one timeline page returns; larger requests are clamped.
pub const TIMELINE_PAGE_MAX: u32 = 200;
/// Most accounts a child roll-up spans.
pub const ROLLUP_ACCOUNTS_MAX: usize = 1_000;
/// Most events one upsert batch may carry.
pub const UPSERT_BATCH_MAX: usize = 10_000;

/// What happened to one event on upsert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    /// It was new.
    Inserted(EventId),
    /// A newer source version replaced the stored one.
    Updated(EventId),
    /// The stored version was the same or newer; nothing changed.
    Unchanged,
}

/// Totals for a batch of upserts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertSummary {
    /// New events.
    pub inserted: u64,
    /// Replaced by a newer version.
    pub updated: u64,
    /// Already stored at this version or newer.
    pub unchanged: u64,
}

impl UpsertSummary {
    /// Events inserted or updated, as the status record counts them.
    pub(crate) fn changed(&self) -> i64 {
        i64::try_from(self.inserted + self.updated).unwrap_or(i64::MAX)
    }

    pub(crate) fn add(&mut self, outcome: UpsertOutcome) {
        match outcome {
            UpsertOutcome::Inserted(_) => self.inserted += 1,
            UpsertOutcome::Updated(_) => self.updated += 1,
            UpsertOutcome::Unchanged => self.unchanged += 1,
        }
    }
}

/// Who reads events: what decides which events of a person's own connection they see
/// whole, see withheld or do not see at all (`rapport_core::sharing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// A staff member. Whether they see the account is checked before (or, in a feed,
    /// inside) the query; the sharing levels of captured events apply in the query.
    Staff(StaffId),
    /// The operator (the CLI, the engine, rapport itself): everything, whole.
    Operator,
}

impl Reader {
    /// Who reads on `authority`'s behalf: the staff member it acts for, or the
    /// operator.
    pub fn of(authority: &Authority<'_>) -> Reader {
        match authority {
            Authority::Staff(permissions, _) => Reader::Staff(permissions.staff),
            Authority::Operator => Reader::Operator,
        }
    }
}

/// Which part of which timeline to read.
#[derive(Debug, Clone)]
pub struct TimelineQuery {
    /// The account.
    pub account: AccountId,
    /// Who reads it.
    pub reader: Reader,
    /// Also show events of its subsidiaries (the whole subtree).
    pub include_children: bool,
    /// Only these connectors (empty: all).
    pub connectors: Vec<String>,
    /// Only kinds equal to or under this prefix, e.g. `billing` or `support.ticket`.
    pub kind_prefix: Option<String>,
    /// Only events at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only events before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Continue after this cursor (from the previous page's `next`).
    pub after: Option<TimelineCursor>,
    /// Page size, clamped to 1..=[`TIMELINE_PAGE_MAX`].
    pub limit: u32,
}

impl TimelineQuery {
    /// The newest page of one account's timeline as `reader` sees it, with no filters.
    pub fn account(account: AccountId, reader: Reader) -> Self {
        TimelineQuery {
            account,
            reader,
            include_children: false,
            connectors: Vec::new(),
            kind_prefix: None,
            from: None,
            until: None,
            after: None,
            limit: 50,
        }
    }
}

/// Which part of the feed across a viewer's whole visible book to read: the same
/// filters and keyset paging as a [`TimelineQuery`], over every account `viewer` may
/// see at `at` (decided in SQL, so a VP's feed needs no list of ids).
#[derive(Debug, Clone)]
pub struct FeedQuery {
    /// Whose book.
    pub viewer: StaffId,
    /// When visibility is decided.
    pub at: DateTime<Utc>,
    /// Only these connectors (empty: all).
    pub connectors: Vec<String>,
    /// Only kinds equal to or under this prefix.
    pub kind_prefix: Option<String>,
    /// Only events at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only events before this instant.
    pub until: Option<DateTime<Utc>>,
    /// Continue after this cursor.
    pub after: Option<TimelineCursor>,
    /// Page size, clamped to 1..=[`TIMELINE_PAGE_MAX`].
    pub limit: u32,
}

/// One page of a timeline, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePage {
    /// The events.
    pub events: Vec<TimelineEvent>,
    /// Where the next page starts, if there is one.
    pub next: Option<TimelineCursor>,
}

/// The columns of a timeline upsert, in the order [`push_event_rows`] binds them.
pub(crate) const UPSERT_HEAD: &str = "
INSERT INTO timeline_events (
    connector, source_id, source_version, account_id, kind, occurred_at_us, ingested_at_us,
    title, summary, url, actor, attributes, hints, match_rule, match_detail, match_candidates,
    captured_by, sharing, ends_at_us, identity) ";

/// What a newer version of a stored event sets: its content and placement — where a
/// person's placement from the unmatched inbox outranks the connector's matching.
macro_rules! content_set {
    () => {
        "
    source_version = excluded.source_version,
    revision = timeline_events.revision + 1,
    kind = excluded.kind,
    occurred_at_us = excluded.occurred_at_us,
    ingested_at_us = excluded.ingested_at_us,
    title = excluded.title,
    summary = excluded.summary,
    url = excluded.url,
    actor = excluded.actor,
    attributes = excluded.attributes,
    hints = excluded.hints,
    captured_by = excluded.captured_by,
    sharing = excluded.sharing,
    ends_at_us = excluded.ends_at_us,
    account_id = CASE WHEN timeline_events.match_rule = 'manual'
                      THEN timeline_events.account_id ELSE excluded.account_id END,
    match_detail = CASE WHEN timeline_events.match_rule = 'manual'
                        THEN timeline_events.match_detail ELSE excluded.match_detail END,
    match_rule = CASE WHEN timeline_events.match_rule = 'manual'
                      THEN timeline_events.match_rule ELSE excluded.match_rule END,
    match_candidates = CASE WHEN timeline_events.match_rule = 'manual'
                            THEN NULL ELSE excluded.match_candidates END"
    };
}
pub(crate) use content_set;

/// What a conflicting row does: a newer source version replaces it, anything else
/// leaves it alone (and returns nothing, which is how "unchanged" is recognised).
pub(crate) const UPSERT_TAIL: &str = concat!(
    "
ON CONFLICT (connector, source_id) DO UPDATE SET",
    content_set!(),
    "
WHERE excluded.source_version > timeline_events.source_version
RETURNING source_id, connector, id, revision, account_id"
);

/// Most rows one multi-row upsert statement carries. At 20 parameters a row this stays
/// far below SQLite's 32,766 and PostgreSQL's 65,535 parameters, and a full statement
/// always has the same text, so each connection prepares it once.
pub(crate) const UPSERT_ROWS_PER_STATEMENT: usize = 256;

/// One event to upsert with where it goes: `placement` `None` leaves it in the unmatched
/// inbox, with `candidates` when its match was ambiguous.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlacedEvent<'a> {
    pub event: &'a NewEvent,
    pub placement: Option<&'a Placement>,
    pub candidates: &'a [AccountId],
    /// For an event of a person's connection: whose it is and how it is shared.
    pub capture: Option<Capture>,
}

/// When `event` ends, if it is a meeting that takes place: its `ends_at`, for the
/// held-and-next index (`Store::meetings`).
fn meeting_end(event: &NewEvent) -> Option<DateTime<Utc>> {
    if !rapport_core::insight::is_meeting(event.kind.as_str()) {
        return None;
    }
    match event.attributes.get("ends_at") {
        Some(AttributeValue::Timestamp(at)) => Some(*at),
        _ => Some(event.occurred_at),
    }
}

/// Splits `rows` into runs that one statement can upsert: at most
/// [`UPSERT_ROWS_PER_STATEMENT`] rows, and no key twice (PostgreSQL refuses to update a
/// row twice in one statement; splitting there keeps the one-at-a-time meaning — the
/// second copy sees the first — on both backends).
pub(crate) fn statement_runs<'r, 'a>(rows: &'r [PlacedEvent<'a>]) -> Vec<&'r [PlacedEvent<'a>]> {
    let mut runs = Vec::with_capacity(rows.len() / UPSERT_ROWS_PER_STATEMENT + 1);
    let mut keys: std::collections::HashSet<&DedupeKey> = std::collections::HashSet::new();
    let mut start = 0;
    for (index, row) in rows.iter().enumerate() {
        if index - start == UPSERT_ROWS_PER_STATEMENT || !keys.insert(&row.event.key) {
            runs.push(&rows[start..index]);
            start = index;
            keys.clear();
            keys.insert(&row.event.key);
        }
    }
    if start < rows.len() {
        runs.push(&rows[start..]);
    }
    runs
}

/// What an upsert statement returns for each row it inserted or replaced:
/// `source_id`, `connector`, `id`, `revision`, `account_id`.
pub(crate) type Returned = (String, String, i64, i64, Option<i64>);

/// Each row's outcome, in `rows` order, from what the statement returned; and, into
/// `changes`, what it did to insights: the replaced versions (`stored`, read before
/// the statement, by source id) taken away, then the written versions added where
/// they were placed (a manual placement outranks the row's own).
pub(crate) fn outcomes_of(
    rows: &[PlacedEvent<'_>],
    returned: Vec<Returned>,
    mut stored: std::collections::HashMap<String, crate::insights::Fact>,
    changes: &mut crate::insights::Changes,
) -> Vec<UpsertOutcome> {
    let written: std::collections::HashMap<(String, String), (i64, i64, Option<i64>)> = returned
        .into_iter()
        .map(|(source_id, connector, id, revision, account)| {
            ((connector, source_id), (id, revision, account))
        })
        .collect();
    let mut added = Vec::new();
    let outcomes = rows
        .iter()
        .map(|row| {
            let key = (
                row.event.key.connector.clone(),
                row.event.key.source_id.clone(),
            );
            let Some(&(id, revision, account)) = written.get(&key) else {
                return UpsertOutcome::Unchanged;
            };
            if revision > 1 {
                changes.removed(stored.remove(&row.event.key.source_id));
            }
            added.push(crate::insights::fact_of(account, id, row.event));
            if revision == 1 {
                UpsertOutcome::Inserted(EventId(id))
            } else {
                UpsertOutcome::Updated(EventId(id))
            }
        })
        .collect();
    for fact in added {
        changes.added(fact);
    }
    outcomes
}

/// Upserts validated events with their placements on `conn`, a multi-row statement
/// per [`statement_runs`] run, noting in `changes` what that did to insights; one
/// outcome per row, in order.
pub(crate) async fn upsert_rows<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    rows: &[PlacedEvent<'_>],
    at_us: i64,
    changes: &mut Changes,
) -> Result<Vec<UpsertOutcome>>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q Actor>>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q Attributes>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q AccountHints>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q MatchReason>>: Encode<'q, DB> + Type<DB>,
    Option<Json<Vec<i64>>>: for<'q> Encode<'q, DB> + Type<DB>,
    Returned: for<'r> FromRow<'r, DB::Row>,
    KeyedFactRow: for<'r> FromRow<'r, DB::Row>,
    crate::insights::FactRow: for<'r> FromRow<'r, DB::Row>,
    crate::sightings::Written: for<'r> FromRow<'r, DB::Row>,
    crate::sightings::HeldRow: for<'r> FromRow<'r, DB::Row>,
    (String, String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    // Events seen through several connections (mail, meetings) are written as
    // sightings of one event (`crate::sightings`), the rest by their key. Each stretch
    // of one sort is written in order, so a batch keeps its one-at-a-time meaning.
    let identities: Vec<Option<String>> =
        rows.iter().map(|row| shared_identity(row.event)).collect();
    let mut outcomes = vec![UpsertOutcome::Unchanged; rows.len()];
    let mut start = 0;
    while start < rows.len() {
        let seen = identities[start].is_some();
        let end = (start..rows.len())
            .find(|&index| identities[index].is_some() != seen)
            .unwrap_or(rows.len());
        if seen {
            let stretch: Vec<Seen<'_, '_>> = (start..end)
                .map(|index| Seen {
                    index,
                    row: &rows[index],
                    identity: identities[index].as_deref().unwrap_or_default(),
                })
                .collect();
            for run in seen_runs(&stretch) {
                for (index, outcome) in
                    crate::sightings::upsert_seen(&mut *conn, dialect, run, at_us, changes).await?
                {
                    outcomes[index] = outcome;
                }
            }
        } else {
            let mut at = start;
            for run in statement_runs(&rows[start..end]) {
                // A key that was a sighting is one no longer.
                crate::sightings::detach_keys(&mut *conn, dialect, run, changes).await?;
                let mut stored = HashMap::new();
                for (connector, source_ids) in keys_by_connector(run) {
                    stored.extend(stored_facts(&mut *conn, dialect, connector, &source_ids).await?);
                }
                let mut sql = QueryBuilder::<DB>::new(UPSERT_HEAD);
                push_event_rows(&mut sql, run.iter().map(|row| (row, None)), at_us);
                sql.push(UPSERT_TAIL);
                let returned: Vec<Returned> = sql.build_query_as().fetch_all(&mut *conn).await?;
                for outcome in outcomes_of(run, returned, stored, changes) {
                    outcomes[at] = outcome;
                    at += 1;
                }
            }
        }
        start = end;
    }
    Ok(outcomes)
}

/// Splits `seen` into runs one identity upsert can write: at most
/// [`UPSERT_ROWS_PER_STATEMENT`] events, and no key or identity twice.
fn seen_runs<'s, 'r, 'a>(seen: &'s [Seen<'r, 'a>]) -> Vec<&'s [Seen<'r, 'a>]> {
    let mut runs = Vec::new();
    let mut keys: std::collections::HashSet<&DedupeKey> = std::collections::HashSet::new();
    let mut identities: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut start = 0;
    for (index, one) in seen.iter().enumerate() {
        if index - start == UPSERT_ROWS_PER_STATEMENT
            || keys.contains(&one.row.event.key)
            || identities.contains(one.identity)
        {
            runs.push(&seen[start..index]);
            start = index;
            keys.clear();
            identities.clear();
        }
        keys.insert(&one.row.event.key);
        identities.insert(one.identity);
    }
    if start < seen.len() {
        runs.push(&seen[start..]);
    }
    runs
}

/// The `VALUES` of an upsert (columns as [`UPSERT_HEAD`] lists them): each event with
/// its placement, capture and, for one seen through several connections, its shared
/// identity.
pub(crate) fn push_event_rows<'r, 'a: 'r, DB>(
    sql: &mut QueryBuilder<DB>,
    rows: impl IntoIterator<Item = (&'r PlacedEvent<'a>, Option<&'r str>)>,
    at_us: i64,
) where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q Actor>>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q Attributes>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q AccountHints>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q MatchReason>>: Encode<'q, DB> + Type<DB>,
    Option<Json<Vec<i64>>>: for<'q> Encode<'q, DB> + Type<DB>,
{
    sql.push_values(rows, |mut values, (row, identity)| {
        let event = row.event;
        let placement = row.placement;
        let candidates: Option<Vec<i64>> = (!row.candidates.is_empty())
            .then(|| row.candidates.iter().map(|account| account.0).collect());
        values
            .push_bind(event.key.connector.as_str())
            .push_bind(event.key.source_id.as_str())
            .push_bind(event.source_version)
            .push_bind(placement.map(|placement| placement.account.0))
            .push_bind(event.kind.as_str())
            .push_bind(to_us(event.occurred_at))
            .push_bind(at_us)
            .push_bind(event.title.trim())
            .push_bind(event.summary.as_str())
            .push_bind(event.url.as_deref())
            .push_bind(event.actor.as_ref().map(Json))
            .push_bind(Json(&event.attributes))
            .push_bind(Json(&event.hints))
            .push_bind(placement.map(|placement| placement.reason.rule()))
            .push_bind(placement.map(|placement| Json(&placement.reason)))
            .push_bind(candidates.map(Json))
            .push_bind(row.capture.map(|capture| capture.owner.0))
            .push_bind(row.capture.map(|capture| capture.sharing.as_str()))
            .push_bind(meeting_end(event).map(to_us))
            .push_bind(identity);
    });
}

/// The source ids of `run`, grouped by connector (one group, for a connector's page).
pub(crate) fn keys_by_connector<'a>(run: &[PlacedEvent<'a>]) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut keys: BTreeMap<&'a str, Vec<&'a str>> = BTreeMap::new();
    for row in run {
        keys.entry(row.event.key.connector.as_str())
            .or_default()
            .push(row.event.key.source_id.as_str());
    }
    keys
}

/// Upserts one validated event, placed as the event says, noting in `changes` what
/// that did to insights.
pub(crate) async fn upsert_event<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    event: &NewEvent,
    at_us: i64,
    changes: &mut Changes,
) -> Result<UpsertOutcome>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q Actor>>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q Attributes>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q AccountHints>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q MatchReason>>: Encode<'q, DB> + Type<DB>,
    Option<Json<Vec<i64>>>: for<'q> Encode<'q, DB> + Type<DB>,
    Returned: for<'r> FromRow<'r, DB::Row>,
    KeyedFactRow: for<'r> FromRow<'r, DB::Row>,
    crate::insights::FactRow: for<'r> FromRow<'r, DB::Row>,
    crate::sightings::Written: for<'r> FromRow<'r, DB::Row>,
    crate::sightings::HeldRow: for<'r> FromRow<'r, DB::Row>,
    (String, String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    let row = PlacedEvent {
        event,
        placement: event.placement.as_ref(),
        candidates: &[],
        capture: None,
    };
    let outcomes = upsert_rows(conn, dialect, std::slice::from_ref(&row), at_us, changes).await?;
    Ok(outcomes[0])
}

/// Places (by identity resolution, unless they name their account) and upserts a
/// validated batch on `conn`, a write transaction's connection, noting in `changes`
/// what that did to insights.
pub(crate) async fn write_events<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    events: &[NewEvent],
    ignored: &[Domain],
    at_us: i64,
    changes: &mut Changes,
) -> Result<(PageCommit, Vec<UpsertOutcome>)>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q Actor>>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q Attributes>: Encode<'q, DB> + Type<DB>,
    for<'q> Json<&'q AccountHints>: Encode<'q, DB> + Type<DB>,
    for<'q> Option<Json<&'q MatchReason>>: Encode<'q, DB> + Type<DB>,
    Option<Json<Vec<i64>>>: for<'q> Encode<'q, DB> + Type<DB>,
    Json<Vec<(String, String)>>: for<'q> Encode<'q, DB> + Type<DB>,
    Json<Vec<String>>: for<'q> Encode<'q, DB> + Type<DB>,
    (i64, String, String): for<'r> FromRow<'r, DB::Row>,
    (i64, String): for<'r> FromRow<'r, DB::Row>,
    (String, String): for<'r> FromRow<'r, DB::Row>,
    Returned: for<'r> FromRow<'r, DB::Row>,
    KeyedFactRow: for<'r> FromRow<'r, DB::Row>,
    crate::insights::FactRow: for<'r> FromRow<'r, DB::Row>,
    crate::sightings::Written: for<'r> FromRow<'r, DB::Row>,
    crate::sightings::HeldRow: for<'r> FromRow<'r, DB::Row>,
    (String, String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
{
    let mut captures: BTreeMap<&str, Option<Capture>> = BTreeMap::new();
    for event in events {
        let connector = event.key.connector.as_str();
        if !captures.contains_key(connector) {
            let capture = capture_of(&mut *conn, dialect, connector).await?;
            captures.insert(connector, capture);
        }
    }
    let placements = crate::identity::resolve_batch(&mut *conn, dialect, events, ignored).await?;
    let rows: Vec<PlacedEvent<'_>> = events
        .iter()
        .zip(&placements)
        .map(|(event, (placement, candidates))| PlacedEvent {
            event,
            placement: placement.as_ref(),
            candidates,
            capture: captures
                .get(event.key.connector.as_str())
                .copied()
                .flatten(),
        })
        .collect();
    let outcomes = upsert_rows(conn, dialect, &rows, at_us, changes).await?;
    let mut commit = PageCommit::default();
    for (outcome, row) in outcomes.iter().zip(&rows) {
        commit.summary.add(*outcome);
        if row.placement.is_none() {
            commit.waiting += 1;
        }
    }
    Ok((commit, outcomes))
}

/// What events of `connector` are stamped with, read on `conn` (the write's own
/// connection, the connection row held against a concurrent change of its level): for
/// a person's connection, its owner and current sharing level; `None` for any other
/// connector. A person's connection without a record (never made through rapport) is
/// private to its owner's line. Refuses, writing nothing, the events of a connection
/// its owner disconnected: what was in flight when they did is not stored.
pub(crate) async fn capture_of<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    connector: &str,
) -> Result<Option<Capture>>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (String, String): for<'r> FromRow<'r, DB::Row>,
{
    let Some((configured, owner)) = person_connection_of(connector) else {
        return Ok(None);
    };
    let sql = format!(
        "SELECT status, sharing FROM connections WHERE connector = $1 AND owner_staff_id = $2{}",
        dialect.share_rows()
    );
    let row: Option<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(configured)
        .bind(owner.0)
        .fetch_optional(&mut *conn)
        .await?;
    let sharing = match row {
        None => Sharing::Private,
        Some((status, _)) if status == "revoked" => {
            return Err(Error::ConnectionClosed(connector.to_owned()));
        }
        Some((_, sharing)) => Sharing::parse(&sharing).unwrap_or(Sharing::Private),
    };
    Ok(Some(Capture { owner, sharing }))
}

/// What narrows a page of events: a [`TimelineQuery`]'s or a [`FeedQuery`]'s filters
/// and keyset cursor, whichever listing they came from.
#[derive(Debug, Clone, Copy)]
struct PageFilters<'a> {
    reader: Reader,
    connectors: &'a [String],
    kind_prefix: Option<&'a str>,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    after: Option<TimelineCursor>,
}

impl<'a> PageFilters<'a> {
    fn of_timeline(query: &'a TimelineQuery) -> PageFilters<'a> {
        PageFilters {
            reader: query.reader,
            connectors: &query.connectors,
            kind_prefix: query.kind_prefix.as_deref(),
            from: query.from,
            until: query.until,
            after: query.after,
        }
    }

    fn of_feed(query: &'a FeedQuery) -> PageFilters<'a> {
        PageFilters {
            reader: Reader::Staff(query.viewer),
            connectors: &query.connectors,
            kind_prefix: query.kind_prefix.as_deref(),
            from: query.from,
            until: query.until,
            after: query.after,
        }
    }

    /// Only the reader and the cursor.
    fn after(reader: Reader, after: Option<TimelineCursor>) -> PageFilters<'a> {
        PageFilters {
            reader,
            connectors: &[],
            kind_prefix: None,
            from: None,
            until: None,
            after,
        }
    }
}

/// Whether the reader's line (the `team` CTE of [`push_reader`]) holds the capturer
/// of the event row: its own (the summary's owner, which is enough for most events),
/// or for an event seen through several connections, any sighting's.
macro_rules! owner_in_line {
    () => {
        "(captured_by IN (SELECT id FROM team) OR (identity IS NOT NULL AND EXISTS (
            SELECT 1 FROM event_sightings s WHERE s.identity = timeline_events.identity
               AND s.captured_by IN (SELECT id FROM team))))"
    };
}

/// Appends `filters` as `AND ...` clauses to a query that already has a `WHERE`.
fn push_filters<DB>(sql: &mut QueryBuilder<DB>, filters: PageFilters<'_>)
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let Reader::Staff(_) = filters.reader {
        // Private captured events only for the owner's line (`team`, the reader's line,
        // is in scope: [`push_reader`]); most rows stop at the first test.
        sql.push(concat!(
            " AND (sharing IS NULL OR sharing <> 'private' OR ",
            owner_in_line!(),
            ")"
        ));
    }
    if !filters.connectors.is_empty() {
        // An event seen through several connections is from each of them.
        sql.push(" AND (connector IN (");
        let mut list = sql.separated(", ");
        for connector in filters.connectors {
            list.push_bind(connector.clone());
        }
        sql.push(
            ") OR (identity IS NOT NULL AND EXISTS (SELECT 1 FROM event_sightings s
               WHERE s.identity = timeline_events.identity AND s.connector IN (",
        );
        let mut list = sql.separated(", ");
        for connector in filters.connectors {
            list.push_bind(connector.clone());
        }
        sql.push("))))");
    }
    if let Some(prefix) = filters.kind_prefix {
        // `billing` matches `billing` and everything in `billing.` .. `billing/`
        // ('/' is the byte after '.'): a range the index and both backends compare
        // bytewise, with no LIKE wildcards to escape.
        sql.push(" AND (kind = ")
            .push_bind(prefix.to_owned())
            .push(" OR (kind >= ")
            .push_bind(format!("{prefix}."))
            .push(" AND kind < ")
            .push_bind(format!("{prefix}/"))
            .push("))");
    }
    if let Some(from) = filters.from {
        sql.push(" AND occurred_at_us >= ").push_bind(to_us(from));
    }
    if let Some(until) = filters.until {
        sql.push(" AND occurred_at_us < ").push_bind(to_us(until));
    }
    if let Some(after) = filters.after {
        sql.push(" AND (occurred_at_us, id) < (")
            .push_bind(to_us(after.occurred_at))
            .push(", ")
            .push_bind(after.id.0)
            .push(")");
    }
}

/// Appends newest-first order and one page (`limit` + 1 rows).
fn push_page_order<DB>(sql: &mut QueryBuilder<DB>, limit: u32)
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    sql.push(" ORDER BY occurred_at_us DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit) + 1);
}

/// Appends `filters`, then newest-first order and one page: `limit` + 1 rows, the
/// extra one telling whether a next page exists ([`page_of`]).
fn push_page_tail<DB>(sql: &mut QueryBuilder<DB>, filters: PageFilters<'_>, limit: u32)
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    push_filters(sql, filters);
    push_page_order(sql, limit);
}

/// Builds, on `sql` (opened by [`push_reader`] for `filters.reader`), one page
/// (`limit` + 1 rows) of the events of one or more accounts, newest first: every account timeline, roll-up and narrow feed. Two forms,
/// measured at 1M events (BENCHMARKS.md, "Scale"):
/// - PostgreSQL: a merge of each account's own newest rows. For each id in one bound
///   array, a `LATERAL` index range read of ids on `timeline_by_account` that stops
///   after a page; then the merged ids cut to the page; only then the page's whole
///   rows. One statement text whatever the number of accounts, so it is prepared and
///   planned once, and the inner read is planned for "some account", never for a
///   named one: told the account, PostgreSQL walks `timeline_by_time` for any it
///   thinks busy and filters out every newer row of everyone else (a manager's feed
///   took 34 ms that way, this form 5). A plain `account_id IN (...)` it answers by
///   reading and sorting every row of every account (575 ms for a busy parent).
/// - SQLite: the plain `IN (...)`, on the per-account index by name, which it answers
///   without reading whole histories (1.3 ms), and where the merge is slower (9 ms).
fn push_accounts_page<DB>(
    sql: &mut QueryBuilder<DB>,
    dialect: Dialect,
    accounts: &[i64],
    filters: PageFilters<'_>,
    limit: u32,
) where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    if dialect == Dialect::Postgres {
        // A text bind both backends' builders accept, cast to `bigint[]` in SQL.
        sql.push(select_event(filters.reader))
            .push(" WHERE id IN (SELECT id FROM unnest(CAST(")
            .push_bind(postgres_array(accounts.iter().copied()))
            .push(
                " AS bigint[])) AS book(account) CROSS JOIN LATERAL (
                 SELECT id, occurred_at_us FROM timeline_events WHERE account_id = book.account",
            );
        push_page_tail(sql, filters, limit);
        sql.push(") AS page");
        push_page_order(sql, limit);
        sql.push(")");
    } else {
        // Named, so the newest-first index (for wide feeds) is never taken here.
        sql.push(select_event(filters.reader))
            .push(" INDEXED BY timeline_by_account WHERE account_id IN (");
        let mut list = sql.separated(", ");
        for account in accounts {
            list.push_bind(*account);
        }
        sql.push(")");
        push_filters(sql, filters);
    }
    push_page_order(sql, limit);
}

/// `ids` as a PostgreSQL array literal, `{1,2,3}`.
fn postgres_array(ids: impl Iterator<Item = i64>) -> String {
    let mut literal = String::from("{");
    for (index, id) in ids.enumerate() {
        if index > 0 {
            literal.push(',');
        }
        literal.push_str(&id.to_string());
    }
    literal.push('}');
    literal
}

/// The `SELECT ... FROM timeline_events` of an event row as `reader` reads it: the
/// stored columns, and whether the reader's line holds the row's capturer
/// (`owner_in_line`, which decides a captured event's [`Access`]). A staff reader's
/// form needs the `team` CTE of [`push_reader`].
fn select_event(reader: Reader) -> &'static str {
    match reader {
        Reader::Staff(_) => {
            concat!(
                "SELECT id, connector, source_id, source_version, account_id, kind,
    occurred_at_us, ingested_at_us, title, summary, url, actor, attributes, hints, match_detail, match_candidates,
    captured_by, sharing, (captured_by IS NOT NULL AND ",
                owner_in_line!(),
                ") AS owner_in_line
    FROM timeline_events"
            )
        }
        Reader::Operator => {
            "SELECT id, connector, source_id, source_version, account_id, kind,
    occurred_at_us, ingested_at_us, title, summary, url, actor, attributes, hints, match_detail, match_candidates,
    captured_by, sharing, TRUE AS owner_in_line
    FROM timeline_events"
        }
    }
}

/// Opens a query that reads events as `reader`: for a staff member, the `team` CTE
/// (their reporting line) that [`select_event`] and the sharing filter consult.
fn push_reader<DB>(sql: &mut QueryBuilder<DB>, reader: Reader)
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let Reader::Staff(viewer) = reader {
        sql.push("WITH RECURSIVE ");
        crate::visibility::push_team(sql, viewer);
        sql.push(" ");
    }
}

/// A stored event row. Every column that could fail to decode is [`Lenient`], so one
/// bad value costs its own field, never the page: see [`EventRow::into_event`].
#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    id: i64,
    connector: Lenient<String>,
    source_id: Lenient<String>,
    source_version: i64,
    account_id: Option<i64>,
    kind: Lenient<String>,
    occurred_at_us: i64,
    ingested_at_us: i64,
    title: Lenient<String>,
    summary: Lenient<String>,
    url: Option<Lenient<String>>,
    actor: Option<Lenient<Json<serde_json::Value>>>,
    attributes: Lenient<Json<serde_json::Value>>,
    hints: Lenient<Json<serde_json::Value>>,
    match_detail: Option<Lenient<Json<serde_json::Value>>>,
    match_candidates: Option<Lenient<Json<serde_json::Value>>>,
    captured_by: Option<i64>,
    sharing: Option<Lenient<String>>,
    owner_in_line: bool,
}

/// `value` as a `T`, or `fallback` with the failure noted under `field`.
fn typed<T: serde::de::DeserializeOwned>(
    unreadable: &mut Unreadable,
    field: &str,
    value: Lenient<Json<serde_json::Value>>,
    fallback: T,
) -> T {
    match value.0 {
        Ok(Json(value)) => serde_json::from_value(value).unwrap_or_else(|error| {
            unreadable.note(field, &error.to_string());
            fallback
        }),
        Err(error) => {
            unreadable.note(field, &error);
            fallback
        }
    }
}

impl EventRow {
    /// The event as stored. A field that does not decode is left empty (its kind
    /// becomes `rapport.unreadable`, attributes are read one by one) and the event is
    /// marked [`TimelineEvent::unreadable`] and logged, so a page shows it instead of
    /// failing.
    ///
    /// A captured event is shown as its sharing level lets the row's reader see it:
    /// whole, withheld ([`withhold_content`]), or — for one the query should not have
    /// returned — not at all (`None`, logged). A level that does not read back counts
    /// as private.
    fn into_event(self) -> Option<TimelineEvent> {
        let mut unreadable = Unreadable::default();
        let kind = match self.kind.0 {
            Ok(text) => EventKind::parse(&text).map_err(|error| error.to_string()),
            Err(error) => Err(error),
        }
        .unwrap_or_else(|error| {
            unreadable.note("kind", &error);
            EventKind::parse(EventKind::UNREADABLE).expect("a valid kind")
        });
        let mut attributes = Attributes::new();
        match self.attributes.0 {
            Ok(Json(serde_json::Value::Object(entries))) => {
                for (name, value) in entries {
                    match serde_json::from_value::<AttributeValue>(value) {
                        Ok(value) => {
                            attributes.insert(name, value);
                        }
                        Err(error) => {
                            unreadable.note(&format!("attribute `{name}`"), &error.to_string())
                        }
                    }
                }
            }
            Ok(Json(other)) => unreadable.note("attributes", &format!("not an object: {other}")),
            Err(error) => unreadable.note("attributes", &error),
        }
        let placement = match (self.account_id, self.match_detail) {
            (Some(account), Some(detail)) => Some(Placement {
                account: AccountId(account),
                reason: typed(&mut unreadable, "match reason", detail, MatchReason::Direct),
            }),
            (None, _) => None,
            (Some(account), None) => {
                unreadable.note("match reason", "missing for a placed event");
                Some(Placement {
                    account: AccountId(account),
                    reason: MatchReason::Direct,
                })
            }
        };
        let event = NewEvent {
            key: DedupeKey {
                connector: unreadable.take("connector", self.connector, String::new()),
                source_id: unreadable.take("source id", self.source_id, String::new()),
            },
            source_version: self.source_version,
            kind,
            occurred_at: from_us(self.occurred_at_us),
            title: unreadable.take("title", self.title, String::new()),
            summary: unreadable.take("summary", self.summary, String::new()),
            url: self
                .url
                .and_then(|url| unreadable.take("url", url.map_ok(Some), None)),
            actor: self
                .actor
                .and_then(|actor| typed(&mut unreadable, "actor", actor, None)),
            attributes,
            hints: typed(
                &mut unreadable,
                "hints",
                self.hints,
                AccountHints::default(),
            ),
            placement,
        };
        let match_candidates: Vec<i64> = self
            .match_candidates
            .map(|ids| typed(&mut unreadable, "match candidates", ids, Vec::new()))
            .unwrap_or_default();
        let capture = self.captured_by.map(|owner| Capture {
            owner: StaffId(owner),
            sharing: self
                .sharing
                .and_then(|sharing| sharing.0.ok())
                .and_then(|sharing| Sharing::parse(&sharing))
                .unwrap_or(Sharing::Private),
        });
        let mut event = event;
        let withheld = match capture.map(|capture| capture.access_by(self.owner_in_line)) {
            None | Some(Some(Access::Whole)) => false,
            Some(Some(Access::MetadataOnly)) => {
                withhold_content(&mut event);
                true
            }
            Some(None) => {
                tracing::error!(
                    event = self.id,
                    "a private event reached a reader outside its owner's line; it is left out"
                );
                return None;
            }
        };
        let unreadable = unreadable.finish();
        if let Some(reason) = &unreadable {
            tracing::warn!(event = self.id, %reason, "a stored event could not be read whole; it is shown marked unreadable");
        }
        Some(TimelineEvent {
            id: EventId(self.id),
            ingested_at: from_us(self.ingested_at_us),
            event,
            match_candidates: match_candidates.into_iter().map(AccountId).collect(),
            unreadable,
            capture,
            withheld,
        })
    }
}

/// Builds the `assignment.changed` event for a change to an account's team.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assignment_event(
    account: AccountId,
    assignment_row: i64,
    change: &str,
    title: String,
    role: Role,
    from: Option<&Staff>,
    to: Option<&Staff>,
    by: Option<StaffId>,
    at: DateTime<Utc>,
) -> Result<NewEvent> {
    let kind = EventKind::parse(EventKind::ASSIGNMENT_CHANGED)?;
    let mut event = NewEvent::new(
        INTERNAL_CONNECTOR,
        format!("assignment/{assignment_row}/{change}"),
        kind,
        at,
        title,
    );
    let mut attributes = Attributes::new();
    attributes.insert("change".into(), AttributeValue::Text(change.into()));
    attributes.insert("role".into(), AttributeValue::Text(role.as_str().into()));
    if let Some(from) = from {
        attributes.insert("from_staff_id".into(), AttributeValue::Integer(from.id.0));
        attributes.insert("from_name".into(), AttributeValue::Text(from.name.clone()));
    }
    if let Some(to) = to {
        attributes.insert("to_staff_id".into(), AttributeValue::Integer(to.id.0));
        attributes.insert("to_name".into(), AttributeValue::Text(to.name.clone()));
    }
    event.attributes = attributes;
    event.actor = by.map(|staff| Actor {
        staff: Some(staff),
        ..Actor::default()
    });
    event.placement = Some(Placement {
        account,
        reason: MatchReason::Direct,
    });
    event.validate()?;
    Ok(event)
}

/// Decodes up to `limit` rows of a `limit + 1` fetch into a page: the extra row only
/// says there is a next page.
fn page_of(mut rows: Vec<EventRow>, limit: u32) -> Result<TimelinePage> {
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|last| TimelineCursor {
            occurred_at: from_us(last.occurred_at_us),
            id: EventId(last.id),
        })
    } else {
        None
    };
    let events = rows.into_iter().filter_map(EventRow::into_event).collect();
    Ok(TimelinePage { events, next })
}

/// The first line of `text`, cut to 120 characters, as an event title.
pub(crate) fn one_line_title(text: &str) -> String {
    let first_line = text.trim().lines().next().unwrap_or_default();
    if first_line.chars().count() > 120 {
        first_line.chars().take(119).chain(['…']).collect()
    } else {
        first_line.to_owned()
    }
}

/// A new event written by a member of staff directly on an account (a note, a task),
/// with a fresh source id under `id_prefix`.
pub(crate) fn internal_event(
    kind: &str,
    id_prefix: &str,
    account: AccountId,
    author: &Staff,
    at: DateTime<Utc>,
    title: String,
) -> Result<NewEvent> {
    let mut event = NewEvent::new(
        INTERNAL_CONNECTOR,
        format!("{id_prefix}/{}", uuid::Uuid::new_v4()),
        EventKind::parse(kind)?,
        at,
        title,
    );
    event.actor = Some(Actor {
        name: Some(author.name.clone()),
        email: Some(author.email.clone()),
        staff: Some(author.id),
    });
    event.placement = Some(Placement {
        account,
        reason: MatchReason::Direct,
    });
    Ok(event)
}

/// Refuses filters that could never match (a malformed kind prefix or connector id),
/// so a typo is an error rather than an empty page.
fn check_filters(connectors: &[String], kind_prefix: Option<&str>) -> Result<()> {
    if let Some(prefix) = kind_prefix {
        EventKind::parse(prefix)?;
    }
    for connector in connectors {
        rapport_core::timeline::validate_connector_id(connector)?;
    }
    Ok(())
}

/// Refuses an oversized batch or an invalid event before anything is written.
pub(crate) fn check_batch(events: &[NewEvent]) -> Result<()> {
    if events.len() > UPSERT_BATCH_MAX {
        return Err(DomainError::InvalidField {
            field: "event batch",
            reason: format!(
                "holds {} events; send at most {UPSERT_BATCH_MAX} per batch",
                events.len()
            ),
        }
        .into());
    }
    for event in events {
        event.validate()?;
    }
    Ok(())
}

/// The accounts events name directly, sorted and unique.
pub(crate) fn named_accounts(events: &[NewEvent]) -> Vec<i64> {
    let mut accounts: Vec<i64> = events
        .iter()
        .filter_map(|event| {
            event
                .placement
                .as_ref()
                .map(|placement| placement.account.0)
        })
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    accounts
}

impl Store {
    /// Stores a batch of events in one transaction. Each event is keyed by (connector,
    /// source id): a new key is inserted, a higher source version replaces the stored
    /// event, an equal or lower one changes nothing. An event that names its account
    /// (`placement`) goes there; the others are placed by identity resolution from
    /// their hints, in the same transaction, or wait in the unmatched inbox. Every event
    /// is validated, and every placed-on account checked, before anything is written.
    pub async fn upsert_events(
        &self,
        events: &[NewEvent],
        at: DateTime<Utc>,
    ) -> Result<(UpsertSummary, Vec<UpsertOutcome>)> {
        let (commit, outcomes) = self
            .write_batch(Authority::Operator, events, at, None)
            .await?;
        Ok((commit.summary, outcomes))
    }

    /// The one batch write behind [`Store::upsert_events`] and pushed (webhook) events:
    /// validate, check named accounts, resolve, upsert — and, for a connector's pushed
    /// events, add what changed to its `events_ingested` — in one transaction.
    pub(crate) async fn write_batch(
        &self,
        authority: Authority<'_>,
        events: &[NewEvent],
        at: DateTime<Utc>,
        count_for_connector: Option<&str>,
    ) -> Result<(crate::sync::PageCommit, Vec<UpsertOutcome>)> {
        let result = self
            .write_batch_unobserved(authority, events, at, count_for_connector)
            .await;
        self.observe_write(&result, true);
        result
    }

    async fn write_batch_unobserved(
        &self,
        authority: Authority<'_>,
        events: &[NewEvent],
        at: DateTime<Utc>,
        count_for_connector: Option<&str>,
    ) -> Result<(crate::sync::PageCommit, Vec<UpsertOutcome>)> {
        check_batch(events)?;
        let accounts = named_accounts(events);
        let at_us = to_us(at);
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            crate::visibility::decide(&mut *tx, authority, at).await?;
            for account in &accounts {
                require_account(&mut *tx, AccountId(*account)).await?;
            }
            let mut changes = crate::insights::Changes::default();
            let (commit, outcomes) = write_events(
                &mut *tx,
                dialect,
                events,
                &self.ignored_domains,
                at_us,
                &mut changes,
            )
            .await?;
            if let Some(connector) = count_for_connector {
                sqlx::query(
                    "UPDATE connector_state SET events_ingested = events_ingested + $2
                     WHERE connector = $1",
                )
                .bind(connector)
                .bind(commit.summary.changed())
                .execute(&mut *tx)
                .await?;
            }
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            tx.commit().await?;
            Ok((commit, outcomes))
        })
    }

    /// Writes a note by `author` on `account`'s timeline.
    pub async fn add_note(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        author: StaffId,
        text: &str,
        at: DateTime<Utc>,
    ) -> Result<TimelineEvent> {
        let text = text.trim();
        if text.is_empty() {
            return Err(DomainError::InvalidField {
                field: "note",
                reason: "must not be empty".into(),
            }
            .into());
        }
        let author_record = self.active_author(author).await?;
        let mut event = internal_event(
            EventKind::NOTE,
            "note",
            account,
            &author_record,
            at,
            one_line_title(text),
        )?;
        event.summary = text.to_owned();
        self.write_internal(authority, event, at).await
    }

    /// `author`, refused if they have left: internal events are written by current staff.
    pub(crate) async fn active_author(&self, author: StaffId) -> Result<Staff> {
        let author_record = self.staff(author).await?;
        if !author_record.active {
            return Err(DomainError::StaffInactive(author).into());
        }
        Ok(author_record)
    }

    /// Stores one internal event (a note, a task), if `authority` may, and returns it as
    /// stored.
    pub(crate) async fn write_internal(
        &self,
        authority: Authority<'_>,
        event: NewEvent,
        at: DateTime<Utc>,
    ) -> Result<TimelineEvent> {
        let (_, outcomes) = self
            .write_batch(authority, std::slice::from_ref(&event), at, None)
            .await?;
        let id = match outcomes[0] {
            UpsertOutcome::Inserted(id) | UpsertOutcome::Updated(id) => id,
            UpsertOutcome::Unchanged => {
                return Err(Error::Conflict(format!("event {}", event.key.source_id)));
            }
        };
        Ok(TimelineEvent {
            id,
            ingested_at: from_us(to_us(at)),
            event,
            match_candidates: Vec::new(),
            unreadable: None,
            capture: None,
            withheld: false,
        })
    }

    /// One stored event as `reader` sees it: `None` when it does not exist or is
    /// private to a line the reader is not in; withheld when they may see only who,
    /// what subject and when. Whether they see its account is the caller's check.
    pub async fn event(&self, id: EventId, reader: Reader) -> Result<Option<TimelineEvent>> {
        let row: Option<EventRow> = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new("");
            push_reader(&mut sql, reader);
            sql.push(select_event(reader))
                .push(" WHERE id = ")
                .push_bind(id.0);
            sql.build_query_as::<EventRow>()
                .fetch_optional(pool)
                .await?
        });
        Ok(row.and_then(EventRow::into_event))
    }

    /// The stored event with this dedupe key, whole (the operator's read).
    pub async fn event_by_key(&self, key: &DedupeKey) -> Result<Option<TimelineEvent>> {
        let row: Option<EventRow> = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new(select_event(Reader::Operator));
            // The event a key is a sighting of, else the event of that key.
            sql.push(" WHERE identity = (SELECT identity FROM event_sightings WHERE connector = ")
                .push_bind(key.connector.as_str())
                .push(" AND source_id = ")
                .push_bind(key.source_id.as_str())
                .push(") OR (identity IS NULL AND connector = ")
                .push_bind(key.connector.as_str())
                .push(" AND source_id = ")
                .push_bind(key.source_id.as_str())
                .push(")");
            sql.build_query_as::<EventRow>()
                .fetch_optional(pool)
                .await?
        });
        Ok(row.and_then(EventRow::into_event))
    }

    /// A page of an account's timeline, newest first, by keyset on (occurred_at, id):
    /// a page deep in history costs what the first page costs. The caller must already
    /// have checked that the reader can see `query.account`; its subsidiaries are then
    /// visible too, by the visibility rule.
    pub async fn timeline(&self, query: &TimelineQuery) -> Result<TimelinePage> {
        let limit = query.limit.clamp(1, TIMELINE_PAGE_MAX);
        let accounts: Vec<i64> = if query.include_children {
            self.account_subtree_ids(query.account).await?
        } else {
            self.account_exists(query.account).await?;
            vec![query.account.0]
        };
        if accounts.len() > ROLLUP_ACCOUNTS_MAX {
            return Err(DomainError::InvalidField {
                field: "timeline roll-up",
                reason: format!(
                    "spans more than {ROLLUP_ACCOUNTS_MAX} accounts: open a subsidiary's timeline instead"
                ),
            }
            .into());
        }
        check_filters(&query.connectors, query.kind_prefix.as_deref())?;
        let filters = PageFilters::of_timeline(query);
        let rows: Vec<EventRow> = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new("");
            push_reader(&mut sql, query.reader);
            push_accounts_page(&mut sql, dialect, &accounts, filters, limit);
            sql.build_query_as::<EventRow>().fetch_all(pool).await?
        });
        page_of(rows, limit)
    }

    /// A page of the feed across every account `query.viewer` may see (the visibility
    /// rule in SQL, as in [`Store::visible_account_ids`]), newest first, keyset-paged.
    ///
    /// Two plans, chosen by how wide the viewer's book is. A narrow book (a manager's:
    /// under a tenth of the staff below the viewer, at most [`ROLLUP_ACCOUNTS_MAX`]
    /// accounts) is read like a roll-up, from each account's history. A wide one
    /// (a director's, the VP's) walks the whole timeline newest first and keeps the
    /// visible rows, so it stops after about a page. Each is many times slower on the
    /// other's case (BENCHMARKS.md, "Scale").
    pub async fn feed(&self, query: &FeedQuery) -> Result<TimelinePage> {
        let limit = query.limit.clamp(1, TIMELINE_PAGE_MAX);
        check_filters(&query.connectors, query.kind_prefix.as_deref())?;
        let filters = PageFilters::of_feed(query);
        if !self.team_is_wide(query.viewer).await? {
            let visible = self.visible_account_ids(query.viewer, query.at).await?;
            if visible.is_empty() {
                return Ok(TimelinePage {
                    events: Vec::new(),
                    next: None,
                });
            }
            if visible.len() <= ROLLUP_ACCOUNTS_MAX {
                let accounts: Vec<i64> = visible.iter().map(|account| account.0).collect();
                let rows: Vec<EventRow> = with_backend!(self, |pool, dialect| {
                    let mut sql = sqlx::QueryBuilder::new("");
                    push_reader(&mut sql, filters.reader);
                    push_accounts_page(&mut sql, dialect, &accounts, filters, limit);
                    sql.build_query_as::<EventRow>().fetch_all(pool).await?
                });
                return page_of(rows, limit);
            }
        }
        let rows: Vec<EventRow> = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new("WITH RECURSIVE ");
            crate::visibility::push_visible(&mut sql, query.viewer, query.at);
            sql.push(" ")
                .push(select_event(filters.reader))
                .push(dialect.newest_first_index())
                .push(dialect.visible_account_filter());
            push_page_tail(&mut sql, filters, limit);
            sql.build_query_as::<EventRow>().fetch_all(pool).await?
        });
        page_of(rows, limit)
    }

    /// Whether at least a tenth of the active staff are `viewer` or below them: then
    /// their visible accounts are likely a large share of all, and a feed finds a page
    /// soonest by walking the whole timeline newest first.
    async fn team_is_wide(&self, viewer: StaffId) -> Result<bool> {
        let (team, staff): (i64, i64) = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new("WITH RECURSIVE ");
            crate::visibility::push_team(&mut sql, viewer);
            sql.push(
                " SELECT (SELECT COUNT(*) FROM team), (SELECT COUNT(*) FROM staff WHERE active)",
            );
            sql.build_query_as().fetch_one(pool).await?
        });
        Ok(team * 10 >= staff)
    }

    /// How many events an account (with its subsidiaries, if asked) had on each UTC day
    /// in `[from, until)`, as (day, count) for the days that had any, oldest first. One
    /// grouped index range scan, so an activity chart costs no event rows.
    pub async fn activity_by_day(
        &self,
        account: AccountId,
        include_children: bool,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<(chrono::NaiveDate, i64)>> {
        const DAY_US: i64 = 86_400_000_000;
        let accounts: Vec<i64> = if include_children {
            self.account_subtree_ids(account).await?
        } else {
            self.account_exists(account).await?;
            vec![account.0]
        };
        let rows: Vec<(i64, i64)> = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new("SELECT occurred_at_us / ");
            sql.push(DAY_US.to_string())
                .push(" AS day, COUNT(*) FROM timeline_events WHERE account_id IN (");
            let mut list = sql.separated(", ");
            for account in &accounts {
                list.push_bind(*account);
            }
            sql.push(") AND occurred_at_us >= ")
                .push_bind(to_us(from))
                .push(" AND occurred_at_us < ")
                .push_bind(to_us(until))
                .push(" GROUP BY day ORDER BY day");
            sql.build_query_as::<(i64, i64)>().fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(day, count)| (from_us(day * DAY_US).date_naive(), count))
            .collect())
    }

    /// How many events wait in the unmatched inbox, per connector (sorted by id).
    pub async fn unmatched_counts(&self) -> Result<Vec<(String, i64)>> {
        let counts: Vec<(String, i64)> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT connector, COUNT(*) FROM timeline_events WHERE account_id IS NULL
                 GROUP BY connector ORDER BY connector",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(counts)
    }

    /// The unmatched inbox as `reader` sees it: events no account claims yet
    /// (ambiguous ones carry their candidates), newest first, optionally only one
    /// connector's; keyset-paged like a timeline. Whether the reader may triage the
    /// inbox is the caller's check; captured events follow their sharing levels.
    pub async fn unmatched_events(
        &self,
        reader: Reader,
        connector: Option<&str>,
        after: Option<TimelineCursor>,
        limit: u32,
    ) -> Result<TimelinePage> {
        let limit = limit.clamp(1, TIMELINE_PAGE_MAX);
        let rows: Vec<EventRow> = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new("");
            push_reader(&mut sql, reader);
            sql.push(select_event(reader))
                .push(" WHERE account_id IS NULL");
            if let Some(connector) = connector {
                sql.push(" AND connector = ").push_bind(connector);
            }
            push_page_tail(&mut sql, PageFilters::after(reader, after), limit);
            sql.build_query_as::<EventRow>().fetch_all(pool).await?
        });
        page_of(rows, limit)
    }

    /// `account` and its descendants' ids, bounded by the tree depth limit.
    pub(crate) async fn account_subtree_ids(&self, account: AccountId) -> Result<Vec<i64>> {
        let ids: Vec<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar(
                "WITH RECURSIVE tree(id, depth) AS (
                     SELECT id, 1 FROM accounts WHERE id = $1
                     UNION ALL
                     SELECT accounts.id, tree.depth + 1 FROM accounts JOIN tree ON accounts.parent_id = tree.id
                     WHERE tree.depth < $2
                 )
                 SELECT id FROM tree LIMIT $3",
            )
            .bind(account.0)
            .bind(ACCOUNT_DEPTH_MAX as i64)
            .bind(ROLLUP_ACCOUNTS_MAX as i64 + 1)
            .fetch_all(pool)
            .await?
        });
        if ids.is_empty() {
            return Err(DomainError::UnknownAccount(account).into());
        }
        Ok(ids)
    }
}
