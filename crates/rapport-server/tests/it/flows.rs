//! What people do through the API, end to end: open an account, write on its
//! timeline, page through it, hand accounts over, triage the inbox — and what a bad
//! request gets back.

use crate::support::*;
use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use rapport_core::account::Domain;
use rapport_core::timeline::{AttributeValue, EventKind, Money, NewEvent};
use rapport_store::Store;
use rapport_testkit::on_both_backends;
use serde_json::{Value, json};

on_both_backends!(
    health_attention_and_revenue,
    accounts_timelines_and_handoffs,
    inbox_triage_teaches_matching,
    bad_requests_get_problems,
);

fn titles(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["title"].as_str().unwrap().to_owned())
        .collect()
}

async fn accounts_timelines_and_handoffs(store: Store) {
    let world = world(store).await;
    let mia = world.id("mia").0;
    let (status, account) = world
        .as_(
            "mia",
            Method::POST,
            "/api/v1/accounts",
            Some(json!({
                "name": "Hooli",
                "owner": mia,
                "parent": world.accounts["acme"].0,
                "domains": ["hooli.example"],
                "external_ids": ["stripe:cus_hooli"],
                "contacts": [{"email": "gavin@hooli.example", "name": "Gavin", "title": "CEO"}],
                "renewal_date": "2027-03-31"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let hooli = account["id"].as_i64().unwrap();
    assert_eq!(account["owner"], mia);
    assert_eq!(account["external_ids"], json!(["stripe:cus_hooli"]));

    // Write 60 notes, then page through the timeline 25 at a time.
    for n in 0..60 {
        let (status, _) = world
            .as_(
                "mia",
                Method::POST,
                &format!("/api/v1/accounts/{hooli}/notes"),
                Some(json!({"text": format!("note {n:02}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut uri = format!("/api/v1/accounts/{hooli}/timeline?kind=note&limit=25");
    let mut pages = 0;
    loop {
        let (status, page) = world.as_("mia", Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(titles(&page));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => {
                uri = format!("/api/v1/accounts/{hooli}/timeline?kind=note&limit=25&cursor={next}")
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..60).rev().map(|n| format!("note {n:02}")).collect();
    assert_eq!(seen, expected, "every note once, newest first");

    // Acme's roll-up includes its new subsidiary's notes; its own timeline does not.
    let acme = world.accounts["acme"].0;
    let (_, own) = world
        .as_(
            "mia",
            Method::GET,
            &format!("/api/v1/accounts/{acme}/timeline?kind=note"),
            None,
        )
        .await;
    assert!(!titles(&own).contains(&"note 59".to_owned()));
    let (_, rolled) = world
        .as_(
            "mia",
            Method::GET,
            &format!("/api/v1/accounts/{acme}/timeline?kind=note&children=true"),
            None,
        )
        .await;
    assert!(titles(&rolled).contains(&"note 59".to_owned()));
    let (_, tree) = world
        .as_(
            "mia",
            Method::GET,
            &format!("/api/v1/accounts/{acme}/tree"),
            None,
        )
        .await;
    let children: Vec<&str> = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|child| child["name"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["Acme EU", "Hooli"]);

    // A task, done once.
    let (status, task) = world
        .as_(
            "mia",
            Method::POST,
            &format!("/api/v1/accounts/{hooli}/tasks"),
            Some(json!({"text": "Renewal quote", "due": "2027-02-01", "assignee": world.id("ava").0})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(task["attributes"]["status"], json!({"text": "open"}));
    let task_id = task["id"].as_i64().unwrap();
    let (status, done) = world
        .as_(
            "ava",
            Method::POST,
            &format!("/api/v1/tasks/{task_id}/complete"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["kind"], "task.done");
    let (status, again) = world
        .as_(
            "ava",
            Method::POST,
            &format!("/api/v1/tasks/{task_id}/complete"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    // Max cannot be given a task on an account he cannot see.
    let (status, _) = world
        .as_(
            "mia",
            Method::POST,
            &format!("/api/v1/accounts/{hooli}/tasks"),
            Some(json!({"text": "x", "assignee": world.id("max").0})),
        )
        .await;
    // Well-formed, but not possible as things stand: a conflict, not a malformed body.
    assert_eq!(status, StatusCode::CONFLICT);

    // Dan hands everything Mia owns to Max; the history and the timeline record it.
    let (status, moved) = world
        .as_(
            "dan",
            Method::POST,
            "/api/v1/assignments/handoff",
            Some(json!({"from": mia, "to": world.id("max").0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved.as_array().unwrap().len(), 2, "Acme and Hooli");
    let (_, history) = world
        .as_(
            "dan",
            Method::GET,
            &format!("/api/v1/accounts/{hooli}/assignments"),
            None,
        )
        .await;
    let owners: Vec<(i64, bool)> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["role"] == "owner")
        .map(|row| (row["staff"].as_i64().unwrap(), row["valid_to"].is_null()))
        .collect();
    assert_eq!(owners, [(mia, false), (world.id("max").0, true)]);
    let (_, handoffs) = world
        .as_(
            "dan",
            Method::GET,
            &format!("/api/v1/accounts/{hooli}/timeline?kind=assignment"),
            None,
        )
        .await;
    assert_eq!(handoffs["events"].as_array().unwrap().len(), 2);
    // Mia still sees Hooli: Ava, who reports to her, supports its parent Acme.
    let (status, _) = world
        .as_(
            "mia",
            Method::GET,
            &format!("/api/v1/accounts/{hooli}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, book) = world
        .as_("max", Method::GET, "/api/v1/accounts?scope=owned", None)
        .await;
    let names: Vec<&str> = book["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|account| account["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Acme", "Acme EU", "Globex", "Hooli"]);
    // The book pages by name with a cursor.
    let (_, first) = world
        .as_("max", Method::GET, "/api/v1/accounts?limit=3", None)
        .await;
    let next = first["next"].as_str().unwrap();
    let (_, second) = world
        .as_(
            "max",
            Method::GET,
            &format!("/api/v1/accounts?limit=3&cursor={next}"),
            None,
        )
        .await;
    assert_eq!(second["accounts"][0]["name"], "Hooli");
    assert!(second["next"].is_null());
}

async fn inbox_triage_teaches_matching(store: Store) {
    let world = world(store).await;
    let acme = world.accounts["acme"].0;
    let (status, placed) = world
        .as_(
            "mia",
            Method::POST,
            &format!("/api/v1/inbox/{}/place", world.unmatched.0),
            Some(json!({"account": acme, "learn": {"domain": "consultants.example"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{placed}");
    assert_eq!(placed["account"], acme);
    assert_eq!(placed["match"]["rule"], "manual");
    let (_, account) = world
        .as_(
            "mia",
            Method::GET,
            &format!("/api/v1/accounts/{acme}"),
            None,
        )
        .await;
    assert!(
        account["domains"]
            .as_array()
            .unwrap()
            .contains(&json!("consultants.example"))
    );
    let (_, inbox) = world.as_("mia", Method::GET, "/api/v1/inbox", None).await;
    assert!(inbox["events"].as_array().unwrap().is_empty());
    // Placed once; a second placement is a conflict, not a silent move.
    let (status, _) = world
        .as_(
            "mia",
            Method::POST,
            &format!("/api/v1/inbox/{}/place", world.unmatched.0),
            Some(json!({"account": acme})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
}

async fn bad_requests_get_problems(store: Store) {
    let world = world(store).await;
    let acme = world.accounts["acme"].0;
    let timeline = format!("/api/v1/accounts/{acme}/timeline");
    let (_, page) = world
        .as_("mia", Method::GET, &format!("{timeline}?limit=1"), None)
        .await;
    let cursor = page["next"].as_str().unwrap().to_owned();
    // A cursor is bound to its listing and reader, and cannot be edited.
    let mut forged = cursor.clone();
    forged.replace_range(0..1, if cursor.starts_with('e') { "f" } else { "e" });
    for (who, uri) in [
        ("mia", format!("{timeline}?cursor={forged}")),
        ("mia", format!("{timeline}?cursor=nonsense")),
        (
            "mia",
            format!(
                "/api/v1/accounts/{}/timeline?cursor={cursor}",
                world.accounts["acme_eu"].0
            ),
        ),
        ("mia", format!("/api/v1/feed?cursor={cursor}")),
        ("dan", format!("{timeline}?cursor={cursor}")),
    ] {
        let (status, problem) = world.as_(who, Method::GET, &uri, None).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{who} {uri}: {problem}"
        );
        assert_eq!(problem["type"], "https://rapport.dev/problems/invalid");
    }
    for uri in [
        format!("{timeline}?kind=Not%20A%20Kind"),
        format!("{timeline}?source=BAD%20SOURCE"),
        format!("{timeline}?from=yesterday"),
        format!("{timeline}?limit=-1"),
        "/api/v1/accounts?scope=everything".to_owned(),
    ] {
        let (status, problem) = world.as_("mia", Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {problem}");
        assert!(!problem["detail"].as_str().unwrap().is_empty());
    }
    // Limits are what the document declares: outside them is a 422 naming the bounds.
    for limit in ["0", "201", "100000", "2147483648", "4294967296", "-1"] {
        let (status, problem) = world
            .as_(
                "mia",
                Method::GET,
                &format!("{timeline}?limit={limit}"),
                None,
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "limit={limit}: {problem}"
        );
    }
    let (status, page) = world
        .as_("mia", Method::GET, &format!("{timeline}?limit=200"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page["events"].as_array().unwrap().len() <= 200);
    // Unknown fields, wrong types, missing bodies, oversized bodies.
    let notes = format!("/api/v1/accounts/{acme}/notes");
    for body in [json!({"txt": "typo"}), json!({"text": 5}), json!([])] {
        let (status, problem) = world.as_("mia", Method::POST, &notes, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    }
    let (status, _) = world.as_("mia", Method::POST, &notes, None).await;
    assert!(status.is_client_error());
    let (status, problem) = world
        .as_(
            "mia",
            Method::POST,
            &notes,
            Some(json!({"text": "x".repeat(70 * 1024)})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    // Unknown paths and ids that do not parse are 404 problems.
    for uri in [
        "/api/v1/nothing",
        "/api/v1/accounts/abc",
        "/api/v1/accounts/99999999999999999999",
    ] {
        let (status, _) = world.as_("mia", Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
    // Metrics count requests by route template, never by raw path.
    let (status, metrics) = world.call(Method::GET, "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(metrics.contains(
        "rapport_http_requests_total{method=\"GET\",route=\"/api/v1/accounts/{id}/timeline\",status=\"200\"}"
    ), "{metrics}");
    assert!(!metrics.contains(&format!("/api/v1/accounts/{acme}/")));
    assert!(metrics.contains("rapport_database_up 1"));
}

fn billing(id: &str, kind: &str, days_ago: i64, attributes: &[(&str, AttributeValue)]) -> NewEvent {
    let mut event = NewEvent::new(
        "stripe",
        id,
        EventKind::parse(kind).unwrap(),
        Utc::now() - Duration::days(days_ago),
        kind,
    );
    for (name, value) in attributes {
        event.attributes.insert((*name).to_owned(), value.clone());
    }
    event
        .hints
        .domains
        .push(Domain::parse("globex.example").unwrap());
    event
}

fn usd(minor_units: i64) -> AttributeValue {
    AttributeValue::Money(Money {
        minor_units,
        currency: "USD".into(),
    })
}

async fn health_attention_and_revenue(store: Store) {
    let world = world(store).await;
    let text = |value: &str| AttributeValue::Text(value.to_owned());
    // Globex: a subscription that grew, then a failed payment and silence.
    world
        .store
        .upsert_events(
            &[
                billing(
                    "evt_1",
                    "billing.subscription.created",
                    120,
                    &[
                        ("subscription_id", text("sub_1")),
                        ("plan", text("Team")),
                        ("mrr", usd(10_000)),
                    ],
                ),
                billing(
                    "evt_2",
                    "billing.subscription.updated",
                    40,
                    &[
                        ("subscription_id", text("sub_1")),
                        ("plan", text("Business")),
                        ("mrr", usd(25_000)),
                        ("previous_mrr", usd(10_000)),
                    ],
                ),
                billing(
                    "evt_3",
                    "billing.invoice.payment_failed",
                    3,
                    &[("invoice_id", text("in_9"))],
                ),
            ],
            Utc::now(),
        )
        .await
        .unwrap();
    let globex = world.accounts["globex"].0;
    let (status, health) = world
        .as_(
            "max",
            Method::GET,
            &format!("/api/v1/accounts/{globex}/health"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let codes: Vec<&str> = health["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|reason| reason["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["no_contact", "failed_payments"]);
    assert_eq!(health["score"], 100 - 25 - 20);
    assert_eq!(health["band"], "watch");

    let (status, revenue) = world
        .as_(
            "max",
            Method::GET,
            &format!("/api/v1/accounts/{globex}/revenue"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{revenue}");
    assert_eq!(
        revenue["mrr"],
        json!([{"currency": "USD", "minor_units": 25_000}])
    );
    assert_eq!(revenue["plans"], json!(["Business"]));
    assert_eq!(revenue["history"].as_array().unwrap().len(), 2);

    // Max's attention list puts Globex (failed payment) before Acme EU (quiet only).
    let (status, attention) = world
        .as_("max", Method::GET, "/api/v1/attention", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let order: Vec<&str> = attention
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["account"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["Globex", "Acme EU"]);
    assert_eq!(attention[1]["health"]["score"], 75);
    assert_eq!(health["last_contact"], Value::Null);
    assert_eq!(health["next_meeting"], Value::Null);

    // A review held with Globex five days ago is two-way contact; the one next week is
    // its next meeting (and not contact yet); one called off counts for neither.
    let held_start = Utc::now() - Duration::days(5);
    let held_end = held_start + Duration::hours(1);
    let next_start = Utc::now() + Duration::days(7);
    let mut held = billing("m_held", "meeting.scheduled", 5, &[]);
    held.occurred_at = held_start;
    held.attributes
        .insert("ends_at".into(), AttributeValue::Timestamp(held_end));
    let mut next = billing("m_next", "meeting.updated", 0, &[]);
    next.occurred_at = next_start;
    next.attributes.insert(
        "ends_at".into(),
        AttributeValue::Timestamp(next_start + Duration::hours(1)),
    );
    let mut called_off = billing("m_off", "meeting.canceled", 0, &[]);
    called_off.occurred_at = Utc::now() + Duration::days(2);
    world
        .store
        .upsert_events(&[held, next, called_off], Utc::now())
        .await
        .unwrap();
    let (status, health) = world
        .as_(
            "max",
            Method::GET,
            &format!("/api/v1/accounts/{globex}/health"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{health}");
    let codes: Vec<&str> = health["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|reason| reason["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["failed_payments"], "{health}");
    let at = |value: &Value| {
        chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap())
            .unwrap()
            .timestamp()
    };
    assert_eq!(at(&health["last_contact"]), held_end.timestamp());
    assert_eq!(at(&health["next_meeting"]), next_start.timestamp());
}
