//! Staff sign-in with OpenID Connect: the providers `[[sign_in]]` configures, and the
//! two halves of the authorization code flow (with PKCE and a nonce) through the
//! `openidconnect` crate — where to send the person, and what the provider says about
//! them when they come back: the ID token checked against the provider's published
//! keys, issuer, audience, expiry and the nonce, and their email and whether the
//! provider verified it (from the ID token, or the userinfo endpoint when the token
//! leaves it out, as providers may for the code flow).
//!
//! Which member of staff that is — by verified email, active only — is the web
//! layer's decision (`web::session`); this module knows no store.

use crate::config::OidcSignInConfig;
use openidconnect::core::{CoreClient, CoreProviderMetadata, CoreResponseType};
use openidconnect::{
    AuthType, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse, reqwest,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// How long a provider's discovery document (and so its signing keys) is trusted
/// before it is read again; a key it does not know triggers a reading at once.
const DISCOVERY_TTL_SECONDS: u64 = 3600;
/// How long one call to a provider may take.
const PROVIDER_TIMEOUT_MS: u64 = 15_000;

/// Why signing in through a provider failed. Each says what happened, never a token.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// No such provider is configured.
    #[error("there is no sign-in provider `{0}`")]
    Unknown(String),
    /// The provider could not be reached or answered nonsense; worth trying again.
    #[error("the sign-in provider could not be reached: {0}")]
    Unavailable(String),
    /// The provider refused (a bad code, a client it does not know).
    #[error("the sign-in provider refused: {0}")]
    Refused(String),
    /// What came back does not prove who the person is (signature, issuer, audience,
    /// expiry or nonce).
    #[error("the sign-in provider's answer does not check out: {0}")]
    Untrusted(String),
}

/// What a provider vouches for about the person who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Their subject at the provider.
    pub subject: String,
    /// Their email address, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider says it verified that address.
    pub email_verified: bool,
}

/// Where to send the person, and what to keep until they come back.
#[derive(Debug)]
pub struct Started {
    /// The provider's authorization URL.
    pub url: String,
    /// The `state` it carries.
    pub state: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier that redeems the code.
    pub pkce_verifier: String,
}

/// One configured provider, with its discovery document cached.
#[derive(Debug)]
struct SignInProvider {
    config: OidcSignInConfig,
    discovered: Mutex<Option<(CoreProviderMetadata, Instant)>>,
}

/// The sign-in providers of this deployment.
#[derive(Debug, Clone, Default)]
pub struct SignInProviders {
    providers: BTreeMap<String, Arc<SignInProvider>>,
    http: Option<reqwest::Client>,
}

impl SignInProviders {
    /// The providers `configs` names (nothing is fetched until someone signs in).
    pub fn new(configs: &[OidcSignInConfig]) -> anyhow::Result<SignInProviders> {
        let http = reqwest::Client::builder()
            // Following redirects would let a provider's answer point us elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(PROVIDER_TIMEOUT_MS))
            .build()?;
        Ok(SignInProviders {
            providers: configs
                .iter()
                .map(|config| {
                    (
                        config.id.clone(),
                        Arc::new(SignInProvider {
                            config: config.clone(),
                            discovered: Mutex::new(None),
                        }),
                    )
                })
                .collect(),
            http: Some(http),
        })
    }

    /// The configured providers, as the sign-in page lists them.
    pub fn configured(&self) -> impl Iterator<Item = &OidcSignInConfig> {
        self.providers.values().map(|provider| &provider.config)
    }

    /// A provider's configuration.
    pub fn config(&self, id: &str) -> Result<&OidcSignInConfig, SignInError> {
        self.provider(id).map(|provider| &provider.config)
    }

    fn provider(&self, id: &str) -> Result<&Arc<SignInProvider>, SignInError> {
        self.providers
            .get(id)
            .ok_or_else(|| SignInError::Unknown(id.to_owned()))
    }

    fn http(&self) -> Result<&reqwest::Client, SignInError> {
        self.http
            .as_ref()
            .ok_or_else(|| SignInError::Unavailable("no HTTP client".into()))
    }

