//! The OAuth 2.0 client side of connections (RFC 6749, with PKCE, RFC 7636, and
//! revocation, RFC 7009), through the `oauth2` crate: exchanging an authorization code
//! for tokens, refreshing them, revoking them. It knows endpoints and client
//! credentials, never the store; `connections` decides when to call it.

use chrono::{DateTime, Utc};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use std::fmt;
use std::time::Duration;

/// How long one call to a provider may take.
const PROVIDER_TIMEOUT_MS: u64 = 20_000;

/// A provider as one configured connector reaches it: its endpoints (the manifest's,
/// filled in from settings) and this deployment's client registration.
#[derive(Clone)]
pub struct OAuthProvider {
    /// Where the person grants access.
    pub authorization_endpoint: String,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: String,
    /// Where tokens are revoked, if the provider has it.
    pub revocation_endpoint: Option<String>,
    /// The deployment's client id at the provider.
    pub client_id: String,
    /// Its client secret (none for a public client).
    pub client_secret: Option<String>,
    /// Where the provider sends the person back.
    pub redirect_uri: String,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// Extra authorization parameters.
    pub extra_parameters: Vec<(String, String)>,
}

impl fmt::Debug for OAuthProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthProvider")
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// Tokens a provider issued. `Debug` shows no token.
#[derive(Clone)]
pub struct IssuedTokens {
    /// The access token.
    pub access_token: String,
    /// How it is presented (`Bearer`).
    pub token_type: String,
    /// When it expires, if the provider said.
    pub expires_at: Option<DateTime<Utc>>,
    /// A refresh token: a new one when the provider rotates them.
    pub refresh_token: Option<String>,
    /// The scopes granted, when the provider said.
    pub scopes: Option<Vec<String>>,
}

impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Why a provider call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The grant is gone (`invalid_grant`: revoked, expired, reused) or the client is
    /// refused: only the person connecting again helps.
    #[error("the provider refused the grant: {0}")]
    Refused(String),
    /// The provider could not be reached or failed; worth retrying later.
    #[error("the provider could not be reached: {0}")]
    Unavailable(String),
    /// The configuration is wrong (a malformed endpoint).
    #[error("OAuth configuration problem: {0}")]
    Config(String),
}

/// Where to send the person, and what to keep until they come back.
#[derive(Debug)]
pub struct AuthorizationRequest {
    /// The provider's authorization URL with every parameter.
    pub url: String,
    /// The `state` it carries (bind it to the person's session).
    pub state: String,
    /// The PKCE verifier, to present with the code. Keep it secret.
    pub pkce_verifier: String,
}

/// The OAuth client for one provider.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    provider: OAuthProvider,
    http: reqwest::Client,
}

impl OAuthClient {
    /// A client for `provider`. Redirects are not followed (RFC 6749 section 5: a token
    /// endpoint answers directly).
    pub fn new(provider: OAuthProvider) -> Result<OAuthClient, OAuthError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(PROVIDER_TIMEOUT_MS))
            .build()
            .map_err(|error| OAuthError::Config(format!("the HTTP client: {error}")))?;
        Ok(OAuthClient { provider, http })
    }

    /// The provider it talks to.
    pub fn provider(&self) -> &OAuthProvider {
        &self.provider
    }

    fn url<T>(
        &self,
        what: &str,
        url: &str,
        make: fn(String) -> Result<T, url::ParseError>,
    ) -> Result<T, OAuthError> {
        make(url.to_owned())
            .map_err(|error| OAuthError::Config(format!("the {what} `{url}`: {error}")))
    }

    /// The authorization URL for a new connection: a fresh `state` and, always, a
    /// PKCE S256 challenge.
    pub fn authorization_request(&self) -> Result<AuthorizationRequest, OAuthError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = BasicClient::new(ClientId::new(self.provider.client_id.clone()))
            .set_auth_uri(self.url(
                "authorization endpoint",
                &self.provider.authorization_endpoint,
                AuthUrl::new,
            )?)
            .set_redirect_uri(self.url(
                "redirect URI",
                &self.provider.redirect_uri,
                RedirectUrl::new,
            )?);
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge)
            .add_scopes(self.provider.scopes.iter().cloned().map(Scope::new));
        for (key, value) in &self.provider.extra_parameters {
            request = request.add_extra_param(key.clone(), value.clone());
        }
        let (url, state) = request.url();
        Ok(AuthorizationRequest {
            url: url.to_string(),
            state: state.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code the provider sent back for tokens.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
    ) -> Result<IssuedTokens, OAuthError> {
        let client = self.token_client()?.set_redirect_uri(self.url(
            "redirect URI",
            &self.provider.redirect_uri,
            RedirectUrl::new,
        )?);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(issued(&response))
    }

    /// Refreshes with `refresh_token`. A provider that rotates refresh tokens returns
    /// a new one, and the old one is spent.
    pub async fn refresh(&self, refresh_token: &str) -> Result<IssuedTokens, OAuthError> {
        let response = self
            .token_client()?
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(issued(&response))
    }

    /// Revokes a refresh token (and with it the grant, at most providers), RFC 7009.
    /// Returns `false` when the provider has no revocation endpoint.
    pub async fn revoke(&self, refresh_token: &str) -> Result<bool, OAuthError> {
        let Some(endpoint) = &self.provider.revocation_endpoint else {
            return Ok(false);
        };
        let endpoint = require_tls(endpoint, "revocation endpoint")?;
        let mut form = vec![
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
            ("client_id", self.provider.client_id.as_str()),
        ];
        if let Some(secret) = &self.provider.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let response = self
            .http
            .post(endpoint)
            .form(&form)
            .send()
            .await
            .map_err(|error| OAuthError::Unavailable(error.without_url().to_string()))?;
        let status = response.status();
        // RFC 7009 section 2.2: 200 whether or not the token was valid.
        if status.is_success() {
            return Ok(true);
        }
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        if status.is_server_error() || status.as_u16() == 429 {
            Err(OAuthError::Unavailable(format!("HTTP {status}: {body}")))
        } else {
            Err(OAuthError::Refused(format!("HTTP {status}: {body}")))
        }
    }

    #[allow(clippy::type_complexity)]
    fn token_client(
        &self,
    ) -> Result<
        BasicClient<
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        OAuthError,
    > {
        let mut client = BasicClient::new(ClientId::new(self.provider.client_id.clone()))
            .set_token_uri(self.url(
                "token endpoint",
                &self.provider.token_endpoint,
                TokenUrl::new,
            )?)
            // Credentials in the body: every provider we meet takes them there.
            .set_auth_type(AuthType::RequestBody);
        if let Some(secret) = &self.provider.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
        }
        Ok(client)
    }
}

