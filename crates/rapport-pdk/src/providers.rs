//! How Google's and Microsoft's APIs say something went wrong, mapped to the contract's
//! error kinds, for the connectors that read Gmail, Google Calendar, Outlook mail and
//! calendars (and any written against the same APIs):
//!
//! - 401 → `auth` (the host refreshes the token once and repeats the call);
//! - 429, Google's 403 quota and rate-limit reasons, and Microsoft's 503/504 with a
//!   `Retry-After` → `rate-limited`, after the provider's hint;
//! - other 403 (a scope not granted, access revoked) → `auth`;
//! - 5xx, 408 → `transient`;
//! - anything else → `fatal`, with the provider's own message.
//!
//! A sync token that expired (410 Gone; Microsoft's `syncStateNotFound` and
//! `resyncRequired`) is not an error to the host: [`is_resync`] tells the connector to
//! start over from a full read. (Gmail says so of a `historyId` with 404, which only
//! its history call can tell from a message that is gone.)

use crate::http::{Response, retry_after_ms};
use crate::{ConnectorError, RateLimit};

/// How long to wait when a provider says "slow down" without saying how long.
const RATE_LIMIT_DEFAULT_MS: u64 = 60_000;
/// How long to wait when a provider's daily quota is spent.
const DAILY_QUOTA_WAIT_MS: u64 = 60 * 60 * 1000;

#[derive(serde::Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct ErrorDetail {
    /// Microsoft: a code such as `syncStateNotFound`; Google: the HTTP status number.
    code: serde_json::Value,
    message: String,
    /// Google: the reasons, e.g. `rateLimitExceeded`.
    errors: Vec<GoogleReason>,
    /// Google: `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, ...
    status: String,
    /// Microsoft: a more specific error inside.
    #[serde(rename = "innerError", alias = "innererror")]
    inner: Option<Box<ErrorDetail>>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct GoogleReason {
    reason: String,
}

fn detail(response: &Response) -> ErrorDetail {
    serde_json::from_slice::<ErrorBody>(&response.body)
        .map(|body| body.error)
        .unwrap_or_default()
}

fn message(response: &Response, detail: &ErrorDetail) -> String {
    let text: String = if detail.message.is_empty() {
        String::from_utf8_lossy(&response.body)
            .chars()
            .take(200)
            .collect()
    } else {
        detail.message.chars().take(300).collect()
    };
    format!("HTTP {}: {text}", response.status)
}

fn rate_limited(response: &Response, default_ms: u64, message: String) -> ConnectorError {
    ConnectorError::RateLimited(RateLimit {
        retry_after_ms: retry_after_ms(response).unwrap_or(default_ms),
        message,
    })
}

/// Whether the provider says the sync token (Google's `syncToken` or `historyId`,
/// Microsoft's delta link) is no longer valid and the connector must read everything
/// again.
pub fn is_resync(response: &Response) -> bool {
    if response.status == 410 {
        return true;
    }
    let detail = detail(response);
    let code = |detail: &ErrorDetail| detail.code.as_str().map(str::to_owned);
    let codes = [code(&detail), detail.inner.as_deref().and_then(code)];
    codes.iter().flatten().any(|code| {
        matches!(
            code.as_str(),
            "syncStateNotFound" | "resyncRequired" | "SyncStateNotFound"
        )
    })
}

/// Google APIs' (Gmail, Calendar) errors as the contract's kinds; `None` for success.
pub fn google_error(response: &Response) -> Option<ConnectorError> {
    let status = response.status;
    if (200..300).contains(&status) {
        return None;
    }
    let detail = detail(response);
    let text = message(response, &detail);
    let reasons: Vec<&str> = detail.errors.iter().map(|r| r.reason.as_str()).collect();
    Some(match status {
        401 => ConnectorError::Auth(text),
        429 => rate_limited(response, RATE_LIMIT_DEFAULT_MS, text),
        403 if reasons
            .iter()
            .any(|r| matches!(*r, "dailyLimitExceeded" | "quotaExceeded"))
            && !reasons.contains(&"rateLimitExceeded") =>
        {
            rate_limited(response, DAILY_QUOTA_WAIT_MS, text)
        }
        403 if reasons
            .iter()
            .any(|r| matches!(*r, "rateLimitExceeded" | "userRateLimitExceeded"))
            || detail.status == "RESOURCE_EXHAUSTED" =>
        {
            rate_limited(response, RATE_LIMIT_DEFAULT_MS, text)
        }
        403 => ConnectorError::Auth(text),
        408 | 500..=599 => ConnectorError::Transient(text),
        _ => ConnectorError::Fatal(text),
    })
}

/// Microsoft Graph's errors as the contract's kinds; `None` for success.
pub fn microsoft_error(response: &Response) -> Option<ConnectorError> {
    let status = response.status;
    if (200..300).contains(&status) {
        return None;
    }
    let detail = detail(response);
    let text = message(response, &detail);
    Some(match status {
        401 => ConnectorError::Auth(text),
        403 => ConnectorError::Auth(text),
        429 => rate_limited(response, RATE_LIMIT_DEFAULT_MS, text),
        // Graph throttles with 503/504 and a Retry-After too.
        503 | 504 if response.header("retry-after").is_some() => {
            rate_limited(response, RATE_LIMIT_DEFAULT_MS, text)
        }
        408 | 500..=599 => ConnectorError::Transient(text),
        _ => ConnectorError::Fatal(text),
    })
}

