//! The HTTP surface as an attacker meets it: where sign-in may send a browser, the
//! headers on every kind of response, and what a form must look like to be accepted.

use crate::support::*;
use crate::web::{send, session};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use chrono::Utc;
use http_body_util::BodyExt;
use rapport_store::Store;
use rapport_testkit::on_both_backends;
use serde_json::json;
use tower::ServiceExt;

on_both_backends!(
    sign_in_sends_the_browser_only_to_this_site,
    every_response_carries_the_security_headers,
    forms_come_from_this_exact_origin_as_url_encoded_forms,
    what_people_send_and_make_is_bounded,
);

/// Where a `Location` leads when a browser on `http://rapport.test/signin` follows it.
fn lands_on(location: &str) -> url::Url {
    url::Url::parse("http://rapport.test/signin")
        .unwrap()
        .join(location)
        .unwrap()
}

/// Forms of `next` that browsers read as another host: a tab, newline or carriage
/// return between the slashes is dropped by the URL parser, `\` is a `/`.
const HOSTILE_NEXT: [&str; 12] = [
    "/%09/127.0.0.2:12496/",
    "/%0A/127.0.0.2/",
    "/%0D/127.0.0.2/",
    "/%09%0A%0D/127.0.0.2/",
    "%09//127.0.0.2/",
    "%20//127.0.0.2/",
    "%00//127.0.0.2/",
    "/%5C127.0.0.2/",
    "%5C%5C127.0.0.2/",
    "/%09%5C127.0.0.2/",
    "https:%2F%2F127.0.0.2/",
    "//127.0.0.2@rapport.test/",
];

async fn sign_in_sends_the_browser_only_to_this_site(store: Store) {
    let world = world(store).await;
    // (Setting a password ends sessions, so it comes first.)
    let hash = rapport_core::password::hash("correct horse battery").unwrap();
    world
        .store
        .set_password_hash(world.id("mia"), Some(&hash), Utc::now())
        .await
        .unwrap();
    let (mia, _) = session(&world, "mia").await;

    for next in HOSTILE_NEXT
        .iter()
        .chain(&["/%0A/x", "/%0D%0ASet-Cookie:%20x=1"])
    {
        // Signed in already: straight on — to this site, never a 500.
        let reply = send(
            &world,
            Method::GET,
            &format!("/signin?next={next}"),
            Some(&mia),
            None,
            &[],
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "next={next}: {}",
            reply.body
        );
        let location = reply.headers[header::LOCATION].to_str().unwrap();
        assert_eq!(
            lands_on(location).host_str(),
            Some("rapport.test"),
            "next={next} sent the browser to {location}"
        );
        assert!(!reply.headers.contains_key(header::SET_COOKIE), "{next}");

        // Not signed in: the form carries `next`, and a real password sign-in
        // follows it only on this site.
        let decoded: String = url::form_urlencoded::parse(format!("next={next}").as_bytes())
            .map(|(_, value)| value.into_owned())
            .collect();
        let reply = send(
            &world,
            Method::POST,
            "/signin",
            None,
            Some(&[
                ("email", "mia@rapport.example"),
                ("password", "correct horse battery"),
                ("next", &decoded),
            ]),
            &[("origin", "http://rapport.test")],
        )
        .await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "next={next}");
        let location = reply.headers[header::LOCATION].to_str().unwrap();
        assert_eq!(
            lands_on(location).host_str(),
            Some("rapport.test"),
            "next={next:?} sent the browser to {location}"
        );
    }

    // A path on this site is kept, query and all.
    let acme = world.accounts["acme"].0;
    let reply = send(
        &world,
        Method::GET,
        &format!("/signin?next=%2Faccounts%2F{acme}%3Fkind%3Dnote"),
        Some(&mia),
        None,
        &[],
    )
    .await;
    assert_eq!(
        reply.headers[header::LOCATION],
        format!("/accounts/{acme}?kind=note").as_str()
    );
}

