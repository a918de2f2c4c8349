//! The permission table of ARCHITECTURE.md, held to on every route that does the same
//! thing: admin powers stop at what the admin sees, and associates work on accounts but
//! do not reshape them.

use crate::support::*;
use crate::web::{send, session};
use axum::http::{Method, StatusCode};
use rapport_core::AccountId;
use rapport_core::permission::Authority::Operator;
use rapport_store::Store;
use rapport_testkit::on_both_backends;
use serde_json::json;

on_both_backends!(
    admin_powers_stop_at_what_the_admin_sees,
    associates_work_on_accounts_but_do_not_restructure_them,
);

async fn owner_of(world: &World, account: AccountId) -> i64 {
    world
        .store
        .assignment_history(account)
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.valid_to.is_none() && a.role == rapport_core::assignment::Role::Owner)
        .map(|a| a.staff.0)
        .unwrap()
}

async fn admin_powers_stop_at_what_the_admin_sees(store: Store) {
    let world = world(store).await;
    let (max, mia, mo) = (world.id("max").0, world.id("mia").0, world.id("mo").0);
    let (globex, acme_eu, initech) = (
        world.accounts["globex"],
        world.accounts["acme_eu"],
        world.accounts["initech"],
    );
    // Adam is an admin who sees no account.
    let refused = [
        (
            Method::POST,
            "/api/v1/assignments/handoff".to_owned(),
            json!({"from": max, "to": mia, "accounts": [globex.0]}),
        ),
        (
            Method::POST,
            "/api/v1/accounts".to_owned(),
            json!({"name": "Initech Labs", "owner": mo, "parent": initech.0}),
        ),
        (
            Method::PUT,
            format!("/api/v1/accounts/{}/owner", initech.0),
            json!({"staff": mia}),
        ),
        (
            Method::POST,
            format!("/api/v1/accounts/{}/supporters", initech.0),
            json!({"staff": mia}),
        ),
        (
            Method::PATCH,
            format!("/api/v1/accounts/{}", initech.0),
            json!({"name": "Renamed"}),
        ),
    ];
    for (method, uri, body) in refused {
        let (status, problem) = world.as_("adam", method.clone(), &uri, Some(body)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        for hidden in [globex, acme_eu] {
            assert!(
                !detail.contains(&format!("account {} ", hidden.0)) || uri.contains("handoff"),
                "{detail}"
            );
        }
    }
    // A whole-book handoff moves nothing Adam cannot see, and names nothing.
    let (status, moved) = world
        .as_(
            "adam",
            Method::POST,
            "/api/v1/assignments/handoff",
            Some(json!({"from": max, "to": mia})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved, json!([]));
    assert_eq!(owner_of(&world, globex).await, max);
    assert_eq!(owner_of(&world, acme_eu).await, max);

    // The Team page's handoff form is held to the same rule.
    let (adam, csrf) = session(&world, "adam").await;
    let reply = send(
        &world,
        Method::POST,
        "/team/handoff",
        Some(&adam),
        Some(&[
            ("csrf", csrf.as_str()),
            ("from", &max.to_string()),
            ("to", &mia.to_string()),
            ("account", &globex.0.to_string()),
        ]),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.body);
    assert_eq!(owner_of(&world, globex).await, max);
    let page = send(
        &world,
        Method::GET,
        &format!("/team/handoff?from={max}"),
        Some(&adam),
        None,
        &[],
    )
    .await;
    assert!(!page.body.contains("Globex") && !page.body.contains("Acme EU"));

    // Once Adam supports Globex he sees it, and as an admin may hand it to anyone —
    // Globex alone: Acme EU, also Max's, stays out of his reach and out of the answer.
    world
        .store
        .add_support(Operator, globex, world.id("adam"), None, chrono::Utc::now())
        .await
        .unwrap();
    let (status, moved) = world
        .as_(
            "adam",
            Method::POST,
            "/api/v1/assignments/handoff",
            Some(json!({"from": max, "to": mo})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let accounts: Vec<i64> = moved
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account"].as_i64().unwrap())
        .collect();
    assert_eq!(accounts, vec![globex.0]);
    assert_eq!(owner_of(&world, globex).await, mo);
    assert_eq!(owner_of(&world, acme_eu).await, max);
    // And open an account under it, for anyone.
    let (status, opened) = world
        .as_(
            "adam",
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "Globex Labs", "owner": mo, "parent": globex.0})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{opened}");
}

async fn associates_work_on_accounts_but_do_not_restructure_them(store: Store) {
    let world = world(store).await;
    let (acme, acme_eu, globex) = (
        world.accounts["acme"].0,
        world.accounts["acme_eu"].0,
        world.accounts["globex"].0,
    );
    // Ava supports Acme (and so sees Acme EU beneath it).
    for body in [
        json!({"name": "Acme Renamed"}),
        json!({"lifecycle": "churned"}),
        json!({"parent": null}),
        json!({"renewal_date": "2027-03-01", "name": "Acme Too"}),
    ] {
        let (status, problem) = world
            .as_(
                "ava",
                Method::PATCH,
                &format!("/api/v1/accounts/{acme_eu}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("associates"),
            "{problem}"
        );
    }
    let (_, account) = world
        .as_(
            "ava",
            Method::GET,
            &format!("/api/v1/accounts/{acme_eu}"),
            None,
        )
        .await;
    assert_eq!(account["name"], "Acme EU");
    assert_eq!(account["parent"], acme);
    // Working detail is theirs to keep up.
    let (status, account) = world
        .as_(
            "ava",
            Method::PATCH,
            &format!("/api/v1/accounts/{acme_eu}"),
            Some(json!({"renewal_date": "2027-03-01"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    let (status, _) = world
        .as_(
            "ava",
            Method::PUT,
            &format!("/api/v1/accounts/{acme_eu}/domains/acme-europe.example"),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}");
    // Nor do they open accounts, even for their manager.
    let (status, problem) = world
        .as_(
            "ava",
            Method::POST,
            "/api/v1/accounts",
            Some(json!({"name": "Acme Asia", "owner": world.id("mia").0, "parent": acme})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");

    // The owner restructures — but not under a parent out of their sight.
    let (status, account) = world
        .as_(
            "mia",
            Method::PATCH,
            &format!("/api/v1/accounts/{acme_eu}"),
            Some(json!({"name": "Acme Europe"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{account}");
    let (status, _) = world
        .as_(
            "mia",
            Method::PATCH,
            &format!("/api/v1/accounts/{acme_eu}"),
            Some(json!({"parent": globex})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
