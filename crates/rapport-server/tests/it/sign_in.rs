//! Staff sign-in with OpenID Connect, through the router, against a real provider
//! (oidc-provider from npm, on loopback): the code flow with PKCE and a nonce, the ID
//! token checked with the provider's published keys, the email read from userinfo
//! (where this provider, like many, puts it for the code flow) and matched to an active
//! member of staff; the way back works once and only in the browser that started it.

use crate::support::World;
use crate::web::{Reply, send};
use axum::http::{Method, StatusCode, header};
use rapport_server::config::OidcSignInConfig;
use rapport_server::oidc::SignInProviders;
use rapport_server::{AppState, app};
use rapport_sync::{Engine, EngineConfig};
use rapport_testkit::oauth::{Provider, SIGN_IN_CLIENT_ID, SIGN_IN_CLIENT_SECRET};
use std::sync::Arc;

const CALLBACK: &str = "http://rapport.test/connections/callback";

fn location(reply: &Reply) -> String {
    reply
        .headers
        .get(header::LOCATION)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The cookie a reply sets under `name`, if any.
fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            let (pair, _) = value.split_once(';').unwrap_or((value, ""));
            let (found, secret) = pair.split_once('=')?;
            (found == name && !secret.is_empty()).then(|| secret.to_owned())
        })
}

/// The standard org with a provider to sign in with (`allowed` domains, if any).
async fn world_with_provider(
    store: rapport_store::Store,
    allowed_domains: &[&str],
) -> Option<(Provider, World)> {
    let provider = Provider::start(CALLBACK, 3600).await?;
    let mut world = crate::support::world(store.clone()).await;
    let providers = SignInProviders::new(&[OidcSignInConfig {
        id: "work".into(),
        name: "Work account".into(),
        issuer: provider.issuer.clone(),
        client_id: SIGN_IN_CLIENT_ID.into(),
        client_secret: Some(SIGN_IN_CLIENT_SECRET.into()),
        redirect_uri: "http://rapport.test/signin/oidc/callback".into(),
        allowed_domains: allowed_domains.iter().map(|d| (*d).to_owned()).collect(),
        require_verified_email: true,
    }])
    .unwrap();
    let engine = Arc::new(
        Engine::new(store, EngineConfig::default(), Vec::new())
            .await
            .unwrap(),
    );
    world.router = app(AppState::new(engine, 1024)
        .await
        .unwrap()
        .with_sign_in(Arc::new(providers)));
    Some((provider, world))
}

