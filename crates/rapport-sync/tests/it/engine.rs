//! The sync engine through the real host and store: paging and resuming, fault handling
//! by error kind, webhooks verified before storing, the scheduler and several nodes
//! sharing connectors.

use crate::support::*;
use chrono::Utc;
use rapport_plugin_host::WebhookRequest;
use rapport_store::{ConnectorState, Store};
use rapport_sync::{FailureKind, Next, RunOutcome, SyncError, WebhookError};
use rapport_testkit::on_both_backends;
use std::sync::Arc;
use std::time::Duration;

on_both_backends!(
    a_run_pages_until_done_then_resumes_from_its_checkpoint,
    upstream_faults_follow_their_error_kind,
    auth_failures_stop_until_the_configuration_changes,
    webhooks_are_verified_before_anything_is_stored,
    the_scheduler_runs_due_connectors_and_stored_requests,
    nodes_share_connectors_up_to_their_run_limit,
);

async fn a_run_pages_until_done_then_resumes_from_its_checkpoint(store: Store) {
    let accounts = seed(&store).await;
    let feed = Feed::start(25, 10).await;
    let host = host(None);
    let plugin = example_feed(&host).await;
    let engine = engine(&store, &feed, &plugin, "node-a").await;

    let pages = std::sync::Mutex::new(Vec::new());
    let report = engine
        .run_now(CONNECTOR, &|progress| {
            pages
                .lock()
                .unwrap()
                .push((progress.page, progress.commit.summary.inserted));
        })
        .await
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert_eq!((report.pages, report.inserted, report.waiting), (3, 25, 0));
    assert_eq!(*pages.lock().unwrap(), [(1, 10), (2, 10), (3, 5)]);
    assert_eq!(stored_ids(&store).await, expected_ids(25));

    // Every event is on the account its customer id names, and says why.
    let timeline = store
        .timeline(&rapport_store::TimelineQuery {
            connectors: vec![CONNECTOR.into()],
            ..rapport_store::TimelineQuery::account(accounts[3], rapport_store::Reader::Operator)
        })
        .await
        .unwrap();
    assert_eq!(timeline.events.len(), 5);
    for event in &timeline.events {
        let placement = event.event.placement.as_ref().unwrap();
        assert_eq!(placement.reason.rule(), "external_id");
        assert!(event.event.key.source_id.ends_with(['3', '8']));
    }

    let status = store.connector_status(CONNECTOR).await.unwrap().unwrap();
    assert_eq!(status.state, ConnectorState::Idle);
    assert_eq!(status.checkpoint.as_deref(), Some("25"));
    assert_eq!((status.events_ingested, status.pages_committed), (25, 3));
    assert!(status.last_success_at.is_some() && status.last_error.is_none());
    let next = status.next_run_at.unwrap() - Utc::now();
    assert!(
        next > chrono::Duration::minutes(9),
        "scheduled every 10m: {next}"
    );
    assert_eq!(status.lease_holder, None, "released after the run");

    // New items upstream: the next run asks only for what follows the checkpoint.
    feed.set_items(30);
    let before = feed.upstream.request_count();
    let report = engine.run_now(CONNECTOR, &|_| {}).await.unwrap();
    assert_eq!((report.pages, report.inserted), (1, 5));
    let requests = feed.upstream.requests.lock().unwrap()[before..].to_vec();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].starts_with("GET /feed?after=25 "),
        "{}",
        requests[0]
    );
    assert_eq!(stored_ids(&store).await, expected_ids(30));

    // Deletes travel with pages.
    feed.state.lock().unwrap().deleted = vec![item_id(7), item_id(8)];
    let report = engine.run_now(CONNECTOR, &|_| {}).await.unwrap();
    assert_eq!(report.deleted, 2);
    let mut expected = expected_ids(30);
    expected.retain(|id| id != &item_id(7) && id != &item_id(8));
    assert_eq!(stored_ids(&store).await, expected);

    assert!(matches!(
        engine.run_now("nope", &|_| {}).await,
        Err(SyncError::UnknownConnector(_))
    ));
}

