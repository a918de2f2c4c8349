//! outlook-calendar and outlook-mail through the real host against the Microsoft 365
//! stand-in (`rapport_samples::microsoft`), on a person's connection made through the
//! stand-in's identity platform (code with PKCE; refresh tokens that rotate): a first
//! delta round in pages, then only what changed; a forgotten delta link read again
//! without duplicates; meetings moved out of the window and deleted ones removed;
//! internal meetings never placed; mail per folder as email-imap maps it, metadata
//! reads that never fetch a body; Graph's errors as the contract's kinds.

use crate::connectors::standins::{Plugged, SAM, bind, connect, deleted, ids};
use crate::connectors::support::*;
use chrono::{DateTime, Duration, TimeZone, Utc};
use rapport_core::secret::KeyRing;
use rapport_core::sharing::Sharing;
use rapport_plugin_host::{ConnectorError, SyncPage};
use rapport_testkit::google::message_bytes;
use rapport_testkit::microsoft::{self, FakeMicrosoft, meeting};
use rapport_testkit::upstream::Reply;
use std::collections::BTreeSet;

const CALENDAR: Plugged = Plugged {
    plugin: rapport_testkit::OUTLOOK_CALENDAR,
    connector_id: "outlook-calendar",
    scope: "https://graph.microsoft.com/Calendars.Read",
    sharing: Sharing::Shared,
};

const MAIL: Plugged = Plugged {
    plugin: rapport_testkit::OUTLOOK_MAIL,
    connector_id: "outlook-mail",
    scope: "https://graph.microsoft.com/Mail.Read",
    sharing: Sharing::Shared,
};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 16, 9, 0, 0).unwrap()
}

fn text<'e>(event: &'e rapport_core::timeline::NewEvent, name: &str) -> Option<&'e str> {
    match event.attributes.get(name)? {
        rapport_core::timeline::AttributeValue::Text(text) => Some(text),
        _ => None,
    }
}