/// OAuth endpoints are https (tokens cross them), except on loopback, where a test or
/// a local provider runs.
fn require_tls<'a>(url: &'a str, what: &str) -> Result<&'a str, OAuthError> {
    let parsed = url::Url::parse(url)
        .map_err(|error| OAuthError::Config(format!("the {what} `{url}`: {error}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(address)) => address.is_loopback(),
        Some(url::Host::Ipv6(address)) => address.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    match parsed.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(OAuthError::Config(format!(
            "the {what} `{url}` must be https (plain http only on loopback)"
        ))),
    }
}

fn issued(response: &oauth2::basic::BasicTokenResponse) -> IssuedTokens {
    IssuedTokens {
        access_token: response.access_token().secret().clone(),
        token_type: "Bearer".into(),
        expires_at: response.expires_in().and_then(|lifetime| {
            chrono::Duration::from_std(lifetime)
                .ok()
                .map(|lifetime| Utc::now() + lifetime)
        }),
        refresh_token: response.refresh_token().map(|token| token.secret().clone()),
        scopes: response
            .scopes()
            .map(|scopes| scopes.iter().map(|scope| scope.to_string()).collect()),
    }
}

fn token_error<RE: std::error::Error + 'static>(
    error: RequestTokenError<RE, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
) -> OAuthError {
    match error {
        RequestTokenError::ServerResponse(response) => match response.error() {
            BasicErrorResponseType::InvalidGrant
            | BasicErrorResponseType::InvalidClient
            | BasicErrorResponseType::UnauthorizedClient => {
                OAuthError::Refused(response.to_string())
            }
            _ => OAuthError::Unavailable(response.to_string()),
        },
        RequestTokenError::Request(error) => OAuthError::Unavailable(format!("{error}")),
        RequestTokenError::Parse(error, _) => OAuthError::Unavailable(format!(
            "the provider's answer is not a token response: {error}"
        )),
        RequestTokenError::Other(message) => OAuthError::Unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(token_endpoint: &str) -> OAuthProvider {
        OAuthProvider {
            authorization_endpoint: "https://accounts.example.com/o/oauth2/v2/auth".into(),
            token_endpoint: token_endpoint.into(),
            revocation_endpoint: None,
            client_id: "client".into(),
            client_secret: Some("hidden-client-secret".into()),
            redirect_uri: "https://rapport.example.com/connections/callback".into(),
            scopes: vec!["https://www.googleapis.com/auth/gmail.readonly".into()],
            extra_parameters: vec![("access_type".into(), "offline".into())],
        }
    }

    #[test]
    fn tokens_cross_only_tls_or_loopback() {
        assert!(require_tls("https://oauth2.googleapis.com/token", "token endpoint").is_ok());
        assert!(require_tls("http://127.0.0.1:8080/token", "token endpoint").is_ok());
        assert!(require_tls("http://[::1]:8080/token", "token endpoint").is_ok());
        assert!(require_tls("http://localhost/token", "token endpoint").is_ok());
        let refused = require_tls("http://oauth.example.com/token", "token endpoint").unwrap_err();
        assert!(refused.to_string().contains("must be https"), "{refused}");
        assert!(require_tls("ftp://127.0.0.1/token", "token endpoint").is_err());
        assert!(require_tls("not a url", "token endpoint").is_err());
    }

    #[test]
    fn an_authorization_request_carries_pkce_state_scopes_and_parameters() {
        let client = OAuthClient::new(provider("https://oauth2.googleapis.com/token")).unwrap();
        let request = client.authorization_request().unwrap();
        let url = url::Url::parse(&request.url).unwrap();
        let query: std::collections::BTreeMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(query["response_type"], "code");
        assert_eq!(query["client_id"], "client");
        assert_eq!(query["state"], request.state);
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["access_type"], "offline");
        assert_eq!(
            query["scope"],
            "https://www.googleapis.com/auth/gmail.readonly"
        );
        assert!(
            request.pkce_verifier.len() >= 43,
            "RFC 7636: 43 to 128 characters"
        );
        assert!(!request.url.contains(&request.pkce_verifier));
        // Two requests never share a state or a verifier.
        let other = client.authorization_request().unwrap();
        assert_ne!(other.state, request.state);
        assert_ne!(other.pkce_verifier, request.pkce_verifier);
        assert!(!format!("{client:?}").contains("hidden-client-secret"));
    }
}
