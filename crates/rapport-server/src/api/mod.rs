//! The JSON API under `/api/v1`: what the web UI, the CLI and people's scripts use.
//!
//! # Layout
//! - `auth`: bearer tokens → [`auth::Viewer`] (and [`auth::Admin`]).
//! - `error`: every failure as `application/problem+json`.
//! - `extract`: body, query and path extractors whose rejections are problems too.
//! - `cursor`: HMAC-signed pagination cursors.
//! - `model`: the wire types, from which the OpenAPI document is generated.
//! - `policy`: who may see and change what — visibility (from core, in SQL) on every
//!   account-scoped route, and the assignment rules.
//! - one module per resource: `staff`, `accounts`, `assignments`, `timeline`, `inbox`,
//!   `health` (health, needs-attention, revenue), `connectors`, `tokens`.
//!
//! # Invariants
//! - Every route but the document itself authenticates.
//! - A route that names an account checks visibility first, and a hidden account gets
//!   exactly the 404 a missing one gets.
//! - Listings never return more than their clamped limit, and continue only from a
//!   cursor this deployment signed for that listing.

pub(crate) mod auth;
pub(crate) mod cursor;
pub(crate) mod error;
pub(crate) mod extract;
pub(crate) mod model;
pub(crate) mod policy;

mod accounts;
mod assignments;
mod connectors;
mod health;
mod inbox;
mod staff;
mod timeline;
mod tokens;

use crate::http::AppState;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

/// Most bytes a JSON request body may have.
pub const API_BODY_BYTES_MAX: usize = 64 * 1024;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rapport",
        description = "Account management: staff, client accounts, assignments and the unified client timeline. Authenticate with `Authorization: Bearer <token>` (`rapport token create`). Errors are `application/problem+json`; a hidden account is indistinguishable from a missing one (404).",
        license(name = "Apache-2.0 OR MIT")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "staff", description = "People and the reporting structure"),
        (name = "accounts", description = "Client accounts, their domains, ids and contacts"),
        (name = "assignments", description = "Owners, supporters and handoffs"),
        (name = "timeline", description = "The unified client timeline, notes and tasks"),
        (name = "health", description = "Health scores, needs-attention and revenue"),
        (name = "inbox", description = "Events no account claims yet"),
        (name = "connectors", description = "Connector status and syncs"),
        (name = "tokens", description = "API tokens"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A staff API token from `rapport token create`"))
                    .build(),
            ),
        );
    }
}

/// The API's routes, with the OpenAPI document describing them.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).nest(
        "/api/v1",
        OpenApiRouter::new()
            .merge(staff::router())
            .merge(accounts::router())
            .merge(assignments::router())
            .merge(timeline::router())
            .merge(health::router())
            .merge(inbox::router())
            .merge(connectors::router())
            .merge(tokens::router()),
    )
}

/// The OpenAPI document of this build (what `/api/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().into_openapi()
}

/// A page size from a request: absent → `default`, otherwise clamped to 1..=`max`.
pub(crate) fn clamp_limit(requested: Option<u32>, default: u32, max: u32) -> u32 {
    requested.unwrap_or(default).clamp(1, max)
}
