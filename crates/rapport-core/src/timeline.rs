//! The timeline event model: everything that happens with a client — an email, an
//! invoice, a ticket, a note, a handoff — is one [`NewEvent`] on one account's timeline.
//!
//! Events are identified for deduplication by their [`DedupeKey`] (connector, source id):
//! delivering the same event twice stores it once, and a higher `source_version`
//! replaces what is stored while an equal or lower one changes nothing.

use crate::account::{Domain, EmailAddress, ExternalId};
use crate::{AccountId, DomainError, EventId, Result, StaffId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The connector id rapport itself writes under (notes, tasks, handoffs).
pub const INTERNAL_CONNECTOR: &str = "rapport";

/// Limits on what one event may carry, so one bad source cannot bloat the store.
pub mod limits {
    /// Longest title, in characters.
    pub const TITLE_CHARS_MAX: usize = 500;
    /// Longest summary, in characters.
    pub const SUMMARY_CHARS_MAX: usize = 10_000;
    /// Longest source id or URL, in bytes.
    pub const SOURCE_ID_BYTES_MAX: usize = 512;
    /// Longest URL, in bytes.
    pub const URL_BYTES_MAX: usize = 2_048;
    /// Most attributes on one event.
    pub const ATTRIBUTES_MAX: usize = 64;
    /// Most account hints of each kind on one event.
    pub const HINTS_MAX: usize = 64;
}

/// A dotted event kind such as `billing.invoice.paid`: lower-case segments of letters,
/// digits and `_`, separated by dots.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventKind(String);

impl EventKind {
    /// An email arrived from the client.
    pub const EMAIL_RECEIVED: &str = "email.received";
    /// We emailed the client.
    pub const EMAIL_SENT: &str = "email.sent";
    /// An invoice was paid.
    pub const INVOICE_PAID: &str = "billing.invoice.paid";
    /// An invoice payment failed.
    pub const INVOICE_PAYMENT_FAILED: &str = "billing.invoice.payment_failed";
    /// A subscription changed (plan, quantity, status).
    pub const SUBSCRIPTION_UPDATED: &str = "billing.subscription.updated";
    /// A support ticket was opened.
    pub const TICKET_CREATED: &str = "support.ticket.created";
    /// A support ticket was solved.
    pub const TICKET_SOLVED: &str = "support.ticket.solved";
    /// A comment was added to a support ticket.
    pub const COMMENT_ADDED: &str = "support.comment.added";
    /// A note written by staff.
    pub const NOTE: &str = "note";
    /// A task was created.
    pub const TASK_CREATED: &str = "task.created";
    /// A task was completed.
    pub const TASK_DONE: &str = "task.done";
    /// The account's owner or supporters changed.
    pub const ASSIGNMENT_CHANGED: &str = "assignment.changed";

    /// Parses a kind. Connectors may emit kinds beyond the well-known constants (e.g.
    /// `support.ticket.reopened`) as long as they are well formed.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| DomainError::InvalidEventKind {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.is_empty() || input.len() > 128 {
            return Err(invalid("it must be 1 to 128 characters"));
        }
        let well_formed = input.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        if !well_formed {
            return Err(invalid(
                "use dot-separated lower-case segments of letters, digits and `_`, e.g. `billing.invoice.paid`",
            ));
        }
        Ok(EventKind(input.to_owned()))
    }

    /// The kind as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first segment, e.g. `billing` — the family the UI groups and colours by.
    pub fn family(&self) -> &str {
        self.0.split('.').next().unwrap_or(&self.0)
    }

    /// Whether this kind is `prefix` or lies under it (`billing` matches
    /// `billing.invoice.paid`, but not `billingx.y`).
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.0 == prefix
            || (self.0.starts_with(prefix) && self.0.as_bytes().get(prefix.len()) == Some(&b'.'))
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EventKind {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self> {
        EventKind::parse(&value)
    }
}

impl From<EventKind> for String {
    fn from(value: EventKind) -> Self {
        value.0
    }
}

/// Validates a connector id: 1–64 lower-case letters, digits, `-` or `_`.
pub fn validate_connector_id(input: &str) -> Result<()> {
    let ok = !input.is_empty()
        && input.len() <= 64
        && input
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidConnectorId(input.to_owned()))
    }
}

/// A money amount in a currency's minor unit (cents), never a float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Amount in minor units, e.g. 1999 for $19.99.
    pub minor_units: i64,
    /// ISO 4217 code, upper case.
    pub currency: String,
}

/// One typed attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeValue {
    /// Free text.
    Text(String),
    /// A whole number.
    Integer(i64),
    /// A measurement (never money).
    Float(f64),
    /// A flag.
    Bool(bool),
    /// An instant.
    Timestamp(DateTime<Utc>),
    /// An amount of money.
    Money(Money),
}

