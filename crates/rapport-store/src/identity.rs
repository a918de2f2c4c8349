//! Identity resolution inside write transactions.
//!
//! The rules live in `rapport_core::matching`; this module loads, inside the
//! transaction that writes the events, exactly the identity rows those rules may
//! consult ([`Lookups`]), and applies them. Two things follow:
//! - ingest never matches against a stale in-memory copy of accounts, even with several
//!   nodes;
//! - an identity change (a domain, contact or external id added) re-matches the waiting
//!   events it could place in the same transaction, and is ordered against concurrent
//!   ingest by the `identity_clock` row: ingest holds it shared (PostgreSQL
//!   `FOR SHARE`), a change holds it exclusively, so no event can be stored unmatched
//!   by a transaction that could not yet see a change whose re-match could not yet see
//!   that event. SQLite serialises writers, which gives the same order.

use crate::insights::{Changes, FACT_COLUMNS, FactRow};
use crate::lenient::Lenient;
use crate::{Dialect, Result};
use rapport_core::AccountId;
use rapport_core::account::{Domain, EmailAddress, ExternalId};
use rapport_core::matching::{Lookups, MatchIndex, Resolution};
use rapport_core::timeline::{AccountHints, MatchReason, NewEvent, Placement};
use sqlx::types::Json;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};
use std::collections::BTreeMap;

/// Where a batch of events goes: per event, its placement (if any) and, when its match
/// was ambiguous, the candidates.
pub(crate) type Placements = Vec<(Option<Placement>, Vec<AccountId>)>;

/// The statements that differ between backends.
pub(crate) struct IdentitySql {
    pub external_ids: &'static str,
    pub contacts: &'static str,
    pub domains: &'static str,
    pub waiting_like: &'static str,
    pub hold_clock_shared: Option<&'static str>,
}

pub(crate) fn identity_sql(dialect: crate::Dialect) -> IdentitySql {
    match dialect {
        crate::Dialect::Sqlite => IdentitySql {
            external_ids: "SELECT e.account_id, e.system, e.external_id FROM json_each($1) AS j
                JOIN account_external_ids e
                  ON e.system = json_extract(j.value, '$[0]')
                 AND e.external_id = json_extract(j.value, '$[1]')",
            contacts: "SELECT account_id, email FROM contacts
                WHERE email IN (SELECT value FROM json_each($1))",
            domains: "SELECT account_id, domain FROM account_domains
                WHERE domain IN (SELECT value FROM json_each($1))",
            waiting_like: "SELECT id, hints FROM timeline_events
                WHERE account_id IS NULL AND hints LIKE $1 ESCAPE '\\' ORDER BY id",
            hold_clock_shared: None,
        },
        crate::Dialect::Postgres => IdentitySql {
            external_ids: "SELECT e.account_id, e.system, e.external_id
                FROM jsonb_array_elements($1) AS j(v)
                JOIN account_external_ids e ON e.system = j.v->>0 AND e.external_id = j.v->>1",
            contacts: "SELECT account_id, email FROM contacts
                WHERE email IN (SELECT jsonb_array_elements_text($1))",
            domains: "SELECT account_id, domain FROM account_domains
                WHERE domain IN (SELECT jsonb_array_elements_text($1))",
            waiting_like: "SELECT id, hints FROM timeline_events
                WHERE account_id IS NULL AND hints::text LIKE $1 ESCAPE '\\' ORDER BY id",
            hold_clock_shared: Some("SELECT generation FROM identity_clock WHERE id = 1 FOR SHARE"),
        },
    }
}

/// What a waiting event's stored hints contain if they name `external_id`: its id as a
/// JSON string, quotes included, so `cus_9` does not find `cus_9x`. (Hints are JSON;
/// an external id is stored as `{"system": .., "id": ..}`; the system is checked when
/// the candidates are resolved.)
pub(crate) fn external_id_needle(external_id: &ExternalId) -> String {
    serde_json::to_string(&external_id.id).expect("a string serialises")
}

