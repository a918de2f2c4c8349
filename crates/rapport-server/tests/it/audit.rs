//! The audit trail and sign-in rate limiting: every write through the API or the web
//! UI leaves an entry (with before and after for ownership and structure), sign-ins
//! and failed ones are recorded with their address, and failures pause sign-ins per
//! address and per account.

use crate::support::*;
use crate::web::{send, session};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use http_body_util::BodyExt;
use rapport_store::Store;
use rapport_testkit::on_both_backends;
use serde_json::{Value, json};
use std::net::SocketAddr;
use tower::ServiceExt;

on_both_backends!(
    writes_leave_an_audit_entry_admins_can_read,
    failed_sign_ins_pause_an_address_and_an_account,
);

async fn trail(world: &World, query: &str) -> Vec<Value> {
    let (status, page) = world
        .as_("adam", Method::GET, &format!("/api/v1/audit{query}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"].as_array().unwrap().clone()
}

async fn writes_leave_an_audit_entry_admins_can_read(store: Store) {
    let world = world(store).await;
    let (acme, mia, max) = (
        world.accounts["acme"].0,
        world.id("mia").0,
        world.id("max").0,
    );
    // An owner change through the API: who, what, before and after.
    let (status, _) = world
        .as_(
            "dan",
            Method::PUT,
            &format!("/api/v1/accounts/{acme}/owner"),
            Some(json!({"staff": max})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A restructuring through the API.
    let (status, _) = world
        .as_(
            "dan",
            Method::PATCH,
            &format!("/api/v1/accounts/{acme}"),
            Some(json!({"name": "Acme Holdings"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A token made and revoked.
    let (_, issued) = world
        .as_(
            "mia",
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "cron"})),
        )
        .await;
    let token = issued["token"]["id"].as_i64().unwrap();
    world
        .as_(
            "mia",
            Method::DELETE,
            &format!("/api/v1/tokens/{token}"),
            None,
        )
        .await;
    // A note through the web UI.
    let (cookie, csrf) = session(&world, "max").await;
    let reply = send(
        &world,
        Method::POST,
        &format!("/accounts/{acme}/notes"),
        Some(&cookie),
        Some(&[("csrf", csrf.as_str()), ("text", "audited note")]),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    // A refused write leaves nothing.
    let (status, _) = world
        .as_(
            "ava",
            Method::PATCH,
            &format!("/api/v1/accounts/{acme}"),
            Some(json!({"name": "Not allowed"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let entries = trail(&world, "").await;
    let find = |action: &str| {
        entries
            .iter()
            .find(|entry| entry["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {entries:#?}"))
            .clone()
    };
    let owner = find("owner.changed");
    assert_eq!(owner["actor"], world.id("dan").0);
    assert_eq!(owner["surface"], "api");
    assert_eq!(
        owner["target"],
        format!("PUT /api/v1/accounts/{acme}/owner")
    );
    assert_eq!(owner["detail"]["owner"]["before"], mia);
    assert_eq!(owner["detail"]["owner"]["after"], max);
    let renamed = find("account.restructured");
    assert_eq!(renamed["detail"]["before"]["name"], "Acme");
    assert_eq!(renamed["detail"]["after"]["name"], "Acme Holdings");
    assert_eq!(find("token.created")["detail"]["token"], token);
    assert_eq!(find("token.revoked")["actor"], mia);
    let note = find("note.added");
    assert_eq!(note["surface"], "web");
    assert_eq!(note["actor"], max);
    assert!(
        !entries
            .iter()
            .any(|entry| entry["actor"] == world.id("ava").0),
        "a refused write was audited"
    );
    // Newest first, and filtered by action prefix.
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    let tokens = trail(&world, "?action=token").await;
    assert_eq!(tokens.len(), 2);

    // Only admins read it, through the API and the web UI.
    let (status, _) = world.as_("vera", Method::GET, "/api/v1/audit", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (vera, _) = session(&world, "vera").await;
    let page = send(&world, Method::GET, "/audit", Some(&vera), None, &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let (adam, _) = session(&world, "adam").await;
    let page = send(&world, Method::GET, "/audit", Some(&adam), None, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("owner.changed") && page.body.contains("Dan"));
}

/// A password sign-in from `address`: (status, Retry-After, body).
async fn sign_in(
    world: &World,
    email: &str,
    password: &str,
    address: &str,
) -> (StatusCode, Option<String>, String) {
    let form: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("email", email), ("password", password)])
        .finish();
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/signin")
        .header(header::HOST, "rapport.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let peer: SocketAddr = format!("{address}:40000").parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let response = world.router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|value| value.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry, String::from_utf8_lossy(&body).into_owned())
}

async fn failed_sign_ins_pause_an_address_and_an_account(store: Store) {
    let world = world(store).await;
    for person in ["mia", "max"] {
        let hash = rapport_core::password::hash("correct horse battery").unwrap();
        world
            .store
            .set_password_hash(world.id(person), Some(&hash), Utc::now())
            .await
            .unwrap();
    }
    let account_max = rapport_server::SIGN_IN_FAILURES_PER_ACCOUNT_MAX;
    // Wrong passwords for Mia, from several addresses.
    for n in 0..account_max {
        let (status, _, _) = sign_in(
            &world,
            "mia@rapport.example",
            "wrong",
            &format!("127.0.0.{}", 10 + n % 3),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    // Now even her right password waits, from anywhere, with a clear message.
    let (status, retry, body) = sign_in(
        &world,
        "MIA@rapport.example",
        "correct horse battery",
        "127.0.0.99",
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: i64 = retry.expect("a Retry-After").parse().unwrap();
    assert!((1..=15 * 60).contains(&retry), "{retry}");
    assert!(
        body.contains("for this account") && body.contains("sign-in link"),
        "{body}"
    );
    // Max is not affected.
    let (status, _, _) = sign_in(
        &world,
        "max@rapport.example",
        "correct horse battery",
        "127.0.0.99",
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // One address failing for many accounts is paused too, for every account.
    let address_max = rapport_server::SIGN_IN_FAILURES_PER_ADDRESS_MAX;
    for n in 0..address_max {
        let (status, _, _) = sign_in(
            &world,
            &format!("nobody{n}@rapport.example"),
            "guess",
            "127.0.0.50",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    let (status, _, body) = sign_in(
        &world,
        "max@rapport.example",
        "correct horse battery",
        "127.0.0.50",
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains("from your address"), "{body}");
    // Guessing sign-in links counts against the address as well.
    let mut link = Request::builder()
        .uri("/signin/rsl_notarealsecret")
        .header(header::HOST, "rapport.test")
        .body(Body::empty())
        .unwrap();
    link.extensions_mut()
        .insert(ConnectInfo("127.0.0.50:1".parse::<SocketAddr>().unwrap()));
    let response = world.router.clone().oneshot(link).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);

    // The trail has who signed in and who failed, from where.
    let entries = trail(&world, "?action=signin&limit=500").await;
    let failed_for_mia = entries
        .iter()
        .filter(|e| e["action"] == "signin.failed" && e["target"] == "mia@rapport.example")
        .count();
    assert_eq!(failed_for_mia as u64, account_max);
    let max_in = entries
        .iter()
        .find(|e| e["action"] == "signin.password")
        .expect("the successful sign-in");
    assert_eq!(max_in["actor"], world.id("max").0);
    assert_eq!(max_in["address"], "127.0.0.99");
}
