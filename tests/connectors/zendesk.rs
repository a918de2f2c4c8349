//! support-zendesk through the real host against a fake Zendesk serving the recorded
//! tickets, users, organizations and audits: the cursor export, audits, deletes,
//! errors, and webhook signatures.

use crate::connectors::support::*;
use rapport_plugin_host::{Connector, ConnectorError, PluginHost};
use rapport_testkit::upstream::Reply;
use rapport_testkit::zendesk::{self as fake, FakeZendesk};
use serde_json::json;

const EMAIL: &str = "agent@acme.example";
const TOKEN: &str = "zd-token";
const SECRET: &str = "dGhpcyBpcyBhIHNpZ25pbmcgc2VjcmV0";

/// The fixture organization `Rebel Alliance` and the fixture user `nukosuke`.
fn org_and_requester() -> (u64, u64) {
    (
        fake::organizations()[0]["id"].as_u64().unwrap(),
        fake::users()[1]["id"].as_u64().unwrap(),
    )
}

async fn zendesk(host: &PluginHost, upstream: &FakeZendesk, page_size: &str) -> Connector {
    connector(
        host,
        rapport_testkit::SUPPORT_ZENDESK,
        "zendesk",
        &upstream.upstream.grant(),
        &[
            ("base_url", &upstream.upstream.url()),
            ("email", EMAIL),
            ("page_size", page_size),
        ],
        &[("api_token", TOKEN), ("webhook_secret", SECRET)],
    )
    .await
}

