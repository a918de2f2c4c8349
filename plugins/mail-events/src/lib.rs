//! One fetched message → one timeline event, the same whichever connector fetched it
//! (IMAP, Gmail, Microsoft Graph). Pure: unit-tested over the RFC and the
//! deliberately malformed messages in `tests/fixtures/email`.
//!
//! The event's source id is the message's `Message-ID` (or a hash of its bytes when it
//! has none), never its UID: the same message read again after a UIDVALIDITY change, or
//! found in two folders, is the same event.

use mail_parser::{Address, HeaderValue, MessageParser};
use rapport_pdk::Event;
use rapport_pdk::prelude::*;
use sha2::{Digest, Sha256};

/// How much body text goes into the summary.
pub const SNIPPET_CHARS_MAX: usize = 280;

/// Who "we" are, to tell sent mail from received mail and to keep our own addresses out
/// of the account hints: the PDK's, shared with the calendar connectors.
pub use rapport_pdk::people::Ourselves;

/// Where a message was found and what the server said about it.
pub struct Envelope<'a> {
    pub folder: &'a str,
    /// `INTERNALDATE`, used when the message has no usable `Date`.
    pub received_at: Option<Timestamp>,
    pub size: u64,
    /// Whether `raw` is only the first part of the message (the size cap).
    pub truncated: bool,
}

use rapport_pdk::Timestamp;

/// Why a message could not become an event (it is reported and skipped).
#[derive(Debug, PartialEq, Eq)]
pub enum Unusable {
    /// Not a message at all.
    NotAMessage,
    /// Neither a `Date` nor an arrival time to place it in time.
    NoTime,
}

/// Maps one message.
pub fn to_event(raw: &[u8], envelope: &Envelope, us: &Ourselves) -> Result<Event, Unusable> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(Unusable::NotAMessage)?;
    if message.headers().is_empty() {
        return Err(Unusable::NotAMessage);
    }

    let from = first_address(message.from());
    let sent = from.as_ref().is_some_and(|(_, address)| us.is_us(address));
    let kind = if sent { "email.sent" } else { "email.received" };

    // A `Date` the parser could read and that is plausible; else the arrival time.
    let dated = message
        .date()
        .filter(|date| date.is_valid() && (1970..=9999).contains(&date.year))
        .map(|date| time::from_unix_seconds(date.to_timestamp()));
    let occurred_at = dated.or(envelope.received_at).ok_or(Unusable::NoTime)?;

    let message_id = message.message_id().map(str::to_owned);
    let source_id = match &message_id {
        Some(id) => format!("msgid:{}", id.trim().to_ascii_lowercase()),
        None => format!("sha256:{}", webhook::to_hex(&Sha256::digest(raw))),
    };
    let references = text_list(message.references());
    let in_reply_to = text_list(message.in_reply_to());
    // The thread is named by its first message: the root of References, else what this
    // replies to, else this message itself.
    let thread = references
        .first()
        .or(in_reply_to.first())
        .cloned()
        .or(message_id.clone())
        .unwrap_or_else(|| source_id.clone());

    let subject = message
        .subject()
        .map(|subject| subject.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|subject| !subject.is_empty())
        .unwrap_or_else(|| "(no subject)".to_owned());
    let to = addresses(message.to());
    let cc = addresses(message.cc());
    let title = match (sent, &from) {
        (true, _) => match to.first() {
            Some((name, address)) => {
                format!("To {}: {subject}", name.as_deref().unwrap_or(address))
            }
            None => subject.clone(),
        },
        (false, Some((name, address))) => {
            format!("From {}: {subject}", name.as_deref().unwrap_or(address))
        }
        (false, None) => subject.clone(),
    };
    let snippet = message
        .body_text(0)
        .map(|text| snippet(&text))
        .unwrap_or_default();

    let mut event = rapport_pdk::event(&source_id, kind, occurred_at, &title)
        .summary(&snippet)
        .text("subject", &subject)
        .text("thread_key", &thread)
        .text("folder", envelope.folder)
        .attribute(
            "size_bytes",
            AttributeValue::Integer(i64::try_from(envelope.size).unwrap_or(i64::MAX)),
        )
        .attribute(
            "attachments",
            AttributeValue::Integer(i64::try_from(message.attachment_count()).unwrap_or(0)),
        );
    if envelope.truncated {
        event = event.attribute("truncated", AttributeValue::Boolean(true));
    }
    if let Some(id) = &message_id {
        event = event.text("message_id", id);
    }
    if let Some(parent) = in_reply_to.first() {
        event = event.text("in_reply_to", parent);
    }
    if let Some((name, address)) = &from {
        event = event
            .actor(name.as_deref(), Some(address))
            .text("from", address);
    }
    if !to.is_empty() {
        event = event.text("to", &join(&to));
    }
    if !cc.is_empty() {
        event = event.text("cc", &join(&cc));
    }
    // Everyone on the message who is not us says which client it concerns.
    let mut hinted = Vec::new();
    for (_, address) in from.iter().chain(&to).chain(&cc) {
        let address = address.to_ascii_lowercase();
        if !us.is_us(&address) && valid_address(&address) && !hinted.contains(&address) {
            hinted.push(address);
        }
    }
    for address in hinted {
        event = event.email(&address);
    }
    Ok(event)
}

