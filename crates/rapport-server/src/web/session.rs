//! Signing in and out, the session cookie, and the two extractors every page and form
//! goes through: [`Member`] (a live session) and [`Submission`] (a live session plus a
//! form whose CSRF token and origin check out).
//!
//! Two ways in: a one-time link (`rapport signin <email>` prints one; it works once,
//! for 15 minutes) or an email and password (`rapport password <email>` sets one;
//! argon2id). Either starts a session of [`SESSION_HOURS`]: a random secret in an
//! HttpOnly, SameSite=Lax cookie, of which the database keeps only the SHA-256.

use crate::http::AppState;
use crate::web::FORM_BYTES_MAX;
use crate::web::page::{WebError, WebResult, render};
use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{Duration, Utc};
use rapport_core::account::EmailAddress;
use rapport_core::password;
use rapport_core::staff::Staff;
use rapport_store::IssuedSession;
use serde::Deserialize;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rapport_session";
/// How long a session lasts: a working day, then sign in again.
pub const SESSION_HOURS: i64 = 12;
/// How long a sign-in link works (once).
pub const SIGN_IN_LINK_MINUTES: i64 = 15;

/// A signed-in member of staff.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub staff: Staff,
    /// The session's form token.
    pub csrf: String,
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

async fn member_of(parts: &Parts, state: &AppState) -> WebResult<Option<Member>> {
    let Some(secret) = session_cookie(&parts.headers) else {
        return Ok(None);
    };
    Ok(state
        .engine
        .store()
        .web_session(secret, Utc::now())
        .await?
        .map(|session| Member {
            staff: session.staff,
            csrf: session.csrf_token,
        }))
}

impl FromRequestParts<AppState> for Member {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> WebResult<Member> {
        member_of(parts, state).await?.ok_or_else(|| {
            let back = parts
                .uri
                .path_and_query()
                .map_or("/".to_owned(), |path| path.as_str().to_owned());
            WebError::SignIn(back)
        })
    }
}

