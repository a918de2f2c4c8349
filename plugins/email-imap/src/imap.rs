//! A small IMAP4rev1 client (RFC 3501): just what an incremental, read-only mail sync
//! needs — LOGIN or AUTHENTICATE (SASL XOAUTH2 / OAUTHBEARER, RFC 7628), EXAMINE, UID
//! SEARCH, UID FETCH, LOGOUT — over any byte stream (plain TCP, or TLS over it).
//!
//! Responses are read with their literals (`{n}\r\n` + n bytes), bounded: a line may not
//! exceed [`LINE_BYTES_MAX`] and a literal [`LITERAL_BYTES_MAX`], so a hostile server
//! cannot make the plugin allocate without limit.

use std::io::{BufRead, BufReader, Read, Write};

/// The longest response line accepted (literals excluded).
pub const LINE_BYTES_MAX: usize = 1 << 20;
/// The largest literal accepted; message bodies are fetched partially to stay below it.
pub const LITERAL_BYTES_MAX: usize = 16 << 20;

/// Why an IMAP exchange failed.
#[derive(Debug)]
pub enum ImapError {
    /// The connection failed or closed.
    Io(std::io::Error),
    /// The server refused a command (tagged `NO`/`BAD`), with its text.
    Refused { command: String, text: String },
    /// The server said something this client cannot read.
    Protocol(String),
}

impl std::fmt::Display for ImapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImapError::Io(error) => write!(f, "the IMAP connection failed: {error}"),
            ImapError::Refused { command, text } => {
                write!(f, "the IMAP server refused {command}: {text}")
            }
            ImapError::Protocol(message) => write!(f, "unexpected IMAP response: {message}"),
        }
    }
}

impl From<std::io::Error> for ImapError {
    fn from(error: std::io::Error) -> ImapError {
        ImapError::Io(error)
    }
}

/// One server response: its text with each literal replaced by `{}` and the literals
/// in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Response {
    pub text: String,
    pub literals: Vec<Vec<u8>>,
}

/// What `EXAMINE` reports about a folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mailbox {
    pub uid_validity: u32,
    pub exists: u32,
}

/// One fetched message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub uid: u32,
    /// When the server received it (`INTERNALDATE`), as the server wrote it.
    pub internal_date: Option<String>,
    /// Its full size in bytes (`RFC822.SIZE`); `body` may be a prefix of it.
    pub size: u64,
    pub body: Vec<u8>,
}

/// A logged-out session on a connected stream.
pub struct Session<S: Read + Write> {
    stream: BufReader<S>,
    next_tag: u32,
}

impl<S: Read + Write> Session<S> {
    /// Reads the server's greeting.
    pub fn start(stream: S) -> Result<Session<S>, ImapError> {
        let mut session = Session {
            stream: BufReader::new(stream),
            next_tag: 1,
        };
        let greeting = session.read_response()?;
        if greeting.text.starts_with("* BYE") {
            return Err(ImapError::Refused {
                command: "the connection".into(),
                text: greeting.text,
            });
        }
        if !greeting.text.starts_with("* OK") && !greeting.text.starts_with("* PREAUTH") {
            return Err(ImapError::Protocol(format!(
                "the greeting is `{}`",
                greeting.text
            )));
        }
        Ok(session)
    }

    /// Continues on a stream whose greeting was already read (after STARTTLS).
    pub fn resume(stream: S) -> Session<S> {
        Session {
            stream: BufReader::new(stream),
            next_tag: 100,
        }
    }

    /// `STARTTLS`: returns the stream for the TLS handshake. Nothing the server sent
    /// before TLS is kept (RFC 3501 §6.2.1).
    pub fn starttls(mut self) -> Result<S, ImapError> {
        self.command("STARTTLS", &[])?;
        Ok(self.stream.into_inner())
    }

    /// `LOGIN`, with the credentials sent as literals when quoting cannot carry them.
    pub fn login(&mut self, user: &str, password: &str) -> Result<(), ImapError> {
        self.command("LOGIN", &[Arg::Str(user), Arg::Secret(password)])
            .map(drop)
    }

