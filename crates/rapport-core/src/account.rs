//! Client accounts: the parent/child tree (subsidiaries), domains, external ids and
//! contacts. The value types here normalise on construction, so two spellings of the
//! same domain or email can never be stored as two different things.

use crate::{AccountId, DomainError, Result, StaffId};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

/// How deep the client hierarchy may go (group → subsidiary → ...). Real client groups
/// are a few levels deep; the limit keeps every tree walk bounded.
pub const ACCOUNT_DEPTH_MAX: usize = 16;

/// Where a client is in its life with us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Not yet a customer.
    Prospect,
    /// Signed, being set up.
    Onboarding,
    /// A live customer.
    Active,
    /// No longer a customer; kept for history.
    Churned,
}

impl Lifecycle {
    /// Every status.
    pub const ALL: [Lifecycle; 4] = [
        Lifecycle::Prospect,
        Lifecycle::Onboarding,
        Lifecycle::Active,
        Lifecycle::Churned,
    ];

    /// The stable name used in storage and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Prospect => "prospect",
            Lifecycle::Onboarding => "onboarding",
            Lifecycle::Active => "active",
            Lifecycle::Churned => "churned",
        }
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Lifecycle {
    type Err = DomainError;

    fn from_str(input: &str) -> Result<Self> {
        Lifecycle::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(input.trim()))
            .ok_or_else(|| DomainError::UnknownName {
                what: "lifecycle status",
                input: input.to_owned(),
                expected: "prospect, onboarding, active, churned",
            })
    }
}

/// What a domain label may hold, as told to a person who typed a bad one.
const LABEL_RULE: &str =
    "each dot-separated part must be 1-63 letters, digits or inner hyphens (no spaces or symbols)";

/// A normalised DNS domain: lower case, ASCII (internationalised names in their `xn--`
/// form), no trailing dot, at least two labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

impl Domain {
    /// Parses and normalises `input`, e.g. `Müller.DE.` → `xn--mller-kva.de`.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| DomainError::InvalidDomain {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(invalid("it is empty"));
        }
        if trimmed.contains("://") || trimmed.contains('/') {
            return Err(invalid(
                "give just the host name, e.g. `acme.com`, not a URL",
            ));
        }
        if trimmed.contains('@') {
            return Err(invalid(
                "that looks like an email address; give the part after `@`",
            ));
        }
        let without_root = trimmed.strip_suffix('.').unwrap_or(trimmed);
        let ascii = idna::domain_to_ascii_strict(without_root).map_err(|_| invalid(LABEL_RULE))?;
        if ascii.len() > 253 {
            return Err(invalid("it is longer than 253 characters"));
        }
        let labels: Vec<&str> = ascii.split('.').collect();
        if labels.len() < 2 {
            return Err(invalid("it needs at least two labels, e.g. `acme.com`"));
        }
        for label in &labels {
            let valid = !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(invalid(LABEL_RULE));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("IP addresses are not domains"));
        }
        Ok(Domain(ascii))
    }

    /// The normalised ASCII form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Domain {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self> {
        Domain::parse(&value)
    }
}

impl From<Domain> for String {
    fn from(value: Domain) -> Self {
        value.0
    }
}

/// A normalised email address: trimmed, lower case, with a valid [`Domain`].
///
/// Local parts are case-sensitive in theory and case-insensitive in every mailbox a
/// client will use; lower-casing them is what makes contact matching work.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Parses and normalises `input`; accepts a bare address only (no display name).
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| DomainError::InvalidEmail {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim();
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(invalid("it has no `@`"));
        };
        if local.is_empty() {
            return Err(invalid("nothing comes before the `@`"));
        }
        if local.len() > 64 {
            return Err(invalid("the part before `@` is longer than 64 characters"));
        }
        if local.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '@' | '<' | '>' | ',' | ';' | '"')
        }) {
            return Err(invalid(
                "the part before `@` contains spaces or characters like `<>,;\"@`; give a bare address",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(invalid("the part before `@` has a misplaced `.`"));
        }
        let domain = Domain::parse(domain).map_err(|err| match err {
            DomainError::InvalidDomain { reason, .. } => invalid(&format!("its domain {reason}")),
            other => other,
        })?;
        Ok(EmailAddress(format!("{}@{}", local.to_lowercase(), domain)))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The domain after the `@`.
    pub fn domain(&self) -> Domain {
        let (_, domain) = self.0.rsplit_once('@').expect("validated on construction");
        Domain(domain.to_owned())
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = DomainError;
    fn try_from(value: String) -> Result<Self> {
        EmailAddress::parse(&value)
    }
}

impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}

/// An account's identity in another system, e.g. `stripe:cus_123` or `zendesk_org:42`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExternalId {
    /// Which system: lower-case letters, digits, `_` and `-`.
    pub system: String,
    /// The id within that system, as that system spells it.
    pub id: String,
}