fn first_address(address: Option<&Address>) -> Option<(Option<String>, String)> {
    addresses(address).into_iter().next()
}

/// Every (name, address) in a header, groups flattened, entries without an address
/// dropped.
fn addresses(address: Option<&Address>) -> Vec<(Option<String>, String)> {
    let Some(address) = address else {
        return Vec::new();
    };
    address
        .iter()
        .filter_map(|addr| {
            let email = addr.address()?.trim();
            (!email.is_empty()).then(|| {
                (
                    addr.name()
                        .map(|name| name.trim().to_owned())
                        .filter(|name| !name.is_empty()),
                    email.to_owned(),
                )
            })
        })
        .collect()
}

fn join(people: &[(Option<String>, String)]) -> String {
    people
        .iter()
        .map(|(_, address)| address.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn text_list(value: &HeaderValue) -> Vec<String> {
    value
        .as_text_list()
        .map(|items| items.iter().map(|item| item.to_string()).collect())
        .unwrap_or_default()
}

/// Shaped like `local@domain.tld`; what the host would refuse as a hint is not sent.
fn valid_address(address: &str) -> bool {
    rapport_pdk::people::valid_address(address)
}

fn snippet(text: &str) -> String {
    rapport_pdk::snippet(text, SNIPPET_CHARS_MAX)
}

/// How a mail connector reads a message: whole, or its headers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadAs {
    /// The whole message.
    Full,
    /// The headers only: no body is fetched.
    Metadata,
}

/// The `read` setting of a mail connector: `full`, `metadata`, or `by-sharing` (the
/// default: headers only when the connection's sharing level is `metadata`, since
/// what others may not see need not be fetched).
pub fn read_as(config: &rapport_pdk::Config) -> Result<ReadAs, ConnectorError> {
    let level = config
        .connection()
        .and_then(|connection| connection.sharing);
    match config.get("read") {
        None | Some("") | Some("by-sharing") => Ok(match level {
            Some(rapport_pdk::SharingLevel::Metadata) => ReadAs::Metadata,
            _ => ReadAs::Full,
        }),
        Some("full") => Ok(ReadAs::Full),
        Some("metadata") => Ok(ReadAs::Metadata),
        Some(other) => Err(ConnectorError::Config(format!(
            "read = `{other}` is not a way to read mail: use `full`, `metadata` or `by-sharing` (the default)"
        ))),
    }
}

/// A message with `headers` (name, value) and no body, as RFC 5322 bytes: what a
/// headers-only read gives [`to_event`]. Line breaks inside a value are unfolded.
pub fn header_block<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (name, value) in headers {
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(value.replace(['\r', '\n'], " ").as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    bytes
}

#[cfg(test)]
mod tests;
