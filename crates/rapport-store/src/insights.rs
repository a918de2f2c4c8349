//! Account insights kept on write: every statement that puts an event on an account,
//! replaces it, moves it or deletes it tells [`keep`] what it took away and what it
//! added, inside its own transaction, and `keep` folds that into each account's
//! `account_insights` row (`rapport_core::insight`). So the book, Team and attention
//! answers read one row per account ([`Store::insights`]) instead of its timeline, and
//! a crash can never leave an insight that disagrees with the events it covers.
//!
//! Rows are locked in account order (`FOR UPDATE` on PostgreSQL; SQLite's write
//! transaction holds its one lock), so two writers to one account take turns and two
//! writers to several never deadlock on insights. A removal that took away a "newest"
//! fact, a row of an older shape, or a missing row, rebuilds that account from its
//! events of the kinds an insight reads — on the same connection, after this
//! transaction's own writes.

use crate::lenient::Lenient;
use crate::time::{from_us, to_us};
use crate::tx::select_by_ids;
use crate::{Dialect, Error, Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::AccountId;
use rapport_core::EventId;
use rapport_core::insight::{INSIGHT_VERSION, Insight, Meetings, Observed, Removal, concerns};
use rapport_core::timeline::Attributes;
use sqlx::types::Json;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The SQL that narrows `timeline_events` to the kinds an insight reads
/// (`rapport_core::insight::INSIGHT_KINDS`).
pub(crate) const CONCERNED_KINDS: &str = "(kind LIKE 'email.%' OR kind LIKE 'billing.%' \
     OR kind IN ('support.ticket.created', 'task.created'))";

/// Most accounts one rebuild reads the events of at once (one transaction each when
/// rebuilding stale rows): few enough that a batch of busy accounts stays small in
/// memory, many enough that ten thousand quiet ones are a hundred statements.
const REBUILD_ACCOUNTS_PER_QUERY: usize = 100;

/// The insight rows of the accounts listed after it (see `select_by_ids`).
const SELECT_INSIGHTS: &str =
    "SELECT account_id, version, insight FROM account_insights WHERE account_id IN (";

/// Most accounts one statement reads insights of (well inside both backends' limits
/// on bound parameters).
const ACCOUNTS_PER_STATEMENT_MAX: usize = 1_000;

/// One event as an insight sees it, owned: read back from the database or taken from
/// the event just written.
#[derive(Debug, Clone)]
pub(crate) struct Fact {
    pub(crate) account: i64,
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) occurred_at_us: i64,
    pub(crate) attributes: Attributes,
}

impl Fact {
    fn observed(&self) -> Observed<'_> {
        Observed {
            id: EventId(self.id),
            kind: &self.kind,
            occurred_at: from_us(self.occurred_at_us),
            attributes: &self.attributes,
        }
    }
}

/// A stored event's row, as [`Fact`] reads it.
#[derive(Debug, FromRow)]
pub(crate) struct FactRow {
    id: i64,
    account_id: Option<i64>,
    kind: String,
    occurred_at_us: i64,
    attributes: Lenient<Json<Attributes>>,
}

impl FactRow {
    /// The fact, if the event is on an account and of a kind an insight reads.
    pub(crate) fn into_fact(self) -> Option<Fact> {
        let account = self.account_id?;
        concerns(&self.kind).then(|| Fact {
            account,
            id: self.id,
            kind: self.kind,
            occurred_at_us: self.occurred_at_us,
            // Attributes that cannot be read count as none, here and in a rebuild alike.
            attributes: self.attributes.0.map(|json| json.0).unwrap_or_default(),
        })
    }
}

/// The columns [`FactRow`] reads, for `SELECT` and `RETURNING` lists.
pub(crate) const FACT_COLUMNS: &str = "id, account_id, kind, occurred_at_us, attributes";

