//! `rapport-bench scale`: a synthetic org and history written through the store's sync
//! path, then read the ways people read it — each measured beside its peer in the same
//! run:
//! - ingest (`Store::commit_page`: lease fence, identity resolution, upsert,
//!   checkpoint) vs a native prepared-INSERT loop (rusqlite) or binary `COPY`
//!   (PostgreSQL) writing the same rows, one transaction per page, into the same schema;
//! - re-ingest of stored pages (the dedupe path) vs their first ingest;
//! - a heavy account's timeline at depth 0, 10k and 50k by keyset vs the same rows by
//!   `OFFSET`, with filters, and the roll-up over its subsidiaries;
//! - the feed across a director's 50 reports and across the VP's whole org.

use crate::measure::{Table, Timing, repeat};
use crate::synth::{self, CONNECTORS, History, Org, Shape};
use anyhow::{Context, Result};
use chrono::Utc;
use rapport_core::AccountId;
use rapport_core::timeline::{NewEvent, TimelineCursor};
use rapport_store::{FeedQuery, Lease, PageWrite, Store, TimelinePage, TimelineQuery};
use std::time::{Duration, Instant};

/// Events per committed page, as a connector's page.
pub const PAGE: usize = 500;
/// Timed repetitions of each read.
const RUNS: usize = 40;

/// What `scale` measures on.
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// The org and history.
    pub shape: Shape,
    /// Where the SQLite files go (a temporary directory when `None`).
    pub dir: Option<std::path::PathBuf>,
    /// Also measure on this PostgreSQL server (a scratch database is made and dropped).
    pub postgres: Option<String>,
    /// Skip SQLite.
    pub postgres_only: bool,
    /// Leave the SQLite database in `dir` for `rapport-bench memory`.
    pub keep: bool,
    /// Leave the PostgreSQL scratch database, to read its plans.
    pub keep_postgres: bool,
}

/// Runs the scale benchmark on each backend asked for.
pub async fn run(options: ScaleOptions) -> Result<()> {
    let shape = options.shape;
    println!(
        "scale: {} accounts, {} events ({} heavy accounts × {} events), pages of {PAGE}",
        crate::measure::count(shape.accounts as u64),
        crate::measure::count(shape.events),
        shape.heavy,
        crate::measure::count(shape.heavy_events),
    );
    if !options.postgres_only {
        let temporary;
        let dir = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                dir.clone()
            }
            None => {
                temporary = tempfile::tempdir()?;
                temporary.path().to_owned()
            }
        };
        let path = dir.join("scale.db");
        let native_path = dir.join("native.db");
        for file in [&path, &native_path] {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url).await?;
        let native = Store::connect(&format!("sqlite://{}", native_path.display())).await?;
        let native_peer = NativePeer::Sqlite(native_path.clone());
        bench_backend(
            "SQLite (WAL, synchronous=NORMAL)",
            shape,
            &store,
            &url,
            native,
            native_peer,
        )
        .await?;
        store.close().await;
        let _ = std::fs::remove_file(&native_path);
        if options.keep {
            println!("\nkept {} for `rapport-bench memory`", path.display());
        } else {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
        }
    }
    if let Some(admin) = &options.postgres {
        let main = rapport_testkit::database::TestDatabase::postgres_on(admin.clone()).await;
        let native = rapport_testkit::database::TestDatabase::postgres_on(admin.clone()).await;
        let peer = NativePeer::Postgres(native.url.clone());
        let native_store = Store::connect(&native.url).await?;
        bench_backend(
            "PostgreSQL 15 (loopback TCP)",
            shape,
            &main.store,
            &main.url,
            native_store,
            peer,
        )
        .await?;
        native.finish().await;
        if options.keep_postgres {
            println!("\nkept {} (drop it with DROP DATABASE when done)", main.url);
        } else {
            main.finish().await;
        }
    }
    Ok(())
}

