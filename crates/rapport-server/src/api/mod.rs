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
//!   `health` (health, needs-attention, revenue), `connectors`, `tokens`, `audit`.
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
pub(crate) mod formats;
pub(crate) mod model;

pub(crate) mod accounts;
pub(crate) mod assignments;
pub(crate) mod audit;
mod connections;
pub(crate) mod connectors;
pub(crate) mod health;
pub(crate) mod inbox;
mod staff;
pub(crate) mod timeline;
mod tokens;

use crate::api::error::{ApiError, ApiResult};
use crate::http::AppState;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
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
        (name = "connections", description = "Connections: the credentials connectors run with (made in the web UI)"),
        (name = "audit", description = "The audit trail (admins)"),
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

/// What each problem status means, as every operation documents it.
const PROBLEMS: [(u16, &str); 8] = [
    (
        401,
        "No usable bearer token: missing, unknown, expired or revoked",
    ),
    (403, "Authenticated, but not allowed to do this"),
    (
        404,
        "Nothing there — or nothing you may see; the two are indistinguishable",
    ),
    (
        409,
        "Well-formed, but not possible given the current state: the org chart's or the client tree's rules, something taken, someone deactivated",
    ),
    (413, "The body is over 64 KiB"),
    (
        422,
        "The request is malformed or breaks a rule; `detail` says what to fix",
    ),
    (500, "A bug; the details are in the server's log"),
    (503, "Timed out, or the database did not answer; retry"),
];

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// Makes every operation declare, as `application/problem+json`, each problem any
/// route of its shape can answer with — 401 and 503 everywhere, 404 with an id,
/// 422 with inputs, 413 with a body — on top of those its handler declares, so the
/// document lists every status a client can see.
fn declare_problems(openapi: &mut utoipa::openapi::OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let has_body = operation.request_body.is_some();
            let has_inputs =
                has_body || operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            let mut statuses: Vec<u16> = operation
                .responses
                .responses
                .keys()
                .filter_map(|status| status.parse().ok())
                .filter(|status| *status >= 400)
                .collect();
            statuses.extend([401, 500, 503]);
            // A path id, or an id a body refers to (a manager, an owner), may name
            // nothing.
            if path.contains('{') || has_body {
                statuses.push(404);
            }
            if has_inputs {
                statuses.push(422);
            }
            if has_body {
                statuses.push(413);
            }
            for status in statuses {
                let description = PROBLEMS
                    .iter()
                    .find(|(known, _)| *known == status)
                    .map_or("A problem", |(_, description)| description);
                operation
                    .responses
                    .responses
                    .insert(status.to_string(), problem_response(description).into());
            }
        }
    }
}

/// The API's routes, with the OpenAPI document describing them.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    let mut router = api_routes();
    declare_problems(router.get_openapi_mut());
    router
}

fn api_routes() -> OpenApiRouter<AppState> {
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
            .merge(tokens::router())
            .merge(connections::router())
            .merge(audit::router()),
    )
}

/// The OpenAPI document of this build (what `/api/openapi.json` serves).
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().into_openapi()
}

/// A page size from a request: absent → `default`; outside 1..=`max` (what the
/// document declares) → a 422 that says the bounds.
pub(crate) fn page_limit(requested: Option<u32>, default: u32, max: u32) -> ApiResult<u32> {
    match requested {
        None => Ok(default),
        Some(limit) if (1..=max).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::Invalid(format!(
            "limit must be from 1 to {max}, not {limit}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::formats;

    fn document() -> serde_json::Value {
        serde_json::to_value(super::openapi()).unwrap()
    }

    /// Every `$ref` names a schema the document defines (a component the generator
    /// did not register would leave a client nothing to resolve).
    #[test]
    fn every_reference_resolves() {
        let document = document();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        let mut stack = vec![&document];
        let mut seen = 0;
        while let Some(value) = stack.pop() {
            match value {
                serde_json::Value::Object(fields) => {
                    if let Some(serde_json::Value::String(target)) = fields.get("$ref") {
                        let name = target
                            .strip_prefix("#/components/schemas/")
                            .unwrap_or_else(|| panic!("{target} is not a schema reference"));
                        assert!(schemas.contains_key(name), "{target} is not defined");
                        seen += 1;
                    }
                    stack.extend(fields.values());
                }
                serde_json::Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        assert!(seen > 20, "only {seen} references: the walk is broken");
    }

    /// Path parameters spell their patterns out in the handlers' attributes; they must
    /// be the formats' own.
    #[test]
    fn path_parameters_use_the_formats() {
        let document = document();
        let mut checked = 0;
        for item in document["paths"].as_object().unwrap().values() {
            for operation in item.as_object().unwrap().values() {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let expected = match parameter["name"].as_str().unwrap() {
                        "email" => formats::EMAIL,
                        "domain" => formats::DOMAIN,
                        "external_id" => formats::EXTERNAL_ID,
                        _ => continue,
                    };
                    assert_eq!(parameter["schema"]["pattern"], expected, "{parameter}");
                    checked += 1;
                }
            }
        }
        assert_eq!(checked, 6);
    }

    /// Every string a client sends — a parameter or a body field, nested ones too —
    /// declares its bounds (a length, or an enumeration or a format that fixes them),
    /// so a generated client or a fuzzer knows what the server will take.
    #[test]
    fn every_string_a_client_sends_is_bounded() {
        let document = document();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        fn resolve<'a>(
            schema: &'a serde_json::Value,
            schemas: &'a serde_json::Map<String, serde_json::Value>,
        ) -> &'a serde_json::Value {
            match schema["$ref"].as_str() {
                Some(target) => &schemas[target.trim_start_matches("#/components/schemas/")],
                None => schema,
            }
        }
        fn check(
            at: &str,
            schema: &serde_json::Value,
            schemas: &serde_json::Map<String, serde_json::Value>,
            depth: usize,
        ) {
            assert!(depth < 8, "{at}: nested too deep");
            let schema = resolve(schema, schemas);
            let types: Vec<&str> = match &schema["type"] {
                serde_json::Value::String(one) => vec![one.as_str()],
                serde_json::Value::Array(many) => many.iter().filter_map(|t| t.as_str()).collect(),
                _ => Vec::new(),
            };
            if types.contains(&"string") {
                let bounded = schema.get("maxLength").is_some()
                    || schema.get("enum").is_some()
                    || matches!(schema["format"].as_str(), Some("date-time" | "date"));
                assert!(bounded, "{at} is a string without bounds: {schema}");
            }
            if types.contains(&"array") {
                check(&format!("{at}[]"), &schema["items"], schemas, depth + 1);
            }
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                check(&format!("{at}.{name}"), property, schemas, depth + 1);
            }
            for key in ["oneOf", "anyOf", "allOf"] {
                for (n, variant) in schema[key].as_array().into_iter().flatten().enumerate() {
                    check(&format!("{at}|{n}"), variant, schemas, depth + 1);
                }
            }
        }
        let mut checked = 0;
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                for parameter in operation["parameters"].as_array().into_iter().flatten() {
                    let at = format!("{method} {path} {}", parameter["name"]);
                    check(&at, &parameter["schema"], schemas, 0);
                    checked += 1;
                }
                if let Some(body) =
                    operation["requestBody"]["content"]["application/json"]["schema"].as_object()
                {
                    check(
                        &format!("{method} {path} body"),
                        &serde_json::Value::Object(body.clone()),
                        schemas,
                        0,
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "only {checked} inputs: the walk is broken");
    }
}