    /// `EXAMINE` (read-only select) of `folder`.
    pub fn examine(&mut self, folder: &str) -> Result<Mailbox, ImapError> {
        let responses = self.command("EXAMINE", &[Arg::Str(folder)])?;
        let mut uid_validity = None;
        let mut exists = 0;
        for response in &responses {
            if let Some(value) = bracketed_number(&response.text, "UIDVALIDITY") {
                uid_validity = Some(value);
            }
            let mut words = response.text.split_ascii_whitespace();
            if let (Some("*"), Some(count), Some(word)) = (words.next(), words.next(), words.next())
                && word.eq_ignore_ascii_case("EXISTS")
            {
                exists = count.parse().unwrap_or(0);
            }
        }
        let uid_validity = uid_validity.ok_or_else(|| {
            ImapError::Protocol(format!("EXAMINE {folder} reported no UIDVALIDITY"))
        })?;
        Ok(Mailbox {
            uid_validity,
            exists,
        })
    }

    /// The UIDs above `after` in the examined folder, ascending.
    pub fn uids_after(&mut self, after: u32) -> Result<Vec<u32>, ImapError> {
        let from = after.saturating_add(1);
        let responses = self.command("UID SEARCH", &[Arg::Atom(&format!("UID {from}:*"))])?;
        let mut uids: Vec<u32> = responses
            .iter()
            .filter_map(|response| response.text.strip_prefix("* SEARCH"))
            .flat_map(|rest| rest.split_ascii_whitespace())
            .filter_map(|uid| uid.parse().ok())
            // `n:*` includes the highest UID even when it is below n (RFC 3501 §6.4.8).
            .filter(|uid| *uid > after)
            .collect();
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// Fetches `uids` (at most `body_bytes_max` of each message).
    pub fn fetch(
        &mut self,
        uids: &[u32],
        body_bytes_max: usize,
    ) -> Result<Vec<Fetched>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let items = format!(
            "{set} (UID INTERNALDATE RFC822.SIZE BODY.PEEK[]<0.{}>)",
            body_bytes_max.min(LITERAL_BYTES_MAX)
        );
        let responses = self.command("UID FETCH", &[Arg::Atom(&items)])?;
        Ok(responses.into_iter().filter_map(parse_fetch).collect())
    }

