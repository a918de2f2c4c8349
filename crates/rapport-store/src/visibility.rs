//! The visibility rule of `rapport_core::visibility` and the facts of
//! `rapport_core::permission`, in SQL:
//!
//! > staff S can see account A iff A, or an ancestor of A, is currently assigned to S or
//! > to anyone in S's reporting subtree.
//!
//! Every query here is built from two fragments written once: [`push_team`] walks down
//! the reporting lines from the viewer (`team`), and [`push_visible`] expands the
//! accounts assigned to that team down the account tree (`visible`). The wide feed
//! (`Store::feed`) is built from the same fragments. The property tests prove these
//! agree with core, the feed included.
//!
//! [`decide`] loads the facts a permission decision needs on the connection of the
//! write transaction it guards, and asks core.

use crate::time::to_us;
use crate::{Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::account::ACCOUNT_DEPTH_MAX;
use rapport_core::permission::{Authority, Facts};
use rapport_core::{AccountId, StaffId};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};
use std::collections::BTreeSet;

/// Appends the CTE `team(id)`: `viewer` (if active) and everyone reporting to them,
/// directly or not. Opens nothing: the caller has written `WITH RECURSIVE` (and any
/// CTEs before this one, with a trailing comma).
pub(crate) fn push_team<DB>(sql: &mut QueryBuilder<DB>, viewer: StaffId)
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    sql.push("team(id) AS (SELECT id FROM staff WHERE id = ")
        .push_bind(viewer.0)
        .push(
            " AND active
             UNION
             SELECT staff.id FROM staff JOIN team ON staff.reports_to = team.id)",
        );
}

/// Appends the CTEs `team(id)`, `assigned(id)` and `visible(id, depth)`: every account
/// `viewer` may see at `at` is an `id` of `visible` (possibly more than once).
pub(crate) fn push_visible<DB>(sql: &mut QueryBuilder<DB>, viewer: StaffId, at: DateTime<Utc>)
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    push_team(sql, viewer);
    sql.push(
        ", assigned(id) AS (
             SELECT DISTINCT assignments.account_id
             FROM assignments JOIN team ON assignments.staff_id = team.id
             WHERE assignments.valid_from_us <= ",
    )
    .push_bind(to_us(at))
    .push(" AND (assignments.valid_to_us IS NULL OR assignments.valid_to_us > ")
    .push_bind(to_us(at))
    .push(
        ")),
         visible(id, depth) AS (
             SELECT id, 1 FROM assigned
             UNION
             SELECT accounts.id, visible.depth + 1
             FROM accounts JOIN visible ON accounts.parent_id = visible.id
             WHERE visible.depth < ",
    )
    .push_bind(ACCOUNT_DEPTH_MAX as i64)
    .push(")");
}

/// The query for whether `viewer` sees `account` at `at`: the account's lineage walked
/// up, met with the team's current assignments. Cheaper than [`push_visible`] for one
/// account, since it never expands the viewer's whole book.
fn can_see_query<DB>(viewer: StaffId, account: AccountId, at: DateTime<Utc>) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new(
        "WITH RECURSIVE lineage(id, depth) AS (
             SELECT id, 1 FROM accounts WHERE id = ",
    );
    sql.push_bind(account.0)
        .push(
            " UNION ALL
             SELECT accounts.parent_id, lineage.depth + 1
             FROM accounts JOIN lineage ON accounts.id = lineage.id
             WHERE accounts.parent_id IS NOT NULL AND lineage.depth < ",
        )
        .push_bind(ACCOUNT_DEPTH_MAX as i64)
        .push("), ");
    push_team(&mut sql, viewer);
    sql.push(
        " SELECT EXISTS (
             SELECT 1 FROM assignments
             JOIN team ON assignments.staff_id = team.id
             JOIN lineage ON assignments.account_id = lineage.id
             WHERE assignments.valid_from_us <= ",
    )
    .push_bind(to_us(at))
    .push(" AND (assignments.valid_to_us IS NULL OR assignments.valid_to_us > ")
    .push_bind(to_us(at))
    .push("))");
    sql
}

