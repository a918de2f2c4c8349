//! What `rapport demo --serve` feeds its connectors: a month of billing, support and
//! mail for some of the demo's clients, served by sample upstreams on loopback (a
//! Stripe-style API, a Zendesk-style API and an IMAP mailbox, from `rapport-samples`);
//! the meetings and mail of two account managers' own accounts at a sample Google
//! (Priya Raman: Google Calendar and Gmail) and a sample Microsoft 365 (Marcus Webb:
//! Outlook calendar and mail), connected as if each had clicked "Connect"; and the
//! `rapport.toml` that binds the built-in connectors to them exactly as a deployment
//! binds them to the real services.

use crate::demo::{CLIENTS, demo_email, slug};
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use rapport_core::secret::KeyRing;
use rapport_core::sharing::Sharing;
use rapport_samples::google::{self, FakeGoogle, message_bytes};
use rapport_samples::mailbox::{Message, SampleMailbox};
use rapport_samples::microsoft::{self, FakeMicrosoft};
use rapport_samples::stripe::{self, FakeStripe};
use rapport_samples::zendesk::{self, FakeZendesk};
use rapport_store::{ConnectionKey, GrantedTokens, Store};
use serde_json::json;
use std::path::{Path, PathBuf};

const STRIPE_KEY: &str = "rk_demo";
const ZENDESK_AGENT: &str = "support@rapport-demo.example";
const ZENDESK_TOKEN: &str = "zd_demo";
const MAIL_USER: &str = "accounts@rapport-demo.example";
const MAIL_PASSWORD: &str = "demo";

/// The sample upstreams; they stop when this is dropped.
#[derive(Debug)]
pub(crate) struct Upstreams {
    stripe: FakeStripe,
    zendesk: FakeZendesk,
    mailbox: SampleMailbox,
    google: FakeGoogle,
    microsoft: FakeMicrosoft,
}

/// Who connects which provider in the demo.
const GOOGLE_PERSON: &str = "Priya Raman";
const MICROSOFT_PERSON: &str = "Marcus Webb";
/// The person connectors the demo configures: (connector id, built-in plugin, which
/// person connects it).
pub(crate) const PERSON_CONNECTORS: [(&str, &str, &str); 4] = [
    ("google-calendar", "google-calendar", GOOGLE_PERSON),
    ("gmail", "gmail", GOOGLE_PERSON),
    ("outlook-calendar", "outlook-calendar", MICROSOFT_PERSON),
    ("outlook-mail", "outlook-mail", MICROSOFT_PERSON),
];

/// A demo client's ids in the other systems, its contact and its owner.
struct Facts {
    customer: String,
    organization: u64,
    contact_name: &'static str,
    contact: String,
    owner_name: &'static str,
    owner: String,
}

fn facts(name: &str) -> Facts {
    let (index, client) = CLIENTS
        .iter()
        .enumerate()
        .find(|(_, client)| client.name == name)
        .expect("a demo client");
    let domain = format!("{}.example", slug(client.name));
    let first = client
        .contact
        .0
        .split_whitespace()
        .next()
        .unwrap_or("hello")
        .to_lowercase();
    Facts {
        customer: format!("cus_demo{index:04}"),
        organization: 360_000 + index as u64,
        contact_name: client.contact.0,
        contact: format!("{first}@{domain}"),
        owner_name: client.owner,
        owner: demo_email(client.owner).to_string(),
    }
}

fn mail(
    at: DateTime<Utc>,
    id: &str,
    from: (&str, &str),
    to: (&str, &str),
    subject: &str,
    body: &str,
) -> Message {
    let bytes = format!(
        "From: {} <{}>\r\nTo: {} <{}>\r\nSubject: {subject}\r\nMessage-ID: <{id}@rapport-demo.example>\r\nDate: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        from.0,
        from.1,
        to.0,
        to.1,
        at.to_rfc2822()
    );
    Message {
        internal_date: at.format("%d-%b-%Y %H:%M:%S +0000").to_string(),
        bytes: bytes.into_bytes(),
    }
}