/// A LIKE pattern matching any text that contains `needle`.
pub(crate) fn contains_pattern(needle: &str) -> String {
    let mut pattern = String::with_capacity(needle.len() + 2);
    pattern.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Decodes identity rows into an index, failing on rows that are not valid values.
pub(crate) fn build_index(
    ignored: &[Domain],
    external_ids: Vec<(i64, String, String)>,
    contacts: Vec<(i64, String)>,
    domains: Vec<(i64, String)>,
) -> crate::Result<MatchIndex> {
    let mut index = MatchIndex::new();
    for domain in ignored {
        index.ignore_domain(domain.clone());
    }
    for (account, system, id) in external_ids {
        let external_id = crate::error::decode("external id", &format!("{system}:{id}"), |s| {
            s.parse::<ExternalId>()
        })?;
        index.add_external_id(AccountId(account), external_id);
    }
    for (account, email) in contacts {
        let email = crate::error::decode("contact email", &email, EmailAddress::parse)?;
        index.add_contact(AccountId(account), email);
    }
    for (account, domain) in domains {
        let domain = crate::error::decode("domain", &domain, Domain::parse)?;
        index.add_domain(AccountId(account), domain);
    }
    Ok(index)
}

/// The JSON parameters for the three identity queries.
pub(crate) fn lookup_params(
    lookups: &Lookups,
) -> (Vec<(String, String)>, Vec<String>, Vec<String>) {
    (
        lookups
            .external_ids
            .iter()
            .map(|id| (id.system.clone(), id.id.clone()))
            .collect(),
        lookups
            .emails
            .iter()
            .map(|email| email.as_str().to_owned())
            .collect(),
        lookups
            .domains
            .iter()
            .map(|domain| domain.as_str().to_owned())
            .collect(),
    )
}

/// Places each event: one that names its account keeps it; the others are resolved by
/// `index`.
pub(crate) fn place(events: &[NewEvent], index: &MatchIndex) -> Placements {
    events
        .iter()
        .map(|event| match &event.placement {
            Some(placement) => (Some(placement.clone()), Vec::new()),
            None => resolution_placement(index.resolve(&event.hints)),
        })
        .collect()
}

/// A resolution as (placement, ambiguous candidates).
pub(crate) fn resolution_placement(resolution: Resolution) -> (Option<Placement>, Vec<AccountId>) {
    match resolution {
        Resolution::Matched(placement) => (Some(placement), Vec::new()),
        Resolution::Ambiguous { candidates, .. } => (None, candidates),
        Resolution::Unmatched => (None, Vec::new()),
    }
}

/// Loads the identity rows `lookups` names into a `MatchIndex`.
pub(crate) async fn load_match_index<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    lookups: &Lookups,
    ignored: &[Domain],
) -> Result<MatchIndex>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    Json<Vec<(String, String)>>: for<'q> Encode<'q, DB> + Type<DB>,
    Json<Vec<String>>: for<'q> Encode<'q, DB> + Type<DB>,
    (i64, String, String): for<'r> FromRow<'r, DB::Row>,
    (i64, String): for<'r> FromRow<'r, DB::Row>,
{
    let sql = identity_sql(dialect);
    let (ids, emails, domains) = lookup_params(lookups);
    let external_ids: Vec<(i64, String, String)> = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(sql.external_ids)
            .bind(Json(ids))
            .fetch_all(&mut *conn)
            .await?
    };
    let contacts: Vec<(i64, String)> = if emails.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(sql.contacts)
            .bind(Json(emails))
            .fetch_all(&mut *conn)
            .await?
    };
    let domain_rows: Vec<(i64, String)> = if domains.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(sql.domains)
            .bind(Json(domains))
            .fetch_all(&mut *conn)
            .await?
    };
    build_index(ignored, external_ids, contacts, domain_rows)
}

/// Resolves the events of a batch that do not name their account, holding the identity
/// clock shared so a concurrent identity change is ordered before or after this batch.
pub(crate) async fn resolve_batch<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    events: &[NewEvent],
    ignored: &[Domain],
) -> Result<Placements>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    Json<Vec<(String, String)>>: for<'q> Encode<'q, DB> + Type<DB>,
    Json<Vec<String>>: for<'q> Encode<'q, DB> + Type<DB>,
    (i64, String, String): for<'r> FromRow<'r, DB::Row>,
    (i64, String): for<'r> FromRow<'r, DB::Row>,
{
    let mut lookups = Lookups::default();
    for event in events.iter().filter(|event| event.placement.is_none()) {
        lookups.add(&event.hints);
    }
    if let Some(hold) = identity_sql(dialect).hold_clock_shared {
        sqlx::query(hold).execute(&mut *conn).await?;
    }
    let index = if lookups.is_empty() {
        MatchIndex::new()
    } else {
        load_match_index(&mut *conn, dialect, &lookups, ignored).await?
    };
    Ok(place(events, &index))
}

