//! `rapport demo`: seeds a realistic account-management org and shows what rapport
//! does with it today — the visibility rule and the unified, rolled-up timeline.
//!
//! The org is fictional; every domain is under `.example` (RFC 2606) so nothing in the
//! demo can ever reach a real company.

use crate::DemoArgs;
use anyhow::{Context, bail};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rapport_core::account::{Contact, Domain, EmailAddress, ExternalId, Lifecycle, NewAccount};
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::{Level, NewStaff, Staff};
use rapport_core::{AccountId, StaffId};
use rapport_store::{Reader, Store, TimelineQuery};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// (name, level, manager's name)
const STAFF: &[(&str, Level, Option<&str>)] = &[
    ("Victoria Hale", Level::Vp, None),
    ("Dana Ortiz", Level::Director, Some("Victoria Hale")),
    ("Graham Okafor", Level::Director, Some("Victoria Hale")),
    ("Priya Raman", Level::Manager, Some("Dana Ortiz")),
    ("Marcus Webb", Level::Manager, Some("Dana Ortiz")),
    ("Lena Fischer", Level::Manager, Some("Graham Okafor")),
    ("Tomás Alvarez", Level::Manager, Some("Graham Okafor")),
    ("Sam Lee", Level::Associate, Some("Priya Raman")),
    ("Noor Haddad", Level::Associate, Some("Priya Raman")),
    ("Ellie Park", Level::Associate, Some("Marcus Webb")),
    ("Kofi Mensah", Level::Associate, Some("Lena Fischer")),
    ("Rosa Lima", Level::Associate, Some("Tomás Alvarez")),
    ("Jonah Reed", Level::Associate, Some("Tomás Alvarez")),
];

/// One demo client.
pub(crate) struct Client {
    pub(crate) name: &'static str,
    parent: Option<&'static str>,
    pub(crate) owner: &'static str,
    supporter: Option<&'static str>,
    lifecycle: Lifecycle,
    pub(crate) contact: (&'static str, &'static str),
}

const fn client(
    name: &'static str,
    parent: Option<&'static str>,
    owner: &'static str,
    supporter: Option<&'static str>,
    lifecycle: Lifecycle,
    contact: (&'static str, &'static str),
) -> Client {
    Client {
        name,
        parent,
        owner,
        supporter,
        lifecycle,
        contact,
    }
}

use Lifecycle::{Active, Churned, Onboarding, Prospect};

