//! Who may see and change what, in one place: [`authorize`] decides every [`Action`] for
//! the API and the web UI alike, so a rule that holds for one route holds for every
//! route doing the same thing. ARCHITECTURE.md has the same rules as a table.
//!
//! - **See** an account: the visibility rule of `rapport_core::visibility` (A, or an
//!   ancestor of A, assigned to the viewer or anyone in their reporting subtree),
//!   evaluated in SQL by the store. Being an admin grants no visibility.
//! - **Work on** a visible account (notes, tasks, contacts, domains, external ids, the
//!   renewal date): anyone who sees it.
//! - **Restructure** a visible account (rename it, change its lifecycle — churn it —
//!   or move it under another parent, which changes who sees it and its subsidiaries):
//!   managers and above who see it, and the new parent. Associates support accounts;
//!   they do not reshape them.
//! - **Assign** (owner, supporters): managers and above who see the account, handing
//!   it only to people in their own reporting line; admins may hand it to anyone —
//!   but only an account they see.
//! - **Hand off a book**: managers and above, from and to people in their reporting
//!   line (admins: anyone); only the accounts the viewer sees move, and only those are
//!   named in the answer.
//! - **Open an account**: managers and above, for an owner in their reporting line
//!   (admins: anyone), under a parent they see.
//! - **Triage the unmatched inbox**: managers and above, and admins, since an unmatched
//!   event belongs to no account yet; placing one needs the target account visible.
//! - **Administer** (staff records, other people's tokens, syncs and checks, the audit
//!   trail): admins.
//!
//! Admin powers are powers over people and the system, never over accounts out of
//! sight: for anything that names an account, an admin is checked like anyone else.

use crate::api::error::{ApiError, ApiResult};
use crate::http::AppState;
use chrono::Utc;
use rapport_core::staff::{Level, Staff};
use rapport_core::{AccountId, StaffId};
use std::collections::BTreeSet;

/// Something a member of staff wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read an account, its timeline, tree, assignments or health.
    See(AccountId),
    /// Write notes and tasks, edit contacts, domains, external ids, the renewal date.
    Work(AccountId),
    /// Rename, change the lifecycle, or change the parent (`to` the new parent, if any).
    Restructure {
        account: AccountId,
        parent: Option<AccountId>,
    },
    /// Make `to` the owner or a supporter of `account` (or end their support).
    Assign { account: AccountId, to: StaffId },
    /// Move accounts `from` owns to `to`.
    HandOff { from: StaffId, to: StaffId },
    /// Open an account owned by `owner`, under `parent`.
    Open {
        owner: StaffId,
        parent: Option<AccountId>,
    },
    /// Place events of the unmatched inbox.
    Triage,
    /// Staff records, other people's tokens, syncs and checks, the audit trail.
    Administer,
}

