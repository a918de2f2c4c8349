//! Revenue from billing events: current MRR per currency, its history, the plans and
//! the next renewal. Subscription events carry each subscription's MRR (normalised per
//! month by the connector from items × prices); an account's MRR is the sum over its
//! subscriptions' latest values, per currency. Currencies are never mixed or converted.

use crate::EventId;
use crate::timeline::{AttributeValue, Attributes, EventKind, TimelineEvent};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Kinds that state a subscription's current MRR.
const SUBSCRIPTION_KINDS: [&str; 3] = [
    EventKind::SUBSCRIPTION_CREATED,
    EventKind::SUBSCRIPTION_UPDATED,
    EventKind::SUBSCRIPTION_DELETED,
];

/// Monthly recurring revenue in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Mrr {
    /// ISO 4217 code.
    pub currency: String,
    /// Minor units per month.
    pub minor_units: i64,
}

/// The account's MRR after an event changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MrrPoint {
    /// When.
    pub at: DateTime<Utc>,
    /// Totals per currency from then on.
    pub totals: Vec<Mrr>,
}

/// An account's revenue picture.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Revenue {
    /// Current MRR per currency (sorted by currency); empty without billing data.
    pub mrr: Vec<Mrr>,
    /// Every change, oldest first.
    pub history: Vec<MrrPoint>,
    /// Plans of the subscriptions that currently bring revenue, sorted.
    pub plans: Vec<String>,
    /// The soonest renewal among live subscriptions.
    pub renews_at: Option<DateTime<Utc>>,
    /// Live subscriptions.
    pub subscriptions: usize,
}

#[derive(Debug, Clone)]
struct Subscription {
    mrr: Option<(String, i64)>,
    plan: Option<String>,
    renews_at: Option<DateTime<Utc>>,
    live: bool,
}

fn totals(subscriptions: &BTreeMap<String, Subscription>) -> Vec<Mrr> {
    let mut by_currency: BTreeMap<&str, i64> = BTreeMap::new();
    for subscription in subscriptions.values().filter(|s| s.live) {
        if let Some((currency, minor_units)) = &subscription.mrr {
            // Saturating, never wrapping or panicking: each amount is bounded at the
            // boundary (`limits::MONEY_MINOR_UNITS_MAX`), so only thousands of maximal
            // subscriptions could reach the end of the range, and then the total stays
            // at it.
            let total = by_currency.entry(currency).or_default();
            *total = total.saturating_add(*minor_units);
        }
    }
    by_currency
        .into_iter()
        .map(|(currency, minor_units)| Mrr {
            currency: currency.to_owned(),
            minor_units,
        })
        .collect()
}

/// What one subscription event says about its subscription: the part of the revenue
/// rules both [`revenue`] and the kept [`crate::insight::Insight`] apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubscriptionChange {
    /// The subscription's id; without one, the event stands for its own subscription.
    pub subscription: String,
    /// Whether the subscription brings revenue after this event.
    pub live: bool,
    /// Its MRR, if the event states one.
    pub mrr: Option<Mrr>,
    /// Its plan, if the event names one.
    pub plan: Option<String>,
    /// Its renewal, if the event gives one.
    pub renews_at: Option<DateTime<Utc>>,
}

impl SubscriptionChange {
    /// The change an event of `kind` makes, if it is a subscription event.
    pub(crate) fn of(
        kind: &str,
        id: EventId,
        attributes: &Attributes,
    ) -> Option<SubscriptionChange> {
        if !SUBSCRIPTION_KINDS.contains(&kind) {
            return None;
        }
        let subscription = match attributes.get("subscription_id") {
            Some(AttributeValue::Text(id)) => id.clone(),
            _ => format!("{id}"),
        };
        let status = match attributes.get("status") {
            Some(AttributeValue::Text(status)) => status.as_str(),
            _ => "active",
        };
        Some(SubscriptionChange {
            subscription,
            live: kind != EventKind::SUBSCRIPTION_DELETED
                && !matches!(status, "canceled" | "incomplete_expired"),
            mrr: match attributes.get("mrr") {
                Some(AttributeValue::Money(money)) => Some(Mrr {
                    currency: money.currency.clone(),
                    minor_units: money.minor_units,
                }),
                _ => None,
            },
            plan: match attributes.get("plan") {
                Some(AttributeValue::Text(plan)) => Some(plan.clone()),
                _ => None,
            },
            renews_at: match attributes.get("renews_at") {
                Some(AttributeValue::Timestamp(at)) => Some(*at),
                _ => None,
            },
        })
    }
}

