//! A connector paging through a loopback upstream through the real host, and upstream
//! failures mapped to the contract's error kinds.

use crate::support::*;
use rapport_plugin_host::{ConnectorError, PluginError};

const FIRST_PAGE: &str = r#"{"items":[
  {"id":"a1","kind":"feed.item","at":"2026-03-01T10:00:00Z","title":"Kick-off call","customer":"cus_1"},
  {"id":"a2","kind":"feed.item","at":"2026-03-02T11:30:00+01:00","title":"Follow-up","email":"Jane@Acme.example"}
],"next":"cursor-2","more":true}"#;
const SECOND_PAGE: &str = r#"{"items":[
  {"id":"a3","kind":"feed.item","at":"2026-03-03T09:00:00Z","title":"Signed","email":"not an email"}
],"next":null,"more":false}"#;

#[tokio::test]
async fn a_connector_pages_through_an_upstream() {
    let upstream = Upstream::start(|path| match path {
        "/feed" => Reply::json(FIRST_PAGE),
        "/feed?after=cursor-2" => Reply::json(SECOND_PAGE),
        _ => Reply::status(404, "no"),
    })
    .await;
    let host = host();
    let plugin = example_feed(&host).await;
    let mut grants = grants(
        "feed",
        &[("base_url", &upstream.url())],
        &[upstream.grant()],
    );
    grants.secrets.insert("token".into(), "s3cret-token".into());
    let connector = plugin.connector(grants).unwrap();

    let first = connector.sync(None).await.unwrap();
    assert_eq!(first.checkpoint.as_deref(), Some("cursor-2"));
    assert!(first.more);
    assert_eq!(first.events.len(), 2);
    let kickoff = &first.events[0];
    assert_eq!(kickoff.key.connector, "feed");
    assert_eq!(kickoff.key.source_id, "a1");
    assert_eq!(kickoff.title, "Kick-off call");
    assert_eq!(
        kickoff.occurred_at.to_rfc3339(),
        "2026-03-01T10:00:00+00:00"
    );
    assert_eq!(kickoff.hints.external_ids[0].to_string(), "feed:cus_1");
    let follow_up = &first.events[1];
    assert_eq!(
        follow_up.occurred_at.to_rfc3339(),
        "2026-03-02T10:30:00+00:00"
    );
    assert_eq!(follow_up.hints.emails[0].as_str(), "jane@acme.example");

    let second = connector.sync(first.checkpoint.as_deref()).await.unwrap();
    assert!(!second.more);
    assert_eq!(second.events[0].key.source_id, "a3");
    // A hint that does not parse is dropped, the event kept.
    assert!(second.events[0].hints.emails.is_empty());

    // The secret reached the upstream — and only as the plugin sent it.
    let requests = upstream.requests.lock().unwrap().clone();
    assert!(
        requests[0]
            .to_lowercase()
            .contains("authorization: bearer s3cret-token")
    );
    assert!(
        !format!("{connector:?}").contains("s3cret-token"),
        "secrets never show in Debug"
    );
}

#[tokio::test]
async fn upstream_failures_map_to_contract_errors() {
    let upstream = Upstream::start(|path| match path {
        "/slow-down/feed" => Reply::status(429, "too many").header("retry-after", "7"),
        "/locked/feed" => Reply::status(401, "bad key"),
        "/broken/feed" => Reply::status(503, "down"),
        "/garbled/feed" => Reply::json("{\"items\": [tru"),
        _ => Reply::status(404, "no"),
    })
    .await;
    let host = host();
    let plugin = example_feed(&host).await;
    let sync = |prefix: &str| {
        let connector = plugin
            .connector(grants(
                "feed",
                &[("base_url", &format!("{}/{prefix}", upstream.url()))],
                &[upstream.grant()],
            ))
            .unwrap();
        async move { connector.sync(None).await.unwrap_err() }
    };
    match sync("slow-down").await {
        PluginError::Connector(ConnectorError::RateLimited { retry_after_ms, .. }) => {
            assert_eq!(retry_after_ms, 7_000)
        }
        other => panic!("{other}"),
    }
    assert!(matches!(
        sync("locked").await,
        PluginError::Connector(ConnectorError::Auth(_))
    ));
    assert!(matches!(
        sync("broken").await,
        PluginError::Connector(ConnectorError::Transient(_))
    ));
    assert!(matches!(
        sync("garbled").await,
        PluginError::Connector(ConnectorError::Transient(_))
    ));
    let connector = plugin
        .connector(grants("feed", &[], &[upstream.grant()]))
        .unwrap();
    match connector.check().await.unwrap_err() {
        PluginError::Connector(ConnectorError::Config(message)) => {
            assert_eq!(message, "the setting `base_url` is required")
        }
        other => panic!("{other}"),
    }
}
