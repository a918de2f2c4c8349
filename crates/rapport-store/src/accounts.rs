//! The accounts repository: client accounts, their tree, domains, external ids and
//! contacts.

use crate::error::decode;
use crate::time::to_us;
use crate::timeline::{assignment_event, upsert_event};
use crate::tx::{load_staff, require_account, select_by_ids};
use crate::visibility::decide;
use crate::{Error, Result, Store, with_backend};
use chrono::{DateTime, NaiveDate, Utc};
use rapport_core::account::{
    ACCOUNT_DEPTH_MAX, Account, Contact, Domain, EmailAddress, ExternalId, Lifecycle, NewAccount,
    check_reparent, validate_account_name,
};
use rapport_core::assignment::{Role, check_owner};
use rapport_core::permission::Authority;
use rapport_core::{AccountId, DomainError, StaffId};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};
use std::collections::BTreeMap;

/// Changes to an account's own fields; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New lifecycle status.
    pub lifecycle: Option<Lifecycle>,
    /// New renewal date (`Some(None)` clears it).
    pub renewal_date: Option<Option<NaiveDate>>,
    /// New parent (`Some(None)` makes it a top-level account), refusing cycles and trees
    /// deeper than [`ACCOUNT_DEPTH_MAX`].
    pub parent: Option<Option<AccountId>>,
}

#[derive(Debug, sqlx::FromRow)]
struct AccountRow {
    id: i64,
    name: String,
    parent_id: Option<i64>,
    lifecycle: String,
    renewal_date: Option<NaiveDate>,
}

/// Most ids per `IN (...)` list, well under both backends' bind-parameter limits.
const IN_LIST_MAX: usize = 500;

/// `account`'s ancestors, parent first, bounded by the depth limit.
async fn ancestors<'e, E, DB>(executor: E, account: AccountId) -> Result<Vec<AccountId>>
where
    E: Executor<'e, Database = DB>,
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let ids: Vec<i64> = sqlx::query_scalar(
        "WITH RECURSIVE chain(id, depth) AS (
             SELECT parent_id, 1 FROM accounts WHERE id = $1 AND parent_id IS NOT NULL
             UNION ALL
             SELECT accounts.parent_id, chain.depth + 1 FROM accounts JOIN chain ON accounts.id = chain.id
             WHERE accounts.parent_id IS NOT NULL AND chain.depth <= $2
         )
         SELECT id FROM chain ORDER BY depth",
    )
    .bind(account.0)
    .bind(ACCOUNT_DEPTH_MAX as i64)
    .fetch_all(executor)
    .await?;
    Ok(ids.into_iter().map(AccountId).collect())
}

/// Most characters of text an account search takes: far more than any name or domain,
/// and far less than what makes a `LIKE` pattern costly (SQLite refuses patterns over
/// 50,000 bytes).
pub const SEARCH_TEXT_CHARS_MAX: usize = 200;

