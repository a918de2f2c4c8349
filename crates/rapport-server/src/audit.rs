//! The audit trail, written from one place: [`record_writes`] wraps every request, and
//! for each write (any method but GET, HEAD and OPTIONS) that succeeded it adds one
//! entry — who (the person the API token or the session belongs to), what (the route,
//! and an action name where the handler gave one), when, from where, the status, and
//! the before and after a handler noted for changes of ownership and structure.
//! Handlers and the extractors reach the request's entry through a task-local, so the
//! shared functions the API and the web UI both call note changes without plumbing.
//!
//! Sign-ins are written by the sign-in handlers themselves ([`sign_in`]), failed ones
//! included: they carry no session yet, and failed ones are what sign-in rate limiting
//! counts.
//!
//! The entry is written after the change commits, not in its transaction: a write that
//! fails to be audited is logged at `error`, and a crash between the two can lose that
//! one entry. Webhook deliveries are connectors' writes, on their status, not here.

use crate::http::AppState;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use rapport_core::StaffId;
use rapport_store::NewAuditEntry;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

tokio::task_local! {
    static ENTRY: Arc<Mutex<Pending>>;
}

/// What a request has gathered for its entry so far.
#[derive(Debug, Default)]
struct Pending {
    actor: Option<StaffId>,
    action: Option<&'static str>,
    changes: Vec<serde_json::Value>,
}

fn with_pending(change: impl FnOnce(&mut Pending)) {
    // Outside a write (a GET, a test calling a function directly) there is nothing
    // to note.
    let _ = ENTRY.try_with(|pending| {
        if let Ok(mut pending) = pending.lock() {
            change(&mut pending);
        }
    });
}

/// Notes who is acting (the extractors call this once they know).
pub(crate) fn actor(staff: StaffId) {
    with_pending(|pending| pending.actor = Some(staff));
}

/// Names the request's action (`token.created`, `owner.changed`, ...); without one the
/// entry's action is `write`.
pub(crate) fn action(name: &'static str) {
    with_pending(|pending| pending.action = Some(name));
}

/// Notes a change's before and after (or what was made), for the entry's detail.
pub(crate) fn change(detail: serde_json::Value) {
    with_pending(|pending| pending.changes.push(detail));
}

/// What of an account its structure and ownership are: what the trail shows before
/// and after a change.
pub(crate) fn account_shape(account: &rapport_core::account::Account) -> serde_json::Value {
    serde_json::json!({
        "account": account.id.0,
        "name": account.name,
        "parent": account.parent.map(|parent| parent.0),
        "lifecycle": account.lifecycle.as_str(),
        "renewal_date": account.renewal_date,
        "owner": account.owner.map(|owner| owner.0),
    })
}

/// What of a member of staff the reporting structure and powers are.
pub(crate) fn staff_shape(staff: &rapport_core::staff::Staff) -> serde_json::Value {
    serde_json::json!({
        "staff": staff.id.0,
        "name": staff.name,
        "email": staff.email.to_string(),
        "level": staff.level.as_str(),
        "reports_to": staff.reports_to.map(|manager| manager.0),
        "is_admin": staff.is_admin,
        "active": staff.active,
    })
}

/// The client's address, as the socket saw it. (Behind a proxy, the proxy's: a
/// forwarded-for header is not trusted, since any client can send one.)
pub(crate) fn address_of(request: &axum::http::Extensions) -> Option<String> {
    request
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip().to_string())
}

fn surface_of(path: &str) -> Option<&'static str> {
    if path.starts_with("/hooks/") || path.starts_with("/signin") {
        // Connectors' deliveries are on their status; sign-ins audit themselves.
        None
    } else if path.starts_with("/api/") {
        Some("api")
    } else {
        Some("web")
    }
}

/// The middleware: one entry for each successful write.
pub(crate) async fn record_writes(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let surface = surface_of(request.uri().path());
    let (Some(surface), false) = (
        surface,
        matches!(method, Method::GET | Method::HEAD | Method::OPTIONS),
    ) else {
        return next.run(request).await;
    };
    let target = format!("{method} {}", request.uri().path());
    let address = address_of(request.extensions());
    let pending = Arc::new(Mutex::new(Pending::default()));
    let response = ENTRY.scope(Arc::clone(&pending), next.run(request)).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        return response;
    }
    let pending = match pending.lock() {
        Ok(mut pending) => std::mem::take(&mut *pending),
        Err(_) => return response,
    };
    let Some(actor) = pending.actor else {
        return response;
    };
    let entry = NewAuditEntry {
        actor: Some(actor),
        action: pending.action.unwrap_or("write").to_owned(),
        surface: surface.to_owned(),
        target: Some(target),
        address,
        status: Some(status.as_u16()),
        detail: match pending.changes.len() {
            0 => None,
            1 => pending.changes.into_iter().next(),
            _ => Some(serde_json::Value::Array(pending.changes)),
        },
    };
    if let Err(error) = state.engine.store().record_audit(&entry, Utc::now()).await {
        tracing::error!(%error, action = %entry.action, target = ?entry.target, "a write was not audited");
    }
    response
}

/// Writes a sign-in (or a failed one) on the trail.
pub(crate) async fn sign_in(state: &AppState, entry: NewAuditEntry) {
    if let Err(error) = state.engine.store().record_audit(&entry, Utc::now()).await {
        tracing::error!(%error, action = %entry.action, "a sign-in was not audited");
    }
}
