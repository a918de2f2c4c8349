//! rapport's IMAP connector: the mail of the people who talk to clients, as
//! `email.received` / `email.sent` events on the clients' timelines.
//!
//! Each sync logs in (TCP through `wasi:sockets`, limited by the host to the granted
//! `host:port`), and for each configured folder reads the messages whose UID is above
//! the one in the checkpoint, at most `messages_per_page` per call, each at most
//! `body_bytes_max` bytes. The checkpoint keeps, per folder, the UIDVALIDITY and the
//! last UID read. When a server changes a folder's UIDVALIDITY (its UIDs now mean other
//! messages), the folder is read again from the start; events are keyed by Message-ID
//! (or a content hash), so re-read messages update rather than duplicate.
//!
//! A message that cannot be read as mail is reported in the host's log and skipped; the
//! checkpoint moves past it, so one bad message never stalls a mailbox.
//!
//! It logs in with a password (`LOGIN`), or — when the operator registers an OAuth 2.0
//! client for it (Google Workspace and Microsoft 365 take nothing else) — with the
//! connection's access token over SASL XOAUTH2 or OAUTHBEARER (RFC 7628). The provider
//! is the operator's choice, so its endpoints and scopes are settings; as a
//! person-scoped connector each member of staff connects their own mailbox, which is
//! opened as the account they connected (or their own address).

use rapport_pdk::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};

pub mod imap;
/// The message mapping, shared with the Gmail and Outlook connectors.
pub use mail_events as message;
#[cfg(feature = "tls")]
mod tls;
#[cfg(not(feature = "tls"))]
#[path = "no_tls.rs"]
mod tls;
mod transport;

use imap::{ImapError, Session};
use message::{Envelope, Ourselves};

const MESSAGES_PER_PAGE_DEFAULT: u64 = 50;
const BODY_BYTES_DEFAULT: u64 = 256 * 1024;
const FOLDERS_DEFAULT: &str = "INBOX, Sent";

/// Per folder: which UIDs have been read.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderState {
    pub uid_validity: u32,
    pub last_uid: u32,
}

/// Where the next sync continues.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub folders: BTreeMap<String, FolderState>,
}

/// How the session logs in.
pub enum Login {
    /// `LOGIN` with the mailbox password.
    Password(String),
    /// `AUTHENTICATE` with the connection's OAuth 2.0 access token.
    OAuth(Mechanism),
}

/// The SASL mechanism that carries the access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// Google's and Microsoft's own (`user=...^Aauth=Bearer ...`).
    Xoauth2,
    /// RFC 7628's standard one.
    OauthBearer,
}

