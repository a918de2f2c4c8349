//! rapport's Stripe connector.
//!
//! **Pull**: reads `GET /v1/events` for the event types in [`mapping::MAPPED_TYPES`].
//! Stripe lists events newest first, so a *pass* starts at the newest event created at
//! or after the checkpoint's `since` and pages towards older ones with
//! `starting_after`. Each page is committed with a checkpoint that remembers where the
//! pass is, so a crash resumes mid-pass; when the pass reaches `since` the checkpoint's
//! `since` becomes the newest event the pass saw. `created[gte]` (not `gt`) re-reads the
//! events of that one second next time, which the host stores once by their id, so
//! nothing created in the same second as the newest event is missed.
//!
//! **Push**: `handle-webhook` verifies `Stripe-Signature` (HMAC-SHA256 over
//! `"{t}.{raw body}"`, any `v1` under any configured secret, 300 s tolerance) before it
//! reads the body, and maps the event exactly as the pull does.

use rapport_pdk::prelude::*;
use serde::{Deserialize, Serialize};

pub mod mapping;
pub mod signature;

use mapping::{EventList, StripeEvent};

/// Events per page; Stripe's maximum.
const PAGE_EVENTS_DEFAULT: u64 = 100;

/// Where the next sync continues, stored by the host with each page.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Events created at or after this (Unix seconds) are read by the next pass.
    pub since: i64,
    /// Mid-pass: the oldest event id already committed in this pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_after: Option<String>,
    /// Mid-pass: the creation time of the newest event this pass read; the next
    /// `since` once the pass completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_newest: Option<i64>,
}

impl Checkpoint {
    /// Reads a stored checkpoint; none means start from `backfill_start` (or from the
    /// oldest event Stripe still lists, 30 days back).
    pub fn load(stored: Option<&str>, config: &Config) -> Result<Checkpoint, ConnectorError> {
        match checkpoint::load(stored)? {
            Some(checkpoint) => Ok(checkpoint),
            None => Ok(Checkpoint {
                since: match config.get("backfill_start") {
                    Some(start) => time::parse_rfc3339(start)?.div_euclid(1_000_000),
                    None => 0,
                },
                ..Checkpoint::default()
            }),
        }
    }

    /// The query of the page this checkpoint asks for.
    pub fn query(&self, page_size: u64) -> String {
        let mut query = format!("limit={page_size}&created%5Bgte%5D={}", self.since);
        for (stripe_type, _) in mapping::MAPPED_TYPES {
            query.push_str("&types%5B%5D=");
            query.push_str(stripe_type);
        }
        if let Some(after) = &self.starting_after {
            query.push_str("&starting_after=");
            query.push_str(after);
        }
        query
    }

    /// Where to continue after a page of `events` (newest first) that says whether
    /// older ones remain.
    pub fn after_page(&self, events: &[StripeEvent], has_more: bool) -> Checkpoint {
        let pass_newest = self
            .pass_newest
            .or_else(|| events.first().map(|event| event.created));
        match (has_more, events.last()) {
            (true, Some(oldest)) => Checkpoint {
                since: self.since,
                starting_after: Some(oldest.id.clone()),
                pass_newest,
            },
            _ => Checkpoint {
                since: pass_newest.unwrap_or(self.since).max(self.since),
                starting_after: None,
                pass_newest: None,
            },
        }
    }
}

struct Stripe;

impl Connector for Stripe {
    fn describe() -> Manifest {
        manifest(
            "billing-stripe",
            env!("CARGO_PKG_VERSION"),
            "Stripe billing: invoices issued, paid and failed, refunds, subscription starts, changes and cancellations, with amounts, plans and MRR",
        )
        .emits(&mapping::MAPPED_TYPES.iter().map(|(_, kind)| *kind).collect::<Vec<_>>())
        .setting(
            "base_url",
            "Stripe's API root: https://api.stripe.com (or a stripe-mock / proxy address)",
            true,
        )
        .setting(
            "api_version",
            "Pins the Stripe-Version header, e.g. 2025-03-31.basil (default: the account's)",
            false,
        )
        .setting("page_size", "Events per request, 1 to 100 (default 100)", false)
        .setting(
            "webhook_tolerance_seconds",
            "How old a webhook signature may be (default 300)",
            false,
        )
        .secret("api_key", "A restricted key with read access to events", true)
        .secret(
            "webhook_secret",
            "The endpoint's signing secret (whsec_...); several, comma-separated, while rotating",
            false,
        )
        // Exactly where base_url points: api.stripe.com in production, or stripe-mock
        // or a proxy.
        .needs_host("{base_url}")
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        request::<EventList>(&config, "limit=1")?;
        Ok(())
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let at = Checkpoint::load(checkpoint.as_deref(), &config)?;
        let page_size = config.number("page_size", PAGE_EVENTS_DEFAULT, 1..=100)?;
        let list: EventList = request(&config, &at.query(page_size))?;
        let next = at.after_page(&list.data, list.has_more);
        let mut events = Vec::with_capacity(list.data.len());
        for event in &list.data {
            if let Some(mapped) = mapping::to_event(event)? {
                events.push(mapped);
            }
        }
        let checkpoint = checkpoint::save(&next);
        Ok(Page::with_checkpoint(events, checkpoint, list.has_more))
    }

