//! A throw-away Dovecot IMAP server for the email connector's tests: loopback only, one
//! user (`alice` / `secret`), a Maildir filled with the given messages, plaintext and
//! STARTTLS on one port and implicit TLS on another, with a certificate for 127.0.0.1
//! from a private CA made for this server (`openssl`).
//!
//! [`Dovecot::start_with_oauth`] makes one whose user signs in with an OAuth 2.0 access
//! token instead (SASL XOAUTH2 and OAUTHBEARER), which Dovecot validates itself by
//! asking the provider's RFC 7662 introspection endpoint — as a mail server that takes
//! OAuth does.
//!
//! Needs Debian's `dovecot-imapd` (and `openssl`). Without them [`Dovecot::start`] says
//! the test is skipped and returns `None`; under `CI=true` it panics instead, so CI never
//! skips silently.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The mailbox login.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "secret";
const DOVECOT: &str = "/usr/sbin/dovecot";
const MAIL_UID: u32 = 65534;

/// How a server built by [`Dovecot::start_with_oauth`] checks access tokens.
#[derive(Debug, Clone)]
pub struct TokenIntrospection {
    /// The provider's introspection endpoint (RFC 7662).
    pub url: String,
    /// The client Dovecot authenticates as to it (HTTP Basic).
    pub client_id: String,
    /// That client's secret.
    pub client_secret: String,
}

/// A running Dovecot; stopped when dropped.
#[derive(Debug)]
pub struct Dovecot {
    dir: tempfile::TempDir,
    /// Plaintext and STARTTLS.
    pub imap_port: u16,
    /// Implicit TLS.
    pub imaps_port: u16,
    /// The PEM of the CA that signed the server's certificate.
    pub ca_pem: String,
    delivered: usize,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Dovecot {
    /// Starts a server whose INBOX holds `messages` (in order), or `None` when Dovecot
    /// is not installed (outside CI).
    pub fn start(messages: &[&[u8]]) -> Option<Dovecot> {
        Dovecot::start_as(messages, USER, None)
    }

    /// Starts a server whose one user, `user` (the provider's `sub` for them), signs in
    /// with an access token `introspection` vouches for (or with [`PASSWORD`]).
    pub fn start_with_oauth(
        messages: &[&[u8]],
        user: &str,
        introspection: &TokenIntrospection,
    ) -> Option<Dovecot> {
        Dovecot::start_as(messages, user, Some(introspection))
    }

    fn start_as(
        messages: &[&[u8]],
        user: &str,
        introspection: Option<&TokenIntrospection>,
    ) -> Option<Dovecot> {
        if !Path::new(DOVECOT).exists() {
            if std::env::var("CI").is_ok_and(|ci| ci == "true") {
                panic!(
                    "{DOVECOT} is missing but CI=true: install dovecot-imapd (.ci/run does) so the IMAP tests run"
                );
            }
            eprintln!(
                "skipped: IMAP tests against Dovecot ({DOVECOT} is not installed; apt-get install dovecot-imapd)"
            );
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("rapport-dovecot-")
            .tempdir()
            .expect("a temp dir");
        let root = dir.path();
        for sub in [
            "run",
            "state",
            "mail/Maildir/cur",
            "mail/Maildir/new",
            "mail/Maildir/tmp",
        ] {
            std::fs::create_dir_all(root.join(sub)).expect("create the server's directories");
        }
        set_mode(root, 0o755);

        // A private CA and a certificate for 127.0.0.1 signed by it.
        let ssl = |args: &[&str]| run(Command::new("openssl").args(args).current_dir(root));
        ssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rapport test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ]);
        ssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(root.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
            .expect("write san.ext");
        ssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ]);
        let ca_pem = std::fs::read_to_string(root.join("ca.pem")).expect("read ca.pem");

