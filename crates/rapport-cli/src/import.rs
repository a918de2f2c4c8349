//! `rapport import staff|accounts|contacts <file.csv>`: bulk loading from CSV.
//!
//! Every row is checked before anything is written — shape, values, references to
//! people and accounts in the database or earlier/later in the same file, duplicates —
//! and every bad row is reported by line. Rows already in the database (a staff email,
//! an account name, a contact on its account) are left alone, so fixing a file and
//! running it again is safe. Rows are then written in dependency order (managers
//! before reports, parents before subsidiaries), with progress on stderr.

use crate::progress::Progress;
use crate::tokens::open;
use crate::{ImportArgs, ImportCommand};
use anyhow::{Context, bail};
use chrono::{NaiveDate, Utc};
use rapport_core::account::{
    ACCOUNT_DEPTH_MAX, Account, Contact, Domain, EmailAddress, ExternalId, Lifecycle, NewAccount,
    validate_account_name,
};
use rapport_core::permission::Authority::Operator;
use rapport_core::staff::{Level, NewStaff, Staff, validate_name};
use rapport_core::{AccountId, StaffId};
use rapport_store::Store;
use std::collections::BTreeMap;
use std::io::Write;

pub(crate) async fn run(
    command: ImportCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<()> {
    match command {
        ImportCommand::Staff(args) => staff(&args, out).await,
        ImportCommand::Accounts(args) => accounts(&args, out).await,
        ImportCommand::Contacts(args) => contacts(&args, out).await,
    }
}

/// One data row: its line in the file and its cells by column name.
struct Row {
    line: u64,
    cells: BTreeMap<String, String>,
}

impl Row {
    /// A cell, trimmed; blank is `None`.
    fn get(&self, column: &str) -> Option<&str> {
        self.cells
            .get(column)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// A required cell, parsed; a blank or bad one is recorded in `problems`.
    fn required<T, E: std::fmt::Display>(
        &self,
        column: &str,
        problems: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        match self.get(column).map(parse) {
            Some(Ok(value)) => Some(value),
            Some(Err(error)) => {
                problems.add(self.line, error.to_string());
                None
            }
            None => {
                problems.add(self.line, format!("{column} is empty"));
                None
            }
        }
    }

    fn list(&self, column: &str) -> Vec<&str> {
        self.get(column)
            .map(|value| {
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What went wrong, line by line.
#[derive(Default)]
struct Problems(Vec<(u64, String)>);

impl Problems {
    fn add(&mut self, line: u64, problem: impl Into<String>) {
        self.0.push((line, problem.into()));
    }

    /// Fails with every problem, or passes if there are none.
    fn check(mut self, args: &ImportArgs) -> anyhow::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        self.0.sort();
        let listed: Vec<String> = self
            .0
            .iter()
            .map(|(line, problem)| format!("  line {line}: {problem}"))
            .collect();
        bail!(
            "{} has {} bad row{}; nothing was written. Fix these and run it again:\n{}",
            args.file.display(),
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" },
            listed.join("\n")
        )
    }
}

/// Reads the file: its header must name every `required` column and nothing outside
/// `required` and `optional`. Rows that are not well-formed CSV come back as problems,
/// with the rest still checked, so one run reports every bad row.
fn read(
    args: &ImportArgs,
    required: &[&str],
    optional: &[&str],
) -> anyhow::Result<(Vec<Row>, Problems)> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::Headers)
        .from_path(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let header: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: the first line must be a header", args.file.display()))?
        .iter()
        .map(|name| name.trim().to_lowercase())
        .collect();
    let known: Vec<&str> = required.iter().chain(optional).copied().collect();
    let unknown: Vec<&String> = header
        .iter()
        .filter(|name| !known.contains(&name.as_str()))
        .collect();
    let missing: Vec<&&str> = required
        .iter()
        .filter(|name| !header.iter().any(|h| h == *name))
        .collect();
    if !unknown.is_empty() || !missing.is_empty() {
        let mut reasons = Vec::new();
        if !missing.is_empty() {
            reasons.push(format!(
                "it lacks the column(s) {}",
                join(missing.iter().map(|m| **m))
            ));
        }
        if !unknown.is_empty() {
            reasons.push(format!(
                "it has unknown column(s) {}",
                join(unknown.iter().map(|u| u.as_str()))
            ));
        }
        bail!(
            "{}: line 1: {}. The columns are {} (required) and {} (optional)",
            args.file.display(),
            reasons.join(", and "),
            join(required.iter().copied()),
            join(optional.iter().copied())
        );
    }
    let mut rows = Vec::new();
    let mut problems = Problems::default();
    for record in reader.records() {
        match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                rows.push(Row {
                    line,
                    cells: header
                        .iter()
                        .cloned()
                        .zip(record.iter().map(str::to_owned))
                        .collect(),
                });
            }
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line());
                let reason = match error.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("has {len} cells, but the header has {expected_len}")
                    }
                    csv::ErrorKind::Utf8 { .. } => "is not UTF-8 text".to_owned(),
                    _ => error.to_string(),
                };
                problems.add(line, reason);
            }
        }
    }
    Ok((rows, problems))
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn summary(
    out: &mut (dyn Write + Send),
    args: &ImportArgs,
    what: &str,
    new: usize,
    existing: usize,
) -> anyhow::Result<()> {
    writeln!(
        out,
        "Checked {}: {new} {what} to add, {existing} already there{}.",
        args.file.display(),
        if args.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    )?;
    Ok(())
}