/// A submitted form's fields, in order (a name may repeat, as checkboxes do).
#[derive(Debug, Default)]
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &[u8]) -> Fields {
        Fields(
            url::form_urlencoded::parse(body)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`, trimmed; absent or blank is `None`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// The value of `name`, or an error naming the field.
    pub(crate) fn require(&self, name: &str, label: &str) -> WebResult<&str> {
        self.get(name)
            .ok_or_else(|| WebError::Invalid(format!("{label} is required")))
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }

    /// An id field.
    pub(crate) fn id(&self, name: &str, label: &str) -> WebResult<i64> {
        let raw = self.require(name, label)?;
        raw.parse()
            .map_err(|_| WebError::Invalid(format!("{label} must be a number, not {raw:?}")))
    }
}

/// A form posted by a signed-in member, with its CSRF token and origin checked.
#[derive(Debug)]
pub(crate) struct Submission {
    pub member: Member,
    pub fields: Fields,
}

/// Refuses a request whose `Origin` is another site's. Browsers send `Origin` on every
/// POST; the CSRF token is the main defence, this the second.
fn check_origin(headers: &HeaderMap) -> WebResult<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://").map(|(_, rest)| rest));
    match (origin_host, host) {
        (Some(origin), Some(host)) if origin.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(WebError::Forbidden(
            "this form was sent from another site, so it was not accepted".to_owned(),
        )),
    }
}

async fn read_fields(request: Request) -> WebResult<(Parts, Fields)> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_BYTES_MAX)
        .await
        .map_err(|_| {
            WebError::Invalid(format!(
                "the form is over {} KiB: shorten what you wrote",
                FORM_BYTES_MAX / 1024
            ))
        })?;
    Ok((parts, Fields::parse(&bytes)))
}

/// Equal, in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

impl FromRequest<AppState> for Submission {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &AppState) -> WebResult<Submission> {
        check_origin(request.headers())?;
        let (mut parts, fields) = read_fields(request).await?;
        let member = Member::from_request_parts(&mut parts, state)
            .await
            .map_err(|_| WebError::SignIn("/".to_owned()))?;
        match fields.get("csrf") {
            Some(token) if same_secret(token, &member.csrf) => Ok(Submission { member, fields }),
            _ => Err(WebError::Forbidden(
                "this form is out of date or came from another site: reload the page and submit it again"
                    .to_owned(),
            )),
        }
    }
}

/// Where to go after signing in: only a path on this site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn with_cookie(issued: &IssuedSession, headers: &HeaderMap, next: &str) -> Response {
    // Behind a TLS-terminating proxy the cookie must never travel in the clear.
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
        issued.secret,
        SESSION_HOURS * 3600,
        if secure { "; Secure" } else { "" }
    );
    let mut response = Redirect::to(next).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage<'a> {
    next: &'a str,
    email: &'a str,
    problem: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
}

/// The sign-in form (or, already signed in, onwards).
pub(crate) async fn sign_in_page(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
) -> WebResult {
    let (parts, _) = request.into_parts();
    let Query(query) =
        Query::<SignInQuery>::try_from_uri(&parts.uri).unwrap_or(Query(SignInQuery { next: None }));
    let next = safe_next(query.next.as_deref());
    if member_of(&parts, &state).await?.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    render(&SignInPage {
        next: &next,
        email: "",
        problem: None,
    })
}

/// Email and password → a session.
pub(crate) async fn sign_in_with_password(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
) -> WebResult {
    check_origin(request.headers())?;
    let (parts, fields) = read_fields(request).await?;
    let next = safe_next(fields.get("next"));
    let email = fields.get("email").unwrap_or_default().to_owned();
    let presented = fields
        .0
        .iter()
        .find(|(name, _)| name == "password")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let store = state.engine.store();
    let staff = match EmailAddress::parse(&email) {
        Ok(address) => store.staff_by_email(&address).await?,
        Err(_) => None,
    };
    let stored = match &staff {
        Some(staff) if staff.active => store.password_hash(staff.id).await?,
        _ => None,
    };
    // argon2 is deliberately slow: off the async workers.
    let matches = tokio::task::spawn_blocking(move || match stored {
        Some(stored) => password::verify(&presented, &stored),
        None => {
            password::verify_nobody(&presented);
            false
        }
    })
    .await
    .map_err(|error| WebError::Internal(format!("checking a password: {error}")))?;
    let issued = match (matches, staff) {
        (true, Some(staff)) => {
            let now = Utc::now();
            store
                .start_web_session(staff.id, now + Duration::hours(SESSION_HOURS), now)
                .await?
        }
        _ => None,
    };
    match issued {
        Some(issued) => Ok(with_cookie(&issued, &parts.headers, &next)),
        None => {
            tracing::info!(target: "rapport::signin", "a password sign-in failed");
            let page = SignInPage {
                next: &next,
                email: &email,
                problem: Some(
                    "That email and password do not match an active member of staff. Check both, or ask an admin for a sign-in link.",
                ),
            };
            let html = page
                .render()
                .map_err(|error| WebError::Internal(error.to_string()))?;
            Ok((StatusCode::UNAUTHORIZED, Html(html)).into_response())
        }
    }
}

#[derive(Template)]
#[template(path = "link_used.html")]
struct LinkUsedPage;

/// A one-time sign-in link → a session.
pub(crate) async fn sign_in_with_link(
    axum::extract::State(state): axum::extract::State<AppState>,
    Path(secret): Path<String>,
    headers: HeaderMap,
) -> WebResult {
    let now = Utc::now();
    match state
        .engine
        .store()
        .redeem_sign_in_link(&secret, now + Duration::hours(SESSION_HOURS), now)
        .await?
    {
        Some(issued) => Ok(with_cookie(&issued, &headers, "/")),
        None => {
            let html = LinkUsedPage
                .render()
                .map_err(|error| WebError::Internal(error.to_string()))?;
            Ok((StatusCode::GONE, Html(html)).into_response())
        }
    }
}

/// Ends the session and forgets the cookie.
pub(crate) async fn sign_out(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    _: Submission,
) -> WebResult {
    if let Some(secret) = session_cookie(&headers) {
        state
            .engine
            .store()
            .end_web_session(secret, Utc::now())
            .await?;
    }
    let mut response = Redirect::to("/signin").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("rapport_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/accounts/3?source=stripe")),
            "/accounts/3?source=stripe"
        );
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "accounts",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
