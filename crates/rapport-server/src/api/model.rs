//! The API's JSON shapes. They mirror rapport-core's types but are owned here, so the
//! wire format (and the OpenAPI document generated from these definitions) changes only
//! when this file does — not whenever a domain type gains a field.

use chrono::{DateTime, NaiveDate, Utc};
use rapport_core::account::{Account, Contact, Lifecycle};
use rapport_core::assignment::{Assignment, Role};
use rapport_core::sharing::Sharing;
use rapport_core::staff::{Level, Staff};
use rapport_core::timeline::{MatchReason, TimelineEvent};
use rapport_core::token::ApiToken;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Seniority, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LevelName {
    /// Supports accounts.
    Associate,
    /// Owns accounts; associates report to them.
    Manager,
    /// Managers report to them.
    Director,
    /// The VP of account management.
    Vp,
}

impl From<Level> for LevelName {
    fn from(level: Level) -> Self {
        match level {
            Level::Associate => LevelName::Associate,
            Level::Manager => LevelName::Manager,
            Level::Director => LevelName::Director,
            Level::Vp => LevelName::Vp,
        }
    }
}

impl From<LevelName> for Level {
    fn from(level: LevelName) -> Self {
        match level {
            LevelName::Associate => Level::Associate,
            LevelName::Manager => Level::Manager,
            LevelName::Director => Level::Director,
            LevelName::Vp => Level::Vp,
        }
    }
}

/// How widely what a person's own connection (their mailbox, their calendar) captured
/// is shared: `shared` with everyone who sees the account; `metadata`, whole to its
/// owner and their management chain, only who, the subject and when to others;
/// `private`, only to its owner and their management chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SharingName {
    /// Everyone who sees the account sees it whole.
    Shared,
    /// Others see who took part, the subject and when, not the content.
    Metadata,
    /// Only its owner and their management chain see it.
    Private,
}

impl From<Sharing> for SharingName {
    fn from(sharing: Sharing) -> Self {
        match sharing {
            Sharing::Shared => SharingName::Shared,
            Sharing::Metadata => SharingName::Metadata,
            Sharing::Private => SharingName::Private,
        }
    }
}

impl From<SharingName> for Sharing {
    fn from(sharing: SharingName) -> Self {
        match sharing {
            SharingName::Shared => Sharing::Shared,
            SharingName::Metadata => Sharing::Metadata,
            SharingName::Private => Sharing::Private,
        }
    }
}

/// Whose connection captured an event, and how widely it is shared.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CaptureView {
    /// The staff member whose connection (mailbox, calendar) it came through.
    pub owner: i64,
    /// Its sharing level.
    pub sharing: SharingName,
}

/// Where a client is in its life with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LifecycleName {
    /// Not yet a customer.
    Prospect,
    /// Signed, being set up.
    Onboarding,
    /// A live customer.
    Active,
    /// No longer a customer.
    Churned,
}

impl From<Lifecycle> for LifecycleName {
    fn from(lifecycle: Lifecycle) -> Self {
        match lifecycle {
            Lifecycle::Prospect => LifecycleName::Prospect,
            Lifecycle::Onboarding => LifecycleName::Onboarding,
            Lifecycle::Active => LifecycleName::Active,
            Lifecycle::Churned => LifecycleName::Churned,
        }
    }
}

impl From<LifecycleName> for Lifecycle {
    fn from(lifecycle: LifecycleName) -> Self {
        match lifecycle {
            LifecycleName::Prospect => Lifecycle::Prospect,
            LifecycleName::Onboarding => Lifecycle::Onboarding,
            LifecycleName::Active => Lifecycle::Active,
            LifecycleName::Churned => Lifecycle::Churned,
        }
    }
}

/// A member of staff.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StaffView {
    /// Id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Work email.
    pub email: String,
    /// Seniority.
    pub level: LevelName,
    /// Their manager's id.
    pub reports_to: Option<i64>,
    /// False once they have left.
    pub active: bool,
    /// May administer rapport.
    pub is_admin: bool,
}

