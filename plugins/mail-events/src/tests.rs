//! The mapping over the RFC example messages and the deliberately malformed ones in
//! `tests/fixtures/email` (from the mail-parser project).

use super::*;

macro_rules! fixtures {
    ($dir:literal: $($n:literal),*) => {
        &[$(($n, include_bytes!(concat!("../../../tests/fixtures/email/", $dir, "/", $n, ".eml")).as_slice())),*]
    };
}

const RFC: &[(&str, &[u8])] =
    fixtures!("rfc": "000", "001", "002", "003", "004", "005", "006", "007", "008", "009");
const MALFORMED: &[(&str, &[u8])] = fixtures!("malformed": "000", "001", "002", "003", "004", "005",
    "006", "007", "008", "009", "010", "011", "012", "013", "014", "015", "016", "017", "018",
    "019", "020", "021", "022");

const ARRIVED: Timestamp = 1_700_000_000_000_000;

fn envelope() -> Envelope<'static> {
    Envelope {
        folder: "INBOX",
        received_at: Some(ARRIVED),
        size: 1,
        truncated: false,
    }
}

fn text<'e>(event: &'e Event, name: &str) -> Option<&'e str> {
    event
        .attributes
        .iter()
        .find_map(|attribute| match &attribute.value {
            AttributeValue::Text(text) if attribute.name == name => Some(text.as_str()),
            _ => None,
        })
}

fn rfc(n: &str) -> &'static [u8] {
    RFC.iter().find(|(name, _)| *name == n).unwrap().1
}

#[test]
fn a_received_message_names_its_sender_and_hints_its_participants() {
    let event = to_event(rfc("000"), &envelope(), &Ourselves::default()).unwrap();
    assert_eq!(event.kind, "email.received");
    // `Date: Fri, 07 Oct 1994 16:15:05 -0700 (PDT)`
    assert_eq!(event.occurred_at, 781_571_705_000_000);
    assert!(
        event.title.starts_with("From Nathaniel Borenstein: "),
        "{}",
        event.title
    );
    assert_eq!(
        event.hints.emails,
        vec!["nsb@nsb.fv.com".to_owned(), "ned@innosoft.com".to_owned()]
    );
    assert_eq!(
        event.actor.as_ref().unwrap().email.as_deref(),
        Some("nsb@nsb.fv.com")
    );
    assert_eq!(text(&event, "folder"), Some("INBOX"));
    assert!(!event.summary.is_empty());
    assert!(event.summary.chars().count() <= SNIPPET_CHARS_MAX);
}

#[test]
fn mail_from_us_is_sent_and_we_are_not_a_hint() {
    let us = Ourselves::parse(None, Some("nsb.fv.com"));
    let event = to_event(rfc("000"), &envelope(), &us).unwrap();
    assert_eq!(event.kind, "email.sent");
    assert!(event.title.starts_with("To Ned Freed: "), "{}", event.title);
    assert_eq!(event.hints.emails, vec!["ned@innosoft.com".to_owned()]);

    // Subdomains of our domains are us too; addresses match exactly, any case.
    assert!(Ourselves::parse(None, Some("@acme.example")).is_us("Ann@Mail.Acme.Example"));
    assert!(Ourselves::parse(Some("Ann@acme.example"), None).is_us("ann@ACME.example"));
    assert!(!Ourselves::parse(None, Some("acme.example")).is_us("ann@notacme.example"));
}

#[test]
fn the_source_id_is_the_message_id_or_a_content_hash() {
    // rfc/001 has `Message-ID: <id1@host.com>` (rfc/002's is on the message it forwards).
    let with_id = to_event(rfc("001"), &envelope(), &Ourselves::default()).unwrap();
    assert_eq!(with_id.source_id, "msgid:id1@host.com");
    assert_eq!(text(&with_id, "thread_key"), Some("id1@host.com"));
    assert!(
        to_event(rfc("002"), &envelope(), &Ourselves::default())
            .unwrap()
            .source_id
            .starts_with("sha256:")
    );

    let (_, raw) = MALFORMED.iter().find(|(n, _)| *n == "000").unwrap();
    let first = to_event(raw, &envelope(), &Ourselves::default()).unwrap();
    let again = to_event(raw, &envelope(), &Ourselves::default()).unwrap();
    assert!(first.source_id.starts_with("sha256:"));
    assert_eq!(
        first.source_id, again.source_id,
        "the same bytes, the same id"
    );
}

#[test]
fn a_missing_or_unreadable_date_falls_back_to_the_arrival_time() {
    // rfc/001 says `Date: Whenever`.
    let event = to_event(rfc("001"), &envelope(), &Ourselves::default()).unwrap();
    assert_eq!(event.occurred_at, ARRIVED);
    let nowhere = Envelope {
        received_at: None,
        ..envelope()
    };
    assert_eq!(
        to_event(rfc("001"), &nowhere, &Ourselves::default()).unwrap_err(),
        Unusable::NoTime
    );
}

#[test]
fn every_fixture_maps_or_is_refused_by_name_and_none_panics() {
    let mut mapped = 0;
    for (set, messages) in [("rfc", RFC), ("malformed", MALFORMED)] {
        for (name, raw) in messages {
            match to_event(raw, &envelope(), &Ourselves::default()) {
                Ok(event) => {
                    mapped += 1;
                    assert!(
                        event.kind == "email.received",
                        "{set}/{name}: {}",
                        event.kind
                    );
                    assert!(!event.title.is_empty(), "{set}/{name}");
                    assert!(
                        event.summary.chars().count() <= SNIPPET_CHARS_MAX,
                        "{set}/{name}"
                    );
                    for email in &event.hints.emails {
                        assert!(valid_address(email), "{set}/{name}: hint {email}");
                    }
                }
                Err(reason) => assert_eq!(reason, Unusable::NotAMessage, "{set}/{name}"),
            }
        }
    }
    // Most of even the malformed ones carry something worth keeping.
    assert!(mapped >= 30, "only {mapped} of 33 mapped");
}