/// Starts the upstreams holding the demo's activity, dated relative to `now`.
pub(crate) async fn start(now: DateTime<Utc>) -> anyhow::Result<Upstreams> {
    let ago = |days: i64, hours: i64| now - Duration::days(days) + Duration::hours(hours);
    let unix = |at: DateTime<Utc>| at.timestamp();
    let rfc3339 = |at: DateTime<Utc>| at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let northwind = facts("Northwind Group");
    let helios = facts("Helios Energy");
    let acme = facts("Acme Analytics");
    let globex = facts("Globex Systems");

    // Billing: subscriptions, invoices, one failed payment, and one charge for a
    // customer no account knows yet (it waits in the inbox).
    let stripe = FakeStripe::start(STRIPE_KEY).await;
    let mut failed = stripe::invoice("in_nw_2", &northwind.customer, "NW-0002", 280_000, None);
    failed["status"] = json!("open");
    failed["amount_paid"] = json!(0);
    failed["amount_remaining"] = json!(280_000);
    let billing = [
        (
            "customer.subscription.created",
            ago(28, 0),
            stripe::subscription("sub_nw", &northwind.customer, "Enterprise", 310_000),
        ),
        (
            "invoice.paid",
            ago(27, 0),
            stripe::invoice("in_nw_1", &northwind.customer, "NW-0001", 310_000, None),
        ),
        (
            "customer.subscription.created",
            ago(20, 0),
            stripe::subscription("sub_helios", &helios.customer, "Growth", 120_000),
        ),
        (
            "invoice.paid",
            ago(19, 0),
            stripe::invoice("in_helios_1", &helios.customer, "HE-0001", 120_000, None),
        ),
        (
            "customer.subscription.created",
            ago(15, 0),
            stripe::subscription("sub_acme", &acme.customer, "Starter", 45_000),
        ),
        (
            "invoice.paid",
            ago(14, 0),
            stripe::invoice("in_acme_1", &acme.customer, "AA-0001", 45_000, None),
        ),
        (
            "customer.subscription.updated",
            ago(5, 0),
            stripe::subscription("sub_nw", &northwind.customer, "Business", 280_000),
        ),
        ("invoice.payment_failed", ago(3, 0), failed),
        (
            "invoice.paid",
            ago(2, 0),
            stripe::invoice("in_unknown_1", "cus_brightpath", "BP-0001", 9_900, None),
        ),
    ];
    for (kind, at, object) in billing {
        stripe.push(kind, unix(at), object, None);
    }

    // Support: an aging high-priority ticket, one solved after a reply, a fresh one.
    let zendesk = FakeZendesk::start(ZENDESK_AGENT, ZENDESK_TOKEN).await;
    let requester = zendesk::users()[0]["id"].as_u64().unwrap_or(1);
    let mut exports = zendesk::ticket(
        7001,
        "Exports time out for the EU warehouse",
        "open",
        northwind.organization,
        requester,
        &rfc3339(ago(9, 0)),
        &rfc3339(ago(9, 0)),
    );
    exports["priority"] = json!("high");
    zendesk.upsert_ticket(exports);
    zendesk.upsert_ticket(zendesk::ticket(
        7002,
        "SSO login loops back to the start",
        "solved",
        helios.organization,
        requester,
        &rfc3339(ago(12, 0)),
        &rfc3339(ago(10, 0)),
    ));
    zendesk.add_audit(zendesk::audit(
        97002,
        7002,
        &rfc3339(ago(10, 0)),
        87002,
        "Fixed: the IdP's clock was 6 minutes fast. Logins work again.",
        "open",
        "solved",
    ));
    zendesk.upsert_ticket(zendesk::ticket(
        7003,
        "API rate limits too low for the nightly import",
        "open",
        globex.organization,
        requester,
        &rfc3339(ago(2, 0)),
        &rfc3339(ago(2, 0)),
    ));

    // Mail, both ways, and one introduction from someone no account knows.
    let messages = vec![
        mail(
            ago(6, 0),
            "helios-1",
            (helios.contact_name, &helios.contact),
            (helios.owner_name, &helios.owner),
            "Renewal: moving to annual billing?",
            "Could we switch to annual billing at renewal?",
        ),
        mail(
            ago(5, 2),
            "helios-2",
            (helios.owner_name, &helios.owner),
            (helios.contact_name, &helios.contact),
            "Re: Renewal: moving to annual billing?",
            "Yes — I will send the annual quote this week.",
        ),
        mail(
            ago(4, 0),
            "nw-1",
            (northwind.contact_name, &northwind.contact),
            (northwind.owner_name, &northwind.owner),
            "Q3 business review — agenda",
            "Tuesday works. Can we add the export time-outs to the agenda?",
        ),
        mail(
            ago(3, 1),
            "nw-2",
            (northwind.owner_name, &northwind.owner),
            (northwind.contact_name, &northwind.contact),
            "Re: Q3 business review — agenda",
            "Added. Support is on the export issue (ticket 7001).",
        ),
        mail(
            ago(2, 0),
            "acme-1",
            (acme.contact_name, &acme.contact),
            (acme.owner_name, &acme.owner),
            "Questions before we renew",
            "Does the Starter plan include SSO?",
        ),
        mail(
            ago(1, 0),
            "globex-1",
            (globex.contact_name, &globex.contact),
            (globex.owner_name, &globex.owner),
            "Nightly import keeps failing",
            "We opened a ticket about the rate limits; can you escalate?",
        ),
        mail(
            ago(1, 3),
            "intro-1",
            ("Lee Brightwater", "lee@brightpath.example"),
            ("Priya Raman", &northwind.owner),
            "Intro: BrightPath would like a pilot",
            "We met at the summit; could we start a pilot in January?",
        ),
    ];
    // The introduction Priya also has in her own Gmail: one event, seen by both.
    let introduction = messages.last().map(|message| message.bytes.clone());
    let mailbox = SampleMailbox::start(MAIL_USER, MAIL_PASSWORD, messages)
        .await
        .context("starting the sample mailbox")?;
    let google = FakeGoogle::start().await;
    let microsoft = FakeMicrosoft::start().await;
    people(&google, &microsoft, introduction, now);
    Ok(Upstreams {
        stripe,
        zendesk,
        mailbox,
        google,
        microsoft,
    })
}