impl ExternalId {
    /// Validates a system name and id.
    pub fn new(system: &str, id: &str) -> Result<Self> {
        let spelled = format!("{system}:{id}");
        let invalid = |reason: &str| DomainError::InvalidExternalId {
            input: spelled.clone(),
            reason: reason.to_owned(),
        };
        let system = system.trim();
        let id = id.trim();
        let system_ok = !system.is_empty()
            && system.len() <= 32
            && system
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !system_ok {
            return Err(invalid(
                "the system must be 1-32 lower-case letters, digits, `_` or `-` (e.g. `stripe`)",
            ));
        }
        if id.is_empty()
            || id.len() > 255
            || id.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "the id must be 1-255 characters with no spaces (e.g. `cus_123`)",
            ));
        }
        Ok(ExternalId {
            system: system.to_owned(),
            id: id.to_owned(),
        })
    }
}

impl fmt::Display for ExternalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.system, self.id)
    }
}

impl FromStr for ExternalId {
    type Err = DomainError;

    /// Parses `system:id`.
    fn from_str(input: &str) -> Result<Self> {
        let (system, id) = input
            .split_once(':')
            .ok_or_else(|| DomainError::InvalidExternalId {
                input: input.to_owned(),
                reason: "write it as `system:id`, e.g. `stripe:cus_123`".into(),
            })?;
        ExternalId::new(system, id)
    }
}

/// A person at the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Their name, if known.
    pub name: Option<String>,
    /// Their email, normalised.
    pub email: EmailAddress,
    /// Their role at the client, e.g. "CFO".
    pub title: Option<String>,
}

/// A client account with everything attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Row id.
    pub id: AccountId,
    /// Display name.
    pub name: String,
    /// The parent account (client group), if this is a subsidiary.
    pub parent: Option<AccountId>,
    /// Where the client is in its life with us.
    pub lifecycle: Lifecycle,
    /// When the contract renews.
    pub renewal_date: Option<NaiveDate>,
    /// Its domains, sorted.
    pub domains: Vec<Domain>,
    /// Its ids in other systems, sorted.
    pub external_ids: Vec<ExternalId>,
    /// People at the client, sorted by email.
    pub contacts: Vec<Contact>,
    /// The current owner.
    pub owner: Option<StaffId>,
    /// Current supporters, sorted.
    pub supporters: Vec<StaffId>,
}

/// What it takes to open an account. Every account has an owner from its first moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    /// Display name.
    pub name: String,
    /// The parent account, for a subsidiary.
    #[serde(default)]
    pub parent: Option<AccountId>,
    /// Starting status.
    pub lifecycle: Lifecycle,
    /// When the contract renews.
    #[serde(default)]
    pub renewal_date: Option<NaiveDate>,
    /// Its domains.
    #[serde(default)]
    pub domains: Vec<Domain>,
    /// Its ids in other systems.
    #[serde(default)]
    pub external_ids: Vec<ExternalId>,
    /// People at the client.
    #[serde(default)]
    pub contacts: Vec<Contact>,
    /// Its owner (a manager, director or VP).
    pub owner: StaffId,
}

/// The parent/child structure of client accounts, for rules and tree walks.
#[derive(Debug, Clone, Default)]
pub struct AccountForest {
    parents: BTreeMap<AccountId, Option<AccountId>>,
    children: BTreeMap<AccountId, Vec<AccountId>>,
}

impl AccountForest {
    /// Builds the forest from `(account, parent)` pairs.
    pub fn new(pairs: impl IntoIterator<Item = (AccountId, Option<AccountId>)>) -> Self {
        let mut forest = AccountForest::default();
        for (account, parent) in pairs {
            forest.parents.insert(account, parent);
            if let Some(parent) = parent {
                forest.children.entry(parent).or_default().push(account);
            }
        }
        forest
    }

    /// Whether the account exists.
    pub fn contains(&self, account: AccountId) -> bool {
        self.parents.contains_key(&account)
    }

