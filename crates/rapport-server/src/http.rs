//! The HTTP surface: the JSON API and its OpenAPI document, webhook intake, health,
//! readiness and metrics, behind one middleware that counts, logs and bounds requests.

use crate::api::{self, API_BODY_BYTES_MAX, cursor::CursorSigner};
use crate::metrics::{self, Metrics};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rapport_plugin_host::WebhookRequest;
use rapport_sync::{Engine, WebhookError};
use std::sync::Arc;
use std::time::Duration;

/// Longest a request may take before it is answered with a 503 problem.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The sync engine (and through it, the store).
    pub engine: Arc<Engine>,
    /// Most bytes a webhook body may have; larger ones get 413 before any plugin runs.
    pub webhook_body_bytes_max: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    pub(crate) cursors: CursorSigner,
    pub(crate) metrics: Arc<Metrics>,
    /// The connectors people connect accounts for (none unless configured).
    pub connections: Arc<crate::connections::Connections>,
    /// The OpenID Connect providers staff sign in with (none unless configured).
    pub sign_in: Arc<crate::oidc::SignInProviders>,
}

impl AppState {
    /// The state for `engine`, with the deployment's cursor key (made in the database
    /// by the first node that asks).
    pub async fn new(
        engine: Arc<Engine>,
        webhook_body_bytes_max: usize,
    ) -> anyhow::Result<AppState> {
        let key = engine.store().server_key("api-cursor").await?;
        Ok(AppState {
            engine,
            webhook_body_bytes_max,
            request_timeout: REQUEST_TIMEOUT,
            cursors: CursorSigner::new(&key),
            metrics: Arc::new(Metrics::default()),
            connections: Arc::default(),
            sign_in: Arc::default(),
        })
    }

    /// With the deployment's connectable connectors.
    pub fn with_connections(
        mut self,
        connections: Arc<crate::connections::Connections>,
    ) -> AppState {
        self.connections = connections;
        self
    }

    /// With the deployment's OpenID Connect sign-in providers.
    pub fn with_sign_in(mut self, sign_in: Arc<crate::oidc::SignInProviders>) -> AppState {
        self.sign_in = sign_in;
        self
    }
}

