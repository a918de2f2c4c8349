//! The reporting hierarchy: associate → manager → director → VP.
//!
//! `reports_to` always points at someone strictly more senior, and a VP reports to
//! nobody. Because seniority strictly rises along every chain, a valid chart cannot hold
//! a cycle; [`OrgChart::check_manager`] still walks the chain, so a chart loaded from a
//! damaged database is refused rather than looped over forever.

use crate::account::EmailAddress;
use crate::{DomainError, Result, StaffId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// Seniority, in increasing order: the derived `Ord` is the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Supports accounts owned by their manager.
    Associate,
    /// An account manager: owns a book of accounts.
    Manager,
    /// Oversees managers.
    Director,
    /// The VP of account management: the top of the hierarchy.
    Vp,
}

impl Level {
    /// Every level, junior first.
    pub const ALL: [Level; 4] = [Level::Associate, Level::Manager, Level::Director, Level::Vp];

    /// The stable name used in storage, config and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Associate => "associate",
            Level::Manager => "manager",
            Level::Director => "director",
            Level::Vp => "vp",
        }
    }
}

impl Level {
    /// The level with its indefinite article, for sentences: "an associate", "a VP".
    pub fn with_article(self) -> &'static str {
        match self {
            Level::Associate => "an associate",
            Level::Manager => "a manager",
            Level::Director => "a director",
            Level::Vp => "a VP",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Vp => "VP",
            other => other.as_str(),
        })
    }
}

impl FromStr for Level {
    type Err = DomainError;

    fn from_str(input: &str) -> Result<Self> {
        Level::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(input.trim()))
            .ok_or_else(|| DomainError::UnknownName {
                what: "staff level",
                input: input.to_owned(),
                expected: "associate, manager, director, vp",
            })
    }
}

/// A member of the account-management staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Staff {
    /// Row id.
    pub id: StaffId,
    /// Display name.
    pub name: String,
    /// Work email, normalised; unique across staff.
    pub email: EmailAddress,
    /// Seniority.
    pub level: Level,
    /// Their manager.
    pub reports_to: Option<StaffId>,
    /// False once deactivated (left the team); history keeps them.
    pub active: bool,
    /// May administer rapport (tokens, connectors); grants no extra visibility.
    pub is_admin: bool,
}

impl Staff {
    /// The part of this record the hierarchy rules look at.
    pub fn org_node(&self) -> OrgNode {
        OrgNode {
            id: self.id,
            level: self.level,
            reports_to: self.reports_to,
            active: self.active,
        }
    }
}

/// What it takes to add someone to the staff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewStaff {
    /// Display name.
    pub name: String,
    /// Work email.
    pub email: EmailAddress,
    /// Seniority.
    pub level: Level,
    /// Their manager (must be more senior; none for a VP).
    pub reports_to: Option<StaffId>,
    /// Whether they administer rapport.
    #[serde(default)]
    pub is_admin: bool,
}

/// What the hierarchy rules need to know about one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgNode {
    /// The person.
    pub id: StaffId,
    /// Their seniority.
    pub level: Level,
    /// Their manager, if any.
    pub reports_to: Option<StaffId>,
    /// Whether they are still with the team.
    pub active: bool,
}

/// The whole reporting structure, for checking changes and walking subtrees.
///
/// Built from every staff member (active or not); the org is small (hundreds to a few
/// thousand people), so callers load it whole.
#[derive(Debug, Clone, Default)]
pub struct OrgChart {
    nodes: BTreeMap<StaffId, OrgNode>,
    reports: BTreeMap<StaffId, Vec<StaffId>>,
}

impl OrgChart {
    /// Builds the chart. Does not validate: use [`OrgChart::validate`] for that.
    pub fn new(nodes: impl IntoIterator<Item = OrgNode>) -> Self {
        let mut chart = OrgChart::default();
        for node in nodes {
            chart.nodes.insert(node.id, node);
        }
        for node in chart.nodes.values() {
            if let Some(manager) = node.reports_to {
                chart.reports.entry(manager).or_default().push(node.id);
            }
        }
        chart
    }

    /// One person, if they exist.
    pub fn get(&self, id: StaffId) -> Option<&OrgNode> {
        self.nodes.get(&id)
    }

    /// Everyone in the chart.
    pub fn nodes(&self) -> impl Iterator<Item = &OrgNode> {
        self.nodes.values()
    }

    /// Direct reports of `manager`, active or not.
    pub fn direct_reports(&self, manager: StaffId) -> &[StaffId] {
        self.reports.get(&manager).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `root` and everyone who reports to them directly or indirectly.
    pub fn subtree(&self, root: StaffId) -> BTreeSet<StaffId> {
        let mut seen = BTreeSet::new();
        if !self.nodes.contains_key(&root) {
            return seen;
        }
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if seen.insert(id) {
                stack.extend_from_slice(self.direct_reports(id));
            }
        }
        seen
    }

