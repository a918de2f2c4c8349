//! The assignments repository: owners and supporters, effective-dated. Every change
//! closes and opens rows and writes `assignment.changed` on the account's timeline in
//! the same transaction, so the history of an account's team is never lost.

use crate::time::{from_us, to_us};
use crate::timeline::{assignment_event, upsert_event};
use crate::tx::{load_staff, require_account};
use crate::visibility::decide;
use crate::{Error, Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::assignment::{Assignment, Role, check_owner, check_support};
use rapport_core::permission::Authority;
use rapport_core::{AccountId, AssignmentId, DomainError, StaffId};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

#[derive(Debug, sqlx::FromRow)]
struct AssignmentRow {
    id: i64,
    account_id: i64,
    staff_id: i64,
    role: String,
    valid_from_us: i64,
    valid_to_us: Option<i64>,
}

impl AssignmentRow {
    fn into_assignment(self) -> Result<Assignment> {
        Ok(Assignment {
            id: AssignmentId(self.id),
            account: AccountId(self.account_id),
            staff: StaffId(self.staff_id),
            role: crate::error::decode("role", &self.role, str::parse::<Role>)?,
            valid_from: from_us(self.valid_from_us),
            valid_to: self.valid_to_us.map(from_us),
        })
    }
}

/// Refuses a change dated before the assignment it ends began: history only moves forward.
fn check_not_backdated(row: &AssignmentRow, at_us: i64) -> Result<()> {
    if at_us < row.valid_from_us {
        return Err(DomainError::InvalidField {
            field: "assignment change time",
            reason: format!(
                "{} is before the current assignment began ({}); changes cannot be backdated",
                from_us(at_us).to_rfc3339(),
                from_us(row.valid_from_us).to_rfc3339()
            ),
        }
        .into());
    }
    Ok(())
}

const SELECT_ASSIGNMENT: &str =
    "SELECT id, account_id, staff_id, role, valid_from_us, valid_to_us FROM assignments";

/// `account`'s current owner row, if it has one.
async fn current_owner<'e, E, DB>(executor: E, account: AccountId) -> Result<Option<AssignmentRow>>
where
    E: Executor<'e, Database = DB>,
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    AssignmentRow: for<'r> FromRow<'r, DB::Row>,
{
    let sql = format!(
        "{SELECT_ASSIGNMENT} WHERE account_id = $1 AND role = 'owner' AND valid_to_us IS NULL"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .fetch_optional(executor)
        .await?)
}

/// `staff`'s current support row on `account`, if they support it.
async fn current_support<'e, E, DB>(
    executor: E,
    account: AccountId,
    staff: StaffId,
) -> Result<Option<AssignmentRow>>
where
    E: Executor<'e, Database = DB>,
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    AssignmentRow: for<'r> FromRow<'r, DB::Row>,
{
    let sql = format!(
        "{SELECT_ASSIGNMENT} WHERE account_id = $1 AND staff_id = $2 AND role = 'support' AND valid_to_us IS NULL"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(account.0)
        .bind(staff.0)
        .fetch_optional(executor)
        .await?)
}

impl Store {
    /// Hands `account` to `new_owner`: the old owner row ends and the new one starts at
    /// `at`, and the handoff is written on the account's timeline.
    pub async fn reassign_owner(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        new_owner: StaffId,
        by: Option<StaffId>,
        at: DateTime<Utc>,
    ) -> Result<Assignment> {
        let mut assignments = self
            .reassign_owners(authority, &[account], new_owner, by, at)
            .await?;
        Ok(assignments.remove(0))
    }

