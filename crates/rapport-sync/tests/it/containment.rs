//! What the engine makes of a connector's own faults: a plugin that returns what the
//! contract refuses is retried a bounded number of times and then stopped, with the
//! event and the reason on its status; its `check` runs first after a configuration
//! change; a refused webhook delivery is answered once and recorded.

use crate::support::{engine_config, host};
use rapport_plugin_host::{Grants, Plugin, WebhookRequest};
use rapport_store::{ConnectorState, Store};
use rapport_sync::{ConnectorSpec, Engine, FailureKind, Next, RunOutcome};
use rapport_testkit::on_both_backends;
use std::collections::BTreeMap;

on_both_backends!(
    a_plugin_fault_stops_its_connector_after_bounded_tries_naming_the_event,
    the_check_runs_first_after_a_configuration_change,
    a_webhook_delivery_keeps_its_good_events_and_refuses_each_invalid_one,
);

const ID: &str = "hostile";

async fn hostile(host: &rapport_plugin_host::PluginHost) -> Plugin {
    host.load(std::path::Path::new(rapport_testkit::HOSTILE))
        .await
        .expect("load hostile")
}

fn spec(plugin: &Plugin, settings: &[(&str, &str)], fingerprint: &str) -> ConnectorSpec {
    let connector = plugin
        .connector(Grants {
            connector_id: ID.into(),
            settings: settings
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect::<BTreeMap<_, _>>(),
            ..Grants::default()
        })
        .unwrap();
    ConnectorSpec {
        connector,
        schedule: "every 10m".parse().unwrap(),
        enabled: true,
        fingerprint: fingerprint.into(),
    }
}

async fn engine(store: &Store, spec: ConnectorSpec) -> Engine {
    Engine::new(store.clone(), engine_config("node-a"), vec![spec])
        .await
        .unwrap()
}

async fn a_plugin_fault_stops_its_connector_after_bounded_tries_naming_the_event(store: Store) {
    let host = host(None);
    let plugin = hostile(&host).await;
    let forged = [("attack", "kind"), ("kind", "billing.subscription.created")];
    let engine = engine(&store, spec(&plugin, &forged, "v1")).await;
    // Retried with backoff twice, stopped at the third: not forever.
    for attempt in 1..=3 {
        let report = engine.run_now(ID, &|_| {}).await.unwrap();
        let RunOutcome::Failed {
            kind,
            message,
            next,
        } = report.outcome
        else {
            panic!("attempt {attempt}: {:?}", report.outcome);
        };
        assert_eq!(kind, FailureKind::Plugin);
        assert!(
            message.contains("forged") && message.contains("not among the kinds"),
            "{message}"
        );
        assert_eq!(
            matches!(next, Next::Stop),
            attempt == 3,
            "attempt {attempt}"
        );
    }
    let status = store.connector_status(ID).await.unwrap().unwrap();
    assert_eq!(status.state, ConnectorState::Stopped);
    let error = status.last_error.unwrap();
    assert_eq!(error.kind, "plugin");
    assert_eq!(error.source_id.as_deref(), Some("forged"));
    assert_eq!(status.events_ingested, 0, "nothing was stored");

    // A new plugin build or configuration lifts the stop.
    let fixed = engine_with(&store, spec(&plugin, &[("attack", "none")], "v2")).await;
    assert_eq!(
        store.connector_status(ID).await.unwrap().unwrap().state,
        ConnectorState::Idle
    );
    let report = fixed.run_now(ID, &|_| {}).await.unwrap();
    assert_eq!(
        (report.outcome, report.inserted),
        (RunOutcome::Completed, 1)
    );
}

async fn engine_with(store: &Store, spec: ConnectorSpec) -> Engine {
    engine(store, spec).await
}

async fn the_check_runs_first_after_a_configuration_change(store: Store) {
    let host = host(None);
    let plugin = hostile(&host).await;
    let engine = engine(&store, spec(&plugin, &[("attack", "check-fails")], "v1")).await;
    let report = engine.run_now(ID, &|_| {}).await.unwrap();
    let RunOutcome::Failed {
        kind,
        message,
        next,
    } = report.outcome
    else {
        panic!("{:?}", report.outcome);
    };
    assert_eq!((kind, next), (FailureKind::Auth, Next::Stop));
    assert!(message.contains("its check failed"), "{message}");
    assert_eq!(report.pages, 0, "no page was asked for");
    let status = store.connector_status(ID).await.unwrap().unwrap();
    let check = status.last_check.unwrap();
    assert!(!check.ok);
    assert!(
        check.message.unwrap().contains("refuses, as asked"),
        "the check's own words"
    );
    assert_eq!(status.state, ConnectorState::Stopped);

    // After a change that passes the check, it runs once, then not again.
    let engine = engine_with(&store, spec(&plugin, &[("attack", "none")], "v2")).await;
    let report = engine.run_now(ID, &|_| {}).await.unwrap();
    assert_eq!(report.outcome, RunOutcome::Completed);
    let checked = store.connector_status(ID).await.unwrap().unwrap();
    let first = checked.last_check.clone().unwrap();
    assert!(first.ok && !checked.check_due);
    engine.run_now(ID, &|_| {}).await.unwrap();
    let again = store.connector_status(ID).await.unwrap().unwrap();
    assert_eq!(again.last_check, Some(first), "not checked again");

    // On demand, recorded too.
    let outcome = engine.check_now(ID).await.unwrap();
    assert!(outcome.is_ok());
    let on_demand = store.connector_status(ID).await.unwrap().unwrap();
    assert!(on_demand.last_check.unwrap().at >= again.last_check.unwrap().at);
}

async fn a_webhook_delivery_keeps_its_good_events_and_refuses_each_invalid_one(store: Store) {
    let host = host(None);
    let plugin = hostile(&host).await;
    let engine = engine(
        &store,
        spec(
            &plugin,
            &[
                ("attack", "none"),
                ("webhook_attack", "float"),
                ("value", "nan"),
            ],
            "v1",
        ),
    )
    .await;
    let delivery = WebhookRequest {
        method: "POST".into(),
        path: format!("/hooks/{ID}"),
        ..WebhookRequest::default()
    };
    // Taken, not failed: the good event is stored, the bad one refused alone, and
    // the sender has nothing to retry (retrying would fail the same way).
    let accepted = engine.handle_webhook(ID, delivery).await.unwrap();
    assert_eq!(accepted.commit.summary.inserted, 1);
    assert_eq!(accepted.refused.len(), 1, "{:?}", accepted.refused);
    assert_eq!(accepted.refused[0].source_id, "float");
    assert_eq!(accepted.refused[0].index, 1);
    assert!(accepted.refused[0].reason.contains("finite number"));
    let status = store.connector_status(ID).await.unwrap().unwrap();
    let recorded = status.last_error.unwrap();
    assert_eq!(recorded.kind, "plugin");
    assert_eq!(recorded.source_id.as_deref(), Some("float"));
    assert!(
        recorded.message.contains("webhook delivery was refused")
            && recorded.message.contains("1 of 2 events")
            && recorded.message.contains("finite number"),
        "{}",
        recorded.message
    );
    // The connector's own runs are untouched by it.
    assert_eq!(status.state, ConnectorState::Idle);
}
