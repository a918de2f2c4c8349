//! The visibility matrix: every account-scoped route × every kind of account (own, a
//! report's, a peer's, a child of a visible parent, unrelated) × every level and an
//! admin. A hidden account must get exactly the answer a missing one gets; a visible one
//! must not. Then the listings — book, search, feed, attention, inbox — leak nothing either.

use crate::support::*;
use axum::http::{Method, StatusCode};
use rapport_store::Store;
use rapport_testkit::on_both_backends;
use serde_json::{Value, json};
use std::collections::BTreeSet;

on_both_backends!(
    every_account_route_hides_what_it_must,
    listings_leak_nothing
);

/// A missing account id (and event id) to compare hidden ones against.
const MISSING: i64 = 987_654;

/// Every route that names an account (or an event on one), as (method, path, body),
/// with `{a}` for the account id and `{e}`/`{t}` for an event/task on it. Bodies are
/// chosen to fail validation *after* the visibility check, so a visible account shows a
/// different error and nothing is changed.
fn routes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (Method::GET, "/api/v1/accounts/{a}", None),
        (
            Method::PATCH,
            "/api/v1/accounts/{a}",
            Some(json!({"name": " "})),
        ),
        (Method::GET, "/api/v1/accounts/{a}/tree", None),
        (
            Method::PUT,
            "/api/v1/accounts/{a}/domains/not..a..domain",
            None,
        ),
        (
            Method::DELETE,
            "/api/v1/accounts/{a}/domains/not..a..domain",
            None,
        ),
        (
            Method::PUT,
            "/api/v1/accounts/{a}/external-ids/no-colon",
            None,
        ),
        (
            Method::DELETE,
            "/api/v1/accounts/{a}/external-ids/no-colon",
            None,
        ),
        (
            Method::PUT,
            "/api/v1/accounts/{a}/contacts/not-an-email",
            Some(json!({})),
        ),
        (
            Method::DELETE,
            "/api/v1/accounts/{a}/contacts/not-an-email",
            None,
        ),
        (Method::GET, "/api/v1/accounts/{a}/assignments", None),
        (
            Method::PUT,
            "/api/v1/accounts/{a}/owner",
            Some(json!({"staff": MISSING})),
        ),
        (
            Method::POST,
            "/api/v1/accounts/{a}/supporters",
            Some(json!({"staff": MISSING})),
        ),
        (
            Method::DELETE,
            "/api/v1/accounts/{a}/supporters/987654",
            None,
        ),
        (Method::GET, "/api/v1/accounts/{a}/timeline", None),
        (
            Method::GET,
            "/api/v1/accounts/{a}/timeline?children=true&kind=note",
            None,
        ),
        (
            Method::POST,
            "/api/v1/accounts/{a}/notes",
            Some(json!({"text": " "})),
        ),
        (
            Method::POST,
            "/api/v1/accounts/{a}/tasks",
            Some(json!({"text": " "})),
        ),
        (Method::GET, "/api/v1/accounts/{a}/health", None),
        (Method::GET, "/api/v1/accounts/{a}/revenue", None),
        (Method::GET, "/api/v1/events/{t}", None),
        (Method::POST, "/api/v1/tasks/{t}/complete", None),
        (
            Method::POST,
            "/api/v1/inbox/{e}/place",
            Some(json!({"account": "{a}", "learn": {"domain": "not..a..domain"}})),
        ),
    ]
}

fn fill(template: &str, account: i64, task: i64, event: i64) -> String {
    template
        .replace("{a}", &account.to_string())
        .replace("{t}", &task.to_string())
        .replace("{e}", &event.to_string())
}

fn fill_body(body: &Option<Value>, account: i64) -> Option<Value> {
    body.as_ref().map(|body| {
        let text = body.to_string().replace("\"{a}\"", &account.to_string());
        serde_json::from_str(&text).unwrap()
    })
}

/// A response with the ids it mentions blanked, so a hidden account's answer can be
/// compared with a missing one's.
fn blank(response: &(StatusCode, Value), ids: &[i64]) -> String {
    let mut text = response.1.to_string();
    for id in ids {
        text = text.replace(&format!("#{id} "), "#ID ");
    }
    format!("{} {text}", response.0)
}