    /// Checks that a person of `level` (existing as `staff`, or about to be created when
    /// `staff` is `None`) may report to `manager`.
    pub fn check_manager(
        &self,
        staff: Option<StaffId>,
        level: Level,
        manager: Option<StaffId>,
    ) -> Result<()> {
        let Some(manager_id) = manager else {
            return Ok(());
        };
        if level == Level::Vp {
            return Err(DomainError::VpHasManager);
        }
        if Some(manager_id) == staff {
            return Err(DomainError::ReportsToSelf(manager_id));
        }
        let manager_node = self
            .get(manager_id)
            .ok_or(DomainError::UnknownStaff(manager_id))?;
        if !manager_node.active {
            return Err(DomainError::StaffInactive(manager_id));
        }
        if manager_node.level <= level {
            return Err(DomainError::ReportsToNotSenior {
                staff_level: level,
                manager_level: manager_node.level,
            });
        }
        if let Some(staff_id) = staff {
            // Walk up from the proposed manager; meeting `staff` means a cycle. The walk
            // is bounded by the chart size so corrupt data cannot loop forever.
            let mut cursor = Some(manager_id);
            for _ in 0..=self.nodes.len() {
                let Some(id) = cursor else { break };
                if id == staff_id {
                    return Err(DomainError::HierarchyCycle {
                        staff: staff_id,
                        manager: manager_id,
                    });
                }
                cursor = self.get(id).and_then(|node| node.reports_to);
            }
        }
        Ok(())
    }

    /// Checks a change of level and/or manager for an existing person: their own
    /// manager must stay senior, and each of their active direct reports junior.
    pub fn check_change(
        &self,
        staff: StaffId,
        new_level: Level,
        new_manager: Option<StaffId>,
    ) -> Result<()> {
        if self.get(staff).is_none() {
            return Err(DomainError::UnknownStaff(staff));
        }
        self.check_manager(Some(staff), new_level, new_manager)?;
        for &report in self.direct_reports(staff) {
            let node = &self.nodes[&report];
            if node.active && node.level >= new_level {
                return Err(DomainError::LevelChangeStrandsReport {
                    staff,
                    new_level,
                    report,
                    report_level: node.level,
                });
            }
        }
        Ok(())
    }

    /// Checks that `staff` may be deactivated, given how many accounts they own now.
    pub fn check_deactivate(&self, staff: StaffId, owned_accounts: u64) -> Result<()> {
        if self.get(staff).is_none() {
            return Err(DomainError::UnknownStaff(staff));
        }
        if owned_accounts > 0 {
            return Err(DomainError::StillOwnsAccounts {
                staff,
                count: owned_accounts,
            });
        }
        let active_reports = self
            .direct_reports(staff)
            .iter()
            .filter(|id| self.nodes[id].active)
            .count() as u64;
        if active_reports > 0 {
            return Err(DomainError::StillHasReports {
                staff,
                count: active_reports,
            });
        }
        Ok(())
    }

