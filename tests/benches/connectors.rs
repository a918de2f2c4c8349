//! What running a reference connector in the sandbox costs, each against a native peer
//! measured in the same process against the same loopback upstream:
//! - billing-stripe syncing N events (pages of 100) through the host, vs a native
//!   client fetching the same pages and parsing their JSON;
//! - email-imap syncing N messages (pages of 100) from Dovecot through the host, vs a
//!   native client issuing the same IMAP commands;
//! - gmail, google-calendar, outlook-mail and outlook-calendar syncing N messages or
//!   events (a first full read) through the host from the Google and Microsoft
//!   stand-ins, vs a native client fetching the same pages (and each message) and
//!   parsing their JSON;
//! - loading each plugin: compiling it, and loading it from the compiled cache.
//!
//! `cargo bench -p rapport-e2e --bench connectors` (sizes with RAPPORT_BENCH_STRIPE_EVENTS,
//! RAPPORT_BENCH_IMAP_MESSAGES, RAPPORT_BENCH_PEOPLE_ITEMS). Needs Dovecot for the IMAP
//! half (skipped without it).

use rapport_plugin_host::{
    AccessToken, CallLimits, Connector, Grants, HostConfig, PluginHost, TokenFuture, TokenSource,
};
use rapport_testkit::dovecot::{self, Dovecot};
use rapport_testkit::google::{self, FakeGoogle};
use rapport_testkit::microsoft::{self, FakeMicrosoft};
use rapport_testkit::stripe::{self as fake, FakeStripe};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 5;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn host(cache: Option<&Path>) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: cache.map(Path::to_path_buf),
        pooling: false,
        concurrent_calls_max: 4,
        limits: CallLimits {
            deadline_ms: 60_000,
            http_timeout_ms: 10_000,
            ..CallLimits::default()
        },
        ..HostConfig::default()
    })
    .expect("a host")
}

async fn bind(
    host: &PluginHost,
    path: &str,
    grant: String,
    settings: &[(&str, String)],
    secrets: &[(&str, &str)],
) -> Connector {
    host.load(Path::new(path))
        .await
        .expect("load")
        .connector(Grants {
            connector_id: "bench".into(),
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            secrets: secrets
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            allowed_hosts: vec![grant],
            allow_private_networks: true,
            ..Default::default()
        })
        .expect("bind")
}

/// The access token a stand-in issued, as the connection would hand it out (refreshing
/// is not what is measured here).
struct Issued(String);

impl TokenSource for Issued {
    fn access_token(&self) -> TokenFuture<'_, AccessToken> {
        let token = AccessToken {
            token: self.0.clone(),
            token_type: "Bearer".into(),
            expires_at_micros: None,
        };
        Box::pin(async move { Ok(token) })
    }

    fn refused<'a>(&'a self, _: &'a AccessToken) -> TokenFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }
}

/// A person's connector bound to a stand-in with `token`.
async fn bind_person(
    host: &PluginHost,
    path: &str,
    grant: String,
    settings: &[(&str, String)],
    token: String,
) -> Connector {
    host.load(Path::new(path))
        .await
        .expect("load")
        .connector(Grants {
            connector_id: "bench:1".into(),
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            allowed_hosts: vec![grant],
            allow_private_networks: true,
            connection: Some(rapport_plugin_host::Connection {
                id: "bench:1".into(),
                scope: rapport_plugin_host::ConnectionScope::Person,
                owner_email: Some(PERSON.into()),
                provider_account: Some(PERSON.into()),
                sharing: Some(rapport_core::sharing::Sharing::Shared),
            }),
            tokens: Some(Arc::new(Issued(token))),
            ..Default::default()
        })
        .expect("bind")
}

const PERSON: &str = "am@ours.example";

/// One GET with a bearer token over a fresh connection (as the plugins make them):
/// the body.
async fn native_get(
    address: std::net::SocketAddr,
    path: &str,
    token: &str,
    prefer: &str,
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n{prefer}connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    response.split_off(at)
}

/// The path and query of an absolute link from the stand-in.
fn path_of(link: &str) -> String {
    let after_scheme = link.split_once("//").map_or(link, |(_, rest)| rest);
    after_scheme[after_scheme.find('/').unwrap_or(after_scheme.len())..].to_owned()
}