/// One thing a statement did to an event insights count.
#[derive(Debug)]
enum Step {
    /// The event was taken off its account (the old version of a replaced event, a
    /// deleted one), as it was.
    Removed(Fact),
    /// The event was put on an account (new, the new version of a replaced one,
    /// placed from the inbox).
    Added(Fact),
}

/// What a transaction did to the events insights count, in the order it did it, to be
/// folded in by [`keep`] once, just before the transaction commits (so each
/// transaction locks insight rows once, in account order).
#[derive(Debug, Default)]
pub(crate) struct Changes {
    steps: Vec<Step>,
    /// Accounts created in the transaction: their (empty) insight row is written.
    created: Vec<i64>,
}

impl Changes {
    /// An account created in this transaction.
    pub(crate) fn created(&mut self, account: i64) {
        self.created.push(account);
    }

    /// An event taken off its account, if insights count it.
    pub(crate) fn removed(&mut self, fact: Option<Fact>) {
        self.steps.extend(fact.map(Step::Removed));
    }

    /// An event put on an account, if insights count it.
    pub(crate) fn added(&mut self, fact: Option<Fact>) {
        self.steps.extend(fact.map(Step::Added));
    }
}

/// Folds `changes` into the insight rows of the accounts they touch, on `conn` (the
/// connection of the transaction that made them, after its last event write).
pub(crate) async fn keep<C, DB>(conn: &mut C, dialect: Dialect, changes: Changes) -> Result<()>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    (i64, i64, String): for<'r> FromRow<'r, DB::Row>,
    FactRow: for<'r> FromRow<'r, DB::Row>,
{
    if changes.steps.is_empty() && changes.created.is_empty() {
        return Ok(());
    }
    let accounts: BTreeSet<i64> = changes
        .steps
        .iter()
        .map(|step| match step {
            Step::Removed(fact) | Step::Added(fact) => fact.account,
        })
        .chain(changes.created.iter().copied())
        .collect();
    let mut held = load(&mut *conn, dialect, &accounts).await?;
    // A missing row, or one of another shape, is rebuilt from the timeline as this
    // transaction leaves it, which already holds every step.
    let mut rebuild: BTreeSet<i64> = accounts
        .iter()
        .copied()
        .filter(|account| !held.contains_key(account))
        .collect();
    for step in &changes.steps {
        let (Step::Removed(fact) | Step::Added(fact)) = step;
        if rebuild.contains(&fact.account) {
            continue;
        }
        let Some(insight) = held.get_mut(&fact.account) else {
            continue;
        };
        let observed = fact.observed();
        let needs_rebuild = match step {
            Step::Removed(_) => insight.remove(&observed) == Removal::Recompute,
            Step::Added(_) if insight.needs_rebuild(&observed) => true,
            Step::Added(_) => {
                insight.add(&observed);
                false
            }
        };
        if needs_rebuild {
            rebuild.insert(fact.account);
        }
    }
    let rebuild: Vec<i64> = rebuild.into_iter().collect();
    held.extend(recompute(&mut *conn, &rebuild).await?);
    store(&mut *conn, &held).await
}

/// The stored versions of `connector`'s events `source_ids` that insights count, by
/// source id, locked for this transaction: what an upsert that replaces them takes
/// away. Read before the upsert, since neither backend's `RETURNING` shows the row
/// as it was.
pub(crate) async fn stored_facts<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    connector: &str,
    source_ids: &[&str],
) -> Result<HashMap<String, Fact>>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    KeyedFactRow: for<'r> FromRow<'r, DB::Row>,
{
    let mut found = HashMap::new();
    if source_ids.is_empty() {
        return Ok(found);
    }
    let mut sql = QueryBuilder::<DB>::new(format!(
        "SELECT source_id, {FACT_COLUMNS} FROM timeline_events \
         WHERE account_id IS NOT NULL AND {CONCERNED_KINDS} AND connector = "
    ));
    sql.push_bind(connector).push(" AND source_id IN (");
    let mut list = sql.separated(", ");
    for source_id in source_ids {
        list.push_bind(*source_id);
    }
    sql.push(")");
    sql.push(dialect.lock_rows());
    let rows: Vec<KeyedFactRow> = sql.build_query_as().fetch_all(&mut *conn).await?;
    found.extend(
        rows.into_iter()
            .filter_map(|row| Some((row.source_id, row.fact.into_fact()?))),
    );
    Ok(found)
}

