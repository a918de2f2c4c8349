//! The web UI in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`). Without them the test says it was skipped; under
//! `CI=true` that is a failure. Screenshots of the main pages are written to
//! `target/screenshots/` (the README's comes from there).

use chrono::{Duration, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use rapport_core::account::{Domain, EmailAddress};
use rapport_core::timeline::{Actor, AttributeValue, EventKind, Money, NewEvent};
use rapport_core::{AccountId, StaffId};
use rapport_server::{AppState, app};
use rapport_store::Store;
use rapport_sync::{Engine, EngineConfig};
use rapport_testkit::database::TestDatabase;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A running chromedriver, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver, or says the browser test is skipped (panics under `CI=true`).
fn chromedriver() -> Option<Driver> {
    let present =
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists();
    if !present {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!(
                "{CHROMIUM} or {CHROMEDRIVER} is missing but CI=true: install chromium and chromium-driver (.ci/run does) so the browser tests run"
            );
        }
        eprintln!(
            "skipped: browser tests ({CHROMIUM} and {CHROMEDRIVER} are not installed; apt-get install chromium chromium-driver)"
        );
        return None;
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(driver);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("chromedriver did not start listening on {port}");
}

async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1100", "--hide-scrollbars", "--force-device-scale-factor=1"]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("open a Chromium session")
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    let url = client.current_url().await.unwrap();
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css} on {url}"))
        .text()
        .await
        .unwrap()
}

