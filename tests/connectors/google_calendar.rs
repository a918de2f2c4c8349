//! google-calendar through the real host against the Google stand-in
//! (`rapport_samples::google`): a person's connection made through the stand-in's
//! OAuth endpoints (code with PKCE), its tokens in a real store behind the connection's
//! real token source; a full read in pages, then only what changed; an expired sync
//! token read again from the start; the window; internal meetings never placed;
//! Google's errors as the contract's kinds; an expired access token refreshed once.

use crate::connectors::standins::{Plugged, SAM, StandIn, bind, connect, deleted, ids};
use crate::connectors::support::*;
use chrono::{Duration, TimeZone, Utc};
use rapport_core::secret::KeyRing;
use rapport_core::sharing::Sharing;
use rapport_plugin_host::{ConnectorError, PluginError};
use rapport_testkit::google::{self, FakeGoogle, meeting};
use std::collections::BTreeSet;

const CALENDAR: Plugged = Plugged {
    plugin: rapport_testkit::GOOGLE_CALENDAR,
    connector_id: "calendar",
    scope: "https://www.googleapis.com/auth/calendar.readonly",
    sharing: Sharing::Metadata,
};

/// Sam's calendar: 24 meetings with clients over four weeks, six internal ones, and
/// one client meeting far beyond the window.
fn fill(fake: &FakeGoogle) {
    let start = Utc.with_ymd_and_hms(2026, 11, 16, 9, 0, 0).unwrap();
    fake.with(|state| {
        for n in 0..24 {
            state.put_event(
                SAM,
                meeting(
                    &format!("client{n:02}"),
                    &format!("Call {n} with Acme"),
                    SAM,
                    &[SAM, "hannah@acme.example"],
                    start + Duration::days(n),
                    30,
                ),
            );
        }
        for n in 0..6 {
            state.put_event(
                SAM,
                meeting(
                    &format!("internal{n}"),
                    "Team sync",
                    SAM,
                    &[SAM, "ana@ours.example"],
                    start + Duration::days(n),
                    30,
                ),
            );
        }
        state.put_event(
            SAM,
            meeting(
                "faraway",
                "Annual review 2028",
                SAM,
                &[SAM, "hannah@acme.example"],
                Utc::now() + Duration::days(600),
                60,
            ),
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_calendar_in_pages_then_only_what_changed() {
    let fake = FakeGoogle::start().await;
    fill(&fake);
    let database = rapport_testkit::database::TestDatabase::sqlite().await;
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let connection = connect(&database.store, &fake, &keys, &CALENDAR).await;
    let calendar = bind(&CALENDAR, &fake, &database.store, &keys, connection, &[]).await;
    calendar.check().await.expect("the calendar is there");

    // The full read: 31 events in pages of 10; client meetings placed, internal ones
    // and the one beyond the window reported deleted.
    let pages = sync_all(&calendar, None).await;
    assert_eq!(pages.len(), 4, "31 events, 10 a page");
    let expected: BTreeSet<String> = (0..24).map(|n| format!("client{n:02}")).collect();
    assert_eq!(ids(&pages), expected);
    let gone = deleted(&pages);
    assert!(
        gone.contains("internal0") && gone.contains("faraway"),
        "{gone:?}"
    );
    let every = pages.iter().flat_map(|page| &page.events);
    for event in every {
        assert_eq!(event.kind.as_str(), "meeting.scheduled");
        assert_eq!(event.hints.emails[0].to_string(), "hannah@acme.example");
    }
    let token = pages.last().unwrap().checkpoint.clone().unwrap();
    assert!(token.contains("sync_token"), "{token}");

    // Only what changed: one moved, one deleted, one new.
    fake.with(|state| {
        let mut moved = state.calendars[SAM].events["client03"].0.clone();
        moved["sequence"] = serde_json::json!(1);
        moved["summary"] = serde_json::json!("Call 3 with Acme (moved)");
        state.put_event(SAM, moved);
        state.delete_event(SAM, "client04");
        state.put_event(
            SAM,
            meeting(
                "client99",
                "New business",
                "buyer@initech.example",
                &["buyer@initech.example", SAM],
                Utc.with_ymd_and_hms(2026, 12, 20, 15, 0, 0).unwrap(),
                45,
            ),
        );
    });
    let changes = sync_all(&calendar, Some(token.clone())).await;
    let events: Vec<_> = changes.iter().flat_map(|page| &page.events).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    let moved = events
        .iter()
        .find(|e| e.key.source_id == "client03")
        .unwrap();
    assert_eq!(moved.kind.as_str(), "meeting.updated");
    assert!(events.iter().any(|e| e.key.source_id == "client99"
        && e.hints.emails[0].to_string() == "buyer@initech.example"));
    assert_eq!(deleted(&changes), BTreeSet::from(["client04".to_owned()]));

    // The sync token expires: Google answers 410 and the connector reads everything
    // again from the start, under the same ids.
    fake.with(|state| state.expire_sync_tokens(SAM));
    let again = sync_all(
        &calendar,
        Some(changes.last().unwrap().checkpoint.clone().unwrap()),
    )
    .await;
    let mut expected = expected;
    expected.remove("client04");
    expected.insert("client99".into());
    assert_eq!(ids(&again), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_errors_become_the_contracts_kinds_and_an_expired_token_is_refreshed() {
    let fake = FakeGoogle::start().await;
    fill(&fake);
    let database = rapport_testkit::database::TestDatabase::sqlite().await;
    let keys = KeyRing::parse(&KeyRing::generate_entry("k1")).unwrap();
    let connection = connect(&database.store, &fake, &keys, &CALENDAR).await;
    let calendar = bind(&CALENDAR, &fake, &database.store, &keys, connection, &[]).await;

    fake.with(|state| state.faults.push_back(google::rate_limited(7)));
    let error = connector_error(calendar.sync(None).await);
    assert!(
        matches!(
            &error,
            ConnectorError::RateLimited {
                retry_after_ms: 7_000,
                ..
            }
        ),
        "{error:?}"
    );
    fake.with(|state| state.faults.push_back(google::too_many_requests(3)));
    assert!(matches!(
        connector_error(calendar.sync(None).await),
        ConnectorError::RateLimited {
            retry_after_ms: 3_000,
            ..
        }
    ));
    fake.with(|state| {
        state
            .faults
            .push_back(rapport_testkit::upstream::Reply::status(
                503,
                "backend error",
            ))
    });
    assert!(matches!(
        connector_error(calendar.sync(None).await),
        ConnectorError::Transient(_)
    ));

    // The access token expires at Google: the call fails with auth, the host refreshes
    // once (the stand-in counts the refresh) and repeats the call, which succeeds.
    fake.with(|state| state.expire_access_tokens());
    let before = fake.with(|state| state.refreshes);
    let page = calendar.sync(None).await.expect("refreshed and repeated");
    assert!(!page.events.is_empty());
    assert_eq!(fake.with(|state| state.refreshes), before + 1);

    // A revoked grant cannot be refreshed: the connection needs its owner.
    let refresh = {
        let tokens = database
            .store
            .connection_tokens(connection)
            .await
            .unwrap()
            .unwrap();
        keys.open(
            tokens.refresh.as_ref().unwrap(),
            &tokens.key.seal_context("refresh"),
        )
        .unwrap()
    };
    assert!(fake.client(CALENDAR.scope).revoke(&refresh).await.unwrap());
    fake.with(|state| state.expire_access_tokens());
    let error = calendar.sync(None).await.unwrap_err();
    assert!(
        matches!(&error, PluginError::Connector(ConnectorError::Auth(text)) if text.contains("reconnect")),
        "{error:?}"
    );
}
