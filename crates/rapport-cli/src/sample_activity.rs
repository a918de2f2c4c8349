//! What `rapport demo --serve` feeds its connectors: a month of billing, support and
//! mail for some of the demo's clients, served by sample upstreams on loopback (a
//! Stripe-style API, a Zendesk-style API and an IMAP mailbox, from `rapport-samples`),
//! and the three reference connectors bound to them exactly as `rapport.toml` would
//! bind them to the real services.

use crate::demo::{CLIENTS, demo_email, slug};
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use rapport_plugin_host::{Grants, PluginHost};
use rapport_samples::mailbox::{Message, SampleMailbox};
use rapport_samples::stripe::{self, FakeStripe};
use rapport_samples::zendesk::{self, FakeZendesk};
use rapport_sync::ConnectorSpec;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

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

fn spec(
    plugin: &rapport_plugin_host::Plugin,
    id: &str,
    grant: String,
    settings: &[(&str, String)],
    secrets: &[(&str, &str)],
) -> anyhow::Result<ConnectorSpec> {
    let connector = plugin.connector(Grants {
        connector_id: id.into(),
        settings: settings
            .iter()
            .map(|(key, value)| ((*key).to_owned(), value.clone()))
            .collect(),
        secrets: secrets
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        allowed_hosts: vec![grant],
        // The sample upstreams are on loopback.
        allow_private_networks: true,
    })?;
    Ok(ConnectorSpec {
        connector,
        schedule: "every 5m".parse()?,
        enabled: true,
        fingerprint: format!("demo-{id}"),
    })
}

/// The three reference connectors, bound to the sample upstreams.
pub(crate) async fn connectors(
    host: &PluginHost,
    upstreams: &Upstreams,
) -> anyhow::Result<Vec<ConnectorSpec>> {
    let load = |path: &'static str| async move {
        host.load(Path::new(path))
            .await
            .with_context(|| format!("loading the bundled connector {path}"))
    };
    let stripe = load(rapport_samples::BILLING_STRIPE).await?;
    let zendesk = load(rapport_samples::SUPPORT_ZENDESK).await?;
    let mail = load(rapport_samples::EMAIL_IMAP).await?;
    Ok(vec![
        spec(
            &stripe,
            "stripe",
            upstreams.stripe.upstream.grant(),
            &[("base_url", upstreams.stripe.upstream.url())],
            &[("api_key", STRIPE_KEY)],
        )?,
        spec(
            &zendesk,
            "zendesk",
            upstreams.zendesk.upstream.grant(),
            &[
                ("base_url", upstreams.zendesk.upstream.url()),
                ("email", ZENDESK_AGENT.into()),
            ],
            &[("api_token", ZENDESK_TOKEN)],
        )?,
        spec(
            &mail,
            "mail",
            upstreams.mailbox.grant(),
            &[
                ("host", "127.0.0.1".into()),
                ("port", upstreams.mailbox.port().to_string()),
                ("security", "plaintext".into()),
                ("username", MAIL_USER.into()),
                ("folders", "INBOX".into()),
                ("own_domains", "rapport-demo.example".into()),
            ],
            &[("password", MAIL_PASSWORD)],
        )?,
    ])
}
