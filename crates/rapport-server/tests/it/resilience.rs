//! One bad row costs only itself: rows the boundary would refuse today — planted
//! behind the store's back, as an older build or a person might have left them — never
//! fail a timeline, a feed, a book or an account page, on either backend.

use crate::support::*;
use crate::web::{send, session};
use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use rapport_core::timeline::{AttributeValue, EventKind, Money, NewEvent};
use rapport_store::Store;
use rapport_testkit::database::execute_raw;
use rapport_testkit::on_both_backends_with_url;

on_both_backends_with_url!(rows_the_boundary_now_refuses_never_fail_a_page);

async fn rows_the_boundary_now_refuses_never_fail_a_page(store: Store, url: String) {
    let world = world(store.clone()).await;
    let acme = world.accounts["acme"];
    let at = Utc::now() - Duration::days(2);
    // Two subscriptions whose MRR, summed, would overflow: stored within the limits,
    // then raised to i64::MAX by hand.
    let subscription = |id: &str| {
        let mut event = NewEvent::new(
            "stripe",
            id,
            EventKind::parse("billing.subscription.created").unwrap(),
            at,
            "Subscription started",
        );
        event.attributes.insert(
            "subscription_id".into(),
            AttributeValue::Text(id.to_owned()),
        );
        event.attributes.insert(
            "mrr".into(),
            AttributeValue::Money(Money {
                minor_units: 100,
                currency: "USD".into(),
            }),
        );
        event.hints.domains = vec![rapport_core::account::Domain::parse("acme.example").unwrap()];
        event
    };
    let mut float = subscription("float");
    float.kind = EventKind::parse("billing.invoice.paid").unwrap();
    store
        .upsert_events(&[subscription("sub_a"), subscription("sub_b"), float], at)
        .await
        .unwrap();
    execute_raw(
        &url,
        r#"UPDATE timeline_events
           SET attributes = '{"subscription_id": {"text": "x"}, "mrr": {"money": {"minor_units": 9223372036854775807, "currency": "USD"}}}'
           WHERE source_id IN ('sub_a', 'sub_b')"#,
    )
    .await;
    execute_raw(
        &url,
        r#"UPDATE timeline_events SET attributes = '{"ratio": {"float": null}}' WHERE source_id = 'float'"#,
    )
    .await;

    let (status, timeline) = world
        .as_(
            "mia",
            Method::GET,
            &format!("/api/v1/accounts/{}/timeline", acme.0),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{timeline}");
    let events = timeline["events"].as_array().unwrap();
    let planted = events
        .iter()
        .find(|event| event["source_id"] == "float")
        .unwrap();
    assert!(
        planted["unreadable"]
            .as_str()
            .is_some_and(|why| why.contains("attribute `ratio`")),
        "{planted}"
    );
    let (status, feed) = world.as_("mia", Method::GET, "/api/v1/feed", None).await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    for uri in [
        format!("/api/v1/accounts/{}/revenue", acme.0),
        format!("/api/v1/accounts/{}/health", acme.0),
        "/api/v1/attention".to_owned(),
        "/api/v1/accounts".to_owned(),
    ] {
        let (status, body) = world.as_("mia", Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
    }

    let (cookie, _) = session(&world, "mia").await;
    for page in ["/".to_owned(), format!("/accounts/{}", acme.0)] {
        let reply = send(&world, Method::GET, &page, Some(&cookie), None, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}: {}", reply.body);
    }
    let account = send(
        &world,
        Method::GET,
        &format!("/accounts/{}", acme.0),
        Some(&cookie),
        None,
        &[],
    )
    .await;
    assert!(
        account.body.contains("could not be read back"),
        "the unreadable event is marked on the page"
    );
}