/// Fails unless `viewer` may do `action`: a hidden account is the same 404 a missing
/// one is, a refused power a 403 that says who may.
pub(crate) async fn authorize(state: &AppState, viewer: &Staff, action: Action) -> ApiResult<()> {
    match action {
        Action::See(account) | Action::Work(account) => {
            require_visible(state, viewer, account).await
        }
        Action::Restructure { account, parent } => {
            require_visible(state, viewer, account).await?;
            if viewer.level == Level::Associate {
                return Err(ApiError::Forbidden(
                    "associates cannot rename, churn or re-parent accounts: ask the account's owner or their manager".to_owned(),
                ));
            }
            if let Some(parent) = parent {
                require_visible(state, viewer, parent).await?;
            }
            Ok(())
        }
        Action::Assign { account, to } => {
            require_visible(state, viewer, account).await?;
            require_may_assign_to(state, viewer, to).await
        }
        Action::HandOff { from, to } => {
            if !viewer.is_admin && !team(state, viewer).await?.contains(&from) {
                require_manager(viewer, "hand accounts on")?;
                return Err(ApiError::Forbidden(format!(
                    "staff {} is not in your reporting line: only their managers (or an admin) can hand their accounts on",
                    from.0
                )));
            }
            require_may_assign_to(state, viewer, to).await
        }
        Action::Open { owner, parent } => {
            if let Some(parent) = parent {
                require_visible(state, viewer, parent).await?;
            }
            if viewer.is_admin {
                return Ok(());
            }
            require_manager(viewer, "open accounts")?;
            if !team(state, viewer).await?.contains(&owner) {
                return Err(ApiError::Forbidden(format!(
                    "staff {} is not in your reporting line: open accounts for yourself or your reports (an admin can for anyone)",
                    owner.0
                )));
            }
            Ok(())
        }
        Action::Triage => {
            if may_triage(viewer) {
                Ok(())
            } else {
                Err(ApiError::Forbidden(
                    "the unmatched inbox is triaged by managers and above: ask your manager to place the event".to_owned(),
                ))
            }
        }
        Action::Administer => {
            if may_administer(viewer) {
                Ok(())
            } else {
                Err(ApiError::Forbidden(format!(
                    "this needs an admin, and {} is not one (an admin can grant it: `PATCH /api/v1/staff/{}` with `is_admin`)",
                    viewer.email, viewer.id.0
                )))
            }
        }
    }
}

/// Whether `viewer` may administer (what [`Action::Administer`] allows).
pub(crate) fn may_administer(viewer: &Staff) -> bool {
    viewer.is_admin
}

/// Whether `viewer` may change assignments at all (the web UI offers handoff and owner
/// forms only then); each change is still [`authorize`]d.
pub(crate) fn may_reassign(viewer: &Staff) -> bool {
    viewer.is_admin || viewer.level != Level::Associate
}

/// Whether `viewer` may triage (the web UI shows the inbox tab only then).
pub(crate) fn may_triage(viewer: &Staff) -> bool {
    viewer.is_admin || viewer.level != Level::Associate
}

/// Of `accounts`, those `viewer` sees: what a bulk action may touch and name.
pub(crate) async fn visible_of(
    state: &AppState,
    viewer: &Staff,
    accounts: Vec<AccountId>,
) -> ApiResult<Vec<AccountId>> {
    let visible = state
        .engine
        .store()
        .visible_account_ids(viewer.id, Utc::now())
        .await?;
    Ok(accounts
        .into_iter()
        .filter(|account| visible.contains(account))
        .collect())
}

fn require_manager(viewer: &Staff, what: &str) -> ApiResult<()> {
    if viewer.level == Level::Associate {
        Err(ApiError::Forbidden(format!(
            "associates cannot {what}: ask your manager"
        )))
    } else {
        Ok(())
    }
}

/// Fails with the same 404 a missing account gets unless `viewer` can see `account`.
async fn require_visible(state: &AppState, viewer: &Staff, account: AccountId) -> ApiResult<()> {
    if state
        .engine
        .store()
        .can_see(viewer.id, account, Utc::now())
        .await?
    {
        Ok(())
    } else {
        Err(ApiError::account_not_found(account))
    }
}

/// `viewer` and everyone reporting to them, directly or not.
pub(crate) async fn team(state: &AppState, viewer: &Staff) -> ApiResult<BTreeSet<StaffId>> {
    Ok(state.engine.store().reporting_subtree(viewer.id).await?)
}

/// Refuses unless `viewer` may hand accounts to `assignee`.
async fn require_may_assign_to(
    state: &AppState,
    viewer: &Staff,
    assignee: StaffId,
) -> ApiResult<()> {
    if viewer.is_admin {
        return Ok(());
    }
    if !may_reassign(viewer) {
        return Err(ApiError::Forbidden(
            "associates cannot change who owns or supports an account: ask the account's manager"
                .to_owned(),
        ));
    }
    if !team(state, viewer).await?.contains(&assignee) {
        return Err(ApiError::Forbidden(format!(
            "staff {} is not in your reporting line: only their own managers (or an admin) can give them accounts",
            assignee.0
        )));
    }
    Ok(())
}