pub(crate) const CLIENTS: &[Client] = &[
    client(
        "Northwind Group",
        None,
        "Priya Raman",
        Some("Sam Lee"),
        Active,
        ("Hannah Brooks", "CFO"),
    ),
    client(
        "Northwind Logistics",
        Some("Northwind Group"),
        "Priya Raman",
        Some("Noor Haddad"),
        Active,
        ("Omar Aziz", "Head of Ops"),
    ),
    client(
        "Northwind Retail",
        Some("Northwind Group"),
        "Marcus Webb",
        None,
        Active,
        ("Julia Chen", "IT Director"),
    ),
    client(
        "Helios Energy",
        None,
        "Lena Fischer",
        Some("Kofi Mensah"),
        Active,
        ("Peter Novak", "COO"),
    ),
    client(
        "Helios Solar",
        Some("Helios Energy"),
        "Lena Fischer",
        None,
        Onboarding,
        ("Aiko Tanaka", "Project Lead"),
    ),
    client(
        "Helios Grid",
        Some("Helios Energy"),
        "Tomás Alvarez",
        Some("Rosa Lima"),
        Active,
        ("Liam Walsh", "CTO"),
    ),
    client(
        "Bluebird Health",
        None,
        "Marcus Webb",
        Some("Ellie Park"),
        Active,
        ("Grace Kim", "VP Operations"),
    ),
    client(
        "Bluebird Clinics",
        Some("Bluebird Health"),
        "Marcus Webb",
        None,
        Active,
        ("Ravi Patel", "Practice Manager"),
    ),
    client(
        "Atlas Freight",
        None,
        "Dana Ortiz",
        None,
        Active,
        ("Sofia Rossi", "CEO"),
    ),
    client(
        "Acme Analytics",
        None,
        "Priya Raman",
        Some("Sam Lee"),
        Active,
        ("Ben Carter", "Data Lead"),
    ),
    client(
        "Umbrella Labs",
        None,
        "Priya Raman",
        None,
        Onboarding,
        ("Mara Jovanovic", "Lab Director"),
    ),
    client(
        "Globex Systems",
        None,
        "Marcus Webb",
        Some("Ellie Park"),
        Active,
        ("Tom Fischer", "CIO"),
    ),
    client(
        "Initrode",
        None,
        "Marcus Webb",
        None,
        Churned,
        ("Karen Holt", "Procurement"),
    ),
    client(
        "Vandelay Imports",
        None,
        "Lena Fischer",
        Some("Kofi Mensah"),
        Active,
        ("Art Vandelay", "Owner"),
    ),
    client(
        "Stark Fabrication",
        None,
        "Lena Fischer",
        None,
        Active,
        ("Pepper Hayes", "COO"),
    ),
    client(
        "Wayne Logistics",
        None,
        "Tomás Alvarez",
        Some("Jonah Reed"),
        Active,
        ("Lucius Grant", "Operations"),
    ),
    client(
        "Cyberdyne Robotics",
        None,
        "Tomás Alvarez",
        Some("Rosa Lima"),
        Prospect,
        ("Miles Dyson", "Engineering"),
    ),
    client(
        "Soylent Foods",
        None,
        "Tomás Alvarez",
        None,
        Active,
        ("Sol Roth", "Buyer"),
    ),
    client(
        "Tyrell Biotech",
        None,
        "Graham Okafor",
        None,
        Active,
        ("Eldon Tyrell", "Founder"),
    ),
    client(
        "Oscorp Materials",
        None,
        "Priya Raman",
        Some("Noor Haddad"),
        Active,
        ("Norma Osborn", "Head of Finance"),
    ),
    client(
        "Massive Dynamic",
        None,
        "Marcus Webb",
        None,
        Onboarding,
        ("Nina Sharp", "COO"),
    ),
    client(
        "Hooli Cloud",
        None,
        "Lena Fischer",
        None,
        Active,
        ("Gavin Bell", "CEO"),
    ),
    client(
        "Pied Piper",
        Some("Hooli Cloud"),
        "Lena Fischer",
        Some("Kofi Mensah"),
        Active,
        ("Richard Hendricks", "CTO"),
    ),
    client(
        "Gringotts Finance",
        None,
        "Tomás Alvarez",
        Some("Jonah Reed"),
        Active,
        ("Griphook Bane", "Treasurer"),
    ),
];

/// Notes written on the timeline: (account, author, days ago, text).
const NOTES: &[(&str, &str, i64, &str)] = &[
    (
        "Northwind Group",
        "Priya Raman",
        41,
        "Quarterly business review: expansion into two new regions planned for Q3.",
    ),
    (
        "Northwind Logistics",
        "Noor Haddad",
        33,
        "Omar asked for a walkthrough of the routing add-on; demo booked.",
    ),
    (
        "Northwind Retail",
        "Marcus Webb",
        20,
        "Renewal risk: budget freeze announced, Julia is pushing back on the price increase.",
    ),
    (
        "Northwind Group",
        "Sam Lee",
        12,
        "Sent the renewal proposal for the whole group; Hannah to review with procurement.",
    ),
    (
        "Northwind Retail",
        "Priya Raman",
        3,
        "Intro call with Julia after the handoff; agreed a 30-day check-in.",
    ),
    (
        "Helios Energy",
        "Lena Fischer",
        27,
        "Executive sponsor changed: Peter Novak replaces the former COO.",
    ),
    (
        "Helios Grid",
        "Rosa Lima",
        9,
        "Outage postmortem shared; Liam satisfied with the response time.",
    ),
    (
        "Bluebird Health",
        "Ellie Park",
        15,
        "Compliance questionnaire returned; waiting on their security review.",
    ),
    (
        "Atlas Freight",
        "Dana Ortiz",
        6,
        "Strategic account: CEO wants a roadmap session next month.",
    ),
];

/// The account whose timeline the demo shows, with its subsidiaries rolled up.
const SHOWCASE: &str = "Northwind Group";

