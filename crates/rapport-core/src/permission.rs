//! Who may do what: the permission table every surface (the JSON API, the web UI, the
//! CLI) goes through, as one pure rule over the facts it needs.
//!
//! A person's [`Permissions`] are computed once per request from their staff record.
//! An [`Action`] names what they want to do and the accounts and people it touches;
//! [`Permissions::decide`] answers from [`Facts`] — which of those accounts the person
//! sees, and which of those people are in their reporting line. The store loads the
//! facts inside the write transaction the action guards and writes only if the answer
//! is yes, so a check and its write never see two different worlds (an assignment ended
//! or a reporting line moved between them).
//!
//! | Action | Who may |
//! |---|---|
//! | **See** an account | whoever the [visibility rule](crate::visibility) lets see it; being an admin grants no visibility |
//! | **Work on** it (notes, tasks, contacts, domains, external ids, the renewal date) | whoever sees it |
//! | **Restructure** it (rename, change lifecycle, move under another parent) | managers and above who see it, and the new parent |
//! | **Assign** (owner, supporters) | managers and above who see the account, to people in their reporting line; admins to anyone, on an account they see |
//! | **Hand off** a book | managers and above, from and to people in their reporting line (admins: anyone); only accounts they see move |
//! | **Open** an account | managers and above, for an owner in their reporting line (admins: anyone), under a parent they see |
//! | **Triage** the unmatched inbox | managers and above, and admins; placing an event needs the target account visible |
//! | **Administer** (staff, others' tokens, syncs and checks, the audit trail) | admins |
//!
//! Admin powers are powers over people and the system, never over accounts out of
//! sight: for anything that names an account, an admin is checked like anyone else. A
//! hidden account is refused with the same words as a missing one.

use crate::staff::{Level, Staff};
use crate::{AccountId, DomainError, StaffId};
use std::collections::BTreeSet;

/// What one person may do, computed once per request from their staff record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Who they are.
    pub staff: StaffId,
    /// Their email, for messages that tell them how to get a power they lack.
    pub email: String,
    /// Their seniority.
    pub level: Level,
    /// Whether they administer rapport.
    pub is_admin: bool,
}

impl Permissions {
    /// The permissions of `staff`.
    pub fn of(staff: &Staff) -> Permissions {
        Permissions {
            staff: staff.id,
            email: staff.email.to_string(),
            level: staff.level,
            is_admin: staff.is_admin,
        }
    }

    /// Whether they may administer (what [`Action::Administer`] allows).
    pub fn may_administer(&self) -> bool {
        self.is_admin
    }

    /// Whether they may change assignments at all (surfaces offer handoff and owner
    /// forms only then); each change is still decided with its facts.
    pub fn may_reassign(&self) -> bool {
        self.is_admin || self.level != Level::Associate
    }

    /// Whether they may triage the unmatched inbox (surfaces show it only then).
    pub fn may_triage(&self) -> bool {
        self.is_admin || self.level != Level::Associate
    }