async fn staff(args: &ImportArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let (rows, mut problems) = read(
        args,
        &["name", "email", "level"],
        &["manager_email", "admin"],
    )?;
    let store = open(&args.database.url()?).await?;
    let existing: BTreeMap<EmailAddress, Staff> = store
        .list_staff()
        .await?
        .into_iter()
        .map(|person| (person.email.clone(), person))
        .collect();
    // email → (line, new staff without its manager, manager email)
    let mut planned: BTreeMap<EmailAddress, (u64, NewStaff, Option<EmailAddress>)> =
        BTreeMap::new();
    let mut already = 0;
    for row in &rows {
        let name = row.required("name", &mut problems, |name| validate_name("name", name));
        let email = row.required("email", &mut problems, EmailAddress::parse);
        let level = match row.get("level").map(str::parse::<Level>) {
            Some(Ok(level)) => Some(level),
            Some(Err(error)) => {
                problems.add(row.line, error.to_string());
                None
            }
            None => {
                problems.add(
                    row.line,
                    "level is empty (associate, manager, director or vp)",
                );
                None
            }
        };
        let manager = match row.get("manager_email").map(EmailAddress::parse) {
            Some(Ok(manager)) => Some(manager),
            Some(Err(error)) => {
                problems.add(row.line, format!("manager_email: {error}"));
                None
            }
            None => None,
        };
        let is_admin = match row.get("admin").map(str::to_lowercase).as_deref() {
            None | Some("false" | "no" | "0") => false,
            Some("true" | "yes" | "1") => true,
            Some(other) => {
                problems.add(row.line, format!("admin is `{other}`; write true or false"));
                false
            }
        };
        let (Some(name), Some(email), Some(level)) = (name, email, level) else {
            continue;
        };
        if existing.contains_key(&email) {
            already += 1;
            continue;
        }
        if let Some((first, _, _)) = planned.get(&email) {
            problems.add(row.line, format!("{email} is already on line {first}"));
            continue;
        }
        if level == Level::Vp && manager.is_some() {
            problems.add(
                row.line,
                "a VP reports to nobody: leave manager_email empty",
            );
        }
        planned.insert(
            email.clone(),
            (
                row.line,
                NewStaff {
                    name,
                    email,
                    level,
                    reports_to: None,
                    is_admin,
                },
                manager,
            ),
        );
    }
    // Managers: in the database (active) or in the file, and senior to their reports.
    for (line, person, manager) in planned.values() {
        let Some(manager) = manager else { continue };
        let manager_level = match (existing.get(manager), planned.get(manager)) {
            (Some(found), _) if !found.active => {
                problems.add(
                    *line,
                    format!("manager {manager} has left (is deactivated)"),
                );
                continue;
            }
            (Some(found), _) => found.level,
            (None, Some((_, planned_manager, _))) => planned_manager.level,
            (None, None) => {
                problems.add(
                    *line,
                    format!("manager {manager} is neither on staff nor in this file"),
                );
                continue;
            }
        };
        if manager_level <= person.level {
            problems.add(
                *line,
                format!(
                    "{} cannot report to {manager}: a manager must be more senior ({} is not above {})",
                    person.email,
                    manager_level.as_str(),
                    person.level.as_str()
                ),
            );
        }
    }
    problems.check(args)?;
    summary(out, args, "staff", planned.len(), already)?;
    if args.dry_run || planned.is_empty() {
        store.close().await;
        return Ok(());
    }
    // Most senior first, so every manager exists before their reports.
    let mut order: Vec<&(u64, NewStaff, Option<EmailAddress>)> = planned.values().collect();
    order.sort_by(|a, b| b.1.level.cmp(&a.1.level).then(a.0.cmp(&b.0)));
    let mut ids: BTreeMap<EmailAddress, StaffId> = existing
        .iter()
        .map(|(email, person)| (email.clone(), person.id))
        .collect();
    let mut progress = Progress::new("staff", order.len() as u64);
    let now = Utc::now();
    for (line, person, manager) in order {
        let mut person = person.clone();
        person.reports_to = manager
            .as_ref()
            .and_then(|manager| ids.get(manager).copied());
        let created = store
            .create_staff(person, now)
            .await
            .with_context(|| format!("line {line}: adding this person failed; rows before it were added, so fix it and run the import again"))?;
        ids.insert(created.email.clone(), created.id);
        progress.step();
    }
    store.close().await;
    writeln!(out, "Added {} staff.", planned.len())?;
    Ok(())
}