pub(crate) async fn run(args: &DemoArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    if args.fresh {
        remove_sqlite_file(&args.database)?;
    }
    ensure_sqlite_directory(&args.database)?;
    let store = Store::connect(&args.database)
        .await
        .with_context(|| format!("failed to open the demo database {}", args.database))?;
    let already_seeded = !store.list_staff().await?.is_empty();
    if already_seeded {
        if store
            .staff_by_email(&demo_email(STAFF[0].0))
            .await?
            .is_none()
        {
            bail!(
                "{} already holds data that is not the demo's: point --database at an empty database",
                args.database
            );
        }
        writeln!(
            out,
            "Using the demo already seeded in {} (pass --fresh to start over).",
            args.database
        )?;
    } else {
        seed(&store, Utc::now())
            .await
            .context("failed to seed the demo org")?;
        writeln!(out, "Seeded the demo org into {}.", args.database)?;
    }
    report(&store, Utc::now(), out).await?;
    if !args.serve {
        store.close().await;
        return Ok(());
    }
    // The person the link signs in: a manager, whose book has a group, reports'
    // accounts and the demo's handoff.
    let guide = store
        .staff_by_email(&demo_email("Priya Raman"))
        .await?
        .context("the demo's manager Priya Raman is missing: run with --fresh")?;
    let now = Utc::now();
    let secret = store
        .create_sign_in_link(
            guide.id,
            now + Duration::minutes(rapport_server::SIGN_IN_LINK_MINUTES),
            now,
        )
        .await?;
    store.close().await;
    serve(args, &secret, out).await
}

/// Starts the sample upstreams, writes the `rapport.toml` that describes what it
/// started, connects two people's own Google and Microsoft accounts, starts a node from
/// that file exactly as `rapport serve --config` would, syncs every connector once, then serves the demo database (the
/// connectors keep syncing on schedule) until ctrl-c or SIGTERM.
async fn serve(args: &DemoArgs, secret: &str, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is something else there? Pick another with --listen",
                args.listen
            )
        })?;
    let (directory, database) = config_home(&args.database)?;
    let upstreams = crate::sample_activity::start(Utc::now()).await?;
    let path =
        crate::sample_activity::write_config(&directory, &upstreams, args.listen, &database)?;
    let mut config = rapport_server::Config::load(&path)
        .with_context(|| format!("the demo's own {} is refused", path.display()))?;
    let (keys, key_file) = crate::sample_activity::key_ring(&directory)?;
    {
        let store = rapport_store::Store::connect(&database).await?;
        crate::sample_activity::connect_people(&store, &keys, &upstreams, Utc::now()).await?;
        store.close().await;
    }
    config.secret_keys = Some(keys);
    let server = rapport_server::Server::start(config).await?;
    writeln!(out)?;
    writeln!(
        out,
        "Syncing the built-in connectors from sample upstreams on loopback:"
    )?;
    let mut units: Vec<(String, String)> = ["stripe", "zendesk", "mail"]
        .iter()
        .map(|id| ((*id).to_owned(), (*id).to_owned()))
        .collect();
    let store = rapport_store::Store::connect(&database).await?;
    for (connector, _, person) in crate::sample_activity::PERSON_CONNECTORS {
        let staff = store
            .staff_by_email(&demo_email(person))
            .await?
            .with_context(|| format!("the demo's {person} is missing: run with --fresh"))?;
        units.push((
            rapport_core::sharing::person_connector_id(connector, staff.id),
            format!("{connector} ({person})"),
        ));
    }
    store.close().await;
    for (id, shown) in units {
        let report = server
            .engine
            .run_now(&id, &|_| {})
            .await
            .with_context(|| format!("syncing {shown}"))?;
        writeln!(
            out,
            "  {shown:<31} {} new, {} updated, {} unchanged ({})",
            report.inserted,
            report.updated,
            report.unchanged,
            report.outcome.label()
        )?;
    }
    let base = format!("http://{}", args.listen);
    let shown = shown_path(&path);
    writeln!(out)?;
    writeln!(out, "The web UI and the API are at {base}/")?;
    writeln!(
        out,
        "Sign in as Priya Raman (a manager) with this one-time link (15 minutes):"
    )?;
    writeln!(out, "  {base}/signin/{secret}")?;
    writeln!(out)?;
    writeln!(
        out,
        "What the demo started is an ordinary deployment, described by {shown}; while it runs:"
    )?;
    // Connection tokens are sealed: commands that open the database need the key.
    let key = format!("RAPPORT_SECRET_KEY_FILE={}", shown_path(&key_file));
    writeln!(
        out,
        "  {key} rapport signin victoria.hale@rapport-demo.example --config {shown}   # anyone else"
    )?;
    writeln!(out, "  {key} rapport status --config {shown}")?;
    writeln!(out, "  {key} rapport sync stripe --config {shown}")?;
    writeln!(
        out,
        "  RAPPORT_LISTEN=127.0.0.1:8081 {key} rapport serve --config {shown}   # a second node"
    )?;
    writeln!(out, "Stop with ctrl-c.")?;
    out.flush()?;
    let (_keep, shutdown) = tokio::sync::watch::channel(false);
    let served = server.serve_on(listener, shutdown).await;
    drop(upstreams);
    served
}

