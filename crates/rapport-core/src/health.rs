//! Account health: an explainable score from 0 to 100, computed from timeline facts
//! alone, and always shown with the reasons that took points off. "Needs attention"
//! lists sort by it.
//!
//! The rules, each capped so one kind of trouble cannot hide every other:
//!
//! | Reason | Points off | Cap |
//! |---|---|---|
//! | Open support ticket | 4 (8 if high or urgent), +4 once it is over 7 days old | 40 |
//! | Invoice payment failed in the last 365 days and not since paid | 20 each | 40 |
//! | No two-way contact (mail both ways, or a meeting held) | 10 after 30 days, 20 after 60, 25 after 90 or never | 25 |
//! | Downgrade (MRR went down) in the last 90 days | 15 each | 30 |
//! | Subscription cancelled in the last 90 days | 30 each | 30 |
//! | Open task past its due date | 5 each | 15 |
//!
//! The facts come from the account's [`Insight`], which the store keeps as events
//! are written; [`assess`] folds a list of events into one first.
//!
//! Bands: 75 and up is healthy, 50–74 is worth watching, below 50 is at risk.

use crate::insight::{Insight, Meetings, Observed};
use crate::timeline::TimelineEvent;
use chrono::{DateTime, Duration, Utc};

/// How far back a failed payment still counts.
pub const HEALTH_WINDOW_DAYS: i64 = 365;

/// Where a score falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    /// Below 50.
    AtRisk,
    /// 50 to 74.
    Watch,
    /// 75 and up.
    Healthy,
}

impl Band {
    /// The stable spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Band::AtRisk => "at_risk",
            Band::Watch => "watch",
            Band::Healthy => "healthy",
        }
    }

    fn of(score: u8) -> Band {
        match score {
            75.. => Band::Healthy,
            50..=74 => Band::Watch,
            _ => Band::AtRisk,
        }
    }
}

/// One thing that took points off, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// Stable code: `open_tickets`, `failed_payments`, `no_contact`, `downgrades`,
    /// `cancellations`, `overdue_tasks`.
    pub code: &'static str,
    /// Points taken off.
    pub points: u8,
    /// What it is, e.g. "2 open tickets, 1 older than a week".
    pub detail: String,
}

/// An account's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// 0 (worst) to 100.
    pub score: u8,
    /// Its band.
    pub band: Band,
    /// What took points off, most points first; empty for a perfect score.
    pub reasons: Vec<Reason>,
}

fn plural(count: usize, one: &str, many: &str) -> String {
    if count == 1 {
        format!("1 {one}")
    } else {
        format!("{count} {many}")
    }
}

/// Scores one account from its timeline events (any order; only the kinds in
/// [`crate::insight::INSIGHT_KINDS`] matter) as of `now`.
pub fn assess(events: &[TimelineEvent], now: DateTime<Utc>) -> Health {
    let meetings = Meetings::of(events.iter().map(Observed::from), now);
    Insight::of(events.iter().map(Observed::from)).health(now, &meetings)
}