/// A planned account: its line, name and what it needs.
struct PlannedAccount {
    line: u64,
    new: NewAccount,
    parent: Option<String>,
    owner: EmailAddress,
}

async fn all_accounts(store: &Store) -> anyhow::Result<Vec<Account>> {
    let ids: Vec<AccountId> = store
        .account_tree()
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    Ok(store.accounts(&ids).await?)
}

async fn accounts(args: &ImportArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let (rows, mut problems) = read(
        args,
        &["name", "owner_email"],
        &[
            "parent",
            "domains",
            "external_ids",
            "lifecycle",
            "renewal_date",
        ],
    )?;
    let store = open(&args.database.url()?).await?;
    let staff: BTreeMap<EmailAddress, Staff> = store
        .list_staff()
        .await?
        .into_iter()
        .map(|person| (person.email.clone(), person))
        .collect();
    let existing: BTreeMap<String, Account> = all_accounts(&store)
        .await?
        .into_iter()
        .map(|account| (account.name.to_lowercase(), account))
        .collect();
    let mut planned: BTreeMap<String, PlannedAccount> = BTreeMap::new();
    let mut already = 0;
    let mut ids_in_file: BTreeMap<ExternalId, u64> = BTreeMap::new();
    for row in &rows {
        let name = row.required("name", &mut problems, validate_account_name);
        let owner = match row.get("owner_email").map(EmailAddress::parse) {
            Some(Ok(email)) => match staff.get(&email) {
                Some(person) if !person.active => {
                    problems.add(row.line, format!("owner {email} has left (is deactivated)"));
                    None
                }
                Some(person) if person.level == Level::Associate => {
                    problems.add(row.line, format!("owner {email} is an associate; accounts are owned by managers and above (make the associate a supporter later)"));
                    None
                }
                Some(_) => Some(email),
                None => {
                    problems.add(
                        row.line,
                        format!("owner {email} is not on staff: import staff first"),
                    );
                    None
                }
            },
            Some(Err(error)) => {
                problems.add(row.line, format!("owner_email: {error}"));
                None
            }
            None => {
                problems.add(row.line, "owner_email is empty");
                None
            }
        };
        let mut domains = Vec::new();
        for raw in row.list("domains") {
            match Domain::parse(raw) {
                Ok(domain) => domains.push(domain),
                Err(error) => problems.add(row.line, format!("domains: {error}")),
            }
        }
        let mut external_ids = Vec::new();
        for raw in row.list("external_ids") {
            match raw.parse::<ExternalId>() {
                Ok(id) => {
                    if let Some(first) = ids_in_file.insert(id.clone(), row.line) {
                        problems.add(
                            row.line,
                            format!("external id {id} is also on line {first}"),
                        );
                    }
                    external_ids.push(id);
                }
                Err(error) => problems.add(row.line, format!("external_ids: {error}")),
            }
        }
        let lifecycle = match row.get("lifecycle").map(str::parse::<Lifecycle>) {
            None => Lifecycle::Active,
            Some(Ok(lifecycle)) => lifecycle,
            Some(Err(error)) => {
                problems.add(row.line, error.to_string());
                Lifecycle::Active
            }
        };
        let renewal_date = match row
            .get("renewal_date")
            .map(|raw| (raw, NaiveDate::parse_from_str(raw, "%Y-%m-%d")))
        {
            None => None,
            Some((_, Ok(date))) => Some(date),
            Some((raw, Err(_))) => {
                problems.add(
                    row.line,
                    format!("renewal_date `{raw}` is not a date like 2027-03-31"),
                );
                None
            }
        };
        let (Some(name), Some(owner)) = (name, owner) else {
            continue;
        };
        let key = name.to_lowercase();
        if existing.contains_key(&key) {
            already += 1;
            continue;
        }
        if let Some(first) = planned.get(&key) {
            problems.add(
                row.line,
                format!(
                    "an account named `{name}` is already on line {}",
                    first.line
                ),
            );
            continue;
        }
        planned.insert(
            key,
            PlannedAccount {
                line: row.line,
                new: NewAccount {
                    name,
                    parent: None,
                    lifecycle,
                    renewal_date,
                    domains,
                    external_ids,
                    contacts: Vec::new(),
                    owner: staff[&owner].id,
                },
                parent: row.get("parent").map(str::to_owned),
                owner,
            },
        );
    }
    // Parents: existing or in the file, without cycles, within the depth limit.
    for account in planned.values() {
        let Some(parent) = &account.parent else {
            continue;
        };
        let mut chain = vec![account.new.name.to_lowercase()];
        let mut cursor = Some(parent.to_lowercase());
        while let Some(name) = cursor {
            if chain.contains(&name) {
                problems.add(
                    account.line,
                    format!(
                        "parent `{parent}` leads back to `{}`: a group cannot contain itself",
                        account.new.name
                    ),
                );
                break;
            }
            chain.push(name.clone());
            if chain.len() > ACCOUNT_DEPTH_MAX {
                problems.add(
                    account.line,
                    format!("the group is more than {ACCOUNT_DEPTH_MAX} levels deep"),
                );
                break;
            }
            cursor = match (planned.get(&name), existing.get(&name)) {
                (Some(in_file), _) => in_file.parent.as_ref().map(|p| p.to_lowercase()),
                (None, Some(_)) => None,
                (None, None) => {
                    problems.add(
                        account.line,
                        format!("parent `{parent}` is neither an account nor in this file"),
                    );
                    None
                }
            };
        }
    }
    problems.check(args)?;
    summary(out, args, "accounts", planned.len(), already)?;
    if args.dry_run || planned.is_empty() {
        store.close().await;
        return Ok(());
    }
    let mut ids: BTreeMap<String, AccountId> = existing
        .iter()
        .map(|(name, account)| (name.clone(), account.id))
        .collect();
    let mut remaining: Vec<&PlannedAccount> = planned.values().collect();
    remaining.sort_by_key(|account| account.line);
    let mut progress = Progress::new("accounts", remaining.len() as u64);
    let now = Utc::now();
    // Parents before subsidiaries: each pass adds those whose parent exists now.
    while !remaining.is_empty() {
        let (ready, waiting): (Vec<&PlannedAccount>, Vec<&PlannedAccount>) =
            remaining.into_iter().partition(|account| {
                account
                    .parent
                    .as_ref()
                    .is_none_or(|p| ids.contains_key(&p.to_lowercase()))
            });
        if ready.is_empty() {
            bail!("the parent of line {} was never added", waiting[0].line);
        }
        for account in ready {
            let mut new = account.new.clone();
            new.parent = account.parent.as_ref().map(|p| ids[&p.to_lowercase()]);
            let created = store
                .create_account(Operator, new, None, now)
                .await
                .with_context(|| format!("line {}: adding {} (owner {}) failed; rows before it were added, so fix it and run the import again", account.line, account.new.name, account.owner))?;
            ids.insert(created.name.to_lowercase(), created.id);
            progress.step();
        }
        remaining = waiting;
    }
    store.close().await;
    writeln!(out, "Added {} accounts.", planned.len())?;
    Ok(())
}

