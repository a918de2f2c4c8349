//! What a connector returns is checked at the boundary: values the store could not
//! keep alike on both backends, or that would break every page they are on, are
//! refused with an error naming the event and the limit; display text is cleaned. Each
//! test calls the hostile guest, built in this test run, and then a well-behaved call
//! on the same host.

use crate::support::*;
use rapport_plugin_host::{Connector, PluginError, PluginHost};

async fn attack(host: &PluginHost, attack: &str, extra: &[(&str, &str)]) -> Connector {
    let plugin = hostile(host).await;
    let mut settings = vec![("attack", attack)];
    settings.extend_from_slice(extra);
    plugin.connector(grants("hostile", &settings, &[])).unwrap()
}

async fn refused(host: &PluginHost, name: &str, extra: &[(&str, &str)]) -> PluginError {
    let error = attack(host, name, extra)
        .await
        .sync(None)
        .await
        .expect_err("the host must refuse it");
    // The host is unharmed.
    let page = attack(host, "none", &[]).await.sync(None).await.unwrap();
    assert_eq!(page.events[0].title, "all good");
    error
}

/// The event's source id and the reason, from an `InvalidEvent`.
fn invalid_event(error: PluginError) -> (String, String) {
    match error {
        PluginError::InvalidEvent {
            source_id, reason, ..
        } => (source_id, reason),
        other => panic!("expected an invalid event, got: {other}"),
    }
}

#[tokio::test]
async fn floats_that_are_not_finite_are_refused() {
    let host = host();
    for value in ["nan", "inf", "-inf"] {
        let (source_id, reason) = invalid_event(refused(&host, "float", &[("value", value)]).await);
        assert_eq!(source_id, "float");
        assert!(
            reason.contains("must be a finite number"),
            "{value}: {reason}"
        );
    }
}

#[tokio::test]
async fn implausible_amounts_of_money_are_refused() {
    let host = host();
    let (source_id, reason) = invalid_event(refused(&host, "money", &[]).await);
    assert_eq!(source_id, "sub_a");
    assert!(reason.contains("not plausible"), "{reason}");
}

#[tokio::test]
async fn a_connector_emits_only_the_kinds_it_declares() {
    let host = host();
    for kind in [
        "billing.subscription.created",
        "billing.invoice.paid",
        "hostile",
        "hostile.probe.extra",
        // rapport's own kinds: no connector may forge them.
        "note",
        "task.created",
        "task.done",
        "assignment.changed",
    ] {
        let (_, reason) = invalid_event(refused(&host, "kind", &[("kind", kind)]).await);
        assert!(
            reason.contains("not among the kinds the connector declares (hostile.probe)"),
            "{kind}: {reason}"
        );
    }
}

#[tokio::test]
async fn every_size_that_crosses_the_boundary_has_a_limit() {
    let host = host();
    let megabyte = (1024 * 1024).to_string();
    match refused(&host, "checkpoint", &[("bytes", &megabyte)]).await {
        PluginError::InvalidPage { reason } => {
            assert!(reason.contains("at most 65536 are allowed"), "{reason}")
        }
        other => panic!("{other}"),
    }
    let (_, reason) = invalid_event(refused(&host, "attribute", &[("bytes", &megabyte)]).await);
    assert!(reason.contains("at most 16384 are allowed"), "{reason}");
    // A summary past its limit, below the call's returned-bytes cap.
    let (_, reason) = invalid_event(refused(&host, "huge", &[("bytes", "20000")]).await);
    assert!(reason.contains("at most 10000 characters"), "{reason}");
    // A manifest past its limits is refused when the plugin loads.
    let error = host
        .load(std::path::Path::new(rapport_testkit::HOSTILE_MANIFEST))
        .await
        .unwrap_err();
    match &error {
        PluginError::InvalidManifest { reason, .. } => assert!(
            reason.contains("its name has 16777216 characters; at most 64 are allowed"),
            "{reason}"
        ),
        other => panic!("{other}"),
    }
    assert!(
        error.to_string().len() < 1_000,
        "the refusal does not repeat the name"
    );
}

