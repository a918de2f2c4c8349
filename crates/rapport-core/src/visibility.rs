//! The visibility rule, which every read in rapport enforces:
//!
//! > staff S can see account A iff A, or an ancestor account of A, is currently assigned
//! > (owner or support) to S or to anyone in S's reporting subtree.
//!
//! A VP therefore sees the whole org beneath them and an associate only the accounts
//! they support (and those accounts' subsidiaries). Deactivated staff see nothing.
//! `rapport-store` implements the same rule in SQL; its property tests check the two
//! agree on random org charts and account trees.

use crate::account::AccountForest;
use crate::assignment::Assignment;
use crate::sharing::{Access, Capture};
use crate::staff::OrgChart;
use crate::{AccountId, StaffId};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// Everything the rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct World<'a> {
    /// The reporting hierarchy.
    pub org: &'a OrgChart,
    /// The client account tree.
    pub accounts: &'a AccountForest,
    /// Assignment history (current and past rows).
    pub assignments: &'a [Assignment],
}

impl World<'_> {
    /// Every account `viewer` may see at `at`.
    pub fn visible_accounts(&self, viewer: StaffId, at: DateTime<Utc>) -> BTreeSet<AccountId> {
        let Some(node) = self.org.get(viewer) else {
            return BTreeSet::new();
        };
        if !node.active {
            return BTreeSet::new();
        }
        let team = self.org.subtree(viewer);
        let mut visible = BTreeSet::new();
        for assignment in self.assignments {
            if team.contains(&assignment.staff)
                && assignment.is_current_at(at)
                && !visible.contains(&assignment.account)
            {
                visible.extend(self.accounts.subtree(assignment.account));
            }
        }
        visible
    }

    /// Whether `viewer` may see `account` at `at`.
    pub fn can_see(&self, viewer: StaffId, account: AccountId, at: DateTime<Utc>) -> bool {
        let Some(node) = self.org.get(viewer) else {
            return false;
        };
        if !node.active || !self.accounts.contains(account) {
            return false;
        }
        let team = self.org.subtree(viewer);
        let mut lineage = self.accounts.ancestors(account);
        lineage.push(account);
        self.assignments.iter().any(|assignment| {
            team.contains(&assignment.staff)
                && assignment.is_current_at(at)
                && lineage.contains(&assignment.account)
        })
    }

    /// What `viewer` may see at `at` of an event on `account` seen through
    /// `sightings`, each the [`Capture`] of a person's connection that reported it
    /// (`None`: rapport's own, or an organisation connector's; most events have one
    /// sighting): first the account rule, then the most any sighting's sharing level
    /// allows ([`crate::sharing`], [`crate::sighting::access`]). `None`: nothing, as if
    /// it did not exist.
    pub fn event_access(
        &self,
        viewer: StaffId,
        account: AccountId,
        sightings: &[Option<Capture>],
        at: DateTime<Utc>,
    ) -> Option<Access> {
        if !self.can_see(viewer, account, at) {
            return None;
        }
        crate::sighting::access(
            sightings.iter().map(Option::as_ref),
            &self.org.subtree(viewer),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AssignmentId;
    use crate::assignment::Role;
    use crate::staff::{Level, OrgNode};
    use chrono::TimeZone;

    fn node(id: i64, level: Level, reports_to: Option<i64>) -> OrgNode {
        OrgNode {
            id: StaffId(id),
            level,
            reports_to: reports_to.map(StaffId),
            active: true,
        }
    }

    #[test]
    fn the_rule_follows_the_hierarchy_and_the_account_tree() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        // VP 1; director 2; managers 3 and 4 under 2; associate 5 under 3.
        let org = OrgChart::new([
            node(1, Level::Vp, None),
            node(2, Level::Director, Some(1)),
            node(3, Level::Manager, Some(2)),
            node(4, Level::Manager, Some(2)),
            node(5, Level::Associate, Some(3)),
        ]);
        // Group 10 with subsidiary 11; standalone 20; 30 was 3's until a handoff to 4.
        let accounts = AccountForest::new([
            (AccountId(10), None),
            (AccountId(11), Some(AccountId(10))),
            (AccountId(20), None),
            (AccountId(30), None),
        ]);
        let row = |id, account, staff, role, to| Assignment {
            id: AssignmentId(id),
            account: AccountId(account),
            staff: StaffId(staff),
            role,
            valid_from: t0,
            valid_to: to,
        };
        let assignments = [
            row(1, 10, 3, Role::Owner, None),
            row(2, 20, 4, Role::Owner, None),
            row(3, 20, 5, Role::Support, None),
            row(4, 30, 3, Role::Owner, Some(now)),
            row(5, 30, 4, Role::Owner, None),
        ];
        let world = World {
            org: &org,
            accounts: &accounts,
            assignments: &assignments,
        };
        let ids = |list: &[i64]| list.iter().copied().map(AccountId).collect::<BTreeSet<_>>();
        assert_eq!(world.visible_accounts(StaffId(3), now), ids(&[10, 11, 20]));
        assert_eq!(world.visible_accounts(StaffId(5), now), ids(&[20]));
        assert_eq!(world.visible_accounts(StaffId(4), now), ids(&[20, 30]));
        assert_eq!(
            world.visible_accounts(StaffId(1), now),
            ids(&[10, 11, 20, 30])
        );
        // Before the handoff manager 3 still saw 30.
        assert!(world.can_see(StaffId(3), AccountId(30), t0));
        assert!(!world.can_see(StaffId(3), AccountId(30), now));
        assert!(world.can_see(StaffId(3), AccountId(11), now));
        assert!(!world.can_see(StaffId(5), AccountId(10), now));
        assert!(!world.can_see(StaffId(99), AccountId(10), now));
    }
}
