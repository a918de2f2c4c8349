//! The reference connectors as an operator runs them: configured in `rapport.toml`,
//! bound by the server (which checks every setting against the plugins' manifests),
//! with provider webhooks arriving at `POST /hooks/<id>` and checked before anything is
//! stored.

use crate::connectors::support::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use rapport_server::{AppState, Config, Server, app};
use rapport_testkit::stripe::{self as fake, FakeStripe};
use tower::ServiceExt;

const SECRET: &str = "whsec_live_test";

async fn post(
    router: &axum::Router,
    path: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (StatusCode, String) {
    let mut request = Request::post(path).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::from(body.to_vec())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_webhooks_reach_the_store_only_when_signed() {
    let upstream = FakeStripe::start("rk_test").await;
    let event = upstream.push(
        "invoice.payment_failed",
        now_seconds(),
        fake::invoice(
            "in_9",
            "cus_acme",
            "ACME-9",
            12_300,
            Some("ap@acme.example"),
        ),
        None,
    );
    let body = upstream.event_json(&event);

    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        rapport_testkit::BILLING_STRIPE,
        dir.path().join("billing-stripe.wasm"),
    )
    .unwrap();
    let source = format!(
        r#"
[server]
database = "sqlite://rapport.db"

[[connector]]
id = "stripe"
plugin = "billing-stripe.wasm"
allowed_hosts = ["{grant}"]
allow_private_networks = true
[connector.settings]
base_url = "{url}"
[connector.secrets]
api_key = {{ env = "STRIPE_API_KEY" }}
webhook_secret = {{ env = "STRIPE_WEBHOOK_SECRET" }}
"#,
        grant = upstream.upstream.grant(),
        url = upstream.upstream.url(),
    );
    let env = |name: &str| match name {
        "STRIPE_API_KEY" => Some("rk_test".to_owned()),
        "STRIPE_WEBHOOK_SECRET" => Some(SECRET.to_owned()),
        _ => None,
    };
    let config = Config::parse(&source, &dir.path().join("rapport.toml"), &env).unwrap();
    let server = Server::start(config)
        .await
        .expect("the server binds the Stripe connector");
    let router = app(
        AppState::new(server.engine.clone(), server.config.webhook_body_bytes_max)
            .await
            .unwrap(),
    );
    let store = server.engine.store();
    let stored = || async {
        store
            .unmatched_events(rapport_store::Reader::Operator, Some("stripe"), None, 10)
            .await
            .unwrap()
            .events
    };

    let t = now_seconds();
    let sign = |secret: &str, t: i64, body: &[u8]| {
        format!(
            "t={t},v1={}",
            hex(&hmac_sha256(
                secret,
                &[t.to_string().as_bytes(), b".", body]
            ))
        )
    };
    let mut tampered = body.clone();
    let at = tampered.len() / 3;
    tampered[at] ^= 1;
    for (case, headers, payload) in [
        ("unsigned", vec![], body.clone()),
        (
            "stale",
            vec![("stripe-signature", sign(SECRET, t - 600, &body))],
            body.clone(),
        ),
        (
            "tampered",
            vec![("stripe-signature", sign(SECRET, t, &body))],
            tampered,
        ),
        (
            "wrong secret",
            vec![("stripe-signature", sign("whsec_guess", t, &body))],
            body.clone(),
        ),
    ] {
        let (status, problem) = post(&router, "/hooks/stripe", &headers, &payload).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {problem}");
        assert!(problem.contains("webhook-rejected"), "{case}: {problem}");
        assert!(
            stored().await.is_empty(),
            "{case}: a refused delivery stores nothing"
        );
    }

    let headers = [("stripe-signature", sign(SECRET, t, &body))];
    let (status, accepted) = post(&router, "/hooks/stripe", &headers, &body).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let events = stored().await;
    assert_eq!(
        events.len(),
        1,
        "no account has cus_acme yet: it waits, kept"
    );
    assert_eq!(events[0].event.key.source_id, event);
    assert_eq!(
        events[0].event.kind.as_str(),
        "billing.invoice.payment_failed"
    );

    // Stripe retries deliveries; the same event again is the same row.
    let (status, _) = post(&router, "/hooks/stripe", &headers, &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored().await.len(), 1);

    // And the pull finds the same event without adding a row.
    let report = server.engine.run_now("stripe", &|_| {}).await.unwrap();
    assert_eq!((report.inserted, report.unchanged), (0, 1), "{report:?}");
}