#[tokio::test]
async fn control_characters_are_cleaned_from_text_and_refused_in_identifiers() {
    let host = host();
    // Display text: one malformed message shows a mark instead of failing its page.
    let page = attack(&host, "nul", &[]).await.sync(None).await.unwrap();
    let event = &page.events[0];
    assert_eq!(event.title, "Invoice\u{FFFD} paid \u{FFFD}[31m");
    assert_eq!(event.summary, "line\u{FFFD}one\nline two");
    assert_eq!(
        event.attributes.get("plan"),
        Some(&rapport_core::timeline::AttributeValue::Text(
            "pro\u{FFFD}".into()
        ))
    );
    event.validate().unwrap();
    // Identifiers and checkpoints cannot be cleaned without changing what they name.
    let (_, reason) = invalid_event(refused(&host, "nul-id", &[]).await);
    assert!(reason.contains("control characters"), "{reason}");
    match refused(&host, "nul-checkpoint", &[]).await {
        PluginError::InvalidPage { reason } => {
            assert!(reason.contains("control character U+0000"), "{reason}")
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn printing_a_lot_never_fails_the_call() {
    let host = host();
    // 2,000 lines of 1 KiB: far past the log's budget, which drops the rest.
    let page = attack(&host, "stdout", &[("lines", "2000"), ("bytes", "1024")])
        .await
        .sync(None)
        .await
        .unwrap();
    assert_eq!(page.events[0].title, "printed");
    // One line of a mebibyte, without a newline.
    let page = attack(&host, "stdout", &[("lines", "1"), ("bytes", "1048576")])
        .await
        .sync(None)
        .await
        .unwrap();
    assert_eq!(page.events[0].title, "printed");
}

#[test]
fn the_pdk_states_the_limits_the_host_enforces() {
    use rapport_core::timeline::limits as event;
    use rapport_pdk::limits as pdk;
    use rapport_plugin_host::limits as host;
    assert_eq!(pdk::TITLE_CHARS_MAX, event::TITLE_CHARS_MAX);
    assert_eq!(pdk::SUMMARY_CHARS_MAX, event::SUMMARY_CHARS_MAX);
    assert_eq!(pdk::SOURCE_ID_BYTES_MAX, event::SOURCE_ID_BYTES_MAX);
    assert_eq!(pdk::URL_BYTES_MAX, event::URL_BYTES_MAX);
    assert_eq!(pdk::ATTRIBUTES_MAX, event::ATTRIBUTES_MAX);
    assert_eq!(
        pdk::ATTRIBUTE_NAME_BYTES_MAX,
        event::ATTRIBUTE_NAME_BYTES_MAX
    );
    assert_eq!(
        pdk::ATTRIBUTE_TEXT_BYTES_MAX,
        event::ATTRIBUTE_TEXT_BYTES_MAX
    );
    assert_eq!(pdk::ACTOR_NAME_CHARS_MAX, event::ACTOR_NAME_CHARS_MAX);
    assert_eq!(pdk::HINTS_MAX, event::HINTS_MAX);
    assert_eq!(pdk::EVENT_BYTES_MAX, event::EVENT_BYTES_MAX);
    assert_eq!(pdk::MONEY_MINOR_UNITS_MAX, event::MONEY_MINOR_UNITS_MAX);
    assert_eq!(pdk::CHECKPOINT_BYTES_MAX, host::CHECKPOINT_BYTES_MAX);
    assert_eq!(pdk::DELETES_MAX, host::DELETES_MAX);
    assert_eq!(pdk::MANIFEST_NAME_CHARS_MAX, host::MANIFEST_NAME_CHARS_MAX);
    assert_eq!(
        pdk::MANIFEST_DESCRIPTION_CHARS_MAX,
        host::MANIFEST_DESCRIPTION_CHARS_MAX
    );
    assert_eq!(pdk::ERROR_MESSAGE_BYTES_MAX, host::ERROR_MESSAGE_BYTES_MAX);
    assert_eq!(pdk::LOG_LINE_BYTES_MAX, host::LOG_LINE_BYTES_MAX);
}