fn events(pages: &[SyncPage]) -> Vec<&rapport_core::timeline::NewEvent> {
    pages.iter().flat_map(|page| &page.events).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlook_calendar_reads_a_window_in_rounds_of_deltas() {
    let fake = FakeMicrosoft::start().await;
    fake.with(|state| {
        for n in 0..24 {
            state.put_event(
                SAM,
                &format!("client{n:02}"),
                meeting(
                    &format!("Call {n} with Acme"),
                    SAM,
                    &[SAM, "hannah@acme.example"],
                    start() + Duration::days(n),
                    30,
                    &format!("uid-{n}"),
                ),
            );
        }
        for n in 0..5 {
            state.put_event(
                SAM,
                &format!("internal{n}"),
                meeting(
                    "Team sync",
                    SAM,
                    &[SAM, "ana@ours.example"],
                    start() + Duration::days(n),
                    30,
                    &format!("team-{n}"),
                ),
            );
        }
    });
    let database = rapport_testkit::database::TestDatabase::sqlite().await;
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let connection = connect(&database.store, &fake, &keys, &CALENDAR).await;
    let calendar = bind(&CALENDAR, &fake, &database.store, &keys, connection, &[]).await;
    calendar.check().await.expect("the calendar is there");

    let pages = sync_all(&calendar, None).await;
    assert_eq!(pages.len(), 3, "29 events, 10 a page");
    let expected: BTreeSet<String> = (0..24).map(|n| format!("client{n:02}")).collect();
    assert_eq!(ids(&pages), expected);
    assert_eq!(
        deleted(&pages).len(),
        5,
        "internal meetings are never placed"
    );
    for event in events(&pages) {
        assert_eq!(event.kind.as_str(), "meeting.scheduled");
        assert_eq!(event.hints.emails[0].to_string(), "hannah@acme.example");
        assert_eq!(
            text(event, "online_meeting_url"),
            Some("https://teams.microsoft.com/l/meetup-join/sample")
        );
        assert!(text(event, "ical_uid").unwrap().starts_with("uid-"));
    }
    let round = pages.last().unwrap().checkpoint.clone().unwrap();
    assert!(round.contains("deltatoken"), "{round}");

    // Only what changed: one moved, one moved out of the window, one deleted, one new.
    fake.with(|state| {
        let mut moved = state.event(SAM, "client03").unwrap();
        moved["subject"] = serde_json::json!("Call 3 with Acme (moved)");
        moved["createdDateTime"] = serde_json::json!("2026-11-01T09:00:00.0000000Z");
        state.put_event(SAM, "client03", moved);
        let mut far = state.event(SAM, "client05").unwrap();
        far["start"]["dateTime"] = serde_json::json!("2030-01-01T09:00:00.0000000");
        state.put_event(SAM, "client05", far);
        state.delete_event(SAM, "client04");
        state.put_event(
            SAM,
            "client99",
            meeting(
                "New business",
                "buyer@initech.example",
                &["buyer@initech.example", SAM],
                start() + Duration::days(30),
                45,
                "uid-99",
            ),
        );
    });
    let changes = sync_all(&calendar, Some(round)).await;
    let changed: Vec<_> = events(&changes);
    assert_eq!(changed.len(), 2, "{changed:?}");
    let moved = changed
        .iter()
        .find(|e| e.key.source_id == "client03")
        .unwrap();
    assert_eq!(moved.kind.as_str(), "meeting.updated");
    assert!(changed.iter().any(|e| e.key.source_id == "client99"));
    assert_eq!(
        deleted(&changes),
        BTreeSet::from(["client04".to_owned(), "client05".to_owned()])
    );

    // Graph forgets the delta link: 410, and a full round again under the same ids.
    fake.with(|state| state.forget_delta_links(SAM));
    let again = sync_all(&calendar, changes.last().unwrap().checkpoint.clone()).await;
    let mut now_expected = expected.clone();
    now_expected.remove("client04");
    now_expected.remove("client05");
    now_expected.insert("client99".into());
    assert_eq!(ids(&again), now_expected);

    // Throttling and outages are the contract's kinds; an expired token is refreshed
    // once (Microsoft rotates the refresh token: the new one is kept).
    fake.with(|state| state.faults.push_back(microsoft::throttled(6)));
    assert!(matches!(
        connector_error(calendar.sync(None).await),
        ConnectorError::RateLimited {
            retry_after_ms: 6_000,
            ..
        }
    ));
    fake.with(|state| state.faults.push_back(Reply::status(500, "oops")));
    assert!(matches!(
        connector_error(calendar.sync(None).await),
        ConnectorError::Transient(_)
    ));
    for _ in 0..2 {
        fake.with(|state| state.expire_access_tokens());
        let before = fake.with(|state| state.refreshes);
        calendar.sync(None).await.expect("refreshed and repeated");
        assert_eq!(fake.with(|state| state.refreshes), before + 1);
    }
}

/// Sam's mailbox: 12 messages from Hannah in the inbox, 3 replies in sent items, one
/// older than the first read reaches.
fn fill_mail(fake: &FakeMicrosoft) {
    fake.with(|state| {
        for n in 0..12 {
            let at = start() + Duration::hours(n * 5);
            let raw = message_bytes(
                &format!("acme-{n:02}@mail.acme.example"),
                "Hannah Weber <hannah@acme.example>",
                &[SAM],
                &format!("Onboarding {n}"),
                at,
                None,
                &format!("Step {n} of the onboarding."),
            );
            state.put_message(SAM, &format!("in{n:02}"), "inbox", &raw, at);
        }
        for n in 0..3 {
            let at = start() + Duration::hours(n * 5 + 1);
            let raw = message_bytes(
                &format!("reply-{n}@mail.ours.example"),
                &format!("Sam Lee <{SAM}>"),
                &["hannah@acme.example"],
                &format!("Re: Onboarding {n}"),
                at,
                Some(&format!("acme-{n:02}@mail.acme.example")),
                "Done.",
            );
            state.put_message(SAM, &format!("out{n}"), "sentitems", &raw, at);
        }
        let old = Utc.with_ymd_and_hms(2026, 9, 1, 9, 0, 0).unwrap();
        let raw = message_bytes(
            "old@mail.acme.example",
            "hannah@acme.example",
            &[SAM],
            "Old",
            old,
            None,
            "x",
        );
        state.put_message(SAM, "old", "inbox", &raw, old);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outlook_mail_reads_each_folder_by_delta_as_imap_would() {
    let fake = FakeMicrosoft::start().await;
    fill_mail(&fake);
    let database = rapport_testkit::database::TestDatabase::sqlite().await;
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let connection = connect(&database.store, &fake, &keys, &MAIL).await;
    let mail = bind(&MAIL, &fake, &database.store, &keys, connection, &[]).await;
    mail.check().await.expect("the folders are there");

    // The inbox in two pages, then sent items in one.
    let pages = sync_all(&mail, None).await;
    assert_eq!(pages.len(), 3);
    let mut expected: BTreeSet<String> = (0..12).map(|n| format!("in{n:02}")).collect();
    expected.extend((0..3).map(|n| format!("out{n}")));
    assert_eq!(
        ids(&pages),
        expected,
        "the old message is outside the window"
    );
    for event in events(&pages) {
        let sent = event.key.source_id.starts_with("out");
        assert_eq!(
            event.kind.as_str(),
            if sent { "email.sent" } else { "email.received" }
        );
        assert_eq!(
            text(event, "folder"),
            Some(if sent { "sentitems" } else { "inbox" })
        );
        if event.key.source_id == "out2" {
            assert_eq!(text(event, "thread_key"), Some("acme-02@mail.acme.example"));
            assert_eq!(text(event, "message_id"), Some("reply-2@mail.ours.example"));
        }
        if event.key.source_id == "in07" {
            assert_eq!(event.summary, "Step 7 of the onboarding.");
        }
    }

    // Only what changed, folder by folder.
    let reads = fake.with(|state| state.message_reads);
    fake.with(|state| {
        let at = start() + Duration::days(10);
        let raw = message_bytes(
            "new@mail.acme.example",
            "hannah@acme.example",
            &[SAM],
            "Signed",
            at,
            None,
            "Signed.",
        );
        state.put_message(SAM, "new", "inbox", &raw, at);
        state.delete_message(SAM, "in01");
        state.delete_message(SAM, "out1");
    });
    let changes = sync_all(&mail, pages.last().unwrap().checkpoint.clone()).await;
    assert_eq!(ids(&changes), BTreeSet::from(["new".to_owned()]));
    assert_eq!(
        deleted(&changes),
        BTreeSet::from(["in01".to_owned(), "out1".to_owned()])
    );
    assert_eq!(fake.with(|state| state.message_reads) - reads, 1);

    // A forgotten delta link: that folder read again, same keys.
    fake.with(|state| state.forget_delta_links(SAM));
    let again = sync_all(&mail, changes.last().unwrap().checkpoint.clone()).await;
    let mut now_expected = expected.clone();
    now_expected.remove("in01");
    now_expected.remove("out1");
    now_expected.insert("new".into());
    assert_eq!(ids(&again), now_expected);

    // A metadata connection reads headers only: no body.
    let headers_only = bind(
        &MAIL,
        &fake,
        &database.store,
        &keys,
        connection,
        &[("read", "metadata"), ("folders", "sentitems")],
    )
    .await;
    let pages = sync_all(&headers_only, None).await;
    assert_eq!(ids(&pages), BTreeSet::from(["out0".into(), "out2".into()]));
    for event in events(&pages) {
        assert_eq!(event.summary, "");
        assert!(text(event, "thread_key").is_some());
    }
    // A folder that does not exist is named.
    let typo = bind(
        &MAIL,
        &fake,
        &database.store,
        &keys,
        connection,
        &[("folders", "inbx")],
    )
    .await;
    let error = typo.check().await.unwrap_err().to_string();
    assert!(error.contains("no folder `inbx`"), "{error}");
}
