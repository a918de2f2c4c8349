//! What an account's timeline says about it, folded into a value small enough to keep
//! beside the account and to update event by event: the facts health, current
//! revenue and last contact are computed from (`Insight::health` in [`crate::health`],
//! [`Insight::standing`], [`Insight::last_contact`]).
//!
//! The facts do not depend on the time they are read at; the rules that do (a ticket
//! older than a week, a downgrade in the last 90 days) are applied when read. Every
//! fact is either a count that an event adds to and its removal takes back, or the
//! newest of something, remembered with the event that holds it (its *witness*):
//! removing an event that is no witness changes nothing, removing a witness needs the
//! account's events read again ([`Removal::Recompute`]). So the store keeps the insight
//! in the transaction that writes the events, exactly: folding the events one by one,
//! in any order, gives the same value as folding them all at once ([`Insight::of`]).

use crate::EventId;
use crate::revenue::{Mrr, SubscriptionChange};
use crate::timeline::{AttributeValue, Attributes, EventKind, TimelineEvent};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The shape of [`Insight`] as stored; a store rebuilds insights of another version
/// from the timeline.
pub const INSIGHT_VERSION: i64 = 1;

/// The event kinds an insight reads, as timeline kind prefixes (`email` is every
/// `email.*` kind).
pub const INSIGHT_KINDS: [&str; 4] = ["email", "billing", "support.ticket.created", "task.created"];

/// Whether events of `kind` change an insight.
pub fn concerns(kind: &str) -> bool {
    INSIGHT_KINDS.iter().any(|prefix| {
        kind == *prefix
            || kind
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// What an insight needs of one event.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// The stored event's id.
    pub id: EventId,
    /// Its kind.
    pub kind: &'a str,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Its attributes.
    pub attributes: &'a Attributes,
}

impl<'a> From<&'a TimelineEvent> for Observed<'a> {
    fn from(event: &'a TimelineEvent) -> Observed<'a> {
        Observed {
            id: event.id,
            kind: event.event.kind.as_str(),
            occurred_at: event.event.occurred_at,
            attributes: &event.event.attributes,
        }
    }
}

impl Observed<'_> {
    fn text(&self, name: &str) -> Option<&str> {
        match self.attributes.get(name) {
            Some(AttributeValue::Text(value)) => Some(value.as_str()),
            _ => None,
        }
    }

    fn money(&self, name: &str) -> Option<(i64, &str)> {
        match self.attributes.get(name) {
            Some(AttributeValue::Money(money)) => {
                Some((money.minor_units, money.currency.as_str()))
            }
            _ => None,
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            at: self.occurred_at,
            event: self.id.0,
        }
    }
}

/// When something happened and which event says so; newer is greater, ties broken by
/// event id (the timeline's own order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Mark {
    /// When.
    pub at: DateTime<Utc>,
    /// The witness.
    pub event: i64,
}

/// An open ticket: when it was opened, and whether it is high or urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OpenTicket {
    /// When it was opened.
    pub at: DateTime<Utc>,
    /// High or urgent.
    pub pressing: bool,
}

/// An invoice that has had a payment fail: its newest failure and newest payment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedInvoice {
    /// The newest failed payment.
    pub failed: Option<Mark>,
    /// The newest payment.
    pub paid: Option<Mark>,
}

/// One subscription's current state, each part with the event that last set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The newest event about it: it decides whether the subscription is live.
    pub last: Mark,
    /// Whether it brings revenue.
    pub live: bool,
    /// Its MRR, from the newest event that stated one.
    pub mrr: Option<(Mark, Mrr)>,
    /// Its plan, from the newest event that named one.
    pub plan: Option<(Mark, String)>,
    /// Its renewal, from the newest event that gave one.
    pub renews_at: Option<(Mark, DateTime<Utc>)>,
}

/// The facts about one account's timeline that its health, current revenue and last
/// contact are computed from. Lists are kept sorted, so equal timelines give equal
/// values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insight {
    /// The newest mail from the client.
    #[serde(default)]
    pub received: Option<Mark>,
    /// The newest mail to the client.
    #[serde(default)]
    pub sent: Option<Mark>,
    /// The newest mail either way (any `email.*` kind).
    #[serde(default)]
    pub contact: Option<Mark>,
    /// Tickets whose current status is not solved or closed.
    #[serde(default)]
    pub open_tickets: Vec<OpenTicket>,
    /// Invoices that have had a payment fail, by invoice id.
    #[serde(default)]
    pub failed_invoices: BTreeMap<String, FailedInvoice>,
    /// When each downgrade (a subscription's MRR going down) happened.
    #[serde(default)]
    pub downgrades: Vec<DateTime<Utc>>,
    /// When each subscription was cancelled.
    #[serde(default)]
    pub cancellations: Vec<DateTime<Utc>>,
    /// Due dates of the open tasks that have one.
    #[serde(default)]
    pub open_task_due: Vec<NaiveDate>,
    /// Subscriptions, by subscription id (or the event id of an event without one).
    #[serde(default)]
    pub subscriptions: BTreeMap<String, Subscription>,
}

