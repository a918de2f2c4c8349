//! What `rapport demo --serve` feeds its connectors: a month of billing, support and
//! mail for some of the demo's clients, served by sample upstreams on loopback (a
//! Stripe-style API, a Zendesk-style API and an IMAP mailbox, from `rapport-samples`),
//! and the `rapport.toml` that binds the three reference connectors to them exactly as
//! a deployment binds them to the real services.

use crate::demo::{CLIENTS, demo_email, slug};
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use rapport_samples::mailbox::{Message, SampleMailbox};
use rapport_samples::stripe::{self, FakeStripe};
use rapport_samples::zendesk::{self, FakeZendesk};
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
}

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
    let mailbox = SampleMailbox::start(MAIL_USER, MAIL_PASSWORD, messages)
        .await
        .context("starting the sample mailbox")?;
    Ok(Upstreams {
        stripe,
        zendesk,
        mailbox,
    })
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
    ] {
        write_private(&secrets.join(name), value)?;
    }
    let quote = |text: &str| toml::Value::String(text.to_owned()).to_string();
    let source = format!(
        r#"# Written by `rapport demo --serve` for what it started: the demo database, the
# three reference connectors (built into rapport) and the sample upstreams that the
# demo serves on loopback while it runs. It is an ordinary rapport.toml (every key is
# in rapport.example.toml); while the demo runs, try:
#   rapport status --config {shown}
#   rapport sync stripe --config {shown}
#   rapport signin victoria.hale@rapport-demo.example --config {shown}
#   RAPPORT_LISTEN=127.0.0.1:8081 rapport serve --config {shown}   # a second node

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
"#,
        shown = directory.join("rapport.toml").display(),
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
    );
    let path = directory.join("rapport.toml");
    std::fs::write(&path, source).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
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