async fn every_response_carries_the_security_headers(store: Store) {
    let world = world(store).await;
    let (mia, _) = session(&world, "mia").await;
    let token = world.tokens["mia"].clone();
    let acme = world.accounts["acme"].0;
    let bearer = format!("Bearer {token}");
    for (uri, cookie, auth, status) in [
        ("/no/such/page", None, None, StatusCode::NOT_FOUND),
        (
            "/no/such/page",
            Some(mia.as_str()),
            None,
            StatusCode::NOT_FOUND,
        ),
        ("/api/v2/nothing", None, None, StatusCode::NOT_FOUND),
        ("/api/v1/accounts", None, None, StatusCode::UNAUTHORIZED),
        (
            "/api/v1/accounts",
            None,
            Some(bearer.as_str()),
            StatusCode::OK,
        ),
        (
            "/api/v1/accounts/999999",
            None,
            Some(bearer.as_str()),
            StatusCode::NOT_FOUND,
        ),
        ("/signin", None, None, StatusCode::OK),
        ("/", Some(mia.as_str()), None, StatusCode::OK),
        ("/healthz", None, None, StatusCode::OK),
    ] {
        let extra: Vec<(&str, &str)> = auth
            .map(|auth| ("authorization", auth))
            .into_iter()
            .collect();
        let reply = send(&world, Method::GET, uri, cookie, None, &extra).await;
        assert_eq!(reply.status, status, "{uri}");
        for (name, value) in [
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CACHE_CONTROL, "no-store"),
        ] {
            assert_eq!(
                reply.headers.get(&name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{uri}: {name}"
            );
        }
        let csp = reply.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
            "{uri}: {csp}"
        );
    }
    // The one thing meant to be cached.
    let css = send(&world, Method::GET, "/assets/app.css", None, None, &[]).await;
    assert_eq!(css.headers[header::CACHE_CONTROL], "public, max-age=3600");
    let _ = acme;
}

/// A POST of `body` as `content_type` to `uri` with `mia`'s session.
async fn post_raw(
    world: &World,
    uri: &str,
    cookie: &str,
    content_type: &str,
    body: String,
    origin: Option<&str>,
) -> StatusCode {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::HOST, "rapport.test")
        .header(header::COOKIE, format!("rapport_session={cookie}"))
        .header(header::CONTENT_TYPE, content_type);
    if let Some(origin) = origin {
        request = request.header(header::ORIGIN, origin);
    }
    let response = world
        .router
        .clone()
        .oneshot(request.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await.unwrap();
    status
}

