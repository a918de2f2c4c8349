//! A small read-only IMAP4rev1 server on loopback holding one INBOX: what the demo's
//! email connector reads when no real mail server is around (tests of the connector
//! itself run against Dovecot). It speaks what a reading client needs — greeting,
//! `CAPABILITY`, `LOGIN` (quoted strings or synchronizing literals), `EXAMINE`/`SELECT`,
//! `UID SEARCH UID n:*`, `UID FETCH` of `UID INTERNALDATE RFC822.SIZE BODY.PEEK[]<0.n>`,
//! `NOOP`, `LOGOUT` — and refuses everything else with `BAD`.

use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One message in the mailbox.
#[derive(Debug, Clone)]
pub struct Message {
    /// When the server received it, as IMAP writes it: `02-Feb-2026 08:30:00 +0000`.
    pub internal_date: String,
    /// The whole RFC 5322 message.
    pub bytes: Vec<u8>,
}

/// A running mailbox; it stops when dropped.
#[derive(Debug)]
pub struct SampleMailbox {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SampleMailbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Mailbox {
    user: String,
    password: String,
    messages: Vec<Message>,
}

impl SampleMailbox {
    /// Serves `messages` (UIDs 1, 2, ... in order) to `user` with `password`.
    pub async fn start(
        user: &str,
        password: &str,
        messages: Vec<Message>,
    ) -> std::io::Result<SampleMailbox> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let mailbox = Arc::new(Mailbox {
            user: user.to_owned(),
            password: password.to_owned(),
            messages,
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mailbox = Arc::clone(&mailbox);
                tokio::spawn(async move {
                    let _ = session(stream, &mailbox).await;
                });
            }
        });
        Ok(SampleMailbox { address, task })
    }

    /// The port it listens on (host 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// `127.0.0.1:<port>`, as a connector grant.
    pub fn grant(&self) -> String {
        self.address.to_string()
    }
}

/// Splits a command line's arguments: atoms, `"quoted"` strings (with `\` escapes).
fn arguments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c == ' ' {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    other => value.push(other),
                }
            }
            out.push(value);
        } else {
            let mut value = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            out.push(value);
        }
    }
    out
}

/// The UIDs a set such as `1,3:5,7:*` names, among `1..=highest`.
fn uid_set(set: &str, highest: u32) -> Vec<u32> {
    let mut uids = Vec::new();
    for part in set.split(',') {
        let bound = |text: &str| {
            if text == "*" {
                Some(highest)
            } else {
                text.parse::<u32>().ok()
            }
        };
        let (low, high) = match part.split_once(':') {
            Some((a, b)) => (bound(a), bound(b)),
            None => (bound(part), bound(part)),
        };
        if let (Some(a), Some(b)) = (low, high) {
            let (a, b) = (a.min(b), a.max(b));
            uids.extend((a..=b).filter(|uid| (1..=highest).contains(uid)));
        }
    }
    // `n:*` names the highest UID even when it is below n (RFC 3501 §6.4.8).
    if uids.is_empty() && set.ends_with(":*") && highest > 0 {
        uids.push(highest);
    }
    uids.sort_unstable();
    uids.dedup();
    uids
}