/// The router, without a socket: `tower::ServiceExt::oneshot` drives it in tests.
pub fn app(state: AppState) -> Router {
    let hooks = Router::new()
        .route("/hooks/{connector}", post(webhook))
        .layer(DefaultBodyLimit::max(state.webhook_body_bytes_max));
    let (api, openapi) = api::router().split_for_parts();
    let openapi = Arc::new(
        openapi
            .to_pretty_json()
            .expect("the OpenAPI document serializes"),
    );
    let api = api.layer(DefaultBodyLimit::max(API_BODY_BYTES_MAX));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .route(
            "/api/openapi.json",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    openapi.as_str().to_owned(),
                )
            }),
        )
        .merge(hooks)
        .merge(api)
        .merge(crate::web::router())
        .fallback(|uri: Uri| async move {
            // API clients get a problem document; people get a page.
            if uri.path().starts_with("/api") {
                problem(
                    StatusCode::NOT_FOUND,
                    "not-found",
                    &format!(
                        "nothing is served at {}: the API is under /api/v1 (see /api/openapi.json)",
                        uri.path()
                    ),
                )
            } else {
                crate::web::not_found_page(uri.path())
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::audit::record_writes,
        ))
        .layer(axum::middleware::from_fn(bound_query))
        .layer(axum::middleware::from_fn(crate::web::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
        .with_state(state)
}

/// Refuses, before routing, a query string longer than any route takes: a 422 problem
/// for the API, a page for people. (Each API parameter is bounded again where it is
/// parsed.)
async fn bound_query(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if let Some(detail) = crate::api::extract::query_too_long(request.uri().query()) {
        return if request.uri().path().starts_with("/api") {
            problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &detail)
        } else {
            crate::web::invalid_page(&detail)
        };
    }
    next.run(request).await
}

/// An `application/problem+json` response (RFC 9457) with a stable `type`.
pub(crate) fn problem(status: StatusCode, kind: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("https://rapport.dev/problems/{kind}"),
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn webhook(
    State(state): State<AppState>,
    Path(connector): Path<String>,
    method: Method,
    uri: Uri,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                &format!(
                    "the delivery is larger than this server takes ({} bytes): raise webhook_body_bytes_max in rapport.toml if the sender's deliveries are this big",
                    state.webhook_body_bytes_max
                ),
            );
        }
        Err(rejection) => {
            return problem(
                rejection.status(),
                "webhook-invalid",
                &format!(
                    "the delivery's body could not be read: {}",
                    rejection.body_text()
                ),
            );
        }
    };
    let request = WebhookRequest {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: query.unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
    };
    match state.engine.handle_webhook(&connector, request).await {
        Ok(accepted) => {
            let commit = accepted.commit;
            state
                .metrics
                .webhook_events(&connector, commit.summary.inserted + commit.summary.updated);
            tracing::info!(
                %connector,
                inserted = commit.summary.inserted,
                updated = commit.summary.updated,
                unchanged = commit.summary.unchanged,
                refused = accepted.refused.len(),
                "webhook accepted"
            );
            // 200 even when events were refused: the same delivery would be refused
            // again, so the sender must not retry it; what was refused, and why, is
            // in the answer and on the connector's status.
            let refused: Vec<_> = accepted
                .refused
                .iter()
                .map(|event| {
                    serde_json::json!({
                        "index": event.index,
                        "source_id": event.source_id,
                        "reason": event.reason,
                    })
                })
                .collect();
            (
                StatusCode::OK,
                axum::Json(serde_json::json!({
                    "inserted": commit.summary.inserted,
                    "updated": commit.summary.updated,
                    "unchanged": commit.summary.unchanged,
                    "waiting": commit.waiting,
                    "refused": refused,
                })),
            )
                .into_response()
        }
        Err(error) => {
            tracing::warn!(%connector, %error, "webhook refused");
            let (status, kind) = match &error {
                WebhookError::NotFound(_) => (StatusCode::NOT_FOUND, "unknown-connector"),
                WebhookError::Rejected(_) => (StatusCode::UNAUTHORIZED, "webhook-rejected"),
                WebhookError::Invalid(_) => (StatusCode::BAD_REQUEST, "webhook-invalid"),
                WebhookError::Failed(_) => (StatusCode::SERVICE_UNAVAILABLE, "webhook-failed"),
                WebhookError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "connector-busy"),
            };
            let mut response = problem(status, kind, &error.to_string());
            if let WebhookError::Busy { retry_after_ms, .. } = &error {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(retry_after_ms.div_ceil(1000).max(1)),
                );
            }
            response
        }
    }
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the database answers, its schema is this build's, and it takes writes:
/// a recent write that failed in the storage itself (a full disk, an I/O error) keeps
/// the node unready until a write succeeds again.
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.engine.store();
    let cannot_write = |at: Option<chrono::DateTime<chrono::Utc>>, message: &str| {
        problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            &format!(
                "the database cannot be written{}: {message}; free disk space or fix the database's permissions — the node recovers by itself once writes succeed",
                at.map(|at| format!(" (since {})", at.format("%Y-%m-%d %H:%M:%S UTC")))
                    .unwrap_or_default()
            ),
        )
    };
    if let Some(failure) = store.write_failure() {
        return cannot_write(Some(failure.at), &failure.message);
    }
    if let Err(error) = store.probe_write().await
        && error.is_storage_failure()
    {
        return cannot_write(None, &error.to_string());
    }
    match store.is_ready().await {
        Ok(true) => "ready".into_response(),
        Ok(false) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the database schema is not up to date; run `rapport migrate`",
        ),
        Err(error) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            &format!("the database is unreachable: {error}"),
        ),
    }
}
