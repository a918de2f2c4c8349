//! The application layer: every action a person takes, in one place, for every surface.
//! The JSON API (`api`) and the web UI (`web`) translate a request into a call here and
//! the answer back into JSON or a page; neither decides who may do what, nor writes.
//!
//! Each action takes the [`Caller`] — the person's staff record, read once when the
//! request was authenticated, and their [`Permissions`] computed from it — and hands
//! the store the [`Action`] it performs as an [`Authority`]. The store decides it with
//! `rapport_core::permission`'s table inside the write's own transaction, so a check
//! and its write never see two different worlds. Reads check first, then read.
//!
//! The CLI's commands are the operator's (`Authority::Operator`): it holds the database
//! itself, so it goes to the store directly.

use crate::api::error::{ApiError, ApiResult};
use chrono::Utc;
use rapport_core::account::{Account, Contact, EmailAddress, NewAccount};
use rapport_core::assignment::Assignment;
use rapport_core::permission::{Action, Authority, Permissions};
use rapport_core::staff::{Level, Staff};
use rapport_core::timeline::TimelineEvent;
use rapport_core::{AccountId, DomainError, EventId, StaffId};
use rapport_store::{AccountUpdate, Learn, NewTask, Reader, Store};

/// Most accounts one handoff moves.
pub const HANDOFF_ACCOUNTS_MAX: usize = 5_000;
/// Most accounts one handoff may list: a list of 1,000 ids fits well inside a body
/// (`API_BODY_BYTES_MAX`); more go in batches.
pub const HANDOFF_LISTED_MAX: usize = 1_000;

/// Who a request acts for: their staff record and what they may do.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// Their record, as read when the request was authenticated.
    pub staff: Staff,
    /// Computed once from `staff`.
    pub permissions: Permissions,
}

impl Caller {
    /// The caller `staff` is.
    pub fn new(staff: Staff) -> Caller {
        let permissions = Permissions::of(&staff);
        Caller { staff, permissions }
    }

    fn doing<'a>(&'a self, action: &'a Action) -> Authority<'a> {
        Authority::Staff(&self.permissions, action)
    }
}

impl std::ops::Deref for Caller {
    type Target = Staff;

    fn deref(&self) -> &Staff {
        &self.staff
    }
}

/// Fails unless the caller may do `action` now: for reads, and for powers that name no
/// account (administering, the inbox). A hidden account is the same 404 a missing one
/// is; a refused power a 403 that says who may.
pub(crate) async fn authorize(store: &Store, caller: &Caller, action: Action) -> ApiResult<()> {
    Ok(store.decide(caller.doing(&action), Utc::now()).await?)
}

/// Of `accounts`, those the caller sees: what a bulk action may touch and name.
pub(crate) async fn visible_of(
    store: &Store,
    caller: &Caller,
    accounts: Vec<AccountId>,
) -> ApiResult<Vec<AccountId>> {
    let visible = store.visible_account_ids(caller.id, Utc::now()).await?;
    Ok(accounts
        .into_iter()
        .filter(|account| visible.contains(account))
        .collect())
}

/// An event the caller may see: on a visible account, or (for those who triage the
/// unmatched inbox) waiting there, with only the candidate accounts they see. Anything
/// else is the same 404 as a missing event.
pub(crate) async fn event(store: &Store, caller: &Caller, id: EventId) -> ApiResult<TimelineEvent> {
    let not_found = || ApiError::NotFound(DomainError::UnknownEvent(id).to_string());
    let mut event = store
        .event(id, Reader::Staff(caller.id))
        .await?
        .ok_or_else(not_found)?;
    let action = match &event.event.placement {
        Some(placement) => Action::See(placement.account),
        None => Action::Triage,
    };
    authorize(store, caller, action)
        .await
        .map_err(|_| not_found())?;
    visible_candidates(store, caller, &mut event).await?;
    Ok(event)
}

/// Keeps only the candidate accounts of an unmatched event that the caller sees: the
/// inbox must not name accounts out of sight.
pub(crate) async fn visible_candidates(
    store: &Store,
    caller: &Caller,
    event: &mut TimelineEvent,
) -> ApiResult<()> {
    let mut kept = Vec::with_capacity(event.match_candidates.len());
    for &candidate in &event.match_candidates {
        if store.can_see(caller.id, candidate, Utc::now()).await? {
            kept.push(candidate);
        }
    }
    event.match_candidates = kept;
    Ok(())
}

/// Writes a note on a visible account.
pub(crate) async fn add_note(
    store: &Store,
    caller: &Caller,
    account: AccountId,
    text: &str,
) -> ApiResult<TimelineEvent> {
    let action = Action::Work(account);
    let note = store
        .add_note(caller.doing(&action), account, caller.id, text, Utc::now())
        .await?;
    crate::audit::action("note.added");
    Ok(note)
}