    /// Checks every rule over the whole chart, e.g. after loading it.
    pub fn validate(&self) -> Result<()> {
        for node in self.nodes.values() {
            if node.level == Level::Vp && node.reports_to.is_some() {
                return Err(DomainError::VpHasManager);
            }
            if let Some(manager) = node.reports_to {
                let manager_node = self
                    .get(manager)
                    .ok_or(DomainError::UnknownStaff(manager))?;
                if manager_node.level <= node.level {
                    return Err(DomainError::ReportsToNotSenior {
                        staff_level: node.level,
                        manager_level: manager_node.level,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Validates a person's display name.
pub fn validate_name(field: &'static str, name: &str) -> Result<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(DomainError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    if trimmed.chars().count() > 200 {
        return Err(DomainError::InvalidField {
            field,
            reason: "must be at most 200 characters".into(),
        });
    }
    if trimmed.chars().any(char::is_control) {
        return Err(DomainError::InvalidField {
            field,
            reason: "must not contain control characters".into(),
        });
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: i64, level: Level, reports_to: Option<i64>) -> OrgNode {
        OrgNode {
            id: StaffId(id),
            level,
            reports_to: reports_to.map(StaffId),
            active: true,
        }
    }

    fn chart() -> OrgChart {
        // 1 VP; 2 director; 3 manager; 4 associate under 3; 5 manager under 2
        OrgChart::new([
            node(1, Level::Vp, None),
            node(2, Level::Director, Some(1)),
            node(3, Level::Manager, Some(2)),
            node(4, Level::Associate, Some(3)),
            node(5, Level::Manager, Some(2)),
        ])
    }

    #[test]
    fn levels_are_ordered_and_parse() {
        assert!(Level::Associate < Level::Manager && Level::Director < Level::Vp);
        assert_eq!("VP".parse::<Level>().unwrap(), Level::Vp);
        let err = "boss".parse::<Level>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`boss` is not a valid staff level; expected one of: associate, manager, director, vp"
        );
    }

    #[test]
    fn reports_to_must_point_strictly_upward() {
        let chart = chart();
        chart
            .check_manager(None, Level::Associate, Some(StaffId(3)))
            .unwrap();
        chart
            .check_manager(None, Level::Associate, Some(StaffId(2)))
            .unwrap();
        assert_eq!(
            chart.check_manager(None, Level::Manager, Some(StaffId(5))),
            Err(DomainError::ReportsToNotSenior {
                staff_level: Level::Manager,
                manager_level: Level::Manager
            })
        );
        assert_eq!(
            chart.check_manager(None, Level::Director, Some(StaffId(4))),
            Err(DomainError::ReportsToNotSenior {
                staff_level: Level::Director,
                manager_level: Level::Associate
            })
        );
    }

    #[test]
    fn vp_reports_to_nobody() {
        assert_eq!(
            chart().check_manager(None, Level::Vp, Some(StaffId(1))),
            Err(DomainError::VpHasManager)
        );
    }

    #[test]
    fn self_and_unknown_managers_are_refused() {
        let chart = chart();
        assert_eq!(
            chart.check_manager(Some(StaffId(3)), Level::Manager, Some(StaffId(3))),
            Err(DomainError::ReportsToSelf(StaffId(3)))
        );
        assert_eq!(
            chart.check_manager(None, Level::Manager, Some(StaffId(99))),
            Err(DomainError::UnknownStaff(StaffId(99)))
        );
    }

    #[test]
    fn cycles_are_detected_even_in_a_corrupt_chart() {
        // Levels that would normally forbid this are bypassed by loading corrupt rows:
        // 10 and 11 are directors reporting to each other.
        let corrupt = OrgChart::new([
            node(10, Level::Director, Some(11)),
            node(11, Level::Vp, Some(10)),
        ]);
        assert!(corrupt.validate().is_err());
        // A director asked to report to a VP that (corruptly) reports to them.
        assert_eq!(
            corrupt.check_manager(Some(StaffId(10)), Level::Director, Some(StaffId(11))),
            Err(DomainError::HierarchyCycle {
                staff: StaffId(10),
                manager: StaffId(11)
            })
        );
    }

    #[test]
    fn level_changes_keep_reports_junior() {
        let chart = chart();
        // Manager 3 has associate 4 reporting: demoting 3 to associate strands 4.
        assert_eq!(
            chart.check_change(StaffId(3), Level::Associate, Some(StaffId(2))),
            Err(DomainError::LevelChangeStrandsReport {
                staff: StaffId(3),
                new_level: Level::Associate,
                report: StaffId(4),
                report_level: Level::Associate
            })
        );
        // Promoting 5 to director under the VP is fine.
        chart
            .check_change(StaffId(5), Level::Director, Some(StaffId(1)))
            .unwrap();
    }

    #[test]
    fn deactivation_requires_no_owned_accounts_and_no_reports() {
        let chart = chart();
        assert_eq!(
            chart.check_deactivate(StaffId(5), 2),
            Err(DomainError::StillOwnsAccounts {
                staff: StaffId(5),
                count: 2
            })
        );
        assert_eq!(
            chart.check_deactivate(StaffId(3), 0),
            Err(DomainError::StillHasReports {
                staff: StaffId(3),
                count: 1
            })
        );
        chart.check_deactivate(StaffId(4), 0).unwrap();
    }

    #[test]
    fn subtree_contains_everyone_below() {
        let chart = chart();
        assert_eq!(
            chart.subtree(StaffId(2)),
            [2, 3, 4, 5].into_iter().map(StaffId).collect()
        );
        assert_eq!(chart.subtree(StaffId(4)), [StaffId(4)].into());
        assert!(chart.subtree(StaffId(42)).is_empty());
    }

    #[test]
    fn inactive_manager_is_refused() {
        let mut nodes: Vec<_> = chart().nodes().copied().collect();
        nodes[2].active = false; // manager 3
        let chart = OrgChart::new(nodes);
        assert_eq!(
            chart.check_manager(None, Level::Associate, Some(StaffId(3))),
            Err(DomainError::StaffInactive(StaffId(3)))
        );
    }
}
