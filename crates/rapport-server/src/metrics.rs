//! `/metrics` in the Prometheus text format, and the middleware that feeds it: every
//! request is counted by route template (never the raw path, so ids cannot explode the
//! label set), timed into a histogram, logged as one structured line, and cut off with
//! a 503 problem after the request timeout.

use crate::http::{AppState, problem};
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bucket {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Debug, Default)]
struct Recorded {
    /// By (method, route, status).
    requests: BTreeMap<(String, String, u16), u64>,
    /// By (method, route).
    latency: BTreeMap<(String, String), Histogram>,
    /// Events stored from webhooks, by connector.
    webhook_events: BTreeMap<String, u64>,
}

/// This node's request and webhook counters.
#[derive(Debug, Default)]
pub struct Metrics {
    recorded: Mutex<Recorded>,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        *recorded
            .requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        recorded
            .latency
            .entry((method.to_owned(), route.to_owned()))
            .or_default()
            .observe(elapsed.as_secs_f64());
    }

    /// Counts events a webhook delivery stored.
    pub(crate) fn webhook_events(&self, connector: &str, written: u64) {
        let mut recorded = self.recorded.lock().unwrap_or_else(|e| e.into_inner());
        *recorded
            .webhook_events
            .entry(connector.to_owned())
            .or_default() += written;
    }
}