/// What an account's calendar says at one moment: the end of the latest meeting with
/// the client that has been held, and the start of the next one. Unlike an
/// [`Insight`], these move with the clock (a scheduled meeting becomes a held one
/// without any event changing), so they are read from the timeline when asked — the
/// store keeps an index for it — rather than kept on write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meetings {
    /// When the latest meeting that has ended, ended.
    pub held: Option<DateTime<Utc>>,
    /// When the next meeting starts.
    pub next: Option<DateTime<Utc>>,
}

/// Whether events of `kind` are meetings that take place (scheduled or moved, not
/// called off): what counts as a held or next meeting.
pub fn is_meeting(kind: &str) -> bool {
    kind == EventKind::MEETING_SCHEDULED || kind == EventKind::MEETING_UPDATED
}

impl Meetings {
    /// The meetings among `events` as of `now` (what the store's index answers, for
    /// events in hand).
    pub fn of<'a>(events: impl IntoIterator<Item = Observed<'a>>, now: DateTime<Utc>) -> Meetings {
        let mut meetings = Meetings::default();
        for event in events.into_iter().filter(|event| is_meeting(event.kind)) {
            let end = match event.attributes.get("ends_at") {
                Some(AttributeValue::Timestamp(at)) => *at,
                _ => event.occurred_at,
            };
            if end <= now {
                meetings.held = meetings.held.max(Some(end));
            }
            if event.occurred_at > now && meetings.next.is_none_or(|next| event.occurred_at < next)
            {
                meetings.next = Some(event.occurred_at);
            }
        }
        meetings
    }
}

/// What removing an event did to an insight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Removal {
    /// The insight no longer counts the event.
    Done,
    /// The event held a "newest" fact: the insight must be rebuilt from the timeline.
    Recompute,
}

/// The account's revenue now, as the book shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Standing {
    /// MRR per currency (sorted by currency); empty without billing data.
    pub mrr: Vec<Mrr>,
    /// Plans of the live subscriptions, sorted.
    pub plans: Vec<String>,
    /// The soonest renewal among live subscriptions.
    pub renews_at: Option<DateTime<Utc>>,
    /// Live subscriptions.
    pub subscriptions: usize,
}

fn insert_sorted<T: Ord>(list: &mut Vec<T>, value: T) {
    let at = list.partition_point(|existing| *existing <= value);
    list.insert(at, value);
}

/// Removes one occurrence of `value`; whether there was one.
fn remove_one<T: Ord>(list: &mut Vec<T>, value: &T) -> bool {
    match list.binary_search(value) {
        Ok(at) => {
            list.remove(at);
            true
        }
        Err(_) => false,
    }
}

fn newest(slot: &mut Option<Mark>, mark: Mark) {
    if slot.is_none_or(|held| held < mark) {
        *slot = Some(mark);
    }
}

fn witnessed_by(slot: Option<Mark>, event: i64) -> bool {
    slot.is_some_and(|mark| mark.event == event)
}

/// Whether a ticket event's current status leaves it open.
fn ticket_open(event: &Observed<'_>) -> bool {
    !matches!(event.text("status"), Some("solved" | "closed"))
}

fn ticket_of(event: &Observed<'_>) -> OpenTicket {
    OpenTicket {
        at: event.occurred_at,
        pressing: matches!(event.text("priority"), Some("high" | "urgent")),
    }
}

fn is_downgrade(event: &Observed<'_>) -> bool {
    event.kind == EventKind::SUBSCRIPTION_UPDATED
        && match (event.money("mrr"), event.money("previous_mrr")) {
            (Some((now, currency)), Some((before, before_currency))) => {
                currency == before_currency && now < before
            }
            _ => false,
        }
}

/// An open task's due date, if it is open and has one that parses.
fn open_task_due(event: &Observed<'_>) -> Option<NaiveDate> {
    (event.text("status") == Some("open"))
        .then(|| event.text("due")?.parse::<NaiveDate>().ok())
        .flatten()
}

