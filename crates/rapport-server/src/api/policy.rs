//! Who may see and change what, in one place.
//!
//! - **See** an account: the visibility rule of `rapport_core::visibility` (A, or an
//!   ancestor of A, assigned to the viewer or anyone in their reporting subtree),
//!   evaluated in SQL by the store. Being an admin grants no extra visibility.
//! - **Work on** a visible account (edit its details, write notes and tasks): anyone who
//!   sees it.
//! - **Change assignments** (owner, supporters, bulk handoff): a manager, director or VP
//!   who sees the account, handing it only to people in their own reporting line; or an
//!   admin, to anyone. Associates support accounts; they do not hand them around.
//! - **Open an account**: for an owner in one's own reporting line (an admin: anyone),
//!   under a parent one can see.
//! - **Administer** (staff records, other people's tokens, triggering syncs): admins.
//! - **Triage the unmatched inbox**: managers and above, and admins, since an unmatched
//!   event belongs to no account yet; placing one needs the target account visible, and
//!   the candidates shown for an ambiguous event are only those the reader can see.

use crate::api::error::{ApiError, ApiResult};
use crate::http::AppState;
use chrono::Utc;
use rapport_core::staff::{Level, Staff};
use rapport_core::{AccountId, StaffId};
use std::collections::BTreeSet;

/// Fails with the same 404 a missing account gets unless `viewer` can see `account`.
pub(crate) async fn require_visible(
    state: &AppState,
    viewer: &Staff,
    account: AccountId,
) -> ApiResult<()> {
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
pub(crate) async fn require_may_assign_to(
    state: &AppState,
    viewer: &Staff,
    assignee: StaffId,
) -> ApiResult<()> {
    if viewer.is_admin {
        return Ok(());
    }
    if viewer.level == Level::Associate {
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

/// Refuses unless `viewer` may triage the unmatched inbox.
pub(crate) fn require_may_triage(viewer: &Staff) -> ApiResult<()> {
    if viewer.is_admin || viewer.level != Level::Associate {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the unmatched inbox is triaged by managers and above: ask your manager to place the event".to_owned(),
        ))
    }
}
