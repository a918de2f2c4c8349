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

/// Limits on what one event may carry, so one bad source cannot bloat the store or
/// break a page. Every limit is checked by [`NewEvent::validate`] on every write, from
/// any connector and from rapport itself; the connector guide (`docs/connectors.md`)
/// and the contract's comments list them for plugin authors.
pub mod limits {
    /// Longest title, in characters.
    pub const TITLE_CHARS_MAX: usize = 500;
    /// Longest summary, in characters.
    pub const SUMMARY_CHARS_MAX: usize = 10_000;
    /// Longest source id, in bytes.
    pub const SOURCE_ID_BYTES_MAX: usize = 512;
    /// Longest URL, in bytes.
    pub const URL_BYTES_MAX: usize = 2_048;
    /// Most attributes on one event.
    pub const ATTRIBUTES_MAX: usize = 64;
    /// Longest attribute name, in bytes.
    pub const ATTRIBUTE_NAME_BYTES_MAX: usize = 64;
    /// Longest text attribute value, in bytes.
    pub const ATTRIBUTE_TEXT_BYTES_MAX: usize = 16 * 1024;
    /// Longest actor name, in characters.
    pub const ACTOR_NAME_CHARS_MAX: usize = 200;
    /// Most account hints of each kind on one event.
    pub const HINTS_MAX: usize = 64;
    /// Most bytes of text one event carries in all (title, summary, ids, actor,
    /// hints, attribute names and values): what one timeline row can cost to store
    /// and to send.
    pub const EVENT_BYTES_MAX: usize = 64 * 1024;
    /// Largest amount of money, in minor units, either side of zero: 10^15 cents is
    /// ten trillion dollars, beyond any one invoice or subscription. Amounts past it
    /// are a bug at the source, and summing a few of them would overflow.
    pub const MONEY_MINOR_UNITS_MAX: i64 = 1_000_000_000_000_000;
    /// Earliest instant an event or a timestamp attribute may name (1900-01-01 UTC),
    /// in microseconds since the Unix epoch.
    pub const INSTANT_US_MIN: i64 = -2_208_988_800_000_000;
    /// Instant an event or a timestamp attribute must be before (2200-01-01 UTC), in
    /// microseconds since the Unix epoch.
    pub const INSTANT_US_MAX: i64 = 7_258_118_400_000_000;
}

/// Families of kinds only rapport itself writes (under [`INTERNAL_CONNECTOR`]): `note`,
/// `task.*`, `assignment.*`, and `rapport.*` for what the store itself reports.
pub const RESERVED_FAMILIES: &[&str] = &["note", "task", "assignment", "rapport"];

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
    /// A subscription began.
    pub const SUBSCRIPTION_CREATED: &str = "billing.subscription.created";
    /// A subscription ended (cancelled).
    pub const SUBSCRIPTION_DELETED: &str = "billing.subscription.deleted";
    /// A support ticket was opened.
    pub const TICKET_CREATED: &str = "support.ticket.created";
    /// A support ticket was solved.
    pub const TICKET_SOLVED: &str = "support.ticket.solved";
    /// A comment was added to a support ticket.
    pub const COMMENT_ADDED: &str = "support.comment.added";
    /// A meeting with the client was put in a calendar. It sits on the timeline at its
    /// start; a later version of the same meeting replaces it.
    pub const MEETING_SCHEDULED: &str = "meeting.scheduled";
    /// A meeting's time, place or people changed since it was first scheduled.
    pub const MEETING_UPDATED: &str = "meeting.updated";
    /// A meeting was called off.
    pub const MEETING_CANCELED: &str = "meeting.canceled";
    /// A note written by staff.
    pub const NOTE: &str = "note";
    /// A task was created.
    pub const TASK_CREATED: &str = "task.created";
    /// A task was completed.
    pub const TASK_DONE: &str = "task.done";
    /// The account's owner or supporters changed.
    pub const ASSIGNMENT_CHANGED: &str = "assignment.changed";
    /// What a stored event shows as its kind when the stored kind cannot be read.
    pub const UNREADABLE: &str = "rapport.unreadable";

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
        match self.0.bytes().position(|b| b == b'.') {
            Some(dot) => &self.0[..dot],
            None => &self.0,
        }
    }

    /// Whether this kind is `prefix` or lies under it (`billing` matches
    /// `billing.invoice.paid`, but not `billingx.y`).
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.0 == prefix
            || (self.0.starts_with(prefix) && self.0.as_bytes().get(prefix.len()) == Some(&b'.'))
    }

    /// Whether only rapport itself may write this kind: notes, tasks and changes of
    /// who looks after an account ([`RESERVED_FAMILIES`]). A connector can neither
    /// declare nor emit them, so nothing from outside poses as a colleague's note or
    /// an ownership change.
    pub fn is_reserved(&self) -> bool {
        RESERVED_FAMILIES
            .iter()
            .any(|family| self.has_prefix(family))
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

/// What a connector's manifest says it emits: one kind (`billing.invoice.paid`) or a
/// family (`support.*`: every kind under `support.`). Reserved families cannot be
/// declared, and a bare `*` is not a declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindPattern {
    /// Exactly this kind.
    Exact(EventKind),
    /// This kind's family and everything under it: `support.*` covers
    /// `support.ticket.created` (and not `support` itself).
    Family(EventKind),
}