impl Insight {
    /// The insight of a whole timeline (any order; kinds it does not concern are
    /// skipped). Failed payments go first, so every payment finds its invoice.
    pub fn of<'a>(events: impl IntoIterator<Item = Observed<'a>>) -> Insight {
        let mut insight = Insight::default();
        let (failures, rest): (Vec<Observed<'a>>, Vec<Observed<'a>>) = events
            .into_iter()
            .partition(|event| event.kind == EventKind::INVOICE_PAYMENT_FAILED);
        for event in failures.iter().chain(&rest) {
            insight.add(event);
        }
        insight
    }

    /// Counts one event (a new event, or the new version of one removed first).
    pub fn add(&mut self, event: &Observed<'_>) {
        let mark = event.mark();
        match event.kind {
            kind if kind.starts_with("email.") => {
                newest(&mut self.contact, mark);
                match kind {
                    EventKind::EMAIL_RECEIVED => newest(&mut self.received, mark),
                    EventKind::EMAIL_SENT => newest(&mut self.sent, mark),
                    _ => {}
                }
            }
            EventKind::TICKET_CREATED if ticket_open(event) => {
                insert_sorted(&mut self.open_tickets, ticket_of(event));
            }
            EventKind::TASK_CREATED => {
                if let Some(due) = open_task_due(event) {
                    insert_sorted(&mut self.open_task_due, due);
                }
            }
            EventKind::INVOICE_PAYMENT_FAILED => {
                if let Some(invoice) = event.text("invoice_id") {
                    let entry = self.failed_invoices.entry(invoice.to_owned()).or_default();
                    newest(&mut entry.failed, mark);
                }
            }
            EventKind::INVOICE_PAID => {
                // A payment matters only to an invoice that has failed; one that is
                // paid before its failure is seen is handled by [`Insight::needs_rebuild`].
                if let Some(entry) = event
                    .text("invoice_id")
                    .and_then(|invoice| self.failed_invoices.get_mut(invoice))
                {
                    newest(&mut entry.paid, mark);
                }
            }
            _ => {}
        }
        if is_downgrade(event) {
            insert_sorted(&mut self.downgrades, event.occurred_at);
        }
        if event.kind == EventKind::SUBSCRIPTION_DELETED {
            insert_sorted(&mut self.cancellations, event.occurred_at);
        }
        if let Some(change) = SubscriptionChange::of(event.kind, event.id, event.attributes) {
            self.change_subscription(change, mark);
        }
    }

    fn change_subscription(&mut self, change: SubscriptionChange, mark: Mark) {
        let entry = self
            .subscriptions
            .entry(change.subscription)
            .or_insert(Subscription {
                last: mark,
                live: change.live,
                mrr: None,
                plan: None,
                renews_at: None,
            });
        if entry.last <= mark {
            entry.last = mark;
            entry.live = change.live;
        }
        if let Some(mrr) = change.mrr
            && entry.mrr.as_ref().is_none_or(|(held, _)| *held < mark)
        {
            entry.mrr = Some((mark, mrr));
        }
        if let Some(plan) = change.plan
            && entry.plan.as_ref().is_none_or(|(held, _)| *held < mark)
        {
            entry.plan = Some((mark, plan));
        }
        if let Some(renews_at) = change.renews_at
            && entry
                .renews_at
                .as_ref()
                .is_none_or(|(held, _)| *held < mark)
        {
            entry.renews_at = Some((mark, renews_at));
        }
    }

    /// Whether counting `event` needs the account's timeline read again: a payment of
    /// an invoice whose failure arrives later than the payment was counted. The
    /// payment was not kept (only failed invoices are), so the store rebuilds.
    pub fn needs_rebuild(&self, event: &Observed<'_>) -> bool {
        event.kind == EventKind::INVOICE_PAYMENT_FAILED
            && event
                .text("invoice_id")
                .is_some_and(|invoice| !self.failed_invoices.contains_key(invoice))
    }

    /// Takes back an event counted before (the old version of one being replaced, or
    /// one deleted or moved to another account).
    pub fn remove(&mut self, event: &Observed<'_>) -> Removal {
        let id = event.id.0;
        match event.kind {
            kind if kind.starts_with("email.")
                && (witnessed_by(self.contact, id)
                    || witnessed_by(self.received, id)
                    || witnessed_by(self.sent, id)) =>
            {
                return Removal::Recompute;
            }
            EventKind::TICKET_CREATED if ticket_open(event) => {
                let counted = remove_one(&mut self.open_tickets, &ticket_of(event));
                if !counted {
                    return Removal::Recompute;
                }
            }
            EventKind::TASK_CREATED => {
                if let Some(due) = open_task_due(event)
                    && !remove_one(&mut self.open_task_due, &due)
                {
                    return Removal::Recompute;
                }
            }
            EventKind::INVOICE_PAYMENT_FAILED | EventKind::INVOICE_PAID => {
                let witness = event
                    .text("invoice_id")
                    .and_then(|invoice| self.failed_invoices.get(invoice))
                    .is_some_and(|entry| {
                        witnessed_by(entry.failed, id) || witnessed_by(entry.paid, id)
                    });
                if witness {
                    return Removal::Recompute;
                }
            }
            _ => {}
        }
        if is_downgrade(event) && !remove_one(&mut self.downgrades, &event.occurred_at) {
            return Removal::Recompute;
        }
        if event.kind == EventKind::SUBSCRIPTION_DELETED
            && !remove_one(&mut self.cancellations, &event.occurred_at)
        {
            return Removal::Recompute;
        }
        if let Some(change) = SubscriptionChange::of(event.kind, event.id, event.attributes)
            && let Some(entry) = self.subscriptions.get(&change.subscription)
        {
            let witness = entry.last.event == id
                || entry.mrr.as_ref().is_some_and(|(mark, _)| mark.event == id)
                || entry
                    .plan
                    .as_ref()
                    .is_some_and(|(mark, _)| mark.event == id)
                || entry
                    .renews_at
                    .as_ref()
                    .is_some_and(|(mark, _)| mark.event == id);
            if witness {
                return Removal::Recompute;
            }
        }
        Removal::Done
    }

    /// When we were last in touch with the client: the newest mail either way, or the
    /// end of the latest meeting held with them, whichever is later.
    pub fn last_contact(&self, meetings: &Meetings) -> Option<DateTime<Utc>> {
        self.contact.map(|mark| mark.at).max(meetings.held)
    }

    /// Current revenue: the live subscriptions' MRR per currency, plans and soonest
    /// renewal.
    pub fn standing(&self) -> Standing {
        let live: Vec<&Subscription> = self.subscriptions.values().filter(|s| s.live).collect();
        let mut by_currency: BTreeMap<&str, i64> = BTreeMap::new();
        for (_, mrr) in live.iter().filter_map(|s| s.mrr.as_ref()) {
            // Saturating, as `revenue` sums.
            let total = by_currency.entry(mrr.currency.as_str()).or_default();
            *total = total.saturating_add(mrr.minor_units);
        }
        let mut plans: Vec<String> = live
            .iter()
            .filter_map(|s| s.plan.as_ref().map(|(_, plan)| plan.clone()))
            .collect();
        plans.sort();
        plans.dedup();
        Standing {
            mrr: by_currency
                .into_iter()
                .map(|(currency, minor_units)| Mrr {
                    currency: currency.to_owned(),
                    minor_units,
                })
                .collect(),
            plans,
            renews_at: live
                .iter()
                .filter_map(|s| s.renews_at.map(|(_, at)| at))
                .min(),
            subscriptions: live.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revenue::revenue;
    use crate::timeline::{Money, NewEvent};
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn event(id: i64, kind: &str, day: i64, attributes: Attributes) -> TimelineEvent {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + Duration::days(day);
        let mut event = NewEvent::new(
            "test",
            format!("e{id}"),
            EventKind::parse(kind).unwrap(),
            at,
            kind,
        );
        event.attributes = attributes;
        TimelineEvent {
            id: EventId(id),
            ingested_at: at,
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

    /// A small vocabulary, so events collide on invoices, subscriptions and times.
    fn arbitrary_event(id: i64) -> impl Strategy<Value = TimelineEvent> {
        let kinds = prop::sample::select(vec![
            "email.received",
            "email.sent",
            "support.ticket.created",
            "task.created",
            "billing.invoice.paid",
            "billing.invoice.payment_failed",
            "billing.subscription.created",
            "billing.subscription.updated",
            "billing.subscription.deleted",
            "note.added",
        ]);
        (
            kinds,
            0i64..6,
            prop::option::of(prop::sample::select(vec![
                "open", "solved", "done", "canceled",
            ])),
            prop::option::of(prop::sample::select(vec!["high", "normal"])),
            prop::option::of(0u8..3),
            prop::option::of((1_000i64..4_000, 1_000i64..4_000)),
            prop::option::of(prop::sample::select(vec!["Pro", "Team"])),
            prop::option::of(0i64..4),
        )
            .prop_map(move |(kind, day, status, priority, key, mrr, plan, due)| {
                let mut attributes = Attributes::new();
                if let Some(status) = status {
                    attributes.insert("status".into(), text(status));
                }
                if let Some(priority) = priority {
                    attributes.insert("priority".into(), text(priority));
                }
                if let Some(key) = key {
                    attributes.insert("invoice_id".into(), text(&format!("in_{key}")));
                    attributes.insert("subscription_id".into(), text(&format!("sub_{key}")));
                }
                if let Some((now, before)) = mrr {
                    let usd = |minor_units| {
                        AttributeValue::Money(Money {
                            minor_units,
                            currency: "USD".into(),
                        })
                    };
                    attributes.insert("mrr".into(), usd(now));
                    attributes.insert("previous_mrr".into(), usd(before));
                }
                if let Some(plan) = plan {
                    attributes.insert("plan".into(), text(plan));
                    attributes.insert(
                        "renews_at".into(),
                        AttributeValue::Timestamp(
                            Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()
                                + Duration::days(day),
                        ),
                    );
                }
                if let Some(due) = due {
                    attributes.insert("due".into(), text(&format!("2026-01-0{}", due + 1)));
                }
                event(id, kind, day, attributes)
            })
    }

    fn timeline() -> impl Strategy<Value = Vec<TimelineEvent>> {
        (0usize..24).prop_flat_map(|len| {
            (0..len)
                .map(|n| arbitrary_event(n as i64 + 1))
                .collect::<Vec<_>>()
        })
    }

    /// Folds `events` in, then takes back `removed` and puts `replaced` in their
    /// place, as the store does; a removal that asks for it rebuilds from what is left.
    fn kept(events: &[TimelineEvent], removed: &[usize], replaced: &[TimelineEvent]) -> Insight {
        let mut insight = Insight::default();
        let mut held: Vec<TimelineEvent> = Vec::new();
        for event in events {
            if insight.needs_rebuild(&event.into()) {
                held.push(event.clone());
                insight = Insight::of(held.iter().map(Observed::from));
            } else {
                insight.add(&event.into());
                held.push(event.clone());
            }
        }
        for (index, new) in removed.iter().zip(replaced) {
            let Some(position) = held.iter().position(|e| e.id.0 == *index as i64 + 1) else {
                continue;
            };
            let old = held.remove(position);
            let mut new = new.clone();
            new.id = old.id;
            held.push(new.clone());
            match insight.remove(&(&old).into()) {
                Removal::Recompute => insight = Insight::of(held.iter().map(Observed::from)),
                Removal::Done if insight.needs_rebuild(&(&new).into()) => {
                    insight = Insight::of(held.iter().map(Observed::from));
                }
                Removal::Done => insight.add(&(&new).into()),
            }
        }
        insight
    }

    proptest! {
        /// Kept event by event, with replacements, the insight equals the one folded
        /// from the final timeline at once, in any order.
        #[test]
        fn kept_equals_recomputed(
            events in timeline(),
            removed in prop::collection::vec(0usize..24, 0..6),
            replaced in prop::collection::vec(arbitrary_event(0), 6),
        ) {
            let insight = kept(&events, &removed, &replaced);
            let mut final_timeline: Vec<TimelineEvent> = events.clone();
            for (index, new) in removed.iter().zip(&replaced) {
                if let Some(slot) = final_timeline.iter_mut().find(|e| e.id.0 == *index as i64 + 1) {
                    let id = slot.id;
                    *slot = new.clone();
                    slot.id = id;
                }
            }
            final_timeline.reverse();
            prop_assert_eq!(&insight, &Insight::of(final_timeline.iter().map(Observed::from)));
        }

        /// The standing is the current part of `revenue`.
        #[test]
        fn standing_is_current_revenue(events in timeline()) {
            let revenue = revenue(&events);
            let standing = Insight::of(events.iter().map(Observed::from)).standing();
            prop_assert_eq!(standing.mrr, revenue.mrr);
            prop_assert_eq!(standing.plans, revenue.plans);
            prop_assert_eq!(standing.renews_at, revenue.renews_at);
            prop_assert_eq!(standing.subscriptions, revenue.subscriptions);
        }
    }

    #[test]
    fn only_the_kinds_it_reads_concern_it() {
        assert!(concerns("email.received"));
        assert!(concerns("billing.invoice.paid"));
        assert!(concerns("support.ticket.created"));
        assert!(!concerns("support.ticket.updated"));
        assert!(!concerns("emailer.sent"));
        assert!(!concerns("note.added"));
    }
}
