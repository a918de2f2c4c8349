//! rapport's Zendesk connector.
//!
//! **Pull**: the cursor-based incremental ticket export
//! (`/api/v2/incremental/tickets/cursor.json`), side-loading users, organizations and
//! metric sets; for every ticket in a page, its audits, which record status and priority
//! transitions and comments. The checkpoint is the export's `after_cursor`; the
//! export says `end_of_stream` when it has caught up, and the cursor stays valid for the
//! next sync. Deleted tickets are removed from the timeline.
//!
//! **Push**: event-subscription webhooks (`zen:event-type:ticket.created`,
//! `.status_changed`, `.comment_added`), verified by `X-Zendesk-Webhook-Signature`:
//! base64 HMAC-SHA256 under the webhook's signing secret over
//! `X-Zendesk-Webhook-Signature-Timestamp` followed by the raw body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rapport_pdk::prelude::*;
use serde::{Deserialize, Serialize};

pub mod mapping;

use mapping::{AuditPage, Delivery, Directory, Export, TicketContext};

/// Tickets per export page (Zendesk allows up to 1000; each ticket costs an audits call).
const PAGE_EVENTS_DEFAULT: u64 = 100;
/// Audit pages read per ticket before giving up on the rest (a runaway ticket).
const AUDIT_PAGES_MAX: usize = 50;

/// Where the next sync continues.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The export's `after_cursor`; none before the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

struct Zendesk;

impl Connector for Zendesk {
    fn describe() -> Manifest {
        manifest(
            "support-zendesk",
            env!("CARGO_PKG_VERSION"),
            "Zendesk support: tickets opened, solved and reopened, status and priority changes, replies and internal notes, with SLA timings",
        )
        .emits(mapping::KINDS)
        .setting(
            "base_url",
            "Your Zendesk address, e.g. https://acme.zendesk.com",
            true,
        )
        .setting(
            "email",
            "The agent email the API token belongs to (for api_token)",
            false,
        )
        .setting(
            "page_size",
            "Tickets per export page, 1 to 1000 (default 100)",
            false,
        )
        .setting(
            "webhook_tolerance_seconds",
            "How old a webhook signature may be (default 300)",
            false,
        )
        .secret("api_token", "An API token (used with `email`)", false)
        .secret("oauth_token", "An OAuth access token, instead of email + api_token", false)
        .secret("webhook_secret", "The webhook's signing secret", false)
        // Exactly where base_url points (https://<subdomain>.zendesk.com).
        .needs_host("{base_url}")
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        get(
            &config,
            &format!("{}/api/v2/users/me.json", base_url(&config)?),
        )?;
        Ok(())
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let at: Checkpoint = checkpoint::load(checkpoint.as_deref())?.unwrap_or_default();
        let base = base_url(&config)?;
        let page_size = config.number("page_size", PAGE_EVENTS_DEFAULT, 1..=1000)?;
        let position = match &at.cursor {
            Some(cursor) => format!("cursor={}", http::encode_query_value(cursor)),
            None => format!("start_time={}", start_time(&config)?),
        };
        let export: Export = get(
            &config,
            &format!(
                "{base}/api/v2/incremental/tickets/cursor.json?{position}&per_page={page_size}&include=users,organizations,metric_sets"
            ),
        )?
        .json()?;
        let directory = Directory::from_export(&export);

        let mut events = Vec::new();
        let mut deleted = Vec::new();
        for ticket in &export.tickets {
            if ticket.status == "deleted" {
                deleted.push(format!("ticket:{}", ticket.id));
                continue;
            }
            let context = TicketContext::of(ticket, base, &directory);
            events.push(mapping::ticket_event(ticket, &context, &directory)?);
            let audits = audits(&config, base, ticket.id)?;
            events.extend(mapping::audit_events(&context, &audits, &directory)?);
        }
        log::info(&format!(
            "read {} tickets ({} deleted) as {} events",
            export.tickets.len(),
            deleted.len(),
            events.len()
        ));
        let next = Checkpoint {
            cursor: export.after_cursor.or(at.cursor),
        };
        let mut page =
            Page::with_checkpoint(events, checkpoint::save(&next), !export.end_of_stream);
        page.deleted = deleted;
        Ok(page)
    }

    fn handle_webhook(
        config: Config,
        request: WebhookRequest,
    ) -> Result<Vec<Event>, ConnectorError> {
        let secrets = webhook::secrets(&config, "webhook_secret")?;
        let tolerance = webhook::tolerance_seconds(&config)?;
        verify_signature(&request, &secrets, time::now(), tolerance)?;
        let delivery: Delivery = serde_json::from_slice(&request.body).map_err(|error| {
            ConnectorError::Fatal(format!(
                "the delivery is not a Zendesk ticket event: {error}"
            ))
        })?;
        Ok(mapping::delivery_event(&delivery, base_url(&config)?)?
            .into_iter()
            .collect())
    }
}

