//! The staff repository: people, their levels and who they report to.

use crate::error::decode;
use crate::time::to_us;
use crate::timeline::{assignment_event, upsert_event};
use crate::{Error, Result, Store, with_backend};
use chrono::{DateTime, Utc};
use rapport_core::account::EmailAddress;
use rapport_core::assignment::Role;
use rapport_core::staff::{Level, NewStaff, OrgChart, Staff, validate_name};
use rapport_core::{AccountId, DomainError, StaffId};
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};

/// How many accounts `staff` owns right now.
async fn owned_count<'e, E, DB>(executor: E, staff: StaffId) -> Result<u64>
where
    E: Executor<'e, Database = DB>,
    DB: Database,
    DB::Arguments: IntoArguments<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
    (i64,): for<'r> FromRow<'r, DB::Row>,
{
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM assignments WHERE staff_id = $1 AND role = 'owner' AND valid_to_us IS NULL",
    )
    .bind(staff.0)
    .fetch_one(executor)
    .await?;
    Ok(count as u64)
}

pub(crate) const SELECT_STAFF: &str =
    "SELECT id, name, email, level, reports_to, active, is_admin FROM staff";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct StaffRow {
    id: i64,
    name: String,
    email: String,
    level: String,
    reports_to: Option<i64>,
    active: bool,
    is_admin: bool,
}

impl StaffRow {
    pub(crate) fn into_staff(self) -> Result<Staff> {
        Ok(Staff {
            id: StaffId(self.id),
            name: self.name,
            email: decode("staff email", &self.email, EmailAddress::parse)?,
            level: decode("staff level", &self.level, str::parse::<Level>)?,
            reports_to: self.reports_to.map(StaffId),
            active: self.active,
            is_admin: self.is_admin,
        })
    }
}

pub(crate) fn org_chart_from(rows: Vec<StaffRow>) -> Result<(OrgChart, Vec<Staff>)> {
    let staff = rows
        .into_iter()
        .map(StaffRow::into_staff)
        .collect::<Result<Vec<_>>>()?;
    let chart = OrgChart::new(staff.iter().map(Staff::org_node));
    Ok((chart, staff))
}

/// Changes to a staff member; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct StaffUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New work email.
    pub email: Option<EmailAddress>,
    /// New level.
    pub level: Option<Level>,
    /// New manager (`Some(None)` for nobody).
    pub reports_to: Option<Option<StaffId>>,
    /// New admin flag.
    pub is_admin: Option<bool>,
}