async fn contacts(args: &ImportArgs, out: &mut (dyn Write + Send)) -> anyhow::Result<()> {
    let (rows, mut problems) = read(args, &["account", "email"], &["name", "title"])?;
    let store = open(&args.database.url()?).await?;
    let accounts: BTreeMap<String, Account> = all_accounts(&store)
        .await?
        .into_iter()
        .map(|account| (account.name.to_lowercase(), account))
        .collect();
    let mut planned: Vec<(u64, AccountId, Contact)> = Vec::new();
    let mut seen: BTreeMap<(AccountId, EmailAddress), u64> = BTreeMap::new();
    let mut already = 0;
    for row in &rows {
        let account = match row.get("account") {
            Some(name) => match accounts.get(&name.to_lowercase()) {
                Some(account) => Some(account),
                None => {
                    problems.add(row.line, format!("there is no account named `{name}`: import accounts first, or check the spelling"));
                    None
                }
            },
            None => {
                problems.add(row.line, "account is empty");
                None
            }
        };
        let email = row.required("email", &mut problems, EmailAddress::parse);
        let (Some(account), Some(email)) = (account, email) else {
            continue;
        };
        if account
            .contacts
            .iter()
            .any(|contact| contact.email == email)
        {
            already += 1;
            continue;
        }
        if let Some(first) = seen.insert((account.id, email.clone()), row.line) {
            problems.add(
                row.line,
                format!("{email} on {} is already on line {first}", account.name),
            );
            continue;
        }
        planned.push((
            row.line,
            account.id,
            Contact {
                name: row.get("name").map(str::to_owned),
                email,
                title: row.get("title").map(str::to_owned),
            },
        ));
    }
    problems.check(args)?;
    summary(out, args, "contacts", planned.len(), already)?;
    if args.dry_run || planned.is_empty() {
        store.close().await;
        return Ok(());
    }
    let mut progress = Progress::new("contacts", planned.len() as u64);
    for (line, account, contact) in &planned {
        store
            .upsert_contact(Operator, *account, contact)
            .await
            .with_context(|| format!("line {line}: adding {} failed; rows before it were added, so fix it and run the import again", contact.email))?;
        progress.step();
    }
    store.close().await;
    writeln!(out, "Added {} contacts.", planned.len())?;
    Ok(())
}
