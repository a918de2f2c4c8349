//! The mapping, over Stripe's own example objects (`tests/fixtures/stripe`), with only
//! the fields each case is about changed.

use super::*;
use serde_json::json;

const OBJECTS: &str = include_str!("../../../../tests/fixtures/stripe/objects.json");

fn fixture(resource: &str) -> Value {
    let objects: Value = serde_json::from_str(OBJECTS).unwrap();
    objects["resources"][resource].clone()
}

/// Stripe's example event, carrying `object` as the given type.
fn stripe_event(kind: &str, object: Value, previous: Option<Value>) -> StripeEvent {
    let mut event = fixture("event");
    event["type"] = json!(kind);
    event["data"]["object"] = object;
    if let Some(previous) = previous {
        event["data"]["previous_attributes"] = previous;
    }
    serde_json::from_value(event).unwrap()
}

fn mapped(event: &StripeEvent) -> Event {
    to_event(event).unwrap().expect("a mapped type")
}

fn attribute<'e>(event: &'e Event, name: &str) -> Option<&'e AttributeValue> {
    event
        .attributes
        .iter()
        .find(|attribute| attribute.name == name)
        .map(|attribute| &attribute.value)
}

fn money_attribute(event: &Event, name: &str) -> (i64, String) {
    match attribute(event, name) {
        Some(AttributeValue::Money(money)) => (money.minor_units, money.currency.clone()),
        other => panic!("{name}: expected money, got {other:?}"),
    }
}

fn text_attribute<'e>(event: &'e Event, name: &str) -> &'e str {
    match attribute(event, name) {
        Some(AttributeValue::Text(text)) => text,
        other => panic!("{name}: expected text, got {other:?}"),
    }
}

