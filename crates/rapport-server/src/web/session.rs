//! Signing in and out, the session cookie, and the two extractors every page and form
//! goes through: [`Member`] (a live session) and [`Submission`] (a live session plus a
//! form whose CSRF token and origin check out).
//!
//! Three ways in: a one-time link (`rapport signin <email>` prints one; it works once,
//! for 15 minutes), an email and password (`rapport password <email>` sets one;
//! argon2id), or an OpenID Connect provider (`[[sign_in]]`: Google, Microsoft, any
//! issuer), matched to an active member of staff by the email the provider verified.
//! Each starts a session of [`SESSION_HOURS`]: a random secret in an HttpOnly,
//! SameSite=Lax cookie, of which the database keeps only the SHA-256.

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
use rapport_store::IssuedSession;
use serde::Deserialize;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rapport_session";
/// How long a session lasts: a working day, then sign in again.
pub const SESSION_HOURS: i64 = 12;
/// How long a sign-in link works (once).
pub const SIGN_IN_LINK_MINUTES: i64 = 15;

/// How far back failed sign-ins count against an address or an account.
pub const SIGN_IN_WINDOW_MINUTES: i64 = 15;
/// Failed sign-ins (passwords and links) from one address within the window before
/// that address must wait.
pub const SIGN_IN_FAILURES_PER_ADDRESS_MAX: u64 = 20;
/// Failed password sign-ins for one account within the window before password
/// sign-ins for it must wait (a sign-in link from an admin still works).
pub const SIGN_IN_FAILURES_PER_ACCOUNT_MAX: u64 = 10;

const FAILED_PASSWORD: &str = "signin.failed";
const FAILED_LINK: &str = "signin.link.failed";
const FAILED_OIDC: &str = "signin.oidc.failed";

/// The cookie that binds a sign-in through a provider to the browser that started it.
const OIDC_COOKIE: &str = "rapport_oidc";
/// How long a person has to come back from the provider.
pub const OIDC_SIGN_IN_MINUTES: i64 = 10;

/// Refuses a sign-in attempt while its address, or the account it names, has failed
/// too often lately; counted from the audit trail, so every node agrees.
async fn check_sign_in_rate(
    state: &AppState,
    address: Option<&str>,
    account: Option<&str>,
) -> WebResult<()> {
    let store = state.engine.store();
    let now = Utc::now();
    let since = now - Duration::minutes(SIGN_IN_WINDOW_MINUTES);
    let wait = |oldest: Option<chrono::DateTime<Utc>>| {
        let free_at = oldest.unwrap_or(now) + Duration::minutes(SIGN_IN_WINDOW_MINUTES);
        (free_at - now).num_seconds().max(1)
    };
    if let Some(address) = address {
        let (passwords, oldest_password) = store
            .count_recent_audit(FAILED_PASSWORD, Some(address), None, since)
            .await?;
        let (links, oldest_link) = store
            .count_recent_audit(FAILED_LINK, Some(address), None, since)
            .await?;
        let (providers, oldest_provider) = store
            .count_recent_audit(FAILED_OIDC, Some(address), None, since)
            .await?;
        if passwords + links + providers >= SIGN_IN_FAILURES_PER_ADDRESS_MAX {
            let oldest = oldest_password
                .into_iter()
                .chain(oldest_link)
                .chain(oldest_provider)
                .min();
            let seconds = wait(oldest);
            tracing::warn!(target: "rapport::signin", address, "sign-ins from an address are paused");
            return Err(WebError::TooManyAttempts {
                detail: format!(
                    "Too many failed sign-ins from your address in the last {SIGN_IN_WINDOW_MINUTES} minutes. Try again in {} minutes.",
                    (seconds + 59) / 60
                ),
                retry_after_seconds: seconds,
            });
        }
    }
    if let Some(account) = account {
        let (failures, oldest) = store
            .count_recent_audit(FAILED_PASSWORD, None, Some(account), since)
            .await?;
        if failures >= SIGN_IN_FAILURES_PER_ACCOUNT_MAX {
            let seconds = wait(oldest);
            tracing::warn!(target: "rapport::signin", "password sign-ins for an account are paused");
            return Err(WebError::TooManyAttempts {
                detail: format!(
                    "Too many failed sign-ins for this account in the last {SIGN_IN_WINDOW_MINUTES} minutes. Try again in {} minutes, or ask an admin for a sign-in link.",
                    (seconds + 59) / 60
                ),
                retry_after_seconds: seconds,
            });
        }
    }
    Ok(())
}

