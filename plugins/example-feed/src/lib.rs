//! Reads `{base_url}/feed?after=<checkpoint>`, a JSON page of client activity, and puts
//! each item on the timeline of the client its customer id or email points to.

use rapport_pdk::prelude::*;

#[derive(serde::Deserialize)]
struct FeedPage {
    items: Vec<Item>,
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
}

struct ExampleFeed;

impl Connector for ExampleFeed {
    fn describe() -> Manifest {
        manifest(
            "example-feed",
            env!("CARGO_PKG_VERSION"),
            "A JSON activity feed",
        )
        .emits(&["note"])
        .setting(
            "base_url",
            "Where the feed is served, e.g. https://feed.example.com",
            true,
        )
        .secret("token", "Bearer token for the feed", false)
        // The feed's host is the operator's choice: allow exactly what they grant.
        .needs_host("*")
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        fetch(&config, None).map(|_| ())
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let page = fetch(&config, checkpoint.as_deref())?;
        let mut events = Vec::with_capacity(page.items.len());
        for item in page.items {
            let mut event = event(
                &item.id,
                &item.kind,
                time::parse_rfc3339(&item.at)?,
                &item.title,
            );
            if let Some(customer) = item.customer {
                event = event.external_id("feed", &customer);
            }
            if let Some(email) = item.email {
                event = event.email(&email);
            }
            events.push(event);
        }
        log::info(&format!("read {} items", events.len()));
        Ok(match page.next {
            Some(next) => Page::with_checkpoint(events, next, page.more),
            None => Page::done(events),
        })
    }

    fn handle_webhook(_: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
        Err(ConnectorError::Config(
            "example-feed has no webhooks".into(),
        ))
    }
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