/// [`FactRow`] with the event's source id, for [`stored_facts`].
#[derive(Debug, FromRow)]
pub(crate) struct KeyedFactRow {
    source_id: String,
    #[sqlx(flatten)]
    fact: FactRow,
}

/// The held insights of `accounts`, their rows locked for this transaction; a row of
/// another shape, or one that did not exist, is left out (to be rebuilt).
///
/// A missing row is first written as a placeholder (version 0) and then locked like
/// the others: on PostgreSQL a concurrent writer that is creating the same row makes
/// this wait for its commit, so the rebuild that follows reads that writer's events
/// too instead of overwriting its row with a view that lacks them.
async fn load<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    accounts: &BTreeSet<i64>,
) -> Result<BTreeMap<i64, Insight>>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    (i64, i64, String): for<'r> FromRow<'r, DB::Row>,
{
    let ids: Vec<i64> = accounts.iter().copied().collect();
    let (mut held, present) = lock_rows(&mut *conn, dialect, &ids).await?;
    let missing: Vec<i64> = ids
        .into_iter()
        .filter(|account| !present.contains(account))
        .collect();
    if !missing.is_empty() {
        for chunk in missing.chunks(ACCOUNTS_PER_STATEMENT_MAX) {
            let mut sql = QueryBuilder::<DB>::new(
                "INSERT INTO account_insights (account_id, version, insight) ",
            );
            sql.push_values(chunk, |mut values, account| {
                values
                    .push_bind(*account)
                    .push_bind(0_i64)
                    .push_bind(String::from("{}"));
            });
            sql.push(" ON CONFLICT (account_id) DO NOTHING");
            sql.build().execute(&mut *conn).await?;
        }
        // Another writer may have created and filled a row meanwhile: that one counts.
        let (created, _) = lock_rows(&mut *conn, dialect, &missing).await?;
        held.extend(created);
    }
    Ok(held)
}

/// Locks the insight rows of `accounts` in account order; returns the decodable ones
/// of this version, and which rows exist at all.
async fn lock_rows<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    accounts: &[i64],
) -> Result<(BTreeMap<i64, Insight>, BTreeSet<i64>)>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    (i64, i64, String): for<'r> FromRow<'r, DB::Row>,
{
    let mut held = BTreeMap::new();
    let mut present = BTreeSet::new();
    for chunk in accounts.chunks(ACCOUNTS_PER_STATEMENT_MAX) {
        let order = format!("ORDER BY account_id{}", dialect.lock_rows());
        let mut sql = select_by_ids::<DB>(SELECT_INSIGHTS, chunk, &order);
        let rows: Vec<(i64, i64, String)> = sql.build_query_as().fetch_all(&mut *conn).await?;
        for (account, version, text) in rows {
            present.insert(account);
            if let Some(insight) = decode(version, &text) {
                held.insert(account, insight);
            }
        }
    }
    Ok((held, present))
}

fn decode(version: i64, text: &str) -> Option<Insight> {
    if version != INSIGHT_VERSION {
        return None;
    }
    match serde_json::from_str(text) {
        Ok(insight) => Some(insight),
        Err(error) => {
            tracing::warn!(%error, "an account insight could not be read; it is rebuilt");
            None
        }
    }
}