    /// The provider's discovery document: cached, or read again when it is older
    /// than [`DISCOVERY_TTL_SECONDS`] or `fresh` asks for it.
    async fn metadata(
        &self,
        provider: &SignInProvider,
        fresh: bool,
    ) -> Result<CoreProviderMetadata, SignInError> {
        let mut cached = provider.discovered.lock().await;
        if let Some((metadata, at)) = cached.as_ref()
            && !fresh
            && at.elapsed() < Duration::from_secs(DISCOVERY_TTL_SECONDS)
        {
            return Ok(metadata.clone());
        }
        let issuer = IssuerUrl::new(provider.config.issuer.clone())
            .map_err(|error| SignInError::Unavailable(format!("issuer: {error}")))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, self.http()?)
            .await
            .map_err(|error| SignInError::Unavailable(error_chain(&error)))?;
        // Every endpoint a person or token travels through must be protected.
        for (what, url) in [
            (
                "authorization",
                Some(metadata.authorization_endpoint().url()),
            ),
            ("token", metadata.token_endpoint().map(|url| url.url())),
            (
                "userinfo",
                metadata.userinfo_endpoint().map(|url| url.url()),
            ),
        ] {
            if let Some(url) = url
                && !crate::config::secure_or_loopback(url)
            {
                return Err(SignInError::Untrusted(format!(
                    "its {what} endpoint {url} is not https"
                )));
            }
        }
        *cached = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    fn client(
        config: &OidcSignInConfig,
        metadata: CoreProviderMetadata,
    ) -> Result<
        CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        SignInError,
    > {
        // The client authenticates as the provider takes it: HTTP Basic unless it
        // only takes the secret in the body.
        let basic = metadata
            .token_endpoint_auth_methods_supported()
            .is_none_or(|methods| {
                methods
                    .iter()
                    .any(|method| method.as_ref() == "client_secret_basic")
            });
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(
            RedirectUrl::new(config.redirect_uri.clone())
                .map_err(|error| SignInError::Unavailable(format!("redirect_uri: {error}")))?,
        )
        .set_auth_type(if basic {
            AuthType::BasicAuth
        } else {
            AuthType::RequestBody
        });
        Ok(client)
    }

    /// Starts signing in through provider `id`: where to send the person, with a
    /// fresh `state`, nonce and PKCE challenge, asking for their email.
    pub async fn begin(&self, id: &str) -> Result<Started, SignInError> {
        let provider = self.provider(id)?;
        let metadata = self.metadata(provider, false).await?;
        let client = Self::client(&provider.config, metadata)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok(Started {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Finishes signing in through provider `id` with the `code` it sent back: redeems
    /// it (with the PKCE verifier), checks the ID token (signature, issuer, audience,
    /// expiry, `nonce`) and says who the person is.
    pub async fn finish(
        &self,
        id: &str,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<Identity, SignInError> {
        let provider = self.provider(id)?;
        let http = self.http()?;
        let metadata = self.metadata(provider, false).await?;
        let client = Self::client(&provider.config, metadata)?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|error| SignInError::Unavailable(error.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(http)
            .await
            .map_err(|error| match &error {
                openidconnect::RequestTokenError::ServerResponse(response) => {
                    SignInError::Refused(response.to_string())
                }
                other => SignInError::Unavailable(error_chain(other)),
            })?;
        let id_token = tokens.id_token().ok_or_else(|| {
            SignInError::Untrusted(
                "it sent no ID token: is `openid` among the client's scopes?".into(),
            )
        })?;
        let nonce = Nonce::new(nonce.to_owned());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            Err(first) => {
                // Perhaps the provider rotated its keys since the document was read.
                let metadata = self.metadata(provider, true).await?;
                let client = Self::client(&provider.config, metadata)?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|_| SignInError::Untrusted(error_chain(&first)))?
                    .clone()
            }
        };
        let subject = claims.subject().clone();
        let mut identity = Identity {
            subject: subject.to_string(),
            email: claims.email().map(|email| email.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
        };
        if identity.email.is_none() {
            // The code flow may leave claims to the userinfo endpoint.
            let request = client
                .user_info(tokens.access_token().clone(), Some(subject))
                .map_err(|_| {
                    SignInError::Untrusted(
                        "the ID token carries no email and the provider has no userinfo endpoint"
                            .into(),
                    )
                })?;
            let info: openidconnect::core::CoreUserInfoClaims =
                request
                    .request_async(http)
                    .await
                    .map_err(|error| SignInError::Unavailable(error_chain(&error)))?;
            identity.email = info.email().map(|email| email.to_string());
            identity.email_verified = info.email_verified().unwrap_or(false);
        }
        Ok(identity)
    }
}

/// An error with its causes, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
