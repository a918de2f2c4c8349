//! `rapport-bench nodes`: one, two and three `rapport serve` processes on one
//! PostgreSQL database, syncing the same connectors — how fast the work drains, how it
//! spreads, and how long a connector waits after its node is killed (SIGKILL) before
//! another node carries on from the last committed page.
//!
//! The nodes are the real server binary (`rapport`, built beside this one); the
//! upstreams are loopback feeds in this process with a per-page latency, like a
//! remote API.

use crate::measure::{count, show};
use crate::serve::{self, Serve};
use anyhow::{Context, Result, bail};
use rapport_testkit::database::TestDatabase;
use rapport_testkit::feed::{Feed, seed_customers};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `nodes` measures on.
#[derive(Debug, Clone)]
pub struct NodesOptions {
    /// The PostgreSQL server (a scratch database per run is made and dropped).
    pub postgres: String,
    /// Connectors in the configuration.
    pub connectors: usize,
    /// Items each connector's upstream serves.
    pub items: usize,
    /// Items per upstream page.
    pub page_size: usize,
    /// Added to every upstream response.
    pub latency: Duration,
    /// The lease TTL the nodes run with: the bound on a handoff.
    pub lease_ttl: Duration,
}

/// Runs the node benchmarks.
pub async fn run(options: NodesOptions) -> Result<()> {
    let rapport = serve::rapport_binary()?;
    let plugin_cache = tempfile::tempdir()?;
    println!(
        "nodes: {} connectors × {} items, {} per page, {} upstream latency, lease_ttl {}",
        options.connectors,
        count(options.items as u64),
        options.page_size,
        show(options.latency),
        show(options.lease_ttl)
    );
    let mut feeds = Vec::new();
    for _ in 0..options.connectors {
        let feed = Feed::start(options.items, options.page_size).await;
        feed.state.lock().expect("feed state").latency = options.latency;
        feeds.push(feed);
    }
    let total = (options.connectors * options.items) as u64;
    println!(
        "\n| nodes | runs_max | drained in | events/s | vs one node | connectors each node was seen running |"
    );
    println!("|---:|---:|---:|---:|---:|---|");
    let mut one_node = None;
    for nodes in 1..=3 {
        let database = TestDatabase::postgres_on(options.postgres.clone()).await;
        seed_customers(&database.store).await;
        let dir = tempfile::tempdir()?;
        // Each node takes its share: runs_max = connectors / nodes, rounded up.
        let runs_max = options.connectors.div_ceil(nodes);
        let config = write_config(
            dir.path(),
            &database.url,
            &feeds,
            &options,
            plugin_cache.path(),
            runs_max,
        )?;
        let started = Instant::now();
        let mut children: Vec<Node> = (0..nodes)
            .map(|n| Node::start(&rapport, &config, n))
            .collect::<Result<_>>()?;
        let (drained, spread) = wait_for(&database, total, Duration::from_secs(600)).await?;
        let elapsed = drained.duration_since(started);
        for child in &mut children {
            child.kill();
        }
        let baseline = *one_node.get_or_insert(elapsed);
        println!(
            "| {nodes} | {runs_max} | {} | {} | {:.2}× | {spread} |",
            show(elapsed),
            count((total as f64 / elapsed.as_secs_f64()) as u64),
            baseline.as_secs_f64() / elapsed.as_secs_f64(),
        );
        database.finish().await;
    }

    handoff(&rapport, &options, plugin_cache.path()).await
}