/// The text of `css` once it satisfies `ok` (a submitted form's page may take a moment
/// to replace the old one), or a panic with what it was.
async fn text_when(client: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..50 {
        if let Ok(element) = client.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if ok(&text) {
                return text;
            }
            last = text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    screenshot(client, "failed").await;
    panic!("{css} never became what was expected; last: {last:?}");
}

/// Waits until the browser is on `path` (a submitted form navigates asynchronously).
async fn wait_for_path(client: &Client, path: &str) {
    let mut last = String::new();
    for _ in 0..50 {
        let url = client.current_url().await.unwrap();
        if url.path() == path {
            return;
        }
        last = url.to_string();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("never reached {path}; still on {last}");
}

/// Events from every source on Northwind Group, placed by its domain the way a sync
/// would place them.
async fn northwind_history(store: &Store) {
    let now = Utc::now();
    let domain = Domain::parse("northwind-group.example").unwrap();
    let event = |connector: &str, id: &str, kind: &str, days: i64, title: &str, summary: &str| {
        let mut event = NewEvent::new(
            connector,
            id,
            EventKind::parse(kind).unwrap(),
            now - Duration::days(days) - Duration::hours(2),
            title,
        );
        event.summary = summary.to_owned();
        event.hints.domains.push(domain.clone());
        event
    };
    let text = |value: &str| AttributeValue::Text(value.to_owned());
    let usd = |minor_units| {
        AttributeValue::Money(Money {
            minor_units,
            currency: "USD".into(),
        })
    };
    let mut events = Vec::new();
    for (i, (days, mrr)) in [(95, 240_000), (60, 310_000), (20, 280_000)]
        .into_iter()
        .enumerate()
    {
        let mut e = event(
            "stripe",
            &format!("evt_sub_{i}"),
            if i == 0 {
                "billing.subscription.created"
            } else {
                "billing.subscription.updated"
            },
            days,
            if i == 2 {
                "Subscription downgraded to Business"
            } else {
                "Subscription on Enterprise"
            },
            "",
        );
        e.attributes
            .insert("subscription_id".into(), text("sub_nw"));
        e.attributes.insert(
            "plan".into(),
            text(if i == 2 { "Business" } else { "Enterprise" }),
        );
        e.attributes.insert("mrr".into(), usd(mrr));
        e.url = Some("https://dashboard.stripe.com/subscriptions/sub_nw".into());
        events.push(e);
    }
    let mut failed = event(
        "stripe",
        "evt_inv_failed",
        "billing.invoice.payment_failed",
        6,
        "Invoice payment failed: USD 2,800.00",
        "Card declined (insufficient funds). Stripe retries in 3 days.",
    );
    failed.attributes.insert("amount".into(), usd(280_000));
    failed
        .attributes
        .insert("invoice_id".into(), text("in_nw_1"));
    events.push(failed);
    let mut ticket = event(
        "zendesk",
        "ticket_4711",
        "support.ticket.created",
        9,
        "#4711 Exports time out for the EU warehouse",
        "Since Monday the nightly CSV export stops after 30 s for the EU warehouse.",
    );
    ticket.attributes.insert("status".into(), text("open"));
    ticket.attributes.insert("priority".into(), text("high"));
    ticket.url = Some("https://northwind.zendesk.example/agent/tickets/4711".into());
    events.push(ticket);
    let mut mail = event(
        "imap",
        "<q3-review@northwind-group.example>",
        "email.received",
        4,
        "Re: Q3 business review — agenda",
        "Thanks Priya, Tuesday works. Can we add the export issue to the agenda?",
    );
    mail.actor = Some(Actor {
        name: Some("Hannah Brooks".into()),
        email: Some(EmailAddress::parse("hannah@northwind-group.example").unwrap()),
        staff: None,
    });
    events.push(mail);
    // And a mail nobody's account claims yet: it waits in the inbox.
    let mut stranger = NewEvent::new(
        "imap",
        "<intro@brightpath.example>",
        EventKind::parse("email.received").unwrap(),
        now - Duration::days(1),
        "Intro: BrightPath would like a pilot",
    );
    stranger.summary = "Hi — we met at the summit; could we start a pilot in January?".into();
    stranger
        .hints
        .domains
        .push(Domain::parse("brightpath.example").unwrap());
    events.push(stranger);
    store.upsert_events(&events, now).await.unwrap();
}

/// Form controls without a label, by name: there should be none.
async fn unlabelled(client: &Client) -> Vec<serde_json::Value> {
    client
        .execute(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]\
               .filter(e => e.labels.length === 0).map(e => e.name);",
            vec![],
        )
        .await
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn staff_id(store: &Store, email: &str) -> StaffId {
    store
        .staff_by_email(&EmailAddress::parse(email).unwrap())
        .await
        .unwrap()
        .unwrap()
        .id
}

async fn account_named(store: &Store, name: &str) -> AccountId {
    let all: Vec<AccountId> = store
        .visible_account_ids(
            staff_id(store, "victoria.hale@rapport-demo.example").await,
            Utc::now(),
        )
        .await
        .unwrap()
        .into_iter()
        .collect();
    store
        .accounts(&all)
        .await
        .unwrap()
        .into_iter()
        .find(|account| account.name == name)
        .unwrap()
        .id
}

async fn sign_in_link(store: &Store, base: &str, email: &str) -> String {
    let now = Utc::now();
    let secret = store
        .create_sign_in_link(
            staff_id(store, email).await,
            now + Duration::minutes(15),
            now,
        )
        .await
        .unwrap();
    format!("{base}/signin/{secret}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_work_in_the_browser() {
    let Some(driver) = chromedriver() else {
        return;
    };
    let database = TestDatabase::sqlite().await;
    let store = database.store.clone();
    rapport_cli::demo::seed(&store, Utc::now()).await.unwrap();
    northwind_history(&store).await;
    let engine = Arc::new(
        Engine::new(store.clone(), EngineConfig::default(), Vec::new())
            .await
            .unwrap(),
    );
    let state = AppState::new(engine, 1024 * 1024).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let client = browser(&driver).await;

    // Signed out, every page leads to sign-in.
    client.goto(&format!("{base}/team")).await.unwrap();
    let url = client.current_url().await.unwrap();
    assert_eq!(url.path(), "/signin", "{url}");
    assert_eq!(url.query(), Some("next=%2Fteam"));
    screenshot(&client, "signin").await;

    // Priya, a manager, signs in with a link and lands on her book.
    let link = sign_in_link(&store, &base, "priya.raman@rapport-demo.example").await;
    client.goto(&link).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/");
    assert_eq!(text_of(&client, "h1").await, "My book");
    let attention = text_of(&client, ".attention").await;
    assert!(attention.contains("Northwind Group"), "{attention}");
    assert!(
        attention.contains("payment"),
        "the failed invoice is a reason: {attention}"
    );
    let book = text_of(&client, "main").await;
    for name in ["Owned by you", "Northwind Logistics", "USD 2,800"] {
        assert!(book.contains(name), "{name} in {book}");
    }
    assert!(
        !book.contains("Helios Energy"),
        "another director's client is not in her book"
    );
    screenshot(&client, "book").await;
    // A link works once.
    client.goto(&link).await.unwrap();
    assert_eq!(
        text_of(&client, "h1").await,
        "This sign-in link no longer works"
    );

    // The account page: header, health, charts and the unified timeline.
    client.goto(&format!("{base}/")).await.unwrap();
    client
        .find(Locator::LinkText("Northwind Group"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text_of(&client, "h1").await.starts_with("Northwind Group"));
    let facts = text_of(&client, ".facts").await;
    for fact in [
        "Priya Raman",
        "Sam Lee",
        "USD 2,800",
        "Northwind Logistics",
        "hannah@northwind-group.example",
    ] {
        assert!(facts.contains(fact), "{fact} in {facts}");
    }
    let timeline = text_of(&client, ".timeline").await;
    for title in [
        "Re: Q3 business review",
        "Invoice payment failed",
        "#4711 Exports time out",
        "Subscription downgraded",
    ] {
        assert!(timeline.contains(title), "{title} in {timeline}");
    }
    assert_eq!(
        client
            .find_all(Locator::Css("svg.chart"))
            .await
            .unwrap()
            .len(),
        2,
        "MRR and activity charts"
    );
    screenshot(&client, "account").await;
    assert_eq!(unlabelled(&client).await, Vec::<serde_json::Value>::new());

    // Filter to billing: only billing events stay.
    client
        .find(Locator::Css("#kind"))
        .await
        .unwrap()
        .select_by_value("billing")
        .await
        .unwrap();
    client
        .form(Locator::Css("form.filters"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    text_when(&client, "#kind option[selected]", |kind| kind == "Billing").await;
    assert!(
        client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains("kind=billing")
    );
    let families: Vec<String> = {
        let mut out = Vec::new();
        for event in client
            .find_all(Locator::Css(".timeline .icon"))
            .await
            .unwrap()
        {
            out.push(event.attr("aria-label").await.unwrap().unwrap_or_default());
        }
        out
    };
    assert_eq!(
        families.len(),
        4,
        "three subscription changes and the failed invoice"
    );
    assert!(
        families.iter().all(|family| family == "Billing"),
        "{families:?}"
    );

    // A note, written inline, appears at the top of the timeline.
    client
        .find(Locator::LinkText("Clear"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&client, "#kind option[selected]", |kind| {
        kind == "Everything"
    })
    .await;
    client
        .find(Locator::Css("#note"))
        .await
        .unwrap()
        .send_keys("Called Hannah: the export fix ships Friday")
        .await
        .unwrap();
    client
        .form(Locator::Css("form[action$='/notes']"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    text_when(&client, ".timeline .event .title", |first| {
        first == "Called Hannah: the export fix ships Friday"
    })
    .await;

    // Priya may hand accounts only within her own line, where no other manager is.
    assert!(
        client.find(Locator::Css("#owner")).await.is_err(),
        "no one to hand to but herself, so no reassign form"
    );

    // Dana, their director, hands Northwind to Marcus: the handoff is on the timeline
    // and in the history.
    let northwind = account_named(&store, "Northwind Group").await;
    client.delete_all_cookies().await.unwrap();
    let link = sign_in_link(&store, &base, "dana.ortiz@rapport-demo.example").await;
    client.goto(&link).await.unwrap();
    client
        .goto(&format!("{base}/accounts/{}", northwind.0))
        .await
        .unwrap();
    client
        .find(Locator::Css("#owner"))
        .await
        .unwrap()
        .select_by_label("Marcus Webb (manager)")
        .await
        .unwrap();
    client
        .form(Locator::Css("form[action$='/owner']"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    text_when(&client, ".facts", |facts| facts.contains("Marcus Webb")).await;
    let newest = client.find(Locator::Css(".timeline .event")).await.unwrap();
    assert_eq!(
        newest
            .find(Locator::Css(".icon"))
            .await
            .unwrap()
            .attr("aria-label")
            .await
            .unwrap()
            .as_deref(),
        Some("Handoff")
    );
    assert!(newest.text().await.unwrap().contains("Marcus Webb"));
    assert!(text_of(&client, ".facts").await.contains("Marcus Webb"));
    assert!(
        text_of(&client, "#history-h + table")
            .await
            .contains("Marcus Webb")
    );

    // The team page shows the org under Dana with book sizes.
    client.goto(&format!("{base}/team")).await.unwrap();
    let team = text_of(&client, "table.org").await;
    for person in [
        "Priya Raman",
        "Marcus Webb",
        "Sam Lee",
        "Noor Haddad",
        "Ellie Park",
    ] {
        assert!(team.contains(person), "{person} in {team}");
    }
    assert!(
        !team.contains("Lena Fischer"),
        "another director's people are not hers"
    );
    screenshot(&client, "team").await;

    // The inbox: Dana places the stranger's mail on Northwind Logistics and teaches it
    // the domain; the inbox is empty after.
    client.goto(&format!("{base}/inbox")).await.unwrap();
    assert!(
        text_of(&client, "main")
            .await
            .contains("Intro: BrightPath would like a pilot")
    );
    assert_eq!(unlabelled(&client).await, Vec::<serde_json::Value>::new());
    screenshot(&client, "inbox").await;
    client
        .find(Locator::Css("select[name=account]"))
        .await
        .unwrap()
        .select_by_label("Northwind Logistics")
        .await
        .unwrap();
    client
        .find(Locator::Css("input[value='domain:brightpath.example']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .form(Locator::Css("form[action$='/place']"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    text_when(&client, "main", |page| page.contains("Nothing is waiting")).await;
    let logistics = account_named(&store, "Northwind Logistics").await;
    let learned = store.account(logistics).await.unwrap().domains;
    assert!(
        learned
            .iter()
            .any(|domain| domain.as_str() == "brightpath.example"),
        "{learned:?}"
    );

    // Connectors: the status page (no connectors run in this test).
    client.goto(&format!("{base}/connectors")).await.unwrap();
    assert_eq!(text_of(&client, "h1").await, "Connectors");
    screenshot(&client, "connectors").await;

    // At phone width the account page still fits without sideways scrolling.
    client.set_window_size(390, 900).await.unwrap();
    client
        .goto(&format!("{base}/accounts/{}", northwind.0))
        .await
        .unwrap();
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "overflows by {overflow}px at phone width"
    );
    screenshot(&client, "account-phone").await;
    client.set_window_size(1280, 1100).await.unwrap();

    // Rosa, an associate in the other branch, signs out of nothing and in as herself:
    // Northwind is not found, exactly like an account that does not exist.
    client.delete_all_cookies().await.unwrap();
    let link = sign_in_link(&store, &base, "rosa.lima@rapport-demo.example").await;
    client.goto(&link).await.unwrap();
    client
        .goto(&format!("{base}/accounts/{}", northwind.0))
        .await
        .unwrap();
    assert_eq!(text_of(&client, "h1").await, "Not found");
    let page = client.source().await.unwrap();
    assert!(
        !page.contains("Northwind"),
        "nothing about the hidden account leaks"
    );
    let hidden = text_of(&client, ".detail").await;
    client
        .goto(&format!("{base}/accounts/999999"))
        .await
        .unwrap();
    let missing = text_of(&client, ".detail").await;
    assert_eq!(
        hidden.replace(&northwind.0.to_string(), "N"),
        missing.replace("999999", "N"),
        "hidden and missing read the same"
    );

    // Signing out ends the session.
    client.goto(&format!("{base}/")).await.unwrap();
    client
        .form(Locator::Css("form.signout"))
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
    wait_for_path(&client, "/signin").await;
    client.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/signin");

    // `next` with a tab between the slashes, which Chromium's URL parser drops: signing
    // in (with a password, through the form's hidden `next`) and following `next`
    // while signed in both stay on this site.
    let hash = rapport_core::password::hash("correct horse battery").unwrap();
    store
        .set_password_hash(
            staff_id(&store, "priya.raman@rapport-demo.example").await,
            Some(&hash),
            Utc::now(),
        )
        .await
        .unwrap();
    let ours = url::Url::parse(&base).unwrap();
    let on_this_site = |url: &url::Url| url.host() == ours.host() && url.port() == ours.port();
    for hostile in ["/%09/127.0.0.2:9/", "/%5C127.0.0.2:9/", "/%0A/127.0.0.2:9/"] {
        client
            .goto(&format!("{base}/signin?next={hostile}"))
            .await
            .unwrap();
        let form = client.form(Locator::Css("form")).await.unwrap();
        form.set_by_name("email", "priya.raman@rapport-demo.example")
            .await
            .unwrap();
        form.set_by_name("password", "correct horse battery")
            .await
            .unwrap();
        form.submit().await.unwrap();
        wait_for_path(&client, "/").await;
        let landed = client.current_url().await.unwrap();
        assert!(on_this_site(&landed), "{hostile} led to {landed}");
        client
            .goto(&format!("{base}/signin?next={hostile}"))
            .await
            .unwrap();
        let landed = client.current_url().await.unwrap();
        assert!(
            on_this_site(&landed),
            "{hostile} (signed in) led to {landed}"
        );
        client.delete_all_cookies().await.unwrap();
    }

    client.close().await.unwrap();
}

/// At the provider's own pages: signs in as `login` if asked, and consents.
async fn at_provider(client: &Client, provider: &rapport_testkit::oauth::Provider, login: &str) {
    // The provider remembers who signed in there: a second visit may go straight to
    // consent.
    let continue_button = Locator::XPath("//button[@type='submit' and contains(., 'Continue')]");
    for _ in 0..100 {
        let url = client.current_url().await.unwrap();
        if !url.as_str().starts_with(&provider.issuer) {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        if let Ok(field) = client.find(Locator::Css("input[name=login]")).await {
            field.send_keys(login).await.unwrap();
            client
                .find(Locator::Css("input[name=password]"))
                .await
                .unwrap()
                .send_keys("any")
                .await
                .unwrap();
            client
                .find(Locator::Css("button[type=submit]"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            break;
        }
        if client.find(continue_button).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    client
        .wait()
        .for_element(continue_button)
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// A message from a client to Sam, as his mailbox holds it.
fn client_mail(id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "Message-ID: <{id}@acme.example>\r\nDate: Tue, 01 Dec 2026 10:00:00 +0000\r\n\
         From: Hannah Ortiz <hannah@acme.example>\r\nTo: Sam Lee <sam.lee@ours.example>\r\n\
         Subject: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// The issue's "done when", in a real browser against a real OAuth 2.0 / OpenID
/// Connect provider (oidc-provider from npm) and a real Dovecot that checks tokens
/// with it: Sam signs in with his work account, connects *his mailbox* (PKCE, consent
/// at the provider), and his client mail arrives on the client's account; his VP sees
/// it whole, a peer who supports the account sees only who, the subject and when;
/// disconnecting stops it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_connects_their_mailbox_and_their_mail_arrives() {
    let Some(driver) = chromedriver() else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let callback = format!("{base}/connections/callback");
    let Some(provider) = rapport_testkit::oauth::Provider::start(&callback, 3600).await else {
        return;
    };
    let renewal = client_mail(
        "renewal",
        "Renewal terms",
        "We would like to discuss a 20% discount before we sign.",
    );
    let Some(mut mailbox) = rapport_testkit::dovecot::Dovecot::start_with_oauth(
        &[&renewal],
        "sam.lee@ours.example",
        &provider.introspection(),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let issuer = &provider.issuer;
    let port = mailbox.imap_port;
    let source = format!(
        r#"
[server]
database = "sqlite://rapport.db"

[[sign_in]]
id = "work"
name = "your work account"
issuer = "{issuer}"
client_id = "{signin_client}"
client_secret = {{ env = "SIGNIN_SECRET" }}
redirect_uri = "{base}/signin/oidc/callback"

[[connector]]
id = "mailbox"
plugin = "builtin:email-imap"
scope = "person"
sharing = "metadata"
schedule = "every 1h"
allowed_hosts = ["127.0.0.1:{port}"]
allow_private_networks = true
oauth = {{ client_id = "{client}", client_secret = {{ env = "{secret_env}" }}, redirect_uri = "{callback}" }}
[connector.settings]
host = "127.0.0.1"
port = {port}
security = "plaintext"
folders = "INBOX"
own_domains = "ours.example"
oauth_authorization_endpoint = "{issuer}/oauth/authorize"
oauth_token_endpoint = "{issuer}/oauth/token"
oauth_scopes = "openid email offline_access"
"#,
        signin_client = rapport_testkit::oauth::SIGN_IN_CLIENT_ID,
        client = rapport_testkit::oauth::CLIENT_ID,
        secret_env = rapport_testkit::oauth::CLIENT_SECRET_ENV,
    );
    let ring = rapport_core::secret::KeyRing::generate_entry("k1");
    let env = |name: &str| match name {
        rapport_testkit::oauth::CLIENT_SECRET_ENV => {
            Some(rapport_testkit::oauth::CLIENT_SECRET.to_owned())
        }
        "SIGNIN_SECRET" => Some(rapport_testkit::oauth::SIGN_IN_CLIENT_SECRET.to_owned()),
        "RAPPORT_SECRET_KEY" => Some(ring.clone()),
        _ => None,
    };
    let config =
        rapport_server::Config::parse(&source, &dir.path().join("rapport.toml"), &env).unwrap();
    let server = rapport_server::Server::start(config).await.unwrap();
    let store = server.engine.store().clone();
    let hire = |name: &str, email: &str, level, reports_to| {
        let store = store.clone();
        let (name, email) = (name.to_owned(), email.to_owned());
        async move {
            store
                .create_staff(
                    rapport_core::staff::NewStaff {
                        name,
                        email: EmailAddress::parse(&email).unwrap(),
                        level,
                        reports_to,
                        is_admin: false,
                    },
                    Utc::now(),
                )
                .await
                .unwrap()
        }
    };
    use rapport_core::staff::Level;
    let vera = hire("Vera Hale", "vera.hale@ours.example", Level::Vp, None).await;
    let sam = hire(
        "Sam Lee",
        "sam.lee@ours.example",
        Level::Manager,
        Some(vera.id),
    )
    .await;
    let ana = hire("Ana Ruiz", "ana.ruiz@ours.example", Level::Manager, None).await;
    let acme = store
        .create_account(
            rapport_core::permission::Authority::Operator,
            rapport_core::account::NewAccount {
                name: "Acme".into(),
                parent: None,
                lifecycle: rapport_core::account::Lifecycle::Active,
                renewal_date: None,
                domains: vec![Domain::parse("acme.example").unwrap()],
                external_ids: Vec::new(),
                contacts: Vec::new(),
                owner: sam.id,
            },
            None,
            Utc::now(),
        )
        .await
        .unwrap();
    store
        .add_support(
            rapport_core::permission::Authority::Operator,
            acme.id,
            ana.id,
            None,
            Utc::now(),
        )
        .await
        .unwrap();
    let state = AppState::new(server.engine.clone(), 1024 * 1024)
        .await
        .unwrap()
        .with_connections(server.connections.clone())
        .with_sign_in(Arc::new(
            rapport_server::oidc::SignInProviders::new(&server.config.sign_ins).unwrap(),
        ));
    tokio::spawn(async move { axum::serve(listener, app(state)).await });
    let client = browser(&driver).await;

    // Sam signs in with his work account.
    client.goto(&format!("{base}/signin")).await.unwrap();
    client
        .find(Locator::XPath(
            "//a[contains(., 'Sign in with your work account')]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    at_provider(&client, &provider, "sam.lee@ours.example").await;
    wait_for_path(&client, "/").await;
    assert!(text_of(&client, "body").await.contains("Sam Lee"));

    // He connects his mailbox.
    client.goto(&format!("{base}/connections")).await.unwrap();
    assert!(text_of(&client, "main").await.contains("not connected"));
    client
        .find(Locator::Css("a[href='/connections/mailbox/connect']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    at_provider(&client, &provider, "sam.lee@ours.example").await;
    wait_for_path(&client, "/connections").await;
    let page = text_when(&client, "main", |text| text.contains("Connected.")).await;
    assert!(
        page.contains("metadata"),
        "the sharing level is shown: {page}"
    );
    screenshot(&client, "connections").await;

    // His mailbox syncs, and the mail lands on Acme.
    let unit = rapport_core::sharing::person_connector_id("mailbox", sam.id);
    let report = server.engine.run_now(&unit, &|_| {}).await.unwrap();
    assert_eq!(report.inserted, 1, "{report:?}");
    let account_page = format!("{base}/accounts/{}", acme.id.0);
    client.goto(&account_page).await.unwrap();
    let timeline = text_of(&client, "ol.timeline").await;
    assert!(timeline.contains("Renewal terms"), "{timeline}");
    assert!(timeline.contains("20% discount"), "{timeline}");
    screenshot(&client, "account-mail").await;

    // His VP sees it whole; Ana, who supports Acme, sees that it happened.
    for (who, whole) in [
        ("vera.hale@ours.example", true),
        ("ana.ruiz@ours.example", false),
    ] {
        client.delete_all_cookies().await.unwrap();
        client
            .goto(&sign_in_link(&store, &base, who).await)
            .await
            .unwrap();
        client.goto(&account_page).await.unwrap();
        let timeline = text_of(&client, "ol.timeline").await;
        assert!(timeline.contains("Renewal terms"), "{who}: {timeline}");
        assert_eq!(
            timeline.contains("20% discount"),
            whole,
            "{who}: {timeline}"
        );
        assert_eq!(
            timeline.contains("shared as metadata only"),
            !whole,
            "{who}: {timeline}"
        );
        if !whole {
            client
                .execute(
                    "document.querySelector('ol.timeline').scrollIntoView()",
                    vec![],
                )
                .await
                .unwrap();
            screenshot(&client, "account-mail-withheld").await;
        }
    }

    // Sam disconnects: nothing more arrives.
    client.delete_all_cookies().await.unwrap();
    client
        .goto(&sign_in_link(&store, &base, "sam.lee@ours.example").await)
        .await
        .unwrap();
    client.goto(&format!("{base}/connections")).await.unwrap();
    client
        .find(Locator::XPath("//button[contains(., 'Disconnect')]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_when(&client, "main", |text| text.contains("Disconnected")).await;
    mailbox.deliver(&client_mail("later", "Are you still there?", "Hello?"));
    assert!(matches!(
        server.engine.run_now(&unit, &|_| {}).await,
        Err(rapport_sync::SyncError::UnknownConnector(_))
    ));
    client.goto(&account_page).await.unwrap();
    let timeline = text_of(&client, "ol.timeline").await;
    assert!(!timeline.contains("Are you still there?"), "{timeline}");
    client.close().await.unwrap();
    provider.stop().await;
}
