//! An OAuth 2.0 connector, as small as one can be: reads
//! `{base_url}/api/activities?after=<checkpoint>` (a JSON page of client activity) with
//! the connection's access token, and puts each item on the timeline of the client its
//! email points to.
//!
//! What makes it an OAuth connector is its manifest (`.oauth2(...)`: where the person
//! grants access, where tokens are exchanged, the scopes, PKCE, and the hosts the token
//! is for) and `Request::oauth()`, which asks the host for the current access token.
//! The connector never sees a refresh token and never refreshes: when the source
//! answers 401 it returns `auth`, and the host refreshes once and repeats the call.

use rapport_pdk::prelude::*;

#[derive(serde::Deserialize)]
struct ActivityPage {
    items: Vec<Activity>,
    next: Option<String>,
    more: bool,
}

#[derive(serde::Deserialize)]
struct Activity {
    id: String,
    at: String,
    title: String,
    email: String,
}

struct ExampleOAuth;

impl Connector for ExampleOAuth {
    fn describe() -> Manifest {
        manifest(
            "example-oauth",
            env!("CARGO_PKG_VERSION"),
            "Client activity from an API that takes OAuth 2.0",
        )
        .emits(&["activity.*"])
        .setting(
            "base_url",
            "Where the API and its OAuth endpoints are, e.g. https://api.example.com",
            true,
        )
        .needs_host("{base_url}")
        .oauth2(
            oauth2("{base_url}/oauth/authorize", "{base_url}/oauth/token")
                .revocation("{base_url}/oauth/revoke")
                .scopes(&["activities.read", "offline_access"])
                // As Google needs: a refresh token is issued only with consent asked.
                .parameter("prompt", "consent")
                .pkce()
                .token_for("{base_url}"),
        )
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        fetch(&config, None).map(|_| ())
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let page = fetch(&config, checkpoint.as_deref())?;
        let mut events = Vec::with_capacity(page.items.len());
        for item in page.items {
            events.push(
                event(
                    &item.id,
                    "activity.logged",
                    time::parse_rfc3339(&item.at)?,
                    &item.title,
                )
                .email(&item.email),
            );
        }
        Ok(match page.next {
            Some(next) => Page::with_checkpoint(events, next, page.more),
            None => Page::done(events),
        })
    }

    fn handle_webhook(_: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
        Err(ConnectorError::Config(
            "example-oauth takes no webhooks".into(),
        ))
    }
}

fn fetch(config: &Config, after: Option<&str>) -> Result<ActivityPage, ConnectorError> {
    let mut url = format!(
        "{}/api/activities",
        config.require("base_url")?.trim_end_matches('/')
    );
    if let Some(after) = after {
        url.push_str(&format!("?after={}", http::encode_query_value(after)));
    }
    // A 401 becomes `auth`, which makes the host refresh the token and call again.
    http::get(&url).oauth()?.send_ok()?.json()
}

rapport_pdk::export_connector!(ExampleOAuth);