impl Store {
    /// Opens an account with its owner, domains, external ids and contacts, and records
    /// the first owner on its timeline — all in one transaction.
    pub async fn create_account(
        &self,
        authority: Authority<'_>,
        new: NewAccount,
        by: Option<StaffId>,
        at: DateTime<Utc>,
    ) -> Result<Account> {
        let name = validate_account_name(&new.name)?;
        if let Some(renewal) = new.renewal_date {
            rapport_core::account::validate_date("renewal_date", renewal)?;
        }
        let at_us = to_us(at);
        let mut domains = new.domains.clone();
        domains.sort();
        domains.dedup();
        let mut external_ids = new.external_ids.clone();
        external_ids.sort();
        external_ids.dedup();
        let contacts = normalise_contacts(new.contacts.clone())?;
        let id = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let mut changes = crate::insights::Changes::default();
            decide(&mut *tx, authority, at).await?;
            if let Some(parent) = new.parent {
                require_account(&mut *tx, parent).await?;
                let parent_ancestry = ancestors(&mut *tx, parent).await?;
                // A new account has no id yet and nothing below it; id 0 never exists.
                check_reparent(AccountId(0), Some(parent), &parent_ancestry, 0)?;
            }
            let owner = load_staff(&mut *tx, new.owner).await?;
            check_owner(AccountId(0), &owner.org_node(), None, false)?;
            for external_id in &external_ids {
                let holder: Option<i64> = sqlx::query_scalar(
                    "SELECT account_id FROM account_external_ids WHERE system = $1 AND external_id = $2",
                )
                .bind(&external_id.system)
                .bind(&external_id.id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(holder) = holder {
                    return Err(DomainError::ExternalIdTaken {
                        external_id: external_id.to_string(),
                        account: AccountId(holder),
                    }
                    .into());
                }
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO accounts (name, parent_id, lifecycle, renewal_date, created_at_us, updated_at_us)
                 VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
            )
            .bind(&name)
            .bind(new.parent.map(|id| id.0))
            .bind(new.lifecycle.as_str())
            .bind(new.renewal_date)
            .bind(at_us)
            .fetch_one(&mut *tx)
            .await?;
            for domain in &domains {
                sqlx::query("INSERT INTO account_domains (account_id, domain) VALUES ($1, $2)")
                    .bind(id)
                    .bind(domain.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            for external_id in &external_ids {
                sqlx::query(
                    "INSERT INTO account_external_ids (account_id, system, external_id) VALUES ($1, $2, $3)",
                )
                .bind(id)
                .bind(&external_id.system)
                .bind(&external_id.id)
                .execute(&mut *tx)
                .await
                .map_err(|error| conflict_or(error, "an external id"))?;
            }
            for contact in &contacts {
                sqlx::query(
                    "INSERT INTO contacts (account_id, email, name, title) VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(contact.email.as_str())
                .bind(contact.name.as_deref())
                .bind(contact.title.as_deref())
                .execute(&mut *tx)
                .await?;
            }
            let assignment_id: i64 = sqlx::query_scalar(
                "INSERT INTO assignments (account_id, staff_id, role, valid_from_us) VALUES ($1, $2, 'owner', $3) RETURNING id",
            )
            .bind(id)
            .bind(owner.id.0)
            .bind(at_us)
            .fetch_one(&mut *tx)
            .await?;
            let event = assignment_event(
                AccountId(id),
                assignment_id,
                "started",
                format!("{} became the owner", owner.name),
                Role::Owner,
                None,
                Some(&owner),
                by,
                at,
            )?;
            changes.created(id);
            upsert_event(&mut *tx, dialect, &event, at_us, &mut changes).await?;
            let needles: Vec<String> = domains
                .iter()
                .map(|domain| domain.as_str().to_owned())
                .chain(external_ids.iter().map(crate::identity::external_id_needle))
                .chain(
                    contacts
                        .iter()
                        .map(|contact| contact.email.as_str().to_owned()),
                )
                .collect();
            if !needles.is_empty() {
                crate::identity::rematch_waiting(
                    &mut *tx,
                    dialect,
                    &needles,
                    &self.ignored_domains,
                    at_us,
                    &mut changes,
                )
                .await?;
            }
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            tx.commit().await?;
            AccountId(id)
        });
        self.account(id).await
    }

    /// One account with its domains, external ids, contacts and current team.
    pub async fn account(&self, id: AccountId) -> Result<Account> {
        self.accounts(&[id])
            .await?
            .pop()
            .ok_or_else(|| DomainError::UnknownAccount(id).into())
    }

    /// Several accounts, in the order of their ids; unknown ids are skipped.
    pub async fn accounts(&self, ids: &[AccountId]) -> Result<Vec<Account>> {
        let mut ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut accounts = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_LIST_MAX) {
            accounts.extend(self.accounts_chunk(chunk).await?);
        }
        Ok(accounts)
    }

    async fn accounts_chunk(&self, ids: &[i64]) -> Result<Vec<Account>> {
        type Rows = (
            Vec<AccountRow>,
            Vec<(i64, String)>,
            Vec<(i64, String, String)>,
            Vec<(i64, String, Option<String>, Option<String>)>,
            Vec<(i64, i64, String)>,
        );
        let (rows, domains, external_ids, contacts, team): Rows = with_backend!(
            self,
            |pool, dialect| {
                let rows = select_by_ids("SELECT id, name, parent_id, lifecycle, renewal_date FROM accounts WHERE id IN (", ids, "ORDER BY id")
                .build_query_as()
                .fetch_all(pool)
                .await?;
                let domains = select_by_ids(
                    "SELECT account_id, domain FROM account_domains WHERE account_id IN (",
                    ids,
                    "ORDER BY account_id, domain",
                )
                .build_query_as()
                .fetch_all(pool)
                .await?;
                let external_ids = select_by_ids("SELECT account_id, system, external_id FROM account_external_ids WHERE account_id IN (", ids, "ORDER BY account_id, system, external_id")
                .build_query_as()
                .fetch_all(pool)
                .await?;
                let contacts = select_by_ids(
                    "SELECT account_id, email, name, title FROM contacts WHERE account_id IN (",
                    ids,
                    "ORDER BY account_id, email",
                )
                .build_query_as()
                .fetch_all(pool)
                .await?;
                let team = select_by_ids("SELECT account_id, staff_id, role FROM assignments WHERE valid_to_us IS NULL AND account_id IN (", ids, "ORDER BY account_id, staff_id")
                .build_query_as()
                .fetch_all(pool)
                .await?;
                (rows, domains, external_ids, contacts, team)
            }
        );
        let mut accounts: BTreeMap<i64, Account> = BTreeMap::new();
        for row in rows {
            accounts.insert(
                row.id,
                Account {
                    id: AccountId(row.id),
                    name: row.name,
                    parent: row.parent_id.map(AccountId),
                    lifecycle: decode("lifecycle", &row.lifecycle, str::parse::<Lifecycle>)?,
                    renewal_date: row.renewal_date,
                    domains: Vec::new(),
                    external_ids: Vec::new(),
                    contacts: Vec::new(),
                    owner: None,
                    supporters: Vec::new(),
                },
            );
        }
        for (account, domain) in domains {
            if let Some(account) = accounts.get_mut(&account) {
                account
                    .domains
                    .push(decode("domain", &domain, Domain::parse)?);
            }
        }
        for (account, system, id) in external_ids {
            if let Some(account) = accounts.get_mut(&account) {
                let spelled = format!("{system}:{id}");
                account.external_ids.push(decode(
                    "external id",
                    &spelled,
                    str::parse::<ExternalId>,
                )?);
            }
        }
        for (account, email, name, title) in contacts {
            if let Some(account) = accounts.get_mut(&account) {
                account.contacts.push(Contact {
                    email: decode("contact email", &email, EmailAddress::parse)?,
                    name,
                    title,
                });
            }
        }
        for (account, staff, role) in team {
            if let Some(account) = accounts.get_mut(&account) {
                match decode("role", &role, str::parse::<Role>)? {
                    Role::Owner => account.owner = Some(StaffId(staff)),
                    Role::Support => account.supporters.push(StaffId(staff)),
                }
            }
        }
        Ok(accounts.into_values().collect())
    }

    /// Every account id, with its parent: the shape of the client forest.
    pub async fn account_tree(&self) -> Result<Vec<(AccountId, Option<AccountId>)>> {
        let rows: Vec<(i64, Option<i64>)> = with_backend!(self, |pool, dialect| {
            sqlx::query_as("SELECT id, parent_id FROM accounts ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, parent)| (AccountId(id), parent.map(AccountId)))
            .collect())
    }

    /// Direct subsidiaries of `account`.
    pub async fn account_children(&self, account: AccountId) -> Result<Vec<AccountId>> {
        self.account_exists(account).await?;
        let ids: Vec<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar("SELECT id FROM accounts WHERE parent_id = $1 ORDER BY id")
                .bind(account.0)
                .fetch_all(pool)
                .await?
        });
        Ok(ids.into_iter().map(AccountId).collect())
    }

    /// Accounts whose name contains `text` or that have a domain starting with it
    /// (case-insensitive), among `within`.
    pub async fn search_accounts(
        &self,
        text: &str,
        within: &[AccountId],
    ) -> Result<Vec<AccountId>> {
        let length = text.chars().count();
        if length > SEARCH_TEXT_CHARS_MAX {
            return Err(DomainError::InvalidField {
                field: "search text",
                reason: format!(
                    "is {length} characters; at most {SEARCH_TEXT_CHARS_MAX}: search for part of the name or domain"
                ),
            }
            .into());
        }
        let pattern = format!(
            "%{}%",
            text.trim()
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        let domain_pattern = pattern.trim_start_matches('%').to_owned();
        let mut found = Vec::new();
        let ids: Vec<i64> = within.iter().map(|id| id.0).collect();
        for chunk in ids.chunks(IN_LIST_MAX) {
            let rows: Vec<i64> = with_backend!(self, |pool, dialect| {
                let mut sql =
                    sqlx::QueryBuilder::new("SELECT id FROM accounts WHERE (lower(name) ");
                sql.push(dialect.ilike())
                    .push(" ")
                    .push_bind(pattern.clone())
                    .push(" ESCAPE '\\' OR id IN (SELECT account_id FROM account_domains WHERE domain LIKE ")
                    .push_bind(domain_pattern.clone())
                    .push(" ESCAPE '\\')) AND id IN (");
                let mut list = sql.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                sql.push(") ORDER BY id");
                sql.build_query_scalar().fetch_all(pool).await?
            });
            found.extend(rows.into_iter().map(AccountId));
        }
        Ok(found)
    }

    /// Fails with [`DomainError::UnknownAccount`] unless `account` exists.
    pub async fn account_exists(&self, account: AccountId) -> Result<()> {
        with_backend!(self, |pool, dialect| require_account(pool, account).await)
    }

    /// Changes an account's name, lifecycle status, renewal date or parent, in one
    /// transaction: all of it, or (refused) none.
    pub async fn update_account(
        &self,
        authority: Authority<'_>,
        id: AccountId,
        update: AccountUpdate,
        at: DateTime<Utc>,
    ) -> Result<Account> {
        let name = update
            .name
            .as_deref()
            .map(validate_account_name)
            .transpose()?;
        if let Some(Some(renewal)) = update.renewal_date {
            rapport_core::account::validate_date("renewal_date", renewal)?;
        }
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            decide(&mut *tx, authority, at).await?;
            require_account(&mut *tx, id).await?;
            if let Some(Some(parent)) = update.parent {
                require_account(&mut *tx, parent).await?;
                let parent_ancestry = ancestors(&mut *tx, parent).await?;
                let height_below: Option<i64> = sqlx::query_scalar(
                    "WITH RECURSIVE tree(id, depth) AS (
                         SELECT id, 0 FROM accounts WHERE id = $1
                         UNION ALL
                         SELECT accounts.id, tree.depth + 1 FROM accounts JOIN tree ON accounts.parent_id = tree.id
                         WHERE tree.depth <= $2
                     )
                     SELECT CAST(MAX(depth) AS BIGINT) FROM tree",
                )
                .bind(id.0)
                .bind(ACCOUNT_DEPTH_MAX as i64)
                .fetch_one(&mut *tx)
                .await?;
                check_reparent(
                    id,
                    Some(parent),
                    &parent_ancestry,
                    height_below.unwrap_or(0) as usize,
                )?;
            }
            sqlx::query(
                "UPDATE accounts SET
                     name = COALESCE($2, name),
                     lifecycle = COALESCE($3, lifecycle),
                     renewal_date = CASE WHEN $4 THEN $5 ELSE renewal_date END,
                     parent_id = CASE WHEN $6 THEN $7 ELSE parent_id END,
                     updated_at_us = $8
                 WHERE id = $1",
            )
            .bind(id.0)
            .bind(name)
            .bind(update.lifecycle.map(Lifecycle::as_str))
            .bind(update.renewal_date.is_some())
            .bind(update.renewal_date.flatten())
            .bind(update.parent.is_some())
            .bind(update.parent.flatten().map(|parent| parent.0))
            .bind(to_us(at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.account(id).await
    }

    /// Moves `account` under `parent` (or to the top with `None`): [`Store::update_account`]
    /// of the parent alone.
    pub async fn set_account_parent(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        parent: Option<AccountId>,
        at: DateTime<Utc>,
    ) -> Result<Account> {
        let update = AccountUpdate {
            parent: Some(parent),
            ..AccountUpdate::default()
        };
        self.update_account(authority, account, update, at).await
    }

    /// Adds a domain to an account (no-op if it already has it), and places the waiting
    /// events that now match; returns how many were placed.
    pub async fn add_domain(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        domain: &Domain,
    ) -> Result<u64> {
        let now = Utc::now();
        let at_us = to_us(now);
        let placed = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let mut changes = crate::insights::Changes::default();
            decide(&mut *tx, authority, now).await?;
            require_account(&mut *tx, account).await?;
            sqlx::query(
                "INSERT INTO account_domains (account_id, domain) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(account.0)
            .bind(domain.as_str())
            .execute(&mut *tx)
            .await?;
            let placed = crate::identity::rematch_waiting(
                &mut *tx,
                dialect,
                &[domain.as_str().to_owned()],
                &self.ignored_domains,
                at_us,
                &mut changes,
            )
            .await?;
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            tx.commit().await?;
            placed
        });
        Ok(placed)
    }

    /// Removes a domain from an account; returns whether it had it.
    pub async fn remove_domain(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        domain: &Domain,
    ) -> Result<bool> {
        let removed = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            decide(&mut *tx, authority, Utc::now()).await?;
            require_account(&mut *tx, account).await?;
            let removed =
                sqlx::query("DELETE FROM account_domains WHERE account_id = $1 AND domain = $2")
                    .bind(account.0)
                    .bind(domain.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            tx.commit().await?;
            removed
        });
        Ok(removed > 0)
    }

    /// Accounts that have `domain` (more than one means matching by it is ambiguous).
    pub async fn accounts_with_domain(&self, domain: &Domain) -> Result<Vec<AccountId>> {
        let ids: Vec<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar(
                "SELECT account_id FROM account_domains WHERE domain = $1 ORDER BY account_id",
            )
            .bind(domain.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(ids.into_iter().map(AccountId).collect())
    }

    /// Gives an account an external id, and places the waiting events that now match;
    /// returns how many were placed. Refused if another account holds the id.
    pub async fn add_external_id(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        external_id: &ExternalId,
    ) -> Result<u64> {
        let now = Utc::now();
        let at_us = to_us(now);
        let placed = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let mut changes = crate::insights::Changes::default();
            decide(&mut *tx, authority, now).await?;
            require_account(&mut *tx, account).await?;
            let holder: Option<i64> = sqlx::query_scalar(
                "SELECT account_id FROM account_external_ids WHERE system = $1 AND external_id = $2",
            )
            .bind(&external_id.system)
            .bind(&external_id.id)
            .fetch_optional(&mut *tx)
            .await?;
            match holder {
                Some(holder) if holder == account.0 => return Ok(0),
                Some(holder) => {
                    return Err(DomainError::ExternalIdTaken {
                        external_id: external_id.to_string(),
                        account: AccountId(holder),
                    }
                    .into());
                }
                None => {}
            }
            sqlx::query(
                "INSERT INTO account_external_ids (account_id, system, external_id) VALUES ($1, $2, $3)",
            )
            .bind(account.0)
            .bind(&external_id.system)
            .bind(&external_id.id)
            .execute(&mut *tx)
            .await
            .map_err(|error| conflict_or(error, "an external id"))?;
            let placed = crate::identity::rematch_waiting(
                &mut *tx,
                dialect,
                &[crate::identity::external_id_needle(external_id)],
                &self.ignored_domains,
                at_us,
                &mut changes,
            )
            .await?;
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            tx.commit().await?;
            placed
        });
        Ok(placed)
    }