    /// Hands several accounts to `new_owner` in one transaction: either every handoff
    /// happens or none does.
    pub async fn reassign_owners(
        &self,
        authority: Authority<'_>,
        accounts: &[AccountId],
        new_owner: StaffId,
        by: Option<StaffId>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Assignment>> {
        self.move_owners(authority, None, accounts, new_owner, by, at)
            .await
    }

    /// Hands `accounts`, which `from` owns, to `new_owner` in one transaction (e.g. a
    /// departing manager's whole book). Refused, with nothing moved, if any of them is
    /// no longer `from`'s when the transaction runs: someone else moved it meanwhile,
    /// and their change stands.
    pub async fn hand_off(
        &self,
        authority: Authority<'_>,
        from: StaffId,
        accounts: &[AccountId],
        new_owner: StaffId,
        by: Option<StaffId>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Assignment>> {
        self.move_owners(authority, Some(from), accounts, new_owner, by, at)
            .await
    }

    /// The one owner move behind [`Store::reassign_owners`] and [`Store::hand_off`]:
    /// each account's current owner must be `from`, when given.
    async fn move_owners(
        &self,
        authority: Authority<'_>,
        from: Option<StaffId>,
        accounts: &[AccountId],
        new_owner: StaffId,
        by: Option<StaffId>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Assignment>> {
        let at_us = to_us(at);
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let mut changes = crate::insights::Changes::default();
            decide(&mut *tx, authority, at).await?;
            let owner = load_staff(&mut *tx, new_owner).await?;
            let mut created = Vec::with_capacity(accounts.len());
            for &account in accounts {
                require_account(&mut *tx, account).await?;
                let current = current_owner(&mut *tx, account).await?;
                if let Some(from) = from
                    && current.as_ref().map(|row| StaffId(row.staff_id)) != Some(from)
                {
                    return Err(DomainError::NotAssigned {
                        account,
                        staff: from,
                        role: Role::Owner,
                    }
                    .into());
                }
                check_owner(
                    account,
                    &owner.org_node(),
                    current.as_ref().map(|row| StaffId(row.staff_id)),
                    true,
                )?;
                let previous = match &current {
                    Some(row) => {
                        check_not_backdated(row, at_us)?;
                        sqlx::query("UPDATE assignments SET valid_to_us = $2 WHERE id = $1")
                            .bind(row.id)
                            .bind(at_us)
                            .execute(&mut *tx)
                            .await?;
                        Some(load_staff(&mut *tx, StaffId(row.staff_id)).await?)
                    }
                    None => None,
                };
                // Owning an account subsumes supporting it.
                if let Some(support) = current_support(&mut *tx, account, owner.id).await? {
                    check_not_backdated(&support, at_us)?;
                    sqlx::query("UPDATE assignments SET valid_to_us = $2 WHERE id = $1")
                        .bind(support.id)
                        .bind(at_us)
                        .execute(&mut *tx)
                        .await?;
                }
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO assignments (account_id, staff_id, role, valid_from_us) VALUES ($1, $2, 'owner', $3) RETURNING id",
                )
                .bind(account.0)
                .bind(owner.id.0)
                .bind(at_us)
                .fetch_one(&mut *tx)
                .await
                .map_err(|error| {
                    if Error::is_unique_violation(&error) {
                        Error::Conflict(format!("the owner of {account}"))
                    } else {
                        Error::from(error)
                    }
                })?;
                let title = match &previous {
                    Some(previous) => {
                        format!("Handed off from {} to {}", previous.name, owner.name)
                    }
                    None => format!("{} became the owner", owner.name),
                };
                let event = assignment_event(
                    account,
                    id,
                    if previous.is_some() {
                        "handoff"
                    } else {
                        "started"
                    },
                    title,
                    Role::Owner,
                    previous.as_ref(),
                    Some(&owner),
                    by,
                    at,
                )?;
                upsert_event(&mut *tx, dialect, &event, at_us, &mut changes).await?;
                created.push(Assignment {
                    id: AssignmentId(id),
                    account,
                    staff: owner.id,
                    role: Role::Owner,
                    valid_from: from_us(at_us),
                    valid_to: None,
                });
            }
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            tx.commit().await?;
            Ok(created)
        })
    }

