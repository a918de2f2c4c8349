//! Web sessions and sign-in links: single use, expiry, and the events that end a
//! session.

use crate::support::*;
use rapport_core::staff::Level;
use rapport_store::Store;

on_both_backends!(
    a_sign_in_link_works_once_before_it_expires,
    a_session_ends_on_sign_out_expiry_deactivation_and_password_change,
);

async fn a_sign_in_link_works_once_before_it_expires(store: Store) {
    let vera = hire(&store, "Vera VP", Level::Vp, None).await;
    let link = store
        .create_sign_in_link(vera.id, hours(1), t0())
        .await
        .unwrap();
    assert!(link.starts_with("rpl_") && link.len() == 68, "{link}");

    // Late: refused, and it stays usable for nobody after.
    let expired = store
        .create_sign_in_link(vera.id, hours(1), t0())
        .await
        .unwrap();
    assert!(
        store
            .redeem_sign_in_link(&expired, hours(9), hours(1))
            .await
            .unwrap()
            .is_none(),
        "a link is dead at its expiry"
    );

    let issued = store
        .redeem_sign_in_link(&link, hours(9), hours(0) + chrono::Duration::minutes(5))
        .await
        .unwrap()
        .expect("the first use signs in");
    assert_eq!(issued.session.staff.id, vera.id);
    assert!(issued.secret.starts_with("rps_"));
    assert_eq!(issued.session.csrf_token.len(), 32);
    assert!(
        store
            .redeem_sign_in_link(&link, hours(9), hours(0) + chrono::Duration::minutes(6))
            .await
            .unwrap()
            .is_none(),
        "a link works once"
    );
    for garbage in [
        "",
        "rpl_",
        &link.to_uppercase(),
        &format!("rpl_{}", "0".repeat(64)),
    ] {
        assert!(
            store
                .redeem_sign_in_link(garbage, hours(9), t0())
                .await
                .unwrap()
                .is_none(),
            "{garbage:?}"
        );
    }
    let session = store
        .web_session(&issued.secret, hours(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.staff.id, vera.id);
    assert_eq!(session.csrf_token, issued.session.csrf_token);
}

async fn a_session_ends_on_sign_out_expiry_deactivation_and_password_change(store: Store) {
    let vera = hire(&store, "Vera VP", Level::Vp, None).await;
    let dan = hire(&store, "Dan Director", Level::Director, Some(vera.id)).await;
    let start = |staff| {
        let store = store.clone();
        async move {
            store
                .start_web_session(staff, hours(8), t0())
                .await
                .unwrap()
                .unwrap()
                .secret
        }
    };
    let live = |secret: String, at| {
        let store = store.clone();
        async move { store.web_session(&secret, at).await.unwrap().is_some() }
    };

    let signed_out = start(vera.id).await;
    let expiring = start(vera.id).await;
    let other = start(dan.id).await;
    store.end_web_session(&signed_out, hours(1)).await.unwrap();
    assert!(!live(signed_out.clone(), hours(1)).await, "signed out");
    assert!(live(expiring.clone(), hours(7)).await);
    assert!(
        !live(expiring.clone(), hours(8)).await,
        "expired at its expiry"
    );
    store
        .end_web_session("rps_nonsense", hours(1))
        .await
        .unwrap();

    // A password change signs that person's browsers out, nobody else's.
    let stored = rapport_core::password::hash("a long enough passphrase").unwrap();
    store
        .set_password_hash(vera.id, Some(&stored), hours(2))
        .await
        .unwrap();
    assert!(!live(expiring.clone(), hours(3)).await);
    assert!(live(other.clone(), hours(3)).await);
    assert_eq!(
        store.password_hash(vera.id).await.unwrap().as_deref(),
        Some(stored.as_str())
    );
    assert_eq!(store.password_hash(dan.id).await.unwrap(), None);
    assert!(
        store
            .password_hash(rapport_core::StaffId(999))
            .await
            .is_err()
    );

    // Deactivation ends everything: sessions, links, new sessions.
    let link = store
        .create_sign_in_link(dan.id, hours(9), hours(3))
        .await
        .unwrap();
    store
        .deactivate_staff(dan.id, None, hours(4))
        .await
        .unwrap();
    assert!(!live(other, hours(4)).await);
    assert!(
        store
            .redeem_sign_in_link(&link, hours(9), hours(5))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .create_sign_in_link(dan.id, hours(9), hours(5))
            .await
            .is_err()
    );
}
