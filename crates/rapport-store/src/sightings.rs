//! One conversation or meeting seen through several connections is one event
//! (`rapport_core::sighting`): the row of `timeline_events` with its `identity`, and a
//! row of `event_sightings` for each connection that reported it.
//!
//! Invariants, kept in every write transaction:
//! - an event with an identity has at least one sighting, and its `connector` /
//!   `source_id` are one of them (the one whose content it holds);
//! - a connector's key is either one sighting or one event without an identity,
//!   never both (a key that changes identity, or loses it, is detached first);
//! - the event's `captured_by` / `sharing` summarise its sightings as
//!   `rapport_core::sighting::combined` does ([`restamp`]).
//!
//! A new version from one sighting replaces the stored content when it is newer, or
//! as new and more open than every sighting so far; a sighting that goes away
//! (deleted by its connector) removes the event only when it was the last.

use crate::insights::{Changes, FACT_COLUMNS, FactRow};
use crate::timeline::{PlacedEvent, UPSERT_HEAD, UpsertOutcome, content_set, push_event_rows};
use crate::{Dialect, Result};
use rapport_core::EventId;
use rapport_core::timeline::{AccountHints, Actor, Attributes, MatchReason};
use sqlx::types::Json;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// How open a sighting (`s`) is, as `rapport_core::sighting::openness_rank` ranks it:
/// lower is more open.
const SIGHTING_RANK: &str = "CASE WHEN s.captured_by IS NULL THEN 0 \
    WHEN s.sharing = 'shared' THEN 1 WHEN s.sharing = 'metadata' THEN 2 ELSE 3 END";

/// A new event of an identity nobody stored yet; one stored meanwhile by another
/// writer is left for the replace statement.
const INSERT_TAIL: &str = "
ON CONFLICT (identity) WHERE identity IS NOT NULL DO NOTHING
RETURNING identity, id, revision, account_id";

/// Another sighting's version of a stored event: its content replaces the stored one
/// when newer, or as new and more open than the event's sightings so far (the row's
/// summary). The row then holds that sighting's key.
const REPLACE_TAIL: &str = concat!(
    "
ON CONFLICT (identity) WHERE identity IS NOT NULL DO UPDATE SET
    connector = excluded.connector,
    source_id = excluded.source_id,",
    content_set!(),
    "
WHERE excluded.source_version > timeline_events.source_version
   OR (excluded.source_version = timeline_events.source_version
       AND (CASE WHEN excluded.captured_by IS NULL THEN 0 WHEN excluded.sharing = 'shared' THEN 1
                 WHEN excluded.sharing = 'metadata' THEN 2 ELSE 3 END)
         < (CASE WHEN timeline_events.captured_by IS NULL THEN 0 WHEN timeline_events.sharing = 'shared' THEN 1
                 WHEN timeline_events.sharing = 'metadata' THEN 2 ELSE 3 END))
RETURNING identity, id, revision, account_id"
);

/// What an identity upsert returns for each event it inserted or replaced.
pub(crate) type Written = (String, i64, i64, Option<i64>);

/// One event to write with its shared identity, and where it is in the caller's batch.
#[derive(Clone, Copy)]
pub(crate) struct Seen<'r, 'a> {
    pub index: usize,
    pub row: &'r PlacedEvent<'a>,
    pub identity: &'r str,
}

/// A stored event with an identity, locked: what replacing it takes away.
#[derive(Debug, FromRow)]
pub(crate) struct HeldRow {
    identity: String,
    #[sqlx(flatten)]
    fact: FactRow,
}