    /// Removes an external id from an account; returns whether it had it.
    pub async fn remove_external_id(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        external_id: &ExternalId,
    ) -> Result<bool> {
        let removed = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            decide(&mut *tx, authority, Utc::now()).await?;
            require_account(&mut *tx, account).await?;
            let removed = sqlx::query(
                "DELETE FROM account_external_ids WHERE account_id = $1 AND system = $2 AND external_id = $3",
            )
            .bind(account.0)
            .bind(&external_id.system)
            .bind(&external_id.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
            removed
        });
        Ok(removed > 0)
    }

    /// The account holding an external id.
    pub async fn account_by_external_id(
        &self,
        external_id: &ExternalId,
    ) -> Result<Option<AccountId>> {
        let id: Option<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar(
                "SELECT account_id FROM account_external_ids WHERE system = $1 AND external_id = $2",
            )
            .bind(&external_id.system)
            .bind(&external_id.id)
            .fetch_optional(pool)
            .await?
        });
        Ok(id.map(AccountId))
    }

    /// Adds a contact to an account, or updates the name and title of the contact with
    /// that email; places the waiting events that now match and returns how many.
    pub async fn upsert_contact(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        contact: &Contact,
    ) -> Result<u64> {
        let contact = normalise_contacts(vec![contact.clone()])?.remove(0);
        let now = Utc::now();
        let at_us = to_us(now);
        let placed = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let mut changes = crate::insights::Changes::default();
            decide(&mut *tx, authority, now).await?;
            require_account(&mut *tx, account).await?;
            sqlx::query(
                "INSERT INTO contacts (account_id, email, name, title) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account_id, email) DO UPDATE SET name = excluded.name, title = excluded.title",
            )
            .bind(account.0)
            .bind(contact.email.as_str())
            .bind(contact.name.as_deref())
            .bind(contact.title.as_deref())
            .execute(&mut *tx)
            .await?;
            let placed = crate::identity::rematch_waiting(
                &mut *tx,
                dialect,
                &[contact.email.as_str().to_owned()],
                &self.ignored_domains,
                at_us,
                &mut changes,
            )
            .await?;
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            tx.commit().await?;
            placed
        });
        Ok(placed)
    }

    /// Removes the contact with `email` from an account; returns whether there was one.
    pub async fn remove_contact(
        &self,
        authority: Authority<'_>,
        account: AccountId,
        email: &EmailAddress,
    ) -> Result<bool> {
        let removed = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            decide(&mut *tx, authority, Utc::now()).await?;
            require_account(&mut *tx, account).await?;
            let removed = sqlx::query("DELETE FROM contacts WHERE account_id = $1 AND email = $2")
                .bind(account.0)
                .bind(email.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            removed
        });
        Ok(removed > 0)
    }

    /// Accounts with a contact at `email` (more than one means ambiguous).
    pub async fn accounts_with_contact(&self, email: &EmailAddress) -> Result<Vec<AccountId>> {
        let ids: Vec<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar(
                "SELECT account_id FROM contacts WHERE email = $1 ORDER BY account_id",
            )
            .bind(email.as_str())
            .fetch_all(pool)
            .await?
        });
        Ok(ids.into_iter().map(AccountId).collect())
    }
}

fn normalise_contacts(contacts: Vec<Contact>) -> Result<Vec<Contact>> {
    let mut by_email: BTreeMap<EmailAddress, Contact> = BTreeMap::new();
    for mut contact in contacts {
        contact.name = contact
            .name
            .map(|name| rapport_core::staff::validate_name("contact name", &name))
            .transpose()?;
        contact.title = contact
            .title
            .map(|title| rapport_core::staff::validate_name("contact title", &title))
            .transpose()?;
        by_email.insert(contact.email.clone(), contact);
    }
    Ok(by_email.into_values().collect())
}

fn conflict_or(error: sqlx::Error, what: &str) -> Error {
    if Error::is_unique_violation(&error) {
        Error::Conflict(what.to_owned())
    } else {
        Error::from(error)
    }
}
