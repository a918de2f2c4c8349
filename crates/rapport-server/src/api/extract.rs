//! axum's extractors, with their rejections turned into problem documents: a malformed
//! body, query or path gets a 4xx `application/problem+json` saying what to fix, like
//! every other API error.

use crate::api::error::ApiError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// A JSON body.
#[derive(Debug)]
pub struct Body<T>(pub T);

/// Query-string parameters.
#[derive(Debug)]
pub struct Params<T>(pub T);

/// Path parameters.
#[derive(Debug)]
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::TooLarge(
            "the request body is larger than the API accepts (64 KiB)".to_owned(),
        );
    }
    if rejection.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        return ApiError::Invalid(
            "send the body as JSON with `Content-Type: application/json`".to_owned(),
        );
    }
    ApiError::Invalid(format!(
        "the JSON body is not usable: {}",
        rejection.body_text()
    ))
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Params(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::Invalid(format!(
        "the query string is not usable: {}",
        rejection.body_text()
    ))
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Segments(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    // A path that does not parse (`/accounts/abc`) names nothing: the same 404 as an id
    // that does not exist.
    ApiError::NotFound(format!("no such resource: {}", rejection.body_text()))
}

/// For `Option<Option<T>>` fields of a PATCH body: `null` and absent differ. Absent
/// (with `#[serde(default)]`) leaves the field as it is; `null` clears it.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}
