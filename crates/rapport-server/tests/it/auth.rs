//! Missing, malformed, unknown, revoked and expired tokens get 401; a non-admin on an
//! admin route gets 403; an admin gets through.

use crate::support::*;
use axum::http::{Method, StatusCode};
use chrono::{Duration, Utc};
use rapport_store::Store;
use rapport_testkit::on_both_backends;
use serde_json::json;

on_both_backends!(
    tokens_are_checked_on_every_route,
    admin_routes_need_an_admin
);

async fn tokens_are_checked_on_every_route(store: Store) {
    let world = world(store).await;
    let revoked = world
        .store
        .create_api_token(world.id("mia"), "old laptop", None, Utc::now())
        .await
        .unwrap();
    world
        .store
        .revoke_api_token(revoked.token.id, Utc::now())
        .await
        .unwrap();
    let expiring = world
        .store
        .create_api_token(
            world.id("mia"),
            "short",
            Some(Utc::now() + Duration::milliseconds(50)),
            Utc::now(),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    let acme = world.accounts["acme"].0;
    let routes = [
        (Method::GET, "/api/v1/me".to_owned()),
        (Method::GET, "/api/v1/accounts".to_owned()),
        (Method::GET, format!("/api/v1/accounts/{acme}")),
        (Method::GET, format!("/api/v1/accounts/{acme}/timeline")),
        (Method::GET, "/api/v1/feed".to_owned()),
        (Method::GET, "/api/v1/inbox".to_owned()),
        (Method::GET, "/api/v1/connectors".to_owned()),
        (Method::GET, "/api/v1/staff".to_owned()),
        (Method::POST, "/api/v1/staff".to_owned()),
        (Method::GET, "/api/v1/tokens".to_owned()),
    ];
    for (method, uri) in &routes {
        let (status, body) = world.call(method.clone(), uri, None, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} without a token"
        );
        assert_eq!(body["type"], "https://rapport.dev/problems/unauthenticated");
        for (what, token) in [
            ("garbage", "not-a-token"),
            (
                "unknown",
                "rpt_00000000000000000000000000000000000000000000000000000000000000ff",
            ),
            ("revoked", revoked.secret.as_str()),
            ("expired", expiring.secret.as_str()),
        ] {
            let (status, body) = world.call(method.clone(), uri, Some(token), None).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with a {what} token"
            );
            assert_eq!(body["type"], "https://rapport.dev/problems/invalid-token");
        }
    }
    // Not a bearer scheme at all.
    let request = axum::http::Request::get("/api/v1/me")
        .header("authorization", "Basic bWlhOnNlY3JldA==")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(world.router.clone(), request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));

    let (status, me) = world.as_("mia", Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], "mia@rapport.example");

    // A token made over the API works at once, shows its secret once, and stops
    // working when revoked.
    let (status, issued) = world
        .as_(
            "mia",
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "script"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let secret = issued["secret"].as_str().unwrap().to_owned();
    let id = issued["token"]["id"].as_i64().unwrap();
    let (status, _) = world
        .call(Method::GET, "/api/v1/me", Some(&secret), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = world.as_("mia", Method::GET, "/api/v1/tokens", None).await;
    assert!(
        !listed.to_string().contains(&secret),
        "a listing never shows secrets"
    );
    // Someone else's token looks like no token.
    let (status, _) = world
        .as_("max", Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = world
        .as_("mia", Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = world
        .call(Method::GET, "/api/v1/me", Some(&secret), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn admin_routes_need_an_admin(store: Store) {
    let world = world(store).await;
    let mia = world.id("mia").0;
    let admin_routes = [
        (
            Method::POST,
            "/api/v1/staff".to_owned(),
            Some(
                json!({"name": "Nia", "email": "nia@rapport.example", "level": "associate", "reports_to": mia}),
            ),
        ),
        (
            Method::PATCH,
            format!("/api/v1/staff/{mia}"),
            Some(json!({"name": "Mia R."})),
        ),
        (
            Method::POST,
            format!("/api/v1/staff/{}/deactivate", world.id("ava").0),
            None,
        ),
        (
            Method::POST,
            "/api/v1/connectors/mail/sync".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/tokens".to_owned(),
            Some(json!({"name": "for mia", "staff": mia})),
        ),
        (Method::GET, format!("/api/v1/tokens?staff={mia}"), None),
    ];
    // The VP is not an admin: seniority grants no administration.
    for person in ["vera", "max"] {
        for (method, uri, body) in &admin_routes {
            let (status, problem) = world.as_(person, method.clone(), uri, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{person} {method} {uri}: {problem}"
            );
            assert_eq!(problem["type"], "https://rapport.dev/problems/forbidden");
        }
    }
    let (status, staff) = world
        .as_(
            "adam",
            admin_routes[0].0.clone(),
            &admin_routes[0].1,
            admin_routes[0].2.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{staff}");
    assert_eq!(staff["level"], "associate");
    let (status, renamed) = world
        .as_(
            "adam",
            admin_routes[1].0.clone(),
            &admin_routes[1].1,
            admin_routes[1].2.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(renamed["name"], "Mia R.");
    assert_eq!(
        renamed["reports_to"],
        world.id("dan").0,
        "absent fields stay"
    );
    // No connector called `mail` is configured: a named 404, not a crash.
    let (status, _) = world
        .as_("adam", Method::POST, "/api/v1/connectors/mail/sync", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, made) = world
        .as_(
            "adam",
            admin_routes[4].0.clone(),
            &admin_routes[4].1,
            admin_routes[4].2.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(made["token"]["staff"], mia);
}
