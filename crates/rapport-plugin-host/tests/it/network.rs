//! The network grant enforced by the host: HTTP and TCP reach only granted hosts,
//! private and special addresses only by explicit permission, name lookups only for
//! granted names.

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
    // Granted by the operator but not declared by the plugin: refused too, before any
    // connection is tried.
    let connector = plugin
        .connector(grants(
            "h",
            &[("attack", "http"), ("url", "http://127.0.0.2:9/x")],
            &["127.0.0.2:9".to_owned()],
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
            "127.0.0.1 is loopback (127.0.0.0/8), a private address (set allow_private_networks to allow it)"
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
            .contains("allowed_hosts: `*` would allow any host"),
        "{error}"
    );
}

/// A lookup is traffic: a name no grant covers is refused without a query — even one
/// the machine would answer itself — and fails the call; a granted name resolves to
/// the addresses the host checked.
#[tokio::test]
async fn name_lookups_are_answered_only_for_granted_names() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let host = host();
    let plugin = hostile(&host).await;
    let lookup = |name: &str, grant: String| {
        let connector = plugin
            .connector(grants("h", &[("attack", "dns"), ("name", name)], &[grant]))
            .unwrap();
        async move { connector.sync(None).await }
    };
    // `localhost` resolves on every machine without a query, and still: refused,
    // because the grant names an address, not that name.
    for name in [
        "localhost",
        "exfiltrate.secret-value.example.com",
        "localhost.",
    ] {
        match lookup(name, format!("127.0.0.1:{port}")).await.unwrap_err() {
            PluginError::ForbiddenNetwork { target, reason } => {
                assert_eq!(target, format!("dns://{name}"));
                assert!(
                    reason.contains("none of its granted hosts covers"),
                    "{reason}"
                );
            }
            other => panic!("{name}: {other}"),
        }
    }
    // Granted by name: answered, from the checked addresses.
    let page = lookup("localhost", format!("localhost:{port}"))
        .await
        .unwrap();
    assert!(
        page.events[0].summary.starts_with("resolved: [")
            && page.events[0].summary.contains("127.0.0.1"),
        "{}",
        page.events[0].summary
    );
    // An address literal needs no lookup.
    let page = lookup("127.0.0.1", format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    assert_eq!(page.events[0].summary, "resolved: [\"127.0.0.1\"]");
}

/// IPv6 forms that reach an IPv4 address are judged as that address, and ranges that
/// are never a server are refused even where private networks are allowed. Every
/// address here is refused before any connection is tried, so nothing is sent.
#[tokio::test]
async fn special_addresses_are_judged_by_what_they_reach() {
    let host = host();
    let plugin = example_feed(&host).await;
    for (base_url, allow_private, expected) in [
        // The IPv4-compatible form of loopback, refused always.
        (
            "http://[::127.0.0.1]:9",
            true,
            "deprecated IPv4-compatible form",
        ),
        // The NAT64 form of the metadata address.
        (
            "http://[64:ff9b::a9fe:a9fe]:9",
            true,
            "cloud metadata endpoint",
        ),
        // 6to4 around a private address.
        (
            "http://[2002:a00:1::1]:9",
            false,
            "private-use (10.0.0.0/8)",
        ),
        // The benchmarking range is private.
        ("http://198.18.0.1:9", false, "benchmarking"),
        // Site-local IPv6, deprecated but routed on some networks.
        ("http://[fec0::1]:9", false, "site-local"),
        // Documentation ranges are never a real server.
        ("http://192.0.2.1:9", true, "documentation"),
        // The mapped form of loopback without allow_private_networks.
        ("http://[::ffff:127.0.0.1]:9", false, "loopback"),
    ] {
        let authority = base_url.trim_start_matches("http://");
        let mut grant = grants("feed", &[("base_url", base_url)], &[authority.to_owned()]);
        grant.allow_private_networks = allow_private;
        let error = plugin
            .connector(grant)
            .unwrap()
            .sync(None)
            .await
            .unwrap_err();
        match error {
            PluginError::ForbiddenNetwork { reason, .. } => {
                assert!(reason.contains(expected), "{base_url}: {reason}")
            }
            other => panic!("{base_url}: {other}"),
        }
    }
}