impl KindPattern {
    /// Parses a declaration, refusing reserved kinds with a sentence saying why.
    pub fn parse(input: &str) -> Result<KindPattern> {
        let (kind, family) = match input.strip_suffix(".*") {
            Some(prefix) => (prefix, true),
            None => (input, false),
        };
        let kind = EventKind::parse(kind)?;
        if kind.is_reserved() {
            return Err(DomainError::InvalidEventKind {
                input: input.to_owned(),
                reason: format!(
                    "`{}` kinds are written only by rapport itself ({}); give the connector's kinds a family of their own, e.g. `crm.note.added`",
                    kind.family(),
                    RESERVED_FAMILIES.join(", ")
                ),
            });
        }
        Ok(if family {
            KindPattern::Family(kind)
        } else {
            KindPattern::Exact(kind)
        })
    }

    /// Whether `kind` is what this declaration allows.
    pub fn covers(&self, kind: &EventKind) -> bool {
        match self {
            KindPattern::Exact(exact) => exact == kind,
            KindPattern::Family(family) => {
                kind.has_prefix(family.as_str()) && kind.as_str() != family.as_str()
            }
        }
    }
}

impl fmt::Display for KindPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KindPattern::Exact(kind) => write!(f, "{kind}"),
            KindPattern::Family(kind) => write!(f, "{kind}.*"),
        }
    }
}

