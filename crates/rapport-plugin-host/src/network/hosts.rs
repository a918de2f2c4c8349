//! Host patterns: what a connector declares it needs and what an operator grants. One
//! type, parsed by one function, used by the host at run time and by
//! `rapport config check` alike, so the two can never disagree.
//!
//! A pattern is `*` (declarations only: whatever the operator grants), `host` (port
//! 443), `host:port`, `host:*` (any port), `*.example.com` (any name under
//! `example.com`, declarations only), or an IP address (`10.0.0.5:143`, `[::1]:8080`).
//! A declaration may be a template over the connector's settings: `{subdomain}.zendesk.com`,
//! `{host}:{port|993}`, or `{base_url}` for a setting holding a URL (its host and port).

use std::fmt;

/// Which names a pattern admits.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Names {
    /// Any host (`*`).
    Any,
    /// Exactly this name or address (lower case, no trailing dot).
    Exact(String),
    /// Any name ending in `.` + this suffix (`*.zendesk.com`), never the suffix itself.
    Under(String),
}

/// A parsed host pattern; see the module documentation for the forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    names: Names,
    /// `None` admits any port.
    port: Option<u16>,
}

impl HostPattern {
    /// Parses a pattern as a connector may declare it (after templates are filled in).
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let text = text.trim();
        if text.len() > crate::limits::HOST_PATTERN_BYTES_MAX {
            return Err(format!(
                "a host pattern is at most {} bytes",
                crate::limits::HOST_PATTERN_BYTES_MAX
            ));
        }
        if text == "*" {
            return Ok(HostPattern {
                names: Names::Any,
                port: None,
            });
        }
        let shown = text.escape_debug().to_string();
        if text.contains("://") || text.contains('/') {
            return Err(format!(
                "`{shown}` is a URL; write a host with an optional port, e.g. `api.example.com` or `api.example.com:8443` — no scheme or path"
            ));
        }
        let (host, port) = split_port(text);
        let port = match port {
            None => Some(443),
            Some("*") => None,
            Some(digits) => Some(digits.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(
                || {
                    format!(
                        "`{shown}` has an invalid port; use host, host:port (1 to 65535) or host:*"
                    )
                },
            )?),
        };
        let names = match host.strip_prefix("*.") {
            Some(suffix) => Names::Under(host_name(suffix).ok_or_else(|| {
                format!("`{shown}`: `*.` must be followed by a domain name, e.g. `*.zendesk.com`")
            })?),
            None => Names::Exact(
                host_name(host)
                    .ok_or_else(|| format!("`{shown}` is not a host name or IP address"))?,
            ),
        };
        Ok(HostPattern { names, port })
    }

    /// Parses a pattern as an operator grants it: a concrete host (or address), with
    /// an optional port or `:*`. Wildcard names are refused — an operator names each
    /// host a connector may reach.
    pub fn parse_grant(text: &str) -> Result<HostPattern, String> {
        let pattern = HostPattern::parse(text)?;
        match pattern.names {
            Names::Exact(_) => Ok(pattern),
            Names::Any => {
                Err("`*` would allow any host: name each host the connector may reach".into())
            }
            Names::Under(_) => Err(format!(
                "`{}` is a wildcard: name each host the connector may reach (e.g. `acme.zendesk.com`)",
                text.trim()
            )),
        }
    }

    /// Whether this pattern admits `host` on `port`.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        let host = normalise(host);
        let names = match &self.names {
            Names::Any => true,
            Names::Exact(name) => *name == host,
            Names::Under(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        };
        names && self.port.is_none_or(|allowed| allowed == port)
    }

    /// Whether every destination `other` admits is also admitted by this pattern: how
    /// a declaration is checked to cover a grant.
    pub fn covers(&self, other: &HostPattern) -> bool {
        let port_ok = match (self.port, other.port) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => mine == theirs,
        };
        let names_ok = match (&self.names, &other.names) {
            (Names::Any, _) => true,
            (_, Names::Any) => false,
            (Names::Exact(mine), Names::Exact(theirs)) => mine == theirs,
            (Names::Exact(_), Names::Under(_)) => false,
            (Names::Under(suffix), Names::Exact(name)) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            (Names::Under(mine), Names::Under(theirs)) => {
                theirs == mine || theirs.ends_with(&format!(".{mine}"))
            }
        };
        port_ok && names_ok
    }

    /// The one name or address this pattern admits, if it is that concrete.
    pub fn concrete_host(&self) -> Option<&str> {
        match &self.names {
            Names::Exact(name) => Some(name),
            Names::Any | Names::Under(_) => None,
        }
    }

    /// The one port this pattern admits, or `None` for any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Whether it admits any host at all (a plugin's `*`).
    pub fn is_any_host(&self) -> bool {
        self.names == Names::Any
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.names {
            Names::Any => return f.write_str("*"),
            Names::Exact(name) if name.contains(':') => format!("[{name}]"),
            Names::Exact(name) => name.clone(),
            Names::Under(suffix) => format!("*.{suffix}"),
        };
        match self.port {
            None => write!(f, "{host}:*"),
            Some(port) => write!(f, "{host}:{port}"),
        }
    }
}