/// Native Gmail: list the messages in pages of 100 and read each as raw, decoding it.
async fn native_gmail(address: std::net::SocketAddr, token: &str) -> usize {
    use base64::Engine as _;
    let mut page: Option<String> = None;
    let mut read = 0;
    loop {
        let mut path = "/gmail/v1/users/me/messages?maxResults=100&q=after%3A0".to_owned();
        if let Some(page) = &page {
            path.push_str(&format!("&pageToken={page}"));
        }
        let list: serde_json::Value =
            serde_json::from_slice(&native_get(address, &path, token, "").await).unwrap();
        for message in list["messages"].as_array().into_iter().flatten() {
            let id = message["id"].as_str().unwrap();
            let body = native_get(
                address,
                &format!("/gmail/v1/users/me/messages/{id}?format=raw"),
                token,
                "",
            )
            .await;
            let message: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let raw = base64::engine::general_purpose::URL_SAFE
                .decode(message["raw"].as_str().unwrap())
                .unwrap();
            assert!(!raw.is_empty());
            read += 1;
        }
        match list["nextPageToken"].as_str() {
            Some(next) => page = Some(next.to_owned()),
            None => return read,
        }
    }
}

/// Native Google Calendar: `events.list` in pages of 250.
async fn native_google_calendar(address: std::net::SocketAddr, token: &str) -> usize {
    let mut page: Option<String> = None;
    let mut events = 0;
    loop {
        let mut path = "/calendar/v3/calendars/primary/events?singleEvents=true&showDeleted=true&maxResults=250&timeMin=2026-01-01T00%3A00%3A00Z".to_owned();
        if let Some(page) = &page {
            path.push_str(&format!("&pageToken={page}"));
        }
        let list: serde_json::Value =
            serde_json::from_slice(&native_get(address, &path, token, "").await).unwrap();
        events += list["items"].as_array().map_or(0, Vec::len);
        match list["nextPageToken"].as_str() {
            Some(next) => page = Some(next.to_owned()),
            None => return events,
        }
    }
}

/// Native Graph: a delta round from `first` in pages of `size`, reading each message's
/// MIME source when `read_messages`.
async fn native_graph(
    address: std::net::SocketAddr,
    token: &str,
    first: &str,
    size: usize,
    read_messages: bool,
) -> usize {
    let prefer = format!("prefer: odata.maxpagesize={size}\r\n");
    let mut path = first.to_owned();
    let mut items = 0;
    loop {
        let page: serde_json::Value =
            serde_json::from_slice(&native_get(address, &path, token, &prefer).await).unwrap();
        for item in page["value"].as_array().into_iter().flatten() {
            if read_messages {
                let id = item["id"].as_str().unwrap();
                let source = native_get(
                    address,
                    &format!("/v1.0/me/messages/{id}/$value"),
                    token,
                    "",
                )
                .await;
                assert!(!source.is_empty());
            }
            items += 1;
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => path = path_of(next),
            None => return items,
        }
    }
}

/// Median of `RUNS` timings of `run`, which returns how many items it handled.
async fn median<F, Fut>(mut run: F) -> (Duration, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = Vec::new();
    let mut items = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        items = run().await;
        times.push(start.elapsed());
    }
    times.sort();
    (times[RUNS / 2], items)
}

async fn sync_all(connector: &Connector) -> usize {
    let mut checkpoint: Option<String> = None;
    let mut events = 0;
    loop {
        let page = connector.sync(checkpoint.as_deref()).await.expect("a page");
        events += page.events.len();
        checkpoint = page.checkpoint;
        if !page.more {
            return events;
        }
    }
}

/// A native client reading the same `/v1/events` pages and parsing them.
async fn native_stripe(address: std::net::SocketAddr, key: &str) -> usize {
    let types: String = [
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.finalized",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "charge.refunded",
        "customer.created",
        "customer.updated",
    ]
    .iter()
    .map(|kind| format!("&types%5B%5D={kind}"))
    .collect();
    let mut after: Option<String> = None;
    let mut events = 0;
    loop {
        let mut path = format!("/v1/events?limit=100&created%5Bgte%5D=0{types}");
        if let Some(after) = &after {
            path.push_str(&format!("&starting_after={after}"));
        }
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {key}\r\nconnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let page: serde_json::Value = serde_json::from_slice(&response[at..]).unwrap();
        let data = page["data"].as_array().unwrap();
        events += data.len();
        after = data
            .last()
            .map(|event| event["id"].as_str().unwrap().to_owned());
        if !page["has_more"].as_bool().unwrap() {
            return events;
        }
    }
}