/// Sets a task on a visible account, for someone who can see it.
pub(crate) async fn add_task(
    store: &Store,
    caller: &Caller,
    account: AccountId,
    task: NewTask,
) -> ApiResult<TimelineEvent> {
    let action = Action::Work(account);
    let task = store
        .add_task(caller.doing(&action), account, caller.id, task, Utc::now())
        .await?;
    crate::audit::action("task.added");
    Ok(task)
}

/// Marks a task on a visible account done; returns the `task.done` event.
pub(crate) async fn complete_task(
    store: &Store,
    caller: &Caller,
    task: EventId,
) -> ApiResult<TimelineEvent> {
    let stored = event(store, caller, task).await?;
    let Some(placement) = stored.event.placement else {
        return Err(DomainError::EventNotChangeable {
            event: task,
            reason: "it is not a task on an account".into(),
        }
        .into());
    };
    let action = Action::Work(placement.account);
    let done = store
        .complete_task(caller.doing(&action), task, caller.id, Utc::now())
        .await?;
    crate::audit::action("task.done");
    Ok(done)
}

/// Opens an account, with its first owner recorded on its timeline.
pub(crate) async fn create_account(
    store: &Store,
    caller: &Caller,
    new: NewAccount,
) -> ApiResult<Account> {
    let action = Action::Open {
        owner: new.owner,
        parent: new.parent,
    };
    let account = store
        .create_account(caller.doing(&action), new, Some(caller.id), Utc::now())
        .await?;
    crate::audit::action("account.created");
    crate::audit::change(serde_json::json!({ "after": crate::audit::account_shape(&account) }));
    Ok(account)
}

/// A visible account.
pub(crate) async fn account(store: &Store, caller: &Caller, id: AccountId) -> ApiResult<Account> {
    authorize(store, caller, Action::See(id)).await?;
    Ok(store.account(id).await?)
}

/// Changes an account's name, status, renewal date or parent in one transaction.
/// Renaming, changing the status and re-parenting restructure the book (managers and
/// above); the renewal date is working detail (anyone who sees the account).
pub(crate) async fn update_account(
    store: &Store,
    caller: &Caller,
    id: AccountId,
    update: AccountUpdate,
) -> ApiResult<Account> {
    let restructures =
        update.name.is_some() || update.lifecycle.is_some() || update.parent.is_some();
    let action = if restructures {
        Action::Restructure {
            account: id,
            parent: update.parent.flatten(),
        }
    } else {
        Action::Work(id)
    };
    // Decided first, before anything is read or validated, so a hidden account gets
    // exactly a missing one's answer whatever else is wrong with the request; the
    // write decides again in its transaction. `before` is for the audit trail.
    authorize(store, caller, action.clone()).await?;
    let before = store.account(id).await?;
    let updated = store
        .update_account(caller.doing(&action), id, update, Utc::now())
        .await?;
    crate::audit::action(if restructures {
        "account.restructured"
    } else {
        "account.updated"
    });
    crate::audit::change(serde_json::json!({
        "before": crate::audit::account_shape(&before),
        "after": crate::audit::account_shape(&updated),
    }));
    Ok(updated)
}

