//! Identity resolution: which account an event belongs to, from what its source says
//! (`AccountHints`), and why.
//!
//! Rules, in order; the first rule that finds any candidate decides:
//! 1. **external id** — the source's id for the client (`stripe:cus_123`);
//! 2. **contact email** — a participant is a known contact of the account;
//! 3. **domain** — a participant's (or hinted) domain, or a parent domain of it,
//!    belongs to the account; never for free-mail providers or ignored domains
//!    (our own).
//!
//! One candidate is a match, recorded with its reason. Several candidates under the
//! deciding rule are ambiguous: the event waits in the unmatched inbox with the
//! candidates, and is never guessed onto one of them.

use crate::AccountId;
use crate::account::{Domain, EmailAddress, ExternalId};
use crate::timeline::{AccountHints, MatchReason, Placement};
use std::collections::{BTreeMap, BTreeSet};

/// Mail providers whose domains say nothing about which client a person belongs to.
/// Operators extend this with [`MatchIndex::ignore_domain`].
pub const FREE_MAIL_DOMAINS: &[&str] = &[
    "163.com",
    "aol.com",
    "fastmail.com",
    "gmail.com",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "googlemail.com",
    "hey.com",
    "hotmail.com",
    "icloud.com",
    "live.com",
    "mac.com",
    "mail.com",
    "mail.ru",
    "me.com",
    "msn.com",
    "outlook.com",
    "proton.me",
    "protonmail.com",
    "qq.com",
    "t-online.de",
    "web.de",
    "yahoo.com",
    "yandex.com",
    "yandex.ru",
    "zoho.com",
];

/// The outcome of resolving one event's hints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Exactly one account, and why.
    Matched(Placement),
    /// Several accounts fit under the deciding rule; a person must choose.
    Ambiguous {
        /// The rule that found them (`external_id`, `contact_email`, `domain`).
        rule: &'static str,
        /// The candidates, sorted.
        candidates: Vec<AccountId>,
    },
    /// Nothing matched; the event waits in the unmatched inbox.
    Unmatched,
}

/// What identity resolution knows about accounts: built from the store, queried per
/// event.
#[derive(Debug, Clone, Default)]
pub struct MatchIndex {
    external_ids: BTreeMap<ExternalId, AccountId>,
    contacts: BTreeMap<EmailAddress, BTreeSet<AccountId>>,
    domains: BTreeMap<Domain, BTreeSet<AccountId>>,
    ignored_domains: BTreeSet<Domain>,
}

impl MatchIndex {
    /// An empty index that ignores the built-in free-mail domains.
    pub fn new() -> MatchIndex {
        let mut index = MatchIndex::default();
        for domain in FREE_MAIL_DOMAINS {
            index.ignore_domain(Domain::parse(domain).expect("built-in domains are valid"));
        }
        index
    }

    /// Records that `account` holds `external_id` (an external id names one account).
    pub fn add_external_id(&mut self, account: AccountId, external_id: ExternalId) {
        self.external_ids.insert(external_id, account);
    }

    /// Records a contact of `account`.
    pub fn add_contact(&mut self, account: AccountId, email: EmailAddress) {
        self.contacts.entry(email).or_default().insert(account);
    }

    /// Records a domain of `account`.
    pub fn add_domain(&mut self, account: AccountId, domain: Domain) {
        self.domains.entry(domain).or_default().insert(account);
    }

    /// Never matches by this domain (a free-mail provider, or our own domain).
    pub fn ignore_domain(&mut self, domain: Domain) {
        self.ignored_domains.insert(domain);
    }

    /// Resolves an event's hints by the rules above.
    pub fn resolve(&self, hints: &AccountHints) -> Resolution {
        let by_external_id: BTreeMap<AccountId, &ExternalId> = hints
            .external_ids
            .iter()
            .filter_map(|id| self.external_ids.get(id).map(|account| (*account, id)))
            .collect();
        if let Some(resolution) = decide("external_id", by_external_id, |id| {
            MatchReason::ExternalId {
                external_id: (*id).clone(),
            }
        }) {
            return resolution;
        }

        let mut by_contact: BTreeMap<AccountId, &EmailAddress> = BTreeMap::new();
        for email in &hints.emails {
            for account in self.contacts.get(email).into_iter().flatten() {
                by_contact.entry(*account).or_insert(email);
            }
        }
        if let Some(resolution) = decide("contact_email", by_contact, |email| {
            MatchReason::ContactEmail {
                email: (*email).clone(),
            }
        }) {
            return resolution;
        }

        let hinted_domains = hints
            .domains
            .iter()
            .cloned()
            .chain(hints.emails.iter().map(EmailAddress::domain));
        let mut by_domain: BTreeMap<AccountId, Domain> = BTreeMap::new();
        for domain in hinted_domains {
            if self.ignored_domains.contains(&domain) {
                continue;
            }
            // `eu.mail.acme.com` belongs to whoever has `acme.com`, nearest first.
            for candidate in domain_and_parents(&domain) {
                if self.ignored_domains.contains(&candidate) {
                    break;
                }
                if let Some(accounts) = self.domains.get(&candidate) {
                    for account in accounts {
                        by_domain
                            .entry(*account)
                            .or_insert_with(|| candidate.clone());
                    }
                    break;
                }
            }
        }
        decide("domain", by_domain, |domain| MatchReason::Domain {
            domain: domain.clone(),
        })
        .unwrap_or(Resolution::Unmatched)
    }
}