/// The insights of `accounts` from their events, one query per
/// [`REBUILD_ACCOUNTS_PER_QUERY`] accounts; every account given has an entry.
async fn recompute<C, DB>(conn: &mut C, accounts: &[i64]) -> Result<BTreeMap<i64, Insight>>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    FactRow: for<'r> FromRow<'r, DB::Row>,
{
    let select = format!("SELECT {FACT_COLUMNS} FROM timeline_events WHERE account_id IN (");
    let condition = format!("AND {CONCERNED_KINDS}");
    let mut facts: BTreeMap<i64, Vec<Fact>> = accounts
        .iter()
        .map(|account| (*account, Vec::new()))
        .collect();
    for chunk in accounts.chunks(REBUILD_ACCOUNTS_PER_QUERY) {
        let mut sql = select_by_ids::<DB>(&select, chunk, &condition);
        let rows: Vec<FactRow> = sql.build_query_as().fetch_all(&mut *conn).await?;
        for fact in rows.into_iter().filter_map(FactRow::into_fact) {
            facts.entry(fact.account).or_default().push(fact);
        }
    }
    Ok(facts
        .into_iter()
        .map(|(account, facts)| (account, Insight::of(facts.iter().map(Fact::observed))))
        .collect())
}

/// Writes `insights` back, one statement.
async fn store<C, DB>(conn: &mut C, insights: &BTreeMap<i64, Insight>) -> Result<()>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
{
    let rows: Vec<(i64, String)> = insights
        .iter()
        .map(|(account, insight)| {
            serde_json::to_string(insight)
                .map(|text| (*account, text))
                .map_err(|error| Error::Corrupt(format!("an insight did not encode: {error}")))
        })
        .collect::<Result<_>>()?;
    for chunk in rows.chunks(ACCOUNTS_PER_STATEMENT_MAX) {
        let mut sql =
            QueryBuilder::<DB>::new("INSERT INTO account_insights (account_id, version, insight) ");
        sql.push_values(chunk, |mut values, (account, text)| {
            values
                .push_bind(*account)
                .push_bind(INSIGHT_VERSION)
                .push_bind(text.clone());
        });
        sql.push(
            " ON CONFLICT (account_id) DO UPDATE SET version = excluded.version, \
             insight = excluded.insight",
        );
        sql.build().execute(&mut *conn).await?;
    }
    Ok(())
}

impl Store {
    /// The insights of `accounts` (those that exist), one query per thousand. An
    /// account whose row is missing or of another shape (a database another version
    /// wrote) is computed from its timeline instead, and not written.
    pub async fn insights(&self, accounts: &[AccountId]) -> Result<BTreeMap<AccountId, Insight>> {
        let mut found = BTreeMap::new();
        with_backend!(self, |pool, dialect| {
            let mut conn = pool.acquire().await?;
            let ids: Vec<i64> = accounts.iter().map(|account| account.0).collect();
            for chunk in ids.chunks(ACCOUNTS_PER_STATEMENT_MAX) {
                let mut sql = select_by_ids(SELECT_INSIGHTS, chunk, "");
                let rows: Vec<(i64, i64, String)> =
                    sql.build_query_as().fetch_all(&mut *conn).await?;
                for (account, version, text) in rows {
                    if let Some(insight) = decode(version, &text) {
                        found.insert(AccountId(account), insight);
                    }
                }
            }
            let missing: Vec<i64> = ids
                .iter()
                .copied()
                .filter(|account| !found.contains_key(&AccountId(*account)))
                .collect();
            for chunk in missing.chunks(ACCOUNTS_PER_STATEMENT_MAX) {
                let sql = "SELECT id FROM accounts WHERE id IN (";
                let existing: Vec<i64> = select_by_ids(sql, chunk, "")
                    .build_query_scalar()
                    .fetch_all(&mut *conn)
                    .await?;
                for (account, insight) in recompute(&mut *conn, &existing).await? {
                    found.insert(AccountId(account), insight);
                }
            }
        });
        Ok(found)
    }