/// Two nodes, one slow connector: kill the node holding its lease mid-run and time
/// until the other node commits its next page.
async fn handoff(rapport: &Path, options: &NodesOptions, cache: &Path) -> Result<()> {
    println!(
        "\n| trial | killed holder at page | lease left at kill | next commit by the survivor after |"
    );
    println!("|---:|---:|---:|---:|");
    let mut waits = Vec::new();
    for trial in 1..=3 {
        let feed = Feed::start(100_000, 50).await;
        feed.state.lock().expect("feed state").latency = Duration::from_millis(100);
        let database = TestDatabase::postgres_on(options.postgres.clone()).await;
        seed_customers(&database.store).await;
        let dir = tempfile::tempdir()?;
        let config = write_config(
            dir.path(),
            &database.url,
            std::slice::from_ref(&feed),
            options,
            cache,
            16,
        )?;
        let mut nodes: Vec<Node> = (0..2)
            .map(|n| Node::start(rapport, &config, n))
            .collect::<Result<_>>()?;
        // Let the holder commit a few pages.
        let (holder, pages) = loop {
            let (holder, pages, _) = lease_of(&database).await?;
            if let Some(holder) = holder
                && pages >= 5
            {
                break (holder, pages);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (_, _, expires_us) = lease_of(&database).await?;
        let victim = nodes
            .iter_mut()
            .find(|node| node.id == holder)
            .context("the lease holder is one of the nodes")?;
        victim.kill();
        let killed = Instant::now();
        let lease_left = Duration::from_micros(
            (expires_us.unwrap_or(0) - chrono::Utc::now().timestamp_micros()).max(0) as u64,
        );
        let resumed = loop {
            let (now_holder, now_pages, _) = lease_of(&database).await?;
            if now_pages > pages + 1 && now_holder.as_deref() != Some(holder.as_str()) {
                break killed.elapsed();
            }
            if killed.elapsed() > options.lease_ttl * 4 + Duration::from_secs(30) {
                bail!(
                    "no node resumed the connector within {}",
                    show(killed.elapsed())
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        println!(
            "| {trial} | {pages} | {} | {} |",
            show(lease_left),
            show(resumed)
        );
        waits.push(resumed);
        for node in &mut nodes {
            node.kill();
        }
        database.finish().await;
    }
    waits.sort();
    println!(
        "\nhandoff after SIGKILL: median {} with lease_ttl {} (bound: the lease left at the kill + one poll)",
        show(waits[waits.len() / 2]),
        show(options.lease_ttl)
    );
    Ok(())
}

/// One node: a `rapport serve` process and its node id.
struct Node {
    id: String,
    process: Serve,
}

impl Node {
    fn start(rapport: &Path, config: &Path, n: usize) -> Result<Node> {
        let id = format!("node-{}", n + 1);
        let process = Serve::start(rapport, config, &id)?;
        Ok(Node { id, process })
    }

    fn kill(&mut self) {
        self.process.kill();
    }
}

fn write_config(
    dir: &Path,
    database: &str,
    feeds: &[Feed],
    options: &NodesOptions,
    cache: &Path,
    runs_max: usize,
) -> Result<PathBuf> {
    serve::write_config(
        dir,
        &format!("listen = \"127.0.0.1:0\"\ndatabase = \"{database}\""),
        &format!(
            "lease_ttl = \"{}ms\"\npoll_interval = \"100ms\"\nruns_max = {runs_max}",
            options.lease_ttl.as_millis()
        ),
        cache,
        "feed",
        feeds,
    )
}

/// Waits until `total` events are stored; returns when, and which connectors each
/// node was seen holding on the way (sampled every 25 ms).
async fn wait_for(
    database: &TestDatabase,
    total: u64,
    limit: Duration,
) -> Result<(Instant, String)> {
    let started = Instant::now();
    let pool = sqlx::PgPool::connect(&database.url).await?;
    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        std::collections::BTreeMap::new();
    loop {
        let stored: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM timeline_events WHERE connector LIKE 'feed%'")
                .fetch_one(&pool)
                .await?;
        let holders: Vec<(String, String)> = sqlx::query_as(
            "SELECT lease_holder, connector FROM connector_state WHERE lease_holder IS NOT NULL",
        )
        .fetch_all(&pool)
        .await?;
        for (holder, connector) in holders {
            seen.entry(holder).or_default().insert(connector);
        }
        if stored as u64 >= total {
            pool.close().await;
            let spread = seen
                .iter()
                .map(|(holder, connectors)| format!("{holder}: {}", connectors.len()))
                .collect::<Vec<_>>()
                .join(", ");
            return Ok((Instant::now(), spread));
        }
        if started.elapsed() > limit {
            bail!(
                "only {stored} of {total} events arrived within {}",
                show(limit)
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The one connector's lease holder, committed pages and lease expiry.
async fn lease_of(database: &TestDatabase) -> Result<(Option<String>, i64, Option<i64>)> {
    let pool = sqlx::PgPool::connect(&database.url).await?;
    let row: Option<(Option<String>, i64, Option<i64>)> = sqlx::query_as(
        "SELECT lease_holder, pages_committed, lease_expires_at_us FROM connector_state WHERE connector = 'feed0'",
    )
    .fetch_optional(&pool)
    .await?;
    pool.close().await;
    Ok(row.unwrap_or((None, 0, None)))
}