#[test]
fn every_mapped_kind_is_a_valid_dotted_kind() {
    for (_, kind) in MAPPED_TYPES {
        assert!(kind.starts_with("billing."));
        assert!(
            kind.split('.').all(|part| !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }
}

#[test]
fn a_paid_invoice_carries_amounts_customer_and_link() {
    let mut invoice = fixture("invoice");
    invoice["number"] = json!("ACME-0042");
    invoice["amount_paid"] = json!(1000);
    invoice["amount_remaining"] = json!(0);
    invoice["status"] = json!("paid");
    invoice["customer_email"] = json!("billing@acme.example");
    let event = mapped(&stripe_event("invoice.paid", invoice, None));

    assert_eq!(event.source_id, "evt_1Pgc76B7WZ01zgkWwyRHS12y");
    assert_eq!(event.kind, "billing.invoice.paid");
    assert_eq!(event.occurred_at, 1_234_567_890_000_000);
    assert_eq!(event.title, "Invoice ACME-0042 paid: $10.00");
    assert_eq!(
        event.url.as_deref(),
        Some("https://dashboard.stripe.com/test/invoices/in_1Pgc6tB7WZ01zgkWu9fdqL6I")
    );
    assert_eq!(money_attribute(&event, "amount_paid"), (1000, "USD".into()));
    assert_eq!(money_attribute(&event, "amount_due"), (1000, "USD".into()));
    assert_eq!(text_attribute(&event, "status"), "paid");
    // The API's newer `parent.subscription_details` is read.
    assert_eq!(text_attribute(&event, "subscription_id"), "subscription");
    assert_eq!(event.hints.external_ids.len(), 1);
    assert_eq!(event.hints.external_ids[0].system, "stripe");
    assert_eq!(event.hints.external_ids[0].id, "cus_QXg1o8vcGmoR32");
    assert_eq!(event.hints.emails, vec!["billing@acme.example".to_owned()]);
}

#[test]
fn a_failed_payment_says_when_stripe_retries() {
    let mut invoice = fixture("invoice");
    invoice["attempt_count"] = json!(2);
    let event = mapped(&stripe_event(
        "invoice.payment_failed",
        invoice.clone(),
        None,
    ));
    assert_eq!(event.kind, "billing.invoice.payment_failed");
    assert_eq!(
        event.title,
        "Payment failed for invoice in_1Pgc6tB7WZ01zgkWu9fdqL6I: $10.00 due"
    );
    assert_eq!(
        event.summary,
        "Attempt 2 to collect $10.00 failed. Stripe retries on 2009-02-13."
    );

    invoice["next_payment_attempt"] = Value::Null;
    let event = mapped(&stripe_event("invoice.payment_failed", invoice, None));
    assert!(event.summary.ends_with("will not retry automatically."));
}

#[test]
fn a_finalized_invoice_names_its_due_date() {
    let event = mapped(&stripe_event("invoice.finalized", fixture("invoice"), None));
    assert_eq!(event.kind, "billing.invoice.finalized");
    assert!(
        event.title.ends_with("$10.00, due 2009-02-13"),
        "{}",
        event.title
    );
    assert!(matches!(
        attribute(&event, "due_at"),
        Some(AttributeValue::Timestamp(1_234_567_890_000_000))
    ));
}

#[test]
fn a_new_subscription_has_plan_mrr_and_renewal() {
    let event = mapped(&stripe_event(
        "customer.subscription.created",
        fixture("subscription"),
        None,
    ));
    assert_eq!(event.kind, "billing.subscription.created");
    assert_eq!(
        event.title,
        "Subscription started: price_1PgafmB7WZ01zgkW6dKueIc5 at $20.00/month"
    );
    assert_eq!(money_attribute(&event, "mrr"), (2000, "USD".into()));
    assert_eq!(text_attribute(&event, "status"), "active");
    // Newer API versions carry the period end per item.
    assert!(matches!(
        attribute(&event, "renews_at"),
        Some(AttributeValue::Timestamp(976_287_773_000_000))
    ));
    assert!(matches!(
        attribute(&event, "cancel_at_period_end"),
        Some(AttributeValue::Boolean(true))
    ));
    assert_eq!(event.hints.external_ids[0].id, "cus_QXg1o8vcGmoR32");
}

#[test]
fn mrr_normalises_intervals_and_quantities() {
    let mut subscription = fixture("subscription");
    let item = subscription["items"]["data"][0].clone();
    let with = |amount: i64, interval: &str, count: i64, quantity: i64| {
        let mut item = item.clone();
        item["price"]["unit_amount"] = json!(amount);
        item["price"]["recurring"]["interval"] = json!(interval);
        item["price"]["recurring"]["interval_count"] = json!(count);
        item["quantity"] = json!(quantity);
        item
    };
    subscription["items"]["data"] = json!([
        with(120_000, "year", 1, 1), // 100.00 a month
        with(3_000, "month", 3, 2),  // 20.00 a month
        with(1_000, "week", 1, 3),   // 130.00 a month
    ]);
    let event = mapped(&stripe_event(
        "customer.subscription.created",
        subscription.clone(),
        None,
    ));
    assert_eq!(money_attribute(&event, "mrr"), (25_000, "USD".into()));

    // Currencies are never mixed: no MRR rather than a wrong one.
    subscription["items"]["data"][1]["price"]["currency"] = json!("eur");
    let event = mapped(&stripe_event(
        "customer.subscription.created",
        subscription,
        None,
    ));
    assert!(attribute(&event, "mrr").is_none());
}

#[test]
fn an_update_describes_status_plan_and_mrr_transitions() {
    let mut subscription = fixture("subscription");
    subscription["items"]["data"][0]["price"]["nickname"] = json!("Pro");
    let mut before = subscription["items"].clone();
    before["data"][0]["price"]["nickname"] = json!("Basic");
    before["data"][0]["price"]["unit_amount"] = json!(1000);
    let event = mapped(&stripe_event(
        "customer.subscription.updated",
        subscription,
        Some(json!({ "status": "past_due", "items": before })),
    ));
    assert_eq!(event.kind, "billing.subscription.updated");
    assert_eq!(
        event.title,
        "Subscription changed: status past_due → active; plan Basic → Pro; MRR $10.00 → $20.00"
    );
    assert_eq!(text_attribute(&event, "previous_status"), "past_due");
    assert_eq!(text_attribute(&event, "previous_plan"), "Basic");
    assert_eq!(
        money_attribute(&event, "previous_mrr"),
        (1000, "USD".into())
    );
    assert_eq!(money_attribute(&event, "mrr"), (2000, "USD".into()));
}

#[test]
fn a_cancellation_takes_mrr_to_zero() {
    let event = mapped(&stripe_event(
        "customer.subscription.deleted",
        fixture("subscription"),
        None,
    ));
    assert_eq!(event.kind, "billing.subscription.deleted");
    assert_eq!(money_attribute(&event, "mrr"), (0, "USD".into()));
    assert_eq!(
        money_attribute(&event, "previous_mrr"),
        (2000, "USD".into())
    );
    assert!(event.summary.contains("removing $20.00/month"));
}

#[test]
fn a_refund_says_how_much_and_why() {
    let mut charge = fixture("charge");
    charge["amount"] = json!(5000);
    charge["amount_refunded"] = json!(2000);
    charge["customer"] = json!("cus_123");
    charge["billing_details"]["email"] = json!("ap@globex.example");
    charge["refunds"]["data"] = json!([{ "reason": "requested_by_customer" }]);
    let event = mapped(&stripe_event("charge.refunded", charge, None));
    assert_eq!(event.kind, "billing.charge.refunded");
    assert_eq!(event.title, "Refunded $20.00 of $50.00");
    assert_eq!(
        text_attribute(&event, "refund_reason"),
        "requested_by_customer"
    );
    assert_eq!(event.hints.external_ids[0].id, "cus_123");
    assert_eq!(event.hints.emails, vec!["ap@globex.example".to_owned()]);
}

#[test]
fn customer_updates_list_changed_fields() {
    let mut customer = fixture("customer");
    customer["name"] = json!("Acme Corp");
    customer["email"] = json!("ops@acme.example");
    let event = mapped(&stripe_event(
        "customer.updated",
        customer,
        Some(json!({ "email": "old@acme.example", "address": null })),
    ));
    assert_eq!(event.title, "Stripe customer updated: Acme Corp");
    assert_eq!(event.summary, "Changed: address, email.");
    assert_eq!(event.hints.external_ids[0].id, "cus_QXg1o8vcGmoR32");
    assert_eq!(event.hints.emails, vec!["ops@acme.example".to_owned()]);
}

#[test]
fn unmapped_types_are_skipped_and_bad_shapes_are_named() {
    // The fixture event itself is a `plan.created`.
    let event: StripeEvent = serde_json::from_value(fixture("event")).unwrap();
    assert!(to_event(&event).unwrap().is_none());

    let broken = stripe_event("invoice.paid", json!({ "id": 7 }), None);
    match to_event(&broken) {
        Err(ConnectorError::Fatal(message)) => {
            assert!(
                message.contains("evt_1Pgc76B7WZ01zgkWwyRHS12y"),
                "{message}"
            );
            assert!(message.contains("invoice.paid"), "{message}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

#[test]
fn money_formats_by_currency() {
    assert_eq!(money(2000, "usd"), "$20.00");
    assert_eq!(money(510, "EUR"), "€5.10");
    assert_eq!(money(500, "jpy"), "¥500");
    assert_eq!(money(1200, "chf"), "12.00 CHF");
    assert_eq!(money(-5, "gbp"), "-£0.05");
}
