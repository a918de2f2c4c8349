use crate::support::*;
use rapport_plugin_host::PluginError;

#[tokio::test]
async fn hosts_outside_the_grant_are_refused() {
    let granted = Upstream::start(|_| Reply::json("{}")).await;
    let other = Upstream::start(|_| Reply::json("{}")).await;
    let host = host();
    let plugin = hostile(&host).await;
    // Declared by the plugin (127.0.0.1:*), but the operator granted another port.
    let connector = plugin
        .connector(grants(
            "h",
            &[("attack", "http"), ("url", &other.url())],
            &[granted.grant()],
        ))
        .unwrap();
    match connector.sync(None).await.unwrap_err() {
        PluginError::ForbiddenNetwork { target, reason } => {
            assert_eq!(target, format!("http://{}", other.address));
            assert_eq!(
                reason,
                "the operator has not granted this host (allowed_hosts)"
            );
        }
        unexpected => panic!("{unexpected}"),
    }
    assert!(
        other.requests.lock().unwrap().is_empty(),
        "nothing reached it"
    );
    // Granted by the operator but not declared by the plugin: refused too.
    let connector = plugin
        .connector(grants(
            "h",
            &[("attack", "http"), ("url", "http://localhost:9/x")],
            &["localhost:9".to_owned()],
        ))
        .unwrap();
    match connector.sync(None).await.unwrap_err() {
        PluginError::ForbiddenNetwork { reason, .. } => {
            assert_eq!(
                reason,
                "the plugin does not declare this host in its manifest"
            )
        }
        unexpected => panic!("{unexpected}"),
    }
}

#[tokio::test]
async fn private_addresses_need_explicit_permission() {
    let upstream =
        Upstream::start(|_| Reply::json(r#"{"items":[],"next":null,"more":false}"#)).await;
    let host = host();
    let plugin = example_feed(&host).await;
    let mut strict = grants(
        "feed",
        &[("base_url", &upstream.url())],
        &[upstream.grant()],
    );
    strict.allow_private_networks = false;
    match plugin
        .connector(strict)
        .unwrap()
        .sync(None)
        .await
        .unwrap_err()
    {
        PluginError::ForbiddenNetwork { reason, .. } => assert_eq!(
            reason,
            "127.0.0.1 is a private, loopback or link-local address (set allow_private_networks to allow it)"
        ),
        unexpected => panic!("{unexpected}"),
    }
    assert!(upstream.requests.lock().unwrap().is_empty());
    let lenient = grants(
        "feed",
        &[("base_url", &upstream.url())],
        &[upstream.grant()],
    );
    plugin.connector(lenient).unwrap().sync(None).await.unwrap();
}

#[tokio::test]
async fn tcp_reaches_only_granted_destinations() {
    let granted = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let granted_address = granted.local_addr().unwrap();
    let forbidden = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let forbidden_address = forbidden.local_addr().unwrap();
    let host = host();
    let plugin = hostile(&host).await;
    let connect = |address: std::net::SocketAddr| {
        let connector = plugin
            .connector(grants(
                "h",
                &[("attack", "tcp"), ("address", &address.to_string())],
                &[granted_address.to_string()],
            ))
            .unwrap();
        async move { connector.sync(None).await }
    };
    let page = connect(granted_address).await.unwrap();
    assert_eq!(page.events[0].summary, "connected");
    match connect(forbidden_address).await.unwrap_err() {
        PluginError::ForbiddenNetwork { target, .. } => {
            assert_eq!(target, format!("tcp://{forbidden_address}"))
        }
        unexpected => panic!("{unexpected}"),
    }
}

#[tokio::test]
async fn operators_cannot_grant_everything() {
    let host = host();
    let plugin = example_feed(&host).await;
    let error = plugin
        .connector(grants("feed", &[], &["*".to_owned()]))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("allowed_hosts may not contain `*`"),
        "{error}"
    );
}