fn sign_in_entry(
    action: &str,
    actor: Option<rapport_core::StaffId>,
    target: Option<String>,
    address: Option<String>,
    status: StatusCode,
) -> rapport_store::NewAuditEntry {
    rapport_store::NewAuditEntry {
        actor,
        action: action.to_owned(),
        surface: "web".to_owned(),
        target,
        address,
        status: Some(status.as_u16()),
        detail: None,
    }
}

/// A signed-in member of staff.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Who they are and what they may do.
    pub caller: crate::app::Caller,
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
        .map(|session| {
            crate::audit::actor(session.staff.id);
            Member {
                caller: crate::app::Caller::new(session.staff),
                csrf: session.csrf_token,
            }
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

/// This site's origin as the browser sees it: the scheme (`https` when a TLS-terminating
/// proxy says so with `X-Forwarded-Proto`), and the host and port of `Host`.
fn site_origin(headers: &HeaderMap) -> Option<url::Origin> {
    let scheme = match headers.get("x-forwarded-proto") {
        Some(proto) if proto.as_bytes().eq_ignore_ascii_case(b"https") => "https",
        _ => "http",
    };
    let host = headers.get(header::HOST)?.to_str().ok()?;
    if host.is_empty() || host.contains(['/', '\\', '@', '?', '#']) {
        return None;
    }
    let url = url::Url::parse(&format!("{scheme}://{host}/")).ok()?;
    Some(url.origin())
}

/// Refuses a request whose `Origin` is not this site: scheme, host and port must all
/// match (`https://host` is not `http://host`; `null` is no site). Browsers send
/// `Origin` on every POST; the CSRF token is the main defence, this the second.
fn check_origin(headers: &HeaderMap) -> WebResult<()> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    // Exactly a serialized origin (`scheme://host[:port]`): nothing a browser would
    // not send, such as a path or credentials.
    let theirs = origin
        .to_str()
        .ok()
        .and_then(|origin| {
            let parsed = url::Url::parse(origin).ok()?.origin();
            parsed
                .ascii_serialization()
                .eq_ignore_ascii_case(origin)
                .then_some(parsed)
        })
        .filter(url::Origin::is_tuple);
    match (theirs, site_origin(headers)) {
        (Some(theirs), Some(ours)) if theirs == ours => Ok(()),
        _ => Err(WebError::Forbidden(
            "this form was sent from another site, so it was not accepted".to_owned(),
        )),
    }
}

/// Refuses a body that is not `application/x-www-form-urlencoded`, which is what
/// every form of ours sends: `text/plain` is how another site posts a "form" without
/// a CORS preflight.
fn check_form_type(headers: &HeaderMap) -> WebResult<()> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(str::trim);
    match essence {
        Some(kind) if kind.eq_ignore_ascii_case("application/x-www-form-urlencoded") => Ok(()),
        _ => Err(WebError::Unsupported(
            "send the form as application/x-www-form-urlencoded, as the page's own form does"
                .to_owned(),
        )),
    }
}

