//! Every way a plugin can misbehave fails that call with a typed error, within its
//! deadline plus a tick, and leaves the host and other plugins working.

use crate::support::*;
use rapport_plugin_host::{Connector, EPOCH_TICK_MS, PluginError, PluginHost};
use std::time::{Duration, Instant};

async fn attack(host: &PluginHost, attack: &str, extra: &[(&str, &str)]) -> Connector {
    let plugin = hostile(host).await;
    let mut settings = vec![("attack", attack)];
    settings.extend_from_slice(extra);
    plugin.connector(grants("hostile", &settings, &[])).unwrap()
}

/// After any failure, the same host still runs a well-behaved call.
async fn host_still_works(host: &PluginHost) {
    still_works(&attack(host, "none", &[]).await).await;
}

async fn still_works(healthy: &Connector) {
    let page = healthy
        .sync(None)
        .await
        .expect("a healthy call after the attack");
    assert_eq!(page.events[0].title, "all good");
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_at_the_deadline() {
    let host = host();
    let connector = attack(&host, "loop", &[]).await;
    let started = Instant::now();
    let error = connector.sync(None).await.unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("runaway loop stopped after {elapsed:?} (deadline {DEADLINE_MS} ms)");
    assert!(
        matches!(
            error,
            PluginError::Timeout {
                deadline_ms: DEADLINE_MS
            }
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "the call did not finish within its 1000 ms deadline and was stopped"
    );
    // Stopped by the epoch within about a tick of the deadline (generous bound for a
    // loaded machine; BENCHMARKS.md records the measured overshoot).
    assert!(
        elapsed >= Duration::from_millis(DEADLINE_MS - EPOCH_TICK_MS),
        "{elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_millis(DEADLINE_MS + 20 * EPOCH_TICK_MS + 2_000),
        "{elapsed:?}"
    );
    host_still_works(&host).await;
}

#[tokio::test]
async fn a_memory_bomb_hits_the_cap() {
    let host = host();
    let error = attack(&host, "memory", &[])
        .await
        .sync(None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PluginError::MemoryExceeded {
                limit_bytes: MEMORY_BYTES_MAX
            }
        ),
        "{error}"
    );
    host_still_works(&host).await;
}

#[tokio::test]
async fn runaway_recursion_overflows_only_its_own_stack() {
    let host = host();
    let error = attack(&host, "recursion", &[])
        .await
        .sync(None)
        .await
        .unwrap_err();
    assert!(matches!(error, PluginError::StackOverflow), "{error}");
    assert_eq!(
        error.to_string(),
        "the plugin overflowed its stack and was stopped"
    );
    // Large frames overflow the guest's own stack in linear memory instead, which wasm
    // sees as an access below address zero: still contained, reported as a trap.
    let error = attack(&host, "shadow-recursion", &[])
        .await
        .sync(None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PluginError::Trapped { message } if message.contains("out of bounds memory access")),
        "{error}"
    );
    host_still_works(&host).await;
}

#[tokio::test]
async fn a_panic_is_reported_with_its_message() {
    let host = host();
    let error = attack(&host, "panic", &[])
        .await
        .sync(None)
        .await
        .unwrap_err();
    match &error {
        PluginError::Crashed { message } => {
            assert!(
                message.contains("hostile plugin panicked on purpose"),
                "{message}"
            )
        }
        other => panic!("{other}"),
    }
    host_still_works(&host).await;
}

#[tokio::test]
async fn ten_million_events_cannot_be_returned() {
    let host = host();
    // Ten million events do not even fit in the plugin's memory.
    let error = attack(&host, "flood", &[])
        .await
        .sync(None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, PluginError::MemoryExceeded { .. }),
        "{error}"
    );
    // Twenty thousand fit in memory but exceed the per-call event cap.
    let error = attack(&host, "flood", &[("count", "20000")])
        .await
        .sync(None)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the plugin returned 20000 events; at most 10000 are allowed per call"
    );
    // Ten thousand are fine.
    let page = attack(&host, "flood", &[("count", "10000")])
        .await
        .sync(None)
        .await
        .unwrap();
    assert_eq!(page.events.len(), 10_000);
    host_still_works(&host).await;
}

#[tokio::test]
async fn oversized_output_is_refused() {
    let host = host();
    // 12 MiB of summary: fits in plugin memory, exceeds the 8 MiB returned-bytes cap.
    let twelve_mib = (12 * 1024 * 1024).to_string();
    let error = attack(&host, "huge", &[("bytes", &twelve_mib)])
        .await
        .sync(None)
        .await
        .unwrap_err();
    assert!(matches!(error, PluginError::TooLarge { .. }), "{error}");
    host_still_works(&host).await;
}

#[tokio::test]
async fn plugins_see_no_environment_arguments_or_files() {
    // SAFETY-free check: the test process certainly has environment variables.
    assert!(std::env::vars().count() > 0);
    let host = host();
    let page = attack(&host, "snoop", &[]).await.sync(None).await.unwrap();
    assert_eq!(page.events[0].summary, "env=[] args=[] files=[]");
}