    /// Every account `staff` owns right now.
    pub async fn owned_accounts(&self, staff: StaffId) -> Result<Vec<AccountId>> {
        let ids: Vec<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar(
                "SELECT account_id FROM assignments
                 WHERE staff_id = $1 AND role = 'owner' AND valid_to_us IS NULL ORDER BY account_id",
            )
            .bind(staff.0)
            .fetch_all(pool)
            .await?
        });
        Ok(ids.into_iter().map(AccountId).collect())
    }

    /// Adds `staff` as a supporter of `account` from `at`.
    pub async fn add_support(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        staff: StaffId,
        by: Option<StaffId>,
        at: DateTime<Utc>,
    ) -> Result<Assignment> {
        let at_us = to_us(at);
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let mut changes = crate::insights::Changes::default();
            decide(&mut *tx, authority, at).await?;
            let person = load_staff(&mut *tx, staff).await?;
            require_account(&mut *tx, account).await?;
            let already = current_support(&mut *tx, account, staff).await?.is_some();
            check_support(account, &person.org_node(), already)?;
            if let Some(owner) = current_owner(&mut *tx, account).await?
                && owner.staff_id == staff.0
            {
                return Err(DomainError::AlreadyAssigned {
                    account,
                    staff,
                    role: Role::Owner,
                }
                .into());
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO assignments (account_id, staff_id, role, valid_from_us) VALUES ($1, $2, 'support', $3) RETURNING id",
            )
            .bind(account.0)
            .bind(staff.0)
            .bind(at_us)
            .fetch_one(&mut *tx)
            .await
            .map_err(|error| {
                if Error::is_unique_violation(&error) {
                    Error::Conflict(format!("the supporters of {account}"))
                } else {
                    Error::from(error)
                }
            })?;
            let event = assignment_event(
                account,
                id,
                "started",
                format!("{} started supporting", person.name),
                Role::Support,
                None,
                Some(&person),
                by,
                at,
            )?;
            upsert_event(&mut *tx, dialect, &event, at_us, &mut changes).await?;
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            tx.commit().await?;
            Ok(Assignment {
                id: AssignmentId(id),
                account,
                staff,
                role: Role::Support,
                valid_from: from_us(at_us),
                valid_to: None,
            })
        })
    }

    /// Ends `staff`'s support of `account` at `at`.
    pub async fn end_support(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        staff: StaffId,
        by: Option<StaffId>,
        at: DateTime<Utc>,
    ) -> Result<Assignment> {
        let at_us = to_us(at);
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let mut changes = crate::insights::Changes::default();
            decide(&mut *tx, authority, at).await?;
            let person = load_staff(&mut *tx, staff).await?;
            let Some(row) = current_support(&mut *tx, account, staff).await? else {
                return Err(DomainError::NotAssigned {
                    account,
                    staff,
                    role: Role::Support,
                }
                .into());
            };
            check_not_backdated(&row, at_us)?;
            sqlx::query("UPDATE assignments SET valid_to_us = $2 WHERE id = $1")
                .bind(row.id)
                .bind(at_us)
                .execute(&mut *tx)
                .await?;
            let event = assignment_event(
                account,
                row.id,
                "ended",
                format!("{} stopped supporting", person.name),
                Role::Support,
                Some(&person),
                None,
                by,
                at,
            )?;
            upsert_event(&mut *tx, dialect, &event, at_us, &mut changes).await?;
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            tx.commit().await?;
            let mut ended = row.into_assignment()?;
            ended.valid_to = Some(from_us(at_us));
            Ok(ended)
        })
    }

    /// The full assignment history of an account, oldest first.
    pub async fn assignment_history(&self, account: AccountId) -> Result<Vec<Assignment>> {
        self.account_exists(account).await?;
        let rows: Vec<AssignmentRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT id, account_id, staff_id, role, valid_from_us, valid_to_us FROM assignments
                 WHERE account_id = $1 ORDER BY valid_from_us, id",
            )
            .bind(account.0)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(AssignmentRow::into_assignment)
            .collect()
    }

    /// Every assignment row, current and past, ordered by id.
    pub async fn all_assignments(&self) -> Result<Vec<Assignment>> {
        let rows: Vec<AssignmentRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT id, account_id, staff_id, role, valid_from_us, valid_to_us FROM assignments ORDER BY id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(AssignmentRow::into_assignment)
            .collect()
    }
}
