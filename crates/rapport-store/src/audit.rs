//! The audit trail: sign-ins and failed attempts, token changes, and every write through
//! the API or the web UI. Rows are only ever added; reading is newest first, by id.
//! Failed sign-ins are counted from here to rate-limit signing in on every node alike.

use crate::time::{from_us, to_us};
use crate::{Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::StaffId;
use rapport_core::timeline::clean_text;

/// Most characters kept of an entry's action, surface, target or address.
pub const AUDIT_TEXT_CHARS_MAX: usize = 512;
/// Most bytes kept of an entry's detail (JSON); a longer one is replaced by a note
/// saying how long it was.
pub const AUDIT_DETAIL_BYTES_MAX: usize = 16 * 1024;
/// Most entries one read returns.
pub const AUDIT_PAGE_MAX: u32 = 500;

/// Something to write on the trail.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewAuditEntry {
    /// Who did it, if known.
    pub actor: Option<StaffId>,
    /// What (`signin.password`, `signin.failed`, `token.created`, `write`, ...).
    pub action: String,
    /// Through what: `api`, `web` or `cli`.
    pub surface: String,
    /// About what.
    pub target: Option<String>,
    /// The client's address.
    pub address: Option<String>,
    /// The HTTP status answered.
    pub status: Option<u16>,
    /// Before and after, as JSON.
    pub detail: Option<serde_json::Value>,
}

/// One entry of the trail.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Its id: later entries have larger ids.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// The rest, as written.
    pub entry: NewAuditEntry,
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only entries older than this id (the previous page's last).
    pub before: Option<i64>,
    /// Only entries by this person.
    pub actor: Option<StaffId>,
    /// Only actions equal to or under this prefix (`signin` covers `signin.failed`).
    pub action: Option<String>,
    /// At most this many (clamped to [`AUDIT_PAGE_MAX`]).
    pub limit: u32,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at_us: i64,
    actor_id: Option<i64>,
    action: String,
    surface: String,
    target: Option<String>,
    address: Option<String>,
    status: Option<i64>,
    detail: Option<String>,
}

fn bounded(text: &str) -> String {
    clean_text(text.chars().take(AUDIT_TEXT_CHARS_MAX).collect())
}

impl Store {
    /// Adds `entry` to the trail at `at`.
    pub async fn record_audit(&self, entry: &NewAuditEntry, at: DateTime<Utc>) -> Result<()> {
        let detail = entry.detail.as_ref().map(|detail| {
            let json = detail.to_string();
            if json.len() > AUDIT_DETAIL_BYTES_MAX {
                serde_json::json!({ "omitted": format!("{} bytes of detail", json.len()) })
                    .to_string()
            } else {
                json
            }
        });
        with_backend!(self, |pool, dialect| {
            sqlx::query(
                "INSERT INTO audit_log (at_us, actor_id, action, surface, target, address, status, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(to_us(at))
            .bind(entry.actor.map(|actor| actor.0))
            .bind(bounded(&entry.action))
            .bind(bounded(&entry.surface))
            .bind(entry.target.as_deref().map(bounded))
            .bind(entry.address.as_deref().map(bounded))
            .bind(entry.status.map(i64::from))
            .bind(&detail)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Entries matching `query`, newest first.
    pub async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let limit = i64::from(query.limit.clamp(1, AUDIT_PAGE_MAX));
        let prefix = query
            .action
            .as_deref()
            .map(|action| format!("{}.%", action.replace(['%', '_', '\\'], "")));
        let rows: Vec<AuditRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT id, at_us, actor_id, action, surface, target, address, status, detail
                 FROM audit_log
                 WHERE ($1 IS NULL OR id < $1)
                   AND ($2 IS NULL OR actor_id = $2)
                   AND ($3 IS NULL OR action = $3 OR action LIKE $4)
                 ORDER BY id DESC
                 LIMIT $5",
            )
            .bind(query.before)
            .bind(query.actor.map(|actor| actor.0))
            .bind(query.action.as_deref())
            .bind(prefix.as_deref())
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|row| AuditEntry {
                id: row.id,
                at: from_us(row.at_us),
                entry: NewAuditEntry {
                    actor: row.actor_id.map(StaffId),
                    action: row.action,
                    surface: row.surface,
                    target: row.target,
                    address: row.address,
                    status: row.status.and_then(|status| u16::try_from(status).ok()),
                    // A detail that no longer parses is shown as the text it is.
                    detail: row.detail.map(|detail| {
                        serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail))
                    }),
                },
            })
            .collect())
    }

    /// How many `action` entries there are since `since` from `address` (or, with
    /// `target`, about `target`), and when the oldest of them was: what sign-in rate
    /// limiting counts.
    pub async fn count_recent_audit(
        &self,
        action: &str,
        address: Option<&str>,
        target: Option<&str>,
        since: DateTime<Utc>,
    ) -> Result<(u64, Option<DateTime<Utc>>)> {
        let (count, oldest): (i64, Option<i64>) = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT COUNT(*), MIN(at_us) FROM audit_log
                 WHERE action = $1 AND at_us >= $2
                   AND ($3 IS NULL OR address = $3)
                   AND ($4 IS NULL OR target = $4)",
            )
            .bind(action)
            .bind(to_us(since))
            .bind(address.map(bounded))
            .bind(target.map(bounded))
            .fetch_one(pool)
            .await?
        });
        Ok((u64::try_from(count).unwrap_or(0), oldest.map(from_us)))
    }
}
