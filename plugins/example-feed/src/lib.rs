//! Reads `{base_url}/feed?after=<checkpoint>`, a JSON page of client activity, and puts
//! each item on the timeline of the client its customer id or email points to. Pages may
//! list deleted item ids; items may carry a version. Webhooks (`POST` with the same item
//! JSON) are accepted when their `x-feed-token` header equals the `webhook_token` secret.

use rapport_pdk::prelude::*;

#[derive(serde::Deserialize)]
struct FeedPage {
    items: Vec<Item>,
    #[serde(default)]
    deleted: Vec<String>,
    next: Option<String>,
    more: bool,
}

#[derive(serde::Deserialize)]
struct Item {
    id: String,
    kind: String,
    at: String,
    title: String,
    customer: Option<String>,
    email: Option<String>,
    #[serde(default)]
    version: Option<i64>,
}

#[derive(serde::Deserialize)]
struct Delivery {
    items: Vec<Item>,
}

struct ExampleFeed;

impl Connector for ExampleFeed {
    fn describe() -> Manifest {
        manifest(
            "example-feed",
            env!("CARGO_PKG_VERSION"),
            "A JSON activity feed",
        )
        // The feed carries support activity and items of its own.
        .emits(&["support.*", "feed.*"])
        .setting(
            "base_url",
            "Where the feed is served, e.g. https://feed.example.com",
            true,
        )
        .secret("token", "Bearer token for the feed", false)
        .secret(
            "webhook_token",
            "Shared token webhook deliveries must present in `x-feed-token`",
            false,
        )
        // Exactly where base_url points.
        .needs_host("{base_url}")
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        fetch(&config, None).map(|_| ())
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let page = fetch(&config, checkpoint.as_deref())?;
        let events = page
            .items
            .into_iter()
            .map(to_event)
            .collect::<Result<Vec<_>, _>>()?;
        log::info(&format!("read {} items", events.len()));
        let mut out = match page.next {
            Some(next) => Page::with_checkpoint(events, next, page.more),
            None => Page::done(events),
        };
        out.deleted = page.deleted;
        Ok(out)
    }

    fn handle_webhook(
        config: Config,
        request: WebhookRequest,
    ) -> Result<Vec<Event>, ConnectorError> {
        let expected = config.require_secret("webhook_token")?;
        let presented = request
            .headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case("x-feed-token"))
            .map(|header| header.value.as_slice())
            .unwrap_or_default();
        if !constant_time_eq(presented, expected.as_bytes()) {
            return Err(ConnectorError::Auth(
                "the delivery's x-feed-token does not match webhook_token".into(),
            ));
        }
        let delivery: Delivery = serde_json::from_slice(&request.body).map_err(|error| {
            ConnectorError::Fatal(format!("the delivery is not feed JSON: {error}"))
        })?;
        delivery.items.into_iter().map(to_event).collect()
    }
}

fn to_event(item: Item) -> Result<Event, ConnectorError> {
    let mut event = event(
        &item.id,
        &item.kind,
        time::parse_rfc3339(&item.at)?,
        &item.title,
    );
    if let Some(version) = item.version {
        event = event.version(version);
    }
    if let Some(customer) = item.customer {
        event = event.external_id("feed", &customer);
    }
    if let Some(email) = item.email {
        event = event.email(&email);
    }
    Ok(event)
}

/// Compares without an early exit, so timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn fetch(config: &Config, after: Option<&str>) -> Result<FeedPage, ConnectorError> {
    let mut url = format!("{}/feed", config.require("base_url")?.trim_end_matches('/'));
    if let Some(after) = after {
        url.push_str(&format!("?after={after}"));
    }
    let mut request = http::get(&url);
    if let Some(token) = config.secret("token") {
        request = request.bearer(token);
    }
    request.send_ok()?.json()
}

rapport_pdk::export_connector!(ExampleFeed);