/// Priya's Google calendar and mailbox, and Marcus's Microsoft 365 ones: meetings held
/// and coming with their clients, one internal meeting (never placed on an account),
/// and mail.
fn people(
    google: &FakeGoogle,
    microsoft: &FakeMicrosoft,
    introduction: Option<Vec<u8>>,
    now: DateTime<Utc>,
) {
    let day = |days: i64, hour: u32| {
        (now + Duration::days(days))
            .date_naive()
            .and_hms_opt(hour, 0, 0)
            .expect("a time of day")
            .and_utc()
    };
    let northwind = facts("Northwind Group");
    let logistics = facts("Northwind Logistics");
    let bluebird = facts("Bluebird Health");
    let retail = facts("Northwind Retail");
    let priya = demo_email(GOOGLE_PERSON).to_string();
    let marcus = demo_email(MICROSOFT_PERSON).to_string();
    google.with(|state| {
        let meetings = [
            ("nw-qbr", "Q3 business review", &northwind, -6, 15, 60),
            (
                "nw-exports",
                "Export time-outs: working session",
                &northwind,
                -2,
                10,
                45,
            ),
            (
                "nwl-kickoff",
                "Route planning rollout: kickoff",
                &logistics,
                2,
                14,
                30,
            ),
            ("nw-renewal", "Renewal terms", &northwind, 9, 16, 45),
        ];
        for (id, title, client, days, hour, minutes) in meetings {
            state.put_event(
                &priya,
                google::meeting(
                    id,
                    title,
                    &priya,
                    &[&priya, &client.contact],
                    day(days, hour),
                    minutes,
                ),
            );
        }
        state.put_event(
            &priya,
            google::meeting(
                "team-1on1",
                "1:1",
                &priya,
                &[&priya, &demo_email("Sam Lee").to_string()],
                day(1, 9),
                30,
            ),
        );
        let raw = message_bytes(
            "nw-pricing@rapport-demo.example",
            &format!("{GOOGLE_PERSON} <{priya}>"),
            &[&northwind.contact],
            "Renewal pricing for next year",
            day(-1, 11),
            None,
            "Attached are the renewal options we discussed at the review.",
        );
        state.put_message(&priya, "gm-pricing", &raw, &["SENT"], day(-1, 11));
        if let Some(raw) = &introduction {
            state.put_message(&priya, "gm-intro", raw, &["INBOX"], day(-1, 3));
        }
    });
    microsoft.with(|state| {
        let meetings = [
            ("bb-review", "Clinic rollout review", &bluebird, -4, 13, 60),
            ("nr-pos", "POS integration check-in", &retail, -1, 15, 30),
            (
                "bb-renewal",
                "Bluebird renewal planning",
                &bluebird,
                3,
                11,
                45,
            ),
        ];
        for (id, title, client, days, hour, minutes) in meetings {
            state.put_event(
                &marcus,
                id,
                microsoft::meeting(
                    title,
                    &marcus,
                    &[&marcus, &client.contact],
                    day(days, hour),
                    minutes,
                    &format!("{id}@rapport-demo.example"),
                ),
            );
        }
        let raw = message_bytes(
            "bb-1@bluebird-health.example",
            &format!("{} <{}>", bluebird.contact_name, bluebird.contact),
            &[&marcus],
            "Clinic rollout: two more sites",
            day(-2, 9),
            None,
            "Could we add the two northern clinics before the renewal?",
        );
        state.put_message(&marcus, "om-1", "inbox", &raw, day(-2, 9));
        let raw = message_bytes(
            "bb-2@rapport-demo.example",
            &format!("{MICROSOFT_PERSON} <{marcus}>"),
            &[&bluebird.contact],
            "Re: Clinic rollout: two more sites",
            day(-2, 14),
            Some("bb-1@bluebird-health.example"),
            "Yes — I will bring a plan to the renewal meeting.",
        );
        state.put_message(&marcus, "om-2", "sentitems", &raw, day(-2, 14));
    });
}