async fn forms_come_from_this_exact_origin_as_url_encoded_forms(store: Store) {
    let world = world(store).await;
    let acme = world.accounts["acme"].0;
    let (mia, csrf) = session(&world, "mia").await;
    let notes = format!("/accounts/{acme}/notes");
    let form = |text: &str| format!("csrf={csrf}&text={text}");

    for origin in [
        "https://rapport.test",
        "http://rapport.test:8080",
        "http://rapport.test.evil.example",
        "http://evil.example",
        "null",
        "rapport.test",
        "http://mia@rapport.test",
    ] {
        let status = post_raw(
            &world,
            &notes,
            &mia,
            "application/x-www-form-urlencoded",
            form("from-elsewhere"),
            Some(origin),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "Origin: {origin}");
    }
    for content_type in [
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/json",
    ] {
        let status = post_raw(
            &world,
            &notes,
            &mia,
            content_type,
            form("as-another-type"),
            Some("http://rapport.test"),
        )
        .await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type}");
    }
    // This site, as a browser sends it (a charset parameter is fine).
    for (origin, content_type, text) in [
        (
            Some("http://rapport.test"),
            "application/x-www-form-urlencoded",
            "plain-origin",
        ),
        (
            None,
            "application/x-www-form-urlencoded; charset=UTF-8",
            "no-origin",
        ),
        (
            Some("HTTP://RAPPORT.TEST"),
            "application/x-www-form-urlencoded",
            "upper-case",
        ),
    ] {
        let status = post_raw(&world, &notes, &mia, content_type, form(text), origin).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{origin:?} {content_type}");
    }
    let page = send(
        &world,
        Method::GET,
        &format!("/accounts/{acme}?kind=note"),
        Some(&mia),
        None,
        &[],
    )
    .await;
    for refused in ["from-elsewhere", "as-another-type"] {
        assert!(!page.body.contains(refused), "{refused} was written");
    }
    for accepted in ["plain-origin", "no-origin", "upper-case"] {
        assert!(page.body.contains(accepted), "{accepted} was not written");
    }

    // Behind a TLS proxy the site is https, and only https is this site.
    let behind_proxy = |origin: &'static str| {
        let world = &world;
        let mia = mia.clone();
        let body = form("via-proxy");
        async move {
            let request = Request::builder()
                .method(Method::POST)
                .uri(format!("/accounts/{acme}/notes"))
                .header(header::HOST, "rapport.test")
                .header("x-forwarded-proto", "https")
                .header(header::COOKIE, format!("rapport_session={mia}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::ORIGIN, origin)
                .body(Body::from(body))
                .unwrap();
            world
                .router
                .clone()
                .oneshot(request)
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        behind_proxy("http://rapport.test").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        behind_proxy("https://rapport.test").await,
        StatusCode::SEE_OTHER
    );
}

async fn what_people_send_and_make_is_bounded(store: Store) {
    let world = world(store).await;
    let acme = world.accounts["acme"].0;
    // Search text: the whole query string, one parameter, and the search itself are
    // each bounded, with a 422 that says the limit — never a 503.
    for (length, says) in [
        (50_010, "at most 4096"),
        (600, "at most 512"),
        (201, "at most 200"),
    ] {
        let q = "a".repeat(length);
        let (status, problem) = world
            .as_("mia", Method::GET, &format!("/api/v1/accounts?q={q}"), None)
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{length}: {problem}"
        );
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{length}: {detail}");
        let (cookie, _) = session(&world, "mia").await;
        let page = send(
            &world,
            Method::GET,
            &format!("/?q={q}"),
            Some(&cookie),
            None,
            &[],
        )
        .await;
        assert_eq!(
            page.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "web, {length}"
        );
        // The page has no per-parameter bound of its own; the search's is tighter.
        assert!(page.body.contains("at most"), "web, {length}");
    }
    let (status, found) = world
        .as_(
            "mia",
            Method::GET,
            &format!("/api/v1/accounts?q={}", "acme"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    // Other parameters too.
    for uri in [
        format!("/api/v1/accounts/{acme}/timeline?kind={}", "x".repeat(513)),
        format!("/api/v1/feed?source={}", "x".repeat(513)),
        format!("/api/v1/accounts?cursor={}", "x".repeat(513)),
    ] {
        let (status, problem) = world.as_("mia", Method::GET, &uri, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{uri}: {problem}");
    }

    // A body is a JSON object: serde would read `[null, null]` as the PATCH's fields
    // in order, which the document does not allow.
    for body in [
        json!([null, null]),
        json!(["Renamed"]),
        json!("Renamed"),
        json!(5),
    ] {
        let (status, problem) = world
            .as_(
                "mia",
                Method::PATCH,
                &format!("/api/v1/accounts/{acme}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {problem}"
        );
    }
    // JSON has one kind of number: 2400.0 is the integer 2400.
    let (status, answer) = world
        .as_(
            "dan",
            Method::PUT,
            &format!("/api/v1/accounts/{acme}/owner"),
            Some(json!({"staff": world.id("max").0 as f64})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // Tokens: at most 25 live ones a person; revoking one frees a place.
    let mut last = None;
    for n in 1..rapport_core::token::TOKENS_PER_PERSON_MAX {
        let (status, issued) = world
            .as_(
                "mia",
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": format!("script {n}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "token {n}: {issued}");
        last = Some(issued["token"]["id"].as_i64().unwrap());
    }
    let (status, problem) = world
        .as_(
            "mia",
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "one too many"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("revoke"),
        "{problem}"
    );
    // An admin making one for her is held to the same cap.
    let (status, _) = world
        .as_(
            "adam",
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "for mia", "staff": world.id("mia").0})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = world
        .as_(
            "mia",
            Method::DELETE,
            &format!("/api/v1/tokens/{}", last.unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = world
        .as_(
            "mia",
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "replacement"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // Dates people type are plausible years.
    for due in ["0000-01-01", "1899-12-31", "2200-01-01", "9999-12-31"] {
        let (status, problem) = world
            .as_(
                "mia",
                Method::POST,
                &format!("/api/v1/accounts/{acme}/tasks"),
                Some(json!({"text": "call back", "due": due})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{due}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("1900 to 2199"),
            "{problem}"
        );
        let (status, _) = world
            .as_(
                "mia",
                Method::PATCH,
                &format!("/api/v1/accounts/{acme}"),
                Some(json!({"renewal_date": due})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "renewal {due}");
        let (cookie, csrf) = session(&world, "mia").await;
        let reply = send(
            &world,
            Method::POST,
            &format!("/accounts/{acme}/tasks"),
            Some(&cookie),
            Some(&[
                ("csrf", csrf.as_str()),
                ("text", "from the form"),
                ("due", due),
            ]),
            &[],
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNPROCESSABLE_ENTITY, "form {due}");
    }
    let (status, _) = world
        .as_(
            "mia",
            Method::POST,
            &format!("/api/v1/accounts/{acme}/tasks"),
            Some(json!({"text": "call back", "due": "2027-01-15"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
}