/// Every identifier [`MatchIndex::resolve`] may look up for some hints: a store loads
/// just these rows to build an index that resolves those hints exactly as a full one
/// would.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookups {
    /// External ids to look up.
    pub external_ids: BTreeSet<ExternalId>,
    /// Contact emails to look up.
    pub emails: BTreeSet<EmailAddress>,
    /// Domains to look up: the hinted ones, participants' ones, and their parents.
    pub domains: BTreeSet<Domain>,
}

impl Lookups {
    /// Adds what resolving `hints` may consult.
    pub fn add(&mut self, hints: &AccountHints) {
        self.external_ids.extend(hints.external_ids.iter().cloned());
        self.emails.extend(hints.emails.iter().cloned());
        let domains = hints
            .domains
            .iter()
            .cloned()
            .chain(hints.emails.iter().map(EmailAddress::domain));
        for domain in domains {
            self.domains.extend(domain_and_parents(&domain));
        }
    }

    /// Whether there is nothing to look up.
    pub fn is_empty(&self) -> bool {
        self.external_ids.is_empty() && self.emails.is_empty() && self.domains.is_empty()
    }
}

/// One candidate is a match; several are ambiguous; none lets the next rule decide.
fn decide<T>(
    rule: &'static str,
    candidates: BTreeMap<AccountId, T>,
    reason: impl FnOnce(&T) -> MatchReason,
) -> Option<Resolution> {
    match candidates.len() {
        0 => None,
        1 => {
            let (account, evidence) = candidates.into_iter().next().expect("one candidate");
            Some(Resolution::Matched(Placement {
                account,
                reason: reason(&evidence),
            }))
        }
        _ => Some(Resolution::Ambiguous {
            rule,
            candidates: candidates.into_keys().collect(),
        }),
    }
}

