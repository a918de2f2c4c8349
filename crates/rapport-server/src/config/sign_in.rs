//! `[[sign_in]]`: the OpenID Connect providers staff may sign in with (Google,
//! Microsoft Entra ID, any issuer that publishes a discovery document), next to
//! one-time links and passwords.

use super::{Problems, RawSecret, client_secret};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use toml::Spanned;

/// The path of the callback every sign-in `redirect_uri` must name.
pub const SIGN_IN_CALLBACK_PATH: &str = "/signin/oidc/callback";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSignIn {
    id: Spanned<String>,
    #[serde(default)]
    name: Option<String>,
    issuer: Spanned<String>,
    client_id: Spanned<String>,
    #[serde(default)]
    client_secret: Option<Spanned<RawSecret>>,
    redirect_uri: Spanned<String>,
    #[serde(default)]
    allowed_domains: Vec<Spanned<String>>,
    #[serde(default = "verified_by_default")]
    require_verified_email: bool,
}

fn verified_by_default() -> bool {
    true
}

/// One OpenID Connect provider staff may sign in with.
#[derive(Clone, PartialEq, Eq)]
pub struct OidcSignInConfig {
    /// Its id, in URLs (`/signin/oidc/{id}`).
    pub id: String,
    /// What the sign-in page calls it ("Google").
    pub name: String,
    /// The issuer, whose `/.well-known/openid-configuration` says the rest.
    pub issuer: String,
    /// This deployment's client id there.
    pub client_id: String,
    /// Its client secret (none for a public client).
    pub client_secret: Option<String>,
    /// Where the provider sends people back: this deployment's `/signin/oidc/callback`.
    pub redirect_uri: String,
    /// Email domains that may sign in this way (empty: any staff member's).
    pub allowed_domains: Vec<String>,
    /// Whether the provider must say the email is verified (`email_verified`).
    /// Microsoft Entra ID does not send that claim: turn it off only for an issuer
    /// whose addresses the organisation itself assigns (one tenant).
    pub require_verified_email: bool,
}

impl fmt::Debug for OidcSignInConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcSignInConfig")
            .field("id", &self.id)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("redirect_uri", &self.redirect_uri)
            .field("allowed_domains", &self.allowed_domains)
            .field("require_verified_email", &self.require_verified_email)
            .finish()
    }
}

/// Whether `url` may carry an OpenID Connect exchange: https, or plain http to a
/// loopback host (a provider on this machine, as in tests).
pub(crate) fn secure_or_loopback(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(name)) => name == "localhost",
            None => false,
        },
        _ => false,
    }
}

pub(super) fn check_sign_ins(
    raws: Vec<RawSignIn>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems<'_>,
) -> Vec<OidcSignInConfig> {
    let mut seen = BTreeSet::new();
    let mut checked = Vec::new();
    for raw in raws {
        let before = problems.found.len();
        let id = raw.id.get_ref().clone();
        let id_ok = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            problems.add(
                &raw.id.span(),
                format!(
                    "sign_in id `{id}` must be 1 to 32 lower-case letters, digits or `-` (it appears in the sign-in URL)"
                ),
            );
        } else if !seen.insert(id.clone()) {
            problems.add(
                &raw.id.span(),
                format!("sign_in id `{id}` is used twice; give each provider its own id"),
            );
        }
        match url::Url::parse(raw.issuer.get_ref()) {
            Ok(issuer) if secure_or_loopback(&issuer) => {}
            _ => problems.add(
                &raw.issuer.span(),
                format!(
                    "issuer `{}` must be the provider's https URL, e.g. https://accounts.google.com or https://login.microsoftonline.com/<tenant>/v2.0",
                    raw.issuer.get_ref()
                ),
            ),
        }
        if raw.client_id.get_ref().trim().is_empty() {
            problems.add(
                &raw.client_id.span(),
                "client_id is empty: give the client id the provider issued",
            );
        }
        let secret = raw.client_secret.as_ref().and_then(|secret| {
            client_secret(
                Some(secret.get_ref()),
                "client_secret",
                true,
                base,
                env,
                &secret.span(),
                problems,
            )
        });
        match url::Url::parse(raw.redirect_uri.get_ref()) {
            Ok(parsed)
                if parsed.path() == SIGN_IN_CALLBACK_PATH
                    && matches!(parsed.scheme(), "https" | "http") => {}
            _ => problems.add(
                &raw.redirect_uri.span(),
                format!(
                    "redirect_uri `{}` must be this deployment's address followed by {SIGN_IN_CALLBACK_PATH} (e.g. https://rapport.example.com{SIGN_IN_CALLBACK_PATH}), registered as is at the provider",
                    raw.redirect_uri.get_ref()
                ),
            ),
        }
        let mut allowed_domains = Vec::new();
        for domain in &raw.allowed_domains {
            match rapport_core::account::Domain::parse(domain.get_ref()) {
                Ok(parsed) => allowed_domains.push(parsed.to_string()),
                Err(error) => problems.add(&domain.span(), format!("allowed_domains: {error}")),
            }
        }
        if problems.found.len() == before {
            checked.push(OidcSignInConfig {
                name: raw.name.clone().unwrap_or_else(|| id.clone()),
                id,
                issuer: raw.issuer.get_ref().clone(),
                client_id: raw.client_id.get_ref().clone(),
                client_secret: secret,
                redirect_uri: raw.redirect_uri.get_ref().clone(),
                allowed_domains,
                require_verified_email: raw.require_verified_email,
            });
        }
    }
    checked
}