/// The revenue picture from an account's billing events (any order).
pub fn revenue(events: &[TimelineEvent]) -> Revenue {
    let mut changes: Vec<(&TimelineEvent, SubscriptionChange)> = events
        .iter()
        .filter_map(|event| {
            SubscriptionChange::of(event.event.kind.as_str(), event.id, &event.event.attributes)
                .map(|change| (event, change))
        })
        .collect();
    changes.sort_by_key(|(event, _)| (event.event.occurred_at, event.id));
    let mut subscriptions: BTreeMap<String, Subscription> = BTreeMap::new();
    let mut history: Vec<MrrPoint> = Vec::new();
    for (event, change) in changes {
        let entry = subscriptions
            .entry(change.subscription)
            .or_insert(Subscription {
                mrr: None,
                plan: None,
                renews_at: None,
                live: true,
            });
        if let Some(mrr) = change.mrr {
            entry.mrr = Some((mrr.currency, mrr.minor_units));
        }
        if let Some(plan) = change.plan {
            entry.plan = Some(plan);
        }
        if let Some(renews_at) = change.renews_at {
            entry.renews_at = Some(renews_at);
        }
        entry.live = change.live;
        let now = totals(&subscriptions);
        if history.last().is_none_or(|last| last.totals != now) {
            history.push(MrrPoint {
                at: event.event.occurred_at,
                totals: now,
            });
        }
    }
    let live: Vec<&Subscription> = subscriptions.values().filter(|s| s.live).collect();
    let mut plans: Vec<String> = live.iter().filter_map(|s| s.plan.clone()).collect();
    plans.sort();
    plans.dedup();
    Revenue {
        mrr: totals(&subscriptions),
        history,
        plans,
        renews_at: live.iter().filter_map(|s| s.renews_at).min(),
        subscriptions: live.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventId;
    use crate::timeline::{EventKind, Money, NewEvent};
    use chrono::{Duration, TimeZone};

    fn at(day: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(day)
    }

    fn change(
        id: i64,
        kind: &str,
        day: i64,
        subscription: &str,
        mrr: (i64, &str),
        plan: &str,
    ) -> TimelineEvent {
        let mut event = NewEvent::new(
            "stripe",
            format!("evt_{id}"),
            EventKind::parse(kind).unwrap(),
            at(day),
            kind,
        );
        let attributes = &mut event.attributes;
        attributes.insert(
            "subscription_id".into(),
            AttributeValue::Text(subscription.into()),
        );
        attributes.insert(
            "mrr".into(),
            AttributeValue::Money(Money {
                minor_units: mrr.0,
                currency: mrr.1.into(),
            }),
        );
        attributes.insert("plan".into(), AttributeValue::Text(plan.into()));
        attributes.insert("renews_at".into(), AttributeValue::Timestamp(at(day + 30)));
        TimelineEvent {
            id: EventId(id),
            ingested_at: at(day),
            event,
            match_candidates: Vec::new(),
            unreadable: None,
            capture: None,
            withheld: false,
        }
    }

    #[test]
    fn mrr_sums_subscriptions_per_currency_and_follows_changes() {
        let events = vec![
            // Out of order on purpose: revenue sorts by time.
            change(
                3,
                "billing.subscription.updated",
                40,
                "sub_a",
                (15_000, "USD"),
                "Pro",
            ),
            change(
                1,
                "billing.subscription.created",
                0,
                "sub_a",
                (10_000, "USD"),
                "Team",
            ),
            change(
                2,
                "billing.subscription.created",
                10,
                "sub_b",
                (8_000, "EUR"),
                "Team EU",
            ),
            change(
                4,
                "billing.subscription.created",
                50,
                "sub_c",
                (2_000, "USD"),
                "Add-on",
            ),
            change(
                5,
                "billing.subscription.deleted",
                60,
                "sub_c",
                (0, "USD"),
                "Add-on",
            ),
        ];
        let revenue = revenue(&events);
        assert_eq!(
            revenue.mrr,
            vec![
                Mrr {
                    currency: "EUR".into(),
                    minor_units: 8_000
                },
                Mrr {
                    currency: "USD".into(),
                    minor_units: 15_000
                },
            ]
        );
        assert_eq!(revenue.plans, ["Pro", "Team EU"]);
        assert_eq!(revenue.subscriptions, 2);
        assert_eq!(revenue.renews_at, Some(at(40)));
        let usd: Vec<(DateTime<Utc>, i64)> = revenue
            .history
            .iter()
            .map(|point| {
                let usd = point
                    .totals
                    .iter()
                    .find(|m| m.currency == "USD")
                    .map_or(0, |m| m.minor_units);
                (point.at, usd)
            })
            .collect();
        assert_eq!(
            usd,
            [
                (at(0), 10_000),
                (at(10), 10_000),
                (at(40), 15_000),
                (at(50), 17_000),
                (at(60), 15_000)
            ]
        );
    }

    #[test]
    fn huge_amounts_saturate_instead_of_overflowing() {
        let events = vec![
            change(
                1,
                "billing.subscription.created",
                0,
                "sub_a",
                (i64::MAX, "USD"),
                "Max",
            ),
            change(
                2,
                "billing.subscription.created",
                1,
                "sub_b",
                (i64::MAX, "USD"),
                "Max",
            ),
            change(
                3,
                "billing.subscription.created",
                2,
                "sub_c",
                (i64::MIN, "EUR"),
                "Min",
            ),
            change(
                4,
                "billing.subscription.created",
                3,
                "sub_d",
                (i64::MIN, "EUR"),
                "Min",
            ),
        ];
        let revenue = revenue(&events);
        assert_eq!(
            revenue.mrr,
            vec![
                Mrr {
                    currency: "EUR".into(),
                    minor_units: i64::MIN
                },
                Mrr {
                    currency: "USD".into(),
                    minor_units: i64::MAX
                },
            ]
        );
    }

    #[test]
    fn no_billing_events_no_revenue() {
        assert_eq!(revenue(&[]), Revenue::default());
    }
}