async fn upstream_faults_follow_their_error_kind(store: Store) {
    seed(&store).await;
    let feed = Feed::start(30, 10).await;
    let host = host(None);
    let plugin = example_feed(&host).await;
    let engine = engine(&store, &feed, &plugin, "node-a").await;
    // Page 2 fails each way in turn; page 1 is committed by the first run and never
    // asked for again.
    let faults = [
        (
            Fault::RateLimited { retry_after_s: 7 },
            FailureKind::RateLimited(Duration::from_secs(7)),
        ),
        (Fault::ServerError, FailureKind::Transient),
        (Fault::TruncatedJson, FailureKind::Transient),
        (Fault::Slow(Duration::from_secs(3)), FailureKind::Transient),
    ];
    for (round, (fault, kind)) in faults.into_iter().enumerate() {
        feed.state
            .lock()
            .unwrap()
            .faults_at
            .insert(10, fault.clone());
        let started = Utc::now();
        let report = engine.run_now(CONNECTOR, &|_| {}).await.unwrap();
        let RunOutcome::Failed {
            kind: failed, next, ..
        } = &report.outcome
        else {
            panic!("{fault:?}: {report:?}")
        };
        assert_eq!(*failed, kind, "{fault:?}");
        assert_eq!(report.pages, if round == 0 { 1 } else { 0 }, "{fault:?}");
        let status = store.connector_status(CONNECTOR).await.unwrap().unwrap();
        assert_eq!(status.state, ConnectorState::BackingOff, "{fault:?}");
        assert_eq!(status.checkpoint.as_deref(), Some("10"), "{fault:?}");
        assert_eq!(status.consecutive_failures, round as i64 + 1);
        let error = status.last_error.unwrap();
        assert_eq!(error.kind, kind.as_str());
        let Next::RetryAt(at) = next else {
            panic!("{fault:?} retries")
        };
        assert_eq!(status.next_run_at, Some(*at));
        if let FailureKind::RateLimited(_) = kind {
            let wait = *at - started;
            assert!(
                wait >= chrono::Duration::seconds(7) && wait < chrono::Duration::seconds(9),
                "retry-after honoured: {wait}"
            );
        }
        assert_eq!(stored_ids(&store).await, expected_ids(10), "{fault:?}");
    }

    let report = engine.run_now(CONNECTOR, &|_| {}).await.unwrap();
    assert_eq!(report.outcome, RunOutcome::Completed);
    assert_eq!(stored_ids(&store).await, expected_ids(30));
    let status = store.connector_status(CONNECTOR).await.unwrap().unwrap();
    assert_eq!(
        (status.state, status.consecutive_failures),
        (ConnectorState::Idle, 0)
    );
    assert_eq!(
        status.last_error.unwrap().kind,
        "transient",
        "kept for the record"
    );
}

async fn auth_failures_stop_until_the_configuration_changes(store: Store) {
    seed(&store).await;
    let feed = Feed::start(5, 10).await;
    let host = host(None);
    let plugin = example_feed(&host).await;
    let engine = Arc::new(engine(&store, &feed, &plugin, "node-a").await);
    feed.fault(Fault::Unauthorized);
    let report = engine.run_now(CONNECTOR, &|_| {}).await.unwrap();
    assert!(
        matches!(
            report.outcome,
            RunOutcome::Failed {
                kind: FailureKind::Auth,
                next: Next::Stop,
                ..
            }
        ),
        "{report:?}"
    );
    let status = store.connector_status(CONNECTOR).await.unwrap().unwrap();
    assert_eq!(status.state, ConnectorState::Stopped);
    assert_eq!(status.next_run_at, None);

    // The scheduler leaves a stopped connector alone.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(Arc::clone(&engine).run(stopped));
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.send(true).unwrap();
    running.await.unwrap();
    assert!(stored_ids(&store).await.is_empty());

    // A changed configuration (here: a new digest) lifts the stop.
    let changed = rapport_sync::Engine::new(
        store.clone(),
        engine_config("node-a"),
        vec![spec(
            &plugin,
            &feed.upstream.url(),
            &feed.upstream.grant(),
            "v2",
        )],
    )
    .await
    .unwrap();
    let status = store.connector_status(CONNECTOR).await.unwrap().unwrap();
    assert_eq!(status.state, ConnectorState::Idle);
    let report = changed.run_now(CONNECTOR, &|_| {}).await.unwrap();
    assert_eq!(report.inserted, 5);
}

fn delivery(token: &str, body: &str) -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: format!("/hooks/{CONNECTOR}"),
        query: String::new(),
        headers: vec![("x-feed-token".into(), token.as_bytes().to_vec())],
        body: body.as_bytes().to_vec(),
    }
}

