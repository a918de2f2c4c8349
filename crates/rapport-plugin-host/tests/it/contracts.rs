//! Contract versions side by side: 0.1.0 is frozen, and a connector built against it
//! (a committed build) loads and syncs exactly as the same connector built against
//! 0.2.0 does.

use crate::support::*;
use rapport_plugin_host::{Auth, ContractVersion};
use sha2::{Digest, Sha256};

/// The SHA-256 of `wit/v0.1.0/connector.wit` as released. A released contract never
/// changes: a change is a new version beside it.
const CONTRACT_0_1_0_SHA256: &str =
    "3ace67300fa245c591dcde9540ad421d1a04745218f733b7b1f4f7fdb9c7e035";

#[test]
fn contract_0_1_0_is_frozen() {
    let text = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../wit/v0.1.0/connector.wit"
    ))
    .unwrap();
    let digest: String = Sha256::digest(&text)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(
        digest, CONTRACT_0_1_0_SHA256,
        "wit/v0.1.0 is released and frozen: put changes in a new version (wit/v0.2.0 and later)"
    );
}

const FIRST_PAGE: &str = r#"{"items":[
  {"id":"a1","kind":"feed.item","at":"2026-03-01T10:00:00Z","title":"Kick-off call","customer":"cus_1","version":3},
  {"id":"a2","kind":"support.ticket","at":"2026-03-02T11:30:00+01:00","title":"Follow-up","email":"Jane@Acme.example"}
],"deleted":["a0"],"next":"cursor-2","more":true}"#;
const SECOND_PAGE: &str = r#"{"items":[
  {"id":"a3","kind":"feed.item","at":"2026-03-03T09:00:00Z","title":"Signed","email":"not an email"}
],"next":null,"more":false}"#;

#[tokio::test]
async fn a_0_1_0_build_syncs_exactly_as_its_0_2_0_build() {
    let upstream = Upstream::start(|path| match path {
        "/feed" => Reply::json(FIRST_PAGE),
        "/feed?after=cursor-2" => Reply::json(SECOND_PAGE),
        "/feed?after=broken" => Reply::status(429, "slow down").header("retry-after", "3"),
        _ => Reply::status(404, "no"),
    })
    .await;
    let host = host();
    let old = host
        .load(std::path::Path::new(EXAMPLE_FEED_0_1_0))
        .await
        .expect("the committed 0.1.0 build loads");
    let new = example_feed(&host).await;
    assert_eq!(old.contract_version(), ContractVersion::V0_1_0);
    assert_eq!(new.contract_version(), ContractVersion::V0_2_0);
    assert_eq!(old.manifest().auth, Auth::None);
    assert_eq!(old.manifest().event_kinds, new.manifest().event_kinds);
    assert_eq!(old.manifest().config_keys, new.manifest().config_keys);
    assert_eq!(old.manifest().hosts, new.manifest().hosts);

    let bind = |plugin: &rapport_plugin_host::Plugin| {
        let mut grants = grants(
            "feed",
            &[("base_url", &upstream.url())],
            &[upstream.grant()],
        );
        grants.secrets.insert("token".into(), "s3cret-token".into());
        plugin.connector(grants).unwrap()
    };
    let (old, new) = (bind(&old), bind(&new));
    let mut checkpoint = None;
    loop {
        let from_old = old.sync(checkpoint.as_deref()).await.unwrap();
        let from_new = new.sync(checkpoint.as_deref()).await.unwrap();
        assert_eq!(from_old, from_new, "the same page, whichever contract");
        if !from_new.more {
            break;
        }
        checkpoint = from_new.checkpoint;
    }
    assert_eq!(upstream.request_count(), 4);

    // Errors come through as the same contract kinds.
    let old_error = old.sync(Some("broken")).await.unwrap_err().to_string();
    let new_error = new.sync(Some("broken")).await.unwrap_err().to_string();
    assert_eq!(old_error, new_error);
    assert!(old_error.contains("retry after 3000 ms"), "{old_error}");
}