/// A waiting event's id and stored hints, as [`rematch_waiting`] reads them.
type WaitingRow = (i64, Lenient<Json<AccountHints>>);

/// After an identity change in this transaction: orders it against concurrent ingest
/// (exclusive hold on the identity clock) and re-matches every waiting event whose
/// hints mention one of `needles`, noting the placed ones in `changes`; returns the
/// events placed.
pub(crate) async fn rematch_waiting<C, DB>(
    conn: &mut C,
    dialect: Dialect,
    needles: &[String],
    ignored: &[Domain],
    at_us: i64,
    changes: &mut Changes,
) -> Result<u64>
where
    DB: Database,
    for<'e> &'e mut C: Executor<'e, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    String: for<'q> Encode<'q, DB> + Type<DB>,
    Option<i64>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<&'static str>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<Json<MatchReason>>: for<'q> Encode<'q, DB> + Type<DB>,
    Option<Json<Vec<i64>>>: for<'q> Encode<'q, DB> + Type<DB>,
    Json<Vec<(String, String)>>: for<'q> Encode<'q, DB> + Type<DB>,
    Json<Vec<String>>: for<'q> Encode<'q, DB> + Type<DB>,
    (i64, String, String): for<'r> FromRow<'r, DB::Row>,
    (i64, String): for<'r> FromRow<'r, DB::Row>,
    WaitingRow: for<'r> FromRow<'r, DB::Row>,
    FactRow: for<'r> FromRow<'r, DB::Row>,
{
    sqlx::query("UPDATE identity_clock SET generation = generation + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    let sql = identity_sql(dialect);
    let mut waiting: BTreeMap<i64, AccountHints> = BTreeMap::new();
    for needle in needles {
        // Hints that cannot be read back cannot match anything: such an event keeps
        // waiting (and shows as unreadable), the others are placed.
        let rows: Vec<WaitingRow> = sqlx::query_as(sql.waiting_like)
            .bind(contains_pattern(needle))
            .fetch_all(&mut *conn)
            .await?;
        waiting.extend(rows.into_iter().filter_map(|(id, hints)| match hints.0 {
            Ok(Json(hints)) => Some((id, hints)),
            Err(error) => {
                tracing::warn!(event = id, %error, "a waiting event's hints could not be read; it was not re-matched");
                None
            }
        }));
    }
    if waiting.is_empty() {
        return Ok(0);
    }
    let mut lookups = Lookups::default();
    for hints in waiting.values() {
        lookups.add(hints);
    }
    let index = load_match_index(&mut *conn, dialect, &lookups, ignored).await?;
    let place_sql = format!(
        "UPDATE timeline_events SET account_id = $2, match_rule = $3, match_detail = $4,
            match_candidates = $5, ingested_at_us = $6
         WHERE id = $1 AND account_id IS NULL
         RETURNING {FACT_COLUMNS}"
    );
    let mut placed = 0;
    for (id, hints) in &waiting {
        let (placement, candidates) = resolution_placement(index.resolve(hints));
        let candidates: Option<Vec<i64>> =
            (!candidates.is_empty()).then(|| candidates.iter().map(|account| account.0).collect());
        if placement.is_some() {
            placed += 1;
        }
        let moved: Option<FactRow> = sqlx::query_as(sqlx::AssertSqlSafe(place_sql.clone()))
            .bind(*id)
            .bind(placement.as_ref().map(|placement| placement.account.0))
            .bind(placement.as_ref().map(|placement| placement.reason.rule()))
            .bind(placement.map(|placement| Json(placement.reason)))
            .bind(candidates.map(Json))
            .bind(at_us)
            .fetch_optional(&mut *conn)
            .await?;
        // It was waiting, so no insight counted it; placed, it now counts.
        changes.added(moved.and_then(FactRow::into_fact));
    }
    Ok(placed)
}