/// A native client issuing the IMAP commands the plugin issues, 100 messages a fetch.
fn native_imap(port: u16, messages: usize) -> usize {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let read_until = |stream: &mut std::net::TcpStream, tag: &[u8]| -> Vec<u8> {
        let mut all = Vec::new();
        let mut buffer = [0u8; 65536];
        loop {
            let read = stream.read(&mut buffer).unwrap();
            assert!(read > 0, "the server closed the connection");
            all.extend_from_slice(&buffer[..read]);
            if all.windows(tag.len()).any(|w| w == tag) && all.ends_with(b"\r\n") {
                return all;
            }
        }
    };
    read_until(&mut stream, b"* OK");
    stream
        .write_all(
            format!(
                "a1 LOGIN \"{}\" \"{}\"\r\n",
                dovecot::USER,
                dovecot::PASSWORD
            )
            .as_bytes(),
        )
        .unwrap();
    read_until(&mut stream, b"a1 OK");
    stream.write_all(b"a2 EXAMINE \"INBOX\"\r\n").unwrap();
    read_until(&mut stream, b"a2 OK");
    let mut fetched = 0;
    let mut tag = 3;
    while fetched < messages {
        let to = (fetched + 100).min(messages);
        let set: Vec<String> = (fetched + 1..=to).map(|uid| uid.to_string()).collect();
        stream
            .write_all(
                format!(
                    "a{tag} UID FETCH {} (UID INTERNALDATE RFC822.SIZE BODY.PEEK[]<0.262144>)\r\n",
                    set.join(",")
                )
                .as_bytes(),
            )
            .unwrap();
        read_until(&mut stream, format!("a{tag} OK").as_bytes());
        fetched = to;
        tag += 1;
    }
    stream.write_all(b"z LOGOUT\r\n").unwrap();
    fetched
}