impl Mechanism {
    fn parse(setting: Option<&str>) -> Result<Mechanism, ConnectorError> {
        match setting.map(str::trim) {
            None | Some("xoauth2") => Ok(Mechanism::Xoauth2),
            Some("oauthbearer") => Ok(Mechanism::OauthBearer),
            Some(other) => Err(ConnectorError::Config(format!(
                "oauth_mechanism `{other}` is not one of xoauth2 (Google, Microsoft), oauthbearer (RFC 7628)"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mechanism::Xoauth2 => "XOAUTH2",
            Mechanism::OauthBearer => "OAUTHBEARER",
        }
    }
}

/// The connector's settings, validated.
pub struct Settings {
    pub host: String,
    pub port: u16,
    pub security: transport::Security,
    pub username: String,
    pub login: Login,
    pub folders: Vec<String>,
    /// Whether `folders` is the default (then a missing `Sent` is skipped, not an error).
    pub folders_default: bool,
    pub ourselves: Ourselves,
    pub messages_per_page: usize,
    pub body_bytes_max: usize,
    pub ca_certificate: Option<String>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Result<Settings, ConnectorError> {
        let security = transport::Security::parse(config.get("security"))?;
        let port = match config.get("port") {
            Some(port) => port.parse::<u16>().map_err(|_| {
                ConnectorError::Config(format!("port `{port}` is not a TCP port number"))
            })?,
            None => security.default_port(),
        };
        let folders_setting = config.get("folders");
        let folders: Vec<String> = folders_setting
            .unwrap_or(FOLDERS_DEFAULT)
            .split(',')
            .map(|folder| folder.trim().to_owned())
            .filter(|folder| !folder.is_empty())
            .collect();
        if folders.is_empty() {
            return Err(ConnectorError::Config(
                "folders lists no folder; name at least one, e.g. `INBOX, Sent`".into(),
            ));
        }
        if let Some(folder) = folders.iter().find(|folder| !folder.is_ascii()) {
            return Err(ConnectorError::Config(format!(
                "folder `{folder}` is not ASCII; give its IMAP name (modified UTF-7, e.g. `Entw&APw-rfe`)"
            )));
        }
        // On a connection, the mailbox is the account its owner connected (or, when the
        // provider did not say, their own address), unless a username is configured.
        let connection = config.connection();
        let username = match config.get("username") {
            Some(username) => username.to_owned(),
            None => connection
                .and_then(|c| c.provider_account.clone().or_else(|| c.owner_email.clone()))
                .ok_or_else(|| {
                    ConnectorError::Config("the setting `username` is required".into())
                })?,
        };
        let login = match (connection, config.secret("password")) {
            (Some(_), _) => Login::OAuth(Mechanism::parse(config.get("oauth_mechanism"))?),
            (None, Some(password)) if !password.is_empty() => Login::Password(password.to_owned()),
            (None, _) => {
                return Err(ConnectorError::Config(
                    "the secret `password` is required, unless this connector signs in with OAuth 2.0 (register a client for it: `oauth = { ... }` in its [[connector]])".into(),
                ));
            }
        };
        let mut ourselves =
            Ourselves::parse(config.get("own_addresses"), config.get("own_domains"));
        if username.contains('@') {
            ourselves.addresses.push(username.to_ascii_lowercase());
        }
        Ok(Settings {
            host: config.require("host")?.to_owned(),
            port,
            security,
            username,
            login,
            folders,
            folders_default: folders_setting.is_none(),
            ourselves,
            messages_per_page: usize::try_from(config.number(
                "messages_per_page",
                MESSAGES_PER_PAGE_DEFAULT,
                1..=500,
            )?)
            .expect("at most 500"),
            body_bytes_max: usize::try_from(config.number(
                "body_bytes_max",
                BODY_BYTES_DEFAULT,
                1024..=imap::LITERAL_BYTES_MAX as u64,
            )?)
            .expect("at most LITERAL_BYTES_MAX"),
            ca_certificate: config.get("ca_certificate").map(str::to_owned),
        })
    }
}

struct EmailImap;

/// What the manifest says this connector is; a build without TLS says so first, so
/// `rapport plugin check` and `config check` show it before anyone relies on it.
#[cfg(feature = "tls")]
const DESCRIPTION: &str = "Email over IMAP: messages received from and sent to clients, threaded, with participants matched to accounts";
#[cfg(not(feature = "tls"))]
const DESCRIPTION: &str = "Email over IMAP, built without TLS: only `security = \"plaintext\"` works (rebuild with the `tls` feature). Messages received from and sent to clients, threaded, with participants matched to accounts";

impl Connector for EmailImap {
    fn describe() -> Manifest {
        manifest("email-imap", env!("CARGO_PKG_VERSION"), DESCRIPTION)
        .emits(&["email.received", "email.sent"])
        .setting("host", "The IMAP server, e.g. imap.example.com", true)
        .setting(
            "port",
            "The IMAP port (default 993 for tls, 143 for starttls and plaintext)",
            false,
        )
        .setting(
            "security",
            "tls (default), starttls, or plaintext (only for a server on a trusted network, e.g. tests)",
            false,
        )
        .setting(
            "ca_certificate",
            "A PEM CA certificate to trust besides the public roots (a private CA)",
            false,
        )
        .setting(
            "username",
            "The mailbox login (with OAuth: by default the account the person connected, or their own address)",
            false,
        )
        .setting("folders", "Folders to read, comma-separated (default `INBOX, Sent`)", false)
        .setting(
            "own_addresses",
            "Our addresses, comma-separated: mail from them is email.sent (the username counts when it is an address)",
            false,
        )
        .setting(
            "own_domains",
            "Our domains, comma-separated: mail from them is email.sent",
            false,
        )
        .setting(
            "messages_per_page",
            "Messages read per call, 1 to 500 (default 50)",
            false,
        )
        .setting(
            "body_bytes_max",
            "Bytes of each message read, headers included (default 262144)",
            false,
        )
        .secret(
            "password",
            "The mailbox password (not with OAuth)",
            false,
        )
        .setting(
            "oauth_authorization_endpoint",
            "With OAuth: the provider's authorization endpoint, e.g. https://accounts.google.com/o/oauth2/v2/auth or https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
            false,
        )
        .setting(
            "oauth_token_endpoint",
            "With OAuth: the provider's token endpoint, e.g. https://oauth2.googleapis.com/token or https://login.microsoftonline.com/common/oauth2/v2.0/token",
            false,
        )
        .setting(
            "oauth_scopes",
            "With OAuth: the scopes to ask for, space-separated, e.g. `https://mail.google.com/` or `https://outlook.office.com/IMAP.AccessAsUser.All offline_access`",
            false,
        )
        .setting(
            "oauth_mechanism",
            "With OAuth: xoauth2 (default; Google, Microsoft) or oauthbearer (RFC 7628)",
            false,
        )
        // The configured server, on the configured port or the default of its
        // security mode (993 for tls, 143 for starttls and plaintext).
        .needs_host("{host}:{port|993}")
        .needs_host("{host}:{port|143}")
        // Optional: a [[connector]] with an OAuth client signs in with the connection's
        // token, one without with its password.
        .oauth2(
            oauth2("{oauth_authorization_endpoint}", "{oauth_token_endpoint}")
                .scopes(&["{oauth_scopes}"])
                .pkce()
                // A refresh token, so the mailbox keeps syncing: Google issues one only
                // for access_type=offline with consent asked; providers ignore what
                // they do not know (Microsoft needs the offline_access scope).
                .parameter("access_type", "offline")
                .parameter("prompt", "consent")
                .token_for("{host}:{port|993}")
                .token_for("{host}:{port|143}")
                .optional(),
        )
        .into()
    }

    fn check(config: Config) -> Result<(), ConnectorError> {
        let settings = Settings::from_config(&config)?;
        let mut session = open(&settings)?;
        for folder in &settings.folders {
            match session.examine(folder) {
                Ok(_) => {}
                Err(ImapError::Refused { .. }) if settings.folders_default && folder != "INBOX" => {
                }
                Err(error) => return Err(folder_error(folder, error)),
            }
        }
        session.logout();
        Ok(())
    }

    fn sync(config: Config, checkpoint: Option<String>) -> Result<Page, ConnectorError> {
        let settings = Settings::from_config(&config)?;
        let mut state: Checkpoint = checkpoint::load(checkpoint.as_deref())?.unwrap_or_default();
        let mut session = open(&settings)?;
        let mut events = Vec::new();
        let mut seen = HashSet::new();
        let mut budget = settings.messages_per_page;
        let mut more = false;
        for folder in &settings.folders {
            let mailbox = match session.examine(folder) {
                Ok(mailbox) => mailbox,
                Err(ImapError::Refused { .. }) if settings.folders_default && folder != "INBOX" => {
                    log::debug(&format!("no folder `{folder}` on this server; skipped"));
                    continue;
                }
                Err(error) => return Err(folder_error(folder, error)),
            };
            let entry = state.folders.entry(folder.clone()).or_default();
            if entry.uid_validity != mailbox.uid_validity {
                if entry.uid_validity != 0 {
                    log::info(&format!(
                        "{folder}: UIDVALIDITY changed from {} to {}; reading it again (messages already stored are matched by Message-ID)",
                        entry.uid_validity, mailbox.uid_validity
                    ));
                }
                *entry = FolderState {
                    uid_validity: mailbox.uid_validity,
                    last_uid: 0,
                };
            }
            if mailbox.exists == 0 {
                continue;
            }
            let uids = session
                .uids_after(entry.last_uid)
                .map_err(|error| folder_error(folder, error))?;
            if uids.len() > budget {
                more = true;
            }
            let batch = &uids[..uids.len().min(budget)];
            budget -= batch.len();
            for fetched in session
                .fetch(batch, settings.body_bytes_max)
                .map_err(|error| folder_error(folder, error))?
            {
                let envelope = Envelope {
                    folder,
                    received_at: fetched.internal_date.as_deref().and_then(internal_date),
                    size: fetched.size,
                    truncated: (fetched.body.len() as u64) < fetched.size,
                };
                match message::to_event(&fetched.body, &envelope, &settings.ourselves) {
                    Ok(event) => {
                        if seen.insert(event.source_id.clone()) {
                            events.push(event);
                        }
                    }
                    Err(reason) => log::warn(&format!(
                        "{folder}: skipped message UID {} ({} bytes): {reason:?}",
                        fetched.uid, fetched.size
                    )),
                }
            }
            if let Some(last) = batch.last() {
                entry.last_uid = *last;
            }
            if budget == 0 {
                // Later folders wait for the next call.
                more = more
                    || settings
                        .folders
                        .iter()
                        .skip_while(|name| *name != folder)
                        .nth(1)
                        .is_some();
                break;
            }
        }
        session.logout();
        log::info(&format!("read {} messages", events.len()));
        Ok(Page::with_checkpoint(
            events,
            checkpoint::save(&state),
            more,
        ))
    }

    fn handle_webhook(_: Config, _: WebhookRequest) -> Result<Vec<Event>, ConnectorError> {
        Err(ConnectorError::Config(
            "IMAP has no webhooks; this connector syncs on its schedule".into(),
        ))
    }
}

/// Connects and logs in.
fn open(settings: &Settings) -> Result<Session<Box<dyn Stream>>, ConnectorError> {
    let stream = transport::connect(settings)?;
    let mut session = Session::start(stream).map_err(|error| connection_error(settings, error))?;
    session = transport::upgrade(session, settings)?;
    let logged_in = match &settings.login {
        Login::Password(password) => session.login(&settings.username, password),
        Login::OAuth(mechanism) => {
            let token = rapport_pdk::auth::access_token()?;
            let message = match mechanism {
                Mechanism::Xoauth2 => rapport_pdk::auth::xoauth2(&settings.username, &token),
                Mechanism::OauthBearer => rapport_pdk::auth::oauthbearer(
                    &settings.username,
                    &settings.host,
                    settings.port,
                    &token,
                ),
            };
            session.authenticate(mechanism.name(), &message)
        }
    };
    // A refused token is `auth`: the host refreshes it and calls again once.
    logged_in.map_err(|error| match error {
        ImapError::Refused { text, .. } => ConnectorError::Auth(format!(
            "{} refused the login of {}: {text}",
            settings.host, settings.username
        )),
        other => connection_error(settings, other),
    })?;
    Ok(session)
}

/// A byte stream the IMAP session runs over.
pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connection_error(settings: &Settings, error: ImapError) -> ConnectorError {
    ConnectorError::Transient(format!("{}:{}: {error}", settings.host, settings.port))
}

fn folder_error(folder: &str, error: ImapError) -> ConnectorError {
    match error {
        ImapError::Refused { text, .. } => ConnectorError::Config(format!(
            "cannot read folder `{folder}`: {text} (check the folders setting)"
        )),
        ImapError::Io(error) => ConnectorError::Transient(format!("reading `{folder}`: {error}")),
        ImapError::Protocol(message) => {
            ConnectorError::Transient(format!("reading `{folder}`: {message}"))
        }
    }
}

/// `INTERNALDATE` (`17-Jul-1996 02:44:25 -0700`) as a timestamp.
fn internal_date(text: &str) -> Option<Timestamp> {
    chrono::DateTime::parse_from_str(text.trim(), "%d-%b-%Y %H:%M:%S %z")
        .ok()
        .map(|at| at.timestamp_micros())
}

use rapport_pdk::Timestamp;

rapport_pdk::export_connector!(EmailImap);

#[cfg(test)]
mod tests {
    use super::*;

    /// What `rapport plugin check` shows first: a build without TLS says so (CI builds
    /// this crate both ways).
    #[test]
    fn the_manifest_says_whether_this_build_has_tls() {
        let description = EmailImap::describe().description;
        assert_eq!(
            description.contains("built without TLS"),
            cfg!(not(feature = "tls")),
            "{description}"
        );
    }

    #[test]
    fn internal_dates_parse_with_their_offset() {
        assert_eq!(
            internal_date("17-Jul-1996 02:44:25 -0700"),
            Some(837_596_665_000_000)
        );
        assert_eq!(
            internal_date(" 7-Jul-1996 02:44:25 +0000").map(|at| at > 0),
            Some(true)
        );
        assert_eq!(internal_date("yesterday"), None);
    }
}