/// Where the demo's `rapport.toml` goes, and the database URL to write in it: next to
/// a SQLite file (its path made absolute, so the file works from anywhere), else in
/// `./rapport-demo`.
fn config_home(database: &str) -> anyhow::Result<(PathBuf, String)> {
    let here = std::env::current_dir()?;
    if let Some(file) = sqlite_path(database) {
        let file = here.join(file);
        let directory = file
            .parent()
            .map_or_else(|| here.clone(), std::path::Path::to_path_buf);
        return Ok((directory, format!("sqlite://{}", file.display())));
    }
    let directory = here.join("rapport-demo");
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("cannot create {}", directory.display()))?;
    Ok((directory, database.to_owned()))
}

/// `path` as a person would type it from here: relative when it is below the current
/// directory.
fn shown_path(path: &std::path::Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|here| {
            path.strip_prefix(here)
                .ok()
                .map(std::path::Path::to_path_buf)
        })
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

pub(crate) fn demo_email(name: &str) -> EmailAddress {
    let local: String = name.to_lowercase().replace(' ', ".").replace('á', "a");
    EmailAddress::parse(&format!("{local}@rapport-demo.example")).expect("demo names are valid")
}

pub(crate) fn slug(name: &str) -> String {
    name.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
}

/// Seeds the org, its clients, their teams, a handoff and notes, with history spread
/// over the last four months before `now`.
pub async fn seed(store: &Store, now: DateTime<Utc>) -> anyhow::Result<()> {
    let founded = now - Duration::days(120);
    let mut staff: BTreeMap<&str, Staff> = BTreeMap::new();
    for &(name, level, manager) in STAFF {
        let person = store
            .create_staff(
                NewStaff {
                    name: name.into(),
                    email: demo_email(name),
                    level,
                    reports_to: manager.map(|manager| staff[manager].id),
                    is_admin: level == Level::Vp,
                },
                founded,
            )
            .await
            .with_context(|| format!("failed to add {name}"))?;
        staff.insert(name, person);
    }
    let mut accounts: BTreeMap<&str, AccountId> = BTreeMap::new();
    for (index, client) in CLIENTS.iter().enumerate() {
        let domain = Domain::parse(&format!("{}.example", slug(client.name)))?;
        let (contact_name, contact_title) = client.contact;
        let contact_email = EmailAddress::parse(&format!(
            "{}@{domain}",
            contact_name
                .split_whitespace()
                .next()
                .unwrap_or("hello")
                .to_lowercase()
        ))?;
        let renewal =
            NaiveDate::from_ymd_opt(2027, 1 + (index as u32 % 12), 1 + (index as u32 * 7) % 28);
        let account = store
            .create_account(
                Operator,
                NewAccount {
                    name: client.name.into(),
                    parent: client.parent.map(|parent| accounts[parent]),
                    lifecycle: client.lifecycle,
                    renewal_date: renewal,
                    domains: vec![domain],
                    external_ids: vec![
                        ExternalId::new("stripe", &format!("cus_demo{index:04}"))?,
                        ExternalId::new("zendesk_org", &format!("{}", 360_000 + index))?,
                    ],
                    contacts: vec![Contact {
                        name: Some(contact_name.into()),
                        email: contact_email,
                        title: Some(contact_title.into()),
                    }],
                    owner: staff[client.owner].id,
                },
                Some(staff["Victoria Hale"].id),
                founded + Duration::hours(index as i64),
            )
            .await
            .with_context(|| format!("failed to open {}", client.name))?;
        accounts.insert(client.name, account.id);
        if let Some(supporter) = client.supporter {
            store
                .add_support(
                    Operator,
                    account.id,
                    staff[supporter].id,
                    Some(staff[client.owner].id),
                    now - Duration::days(90),
                )
                .await?;
        }
    }
    // Marcus hands Northwind Retail to Priya, who owns the rest of the group.
    store
        .reassign_owner(
            Operator,
            accounts["Northwind Retail"],
            staff["Priya Raman"].id,
            Some(staff["Dana Ortiz"].id),
            now - Duration::days(10),
        )
        .await?;
    for &(account, author, days_ago, text) in NOTES {
        store
            .add_note(
                Operator,
                accounts[account],
                staff[author].id,
                text,
                now - Duration::days(days_ago),
            )
            .await
            .with_context(|| format!("failed to add a note on {account}"))?;
    }
    Ok(())
}