/// Starts signing in with the provider in a fresh browser: its binding cookie and
/// where the provider sends it back after `login` signs in there.
async fn sign_in_at_provider(world: &World, provider: &Provider, login: &str) -> (String, String) {
    let start = send(
        world,
        Method::GET,
        "/signin/oidc/work?next=/accounts/1",
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let browser = set_cookie(&start, "rapport_oidc").expect("the attempt is bound to the browser");
    let to = location(&start);
    assert!(to.starts_with(&provider.issuer), "{to}");
    assert!(to.contains("code_challenge_method=S256"), "{to}");
    assert!(to.contains("nonce="), "{to}");
    let back = provider.authorize(&to, login).await;
    let path = back
        .strip_prefix("http://rapport.test")
        .expect("back to this deployment")
        .to_owned();
    (browser, path)
}

async fn come_back(world: &World, path: &str, browser: Option<&str>) -> Reply {
    let cookie = browser.map(|browser| format!("rapport_oidc={browser}"));
    let extra: Vec<(&str, &str)> = cookie
        .as_deref()
        .map(|cookie| vec![("cookie", cookie)])
        .unwrap_or_default();
    send(world, Method::GET, path, None, None, &extra).await
}

rapport_testkit::on_both_backends!(
    staff_sign_in_with_their_providers_verified_email,
    a_sign_in_comes_back_once_and_only_to_its_browser,
    only_active_staff_of_the_allowed_domains_get_in,
);

async fn staff_sign_in_with_their_providers_verified_email(store: rapport_store::Store) {
    let Some((provider, world)) = world_with_provider(store, &[]).await else {
        return;
    };
    // The sign-in page offers the provider.
    let page = send(&world, Method::GET, "/signin", None, None, &[]).await;
    assert!(
        page.body.contains("/signin/oidc/work") && page.body.contains("Sign in with Work account"),
        "{}",
        page.body
    );
    let (browser, back) = sign_in_at_provider(&world, &provider, "mia@rapport.example").await;
    let done = come_back(&world, &back, Some(&browser)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        location(&done),
        "/accounts/1",
        "onwards to where they were going"
    );
    let session = set_cookie(&done, "rapport_session").expect("a session");
    // The session is Mia's.
    let book = send(&world, Method::GET, "/", Some(&session), None, &[]).await;
    assert_eq!(book.status, StatusCode::OK);
    assert!(book.body.contains("Mia"), "{}", book.body);
    // The trail says how she came in.
    let trail = world
        .store
        .audit_entries(&rapport_store::AuditQuery {
            limit: 200,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        trail.iter().any(|entry| entry.entry.action == "signin.oidc"
            && entry.entry.actor == Some(world.id("mia"))),
        "{trail:?}"
    );
    provider.stop().await;
}

async fn a_sign_in_comes_back_once_and_only_to_its_browser(store: rapport_store::Store) {
    let Some((provider, world)) = world_with_provider(store, &[]).await else {
        return;
    };
    // Someone else's browser (no cookie, or another one) neither gets nor spends it.
    let (browser, back) = sign_in_at_provider(&world, &provider, "mia@rapport.example").await;
    for stranger in [None, Some("someone-elses-cookie")] {
        let refused = come_back(&world, &back, stranger).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
        assert!(set_cookie(&refused, "rapport_session").is_none());
        assert!(
            refused.body.contains("not started in this browser"),
            "{}",
            refused.body
        );
    }
    let done = come_back(&world, &back, Some(&browser)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    // Once only.
    let again = come_back(&world, &back, Some(&browser)).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&again, "rapport_session").is_none());
    // A forged answer (a code the provider never issued) is refused by the provider.
    let (browser, back) = sign_in_at_provider(&world, &provider, "mia@rapport.example").await;
    let forged = url::Url::parse(&format!("http://rapport.test{back}")).unwrap();
    let state = forged
        .query_pairs()
        .find(|(key, _)| key == "state")
        .unwrap()
        .1
        .into_owned();
    let refused = come_back(
        &world,
        &format!("/signin/oidc/callback?state={state}&code=forged"),
        Some(&browser),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert!(refused.body.contains("refused"), "{}", refused.body);
    // An error from the provider is shown, not a session.
    let (browser, back) = sign_in_at_provider(&world, &provider, "mia@rapport.example").await;
    let state = url::Url::parse(&format!("http://rapport.test{back}"))
        .unwrap()
        .query_pairs()
        .find(|(key, _)| key == "state")
        .unwrap()
        .1
        .into_owned();
    let denied = come_back(
        &world,
        &format!("/signin/oidc/callback?state={state}&error=access_denied"),
        Some(&browser),
    )
    .await;
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert!(denied.body.contains("access_denied"), "{}", denied.body);
    provider.stop().await;
}

async fn only_active_staff_of_the_allowed_domains_get_in(store: rapport_store::Store) {
    let Some((provider, world)) = world_with_provider(store.clone(), &["rapport.example"]).await
    else {
        return;
    };
    // Someone the provider knows but rapport does not.
    let (browser, back) = sign_in_at_provider(&world, &provider, "eve@rapport.example").await;
    let refused = come_back(&world, &back, Some(&browser)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("not an active member of staff"),
        "{}",
        refused.body
    );
    // A member of staff who has left.
    store
        .deactivate_staff(world.id("adam"), None, chrono::Utc::now())
        .await
        .unwrap();
    let (browser, back) = sign_in_at_provider(&world, &provider, "adam@rapport.example").await;
    let refused = come_back(&world, &back, Some(&browser)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&refused, "rapport_session").is_none());
    // An address outside the allowed domains, whatever the provider says.
    let (browser, back) = sign_in_at_provider(&world, &provider, "mia@elsewhere.example").await;
    let refused = come_back(&world, &back, Some(&browser)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("may not sign in with Work account"),
        "{}",
        refused.body
    );
    // Failures are on the trail and count towards the address's limit.
    let failures = store
        .audit_entries(&rapport_store::AuditQuery {
            limit: 200,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.entry.action == "signin.oidc.failed")
        .count();
    assert_eq!(failures, 3);
    provider.stop().await;
}