/// Typed attributes of an event, by name (`amount`, `plan`, `status_from`, ...).
pub type Attributes = BTreeMap<String, AttributeValue>;

/// What a source says about which account an event belongs to. Identity resolution
/// (in `rapport-sync`) turns these into an account and a [`MatchReason`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountHints {
    /// Ids in other systems, e.g. the Stripe customer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ids: Vec<ExternalId>,
    /// Participants' email addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<EmailAddress>,
    /// Domains the event relates to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<Domain>,
}

impl AccountHints {
    /// Whether there is nothing to match on.
    pub fn is_empty(&self) -> bool {
        self.external_ids.is_empty() && self.emails.is_empty() && self.domains.is_empty()
    }
}

/// Why an event sits on the account it sits on. Every matched event records one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum MatchReason {
    /// Written on the account directly (a note, a task, a handoff).
    Direct,
    /// The source's id for the client matched an account's external id.
    ExternalId {
        /// The external id that matched.
        external_id: ExternalId,
    },
    /// A participant's address is a contact of the account.
    ContactEmail {
        /// The address that matched.
        email: EmailAddress,
    },
    /// A participant's domain belongs to the account.
    Domain {
        /// The domain that matched.
        domain: Domain,
    },
    /// A person put it there from the unmatched inbox.
    Manual {
        /// Who did.
        by: StaffId,
    },
}

impl MatchReason {
    /// The stable name of the rule that matched, as stored.
    pub fn rule(&self) -> &'static str {
        match self {
            MatchReason::Direct => "direct",
            MatchReason::ExternalId { .. } => "external_id",
            MatchReason::ContactEmail { .. } => "contact_email",
            MatchReason::Domain { .. } => "domain",
            MatchReason::Manual { .. } => "manual",
        }
    }
}

impl fmt::Display for MatchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchReason::Direct => f.write_str("written on the account"),
            MatchReason::ExternalId { external_id } => write!(f, "external id {external_id}"),
            MatchReason::ContactEmail { email } => write!(f, "contact {email}"),
            MatchReason::Domain { domain } => write!(f, "domain {domain}"),
            MatchReason::Manual { by } => write!(f, "assigned by {by}"),
        }
    }
}

/// Who did the thing the event records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// A display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
    /// A member of our staff, when it was one of us.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staff: Option<StaffId>,
}

/// The deduplication identity of an event: the same key is the same event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DedupeKey {
    /// The connector that produced it.
    pub connector: String,
    /// The source's own id for it.
    pub source_id: String,
}

/// An event as a source (or rapport itself) produces it, before it is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Deduplication identity.
    pub key: DedupeKey,
    /// Monotonic version at the source; a higher one replaces a stored lower one.
    pub source_version: i64,
    /// What happened.
    pub kind: EventKind,
    /// When it happened at the source.
    pub occurred_at: DateTime<Utc>,
    /// One line for the timeline.
    pub title: String,
    /// A plain-text excerpt.
    pub summary: String,
    /// Link back to the source system (http or https only).
    pub url: Option<String>,
    /// Who did it.
    pub actor: Option<Actor>,
    /// Typed details.
    pub attributes: Attributes,
    /// What the source says about the client, for identity resolution.
    pub hints: AccountHints,
    /// The account it belongs to, once matched, and why.
    pub placement: Option<Placement>,
}

/// An account and the reason an event was placed on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The account.
    pub account: AccountId,
    /// Why.
    pub reason: MatchReason,
}

impl NewEvent {
    /// Starts an event with the fields every event has; the rest default to empty.
    pub fn new(
        connector: impl Into<String>,
        source_id: impl Into<String>,
        kind: EventKind,
        occurred_at: DateTime<Utc>,
        title: impl Into<String>,
    ) -> Self {
        NewEvent {
            key: DedupeKey {
                connector: connector.into(),
                source_id: source_id.into(),
            },
            source_version: 0,
            kind,
            occurred_at,
            title: title.into(),
            summary: String::new(),
            url: None,
            actor: None,
            attributes: Attributes::new(),
            hints: AccountHints::default(),
            placement: None,
        }
    }