/// Two tickets; the first with a reply that moved it to open, then solved.
fn seed(upstream: &FakeZendesk) {
    let (org, requester) = org_and_requester();
    upstream.upsert_ticket(fake::ticket(
        101,
        "Invoice PDF is blank",
        "solved",
        org,
        requester,
        "2026-02-02T09:00:00Z",
        "2026-02-03T16:00:00Z",
    ));
    upstream.add_audit(fake::audit(
        9001,
        101,
        "2026-02-02T11:30:00Z",
        7001,
        "We are looking into it.",
        "new",
        "open",
    ));
    upstream.add_audit(fake::audit(
        9002,
        101,
        "2026-02-03T16:00:00Z",
        7003,
        "Fixed in today's release.",
        "open",
        "solved",
    ));
    upstream.upsert_ticket(fake::ticket(
        102,
        "SSO login loops",
        "new",
        org,
        requester,
        "2026-02-04T08:00:00Z",
        "2026-02-04T08:00:00Z",
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_export_with_audits_yields_tickets_transitions_and_comments() {
    let upstream = FakeZendesk::start(EMAIL, TOKEN).await;
    seed(&upstream);
    let host = host();
    let zendesk = zendesk(&host, &upstream, "1").await;

    let pages = sync_all(&zendesk, None).await;
    assert_eq!(pages.len(), 2, "one ticket per page");
    let events: Vec<_> = pages.iter().flat_map(|page| &page.events).collect();
    let summary: Vec<(&str, &str)> = events
        .iter()
        .map(|event| (event.kind.as_str(), event.key.source_id.as_str()))
        .collect();
    let solved_at = chrono::DateTime::parse_from_rfc3339("2026-02-03T16:00:00Z")
        .unwrap()
        .timestamp();
    let opened_at = chrono::DateTime::parse_from_rfc3339("2026-02-02T11:30:00Z")
        .unwrap()
        .timestamp();
    assert_eq!(
        summary,
        vec![
            ("support.ticket.created", "ticket:101"),
            ("support.comment.added", "comment:7001"),
            (
                "support.ticket.updated",
                &*format!("ticket:101:status:{opened_at}:open")
            ),
            ("support.comment.added", "comment:7003"),
            (
                "support.ticket.solved",
                &*format!("ticket:101:status:{solved_at}:solved")
            ),
            ("support.ticket.created", "ticket:102"),
        ]
    );
    let ticket = events[0];
    assert_eq!(ticket.title, "Ticket #101 opened: Invoice PDF is blank");
    assert_eq!(
        ticket.url.as_deref(),
        Some(&*format!("{}/agent/tickets/101", upstream.upstream.url()))
    );
    let hints = &ticket.hints;
    assert_eq!(hints.emails[0].to_string(), "nukosuke@lavabit.com");
    assert_eq!(
        hints.external_ids[0].to_string(),
        format!("zendesk_org:{}", org_and_requester().0)
    );
    assert!(
        hints
            .domains
            .iter()
            .any(|domain| domain.to_string() == "hoth.com")
    );
    assert_eq!(
        events[1].title,
        "Reply on ticket #101: Invoice PDF is blank"
    );

    // The cursor needs escaping and the second request carried it intact.
    let requests = upstream.upstream.requests.lock().unwrap().clone();
    assert!(requests[0].contains("start_time=0"));
    assert!(
        requests
            .iter()
            .any(|head| head.contains("cursor=MTU3%2F1%2B%3D%3D"))
    );

    // Caught up: the stored cursor yields nothing new.
    let checkpoint = pages.last().unwrap().checkpoint.clone();
    let idle = sync_all(&zendesk, checkpoint.clone()).await;
    assert!(idle.iter().all(|page| page.events.is_empty()));

    // The customer writes again: the ticket reopens; a spam ticket is deleted.
    let (org, requester) = org_and_requester();
    upstream.add_audit(fake::audit(
        9003,
        101,
        "2026-02-05T10:00:00Z",
        7005,
        "Still blank for me.",
        "solved",
        "open",
    ));
    upstream.upsert_ticket(fake::ticket(
        101,
        "Invoice PDF is blank",
        "open",
        org,
        requester,
        "2026-02-02T09:00:00Z",
        "2026-02-05T10:00:00Z",
    ));
    let mut spam = fake::ticket(
        103,
        "WIN A PRIZE",
        "deleted",
        org,
        requester,
        "2026-02-05T11:00:00Z",
        "2026-02-05T11:05:00Z",
    );
    spam["status"] = json!("deleted");
    upstream.upsert_ticket(spam);

    let later = sync_all(&zendesk, idle.last().unwrap().checkpoint.clone()).await;
    let kinds: Vec<&str> = later
        .iter()
        .flat_map(|page| &page.events)
        .map(|event| event.kind.as_str())
        .collect();
    assert!(kinds.contains(&"support.ticket.reopened"), "{kinds:?}");
    let deleted: Vec<&str> = later
        .iter()
        .flat_map(|page| &page.deleted)
        .map(String::as_str)
        .collect();
    assert_eq!(deleted, vec!["ticket:103"]);
    // The ticket event is re-sent with a higher version, so its status follows.
    let refreshed = later
        .iter()
        .flat_map(|page| &page.events)
        .find(|event| event.key.source_id == "ticket:101")
        .unwrap();
    assert!(refreshed.source_version > ticket.source_version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_outages_and_bad_credentials_are_told_apart() {
    let upstream = FakeZendesk::start(EMAIL, TOKEN).await;
    seed(&upstream);
    let host = host();
    let zendesk = zendesk(&host, &upstream, "100").await;

    upstream.fault(Reply::status(429, "Rate limit exceeded").header("retry-after", "42"));
    assert!(matches!(
        connector_error(zendesk.sync(None).await),
        ConnectorError::RateLimited {
            retry_after_ms: 42_000,
            ..
        }
    ));
    // An outage while reading a ticket's audits fails the whole page, so no ticket is
    // committed without its history; the retry reads it all.
    upstream.fault_audits(Reply::status(503, "Maintenance"));
    assert!(matches!(
        connector_error(zendesk.sync(None).await),
        ConnectorError::Transient(_)
    ));
    let retried = zendesk.sync(None).await.unwrap();
    assert_eq!(retried.events.len(), 6);
    zendesk.check().await.unwrap();

    let wrong = connector(
        &host,
        rapport_testkit::SUPPORT_ZENDESK,
        "zendesk",
        &upstream.upstream.grant(),
        &[("base_url", &upstream.upstream.url()), ("email", EMAIL)],
        &[("api_token", "revoked")],
    )
    .await;
    assert!(matches!(
        connector_error(wrong.check().await),
        ConnectorError::Auth(_)
    ));

    let unconfigured = connector(
        &host,
        rapport_testkit::SUPPORT_ZENDESK,
        "zendesk",
        &upstream.upstream.grant(),
        &[("base_url", &upstream.upstream.url())],
        &[],
    )
    .await;
    match connector_error(unconfigured.sync(None).await) {
        ConnectorError::Config(message) => assert!(message.contains("oauth_token"), "{message}"),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_trusted_only_with_a_fresh_valid_signature() {
    let upstream = FakeZendesk::start(EMAIL, TOKEN).await;
    let host = host();
    let zendesk = zendesk(&host, &upstream, "100").await;
    let (org, _) = org_and_requester();
    let now = chrono::Utc::now();
    let body = json!({
        "type": "zen:event-type:ticket.status_changed",
        "id": "6f8a1b2c-0000-4000-8000-000000000001",
        "time": now.to_rfc3339(),
        "subject": "zen:ticket:101",
        "detail": { "id": "101", "subject": "Invoice PDF is blank", "status": "SOLVED",
                    "organization_id": org.to_string() },
        "event": { "previous": "OPEN", "current": "SOLVED" }
    })
    .to_string()
    .into_bytes();
    let stamp = |at: chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let deliver = |signature: Option<String>, timestamp: String, body: &[u8]| {
        let mut headers = vec![("X-Zendesk-Webhook-Signature-Timestamp", timestamp)];
        if let Some(signature) = signature {
            headers.push(("X-Zendesk-Webhook-Signature", signature));
        }
        delivery("/hooks/zendesk", &headers, body)
    };
    let sign =
        |timestamp: &str, body: &[u8]| base64(&hmac_sha256(SECRET, &[timestamp.as_bytes(), body]));

    let fresh = stamp(now);
    let delivered = zendesk
        .handle_webhook(deliver(Some(sign(&fresh, &body)), fresh.clone(), &body))
        .await
        .expect("a valid delivery");
    assert!(delivered.refused.is_empty(), "{:?}", delivered.refused);
    let events = delivered.events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind.as_str(), "support.ticket.solved");
    assert_eq!(
        events[0].hints.external_ids[0].to_string(),
        format!("zendesk_org:{org}")
    );

    let stale = stamp(now - chrono::Duration::seconds(400));
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let refused = [
        (
            "stale",
            deliver(Some(sign(&stale, &body)), stale.clone(), &body),
        ),
        (
            "tampered",
            deliver(Some(sign(&fresh, &body)), fresh.clone(), &tampered),
        ),
        (
            "timestamp swapped",
            deliver(
                Some(sign(&fresh, &body)),
                stamp(now + chrono::Duration::seconds(1)),
                &body,
            ),
        ),
        ("missing", deliver(None, fresh.clone(), &body)),
    ];
    for (case, request) in refused {
        match connector_error(zendesk.handle_webhook(request).await) {
            ConnectorError::Auth(_) => {}
            other => panic!("{case}: expected an auth refusal, got {other:?}"),
        }
    }
}
