//! Checks shared by write transactions, and statement builders shared by
//! repositories, as functions generic over the backend: each check takes any executor
//! (a pool, or `&mut *tx` inside a transaction) and runs one query, so the same code
//! serves SQLite and PostgreSQL with the bounds written here once per function.

use crate::staff::{SELECT_STAFF, StaffRow};
use crate::{Error, Result};
use rapport_core::staff::Staff;
use rapport_core::{AccountId, DomainError, StaffId};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, QueryBuilder, Type};

/// Fails with `DomainError::UnknownAccount` unless `account` exists.
pub(crate) async fn require_account<'e, E, DB>(executor: E, account: AccountId) -> Result<()>
where
    E: Executor<'e, Database = DB>,
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let found: Option<i64> = sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
        .bind(account.0)
        .fetch_optional(executor)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(Error::from(DomainError::UnknownAccount(account))),
    }
}

/// Loads one staff member.
pub(crate) async fn load_staff<'e, E, DB>(executor: E, id: StaffId) -> Result<Staff>
where
    E: Executor<'e, Database = DB>,
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    StaffRow: for<'r> FromRow<'r, DB::Row>,
{
    let sql = format!("{SELECT_STAFF} WHERE id = $1");
    let row: Option<StaffRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(executor)
        .await?;
    match row {
        Some(row) => row.into_staff(),
        None => Err(Error::from(DomainError::UnknownStaff(id))),
    }
}

/// `select` (ending in `IN (`) with `ids` bound as the list, closed, then `order`.
pub(crate) fn select_by_ids<DB>(select: &str, ids: &[i64], order: &str) -> QueryBuilder<DB>
where
    DB: Database,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut sql = QueryBuilder::new(select);
    let mut list = sql.separated(", ");
    for id in ids {
        list.push_bind(*id);
    }
    sql.push(") ").push(order);
    sql
}