impl From<Staff> for StaffView {
    fn from(staff: Staff) -> Self {
        StaffView {
            id: staff.id.0,
            name: staff.name,
            email: staff.email.to_string(),
            level: staff.level.into(),
            reports_to: staff.reports_to.map(|id| id.0),
            active: staff.active,
            is_admin: staff.is_admin,
        }
    }
}

/// One person in the org chart, with everyone reporting to them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrgChartNode {
    /// The person.
    pub staff: StaffView,
    /// Their direct reports, each with theirs.
    #[schema(no_recursion)]
    pub reports: Vec<OrgChartNode>,
}

/// A person at the client.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContactView {
    /// Their email.
    pub email: String,
    /// Their name.
    pub name: Option<String>,
    /// Their role at the client.
    pub title: Option<String>,
}

impl From<Contact> for ContactView {
    fn from(contact: Contact) -> Self {
        ContactView {
            email: contact.email.to_string(),
            name: contact.name,
            title: contact.title,
        }
    }
}

/// A client account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// Id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// The parent account (client group), if a subsidiary.
    pub parent: Option<i64>,
    /// Lifecycle status.
    pub lifecycle: LifecycleName,
    /// When the contract renews.
    pub renewal_date: Option<NaiveDate>,
    /// Its domains.
    pub domains: Vec<String>,
    /// Its ids in other systems, as `system:id`.
    pub external_ids: Vec<String>,
    /// People at the client.
    pub contacts: Vec<ContactView>,
    /// The current owner's staff id.
    pub owner: Option<i64>,
    /// Current supporters' staff ids.
    pub supporters: Vec<i64>,
}

impl From<Account> for AccountView {
    fn from(account: Account) -> Self {
        AccountView {
            id: account.id.0,
            name: account.name,
            parent: account.parent.map(|id| id.0),
            lifecycle: account.lifecycle.into(),
            renewal_date: account.renewal_date,
            domains: account.domains.iter().map(ToString::to_string).collect(),
            external_ids: account
                .external_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
            contacts: account
                .contacts
                .into_iter()
                .map(ContactView::from)
                .collect(),
            owner: account.owner.map(|id| id.0),
            supporters: account.supporters.iter().map(|id| id.0).collect(),
        }
    }
}

/// A page of accounts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountPage {
    /// The accounts, by name.
    pub accounts: Vec<AccountView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next: Option<String>,
}

/// An account and its visible subsidiaries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AccountTreeNode {
    /// Id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Its subsidiaries.
    #[schema(no_recursion)]
    pub children: Vec<AccountTreeNode>,
}

/// Owner or support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    /// The one accountable person.
    Owner,
    /// Helps the owner.
    Support,
}

impl From<Role> for RoleName {
    fn from(role: Role) -> Self {
        match role {
            Role::Owner => RoleName::Owner,
            Role::Support => RoleName::Support,
        }
    }
}

/// One row of an account's assignment history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AssignmentView {
    /// Id.
    pub id: i64,
    /// The account.
    pub account: i64,
    /// The staff member.
    pub staff: i64,
    /// Their role.
    pub role: RoleName,
    /// Start (inclusive).
    pub valid_from: DateTime<Utc>,
    /// End (exclusive); absent while current.
    pub valid_to: Option<DateTime<Utc>>,
}

impl From<Assignment> for AssignmentView {
    fn from(assignment: Assignment) -> Self {
        AssignmentView {
            id: assignment.id.0,
            account: assignment.account.0,
            staff: assignment.staff.0,
            role: assignment.role.into(),
            valid_from: assignment.valid_from,
            valid_to: assignment.valid_to,
        }
    }
}

/// Who did what an event records.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ActorView {
    /// Display name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
    /// Our staff member, when it was one of us.
    pub staff: Option<i64>,
}