/// `a.b.example.com`, `b.example.com`, `example.com` — never the bare top-level label.
fn domain_and_parents(domain: &Domain) -> Vec<Domain> {
    let labels: Vec<&str> = domain.as_str().split('.').collect();
    (0..labels.len().saturating_sub(1))
        .filter_map(|start| Domain::parse(&labels[start..].join(".")).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn email(address: &str) -> EmailAddress {
        EmailAddress::parse(address).unwrap()
    }

    fn domain(name: &str) -> Domain {
        Domain::parse(name).unwrap()
    }

    fn hints(external_ids: &[&str], emails: &[&str], domains: &[&str]) -> AccountHints {
        AccountHints {
            external_ids: external_ids.iter().map(|id| id.parse().unwrap()).collect(),
            emails: emails.iter().map(|address| email(address)).collect(),
            domains: domains.iter().map(|name| domain(name)).collect(),
        }
    }

    fn index() -> MatchIndex {
        let mut index = MatchIndex::new();
        index.add_external_id(AccountId(1), "stripe:cus_1".parse().unwrap());
        index.add_external_id(AccountId(2), "stripe:cus_2".parse().unwrap());
        index.add_contact(AccountId(1), email("jane@acme.example"));
        index.add_contact(AccountId(3), email("consultant@freelance.example"));
        index.add_contact(AccountId(4), email("consultant@freelance.example"));
        index.add_domain(AccountId(1), domain("acme.example"));
        index.add_domain(AccountId(2), domain("globex.example"));
        index.add_domain(AccountId(5), domain("shared.example"));
        index.add_domain(AccountId(6), domain("shared.example"));
        index.ignore_domain(domain("rapport-demo.example"));
        index
    }

    fn matched(account: i64, reason: MatchReason) -> Resolution {
        Resolution::Matched(Placement {
            account: AccountId(account),
            reason,
        })
    }

    #[test]
    fn rules_apply_in_order() {
        let index = index();
        // The external id wins over a contact that points elsewhere.
        assert_eq!(
            index.resolve(&hints(&["stripe:cus_2"], &["jane@acme.example"], &[])),
            matched(
                2,
                MatchReason::ExternalId {
                    external_id: "stripe:cus_2".parse().unwrap()
                }
            )
        );
        assert_eq!(
            index.resolve(&hints(&["stripe:unknown"], &["Jane@ACME.example"], &[])),
            matched(
                1,
                MatchReason::ContactEmail {
                    email: email("jane@acme.example")
                }
            )
        );
        // Not a contact, but the domain is Acme's (also from a subdomain).
        assert_eq!(
            index.resolve(&hints(&[], &["bob@eu.mail.acme.example"], &[])),
            matched(
                1,
                MatchReason::Domain {
                    domain: domain("acme.example")
                }
            )
        );
        assert_eq!(index.resolve(&hints(&[], &[], &[])), Resolution::Unmatched);
    }

    #[test]
    fn ambiguity_goes_to_the_inbox_never_guessed() {
        let index = index();
        assert_eq!(
            index.resolve(&hints(&[], &["ops@shared.example"], &[])),
            Resolution::Ambiguous {
                rule: "domain",
                candidates: vec![AccountId(5), AccountId(6)]
            }
        );
        assert_eq!(
            index.resolve(&hints(
                &[],
                &["consultant@freelance.example"],
                &["acme.example"]
            )),
            Resolution::Ambiguous {
                rule: "contact_email",
                candidates: vec![AccountId(3), AccountId(4)]
            },
            "an ambiguous contact is not resolved by falling through to the domain"
        );
        assert_eq!(
            index.resolve(&hints(&["stripe:cus_1", "stripe:cus_2"], &[], &[])),
            Resolution::Ambiguous {
                rule: "external_id",
                candidates: vec![AccountId(1), AccountId(2)]
            }
        );
    }

    #[test]
    fn free_mail_and_own_domains_never_match() {
        let mut index = index();
        index.add_domain(AccountId(7), domain("gmail.com"));
        index.add_domain(AccountId(8), domain("rapport-demo.example"));
        assert_eq!(
            index.resolve(&hints(&[], &["someone@gmail.com"], &[])),
            Resolution::Unmatched
        );
        assert_eq!(
            index.resolve(&hints(&[], &[], &["rapport-demo.example"])),
            Resolution::Unmatched
        );
        // A known contact at a free-mail address still matches by contact.
        index.add_contact(AccountId(2), email("ceo.globex@gmail.com"));
        assert_eq!(
            index.resolve(&hints(&[], &["ceo.globex@gmail.com"], &[])),
            matched(
                2,
                MatchReason::ContactEmail {
                    email: email("ceo.globex@gmail.com")
                }
            )
        );
    }

    /// The rules, written as plainly as possible over a list of accounts: the model the
    /// index must agree with.
    #[derive(Debug, Clone)]
    struct ModelAccount {
        id: AccountId,
        external_ids: Vec<ExternalId>,
        contacts: Vec<EmailAddress>,
        domains: Vec<Domain>,
    }

    fn model(
        accounts: &[ModelAccount],
        ignored: &BTreeSet<Domain>,
        hints: &AccountHints,
    ) -> (Option<&'static str>, BTreeSet<AccountId>) {
        let pick =
            |found: BTreeSet<AccountId>, rule| (!found.is_empty()).then_some((Some(rule), found));
        let by_id: BTreeSet<AccountId> = accounts
            .iter()
            .filter(|a| {
                a.external_ids
                    .iter()
                    .any(|id| hints.external_ids.contains(id))
            })
            .map(|a| a.id)
            .collect();
        if let Some(result) = pick(by_id, "external_id") {
            return result;
        }
        let by_contact: BTreeSet<AccountId> = accounts
            .iter()
            .filter(|a| a.contacts.iter().any(|c| hints.emails.contains(c)))
            .map(|a| a.id)
            .collect();
        if let Some(result) = pick(by_contact, "contact_email") {
            return result;
        }
        let mut by_domain = BTreeSet::new();
        let all: Vec<Domain> = hints
            .domains
            .iter()
            .cloned()
            .chain(hints.emails.iter().map(EmailAddress::domain))
            .collect();
        for hinted in all {
            // The nearest (longest) known, non-ignored suffix decides.
            for candidate in domain_and_parents(&hinted) {
                if ignored.contains(&candidate) {
                    break;
                }
                let owners: Vec<AccountId> = accounts
                    .iter()
                    .filter(|a| a.domains.contains(&candidate))
                    .map(|a| a.id)
                    .collect();
                if !owners.is_empty() {
                    by_domain.extend(owners);
                    break;
                }
            }
        }
        pick(by_domain, "domain").unwrap_or((None, BTreeSet::new()))
    }

    fn arb_domain() -> impl Strategy<Value = Domain> {
        prop_oneof![
            Just("acme.example"),
            Just("eu.acme.example"),
            Just("globex.example"),
            Just("shared.example"),
            Just("gmail.com"),
            Just("mail.gmail.com"),
            Just("own.example"),
        ]
        .prop_map(|name| Domain::parse(name).unwrap())
    }

    fn arb_email() -> impl Strategy<Value = EmailAddress> {
        (
            prop_oneof![Just("ann"), Just("bob"), Just("cy")],
            arb_domain(),
        )
            .prop_map(|(local, domain)| EmailAddress::parse(&format!("{local}@{domain}")).unwrap())
    }

    fn arb_external_id() -> impl Strategy<Value = ExternalId> {
        (0..6u8).prop_map(|n| ExternalId::new("stripe", &format!("cus_{n}")).unwrap())
    }

    proptest! {
        #[test]
        fn the_index_agrees_with_the_model(
            raw_accounts in prop::collection::vec(
                (
                    prop::collection::vec(arb_external_id(), 0..2),
                    prop::collection::vec(arb_email(), 0..3),
                    prop::collection::vec(arb_domain(), 0..2),
                ),
                0..6,
            ),
            hint_ids in prop::collection::vec(arb_external_id(), 0..2),
            hint_emails in prop::collection::vec(arb_email(), 0..3),
            hint_domains in prop::collection::vec(arb_domain(), 0..2),
        ) {
            // An external id names one account: later holders lose it, as in the store.
            let mut taken = BTreeSet::new();
            let accounts: Vec<ModelAccount> = raw_accounts
                .into_iter()
                .enumerate()
                .map(|(n, (ids, contacts, domains))| ModelAccount {
                    id: AccountId(n as i64 + 1),
                    external_ids: ids.into_iter().filter(|id| taken.insert(id.clone())).collect(),
                    contacts,
                    domains,
                })
                .collect();
            let mut index = MatchIndex::new();
            index.ignore_domain(Domain::parse("own.example").unwrap());
            for account in &accounts {
                for id in &account.external_ids { index.add_external_id(account.id, id.clone()); }
                for email in &account.contacts { index.add_contact(account.id, email.clone()); }
                for domain in &account.domains { index.add_domain(account.id, domain.clone()); }
            }
            let hints = AccountHints { external_ids: hint_ids, emails: hint_emails, domains: hint_domains };
            let ignored = index.ignored_domains.clone();
            let (rule, candidates) = model(&accounts, &ignored, &hints);

            // An index holding only what `Lookups` names resolves these hints the same
            // way: that is what lets a store load a few rows instead of every identity.
            let mut lookups = Lookups::default();
            lookups.add(&hints);
            let mut restricted = MatchIndex::new();
            restricted.ignore_domain(Domain::parse("own.example").unwrap());
            for account in &accounts {
                for id in account.external_ids.iter().filter(|id| lookups.external_ids.contains(*id)) {
                    restricted.add_external_id(account.id, id.clone());
                }
                for email in account.contacts.iter().filter(|email| lookups.emails.contains(*email)) {
                    restricted.add_contact(account.id, email.clone());
                }
                for domain in account.domains.iter().filter(|domain| lookups.domains.contains(*domain)) {
                    restricted.add_domain(account.id, domain.clone());
                }
            }
            prop_assert_eq!(restricted.resolve(&hints), index.resolve(&hints));

            match index.resolve(&hints) {
                Resolution::Unmatched => prop_assert!(candidates.is_empty()),
                Resolution::Matched(placement) => {
                    prop_assert_eq!(candidates, BTreeSet::from([placement.account]));
                    prop_assert_eq!(rule, Some(placement.reason.rule()));
                }
                Resolution::Ambiguous { rule: found_rule, candidates: found } => {
                    prop_assert!(found.len() > 1);
                    prop_assert_eq!(candidates, found.into_iter().collect::<BTreeSet<_>>());
                    prop_assert_eq!(rule, Some(found_rule));
                }
            }
        }
    }
}
