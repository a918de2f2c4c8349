//! `rapport-bench flood`: a webhook flood at one connector. One `rapport serve` with two
//! connectors — `flooded`, whose webhook holds `mb` MiB until its deadline (the hostile
//! test guest), and `feed`, a well-behaved one — takes `webhooks` concurrent deliveries
//! at `flooded`. Measured: the server's resident memory idle and at its peak (`VmHWM`),
//! how the flood was answered, and how `/healthz` and the other connector's webhook
//! were served meanwhile. The peer, in the same run, is the same server with the
//! per-connector cap and the shared memory budget opened wide (what one connector could
//! take before they existed).

use crate::memory::{Reading, read_memory};
use crate::serve::{self, Serve};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

/// What `flood` sends.
#[derive(Debug, Clone)]
pub struct FloodOptions {
    /// Concurrent deliveries to the flooded connector.
    pub webhooks: usize,
    /// MiB each flooded call holds until its deadline.
    pub mb: usize,
}

/// How one server took the flood.
struct Outcome {
    idle: Reading,
    peak: Reading,
    busy: usize,
    stopped: usize,
    other: usize,
    healthz_max: Duration,
    feed_status: u16,
    feed_latency: Duration,
    flood_time: Duration,
}

/// Runs the benchmark: the capped server (the defaults), then the open one.
pub async fn run(options: FloodOptions) -> Result<()> {
    let rapport = serve::rapport_binary()?;
    let cache = tempfile::tempdir()?;
    println!(
        "\n{} concurrent webhook deliveries at one connector whose calls each hold {} MiB until a 5 s deadline:\n",
        options.webhooks, options.mb
    );
    println!(
        "| server | idle RSS | peak RSS (VmHWM) | peak − idle | flood answered | /healthz slowest | other connector's webhook |"
    );
    println!("|---|---:|---:|---:|---|---:|---|");
    // Compile both plugins into the cache first, so each server starts alike.
    flood(
        &rapport,
        cache.path(),
        "",
        &FloodOptions {
            webhooks: 0,
            mb: options.mb,
        },
    )
    .await?;
    for (label, tuning) in [
        (
            "defaults: 4 calls per connector, 1 GiB for all calls",
            "connector_calls_max = 4\nmemory_bytes_max = 1073741824",
        ),
        (
            "peer: 32 calls per connector, 64 GiB for all (no containment)",
            "connector_calls_max = 32\nmemory_bytes_max = 68719476736",
        ),
    ] {
        let outcome = flood(&rapport, cache.path(), tuning, &options).await?;
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "| {label} | {:.1} MiB | {:.1} MiB | {:.1} MiB | {} refused (503), {} stopped at the deadline, {} other, in {:.1} s | {:.1} ms | {} in {:.1} ms |",
            mib(outcome.idle.rss_kib),
            mib(outcome.peak.peak_kib),
            mib(outcome.peak.peak_kib.saturating_sub(outcome.idle.rss_kib)),
            outcome.busy,
            outcome.stopped,
            outcome.other,
            outcome.flood_time.as_secs_f64(),
            outcome.healthz_max.as_secs_f64() * 1000.0,
            outcome.feed_status,
            outcome.feed_latency.as_secs_f64() * 1000.0,
        );
    }
    Ok(())
}

async fn flood(
    rapport: &Path,
    cache: &Path,
    tuning: &str,
    options: &FloodOptions,
) -> Result<Outcome> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(rapport_testkit::HOSTILE, dir.path().join("hostile.wasm"))
        .with_context(|| format!("copying {}", rapport_testkit::HOSTILE))?;
    std::fs::copy(
        rapport_testkit::EXAMPLE_FEED,
        dir.path().join("example-feed.wasm"),
    )?;
    let port = serve::free_port()?;
    let config = dir.path().join("rapport.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
database = "sqlite://rapport.db"
plugin_cache_dir = "{cache}"

[plugins]
calls_max = 32
call_deadline = "5s"
{tuning}

[[connector]]
id = "flooded"
plugin = "hostile.wasm"
schedule = "every 1d"
settings = {{ attack = "none", webhook_attack = "hold", mb = "{mb}" }}

[[connector]]
id = "feed"
plugin = "example-feed.wasm"
schedule = "every 1d"
settings = {{ base_url = "http://127.0.0.1:9" }}
secrets = {{ webhook_token = {{ env = "RAPPORT_BENCH_FEED_TOKEN" }} }}
"#,
            cache = cache.display(),
            mb = options.mb,
        ),
    )?;
    let mut server = Serve::start_with_env(
        rapport,
        &config,
        "flood-bench",
        &[("RAPPORT_BENCH_FEED_TOKEN", "s3cret")],
    )?;
    let address = format!("127.0.0.1:{port}");
    serve::wait_ready(&address).await?;
    // Let the first syncs (which fail: nothing listens at the feed's address) settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = read_memory(server.pid())?;

    let started = Instant::now();
    let mut deliveries = tokio::task::JoinSet::new();
    for _ in 0..options.webhooks {
        let address = address.clone();
        deliveries.spawn(async move { post(&address, "/hooks/flooded", &[], "{}").await });
    }
    // While it floods: the other connector's webhook.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let body = serde_json::json!({ "items": [rapport_testkit::feed::item_json(1)] }).to_string();
    let feed_started = Instant::now();
    let (feed_status, _) = post(
        &address,
        "/hooks/feed",
        &[("x-feed-token", "s3cret")],
        &body,
    )
    .await?;
    let feed_latency = feed_started.elapsed();
    // /healthz every 50 ms until the flood is answered.
    let polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = {
        let address = address.clone();
        let polling = polling.clone();
        tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while polling.load(std::sync::atomic::Ordering::Relaxed) {
                let asked = Instant::now();
                let (status, _) = get(&address, "/healthz").await?;
                if status != 200 {
                    bail!("/healthz answered {status} during the flood");
                }
                slowest = slowest.max(asked.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(slowest)
        })
    };
    let mut busy = 0;
    let mut stopped = 0;
    let mut other = 0;
    while let Some(done) = deliveries.join_next().await {
        match done??.0 {
            503 => busy += 1,
            400 => stopped += 1,
            _ => other += 1,
        }
    }
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    let healthz_max = poller.await??;
    let flood_time = started.elapsed();
    let peak = read_memory(server.pid())?;
    server.kill();
    Ok(Outcome {
        idle,
        peak,
        busy,
        stopped,
        other,
        healthz_max,
        feed_status,
        feed_latency,
        flood_time,
    })
}

async fn get(address: &str, path: &str) -> Result<(u16, String)> {
    serve::request(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
    )
    .await
}

async fn post(
    address: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    serve::request(
        address,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}
