//! billing-stripe through the real host against a fake Stripe serving the fixture
//! objects: paging, resuming, errors, and webhook signatures.

use crate::connectors::support::*;
use rapport_core::timeline::{AttributeValue, Money};
use rapport_plugin_host::{Connector, ConnectorError, PluginHost};
use rapport_testkit::stripe::{self as fake, FakeStripe};
use rapport_testkit::upstream::Reply;
use serde_json::json;
use std::collections::BTreeSet;

const KEY: &str = "rk_test_rapport";
const SECRET: &str = "whsec_current";

async fn stripe(host: &PluginHost, upstream: &FakeStripe, page_size: &str) -> Connector {
    connector(
        host,
        rapport_testkit::BILLING_STRIPE,
        "stripe",
        &upstream.upstream.grant(),
        &[
            ("base_url", &upstream.upstream.url()),
            ("page_size", page_size),
        ],
        &[
            ("api_key", KEY),
            ("webhook_secret", &format!("whsec_old, {SECRET}")),
        ],
    )
    .await
}

/// Seven mapped events for two customers over a week, plus one type the connector
/// does not ask for.
fn seed(upstream: &FakeStripe) -> Vec<String> {
    let day = 86_400;
    let start = 1_760_000_000;
    vec![
        upstream.push(
            "customer.subscription.created",
            start,
            fake::subscription("sub_a", "cus_acme", "Pro", 5_000),
            None,
        ),
        upstream.push(
            "invoice.finalized",
            start + day,
            fake::invoice("in_1", "cus_acme", "ACME-1", 5_000, Some("ap@acme.example")),
            None,
        ),
        upstream.push(
            "invoice.paid",
            start + 2 * day,
            fake::invoice("in_1", "cus_acme", "ACME-1", 5_000, Some("ap@acme.example")),
            None,
        ),
        upstream.push(
            "customer.subscription.created",
            start + 2 * day,
            fake::subscription("sub_g", "cus_globex", "Basic", 1_000),
            None,
        ),
        upstream.push(
            "invoice.payment_failed",
            start + 3 * day,
            fake::invoice("in_2", "cus_globex", "GLOBEX-1", 1_000, None),
            None,
        ),
        upstream.push(
            "customer.subscription.updated",
            start + 4 * day,
            fake::subscription("sub_a", "cus_acme", "Enterprise", 20_000),
            Some(json!({ "status": "trialing", "items": { "data": [
                fake::subscription("sub_a", "cus_acme", "Pro", 5_000)["items"]["data"][0]
            ] } })),
        ),
        upstream.push(
            "charge.refunded",
            start + 5 * day,
            fake::refunded_charge("ch_1", "cus_globex", 1_000, 1_000),
            None,
        ),
        upstream.push("plan.created", start + 6 * day, fake::fixture("plan"), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_back_through_events_then_resumes_from_the_newest() {
    let upstream = FakeStripe::start(KEY).await;
    let ids = seed(&upstream);
    let host = host();
    let stripe = stripe(&host, &upstream, "3").await;

    let pages = sync_all(&stripe, None).await;
    // Seven mapped events, three per page; `plan.created` is never asked for.
    assert_eq!(pages.len(), 3);
    let events: Vec<_> = pages.iter().flat_map(|page| &page.events).collect();
    let got: BTreeSet<&str> = events.iter().map(|e| e.key.source_id.as_str()).collect();
    let expected: BTreeSet<&str> = ids[..7].iter().map(String::as_str).collect();
    assert_eq!(got, expected);
    assert_eq!(events.len(), 7, "no event twice within a pass");

    let requests = upstream.upstream.requests.lock().unwrap().clone();
    assert!(requests[0].contains("types%5B%5D=invoice.paid"));
    assert!(requests[0].contains("created%5Bgte%5D=0"));
    assert!(requests[1].contains("starting_after="));
    assert!(requests.iter().all(|head| {
        head.to_ascii_lowercase()
            .contains(&format!("authorization: bearer {KEY}").to_ascii_lowercase())
    }));

    // The upgrade reads as a transition with both MRRs.
    let upgrade = events
        .iter()
        .find(|event| event.key.source_id == ids[5])
        .unwrap();
    assert_eq!(upgrade.kind.as_str(), "billing.subscription.updated");
    assert_eq!(
        upgrade.title,
        "Subscription changed: status trialing → active; plan Pro → Enterprise; MRR $50.00 → $200.00"
    );
    assert_eq!(
        upgrade.attributes.get("mrr"),
        Some(&AttributeValue::Money(Money {
            minor_units: 20_000,
            currency: "USD".into()
        }))
    );
    assert_eq!(upgrade.hints.external_ids[0].to_string(), "stripe:cus_acme");

    // Resuming: only what is new, plus what shares the newest second (read with
    // `created[gte]` so a same-second event is never missed; stored once by id).
    let checkpoint = pages.last().unwrap().checkpoint.clone();
    let newest = upstream.push(
        "invoice.paid",
        1_760_000_000 + 6 * 86_400 + 1,
        fake::invoice("in_3", "cus_acme", "ACME-2", 20_000, None),
        None,
    );
    let again = sync_all(&stripe, checkpoint).await;
    let got: Vec<&str> = again
        .iter()
        .flat_map(|page| &page.events)
        .map(|event| event.key.source_id.as_str())
        .collect();
    assert_eq!(got, vec![newest.as_str(), ids[6].as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_become_the_right_connector_errors() {
    let upstream = FakeStripe::start(KEY).await;
    seed(&upstream);
    let host = host();
    let stripe = stripe(&host, &upstream, "100").await;

    upstream.fault(
        Reply::status(429, r#"{"error":{"message":"Too many requests"}}"#)
            .header("retry-after", "7"),
    );
    assert!(matches!(
        connector_error(stripe.sync(None).await),
        ConnectorError::RateLimited {
            retry_after_ms: 7_000,
            ..
        }
    ));
    upstream.fault(Reply::status(500, r#"{"error":{"type":"api_error"}}"#));
    assert!(matches!(
        connector_error(stripe.sync(None).await),
        ConnectorError::Transient(_)
    ));
    // After the faults, the same call succeeds: nothing was consumed by them.
    assert_eq!(stripe.sync(None).await.unwrap().events.len(), 7);

    let wrong_key = connector(
        &host,
        rapport_testkit::BILLING_STRIPE,
        "stripe",
        &upstream.upstream.grant(),
        &[("base_url", &upstream.upstream.url())],
        &[("api_key", "rk_test_revoked")],
    )
    .await;
    assert!(matches!(
        connector_error(wrong_key.sync(None).await),
        ConnectorError::Auth(_)
    ));
    assert!(matches!(
        connector_error(wrong_key.check().await),
        ConnectorError::Auth(_)
    ));
    stripe.check().await.unwrap();
}

fn signed(secret: &str, t: i64, body: &[u8]) -> String {
    let signature = hex(&hmac_sha256(
        secret,
        &[t.to_string().as_bytes(), b".", body],
    ));
    format!("t={t},v1={signature}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_trusted_only_with_a_fresh_valid_signature() {
    let upstream = FakeStripe::start(KEY).await;
    let ids = seed(&upstream);
    let host = host();
    let stripe = stripe(&host, &upstream, "100").await;
    let body = upstream.event_json(&ids[2]);
    let now = now_seconds();
    let deliver = |header: Option<String>, body: &[u8]| {
        let headers: Vec<(&str, String)> = header
            .into_iter()
            .map(|value| ("Stripe-Signature", value))
            .collect();
        delivery("/hooks/stripe", &headers, body)
    };

    let delivered = stripe
        .handle_webhook(deliver(Some(signed(SECRET, now, &body)), &body))
        .await
        .expect("a valid delivery");
    assert!(delivered.refused.is_empty(), "{:?}", delivered.refused);
    let events = delivered.events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key.source_id, ids[2]);
    assert_eq!(events[0].kind.as_str(), "billing.invoice.paid");
    // The same event read by the pull maps identically: one fact, one row.
    let pulled = stripe.sync(None).await.unwrap();
    let same = pulled
        .events
        .iter()
        .find(|event| event.key.source_id == ids[2])
        .unwrap();
    assert_eq!(same, &events[0]);

    // Signed with the previous secret during a rotation: accepted.
    stripe
        .handle_webhook(deliver(Some(signed("whsec_old", now, &body)), &body))
        .await
        .expect("the old secret during rotation");

    let refused = [
        (
            "stale",
            deliver(Some(signed(SECRET, now - 400, &body)), &body),
        ),
        ("tampered", {
            let mut tampered = body.clone();
            let at = tampered.len() / 2;
            tampered[at] ^= 1;
            deliver(Some(signed(SECRET, now, &body)), &tampered)
        }),
        (
            "wrong secret",
            deliver(Some(signed("whsec_other", now, &body)), &body),
        ),
        ("missing", deliver(None, &body)),
    ];
    for (case, request) in refused {
        match connector_error(stripe.handle_webhook(request).await) {
            // An old delivery is said to be old, not ahead of the clock.
            ConnectorError::Auth(message) if case == "stale" => {
                assert!(message.contains("signed 400 s ago"), "{message}");
            }
            ConnectorError::Auth(_) => {}
            other => panic!("{case}: expected an auth refusal, got {other:?}"),
        }
    }

    // An unmapped type is accepted (signature fine) and stores nothing.
    let plan = upstream.event_json(&ids[7]);
    assert!(
        stripe
            .handle_webhook(deliver(Some(signed(SECRET, now, &plan)), &plan))
            .await
            .unwrap()
            .events
            .is_empty()
    );
}