/// Writes `seen` (at most a statement's worth, no key and no identity twice) on
/// `conn`: each event becomes a sighting of the one event of its identity, stored or
/// replaced as the module says. Returns each one's outcome with its index, and notes in
/// `changes` what that did to insights.
pub(crate) async fn upsert_seen<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    seen: &[Seen<'_, '_>],
    at_us: i64,
    changes: &mut Changes,
) -> Result<Vec<(usize, UpsertOutcome)>>
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
    (String, String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    Written: for<'r> FromRow<'r, DB::Row>,
    HeldRow: for<'r> FromRow<'r, DB::Row>,
    FactRow: for<'r> FromRow<'r, DB::Row>,
{
    let mut outcomes = Vec::with_capacity(seen.len());
    if seen.is_empty() {
        return Ok(outcomes);
    }
    // What each key was a sighting of, and at which version. A key that now names
    // another identity is detached from its old one first.
    let keys: Vec<(&str, &str)> = seen
        .iter()
        .map(|one| {
            (
                one.row.event.key.connector.as_str(),
                one.row.event.key.source_id.as_str(),
            )
        })
        .collect();
    let sightings = sightings_of(&mut *conn, &keys).await?;
    let mut current: Vec<Seen<'_, '_>> = Vec::with_capacity(seen.len());
    for one in seen {
        let key = (
            one.row.event.key.connector.clone(),
            one.row.event.key.source_id.clone(),
        );
        match sightings.get(&key) {
            Some((identity, version))
                if identity == one.identity && *version >= one.row.event.source_version =>
            {
                // This connection reported this version (or a newer one) already.
                outcomes.push((one.index, UpsertOutcome::Unchanged));
                continue;
            }
            Some((identity, _)) if identity == one.identity => {}
            Some(_) => {
                detach(&mut *conn, dialect, &key.0, &key.1, changes).await?;
            }
            None => {}
        }
        current.push(*one);
    }
    if current.is_empty() {
        return Ok(outcomes);
    }
    // An event stored under one of these keys without an identity (written before
    // identities, or by a version that had none) becomes the identity's event, or
    // gives way to the one that already has it.
    adopt_plain(&mut *conn, dialect, &current, changes).await?;

    // The stored events of these identities, locked in identity order (so writers
    // of overlapping sets take turns rather than deadlock).
    let mut held = held_rows(&mut *conn, dialect, current.iter().map(|one| one.identity)).await?;
    let (mut fresh, mut stored): (Vec<Seen<'_, '_>>, Vec<Seen<'_, '_>>) = current
        .iter()
        .partition(|one| !held.contains_key(one.identity));
    fresh.sort_by_key(|one| one.identity);
    if !fresh.is_empty() {
        let mut sql = QueryBuilder::<DB>::new(UPSERT_HEAD);
        push_event_rows(
            &mut sql,
            fresh.iter().map(|one| (one.row, Some(one.identity))),
            at_us,
        );
        sql.push(INSERT_TAIL);
        let written: Vec<Written> = sql.build_query_as().fetch_all(&mut *conn).await?;
        let inserted: HashMap<String, (i64, Option<i64>)> = written
            .into_iter()
            .map(|(identity, id, _, account)| (identity, (id, account)))
            .collect();
        let mut raced = Vec::new();
        for one in fresh {
            match inserted.get(one.identity) {
                Some(&(id, account)) => {
                    changes.added(crate::insights::fact_of(account, id, one.row.event));
                    outcomes.push((one.index, UpsertOutcome::Inserted(EventId(id))));
                }
                // Another writer stored it since it was looked for: replace it instead.
                None => raced.push(one),
            }
        }
        if !raced.is_empty() {
            held.extend(
                held_rows(&mut *conn, dialect, raced.iter().map(|one| one.identity)).await?,
            );
            stored.extend(raced);
        }
    }
    if !stored.is_empty() {
        stored.sort_by_key(|one| one.identity);
        let mut sql = QueryBuilder::<DB>::new(UPSERT_HEAD);
        push_event_rows(
            &mut sql,
            stored.iter().map(|one| (one.row, Some(one.identity))),
            at_us,
        );
        sql.push(REPLACE_TAIL);
        let written: Vec<Written> = sql.build_query_as().fetch_all(&mut *conn).await?;
        let replaced: HashMap<String, (i64, Option<i64>)> = written
            .into_iter()
            .map(|(identity, id, _, account)| (identity, (id, account)))
            .collect();
        for one in &stored {
            match replaced.get(one.identity) {
                Some(&(id, account)) => {
                    changes.removed(held.remove(one.identity).and_then(|row| row.into_fact()));
                    changes.added(crate::insights::fact_of(account, id, one.row.event));
                    outcomes.push((one.index, UpsertOutcome::Updated(EventId(id))));
                }
                None => outcomes.push((one.index, UpsertOutcome::Unchanged)),
            }
        }
    }
    record_sightings(&mut *conn, &current).await?;
    // A new event's summary is its one sighting's capture, written with it; a stored
    // one's is recomputed over all of them.
    let touched: Vec<&str> = stored.iter().map(|one| one.identity).collect();
    restamp(&mut *conn, Restamp::Identities(&touched)).await?;
    Ok(outcomes)
}

/// The sighting each of `keys` is now, if any: its identity and version.
async fn sightings_of<C, DB>(
    conn: &mut C,
    keys: &[(&str, &str)],
) -> Result<HashMap<(String, String), (String, i64)>>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (String, String, String, i64): for<'r> FromRow<'r, DB::Row>,
{
    let mut by_connector: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (connector, source_id) in keys {
        by_connector.entry(connector).or_default().push(source_id);
    }
    let mut found = HashMap::new();
    for (connector, source_ids) in by_connector {
        let mut sql = QueryBuilder::<DB>::new(
            "SELECT connector, source_id, identity, source_version FROM event_sightings WHERE connector = ",
        );
        sql.push_bind(connector).push(" AND source_id IN (");
        let mut list = sql.separated(", ");
        for source_id in source_ids {
            list.push_bind(source_id);
        }
        sql.push(")");
        let rows: Vec<(String, String, String, i64)> =
            sql.build_query_as().fetch_all(&mut *conn).await?;
        for (connector, source_id, identity, version) in rows {
            found.insert((connector, source_id), (identity, version));
        }
    }
    Ok(found)
}

/// Events stored under `seen`'s keys without an identity: each takes its key's new
/// identity if no event has it yet (keeping its id, and a sighting for its key),
/// else is deleted in favour of the one that has (the new version then replaces or
/// joins that one).
async fn adopt_plain<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    seen: &[Seen<'_, '_>],
    changes: &mut Changes,
) -> Result<()>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    FactRow: for<'r> FromRow<'r, DB::Row>,
{
    let mut by_connector: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for one in seen {
        by_connector
            .entry(one.row.event.key.connector.as_str())
            .or_default()
            .push(one.row.event.key.source_id.as_str());
    }
    let mut plain: Vec<(String, String, i64)> = Vec::new();
    for (connector, source_ids) in by_connector {
        let mut sql = QueryBuilder::<DB>::new(
            "SELECT connector, source_id, source_version FROM timeline_events WHERE identity IS NULL AND connector = ",
        );
        sql.push_bind(connector).push(" AND source_id IN (");
        let mut list = sql.separated(", ");
        for source_id in source_ids {
            list.push_bind(source_id);
        }
        sql.push(")").push(dialect.lock_rows());
        plain.extend(
            sql.build_query_as::<(String, String, i64)>()
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    for (connector, source_id, version) in plain {
        let Some(one) = seen.iter().find(|one| {
            one.row.event.key.connector == connector && one.row.event.key.source_id == source_id
        }) else {
            continue;
        };
        let taken: Option<(String,)> =
            sqlx::query_as("SELECT identity FROM timeline_events WHERE identity = $1")
                .bind(one.identity)
                .fetch_optional(&mut *conn)
                .await?;
        if taken.is_some() {
            let deleted: Option<FactRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "DELETE FROM timeline_events WHERE identity IS NULL AND connector = $1 AND source_id = $2
                 RETURNING {FACT_COLUMNS}"
            )))
            .bind(connector.as_str())
            .bind(source_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            changes.removed(deleted.and_then(FactRow::into_fact));
        } else {
            sqlx::query(
                "UPDATE timeline_events SET identity = $3 WHERE connector = $1 AND source_id = $2",
            )
            .bind(connector.as_str())
            .bind(source_id.as_str())
            .bind(one.identity)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO event_sightings (connector, source_id, identity, source_version, captured_by, sharing)
                 SELECT connector, source_id, identity, $3, captured_by, sharing
                   FROM timeline_events WHERE connector = $1 AND source_id = $2",
            )
            .bind(connector.as_str())
            .bind(source_id.as_str())
            .bind(version)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// The stored events of `identities`, by identity, locked for this transaction in
/// identity order.
async fn held_rows<'i, C, DB>(
    conn: &mut C,
    dialect: Dialect,
    identities: impl Iterator<Item = &'i str>,
) -> Result<HashMap<String, FactRow>>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    HeldRow: for<'r> FromRow<'r, DB::Row>,
{
    let identities: BTreeSet<&str> = identities.collect();
    if identities.is_empty() {
        return Ok(HashMap::new());
    }
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT identity, {FACT_COLUMNS} FROM timeline_events WHERE identity IN ("
    ));
    let mut list = sql.separated(", ");
    for identity in identities {
        list.push_bind(identity);
    }
    sql.push(") ORDER BY identity").push(dialect.lock_rows());
    let rows: Vec<HeldRow> = sql.build_query_as().fetch_all(&mut *conn).await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.identity, row.fact))
        .collect())
}

