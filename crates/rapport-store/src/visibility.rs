//! The visibility rule of `rapport_core::visibility`, in SQL:
//!
//! > staff S can see account A iff A, or an ancestor of A, is currently assigned to S or
//! > to anyone in S's reporting subtree.
//!
//! Both queries are recursive CTEs: `team` walks down the reporting lines from the
//! viewer, then assigned accounts are expanded down (`visible`) or the account's
//! lineage walked up (`can_see`). The property tests prove these agree with core.

use crate::time::to_us;
use crate::{Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::account::MAX_ACCOUNT_DEPTH;
use rapport_core::{AccountId, StaffId};
use std::collections::BTreeSet;

impl Store {
    /// Every account `viewer` may see at `at`.
    pub async fn visible_account_ids(
        &self,
        viewer: StaffId,
        at: DateTime<Utc>,
    ) -> Result<BTreeSet<AccountId>> {
        let ids: Vec<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar(
                "WITH RECURSIVE
                 team(id) AS (
                     SELECT id FROM staff WHERE id = $1 AND active
                     UNION
                     SELECT staff.id FROM staff JOIN team ON staff.reports_to = team.id
                 ),
                 assigned(id) AS (
                     SELECT DISTINCT assignments.account_id
                     FROM assignments JOIN team ON assignments.staff_id = team.id
                     WHERE assignments.valid_from_us <= $2
                       AND (assignments.valid_to_us IS NULL OR assignments.valid_to_us > $2)
                 ),
                 visible(id, depth) AS (
                     SELECT id, 1 FROM assigned
                     UNION
                     SELECT accounts.id, visible.depth + 1
                     FROM accounts JOIN visible ON accounts.parent_id = visible.id
                     WHERE visible.depth < $3
                 )
                 SELECT DISTINCT id FROM visible",
            )
            .bind(viewer.0)
            .bind(to_us(at))
            .bind(MAX_ACCOUNT_DEPTH as i64)
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
            sqlx::query_scalar(
                "WITH RECURSIVE
                 lineage(id, depth) AS (
                     SELECT id, 1 FROM accounts WHERE id = $2
                     UNION ALL
                     SELECT accounts.parent_id, lineage.depth + 1
                     FROM accounts JOIN lineage ON accounts.id = lineage.id
                     WHERE accounts.parent_id IS NOT NULL AND lineage.depth < $4
                 ),
                 team(id) AS (
                     SELECT id FROM staff WHERE id = $1 AND active
                     UNION
                     SELECT staff.id FROM staff JOIN team ON staff.reports_to = team.id
                 )
                 SELECT EXISTS (
                     SELECT 1 FROM assignments
                     JOIN team ON assignments.staff_id = team.id
                     JOIN lineage ON assignments.account_id = lineage.id
                     WHERE assignments.valid_from_us <= $3
                       AND (assignments.valid_to_us IS NULL OR assignments.valid_to_us > $3)
                 )",
            )
            .bind(viewer.0)
            .bind(account.0)
            .bind(to_us(at))
            .bind(MAX_ACCOUNT_DEPTH as i64)
            .fetch_one(pool)
            .await?
        });
        Ok(visible)
    }
}