/// The peer that writes the same rows without the store.
#[derive(Debug)]
enum NativePeer {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

async fn bench_backend(
    backend: &str,
    shape: Shape,
    store: &Store,
    url: &str,
    native_store: Store,
    native: NativePeer,
) -> Result<()> {
    println!("\n## {backend}");
    let at = Utc::now();
    let started = Instant::now();
    let org = synth::create_org(store, shape.accounts, at).await?;
    let native_org = synth::create_org(&native_store, shape.accounts, at).await?;
    native_store.close().await;
    println!(
        "org created twice in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let history = History::new(shape, synth::history_end());
    let reingest_events = shape.events.min(100_000);

    let ingest = ingest(store, &history, reingest_events).await?;
    let native_elapsed = match &native {
        NativePeer::Sqlite(path) => native_sqlite(path, &history, &native_org)?,
        NativePeer::Postgres(url) => native_copy(url, &history, &native_org).await?,
    };
    let reingest = reingest(store, &history, reingest_events).await?;
    let mut writes = Table::new(format!("{backend}: writes"));
    let native_name = match native {
        NativePeer::Sqlite(_) => "rusqlite prepared INSERT loop",
        NativePeer::Postgres(_) => "binary COPY",
    };
    writes.write(
        "ingest: `commit_page` (fence, resolve, upsert, checkpoint), 500/page",
        ingest.all,
        native_name,
        native_elapsed,
        shape.events,
    );
    writes.write(
        &format!(
            "re-ingest of the first {} events (all unchanged)",
            crate::measure::count(reingest_events)
        ),
        reingest,
        "their first ingest",
        ingest.first,
        reingest_events,
    );
    writes.print();

    reads(store, url, &org, backend).await
}

struct Ingest {
    all: Duration,
    /// The time of the pages holding the first `first_events` events.
    first: Duration,
}

/// The pages of the history: per connector, `PAGE` events at a time, interleaved across
/// connectors as four connectors syncing side by side would commit them.
fn pages(history: &History) -> impl Iterator<Item = (usize, Vec<u64>)> + '_ {
    let mut streams: Vec<_> = (0..CONNECTORS.len())
        .map(|c| history.of_connector(c))
        .collect();
    let mut next = 0usize;
    let mut exhausted = 0usize;
    std::iter::from_fn(move || {
        while exhausted < CONNECTORS.len() {
            let connector = next % CONNECTORS.len();
            next += 1;
            let page: Vec<u64> = streams[connector].by_ref().take(PAGE).collect();
            if page.is_empty() {
                exhausted += 1;
                continue;
            }
            exhausted = 0;
            return Some((connector, page));
        }
        None
    })
}

async fn leases(store: &Store) -> Result<Vec<Lease>> {
    let mut leases = Vec::new();
    for connector in CONNECTORS {
        store.register_connector(connector, "bench", true).await?;
        let lease = store
            .acquire_lease(connector, "bench", Duration::from_secs(86_400), Utc::now())
            .await?
            .context("the lease is free in a fresh database")?;
        leases.push(lease);
    }
    Ok(leases)
}

async fn commit(store: &Store, lease: &Lease, events: &[NewEvent], last: u64) -> Result<Duration> {
    let checkpoint = last.to_string();
    let started = Instant::now();
    store
        .commit_page(
            lease,
            PageWrite {
                events,
                deleted: &[],
                checkpoint: Some(&checkpoint),
            },
            Utc::now(),
        )
        .await?;
    Ok(started.elapsed())
}

async fn ingest(store: &Store, history: &History, first_events: u64) -> Result<Ingest> {
    let leases = leases(store).await?;
    let mut all = Duration::ZERO;
    let mut first = Duration::ZERO;
    let mut written = 0u64;
    let mut shown = 0u64;
    let total = history_len(history);
    for (connector, page) in pages(history) {
        let events: Vec<NewEvent> = page.iter().map(|&n| history.event(n).0).collect();
        let took = commit(
            store,
            &leases[connector],
            &events,
            *page.last().expect("a page"),
        )
        .await?;
        all += took;
        if page[0] < first_events {
            first += took;
        }
        written += page.len() as u64;
        if written * 10 / total > shown {
            shown = written * 10 / total;
            eprintln!(
                "  ingest {}% ({} events/s so far)",
                shown * 10,
                crate::measure::count((written as f64 / all.as_secs_f64()) as u64)
            );
        }
    }
    for lease in leases {
        store.release_lease(&lease).await?;
    }
    Ok(Ingest { all, first })
}

fn history_len(history: &History) -> u64 {
    (0..CONNECTORS.len())
        .map(|c| history.of_connector(c).count() as u64)
        .sum::<u64>()
        .max(1)
}

/// The pages holding the first `events` events, committed again: every event is already
/// stored at the same version.
async fn reingest(store: &Store, history: &History, events: u64) -> Result<Duration> {
    let leases = leases_again(store).await?;
    let mut elapsed = Duration::ZERO;
    for (connector, page) in pages(history).take_while(|(_, page)| page[0] < events) {
        let batch: Vec<NewEvent> = page.iter().map(|&n| history.event(n).0).collect();
        elapsed += commit(
            store,
            &leases[connector],
            &batch,
            *page.last().expect("a page"),
        )
        .await?;
    }
    for lease in leases {
        store.release_lease(&lease).await?;
    }
    Ok(elapsed)
}

async fn leases_again(store: &Store) -> Result<Vec<Lease>> {
    let mut leases = Vec::new();
    for connector in CONNECTORS {
        let lease = store
            .acquire_lease(
                connector,
                "bench-again",
                Duration::from_secs(86_400),
                Utc::now(),
            )
            .await?
            .context("the first run released its leases")?;
        leases.push(lease);
    }
    Ok(leases)
}

/// A row as the native peers write it: the account resolved and the JSON encoded
/// before the clock starts, so they time only the writes.
struct NativeRow {
    connector: &'static str,
    source_id: String,
    account: i64,
    kind: String,
    occurred_us: i64,
    title: String,
    summary: String,
    attributes: String,
    hints: String,
    rule: &'static str,
    detail: String,
}

fn native_rows(history: &History, org: &Org, page: &[u64]) -> Vec<NativeRow> {
    page.iter()
        .map(|&n| {
            let (event, account) = history.event(n);
            let (rule, detail) = if event.hints.external_ids.is_empty() {
                (
                    "domain",
                    format!(
                        r#"{{"rule":"domain","domain":"{}"}}"#,
                        event.hints.domains[0]
                    ),
                )
            } else {
                (
                    "external_id",
                    format!(
                        r#"{{"rule":"external_id","external_id":"{}"}}"#,
                        event.hints.external_ids[0]
                    ),
                )
            };
            NativeRow {
                connector: CONNECTORS[(n % CONNECTORS.len() as u64) as usize],
                source_id: event.key.source_id.clone(),
                account: org.accounts[account].0,
                kind: event.kind.as_str().to_owned(),
                occurred_us: event.occurred_at.timestamp_micros(),
                title: event.title.clone(),
                summary: event.summary.clone(),
                attributes: serde_json::to_string(&event.attributes).expect("serialisable"),
                hints: serde_json::to_string(&event.hints).expect("serialisable"),
                rule,
                detail,
            }
        })
        .collect()
}

const NATIVE_INSERT: &str = "INSERT INTO timeline_events (connector, source_id, source_version,
    account_id, kind, occurred_at_us, ingested_at_us, title, summary, attributes, hints,
    match_rule, match_detail)
    VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
    ON CONFLICT (connector, source_id) DO NOTHING";

