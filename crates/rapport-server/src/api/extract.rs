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
        // Every body is a JSON object. serde would also read a struct from an array
        // of its fields in order (`[null, null]`), which the document does not allow.
        let mut value = match axum::Json::<serde_json::Value>::from_request(request, state).await {
            Ok(axum::Json(value)) => value,
            Err(rejection) => return Err(json_rejection(rejection)),
        };
        integral_numbers_as_integers(&mut value);
        if !value.is_object() {
            return Err(ApiError::Invalid(
                "the JSON body must be an object (`{...}`) with the fields this operation documents"
                    .to_owned(),
            ));
        }
        serde_json::from_value(value)
            .map(Body)
            .map_err(|error| ApiError::Invalid(format!("the JSON body is not usable: {error}")))
    }
}

/// JSON has one number type: `2400.0` is the integer 2400 (JSON Schema says so too),
/// but serde reads it as a float and refuses it for an integer field. Every request
/// field is an integer or a string, so integral numbers are made integers first.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && float >= i64::MIN as f64
                && float < i64::MAX as f64
            {
                *value = serde_json::Value::from(float as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(integral_numbers_as_integers);
        }
        _ => {}
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

/// Most bytes a query string may have, as sent (percent-encoded).
pub const QUERY_BYTES_MAX: usize = 4096;
/// Most characters one query parameter's value may have, decoded. Parameters with a
/// tighter bound (search text) say so in the document and check it themselves.
pub const PARAM_CHARS_MAX: usize = 512;

/// What is wrong with a query string over [`QUERY_BYTES_MAX`], if it is. The router
/// checks this once, before routing, for every path (`http::bound_query`).
pub(crate) fn query_too_long(query: Option<&str>) -> Option<String> {
    let length = query.map_or(0, str::len);
    (length > QUERY_BYTES_MAX).then(|| {
        format!(
            "the query string is {length} bytes; at most {QUERY_BYTES_MAX}: ask for less at once"
        )
    })
}

/// Refuses a query parameter whose value is over [`PARAM_CHARS_MAX`], before anything
/// parses or searches it. (The whole string's length was checked before routing.)
pub(crate) fn check_query_bounds(query: Option<&str>) -> Result<(), ApiError> {
    let Some(query) = query else {
        return Ok(());
    };
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let length = value.chars().count();
        if length > PARAM_CHARS_MAX {
            return Err(ApiError::Invalid(format!(
                "the query parameter `{name}` is {length} characters; at most {PARAM_CHARS_MAX}"
            )));
        }
    }
    Ok(())
}

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        check_query_bounds(parts.uri.query())?;
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