/// Why an event is on its account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MatchView {
    /// The rule: `direct`, `external_id`, `contact_email`, `domain` or `manual`.
    pub rule: String,
    /// The rule in words, e.g. `domain acme.example`.
    pub detail: String,
}

/// One timeline event.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    /// Id.
    pub id: i64,
    /// The account it is on; absent while it waits in the unmatched inbox.
    pub account: Option<i64>,
    /// The connector that produced it (`rapport` for notes, tasks and handoffs).
    pub source: String,
    /// The source's own id for it.
    pub source_id: String,
    /// Dotted kind, e.g. `billing.invoice.paid`.
    pub kind: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When rapport stored it (or last updated it).
    pub ingested_at: DateTime<Utc>,
    /// One line.
    pub title: String,
    /// Plain-text excerpt.
    pub summary: String,
    /// Link back to the source system.
    pub url: Option<String>,
    /// Who did it.
    pub actor: Option<ActorView>,
    /// Typed details by name; each value is `{"text": ..}`, `{"integer": ..}`,
    /// `{"float": ..}`, `{"bool": ..}`, `{"timestamp": ..}` or `{"money":
    /// {"minor_units": .., "currency": ..}}`.
    #[schema(value_type = Object)]
    pub attributes: serde_json::Value,
    /// Why it is on its account.
    #[serde(rename = "match")]
    pub match_reason: Option<MatchView>,
    /// For an ambiguous unmatched event: the accounts (among those the reader may see)
    /// it could belong to.
    pub candidates: Vec<i64>,
    /// Present when part of the stored event could not be read back (a value written
    /// by an older build, or changed by hand): what was not, and why. The fields that
    /// could be read are shown; the rest are empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// For an event a person's own connection captured: whose it is and how widely it
    /// is shared. Absent for every other event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureView>,
    /// True when the reader may see only who took part, the subject and when: the
    /// summary, link and content attributes are left out.
    #[serde(default)]
    pub withheld: bool,
}

impl From<TimelineEvent> for EventView {
    fn from(stored: TimelineEvent) -> Self {
        let event = stored.event;
        EventView {
            id: stored.id.0,
            account: event.placement.as_ref().map(|p| p.account.0),
            source: event.key.connector,
            source_id: event.key.source_id,
            kind: event.kind.to_string(),
            occurred_at: event.occurred_at,
            ingested_at: stored.ingested_at,
            title: event.title,
            summary: event.summary,
            url: event.url,
            actor: event.actor.map(|actor| ActorView {
                name: actor.name,
                email: actor.email.map(|email| email.to_string()),
                staff: actor.staff.map(|id| id.0),
            }),
            attributes: serde_json::to_value(&event.attributes).unwrap_or(serde_json::Value::Null),
            match_reason: event.placement.map(|placement| MatchView {
                rule: placement.reason.rule().to_owned(),
                detail: match placement.reason {
                    MatchReason::Manual { by } => format!("placed by staff {}", by.0),
                    reason => reason.to_string(),
                },
            }),
            candidates: stored.match_candidates.iter().map(|id| id.0).collect(),
            unreadable: stored.unreadable,
            capture: stored.capture.map(|capture| CaptureView {
                owner: capture.owner.0,
                sharing: capture.sharing.into(),
            }),
            withheld: stored.withheld,
        }
    }
}

/// A page of events, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    /// The events.
    pub events: Vec<EventView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next: Option<String>,
}

/// An API token (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// Id.
    pub id: i64,
    /// Whose it is.
    pub staff: i64,
    /// What it is for.
    pub name: String,
    /// Its first characters, to tell tokens apart.
    pub display_prefix: String,
    /// When made.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When last used.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiToken> for TokenView {
    fn from(token: ApiToken) -> Self {
        TokenView {
            id: token.id,
            staff: token.staff.0,
            name: token.name,
            display_prefix: token.display_prefix,
            created_at: token.created_at,
            expires_at: token.expires_at,
            last_used_at: token.last_used_at,
            revoked_at: token.revoked_at,
        }
    }
}

