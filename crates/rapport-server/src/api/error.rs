//! Every API failure as `application/problem+json` (RFC 9457) with a stable `type`, so
//! clients branch on `type` and show `detail`, which says what to fix.

use crate::http::problem;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rapport_core::DomainError;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable identifier of the kind of problem, e.g.
    /// `https://rapport.dev/problems/not-found`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong and what to do about it.
    pub detail: String,
}

/// Why a request failed.
#[derive(Debug)]
pub enum ApiError {
    /// No usable credentials (401).
    Unauthenticated(&'static str, String),
    /// Authenticated, but this needs more (403).
    Forbidden(String),
    /// Nothing there, or nothing the caller may see — deliberately the same (404).
    NotFound(String),
    /// The request itself is malformed or breaks a rule (422).
    Invalid(String),
    /// The body is over the size limit (413).
    TooLarge(String),
    /// It conflicts with the current state (409).
    Conflict(String),
    /// The database is unreachable (503).
    Unavailable(String),
    /// A bug or corrupt data; details are logged, not shown (500).
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, detail) = match self {
            ApiError::Unauthenticated(kind, detail) => (StatusCode::UNAUTHORIZED, kind, detail),
            ApiError::Forbidden(detail) => (StatusCode::FORBIDDEN, "forbidden", detail),
            ApiError::NotFound(detail) => (StatusCode::NOT_FOUND, "not-found", detail),
            ApiError::Invalid(detail) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid", detail),
            ApiError::Conflict(detail) => (StatusCode::CONFLICT, "conflict", detail),
            ApiError::TooLarge(detail) => (StatusCode::PAYLOAD_TOO_LARGE, "too-large", detail),
            ApiError::Unavailable(detail) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail)
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server failed to answer; the error is in its log".to_owned(),
                )
            }
        };
        let mut response = problem(status, kind, &detail);
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"rapport\""),
            );
        }
        response
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> ApiError {
        use DomainError::*;
        let detail = error.to_string();
        match error {
            UnknownStaff(_) | UnknownAccount(_) | UnknownEvent(_) | UnknownToken(_) => {
                ApiError::NotFound(detail)
            }
            NotPermitted(_) => ApiError::Forbidden(detail),
            StaffEmailTaken(_)
            | TaskAssigneeCannotSee { .. }
            | ExternalIdTaken { .. }
            | AccountAlreadyOwned { .. }
            | AlreadyOwner { .. }
            | AlreadyAssigned { .. }
            | NotAssigned { .. }
            | StillOwnsAccounts { .. }
            | StillHasReports { .. }
            | EventNotChangeable { .. }
            | StaffInactive(_)
            | TooManyTokens { .. }
            // The rules of the org chart and the client tree, which a request breaks
            // only given who and what it names: well-formed, but not possible now.
            | ReportsToNotSenior { .. }
            | VpHasManager
            | ReportsToSelf(_)
            | HierarchyCycle { .. }
            | LevelChangeStrandsReport { .. }
            | AccountParentSelf(_)
            | AccountCycle { .. }
            | AccountTreeTooDeep { .. }
            | AssociateCannotOwn(_) => ApiError::Conflict(detail),
            _ => ApiError::Invalid(detail),
        }
    }
}

impl From<rapport_store::Error> for ApiError {
    fn from(error: rapport_store::Error) -> ApiError {
        use rapport_store::Error::*;
        match error {
            Domain(domain) => domain.into(),
            UnknownConnector(_) => ApiError::NotFound(error.to_string()),
            Conflict(_) | LeaseLost(_) => ApiError::Conflict(error.to_string()),
            Connect { .. } | Database(_) => {
                // The driver's words may quote SQL; they go to the log, not the client.
                tracing::warn!(%error, "database unavailable");
                ApiError::Unavailable("the database did not answer: retry shortly".to_owned())
            }
            _ => ApiError::Internal(error.to_string()),
        }
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;