    /// Whether they may do `action`, given `facts` about what it names. Every account
    /// and person [`Action::accounts`] and [`Action::people`] list must have been
    /// looked up in `facts`; one not listed there counts as not visible or not in the
    /// reporting line.
    pub fn decide(&self, action: &Action, facts: &Facts) -> Result<(), DomainError> {
        match action {
            Action::See(account) | Action::Work(account) => facts.require_visible(*account),
            Action::Restructure { account, parent } => {
                facts.require_visible(*account)?;
                if self.level == Level::Associate {
                    return Err(DomainError::NotPermitted(
                        "associates cannot rename, churn or re-parent accounts: ask the account's owner or their manager".to_owned(),
                    ));
                }
                if let Some(parent) = parent {
                    facts.require_visible(*parent)?;
                }
                Ok(())
            }
            Action::Assign { account, to } => {
                facts.require_visible(*account)?;
                self.require_may_assign_to(*to, facts)
            }
            Action::HandOff { from, to, accounts } => {
                if !self.is_admin && !facts.in_team(*from) {
                    self.require_manager("hand accounts on")?;
                    return Err(DomainError::NotPermitted(format!(
                        "{from} is not in your reporting line: only their managers (or an admin) can hand their accounts on",
                    )));
                }
                self.require_may_assign_to(*to, facts)?;
                for account in accounts {
                    facts.require_visible(*account)?;
                }
                Ok(())
            }
            Action::Open { owner, parent } => {
                if let Some(parent) = parent {
                    facts.require_visible(*parent)?;
                }
                if self.is_admin {
                    return Ok(());
                }
                self.require_manager("open accounts")?;
                if !facts.in_team(*owner) {
                    return Err(DomainError::NotPermitted(format!(
                        "{owner} is not in your reporting line: open accounts for yourself or your reports (an admin can for anyone)",
                    )));
                }
                Ok(())
            }
            Action::Triage => {
                if self.may_triage() {
                    Ok(())
                } else {
                    Err(DomainError::NotPermitted(
                        "the unmatched inbox is triaged by managers and above: ask your manager to place the event".to_owned(),
                    ))
                }
            }
            Action::Place { account } => {
                self.decide(&Action::Triage, facts)?;
                facts.require_visible(*account)
            }
            Action::Administer => {
                if self.may_administer() {
                    Ok(())
                } else {
                    Err(DomainError::NotPermitted(format!(
                        "this needs an admin, and {} is not one (an admin can grant it: `PATCH /api/v1/staff/{}` with `is_admin`)",
                        self.email, self.staff.0
                    )))
                }
            }
        }
    }

    fn require_manager(&self, what: &str) -> Result<(), DomainError> {
        if self.level == Level::Associate {
            Err(DomainError::NotPermitted(format!(
                "associates cannot {what}: ask your manager"
            )))
        } else {
            Ok(())
        }
    }

    fn require_may_assign_to(&self, assignee: StaffId, facts: &Facts) -> Result<(), DomainError> {
        if self.is_admin {
            return Ok(());
        }
        if !self.may_reassign() {
            return Err(DomainError::NotPermitted(
                "associates cannot change who owns or supports an account: ask the account's manager"
                    .to_owned(),
            ));
        }
        if !facts.in_team(assignee) {
            return Err(DomainError::NotPermitted(format!(
                "{assignee} is not in your reporting line: only their own managers (or an admin) can give them accounts",
            )));
        }
        Ok(())
    }
}

/// Something a member of staff wants to do, with the accounts and people it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Read an account, its timeline, tree, assignments or health.
    See(AccountId),
    /// Write notes and tasks, edit contacts, domains, external ids, the renewal date.
    Work(AccountId),
    /// Rename, change the lifecycle, or change the parent (`parent` the new one, if any).
    Restructure {
        /// The account reshaped.
        account: AccountId,
        /// Its new parent, when it moves under one.
        parent: Option<AccountId>,
    },
    /// Make `to` the owner or a supporter of `account` (or end their support).
    Assign {
        /// The account.
        account: AccountId,
        /// Who gains (or loses) it.
        to: StaffId,
    },
    /// Move `accounts`, which `from` owns, to `to`.
    HandOff {
        /// The current owner.
        from: StaffId,
        /// The new owner.
        to: StaffId,
        /// The accounts that move (each must be visible).
        accounts: Vec<AccountId>,
    },
    /// Open an account owned by `owner`, under `parent`.
    Open {
        /// Its first owner.
        owner: StaffId,
        /// Its parent, for a subsidiary.
        parent: Option<AccountId>,
    },
    /// Read the unmatched inbox.
    Triage,
    /// Place an event of the unmatched inbox on `account`.
    Place {
        /// Where it goes.
        account: AccountId,
    },
    /// Staff records, other people's tokens, syncs and checks, the audit trail.
    Administer,
}

impl Action {
    /// The accounts whose visibility the decision looks at.
    pub fn accounts(&self) -> Vec<AccountId> {
        match self {
            Action::See(account) | Action::Work(account) | Action::Place { account } => {
                vec![*account]
            }
            Action::Restructure { account, parent } => {
                std::iter::once(*account).chain(*parent).collect()
            }
            Action::Assign { account, .. } => vec![*account],
            Action::HandOff { accounts, .. } => accounts.clone(),
            Action::Open { parent, .. } => parent.iter().copied().collect(),
            Action::Triage | Action::Administer => Vec::new(),
        }
    }