/// A token just made: the secret is shown this once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IssuedTokenView {
    /// The record.
    pub token: TokenView,
    /// Send as `Authorization: Bearer <secret>`. Not retrievable later.
    pub secret: String,
}

/// A connector's sync status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConnectorView {
    /// Its configured id.
    pub id: String,
    /// `idle`, `running`, `backing_off`, `stopped` or `disabled`.
    pub state: String,
    /// Events it has inserted or updated, ever.
    pub events_ingested: i64,
    /// The newest event time it has delivered.
    pub newest_event_at: Option<DateTime<Utc>>,
    /// When a run last started.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When a run last succeeded.
    pub last_success_at: Option<DateTime<Utc>>,
    /// Seconds since the last success (or the first attempt).
    pub lag_seconds: Option<i64>,
    /// The most recent failure's kind.
    pub last_error_kind: Option<String>,
    /// The most recent failure, in words.
    pub last_error: Option<String>,
    /// When it failed.
    pub last_error_at: Option<DateTime<Utc>>,
    /// The source id of the event the most recent failure was about, when it was
    /// about one.
    pub last_error_source_id: Option<String>,
    /// When the connector's own check (settings and credentials) last ran.
    pub last_check_at: Option<DateTime<Utc>>,
    /// Whether it passed.
    pub last_check_ok: Option<bool>,
    /// Why it failed, when it did.
    pub last_check_message: Option<String>,
    /// The node syncing it now, while it holds the lease.
    pub lease_holder: Option<String>,
    /// Until when that node holds it, unless renewed.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Failed runs since the last success.
    pub consecutive_failures: i64,
    /// When it runs next.
    pub next_run_at: Option<DateTime<Utc>>,
    /// When someone asked for a run that has not started yet.
    pub sync_requested_at: Option<DateTime<Utc>>,
    /// Events of this connector waiting in the unmatched inbox.
    pub unmatched: i64,
}

/// One reason a health score lost points.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReasonView {
    /// Stable code: `open_tickets`, `failed_payments`, `no_contact`, `downgrades`,
    /// `cancellations` or `overdue_tasks`.
    pub code: String,
    /// Points taken off.
    pub points: u8,
    /// What it is, in words.
    pub detail: String,
}

/// An account's health.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HealthView {
    /// 0 (worst) to 100.
    pub score: u8,
    /// `healthy` (75+), `watch` (50–74) or `at_risk` (below 50).
    pub band: String,
    /// What took points off, most first.
    pub reasons: Vec<ReasonView>,
    /// When we were last in touch with the client: the newest mail either way, or the
    /// end of the latest meeting held with them.
    pub last_contact: Option<DateTime<Utc>>,
    /// When the next meeting with the client starts, if one is scheduled.
    pub next_meeting: Option<DateTime<Utc>>,
    /// When it was computed.
    pub computed_at: DateTime<Utc>,
}

/// MRR in one currency.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MrrView {
    /// ISO 4217 code.
    pub currency: String,
    /// Minor units (cents) per month.
    pub minor_units: i64,
}

/// MRR after a change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevenuePointView {
    /// When it changed.
    pub at: DateTime<Utc>,
    /// Totals per currency from then on.
    pub mrr: Vec<MrrView>,
}

/// An account's revenue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RevenueView {
    /// Current MRR per currency (never converted or mixed).
    pub mrr: Vec<MrrView>,
    /// Every change, oldest first.
    pub history: Vec<RevenuePointView>,
    /// Plans of the live subscriptions.
    pub plans: Vec<String>,
    /// Live subscriptions.
    pub subscriptions: usize,
    /// The account's renewal date, else the soonest subscription renewal.
    pub renewal_date: Option<NaiveDate>,
}