/// Verifies `X-Zendesk-Webhook-Signature` on a delivery received at `now`.
pub fn verify_signature(
    request: &WebhookRequest,
    secrets: &[&str],
    now: Timestamp,
    tolerance_seconds: i64,
) -> Result<(), ConnectorError> {
    let signature = webhook::header(request, "x-zendesk-webhook-signature").ok_or_else(|| {
        ConnectorError::Auth("the delivery has no X-Zendesk-Webhook-Signature header".into())
    })?;
    let timestamp =
        webhook::header(request, "x-zendesk-webhook-signature-timestamp").ok_or_else(|| {
            ConnectorError::Auth(
                "the delivery has no X-Zendesk-Webhook-Signature-Timestamp header".into(),
            )
        })?;
    let presented = BASE64
        .decode(signature.trim())
        .map_err(|_| ConnectorError::Auth("X-Zendesk-Webhook-Signature is not base64".into()))?;
    let matched = secrets.iter().any(|secret| {
        let expected =
            webhook::hmac_sha256(secret.as_bytes(), &[timestamp.as_bytes(), &request.body]);
        webhook::constant_time_eq(&presented, &expected)
    });
    if !matched {
        return Err(ConnectorError::Auth(
            "X-Zendesk-Webhook-Signature does not match the configured webhook_secret".into(),
        ));
    }
    let signed_at = time::parse_rfc3339(timestamp)
        .map_err(|_| {
            ConnectorError::Auth(format!(
                "X-Zendesk-Webhook-Signature-Timestamp `{timestamp}` is not an RFC 3339 time"
            ))
        })?
        .div_euclid(1_000_000);
    webhook::check_freshness(signed_at, now, tolerance_seconds)
}

/// The signature Zendesk sends for `body` at `timestamp` (for tests and replays).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    BASE64.encode(webhook::hmac_sha256(
        secret.as_bytes(),
        &[timestamp.as_bytes(), body],
    ))
}

use rapport_pdk::Timestamp;

fn base_url(config: &Config) -> Result<&str, ConnectorError> {
    Ok(config.require("base_url")?.trim_end_matches('/'))
}

/// Where the first sync starts: `backfill_start`, or the beginning.
fn start_time(config: &Config) -> Result<i64, ConnectorError> {
    Ok(match config.get("backfill_start") {
        Some(start) => time::parse_rfc3339(start)?.div_euclid(1_000_000).max(0),
        None => 0,
    })
}

fn get(config: &Config, url: &str) -> Result<http::Response, ConnectorError> {
    let request = http::get(url);
    let request = match (
        config.secret("oauth_token"),
        config.get("email"),
        config.secret("api_token"),
    ) {
        (Some(token), _, _) => request.bearer(token),
        (None, Some(email), Some(token)) => request.header(
            "authorization",
            &format!("Basic {}", BASE64.encode(format!("{email}/token:{token}"))),
        ),
        _ => {
            return Err(ConnectorError::Config(
                "set either the `oauth_token` secret, or the `email` setting with the `api_token` secret".into(),
            ));
        }
    };
    request.send_ok()
}

/// All audits of one ticket, following pagination.
fn audits(config: &Config, base: &str, ticket: u64) -> Result<Vec<mapping::Audit>, ConnectorError> {
    let mut url = format!("{base}/api/v2/tickets/{ticket}/audits.json");
    let mut audits = Vec::new();
    for _ in 0..AUDIT_PAGES_MAX {
        let page: AuditPage = get(config, &url)?.json()?;
        let next = page.next().map(str::to_owned);
        audits.extend(page.audits);
        match next {
            Some(next) => url = next,
            None => return Ok(audits),
        }
    }
    log::warn(&format!(
        "ticket {ticket} has more than {AUDIT_PAGES_MAX} pages of audits; the rest are skipped"
    ));
    Ok(audits)
}

rapport_pdk::export_connector!(Zendesk);

#[cfg(test)]
mod tests {
    use super::*;
    use rapport_pdk::Header;

    const BODY: &[u8] = br#"{"type":"zen:event-type:ticket.created"}"#;
    const STAMP: &str = "2026-03-01T12:00:00Z";

    fn delivery(signature: Option<&str>, timestamp: Option<&str>, body: &[u8]) -> WebhookRequest {
        let mut headers = Vec::new();
        if let Some(signature) = signature {
            headers.push(Header {
                name: "X-Zendesk-Webhook-Signature".into(),
                value: signature.as_bytes().to_vec(),
            });
        }
        if let Some(timestamp) = timestamp {
            headers.push(Header {
                name: "X-Zendesk-Webhook-Signature-Timestamp".into(),
                value: timestamp.as_bytes().to_vec(),
            });
        }
        WebhookRequest {
            method: "POST".into(),
            path: "/hooks/zendesk".into(),
            query: String::new(),
            headers,
            body: body.to_vec(),
        }
    }

    fn refusal(request: &WebhookRequest, now: i64) -> String {
        match verify_signature(request, &["s3cret"], time::from_unix_seconds(now), 300) {
            Err(ConnectorError::Auth(message)) => message,
            other => panic!("expected an auth refusal, got {other:?}"),
        }
    }

    #[test]
    fn signatures_verify_and_tampering_staleness_and_absence_are_refused() {
        let now = 1_772_366_400; // STAMP
        let signature = sign("s3cret", STAMP, BODY);
        verify_signature(
            &delivery(Some(&signature), Some(STAMP), BODY),
            &["old", "s3cret"],
            time::from_unix_seconds(now + 299),
            300,
        )
        .unwrap();
        assert!(refusal(&delivery(Some(&signature), Some(STAMP), b"{}"), now).contains("match"));
        assert!(
            refusal(
                &delivery(Some(&signature), Some("2026-03-01T12:00:01Z"), BODY),
                now
            )
            .contains("match")
        );
        assert!(
            refusal(&delivery(Some(&signature), Some(STAMP), BODY), now + 301)
                .contains("tolerance")
        );
        assert!(
            refusal(&delivery(None, Some(STAMP), BODY), now)
                .contains("no X-Zendesk-Webhook-Signature header")
        );
        assert!(refusal(&delivery(Some(&signature), None, BODY), now).contains("Timestamp"));
        assert!(refusal(&delivery(Some("%%%"), Some(STAMP), BODY), now).contains("base64"));
    }
}