        let (imap_port, imaps_port) = (free_port(), free_port());
        let dir_text = root.display().to_string();
        let (mechanisms, oauth_passdb) = match introspection {
            None => ("plain login", String::new()),
            Some(introspection) => {
                let url = url::Url::parse(&introspection.url).expect("an introspection URL");
                let mut with_client = url.clone();
                with_client
                    .set_username(&introspection.client_id)
                    .expect("a URL with a host");
                with_client
                    .set_password(Some(&introspection.client_secret))
                    .expect("a URL with a host");
                std::fs::write(
                    root.join("dovecot-oauth2.conf.ext"),
                    format!(
                        "introspection_mode = post\n\
                         introspection_url = {with_client}\n\
                         force_introspection = yes\n\
                         username_attribute = sub\n\
                         active_attribute = active\n\
                         active_value = true\n"
                    ),
                )
                .expect("write dovecot-oauth2.conf.ext");
                (
                    "plain login xoauth2 oauthbearer",
                    format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {dir_text}/dovecot-oauth2.conf.ext\n}}\n"
                    ),
                )
            }
        };
        let config = format!(
            r#"protocols = imap
listen = 127.0.0.1
base_dir = {dir_text}/run
state_dir = {dir_text}/state
log_path = {dir_text}/dovecot.log
ssl = yes
ssl_cert = <{dir_text}/server.pem
ssl_key = <{dir_text}/server.key
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
mail_location = maildir:{dir_text}/mail/Maildir
first_valid_uid = 1
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {dir_text}/users
}}
{oauth_passdb}
userdb {{
  driver = passwd-file
  args = username_format=%u {dir_text}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
"#
        );
        std::fs::write(root.join("dovecot.conf"), config).expect("write dovecot.conf");
        // As root, mail processes drop to an unprivileged uid (Dovecot refuses uid 0);
        // as anyone else, they run as that user.
        let (uid, gid) = mail_owner();
        std::fs::write(
            root.join("users"),
            format!(
                "{user}:{{PLAIN}}{PASSWORD}:{uid}:{gid}::{dir_text}/mail::userdb_mail=maildir:{dir_text}/mail/Maildir\n"
            ),
        )
        .expect("write users");

        let mut server = Dovecot {
            dir,
            imap_port,
            imaps_port,
            ca_pem,
            delivered: 0,
        };
        for message in messages {
            server.deliver(message);
        }
        server.launch();
        Some(server)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.conf")
    }

    fn launch(&self) {
        // Dovecot daemonizes; its children keep any inherited pipe open, so it must not
        // get ours (waiting on `output()` would never return).
        // Errors before its log is open go to stderr: into a file, not a pipe.
        let stderr_path = self.dir.path().join("dovecot.stderr");
        let stderr = std::fs::File::create(&stderr_path).expect("create dovecot.stderr");
        let status = Command::new(DOVECOT)
            .arg("-c")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .expect("run dovecot");
        assert!(
            status.success(),
            "dovecot failed to start ({status}); it said: {} {}",
            std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Dovecot did not listen within 10 s; its log: {}",
                std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&self) {
        let _ = Command::new("doveadm")
            .arg("-c")
            .arg(self.config_path())
            .arg("stop")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Wait until the port is free again, so a restart can bind it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Puts a message into the INBOX (line ends made CRLF, as IMAP carries them).
    pub fn deliver(&mut self, message: &[u8]) {
        let mut crlf = Vec::with_capacity(message.len() + message.len() / 20);
        let mut previous = 0u8;
        for &byte in message {
            if byte == b'\n' && previous != b'\r' {
                crlf.push(b'\r');
            }
            crlf.push(byte);
            previous = byte;
        }
        self.delivered += 1;
        let name = format!(
            "{}.M{}P1.rapport-test",
            1_700_000_000 + self.delivered,
            self.delivered
        );
        let maildir = self.dir.path().join("mail/Maildir");
        let path = maildir.join("new").join(name);
        std::fs::write(&path, crlf).expect("deliver a message");
        chown_tree(&self.dir.path().join("mail"));
    }

    /// Makes the server forget its UIDs, so the INBOX gets a new UIDVALIDITY and new
    /// UIDs for the same messages (as after a server migration or a rebuilt index).
    pub fn reset_uids(&self) {
        self.stop();
        let maildir = self.dir.path().join("mail/Maildir");
        for entry in std::fs::read_dir(&maildir)
            .expect("read the Maildir")
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("dovecot") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        // UIDVALIDITY is derived from the clock in seconds: make sure it moves.
        std::thread::sleep(Duration::from_millis(1_100));
        self.launch();
    }

    /// `127.0.0.1:<port>` for a connector grant.
    pub fn grant(port: u16) -> String {
        format!("127.0.0.1:{port}")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Mail processes run as an unprivileged uid; when we are root, hand them the Maildir.
#[cfg(unix)]
fn chown_tree(path: &Path) {
    if !is_root() {
        return;
    }
    let _ = std::os::unix::fs::chown(path, Some(MAIL_UID), Some(MAIL_UID));
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            chown_tree(&entry.path());
        }
    }
}

#[cfg(unix)]
fn is_root() -> bool {
    mail_owner_of_self().0 == 0
}

/// The uid and gid this process runs as (the owner of `/proc/self`).
#[cfg(unix)]
fn mail_owner_of_self() -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|meta| (meta.uid(), meta.gid()))
        .unwrap_or((0, 0))
}

/// Who the mail processes run as.
#[cfg(unix)]
fn mail_owner() -> (u32, u32) {
    if is_root() {
        (MAIL_UID, MAIL_UID)
    } else {
        mail_owner_of_self()
    }
}