async fn read_fields(request: Request) -> WebResult<(Parts, Fields)> {
    check_origin(request.headers())?;
    check_form_type(request.headers())?;
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

/// The origin every `next` is resolved against. Only its scheme, host and port matter:
/// a `next` that resolves to any other origin is not ours.
const NEXT_BASE: &str = "http://rapport.invalid/";

/// Where to go after signing in: only a path on this site.
///
/// `next` is resolved as a URL reference against this site exactly as a browser would
/// (the WHATWG URL rules: tabs and newlines anywhere are dropped, leading and trailing
/// spaces and C0 controls are trimmed, `\` counts as `/`, and `//` starts a host), and
/// it is followed only if it lands on the same origin. What is followed is the
/// resolved path, query and fragment as the parser wrote them back out — percent-encoded,
/// so always a valid `Location` header.
fn safe_next(next: Option<&str>) -> String {
    let Some(next) = next else {
        return "/".to_owned();
    };
    // Only references that start with a path: `accounts` (relative to /signin) or
    // `?x` would resolve on this site too, but nothing we link to looks like that.
    let lead = next.trim_start_matches(|c: char| c <= ' ');
    if !lead.starts_with('/') {
        return "/".to_owned();
    }
    let base = url::Url::parse(NEXT_BASE).expect("the base is a URL");
    match base.join(next) {
        Ok(target) if target.origin() == base.origin() && target.username().is_empty() => {
            let mut path = target.path().to_owned();
            if let Some(query) = target.query() {
                path.push('?');
                path.push_str(query);
            }
            if let Some(fragment) = target.fragment() {
                path.push('#');
                path.push_str(fragment);
            }
            // The parser never writes `//` at the start of a same-origin path
            // unless the path really has an empty first segment; a browser would
            // read that as a host, so it is refused too.
            if path.starts_with("//") {
                "/".to_owned()
            } else {
                path
            }
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
    /// The OpenID Connect providers: (id, name).
    providers: Vec<(String, String)>,
}

fn providers_of(state: &AppState) -> Vec<(String, String)> {
    state
        .sign_in
        .configured()
        .map(|provider| (provider.id.clone(), provider.name.clone()))
        .collect()
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
        providers: providers_of(&state),
    })
}

/// Email and password → a session.
pub(crate) async fn sign_in_with_password(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
) -> WebResult {
    let (parts, fields) = read_fields(request).await?;
    let next = safe_next(fields.get("next"));
    let email = fields.get("email").unwrap_or_default().to_owned();
    let presented = fields
        .0
        .iter()
        .find(|(name, _)| name == "password")
        .map(|(_, value)| value.clone())
        .unwrap_or_default();
    let address = crate::audit::address_of(&parts.extensions);
    // The account as the trail names it: the address as parsed, else as typed.
    let parsed = EmailAddress::parse(&email);
    let account = match &parsed {
        Ok(parsed) => parsed.to_string(),
        Err(_) => email.trim().to_lowercase(),
    };
    check_sign_in_rate(&state, address.as_deref(), Some(&account)).await?;
    let store = state.engine.store();
    let staff = match parsed {
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
    let issued = match (matches, &staff) {
        (true, Some(staff)) => {
            let now = Utc::now();
            store
                .start_web_session(staff.id, now + Duration::hours(SESSION_HOURS), now)
                .await?
        }
        _ => None,
    };
    match issued {
        Some(issued) => {
            let entry = sign_in_entry(
                "signin.password",
                staff.map(|staff| staff.id),
                Some(account),
                address,
                StatusCode::SEE_OTHER,
            );
            crate::audit::sign_in(&state, entry).await;
            Ok(with_cookie(&issued, &parts.headers, &next))
        }
        None => {
            tracing::info!(target: "rapport::signin", "a password sign-in failed");
            let entry = sign_in_entry(
                FAILED_PASSWORD,
                None,
                Some(account),
                address,
                StatusCode::UNAUTHORIZED,
            );
            crate::audit::sign_in(&state, entry).await;
            let page = SignInPage {
                next: &next,
                email: &email,
                problem: Some(
                    "That email and password do not match an active member of staff. Check both, or ask an admin for a sign-in link.",
                ),
                providers: providers_of(&state),
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
    request: Request,
) -> WebResult {
    let (parts, _) = request.into_parts();
    let address = crate::audit::address_of(&parts.extensions);
    check_sign_in_rate(&state, address.as_deref(), None).await?;
    let now = Utc::now();
    match state
        .engine
        .store()
        .redeem_sign_in_link(&secret, now + Duration::hours(SESSION_HOURS), now)
        .await?
    {
        Some(issued) => {
            let entry = sign_in_entry(
                "signin.link",
                Some(issued.session.staff.id),
                Some(issued.session.staff.email.to_string()),
                address,
                StatusCode::SEE_OTHER,
            );
            crate::audit::sign_in(&state, entry).await;
            Ok(with_cookie(&issued, &parts.headers, "/"))
        }
        None => {
            let entry = sign_in_entry(FAILED_LINK, None, None, address, StatusCode::GONE);
            crate::audit::sign_in(&state, entry).await;
            let html = LinkUsedPage
                .render()
                .map_err(|error| WebError::Internal(error.to_string()))?;
            Ok((StatusCode::GONE, Html(html)).into_response())
        }
    }
}

/// The value of cookie `name`, if the browser sent it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.trim())
}

fn secure_cookie(headers: &HeaderMap) -> &'static str {
    if headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"))
    {
        "; Secure"
    } else {
        ""
    }
}

/// Sends the person to OpenID Connect provider `provider` to sign in, binding the
/// attempt to this browser with a cookie of its own.
pub(crate) async fn oidc_begin(
    axum::extract::State(state): axum::extract::State<AppState>,
    Path(provider): Path<String>,
    request: Request,
) -> WebResult {
    let (parts, _) = request.into_parts();
    let Query(query) =
        Query::<SignInQuery>::try_from_uri(&parts.uri).unwrap_or(Query(SignInQuery { next: None }));
    let next = safe_next(query.next.as_deref());
    let address = crate::audit::address_of(&parts.extensions);
    check_sign_in_rate(&state, address.as_deref(), None).await?;
    let started = state
        .sign_in
        .begin(&provider)
        .await
        .map_err(|error| match error {
            crate::oidc::SignInError::Unknown(_) => {
                WebError::NotFound(format!("there is no sign-in provider `{provider}`"))
            }
            other => WebError::Unavailable(format!("{other}; try again, or sign in another way")),
        })?;
    let browser = openidconnect::CsrfToken::new_random().secret().clone();
    let now = Utc::now();
    state
        .engine
        .store()
        .begin_oidc_sign_in(
            &rapport_core::token::token_hash(&started.state),
            &rapport_store::OidcSignIn {
                provider,
                browser_hash: rapport_core::token::token_hash(&browser),
                nonce: started.nonce,
                pkce_verifier: started.pkce_verifier,
                next,
                expires_at: now + Duration::minutes(OIDC_SIGN_IN_MINUTES),
            },
            now,
        )
        .await?;
    let cookie = format!(
        "{OIDC_COOKIE}={browser}; Path=/signin/oidc; Max-Age={}; HttpOnly; SameSite=Lax{}",
        OIDC_SIGN_IN_MINUTES * 60,
        secure_cookie(&parts.headers)
    );
    let mut response = Redirect::to(&started.url).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub(crate) struct OidcCallback {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the provider sends the person back: the code redeemed, the ID token checked,
/// and — if the provider verified an email of an active member of staff — a session.
pub(crate) async fn oidc_callback(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
) -> WebResult {
    let (parts, _) = request.into_parts();
    let address = crate::audit::address_of(&parts.extensions);
    check_sign_in_rate(&state, address.as_deref(), None).await?;
    let Query(back) = Query::<OidcCallback>::try_from_uri(&parts.uri)
        .map_err(|error| WebError::Invalid(format!("the provider's answer: {error}")))?;
    let refuse = |provider: Option<&str>, account: Option<String>, why: String| {
        let state = state.clone();
        let address = address.clone();
        let provider = provider.map(str::to_owned);
        async move {
            tracing::info!(target: "rapport::signin", provider = provider.as_deref().unwrap_or("?"), %why, "an OpenID Connect sign-in failed");
            let mut entry = sign_in_entry(
                FAILED_OIDC,
                None,
                account,
                address,
                StatusCode::UNAUTHORIZED,
            );
            entry.detail = Some(serde_json::json!({ "provider": provider, "why": why }));
            crate::audit::sign_in(&state, entry).await;
            let page = SignInPage {
                next: "/",
                email: "",
                problem: Some(&why),
                providers: providers_of(&state),
            };
            let html = page
                .render()
                .map_err(|error| WebError::Internal(error.to_string()))?;
            Ok((StatusCode::UNAUTHORIZED, Html(html)).into_response())
        }
    };
    let started = match (back.state.as_deref(), cookie(&parts.headers, OIDC_COOKIE)) {
        (Some(flow_state), Some(browser)) => {
            state
                .engine
                .store()
                .take_oidc_sign_in(
                    &rapport_core::token::token_hash(flow_state),
                    &rapport_core::token::token_hash(browser),
                    Utc::now(),
                )
                .await?
        }
        _ => None,
    };
    let Some(started) = started else {
        return refuse(None, None, format!(
            "This sign-in was not started in this browser, was already used, or took longer than {OIDC_SIGN_IN_MINUTES} minutes. Start again."
        ))
        .await;
    };
    let provider = started.provider.as_str();
    let code = match (&back.code, &back.error) {
        (Some(code), None) => code,
        (_, Some(error)) => {
            let said = back
                .error_description
                .as_deref()
                .map_or_else(|| error.clone(), |text| format!("{error}: {text}"));
            return refuse(
                Some(provider),
                None,
                format!("The provider did not sign you in ({said})."),
            )
            .await;
        }
        (None, None) => {
            return refuse(
                Some(provider),
                None,
                "The provider sent neither a code nor an error.".into(),
            )
            .await;
        }
    };
    let identity = match state
        .sign_in
        .finish(provider, code, &started.pkce_verifier, &started.nonce)
        .await
    {
        Ok(identity) => identity,
        Err(error) => {
            return refuse(Some(provider), None, format!("Signing in failed: {error}.")).await;
        }
    };
    let config = state
        .sign_in
        .config(provider)
        .map_err(|error| WebError::NotFound(error.to_string()))?;
    let Some(email) = identity.email.as_deref() else {
        return refuse(Some(provider), None, "The provider gave no email address: ask your admin to let rapport read it (the `email` scope).".into()).await;
    };
    let parsed = EmailAddress::parse(email);
    let account = parsed
        .as_ref()
        .map_or_else(|_| email.to_lowercase(), ToString::to_string);
    if config.require_verified_email && !identity.email_verified {
        return refuse(
            Some(provider),
            Some(account),
            format!(
                "The provider has not verified {email}; verify it there, or sign in another way."
            ),
        )
        .await;
    }
    let domain_allowed = config.allowed_domains.is_empty()
        || account.rsplit_once('@').is_some_and(|(_, domain)| {
            config
                .allowed_domains
                .iter()
                .any(|allowed| allowed == domain)
        });
    if !domain_allowed {
        return refuse(
            Some(provider),
            Some(account),
            format!(
                "{email} may not sign in with {}: use your work account.",
                config.name
            ),
        )
        .await;
    }
    let store = state.engine.store();
    let staff = match parsed {
        Ok(address) => store.staff_by_email(&address).await?,
        Err(_) => None,
    };
    let Some(staff) = staff.filter(|staff| staff.active) else {
        return refuse(
            Some(provider),
            Some(account),
            format!("{email} is not an active member of staff here. Ask an admin to add you."),
        )
        .await;
    };
    let now = Utc::now();
    let Some(issued) = store
        .start_web_session(staff.id, now + Duration::hours(SESSION_HOURS), now)
        .await?
    else {
        return refuse(
            Some(provider),
            Some(account),
            "Your account cannot sign in right now.".into(),
        )
        .await;
    };
    let mut entry = sign_in_entry(
        "signin.oidc",
        Some(staff.id),
        Some(account),
        address,
        StatusCode::SEE_OTHER,
    );
    entry.detail = Some(serde_json::json!({ "provider": provider }));
    crate::audit::sign_in(&state, entry).await;
    let mut response = with_cookie(&issued, &parts.headers, &started.next);
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{OIDC_COOKIE}=; Path=/signin/oidc; Max-Age=0; HttpOnly; SameSite=Lax{}",
        secure_cookie(&parts.headers)
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// Ends the session and forgets the cookie.
pub(crate) async fn sign_out(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
    _: Submission,
) -> WebResult {
    crate::audit::action("signout");
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
        for (given, followed) in [
            ("/accounts/3?source=stripe", "/accounts/3?source=stripe"),
            ("/accounts/3#timeline", "/accounts/3#timeline"),
            ("/", "/"),
            ("/team/../accounts/2", "/accounts/2"),
            // Control characters are percent-encoded or dropped, never sent raw.
            ("/a\u{7f}b", "/a%7Fb"),
            ("/caf\u{e9}", "/caf%C3%A9"),
        ] {
            assert_eq!(safe_next(Some(given)), followed, "{given:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    /// Every form a browser would read as another host, or that is not a path.
    #[test]
    fn hostile_next_values_go_home() {
        for hostile in [
            "//evil.example",
            "///evil.example",
            "https://evil.example",
            "http://rapport.invalid@evil.example/",
            "javascript:alert(1)",
            "data:text/html,hi",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example/",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\t\n\r/evil.example",
            "\t//evil.example",
            " //evil.example",
            "\u{0}//evil.example",
            "\u{1f}//evil.example",
            "/\t\\evil.example",
            "/\\\tevil.example",
            "/%09/evil.example",
            "accounts",
            "evil.example",
            "?next=//evil.example",
            "",
            "   ",
        ] {
            let followed = safe_next(Some(hostile));
            let resolved = url::Url::parse(NEXT_BASE).unwrap().join(&followed).unwrap();
            assert_eq!(
                resolved.host_str(),
                Some("rapport.invalid"),
                "{hostile:?} led to {followed:?}"
            );
            assert!(
                followed.starts_with('/') && !followed.starts_with("//"),
                "{hostile:?} led to {followed:?}"
            );
            assert!(
                HeaderValue::from_str(&followed).is_ok(),
                "{hostile:?} led to {followed:?}, which is no header value"
            );
        }
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }
}