async fn webhooks_are_verified_before_anything_is_stored(store: Store) {
    let accounts = seed(&store).await;
    let feed = Feed::start(0, 10).await;
    let host = host(None);
    let plugin = example_feed(&host).await;
    let engine = engine(&store, &feed, &plugin, "node-a").await;
    let body = serde_json::json!({ "items": [item_json(2), item_json(7)] }).to_string();

    let rejected = engine
        .handle_webhook(CONNECTOR, delivery("guess", &body))
        .await;
    assert!(
        matches!(rejected, Err(WebhookError::Rejected(_))),
        "{rejected:?}"
    );
    assert!(stored_ids(&store).await.is_empty());

    let garbled = engine
        .handle_webhook(CONNECTOR, delivery("s3cret", "{\"items\": [tr"))
        .await;
    assert!(
        matches!(garbled, Err(WebhookError::Invalid(_))),
        "{garbled:?}"
    );

    let accepted = engine
        .handle_webhook(CONNECTOR, delivery("s3cret", &body))
        .await
        .unwrap();
    assert_eq!(accepted.commit.summary.inserted, 2);
    assert!(accepted.refused.is_empty());
    // The same delivery again (senders retry) changes nothing.
    let again = engine
        .handle_webhook(CONNECTOR, delivery("s3cret", &body))
        .await
        .unwrap();
    assert_eq!(again.commit.summary.unchanged, 2);
    let event = store
        .event_by_key(&rapport_core::timeline::DedupeKey {
            connector: CONNECTOR.into(),
            source_id: item_id(7),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.event.placement.unwrap().account, accounts[2]);
    assert!(matches!(
        engine
            .handle_webhook("nope", delivery("s3cret", &body))
            .await,
        Err(WebhookError::NotFound(_))
    ));
    let status = store.connector_status(CONNECTOR).await.unwrap().unwrap();
    assert_eq!(status.events_ingested, 2);
}

async fn the_scheduler_runs_due_connectors_and_stored_requests(store: Store) {
    seed(&store).await;
    let feed = Feed::start(12, 5).await;
    let host = host(None);
    let plugin = example_feed(&host).await;
    let engine = Arc::new(engine(&store, &feed, &plugin, "node-a").await);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(Arc::clone(&engine).run(stopped));

    // A newly registered connector is due at once.
    wait_for(&store, |status| status.checkpoint.as_deref() == Some("12")).await;
    assert_eq!(stored_ids(&store).await, expected_ids(12));

    // Its next run is 10 minutes away; a stored request (from any node, e.g. the API)
    // runs it now.
    feed.set_items(15);
    store.request_sync(CONNECTOR, Utc::now()).await.unwrap();
    wait_for(&store, |status| status.checkpoint.as_deref() == Some("15")).await;
    assert_eq!(stored_ids(&store).await, expected_ids(15));
    stop.send(true).unwrap();
    running.await.unwrap();
}

async fn wait_for(store: &Store, done: impl Fn(&rapport_store::ConnectorStatus) -> bool) {
    for _ in 0..200 {
        let status = store.connector_status(CONNECTOR).await.unwrap().unwrap();
        if done(&status) && status.state == ConnectorState::Idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the connector did not get there: {:?}",
        store.connector_status(CONNECTOR).await
    );
}

/// With `runs_max` 2, a node syncs at most two connectors at once and leaves the rest
/// due: a second node takes them, so the four are shared instead of the first node
/// taking all. (Without the limit the first node to look takes all four.)
async fn nodes_share_connectors_up_to_their_run_limit(store: Store) {
    seed(&store).await;
    let host = host(None);
    let plugin = example_feed(&host).await;
    let mut feeds = Vec::new();
    let mut specs_a = Vec::new();
    let mut specs_b = Vec::new();
    for n in 0..4 {
        // Four pages of 5, 150 ms each: runs overlap for well over a poll interval.
        let feed = Feed::start(20, 5).await;
        feed.state.lock().unwrap().latency = Duration::from_millis(150);
        for specs in [&mut specs_a, &mut specs_b] {
            let mut spec = spec(&plugin, &feed.upstream.url(), &feed.upstream.grant(), "v1");
            spec.connector = plugin
                .connector(rapport_plugin_host::Grants {
                    connector_id: format!("feed-{n}"),
                    settings: std::collections::BTreeMap::from([(
                        "base_url".to_owned(),
                        feed.upstream.url(),
                    )]),
                    allowed_hosts: vec![feed.upstream.grant()],
                    allow_private_networks: true,
                    ..rapport_plugin_host::Grants::default()
                })
                .unwrap();
            specs.push(spec);
        }
        feeds.push(feed);
    }
    let config = |node: &str| rapport_sync::EngineConfig {
        runs_max: 2,
        ..engine_config(node)
    };
    let node_a = Arc::new(
        rapport_sync::Engine::new(store.clone(), config("node-a"), specs_a)
            .await
            .unwrap(),
    );
    let node_b = Arc::new(
        rapport_sync::Engine::new(store.clone(), config("node-b"), specs_b)
            .await
            .unwrap(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let a = tokio::spawn(Arc::clone(&node_a).run(stopped.clone()));
    // node-a looks first, with all four due.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = tokio::spawn(Arc::clone(&node_b).run(stopped));

    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    for _ in 0..400 {
        let statuses = store.connector_statuses().await.unwrap();
        let mut holding: std::collections::BTreeMap<String, usize> =
            std::collections::BTreeMap::new();
        for status in &statuses {
            if let Some(holder) = &status.lease_holder {
                *holding.entry(holder.clone()).or_default() += 1;
                seen.entry(holder.clone())
                    .or_default()
                    .insert(status.connector.clone());
            }
        }
        assert!(
            holding.values().all(|&n| n <= 2),
            "a node ran more than 2: {holding:?}"
        );
        if statuses.len() == 4
            && statuses
                .iter()
                .all(|status| status.checkpoint.as_deref() == Some("20"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(true).unwrap();
    a.await.unwrap();
    b.await.unwrap();
    let statuses = store.connector_statuses().await.unwrap();
    assert!(
        statuses
            .iter()
            .all(|status| status.checkpoint.as_deref() == Some("20")),
        "not every connector finished: {statuses:?}"
    );
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        ["node-a", "node-b"],
        "both nodes must have run connectors: {seen:?}"
    );
}