/// One page of a Microsoft Graph delta round (`…/delta`): the items that changed
/// (each either `T` or removed), and where the round goes on (`@odata.nextLink`) or,
/// once it is over, where the next round starts (`@odata.deltaLink`).
#[derive(Debug, serde::Deserialize)]
pub struct DeltaPage<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<DeltaItem<T>>,
    #[serde(rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
}

/// One item of a delta page: its id, whether it was removed (deleted, or moved out of
/// what the round tracks), and the rest of it (a removed item has nothing else, so
/// every field of `T` needs a default).
#[derive(Debug, serde::Deserialize)]
pub struct DeltaItem<T> {
    pub id: String,
    #[serde(rename = "@removed")]
    pub removed: Option<serde_json::Value>,
    #[serde(flatten)]
    pub item: T,
}

/// A link Graph returned (`@odata.nextLink`, `@odata.deltaLink`), if it points under
/// `base_url`: a connector follows links only to the API it was configured for.
pub fn graph_link(link: &str, base_url: &str) -> Result<String, ConnectorError> {
    let base = base_url.trim_end_matches('/');
    if link.starts_with(&format!("{base}/")) {
        Ok(link.to_owned())
    } else {
        Err(ConnectorError::Fatal(format!(
            "Microsoft Graph returned a link outside {base}: {}",
            link.chars().take(200).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Response {
        Response {
            status,
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// Google's documented error shape for a per-user rate limit (Calendar API,
    /// "Handle API errors").
    const GOOGLE_RATE_LIMIT: &str = r#"{"error":{"errors":[{"domain":"usageLimits","message":"Rate Limit Exceeded","reason":"rateLimitExceeded"}],"code":403,"message":"Rate Limit Exceeded"}}"#;
    const GOOGLE_NO_SCOPE: &str = r#"{"error":{"code":403,"message":"Request had insufficient authentication scopes.","errors":[{"message":"Insufficient Permission","domain":"global","reason":"insufficientPermissions"}],"status":"PERMISSION_DENIED"}}"#;
    const GRAPH_SYNC_STATE: &str = r#"{"error":{"code":"syncStateNotFound","message":"The sync state generation is not found."}}"#;

    /// Graph's documented delta rounds (tests/fixtures/microsoft, see NOTICE.md).
    #[test]
    fn graph_delta_pages_say_what_was_removed_and_where_the_round_goes() {
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(default)]
        struct Subject {
            subject: Option<String>,
        }
        let page: DeltaPage<Subject> = serde_json::from_str(include_str!(
            "../../../tests/fixtures/microsoft/messages-delta-next-round.json"
        ))
        .unwrap();
        assert_eq!(page.value.len(), 2);
        assert!(page.value[0].removed.is_some());
        assert!(page.value[0].id.starts_with("AAMkADk0MGFkODE3"));
        assert_eq!(
            page.value[1].item.subject.as_deref(),
            Some("Holiday hours update")
        );
        assert!(page.value[1].removed.is_none());
        let next_round = page.delta_link.unwrap();
        assert!(page.next_link.is_none());
        assert!(graph_link(&next_round, "https://graph.microsoft.com").is_ok());
        assert!(graph_link(&next_round, "https://graph.microsoft.us").is_err());
        assert!(
            graph_link(
                "https://graph.microsoft.com.evil.example/x",
                "https://graph.microsoft.com"
            )
            .is_err()
        );
    }

    #[test]
    fn google_errors_follow_their_reasons() {
        assert!(matches!(
            google_error(&response(403, &[("Retry-After", "7")], GOOGLE_RATE_LIMIT)),
            Some(ConnectorError::RateLimited(RateLimit {
                retry_after_ms: 7_000,
                ..
            }))
        ));
        assert!(matches!(
            google_error(&response(403, &[], GOOGLE_NO_SCOPE)),
            Some(ConnectorError::Auth(text)) if text.contains("insufficient authentication scopes")
        ));
        assert!(matches!(
            google_error(&response(429, &[], "")),
            Some(ConnectorError::RateLimited(RateLimit {
                retry_after_ms: 60_000,
                ..
            }))
        ));
        assert!(matches!(
            google_error(&response(401, &[], "")),
            Some(ConnectorError::Auth(_))
        ));
        assert!(matches!(
            google_error(&response(502, &[], "")),
            Some(ConnectorError::Transient(_))
        ));
        assert!(google_error(&response(200, &[], "{}")).is_none());
        assert!(is_resync(&response(410, &[], "")));
    }

    #[test]
    fn graph_errors_follow_their_status_and_codes() {
        assert!(matches!(
            microsoft_error(&response(429, &[("Retry-After", "12")], "")),
            Some(ConnectorError::RateLimited(RateLimit {
                retry_after_ms: 12_000,
                ..
            }))
        ));
        assert!(matches!(
            microsoft_error(&response(503, &[("Retry-After", "3")], "")),
            Some(ConnectorError::RateLimited(RateLimit {
                retry_after_ms: 3_000,
                ..
            }))
        ));
        assert!(matches!(
            microsoft_error(&response(503, &[], "")),
            Some(ConnectorError::Transient(_))
        ));
        assert!(is_resync(&response(400, &[], GRAPH_SYNC_STATE)));
        assert!(!is_resync(&response(400, &[], "{}")));
    }

    #[test]
    fn retry_after_takes_an_http_date() {
        let later = chrono::Utc::now() + chrono::Duration::seconds(90);
        let header = later.to_rfc2822();
        let waited = retry_after_ms(&response(429, &[("retry-after", &header)], "")).unwrap();
        assert!((80_000..=91_000).contains(&waited), "{waited}");
    }
}
