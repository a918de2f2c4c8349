//! The Gmail API's resources the connector reads (`users.getProfile`,
//! `users.messages.list`, `users.messages.get`, `users.history.list`), as Google's API
//! description (`gmail/v1`) names them, and how one message becomes the bytes the
//! shared mail mapping reads. Pure: unit-tested over `tests/fixtures/google/gmail-*`.

use base64::Engine as _;
use serde::Deserialize;

/// `users.getProfile`: where the mailbox's history is now.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    #[serde(default)]
    pub email_address: String,
    pub history_id: String,
}

/// `users.messages.list`: ids only.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageList {
    pub messages: Vec<MessageRef>,
    pub next_page_token: Option<String>,
}

/// A message named by its id.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MessageRef {
    pub id: String,
    pub thread_id: String,
}

/// `users.history.list`: what changed since a `historyId`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HistoryList {
    pub history: Vec<History>,
    pub next_page_token: Option<String>,
    /// The mailbox's history id now: where the next read starts once this one is done.
    pub history_id: Option<String>,
}

/// One history record: the messages it added, deleted or relabelled.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct History {
    pub id: String,
    pub messages_added: Vec<Touched>,
    pub messages_deleted: Vec<Touched>,
    pub labels_added: Vec<Touched>,
    pub labels_removed: Vec<Touched>,
}

/// A message a history record touched.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Touched {
    pub message: MessageRef,
}

/// What a history page asks of the mailbox, in the order its records say it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Messages to read again (added, or relabelled), oldest change first.
    pub read: Vec<String>,
    /// Messages gone from the mailbox.
    pub deleted: Vec<String>,
}

impl HistoryList {
    /// The messages this page added, relabelled and deleted; a message's last change
    /// decides (added then deleted is deleted; deleted ids are never read).
    pub fn changes(&self) -> Changes {
        let mut last: Vec<(String, bool)> = Vec::new();
        let mut note = |id: &str, gone: bool| {
            if id.is_empty() {
                return;
            }
            last.retain(|(seen, _)| seen != id);
            last.push((id.to_owned(), gone));
        };
        for record in &self.history {
            for touched in record
                .messages_added
                .iter()
                .chain(&record.labels_added)
                .chain(&record.labels_removed)
            {
                note(&touched.message.id, false);
            }
            for touched in &record.messages_deleted {
                note(&touched.message.id, true);
            }
        }
        let mut changes = Changes::default();
        for (id, gone) in last {
            if gone {
                changes.deleted.push(id);
            } else {
                changes.read.push(id);
            }
        }
        changes
    }
}

/// `users.messages.get`, as `format=raw` (`raw`) or `format=metadata` (`payload`
/// headers) answers it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Message {
    pub id: String,
    pub thread_id: String,
    pub label_ids: Vec<String>,
    /// Milliseconds since the epoch, as a string: when Gmail received it.
    pub internal_date: Option<String>,
    pub size_estimate: u64,
    /// The whole RFC 2822 message, base64url.
    pub raw: Option<String>,
    pub payload: Option<Part>,
}

/// The top part of a message, with its headers (all that `format=metadata` gives).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Part {
    pub headers: Vec<Header>,
}

/// One header.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Header {
    pub name: String,
    pub value: String,
}

/// The headers a metadata read asks for: what the mapping reads of a message.
pub const METADATA_HEADERS: [&str; 8] = [
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "References",
    "In-Reply-To",
];

/// Why a message could not be read into bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// `raw` is not base64url.
    BadRaw,
    /// Neither `raw` nor headers.
    Empty,
}

impl Message {
    /// When Gmail received it, in microseconds.
    pub fn received_at_us(&self) -> Option<i64> {
        let ms: i64 = self.internal_date.as_deref()?.trim().parse().ok()?;
        ms.checked_mul(1000)
    }

    /// Whether it is in the trash or spam: not mail with a client.
    pub fn is_discarded(&self) -> bool {
        self.label_ids
            .iter()
            .any(|label| label == "TRASH" || label == "SPAM")
    }

    /// The folder it is filed in, as the event's `folder` attribute says it: `SENT`,
    /// else `INBOX`, else the first of the labels chosen, else its first label.
    pub fn folder<'m>(&'m self, chosen: &'m [String]) -> &'m str {
        let has = |label: &str| self.label_ids.iter().any(|own| own == label);
        if has("SENT") {
            "SENT"
        } else if has("INBOX") {
            "INBOX"
        } else {
            chosen
                .iter()
                .find(|label| has(label))
                .or(self.label_ids.first())
                .map(String::as_str)
                .unwrap_or("")
        }
    }

    /// The message as RFC 5322 bytes: `raw` decoded, or (a metadata read) its headers
    /// with no body, which the mail mapping reads like any message without one.
    pub fn bytes(&self) -> Result<Vec<u8>, Unreadable> {
        if let Some(raw) = &self.raw {
            return decode_base64url(raw).ok_or(Unreadable::BadRaw);
        }
        let headers = match &self.payload {
            Some(part) if !part.headers.is_empty() => &part.headers,
            _ => return Err(Unreadable::Empty),
        };
        // Gmail unfolds header values; the block is what a body-less message reads as.
        Ok(mail_events::header_block(headers.iter().map(|header| {
            (header.name.as_str(), header.value.as_str())
        })))
    }
}

/// base64url with or without padding (Gmail writes it padded; some clients do not).
fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    let trimmed: String = text
        .trim()
        .trim_end_matches('=')
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed.as_bytes())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_each_messages_last_change() {
        let list: HistoryList = serde_json::from_str(include_str!(
            "../../../tests/fixtures/google/gmail-history.json"
        ))
        .unwrap();
        assert_eq!(list.history_id.as_deref(), Some("1785409"));
        let changes = list.changes();
        assert_eq!(changes.read, ["18d4a3b2c1f0e9d8", "18d4a3b2c1f0e9e1"]);
        assert_eq!(changes.deleted, ["18d4a3b2c1f0e9d7", "18d4a3b2c1f0e9e0"]);
    }

    #[test]
    fn a_raw_message_and_a_metadata_one_read_as_the_same_headers() {
        let raw: Message = serde_json::from_str(include_str!(
            "../../../tests/fixtures/google/gmail-message-raw.json"
        ))
        .unwrap();
        let metadata: Message = serde_json::from_str(include_str!(
            "../../../tests/fixtures/google/gmail-message-metadata.json"
        ))
        .unwrap();
        let full = String::from_utf8(raw.bytes().unwrap()).unwrap();
        assert!(full.contains("Message-ID: <CAJ4x=renewal-2026@mail.acme.example>"));
        assert!(full.contains("we would like to renew"), "{full}");
        let headers = String::from_utf8(metadata.bytes().unwrap()).unwrap();
        assert!(headers.contains("Message-ID: <CAJ4x=renewal-2026@mail.acme.example>"));
        assert!(headers.ends_with("\r\n\r\n"));
        assert_eq!(raw.received_at_us(), Some(1_764_581_400_000_000));
        assert_eq!(raw.folder(&[]), "INBOX");
        assert!(!raw.is_discarded());
        assert_eq!(
            Message {
                raw: Some("!!".into()),
                ..Message::default()
            }
            .bytes(),
            Err(Unreadable::BadRaw)
        );
        assert_eq!(Message::default().bytes(), Err(Unreadable::Empty));
    }
}