/// Label values escaped as the text format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Counts, times, logs and bounds one request.
pub(crate) async fn observe(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = match tokio::time::timeout(state.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            &format!(
                "the request took longer than {} s and was stopped: narrow it (filters, a smaller limit) or retry",
                state.request_timeout.as_secs()
            ),
        )
        .into_response(),
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    state.metrics.record(&method, &route, status, elapsed);
    tracing::info!(
        target: "rapport::http",
        %method,
        %route,
        status,
        micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    response
}

/// `GET /metrics`.
pub(crate) async fn render(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    {
        let recorded = state
            .metrics
            .recorded
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP rapport_http_requests_total HTTP requests answered, by route template and status.\n");
        out.push_str("# TYPE rapport_http_requests_total counter\n");
        for ((method, route, status), count) in &recorded.requests {
            let _ = writeln!(
                out,
                "rapport_http_requests_total{{method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
                label(method),
                label(route)
            );
        }
        out.push_str(
            "# HELP rapport_http_request_duration_seconds Time to answer, by route template.\n",
        );
        out.push_str("# TYPE rapport_http_request_duration_seconds histogram\n");
        for ((method, route), histogram) in &recorded.latency {
            let labels = format!("method=\"{}\",route=\"{}\"", label(method), label(route));
            for (bucket, count) in BUCKETS.iter().zip(histogram.counts) {
                let _ = writeln!(
                    out,
                    "rapport_http_request_duration_seconds_bucket{{{labels},le=\"{bucket}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "rapport_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "rapport_http_request_duration_seconds_sum{{{labels}}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "rapport_http_request_duration_seconds_count{{{labels}}} {}",
                histogram.count
            );
        }
        out.push_str("# HELP rapport_webhook_events_written_total Events inserted or updated from webhook deliveries on this node.\n");
        out.push_str("# TYPE rapport_webhook_events_written_total counter\n");
        for (connector, count) in &recorded.webhook_events {
            let _ = writeln!(
                out,
                "rapport_webhook_events_written_total{{connector=\"{}\"}} {count}",
                label(connector)
            );
        }
    }
    let pass = state.connections.refresh_tally();
    out.push_str("# HELP rapport_connection_refreshes_total Connections the refresh passes on this node looked at, by outcome.\n");
    out.push_str("# TYPE rapport_connection_refreshes_total counter\n");
    for (outcome, count) in [
        ("refreshed", pass.refreshed),
        ("needs_reconnect", pass.needs_reconnect),
        ("failed", pass.failed),
    ] {
        let _ = writeln!(
            out,
            "rapport_connection_refreshes_total{{outcome=\"{outcome}\"}} {count}"
        );
    }
    let tally = state.engine.tally();
    out.push_str("# HELP rapport_sync_runs_total Sync runs finished on this node, by outcome.\n");
    out.push_str("# TYPE rapport_sync_runs_total counter\n");
    for ((connector, outcome), count) in &tally.runs {
        let _ = writeln!(
            out,
            "rapport_sync_runs_total{{connector=\"{}\",outcome=\"{outcome}\"}} {count}",
            label(connector)
        );
    }
    out.push_str("# HELP rapport_sync_events_written_total Events inserted or updated by sync runs on this node.\n");
    out.push_str("# TYPE rapport_sync_events_written_total counter\n");
    for (connector, count) in &tally.events_written {
        let _ = writeln!(
            out,
            "rapport_sync_events_written_total{{connector=\"{}\"}} {count}",
            label(connector)
        );
    }
    // Deployment-wide state, read from the database at scrape time.
    let store = state.engine.store();
    match (
        store.connector_statuses().await,
        store.unmatched_counts().await,
    ) {
        (Ok(statuses), Ok(unmatched)) => {
            out.push_str("# HELP rapport_connector_events_ingested Events a connector has inserted or updated, all nodes, ever.\n");
            out.push_str("# TYPE rapport_connector_events_ingested gauge\n");
            for status in &statuses {
                let _ = writeln!(
                    out,
                    "rapport_connector_events_ingested{{connector=\"{}\"}} {}",
                    label(&status.connector),
                    status.events_ingested
                );
            }
            out.push_str("# HELP rapport_connector_consecutive_failures Failed runs since the last success.\n");
            out.push_str("# TYPE rapport_connector_consecutive_failures gauge\n");
            for status in &statuses {
                let _ = writeln!(
                    out,
                    "rapport_connector_consecutive_failures{{connector=\"{}\"}} {}",
                    label(&status.connector),
                    status.consecutive_failures
                );
            }
            out.push_str("# HELP rapport_connector_last_success_timestamp_seconds When a run last succeeded.\n");
            out.push_str("# TYPE rapport_connector_last_success_timestamp_seconds gauge\n");
            for status in &statuses {
                if let Some(at) = status.last_success_at {
                    let _ = writeln!(
                        out,
                        "rapport_connector_last_success_timestamp_seconds{{connector=\"{}\"}} {}",
                        label(&status.connector),
                        at.timestamp()
                    );
                }
            }
            out.push_str(
                "# HELP rapport_unmatched_events Events waiting in the unmatched inbox.\n",
            );
            out.push_str("# TYPE rapport_unmatched_events gauge\n");
            for (connector, count) in &unmatched {
                let _ = writeln!(
                    out,
                    "rapport_unmatched_events{{connector=\"{}\"}} {count}",
                    label(connector)
                );
            }
            connection_gauges(&mut out, store).await;
            out.push_str("# HELP rapport_database_up Whether the database answered this scrape.\n# TYPE rapport_database_up gauge\nrapport_database_up 1\n");
        }
        (Err(error), _) | (_, Err(error)) => {
            tracing::warn!(%error, "metrics: database unavailable");
            out.push_str("# HELP rapport_database_up Whether the database answered this scrape.\n# TYPE rapport_database_up gauge\nrapport_database_up 0\n");
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// Connections by connector and status, all nodes: how many people are connected, and
/// how many need to reconnect. Counts only; nothing of a token.
async fn connection_gauges(out: &mut String, store: &rapport_store::Store) {
    let Ok(connections) = store.connections(None, None).await else {
        return;
    };
    let mut counts: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
    for connection in &connections {
        *counts
            .entry((connection.key.connector.clone(), connection.status.as_str()))
            .or_default() += 1;
    }
    out.push_str("# HELP rapport_connections Connections by connector and status.\n");
    out.push_str("# TYPE rapport_connections gauge\n");
    for ((connector, status), count) in &counts {
        let _ = writeln!(
            out,
            "rapport_connections{{connector=\"{}\",status=\"{status}\"}} {count}",
            label(connector)
        );
    }
}