/// Prints the org as each person sees it, then the showcase account's timeline.
pub async fn report(
    store: &Store,
    now: DateTime<Utc>,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    let info = store.info().await?;
    let staff = store.list_staff().await?;
    let tree = store.account_tree().await?;
    let names: BTreeMap<AccountId, String> = store
        .accounts(&tree.iter().map(|(id, _)| *id).collect::<Vec<_>>())
        .await?
        .into_iter()
        .map(|account| (account.id, account.name))
        .collect();
    let people: BTreeMap<StaffId, &Staff> =
        staff.iter().map(|person| (person.id, person)).collect();
    writeln!(
        out,
        "\nDatabase: {}, schema version {}{}",
        info.dialect,
        info.schema_version,
        info.journal_mode
            .map(|mode| format!(", journal {mode}"))
            .unwrap_or_default()
    )?;
    let groups = tree.iter().filter(|(_, parent)| parent.is_none()).count();
    writeln!(
        out,
        "Org: {} staff, {} client accounts in {} top-level clients.\n",
        staff.len(),
        tree.len(),
        groups
    )?;
    writeln!(
        out,
        "Who sees what (own or supported accounts, their subsidiaries, and everything their reports see):"
    )?;
    for person in &staff {
        let visible = store.visible_account_ids(person.id, now).await?;
        let manager = person
            .reports_to
            .and_then(|id| people.get(&id))
            .map(|manager| format!(", reports to {}", manager.name))
            .unwrap_or_default();
        let mut line = format!(
            "  {:<16} {:<10} sees {:>2} account(s){manager}",
            person.name,
            person.level.as_str(),
            visible.len()
        );
        if person.level == Level::Associate {
            let listed: Vec<&str> = visible.iter().map(|id| names[id].as_str()).collect();
            line.push_str(&format!(": {}", listed.join(", ")));
        }
        writeln!(out, "{line}")?;
    }

    let Some((&showcase, _)) = names.iter().find(|(_, name)| name.as_str() == SHOWCASE) else {
        return Ok(());
    };
    let account = store.account(showcase).await?;
    let owner = account
        .owner
        .and_then(|id| people.get(&id))
        .map_or("nobody", |person| person.name.as_str());
    let children = store.account_children(showcase).await?;
    writeln!(
        out,
        "\n{SHOWCASE} (owner {owner}; subsidiaries: {}), unified timeline with subsidiaries, newest first:",
        children
            .iter()
            .map(|id| names[id].as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    let mut query = TimelineQuery::account(showcase, Reader::Operator);
    query.include_children = true;
    query.limit = 12;
    let page = store.timeline(&query).await?;
    for event in &page.events {
        writeln!(out, "{}", crate::timeline::event_line(event, Some(&names)))?;
    }
    if page.next.is_some() {
        writeln!(out, "  … older events follow (keyset-paginated)")?;
    }
    writeln!(
        out,
        "\nSee it in the browser: rapport demo --serve (then open the sign-in link it prints)."
    )?;
    Ok(())
}

/// The file path of a `sqlite:` URL, without its query.
fn sqlite_path(database: &str) -> Option<PathBuf> {
    let rest = database
        .strip_prefix("sqlite://")
        .or_else(|| database.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(PathBuf::from(path))
}

fn ensure_sqlite_directory(database: &str) -> anyhow::Result<()> {
    if let Some(parent) = sqlite_path(database)
        .as_deref()
        .and_then(|path| path.parent())
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    Ok(())
}

fn remove_sqlite_file(database: &str) -> anyhow::Result<()> {
    let Some(path) = sqlite_path(database) else {
        bail!("--fresh only deletes SQLite files; for {database}, use an empty database instead");
    };
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("failed to delete {}", file.display()));
            }
        }
    }
    Ok(())
}