impl Store {
    /// Adds a member of staff, after checking they would report to someone more senior.
    pub async fn create_staff(&self, new: NewStaff, at: DateTime<Utc>) -> Result<Staff> {
        let name = validate_name("staff name", &new.name)?;
        let at_us = to_us(at);
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let rows: Vec<StaffRow> = sqlx::query_as(SELECT_STAFF).fetch_all(&mut *tx).await?;
            let (chart, staff) = org_chart_from(rows)?;
            chart.check_manager(None, new.level, new.reports_to)?;
            if staff.iter().any(|person| person.email == new.email) {
                return Err(DomainError::StaffEmailTaken(new.email.to_string()).into());
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO staff (name, email, level, reports_to, active, is_admin, created_at_us, updated_at_us)
                 VALUES ($1, $2, $3, $4, TRUE, $5, $6, $6) RETURNING id",
            )
            .bind(&name)
            .bind(new.email.as_str())
            .bind(new.level.as_str())
            .bind(new.reports_to.map(|id| id.0))
            .bind(new.is_admin)
            .bind(at_us)
            .fetch_one(&mut *tx)
            .await
            .map_err(|error| {
                if Error::is_unique_violation(&error) {
                    DomainError::StaffEmailTaken(new.email.to_string()).into()
                } else {
                    Error::from(error)
                }
            })?;
            tx.commit().await?;
            Ok(Staff {
                id: StaffId(id),
                name,
                email: new.email,
                level: new.level,
                reports_to: new.reports_to,
                active: true,
                is_admin: new.is_admin,
            })
        })
    }

    /// One staff member.
    pub async fn staff(&self, id: StaffId) -> Result<Staff> {
        let row: Option<StaffRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT id, name, email, level, reports_to, active, is_admin FROM staff WHERE id = $1",
            )
                .bind(id.0)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or(DomainError::UnknownStaff(id))?.into_staff()
    }

    /// One staff member by work email (how sign-in and imports find people).
    pub async fn staff_by_email(&self, email: &EmailAddress) -> Result<Option<Staff>> {
        let row: Option<StaffRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT id, name, email, level, reports_to, active, is_admin FROM staff WHERE email = $1",
            )
            .bind(email.as_str())
            .fetch_optional(pool)
            .await?
        });
        row.map(StaffRow::into_staff).transpose()
    }

    /// Everyone, active or not, ordered by id.
    pub async fn list_staff(&self) -> Result<Vec<Staff>> {
        let rows: Vec<StaffRow> = with_backend!(self, |pool, dialect| {
            sqlx::query_as(
                "SELECT id, name, email, level, reports_to, active, is_admin FROM staff ORDER BY id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(StaffRow::into_staff).collect()
    }

    /// The whole reporting structure.
    pub async fn org_chart(&self) -> Result<OrgChart> {
        let staff = self.list_staff().await?;
        Ok(OrgChart::new(staff.iter().map(Staff::org_node)))
    }
    /// Changes name, email, level, manager or admin flag, keeping the hierarchy valid.
    pub async fn update_staff(
        &self,
        id: StaffId,
        update: StaffUpdate,
        at: DateTime<Utc>,
    ) -> Result<Staff> {
        let name = update
            .name
            .as_deref()
            .map(|name| validate_name("staff name", name))
            .transpose()?;
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let rows: Vec<StaffRow> = sqlx::query_as(SELECT_STAFF).fetch_all(&mut *tx).await?;
            let (chart, staff) = org_chart_from(rows)?;
            let current = staff
                .iter()
                .find(|person| person.id == id)
                .ok_or(DomainError::UnknownStaff(id))?;
            let mut updated = current.clone();
            if let Some(name) = name {
                updated.name = name;
            }
            if let Some(email) = update.email {
                if staff
                    .iter()
                    .any(|person| person.id != id && person.email == email)
                {
                    return Err(DomainError::StaffEmailTaken(email.to_string()).into());
                }
                updated.email = email;
            }
            if let Some(level) = update.level {
                updated.level = level;
            }
            if let Some(reports_to) = update.reports_to {
                updated.reports_to = reports_to;
            }
            if let Some(is_admin) = update.is_admin {
                updated.is_admin = is_admin;
            }
            if updated.level != current.level || updated.reports_to != current.reports_to {
                chart.check_change(id, updated.level, updated.reports_to)?;
            }
            if updated.level == Level::Associate && current.level != Level::Associate {
                let owned = owned_count(&mut *tx, id).await?;
                if owned > 0 {
                    return Err(DomainError::AssociateCannotOwn(id).into());
                }
            }
            sqlx::query(
                "UPDATE staff SET name = $2, email = $3, level = $4, reports_to = $5, is_admin = $6, updated_at_us = $7
                 WHERE id = $1",
            )
            .bind(id.0)
            .bind(&updated.name)
            .bind(updated.email.as_str())
            .bind(updated.level.as_str())
            .bind(updated.reports_to.map(|id| id.0))
            .bind(updated.is_admin)
            .bind(to_us(at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(updated)
        })
    }

    /// Marks someone as having left. Refused while they own accounts or have active
    /// reports; their support assignments end now, each recorded on the account's
    /// timeline, all in one transaction.
    pub async fn deactivate_staff(
        &self,
        id: StaffId,
        by: Option<StaffId>,
        at: DateTime<Utc>,
    ) -> Result<Staff> {
        let at_us = to_us(at);
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let mut changes = crate::insights::Changes::default();
            let rows: Vec<StaffRow> = sqlx::query_as(SELECT_STAFF).fetch_all(&mut *tx).await?;
            let (chart, staff) = org_chart_from(rows)?;
            let mut person = staff
                .into_iter()
                .find(|person| person.id == id)
                .ok_or(DomainError::UnknownStaff(id))?;
            if !person.active {
                return Ok(person);
            }
            let owned = owned_count(&mut *tx, id).await?;
            chart.check_deactivate(id, owned)?;
            let supported: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT id, account_id FROM assignments
                 WHERE staff_id = $1 AND role = 'support' AND valid_to_us IS NULL ORDER BY id",
            )
            .bind(id.0)
            .fetch_all(&mut *tx)
            .await?;
            for (assignment_id, account_id) in supported {
                sqlx::query("UPDATE assignments SET valid_to_us = $2 WHERE id = $1")
                    .bind(assignment_id)
                    .bind(at_us)
                    .execute(&mut *tx)
                    .await?;
                let event = assignment_event(
                    AccountId(account_id),
                    assignment_id,
                    "ended",
                    format!("{} stopped supporting (deactivated)", person.name),
                    Role::Support,
                    None,
                    Some(&person),
                    by,
                    at,
                )?;
                upsert_event(&mut *tx, dialect, &event, at_us, &mut changes).await?;
            }
            sqlx::query("UPDATE staff SET active = FALSE, updated_at_us = $2 WHERE id = $1")
                .bind(id.0)
                .bind(at_us)
                .execute(&mut *tx)
                .await?;
            crate::insights::keep(&mut *tx, dialect, changes).await?;
            tx.commit().await?;
            person.active = false;
            Ok(person)
        })
    }

    /// Brings a deactivated person back (they keep their level and manager if those
    /// are still valid).
    pub async fn reactivate_staff(&self, id: StaffId, at: DateTime<Utc>) -> Result<Staff> {
        with_backend!(self, |pool, dialect| {
            let mut tx = pool.begin_with(dialect.begin_write()).await?;
            let rows: Vec<StaffRow> = sqlx::query_as(SELECT_STAFF).fetch_all(&mut *tx).await?;
            let (chart, staff) = org_chart_from(rows)?;
            let mut person = staff
                .into_iter()
                .find(|person| person.id == id)
                .ok_or(DomainError::UnknownStaff(id))?;
            chart.check_manager(Some(id), person.level, person.reports_to)?;
            sqlx::query("UPDATE staff SET active = TRUE, updated_at_us = $2 WHERE id = $1")
                .bind(id.0)
                .bind(to_us(at))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            person.active = true;
            Ok(person)
        })
    }
}