/// One piece of a template: text, or a setting with an optional default.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Setting {
        name: String,
        default: Option<String>,
    },
}

/// A host a connector declares, possibly templated over its settings, e.g.
/// `{subdomain}.zendesk.com` or `{base_url|https://api.stripe.com}`. Checked when the
/// plugin loads; filled in when it is bound to a configured connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTemplate {
    spelled: String,
    pieces: Vec<Piece>,
}

impl HostTemplate {
    /// Parses a declaration. A template without placeholders must already be a valid
    /// pattern; placeholders name settings (`{name}`, `{name|default}`).
    pub fn parse(text: &str) -> Result<HostTemplate, String> {
        let spelled = text.trim().to_owned();
        let shown = spelled.escape_debug().to_string();
        let mut pieces = Vec::new();
        let mut rest = spelled.as_str();
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .map(|at| open + at)
                .ok_or_else(|| format!("`{shown}` opens `{{` without closing it"))?;
            let inner = &rest[open + 1..close];
            let (name, default) = match inner.split_once('|') {
                Some((name, default)) => (name.trim(), Some(default.trim().to_owned())),
                None => (inner.trim(), None),
            };
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !name_ok {
                return Err(format!(
                    "`{shown}`: `{{{inner}}}` must name a setting (lower-case letters, digits, `_`), e.g. `{{subdomain}}` or `{{port|993}}`"
                ));
            }
            pieces.push(Piece::Setting {
                name: name.to_owned(),
                default,
            });
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("`{shown}` closes `}}` without opening it"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        let template = HostTemplate { spelled, pieces };
        // Check the shape now, with every placeholder standing for a plain label (or
        // its default), so a broken declaration is found when the plugin loads.
        let sample = template.fill(&|name| Some(sample_value(&template, name)))?;
        if let Some(sample) = sample {
            HostPattern::parse(&sample).map_err(|reason| format!("`{shown}`: {reason}"))?;
        }
        Ok(template)
    }

    /// The settings it reads.
    pub fn settings(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Setting { name, .. } => Some(name.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// The pattern for these settings, or `None` when a setting it needs is not set
    /// and has no default (the connector then cannot reach that host). A setting's
    /// value may not widen the pattern: wildcards in values are refused.
    pub fn resolve(
        &self,
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<HostPattern>, String> {
        let Some(filled) = self.fill(&|name| settings.get(name).cloned())? else {
            return Ok(None);
        };
        HostPattern::parse(&filled).map(Some).map_err(|reason| {
            format!(
                "the declared host `{}` becomes `{}` with these settings: {reason}",
                self.spelled,
                filled.escape_debug()
            )
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.spelled
    }

    fn fill(&self, value_of: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
        let whole = self.pieces.len() == 1;
        let mut filled = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => filled.push_str(text),
                Piece::Setting { name, default } => {
                    let Some(value) = value_of(name).or_else(|| default.clone()) else {
                        return Ok(None);
                    };
                    let value = value.trim();
                    if value.contains('*') || value.contains(['{', '}']) {
                        return Err(format!(
                            "setting `{name}` is `{}`, which may not widen the declared host `{}`",
                            value.escape_debug(),
                            self.spelled
                        ));
                    }
                    match authority_of_url(value) {
                        // A URL stands for its host and port, when it is the whole
                        // pattern (`{base_url}`).
                        Some(authority) if whole => filled.push_str(&authority),
                        Some(_) => {
                            return Err(format!(
                                "setting `{name}` holds a URL, which can only be a declared host on its own (`{{{name}}}`), not part of `{}`",
                                self.spelled
                            ));
                        }
                        None => filled.push_str(value),
                    }
                }
            }
        }
        Ok(Some(filled))
    }
}

/// What a placeholder stands for when a template is checked at load time.
fn sample_value(template: &HostTemplate, name: &str) -> String {
    let default = template.pieces.iter().find_map(|piece| match piece {
        Piece::Setting {
            name: this,
            default: Some(default),
        } if this == name => Some(default.clone()),
        _ => None,
    });
    default.unwrap_or_else(|| {
        let alone = template.pieces.len() == 1;
        let after_colon = template.pieces.windows(2).any(|pair| {
            matches!((&pair[0], &pair[1]), (Piece::Text(text), Piece::Setting { name: this, .. }) if this == name && text.ends_with(':'))
        });
        if after_colon {
            "443".into()
        } else if alone {
            "example.com".into()
        } else {
            "label".into()
        }
    })
}

/// `https://api.stripe.com/v1` → `api.stripe.com:443`; `None` for anything but an
/// absolute http(s) URL.
fn authority_of_url(value: &str) -> Option<String> {
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return None;
    }
    let url = url::Url::parse(value).ok()?;
    let host = match url.host()? {
        url::Host::Domain(name) => name.to_owned(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(ip) => format!("[{ip}]"),
    };
    Some(format!("{host}:{}", url.port_or_known_default()?))
}

/// Splits `host:port`, `[v6]:port`, `host` or a bare IPv6 address into host and port.
fn split_port(text: &str) -> (&str, Option<&str>) {
    if let Some(rest) = text.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (text, None),
        };
    }
    match text.split_once(':') {
        // Exactly one colon: a name or IPv4 address with a port.
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (text, None),
    }
}

/// A host name or address as patterns compare it: lower case, without a trailing dot
/// or IPv6 brackets.
pub(crate) fn normalise(host: &str) -> String {
    let name = host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    // An address has many spellings (`::127.0.0.1` is `::7f00:1`): compare one.
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => name,
    }
}

/// `text` as a pattern's name: an IP address, or a DNS name of letters, digits and
/// hyphens in dot-separated labels (at most 253 bytes, labels at most 63).
fn host_name(text: &str) -> Option<String> {
    let name = normalise(text);
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Some(name);
    }
    let labels_ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        });
    labels_ok.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn pattern(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap()
    }

    #[test]
    fn patterns_parse_and_match() {
        assert!(pattern("api.stripe.com").matches("API.Stripe.com", 443));
        assert!(pattern("api.stripe.com").matches("api.stripe.com.", 443));
        assert!(!pattern("api.stripe.com").matches("api.stripe.com", 80));
        assert!(pattern("host:*").matches("host", 1));
        assert!(pattern("*.zendesk.com").matches("acme.zendesk.com", 443));
        assert!(pattern("*.zendesk.com").matches("a.b.zendesk.com", 443));
        assert!(!pattern("*.zendesk.com").matches("zendesk.com", 443));
        assert!(!pattern("*.zendesk.com").matches("evilzendesk.com", 443));
        assert!(!pattern("*.zendesk.com").matches("zendesk.com.evil.example", 443));
        assert!(pattern("[::1]:8080").matches("::1", 8080));
        assert!(pattern("::1").matches("[::1]", 443));
        assert!(pattern("10.0.0.5:143").matches("10.0.0.5", 143));
        assert_eq!(pattern("[::1]:8080").to_string(), "[::1]:8080");
        assert_eq!(pattern("*.zendesk.com").to_string(), "*.zendesk.com:443");
        for bad in [
            "bad host",
            "host:70000",
            "host:0",
            "https://api.stripe.com",
            "api.stripe.com/v1",
            "*.",
            "*.*.com",
            "-bad.example",
            "",
            "a..b",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn grants_must_name_hosts() {
        assert!(HostPattern::parse_grant("api.stripe.com").is_ok());
        assert!(HostPattern::parse_grant("127.0.0.1:*").is_ok());
        let any = HostPattern::parse_grant("*").unwrap_err();
        assert!(any.contains("would allow any host"), "{any}");
        let under = HostPattern::parse_grant("*.zendesk.com").unwrap_err();
        assert!(under.contains("wildcard"), "{under}");
    }

    #[test]
    fn declarations_cover_grants_by_host_and_port() {
        let covers = |declared: &str, granted: &str| pattern(declared).covers(&pattern(granted));
        assert!(covers("*", "anything.example:8443"));
        assert!(covers("api.stripe.com", "api.stripe.com"));
        assert!(covers("api.stripe.com", "api.stripe.com:443"));
        // A bare declaration means port 443, the same at run time and in config check.
        assert!(!covers("api.example.com", "api.example.com:8443"));
        assert!(!covers("api.stripe.com", "evil.example"));
        assert!(covers("*.zendesk.com", "acme.zendesk.com"));
        assert!(!covers("*.zendesk.com", "zendesk.com.evil.example"));
        assert!(covers("127.0.0.1:*", "127.0.0.1:40123"));
        assert!(!covers("127.0.0.1:993", "127.0.0.1:40123"));
        assert!(!covers("127.0.0.1:993", "127.0.0.1:*"));
        assert!(covers("*.example.com", "*.api.example.com"));
        assert!(!covers("api.example.com", "*.example.com"));
    }

    #[test]
    fn templates_fill_in_settings() {
        let settings = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let zendesk = HostTemplate::parse("{subdomain}.zendesk.com").unwrap();
        assert_eq!(zendesk.settings().collect::<Vec<_>>(), ["subdomain"]);
        assert_eq!(
            zendesk
                .resolve(&settings(&[("subdomain", "acme")]))
                .unwrap(),
            Some(pattern("acme.zendesk.com"))
        );
        assert_eq!(zendesk.resolve(&settings(&[])).unwrap(), None);
        let widened = zendesk
            .resolve(&settings(&[("subdomain", "*")]))
            .unwrap_err();
        assert!(widened.contains("may not widen"), "{widened}");
        let escaped = zendesk
            .resolve(&settings(&[("subdomain", "evil.example/x")]))
            .unwrap_err();
        assert!(escaped.contains("becomes"), "{escaped}");

        let imap = HostTemplate::parse("{host}:{port|993}").unwrap();
        assert_eq!(
            imap.resolve(&settings(&[("host", "imap.example.org")]))
                .unwrap(),
            Some(pattern("imap.example.org:993"))
        );
        assert_eq!(
            imap.resolve(&settings(&[("host", "127.0.0.1"), ("port", "1143")]))
                .unwrap(),
            Some(pattern("127.0.0.1:1143"))
        );

        let stripe = HostTemplate::parse("{base_url|https://api.stripe.com}").unwrap();
        assert_eq!(
            stripe.resolve(&settings(&[])).unwrap(),
            Some(pattern("api.stripe.com:443"))
        );
        assert_eq!(
            stripe
                .resolve(&settings(&[("base_url", "http://127.0.0.1:4010/v1")]))
                .unwrap(),
            Some(pattern("127.0.0.1:4010"))
        );
        assert_eq!(
            stripe
                .resolve(&settings(&[("base_url", "http://[::1]:9/")]))
                .unwrap(),
            Some(pattern("[::1]:9"))
        );
        let inside = HostTemplate::parse("api.{region}.example.com")
            .unwrap()
            .resolve(&settings(&[("region", "https://x.example")]))
            .unwrap_err();
        assert!(inside.contains("holds a URL"), "{inside}");

        for bad in [
            "{subdomain.zendesk.com",
            "x}.example",
            "{}.example",
            "{Bad}.example",
            "{a} b",
        ] {
            assert!(HostTemplate::parse(bad).is_err(), "{bad:?}");
        }
        // A plain pattern is a template without placeholders.
        assert_eq!(
            HostTemplate::parse("api.stripe.com")
                .unwrap()
                .resolve(&settings(&[]))
                .unwrap(),
            Some(pattern("api.stripe.com"))
        );
    }
}