    /// Every account.
    pub fn accounts(&self) -> impl Iterator<Item = AccountId> + '_ {
        self.parents.keys().copied()
    }

    /// The parent of `account`.
    pub fn parent(&self, account: AccountId) -> Option<AccountId> {
        self.parents.get(&account).copied().flatten()
    }

    /// `account` and all its descendants.
    pub fn subtree(&self, account: AccountId) -> BTreeSet<AccountId> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![account];
        while let Some(id) = stack.pop() {
            if seen.insert(id) {
                stack.extend(self.children.get(&id).into_iter().flatten().copied());
            }
        }
        seen
    }

    /// `account`'s ancestors, parent first, bounded so corrupt data cannot loop.
    pub fn ancestors(&self, account: AccountId) -> Vec<AccountId> {
        let mut chain = Vec::new();
        let mut cursor = self.parent(account);
        while let Some(id) = cursor {
            if chain.len() > self.parents.len() || chain.contains(&id) {
                break;
            }
            chain.push(id);
            cursor = self.parent(id);
        }
        chain
    }

    /// How many levels lie below `account` (0 for a leaf).
    pub fn height_below(&self, account: AccountId) -> usize {
        let mut height = 0;
        let mut level = vec![account];
        let mut seen = BTreeSet::from([account]);
        while !level.is_empty() {
            let next: Vec<AccountId> = level
                .iter()
                .flat_map(|id| self.children.get(id).into_iter().flatten().copied())
                .filter(|id| seen.insert(*id))
                .collect();
            if next.is_empty() {
                break;
            }
            height += 1;
            level = next;
        }
        height
    }
}

/// Checks that `account` may take `parent` as its parent.
///
/// `parent_ancestry` is the parent's chain of ancestors (parent's parent first);
/// `height_below` is how many levels already hang below `account`. Both come from
/// whatever holds the tree (an [`AccountForest`] or a recursive SQL query), so this one
/// function decides for every caller.
pub fn check_reparent(
    account: AccountId,
    parent: Option<AccountId>,
    parent_ancestry: &[AccountId],
    height_below: usize,
) -> Result<()> {
    let Some(parent) = parent else {
        return Ok(());
    };
    if parent == account {
        return Err(DomainError::AccountParentSelf(account));
    }
    if parent_ancestry.contains(&account) {
        return Err(DomainError::AccountCycle { account, parent });
    }
    // Depth counted in levels: a root is level 1.
    let depth = parent_ancestry.len() + 2 + height_below;
    if depth > ACCOUNT_DEPTH_MAX {
        return Err(DomainError::AccountTreeTooDeep {
            account,
            depth,
            max: ACCOUNT_DEPTH_MAX,
        });
    }
    Ok(())
}

/// First year a date a person gives (a renewal, a task's due date) may fall in.
pub const DATE_YEAR_MIN: i32 = 1900;
/// Last year a date a person gives may fall in: the same window as event instants.
pub const DATE_YEAR_MAX: i32 = 2199;

/// Refuses a calendar date outside [`DATE_YEAR_MIN`]..=[`DATE_YEAR_MAX`]: a year 0000
/// or 9999 is a typo, and sorts and renders as nonsense.
pub fn validate_date(field: &'static str, date: chrono::NaiveDate) -> Result<chrono::NaiveDate> {
    use chrono::Datelike;
    if (DATE_YEAR_MIN..=DATE_YEAR_MAX).contains(&date.year()) {
        Ok(date)
    } else {
        Err(DomainError::InvalidField {
            field,
            reason: format!(
                "must fall in the years {DATE_YEAR_MIN} to {DATE_YEAR_MAX}, not {date}: check the year"
            ),
        })
    }
}