    fn handle_webhook(
        config: Config,
        request: WebhookRequest,
    ) -> Result<Vec<Event>, ConnectorError> {
        let secrets = webhook::secrets(&config, "webhook_secret")?;
        let tolerance = webhook::tolerance_seconds(&config)?;
        let header = webhook::header(&request, "stripe-signature").ok_or_else(|| {
            ConnectorError::Auth("the delivery has no Stripe-Signature header".into())
        })?;
        signature::verify(header, &request.body, &secrets, time::now(), tolerance)?;
        let event: StripeEvent = serde_json::from_slice(&request.body).map_err(|error| {
            ConnectorError::Fatal(format!("the delivery is not a Stripe event: {error}"))
        })?;
        match mapping::to_event(&event)? {
            Some(mapped) => Ok(vec![mapped]),
            None => {
                log::debug(&format!("ignored a {} delivery", event.kind));
                Ok(Vec::new())
            }
        }
    }
}

fn request<T: serde::de::DeserializeOwned>(
    config: &Config,
    query: &str,
) -> Result<T, ConnectorError> {
    let base_url = config.require("base_url")?.trim_end_matches('/');
    let mut call = http::get(&format!("{base_url}/v1/events?{query}"))
        .bearer(config.require_secret("api_key")?);
    if let Some(version) = config.get("api_version") {
        call = call.header("stripe-version", version);
    }
    call.send_ok()?.json()
}

rapport_pdk::export_connector!(Stripe);

#[cfg(test)]
mod tests {
    use super::*;

    fn events(ids_and_times: &[(&str, i64)]) -> Vec<StripeEvent> {
        ids_and_times
            .iter()
            .map(|(id, created)| {
                serde_json::from_value(serde_json::json!({
                    "id": id, "type": "invoice.paid", "created": created,
                    "data": { "object": {} }
                }))
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_pass_pages_to_older_events_then_moves_since_to_its_newest() {
        let start = Checkpoint {
            since: 100,
            ..Checkpoint::default()
        };
        assert!(!start.query(100).contains("starting_after"));
        assert!(start.query(100).contains("created%5Bgte%5D=100"));

        let first = start.after_page(&events(&[("evt_9", 190), ("evt_8", 180)]), true);
        assert_eq!(first.since, 100);
        assert_eq!(first.starting_after.as_deref(), Some("evt_8"));
        assert_eq!(first.pass_newest, Some(190));
        assert!(first.query(2).ends_with("&starting_after=evt_8"));

        // The newest of the pass is kept while paging back, and becomes `since`.
        let second = first.after_page(&events(&[("evt_7", 150)]), false);
        assert_eq!(
            second,
            Checkpoint {
                since: 190,
                starting_after: None,
                pass_newest: None
            }
        );
        // Nothing new: the checkpoint stays where it is.
        assert_eq!(second.after_page(&[], false), second);
    }

    #[test]
    fn checkpoints_round_trip_and_foreign_ones_are_refused() {
        let config = Config {
            settings: vec![rapport_pdk::ConfigEntry {
                key: "backfill_start".into(),
                value: "2025-01-01T00:00:00Z".into(),
            }],
            secrets: Vec::new(),
            connection: None,
        };
        assert_eq!(
            Checkpoint::load(None, &config).unwrap().since,
            1_735_689_600
        );
        let mid = Checkpoint {
            since: 5,
            starting_after: Some("evt_1".into()),
            pass_newest: Some(9),
        };
        let text = serde_json::to_string(&mid).unwrap();
        assert_eq!(Checkpoint::load(Some(&text), &config).unwrap(), mid);
        assert!(matches!(
            Checkpoint::load(Some("42"), &config),
            Err(ConnectorError::Fatal(_))
        ));
    }
}
