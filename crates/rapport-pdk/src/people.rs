//! Who is one of us and who is the client: the line mail and calendar connectors draw
//! between the people on a message or a meeting. Our own addresses never become account
//! hints (they would match every account), and a meeting with nobody from outside is
//! never placed on an account.

use crate::Config;

/// Who "we" are: our own addresses and domains (a domain covers its subdomains).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ourselves {
    /// Lower-case addresses.
    pub addresses: Vec<String>,
    /// Lower-case domains, without `@`.
    pub domains: Vec<String>,
}

impl Ourselves {
    /// From comma- or space-separated lists of addresses and domains.
    pub fn parse(addresses: Option<&str>, domains: Option<&str>) -> Ourselves {
        let list = |text: Option<&str>| -> Vec<String> {
            text.unwrap_or_default()
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|item| !item.is_empty())
                .map(|item| item.trim_start_matches('@').to_ascii_lowercase())
                .collect()
        };
        Ourselves {
            addresses: list(addresses),
            domains: list(domains),
        }
    }

    /// From a connector's `own_addresses` and `own_domains` settings, with the address
    /// of the person whose connection the call runs on (and the account they
    /// connected) counted as ours.
    pub fn of_config(config: &Config) -> Ourselves {
        let mut ourselves =
            Ourselves::parse(config.get("own_addresses"), config.get("own_domains"));
        if let Some(connection) = config.connection() {
            for address in [&connection.owner_email, &connection.provider_account]
                .into_iter()
                .flatten()
            {
                ourselves.add_address(address);
            }
        }
        ourselves
    }

    /// Counts `address` as ours.
    pub fn add_address(&mut self, address: &str) {
        let address = address.to_ascii_lowercase();
        if valid_address(&address) && !self.addresses.contains(&address) {
            self.addresses.push(address);
        }
    }

    /// Whether `address` is one of ours (itself, or at one of our domains).
    pub fn is_us(&self, address: &str) -> bool {
        let address = address.to_ascii_lowercase();
        let domain = address.rsplit_once('@').map(|(_, domain)| domain);
        self.addresses.contains(&address)
            || domain.is_some_and(|domain| {
                self.domains
                    .iter()
                    .any(|ours| domain == ours || domain.ends_with(&format!(".{ours}")))
            })
    }
}

/// Whether `address` looks like a deliverable address (`local@domain.tld`, printable
/// ASCII): what may become an account hint.
pub fn valid_address(address: &str) -> bool {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && address.bytes().all(|b| b.is_ascii_graphic())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_domains_cover_their_subdomains_and_listed_addresses_count() {
        let us = Ourselves::parse(Some("ceo@gmail.com"), Some("@Ours.example, corp.example"));
        assert!(us.is_us("sam@ours.example"));
        assert!(us.is_us("SAM@EU.OURS.EXAMPLE"));
        assert!(us.is_us("ceo@gmail.com"));
        assert!(!us.is_us("cfo@acme.example"));
        assert!(!us.is_us("someone@notours.example"));
        assert!(valid_address("a@b.co"));
        assert!(!valid_address("a@b"));
        assert!(!valid_address("a b@c.co"));
    }
}
