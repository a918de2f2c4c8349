//! API tokens: acting as their owner until revoked or expired, and only their hash
//! stored.

use crate::support::*;
use rapport_core::DomainError;
use rapport_core::staff::Level;
use rapport_store::{Error, Store};

on_both_backends!(
    a_token_acts_as_its_owner_until_revoked_or_expired,
    only_the_hash_is_stored,
);

async fn a_token_acts_as_its_owner_until_revoked_or_expired(store: Store) {
    let vera = hire(&store, "Vera VP", Level::Vp, None).await;
    let issued = store
        .create_api_token(vera.id, "reporting script", None, t0())
        .await
        .unwrap();
    assert!(issued.secret.starts_with("rpt_") && issued.secret.len() == 68);
    assert_eq!(issued.token.display_prefix, &issued.secret[..12]);

    let who = store
        .authenticate_api_token(&issued.secret, hours(1))
        .await
        .unwrap();
    assert_eq!(who.map(|staff| staff.id), Some(vera.id));
    let listed = store.api_tokens(Some(vera.id)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(hours(1)), "use is recorded");
    // Within the resolution a use writes nothing; after it, it is recorded again.
    let soon = hours(1) + chrono::Duration::seconds(30);
    store
        .authenticate_api_token(&issued.secret, soon)
        .await
        .unwrap();
    let listed = store.api_tokens(Some(vera.id)).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(hours(1)));
    store
        .authenticate_api_token(&issued.secret, hours(2))
        .await
        .unwrap();
    let listed = store.api_tokens(Some(vera.id)).await.unwrap();
    assert_eq!(listed[0].last_used_at, Some(hours(2)));

    // Anything else is nobody: a near miss, garbage, an unknown well-formed token.
    let mut near = issued.secret.clone().into_bytes();
    near[20] = if near[20] == b'a' { b'b' } else { b'a' };
    for presented in [
        String::from_utf8(near).unwrap(),
        "Bearer nonsense".to_owned(),
        String::new(),
        format!("rpt_{}", "0".repeat(64)),
    ] {
        assert!(
            store
                .authenticate_api_token(&presented, hours(1))
                .await
                .unwrap()
                .is_none(),
            "{presented}"
        );
    }

    // Expiry and revocation.
    let short = store
        .create_api_token(vera.id, "one day", Some(hours(24)), t0())
        .await
        .unwrap();
    assert!(
        store
            .authenticate_api_token(&short.secret, hours(23))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .authenticate_api_token(&short.secret, hours(24))
            .await
            .unwrap()
            .is_none()
    );
    let revoked = store
        .revoke_api_token(issued.token.id, hours(2))
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(hours(2)));
    assert!(
        store
            .authenticate_api_token(&issued.secret, hours(3))
            .await
            .unwrap()
            .is_none()
    );
    // Revoking again keeps the first time.
    let again = store
        .revoke_api_token(issued.token.id, hours(5))
        .await
        .unwrap();
    assert_eq!(again.revoked_at, Some(hours(2)));

    match store.revoke_api_token(9_999, hours(2)).await {
        Err(Error::Domain(DomainError::UnknownToken(9_999))) => {}
        other => panic!("expected an unknown token, got {other:?}"),
    }
    match store.create_api_token(vera.id, "  ", None, t0()).await {
        Err(Error::Domain(DomainError::InvalidField { .. })) => {}
        other => panic!("expected a name error, got {other:?}"),
    }
    match store
        .create_api_token(vera.id, "past", Some(t0()), hours(1))
        .await
    {
        Err(Error::Domain(DomainError::InvalidField { .. })) => {}
        other => panic!("expected an expiry error, got {other:?}"),
    }

    // A deactivated person's tokens stop working with them.
    let manager = hire(&store, "Dana Director", Level::Director, Some(vera.id)).await;
    let theirs = store
        .create_api_token(manager.id, "cli", None, t0())
        .await
        .unwrap();
    assert!(
        store
            .authenticate_api_token(&theirs.secret, hours(1))
            .await
            .unwrap()
            .is_some()
    );
    store
        .deactivate_staff(manager.id, None, hours(2))
        .await
        .unwrap();
    assert!(
        store
            .authenticate_api_token(&theirs.secret, hours(3))
            .await
            .unwrap()
            .is_none()
    );
    match store
        .create_api_token(manager.id, "again", None, hours(4))
        .await
    {
        Err(Error::Domain(DomainError::StaffInactive(id))) => assert_eq!(id, manager.id),
        other => panic!("expected an inactive-staff error, got {other:?}"),
    }
    assert_eq!(store.api_tokens(None).await.unwrap().len(), 3);
}

async fn only_the_hash_is_stored(store: Store) {
    let vera = hire(&store, "Vera VP", Level::Vp, None).await;
    let issued = store
        .create_api_token(vera.id, "script", None, t0())
        .await
        .unwrap();
    let dump = format!("{:?}", store.api_tokens(None).await.unwrap());
    assert!(!dump.contains(&issued.secret));
    assert!(
        !dump.contains(&issued.secret[12..]),
        "only the display prefix is in the clear"
    );
}