    /// Checks every field against the model's rules and limits.
    pub fn validate(&self) -> Result<()> {
        use limits::*;
        let field =
            |field: &'static str, reason: String| DomainError::InvalidField { field, reason };
        validate_connector_id(&self.key.connector)?;
        let source_id = &self.key.source_id;
        if source_id.is_empty() || source_id.len() > SOURCE_ID_BYTES_MAX {
            return Err(field(
                "event source id",
                format!("must be 1 to {SOURCE_ID_BYTES_MAX} bytes"),
            ));
        }
        if self.source_version < 0 {
            return Err(field("event source version", "must not be negative".into()));
        }
        let title = self.title.trim();
        if title.is_empty() {
            return Err(field("event title", "must not be empty".into()));
        }
        if title.chars().count() > TITLE_CHARS_MAX {
            return Err(field(
                "event title",
                format!("must be at most {TITLE_CHARS_MAX} characters"),
            ));
        }
        if self.summary.chars().count() > SUMMARY_CHARS_MAX {
            return Err(field(
                "event summary",
                format!("must be at most {SUMMARY_CHARS_MAX} characters"),
            ));
        }
        if let Some(url) = &self.url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.len() > URL_BYTES_MAX || url.chars().any(char::is_whitespace) {
                return Err(field(
                    "event url",
                    format!(
                        "must be an http(s) link of at most {URL_BYTES_MAX} bytes without spaces, got `{url}`"
                    ),
                ));
            }
        }
        if self.attributes.len() > ATTRIBUTES_MAX {
            return Err(field(
                "event attributes",
                format!("must number at most {ATTRIBUTES_MAX}"),
            ));
        }
        for name in self.attributes.keys() {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !ok {
                return Err(field(
                    "event attribute name",
                    format!("`{name}` must be 1-64 lower-case letters, digits or `_`"),
                ));
            }
        }
        let hints = &self.hints;
        if hints.external_ids.len() > HINTS_MAX
            || hints.emails.len() > HINTS_MAX
            || hints.domains.len() > HINTS_MAX
        {
            return Err(field(
                "event account hints",
                format!("must number at most {HINTS_MAX} of each kind"),
            ));
        }
        Ok(())
    }
}

/// A stored event, as the timeline shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    /// Row id; with `occurred_at`, the timeline's sort key.
    pub id: EventId,
    /// When rapport stored (or last updated) it.
    pub ingested_at: DateTime<Utc>,
    /// Everything the source said.
    #[serde(flatten)]
    pub event: NewEvent,
    /// For an unplaced event whose match was ambiguous: the accounts that fit equally
    /// well, for a person to choose from. Empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_candidates: Vec<AccountId>,
}

/// Where a timeline page starts: strictly after this (occurred_at, id) in newest-first
/// order. Keyset pagination: a page 50,000 events deep costs what the first page costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineCursor {
    /// The last shown event's time.
    pub occurred_at: DateTime<Utc>,
    /// The last shown event's id (ties on time are broken by id, descending).
    pub id: EventId,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn kinds_parse_and_match_prefixes_by_segment() {
        let kind = EventKind::parse(EventKind::INVOICE_PAYMENT_FAILED).unwrap();
        assert_eq!(kind.family(), "billing");
        assert!(kind.has_prefix("billing"));
        assert!(kind.has_prefix("billing.invoice"));
        assert!(kind.has_prefix("billing.invoice.payment_failed"));
        assert!(!kind.has_prefix("billing.inv"));
        assert!(!kind.has_prefix("bill"));
        for bad in ["", "Billing.paid", "billing..paid", ".x", "x.", "a b"] {
            assert!(EventKind::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn events_validate_their_fields() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let event = || {
            NewEvent::new(
                "stripe",
                "evt_1",
                EventKind::parse(EventKind::INVOICE_PAID).unwrap(),
                at,
                "Invoice paid",
            )
        };
        event().validate().unwrap();
        let mut bad = event();
        bad.url = Some("javascript:alert(1)".into());
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("http(s) link")
        );
        let mut bad = event();
        bad.title = "  ".into();
        assert_eq!(
            bad.validate().unwrap_err().to_string(),
            "event title must not be empty"
        );
        let mut bad = event();
        bad.key.connector = "Stripe!".into();
        assert!(bad.validate().is_err());
        let mut bad = event();
        bad.attributes
            .insert("Amount".into(), AttributeValue::Integer(1));
        assert!(bad.validate().is_err());
    }

    #[test]
    fn attributes_round_trip_as_tagged_json() {
        let mut attributes = Attributes::new();
        attributes.insert(
            "amount".into(),
            AttributeValue::Money(Money {
                minor_units: 1999,
                currency: "USD".into(),
            }),
        );
        attributes.insert("plan".into(), AttributeValue::Text("pro".into()));
        let json = serde_json::to_string(&attributes).unwrap();
        assert_eq!(
            json,
            r#"{"amount":{"money":{"minor_units":1999,"currency":"USD"}},"plan":{"text":"pro"}}"#
        );
        let back: Attributes = serde_json::from_str(&json).unwrap();
        assert_eq!(back, attributes);
    }

    #[test]
    fn match_reasons_explain_themselves() {
        let reason = MatchReason::ExternalId {
            external_id: "stripe:cus_1".parse().unwrap(),
        };
        assert_eq!(reason.rule(), "external_id");
        assert_eq!(reason.to_string(), "external id stripe:cus_1");
        let json = serde_json::to_string(&reason).unwrap();
        assert_eq!(
            json,
            r#"{"rule":"external_id","external_id":{"system":"stripe","id":"cus_1"}}"#
        );
    }
}