/// Writes each of `seen` as its key's sighting: identity, version and capture.
async fn record_sightings<C, DB>(conn: &mut C, seen: &[Seen<'_, '_>]) -> Result<()>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::<DB>::new(
        "INSERT INTO event_sightings (connector, source_id, identity, source_version, captured_by, sharing) ",
    );
    sql.push_values(seen, |mut values, one| {
        values
            .push_bind(one.row.event.key.connector.as_str())
            .push_bind(one.row.event.key.source_id.as_str())
            .push_bind(one.identity)
            .push_bind(one.row.event.source_version)
            .push_bind(one.row.capture.map(|capture| capture.owner.0))
            .push_bind(one.row.capture.map(|capture| capture.sharing.as_str()));
    });
    sql.push(
        " ON CONFLICT (connector, source_id) DO UPDATE SET
            identity = excluded.identity,
            source_version = excluded.source_version,
            captured_by = excluded.captured_by,
            sharing = excluded.sharing",
    );
    sql.build().execute(&mut *conn).await?;
    Ok(())
}

/// Which events' summaries [`restamp`] recomputes.
pub(crate) enum Restamp<'a> {
    /// These identities'.
    Identities(&'a [&'a str]),
    /// Those with a sighting through this connector.
    SeenBy(&'a str),
}