    /// The people whose place in the viewer's reporting line the decision looks at.
    pub fn people(&self) -> Vec<StaffId> {
        match self {
            Action::Assign { to, .. } => vec![*to],
            Action::HandOff { from, to, .. } => vec![*from, *to],
            Action::Open { owner, .. } => vec![*owner],
            _ => Vec::new(),
        }
    }
}

/// What a decision needs to know about the accounts and people an action names, read
/// at the moment of the decision (inside the write transaction, for a write).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// Of the named accounts, those the viewer sees.
    pub visible: BTreeSet<AccountId>,
    /// Of the named people, those in the viewer's reporting line (the viewer included).
    pub team: BTreeSet<StaffId>,
}

impl Facts {
    fn require_visible(&self, account: AccountId) -> Result<(), DomainError> {
        if self.visible.contains(&account) {
            Ok(())
        } else {
            // The same words a missing account gets: a hidden account is not confirmed.
            Err(DomainError::UnknownAccount(account))
        }
    }

    fn in_team(&self, staff: StaffId) -> bool {
        self.team.contains(&staff)
    }
}

/// On whose authority a write happens.
#[derive(Debug, Clone, Copy)]
pub enum Authority<'a> {
    /// The operator: the CLI, imports, the sync engine, the demo. Trusted with the
    /// database itself, so nothing is checked beyond the domain rules.
    Operator,
    /// A person, doing one action; the store decides it inside the write.
    Staff(&'a Permissions, &'a Action),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(level: Level, is_admin: bool) -> Permissions {
        Permissions {
            staff: StaffId(1),
            email: "p@corp.example".into(),
            level,
            is_admin,
        }
    }

    fn facts(visible: &[i64], team: &[i64]) -> Facts {
        Facts {
            visible: visible.iter().copied().map(AccountId).collect(),
            team: team.iter().copied().map(StaffId).collect(),
        }
    }

    /// Whether the decision was yes, "not found" (hidden) or "forbidden".
    fn verdict(result: Result<(), DomainError>) -> &'static str {
        match result {
            Ok(()) => "yes",
            Err(DomainError::UnknownAccount(_)) => "hidden",
            Err(DomainError::NotPermitted(_)) => "forbidden",
            Err(other) => panic!("unexpected refusal {other}"),
        }
    }

    /// The table in the module header, row by row.
    #[test]
    fn the_permission_table() {
        use Level::*;
        let a = AccountId(10);
        let parent = AccountId(11);
        let report = StaffId(2);
        let stranger = StaffId(3);
        #[rustfmt::skip]
        let cases: Vec<(Level, bool, Action, Facts, &str)> = vec![
            // See and work: visibility alone; admin grants none.
            (Associate, false, Action::See(a), facts(&[10], &[]), "yes"),
            (Vp, true, Action::See(a), facts(&[], &[]), "hidden"),
            (Associate, false, Action::Work(a), facts(&[10], &[]), "yes"),
            (Manager, true, Action::Work(a), facts(&[], &[]), "hidden"),
            // Restructure: managers and above, the account and the new parent visible.
            (Associate, false, Action::Restructure { account: a, parent: None }, facts(&[10], &[]), "forbidden"),
            (Manager, false, Action::Restructure { account: a, parent: None }, facts(&[10], &[]), "yes"),
            (Manager, false, Action::Restructure { account: a, parent: Some(parent) }, facts(&[10], &[]), "hidden"),
            (Manager, false, Action::Restructure { account: a, parent: Some(parent) }, facts(&[10, 11], &[]), "yes"),
            (Associate, false, Action::Restructure { account: a, parent: None }, facts(&[], &[]), "hidden"),
            // Assign: to someone in the line; admins to anyone, on a visible account.
            (Manager, false, Action::Assign { account: a, to: report }, facts(&[10], &[1, 2]), "yes"),
            (Manager, false, Action::Assign { account: a, to: stranger }, facts(&[10], &[1, 2]), "forbidden"),
            (Associate, false, Action::Assign { account: a, to: report }, facts(&[10], &[1, 2]), "forbidden"),
            (Manager, true, Action::Assign { account: a, to: stranger }, facts(&[10], &[1]), "yes"),
            (Manager, true, Action::Assign { account: a, to: stranger }, facts(&[], &[1]), "hidden"),
            // Hand off: from and to the line, every moved account visible.
            (Director, false, Action::HandOff { from: report, to: StaffId(1), accounts: vec![a] }, facts(&[10], &[1, 2]), "yes"),
            (Director, false, Action::HandOff { from: stranger, to: StaffId(1), accounts: vec![a] }, facts(&[10], &[1, 2]), "forbidden"),
            (Director, false, Action::HandOff { from: report, to: stranger, accounts: vec![a] }, facts(&[10], &[1, 2]), "forbidden"),
            (Director, false, Action::HandOff { from: report, to: StaffId(1), accounts: vec![a] }, facts(&[], &[1, 2]), "hidden"),
            (Associate, false, Action::HandOff { from: stranger, to: StaffId(1), accounts: vec![] }, facts(&[], &[1]), "forbidden"),
            (Vp, true, Action::HandOff { from: stranger, to: report, accounts: vec![a] }, facts(&[10], &[1]), "yes"),
            // Open: managers and above, for their line, under a visible parent.
            (Manager, false, Action::Open { owner: report, parent: None }, facts(&[], &[1, 2]), "yes"),
            (Manager, false, Action::Open { owner: stranger, parent: None }, facts(&[], &[1, 2]), "forbidden"),
            (Associate, false, Action::Open { owner: StaffId(1), parent: None }, facts(&[], &[1]), "forbidden"),
            (Manager, false, Action::Open { owner: report, parent: Some(parent) }, facts(&[], &[1, 2]), "hidden"),
            (Associate, true, Action::Open { owner: stranger, parent: None }, facts(&[], &[1]), "yes"),
            (Associate, true, Action::Open { owner: stranger, parent: Some(parent) }, facts(&[], &[1]), "hidden"),
            // Triage and place: managers and above, and admins; the target visible.
            (Associate, false, Action::Triage, facts(&[], &[]), "forbidden"),
            (Associate, true, Action::Triage, facts(&[], &[]), "yes"),
            (Manager, false, Action::Place { account: a }, facts(&[10], &[]), "yes"),
            (Manager, false, Action::Place { account: a }, facts(&[], &[]), "hidden"),
            (Associate, false, Action::Place { account: a }, facts(&[10], &[]), "forbidden"),
            // Administer: admins only, whatever the level.
            (Vp, false, Action::Administer, facts(&[], &[]), "forbidden"),
            (Associate, true, Action::Administer, facts(&[], &[]), "yes"),
        ];
        for (level, is_admin, action, facts, expected) in cases {
            let got = verdict(person(level, is_admin).decide(&action, &facts));
            assert_eq!(
                got, expected,
                "{level} (admin: {is_admin}) doing {action:?} with {facts:?}"
            );
        }
    }

    #[test]
    fn decisions_look_only_at_what_the_action_names() {
        let actions = [
            Action::Restructure {
                account: AccountId(1),
                parent: Some(AccountId(2)),
            },
            Action::HandOff {
                from: StaffId(5),
                to: StaffId(6),
                accounts: vec![AccountId(3), AccountId(4)],
            },
            Action::Open {
                owner: StaffId(7),
                parent: Some(AccountId(8)),
            },
        ];
        for action in actions {
            // With exactly the named facts true, a manager is allowed: nothing else
            // was consulted.
            let facts = Facts {
                visible: action.accounts().into_iter().collect(),
                team: action.people().into_iter().collect(),
            };
            assert_eq!(
                person(Level::Director, false).decide(&action, &facts),
                Ok(())
            );
        }
    }
}