/// Connects Priya's Google account and Marcus's Microsoft 365 account as the
/// Connections page would have, their tokens sealed with `keys`.
pub(crate) async fn connect_people(
    store: &Store,
    keys: &KeyRing,
    upstreams: &Upstreams,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for (connector, _, person) in PERSON_CONNECTORS {
        let email = demo_email(person);
        let staff = store
            .staff_by_email(&email)
            .await?
            .with_context(|| format!("the demo's {person} is missing: run with --fresh"))?;
        let (access, refresh, ttl) = if connector.starts_with("outlook") {
            upstreams
                .microsoft
                .with(|state| state.grant(&email.to_string()))
        } else {
            upstreams
                .google
                .with(|state| state.grant(&email.to_string()))
        };
        let key = ConnectionKey {
            connector: connector.into(),
            owner: Some(staff.id),
        };
        store
            .grant_connection(
                &key,
                GrantedTokens {
                    access: keys.seal(&access, &key.seal_context("access")),
                    access_expires_at: Some(now + Duration::seconds(ttl)),
                    refresh: Some(keys.seal(&refresh, &key.seal_context("refresh"))),
                    scopes: Vec::new(),
                    provider_account: Some(email.to_string()),
                    sharing: if connector.ends_with("calendar") {
                        Sharing::Shared
                    } else {
                        Sharing::Metadata
                    },
                },
                now,
            )
            .await
            .with_context(|| format!("connecting {person}'s {connector}"))?;
    }
    // The sample providers approve whoever clicks Connect as Priya, the person the
    // demo's sign-in link is for.
    let priya = demo_email(GOOGLE_PERSON).to_string();
    upstreams
        .google
        .with(|state| state.approve_as = Some(priya.clone()));
    upstreams
        .microsoft
        .with(|state| state.approve_as = Some(priya.clone()));
    Ok(())
}