/// On a single-threaded runtime, on purpose: a spinning plugin must yield its thread.
#[tokio::test(flavor = "current_thread")]
async fn a_runaway_plugin_does_not_hold_up_others() {
    let host = host();
    let runaway = attack(&host, "loop", &[]).await;
    let healthy = attack(&host, "none", &[]).await;
    let spinning = tokio::spawn(async move { runaway.sync(None).await });
    tokio::task::yield_now().await;
    // While one plugin spins until its deadline, others keep being served.
    let started = Instant::now();
    for _ in 0..5 {
        still_works(&healthy).await;
    }
    assert!(
        started.elapsed() < Duration::from_millis(DEADLINE_MS),
        "healthy calls waited on the runaway"
    );
    assert!(matches!(
        spinning.await.unwrap(),
        Err(PluginError::Timeout { .. })
    ));
}

/// A host whose slots and memory budget are small enough to fill in a test.
fn small_host(connector_calls_max: u32, memory_bytes_max: usize) -> PluginHost {
    PluginHost::new(rapport_plugin_host::HostConfig {
        cache_dir: None,
        pooling: true,
        concurrent_calls_max: 8,
        connector_calls_max,
        memory_bytes_max,
        webhook_wait_ms: 100,
        limits: limits(),
    })
    .expect("start the plugin host")
}

fn delivery() -> rapport_plugin_host::WebhookRequest {
    rapport_plugin_host::WebhookRequest {
        method: "POST".into(),
        path: "/hooks/x".into(),
        ..Default::default()
    }
}

/// 32 deliveries at once to a connector whose webhook loops: it runs at most its own
/// share of calls, the excess is refused with a retry hint at once or after a short
/// wait, and another connector's sync and webhooks go on meanwhile.
#[tokio::test]
async fn a_webhook_flood_at_one_connector_leaves_the_others_alone() {
    let host = small_host(2, 512 * 1024 * 1024);
    let plugin = hostile(&host).await;
    let flooded = plugin
        .connector(grants(
            "flooded",
            &[("attack", "none"), ("webhook_attack", "loop")],
            &[],
        ))
        .unwrap();
    let healthy = plugin
        .connector(grants("healthy", &[("attack", "none")], &[]))
        .unwrap();
    let flood: Vec<_> = (0..32)
        .map(|_| {
            let flooded = flooded.clone();
            tokio::spawn(async move { flooded.handle_webhook(delivery()).await })
        })
        .collect();
    // While the flood holds its connector's slots, the other connector is served.
    tokio::task::yield_now().await;
    let page = healthy.sync(None).await.expect("another connector syncs");
    assert_eq!(page.events[0].title, "all good");
    let delivered = healthy
        .handle_webhook(delivery())
        .await
        .expect("another connector takes its webhooks");
    assert_eq!(delivered.events[0].title, "delivered");
    assert!(
        flood.iter().any(|task| !task.is_finished()),
        "the healthy calls finished while the flood was still running"
    );
    let mut busy = 0;
    let mut timed_out = 0;
    for task in flood {
        match task.await.unwrap() {
            Err(PluginError::Busy {
                connector,
                retry_after_ms,
                ..
            }) => {
                assert_eq!(connector, "flooded");
                assert!(retry_after_ms > 0);
                busy += 1;
            }
            Err(PluginError::Timeout { .. }) => timed_out += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        timed_out <= 2 * 2,
        "at most the connector's 2 slots ran, twice over the test: {timed_out}"
    );
    assert!(busy >= 28, "the rest were refused: {busy}");
    // The same host still serves the flooded connector's syncs once it is over.
    still_works(&flooded).await;
}

/// Calls that each fit their own cap but together exceed the host's budget: the ones
/// that would cross it fail with the budget named (and are retried as passing
/// failures), the others run, and the memory comes back when they end.
#[tokio::test]
async fn all_calls_together_stay_within_one_memory_budget() {
    const MIB: usize = 1024 * 1024;
    let host = small_host(4, 100 * MIB);
    let plugin = hostile(&host).await;
    let holders: Vec<_> = (0..4)
        .map(|n| {
            let connector = plugin
                .connector(grants(
                    &format!("holder-{n}"),
                    &[("attack", "hold"), ("mb", "40")],
                    &[],
                ))
                .unwrap();
            tokio::spawn(async move { connector.sync(None).await })
        })
        .collect();
    let mut exhausted = 0;
    let mut held_to_the_deadline = 0;
    for holder in holders {
        match holder.await.unwrap() {
            Err(PluginError::MemoryBudgetExhausted { budget_bytes }) => {
                assert_eq!(budget_bytes, 100 * MIB);
                exhausted += 1;
            }
            Err(PluginError::Timeout { .. }) => held_to_the_deadline += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(
        (1..=2).contains(&held_to_the_deadline),
        "at most two 40 MiB calls fit in 100 MiB: {held_to_the_deadline}"
    );
    assert_eq!(exhausted + held_to_the_deadline, 4);
    // Everything was given back: a call that needs most of the budget runs.
    let big = plugin
        .connector(grants("big", &[("attack", "hold"), ("mb", "60")], &[]))
        .unwrap();
    assert!(matches!(
        big.sync(None).await,
        Err(PluginError::Timeout { .. })
    ));
    host_still_works(&host).await;
}
