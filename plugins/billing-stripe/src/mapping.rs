//! Stripe events → timeline events. Pure: no I/O, so every rule here is unit-tested
//! against the fixture objects.
//!
//! Each Stripe event becomes at most one timeline event with the same id (`evt_…`), so a
//! delivery by webhook and the same event read from `/v1/events` store once.

use rapport_pdk::prelude::*;
use rapport_pdk::{Event, Money};
use serde::Deserialize;
use serde_json::Value;

/// The Stripe event types this connector maps, and the timeline kind each becomes.
pub const MAPPED_TYPES: &[(&str, &str)] = &[
    ("invoice.paid", "billing.invoice.paid"),
    ("invoice.payment_failed", "billing.invoice.payment_failed"),
    ("invoice.finalized", "billing.invoice.finalized"),
    (
        "customer.subscription.created",
        "billing.subscription.created",
    ),
    (
        "customer.subscription.updated",
        "billing.subscription.updated",
    ),
    (
        "customer.subscription.deleted",
        "billing.subscription.deleted",
    ),
    ("charge.refunded", "billing.charge.refunded"),
    ("customer.created", "billing.customer.created"),
    ("customer.updated", "billing.customer.updated"),
];

/// The system name of Stripe ids in account hints (`stripe:cus_123`).
pub const SYSTEM: &str = "stripe";

/// An event as `/v1/events` and webhooks deliver it.
#[derive(Debug, Deserialize)]
pub struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    #[serde(default)]
    pub livemode: bool,
    pub data: EventData,
}

#[derive(Debug, Deserialize)]
pub struct EventData {
    pub object: Value,
    /// The fields an `*.updated` event changed, with their values before the change.
    #[serde(default)]
    pub previous_attributes: Option<Value>,
}

/// A page of `/v1/events`.
#[derive(Debug, Deserialize)]
pub struct EventList {
    pub data: Vec<StripeEvent>,
    pub has_more: bool,
}

/// A reference that Stripe sends as an id or, when expanded, as the object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Expandable {
    Id(String),
    Object { id: String },
}

