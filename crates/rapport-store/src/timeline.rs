//! The timeline repository: idempotent, versioned upserts and keyset-paginated reads.

use crate::time::{from_us, to_us};
use crate::tx::require_account;
use crate::{Error, Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::account::MAX_ACCOUNT_DEPTH;
use rapport_core::assignment::Role;
use rapport_core::staff::Staff;
use rapport_core::timeline::{
    AccountHints, Actor, AttributeValue, Attributes, DedupeKey, EventKind, INTERNAL_CONNECTOR,
    MatchReason, NewEvent, Placement, TimelineCursor, TimelineEvent,
};
use rapport_core::{AccountId, DomainError, EventId, StaffId};
use sqlx::types::Json;

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

/// Which part of which timeline to read.
#[derive(Debug, Clone)]
pub struct TimelineQuery {
    /// The account.
    pub account: AccountId,
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
    /// The newest page of one account's timeline, with no filters.
    pub fn account(account: AccountId) -> Self {
        TimelineQuery {
            account,
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

pub(crate) const UPSERT_EVENT: &str = "
INSERT INTO timeline_events (
    connector, source_id, source_version, account_id, kind, occurred_at_us, ingested_at_us,
    title, summary, url, actor, attributes, hints, match_rule, match_detail, match_candidates)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (connector, source_id) DO UPDATE SET
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
    -- A person's placement from the unmatched inbox outranks the connector's matching.
    account_id = CASE WHEN timeline_events.match_rule = 'manual'
                      THEN timeline_events.account_id ELSE excluded.account_id END,
    match_detail = CASE WHEN timeline_events.match_rule = 'manual'
                        THEN timeline_events.match_detail ELSE excluded.match_detail END,
    match_rule = CASE WHEN timeline_events.match_rule = 'manual'
                      THEN timeline_events.match_rule ELSE excluded.match_rule END,
    match_candidates = CASE WHEN timeline_events.match_rule = 'manual'
                            THEN NULL ELSE excluded.match_candidates END
WHERE excluded.source_version > timeline_events.source_version
RETURNING id, revision";

/// Upserts one validated event on the given connection, placed as the event says;
/// evaluates to `Result<UpsertOutcome>`.
macro_rules! upsert_event {
    ($conn:expr, $event:expr, $at_us:expr) => {{
        let event: &rapport_core::timeline::NewEvent = $event;
        $crate::timeline::upsert_placed!($conn, event, event.placement.as_ref(), &[], $at_us)
    }};
}
pub(crate) use upsert_event;

/// Upserts one validated event with the given placement (`None`: it waits in the
/// unmatched inbox, with `candidates` if its match was ambiguous); evaluates to
/// `Result<UpsertOutcome>`.
macro_rules! upsert_placed {
    ($conn:expr, $event:expr, $placement:expr, $candidates:expr, $at_us:expr) => {{
        let event: &rapport_core::timeline::NewEvent = $event;
        let placement: Option<&rapport_core::timeline::Placement> = $placement;
        let candidates: &[rapport_core::AccountId] = $candidates;
        let candidates: Option<Vec<i64>> =
            (!candidates.is_empty()).then(|| candidates.iter().map(|account| account.0).collect());
        let returned: std::result::Result<Option<(i64, i64)>, sqlx::Error> =
            sqlx::query_as($crate::timeline::UPSERT_EVENT)
                .bind(event.key.connector.as_str())
                .bind(event.key.source_id.as_str())
                .bind(event.source_version)
                .bind(placement.map(|placement| placement.account.0))
                .bind(event.kind.as_str())
                .bind($crate::time::to_us(event.occurred_at))
                .bind($at_us)
                .bind(event.title.trim())
                .bind(event.summary.as_str())
                .bind(event.url.as_deref())
                .bind(event.actor.as_ref().map(sqlx::types::Json))
                .bind(sqlx::types::Json(&event.attributes))
                .bind(sqlx::types::Json(&event.hints))
                .bind(placement.map(|placement| placement.reason.rule()))
                .bind(placement.map(|placement| sqlx::types::Json(&placement.reason)))
                .bind(candidates.map(sqlx::types::Json))
                .fetch_optional($conn)
                .await;
        returned
            .map(|row| match row {
                None => $crate::timeline::UpsertOutcome::Unchanged,
                Some((id, 1)) => {
                    $crate::timeline::UpsertOutcome::Inserted(rapport_core::EventId(id))
                }
                Some((id, _)) => {
                    $crate::timeline::UpsertOutcome::Updated(rapport_core::EventId(id))
                }
            })
            .map_err($crate::Error::from)
    }};
}
pub(crate) use upsert_placed;

/// Places (by identity resolution, unless they name their account) and upserts a
/// validated batch on transaction `$tx`; evaluates to
/// `Result<(PageCommit, Vec<UpsertOutcome>)>`.
macro_rules! write_events {
    ($tx:ident, $dialect:expr, $events:expr, $ignored:expr, $at_us:expr) => {{
        let events: &[rapport_core::timeline::NewEvent] = $events;
        async {
            let placements = $crate::identity::resolve_batch!($tx, $dialect, events, $ignored)?;
            let mut commit = $crate::sync::PageCommit::default();
            let mut outcomes = Vec::with_capacity(events.len());
            for (event, (placement, candidates)) in events.iter().zip(&placements) {
                let outcome = $crate::timeline::upsert_placed!(
                    &mut *$tx,
                    event,
                    placement.as_ref(),
                    candidates,
                    $at_us
                )?;
                commit.summary.add(outcome);
                if placement.is_none() {
                    commit.waiting += 1;
                }
                outcomes.push(outcome);
            }
            Ok::<_, $crate::Error>((commit, outcomes))
        }
        .await
    }};
}
pub(crate) use write_events;

/// Appends the timeline filters and the keyset condition (`AND ...` clauses) to a query
/// that already has a `WHERE`. A macro because it expands inside `with_backend!`, on that
/// backend's `QueryBuilder`.
macro_rules! push_filters {
    ($sql:ident, $connectors:expr, $kind_prefix:expr, $from:expr, $until:expr, $after:expr) => {{
        if !$connectors.is_empty() {
            $sql.push(" AND connector IN (");
            let mut list = $sql.separated(", ");
            for connector in &$connectors {
                list.push_bind(connector.clone());
            }
            $sql.push(")");
        }
        if let Some(prefix) = &$kind_prefix {
            // `billing` matches `billing` and everything in `billing.` .. `billing/`
            // ('/' is the byte after '.'): a range the index and both backends
            // compare bytewise, with no LIKE wildcards to escape.
            $sql.push(" AND (kind = ")
                .push_bind(prefix.clone())
                .push(" OR (kind >= ")
                .push_bind(format!("{prefix}."))
                .push(" AND kind < ")
                .push_bind(format!("{prefix}/"))
                .push("))");
        }
        if let Some(from) = $from {
            $sql.push(" AND occurred_at_us >= ").push_bind(to_us(from));
        }
        if let Some(until) = $until {
            $sql.push(" AND occurred_at_us < ").push_bind(to_us(until));
        }
        if let Some(after) = $after {
            $sql.push(" AND (occurred_at_us, id) < (")
                .push_bind(to_us(after.occurred_at))
                .push(", ")
                .push_bind(after.id.0)
                .push(")");
        }
    }};
}

const SELECT_EVENT: &str = "SELECT id, connector, source_id, source_version, account_id, kind,
    occurred_at_us, ingested_at_us, title, summary, url, actor, attributes, hints, match_detail, match_candidates
    FROM timeline_events";

#[derive(Debug, sqlx::FromRow)]
struct EventRow {
    id: i64,
    connector: String,
    source_id: String,
    source_version: i64,
    account_id: Option<i64>,
    kind: String,
    occurred_at_us: i64,
    ingested_at_us: i64,
    title: String,
    summary: String,
    url: Option<String>,
    actor: Option<Json<Actor>>,
    attributes: Json<Attributes>,
    hints: Json<AccountHints>,
    match_detail: Option<Json<MatchReason>>,
    match_candidates: Option<Json<Vec<i64>>>,
}

impl EventRow {
    fn into_event(self) -> Result<TimelineEvent> {
        let kind = crate::error::decode("event kind", &self.kind, EventKind::parse)?;
        let placement = match (self.account_id, self.match_detail) {
            (Some(account), Some(Json(reason))) => Some(Placement {
                account: AccountId(account),
                reason,
            }),
            (None, _) => None,
            (Some(account), None) => {
                return Err(Error::Corrupt(format!(
                    "event #{} is on account #{account} without a match reason",
                    self.id
                )));
            }
        };
        Ok(TimelineEvent {
            id: EventId(self.id),
            ingested_at: from_us(self.ingested_at_us),
            event: NewEvent {
                key: DedupeKey {
                    connector: self.connector,
                    source_id: self.source_id,
                },
                source_version: self.source_version,
                kind,
                occurred_at: from_us(self.occurred_at_us),
                title: self.title,
                summary: self.summary,
                url: self.url,
                actor: self.actor.map(|Json(actor)| actor),
                attributes: self.attributes.0,
                hints: self.hints.0,
                placement,
            },
            match_candidates: self
                .match_candidates
                .map(|Json(ids)| ids.into_iter().map(AccountId).collect())
                .unwrap_or_default(),
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
fn page_of(rows: Vec<EventRow>, limit: u32) -> Result<TimelinePage> {
    let mut events = rows
        .into_iter()
        .map(EventRow::into_event)
        .collect::<Result<Vec<_>>>()?;
    let next = if events.len() > limit as usize {
        events.truncate(limit as usize);
        events.last().map(|last| TimelineCursor {
            occurred_at: last.event.occurred_at,
            id: last.id,
        })
    } else {
        None
    };
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
        let (commit, outcomes) = self.write_batch(events, at, None).await?;
        Ok((commit.summary, outcomes))
    }

    /// The one batch write behind [`Store::upsert_events`] and pushed (webhook) events:
    /// validate, check named accounts, resolve, upsert — and, for a connector's pushed
    /// events, add what changed to its `events_ingested` — in one transaction.
    pub(crate) async fn write_batch(
        &self,
        events: &[NewEvent],
        at: DateTime<Utc>,
        count_for_connector: Option<&str>,
    ) -> Result<(crate::sync::PageCommit, Vec<UpsertOutcome>)> {
        check_batch(events)?;
        let accounts = named_accounts(events);
        let at_us = to_us(at);
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            for account in &accounts {
                require_account!(&mut *tx, AccountId(*account))?;
            }
            let (commit, outcomes) =
                write_events!(tx, dialect, events, &self.ignored_domains, at_us)?;
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
            tx.commit().await?;
            Ok((commit, outcomes))
        })
    }

    /// Writes a note by `author` on `account`'s timeline.
    pub async fn add_note(
        &self,
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
        self.write_internal(event, at).await
    }

    /// `author`, refused if they have left: internal events are written by current staff.
    pub(crate) async fn active_author(&self, author: StaffId) -> Result<Staff> {
        let author_record = self.staff(author).await?;
        if !author_record.active {
            return Err(DomainError::StaffInactive(author).into());
        }
        Ok(author_record)
    }

    /// Stores one internal event (a note, a task) and returns it as stored.
    pub(crate) async fn write_internal(
        &self,
        event: NewEvent,
        at: DateTime<Utc>,
    ) -> Result<TimelineEvent> {
        let (_, outcomes) = self.upsert_events(std::slice::from_ref(&event), at).await?;
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
        })
    }

    /// One stored event.
    pub async fn event(&self, id: EventId) -> Result<Option<TimelineEvent>> {
        let row: Option<EventRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT id, connector, source_id, source_version, account_id, kind,
                    occurred_at_us, ingested_at_us, title, summary, url, actor, attributes, hints, match_detail,
                    match_candidates
                 FROM timeline_events WHERE id = $1",
            )
            .bind(id.0)
            .fetch_optional(pool)
            .await?
        });
        row.map(EventRow::into_event).transpose()
    }

    /// The stored event with this dedupe key.
    pub async fn event_by_key(&self, key: &DedupeKey) -> Result<Option<TimelineEvent>> {
        let row: Option<EventRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT id, connector, source_id, source_version, account_id, kind,
                    occurred_at_us, ingested_at_us, title, summary, url, actor, attributes, hints, match_detail,
                    match_candidates
                 FROM timeline_events WHERE connector = $1 AND source_id = $2",
            )
            .bind(key.connector.as_str())
            .bind(key.source_id.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(EventRow::into_event).transpose()
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
        let rows: Vec<EventRow> = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new(SELECT_EVENT);
            if let [account] = accounts.as_slice() {
                sql.push(" WHERE account_id = ").push_bind(*account);
            } else {
                sql.push(" WHERE account_id IN (");
                let mut list = sql.separated(", ");
                for account in &accounts {
                    list.push_bind(*account);
                }
                sql.push(")");
            }
            push_filters!(
                sql,
                query.connectors,
                query.kind_prefix,
                query.from,
                query.until,
                query.after
            );
            sql.push(" ORDER BY occurred_at_us DESC, id DESC LIMIT ")
                .push_bind(i64::from(limit) + 1);
            sql.build_query_as::<EventRow>().fetch_all(pool).await?
        });
        page_of(rows, limit)
    }

    /// A page of the feed across every account `query.viewer` may see (the visibility
    /// rule in SQL, as in [`Store::visible_account_ids`]), newest first, keyset-paged.
    pub async fn feed(&self, query: &FeedQuery) -> Result<TimelinePage> {
        let limit = query.limit.clamp(1, TIMELINE_PAGE_MAX);
        check_filters(&query.connectors, query.kind_prefix.as_deref())?;
        let rows: Vec<EventRow> = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new(
                "WITH RECURSIVE
                 team(id) AS (
                     SELECT id FROM staff WHERE id = ",
            );
            sql.push_bind(query.viewer.0)
                .push(
                    " AND active
                     UNION
                     SELECT staff.id FROM staff JOIN team ON staff.reports_to = team.id
                 ),
                 assigned(id) AS (
                     SELECT DISTINCT assignments.account_id
                     FROM assignments JOIN team ON assignments.staff_id = team.id
                     WHERE assignments.valid_from_us <= ",
                )
                .push_bind(to_us(query.at))
                .push(" AND (assignments.valid_to_us IS NULL OR assignments.valid_to_us > ")
                .push_bind(to_us(query.at))
                .push(
                    ")
                 ),
                 visible(id, depth) AS (
                     SELECT id, 1 FROM assigned
                     UNION
                     SELECT accounts.id, visible.depth + 1
                     FROM accounts JOIN visible ON accounts.parent_id = visible.id
                     WHERE visible.depth < ",
                )
                .push_bind(MAX_ACCOUNT_DEPTH as i64)
                .push(") ")
                .push(SELECT_EVENT)
                .push(" WHERE account_id IN (SELECT id FROM visible)");
            push_filters!(
                sql,
                query.connectors,
                query.kind_prefix,
                query.from,
                query.until,
                query.after
            );
            sql.push(" ORDER BY occurred_at_us DESC, id DESC LIMIT ")
                .push_bind(i64::from(limit) + 1);
            sql.build_query_as::<EventRow>().fetch_all(pool).await?
        });
        page_of(rows, limit)
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

    /// The unmatched inbox: events no account claims yet (ambiguous ones carry their
    /// candidates), newest first, optionally only one connector's; keyset-paged like
    /// a timeline.
    pub async fn unmatched_events(
        &self,
        connector: Option<&str>,
        after: Option<TimelineCursor>,
        limit: u32,
    ) -> Result<TimelinePage> {
        let limit = limit.clamp(1, TIMELINE_PAGE_MAX);
        let rows: Vec<EventRow> = with_backend!(self, |pool, dialect| {
            let mut sql = sqlx::QueryBuilder::new(SELECT_EVENT);
            sql.push(" WHERE account_id IS NULL");
            if let Some(connector) = connector {
                sql.push(" AND connector = ").push_bind(connector);
            }
            let no_connectors: Vec<String> = Vec::new();
            push_filters!(sql, no_connectors, None::<String>, None, None, after);
            sql.push(" ORDER BY occurred_at_us DESC, id DESC LIMIT ")
                .push_bind(i64::from(limit) + 1);
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
            .bind(MAX_ACCOUNT_DEPTH as i64)
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
