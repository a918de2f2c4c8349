//! What every page shares: the layout, error pages, and how numbers, money and times
//! are written.

use crate::api::error::ApiError;
use crate::web::session::Member;
use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use rapport_core::revenue::Mrr;

/// The frame around every signed-in page.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The page's title.
    pub title: String,
    /// Which tab is current (`book`, `team`, `connectors`, `inbox`).
    pub section: &'static str,
    /// Who is signed in.
    pub member_name: String,
    /// The form token for the sign-out button.
    pub csrf: String,
    /// Whether the inbox tab shows.
    pub can_triage: bool,
    /// Whether the audit tab shows.
    pub can_administer: bool,
}

impl Layout {
    pub(crate) fn new(member: &Member, section: &'static str, title: impl Into<String>) -> Self {
        Layout {
            title: title.into(),
            section,
            member_name: member.caller.name.clone(),
            csrf: member.csrf.clone(),
            can_triage: member.caller.permissions.may_triage(),
            can_administer: member.caller.permissions.may_administer(),
        }
    }

    /// `aria-current` for the tab of `section`.
    pub(crate) fn current(&self, section: &str) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

/// Renders a template as a page.
pub(crate) fn render(template: &impl Template) -> Result<Response, WebError> {
    template
        .render()
        .map(|html| Html(html).into_response())
        .map_err(|error| WebError::Internal(format!("rendering a page: {error}")))
}

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) enum WebError {
    /// No session: go and sign in, then come back to this path.
    SignIn(String),
    Forbidden(String),
    NotFound(String),
    Invalid(String),
    /// Too many failed attempts lately: wait this long.
    TooManyAttempts {
        detail: String,
        retry_after_seconds: i64,
    },
    /// A body of a kind the form does not send.
    Unsupported(String),
    Conflict(String),
    Unavailable(String),
    Internal(String),
}

impl From<ApiError> for WebError {
    fn from(error: ApiError) -> WebError {
        match error {
            ApiError::Unauthenticated(_, _) => WebError::SignIn("/".to_owned()),
            ApiError::Forbidden(detail) => WebError::Forbidden(detail),
            ApiError::NotFound(detail) => WebError::NotFound(detail),
            ApiError::Invalid(detail) | ApiError::TooLarge(detail) => WebError::Invalid(detail),
            ApiError::Conflict(detail) => WebError::Conflict(detail),
            ApiError::Unavailable(detail) => WebError::Unavailable(detail),
            ApiError::Internal(detail) => WebError::Internal(detail),
        }
    }
}

impl From<rapport_store::Error> for WebError {
    fn from(error: rapport_store::Error) -> WebError {
        ApiError::from(error).into()
    }
}

impl From<rapport_core::DomainError> for WebError {
    fn from(error: rapport_core::DomainError) -> WebError {
        ApiError::from(error).into()
    }
}

pub(crate) type WebResult<T = Response> = Result<T, WebError>;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    heading: &'a str,
    detail: &'a str,
}

fn error_page(status: StatusCode, heading: &str, detail: &str) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        heading,
        detail,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(_) => (status, detail.to_owned()).into_response(),
    }
}

/// The page for a request that breaks a rule before any page handles it.
pub(crate) fn invalid_page(detail: &str) -> Response {
    WebError::Invalid(detail.to_owned()).into_response()
}

