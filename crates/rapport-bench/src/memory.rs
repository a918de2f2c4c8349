//! `rapport-bench memory`: the peak resident memory of a `rapport serve` process — on
//! an empty database with no connectors (the baseline, same run), and on a large
//! database (e.g. the 10M-event one `scale --keep` leaves) with 20 connectors loaded,
//! synced and the API read hard (deep timeline walks, feeds, books).
//!
//! Read from `/proc/<pid>/status`: `VmHWM` is the peak resident set, `VmRSS` the
//! current one.

use crate::measure::count;
use crate::serve::{self, Serve};
use anyhow::{Context, Result, bail};
use chrono::Utc;
use rapport_core::StaffId;
use rapport_store::Store;
use rapport_testkit::feed::Feed;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What `memory` measures on.
#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// The large database (`sqlite://...` or `postgres://...`), already holding an org
    /// made by `scale` (its VP reads the API).
    pub database: String,
    /// Connectors to load.
    pub connectors: usize,
    /// Items each connector syncs.
    pub items: usize,
    /// Pages to walk through the heavy account's timeline and the VP's feed.
    pub pages: usize,
}

/// One reading of a process's memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    /// Resident now (`VmRSS`).
    pub(crate) rss_kib: u64,
    /// The peak so far (`VmHWM`).
    pub(crate) peak_kib: u64,
}

/// Reads a process's memory from `/proc`.
pub(crate) fn read_memory(pid: u32) -> Result<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context("reading /proc (this benchmark needs Linux)")?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok(Reading {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// Runs the memory benchmark.
pub async fn run(options: MemoryOptions) -> Result<()> {
    let rapport = serve::rapport_binary()?;
    let cache = tempfile::tempdir()?;
    println!("\n| server | after start | after syncing | peak (VmHWM) after the reads |");
    println!("|---|---:|---:|---:|");

    // Baseline: an empty SQLite database, no connectors.
    let empty = tempfile::tempdir()?;
    let empty_url = format!("sqlite://{}", empty.path().join("empty.db").display());
    let baseline = measure(&rapport, &empty_url, &[], cache.path(), options.pages).await?;
    println!(
        "| empty database, no connectors | {} | — | {} |",
        mib(baseline.0.rss_kib),
        mib(baseline.2.peak_kib)
    );

    let mut feeds = Vec::new();
    for _ in 0..options.connectors {
        feeds.push(Feed::start(options.items, 100).await);
    }
    let loaded = measure(
        &rapport,
        &options.database,
        &feeds,
        cache.path(),
        options.pages,
    )
    .await?;
    println!(
        "| large database, {} connectors ({} items each) | {} | {} | {} |",
        options.connectors,
        count(options.items as u64),
        mib(loaded.0.rss_kib),
        mib(loaded.1.rss_kib),
        mib(loaded.2.peak_kib)
    );
    Ok(())
}

/// Starts a server on `database` with one connector per feed, waits for the feeds to
/// sync, walks the API, and reads its memory at each step.
async fn measure(
    rapport: &Path,
    database: &str,
    feeds: &[Feed],
    cache: &Path,
    pages: usize,
) -> Result<(Reading, Reading, Reading)> {
    let dir = tempfile::tempdir()?;
    let store = Store::connect(database).await?;
    let viewer = match store
        .list_staff()
        .await?
        .into_iter()
        .find(|staff| staff.reports_to.is_none())
    {
        Some(vp) => vp.id,
        None => create_vp(&store).await?,
    };
    let token = store
        .create_api_token(viewer, "memory bench", None, Utc::now())
        .await?
        .secret;
    let heavy = store.account_tree().await?.first().map(|(id, _)| *id);
    store.close().await;

    let port = serve::free_port()?;
    let config = serve::write_config(
        dir.path(),
        &format!("listen = \"127.0.0.1:{port}\"\ndatabase = \"{database}\""),
        "",
        cache,
        "bench",
        feeds,
    )?;
    let mut server = Serve::start(rapport, &config, "memory-bench")?;
    let address = format!("127.0.0.1:{port}");
    serve::wait_ready(&address).await?;
    let started = read_memory(server.pid())?;

    if !feeds.is_empty() {
        let store = Store::connect(database).await?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let statuses = store.connector_statuses().await?;
            let done = statuses
                .iter()
                .filter(|status| {
                    status.connector.starts_with("bench") && status.last_success_at.is_some()
                })
                .count();
            if done >= feeds.len() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "only {done} of {} connectors synced within 10 minutes",
                    feeds.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        store.close().await;
    }
    let synced = read_memory(server.pid())?;

    // Walk deep: the heavy account's timeline and the VP's feed, page after page, and
    // the book, with eight requests in flight.
    let mut paths = vec!["/api/v1/accounts?limit=200".to_owned()];
    if let Some(account) = heavy {
        paths.push(format!("/api/v1/accounts/{}/timeline?limit=200", account.0));
        paths.push(format!(
            "/api/v1/accounts/{}/timeline?limit=200&children=true",
            account.0
        ));
    }
    paths.push("/api/v1/feed?limit=200".to_owned());
    let mut walkers = tokio::task::JoinSet::new();
    for (n, path) in paths.into_iter().cycle().take(8).enumerate() {
        let address = address.clone();
        let token = token.clone();
        let pages = if n == 0 { 5 } else { pages };
        walkers.spawn(async move { walk(&address, &token, &path, pages).await });
    }
    while let Some(walked) = walkers.join_next().await {
        walked??;
    }
    let after = read_memory(server.pid())?;
    server.kill();
    Ok((started, synced, after))
}

async fn create_vp(store: &Store) -> Result<StaffId> {
    use rapport_core::account::EmailAddress;
    use rapport_core::staff::{Level, NewStaff};
    Ok(store
        .create_staff(
            NewStaff {
                name: "Bench VP".into(),
                email: EmailAddress::parse("bench-vp@rapport.example")?,
                level: Level::Vp,
                reports_to: None,
                is_admin: false,
            },
            Utc::now(),
        )
        .await?
        .id)
}

/// Follows `next` cursors for up to `pages` pages.
async fn walk(address: &str, token: &str, path: &str, pages: usize) -> Result<()> {
    let mut next: Option<String> = None;
    for _ in 0..pages {
        let url = match &next {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let body = get(address, token, &url).await?;
        let page: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("GET {url}: {body:.200}"))?;
        next = page
            .get("next")
            .and_then(|next| next.as_str())
            .map(str::to_owned);
        if next.is_none() {
            break;
        }
    }
    Ok(())
}

/// A bare HTTP/1.1 GET (loopback only); returns the body.
async fn get(address: &str, token: &str, path: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or_default());
    }
    // A chunked body: take the chunks' data.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut data = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16)?;
            if size == 0 {
                break;
            }
            data.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
        return Ok(data);
    }
    Ok(body.to_owned())
}
