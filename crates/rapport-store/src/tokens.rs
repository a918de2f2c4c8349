//! The API token repository: issue, authenticate, list, revoke. The rules (shape,
//! hashing, usability) are rapport-core's `token` module.

use crate::time::{from_us, to_us};
use crate::{Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::staff::{Staff, validate_name};
use rapport_core::token::{
    ApiToken, TOKEN_PREFIX, TOKENS_PER_PERSON_MAX, display_prefix, looks_like_token, token_hash,
};
use rapport_core::{DomainError, StaffId};

const SELECT_TOKEN: &str = "SELECT id, staff_id, name, display_prefix, created_at_us, expires_at_us, last_used_at_us, revoked_at_us FROM api_tokens";

#[derive(Debug, sqlx::FromRow)]
struct TokenRow {
    id: i64,
    staff_id: i64,
    name: String,
    display_prefix: String,
    created_at_us: i64,
    expires_at_us: Option<i64>,
    last_used_at_us: Option<i64>,
    revoked_at_us: Option<i64>,
}

impl TokenRow {
    fn into_token(self) -> ApiToken {
        ApiToken {
            id: self.id,
            staff: StaffId(self.staff_id),
            name: self.name,
            display_prefix: self.display_prefix,
            created_at: from_us(self.created_at_us),
            expires_at: self.expires_at_us.map(from_us),
            last_used_at: self.last_used_at_us.map(from_us),
            revoked_at: self.revoked_at_us.map(from_us),
        }
    }
}

/// How stale a token's `last_used_at` may get before a use is written again.
pub const LAST_USED_RESOLUTION_SECONDS: i64 = 60;

/// A freshly made token: its record, and its secret, which is never shown again.
#[derive(Debug)]
pub struct IssuedToken {
    /// What is stored.
    pub token: ApiToken,
    /// The token itself, for the person who asked for it.
    pub secret: String,
}

impl Store {
    /// Makes a token acting as `staff` (who must be active), valid until `expires_at`
    /// if given.
    pub async fn create_api_token(
        &self,
        staff: StaffId,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> Result<IssuedToken> {
        let name = validate_name("token name", name)?;
        let person = self.staff(staff).await?;
        if !person.active {
            return Err(DomainError::StaffInactive(staff).into());
        }
        if let Some(expires) = expires_at
            && expires <= at
        {
            return Err(DomainError::InvalidField {
                field: "token expiry",
                reason: "must be in the future".into(),
            }
            .into());
        }
        // 2 × 122 random bits from the OS generator, as 64 hex digits.
        let secret = format!(
            "{TOKEN_PREFIX}{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let prefix = display_prefix(&secret);
        let at_us = to_us(at);
        let id: i64 = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            // The person's row is held while their tokens are counted, so two
            // requests racing for the last slot cannot both get it.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM staff WHERE id = $1{}",
                dialect.lock_rows()
            )))
            .bind(staff.0)
            .execute(&mut *tx)
            .await?;
            let live: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_tokens
                 WHERE staff_id = $1 AND revoked_at_us IS NULL
                   AND (expires_at_us IS NULL OR expires_at_us > $2)",
            )
            .bind(staff.0)
            .bind(at_us)
            .fetch_one(&mut *tx)
            .await?;
            if usize::try_from(live).unwrap_or(usize::MAX) >= TOKENS_PER_PERSON_MAX {
                return Err(DomainError::TooManyTokens {
                    staff,
                    max: TOKENS_PER_PERSON_MAX,
                }
                .into());
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO api_tokens (staff_id, name, token_hash, display_prefix, created_at_us, expires_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(staff.0)
            .bind(&name)
            .bind(token_hash(&secret))
            .bind(&prefix)
            .bind(at_us)
            .bind(expires_at.map(to_us))
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            id
        });
        Ok(IssuedToken {
            token: ApiToken {
                id,
                staff,
                name,
                display_prefix: prefix,
                created_at: from_us(to_us(at)),
                expires_at: expires_at.map(|at| from_us(to_us(at))),
                last_used_at: None,
                revoked_at: None,
            },
            secret,
        })
    }

    /// Whom a presented token acts as: `None` for anything that is not a live token of
    /// an active member of staff (unknown, revoked, expired, deactivated). Records the
    /// use, to within [`LAST_USED_RESOLUTION_SECONDS`].
    pub async fn authenticate_api_token(
        &self,
        presented: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Staff>> {
        if !looks_like_token(presented) {
            return Ok(None);
        }
        let hash = token_hash(presented);
        let row: Option<TokenRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "{SELECT_TOKEN} WHERE token_hash = $1"
            )))
            .bind(&hash)
            .fetch_optional(pool)
            .await?
        });
        let Some(token) = row.map(TokenRow::into_token) else {
            return Ok(None);
        };
        if !token.is_usable(at) {
            return Ok(None);
        }
        let staff = self.staff(token.staff).await?;
        if !staff.active {
            return Ok(None);
        }
        // Recording every use would make every read a write (on SQLite, one writer at
        // a time); to the minute is what people need to tell a token in use.
        let stale = token.last_used_at.is_none_or(|last| {
            at - last >= chrono::Duration::seconds(LAST_USED_RESOLUTION_SECONDS)
        });
        if stale {
            with_backend!(self, |pool, dialect| {
                sqlx::query("UPDATE api_tokens SET last_used_at_us = $1 WHERE id = $2")
                    .bind(to_us(at))
                    .bind(token.id)
                    .execute(pool)
                    .await?;
            });
        }
        Ok(Some(staff))
    }

    /// The tokens of `staff` (everyone's when `None`), newest first.
    pub async fn api_tokens(&self, staff: Option<StaffId>) -> Result<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = with_backend!(self, |pool, dialect| {
            match staff {
                Some(staff) => {
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{SELECT_TOKEN} WHERE staff_id = $1 ORDER BY id DESC"
                    )))
                    .bind(staff.0)
                    .fetch_all(pool)
                    .await?
                }
                None => {
                    sqlx::query_as(sqlx::AssertSqlSafe(format!(
                        "{SELECT_TOKEN} ORDER BY id DESC"
                    )))
                    .fetch_all(pool)
                    .await?
                }
            }
        });
        Ok(rows.into_iter().map(TokenRow::into_token).collect())
    }

    /// Revokes token `id` at `at`; revoking a revoked token keeps its first revocation.
    pub async fn revoke_api_token(&self, id: i64, at: DateTime<Utc>) -> Result<ApiToken> {
        let row: Option<TokenRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "UPDATE api_tokens SET revoked_at_us = COALESCE(revoked_at_us, $1) WHERE id = $2
                 RETURNING id, staff_id, name, display_prefix, created_at_us, expires_at_us, last_used_at_us, revoked_at_us",
            )
            .bind(to_us(at))
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        row.map(TokenRow::into_token)
            .ok_or_else(|| DomainError::UnknownToken(id).into())
    }
}