impl Expandable {
    fn id(&self) -> &str {
        match self {
            Expandable::Id(id) | Expandable::Object { id } => id,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Invoice {
    id: String,
    number: Option<String>,
    customer: Option<Expandable>,
    customer_email: Option<String>,
    customer_name: Option<String>,
    currency: String,
    #[serde(default)]
    amount_due: i64,
    #[serde(default)]
    amount_paid: i64,
    #[serde(default)]
    amount_remaining: i64,
    status: Option<String>,
    due_date: Option<i64>,
    #[serde(default)]
    attempt_count: i64,
    next_payment_attempt: Option<i64>,
    billing_reason: Option<String>,
    hosted_invoice_url: Option<String>,
    /// Before API version 2025-03-31.
    subscription: Option<Expandable>,
    /// From API version 2025-03-31 on.
    parent: Option<InvoiceParent>,
}

#[derive(Debug, Deserialize)]
struct InvoiceParent {
    subscription_details: Option<SubscriptionDetails>,
}

#[derive(Debug, Deserialize)]
struct SubscriptionDetails {
    subscription: Option<Expandable>,
}

#[derive(Debug, Deserialize)]
struct Subscription {
    id: String,
    customer: Option<Expandable>,
    status: String,
    items: Option<ItemList>,
    #[serde(default)]
    cancel_at_period_end: bool,
    canceled_at: Option<i64>,
    trial_end: Option<i64>,
    /// Before API version 2025-03-31; later versions carry it per item.
    current_period_end: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct ItemList {
    data: Vec<SubscriptionItem>,
}

#[derive(Debug, Deserialize)]
struct SubscriptionItem {
    price: Option<Price>,
    quantity: Option<i64>,
    current_period_end: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct Price {
    id: String,
    nickname: Option<String>,
    currency: String,
    unit_amount: Option<i64>,
    recurring: Option<Recurring>,
}

#[derive(Debug, Deserialize)]
struct Recurring {
    interval: String,
    #[serde(default = "one")]
    interval_count: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Deserialize)]
struct Charge {
    id: String,
    customer: Option<Expandable>,
    currency: String,
    amount: i64,
    #[serde(default)]
    amount_refunded: i64,
    receipt_email: Option<String>,
    billing_details: Option<BillingDetails>,
    refunds: Option<RefundList>,
}

#[derive(Debug, Deserialize)]
struct BillingDetails {
    email: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RefundList {
    data: Vec<Refund>,
}

#[derive(Debug, Deserialize)]
struct Refund {
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Customer {
    id: String,
    name: Option<String>,
    email: Option<String>,
}

/// The timeline kind a Stripe event type maps to, if this connector maps it.
pub fn kind_of(stripe_type: &str) -> Option<&'static str> {
    MAPPED_TYPES
        .iter()
        .find(|(stripe, _)| *stripe == stripe_type)
        .map(|(_, kind)| *kind)
}

/// Maps one Stripe event; `Ok(None)` for a type this connector does not map. An event
/// of a mapped type whose object does not have the expected shape is an error naming
/// it, so it is never dropped silently.
pub fn to_event(event: &StripeEvent) -> Result<Option<Event>, ConnectorError> {
    let Some(kind) = kind_of(&event.kind) else {
        return Ok(None);
    };
    let mapped = match event.kind.split('.').next() {
        Some("invoice") => invoice_event(event, kind),
        Some("charge") => charge_event(event, kind),
        _ if event.kind.starts_with("customer.subscription.") => subscription_event(event, kind),
        _ => customer_event(event, kind),
    };
    mapped.map(Some).map_err(|error| {
        ConnectorError::Fatal(format!(
            "Stripe event {} ({}) does not have the expected shape: {error}",
            event.id, event.kind
        ))
    })
}

fn object<T: serde::de::DeserializeOwned>(event: &StripeEvent) -> Result<T, serde_json::Error> {
    T::deserialize(&event.data.object)
}

fn base(event: &StripeEvent, kind: &str, title: &str) -> Event {
    rapport_pdk::event(
        &event.id,
        kind,
        time::from_unix_seconds(event.created),
        title,
    )
}

fn dashboard(event: &StripeEvent, path: &str) -> String {
    let mode = if event.livemode { "" } else { "test/" };
    format!("https://dashboard.stripe.com/{mode}{path}")
}

fn with_customer(mut out: Event, customer: Option<&Expandable>, email: Option<&str>) -> Event {
    if let Some(customer) = customer {
        out = out
            .external_id(SYSTEM, customer.id())
            .text("customer_id", customer.id());
    }
    if let Some(email) = email.filter(|email| email.contains('@')) {
        out = out.email(email);
    }
    out
}

fn invoice_event(event: &StripeEvent, kind: &str) -> Result<Event, serde_json::Error> {
    let invoice: Invoice = object(event)?;
    let currency = invoice.currency.to_ascii_uppercase();
    let name = invoice.number.as_deref().unwrap_or(&invoice.id);
    let due = money(invoice.amount_due, &currency);
    let (title, summary) = match event.kind.as_str() {
        "invoice.paid" => (
            format!(
                "Invoice {name} paid: {}",
                money(invoice.amount_paid, &currency)
            ),
            format!(
                "Stripe received {} for invoice {name}.",
                money(invoice.amount_paid, &currency)
            ),
        ),
        "invoice.payment_failed" => {
            let next = invoice
                .next_payment_attempt
                .map(|at| format!(" Stripe retries on {}.", date(at)))
                .unwrap_or_else(|| " Stripe will not retry automatically.".into());
            (
                format!("Payment failed for invoice {name}: {due} due"),
                format!(
                    "Attempt {} to collect {due} failed.{next}",
                    invoice.attempt_count
                ),
            )
        }
        _ => {
            let by = invoice
                .due_date
                .map(|at| format!(", due {}", date(at)))
                .unwrap_or_default();
            (
                format!("Invoice {name} issued: {due}{by}"),
                format!("Invoice {name} for {due} was finalized{by}."),
            )
        }
    };
    let subscription = invoice.subscription.as_ref().or_else(|| {
        invoice
            .parent
            .as_ref()
            .and_then(|parent| parent.subscription_details.as_ref())
            .and_then(|details| details.subscription.as_ref())
    });
    let mut out = base(event, kind, &title)
        .summary(&summary)
        .url(&dashboard(event, &format!("invoices/{}", invoice.id)))
        .text("invoice_id", &invoice.id)
        .money("amount_due", invoice.amount_due, &currency)
        .money("amount_paid", invoice.amount_paid, &currency)
        .money("amount_remaining", invoice.amount_remaining, &currency)
        .attribute(
            "attempt_count",
            AttributeValue::Integer(invoice.attempt_count),
        );
    for (name, value) in [
        ("invoice_number", invoice.number.as_deref()),
        ("status", invoice.status.as_deref()),
        ("billing_reason", invoice.billing_reason.as_deref()),
        ("customer_name", invoice.customer_name.as_deref()),
        ("hosted_invoice_url", invoice.hosted_invoice_url.as_deref()),
        ("subscription_id", subscription.map(Expandable::id)),
    ] {
        if let Some(value) = value {
            out = out.text(name, value);
        }
    }
    if let Some(due_date) = invoice.due_date {
        out = out.attribute(
            "due_at",
            AttributeValue::Timestamp(time::from_unix_seconds(due_date)),
        );
    }
    Ok(with_customer(
        out,
        invoice.customer.as_ref(),
        invoice.customer_email.as_deref(),
    ))
}

/// What a subscription's items add up to per month, if every item has a per-unit
/// recurring price in the subscription's one currency.
fn monthly_recurring(items: &[SubscriptionItem]) -> Option<Money> {
    let currency = items.first()?.price.as_ref()?.currency.to_ascii_uppercase();
    let mut total: i128 = 0;
    for item in items {
        let price = item.price.as_ref()?;
        if !price.currency.eq_ignore_ascii_case(&currency) {
            return None;
        }
        let recurring = price.recurring.as_ref()?;
        let per_period = i128::from(price.unit_amount?) * i128::from(item.quantity.unwrap_or(1));
        // Per month = per period × periods per year / 12, divided by the period's count.
        let periods_per_year: i128 = match recurring.interval.as_str() {
            "day" => 365,
            "week" => 52,
            "month" => 12,
            "year" => 1,
            _ => return None,
        };
        let count = i128::from(recurring.interval_count.max(1));
        total += per_period * periods_per_year / (12 * count);
    }
    Some(Money {
        minor_units: i64::try_from(total).ok()?,
        currency,
    })
}

fn plan_name(items: &[SubscriptionItem]) -> Option<String> {
    let names: Vec<String> = items
        .iter()
        .filter_map(|item| item.price.as_ref())
        .map(|price| price.nickname.clone().unwrap_or_else(|| price.id.clone()))
        .collect();
    (!names.is_empty()).then(|| names.join(" + "))
}

fn subscription_event(event: &StripeEvent, kind: &str) -> Result<Event, serde_json::Error> {
    let subscription: Subscription = object(event)?;
    let items = subscription
        .items
        .as_ref()
        .map(|list| list.data.as_slice())
        .unwrap_or_default();
    let plan = plan_name(items);
    let mrr = monthly_recurring(items);
    let previous = event.data.previous_attributes.as_ref();
    let previous_status = previous
        .and_then(|attributes| attributes.get("status"))
        .and_then(Value::as_str);
    let previous_items: Option<Vec<SubscriptionItem>> = previous
        .and_then(|attributes| attributes.get("items"))
        .and_then(|items| ItemList::deserialize(items).ok())
        .map(|list| list.data);
    let previous_plan = previous_items.as_deref().and_then(plan_name);
    let previous_mrr = previous_items.as_deref().and_then(monthly_recurring);
    let plan_text = plan.as_deref().unwrap_or("subscription");
    let mrr_text = mrr
        .as_ref()
        .map(|mrr| format!(" at {}/month", money(mrr.minor_units, &mrr.currency)))
        .unwrap_or_default();

    let (title, summary) = match event.kind.as_str() {
        "customer.subscription.created" => (
            format!("Subscription started: {plan_text}{mrr_text}"),
            format!(
                "New {plan_text} subscription, status {}.",
                subscription.status
            ),
        ),
        "customer.subscription.deleted" => (
            format!("Subscription canceled: {plan_text}"),
            format!(
                "The {plan_text} subscription ended{}.",
                mrr.as_ref()
                    .map(|mrr| format!(
                        ", removing {}/month",
                        money(mrr.minor_units, &mrr.currency)
                    ))
                    .unwrap_or_default()
            ),
        ),
        _ => {
            let mut changes = Vec::new();
            if let Some(before) = previous_status {
                changes.push(format!("status {before} → {}", subscription.status));
            }
            if let (Some(before), Some(after)) = (&previous_plan, &plan)
                && before != after
            {
                changes.push(format!("plan {before} → {after}"));
            }
            if let (Some(before), Some(after)) = (&previous_mrr, &mrr)
                && (before.minor_units, &before.currency) != (after.minor_units, &after.currency)
            {
                changes.push(format!(
                    "MRR {} → {}",
                    money(before.minor_units, &before.currency),
                    money(after.minor_units, &after.currency)
                ));
            }
            let cancel_flag_changed = previous
                .and_then(|attributes| attributes.get("cancel_at_period_end"))
                .is_some();
            if cancel_flag_changed {
                changes.push(if subscription.cancel_at_period_end {
                    "set to cancel at period end".into()
                } else {
                    "no longer set to cancel".into()
                });
            }
            let title = if changes.is_empty() {
                format!("Subscription updated: {plan_text}")
            } else {
                format!("Subscription changed: {}", changes.join("; "))
            };
            (
                title,
                format!("The {plan_text} subscription is {}.", subscription.status),
            )
        }
    };

    let mut out = base(event, kind, &title)
        .summary(&summary)
        .url(&dashboard(
            event,
            &format!("subscriptions/{}", subscription.id),
        ))
        .text("subscription_id", &subscription.id)
        .text("status", &subscription.status)
        .attribute(
            "cancel_at_period_end",
            AttributeValue::Boolean(subscription.cancel_at_period_end),
        )
        .attribute(
            "quantity",
            AttributeValue::Integer(items.iter().map(|item| item.quantity.unwrap_or(1)).sum()),
        );
    if let Some(before) = previous_status {
        out = out.text("previous_status", before);
    }
    if let Some(plan) = &plan {
        out = out.text("plan", plan);
    }
    if let Some(plan) = &previous_plan {
        out = out.text("previous_plan", plan);
    }
    // A deleted subscription contributes nothing from now on.
    let current_mrr = match event.kind.as_str() {
        "customer.subscription.deleted" => mrr.as_ref().map(|mrr| Money {
            minor_units: 0,
            currency: mrr.currency.clone(),
        }),
        _ => mrr.clone(),
    };
    if let Some(mrr) = current_mrr {
        out = out.money("mrr", mrr.minor_units, &mrr.currency);
    }
    if let Some(before) = previous_mrr.or_else(|| {
        (event.kind == "customer.subscription.deleted")
            .then_some(mrr)
            .flatten()
    }) {
        out = out.money("previous_mrr", before.minor_units, &before.currency);
    }
    let renews_at = subscription.current_period_end.or_else(|| {
        items
            .iter()
            .filter_map(|item| item.current_period_end)
            .max()
    });
    for (name, at) in [
        ("renews_at", renews_at),
        ("canceled_at", subscription.canceled_at),
        ("trial_ends_at", subscription.trial_end),
    ] {
        if let Some(at) = at {
            out = out.attribute(name, AttributeValue::Timestamp(time::from_unix_seconds(at)));
        }
    }
    Ok(with_customer(out, subscription.customer.as_ref(), None))
}

fn charge_event(event: &StripeEvent, kind: &str) -> Result<Event, serde_json::Error> {
    let charge: Charge = object(event)?;
    let currency = charge.currency.to_ascii_uppercase();
    let refunded = money(charge.amount_refunded, &currency);
    let whole = if charge.amount_refunded >= charge.amount {
        "in full".to_owned()
    } else {
        format!("of {}", money(charge.amount, &currency))
    };
    let reason = charge
        .refunds
        .as_ref()
        .and_then(|refunds| refunds.data.iter().find_map(|refund| refund.reason.clone()));
    let summary = match &reason {
        Some(reason) => format!("Charge {} refunded {whole}; reason: {reason}.", charge.id),
        None => format!("Charge {} refunded {whole}.", charge.id),
    };
    let mut out = base(event, kind, &format!("Refunded {refunded} {whole}"))
        .summary(&summary)
        .url(&dashboard(event, &format!("payments/{}", charge.id)))
        .text("charge_id", &charge.id)
        .money("amount", charge.amount, &currency)
        .money("amount_refunded", charge.amount_refunded, &currency);
    if let Some(reason) = &reason {
        out = out.text("refund_reason", reason);
    }
    let email = charge.receipt_email.as_deref().or_else(|| {
        charge
            .billing_details
            .as_ref()
            .and_then(|details| details.email.as_deref())
    });
    Ok(with_customer(out, charge.customer.as_ref(), email))
}

fn customer_event(event: &StripeEvent, kind: &str) -> Result<Event, serde_json::Error> {
    let customer: Customer = object(event)?;
    let who = customer
        .name
        .as_deref()
        .or(customer.email.as_deref())
        .unwrap_or(&customer.id);
    let (title, summary) = if event.kind == "customer.created" {
        (
            format!("Stripe customer created: {who}"),
            format!("Customer {} was created in Stripe.", customer.id),
        )
    } else {
        let mut fields: Vec<&str> = event
            .data
            .previous_attributes
            .as_ref()
            .and_then(Value::as_object)
            .map(|changed| changed.keys().map(String::as_str).collect())
            .unwrap_or_default();
        fields.sort_unstable();
        let changed = if fields.is_empty() {
            "details".to_owned()
        } else {
            fields.join(", ")
        };
        (
            format!("Stripe customer updated: {who}"),
            format!("Changed: {changed}."),
        )
    };
    let mut out = base(event, kind, &title)
        .summary(&summary)
        .url(&dashboard(event, &format!("customers/{}", customer.id)));
    if let Some(name) = &customer.name {
        out = out.text("customer_name", name);
    }
    let id = Expandable::Id(customer.id.clone());
    Ok(with_customer(out, Some(&id), customer.email.as_deref()))
}

/// Currencies whose minor unit is the whole unit (Stripe's zero-decimal list).
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// `$20.00`, `€5.10`, `¥500`, `12.00 CHF`.
pub fn money(minor_units: i64, currency: &str) -> String {
    let currency = currency.to_ascii_uppercase();
    let sign = if minor_units < 0 { "-" } else { "" };
    let amount = minor_units.unsigned_abs();
    let number = if ZERO_DECIMAL.contains(&currency.as_str()) {
        amount.to_string()
    } else {
        format!("{}.{:02}", amount / 100, amount % 100)
    };
    match currency.as_str() {
        "USD" => format!("{sign}${number}"),
        "EUR" => format!("{sign}€{number}"),
        "GBP" => format!("{sign}£{number}"),
        "JPY" => format!("{sign}¥{number}"),
        _ => format!("{sign}{number} {currency}"),
    }
}

/// `2026-03-01` for Unix seconds.
fn date(seconds: i64) -> String {
    time::date(time::from_unix_seconds(seconds))
}

#[cfg(test)]
mod tests;