async fn session(stream: TcpStream, mailbox: &Mailbox) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(b"* OK [CAPABILITY IMAP4rev1] rapport sample mailbox ready\r\n")
        .await?;
    let mut authenticated = false;
    let mut examined = false;
    let highest = u32::try_from(mailbox.messages.len()).unwrap_or(u32::MAX);
    loop {
        // One command, with any synchronizing literals read in place.
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut line = line.trim_end_matches(['\r', '\n']).to_owned();
        while let Some(open) = line.rfind('{').filter(|_| line.ends_with('}')) {
            let Ok(length) = line[open + 1..line.len() - 1].parse::<usize>() else {
                break;
            };
            line.truncate(open);
            write.write_all(b"+ go ahead\r\n").await?;
            let mut literal = vec![0; length.min(64 * 1024)];
            read.read_exact(&mut literal).await?;
            // A literal becomes a quoted string, so one parser reads both.
            let text = String::from_utf8_lossy(&literal)
                .replace('\\', "\\\\")
                .replace('"', "\\\"");
            line.push('"');
            line.push_str(&text);
            line.push('"');
            let mut rest = String::new();
            read.read_line(&mut rest).await?;
            line.push_str(rest.trim_end_matches(['\r', '\n']));
        }
        let words = arguments(&line);
        let Some(tag) = words.first().cloned() else {
            continue;
        };
        let command: Vec<String> = words[1..].iter().map(|w| w.to_ascii_uppercase()).collect();
        let reply = match command.first().map(String::as_str) {
            Some("CAPABILITY") => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK CAPABILITY done\r\n"),
            Some("NOOP") => format!("{tag} OK NOOP done\r\n"),
            Some("LOGOUT") => {
                write
                    .write_all(format!("* BYE logging out\r\n{tag} OK LOGOUT done\r\n").as_bytes())
                    .await?;
                return Ok(());
            }
            Some("LOGIN") => {
                if words.get(2) == Some(&mailbox.user) && words.get(3) == Some(&mailbox.password) {
                    authenticated = true;
                    format!("{tag} OK LOGIN done\r\n")
                } else {
                    format!("{tag} NO [AUTHENTICATIONFAILED] invalid credentials\r\n")
                }
            }
            _ if !authenticated => format!("{tag} NO log in first\r\n"),
            Some("EXAMINE" | "SELECT") => {
                if words
                    .get(2)
                    .is_some_and(|folder| folder.eq_ignore_ascii_case("INBOX"))
                {
                    examined = true;
                    format!(
                        "* {highest} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT {}] next\r\n{tag} OK [READ-ONLY] EXAMINE done\r\n",
                        highest + 1
                    )
                } else {
                    format!("{tag} NO no such mailbox (this one has only INBOX)\r\n")
                }
            }
            _ if !examined => format!("{tag} NO examine a mailbox first\r\n"),
            Some("UID") if command.get(1).map(String::as_str) == Some("SEARCH") => {
                // UID SEARCH UID <set>
                let set = words.get(4).map(String::as_str).unwrap_or("1:*");
                let found: Vec<String> = uid_set(set, highest).iter().map(u32::to_string).collect();
                format!("* SEARCH {}\r\n{tag} OK SEARCH done\r\n", found.join(" "))
            }
            Some("UID") if command.get(1).map(String::as_str) == Some("FETCH") => {
                let set = words.get(3).map(String::as_str).unwrap_or_default();
                let limit = line
                    .find("BODY.PEEK[]<0.")
                    .and_then(|at| {
                        line[at + "BODY.PEEK[]<0.".len()..]
                            .split('>')
                            .next()?
                            .parse::<usize>()
                            .ok()
                    })
                    .unwrap_or(usize::MAX);
                for uid in uid_set(set, highest) {
                    let message = &mailbox.messages[uid as usize - 1];
                    let body = &message.bytes[..message.bytes.len().min(limit)];
                    write
                        .write_all(
                            format!(
                                "* {uid} FETCH (UID {uid} INTERNALDATE \"{}\" RFC822.SIZE {} BODY[]<0> {{{}}}\r\n",
                                message.internal_date,
                                message.bytes.len(),
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .await?;
                    write.write_all(body).await?;
                    write.write_all(b")\r\n").await?;
                }
                format!("{tag} OK FETCH done\r\n")
            }
            _ => format!("{tag} BAD this sample mailbox does not do that\r\n"),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_and_arguments_parse() {
        assert_eq!(uid_set("1,3:4,9", 5), vec![1, 3, 4]);
        assert_eq!(uid_set("2:*", 4), vec![2, 3, 4]);
        assert_eq!(uid_set("7:*", 4), vec![4], "n:* names the highest");
        assert_eq!(uid_set("1:*", 0), Vec::<u32>::new());
        assert_eq!(
            arguments(r#"a1 LOGIN "demo" "pa\"ss word""#),
            vec!["a1", "LOGIN", "demo", "pa\"ss word"]
        );
    }
}