/// The demo's configuration, as a `rapport.toml` for what `rapport demo --serve` started:
/// the three reference connectors (built into rapport) bound to the sample upstreams,
/// with their secrets in files under `secrets/` next to it. `database` is written as
/// given, so make a SQLite path absolute first.
pub(crate) fn write_config(
    directory: &Path,
    upstreams: &Upstreams,
    listen: std::net::SocketAddr,
    database: &str,
) -> anyhow::Result<PathBuf> {
    let secrets = directory.join("secrets");
    std::fs::create_dir_all(&secrets)
        .with_context(|| format!("cannot create {}", secrets.display()))?;
    for (name, value) in [
        ("stripe-api-key", STRIPE_KEY),
        ("zendesk-api-token", ZENDESK_TOKEN),
        ("mail-password", MAIL_PASSWORD),
        ("google-client-secret", google::CLIENT_SECRET),
        ("microsoft-client-secret", microsoft::CLIENT_SECRET),
    ] {
        write_private(&secrets.join(name), value)?;
    }
    let quote = |text: &str| toml::Value::String(text.to_owned()).to_string();
    let source = format!(
        r#"# Written by `rapport demo --serve` for what it started: the demo database, the
# built-in connectors and the sample upstreams that the demo serves on loopback while
# it runs (Stripe-, Zendesk- and IMAP-like ones, a sample Google and a sample
# Microsoft 365 with two people's accounts connected). It is an ordinary rapport.toml
# (every key is in rapport.example.toml); connection tokens are sealed with the key in
# secrets/secret-key. While the demo runs, try:
#   RAPPORT_SECRET_KEY_FILE={key_file} rapport status --config {shown}
#   RAPPORT_SECRET_KEY_FILE={key_file} rapport sync stripe --config {shown}
#   RAPPORT_SECRET_KEY_FILE={key_file} rapport signin victoria.hale@rapport-demo.example --config {shown}
#   RAPPORT_LISTEN=127.0.0.1:8081 RAPPORT_SECRET_KEY_FILE={key_file} rapport serve --config {shown}   # a second node

[server]
listen = {listen}
database = {database}

[matching]
# The demo company's own mail domain never places mail on a client.
ignore_domains = ["rapport-demo.example"]

[[connector]]
id = "stripe"
plugin = "builtin:billing-stripe"
schedule = "every 5m"
allowed_hosts = [{stripe_grant}]
# The sample upstreams are on loopback.
allow_private_networks = true
[connector.settings]
base_url = {stripe_url}
[connector.secrets]
api_key = {{ file = "secrets/stripe-api-key" }}

[[connector]]
id = "zendesk"
plugin = "builtin:support-zendesk"
schedule = "every 5m"
allowed_hosts = [{zendesk_grant}]
allow_private_networks = true
[connector.settings]
base_url = {zendesk_url}
email = {zendesk_agent}
[connector.secrets]
api_token = {{ file = "secrets/zendesk-api-token" }}

[[connector]]
id = "mail"
plugin = "builtin:email-imap"
schedule = "every 5m"
allowed_hosts = [{mail_grant}]
allow_private_networks = true
[connector.settings]
host = "127.0.0.1"
port = {mail_port}
# The sample mailbox speaks plain IMAP on loopback; a real server takes tls.
security = "plaintext"
username = {mail_user}
folders = "INBOX"
own_domains = "rapport-demo.example"
[connector.secrets]
password = {{ file = "secrets/mail-password" }}

# Each person's own Google account (Priya Raman's is connected): her meetings and
# mail with clients. The sample Google approves whoever clicks Connect as her.
[[connector]]
id = "google-calendar"
plugin = "builtin:google-calendar"
schedule = "every 5m"
scope = "person"
sharing = "shared"
oauth = {{ client_id = {google_client}, client_secret = {{ file = "secrets/google-client-secret" }}, redirect_uri = {callback} }}
allowed_hosts = [{google_grant}]
allow_private_networks = true
[connector.settings]
base_url = {google_url}
accounts_url = {google_url}
oauth_url = {google_url}
own_domains = "rapport-demo.example"

[[connector]]
id = "gmail"
plugin = "builtin:gmail"
schedule = "every 5m"
scope = "person"
sharing = "metadata"
sharing_override = true
oauth = {{ client_id = {google_client}, client_secret = {{ file = "secrets/google-client-secret" }}, redirect_uri = {callback} }}
allowed_hosts = [{google_grant}]
allow_private_networks = true
[connector.settings]
base_url = {google_url}
accounts_url = {google_url}
oauth_url = {google_url}
own_domains = "rapport-demo.example"

# Each person's own Microsoft 365 account (Marcus Webb's is connected).
[[connector]]
id = "outlook-calendar"
plugin = "builtin:outlook-calendar"
schedule = "every 5m"
scope = "person"
sharing = "shared"
oauth = {{ client_id = {microsoft_client}, client_secret = {{ file = "secrets/microsoft-client-secret" }}, redirect_uri = {callback} }}
allowed_hosts = [{microsoft_grant}]
allow_private_networks = true
[connector.settings]
base_url = {microsoft_url}
login_url = {microsoft_url}
own_domains = "rapport-demo.example"

[[connector]]
id = "outlook-mail"
plugin = "builtin:outlook-mail"
schedule = "every 5m"
scope = "person"
sharing = "metadata"
sharing_override = true
oauth = {{ client_id = {microsoft_client}, client_secret = {{ file = "secrets/microsoft-client-secret" }}, redirect_uri = {callback} }}
allowed_hosts = [{microsoft_grant}]
allow_private_networks = true
[connector.settings]
base_url = {microsoft_url}
login_url = {microsoft_url}
own_domains = "rapport-demo.example"
"#,
        shown = directory.join("rapport.toml").display(),
        key_file = directory.join("secrets").join("secret-key").display(),
        listen = quote(&listen.to_string()),
        database = quote(database),
        stripe_grant = quote(&upstreams.stripe.upstream.grant()),
        stripe_url = quote(&upstreams.stripe.upstream.url()),
        zendesk_grant = quote(&upstreams.zendesk.upstream.grant()),
        zendesk_url = quote(&upstreams.zendesk.upstream.url()),
        zendesk_agent = quote(ZENDESK_AGENT),
        mail_grant = quote(&upstreams.mailbox.grant()),
        mail_port = upstreams.mailbox.port(),
        mail_user = quote(MAIL_USER),
        callback = quote(&format!("http://{listen}/connections/callback")),
        google_client = quote(google::CLIENT_ID),
        google_grant = quote(&upstreams.google.upstream.grant()),
        google_url = quote(&upstreams.google.upstream.url()),
        microsoft_client = quote(microsoft::CLIENT_ID),
        microsoft_grant = quote(&upstreams.microsoft.upstream.grant()),
        microsoft_url = quote(&upstreams.microsoft.upstream.url()),
    );
    let path = directory.join("rapport.toml");
    std::fs::write(&path, source).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The demo's key ring for connection tokens: the one in `secrets/secret-key` next to
/// its `rapport.toml` (a demo served before sealed its tokens with it), else a new one
/// written there.
pub(crate) fn key_ring(directory: &Path) -> anyhow::Result<(KeyRing, PathBuf)> {
    let path = directory.join("secrets").join("secret-key");
    let entry = match std::fs::read_to_string(&path) {
        Ok(entry) => entry,
        Err(_) => {
            let entry = KeyRing::generate_entry("demo");
            std::fs::create_dir_all(directory.join("secrets"))
                .with_context(|| format!("cannot create {}", directory.display()))?;
            write_private(&path, &entry)?;
            entry
        }
    };
    let ring =
        KeyRing::parse(&entry).with_context(|| format!("{} is not a key ring", path.display()))?;
    Ok((ring, path))
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, value: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, value.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