    /// `LOGOUT`; errors are ignored, the work is done.
    /// `AUTHENTICATE <mechanism>` with one client message (`initial`, unencoded): the
    /// OAuth mechanisms, where the message carries the access token. The server's
    /// go-ahead is waited for rather than sending the message on the command line
    /// (SASL-IR), which every server takes. A server that refuses the token first sends
    /// its error as a challenge; that is answered with the mechanism's dummy response
    /// (`\x01` for OAUTHBEARER, empty for XOAUTH2) so it completes with `NO`, and the
    /// refusal carries the server's error.
    pub fn authenticate(&mut self, mechanism: &str, initial: &str) -> Result<(), ImapError> {
        use base64::Engine as _;
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        let command = format!("AUTHENTICATE {mechanism}");
        self.stream
            .get_mut()
            .write_all(format!("{tag} {command}\r\n").as_bytes())?;
        self.stream.get_mut().flush()?;
        let mut sent = false;
        let mut challenge = None;
        loop {
            let response = self.read_response()?;
            if let Some(status) = response.text.strip_prefix(&format!("{tag} ")) {
                if status.len() >= 2 && status[..2].eq_ignore_ascii_case("OK") {
                    return Ok(());
                }
                let text = match challenge {
                    Some(error) => format!("{status} ({error})"),
                    None => status.to_owned(),
                };
                return Err(refusal(&command, &text));
            }
            let Some(data) = response.text.strip_prefix('+') else {
                continue;
            };
            let reply = if !sent {
                sent = true;
                base64::engine::general_purpose::STANDARD.encode(initial)
            } else {
                // The server's error, as a challenge: keep it for the refusal.
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok());
                challenge = decoded.or_else(|| Some(data.trim().to_owned()));
                if mechanism.eq_ignore_ascii_case("OAUTHBEARER") {
                    base64::engine::general_purpose::STANDARD.encode("\x01")
                } else {
                    String::new()
                }
            };
            self.stream
                .get_mut()
                .write_all(format!("{reply}\r\n").as_bytes())?;
            self.stream.get_mut().flush()?;
        }
    }

    pub fn logout(mut self) {
        let _ = self.command("LOGOUT", &[]);
    }

    /// Sends a tagged command and reads up to its completion; returns the untagged
    /// responses, or the refusal.
    fn command(&mut self, name: &str, args: &[Arg]) -> Result<Vec<Response>, ImapError> {
        let tag = format!("a{}", self.next_tag);
        self.next_tag += 1;
        let mut line = format!("{tag} {name}").into_bytes();
        for arg in args {
            line.push(b' ');
            match arg.encode() {
                Encoded::Inline(text) => line.extend_from_slice(text.as_bytes()),
                Encoded::Literal(bytes) => {
                    // A synchronizing literal: announce it, wait for `+`, then send.
                    line.extend_from_slice(format!("{{{}}}\r\n", bytes.len()).as_bytes());
                    self.stream.get_mut().write_all(&line)?;
                    self.stream.get_mut().flush()?;
                    let go_ahead = self.read_response()?;
                    if !go_ahead.text.starts_with('+') {
                        return Err(refusal(name, &go_ahead.text));
                    }
                    line = bytes;
                }
            }
        }
        line.extend_from_slice(b"\r\n");
        self.stream.get_mut().write_all(&line)?;
        self.stream.get_mut().flush()?;

        let mut untagged = Vec::new();
        loop {
            let response = self.read_response()?;
            if let Some(status) = response.text.strip_prefix(&format!("{tag} ")) {
                if status.len() >= 2 && status[..2].eq_ignore_ascii_case("OK") {
                    return Ok(untagged);
                }
                return Err(refusal(name, status));
            }
            untagged.push(response);
        }
    }

    /// Reads one response, with its literals.
    fn read_response(&mut self) -> Result<Response, ImapError> {
        let mut response = Response::default();
        loop {
            let line = self.read_line()?;
            match literal_length(&line) {
                Some((prefix, length)) => {
                    if length > LITERAL_BYTES_MAX {
                        return Err(ImapError::Protocol(format!(
                            "a literal of {length} bytes exceeds the {LITERAL_BYTES_MAX}-byte limit"
                        )));
                    }
                    response.text.push_str(prefix);
                    response.text.push_str("{}");
                    let mut literal = vec![0; length];
                    self.stream.read_exact(&mut literal)?;
                    response.literals.push(literal);
                }
                None => {
                    response.text.push_str(&line);
                    return Ok(response);
                }
            }
        }
    }

    /// One line without its CRLF (invalid UTF-8 replaced: only literals carry bytes).
    fn read_line(&mut self) -> Result<String, ImapError> {
        let mut line = Vec::new();
        let read = (&mut self.stream)
            .take(LINE_BYTES_MAX as u64 + 2)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Err(ImapError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )));
        }
        if !line.ends_with(b"\n") {
            return Err(ImapError::Protocol(format!(
                "a response line exceeds {LINE_BYTES_MAX} bytes"
            )));
        }
        while line
            .last()
            .is_some_and(|byte| *byte == b'\n' || *byte == b'\r')
        {
            line.pop();
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

fn refusal(command: &str, text: &str) -> ImapError {
    ImapError::Refused {
        command: command.to_owned(),
        text: text.to_owned(),
    }
}

/// A command argument.
enum Arg<'a> {
    /// Sent as it is (sequence sets, fetch items).
    Atom(&'a str),
    /// A string: quoted, or a literal if quoting cannot carry it.
    Str(&'a str),
    /// Like `Str`, for credentials.
    Secret(&'a str),
}

enum Encoded {
    Inline(String),
    Literal(Vec<u8>),
}

impl Arg<'_> {
    fn encode(&self) -> Encoded {
        match self {
            Arg::Atom(atom) => Encoded::Inline((*atom).to_owned()),
            Arg::Str(text) | Arg::Secret(text) => {
                if text
                    .bytes()
                    .all(|b| b.is_ascii() && b != b'\r' && b != b'\n' && b != 0)
                {
                    Encoded::Inline(quote(text))
                } else {
                    Encoded::Literal(text.as_bytes().to_vec())
                }
            }
        }
    }
}

/// `"text"` with `\` and `"` escaped.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// If `line` ends with a literal announcement `{n}` (or `{n+}`), the text before it
/// and n.
fn literal_length(line: &str) -> Option<(&str, usize)> {
    let open = line.rfind('{')?;
    let inner = line[open + 1..].strip_suffix('}')?;
    let digits = inner.strip_suffix('+').unwrap_or(inner);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((&line[..open], digits.parse().ok()?))
}

/// The number in `[NAME n]` in `text`.
fn bracketed_number(text: &str, name: &str) -> Option<u32> {
    let at = text.find(&format!("[{name} "))?;
    let rest = &text[at + name.len() + 2..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `* n FETCH (UID u INTERNALDATE "..." RFC822.SIZE s BODY[]<0> {}...)`.
fn parse_fetch(response: Response) -> Option<Fetched> {
    let text = &response.text;
    let mut words = text.split_ascii_whitespace();
    if words.next() != Some("*") {
        return None;
    }
    words.next()?;
    if !words.next()?.eq_ignore_ascii_case("FETCH") {
        return None;
    }
    let number_after = |key: &str| -> Option<u64> {
        let at = text.find(key)?;
        text[at + key.len()..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let uid = u32::try_from(number_after("UID ")?).ok()?;
    let size = number_after("RFC822.SIZE ").unwrap_or(0);
    let internal_date = text.find("INTERNALDATE \"").and_then(|at| {
        let rest = &text[at + "INTERNALDATE \"".len()..];
        rest.find('"').map(|end| rest[..end].to_owned())
    });
    let body = response.literals.into_iter().next().unwrap_or_default();
    Some(Fetched {
        uid,
        internal_date,
        size,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A scripted server: reads are served from `script`, writes are recorded.
    struct Scripted {
        script: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
            self.script.read(buffer)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn session(script: &str) -> Session<Scripted> {
        Session::start(Scripted {
            script: Cursor::new(script.as_bytes().to_vec()),
            written: Vec::new(),
        })
        .unwrap()
    }

    #[test]
    fn authenticate_sends_the_oauth_message_on_the_go_ahead() {
        let mut imap = session("* OK ready\r\n+ \r\na1 OK authenticated\r\n");
        imap.authenticate("XOAUTH2", "user=sam@ours.example\x01auth=Bearer t\x01\x01")
            .unwrap();
        assert_eq!(
            String::from_utf8(imap.stream.get_ref().written.clone()).unwrap(),
            "a1 AUTHENTICATE XOAUTH2\r\ndXNlcj1zYW1Ab3Vycy5leGFtcGxlAWF1dGg9QmVhcmVyIHQBAQ==\r\n"
        );
    }

    #[test]
    fn a_refused_token_completes_the_exchange_and_keeps_the_servers_error() {
        // The server's error challenge, as Gmail and Dovecot send it.
        let error = "eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIn0=";
        let mut imap = session(&format!(
            "* OK ready\r\n+ \r\n+ {error}\r\na1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
        ));
        match imap.authenticate("OAUTHBEARER", "n,a=sam,\x01auth=Bearer t\x01\x01") {
            Err(ImapError::Refused { command, text }) => {
                assert_eq!(command, "AUTHENTICATE OAUTHBEARER");
                assert!(text.contains("AUTHENTICATIONFAILED"), "{text}");
                assert!(
                    text.contains(r#"{"status":"401","schemes":"Bearer"}"#),
                    "{text}"
                );
            }
            other => panic!("{other:?}"),
        }
        let written = String::from_utf8(imap.stream.get_ref().written.clone()).unwrap();
        // The dummy response to the error challenge: `\x01`, base64.
        assert!(written.ends_with("\r\nAQ==\r\n"), "{written:?}");
    }

    #[test]
    fn examine_search_and_fetch_with_literals() {
        let body = "Subject: hi\r\n\r\nHello {5}\r\n";
        let script = format!(
            "* OK [CAPABILITY IMAP4rev1] ready\r\n\
             a1 OK logged in\r\n\
             * 3 EXISTS\r\n* OK [UIDVALIDITY 1700000000] UIDs valid\r\n* OK [UIDNEXT 9] next\r\n\
             a2 OK [READ-ONLY] done\r\n\
             * SEARCH 8\r\na3 OK search done\r\n\
             * SEARCH 5 7 8\r\na4 OK search done\r\n\
             * 1 FETCH (UID 5 INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 4242 BODY[]<0> {{{}}}\r\n{body})\r\n\
             a5 OK fetched\r\n",
            body.len()
        );
        let mut imap = session(&script);
        imap.login("alice", "p\"w").unwrap();
        assert_eq!(
            imap.examine("INBOX").unwrap(),
            Mailbox {
                uid_validity: 1_700_000_000,
                exists: 3
            }
        );
        // `9:*` answers with the highest UID, 8, which is not above 8.
        assert!(imap.uids_after(8).unwrap().is_empty());
        assert_eq!(imap.uids_after(4).unwrap(), vec![5, 7, 8]);
        let fetched = imap.fetch(&[5], 1024).unwrap();
        assert_eq!(
            fetched,
            vec![Fetched {
                uid: 5,
                internal_date: Some("17-Jul-1996 02:44:25 -0700".into()),
                size: 4242,
                body: body.as_bytes().to_vec()
            }]
        );
        let written = String::from_utf8(imap.stream.get_ref().written.clone()).unwrap();
        assert_eq!(
            written,
            "a1 LOGIN \"alice\" \"p\\\"w\"\r\n\
             a2 EXAMINE \"INBOX\"\r\n\
             a3 UID SEARCH UID 9:*\r\n\
             a4 UID SEARCH UID 5:*\r\n\
             a5 UID FETCH 5 (UID INTERNALDATE RFC822.SIZE BODY.PEEK[]<0.1024>)\r\n"
        );
    }

    #[test]
    fn refusals_and_bad_greetings_are_errors() {
        let mut imap =
            session("* OK hi\r\na1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
        match imap.login("alice", "wrong") {
            Err(ImapError::Refused { command, text }) => {
                assert_eq!(command, "LOGIN");
                assert!(text.contains("AUTHENTICATIONFAILED"));
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        let bye = Session::start(Scripted {
            script: Cursor::new(b"* BYE too many connections\r\n".to_vec()),
            written: Vec::new(),
        });
        assert!(matches!(bye, Err(ImapError::Refused { .. })));
        let closed = session("* OK hi\r\n").examine("INBOX");
        assert!(matches!(closed, Err(ImapError::Io(_))));
    }

    #[test]
    fn non_ascii_credentials_go_as_literals() {
        let mut imap = session("* OK hi\r\n+ go ahead\r\na1 OK in\r\n");
        imap.login("alice", "pässword").unwrap();
        let written = imap.stream.get_ref().written.clone();
        assert_eq!(
            written,
            "a1 LOGIN \"alice\" {9}\r\npässword\r\n".as_bytes().to_vec()
        );
    }

    #[test]
    fn oversized_literals_are_refused() {
        let mut imap = session(&format!(
            "* OK hi\r\n* 1 FETCH (BODY[] {{{}}}\r\n",
            LITERAL_BYTES_MAX + 1
        ));
        assert!(matches!(imap.fetch(&[1], 10), Err(ImapError::Protocol(_))));
    }
}