/// A change to one of an account's identifiers: what identity resolution matches by.
pub(crate) enum Identifier<'a> {
    /// Add a domain.
    AddDomain(&'a rapport_core::account::Domain),
    /// Remove a domain.
    RemoveDomain(&'a rapport_core::account::Domain),
    /// Add an id in another system.
    AddExternalId(&'a rapport_core::account::ExternalId),
    /// Remove an id in another system.
    RemoveExternalId(&'a rapport_core::account::ExternalId),
    /// Add a contact, or update their name and title.
    PutContact(&'a Contact),
    /// Remove a contact.
    RemoveContact(&'a EmailAddress),
}

/// Changes a visible account's domains, external ids or contacts; returns the account.
pub(crate) async fn change_identifier(
    store: &Store,
    caller: &Caller,
    account: AccountId,
    change: Identifier<'_>,
) -> ApiResult<Account> {
    let action = Action::Work(account);
    let by = caller.doing(&action);
    // What each answers (how many waiting events it placed, whether there was
    // something to remove) is not part of the answer: the account as it now is.
    match change {
        Identifier::AddDomain(domain) => {
            store.add_domain(by, account, domain).await?;
        }
        Identifier::RemoveDomain(domain) => {
            store.remove_domain(by, account, domain).await?;
        }
        Identifier::AddExternalId(id) => {
            store.add_external_id(by, account, id).await?;
        }
        Identifier::RemoveExternalId(id) => {
            store.remove_external_id(by, account, id).await?;
        }
        Identifier::PutContact(contact) => {
            store.upsert_contact(by, account, contact).await?;
        }
        Identifier::RemoveContact(email) => {
            store.remove_contact(by, account, email).await?;
        }
    }
    Ok(store.account(account).await?)
}

/// Makes `owner` the owner of a visible account, if the caller may hand it to them.
pub(crate) async fn change_owner(
    store: &Store,
    caller: &Caller,
    account: AccountId,
    owner: StaffId,
) -> ApiResult<Assignment> {
    let action = Action::Assign { account, to: owner };
    // Decided first, as in `update_account`.
    authorize(store, caller, action.clone()).await?;
    let before = store.account(account).await?.owner;
    let assignment = store
        .reassign_owner(
            caller.doing(&action),
            account,
            owner,
            Some(caller.id),
            Utc::now(),
        )
        .await?;
    crate::audit::action("owner.changed");
    crate::audit::change(serde_json::json!({
        "account": account.0,
        "owner": { "before": before.map(|staff| staff.0), "after": owner.0 },
    }));
    Ok(assignment)
}

/// Makes `staff` a supporter of a visible account (`support: true`) or ends their
/// support, if the caller may assign them.
pub(crate) async fn change_support(
    store: &Store,
    caller: &Caller,
    account: AccountId,
    staff: StaffId,
    support: bool,
) -> ApiResult<Assignment> {
    let action = Action::Assign { account, to: staff };
    let by = caller.doing(&action);
    let now = Utc::now();
    let assignment = if support {
        store
            .add_support(by, account, staff, Some(caller.id), now)
            .await?
    } else {
        store
            .end_support(by, account, staff, Some(caller.id), now)
            .await?
    };
    crate::audit::action(if support {
        "supporter.added"
    } else {
        "supporter.ended"
    });
    crate::audit::change(serde_json::json!({ "account": account.0, "supporter": staff.0 }));
    Ok(assignment)
}

/// Hands `from`'s accounts (all, or the `chosen` ones) to `to` in one transaction, if
/// the caller may. Only what the caller sees moves, and only that is named: an admin
/// out of an account's line of sight cannot move it or learn that it exists.
pub(crate) async fn hand_off(
    store: &Store,
    caller: &Caller,
    from: StaffId,
    to: StaffId,
    chosen: Option<Vec<AccountId>>,
) -> ApiResult<Vec<Assignment>> {
    store.staff(from).await?;
    authorize(
        store,
        caller,
        Action::HandOff {
            from,
            to,
            accounts: Vec::new(),
        },
    )
    .await?;
    // Refused for who `to` is, even when nothing would move.
    let recipient = store.staff(to).await?;
    rapport_core::assignment::check_assignable(&recipient.org_node())?;
    if recipient.level == Level::Associate {
        return Err(DomainError::AssociateCannotOwn(to).into());
    }
    let owned = visible_of(store, caller, store.owned_accounts(from).await?).await?;
    let accounts = match chosen {
        None => owned,
        Some(chosen) if chosen.len() > HANDOFF_LISTED_MAX => {
            return Err(ApiError::Invalid(format!(
                "{} accounts listed; at most {HANDOFF_LISTED_MAX} at once: pass `accounts` in batches",
                chosen.len()
            )));
        }
        Some(chosen) => {
            for account in &chosen {
                if !owned.contains(account) {
                    // The same words whether it is missing, hidden or someone else's.
                    return Err(ApiError::NotFound(format!(
                        "account {} is not one staff {} owns (or does not exist)",
                        account.0, from.0
                    )));
                }
            }
            chosen
        }
    };
    if accounts.len() > HANDOFF_ACCOUNTS_MAX {
        return Err(ApiError::Invalid(format!(
            "{} accounts is more than one handoff moves ({HANDOFF_ACCOUNTS_MAX}): pass `accounts` in batches",
            accounts.len()
        )));
    }
    crate::audit::action("handoff");
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let action = Action::HandOff {
        from,
        to,
        accounts: accounts.clone(),
    };
    let moved = store
        .hand_off(
            caller.doing(&action),
            from,
            &accounts,
            to,
            Some(caller.id),
            Utc::now(),
        )
        .await?;
    crate::audit::change(serde_json::json!({
        "owner": { "before": from.0, "after": to.0 },
        "accounts": accounts.iter().map(|account| account.0).collect::<Vec<_>>(),
    }));
    Ok(moved)
}

/// Places an unmatched event on a visible account as the caller's decision, optionally
/// teaching the account a hint.
pub(crate) async fn place_event(
    store: &Store,
    caller: &Caller,
    event_id: EventId,
    account: AccountId,
    learn: Option<Learn>,
) -> ApiResult<TimelineEvent> {
    authorize(store, caller, Action::Triage).await?;
    // A placed event on a hidden account must look missing, not "already placed".
    event(store, caller, event_id).await?;
    let action = Action::Place { account };
    crate::audit::action("event.placed");
    crate::audit::change(serde_json::json!({ "event": event_id.0, "account": account.0 }));
    Ok(store
        .place_unmatched(caller.doing(&action), event_id, account, caller.id, learn)
        .await?)
}