/// The query for the ids of `viewer`'s reporting line (them included, if active).
fn team_query<DB>(viewer: StaffId) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new("WITH RECURSIVE ");
    push_team(&mut sql, viewer);
    sql.push(" SELECT id FROM team");
    sql
}

/// The query for every account `viewer` sees at `at`.
fn visible_query<DB>(viewer: StaffId, at: DateTime<Utc>) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new("WITH RECURSIVE ");
    push_visible(&mut sql, viewer, at);
    sql.push(" SELECT DISTINCT id FROM visible");
    sql
}

/// Decides `authority`'s action at `at`, with the facts read on `conn` — the connection
/// of the write transaction the decision guards, so what is checked is what the write
/// sees. The operator is refused nothing.
pub(crate) async fn decide<C, DB>(
    conn: &mut C,
    authority: Authority<'_>,
    at: DateTime<Utc>,
) -> Result<()>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
    (bool,): for<'r> FromRow<'r, DB::Row>,
{
    let Authority::Staff(permissions, action) = authority else {
        return Ok(());
    };
    let viewer = permissions.staff;
    let mut facts = Facts::default();
    let accounts = action.accounts();
    // One account (the common case) is checked up its lineage; a handoff's many
    // against the viewer's whole book, read once.
    if let [account] = accounts[..] {
        let mut query = can_see_query::<DB>(viewer, account, at);
        let visible: bool = query.build_query_scalar().fetch_one(&mut *conn).await?;
        if visible {
            facts.visible.insert(account);
        }
    } else if !accounts.is_empty() {
        let mut query = visible_query::<DB>(viewer, at);
        let book: BTreeSet<i64> = query
            .build_query_scalar::<i64>()
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
        facts.visible = accounts
            .into_iter()
            .filter(|account| book.contains(&account.0))
            .collect();
    }
    let people = action.people();
    if !people.is_empty() {
        let mut query = team_query::<DB>(viewer);
        let team: BTreeSet<i64> = query
            .build_query_scalar::<i64>()
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
        facts.team = people
            .into_iter()
            .filter(|person| team.contains(&person.0))
            .collect();
    }
    Ok(permissions.decide(action, &facts)?)
}

impl Store {
    /// Every account `viewer` may see at `at`.
    pub async fn visible_account_ids(
        &self,
        viewer: StaffId,
        at: DateTime<Utc>,
    ) -> Result<BTreeSet<AccountId>> {
        let ids: Vec<i64> = with_backend!(self, |pool, dialect| {
            visible_query(viewer, at)
                .build_query_scalar()
                .fetch_all(pool)
                .await?
        });
        Ok(ids.into_iter().map(AccountId).collect())
    }

    /// Whether `viewer` may see `account` at `at`.
    pub async fn can_see(
        &self,
        viewer: StaffId,
        account: AccountId,
        at: DateTime<Utc>,
    ) -> Result<bool> {
        let visible: bool = with_backend!(self, |pool, dialect| {
            can_see_query(viewer, account, at)
                .build_query_scalar()
                .fetch_one(pool)
                .await?
        });
        Ok(visible)
    }

    /// `manager` and everyone reporting to them, directly or not (nobody, if `manager`
    /// has left).
    pub async fn reporting_subtree(&self, manager: StaffId) -> Result<BTreeSet<StaffId>> {
        let ids: Vec<i64> = with_backend!(self, |pool, dialect| {
            team_query(manager)
                .build_query_scalar()
                .fetch_all(pool)
                .await?
        });
        Ok(ids.into_iter().map(StaffId).collect())
    }

    /// Decides `authority`'s action now, outside any write: for reads, which have no
    /// transaction to share, and for surfaces deciding what to offer.
    pub async fn decide(&self, authority: Authority<'_>, at: DateTime<Utc>) -> Result<()> {
        with_backend!(self, |pool, dialect| {
            let mut conn = pool.acquire().await?;
            decide(&mut *conn, authority, at).await
        })
    }
}