/// `text` with every control character except tab, line feed and carriage return
/// replaced by U+FFFD. Applied to the display text connectors send (titles, summaries,
/// names, attribute text), so one malformed message shows a visible mark instead of
/// failing its page; [`NewEvent::validate`] refuses control characters anywhere else.
pub fn clean_text(text: String) -> String {
    // The controls are all ASCII, so a byte scan finds them (no UTF-8 decoding): the
    // common case, clean text, costs one pass over its bytes.
    if !text.bytes().any(is_forbidden_control_byte) {
        return text;
    }
    text.chars()
        .map(|c| {
            if is_forbidden_control(c) {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Control characters no stored text may hold: C0 controls other than tab, line feed
/// and carriage return, and DEL. NUL is the one that matters most: PostgreSQL refuses
/// it in text and JSON, and in HTML it is a parse error.
fn is_forbidden_control(c: char) -> bool {
    c.is_ascii_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// [`is_forbidden_control`] on one byte of UTF-8 (a continuation byte never is one).
fn is_forbidden_control_byte(b: u8) -> bool {
    b.is_ascii_control() && !matches!(b, b'\t' | b'\n' | b'\r')
}

/// Validates a connector id: 1–64 lower-case letters, digits, `-` or `_` — a configured
/// connector — optionally followed by `:` and a staff id, the connector of one person's
/// connection (`mailbox:42`), which syncs, is stored and is filtered like any other.
pub fn validate_connector_id(input: &str) -> Result<()> {
    let configured = |name: &str| {
        !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    let ok = match input.split_once(':') {
        None => configured(input),
        Some((name, owner)) => {
            configured(name)
                && !owner.is_empty()
                && owner.len() <= 19
                && owner.bytes().all(|b| b.is_ascii_digit())
                && !owner.starts_with('0')
        }
    };
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

    /// Checks every field against the model's rules and [`limits`]: lengths and
    /// counts, no control characters (but tab and line breaks in display text),
    /// finite floats, plausible money and instants, well-formed names and links, the
    /// total size, and that only rapport itself writes reserved kinds.
    pub fn validate(&self) -> Result<()> {
        use limits::*;
        validate_connector_id(&self.key.connector)?;
        if self.key.connector != INTERNAL_CONNECTOR && self.kind.is_reserved() {
            return Err(invalid(
                "event kind",
                format!(
                    "`{}` is written only by rapport itself; a connector may not emit {} kinds",
                    self.kind,
                    self.kind.family()
                ),
            ));
        }
        let source_id = &self.key.source_id;
        if source_id.is_empty() || source_id.len() > SOURCE_ID_BYTES_MAX {
            return Err(invalid(
                "event source id",
                format!("must be 1 to {SOURCE_ID_BYTES_MAX} bytes"),
            ));
        }
        if let Some(at) = source_id.bytes().position(|b| b.is_ascii_control()) {
            return Err(invalid(
                "event source id",
                format!("must not contain control characters (one is at byte {at})"),
            ));
        }
        if self.source_version < 0 {
            return Err(invalid(
                "event source version",
                "must not be negative".into(),
            ));
        }
        check_instant("event occurred-at", self.occurred_at)?;
        let title = self.title.trim();
        if title.is_empty() {
            return Err(invalid("event title", "must not be empty".into()));
        }
        check_text("event title", title, TITLE_CHARS_MAX)?;
        check_text("event summary", &self.summary, SUMMARY_CHARS_MAX)?;
        if let Some(url) = &self.url {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok
                || url.len() > URL_BYTES_MAX
                || url.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    "event url",
                    format!(
                        "must be an http(s) link of at most {URL_BYTES_MAX} bytes without spaces or control characters, got `{}`",
                        url.chars().take(80).collect::<String>().escape_debug()
                    ),
                ));
            }
        }
        if let Some(name) = self.actor.as_ref().and_then(|actor| actor.name.as_deref()) {
            check_text("event actor name", name, ACTOR_NAME_CHARS_MAX)?;
        }
        if self.attributes.len() > ATTRIBUTES_MAX {
            return Err(invalid(
                "event attributes",
                format!("must number at most {ATTRIBUTES_MAX}"),
            ));
        }
        for (name, value) in &self.attributes {
            check_attribute(name, value)?;
        }
        let hints = &self.hints;
        if hints.external_ids.len() > HINTS_MAX
            || hints.emails.len() > HINTS_MAX
            || hints.domains.len() > HINTS_MAX
        {
            return Err(invalid(
                "event account hints",
                format!("must number at most {HINTS_MAX} of each kind"),
            ));
        }
        let bytes = self.text_bytes();
        if bytes > EVENT_BYTES_MAX {
            return Err(invalid(
                "event",
                format!(
                    "carries {bytes} bytes of text in all; at most {EVENT_BYTES_MAX} are allowed (shorten the summary or attributes)"
                ),
            ));
        }
        Ok(())
    }

    /// Bytes of text the event carries in all, as [`limits::EVENT_BYTES_MAX`] counts
    /// them (a number or instant counts 8).
    pub fn text_bytes(&self) -> usize {
        let actor = self.actor.as_ref().map_or(0, |actor| {
            actor.name.as_ref().map_or(0, String::len)
                + actor.email.as_ref().map_or(0, |email| email.as_str().len())
        });
        let hints = self
            .hints
            .external_ids
            .iter()
            .map(|id| id.system.len() + id.id.len())
            .sum::<usize>()
            + self
                .hints
                .emails
                .iter()
                .map(|email| email.as_str().len())
                .sum::<usize>()
            + self
                .hints
                .domains
                .iter()
                .map(|domain| domain.as_str().len())
                .sum::<usize>();
        let attributes = self
            .attributes
            .iter()
            .map(|(name, value)| {
                name.len()
                    + match value {
                        AttributeValue::Text(text) => text.len(),
                        AttributeValue::Money(money) => money.currency.len() + 8,
                        _ => 8,
                    }
            })
            .sum::<usize>();
        self.key.source_id.len()
            + self.kind.as_str().len()
            + self.title.len()
            + self.summary.len()
            + self.url.as_ref().map_or(0, String::len)
            + actor
            + hints
            + attributes
    }
}

fn invalid(field: &'static str, reason: String) -> DomainError {
    DomainError::InvalidField { field, reason }
}

/// Checks a display text's length in characters and that it holds no control
/// characters but tab and line breaks, in one pass.
fn check_text(field: &'static str, text: &str, chars_max: usize) -> Result<()> {
    // Over bytes, not chars: a character starts at every byte that is not a UTF-8
    // continuation byte, and the controls are all ASCII.
    let mut chars = 0;
    for b in text.bytes() {
        if is_forbidden_control_byte(b) {
            return Err(invalid(
                field,
                format!(
                    "must not contain control characters such as U+{:04X} (at character {chars})",
                    u32::from(b)
                ),
            ));
        }
        chars += usize::from(b & 0xC0 != 0x80);
    }
    if chars > chars_max {
        return Err(invalid(
            field,
            format!("must be at most {chars_max} characters (it has {chars})"),
        ));
    }
    Ok(())
}

fn check_instant(field: &'static str, at: DateTime<Utc>) -> Result<()> {
    let us = at.timestamp_micros();
    if !(limits::INSTANT_US_MIN..limits::INSTANT_US_MAX).contains(&us) {
        return Err(invalid(
            field,
            format!(
                "must lie between 1900-01-01 and 2200-01-01 (UTC), got {}",
                at.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

fn check_attribute(name: &str, value: &AttributeValue) -> Result<()> {
    use limits::*;
    let name_ok = !name.is_empty()
        && name.len() <= ATTRIBUTE_NAME_BYTES_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(invalid(
            "event attribute name",
            format!(
                "`{}` must be 1-{ATTRIBUTE_NAME_BYTES_MAX} lower-case letters, digits or `_`",
                name.chars().take(80).collect::<String>().escape_debug()
            ),
        ));
    }
    let attribute = |reason: String| invalid("event attribute", format!("`{name}` {reason}"));
    match value {
        AttributeValue::Text(text) => {
            if text.len() > ATTRIBUTE_TEXT_BYTES_MAX {
                return Err(attribute(format!(
                    "holds {} bytes of text; at most {ATTRIBUTE_TEXT_BYTES_MAX} are allowed",
                    text.len()
                )));
            }
            if let Some(b) = text.bytes().find(|b| is_forbidden_control_byte(*b)) {
                return Err(attribute(format!(
                    "must not contain control characters such as U+{:04X}",
                    u32::from(b)
                )));
            }
        }
        AttributeValue::Float(number) if !number.is_finite() => {
            return Err(attribute(format!(
                "is {number}; a float attribute must be a finite number"
            )));
        }
        AttributeValue::Money(money) => {
            if !(-MONEY_MINOR_UNITS_MAX..=MONEY_MINOR_UNITS_MAX).contains(&money.minor_units) {
                return Err(attribute(format!(
                    "is {} minor units of {}; amounts beyond ±{MONEY_MINOR_UNITS_MAX} are not plausible",
                    money.minor_units, money.currency
                )));
            }
            let code_ok =
                money.currency.len() == 3 && money.currency.bytes().all(|b| b.is_ascii_uppercase());
            if !code_ok {
                return Err(attribute(format!(
                    "has currency `{}`; use a three-letter ISO 4217 code such as `USD`",
                    money
                        .currency
                        .chars()
                        .take(16)
                        .collect::<String>()
                        .escape_debug()
                )));
            }
        }
        AttributeValue::Timestamp(at) => check_instant("event timestamp attribute", *at)?,
        AttributeValue::Float(_) | AttributeValue::Integer(_) | AttributeValue::Bool(_) => {}
    }
    Ok(())
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
    /// Why part of the stored row could not be read back (a value written by an older
    /// build, or changed by hand): the event is shown with what could be read, marked,
    /// instead of failing the page it is on. `None` for a sound row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// For an event a person's own connection captured: whose it is and how widely it
    /// is shared ([`crate::sharing`]). `None` for every other event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<crate::sharing::Capture>,
    /// Whether its content was withheld from this reader, who may see only who took
    /// part, the subject and when ([`crate::sharing::withhold_content`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withheld: bool,
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

    /// One check per limit and rule `validate` enforces: each bad event is refused
    /// with a message naming the field, and the good one passes.
    #[test]
    fn every_boundary_rule_refuses_with_its_field() {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let good = || {
            let mut event = NewEvent::new(
                "stripe",
                "evt_1",
                EventKind::parse("billing.invoice.paid").unwrap(),
                at,
                "Invoice paid",
            );
            event
                .attributes
                .insert("ratio".into(), AttributeValue::Float(0.5));
            event
        };
        good().validate().unwrap();
        type Breaks = Box<dyn Fn(&mut NewEvent)>;
        let cases: Vec<(&str, Breaks)> = vec![
            (
                "finite number",
                Box::new(|e| {
                    e.attributes
                        .insert("ratio".into(), AttributeValue::Float(f64::NAN));
                }),
            ),
            (
                "finite number",
                Box::new(|e| {
                    e.attributes
                        .insert("ratio".into(), AttributeValue::Float(f64::INFINITY));
                }),
            ),
            (
                "finite number",
                Box::new(|e| {
                    e.attributes
                        .insert("ratio".into(), AttributeValue::Float(f64::NEG_INFINITY));
                }),
            ),
            (
                "not plausible",
                Box::new(|e| {
                    e.attributes.insert(
                        "mrr".into(),
                        AttributeValue::Money(Money {
                            minor_units: i64::MAX,
                            currency: "USD".into(),
                        }),
                    );
                }),
            ),
            (
                "not plausible",
                Box::new(|e| {
                    e.attributes.insert(
                        "mrr".into(),
                        AttributeValue::Money(Money {
                            minor_units: limits::MONEY_MINOR_UNITS_MAX + 1,
                            currency: "USD".into(),
                        }),
                    );
                }),
            ),
            (
                "ISO 4217",
                Box::new(|e| {
                    e.attributes.insert(
                        "mrr".into(),
                        AttributeValue::Money(Money {
                            minor_units: 1,
                            currency: "DOLLARS".into(),
                        }),
                    );
                }),
            ),
            (
                "control characters",
                Box::new(|e| e.title = "Invoice\0paid".into()),
            ),
            (
                "control characters",
                Box::new(|e| e.summary = "a\u{1b}[31mred".into()),
            ),
            (
                "control characters",
                Box::new(|e| e.key.source_id = "evt\0-1".into()),
            ),
            (
                "control characters",
                Box::new(|e| {
                    e.attributes
                        .insert("plan".into(), AttributeValue::Text("pro\0".into()));
                }),
            ),
            (
                "at most 16384 are allowed",
                Box::new(|e| {
                    e.attributes.insert(
                        "plan".into(),
                        AttributeValue::Text("x".repeat(16 * 1024 + 1)),
                    );
                }),
            ),
            (
                "at most 65536 are allowed",
                Box::new(|e| {
                    for n in 0..8 {
                        e.attributes
                            .insert(format!("part_{n}"), AttributeValue::Text("x".repeat(9_000)));
                    }
                }),
            ),
            (
                "between 1900-01-01 and 2200-01-01",
                Box::new(|e| {
                    e.occurred_at = Utc.with_ymd_and_hms(2500, 1, 1, 0, 0, 0).unwrap();
                }),
            ),
            (
                "between 1900-01-01 and 2200-01-01",
                Box::new(|e| {
                    e.attributes.insert(
                        "renews_at".into(),
                        AttributeValue::Timestamp(
                            Utc.with_ymd_and_hms(1800, 1, 1, 0, 0, 0).unwrap(),
                        ),
                    );
                }),
            ),
            (
                "written only by rapport itself",
                Box::new(|e| {
                    e.kind = EventKind::parse("note").unwrap();
                }),
            ),
            (
                "written only by rapport itself",
                Box::new(|e| {
                    e.kind = EventKind::parse("task.created").unwrap();
                }),
            ),
            (
                "written only by rapport itself",
                Box::new(|e| {
                    e.kind = EventKind::parse("assignment.changed").unwrap();
                }),
            ),
            (
                "at most 200 characters",
                Box::new(|e| {
                    e.actor = Some(Actor {
                        name: Some("n".repeat(201)),
                        ..Actor::default()
                    });
                }),
            ),
        ];
        for (expected, break_it) in cases {
            let mut event = good();
            break_it(&mut event);
            let error = event.validate().unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "expected `{expected}` in: {error}"
            );
        }
        // Tabs and line breaks are display text, not control characters to refuse.
        let mut event = good();
        event.summary = "line one\n\tline two\r\n".into();
        event.validate().unwrap();
        // rapport itself writes the reserved kinds.
        let mut note = good();
        note.key.connector = INTERNAL_CONNECTOR.into();
        note.kind = EventKind::parse("note").unwrap();
        note.validate().unwrap();
    }

    #[test]
    fn display_text_is_cleaned_of_control_characters() {
        assert_eq!(clean_text("plain".into()), "plain");
        assert_eq!(
            clean_text("a\0b\u{7}c\u{7f}".into()),
            "a\u{FFFD}b\u{FFFD}c\u{FFFD}"
        );
        assert_eq!(clean_text("tab\tand\nlines\r".into()), "tab\tand\nlines\r");
    }

    #[test]
    fn declared_kinds_are_exact_or_families_and_never_reserved() {
        let kind = |k: &str| EventKind::parse(k).unwrap();
        let exact = KindPattern::parse("eval.item").unwrap();
        assert!(exact.covers(&kind("eval.item")));
        assert!(!exact.covers(&kind("eval.item.extra")));
        assert!(!exact.covers(&kind("billing.subscription.created")));
        let family = KindPattern::parse("support.*").unwrap();
        assert!(family.covers(&kind("support.ticket.created")));
        assert!(!family.covers(&kind("support")));
        assert!(!family.covers(&kind("supportx.ticket")));
        assert_eq!(family.to_string(), "support.*");
        for reserved in [
            "note",
            "task.created",
            "task.*",
            "assignment.changed",
            "rapport.x",
        ] {
            let error = KindPattern::parse(reserved).unwrap_err().to_string();
            assert!(
                error.contains("only by rapport itself"),
                "{reserved}: {error}"
            );
        }
        for malformed in ["*", "", "Billing.*", "billing.**", "billing.*.paid"] {
            assert!(KindPattern::parse(malformed).is_err(), "{malformed}");
        }
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

    #[test]
    fn connector_ids_are_configured_names_or_one_persons_connection_of_one() {
        for good in ["stripe", "billing-stripe", "mail_2", "mailbox:42", "a:1"] {
            assert!(validate_connector_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Stripe",
            "mail box",
            "mailbox:",
            ":42",
            "mailbox:042",
            "mailbox:-1",
            "mailbox:4:2",
            "mailbox:sam",
            "mailbox:12345678901234567890",
            &"a".repeat(65),
        ] {
            let error = validate_connector_id(bad).unwrap_err().to_string();
            assert!(error.contains("not a valid connector id"), "{bad}: {error}");
        }
    }
}