/// Validates an account name.
pub fn validate_account_name(name: &str) -> Result<String> {
    crate::staff::validate_name("account name", name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_people_give_are_plausible() {
        let day = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        for good in [day(1900, 1, 1), day(2026, 12, 2), day(2199, 12, 31)] {
            assert_eq!(validate_date("due", good).unwrap(), good);
        }
        for bad in [
            day(0, 1, 1),
            day(1899, 12, 31),
            day(2200, 1, 1),
            day(9999, 12, 31),
            day(-44, 3, 15),
        ] {
            let error = validate_date("due", bad).unwrap_err().to_string();
            assert!(error.contains("1900 to 2199"), "{error}");
        }
    }

    #[test]
    fn domains_normalise() {
        for (input, expected) in [
            ("Acme.COM", "acme.com"),
            ("  acme.com.  ", "acme.com"),
            ("sub.acme.co.uk", "sub.acme.co.uk"),
            ("müller.de", "xn--mller-kva.de"),
            ("XN--MLLER-KVA.DE", "xn--mller-kva.de"),
            ("例え.jp", "xn--r8jz45g.jp"),
        ] {
            assert_eq!(Domain::parse(input).unwrap().as_str(), expected, "{input}");
        }
    }

    #[test]
    fn bad_domains_say_what_to_fix() {
        for (input, message) in [
            ("", "`` is not a valid domain name: it is empty"),
            (
                "https://acme.com",
                "`https://acme.com` is not a valid domain name: give just the host name, e.g. `acme.com`, not a URL",
            ),
            (
                "localhost",
                "`localhost` is not a valid domain name: it needs at least two labels, e.g. `acme.com`",
            ),
            (
                "jo@acme.com",
                "`jo@acme.com` is not a valid domain name: that looks like an email address; give the part after `@`",
            ),
            (
                "10.0.0.1",
                "`10.0.0.1` is not a valid domain name: IP addresses are not domains",
            ),
            (
                "-acme.com",
                "`-acme.com` is not a valid domain name: each dot-separated part must be 1-63 letters, digits or inner hyphens (no spaces or symbols)",
            ),
            (
                "ac me.com",
                "`ac me.com` is not a valid domain name: each dot-separated part must be 1-63 letters, digits or inner hyphens (no spaces or symbols)",
            ),
        ] {
            assert_eq!(Domain::parse(input).unwrap_err().to_string(), message);
        }
    }

    #[test]
    fn emails_normalise_and_expose_their_domain() {
        let email = EmailAddress::parse(" Jane.Doe@Acme.COM ").unwrap();
        assert_eq!(email.as_str(), "jane.doe@acme.com");
        assert_eq!(email.domain().as_str(), "acme.com");
        assert_eq!(
            EmailAddress::parse("anna@müller.de").unwrap().as_str(),
            "anna@xn--mller-kva.de"
        );
    }

    #[test]
    fn bad_emails_are_refused() {
        for (input, reason) in [
            ("jane", "it has no `@`"),
            ("@acme.com", "nothing comes before the `@`"),
            (
                "Jane <jane@acme.com>",
                "the part before `@` contains spaces",
            ),
            ("jane..doe@acme.com", "misplaced `.`"),
            ("jane@acme", "its domain it needs at least two labels"),
        ] {
            let message = EmailAddress::parse(input).unwrap_err().to_string();
            assert!(message.contains(reason), "{input}: {message}");
        }
    }

    #[test]
    fn external_ids_parse() {
        let id: ExternalId = "stripe:cus_123".parse().unwrap();
        assert_eq!((id.system.as_str(), id.id.as_str()), ("stripe", "cus_123"));
        assert_eq!(id.to_string(), "stripe:cus_123");
        assert!("cus_123".parse::<ExternalId>().is_err());
        assert!("Stripe:cus_123".parse::<ExternalId>().is_err());
        assert!("stripe:".parse::<ExternalId>().is_err());
        assert!("stripe:has space".parse::<ExternalId>().is_err());
    }

    #[test]
    fn reparenting_refuses_cycles_and_depth() {
        let forest = AccountForest::new([
            (AccountId(1), None),
            (AccountId(2), Some(AccountId(1))),
            (AccountId(3), Some(AccountId(2))),
        ]);
        let ancestry_of = |id| {
            let mut chain = forest.ancestors(id);
            chain.insert(0, id);
            chain
        };
        // 1 under 3 would make 1 its own grandchild.
        let ancestry = ancestry_of(AccountId(3));
        assert_eq!(
            check_reparent(AccountId(1), Some(AccountId(3)), &ancestry[1..], 2),
            Err(DomainError::AccountCycle {
                account: AccountId(1),
                parent: AccountId(3)
            })
        );
        // The check gets the chain *above* the parent; include the parent itself too.
        assert_eq!(
            check_reparent(AccountId(1), Some(AccountId(3)), &ancestry, 2),
            Err(DomainError::AccountCycle {
                account: AccountId(1),
                parent: AccountId(3)
            })
        );
        assert_eq!(
            check_reparent(AccountId(1), Some(AccountId(1)), &[], 0),
            Err(DomainError::AccountParentSelf(AccountId(1)))
        );
        let deep: Vec<AccountId> = (100..100 + ACCOUNT_DEPTH_MAX as i64)
            .map(AccountId)
            .collect();
        assert!(matches!(
            check_reparent(AccountId(1), Some(AccountId(99)), &deep, 0),
            Err(DomainError::AccountTreeTooDeep { .. })
        ));
        assert_eq!(forest.height_below(AccountId(1)), 2);
        assert_eq!(
            forest.subtree(AccountId(2)),
            [AccountId(2), AccountId(3)].into()
        );
    }
}