/// The page for a path nothing serves.
pub(crate) fn not_found_page(path: &str) -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!("Nothing is here ({path}). Go back to your book and start from there."),
    )
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::SignIn(next) => {
                Redirect::to(&format!("/signin?next={}", encode(&next))).into_response()
            }
            WebError::Forbidden(detail) => {
                error_page(StatusCode::FORBIDDEN, "Not allowed", &detail)
            }
            WebError::NotFound(detail) => error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                &format!(
                    "{detail}, or it is not in your book. If you think it should be, ask its owner's manager."
                ),
            ),
            WebError::Invalid(detail) => error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "That did not work",
                &format!("{detail}. Go back, fix it and try again."),
            ),
            WebError::TooManyAttempts {
                detail,
                retry_after_seconds,
            } => {
                let mut page = error_page(StatusCode::TOO_MANY_REQUESTS, "Wait a while", &detail);
                page.headers_mut().insert(
                    axum::http::header::RETRY_AFTER,
                    axum::http::HeaderValue::from(retry_after_seconds),
                );
                page
            }
            WebError::Unsupported(detail) => error_page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "That did not work",
                &format!("{detail}."),
            ),
            WebError::Conflict(detail) => error_page(
                StatusCode::CONFLICT,
                "That has changed",
                &format!("{detail}. Reload the page to see how things stand now."),
            ),
            WebError::Unavailable(detail) => error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                &detail,
            ),
            WebError::Internal(detail) => {
                tracing::error!(%detail, "page failed");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Something broke",
                    "The server failed to show this page; the error is in its log.",
                )
            }
        }
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `1234567` → `1,234,567`.
pub(crate) fn grouped(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if value < 0 { format!("-{out}") } else { out }
}

/// Monthly revenue as people read it: `USD 1,250` (whole units; several currencies
/// joined, never added).
pub(crate) fn money(totals: &[Mrr]) -> String {
    if totals.is_empty() {
        return "—".to_owned();
    }
    totals
        .iter()
        .map(|mrr| {
            format!(
                "{} {}",
                mrr.currency.to_uppercase(),
                grouped((mrr.minor_units as f64 / 100.0).round() as i64)
            )
        })
        .collect::<Vec<_>>()
        .join(" + ")
}

/// How long ago, in words: `today`, `3 days ago`, `5 weeks ago`.
pub(crate) fn ago(at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let days = (now - at).num_days();
    match days {
        i64::MIN..=0 => "today".to_owned(),
        1 => "yesterday".to_owned(),
        2..=13 => format!("{days} days ago"),
        14..=59 => format!("{} weeks ago", days / 7),
        60..=729 => format!("{} months ago", days / 30),
        _ => format!("{} years ago", days / 365),
    }
}

/// A date as people read it: `27 Nov 2026`.
pub(crate) fn day(date: NaiveDate) -> String {
    date.format("%-d %b %Y").to_string()
}

/// An instant as people read it, in UTC: `27 Nov 2026 14:05`.
pub(crate) fn instant(at: DateTime<Utc>) -> String {
    at.format("%-d %b %Y %H:%M").to_string()
}

/// Everyone on staff, by id (pages name owners, supporters and assignees).
pub(crate) async fn staff_by_id(
    store: &rapport_store::Store,
) -> WebResult<std::collections::BTreeMap<rapport_core::StaffId, rapport_core::staff::Staff>> {
    Ok(store
        .list_staff()
        .await?
        .into_iter()
        .map(|person| (person.id, person))
        .collect())
}

/// An id from a path segment; anything else is simply not found.
pub(crate) fn path_id(raw: &str, what: &str) -> WebResult<i64> {
    raw.parse()
        .map_err(|_| WebError::NotFound(format!("there is no {what} {raw:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_money_and_ages_read_well() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(-1234567), "-1,234,567");
        let mrr = |currency: &str, minor_units| Mrr {
            currency: currency.to_owned(),
            minor_units,
        };
        assert_eq!(money(&[]), "—");
        assert_eq!(money(&[mrr("usd", 125_049)]), "USD 1,250");
        assert_eq!(money(&[mrr("eur", 100), mrr("usd", 200)]), "EUR 1 + USD 2");
        let now = Utc::now();
        assert_eq!(ago(now, now), "today");
        assert_eq!(ago(now - chrono::Duration::days(3), now), "3 days ago");
        assert_eq!(ago(now - chrono::Duration::days(35), now), "5 weeks ago");
        assert_eq!(ago(now - chrono::Duration::days(400), now), "13 months ago");
    }
}
