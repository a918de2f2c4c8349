//! Signing in to the web UI: one-time sign-in links, passwords and browser sessions.
//! The rules for passwords are rapport-core's `password` module; link and session
//! secrets are stored as SHA-256 digests, like API tokens.

use crate::time::to_us;
use crate::{Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::staff::Staff;
use rapport_core::token::token_hash;
use rapport_core::{DomainError, StaffId};

/// What a sign-in link's secret starts with.
pub const SIGN_IN_LINK_PREFIX: &str = "rpl_";
/// What a session's secret starts with.
pub const SESSION_PREFIX: &str = "rps_";

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct WebSession {
    /// Who is signed in.
    pub staff: Staff,
    /// The token every form must send back.
    pub csrf_token: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A session just started: its record and the secret for the cookie.
#[derive(Debug)]
pub struct IssuedSession {
    /// The session.
    pub session: WebSession,
    /// The cookie's value, never stored.
    pub secret: String,
}

/// `prefix` and 64 hex digits: 244 random bits from the OS generator.
fn fresh_secret(prefix: &str) -> String {
    format!(
        "{prefix}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn has_shape(presented: &str, prefix: &str) -> bool {
    presented.len() == prefix.len() + 64
        && presented.starts_with(prefix)
        && presented[prefix.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Store {
    /// A one-time link secret signing `staff` (who must be active) in, usable once
    /// until `expires_at`.
    pub async fn create_sign_in_link(
        &self,
        staff: StaffId,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<String> {
        let person = self.staff(staff).await?;
        if !person.active {
            return Err(DomainError::StaffInactive(staff).into());
        }
        let secret = fresh_secret(SIGN_IN_LINK_PREFIX);
        with_backend!(self, |pool, dialect| {
            sqlx::query(
                "INSERT INTO sign_in_links (staff_id, link_hash, created_at_us, expires_at_us)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(staff.0)
            .bind(token_hash(&secret))
            .bind(to_us(at))
            .bind(to_us(expires_at))
            .execute(pool)
            .await?;
        });
        Ok(secret)
    }

    /// Uses a sign-in link: the first use before it expires starts a session lasting
    /// until `session_expires_at`; anything else (unknown, used, expired, its owner
    /// gone) is `None`.
    pub async fn redeem_sign_in_link(
        &self,
        presented: &str,
        session_expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Option<IssuedSession>> {
        if !has_shape(presented, SIGN_IN_LINK_PREFIX) {
            return Ok(None);
        }
        // Marking it used is the claim: of two browsers racing, one gets the row.
        let staff: Option<i64> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar(
                "UPDATE sign_in_links SET used_at_us = $1
                 WHERE link_hash = $2 AND used_at_us IS NULL AND expires_at_us > $1
                 RETURNING staff_id",
            )
            .bind(to_us(at))
            .bind(token_hash(presented))
            .fetch_optional(pool)
            .await?
        });
        match staff {
            Some(staff) => {
                self.start_web_session(StaffId(staff), session_expires_at, at)
                    .await
            }
            None => Ok(None),
        }
    }

    /// Starts a session for `staff`, if they are active.
    pub async fn start_web_session(
        &self,
        staff: StaffId,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<Option<IssuedSession>> {
        let person = self.staff(staff).await?;
        if !person.active {
            return Ok(None);
        }
        let secret = fresh_secret(SESSION_PREFIX);
        let csrf_token = uuid::Uuid::new_v4().simple().to_string();
        with_backend!(self, |pool, dialect| {
            sqlx::query(
                "INSERT INTO web_sessions (staff_id, session_hash, csrf_token, created_at_us, expires_at_us)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(staff.0)
            .bind(token_hash(&secret))
            .bind(&csrf_token)
            .bind(to_us(at))
            .bind(to_us(expires_at))
            .execute(pool)
            .await?;
        });
        Ok(Some(IssuedSession {
            session: WebSession {
                staff: person,
                csrf_token,
                expires_at,
            },
            secret,
        }))
    }

    /// The live session a cookie names: `None` if unknown, ended, expired, or its
    /// owner was deactivated.
    pub async fn web_session(
        &self,
        presented: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<WebSession>> {
        if !has_shape(presented, SESSION_PREFIX) {
            return Ok(None);
        }
        let row: Option<(i64, String, i64)> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT staff_id, csrf_token, expires_at_us FROM web_sessions
                 WHERE session_hash = $1 AND ended_at_us IS NULL AND expires_at_us > $2",
            )
            .bind(token_hash(presented))
            .bind(to_us(at))
            .fetch_optional(pool)
            .await?
        });
        let Some((staff, csrf_token, expires_at)) = row else {
            return Ok(None);
        };
        let staff = self.staff(StaffId(staff)).await?;
        if !staff.active {
            return Ok(None);
        }
        Ok(Some(WebSession {
            staff,
            csrf_token,
            expires_at: crate::time::from_us(expires_at),
        }))
    }

    /// Ends the session a cookie names (signing out); ending an unknown one is no error.
    pub async fn end_web_session(&self, presented: &str, at: DateTime<Utc>) -> Result<()> {
        with_backend!(self, |pool, dialect| {
            sqlx::query(
                "UPDATE web_sessions SET ended_at_us = $1 WHERE session_hash = $2 AND ended_at_us IS NULL",
            )
            .bind(to_us(at))
            .bind(token_hash(presented))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Sets (or with `None`, removes) `staff`'s password, given as the stored argon2
    /// PHC string, and ends every session they have: a changed password signs every
    /// browser out.
    pub async fn set_password_hash(
        &self,
        staff: StaffId,
        stored: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.staff(staff).await?;
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            sqlx::query("UPDATE staff SET password_hash = $1 WHERE id = $2")
                .bind(stored)
                .bind(staff.0)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE web_sessions SET ended_at_us = $1 WHERE staff_id = $2 AND ended_at_us IS NULL",
            )
            .bind(to_us(at))
            .bind(staff.0)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// `staff`'s stored password (an argon2 PHC string), if they have one.
    pub async fn password_hash(&self, staff: StaffId) -> Result<Option<String>> {
        let stored: Option<Option<String>> = with_backend!(self, |pool, dialect| {
            sqlx::query_scalar("SELECT password_hash FROM staff WHERE id = $1")
                .bind(staff.0)
                .fetch_optional(pool)
                .await?
        });
        stored.ok_or_else(|| DomainError::UnknownStaff(staff).into())
    }
}

/// A staff sign-in through an OpenID Connect provider, between sending the person
/// there and their coming back (see [`Store::begin_oidc_sign_in`]).
#[derive(Clone)]
pub struct OidcSignIn {
    /// The configured provider's id.
    pub provider: String,
    /// The SHA-256 of the cookie set in the browser that started it.
    pub browser_hash: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier that redeems the code.
    pub pkce_verifier: String,
    /// Where to go once signed in (a local path).
    pub next: String,
    /// When it stops being usable.
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for OidcSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSignIn")
            .field("provider", &self.provider)
            .field("next", &self.next)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(sqlx::FromRow)]
struct OidcSignInRow {
    provider: String,
    browser_hash: String,
    nonce: String,
    pkce_verifier: String,
    next_path: String,
    expires_at_us: i64,
}

impl Store {
    /// Records a sign-in sent to its provider under the SHA-256 of its `state`; expired
    /// ones are cleared on the way.
    pub async fn begin_oidc_sign_in(
        &self,
        state_hash: &str,
        sign_in: &OidcSignIn,
        at: DateTime<Utc>,
    ) -> Result<()> {
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            sqlx::query("DELETE FROM oidc_sign_ins WHERE expires_at_us <= $1")
                .bind(to_us(at))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO oidc_sign_ins (state_hash, provider, browser_hash, nonce,
                     pkce_verifier, next_path, created_at_us, expires_at_us)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(state_hash)
            .bind(&sign_in.provider)
            .bind(&sign_in.browser_hash)
            .bind(&sign_in.nonce)
            .bind(&sign_in.pkce_verifier)
            .bind(&sign_in.next)
            .bind(to_us(at))
            .bind(to_us(sign_in.expires_at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Takes (deletes and returns) the sign-in whose `state` hashes to `state_hash`, if
    /// the browser presenting it is the one that started it (`browser_hash`) and it has
    /// not expired. Anyone else's attempt neither gets nor spends it.
    pub async fn take_oidc_sign_in(
        &self,
        state_hash: &str,
        browser_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<OidcSignIn>> {
        let row: Option<OidcSignInRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "DELETE FROM oidc_sign_ins
                 WHERE state_hash = $1 AND browser_hash = $2 AND expires_at_us > $3
                 RETURNING provider, browser_hash, nonce, pkce_verifier, next_path, expires_at_us",
            )
            .bind(state_hash)
            .bind(browser_hash)
            .bind(to_us(at))
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|row| OidcSignIn {
            provider: row.provider,
            browser_hash: row.browser_hash,
            nonce: row.nonce,
            pkce_verifier: row.pkce_verifier,
            next: row.next_path,
            expires_at: crate::time::from_us(row.expires_at_us),
        }))
    }
}