fn native_sqlite(path: &std::path::Path, history: &History, org: &Org) -> Result<Duration> {
    let mut connection = rusqlite::Connection::open(path)?;
    connection.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
    )?;
    let now = Utc::now().timestamp_micros();
    let mut elapsed = Duration::ZERO;
    for (_, page) in pages(history) {
        let rows = native_rows(history, org, &page);
        let started = Instant::now();
        let tx = connection.transaction()?;
        {
            let mut insert = tx.prepare_cached(NATIVE_INSERT)?;
            for row in &rows {
                insert.execute(rusqlite::params![
                    row.connector,
                    row.source_id,
                    row.account,
                    row.kind,
                    row.occurred_us,
                    now,
                    row.title,
                    row.summary,
                    row.attributes,
                    row.hints,
                    row.rule,
                    row.detail
                ])?;
            }
        }
        tx.commit()?;
        elapsed += started.elapsed();
    }
    Ok(elapsed)
}

/// PostgreSQL's binary COPY format: a header, then per row a field count and each
/// field as a length and its bytes (network order); jsonb is a version byte and text.
fn copy_page(rows: &[NativeRow], now: i64) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, value: &str) {
        out.extend_from_slice(&(value.len() as i32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    fn int8(out: &mut Vec<u8>, value: i64) {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    fn jsonb(out: &mut Vec<u8>, value: &str) {
        out.extend_from_slice(&(value.len() as i32 + 1).to_be_bytes());
        out.push(1);
        out.extend_from_slice(value.as_bytes());
    }
    let mut out = Vec::with_capacity(rows.len() * 512);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    for row in rows {
        out.extend_from_slice(&13i16.to_be_bytes());
        text(&mut out, row.connector);
        text(&mut out, &row.source_id);
        int8(&mut out, 0);
        int8(&mut out, row.account);
        text(&mut out, &row.kind);
        int8(&mut out, row.occurred_us);
        int8(&mut out, now);
        text(&mut out, &row.title);
        text(&mut out, &row.summary);
        jsonb(&mut out, &row.attributes);
        jsonb(&mut out, &row.hints);
        text(&mut out, row.rule);
        jsonb(&mut out, &row.detail);
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

async fn native_copy(url: &str, history: &History, org: &Org) -> Result<Duration> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url).await?;
    let now = Utc::now().timestamp_micros();
    let mut elapsed = Duration::ZERO;
    for (_, page) in pages(history) {
        let bytes = copy_page(&native_rows(history, org, &page), now);
        let started = Instant::now();
        // One COPY per page, in its own transaction: the same durability unit as a
        // committed sync page.
        let mut copy = connection
            .copy_in_raw(
                "COPY timeline_events (connector, source_id, source_version, account_id, kind,
                 occurred_at_us, ingested_at_us, title, summary, attributes, hints, match_rule,
                 match_detail) FROM STDIN (FORMAT binary)",
            )
            .await?;
        copy.send(bytes.as_slice()).await?;
        copy.finish().await?;
        elapsed += started.elapsed();
    }
    connection.close().await?;
    Ok(elapsed)
}

/// The cursor `depth` events into a listing, walking it with `page(after)`.
async fn cursor_at(
    depth: usize,
    page: impl AsyncFn(Option<TimelineCursor>) -> rapport_store::Result<TimelinePage>,
) -> Result<Option<TimelineCursor>> {
    let mut after = None;
    let mut walked = 0;
    while walked < depth {
        let next = page(after).await?;
        walked += next.events.len();
        after = next.next;
        if after.is_none() {
            break;
        }
    }
    Ok(after)
}

/// The cursor `depth` events into a timeline (pages of 200).
async fn timeline_cursor(
    store: &Store,
    query: &TimelineQuery,
    depth: usize,
) -> Result<Option<TimelineCursor>> {
    cursor_at(depth, async |after| {
        store
            .timeline(&TimelineQuery {
                after,
                limit: 200,
                ..query.clone()
            })
            .await
    })
    .await
}

/// The cursor `depth` events into a feed (pages of 200).
async fn feed_cursor(
    store: &Store,
    query: &FeedQuery,
    depth: usize,
) -> Result<Option<TimelineCursor>> {
    cursor_at(depth, async |after| {
        store
            .feed(&FeedQuery {
                after,
                limit: 200,
                ..query.clone()
            })
            .await
    })
    .await
}

async fn timed_timeline(store: &Store, query: &TimelineQuery) -> Timing {
    repeat(3, RUNS, || async {
        store.timeline(query).await.expect("timeline page")
    })
    .await
}

async fn timed_feed(store: &Store, query: &FeedQuery) -> Timing {
    repeat(2, RUNS / 4, || async {
        store.feed(query).await.expect("feed page")
    })
    .await
}

async fn reads(store: &Store, url: &str, org: &Org, backend: &str) -> Result<()> {
    let heavy = org.accounts[0];
    let raw = RawSql::connect(url).await?;
    raw.analyze().await?;
    let first = TimelineQuery::account(heavy, rapport_store::Reader::Operator);
    let first_page = timed_timeline(store, &first).await;

    let mut timeline = Table::new(format!(
        "{backend}: a heavy account's timeline ({} events), 50 per page",
        crate::measure::count(raw.count(heavy).await? as u64)
    ));
    for depth in [0usize, 10_000, 50_000] {
        let cursor = timeline_cursor(store, &first, depth).await?;
        let query = TimelineQuery {
            after: cursor,
            ..first.clone()
        };
        let api = timed_timeline(store, &query).await;
        let keyset = repeat(3, RUNS, || raw.keyset(heavy, cursor)).await;
        let offset = repeat(3, RUNS, || raw.offset(heavy, depth)).await;
        timeline.read(
            &format!(
                "`Store::timeline` at depth {}",
                crate::measure::count(depth as u64)
            ),
            api,
            "first page",
            first_page,
        );
        timeline.read(
            &format!(
                "SQL alone at depth {}: keyset",
                crate::measure::count(depth as u64)
            ),
            keyset,
            "OFFSET",
            offset,
        );
    }
    // Filters and roll-ups, each at the top and (where it pages far) 10,000 deep.
    let billing = TimelineQuery {
        kind_prefix: Some("billing".into()),
        ..first.clone()
    };
    let zendesk = TimelineQuery {
        connectors: vec!["zendesk".into()],
        ..first.clone()
    };
    let month = TimelineQuery {
        from: Some(synth::history_end() - chrono::Duration::days(400)),
        until: Some(synth::history_end() - chrono::Duration::days(370)),
        ..first.clone()
    };
    let rollup = TimelineQuery {
        include_children: true,
        ..first.clone()
    };
    let variants = [
        ("filter: kind `billing`".to_owned(), billing.clone(), 0),
        (
            "filter: kind `billing`, depth 10,000".to_owned(),
            billing,
            10_000,
        ),
        ("filter: connector `zendesk`".to_owned(), zendesk, 0),
        ("filter: a 30-day window a year back".to_owned(), month, 0),
        (
            format!("roll-up: parent + {} subsidiaries", synth::SUBSIDIARIES),
            rollup.clone(),
            0,
        ),
        ("roll-up at depth 10,000".to_owned(), rollup, 10_000),
    ];
    for (label, query, depth) in variants {
        let query = TimelineQuery {
            after: timeline_cursor(store, &query, depth).await?,
            ..query
        };
        timeline.read(
            &label,
            timed_timeline(store, &query).await,
            "first page",
            first_page,
        );
    }
    timeline.print();

    let mut feeds = Table::new(format!("{backend}: feeds across a book, 50 per page"));
    for (who, viewer, accounts) in [
        ("manager, one book", org.manager, org.manager_accounts()),
        (
            "director, 50 reports",
            org.director,
            org.director_accounts(),
        ),
        ("VP, whole org", org.vp, org.accounts.len()),
    ] {
        let query = FeedQuery {
            viewer,
            at: Utc::now(),
            connectors: Vec::new(),
            kind_prefix: None,
            from: None,
            until: None,
            after: None,
            limit: 50,
        };
        let label = format!(
            "{who} ({} accounts)",
            crate::measure::count(accounts as u64)
        );
        feeds.read(
            &format!("{label}: first page"),
            timed_feed(store, &query).await,
            "one account's first page",
            first_page,
        );
        let deep = FeedQuery {
            after: feed_cursor(store, &query, 10_000).await?,
            ..query.clone()
        };
        feeds.read(
            &format!("{label}: depth 10,000"),
            timed_feed(store, &deep).await,
            "one account's first page",
            first_page,
        );
        let billing = FeedQuery {
            kind_prefix: Some("billing".into()),
            ..query
        };
        feeds.read(
            &format!("{label}: kind `billing`"),
            timed_feed(store, &billing).await,
            "one account's first page",
            first_page,
        );
    }
    feeds.print();
    raw.close().await;
    Ok(())
}

/// The timeline's SQL without the store, for the keyset-vs-OFFSET peers.
enum RawSql {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const COLUMNS: &str = "SELECT id, connector, source_id, source_version, account_id, kind,
    occurred_at_us, ingested_at_us, title, summary, url, actor, attributes, hints, match_detail,
    match_candidates FROM timeline_events WHERE account_id = $1";

impl RawSql {
    async fn connect(url: &str) -> Result<RawSql> {
        Ok(if url.starts_with("sqlite:") {
            RawSql::Sqlite(sqlx::SqlitePool::connect(url).await?)
        } else {
            RawSql::Postgres(sqlx::PgPool::connect(url).await?)
        })
    }

    /// Gives PostgreSQL's planner statistics for what was just loaded, as autovacuum
    /// would after a while (right after a bulk load it has none, and guesses a busy
    /// account holds a few thousand rows).
    async fn analyze(&self) -> Result<()> {
        if let RawSql::Postgres(pool) = self {
            sqlx::query("ANALYZE").execute(pool).await?;
        }
        Ok(())
    }

    async fn count(&self, account: AccountId) -> Result<i64> {
        let sql = "SELECT COUNT(*) FROM timeline_events WHERE account_id = $1";
        Ok(match self {
            RawSql::Sqlite(pool) => {
                sqlx::query_scalar(sql)
                    .bind(account.0)
                    .fetch_one(pool)
                    .await?
            }
            RawSql::Postgres(pool) => {
                sqlx::query_scalar(sql)
                    .bind(account.0)
                    .fetch_one(pool)
                    .await?
            }
        })
    }

    async fn keyset(&self, account: AccountId, after: Option<TimelineCursor>) -> usize {
        let (at, id) = after.map_or((i64::MAX, i64::MAX), |cursor| {
            (cursor.occurred_at.timestamp_micros(), cursor.id.0)
        });
        let sql = sqlx::AssertSqlSafe(format!(
            "{COLUMNS} AND (occurred_at_us, id) < ($2, $3) ORDER BY occurred_at_us DESC, id DESC LIMIT 51"
        ));
        match self {
            RawSql::Sqlite(pool) => sqlx::query(sql)
                .bind(account.0)
                .bind(at)
                .bind(id)
                .fetch_all(pool)
                .await
                .map(|rows| rows.len()),
            RawSql::Postgres(pool) => sqlx::query(sql)
                .bind(account.0)
                .bind(at)
                .bind(id)
                .fetch_all(pool)
                .await
                .map(|rows| rows.len()),
        }
        .expect("keyset query")
    }

    async fn offset(&self, account: AccountId, offset: usize) -> usize {
        let sql = sqlx::AssertSqlSafe(format!(
            "{COLUMNS} ORDER BY occurred_at_us DESC, id DESC LIMIT 51 OFFSET $2"
        ));
        match self {
            RawSql::Sqlite(pool) => sqlx::query(sql)
                .bind(account.0)
                .bind(offset as i64)
                .fetch_all(pool)
                .await
                .map(|rows| rows.len()),
            RawSql::Postgres(pool) => sqlx::query(sql)
                .bind(account.0)
                .bind(offset as i64)
                .fetch_all(pool)
                .await
                .map(|rows| rows.len()),
        }
        .expect("offset query")
    }

    async fn close(self) {
        match self {
            RawSql::Sqlite(pool) => pool.close().await,
            RawSql::Postgres(pool) => pool.close().await,
        }
    }
}
