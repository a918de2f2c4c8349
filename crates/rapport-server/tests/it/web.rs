//! The web UI through the router: sessions, CSRF, visibility on every account page, and
//! the forms' writes. (The browser walk-through is `tests/e2e/browser.rs` in rapport-e2e.)

use crate::support::*;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use chrono::{Duration, Timelike, Utc};
use http_body_util::BodyExt;
use rapport_core::permission::Authority::Operator;
use rapport_store::Store;
use rapport_testkit::on_both_backends;
use tower::ServiceExt;

on_both_backends!(
    pages_need_a_session_and_signing_in_sets_a_safe_cookie,
    every_account_page_follows_visibility,
    forms_need_their_token_and_this_site_as_origin,
    handoffs_and_the_inbox_follow_the_api_rules,
    the_timeline_pages_by_cursor_and_rolls_up_subsidiaries,
    the_book_and_the_account_page_show_meetings,
);

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

/// A browser-like request: an optional session cookie, an optional form body.
pub(crate) async fn send(
    world: &World,
    method: Method,
    uri: &str,
    cookie: Option<&str>,
    form: Option<&[(&str, &str)]>,
    extra: &[(&str, &str)],
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, "rapport.test");
    if let Some(cookie) = cookie {
        request = request.header(
            header::COOKIE,
            format!("theme=dark; rapport_session={cookie}"),
        );
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let body = match form {
        Some(fields) => {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            let encoded: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields.iter())
                .finish();
            Body::from(encoded)
        }
        None => Body::empty(),
    };
    let response = world
        .router
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

fn location(reply: &Reply) -> &str {
    reply
        .headers
        .get(header::LOCATION)
        .map(|value| value.to_str().unwrap())
        .unwrap_or_default()
}

/// A session for `person`: (cookie, csrf token).
pub(crate) async fn session(world: &World, person: &str) -> (String, String) {
    let now = Utc::now();
    let issued = world
        .store
        .start_web_session(world.id(person), now + Duration::hours(1), now)
        .await
        .unwrap()
        .unwrap();
    (issued.secret, issued.session.csrf_token)
}

