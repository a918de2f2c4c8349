//! The web UI: server-rendered pages for account staff — the book, the account page
//! with its unified timeline, the team, connectors and the unmatched inbox.
//!
//! # Layout
//! - `session`: signing in (a one-time link from `rapport signin`, or a password),
//!   the session cookie, and [`session::Member`] / [`session::Submission`], the
//!   extractors every page and form goes through.
//! - `page`: the shared layout, HTML error pages and formatting.
//! - `chart`: inline SVG charts, drawn on the server.
//! - one module per page: `book`, `account`, `team`, `ops` (connectors and inbox),
//!   `connections` (connecting accounts through OAuth 2.0),
//!   `audit` (the audit trail, for admins).
//! - templates in `crates/rapport-server/templates` (askama: compiled in and escaped
//!   by default); the one stylesheet in `assets/app.css`. No JavaScript, no build step.
//!
//! # Invariants
//! - Every page but sign-in needs a live session; every POST goes through
//!   [`session::Submission`], which checks the session's CSRF token and the Origin.
//! - The rules are the API's: visibility and permissions come from `api::policy`, and
//!   writes go through the same functions the API's handlers call. A hidden account
//!   gets the same not-found page as a missing one.

mod account;
mod audit;
mod book;
mod chart;
mod connections;
mod ops;
mod page;
mod session;
mod team;

use crate::http::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

pub(crate) use page::{invalid_page, not_found_page};
pub use session::{
    SESSION_COOKIE, SESSION_HOURS, SIGN_IN_FAILURES_PER_ACCOUNT_MAX,
    SIGN_IN_FAILURES_PER_ADDRESS_MAX, SIGN_IN_LINK_MINUTES, SIGN_IN_WINDOW_MINUTES,
};

/// Most bytes a submitted form may have.
pub const FORM_BYTES_MAX: usize = 64 * 1024;

/// The UI's routes.
pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(book::page))
        .route(
            "/signin",
            get(session::sign_in_page).post(session::sign_in_with_password),
        )
        .route("/signin/{secret}", get(session::sign_in_with_link))
        .route("/signin/oidc/callback", get(session::oidc_callback))
        .route("/signin/oidc/{provider}", get(session::oidc_begin))
        .route("/signout", post(session::sign_out))
        .route("/accounts/{id}", get(account::page))
        .route("/accounts/{id}/notes", post(account::add_note))
        .route("/accounts/{id}/tasks", post(account::add_task))
        .route("/accounts/{id}/owner", post(account::set_owner))
        .route("/tasks/{id}/done", post(account::complete_task))
        .route("/team", get(team::page))
        .route("/team/handoff", get(team::handoff_page).post(team::handoff))
        .route("/connectors", get(ops::connectors))
        .route("/connectors/{name}/sync", post(ops::run_now))
        .route("/connectors/{name}/check", post(ops::check_now))
        .route("/connections", get(connections::page))
        .route("/connections/callback", get(connections::callback))
        .route("/connections/{target}/connect", get(connections::connect))
        .route(
            "/connections/{target}/disconnect",
            post(connections::disconnect),
        )
        .route(
            "/connections/{target}/sharing",
            post(connections::choose_sharing),
        )
        .route("/inbox", get(ops::inbox))
        .route("/inbox/{id}/place", post(ops::place))
        .route("/audit", get(audit::page))
        .route("/assets/app.css", get(stylesheet))
        .layer(DefaultBodyLimit::max(FORM_BYTES_MAX))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/app.css"),
    )
}

/// What every response is sent with — pages, API JSON, problems and the 404 for paths
/// nothing serves alike: no scripts, no framing, no sniffing, no referrer leaving the
/// site (a sign-in link is in a URL), and no caching (everything but the stylesheet is
/// private to whoever asked).
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