impl Insight {
    /// The account's health at `now`, by the rules above, with what its calendar says
    /// at `now` (`meetings`).
    pub fn health(&self, now: DateTime<Utc>, meetings: &Meetings) -> Health {
        let mut reasons = Vec::new();

        // Open tickets, however old.
        let open = &self.open_tickets;
        if !open.is_empty() {
            let aging = open
                .iter()
                .filter(|ticket| now - ticket.at > Duration::days(7))
                .count();
            let pressing = open.iter().filter(|ticket| ticket.pressing).count();
            let points = open
                .len()
                .saturating_add(pressing)
                .saturating_add(aging)
                .saturating_mul(4)
                .min(40);
            let mut detail = plural(open.len(), "open ticket", "open tickets");
            if pressing > 0 {
                detail.push_str(&format!(", {pressing} high or urgent"));
            }
            if aging > 0 {
                detail.push_str(&format!(", {aging} older than a week"));
            }
            reasons.push(Reason {
                code: "open_tickets",
                points: points as u8,
                detail,
            });
        }

        // Payments that failed in the window and were not paid since.
        let since = now - Duration::days(HEALTH_WINDOW_DAYS);
        let unpaid = self
            .failed_invoices
            .values()
            .filter_map(|invoice| Some((invoice.failed?.at, invoice.paid.map(|paid| paid.at))))
            .filter(|(failed, paid)| *failed >= since && paid.is_none_or(|paid| paid < *failed))
            .count();
        if unpaid > 0 {
            reasons.push(Reason {
                code: "failed_payments",
                points: unpaid.saturating_mul(20).min(40) as u8,
                detail: format!(
                    "{} failed and not since paid",
                    plural(unpaid, "invoice payment", "invoice payments")
                ),
            });
        }

        // Two-way contact: the conversation last went both ways at the *earlier* of
        // the last mail in and the last mail out — by then both directions had happened
        // — or when the latest meeting held with the client ended.
        let by_mail = self
            .received
            .zip(self.sent)
            .map(|(received, sent)| received.at.min(sent.at));
        let two_way = by_mail.max(meetings.held);
        let (points, detail) = match two_way.map(|at| (now - at).num_days()) {
            None => (
                25,
                "no two-way contact on record (mail both ways, or a meeting)".to_owned(),
            ),
            Some(days) if days > 90 => (25, format!("no two-way contact for {days} days")),
            Some(days) if days > 60 => (20, format!("no two-way contact for {days} days")),
            Some(days) if days > 30 => (10, format!("no two-way contact for {days} days")),
            Some(_) => (0, String::new()),
        };
        if points > 0 {
            reasons.push(Reason {
                code: "no_contact",
                points,
                detail,
            });
        }

        // Downgrades and cancellations in the last 90 days.
        let recent = |at: &&DateTime<Utc>| now - **at <= Duration::days(90);
        let downgrades = self.downgrades.iter().filter(recent).count();
        if downgrades > 0 {
            reasons.push(Reason {
                code: "downgrades",
                points: downgrades.saturating_mul(15).min(30) as u8,
                detail: format!(
                    "{} in the last 90 days",
                    plural(downgrades, "downgrade", "downgrades")
                ),
            });
        }
        let cancellations = self.cancellations.iter().filter(recent).count();
        if cancellations > 0 {
            reasons.push(Reason {
                code: "cancellations",
                points: 30,
                detail: format!(
                    "{} cancelled in the last 90 days",
                    plural(cancellations, "subscription", "subscriptions")
                ),
            });
        }

        // Open tasks past their due date, however long ago they were opened.
        let today = now.date_naive();
        let overdue = self.open_task_due.partition_point(|due| *due < today);
        if overdue > 0 {
            reasons.push(Reason {
                code: "overdue_tasks",
                points: overdue.saturating_mul(5).min(15) as u8,
                detail: format!("{} past due", plural(overdue, "task", "tasks")),
            });
        }

        reasons.sort_by(|a, b| b.points.cmp(&a.points).then(a.code.cmp(b.code)));
        let lost = reasons.iter().fold(0u32, |lost, reason| {
            lost.saturating_add(u32::from(reason.points))
        });
        let score = 100u32.saturating_sub(lost) as u8;
        Health {
            score,
            band: Band::of(score),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventId;
    use crate::timeline::AttributeValue;
    use crate::timeline::{EventKind, Money, NewEvent};
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap()
    }

    fn event(kind: &str, days_ago: i64, attributes: &[(&str, AttributeValue)]) -> TimelineEvent {
        let mut event = NewEvent::new(
            "test",
            format!("{kind}-{days_ago}-{}", attributes.len()),
            EventKind::parse(kind).unwrap(),
            now() - Duration::days(days_ago),
            kind,
        );
        for (name, value) in attributes {
            event.attributes.insert((*name).to_owned(), value.clone());
        }
        TimelineEvent {
            id: EventId(1),
            ingested_at: now(),
            event,
            match_candidates: Vec::new(),
            unreadable: None,
            capture: None,
            withheld: false,
        }
    }

    fn text(value: &str) -> AttributeValue {
        AttributeValue::Text(value.to_owned())
    }

    fn usd(minor_units: i64) -> AttributeValue {
        AttributeValue::Money(Money {
            minor_units,
            currency: "USD".into(),
        })
    }

    fn talking(days_ago: i64) -> Vec<TimelineEvent> {
        vec![
            event("email.received", days_ago, &[]),
            event("email.sent", days_ago, &[]),
        ]
    }

    #[test]
    fn a_quiet_happy_account_scores_full_marks() {
        let health = assess(&talking(3), now());
        assert_eq!(health.score, 100);
        assert_eq!(health.band, Band::Healthy);
        assert!(health.reasons.is_empty());
    }

    #[test]
    fn each_rule_takes_its_points_with_a_reason() {
        let mut events = talking(45);
        events.push(event(
            "support.ticket.created",
            10,
            &[("status", text("open")), ("priority", text("urgent"))],
        ));
        events.push(event(
            "support.ticket.created",
            2,
            &[("status", text("pending"))],
        ));
        events.push(event(
            "support.ticket.created",
            30,
            &[("status", text("solved"))],
        ));
        events.push(event(
            "billing.invoice.payment_failed",
            5,
            &[("invoice_id", text("in_1"))],
        ));
        events.push(event(
            "billing.invoice.payment_failed",
            9,
            &[("invoice_id", text("in_2"))],
        ));
        events.push(event(
            "billing.invoice.paid",
            8,
            &[("invoice_id", text("in_2"))],
        ));
        events.push(event(
            "billing.subscription.updated",
            20,
            &[("mrr", usd(5_000)), ("previous_mrr", usd(9_000))],
        ));
        events.push(event(
            "billing.subscription.updated",
            200,
            &[("mrr", usd(1_000)), ("previous_mrr", usd(9_000))],
        ));
        events.push(event(
            "task.created",
            4,
            &[("status", text("open")), ("due", text("2026-11-25"))],
        ));
        events.push(event(
            "task.created",
            4,
            &[("status", text("done")), ("due", text("2026-11-01"))],
        ));
        let health = assess(&events, now());
        let by_code: BTreeMap<&str, (u8, &str)> = health
            .reasons
            .iter()
            .map(|reason| (reason.code, (reason.points, reason.detail.as_str())))
            .collect();
        // Two open tickets (4 each), one urgent (+4), one older than a week (+4).
        assert_eq!(
            by_code["open_tickets"],
            (16, "2 open tickets, 1 high or urgent, 1 older than a week")
        );
        // in_2 failed, then was paid; in_1 was not.
        assert_eq!(
            by_code["failed_payments"],
            (20, "1 invoice payment failed and not since paid")
        );
        assert_eq!(
            by_code["no_contact"],
            (10, "no two-way contact for 45 days")
        );
        // The downgrade 200 days ago is outside the window.
        assert_eq!(
            by_code["downgrades"],
            (15, "1 downgrade in the last 90 days")
        );
        assert_eq!(by_code["overdue_tasks"], (5, "1 task past due"));
        assert_eq!(health.score, 100 - 16 - 20 - 10 - 15 - 5);
        assert_eq!(health.band, Band::AtRisk);
        assert_eq!(
            health.reasons[0].code, "failed_payments",
            "most points first"
        );
    }

    #[test]
    fn a_meeting_held_is_two_way_contact_and_one_to_come_is_not() {
        let ends = |days_ago: i64| {
            AttributeValue::Timestamp(now() - Duration::days(days_ago) + Duration::hours(1))
        };
        let held = vec![event("meeting.scheduled", 3, &[("ends_at", ends(3))])];
        let health = assess(&held, now());
        assert!(
            health.reasons.iter().all(|r| r.code != "no_contact"),
            "{health:?}"
        );
        assert_eq!(health.score, 100);
        // Scheduled for next week: it has not happened, so it is not contact; a meeting
        // called off never is.
        let ahead = vec![
            event("meeting.scheduled", -7, &[("ends_at", ends(-7))]),
            event("meeting.canceled", 3, &[("ends_at", ends(3))]),
        ];
        let health = assess(&ahead, now());
        assert_eq!(health.reasons[0].code, "no_contact");
        let meetings = Meetings::of(ahead.iter().map(Observed::from), now());
        assert_eq!(meetings.held, None);
        assert_eq!(meetings.next, Some(now() + Duration::days(7)));
    }

    #[test]
    fn silence_and_one_way_mail_count_as_no_contact() {
        assert_eq!(assess(&[], now()).reasons[0].code, "no_contact");
        let only_inbound = vec![event("email.received", 1, &[])];
        let health = assess(&only_inbound, now());
        assert_eq!(health.score, 75);
        assert_eq!(
            health.reasons[0].detail,
            "no two-way contact on record (mail both ways, or a meeting)"
        );
        // Both ways, but the reply was long ago: the conversation is as old as the
        // older direction.
        let mut stale = vec![
            event("email.received", 1, &[]),
            event("email.sent", 70, &[]),
        ];
        stale.push(event("email.sent", 100, &[]));
        assert_eq!(assess(&stale, now()).reasons[0].points, 20);
    }

    #[test]
    fn caps_keep_one_kind_of_trouble_from_hiding_the_rest() {
        let mut events = talking(1);
        for n in 0..20 {
            events.push(event(
                "billing.invoice.payment_failed",
                1,
                &[("invoice_id", text(&format!("in_{n}")))],
            ));
        }
        for _ in 0..3 {
            events.push(event("billing.subscription.deleted", 5, &[]));
        }
        let health = assess(&events, now());
        assert_eq!(health.score, 100 - 40 - 30);
        assert_eq!(health.band, Band::AtRisk);
        // The score never goes below zero.
        for n in 0..20 {
            events.push(event(
                "support.ticket.created",
                30,
                &[("status", text(&format!("open{n}")))],
            ));
        }
        let floor = assess(&events, now());
        assert_eq!(floor.score, 0);
    }
}