fn row(name: &str, items: usize, unit: &str, time: Duration) -> String {
    let rate = items as f64 / time.as_secs_f64();
    format!(
        "| {name} | {items} {unit} | {:.1} ms | {rate:.0} {unit}/s |",
        time.as_secs_f64() * 1e3
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut rows = Vec::new();

    // Loading: compile (no cache) vs from the compiled cache.
    let cache = tempfile::tempdir().unwrap();
    for (name, path) in [
        ("billing-stripe", rapport_testkit::BILLING_STRIPE),
        ("support-zendesk", rapport_testkit::SUPPORT_ZENDESK),
        ("email-imap", rapport_testkit::EMAIL_IMAP),
    ] {
        let bytes = std::fs::metadata(path).unwrap().len();
        let start = Instant::now();
        host(Some(cache.path()))
            .load(Path::new(path))
            .await
            .unwrap();
        let compile = start.elapsed();
        let (cached, _) = median(|| async {
            host(Some(cache.path()))
                .load(Path::new(path))
                .await
                .unwrap();
            1
        })
        .await;
        rows.push(format!(
            "| load {name} ({} KiB) | compile {:.0} ms | from cache {:.1} ms | {:.0}× |",
            bytes / 1024,
            compile.as_secs_f64() * 1e3,
            cached.as_secs_f64() * 1e3,
            compile.as_secs_f64() / cached.as_secs_f64()
        ));
    }

    // Stripe.
    let events = size("RAPPORT_BENCH_STRIPE_EVENTS", 5_000);
    let upstream = FakeStripe::start("rk_bench").await;
    for n in 0..events {
        let customer = format!("cus_{}", n % 50);
        let created = 1_760_000_000 + n as i64 * 60;
        match n % 3 {
            0 => upstream.push(
                "invoice.paid",
                created,
                fake::invoice(
                    &format!("in_{n}"),
                    &customer,
                    "INV",
                    5_000,
                    Some("ap@acme.example"),
                ),
                None,
            ),
            1 => upstream.push(
                "customer.subscription.updated",
                created,
                fake::subscription(&format!("sub_{n}"), &customer, "Pro", 5_000),
                Some(serde_json::json!({"status": "trialing"})),
            ),
            _ => upstream.push(
                "charge.refunded",
                created,
                fake::refunded_charge(&format!("ch_{n}"), &customer, 5_000, 1_000),
                None,
            ),
        };
    }
    let bench_host = host(None);
    let stripe = bind(
        &bench_host,
        rapport_testkit::BILLING_STRIPE,
        upstream.upstream.grant(),
        &[("base_url", upstream.upstream.url())],
        &[("api_key", "rk_bench")],
    )
    .await;
    let (plugin_time, plugin_events) = median(|| sync_all(&stripe)).await;
    let (native_time, native_events) =
        median(|| native_stripe(upstream.upstream.address, "rk_bench")).await;
    assert_eq!(plugin_events, events);
    assert_eq!(native_events, events);
    rows.push(row(
        "stripe: plugin in the host (fetch, parse, map)",
        plugin_events,
        "events",
        plugin_time,
    ));
    rows.push(row(
        "stripe: native (fetch, parse)",
        native_events,
        "events",
        native_time,
    ));
    rows.push(format!(
        "| stripe: ratio | | {:.2}× | |",
        plugin_time.as_secs_f64() / native_time.as_secs_f64()
    ));

    // IMAP.
    let messages = size("RAPPORT_BENCH_IMAP_MESSAGES", 1_000);
    let bodies: Vec<Vec<u8>> = (0..messages)
        .map(|n| {
            format!(
                "From: Client {n} <c{n}@client{}.example>\r\nTo: am@rapport.example\r\nSubject: Question {n}\r\n\
                 Message-ID: <m{n}@client.example>\r\nDate: Mon, 02 Feb 2026 10:00:00 +0000\r\n\
                 Content-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
                n % 40,
                "Could you look at our invoice? ".repeat(40)
            )
            .into_bytes()
        })
        .collect();
    let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
    if let Some(server) = Dovecot::start(&refs) {
        let mail = bind(
            &bench_host,
            rapport_testkit::EMAIL_IMAP,
            Dovecot::grant(server.imap_port),
            &[
                ("host", "127.0.0.1".into()),
                ("port", server.imap_port.to_string()),
                ("security", "plaintext".into()),
                ("username", dovecot::USER.into()),
                ("folders", "INBOX".into()),
                ("messages_per_page", "100".into()),
            ],
            &[("password", dovecot::PASSWORD)],
        )
        .await;
        // Warm Dovecot's index before timing either side.
        sync_all(&mail).await;
        let (plugin_time, plugin_messages) = median(|| sync_all(&mail)).await;
        let port = server.imap_port;
        let (native_time, native_messages) = median(|| async move {
            tokio::task::spawn_blocking(move || native_imap(port, messages))
                .await
                .unwrap()
        })
        .await;
        assert_eq!(plugin_messages, messages);
        rows.push(row(
            "imap: plugin in the host (fetch, MIME parse, map)",
            plugin_messages,
            "messages",
            plugin_time,
        ));
        rows.push(row(
            "imap: native (same commands, no parsing)",
            native_messages,
            "messages",
            native_time,
        ));
        rows.push(format!(
            "| imap: ratio | | {:.2}× | |",
            plugin_time.as_secs_f64() / native_time.as_secs_f64()
        ));
    }

    // People's own accounts: Google and Microsoft 365.
    let items = size("RAPPORT_BENCH_PEOPLE_ITEMS", 10_000);
    let start = chrono::DateTime::parse_from_rfc3339("2026-06-01T09:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let body = "Could you look at our invoice? ".repeat(40);
    let message = |n: usize| {
        google::message_bytes(
            &format!("m{n}@client{}.example", n % 40),
            &format!("Client {n} <c{n}@client{}.example>", n % 40),
            &[PERSON],
            &format!("Question {n}"),
            start + chrono::Duration::minutes(n as i64),
            None,
            &body,
        )
    };
    let google = FakeGoogle::start().await;
    let google_token = google.with(|state| {
        for n in 0..items {
            let at = start + chrono::Duration::minutes(n as i64);
            state.put_message(PERSON, &format!("g{n}"), &message(n), &["INBOX"], at);
            state.put_event(
                PERSON,
                google::meeting(
                    &format!("e{n}"),
                    &format!("Call {n}"),
                    PERSON,
                    &[PERSON, &format!("c{n}@client{}.example", n % 40)],
                    start + chrono::Duration::hours(n as i64 % 4000),
                    30,
                ),
            );
        }
        state.grant(PERSON).0
    });
    let google_settings = [
        ("base_url", google.upstream.url()),
        ("accounts_url", google.upstream.url()),
        ("oauth_url", google.upstream.url()),
        ("own_domains", "ours.example".to_owned()),
        ("backfill_start", "2026-01-01T00:00:00Z".to_owned()),
        ("days_ahead", "1830".to_owned()),
    ];
    let microsoft = FakeMicrosoft::start().await;
    let microsoft_token = microsoft.with(|state| {
        for n in 0..items {
            let at = start + chrono::Duration::minutes(n as i64);
            state.put_message(PERSON, &format!("o{n}"), "inbox", &message(n), at);
            state.put_event(
                PERSON,
                &format!("e{n}"),
                microsoft::meeting(
                    &format!("Call {n}"),
                    PERSON,
                    &[PERSON, &format!("c{n}@client{}.example", n % 40)],
                    start + chrono::Duration::hours(n as i64 % 4000),
                    30,
                    &format!("uid-{n}"),
                ),
            );
        }
        state.grant(PERSON).0
    });
    let microsoft_settings = [
        ("base_url", microsoft.upstream.url()),
        ("login_url", microsoft.upstream.url()),
        ("own_domains", "ours.example".to_owned()),
        ("backfill_start", "2026-01-01T00:00:00Z".to_owned()),
        ("days_ahead", "1830".to_owned()),
    ];
    let with = |settings: &[(&'static str, String)], extra: &[(&'static str, &str)]| {
        let mut all = settings.to_vec();
        all.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        all
    };
    let gmail = bind_person(
        &bench_host,
        rapport_testkit::GMAIL,
        google.upstream.grant(),
        &with(&google_settings, &[("page_size", "100")]),
        google_token.clone(),
    )
    .await;
    let calendar = bind_person(
        &bench_host,
        rapport_testkit::GOOGLE_CALENDAR,
        google.upstream.grant(),
        &with(&google_settings, &[("page_size", "250")]),
        google_token.clone(),
    )
    .await;
    let outlook_mail = bind_person(
        &bench_host,
        rapport_testkit::OUTLOOK_MAIL,
        microsoft.upstream.grant(),
        &with(
            &microsoft_settings,
            &[("page_size", "100"), ("folders", "inbox")],
        ),
        microsoft_token.clone(),
    )
    .await;
    let outlook_calendar = bind_person(
        &bench_host,
        rapport_testkit::OUTLOOK_CALENDAR,
        microsoft.upstream.grant(),
        &with(&microsoft_settings, &[("page_size", "100")]),
        microsoft_token.clone(),
    )
    .await;
    let google_address = google.upstream.address;
    let microsoft_address = microsoft.upstream.address;
    let delta_mail = "/v1.0/me/mailFolders/inbox/messages/delta?$filter=receivedDateTime%20ge%202026-01-01T00%3A00%3A00Z";
    let delta_calendar = "/v1.0/me/calendarView/delta?startDateTime=2026-01-01T00%3A00%3A00Z&endDateTime=2031-01-01T00%3A00%3A00Z";
    let people: [(&str, &str, &Connector); 4] = [
        ("gmail", "messages", &gmail),
        ("google-calendar", "events", &calendar),
        ("outlook-mail", "messages", &outlook_mail),
        ("outlook-calendar", "events", &outlook_calendar),
    ];
    for (name, unit, connector) in people {
        let (plugin_time, plugin_items) = median(|| sync_all(connector)).await;
        let (native_time, native_items) = match name {
            "gmail" => median(|| native_gmail(google_address, &google_token)).await,
            "google-calendar" => {
                median(|| native_google_calendar(google_address, &google_token)).await
            }
            "outlook-mail" => {
                median(|| native_graph(microsoft_address, &microsoft_token, delta_mail, 100, true))
                    .await
            }
            _ => {
                median(|| {
                    native_graph(
                        microsoft_address,
                        &microsoft_token,
                        delta_calendar,
                        100,
                        false,
                    )
                })
                .await
            }
        };
        assert_eq!(plugin_items, items, "{name}");
        assert_eq!(native_items, items, "{name}");
        rows.push(row(
            &format!("{name}: plugin in the host (fetch, parse, map)"),
            plugin_items,
            unit,
            plugin_time,
        ));
        rows.push(row(
            &format!("{name}: native (fetch, parse JSON)"),
            native_items,
            unit,
            native_time,
        ));
        rows.push(format!(
            "| {name}: ratio | | {:.2}× | |",
            plugin_time.as_secs_f64() / native_time.as_secs_f64()
        ));
    }

    println!("| what | size | median of {RUNS} | rate |");
    println!("|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
}