    /// What the calendars say of `accounts` at `now` (only accounts with a meeting
    /// held or to come): the end of the latest meeting held and the start of the next,
    /// read from the meeting indexes (one seek each per account), since both move
    /// with the clock rather than with writes.
    pub async fn meetings(
        &self,
        accounts: &[AccountId],
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<AccountId, Meetings>> {
        let mut found = BTreeMap::new();
        let now_us = to_us(now);
        with_backend!(self, |pool, _dialect| {
            let mut conn = pool.acquire().await?;
            let ids: Vec<i64> = accounts.iter().map(|account| account.0).collect();
            for chunk in ids.chunks(ACCOUNTS_PER_STATEMENT_MAX) {
                // Each subquery names the partial indexes' own condition, so each is
                // one seek into `timeline_meetings_held` / `_next` per account.
                let mut sql = QueryBuilder::new(
                    "SELECT b.id,
                        (SELECT MAX(t.ends_at_us) FROM timeline_events t
                         WHERE t.account_id = b.id
                           AND t.kind IN ('meeting.scheduled', 'meeting.updated')
                           AND t.ends_at_us <= ",
                );
                sql.push_bind(now_us).push(
                    "),
                        (SELECT MIN(t.occurred_at_us) FROM timeline_events t
                         WHERE t.account_id = b.id
                           AND t.kind IN ('meeting.scheduled', 'meeting.updated')
                           AND t.occurred_at_us > ",
                );
                sql.push_bind(now_us)
                    .push(") FROM accounts b WHERE b.id IN (");
                let mut list = sql.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                sql.push(")");
                let rows: Vec<(i64, Option<i64>, Option<i64>)> =
                    sql.build_query_as().fetch_all(&mut *conn).await?;
                for (account, held, next) in rows {
                    if held.is_some() || next.is_some() {
                        found.insert(
                            AccountId(account),
                            Meetings {
                                held: held.map(from_us),
                                next: next.map(from_us),
                            },
                        );
                    }
                }
            }
        });
        Ok(found)
    }

    /// One account's insight (see [`Store::insights`]).
    pub async fn insight(&self, account: AccountId) -> Result<Insight> {
        self.insights(&[account])
            .await?
            .remove(&account)
            .ok_or_else(|| rapport_core::DomainError::UnknownAccount(account).into())
    }

    /// Rebuilds the insight of every account whose row is missing or of another
    /// shape: once after the migration that adds insights, and after an upgrade that
    /// changes their shape. Each account is its own short write transaction.
    pub(crate) async fn rebuild_stale_insights(&self) -> Result<u64> {
        let mut rebuilt = 0;
        with_backend!(self, |pool, dialect| {
            let stale: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM accounts WHERE id NOT IN
                    (SELECT account_id FROM account_insights WHERE version = $1)
                 ORDER BY id",
            )
            .bind(INSIGHT_VERSION)
            .fetch_all(pool)
            .await?;
            for batch in stale.chunks(REBUILD_ACCOUNTS_PER_QUERY) {
                let mut tx = pool.begin_with(dialect.begin_write()).await?;
                // Locks the rows first (creating missing ones), so a writer's fold
                // waits for this and this sees what a writer committed before.
                let accounts: BTreeSet<i64> = batch.iter().copied().collect();
                let _ = load(&mut *tx, dialect, &accounts).await?;
                let insights = recompute(&mut *tx, batch).await?;
                store(&mut *tx, &insights).await?;
                tx.commit().await?;
                rebuilt += batch.len() as u64;
            }
        });
        if rebuilt > 0 {
            tracing::info!(
                accounts = rebuilt,
                "account insights rebuilt from the timeline"
            );
        }
        Ok(rebuilt)
    }
}

/// The [`Fact`] of an event just written with `id` on `account`.
pub(crate) fn fact_of(
    account: Option<i64>,
    id: i64,
    event: &rapport_core::timeline::NewEvent,
) -> Option<Fact> {
    let account = account?;
    concerns(event.kind.as_str()).then(|| Fact {
        account,
        id,
        kind: event.kind.as_str().to_owned(),
        occurred_at_us: to_us(event.occurred_at),
        attributes: event.attributes.clone(),
    })
}