/// Recomputes the capture summary (`captured_by`, `sharing`) of events from their
/// sightings, as `rapport_core::sighting::combined` does: the most open sighting's,
/// between equals the lowest owner's.
pub(crate) async fn restamp<C, DB>(conn: &mut C, which: Restamp<'_>) -> Result<()>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    let best = format!(
        "FROM event_sightings s WHERE s.identity = timeline_events.identity
         ORDER BY {SIGHTING_RANK}, s.captured_by LIMIT 1"
    );
    let mut sql = QueryBuilder::<DB>::new(format!(
        "UPDATE timeline_events SET captured_by = (SELECT s.captured_by {best}),
            sharing = (SELECT s.sharing {best})
         WHERE identity IN ("
    ));
    match which {
        Restamp::Identities([]) => return Ok(()),
        Restamp::Identities(identities) => {
            let mut list = sql.separated(", ");
            for identity in identities {
                list.push_bind(*identity);
            }
        }
        Restamp::SeenBy(connector) => {
            sql.push("SELECT identity FROM event_sightings WHERE connector = ")
                .push_bind(connector);
        }
    }
    // Never an event without a sighting: its summary would read as everyone's.
    sql.push(
        ") AND EXISTS (SELECT 1 FROM event_sightings s WHERE s.identity = timeline_events.identity)",
    );
    sql.build().execute(&mut *conn).await?;
    Ok(())
}

/// Detaches every key of `rows` that is a sighting: what a write of them as events
/// without an identity does first.
pub(crate) async fn detach_keys<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    rows: &[PlacedEvent<'_>],
    changes: &mut Changes,
) -> Result<()>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    (String, String, i64): for<'r> FromRow<'r, DB::Row>,
    (String, String, String, i64): for<'r> FromRow<'r, DB::Row>,
    FactRow: for<'r> FromRow<'r, DB::Row>,
{
    let keys: Vec<(&str, &str)> = rows
        .iter()
        .map(|row| {
            (
                row.event.key.connector.as_str(),
                row.event.key.source_id.as_str(),
            )
        })
        .collect();
    for (connector, source_id) in sightings_of(&mut *conn, &keys).await?.into_keys() {
        detach(&mut *conn, dialect, &connector, &source_id, changes).await?;
    }
    Ok(())
}

/// What taking a key's sighting away did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detached {
    /// The key was no sighting (an event without identity, or nothing).
    NotSeen,
    /// Other sightings remain: the event stays.
    Kept,
    /// It was the last sighting: the event is deleted.
    Deleted,
}

/// Takes the sighting of `connector`'s `source_id` away from its event: the event is
/// deleted with its last sighting, else keeps its content under another sighting's
/// key and its summary is recomputed.
pub(crate) async fn detach<C, DB>(
    conn: &mut C,
    _dialect: Dialect,
    connector: &str,
    source_id: &str,
    changes: &mut Changes,
) -> Result<Detached>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    (String,): for<'r> FromRow<'r, DB::Row>,
    (String, String, i64): for<'r> FromRow<'r, DB::Row>,
    FactRow: for<'r> FromRow<'r, DB::Row>,
{
    let gone: Option<(String,)> = sqlx::query_as(
        "DELETE FROM event_sightings WHERE connector = $1 AND source_id = $2 RETURNING identity",
    )
    .bind(connector)
    .bind(source_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((identity,)) = gone else {
        return Ok(Detached::NotSeen);
    };
    let other: Option<(String, String, i64)> = sqlx::query_as(
        "SELECT connector, source_id, source_version FROM event_sightings WHERE identity = $1
         ORDER BY connector, source_id LIMIT 1",
    )
    .bind(identity.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    match other {
        None => {
            let deleted: Option<FactRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "DELETE FROM timeline_events WHERE identity = $1 RETURNING {FACT_COLUMNS}"
            )))
            .bind(identity.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            changes.removed(deleted.and_then(FactRow::into_fact));
            Ok(Detached::Deleted)
        }
        Some((other_connector, other_source_id, _)) => {
            sqlx::query(
                "UPDATE timeline_events SET connector = $2, source_id = $3
                 WHERE identity = $1 AND connector = $4 AND source_id = $5",
            )
            .bind(identity.as_str())
            .bind(other_connector.as_str())
            .bind(other_source_id.as_str())
            .bind(connector)
            .bind(source_id)
            .execute(&mut *conn)
            .await?;
            restamp(&mut *conn, Restamp::Identities(&[identity.as_str()])).await?;
            Ok(Detached::Kept)
        }
    }
}
