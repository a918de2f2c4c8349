//! Effective-dated assignments of staff to accounts.
//!
//! An assignment row is never edited away: ending one sets `valid_to`, and a handoff
//! ends the old owner row and opens a new one at the same instant, so the history of
//! who looked after an account is always complete. At any instant an account has exactly
//! one owner (once it has been given one) and any number of supporters.

use crate::staff::{Level, OrgNode};
use crate::{AccountId, AssignmentId, DomainError, Result, StaffId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a staff member does for an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The account manager responsible for the client; exactly one at a time.
    Owner,
    /// Helps the owner (typically an associate).
    Support,
}

impl Role {
    /// The stable name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Support => "support",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DomainError;

    fn from_str(input: &str) -> Result<Self> {
        match input.trim().to_ascii_lowercase().as_str() {
            "owner" => Ok(Role::Owner),
            "support" => Ok(Role::Support),
            _ => Err(DomainError::UnknownName {
                what: "assignment role",
                input: input.to_owned(),
                expected: "owner, support",
            }),
        }
    }
}

/// One row of assignment history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// Row id.
    pub id: AssignmentId,
    /// The account.
    pub account: AccountId,
    /// The staff member.
    pub staff: StaffId,
    /// Their role.
    pub role: Role,
    /// When the assignment started (inclusive).
    pub valid_from: DateTime<Utc>,
    /// When it ended (exclusive); `None` while it is current.
    pub valid_to: Option<DateTime<Utc>>,
}

impl Assignment {
    /// Whether this assignment is in force at `at`.
    pub fn is_current_at(&self, at: DateTime<Utc>) -> bool {
        self.valid_from <= at && self.valid_to.is_none_or(|end| at < end)
    }
}

/// Checks that `staff` may become an account's owner.
///
/// `current_owner` is whoever owns the account now; adding an owner to an account that
/// has one is refused (use a reassignment), and so is "reassigning" to the same person.
pub fn check_owner(
    account: AccountId,
    staff: &OrgNode,
    current_owner: Option<StaffId>,
    is_reassignment: bool,
) -> Result<()> {
    check_assignable(staff)?;
    if staff.level == Level::Associate {
        return Err(DomainError::AssociateCannotOwn(staff.id));
    }
    match (current_owner, is_reassignment) {
        (Some(owner), _) if owner == staff.id => Err(DomainError::AlreadyOwner {
            account,
            staff: staff.id,
        }),
        (Some(owner), false) => Err(DomainError::AccountAlreadyOwned { account, owner }),
        _ => Ok(()),
    }
}

/// Checks that `staff` may start supporting an account, given whether they already do.
pub fn check_support(account: AccountId, staff: &OrgNode, already_supports: bool) -> Result<()> {
    check_assignable(staff)?;
    if already_supports {
        return Err(DomainError::AlreadyAssigned {
            account,
            staff: staff.id,
            role: Role::Support,
        });
    }
    Ok(())
}

/// Checks that `staff` can be given accounts at all (they are active).
pub fn check_assignable(staff: &OrgNode) -> Result<()> {
    if !staff.active {
        return Err(DomainError::StaffInactive(staff.id));
    }
    Ok(())
}

/// Checks an account's whole assignment history: owner rows never overlap, and no one
/// holds the same role twice at once. Used to verify stored history in tests and audits.
pub fn check_history(rows: &[Assignment]) -> Result<()> {
    for (index, a) in rows.iter().enumerate() {
        for b in &rows[index + 1..] {
            if a.account != b.account || a.role != b.role {
                continue;
            }
            if a.role == Role::Support && a.staff != b.staff {
                continue;
            }
            let a_end = a.valid_to.unwrap_or(DateTime::<Utc>::MAX_UTC);
            let b_end = b.valid_to.unwrap_or(DateTime::<Utc>::MAX_UTC);
            let overlap = a.valid_from < b_end && b.valid_from < a_end;
            if overlap {
                return Err(match a.role {
                    Role::Owner => DomainError::AccountAlreadyOwned {
                        account: a.account,
                        owner: a.staff,
                    },
                    Role::Support => DomainError::AlreadyAssigned {
                        account: a.account,
                        staff: a.staff,
                        role: Role::Support,
                    },
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn person(id: i64, level: Level, active: bool) -> OrgNode {
        OrgNode {
            id: StaffId(id),
            level,
            reports_to: None,
            active,
        }
    }

    #[test]
    fn owners_are_managers_or_above_and_unique() {
        let account = AccountId(7);
        let manager = person(1, Level::Manager, true);
        check_owner(account, &manager, None, false).unwrap();
        assert_eq!(
            check_owner(account, &manager, Some(StaffId(2)), false),
            Err(DomainError::AccountAlreadyOwned {
                account,
                owner: StaffId(2)
            })
        );
        check_owner(account, &manager, Some(StaffId(2)), true).unwrap();
        assert_eq!(
            check_owner(account, &manager, Some(StaffId(1)), true),
            Err(DomainError::AlreadyOwner {
                account,
                staff: StaffId(1)
            })
        );
        assert_eq!(
            check_owner(account, &person(3, Level::Associate, true), None, false),
            Err(DomainError::AssociateCannotOwn(StaffId(3)))
        );
        assert_eq!(
            check_owner(account, &person(4, Level::Director, false), None, false),
            Err(DomainError::StaffInactive(StaffId(4)))
        );
    }

    #[test]
    fn support_cannot_be_doubled() {
        let associate = person(3, Level::Associate, true);
        check_support(AccountId(1), &associate, false).unwrap();
        assert!(check_support(AccountId(1), &associate, true).is_err());
    }

    #[test]
    fn history_rejects_overlapping_owners() {
        let t = |h| Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap();
        let row = |id, staff, from, to: Option<DateTime<Utc>>| Assignment {
            id: AssignmentId(id),
            account: AccountId(1),
            staff: StaffId(staff),
            role: Role::Owner,
            valid_from: from,
            valid_to: to,
        };
        let handoff = [row(1, 10, t(1), Some(t(5))), row(2, 11, t(5), None)];
        check_history(&handoff).unwrap();
        assert!(handoff[0].is_current_at(t(4)) && !handoff[0].is_current_at(t(5)));
        assert!(handoff[1].is_current_at(t(5)));
        let overlapping = [row(1, 10, t(1), Some(t(6))), row(2, 11, t(5), None)];
        assert!(check_history(&overlapping).is_err());
    }
}
