//! A small org with accounts across two branches, a token per person, and a client.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use chrono::{Duration, Utc};
use http_body_util::BodyExt;
use rapport_core::account::{Domain, EmailAddress, NewAccount};
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::{Level, NewStaff, Staff};
use rapport_core::{AccountId, EventId, StaffId};
use rapport_server::{AppState, app};
use rapport_store::{NewTask, Store};
use rapport_sync::{Engine, EngineConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use tower::ServiceExt;

/// Everyone, by first name: VP Vera; directors Dan and Dora; managers Mia and Max under
/// Dan, Mo under Dora; associate Ava under Mia; Adam, an admin manager under Dan who
/// owns nothing.
pub struct World {
    pub router: Router,
    pub store: Store,
    pub staff: BTreeMap<&'static str, Staff>,
    pub tokens: BTreeMap<&'static str, String>,
    pub accounts: BTreeMap<&'static str, AccountId>,
    /// A task on each account.
    pub tasks: BTreeMap<&'static str, EventId>,
    /// An event waiting in the unmatched inbox, ambiguous between Acme and Initech.
    pub unmatched: EventId,
}

impl World {
    /// A world of just `staff` around `router`, for tests that set up their own server.
    pub fn around(router: Router, store: Store, staff: BTreeMap<&'static str, Staff>) -> World {
        World {
            router,
            store,
            staff,
            tokens: BTreeMap::new(),
            accounts: BTreeMap::new(),
            tasks: BTreeMap::new(),
            unmatched: EventId(0),
        }
    }

    pub fn id(&self, person: &str) -> StaffId {
        self.staff[person].id
    }

    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        if !status.is_success() {
            assert_eq!(
                content_type, "application/problem+json",
                "{uri}: every error is a problem document"
            );
        }
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, value)
    }

    /// `call` as `person`.
    pub async fn as_(
        &self,
        person: &str,
        method: Method,
        uri: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(method, uri, Some(&self.tokens[person]), body)
            .await
    }
}

async fn hire(
    store: &Store,
    name: &str,
    level: Level,
    reports_to: Option<StaffId>,
    is_admin: bool,
) -> Staff {
    store
        .create_staff(
            NewStaff {
                name: name.to_owned(),
                email: EmailAddress::parse(&format!("{}@rapport.example", name.to_lowercase()))
                    .unwrap(),
                level,
                reports_to,
                is_admin,
            },
            Utc::now() - Duration::days(30),
        )
        .await
        .unwrap()
}

pub async fn world(store: Store) -> World {
    let earlier = Utc::now() - Duration::days(20);
    let vera = hire(&store, "Vera", Level::Vp, None, false).await;
    let dan = hire(&store, "Dan", Level::Director, Some(vera.id), false).await;
    let dora = hire(&store, "Dora", Level::Director, Some(vera.id), false).await;
    let mia = hire(&store, "Mia", Level::Manager, Some(dan.id), false).await;
    let max = hire(&store, "Max", Level::Manager, Some(dan.id), false).await;
    let mo = hire(&store, "Mo", Level::Manager, Some(dora.id), false).await;
    let ava = hire(&store, "Ava", Level::Associate, Some(mia.id), false).await;
    let adam = hire(&store, "Adam", Level::Manager, Some(dan.id), true).await;
    let mut staff = BTreeMap::new();
    for (name, person) in [
        ("vera", vera),
        ("dan", dan),
        ("dora", dora),
        ("mia", mia),
        ("max", max),
        ("mo", mo),
        ("ava", ava),
        ("adam", adam),
    ] {
        staff.insert(name, person);
    }
    let open =
        |name: &'static str, owner: &'static str, parent: Option<AccountId>, domain: &str| {
            NewAccount {
                name: name.to_owned(),
                parent,
                lifecycle: rapport_core::account::Lifecycle::Active,
                renewal_date: None,
                domains: vec![Domain::parse(domain).unwrap()],
                external_ids: Vec::new(),
                contacts: Vec::new(),
                owner: staff[owner].id,
            }
        };
    let mut accounts = BTreeMap::new();
    let acme = store
        .create_account(
            Operator,
            open("Acme", "mia", None, "acme.example"),
            None,
            earlier,
        )
        .await
        .unwrap()
        .id;
    accounts.insert("acme", acme);
    for (key, name, owner, parent, domain) in [
        ("acme_eu", "Acme EU", "max", Some(acme), "acme.eu.example"),
        ("globex", "Globex", "max", None, "globex.example"),
        ("initech", "Initech", "mo", None, "initech.example"),
        ("umbrella", "Umbrella", "dora", None, "umbrella.example"),
    ] {
        let id = store
            .create_account(Operator, open(name, owner, parent, domain), None, earlier)
            .await
            .unwrap()
            .id;
        accounts.insert(key, id);
    }
    store
        .add_support(Operator, acme, staff["ava"].id, None, earlier)
        .await
        .unwrap();
    let mut tasks = BTreeMap::new();
    for (key, account) in &accounts {
        store
            .add_note(
                Operator,
                *account,
                staff["vera"].id,
                &format!("note on {key}"),
                earlier,
            )
            .await
            .unwrap();
        let task = store
            .add_task(
                Operator,
                *account,
                staff["vera"].id,
                NewTask {
                    text: format!("task on {key}"),
                    due: None,
                    assignee: None,
                },
                earlier,
            )
            .await
            .unwrap();
        tasks.insert(*key, task.id);
    }
    // One mail from a person who is a contact of both Acme and Initech: ambiguous.
    let shared = rapport_core::account::Contact {
        name: None,
        email: EmailAddress::parse("pat@consultants.example").unwrap(),
        title: None,
    };
    store.upsert_contact(Operator, acme, &shared).await.unwrap();
    store
        .upsert_contact(Operator, accounts["initech"], &shared)
        .await
        .unwrap();
    let mut mail = rapport_core::timeline::NewEvent::new(
        "mail",
        "m-ambiguous",
        rapport_core::timeline::EventKind::parse("email.received").unwrap(),
        earlier,
        "Hello from Pat",
    );
    mail.hints.emails.push(shared.email.clone());
    let (_, outcomes) = store.upsert_events(&[mail], earlier).await.unwrap();
    let rapport_store::UpsertOutcome::Inserted(unmatched) = outcomes[0] else {
        panic!("{outcomes:?}")
    };
    let mut tokens = BTreeMap::new();
    for (name, person) in &staff {
        let issued = store
            .create_api_token(person.id, "tests", None, Utc::now())
            .await
            .unwrap();
        tokens.insert(*name, issued.secret);
    }
    let engine = Arc::new(
        Engine::new(store.clone(), EngineConfig::default(), Vec::new())
            .await
            .unwrap(),
    );
    let router = app(AppState::new(engine, 1024).await.unwrap());
    World {
        router,
        store,
        staff,
        tokens,
        accounts,
        tasks,
        unmatched,
    }
}

/// The accounts each person may see, written out by hand from the visibility rule.
pub fn expected_visible(person: &str) -> &'static [&'static str] {
    match person {
        "vera" => &["acme", "acme_eu", "globex", "initech", "umbrella"],
        "dan" => &["acme", "acme_eu", "globex"],
        "dora" => &["initech", "umbrella"],
        "mia" => &["acme", "acme_eu"],
        "max" => &["acme_eu", "globex"],
        "mo" => &["initech"],
        "ava" => &["acme", "acme_eu"],
        "adam" => &[],
        other => panic!("nobody called {other}"),
    }
}

pub const PEOPLE: [&str; 8] = ["vera", "dan", "dora", "mia", "max", "mo", "ava", "adam"];
