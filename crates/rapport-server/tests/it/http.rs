//! The HTTP surface driven through the router (no socket): webhook intake end to end
//! through the real plugin and store, and the health endpoints.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use rapport_server::{AppState, Config, Server, app};
use rapport_testkit::feed::item_json;
use std::path::Path;
use tower::ServiceExt;

async fn server(dir: &Path) -> Server {
    std::fs::copy(rapport_testkit::EXAMPLE_FEED, dir.join("example-feed.wasm")).unwrap();
    let source = r#"
[server]
database = "sqlite://rapport.db"
webhook_body_bytes_max = 2048

[[connector]]
id = "feed"
plugin = "example-feed.wasm"
settings = { base_url = "http://127.0.0.1:9" }
secrets = { webhook_token = { env = "FEED_HOOK_TOKEN" } }
"#;
    let env = |name: &str| (name == "FEED_HOOK_TOKEN").then(|| "s3cret".to_owned());
    let config = Config::parse(source, &dir.join("rapport.toml"), &env).unwrap();
    Server::start(config).await.unwrap()
}

fn delivery(connector: &str, token: &str, body: String) -> Request<Body> {
    Request::post(format!("/hooks/{connector}"))
        .header("x-feed-token", token)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

async fn read(response: axum::response::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test]
async fn webhooks_are_verified_capped_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let router = app(
        AppState::new(server.engine.clone(), server.config.webhook_body_bytes_max)
            .await
            .unwrap(),
    );
    let body = serde_json::json!({ "items": [item_json(1), item_json(2)] }).to_string();

    let (status, content_type, problem) = read(
        router
            .clone()
            .oneshot(delivery("feed", "guess", body.clone()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(content_type, "application/problem+json");
    assert!(
        problem.contains("webhook-rejected") && problem.contains("x-feed-token"),
        "{problem}"
    );
    let store = server.engine.store();
    assert!(
        store
            .unmatched_events(rapport_store::Reader::Operator, None, None, 10)
            .await
            .unwrap()
            .events
            .is_empty(),
        "a rejected delivery stores nothing"
    );

    let (status, _, accepted) = read(
        router
            .clone()
            .oneshot(delivery("feed", "s3cret", body))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let accepted: serde_json::Value = serde_json::from_str(&accepted).unwrap();
    assert_eq!(accepted["inserted"], 2);
    assert_eq!(accepted["waiting"], 2, "no account claims them yet");
    assert_eq!(
        store
            .unmatched_events(rapport_store::Reader::Operator, None, None, 10)
            .await
            .unwrap()
            .events
            .len(),
        2
    );

    let huge =
        serde_json::json!({ "items": (0..40).map(item_json).collect::<Vec<_>>() }).to_string();
    assert!(huge.len() > 2048);
    let (status, content_type, problem) = read(
        router
            .clone()
            .oneshot(delivery("feed", "s3cret", huge))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // A problem document like every other refusal, saying what to change.
    assert_eq!(content_type, "application/problem+json");
    let problem: serde_json::Value = serde_json::from_str(&problem).unwrap();
    assert_eq!(problem["status"], 413);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("webhook_body_bytes_max"),
        "{problem}"
    );

    let (status, _, garbled) = read(
        router
            .clone()
            .oneshot(delivery("feed", "s3cret", "{\"items\": [".into()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{garbled}");

    let (status, _, _) = read(
        router
            .clone()
            .oneshot(delivery("nope", "s3cret", "{}".into()))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn health_and_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let router = app(AppState::new(server.engine.clone(), 1024).await.unwrap());
    let (status, _, body) = read(
        router
            .clone()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (status, _, body) = read(
        router
            .clone()
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready"));
    server.engine.store().close().await;
    let (status, content_type, _) = read(
        router
            .oneshot(Request::get("/readyz").body(Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a closed database is not ready"
    );
    assert_eq!(content_type, "application/problem+json");
}

/// 24 deliveries at once to a connector whose webhook loops: that connector answers
/// 503 with `Retry-After` for what it cannot take (and 400 for what ran past its
/// deadline, which would fail again), while another connector's webhook, `/healthz`
/// and the API are served as usual.
/// One bad event in a delivery: the good ones are stored, the sender gets a 2xx (so
/// it stops retrying what would fail again), and the refusal is on the status.
#[tokio::test]
async fn a_delivery_with_one_invalid_event_keeps_the_rest_and_stops_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(rapport_testkit::HOSTILE, dir.path().join("hostile.wasm")).unwrap();
    let source = r#"
[server]
database = "sqlite://rapport.db"

[[connector]]
id = "floaty"
plugin = "hostile.wasm"
settings = { attack = "none", webhook_attack = "float", value = "inf" }
"#;
    let config = Config::parse(source, &dir.path().join("rapport.toml"), &|_| None).unwrap();
    let server = Server::start(config).await.unwrap();
    let router = app(AppState::new(server.engine.clone(), 1 << 20).await.unwrap());
    for attempt in ["first", "retried"] {
        let (status, content_type, answer) = read(
            router
                .clone()
                .oneshot(delivery("floaty", "-", "{}".into()))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{attempt}: {answer}");
        assert_eq!(content_type, "application/json");
        let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
        let refused = answer["refused"].as_array().unwrap();
        assert_eq!(refused.len(), 1, "{answer}");
        assert_eq!(refused[0]["source_id"], "float");
        assert!(refused[0]["reason"].as_str().unwrap().contains("finite"));
        let stored = answer["inserted"].as_u64().unwrap() + answer["unchanged"].as_u64().unwrap();
        assert_eq!(stored, 1, "{attempt}: the good event is kept: {answer}");
    }
    let status = server
        .engine
        .store()
        .connector_status("floaty")
        .await
        .unwrap()
        .unwrap();
    let error = status.last_error.expect("the refusal is on the status");
    assert_eq!(error.source_id.as_deref(), Some("float"));
    assert!(error.message.contains("1 of 2 events"), "{}", error.message);
}

#[tokio::test]
async fn a_webhook_flood_at_one_connector_costs_that_connector_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        rapport_testkit::EXAMPLE_FEED,
        dir.path().join("example-feed.wasm"),
    )
    .unwrap();
    std::fs::copy(rapport_testkit::HOSTILE, dir.path().join("hostile.wasm")).unwrap();
    let source = r#"
[server]
database = "sqlite://rapport.db"

[plugins]
connector_calls_max = 2
call_deadline = "2s"
webhook_wait = "100ms"

[[connector]]
id = "flooded"
plugin = "hostile.wasm"
settings = { attack = "none", webhook_attack = "loop" }

[[connector]]
id = "feed"
plugin = "example-feed.wasm"
settings = { base_url = "http://127.0.0.1:9" }
secrets = { webhook_token = { env = "FEED_HOOK_TOKEN" } }
"#;
    let env = |name: &str| (name == "FEED_HOOK_TOKEN").then(|| "s3cret".to_owned());
    let config = Config::parse(source, &dir.path().join("rapport.toml"), &env).unwrap();
    let server = Server::start(config).await.unwrap();
    let router = app(AppState::new(server.engine.clone(), 1 << 20).await.unwrap());
    let flood: Vec<_> = (0..24)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                let response = router
                    .oneshot(delivery("flooded", "-", "{}".into()))
                    .await
                    .unwrap();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|value| value.to_str().unwrap().to_owned());
                let (status, content_type, body) = read(response).await;
                (status, content_type, body, retry_after)
            })
        })
        .collect();
    tokio::task::yield_now().await;
    let body = serde_json::json!({ "items": [item_json(1)] }).to_string();
    let (status, _, answer) = read(
        router
            .clone()
            .oneshot(delivery("feed", "s3cret", body))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "another connector's webhook: {answer}"
    );
    let (status, _, _) = read(
        router
            .clone()
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = read(
        router
            .clone()
            .oneshot(
                Request::get("/api/openapi.json")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        flood.iter().any(|task| !task.is_finished()),
        "all of that was answered while the flood still ran"
    );
    let mut busy = 0;
    for task in flood {
        let (status, content_type, body, retry_after) = task.await.unwrap();
        assert_eq!(content_type, "application/problem+json", "{body}");
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(body.contains("connector-busy"), "{body}");
                assert!(retry_after.is_some_and(|seconds| seconds.parse::<u64>().unwrap() >= 1));
                busy += 1;
            }
            StatusCode::BAD_REQUEST => assert!(body.contains("deadline"), "{body}"),
            other => panic!("{other}: {body}"),
        }
    }
    assert!(
        busy >= 20,
        "only the connector's two slots ran: {busy} refused"
    );
    server.engine.store().close().await;
}

/// A connector's own check, run by an admin from the API and from the Connectors page:
/// its outcome (here a refused connection: nothing listens where the feed points) is
/// recorded on the status and shown; others may not run it.
#[tokio::test]
async fn admins_run_a_connectors_check_and_see_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path()).await;
    let router = app(AppState::new(server.engine.clone(), 1 << 20).await.unwrap());
    let store = server.engine.store();
    let hire = |name: &str, is_admin: bool| rapport_core::staff::NewStaff {
        name: name.into(),
        email: rapport_core::account::EmailAddress::parse(&format!("{name}@rapport.example"))
            .unwrap(),
        level: rapport_core::staff::Level::Vp,
        reports_to: None,
        is_admin,
    };
    let now = chrono::Utc::now();
    let admin = store.create_staff(hire("ada", true), now).await.unwrap();
    let vera = store.create_staff(hire("vera", false), now).await.unwrap();
    let token = |id| async move {
        store
            .create_api_token(id, "test", None, now)
            .await
            .unwrap()
            .secret
    };
    let (admin_token, vera_token) = (token(admin.id).await, token(vera.id).await);
    let check = |token: String| {
        Request::post("/api/v1/connectors/feed/check")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, _) = read(router.clone().oneshot(check(vera_token)).await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, body) = read(router.clone().oneshot(check(admin_token)).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["last_check_ok"], false);
    assert!(
        view["last_check_message"]
            .as_str()
            .is_some_and(|message| !message.is_empty()),
        "{view}"
    );

    // The same from the web page, through its form.
    let session = store
        .start_web_session(admin.id, now + chrono::Duration::hours(1), now)
        .await
        .unwrap()
        .unwrap();
    let cookie = format!("rapport_session={}", session.secret);
    let form = format!("csrf={}", session.session.csrf_token);
    let (status, _, _) = read(
        router
            .clone()
            .oneshot(
                Request::post("/connectors/feed/check")
                    .header("host", "rapport.test")
                    .header("cookie", &cookie)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(Body::from(form))
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _, page) = read(
        router
            .oneshot(
                Request::get("/connectors")
                    .header("host", "rapport.test")
                    .header("cookie", &cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Check settings"), "the admin sees the button");
    assert!(page.contains("failed "), "the failed check is shown");
    server.engine.store().close().await;
}

/// A node on a real socket with short connection bounds: (address, stop, task).
async fn serve_with_short_timeouts(
    dir: &Path,
) -> (
    std::net::SocketAddr,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let source = r#"
[server]
database = "sqlite://rapport.db"
header_read_timeout = "1s"
request_body_timeout = "1s"
idle_timeout = "2s"
connections_max = 50
"#;
    let config = Config::parse(source, &dir.join("rapport.toml"), &|_| None).unwrap();
    assert_eq!(config.http.connections_max, 50);
    let server = Server::start(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move { server.serve_on(listener, stopping).await.unwrap() });
    (address, stop, task)
}

/// Reads until the server closes the connection (or `within` passes): what it sent.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    closed.ok().map(|()| received)
}

/// Generous: the bounds are 1–2 s; this only tells "closed by the server" from
/// "left open", never how fast.
const CLOSED_WITHIN: std::time::Duration = std::time::Duration::from_secs(20);

#[tokio::test]
async fn slow_and_silent_clients_are_cut_off_and_connections_are_capped() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let (address, stop, task) = serve_with_short_timeouts(dir.path()).await;
    let connect = || tokio::net::TcpStream::connect(address);

    // Sends nothing at all.
    let mut silent = connect().await.unwrap();
    // Sends half a request's headers, then nothing.
    let mut half = connect().await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: rapport.test\r\n")
        .await
        .unwrap();
    // Sends the headers of a POST and a tenth of its body.
    let mut slow_body = connect().await.unwrap();
    slow_body
        .write_all(
            b"POST /hooks/none HTTP/1.1\r\nHost: rapport.test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"items\":",
        )
        .await
        .unwrap();
    for (name, stream) in [
        ("silent", &mut silent),
        ("half headers", &mut half),
        ("slow body", &mut slow_body),
    ] {
        assert!(
            read_until_closed(stream, CLOSED_WITHIN).await.is_some(),
            "a {name} connection was left open"
        );
    }

    // Trickles its headers a byte at a time, each well inside any idle bound: the
    // header deadline counts from the first byte, so it is still cut off.
    let mut trickle = connect().await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: rapport.test\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_off = false;
    for byte in request {
        if trickle.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if !cut_off {
        // Every byte went into the socket's buffer; the answer tells.
        let answer = read_until_closed(&mut trickle, CLOSED_WITHIN)
            .await
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&answer).contains("200 OK"),
            "a trickled request was served"
        );
    }

    // A keep-alive connection is served, then closed once idle.
    let mut idle = connect().await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: rapport.test\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut idle, CLOSED_WITHIN)
        .await
        .expect("an idle keep-alive connection was left open");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200 OK"));

    // 300 silent connections against a cap of 50: none holds the node for good — a
    // real request is served once the silent ones are cut off, and all are closed.
    let mut crowd = Vec::new();
    for _ in 0..300 {
        crowd.push(connect().await.unwrap());
    }
    let mut real = connect().await.unwrap();
    real.write_all(b"GET /healthz HTTP/1.1\r\nHost: rapport.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut real, std::time::Duration::from_secs(60))
        .await
        .expect("a real request behind 300 silent connections was never answered");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200 OK"));
    for (n, stream) in crowd.iter_mut().enumerate() {
        assert!(
            read_until_closed(stream, std::time::Duration::from_secs(60))
                .await
                .is_some(),
            "silent connection {n} was left open"
        );
    }

    stop.send(true).unwrap();
    task.await.unwrap();
}