async fn pages_need_a_session_and_signing_in_sets_a_safe_cookie(store: Store) {
    let world = world(store).await;
    let acme = world.accounts["acme"].0;
    let get = |uri: String, cookie: Option<String>| {
        let world = &world;
        async move { send(world, Method::GET, &uri, cookie.as_deref(), None, &[]).await }
    };

    // No session: every page sends the browser to sign in, and back afterwards.
    for path in [
        "/",
        "/team",
        "/inbox",
        "/connectors",
        &format!("/accounts/{acme}?kind=note"),
    ] {
        let reply = get(path.to_owned(), None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "{path}");
        assert!(
            location(&reply).starts_with("/signin?next=%2F"),
            "{path}: {}",
            location(&reply)
        );
    }
    let garbage = get("/".into(), Some("rps_nonsense".into())).await;
    assert_eq!(garbage.status, StatusCode::SEE_OTHER);

    // A one-time link: a session cookie no script can read, sent only to this site.
    let now = Utc::now();
    let link = world
        .store
        .create_sign_in_link(world.id("mia"), now + Duration::minutes(15), now)
        .await
        .unwrap();
    let reply = get(format!("/signin/{link}"), None).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&reply), "/");
    let cookie = reply.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    for part in [
        "rapport_session=rps_",
        "Path=/",
        "Max-Age=43200",
        "HttpOnly",
        "SameSite=Lax",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http on loopback");
    let secret = cookie
        .trim_start_matches("rapport_session=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let book = get("/".into(), Some(secret.clone())).await;
    assert_eq!(book.status, StatusCode::OK);
    assert!(book.body.contains("<h1>My book</h1>") && book.body.contains("Acme"));
    for (name, expected) in [
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        assert!(
            book.headers[&name].to_str().unwrap().contains(expected),
            "{name}: {:?}",
            book.headers[&name]
        );
    }
    let again = get(format!("/signin/{link}"), None).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(again.body.contains("no longer works"));

    // Behind a TLS proxy the cookie is Secure.
    let link = world
        .store
        .create_sign_in_link(world.id("mia"), now + Duration::minutes(15), now)
        .await
        .unwrap();
    let proxied = send(
        &world,
        Method::GET,
        &format!("/signin/{link}"),
        None,
        None,
        &[("x-forwarded-proto", "https")],
    )
    .await;
    assert!(
        proxied.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );

    // Passwords: a wrong one (or an unknown email) is one sentence, a right one a
    // session, and `next` only ever leads within this site.
    let stored = rapport_core::password::hash("a long enough passphrase").unwrap();
    world
        .store
        .set_password_hash(world.id("dan"), Some(&stored), Utc::now())
        .await
        .unwrap();
    for (email, password) in [
        ("dan@rapport.example", "not the passphrase"),
        ("nobody@rapport.example", "a long enough passphrase"),
        ("not an email", "a long enough passphrase"),
    ] {
        let reply = send(
            &world,
            Method::POST,
            "/signin",
            None,
            Some(&[("email", email), ("password", password), ("next", "/team")]),
            &[],
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{email}");
        assert!(reply.body.contains("do not match"), "{}", reply.body);
        assert!(reply.headers.get(header::SET_COOKIE).is_none());
    }
    let reply = send(
        &world,
        Method::POST,
        "/signin",
        None,
        Some(&[
            ("email", "DAN@rapport.example"),
            ("password", "a long enough passphrase"),
            ("next", "/team"),
        ]),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    assert_eq!(location(&reply), "/team");
    let reply = send(
        &world,
        Method::POST,
        "/signin",
        None,
        Some(&[
            ("email", "dan@rapport.example"),
            ("password", "a long enough passphrase"),
            ("next", "//evil.example/"),
        ]),
        &[],
    )
    .await;
    assert_eq!(location(&reply), "/");

    // Signing out ends the session server-side, not just in this browser.
    let (dan, csrf) = session(&world, "dan").await;
    let out = send(
        &world,
        Method::POST,
        "/signout",
        Some(&dan),
        Some(&[("csrf", &csrf)]),
        &[],
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert_eq!(
        get("/".into(), Some(dan)).await.status,
        StatusCode::SEE_OTHER
    );

    // Unknown pages are a page, not JSON; unknown API paths stay JSON.
    let missing = get("/no/such/page".into(), Some(secret)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(
        missing.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let api = get("/api/v1/nope".into(), None).await;
    assert_eq!(
        api.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
}

async fn every_account_page_follows_visibility(store: Store) {
    let world = world(store).await;
    for person in PEOPLE {
        let (cookie, csrf) = session(&world, person).await;
        let missing = send(
            &world,
            Method::GET,
            "/accounts/987654",
            Some(&cookie),
            None,
            &[],
        )
        .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        let book = send(&world, Method::GET, "/", Some(&cookie), None, &[]).await;
        for (key, id) in &world.accounts {
            let visible = expected_visible(person).contains(key);
            let name = world.store.account(*id).await.unwrap().name;
            let page = send(
                &world,
                Method::GET,
                &format!("/accounts/{}", id.0),
                Some(&cookie),
                None,
                &[],
            )
            .await;
            let linked = book.body.contains(&format!("href=\"/accounts/{}\"", id.0));
            assert_eq!(linked, visible, "{person} / {key} in the book");
            if visible {
                assert_eq!(page.status, StatusCode::OK, "{person} sees {key}");
                assert!(page.body.contains(&name));
            } else {
                assert_eq!(
                    page.status,
                    StatusCode::NOT_FOUND,
                    "{person} must not see {key}"
                );
                assert_eq!(
                    page.body.replace(&format!("#{} ", id.0), "#N "),
                    missing.body.replace("#987654 ", "#N "),
                    "{person} / {key}: hidden reads exactly like missing"
                );
                // Writing to it is refused the same way, and nothing is written.
                let note = send(
                    &world,
                    Method::POST,
                    &format!("/accounts/{}/notes", id.0),
                    Some(&cookie),
                    Some(&[("csrf", &csrf), ("text", "sneaky")]),
                    &[],
                )
                .await;
                assert_eq!(
                    note.status,
                    StatusCode::NOT_FOUND,
                    "{person} notes on {key}"
                );
                let filtered = send(
                    &world,
                    Method::GET,
                    &format!("/accounts/{}?kind=note&children=on", id.0),
                    Some(&cookie),
                    None,
                    &[],
                )
                .await;
                assert_eq!(filtered.status, StatusCode::NOT_FOUND);
            }
        }
    }
    for id in world.accounts.values() {
        let page = world
            .store
            .timeline(&rapport_store::TimelineQuery::account(
                *id,
                rapport_store::Reader::Operator,
            ))
            .await
            .unwrap();
        assert!(
            page.events
                .iter()
                .all(|event| event.event.title != "sneaky")
        );
    }
}

async fn forms_need_their_token_and_this_site_as_origin(store: Store) {
    let world = world(store).await;
    let acme = world.accounts["acme"].0;
    let (mia, csrf) = session(&world, "mia").await;
    let (_, other_csrf) = session(&world, "mia").await;
    let notes = format!("/accounts/{acme}/notes");
    for (fields, origin, why) in [
        (vec![("text", "no token")], None, "no token"),
        (
            vec![
                ("csrf", other_csrf.as_str()),
                ("text", "another session's token"),
            ],
            None,
            "another session's token",
        ),
        (
            vec![("csrf", csrf.as_str()), ("text", "from elsewhere")],
            Some("https://evil.example"),
            "another site",
        ),
    ] {
        let extra: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        let reply = send(
            &world,
            Method::POST,
            &notes,
            Some(&mia),
            Some(&fields),
            &extra,
        )
        .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{why}");
    }
    let page = send(
        &world,
        Method::GET,
        &format!("/accounts/{acme}"),
        Some(&mia),
        None,
        &[],
    )
    .await;
    assert!(!page.body.contains("no token") && !page.body.contains("from elsewhere"));

    // The real form: back to the timeline, with the note on it.
    let reply = send(
        &world,
        Method::POST,
        &notes,
        Some(&mia),
        Some(&[("csrf", &csrf), ("text", "Renewal call went well")]),
        &[("origin", "http://rapport.test")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&reply), format!("/accounts/{acme}#timeline"));
    let page = send(
        &world,
        Method::GET,
        &format!("/accounts/{acme}?kind=note"),
        Some(&mia),
        None,
        &[],
    )
    .await;
    assert!(page.body.contains("Renewal call went well"));
    // A blank note says what to fix.
    let blank = send(
        &world,
        Method::POST,
        &notes,
        Some(&mia),
        Some(&[("csrf", &csrf), ("text", "  ")]),
        &[],
    )
    .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        blank.body.contains("The note is required"),
        "{}",
        blank.body
    );

    // A task for Ava with a due date, then done.
    let ava = world.id("ava").0.to_string();
    let reply = send(
        &world,
        Method::POST,
        &format!("/accounts/{acme}/tasks"),
        Some(&mia),
        Some(&[
            ("csrf", &csrf),
            ("text", "Send the QBR deck"),
            ("due", "2026-12-01"),
            ("assignee", &ava),
        ]),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    let bad_due = send(
        &world,
        Method::POST,
        &format!("/accounts/{acme}/tasks"),
        Some(&mia),
        Some(&[("csrf", &csrf), ("text", "x"), ("due", "next week")]),
        &[],
    )
    .await;
    assert_eq!(bad_due.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad_due.body.contains("Due must be a date like"));
    let page = send(
        &world,
        Method::GET,
        &format!("/accounts/{acme}?kind=task"),
        Some(&mia),
        None,
        &[],
    )
    .await;
    assert!(
        page.body.contains("Send the QBR deck")
            && page.body.contains("due 2026-12-01 · for Ava · open"),
        "{}",
        page.body
    );
    let task = world
        .store
        .timeline(&rapport_store::TimelineQuery {
            kind_prefix: Some("task.created".into()),
            ..rapport_store::TimelineQuery::account(
                world.accounts["acme"],
                rapport_store::Reader::Operator,
            )
        })
        .await
        .unwrap()
        .events
        .into_iter()
        .find(|event| event.event.title == "Send the QBR deck")
        .unwrap();
    let done = send(
        &world,
        Method::POST,
        &format!("/tasks/{}/done", task.id.0),
        Some(&mia),
        Some(&[("csrf", &csrf)]),
        &[],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let twice = send(
        &world,
        Method::POST,
        &format!("/tasks/{}/done", task.id.0),
        Some(&mia),
        Some(&[("csrf", &csrf)]),
        &[],
    )
    .await;
    assert_eq!(twice.status, StatusCode::CONFLICT);
    let page = send(
        &world,
        Method::GET,
        &format!("/accounts/{acme}?kind=task"),
        Some(&mia),
        None,
        &[],
    )
    .await;
    assert!(page.body.contains("task.done"));

    // Filters that are not dates, and forged cursors, are refused in words.
    let bad = send(
        &world,
        Method::GET,
        &format!("/accounts/{acme}?from=yesterday"),
        Some(&mia),
        None,
        &[],
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let forged = send(
        &world,
        Method::GET,
        &format!("/accounts/{acme}?cursor=abc"),
        Some(&mia),
        None,
        &[],
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn handoffs_and_the_inbox_follow_the_api_rules(store: Store) {
    let world = world(store).await;
    let (dan, dan_csrf) = session(&world, "dan").await;
    let (ava, ava_csrf) = session(&world, "ava").await;
    let (mia, mia_csrf) = session(&world, "mia").await;
    let acme = world.accounts["acme"];
    let (mia_id, max_id) = (world.id("mia").0.to_string(), world.id("max").0.to_string());

    // Team: Dan's org with book sizes; the handoff page lists Mia's accounts.
    let team = send(&world, Method::GET, "/team", Some(&dan), None, &[]).await;
    assert!(team.body.contains("Mia") && team.body.contains("Ava") && !team.body.contains("Mo<"));
    let page = send(
        &world,
        Method::GET,
        &format!("/team/handoff?from={mia_id}"),
        Some(&dan),
        None,
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&format!("value=\"{}\" checked", acme.0)));

    // An associate cannot hand off; a director can, within the line.
    let fields = [
        ("csrf", ava_csrf.as_str()),
        ("from", mia_id.as_str()),
        ("to", max_id.as_str()),
    ];
    let acme_id = acme.0.to_string();
    let mut with_account = fields.to_vec();
    with_account.push(("account", &acme_id));
    let refused = send(
        &world,
        Method::POST,
        "/team/handoff",
        Some(&ava),
        Some(&with_account),
        &[],
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let nothing = send(
        &world,
        Method::POST,
        "/team/handoff",
        Some(&dan),
        Some(&[("csrf", &dan_csrf), ("from", &mia_id), ("to", &max_id)]),
        &[],
    )
    .await;
    assert_eq!(
        nothing.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no account ticked"
    );
    let moved = send(
        &world,
        Method::POST,
        "/team/handoff",
        Some(&dan),
        Some(&[
            ("csrf", &dan_csrf),
            ("from", &mia_id),
            ("to", &max_id),
            ("account", &acme_id),
        ]),
        &[],
    )
    .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);
    assert_eq!(location(&moved), format!("/team?moved=1&to={max_id}"));
    assert_eq!(
        world.store.account(acme).await.unwrap().owner,
        Some(world.id("max"))
    );
    let notice = send(&world, Method::GET, location(&moved), Some(&dan), None, &[]).await;
    assert!(notice.body.contains("Handed 1 account to Max"));

    // The inbox: not for associates; a manager places the ambiguous mail on a
    // candidate she sees and teaches it the sender.
    assert_eq!(
        send(&world, Method::GET, "/inbox", Some(&ava), None, &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let inbox = send(&world, Method::GET, "/inbox", Some(&mia), None, &[]).await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(inbox.body.contains("Hello from Pat") && inbox.body.contains("Acme (fits)"));
    assert!(
        !inbox.body.contains("Initech"),
        "a candidate she cannot see is not offered"
    );
    let event = world.unmatched.0;
    let placed = send(
        &world,
        Method::POST,
        &format!("/inbox/{event}/place"),
        Some(&mia),
        Some(&[
            ("csrf", &mia_csrf),
            ("account", &acme_id),
            ("learn", "contact:pat@consultants.example"),
        ]),
        &[],
    )
    .await;
    assert_eq!(placed.status, StatusCode::SEE_OTHER, "{}", placed.body);
    let placed_event = world
        .store
        .event(world.unmatched, rapport_store::Reader::Operator)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(placed_event.event.placement.unwrap().account, acme);
    let inbox = send(&world, Method::GET, "/inbox", Some(&mia), None, &[]).await;
    assert!(!inbox.body.contains("Hello from Pat") && inbox.body.contains("Nothing is waiting"));

    // Connectors: everyone sees the page; only admins may run a sync.
    let connectors = send(&world, Method::GET, "/connectors", Some(&ava), None, &[]).await;
    assert_eq!(connectors.status, StatusCode::OK);
    let run = send(
        &world,
        Method::POST,
        "/connectors/mail/sync",
        Some(&ava),
        Some(&[("csrf", &ava_csrf)]),
        &[],
    )
    .await;
    assert_eq!(run.status, StatusCode::FORBIDDEN);
}

/// The `href` of the first link whose text is `label`, unescaped.
fn link_to(body: &str, label: &str) -> Option<String> {
    let end = body.find(&format!(">{label}</a>"))?;
    let start = body[..end].rfind("href=\"")? + "href=\"".len();
    // What a browser requests: entities decoded, no fragment.
    let href = body[start..end]
        .split('"')
        .next()?
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    Some(href.split('#').next()?.to_owned())
}

async fn the_timeline_pages_by_cursor_and_rolls_up_subsidiaries(store: Store) {
    let world = world(store).await;
    let (acme, acme_eu) = (world.accounts["acme"], world.accounts["acme_eu"]);
    let start = Utc::now() - Duration::days(5);
    for n in 0..70 {
        world
            .store
            .add_note(
                Operator,
                acme,
                world.id("mia"),
                &format!("Note number {n:02}"),
                start + Duration::minutes(n),
            )
            .await
            .unwrap();
    }
    world
        .store
        .add_note(
            Operator,
            acme_eu,
            world.id("max"),
            "From the EU office",
            start + Duration::hours(3),
        )
        .await
        .unwrap();
    let (mia, _) = session(&world, "mia").await;

    // Page through the notes: 50, then the rest, newest first, each exactly once.
    let mut seen = Vec::new();
    let mut uri = format!("/accounts/{}?kind=note", acme.0);
    let mut pages = 0;
    loop {
        let page = send(&world, Method::GET, &uri, Some(&mia), None, &[]).await;
        assert_eq!(page.status, StatusCode::OK, "{uri}");
        pages += 1;
        for piece in page.body.split("Note number ").skip(1) {
            seen.push(piece[..2].parse::<u32>().unwrap());
        }
        if pages > 1 {
            assert!(
                link_to(&page.body, "← Newest").is_some(),
                "a way back to the top"
            );
        }
        match link_to(&page.body, "Older events →") {
            Some(next) => {
                assert!(
                    next.contains("kind=note") && next.contains("cursor="),
                    "{next}"
                );
                uri = next;
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    let expected: Vec<u32> = (0..70).rev().collect();
    assert_eq!(seen, expected);

    // A cursor is bound to its reader: Dan cannot continue Mia's listing.
    let (dan, _) = session(&world, "dan").await;
    let first = send(
        &world,
        Method::GET,
        &format!("/accounts/{}?kind=note", acme.0),
        Some(&mia),
        None,
        &[],
    )
    .await;
    let next = link_to(&first.body, "Older events →").unwrap();
    let replayed = send(&world, Method::GET, &next, Some(&dan), None, &[]).await;
    assert_eq!(replayed.status, StatusCode::UNPROCESSABLE_ENTITY);

    // Roll-up: the subsidiary's note shows, saying where it is; without it, it does not.
    let own = send(
        &world,
        Method::GET,
        &format!("/accounts/{}?kind=note&from={}", acme.0, start.date_naive()),
        Some(&mia),
        None,
        &[],
    )
    .await;
    assert!(!own.body.contains("From the EU office"));
    let rolled = send(
        &world,
        Method::GET,
        &format!("/accounts/{}?kind=note&children=on", acme.0),
        Some(&mia),
        None,
        &[],
    )
    .await;
    assert!(rolled.body.contains("From the EU office"));
    assert!(rolled.body.contains(&format!(
        "on <a href=\"/accounts/{}\">Acme EU</a>",
        acme_eu.0
    )));
    assert!(
        rolled
            .body
            .contains("id=\"children\" name=\"children\" type=\"checkbox\" checked")
    );

    // An admin asks for a sync from the connectors page.
    let (adam, adam_csrf) = session(&world, "adam").await;
    world
        .store
        .register_connector("mail", "test-fingerprint", true)
        .await
        .unwrap();
    let run = send(
        &world,
        Method::POST,
        "/connectors/mail/sync",
        Some(&adam),
        Some(&[("csrf", &adam_csrf)]),
        &[],
    )
    .await;
    assert_eq!(run.status, StatusCode::SEE_OTHER);
    let status = world.store.connector_status("mail").await.unwrap().unwrap();
    assert!(status.sync_requested_at.is_some());
    let page = send(&world, Method::GET, "/connectors", Some(&adam), None, &[]).await;
    assert!(page.body.contains("a sync was asked for") && page.body.contains("Run now"));
    let unknown = send(
        &world,
        Method::POST,
        "/connectors/nope/sync",
        Some(&adam),
        Some(&[("csrf", &adam_csrf)]),
        &[],
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// A meeting held counts as the last contact, and the next one shows on the book and
/// the account page; a meeting called off shows as neither.
async fn the_book_and_the_account_page_show_meetings(store: Store) {
    use rapport_core::account::Domain;
    use rapport_core::timeline::{AttributeValue, EventKind, NewEvent};
    let world = world(store).await;
    let acme = world.accounts["acme"].0;
    let (mia, _) = session(&world, "mia").await;
    let now = Utc::now();
    let meeting = |id: &str, kind: &str, starts: chrono::DateTime<Utc>| {
        let mut event = NewEvent::new(
            "google-calendar",
            id,
            EventKind::parse(kind).unwrap(),
            starts,
            "Quarterly review",
        );
        event.attributes.insert(
            "ends_at".into(),
            AttributeValue::Timestamp(starts + Duration::minutes(45)),
        );
        event
            .hints
            .domains
            .push(Domain::parse("acme.example").unwrap());
        event
    };
    let page = |path: String| {
        let (world, mia) = (&world, &mia);
        async move {
            send(world, Method::GET, &path, Some(mia), None, &[])
                .await
                .body
        }
    };
    let before = page(format!("/accounts/{acme}")).await;
    assert!(
        before.contains("<dt>Next meeting</dt><dd>—</dd>"),
        "{before}"
    );
    assert!(
        before.contains("<dt>Last contact</dt><dd>never</dd>"),
        "{before}"
    );

    let next = (now + Duration::days(3)).with_nanosecond(0).unwrap();
    world
        .store
        .upsert_events(
            &[
                meeting("held", "meeting.scheduled", now - Duration::days(3)),
                meeting("next", "meeting.scheduled", next),
                meeting("off", "meeting.canceled", now + Duration::days(1)),
            ],
            now,
        )
        .await
        .unwrap();
    let shown = next.format("%-d %b %Y %H:%M").to_string();
    let account = page(format!("/accounts/{acme}")).await;
    assert!(
        account.contains(&format!("<dt>Next meeting</dt><dd>{shown} ")),
        "{account}"
    );
    assert!(
        account.contains("<dt>Last contact</dt><dd>3 days ago</dd>")
            || account.contains("<dt>Last contact</dt><dd>2 days ago</dd>"),
        "{account}"
    );
    // Meetings are their own family on the timeline, with a filter of their own.
    assert!(
        account.contains(r#"<span class="icon meeting" role="img" aria-label="Meeting""#),
        "{account}"
    );
    let meetings = page(format!("/accounts/{acme}?kind=meeting")).await;
    assert!(
        meetings.contains("<option value=\"meeting\" selected>Meetings</option>"),
        "{meetings}"
    );
    assert_eq!(
        meetings.matches(r#"<li class="event meeting""#).count(),
        3,
        "{meetings}"
    );
    let book = page("/".to_owned()).await;
    assert!(
        book.contains(&format!("<td data-label=\"Next meeting\">{shown}</td>")),
        "{book}"
    );
}
