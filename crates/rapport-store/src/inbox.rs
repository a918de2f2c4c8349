//! The unmatched inbox's one write: a person places a waiting event on an account, and
//! can teach identity resolution the hint that would have matched it.

use crate::tx::require_account;
use crate::{Reader, Result, Store, with_backend};
use rapport_core::account::{Contact, Domain, EmailAddress, ExternalId};
use rapport_core::permission::Authority;
use rapport_core::timeline::{MatchReason, TimelineEvent};
use rapport_core::{AccountId, DomainError, EventId, StaffId};
use sqlx::types::Json;

/// What to add to the chosen account while placing an event on it, so the next event
/// like it matches by itself (and the other waiting ones are placed at once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Learn {
    /// One of the client's domains.
    Domain(Domain),
    /// A person at the client.
    Contact(EmailAddress),
    /// The client's id in another system.
    ExternalId(ExternalId),
}

impl Store {
    /// Places the unmatched event `event` on `account` as `by`'s decision (a manual
    /// placement, which later syncs of the event keep), first adding `learn` to the
    /// account if given. Refused, with nothing changed, if the event is already on an
    /// account or the hint is invalid or held by another account.
    pub async fn place_unmatched(
        &self,
        authority: Authority<'_>,
        event: EventId,
        account: AccountId,
        by: StaffId,
        learn: Option<Learn>,
    ) -> Result<TimelineEvent> {
        let reader = Reader::of(&authority);
        let stored = self
            .event(event, reader)
            .await?
            .ok_or(DomainError::UnknownEvent(event))?;
        if stored.event.placement.is_some() {
            return Err(DomainError::EventNotChangeable {
                event,
                reason: "it is already on an account, not in the unmatched inbox".into(),
            }
            .into());
        }
        self.account_exists(account).await?;
        match &learn {
            Some(Learn::Domain(domain)) => {
                self.add_domain(authority, account, domain).await?;
            }
            Some(Learn::Contact(email)) => {
                // An existing contact keeps their name and title.
                let known = self.account(account).await?.contacts;
                if known.iter().any(|contact| &contact.email == email) {
                    return self.place_manually(authority, event, account, by).await;
                }
                let contact = Contact {
                    name: None,
                    email: email.clone(),
                    title: None,
                };
                self.upsert_contact(authority, account, &contact).await?;
            }
            Some(Learn::ExternalId(external_id)) => {
                self.add_external_id(authority, account, external_id)
                    .await?;
            }
            None => {}
        }
        self.place_manually(authority, event, account, by).await
    }

    async fn place_manually(
        &self,
        authority: Authority<'_>,
        event: EventId,
        account: AccountId,
        by: StaffId,
    ) -> Result<TimelineEvent> {
        let reader = Reader::of(&authority);
        let placed = with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            crate::visibility::decide(&mut *tx, authority, chrono::Utc::now()).await?;
            require_account(&mut *tx, account).await?;
            // Learning may already have placed it here by the new rule; the person's
            // decision is still what is recorded. Anywhere else means someone else
            // placed it in the meantime, and their choice stands.
            // Two statements, so the one that takes the event out of the inbox says
            // what it was (it now counts in the account's insight) and the one that
            // only records the person's decision does not count it twice.
            let set = "UPDATE timeline_events
                 SET account_id = $2, match_rule = 'manual', match_detail = $3, match_candidates = NULL
                 WHERE id = $1";
            let taken: Option<crate::insights::FactRow> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{set} AND account_id IS NULL RETURNING {}",
                    crate::insights::FACT_COLUMNS
                )))
                .bind(event.0)
                .bind(account.0)
                .bind(Json(MatchReason::Manual { by }))
                .fetch_optional(&mut *tx)
                .await?;
            let changed = match taken {
                Some(row) => {
                    let mut changes = crate::insights::Changes::default();
                    changes.added(row.into_fact());
                    crate::insights::keep(&mut *tx, dialect, changes).await?;
                    1
                }
                None => sqlx::query(sqlx::AssertSqlSafe(format!("{set} AND account_id = $2")))
                    .bind(event.0)
                    .bind(account.0)
                    .bind(Json(MatchReason::Manual { by }))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected(),
            };
            tx.commit().await?;
            changed
        });
        if placed == 0 {
            return Err(DomainError::EventNotChangeable {
                event,
                reason: "it was placed on another account meanwhile".into(),
            }
            .into());
        }
        self.event(event, reader)
            .await?
            .ok_or_else(|| DomainError::UnknownEvent(event).into())
    }
}