async fn every_account_route_hides_what_it_must(store: Store) {
    let world = world(store).await;
    let mut checked = 0;
    for person in PEOPLE {
        let visible: BTreeSet<&str> = expected_visible(person).iter().copied().collect();
        for (method, template, body) in routes() {
            // The answer for an account and task that do not exist at all.
            let missing = world
                .as_(
                    person,
                    method.clone(),
                    &fill(template, MISSING, MISSING, world.unmatched.0),
                    fill_body(&body, MISSING),
                )
                .await;
            assert!(
                missing.0.is_client_error(),
                "{person} {method} {template} on a missing account: {missing:?}"
            );
            for (key, account) in &world.accounts {
                let task = world.tasks[key].0;
                let uri = fill(template, account.0, task, world.unmatched.0);
                let response = world
                    .as_(person, method.clone(), &uri, fill_body(&body, account.0))
                    .await;
                assert!(
                    !response.0.is_server_error(),
                    "{person} {method} {uri}: {response:?}"
                );
                let looks_missing =
                    blank(&response, &[account.0, task]) == blank(&missing, &[MISSING]);
                if visible.contains(key) {
                    // A route that refuses this person outright (403 for everyone) looks
                    // the same either way; otherwise a visible account must not look
                    // missing.
                    if missing.0 == StatusCode::NOT_FOUND {
                        assert!(
                            !looks_missing,
                            "{person} {method} {uri}: {key} is visible to them but answered like a missing account: {response:?}"
                        );
                    }
                } else {
                    assert!(
                        looks_missing,
                        "{person} {method} {uri}: {key} is hidden from them, but the answer differs from a missing account's\n  hidden:  {response:?}\n  missing: {missing:?}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert_eq!(checked, PEOPLE.len() * routes().len() * 5);
}

fn ids_in(list: &Value, field: &str) -> BTreeSet<i64> {
    list[field]
        .as_array()
        .unwrap_or_else(|| panic!("no `{field}` in {list}"))
        .iter()
        .filter_map(|item| item["id"].as_i64())
        .collect()
}

async fn listings_leak_nothing(store: Store) {
    let world = world(store).await;
    for person in PEOPLE {
        let expected: BTreeSet<i64> = expected_visible(person)
            .iter()
            .map(|key| world.accounts[key].0)
            .collect();

        // The book is exactly the visible set, and searching cannot reach past it.
        let (status, book) = world
            .as_(person, Method::GET, "/api/v1/accounts", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(ids_in(&book, "accounts"), expected, "{person}'s book");
        for name in ["Acme", "Initech", "umbrella.example", "Glob"] {
            let (_, found) = world
                .as_(
                    person,
                    Method::GET,
                    &format!("/api/v1/accounts?q={name}"),
                    None,
                )
                .await;
            assert!(
                ids_in(&found, "accounts").is_subset(&expected),
                "{person} searching {name}: {found}"
            );
        }
        // Filtering by someone else's name shows only what is visible anyway.
        let (_, by_mo) = world
            .as_(
                person,
                Method::GET,
                &format!("/api/v1/accounts?staff={}", world.id("mo").0),
                None,
            )
            .await;
        assert!(ids_in(&by_mo, "accounts").is_subset(&expected));

        // The feed: every event on a visible account, and each visible account shows.
        let (status, feed) = world
            .as_(person, Method::GET, "/api/v1/feed?limit=200", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let on: BTreeSet<i64> = feed["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| event["account"].as_i64().expect("feed events are placed"))
            .collect();
        assert_eq!(on, expected, "{person}'s feed spans exactly their book");

        // Needs-attention ranks exactly the visible book.
        let (status, attention) = world
            .as_(person, Method::GET, "/api/v1/attention?limit=200", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        let ranked: BTreeSet<i64> = attention
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["account"]["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ranked, expected, "{person}'s attention list");

        // The inbox: associates may not triage; candidates are only visible accounts.
        let (status, inbox) = world.as_(person, Method::GET, "/api/v1/inbox", None).await;
        if person == "ava" {
            assert_eq!(status, StatusCode::FORBIDDEN);
        } else {
            assert_eq!(status, StatusCode::OK, "{person}: {inbox}");
            let event = &inbox["events"][0];
            assert_eq!(event["id"].as_i64(), Some(world.unmatched.0));
            let candidates: BTreeSet<i64> = event["candidates"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_i64().unwrap())
                .collect();
            let fitting: BTreeSet<i64> = [world.accounts["acme"].0, world.accounts["initech"].0]
                .into_iter()
                .filter(|id| expected.contains(id))
                .collect();
            assert_eq!(
                candidates, fitting,
                "{person} sees only candidates they can see"
            );
        }

        // A handoff of Mo's book is refused to anyone outside his reporting line
        // (admins aside), without saying what he owns. (To an associate, who cannot own,
        // so that those allowed to try change nothing either.)
        let (status, body) = world
            .as_(
                person,
                Method::POST,
                "/api/v1/assignments/handoff",
                Some(json!({"from": world.id("mo").0, "to": world.id("ava").0})),
            )
            .await;
        if matches!(person, "vera" | "dora" | "mo" | "adam") {
            assert!(status.is_client_error(), "{person}: {status} {body}");
        } else {
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{person} handing off Mo's book"
            );
        }
    }
}
