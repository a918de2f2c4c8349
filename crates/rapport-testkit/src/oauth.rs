//! A real OAuth 2.0 / OpenID Connect provider on loopback for tests: panva's
//! `oidc-provider` from npm (`oauth/provider.mjs`, installed by `npm ci` in
//! `crates/rapport-testkit/oauth`, which `.ci/run` does), configured with PKCE required,
//! rotating refresh tokens, revocation and short access tokens. [`Provider::authorize`]
//! plays the person: it follows the authorization URL through the provider's login and
//! consent pages, as a browser would post them, to the redirect carrying the code. Its
//! endpoints are at `/oauth/authorize`, `/oauth/token` and `/oauth/revoke`, where the
//! `example-oauth` connector declares them (`{base_url}/oauth/...`).
//!
//! Without Node.js or the installed package, [`Provider::start`] says the test was
//! skipped and returns `None` — and panics under `CI=true`, where skipping is a failure.

use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The client the provider knows.
pub const CLIENT_ID: &str = "rapport";
/// Its secret.
pub const CLIENT_SECRET: &str = "rapport-test-secret";
/// Where [`Provider::config_toml`] reads the client secret from.
pub const CLIENT_SECRET_ENV: &str = "ACTIVITY_CLIENT_SECRET";
/// The client rapport's staff sign-in uses (OpenID Connect, HTTP Basic).
pub const SIGN_IN_CLIENT_ID: &str = "rapport-signin";
/// Its secret.
pub const SIGN_IN_CLIENT_SECRET: &str = "rapport-signin-secret";
/// The client a mail server introspects tokens as (RFC 7662).
pub const INTROSPECTION_CLIENT_ID: &str = "dovecot";
/// Its secret.
pub const INTROSPECTION_CLIENT_SECRET: &str = "dovecot-test-secret";

/// What the provider did with refresh tokens, as it reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefreshLog {
    /// Refresh grants it answered with new tokens (rotating the refresh token).
    pub granted: u64,
    /// Refresh grants it refused (a spent or revoked refresh token: `invalid_grant`).
    pub refused: u64,
}

/// A running provider; stopped when dropped.
#[derive(Debug)]
pub struct Provider {
    child: Child,
    refreshes: std::sync::Arc<std::sync::Mutex<RefreshLog>>,
    /// Its issuer, `http://127.0.0.1:<port>`.
    pub issuer: String,
    /// The one redirect URI its client may use.
    pub redirect_uri: String,
}

fn directory() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oauth")
}

impl Provider {
    /// Starts a provider whose client redirects to `redirect_uri` and whose access
    /// tokens live `access_ttl_s` seconds.
    pub async fn start(redirect_uri: &str, access_ttl_s: u64) -> Option<Provider> {
        let installed = directory().join("node_modules/oidc-provider/package.json");
        let node = std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if !node || !installed.is_file() {
            let why = format!(
                "the OAuth provider needs Node.js and `npm ci --prefix {}` (node found: {node}, package installed: {})",
                directory().display(),
                installed.is_file()
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{why}, and CI=true: .ci/run installs it"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut child = Command::new("node")
            .arg(directory().join("provider.mjs"))
            .arg(port.to_string())
            .arg(redirect_uri)
            .arg(access_ttl_s.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the OAuth provider");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(issuer) = line.strip_prefix("ready ") {
                    return Some(issuer.to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("the OAuth provider starts within 30 s");
        // Keep reading what it reports about refresh grants.
        let refreshes = std::sync::Arc::new(std::sync::Mutex::new(RefreshLog::default()));
        let log = std::sync::Arc::clone(&refreshes);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                if line == "refresh granted" {
                    log.granted += 1;
                } else if line.starts_with("refresh refused") {
                    log.refused += 1;
                }
            }
        });
        Some(Provider {
            child,
            refreshes,
            issuer: ready,
            redirect_uri: redirect_uri.to_owned(),
        })
    }

    /// A `rapport.toml` serving from `sqlite://rapport.db` with one connector people
    /// connect: `activity`, the `example-oauth` plugin (copied beside the file as
    /// `example-oauth.wasm`), person-scoped, against this provider, its client secret read
    /// from [`CLIENT_SECRET_ENV`].
    pub fn config_toml(&self) -> String {
        self.config_toml_with("scope = \"person\"")
    }

    /// [`Provider::config_toml`] with `extra` lines on the connector instead of its
    /// person scope (e.g. `scope = "org"` and the grants to reach the provider's API).
    pub fn config_toml_with(&self, extra: &str) -> String {
        format!(
            r#"
[server]
database = "sqlite://rapport.db"

[[connector]]
id = "activity"
plugin = "example-oauth.wasm"
{extra}
settings = {{ base_url = "{issuer}" }}
oauth = {{ client_id = "{CLIENT_ID}", client_secret = {{ env = "{CLIENT_SECRET_ENV}" }}, redirect_uri = "{redirect}" }}
"#,
            issuer = self.issuer,
            redirect = self.redirect_uri,
        )
    }

    /// Its authorization endpoint.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/oauth/authorize", self.issuer)
    }

    /// Its token endpoint.
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.issuer)
    }

    /// Its introspection endpoint (RFC 7662), for a mail server that checks tokens,
    /// with the client it takes.
    pub fn introspection(&self) -> crate::dovecot::TokenIntrospection {
        crate::dovecot::TokenIntrospection {
            url: format!("{}/oauth/introspect", self.issuer),
            client_id: INTROSPECTION_CLIENT_ID.into(),
            client_secret: INTROSPECTION_CLIENT_SECRET.into(),
        }
    }

    /// The refresh grants it has answered so far.
    pub fn refreshes(&self) -> RefreshLog {
        *self.refreshes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Its revocation endpoint (RFC 7009).
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/oauth/revoke", self.issuer)
    }

    /// Follows `authorization_url` as the person `login` would: signs in, consents,
    /// and returns the URL the provider redirects back to — the connections callback,
    /// or staff sign-in's — with `code` and `state`, or `error`.
    pub async fn authorize(&self, authorization_url: &str, login: &str) -> String {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut url = authorization_url.to_owned();
        for _ in 0..12 {
            if !url.starts_with(&format!("{}/", self.issuer)) {
                return url;
            }
            let response = browser.get(&url).send().await.expect("reach the provider");
            if let Some(next) = location(&response, &self.issuer) {
                url = next;
                continue;
            }
            let page = response.text().await.unwrap();
            let action = between(&page, "action=\"", "\"").expect("a login or consent form");
            let prompt = between(&page, "name=\"prompt\" value=\"", "\"").unwrap_or_default();
            let mut form = vec![("prompt".to_owned(), prompt.clone())];
            if prompt == "login" {
                form.push(("login".into(), login.to_owned()));
                form.push(("password".into(), "any".into()));
            }
            let response = browser.post(&action).form(&form).send().await.unwrap();
            url = location(&response, &self.issuer).expect("the form redirects");
        }
        panic!("the authorization did not come back from {}", self.issuer);
    }

    /// Stops it.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn location(response: &reqwest::Response, issuer: &str) -> Option<String> {
    let location = response.headers().get("location")?.to_str().ok()?;
    Some(if location.starts_with('/') {
        format!("{issuer}{location}")
    } else {
        location.to_owned()
    })
}

fn between(text: &str, start: &str, end: &str) -> Option<String> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(text[from..to].to_owned())
}
